"""Quantization kernels: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul and
QLinearConv. (MatMulInteger and ConvInteger are dense kernels: dense_gemm.py / dense_conv.py.)

Numerics are those of the NumPy references (pdc/ir/ops/quant.py), bit for bit:
- QuantizeLinear divides in float32 (half-precision scales and inputs widen exactly), rounds half
  to even, adds the zero point and saturates; NaN becomes 0, as numpy's cast gives. Outputs of up
  to 16 bits clamp first and round by adding and subtracting 1.5 * 2^23 (pdc_quantize_round),
  wider ones call rintf.
- Integer products are accumulated exactly in int32 (int64 when K * 255^2 could overflow), then
  requantized in double: (acc + bias) * multiplier, + zero point, rint, saturate. The multiplier
  a_scale * b_scale / y_scale is computed in the scales' dtypes with numpy's promotion and
  rounding (half precision rounds after each operation); constant scales are folded at compile
  time with numpy itself.
- gcc contracts a * b + c into an FMA (-std=gnu11 implies -ffp-contract=fast), which would round
  once where the reference rounds twice: the requantization helpers are compiled with
  fp-contract=off (a pragma around those helpers only).
Two shapes of code, each a generic C task per type signature driven by a small job struct and
split over threads with pdc_parallel_for:
- constant weights (QLinearConv's w, QLinearMatMul's b): an int16 multiply-add GEMM (vpmaddwd) with
  the weights packed at compile time, see "int16 multiply-add GEMM" below;
- anything else (runtime weights, depthwise convolutions, broadcast batches, per-element params):
  plain loops over output rows in chunks of CHUNK columns, params addressed by broadcast strides.
"""
from __future__ import annotations

import math
import weakref

import ml_dtypes
import numpy as np

from ...ir import dtypes
from ...ir.ops.quant import conv_geometry
from ..context import KernelContext, broadcast_strides
from .. import narrow_c
from ..ctypes_c import float_literal
from . import kernel, native

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
    info = ml_dtypes.iinfo(dt.np)
    return int(info.min), int(info.max)


def _value(dt, expr: str) -> str:
    """The value of element `expr` of dtype dt: a narrow type's code widened by its helper."""
    return f"{narrow_c.decode_fn(dt)}({expr})" if dt.is_narrow else expr


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
        return f"    {_hoisted(params)}\n    for (int64_t xi = 0; xi < {total}; xi++) {{ {body} }}"
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


def _hoisted(params: list) -> str:
    """The declarations of parameters that are one value for the whole tensor."""
    return " ".join(f"const {t} {name} = {load.format(i='0')};" for t, name, _, load in params)


def _saturate_float(lo: int, hi: int, v: str) -> str:
    """A float holding an integer value clamped into [lo, hi]; NaN gives 0 (numpy's cast does)."""
    return f"({v} != {v} ? 0.0f : ({v} < {_fl(lo)} ? {_fl(lo)} : ({v} > {_fl(hi)} ? {_fl(hi)} : {v})))"


QUANTIZE_ROUND = """/* clamp(rint(v) + z, lo, hi) for a narrow output (|hi - lo| < 2^22): v clamped to [lo - z, hi - z]
   first (integers: the same result as clamping after rint), then rounded half to even by the float32
   sum with 1.5 * 2^23 (no rintf, a library call where the FPU cannot round); NaN gives 0, as numpy's cast
   (-z in its place: a select, not a branch, so that gcc vectorizes the loops calling this) */
static inline int32_t pdc_quantize_round(float v, int32_t z, int32_t lo, int32_t hi) {
    v = v == v ? v : (float)(-z);
    const float flo = (float)(lo - z), fhi = (float)(hi - z);
    v = v < flo ? flo : (v > fhi ? fhi : v);
    return (int32_t)((v + 12582912.0f) - 12582912.0f) + z;
}
"""
NARROW_ROUND_BITS = 16  # outputs of at most 16 bits round with pdc_quantize_round (|v| < 2^22 after the clamp)

# a whole tensor on one scale and zero point (a model's input, most activations): one call, whose
# loop a vector ISA's family may take (native slot quantize_row: 16 floats at a time on AVX-512)
QUANTIZE_ROW = """@native qg_include @end
static void @NAME@(const float *x, @T@ *y, int64_t n, float s, int32_t z) {
    int64_t i = 0;
@native quantize_row
@end
    for (; i < n; i++) y[i] = (@T@)pdc_quantize_round(x[i] / s, z, @LO@, @HI@);
}
"""
# a large tensor in chunks over the thread pool (a float division per element: ~0.3 ns each)
QUANTIZE_CHUNK = 16384
QUANTIZE_PARALLEL_MIN = 1 << 16
QUANTIZE_TASK = """typedef struct { const float *x; @T@ *y; int64_t n; float s; int32_t z; } @NAME@_job;
static void @NAME@_task(void *vj, int64_t u0, int64_t u1) {
    const @NAME@_job *j = (const @NAME@_job *)vj;
    const int64_t b = u0 * @CHUNK@, e = u1 * @CHUNK@ < j->n ? u1 * @CHUNK@ : j->n;
    @NAME@(j->x + b, j->y + b, e - b, j->s, j->z);
}
"""


