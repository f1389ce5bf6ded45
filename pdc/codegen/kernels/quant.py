"""Quantization kernels: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul and
QLinearConv. (MatMulInteger and ConvInteger are dense kernels: dense_gemm.py / dense_conv.py.)

Numerics are those of the NumPy references (pdc/ir/ops/quant.py), bit for bit:
- QuantizeLinear divides in float32 (half-precision scales and inputs widen exactly), rounds half
  to even (rintf), adds the zero point and saturates; NaN becomes 0, as numpy's cast gives.
- Integer products are accumulated exactly (int32, or int64 when K * 255^2 could overflow), then
  requantized in double: acc * multiplier, + zero point, rint, saturate. The multiplier
  a_scale * b_scale / y_scale is computed in the scales' dtype with numpy's promotion and
  rounding (half precision rounds after each operation); constant scales are folded at compile
  time with numpy itself.
- gcc contracts a * b + c into an FMA (-std=gnu11 implies -ffp-contract=fast), which would round
  once where the reference rounds twice; the requantization helper is compiled with
  fp-contract=off (a pragma around that helper only).
QLinearMatMul and QLinearConv share one shape: a generic C task per (types) signature, driven by a
small job struct of sizes and strides (params broadcast with stride 0), split over rows with
pdc_parallel_for. Output rows are computed in chunks of CHUNK columns kept in L1.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from ...ir import dtypes
from ...ir.ops.quant import conv_geometry
from ..context import KernelContext, broadcast_strides
from ..ctypes_c import float_literal
from . import kernel

CHUNK = 256  # output columns computed together (accumulators stay in L1)
MAX_BATCH_DIMS = 8
PARALLEL_MIN_MACS = 200_000  # smaller problems run on the calling thread

_PINS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def add_weight(ctx: KernelContext, array: np.ndarray, c_type: str) -> str:
    """ctx.add_weight for a temporary array, kept alive as long as the weight blob: the blob dedups
    by id(array), and a freed temporary's id could be handed to a later, different array."""
    array = np.ascontiguousarray(array)
    _PINS.setdefault(ctx._weights, []).append(array)
    return ctx.add_weight(array, c_type)


def _int_range(dt) -> tuple[int, int]:
    info = np.iinfo(dt.np)
    return int(info.min), int(info.max)


def _fl(x: float) -> str:
    return float_literal(x, "float")


def _round_to(dt, expr: str) -> str:
    """A float expression rounded to dt (float32 / float16 / bfloat16) and widened back to float."""
    if dt is dtypes.float16:
        return f"(float)(_Float16)({expr})"
    if dt is dtypes.bfloat16:
        return f"pdc_bf16_to_f32(pdc_f32_to_bf16({expr}))"
    return f"(float)({expr})"


def _promote(ctx: KernelContext, *dts):
    """numpy's result dtype of arithmetic between arrays of these (float) dtypes."""
    try:
        r = np.result_type(*[d.np for d in dts])
    except Exception:  # float16 with bfloat16 has no common type in numpy: the reference fails too
        ctx.fail(f"scales of dtypes {', '.join(str(d) for d in dts)} cannot be combined")
    for d in (dtypes.float32, dtypes.float16, dtypes.bfloat16, dtypes.float64):
        if np.dtype(d.np) == r:
            return d
    ctx.fail(f"scales combine to unsupported dtype {r}")


# ---- QuantizeLinear / DequantizeLinear ----------------------------------------------------------
def _param_kind(p_shape, block: int) -> str:
    """Layout of a scale / zero point, as expand_param reads it: tensor, axis or block."""
    size = math.prod(p_shape)
    if len(p_shape) == 0 or (len(p_shape) == 1 and size == 1):
        return "tensor"
    return "block" if block else "axis"