@kernel("quantize_linear")
def quantize_linear(ctx: KernelContext) -> str:
    x, out = ctx.inputs[0], ctx.outputs[0]
    xv = ctx.load(x.dtype, "in0[xi]") if x.dtype.is_float else "(float)in0[xi]"
    params = [("float", "s", 1, ctx.load(ctx.inputs[1].dtype, "in1[{i}]"))]
    if out.dtype.short in narrow_c.MINIFLOATS:  # a float cast of x / s + z (z is 0 for float8)
        zp = ""
        if ctx.has_input(2):
            params.append(("float", "z", 2, _value(out.dtype, "in2[{i}]")))
            zp = " + z"
        body = f"out0[xi] = pdc_to_{out.dtype.short}((double)({xv} / s{zp}), {ctx.attrs.get('saturate', 1)});"
        return _qdq_loops(ctx, params, body)
    lo, hi = _int_range(out.dtype)
    if out.dtype.np.itemsize * 8 <= NARROW_ROUND_BITS:
        zp = "0"
        if ctx.has_input(2):
            params.append(("int32_t", "z", 2, f"(int32_t){_value(out.dtype, 'in2[{i}]')}"))
            zp = "z"
        ctx.helper("pdc_quantize_round", QUANTIZE_ROUND)
        if x.dtype is dtypes.float32 and not out.dtype.is_narrow and \
                all(_param_kind(ctx.inputs[k].shape, 0) == "tensor" for _, _, k, _ in params):
            return _quantize_tensor(ctx, params, zp, lo, hi)
        q = f"pdc_quantize_round({xv} / s, {zp}, {lo}, {hi})"
        if out.dtype.is_narrow:  # a 4- or 2-bit integer keeps its low bits
            q = f"({q} & {narrow_c.int_mask(out.dtype)})"
        body = f"out0[xi] = ({ctx.ctype(out.dtype)}){q};"
        return _qdq_loops(ctx, params, body)
    zp = "0.0f"
    if ctx.has_input(2):
        params.append(("float", "z", 2, "(float)in2[{i}]"))
        zp = "z"
    # float is exact here: |q| < 2^24 makes q + z exact, anything larger saturates either way
    body = (f"const float q = rintf({xv} / s) + {zp}; "
            f"out0[xi] = ({ctx.ctype(out.dtype)})(int32_t){_saturate_float(lo, hi, 'q')};")
    return _qdq_loops(ctx, params, body)


def _quantize_tensor(ctx: KernelContext, params: list, zp: str, lo: int, hi: int) -> str:
    """quantize_linear of a float32 tensor on one scale and zero point: the row helper over all of it."""
    n = math.prod(ctx.inputs[0].shape)
    if n == 0:
        return "    (void)in0; (void)out0;"
    t = ctx.ctype(ctx.outputs[0].dtype)
    name = f"pdc_quantize_row_{ctx.outputs[0].dtype.short}"
    code = QUANTIZE_ROW.replace("@NAME@", name).replace("@T@", t).replace("@LO@", str(lo)).replace("@HI@", str(hi))
    ctx.helper(name, native.fill(ctx, code, lo=lo, hi=hi, bits=ctx.outputs[0].dtype.np.itemsize * 8))
    if not ctx.split(n, QUANTIZE_PARALLEL_MIN):
        return f"    {_hoisted(params)}\n    {name}(in0, out0, {n}, s, {zp});"
    ctx.helper(name + "_task", QUANTIZE_TASK.replace("@NAME@", name).replace("@T@", t).replace("@CHUNK@", str(QUANTIZE_CHUNK)))
    return (f"    {_hoisted(params)}\n    {name}_job j = {{in0, out0, {n}, s, {zp}}};\n"
            f"    pdc_parallel_for({-(-n // QUANTIZE_CHUNK)}, {name}_task, (void *)&j);")


@kernel("dequantize_linear")
def dequantize_linear(ctx: KernelContext) -> str:
    x, out = ctx.inputs[0], ctx.outputs[0]
    it = "int64_t" if x.dtype is dtypes.int32 else "int32_t"  # int32 differences need 64 bits
    if x.dtype.short in narrow_c.MINIFLOATS:
        it = "float"  # float8 / float4 codes widen to float exactly
    params = [("float", "s", 1, ctx.load(ctx.inputs[1].dtype, "in1[{i}]"))]
    diff = f"({it}){_value(x.dtype, 'in0[xi]')}"
    if ctx.has_input(2):
        params.append((it, "z", 2, f"({it}){_value(x.dtype, 'in2[{i}]')}"))
        diff += " - z"
    body = f"out0[xi] = {ctx.store(out.dtype, f'(float)({diff}) * s')};"
    return _qdq_loops(ctx, params, body)


@kernel("dynamic_quantize_linear")
def dynamic_quantize_linear(ctx: KernelContext) -> str:
    n = math.prod(ctx.inputs[0].shape)
    # hi = max(0, max(x)) and lo = min(0, min(x)); a NaN makes np.max NaN, and Python's max(0, NaN) is 0
    return f"""    float hi = 0.0f, lo = 0.0f;
    int has_nan = 0;
    for (int64_t i = 0; i < {n}; i++) {{
        const float v = in0[i];
        hi = v > hi ? v : hi;
        lo = v < lo ? v : lo;
        has_nan |= v != v;
    }}
    if (has_nan) hi = lo = 0.0f;
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
    fast = _qlinear_matmul_gemm(ctx)
    if fast is not None:
        return fast
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
        zb_expr = "ZB ? (int32_t)ZB[off[3] + (n0 + c) * j->st[3][nbd + 1]] : 0"
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
    if ctx.split(rows * N * K, PARALLEL_MIN_MACS) and rows > 1:
        lines.append(f"    pdc_parallel_for({rows}, {sig}, (void *)&j);")
    else:
        lines.append(f"    {sig}((void *)&j, 0, {rows});")
    return "\n".join(lines)


# ---- int16 multiply-add GEMM (QLinearConv, QLinearMatMul with constant b) ------------------------------
# Y[i][p] = requant(sum_k A[i][k] * B[k][p]) per problem, with A = the constant operand (weights minus
# their zero point) and B = the runtime one (activations minus theirs), both in [-255, 255] as int16.
# vpmaddwd multiplies int16 pairs and adds each pair into an int32 lane, so:
# - A is packed at compile time as int32 pairs [groups][ceil(M/MR)][ceil(K/2)][MR] (one broadcast per row);
# - B is packed at run time by an op-specific callback (im2col for convolutions, rows of a transposed for
#   matmuls) into a stack buffer [ceil(K/2)][W][2], W = S panels of NR columns side by side;
# - an MR x NR tile of int32 accumulators stays in registers (noinline leaf: gcc then allocates all of
#   them), and the epilogue requantizes the finished tile.
# When K does not fit one panel, K is split into blocks whose partial sums (all row blocks) stay in a
# second stack buffer; past that size, B is packed again per row block.
QG_BUF_BYTES = 128 * 1024  # packed B per thread (L2)
QG_PART_BYTES = 32 * 1024  # partial sums when K is split
QG_MAX_K = 33025  # K * 255^2 must fit in int32
QG_MAX_PANELS = 4  # panels packed together (amortizes the packing's per-k work)

QG_JOB = f"""#define PDC_QG_BUF {QG_BUF_BYTES // 2}
#define PDC_QG_PART {QG_PART_BYTES // 4}
/* Packs rows k0..k1 of problem prob's B, columns p0..p0+np, into buf as [k pair][ld / 2][2] (zero padded). */
typedef void (*pdc_qg_pack_fn)(const void *pj, int64_t prob, int64_t p0, int64_t np, int64_t k0, int64_t k1,
                               int16_t *buf, int64_t ld);
typedef struct {{
    const int32_t *ap;   /* packed A */
    pdc_qg_pack_fn pack;
    const void *pj;      /* the pack callback's job */
    const int32_t *bias; /* per row (of all groups), or NULL */
    const double *mult;  /* requantization multiplier per row (ms = 1) or one */
    void *y;             /* element (prob, i, p) at prob * ys + i * rs + p * cs */
    double zp;
    int64_t M, K, npix, nprob, G, S, kb, ms, ys, rs, cs;
}} pdc_qg_job;
"""

QG_RUN = """static void @NAME@(void *vj, int64_t t0, int64_t t1) {
    const pdc_qg_job *j = (const pdc_qg_job *)vj;
    const int64_t M = j->M, K = j->K, k2 = (K + 1) / 2, mb = (M + @MR@ - 1) / @MR@, W = j->S * @NR@;
    const int64_t P = (j->npix + W - 1) / W, kb = j->kb;
    int16_t buf[PDC_QG_BUF];
    int32_t tile[@MR@ * @NR@];
    for (int64_t t = t0; t < t1; t++) {
        const int64_t prob = t / P, p0 = (t % P) * W, np = j->npix - p0 < W ? j->npix - p0 : W;
        const int64_t base = (prob % j->G) * M;  /* first row of this group (bias, multiplier) */
        const int32_t *ag = j->ap + (prob % j->G) * mb * k2 * @MR@;
        @TY@ *yp = (@TY@ *)j->y + prob * j->ys + p0 * j->cs;
#define PDC_QG_STORE(tl, m, s) do { \\
            const int64_t i0 = (m) * @MR@, rows = M - i0 < @MR@ ? M - i0 : @MR@; \\
            const int64_t q0 = (s) * @NR@, cols = np - q0 < @NR@ ? np - q0 : @NR@; \\
            @STORE@(tl, @NR@, rows, cols, j->bias ? j->bias + base + i0 : 0, j->mult + (base + i0) * j->ms, j->ms, \\
                    j->zp, yp + i0 * j->rs + q0 * j->cs, j->rs, j->cs); } while (0)
        if (K <= kb) {  /* the whole K in one packed block of S panels */
            j->pack(j->pj, prob, p0, np, 0, K, buf, 2 * W);
            for (int64_t m = 0; m < mb; m++)
                for (int64_t s = 0; s * @NR@ < np; s++) {
                    @KERNEL@(ag + m * k2 * @MR@, buf + s * 2 * @NR@, 2 * W, k2, tile, 0);
                    PDC_QG_STORE(tile, m, s);
                }
        } else if (mb * @MR@ * @NR@ <= PDC_QG_PART) {  /* K blocks (S = 1), partial sums kept */
            int32_t part[PDC_QG_PART];
            for (int64_t k0 = 0; k0 < K; k0 += kb) {
                const int64_t k1 = K - k0 < kb ? K : k0 + kb;
                j->pack(j->pj, prob, p0, np, k0, k1, buf, 2 * @NR@);
                for (int64_t m = 0; m < mb; m++)
                    @KERNEL@(ag + (m * k2 + k0 / 2) * @MR@, buf, 2 * @NR@, (k1 - k0 + 1) / 2, part + m * @MR@ * @NR@, k0 > 0);
            }
            for (int64_t m = 0; m < mb; m++) PDC_QG_STORE(part + m * @MR@ * @NR@, m, 0);
        } else {  /* K blocks, packed again per row block */
            for (int64_t m = 0; m < mb; m++) {
                for (int64_t k0 = 0; k0 < K; k0 += kb) {
                    const int64_t k1 = K - k0 < kb ? K : k0 + kb;
                    j->pack(j->pj, prob, p0, np, k0, k1, buf, 2 * @NR@);
                    @KERNEL@(ag + (m * k2 + k0 / 2) * @MR@, buf, 2 * @NR@, (k1 - k0 + 1) / 2, tile, k0 > 0);
                }
                PDC_QG_STORE(tile, m, 0);
            }
        }
#undef PDC_QG_STORE
    }
}
"""


def qg_tile(ctx: KernelContext) -> tuple[int, int]:
    """(MR, NR): 16 x 16 zmm accumulators (AVX-512BW) or 6 x 8 ymm ones (AVX2, 16 registers)."""
    return (16, 16) if ctx.config.vector_bits >= 512 else (6, 8)


def qg_plan(K: int, nr: int) -> tuple[int, int]:
    """(S panels packed together, K block): the whole K when one panel of it fits the buffer."""
    pair_bytes = nr * 4  # one k pair of one panel
    k2 = -(-K // 2)
    s = min(QG_MAX_PANELS, QG_BUF_BYTES // (k2 * pair_bytes)) if k2 else QG_MAX_PANELS
    if s >= 1:
        return s, max(K, 2)
    return 1, QG_BUF_BYTES // pair_bytes * 2


def pack_a_pairs(a: np.ndarray, mr: int) -> np.ndarray:
    """(G, M, K) int16 -> (G, ceil(M/MR), ceil(K/2), MR) int32 pairs, zero padded."""
    g, m, k = a.shape
    mb, k2 = -(-m // mr), -(-k // 2)
    p = np.zeros((g, mb * mr, k2 * 2), np.int16)
    p[:, :m, :k] = a
    p = np.ascontiguousarray(p.reshape(g, mb, mr, k2, 2).transpose(0, 1, 3, 2, 4))
    return p.view(np.int32).reshape(g, mb, k2, mr)


def _qg_kernel(ctx: KernelContext, mr: int, nr: int) -> str:
    """The tile kernel (a native piece: x86/quant.py has it in AVX-512BW / AVX2 vpmaddwd)."""
    name = f"pdc_qg_kernel_{mr}x{nr}"
    code = f"""@native qg_include @end