def _qdq_loops(ctx: KernelContext, params: list, body: str) -> str:
    """Loops over x viewed as (outer, n, inner) around `axis`. params: [(C type, name, input index,
    load template with {i} = the param's element index)], loaded per row or per element as their
    layout needs. The body uses `xi` (x's flat index) and the param names."""
    shape = list(ctx.inputs[0].shape)
    total = math.prod(shape)
    if total == 0:
        return "    (void)in0; (void)out0;"
    block = ctx.attrs.get("block_size", 0) or 0
    kinds = [_param_kind(ctx.inputs[k].shape, block) for _, _, k, _ in params]
    if all(k == "tensor" for k in kinds):
        hoist = " ".join(f"const {t} {name} = {load.format(i='0')};" for t, name, _, load in params)
        return f"    {hoist}\n    for (int64_t xi = 0; xi < {total}; xi++) {{ {body} }}"
    axis = ctx.attrs.get("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    outer, n, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    idx = {"tensor": "0", "axis": "a", "block": f"(o * {-(-n // block) if block else 0} + a / {block or 1}) * {inner} + i"}
    decl = lambda t, name, load, kd: f"const {t} {name} = {load.format(i=idx[kd])};"  # noqa: E731
    hoisted = " ".join(decl(t, nm, ld, kd) for (t, nm, _, ld), kd in zip(params, kinds) if kd != "block")
    per_elem = " ".join(decl(t, nm, ld, kd) for (t, nm, _, ld), kd in zip(params, kinds) if kd == "block")
    return f"""    for (int64_t o = 0; o < {outer}; o++) {{
        for (int64_t a = 0; a < {n}; a++) {{
            {hoisted}
            const int64_t row = (o * {n} + a) * {inner};
            for (int64_t i = 0; i < {inner}; i++) {{
                const int64_t xi = row + i; {per_elem}
                {body}
            }}
        }}
    }}"""


def _saturate_float(lo: int, hi: int, v: str) -> str:
    """A float holding an integer value clamped into [lo, hi]; NaN gives 0 (numpy's cast does)."""
    return f"({v} != {v} ? 0.0f : ({v} < {_fl(lo)} ? {_fl(lo)} : ({v} > {_fl(hi)} ? {_fl(hi)} : {v})))"


@kernel("quantize_linear")
def quantize_linear(ctx: KernelContext) -> str:
    x, out = ctx.inputs[0], ctx.outputs[0]
    lo, hi = _int_range(out.dtype)
    params = [("float", "s", 1, ctx.load(ctx.inputs[1].dtype, "in1[{i}]"))]
    zp = "0.0f"
    if ctx.has_input(2):
        params.append(("float", "z", 2, "(float)in2[{i}]"))
        zp = "z"
    xv = ctx.load(x.dtype, "in0[xi]") if x.dtype.is_float else "(float)in0[xi]"
    # float is exact here: |q| < 2^24 makes q + z exact, anything larger saturates either way
    body = (f"const float q = rintf({xv} / s) + {zp}; "
            f"out0[xi] = ({ctx.ctype(out.dtype)})(int32_t){_saturate_float(lo, hi, 'q')};")
    return _qdq_loops(ctx, params, body)


@kernel("dequantize_linear")
def dequantize_linear(ctx: KernelContext) -> str:
    x, out = ctx.inputs[0], ctx.outputs[0]
    it = "int64_t" if x.dtype is dtypes.int32 else "int32_t"  # int32 differences need 64 bits
    params = [("float", "s", 1, ctx.load(ctx.inputs[1].dtype, "in1[{i}]"))]
    diff = f"({it})in0[xi]"
    if ctx.has_input(2):
        params.append((it, "z", 2, f"({it})in2[{{i}}]"))
        diff += " - z"
    body = f"out0[xi] = {ctx.store(out.dtype, f'(float)({diff}) * s')};"
    return _qdq_loops(ctx, params, body)


@kernel("dynamic_quantize_linear")
def dynamic_quantize_linear(ctx: KernelContext) -> str:
    n = math.prod(ctx.inputs[0].shape)
    return f"""    float hi = 0.0f, lo = 0.0f;
    if ({n} > 0) {{
        float mx = in0[0], mn = in0[0];
        for (int64_t i = 1; i < {n}; i++) {{  /* NaN wins, as in np.max / np.min */
            const float v = in0[i];
            mx = (v > mx || v != v) ? v : mx;
            mn = (v < mn || v != v) ? v : mn;
            if (mx != mx) {{ mn = mx; break; }}
        }}
        hi = mx > 0.0f ? mx : 0.0f;  /* max(0, NaN) is 0 in Python */
        lo = mn < 0.0f ? mn : 0.0f;
    }}
    const float scale = (hi == lo ? 1.0f : hi - lo) / 255.0f;
    float t = 0.0f - lo / scale;
    t = t < 0.0f ? 0.0f : (t > 255.0f ? 255.0f : t);  /* NaN stays NaN */
    const float zp = rintf(t);
    for (int64_t i = 0; i < {n}; i++) {{
        const float q = rintf(in0[i] / scale) + zp;
        out0[i] = (uint8_t)(int32_t){_saturate_float(0, 255, 'q')};
    }}
    out1[0] = scale;
    out2[0] = (uint8_t)(int32_t){_saturate_float(0, 255, 'zp')};"""


# ---- requantization -------------------------------------------------------------------------------
def _requant_helper(ctx: KernelContext, out_dt) -> str:
    """y[i] = saturate(rint(acc[i] * mult[i] + zp[i])) in double, with the reference's two roundings."""
    t = ctx.ctype(out_dt)
    lo, hi = _int_range(out_dt)
    name = f"pdc_requant_{out_dt.short}"
    code = f"""#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
static void {name}(const double *acc, const double *mult, const double *zp, {t} *y, int64_t n) {{
    for (int64_t i = 0; i < n; i++) {{
        double v = acc[i] * mult[i];
        v = v + zp[i];
        v = rint(v);
        v = v != v ? 0.0 : (v < {lo}.0 ? {lo}.0 : (v > {hi}.0 ? {hi}.0 : v));
        y[i] = ({t})(int32_t)v;
    }}
}}
#pragma GCC pop_options
"""
    return ctx.helper(name, code)


def _mult_expr(ctx: KernelContext, sa, sb, sy, a_expr: str, b_expr: str, y_expr: str, y_first: bool) -> str:
    """The requantization multiplier a * b / y as numpy computes it in the scales' dtypes.

    y_first: QLinearMatMul casts y_scale to a_scale's dtype before dividing."""
    p = _promote(ctx, sa, sb)
    y = _round_to(sa, y_expr) if y_first else y_expr
    ydt = sa if y_first else sy
    q = _promote(ctx, p, ydt)
    return _round_to(q, f"{_round_to(p, f'{a_expr} * {b_expr}')} / {y}")


def _mult_table(ctx: KernelContext, sa: np.ndarray, sb: np.ndarray, sy: np.ndarray, y_first: bool) -> np.ndarray:
    """Constant scales: the multiplier computed by numpy exactly as the reference does."""
    try:
        if y_first:
            m = sa * sb / sy.astype(sa.dtype)
        else:
            m = sa * sb / sy
    except Exception:
        ctx.fail(f"scales of dtypes {sa.dtype}, {sb.dtype}, {sy.dtype} cannot be combined")
    return np.asarray(m).astype(np.float64)


# ---- QLinearMatMul ------------------------------------------------------------------------------------
QMM_JOB = f"""#define PDC_QMM_MAXB {MAX_BATCH_DIMS}
#define PDC_QMM_CHUNK {CHUNK}
/* One (batched) quantized matmul. Params: 0 a, 1 b (raw, or b - b_zero_point as int16), 2 a_zero_point,
   3 b_zero_point, 4 multiplier table (double) or a_scale, 5 b_scale, 6 y_scale, 7 y_zero_point.
   st[p]: element strides of param p per output batch dim, then per row m, then per column n. */
typedef struct {{
    const void *p[8];
    void *y;
    int64_t M, N, K, nbd;
    int64_t dims[PDC_QMM_MAXB];
    int64_t st[8][PDC_QMM_MAXB + 2];
}} pdc_qmm_job;
"""

QMM_TASK = """static void @NAME@(void *vj, int64_t r0, int64_t r1) {
    const pdc_qmm_job *j = (const pdc_qmm_job *)vj;
    const @TA@ *A = (const @TA@ *)j->p[0];
    const @TB@ *B = (const @TB@ *)j->p[1];
    const @TZA@ *ZA = (const @TZA@ *)j->p[2];
    const @TZB@ *ZB = (const @TZB@ *)j->p[3];
    const @TZY@ *ZY = (const @TZY@ *)j->p[7];
    @TY@ *Y = (@TY@ *)j->y;
    const int64_t M = j->M, N = j->N, K = j->K, nbd = j->nbd;
    @ACC@ acc[PDC_QMM_CHUNK];
    int32_t zb[PDC_QMM_CHUNK];
    double accd[PDC_QMM_CHUNK], mul[PDC_QMM_CHUNK], zy[PDC_QMM_CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t bi = r / M, m = r % M;
        int64_t off[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t d = nbd - 1, q = bi; d >= 0; d--) {
            const int64_t i = q % j->dims[d];
            q /= j->dims[d];
            for (int p = 0; p < 8; p++) off[p] += i * j->st[p][d];
        }
        for (int p = 0; p < 8; p++) off[p] += m * j->st[p][nbd];
        const @TA@ *arow = A + off[0];
        const int32_t za = ZA ? (int32_t)ZA[off[2]] : 0;
        for (int64_t n0 = 0; n0 < N; n0 += PDC_QMM_CHUNK) {
            const int64_t nc = N - n0 < PDC_QMM_CHUNK ? N - n0 : PDC_QMM_CHUNK;
            for (int64_t c = 0; c < nc; c++) acc[c] = 0;
            for (int64_t c = 0; c < nc; c++) zb[c] = @ZB@;
            const @TB@ *bcol = B + off[1] + n0;
            int64_t k = 0;
            for (; k + 4 <= K; k += 4) {
                const int32_t a0 = (int32_t)arow[k] - za, a1 = (int32_t)arow[k + 1] - za;
                const int32_t a2 = (int32_t)arow[k + 2] - za, a3 = (int32_t)arow[k + 3] - za;
                const @TB@ *b0 = bcol + k * N, *b1 = b0 + N, *b2 = b1 + N, *b3 = b2 + N;
                for (int64_t c = 0; c < nc; c++)
                    acc[c] += (@ACC@)(a0 * ((int32_t)b0[c] - zb[c]) + a1 * ((int32_t)b1[c] - zb[c]))
                            + (@ACC@)(a2 * ((int32_t)b2[c] - zb[c]) + a3 * ((int32_t)b3[c] - zb[c]));
            }
            for (; k < K; k++) {
                const int32_t a0 = (int32_t)arow[k] - za;
                const @TB@ *b0 = bcol + k * N;
                for (int64_t c = 0; c < nc; c++) acc[c] += (@ACC@)(a0 * ((int32_t)b0[c] - zb[c]));
            }
            for (int64_t c = 0; c < nc; c++) {
                const int64_t n = n0 + c;
                accd[c] = (double)acc[c];
                mul[c] = @MULT@;
                zy[c] = (double)ZY[off[7] + n * j->st[7][nbd + 1]];
            }
            @REQUANT@(accd, mul, zy, Y + r * N + n0, nc);
        }
    }
}
"""


def _fill(template: str, **subs) -> str:
    for k, v in subs.items():
        template = template.replace(f"@{k}@", str(v))
    return template


def _aligned(ctx: KernelContext, pshape, opshape, out_batch, what: str, insert=None) -> list[int]:
    """Strides of a param broadcast against operand shape `opshape`, laid out over (out batch dims,
    row, column). insert: 'row' / 'col' when the operand's 1-D shape lacks that dim."""
    pshape, opshape = tuple(pshape), tuple(opshape)
    try:
        full = np.broadcast_shapes(pshape, opshape)
    except ValueError:
        ctx.fail(f"{what} of shape {list(pshape)} does not broadcast against {list(opshape)}")
    if tuple(full) != opshape:
        ctx.fail(f"{what} of shape {list(pshape)} would broadcast {list(opshape)} to {list(full)}")
    st = broadcast_strides(pshape, opshape) if opshape else []
    shape = list(opshape)
    if insert == "row":
        st.insert(len(st) - 1, 0)
        shape.insert(len(shape) - 1, 1)
    elif insert == "col":
        st.append(0)
        shape.append(1)
    elif insert == "both":  # 0-d output: both dims were dropped
        st += [0, 0]
        shape += [1, 1]
    nb, pad = len(out_batch), len(out_batch) - (len(shape) - 2)
    batch = [0] * nb
    for d in range(nb):
        i = d - pad
        if i >= 0 and shape[i] == out_batch[d]:
            batch[d] = st[i]
    return batch + st[-2:]


def _row_shape(p_shape, a_rank: int):
    """row_param's broadcast shape of a per-tensor / per-row param."""
    if math.prod(p_shape) == 1:
        return ()
    if len(p_shape) == 1 and a_rank >= 2:
        return (p_shape[0], 1)
    return tuple(p_shape)


def _col_shape(p_shape):
    return () if math.prod(p_shape) == 1 else tuple(p_shape)


@kernel("qlinear_matmul")
def qlinear_matmul(ctx: KernelContext) -> str:
    T = ctx.inputs
    a_s, b_s, y_s = T[0].shape, T[3].shape, ctx.outputs[0].shape
    a2 = (1,) + tuple(a_s) if len(a_s) == 1 else tuple(a_s)
    b2 = tuple(b_s) + (1,) if len(b_s) == 1 else tuple(b_s)
    M, K, N = a2[-2], a2[-1], b2[-1]
    out_batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
    if len(out_batch) > MAX_BATCH_DIMS:
        ctx.fail(f"{len(out_batch)} batch dims: at most {MAX_BATCH_DIMS} are supported")
    nbatch = math.prod(out_batch)
    if nbatch * M * N == 0:
        return "    (void)in0; (void)out0;"
    out_insert = {(True, True): "both", (True, False): "row", (False, True): "col"}.get((len(a_s) == 1, len(b_s) == 1))
    a_ins = "row" if len(a_s) == 1 else None
    b_ins = "col" if len(b_s) == 1 else None
    st = [None] * 8
    # operands: a's k stride is 1 and b's n stride is 1 (row-major); their m / k strides are K / N
    st[0] = _aligned(ctx, a_s, a_s, out_batch, "a", a_ins)
    st[0][-2:] = [K, 0]
    st[1] = _aligned(ctx, b_s, b_s, out_batch, "b", b_ins)
    st[1][-2:] = [0, 0]
    za = T[2].shape if ctx.has_input(2) else ()
    zb = T[5].shape if ctx.has_input(5) else ()
    st[2] = _aligned(ctx, _row_shape(za, len(a_s)), a_s, out_batch, "a_zero_point", a_ins)
    st[3] = _aligned(ctx, _col_shape(zb), b_s, out_batch, "b_zero_point", b_ins)
    # a zero point varying along K (or b's along K) is not a per-row / per-column zero point
    if st[2][-1] != 0 or st[3][-2] != 0:
        ctx.fail("zero points must be per tensor, per row of a or per column of b")
    st[2][-1] = 0
    st[3][-2:] = [0, st[3][-1]]
    # output-side params broadcast against the matmul's output
    sa_shape, sb_shape = _row_shape(T[1].shape, len(a_s)), _col_shape(T[4].shape)
    consts = [ctx.const(i) for i in (1, 4, 6)]
    weights_side = []
    if all(c is not None for c in consts):
        sa_c = consts[0].reshape(()) if consts[0].size == 1 else consts[0].reshape(sa_shape)
        sb_c = consts[1].reshape(()) if consts[1].size == 1 else consts[1].reshape(sb_shape)
        table = _mult_table(ctx, sa_c, sb_c, consts[2], y_first=True)
        st[4] = _aligned(ctx, table.shape, y_s, out_batch, "the requantization multiplier", out_insert)
        st[5] = st[6] = [0] * (len(out_batch) + 2)
        weights_side = [add_weight(ctx, table.reshape(-1), "double")]
    else:
        st[4] = _aligned(ctx, sa_shape, y_s, out_batch, "a_scale", out_insert)
        st[5] = _aligned(ctx, sb_shape, y_s, out_batch, "b_scale", out_insert)
        st[6] = _aligned(ctx, T[6].shape, y_s, out_batch, "y_scale", out_insert)
    st[7] = _aligned(ctx, T[7].shape, y_s, out_batch, "y_zero_point", out_insert)

    a_dt, b_dt, y_dt = T[0].dtype, T[3].dtype, T[7].dtype
    # constant b: b - b_zero_point packed at compile time as int16, with b's own layout
    b_const = ctx.const(3)
    zb_const = ctx.const(5) if ctx.has_input(5) else np.zeros((), b_dt.np)
    packed = b_const is not None and zb_const is not None
    if packed:
        bz = zb_const.reshape(()) if zb_const.size == 1 else zb_const
        bp = (b_const.astype(np.int32) - bz.astype(np.int32)).astype(np.int16)
        if bp.shape != tuple(b_s):
            ctx.fail(f"b_zero_point of shape {list(zb_const.shape)} does not match b {list(b_s)}")
        b_ptr = add_weight(ctx, bp.reshape(-1), "int16_t")
        tb = "int16_t"
        zb_expr = "0"
    else:
        b_ptr = "in3"
        tb = ctx.ctype(b_dt)
        zb_expr = f"ZB ? (int32_t)ZB[off[3] + (n0 + c) * j->st[3][nbd + 1]] : 0"
    acc = "int32_t" if K * 255 * 255 < 2 ** 31 else "int64_t"
    requant = _requant_helper(ctx, y_dt)
    sig = (f"pdc_qmm_{a_dt.short}_{'p16' if packed else b_dt.short}_{y_dt.short}_{acc[:5]}_"
           + ("tab" if weights_side else "_".join(ctx.inputs[i].dtype.short for i in (1, 4, 6))))
    if weights_side:
        mult_c = "((const double *)j->p[4])[off[4] + n * j->st[4][nbd + 1]]"
    else:
        ld = lambda i, p: ctx.load(ctx.inputs[i].dtype, f"(({ctx.ctype(ctx.inputs[i].dtype)} const *)j->p[{p}])"  # noqa: E731
                                                     f"[off[{p}] + n * j->st[{p}][nbd + 1]]")
        mult_c = "(double)(" + _mult_expr(ctx, T[1].dtype, T[4].dtype, T[6].dtype, ld(1, 4), ld(4, 5), ld(6, 6),
                                         y_first=True) + ")"
    ctx.helper("pdc_qmm_job", QMM_JOB)
    ctx.helper(sig, _fill(QMM_TASK, NAME=sig, TA=ctx.ctype(a_dt), TB=tb,
                          TZA=ctx.ctype(a_dt), TZB=ctx.ctype(b_dt), TZY=ctx.ctype(y_dt), TY=ctx.ctype(y_dt),
                          ACC=acc, ZB=zb_expr, MULT=mult_c, REQUANT=requant))
    ptrs = ["in0", b_ptr, "in2" if ctx.has_input(2) else "0", "0" if packed else ("in5" if ctx.has_input(5) else "0"),
            weights_side[0] if weights_side else "in1", "in4", "in6", "in7"]
    nbd = len(out_batch)
    rows = nbatch * M
    lines = ["    pdc_qmm_job j;", "    memset(&j, 0, sizeof j);"]
    lines += [f"    j.p[{i}] = (const void *){p};" for i, p in enumerate(ptrs)]
    lines += ["    j.y = (void *)out0;", f"    j.M = {M}; j.N = {N}; j.K = {K}; j.nbd = {nbd};"]
    lines += [f"    j.dims[{d}] = {out_batch[d]};" for d in range(nbd)]
    for p in range(8):
        for d, s in enumerate(st[p]):
            if s:
                lines.append(f"    j.st[{p}][{d}] = {s};")
    if rows * N * K >= PARALLEL_MIN_MACS and rows > 1:
        lines.append(f"    pdc_parallel_for({rows}, {sig}, (void *)&j);")
    else:
        lines.append(f"    {sig}((void *)&j, 0, {rows});")
    return "\n".join(lines)


# ---- QLinearConv --------------------------------------------------------------------------------------
MAX_SPATIAL = 4

QCONV_JOB = f"""#define PDC_QCONV_MAXS {MAX_SPATIAL}
#define PDC_QCONV_CHUNK {CHUNK}
/* One quantized N-D convolution: x [N][C][in...], w [M][C/G][k...] (raw, or w - w_zero_point as
   int16), y [N][M][out...]. Rows are lines along the last output dim. */
typedef struct {{
    const void *x, *w, *xz, *wz, *xs, *ws, *ys, *yz;
    const int32_t *bias;
    const double *mult;  /* per output channel (stride mult_m), or NULL: from the scales */
    void *y;
    int64_t N, C, M, G, ns, mult_m, ws_m, wz_m;
    int64_t in[PDC_QCONV_MAXS], out[PDC_QCONV_MAXS], k[PDC_QCONV_MAXS];
    int64_t s[PDC_QCONV_MAXS], d[PDC_QCONV_MAXS], pb[PDC_QCONV_MAXS];
}} pdc_qconv_job;

static inline int64_t pdc_qconv_cdiv(int64_t a, int64_t b) {{ return a >= 0 ? (a + b - 1) / b : -((-a) / b); }}
static inline int64_t pdc_qconv_fdiv(int64_t a, int64_t b) {{ return a >= 0 ? a / b : -((-a + b - 1) / b); }}
"""

QCONV_TASK = """static void @NAME@(void *vj, int64_t r0, int64_t r1) {
    const pdc_qconv_job *j = (const pdc_qconv_job *)vj;
    const @TX@ *X = (const @TX@ *)j->x;
    const @TW@ *W = (const @TW@ *)j->w;
    const @TZW@ *WZ = (const @TZW@ *)j->wz;
    @TY@ *Y = (@TY@ *)j->y;
    const int64_t ns = j->ns, C = j->C, M = j->M, cg = C / j->G, mg = M / j->G;
    const int64_t OW = j->out[ns - 1], IW = j->in[ns - 1], KW = j->k[ns - 1];
    const int64_t SW = j->s[ns - 1], DW = j->d[ns - 1], PW = j->pb[ns - 1];
    const int32_t xz = j->xz ? (int32_t)((const @TX@ *)j->xz)[0] : 0;
    int64_t orows = 1, taps = 1, inplane = 1, ksize = 1;
    for (int64_t t = 0; t < ns - 1; t++) { orows *= j->out[t]; taps *= j->k[t]; }
    for (int64_t t = 0; t < ns; t++) { inplane *= j->in[t]; ksize *= j->k[t]; }
    @ACC@ acc[PDC_QCONV_CHUNK];
    double accd[PDC_QCONV_CHUNK], mul[PDC_QCONV_CHUNK], zy[PDC_QCONV_CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t orow = r % orows, nm = r / orows, m = nm % M, n = nm / M, g = m / mg;
        int64_t o[PDC_QCONV_MAXS];
        for (int64_t t = ns - 2, q = orow; t >= 0; t--) { o[t] = q % j->out[t]; q /= j->out[t]; }
        const int32_t wz = WZ ? (int32_t)WZ[m * j->wz_m] : 0;
        const double m_r = @MULT@;
        const double bias = j->bias ? (double)j->bias[m] : 0.0;
        const double yzp = (double)((const @TY@ *)j->yz)[0];
        for (int64_t w0 = 0; w0 < OW; w0 += PDC_QCONV_CHUNK) {
            const int64_t wc = OW - w0 < PDC_QCONV_CHUNK ? OW - w0 : PDC_QCONV_CHUNK;
            for (int64_t c = 0; c < wc; c++) acc[c] = 0;
            for (int64_t c = 0; c < cg; c++) {
                const @TX@ *xplane = X + ((n * C + g * cg + c) * inplane);
                const @TW@ *wc_ = W + (m * cg + c) * ksize;
                for (int64_t tap = 0; tap < taps; tap++) {
                    int64_t xoff = 0, ok = 1;
                    for (int64_t t = 0, q = tap, rest = taps; t < ns - 1; t++) {
                        rest /= j->k[t];
                        const int64_t kt = q / rest;
                        q %= rest;
                        const int64_t it = o[t] * j->s[t] + kt * j->d[t] - j->pb[t];
                        if (it < 0 || it >= j->in[t]) { ok = 0; break; }
                        xoff = xoff * j->in[t] + it;
                    }
                    if (!ok) continue;
                    const @TX@ *xrow = xplane + xoff * IW;
                    const @TW@ *wrow = wc_ + tap * KW;
                    for (int64_t kw = 0; kw < KW; kw++) {
                        const int32_t wv = (int32_t)wrow[kw] - wz;
                        const int64_t shift = kw * DW - PW;  /* input column of output column ow: ow * SW + shift */
                        int64_t lo = pdc_qconv_cdiv(-shift, SW), hi = pdc_qconv_fdiv(IW - 1 - shift, SW) + 1;
                        if (lo < w0) lo = w0;
                        if (hi > w0 + wc) hi = w0 + wc;
                        if (lo >= hi || wv == 0) continue;
                        @ACC@ *a = acc - w0;
                        if (SW == 1) {
                            const @TX@ *xs = xrow + shift;
                            for (int64_t ow = lo; ow < hi; ow++) a[ow] += (@ACC@)(wv * ((int32_t)xs[ow] - xz));
                        } else {
                            for (int64_t ow = lo; ow < hi; ow++) a[ow] += (@ACC@)(wv * ((int32_t)xrow[ow * SW + shift] - xz));
                        }
                    }
                }
            }
            for (int64_t c = 0; c < wc; c++) { accd[c] = (double)acc[c] + bias; mul[c] = m_r; zy[c] = yzp; }
            @REQUANT@(accd, mul, zy, Y + r * OW + w0, wc);
        }
    }
}
"""


@kernel("qlinear_conv")
def qlinear_conv(ctx: KernelContext) -> str:
    T = ctx.inputs
    xs, ws, ys = T[0].shape, T[3].shape, ctx.outputs[0].shape
    ns = len(xs) - 2
    if ns < 1 or ns > MAX_SPATIAL:
        ctx.fail(f"{ns} spatial dims: 1 to {MAX_SPATIAL} are supported")
    N, C, M = xs[0], xs[1], ws[0]
    G = ctx.attrs.get("group", 1) or 1
    kernel_shape = list(ws[2:])
    strides_, dil, pads = conv_geometry(list(xs[2:]), kernel_shape, ctx.attrs)
    if any(p is None for p in pads):
        ctx.fail("auto_pad needs static spatial dims")
    outs = list(ys[2:])
    if math.prod(ys) == 0:
        return "    (void)in0; (void)out0;"
    if math.prod(kernel_shape) == 0 or C == 0:
        ctx.fail("empty kernel or channels")
    cg = C // G
    ksize = math.prod(kernel_shape)
    # |x - zx| and |w - zw| <= 255 (uint8 - int8 extremes), bias added in double
    acc = "int32_t" if cg * ksize * 255 * 255 < 2 ** 31 else "int64_t"
    x_dt, w_dt, y_dt = T[0].dtype, T[3].dtype, T[7].dtype
    per_channel = lambda i: ctx.has_input(i) and math.prod(T[i].shape) > 1  # noqa: E731
    w, wz = ctx.const(3), (ctx.const(5) if ctx.has_input(5) else np.zeros((), w_dt.np))
    packed = w is not None and wz is not None
    if packed:
        wzz = wz.reshape(-1).astype(np.int32)
        wzz = wzz.reshape((-1,) + (1,) * (len(ws) - 1)) if wzz.size > 1 else wzz.reshape(())
        w_ptr = add_weight(ctx, (w.astype(np.int32) - wzz).astype(np.int16).reshape(-1), "int16_t")
        tw = "int16_t"
    else:
        w_ptr, tw = "in3", ctx.ctype(w_dt)
    consts = [ctx.const(i) for i in (1, 4, 6)]
    mult_ptr, mult_m = "0", 0
    if all(c is not None for c in consts):
        wsc = consts[1].reshape(-1) if consts[1].size > 1 else consts[1].reshape(())
        table = _mult_table(ctx, consts[0].reshape(()), wsc, consts[2].reshape(()), y_first=False).reshape(-1)
        mult_ptr, mult_m = add_weight(ctx, table, "double"), int(table.size > 1)
        mult_c = "j->mult[m * j->mult_m]"
        msig = "tab"
    else:
        ld = lambda i, f, idx: ctx.load(T[i].dtype, f"((const {ctx.ctype(T[i].dtype)} *)j->{f})[{idx}]")  # noqa: E731
        mult_c = "(double)(" + _mult_expr(ctx, T[1].dtype, T[4].dtype, T[6].dtype, ld(1, "xs", "0"),
                                         ld(4, "ws", "m * j->ws_m"), ld(6, "ys", "0"), y_first=False) + ")"
        msig = "_".join(T[i].dtype.short for i in (1, 4, 6))
    requant = _requant_helper(ctx, y_dt)
    sig = f"pdc_qconv_{x_dt.short}_{'p16' if packed else w_dt.short}_{y_dt.short}_{acc[:5]}_{msig}"
    ctx.helper("pdc_qconv_job", QCONV_JOB)
    ctx.helper(sig, _fill(QCONV_TASK, NAME=sig, TX=ctx.ctype(x_dt), TW=tw, TZW=ctx.ctype(w_dt),
                          TY=ctx.ctype(y_dt), ACC=acc, MULT=mult_c, REQUANT=requant))
    lines = ["    pdc_qconv_job j;", "    memset(&j, 0, sizeof j);",
             f"    j.x = in0; j.w = {w_ptr}; j.xz = {'in2' if ctx.has_input(2) else '0'};",
             f"    j.wz = {'0' if packed or not ctx.has_input(5) else 'in5'};",
             "    j.xs = in1; j.ws = in4; j.ys = in6; j.yz = in7;",
             f"    j.bias = {'in8' if ctx.has_input(8) else '0'}; j.mult = {mult_ptr}; j.y = (void *)out0;",
             f"    j.N = {N}; j.C = {C}; j.M = {M}; j.G = {G}; j.ns = {ns}; j.mult_m = {mult_m};",
             f"    j.ws_m = {int(per_channel(4))}; j.wz_m = {int(per_channel(5))};"]
    for t in range(ns):
        lines.append(f"    j.in[{t}] = {xs[2 + t]}; j.out[{t}] = {outs[t]}; j.k[{t}] = {kernel_shape[t]}; "
                     f"j.s[{t}] = {strides_[t]}; j.d[{t}] = {dil[t]}; j.pb[{t}] = {pads[t]};")
    rows = N * M * math.prod(outs[:-1])
    macs = math.prod(ys) * cg * ksize
    if macs >= PARALLEL_MIN_MACS and rows > 1:
        lines.append(f"    pdc_parallel_for({rows}, {sig}, (void *)&j);")
    else:
        lines.append(f"    {sig}((void *)&j, 0, {rows});")
    return "\n".join(lines)