/* c[MR][NR] (+)= A panel [k2][MR] (int16 pairs) x B panel [k2][ldb] (NR int16 pairs used) */
static __attribute__((noinline)) void {name}(const int32_t *ap, const int16_t *bp, int64_t ldb, int64_t k2,
                                              int32_t *c, int acc) {{
@native qg_kernel
    for (int r = 0; r < {mr}; r++)
        for (int j = 0; j < {nr}; j++) {{
            uint32_t s = acc ? (uint32_t)c[r * {nr} + j] : 0u;
            for (int64_t k = 0; k < k2; k++) {{
                const uint32_t a = (uint32_t)ap[k * {mr} + r];
                s += (uint32_t)((int32_t)(int16_t)(a & 0xffffu) * bp[k * ldb + 2 * j]
                              + (int32_t)(int16_t)(a >> 16) * bp[k * ldb + 2 * j + 1]);
            }}
            c[r * {nr} + j] = (int32_t)s;
        }}
@end
}}
"""
    return ctx.helper(name, native.fill(ctx, code, mr=mr, nr=nr))


def _qg_store(ctx: KernelContext, out_dt) -> str:
    """Requantizes a finished tile: y[r*rs + j*cs] = saturate(rint((tile + bias[r]) * mult[r*ms] + zp))."""
    t = ctx.ctype(out_dt)
    lo, hi = _int_range(out_dt)
    name = f"pdc_qg_store_{out_dt.short}"
    code = f"""#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
static void {name}(const int32_t *tile, int64_t nr, int64_t rows, int64_t cols, const int32_t *bias,
                   const double *mult, int64_t ms, double zp, {t} *y, int64_t rs, int64_t cs) {{
    for (int64_t r = 0; r < rows; r++) {{
        const double b = bias ? (double)bias[r] : 0.0, m = mult[r * ms];
        {t} *yr = y + r * rs;
        for (int64_t j = 0; j < cols; j++) {{
            double v = ((double)tile[r * nr + j] + b) * m;
            v = v + zp;
            v = rint(v);
            v = v < {lo}.0 ? {lo}.0 : (v > {hi}.0 ? {hi}.0 : v);
            yr[j * cs] = ({t})(int32_t)v;
        }}
    }}
}}
#pragma GCC pop_options
"""
    return ctx.helper(name, code)


def qg_call(ctx: KernelContext, *, a: np.ndarray, pack: str, pj: str, bias: str, mult: str, ms: int, zp: str,
            y_dt, npix: int, nprob: int, ys: int, rs: int, cs: int) -> list[str]:
    """C lines that run the GEMM: a is the constant operand (G, M, K) int16 (already minus its zero point)."""
    G, M, K = a.shape
    mr, nr = qg_tile(ctx)
    S, kb = qg_plan(K, nr)
    kern, store = _qg_kernel(ctx, mr, nr), _qg_store(ctx, y_dt)
    name = f"pdc_qg_run_{mr}x{nr}_{y_dt.short}"
    ctx.helper("pdc_qg_job", QG_JOB)
    ctx.helper(name, _fill(QG_RUN, NAME=name, MR=mr, NR=nr, TY=ctx.ctype(y_dt), KERNEL=kern, STORE=store))
    tasks = nprob * -(-npix // (S * nr))
    lines = ["    pdc_qg_job g;",
             f"    g.ap = {add_weight(ctx, pack_a_pairs(a, mr), 'int32_t')}; g.pack = {pack}; g.pj = {pj};",
             f"    g.bias = {bias}; g.mult = {mult}; g.y = (void *)out0; g.zp = {zp};",
             f"    g.M = {M}; g.K = {K}; g.npix = {npix}; g.nprob = {nprob}; g.G = {G}; g.S = {S}; g.kb = {kb};",
             f"    g.ms = {ms}; g.ys = {ys}; g.rs = {rs}; g.cs = {cs};"]
    if ctx.split(nprob * npix * M * K, PARALLEL_MIN_MACS) and tasks > 1:
        lines.append(f"    pdc_parallel_for({tasks}, {name}, (void *)&g);")
    else:
        lines.append(f"    {name}((void *)&g, 0, {tasks});")
    return lines


# ---- QLinearMatMul with a constant b: y^T = (b - zb)^T (a - za)^T, rows of a packed as B panels -------
QMG_JOB = """typedef struct {
    const void *a, *za;  /* a, its zero point: one, or one per row of a (za_r = 1) */
    int64_t K, za_r;
} pdc_qmg_job;
"""

QMG_PACK = """static void @NAME@(const void *pj, int64_t prob, int64_t p0, int64_t np, int64_t k0, int64_t k1,
                   int16_t *buf, int64_t ld) {
    const pdc_qmg_job *j = (const pdc_qmg_job *)pj;
    const @TA@ *A = (const @TA@ *)j->a, *ZA = (const @TA@ *)j->za;
    const int64_t K = j->K, n2 = (k1 - k0 + 1) / 2;
    (void)prob;
    for (int64_t q = 0; q < ld / 2; q++) {
        int16_t *d = buf + 2 * q;
        if (q >= np) {
            for (int64_t k = 0; k < n2; k++) { d[k * ld] = 0; d[k * ld + 1] = 0; }
            continue;
        }
        const @TA@ *row = A + (p0 + q) * K;
        const int32_t z = ZA ? (int32_t)ZA[j->za_r ? p0 + q : 0] : 0;
        int64_t k = k0;
        for (; k + 1 < k1; k += 2) {
            d[(k - k0) / 2 * ld] = (int16_t)((int32_t)row[k] - z);
            d[(k - k0) / 2 * ld + 1] = (int16_t)((int32_t)row[k + 1] - z);
        }
        if (k < k1) { d[(k - k0) / 2 * ld] = (int16_t)((int32_t)row[k] - z); d[(k - k0) / 2 * ld + 1] = 0; }
    }
}
"""


def _qlinear_matmul_gemm(ctx: KernelContext):
    """The fast path's kernel body, or None when its conditions do not hold: b constant 2-D with a
    constant zero point, a_scale / y_scale / y_zero_point per tensor, a_zero_point per tensor or per
    row of a 2-D a, b_scale per tensor or per column."""
    T = ctx.inputs
    a_s, b_s = T[0].shape, T[3].shape
    b, zb = ctx.const(3), (ctx.const(5) if ctx.has_input(5) else np.zeros((), T[3].dtype.np))
    if b is None or zb is None or len(b_s) != 2 or len(a_s) < 1:
        return None
    K, N = b_s
    R = math.prod(a_s[:-1])
    size = lambda i: math.prod(T[i].shape)  # noqa: E731
    if K > QG_MAX_K or N < 4 or R * N * K == 0 or size(1) != 1 or size(6) != 1 or size(7) != 1:
        return None
    if zb.size not in (1, N) or (zb.size == N and zb.shape not in ((N,), (1, N))):
        return None
    if size(4) not in (1, N) or (size(4) == N and tuple(T[4].shape) not in ((N,), (1, N))):
        return None
    za_r = ctx.has_input(2) and size(2) > 1
    if za_r and not (len(a_s) == 2 and tuple(T[2].shape) == (a_s[0],)):
        return None
    consts = [ctx.const(i) for i in (1, 4, 6)]
    lines = []
    if all(c is not None for c in consts):
        table = _mult_table(ctx, consts[0].reshape(()), consts[1].reshape(-1), consts[2].reshape(()), y_first=True)
        mult, ms = add_weight(ctx, table.reshape(-1), "double"), int(table.size > 1)
    else:
        if N > 8192:
            return None
        ld = lambda i, idx: ctx.load(T[i].dtype, f"in{i}[{idx}]")  # noqa: E731
        ms = int(size(4) > 1)
        expr = _mult_expr(ctx, T[1].dtype, T[4].dtype, T[6].dtype, ld(1, "0"), ld(4, "n" if ms else "0"),
                          ld(6, "0"), y_first=True)
        lines += [f"    double mult[{N if ms else 1}];",
                  f"    for (int64_t n = 0; n < {N if ms else 1}; n++) mult[n] = (double)({expr});"]
        mult = "mult"
    bz = zb.reshape(-1).astype(np.int32)
    bp = (b.astype(np.int32) - (bz if bz.size > 1 else bz[0])).astype(np.int16)  # [K, N]
    a_dt = T[0].dtype
    pack = f"pdc_qmg_pack_{a_dt.short}"
    ctx.helper("pdc_qmg_job", QMG_JOB)
    ctx.helper(pack, _fill(QMG_PACK, NAME=pack, TA=ctx.ctype(a_dt)))
    lines += ["    pdc_qmg_job pj;",
              f"    pj.a = in0; pj.za = {'in2' if ctx.has_input(2) else '0'}; pj.K = {K}; pj.za_r = {int(za_r)};"]
    return "\n".join(lines + qg_call(ctx, a=bp.T[None], pack=pack, pj="(const void *)&pj", bias="0", mult=mult,
                                     ms=ms, zp="(double)in7[0]", y_dt=T[7].dtype, npix=R, nprob=1, ys=0, rs=1, cs=N))


# ---- QLinearConv --------------------------------------------------------------------------------------
MAX_SPATIAL = 4
MAX_TAPS = 256  # taps over the leading kernel dims kept in a table (beyond: decoded per use)
MAX_KW = 64  # last-dim taps whose valid output ranges are precomputed

QCONV_JOB = f"""#define PDC_QCONV_MAXS {MAX_SPATIAL}
#define PDC_QCONV_MAXTAPS {MAX_TAPS}
#define PDC_QCONV_MAXKW {MAX_KW}
#define PDC_QCONV_CHUNK {CHUNK}
#define PDC_QG_MAXW {QG_MAX_PANELS * 16}
/* One quantized N-D convolution: x [N][C][in...], w [M][C/G][k...], y [N][M][out...].
   The GEMM path reads x and the geometry (its pack callback); the direct loops read everything. */
typedef struct {{
    const void *x, *w, *wz;
    const int32_t *bias;
    const double *mult;  /* requantization multiplier per output channel (mult_m = 1) or one */
    void *y;
    double zp;
    int64_t N, C, M, G, ns, npix, K, ksize, xz, wz_m, mult_m;
    int64_t in[PDC_QCONV_MAXS], out[PDC_QCONV_MAXS], k[PDC_QCONV_MAXS];
    int64_t s[PDC_QCONV_MAXS], d[PDC_QCONV_MAXS], pb[PDC_QCONV_MAXS];
}} pdc_qconv_job;

static inline int64_t pdc_qconv_cdiv(int64_t a, int64_t b) {{ return a >= 0 ? (a + b - 1) / b : -((-a) / b); }}
static inline int64_t pdc_qconv_fdiv(int64_t a, int64_t b) {{ return a >= 0 ? a / b : -((-a + b - 1) / b); }}
/* Offsets (tap index * dilation) of a tap over the leading ns - 1 kernel dims. */
static void pdc_qconv_tap(const pdc_qconv_job *j, int64_t tap, int64_t *off) {{
    for (int64_t t = j->ns - 2; t >= 0; t--) {{ off[t] = (tap % j->k[t]) * j->d[t]; tap /= j->k[t]; }}
}}
"""

QCONV_DIRECT = """static void @NAME@(void *vj, int64_t r0, int64_t r1) {
    const pdc_qconv_job *j = (const pdc_qconv_job *)vj;
    const @TX@ *X = (const @TX@ *)j->x;
    const @TW@ *W = (const @TW@ *)j->w;
    const @TW@ *WZ = (const @TW@ *)j->wz;
    @TY@ *Y = (@TY@ *)j->y;
    const int64_t ns = j->ns, C = j->C, M = j->M, cg = C / j->G, mg = M / j->G;
    const int64_t OW = j->out[ns - 1], IW = j->in[ns - 1], KW = j->k[ns - 1];
    const int64_t SW = j->s[ns - 1], DW = j->d[ns - 1], PW = j->pb[ns - 1];
    const int32_t xz = (int32_t)j->xz;
    int64_t orows = 1, taps = 1, inplane = 1;
    for (int64_t t = 0; t < ns - 1; t++) { orows *= j->out[t]; taps *= j->k[t]; }
    for (int64_t t = 0; t < ns; t++) inplane *= j->in[t];
    /* per task: the leading taps' offsets and, per last-dim tap, the output columns that read inside x */
    int64_t ttab[PDC_QCONV_MAXTAPS][PDC_QCONV_MAXS];
    const int tab = taps <= PDC_QCONV_MAXTAPS;
    if (tab) for (int64_t tap = 0; tap < taps; tap++) pdc_qconv_tap(j, tap, ttab[tap]);
    int64_t wlo[PDC_QCONV_MAXKW], whi[PDC_QCONV_MAXKW];
    for (int64_t kw = 0; kw < KW && kw < PDC_QCONV_MAXKW; kw++) {
        wlo[kw] = pdc_qconv_cdiv(PW - kw * DW, SW);
        whi[kw] = pdc_qconv_fdiv(IW - 1 + PW - kw * DW, SW) + 1;
    }
    @ACC@ acc[PDC_QCONV_CHUNK];
    double accd[PDC_QCONV_CHUNK], mul[PDC_QCONV_CHUNK], zy[PDC_QCONV_CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t orow = r % orows, nm = r / orows, m = nm % M, n = nm / M, g = m / mg;
        int64_t o[PDC_QCONV_MAXS];
        for (int64_t t = ns - 2, q = orow; t >= 0; t--) { o[t] = q % j->out[t]; q /= j->out[t]; }
        const int32_t wz = WZ ? (int32_t)WZ[m * j->wz_m] : 0;
        const double bias = j->bias ? (double)j->bias[m] : 0.0, mr = j->mult[m * j->mult_m];
        for (int64_t w0 = 0; w0 < OW; w0 += PDC_QCONV_CHUNK) {
            const int64_t wc = OW - w0 < PDC_QCONV_CHUNK ? OW - w0 : PDC_QCONV_CHUNK;
            for (int64_t c = 0; c < wc; c++) acc[c] = 0;
            @ACC@ *a = acc - w0;  /* indexed by output column */
            for (int64_t c = 0; c < cg; c++) {
                const @TX@ *xplane = X + (n * C + g * cg + c) * inplane;
                const @TW@ *wch = W + (m * cg + c) * taps * KW;
                for (int64_t tap = 0; tap < taps; tap++) {
                    int64_t tmp[PDC_QCONV_MAXS];
                    const int64_t *kd = tab ? ttab[tap] : (pdc_qconv_tap(j, tap, tmp), tmp);
                    int64_t xoff = 0, ok = 1;
                    for (int64_t t = 0; t < ns - 1; t++) {
                        const int64_t it = o[t] * j->s[t] + kd[t] - j->pb[t];
                        if (it < 0 || it >= j->in[t]) { ok = 0; break; }
                        xoff = xoff * j->in[t] + it;
                    }
                    if (!ok) continue;
                    const @TX@ *xrow = xplane + xoff * IW;
                    const @TW@ *wrow = wch + tap * KW;
                    for (int64_t kw = 0; kw < KW; kw++) {
                        const int32_t wv = (int32_t)wrow[kw] - wz;
                        const int64_t shift = kw * DW - PW;  /* output column ow reads input column ow * SW + shift */
                        int64_t lo = kw < PDC_QCONV_MAXKW ? wlo[kw] : pdc_qconv_cdiv(-shift, SW);
                        int64_t hi = kw < PDC_QCONV_MAXKW ? whi[kw] : pdc_qconv_fdiv(IW - 1 - shift, SW) + 1;
                        if (lo < w0) lo = w0;
                        if (hi > w0 + wc) hi = w0 + wc;
                        if (lo >= hi || wv == 0) continue;
                        if (SW == 1) {
                            const @TX@ *xs = xrow + shift;
                            for (int64_t ow = lo; ow < hi; ow++) a[ow] += (@ACC@)(wv * ((int32_t)xs[ow] - xz));
                        } else {
                            for (int64_t ow = lo; ow < hi; ow++) a[ow] += (@ACC@)(wv * ((int32_t)xrow[ow * SW + shift] - xz));
                        }
                    }
                }
            }
            for (int64_t c = 0; c < wc; c++) { accd[c] = (double)acc[c] + bias; mul[c] = mr; zy[c] = j->zp; }
            @REQUANT@(accd, mul, zy, Y + r * OW + w0, wc);
        }
    }
}
"""

QCONV_PACK = """/* The B block of the convolution GEMM for problem (image, group) prob: rows k0..k1 of
   im2col(x - x_zero_point), output pixels p0..p0+np, as [k pair][ld / 2][2] int16, zero padded. The
   pixels are cut into segments along the last output dim, where input columns are affine in output ones. */
static void @NAME@(const void *pj, int64_t prob, int64_t p0, int64_t np, int64_t k0, int64_t k1,
                   int16_t *buf, int64_t ld) {
    const pdc_qconv_job *j = (const pdc_qconv_job *)pj;
    const int64_t ns = j->ns, ksize = j->ksize, L = ns - 1, cg = j->C / j->G;
    const int64_t OW = j->out[L], IW = j->in[L], KW = j->k[L], SW = j->s[L], DW = j->d[L], PW = j->pb[L];
    const int32_t xz = (int32_t)j->xz;
    int64_t inplane = 1;
    for (int64_t t = 0; t < ns; t++) inplane *= j->in[t];
    const @TX@ *xg = (const @TX@ *)j->x + ((prob / j->G) * j->C + (prob % j->G) * cg) * inplane;
    /* segments: pixels q0..q0+len sharing the leading output coords, from output column ow0 */
    int64_t nseg = 0, sq[PDC_QG_MAXW], slen[PDC_QG_MAXW], sow[PDC_QG_MAXW], sbase[PDC_QG_MAXW][PDC_QCONV_MAXS];
    for (int64_t q = 0; q < np;) {
        const int64_t p = p0 + q, ow = p % OW, len = OW - ow < np - q ? OW - ow : np - q;
        for (int64_t t = L - 1, r = p / OW; t >= 0; t--) { sbase[nseg][t] = (r % j->out[t]) * j->s[t] - j->pb[t]; r /= j->out[t]; }
        sq[nseg] = q; slen[nseg] = len; sow[nseg] = ow;
        nseg++;
        q += len;
    }
    /* per last-dim tap: the output columns reading inside x */
    int64_t wlo[PDC_QCONV_MAXKW], whi[PDC_QCONV_MAXKW];
    for (int64_t kw = 0; kw < KW && kw < PDC_QCONV_MAXKW; kw++) {
        wlo[kw] = pdc_qconv_cdiv(PW - kw * DW, SW);
        whi[kw] = pdc_qconv_fdiv(IW - 1 + PW - kw * DW, SW) + 1;
    }
    int64_t c = k0 / ksize, kt[PDC_QCONV_MAXS];
    for (int64_t t = L, tap = k0 % ksize; t >= 0; t--) { kt[t] = tap % j->k[t]; tap /= j->k[t]; }
    for (int64_t k = k0; k < k1; k++) {
        int16_t *dst = buf + ((k - k0) >> 1) * ld + ((k - k0) & 1);
        const @TX@ *xc = xg + c * inplane;
        const int64_t kw = kt[L], shift = kw * DW - PW;
        const int64_t lo_all = kw < PDC_QCONV_MAXKW ? wlo[kw] : pdc_qconv_cdiv(-shift, SW);
        const int64_t hi_all = kw < PDC_QCONV_MAXKW ? whi[kw] : pdc_qconv_fdiv(IW - 1 - shift, SW) + 1;
        for (int64_t sg = 0; sg < nseg; sg++) {
            int16_t *d = dst + 2 * (sq[sg] - sow[sg]);  /* indexed by output column */
            const int64_t a = sow[sg], b = a + slen[sg];
            int64_t off = 0, ok = 1;
            for (int64_t t = 0; t < L; t++) {
                const int64_t i = sbase[sg][t] + kt[t] * j->d[t];
                if ((uint64_t)i >= (uint64_t)j->in[t]) { ok = 0; break; }
                off = off * j->in[t] + i;
            }
            int64_t lo = lo_all > a ? lo_all : a, hi = hi_all < b ? hi_all : b;
            if (!ok || lo >= hi) { lo = b; hi = b; }
            for (int64_t ow = a; ow < lo; ow++) d[2 * ow] = 0;
            const @TX@ *xr = xc + off * IW + shift;
            if (SW == 1) for (int64_t ow = lo; ow < hi; ow++) d[2 * ow] = (int16_t)((int32_t)xr[ow] - xz);
            else for (int64_t ow = lo; ow < hi; ow++) d[2 * ow] = (int16_t)((int32_t)xr[ow * SW] - xz);
            for (int64_t ow = hi; ow < b; ow++) d[2 * ow] = 0;
        }
        for (int64_t q = np; q < ld / 2; q++) dst[2 * q] = 0;
        for (int64_t t = L; t >= 0; t--) {  /* next tap, then next channel */
            if (++kt[t] < j->k[t]) break;
            kt[t] = 0;
            if (t == 0) c++;
        }
    }
    if ((k1 - k0) & 1) {
        int16_t *dst = buf + ((k1 - k0) >> 1) * ld + 1;
        for (int64_t q = 0; q < ld / 2; q++) dst[2 * q] = 0;
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
    outs = list(ys[2:])
    if math.prod(ys) == 0:
        return "    (void)in0; (void)out0;"
    cg, mg, ksize = C // G, M // G, math.prod(kernel_shape)
    K, npix = cg * ksize, math.prod(outs)
    x_dt, w_dt, y_dt = T[0].dtype, T[3].dtype, T[7].dtype
    w, wz = ctx.const(3), (ctx.const(5) if ctx.has_input(5) else np.zeros((), w_dt.np))
    lines = ["    pdc_qconv_job j;", "    memset(&j, 0, sizeof j);"]
    # the requantization multiplier per output channel: folded, or computed here from the scales
    consts = [ctx.const(i) for i in (1, 4, 6)]
    if all(c is not None for c in consts):
        wsc = consts[1].reshape(-1) if consts[1].size > 1 else consts[1].reshape(())
        table = _mult_table(ctx, consts[0].reshape(()), wsc, consts[2].reshape(()), y_first=False).reshape(-1)
        mult, mult_m = add_weight(ctx, table, "double"), int(table.size > 1)
    else:
        mult_m = int(math.prod(T[4].shape) > 1)
        nm = M if mult_m else 1
        if nm > 16384:
            ctx.fail(f"{M} output channels with per-channel scales known only at run time: at most 16384")
        ld = lambda i, idx: ctx.load(T[i].dtype, f"in{i}[{idx}]")  # noqa: E731
        expr = _mult_expr(ctx, T[1].dtype, T[4].dtype, T[6].dtype, ld(1, "0"), ld(4, "m" if mult_m else "0"),
                          ld(6, "0"), y_first=False)
        lines += [f"    double mult[{nm}];", f"    for (int64_t m = 0; m < {nm}; m++) mult[m] = (double)({expr});"]
        mult = "mult"
    bias = "in8" if ctx.has_input(8) else "0"
    zp = "(double)in7[0]" if ctx.has_input(7) else "0.0"
    lines += [f"    j.x = in0; j.bias = {bias}; j.mult = {mult}; j.y = (void *)out0;",
              f"    j.xz = {'(int64_t)in2[0]' if ctx.has_input(2) else '0'}; j.zp = {zp};",
              f"    j.N = {N}; j.C = {C}; j.M = {M}; j.G = {G}; j.ns = {ns}; j.npix = {npix}; "
              f"j.K = {K}; j.ksize = {ksize}; j.mult_m = {mult_m};"]
    for t in range(ns):
        lines.append(f"    j.in[{t}] = {xs[2 + t]}; j.out[{t}] = {outs[t]}; j.k[{t}] = {kernel_shape[t]}; "
                     f"j.s[{t}] = {strides_[t]}; j.d[{t}] = {dil[t]}; j.pb[{t}] = {pads[t]};")
    ctx.helper("pdc_qconv_job", QCONV_JOB)
    if w is not None and wz is not None and mg >= 4 and K <= QG_MAX_K:
        # the GEMM: one problem per (image, group), rows = the group's output channels, columns = pixels
        wzz = wz.reshape(-1).astype(np.int32)
        wzz = wzz.reshape((-1,) + (1,) * (len(ws) - 1)) if wzz.size > 1 else wzz.reshape(())
        a = (w.astype(np.int32) - wzz).astype(np.int16).reshape(G, mg, K)
        pack = f"pdc_qconv_pack_{x_dt.short}"
        ctx.helper(pack, _fill(QCONV_PACK, NAME=pack, TX=ctx.ctype(x_dt)))
        return "\n".join(lines + qg_call(ctx, a=a, pack=pack, pj="(const void *)&j", bias=bias, mult=mult,
                                         ms=mult_m, zp=zp, y_dt=y_dt, npix=npix, nprob=N * G, ys=mg * npix,
                                         rs=npix, cs=1))
    # direct loops: depthwise-like groups, runtime weights; |x - zx| and |w - zw| <= 255, the bias in double
    acc = "int32_t" if K * 255 * 255 < 2 ** 31 else "int64_t"
    lines.append(f"    j.w = in3; j.wz = {'in5' if ctx.has_input(5) else '0'}; "
                 f"j.wz_m = {int(ctx.has_input(5) and math.prod(T[5].shape) > 1)};")
    name = f"pdc_qconv_direct_{x_dt.short}_{w_dt.short}_{y_dt.short}_{acc[:5]}"
    ctx.helper(name, _fill(QCONV_DIRECT, NAME=name, TX=ctx.ctype(x_dt), TW=ctx.ctype(w_dt),
                           TY=ctx.ctype(y_dt), ACC=acc, REQUANT=_requant_helper(ctx, y_dt)))
    rows = N * M * math.prod(outs[:-1])
    if ctx.split(math.prod(ys) * K, PARALLEL_MIN_MACS) and rows > 1:
        lines.append(f"    pdc_parallel_for({rows}, {name}, (void *)&j);")
    else:
        lines.append(f"    {name}((void *)&j, 0, {rows});")
    return "\n".join(lines)
