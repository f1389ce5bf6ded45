"""pdc's integer ops (pdc/ir/ops/qint.py): qconv, qmatmul, requantize and qadd, in portable C.

Numerics are the NumPy references', bit for bit:
- products are accumulated in int32 (int64 when the weights could overflow it: the bound
  max|x| * sum|w| is checked per output channel at compile time);
- the requantization is the reference's float32 rule, one IEEE operation per step: (float)acc
  (acc + bias formed in int64), times the channel's float32 scale, clamped in float to
  [lo - y_zero, hi - y_zero] (`clamp`, else the output type's range), rounded half to even by
  adding and subtracting 1.5 * 2^23 (exact for |v| < 2^22, which the clamp guarantees; gcc does
  not fold it without -ffast-math, and the clamp between the product and the sum keeps them from
  being contracted into an fma), + y_zero. qadd's two fmas are fmaf (one rounding each).
Layouts (weights and bias are constants, packed at compile time):
- qconv (2-D, NCHW): the weights stay [M][K] with K = (c, kh, kw) per output channel, as w is;
  a block of up to PB output pixels of one output row is gathered into a per-thread im2col buffer
  [PB][K] in x's own type, padding taps holding x_zero, so each output is one contiguous dot
  product over K of x-typed by int8 values. x_zero * sum(w) is folded into an int64 bias (padding
  taps then contribute (x_zero - x_zero) * w = 0, as in the reference). Work units are
  (image, group, output row, pixel block), split over threads with pdc_parallel_slots.
- qmatmul: b [K, N] packed transposed as [N][K]; each output is a dot product of a row of a with a
  row of b^T; a_zero * colsum(b) folded into the bias; units (row of a, column block).
- requantize / qadd: elementwise; qadd broadcasts a and b (dims coalesced at compile time, the
  innermost output dim read with stride 0 or 1 per input).
A per-tensor scale is expanded into a per-channel table (float, M or N entries).
qconv / qmatmul with y_dtype int32 store the accumulators (acc + bias, wrapped to int32 as numpy's
cast does) instead. These are the general path ("portable") of the qconv / qmatmul kernel families:
x86/qint.py's AVX-512 VNNI kernels take what they cover first on x86-avx512.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes
from ...ir.ops.qint import qadd_constant
from ...ir.ops.quant import conv_geometry
from ..context import KernelContext, broadcast_strides
from . import kernel
from .paths import declare, mark
from ..ctypes_c import float_literal
from .quant import add_weight

# the general paths of the families whose native kernels (x86/qint.py) fall back to these
declare("qconv", "portable")
declare("qmatmul", "portable")

PARALLEL_MIN_MACS = 200_000    # convolutions / matmuls smaller than this run on the calling thread
PARALLEL_MIN_ELEMS = 65_536    # elementwise ops: outputs
COL_BYTES = 8192               # im2col block of one thread (pixels x K), in x's type
MAX_PIXELS = 32                # pixels per im2col block
CHUNK = 4096                   # elementwise work unit (outputs)
MAX_DIMS = 8                   # qadd: broadcast dims after coalescing


def _int_range(dt) -> tuple[int, int]:
    info = np.iinfo(dt.np)
    return int(info.min), int(info.max)


def _clamp(ctx: KernelContext) -> tuple[int, int]:
    """[lo, hi]: the `clamp` attribute, else the output type's range (as the reference's _output)."""
    lo, hi = ctx.attrs.get("clamp") or _int_range(ctx.attrs.get("y_dtype", dtypes.int8))
    return int(lo), int(hi)


class QconvGeometry:
    """A 2-D qconv layer's static geometry (NCHW), as the native kernels read it."""

    def __init__(self, ctx: KernelContext):
        N, C, H, W = ctx.inputs[0].shape
        M, cg, KH, KW = ctx.inputs[1].shape
        self.N, self.C, self.H, self.W, self.M, self.cg, self.KH, self.KW = N, C, H, W, M, cg, KH, KW
        self.G = ctx.attrs.get("group", 1) or 1
        self.mg = M // self.G
        self.OH, self.OW = ctx.outputs[0].shape[2:]
        (self.sh, self.sw), (self.dh, self.dw), pads = conv_geometry([H, W], [KH, KW], ctx.attrs)
        self.pt, self.pl, self.pb, self.pr = pads[0], pads[1], pads[2], pads[3]
        self.pointwise = KH == KW == 1 and self.sh == self.sw == 1 and not any(pads)


def native_qconv_weights(ctx: KernelContext):
    """The int8 weights of a qconv the native (x86, arm) kernels take: 2-D (NCHW), constant weights,
    non-empty, int8 / uint8 x, an int8 / uint8 / int32 output; None leaves it to this module."""
    xs, ys = ctx.inputs[0].shape, ctx.outputs[0].shape
    if len(xs) != 4 or ctx.const(1) is None or math.prod(ys) == 0 or math.prod(xs) == 0:
        return None
    if ctx.outputs[0].dtype.short not in ("i8", "u8", "i32") or ctx.inputs[0].dtype.short not in ("i8", "u8"):
        return None
    return np.asarray(ctx.const(1), np.int8)


def native_qmatmul_operands(ctx: KernelContext):
    """(b, K, N, rows of a) of a qmatmul the native (x86, arm) kernels take: a constant 2-D b, int8 /
    uint8 a, an int8 / uint8 / int32 output, a non-empty reduction; None leaves it to this module."""
    a_s, b_s, y_s = ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.outputs[0].shape
    b = ctx.const(1)
    if b is None or len(b_s) != 2 or len(a_s) < 1 or math.prod(y_s) == 0 or b_s[0] == 0:
        return None
    if ctx.outputs[0].dtype.short not in ("i8", "u8", "i32") or ctx.inputs[0].dtype.short not in ("i8", "u8"):
        return None
    return b, b_s[0], b_s[1], math.prod(a_s[:-1])


def _empty(ctx: KernelContext) -> str:
    names = [f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))]
    return "    " + " ".join(f"(void){n};" for n in names)


RQ = """/* clamp(rint(v), lo, hi), ties to even: v clamped first (|lo|, |hi| < 2^22), then rounded by the
   float32 sum with 1.5 * 2^23 */
static inline int32_t pdc_qi_round(float v, int32_t lo, int32_t hi) {
    const float flo = (float)lo, fhi = (float)hi;
    v = v < flo ? flo : (v > fhi ? fhi : v);
    return (int32_t)((v + 12582912.0f) - 12582912.0f);
}
/* clamp(zy + rint((float)acc * sc), lo, hi) */
static inline int32_t pdc_qi_rq(int64_t acc, float sc, int32_t zy, int32_t lo, int32_t hi) {
    return pdc_qi_round((float)acc * sc, lo - zy, hi - zy) + zy;
}
"""


def _rq(ctx: KernelContext) -> str:
    return ctx.helper("pdc_qi_rq", RQ)


def _check_output_type(ctx: KernelContext, accumulators: bool = False) -> None:
    """int8 / uint8 outputs; with `accumulators` (qconv, qmatmul) int32 too: the accumulators themselves."""
    dt = ctx.outputs[0].dtype
    if dt not in (dtypes.int8, dtypes.uint8) and not (accumulators and dt is dtypes.int32):
        ctx.fail(f"output type {dt}: int8 or uint8{' (or int32, the accumulators)' if accumulators else ''} expected")


def _epilogue(ctx: KernelContext, channels: int) -> tuple[dict, str]:
    """qconv / qmatmul's output stage: (job fields scale, yz, lo, hi; the C expression of an
    output from `acc` and `b`, the channel's bias, with the channel's scale `sc`).
    y_dtype int32 asks for the accumulators: acc + bias truncated to int32 (wrapping, as numpy's cast)."""
    if ctx.outputs[0].dtype is dtypes.int32:
        return dict(scale="0", yz=0, lo=0, hi=0), "(int32_t)((int64_t)acc + b)"
    lo, hi = _clamp(ctx)
    return (dict(scale=add_weight(ctx, scale_table(ctx, channels), "float"), yz=int(ctx.attrs.get("y_zero", 0)),
                 lo=lo, hi=hi),
            f"({ctx.ctype(ctx.outputs[0].dtype)})pdc_qi_rq((int64_t)acc + b, sc, yz, lo, hi)")


def scale_table(ctx: KernelContext, channels: int) -> np.ndarray:
    """The float32 [channels] requantization scales (a per-tensor value repeated)."""
    v = np.asarray(ctx.attrs["scale"], np.float32).reshape(-1)
    if v.size not in (1, channels):
        ctx.fail(f"scale has {v.size} values for {channels} output channels (give 1 or {channels})")
    return np.ascontiguousarray(np.broadcast_to(v, (channels,)))


def _acc_type(xdt, w2d: np.ndarray) -> str:
    """int32_t when no partial sum of x * w over a row of w2d [rows, K] can overflow it."""
    xmax = max(abs(v) for v in _int_range(xdt))
    bound = int(np.abs(w2d.astype(np.int64)).sum(axis=1).max(initial=0)) * xmax
    return "int32_t" if bound < 2 ** 31 else "int64_t"


def _bias_table(ctx: KernelContext, w2d: np.ndarray, zero: int, channels: int) -> tuple[str, str]:
    """(int64 [channels] table of bias - zero * sum(w row), runtime bias pointer or 0)."""
    fold = -int(zero) * w2d.astype(np.int64).sum(axis=1)
    runtime = "0"
    if ctx.has_input(2):
        b = ctx.const(2)
        if b is None:
            runtime = "in2"
        else:
            fold = fold + np.asarray(b, np.int64).reshape(-1)
    return add_weight(ctx, np.ascontiguousarray(fold, np.int64).reshape(channels), "int64_t"), runtime


def _dispatch(ctx: KernelContext, fn: str, units: int, work: int, min_work: int) -> str:
    if ctx.split(work, min_work) and units > 1:
        return f"    pdc_parallel_for({units}, {fn}, (void *)&j);"
    return f"    {fn}((void *)&j, 0, {units});"


# ---- qconv ----------------------------------------------------------------------------------------
QCONV_JOB = """/* A 2-D integer convolution: x [N][C][H][W], weights [M][K] (K = C/G x KH x KW), y [N][M][OH][OW]. */
typedef struct {
    const void *x;
    void *y;
    void *col;              /* im2col blocks: slot s at col + s * col_stride elements */
    const int8_t *w;
    const int64_t *bias;    /* bias - x_zero * sum(w), per output channel */
    const int32_t *rbias;   /* a bias known only at run time, or NULL */
    const float *scale;     /* per output channel; NULL for int32 outputs (the accumulators) */
    int64_t col_stride, N, C, H, W, M, G, KH, KW, OH, OW, sh, sw, dh, dw, ph, pw, K, PB, nblk;
    int32_t xz, yz, lo, hi;
} pdc_qi_conv_job;
"""

QCONV_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_qi_conv_job *j = (const pdc_qi_conv_job *)vj;
    const @TX@ *X = (const @TX@ *)j->x;
    @TY@ *Y = (@TY@ *)j->y;
    @TX@ *col = (@TX@ *)j->col + slot * j->col_stride;
    const int8_t *Wt = j->w;
    const int64_t *bias = j->bias;
    const int32_t *rbias = j->rbias;
    const float *scale = j->scale;
    const int64_t C = j->C, H = j->H, W = j->W, M = j->M, G = j->G, KH = j->KH, KW = j->KW;
    const int64_t OH = j->OH, OW = j->OW, sh = j->sh, sw = j->sw, dh = j->dh, dw = j->dw, ph = j->ph, pw = j->pw;
    const int64_t K = j->K, PB = j->PB, nblk = j->nblk, cg = C / G, mg = M / G;
    const int32_t yz = j->yz, lo = j->lo, hi = j->hi;
    const @TX@ xz = (@TX@)j->xz;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t blk = u % nblk, r = u / nblk, oh = r % OH, ng = r / OH, g = ng % G, n = ng / G;
        const int64_t ow0 = blk * PB, np = OW - ow0 < PB ? OW - ow0 : PB;
        const @TX@ *xg = X + (n * C + g * cg) * H * W;
        const int64_t ih0 = oh * sh - ph;
        /* im2col: pixel p's taps in (c, kh, kw) order, x_zero where a tap reads the padding */
        for (int64_t p = 0; p < np; p++) {
            @TX@ *d = col + p * K;
            const int64_t iw0 = (ow0 + p) * sw - pw;
            for (int64_t c = 0; c < cg; c++)
                for (int64_t kh = 0; kh < KH; kh++, d += KW) {
                    const int64_t ih = ih0 + kh * dh;
                    if (ih < 0 || ih >= H) {
                        for (int64_t kw = 0; kw < KW; kw++) d[kw] = xz;
                        continue;
                    }
                    const @TX@ *xr = xg + (c * H + ih) * W;
                    for (int64_t kw = 0; kw < KW; kw++) {
                        const int64_t iw = iw0 + kw * dw;
                        d[kw] = iw >= 0 && iw < W ? xr[iw] : xz;
                    }
                }
        }
        for (int64_t mm = 0; mm < mg; mm++) {
            const int64_t m = g * mg + mm;
            const int8_t *wr = Wt + m * K;
            const int64_t b = bias[m] + (rbias ? (int64_t)rbias[m] : 0);
            const float sc = scale ? scale[m] : 0.0f;
            (void)sc; (void)yz; (void)lo; (void)hi;
            @TY@ *yr = Y + ((n * M + m) * OH + oh) * OW + ow0;
            for (int64_t p = 0; p < np; p++) {
                const @TX@ *cr = col + p * K;
                @ACC@ acc = 0;
                for (int64_t k = 0; k < K; k++) acc += (@ACC@)((int32_t)cr[k] * (int32_t)wr[k]);
                yr[p] = @STORE@;
            }
        }
    }
}
"""


def _fill(template: str, **subs) -> str:
    for k, v in subs.items():
        template = template.replace(f"@{k}@", str(v))
    return template


@kernel("qconv")
def qconv(ctx: KernelContext) -> str:
    xs, ws, ys = ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.outputs[0].shape
    if len(xs) != 4:
        ctx.fail(f"{len(xs) - 2}-D convolution (x {list(xs)}): only 2-D qconv (rank-4 NCHW x) is supported")
    w = ctx.const(1)
    if w is None:
        ctx.fail("the weights w are computed at run time: qconv needs constant weights")
    _check_output_type(ctx, accumulators=True)
    N, C, H, W = xs
    M, cg, KH, KW = ws
    G = ctx.attrs.get("group", 1) or 1
    OH, OW = ys[2], ys[3]
    if math.prod(ys) == 0:
        return mark("qconv", "portable", _empty(ctx))
    strides, dil, pads = conv_geometry([H, W], [KH, KW], ctx.attrs)
    K = cg * KH * KW
    x_dt, y_dt = ctx.inputs[0].dtype, ctx.outputs[0].dtype
    w2d = np.asarray(w, np.int8).reshape(M, K)
    xz = int(ctx.attrs.get("x_zero", 0))
    bias, rbias = _bias_table(ctx, w2d, xz, M)
    out, store = _epilogue(ctx, M)
    acc = _acc_type(x_dt, w2d)
    PB = max(1, min(OW, MAX_PIXELS, COL_BYTES // max(K, 1)))
    nblk = -(-OW // PB)
    units = N * G * OH * nblk
    slots = ctx.slots(ctx.split(N * M * OH * OW * K, PARALLEL_MIN_MACS) and units > 1)
    col, col_stride = ctx.thread_scratch(max(PB * K, 1), slots, ctx.ctype(x_dt), 1)
    name = f"pdc_qi_conv_{x_dt.short}_{y_dt.short}_{acc[:5]}"
    _rq(ctx)
    ctx.helper("pdc_qi_conv_job", QCONV_JOB)
    ctx.helper(name, _fill(QCONV_TASK, NAME=name, TX=ctx.ctype(x_dt), TY=ctx.ctype(y_dt), ACC=acc, STORE=store))
    fields = dict(x="in0", y="(void *)out0", col=f"(void *){col}", w=add_weight(ctx, w2d, "int8_t"), bias=bias,
                  rbias=rbias, col_stride=col_stride, N=N, C=C, H=H, W=W, M=M, G=G,
                  KH=KH, KW=KW, OH=OH, OW=OW, sh=strides[0], sw=strides[1], dh=dil[0], dw=dil[1], ph=pads[0],
                  pw=pads[1], K=K, PB=PB, nblk=nblk, xz=xz, **out)
    lines = ["    pdc_qi_conv_job j;", "    memset(&j, 0, sizeof j);"]
    lines += [f"    j.{k} = {v};" for k, v in fields.items()]
    lines.append("    (void)in1;")
    if slots > 1:
        lines.append(f"    pdc_parallel_slots({units}, {slots}, {name}, (void *)&j);")
    else:
        lines.append(f"    {name}((void *)&j, 0, {units}, 0);")
    return mark("qconv", "portable", "\n".join(lines))


# ---- qmatmul --------------------------------------------------------------------------------------
QMM_JOB = """/* y [R][N] = requant(a [R][K] x b [K][N]), b packed transposed as [N][K]. */
typedef struct {
    const void *a;
    void *y;
    const int8_t *bt;
    const int64_t *bias;    /* bias - a_zero * sum over k of b, per column */
    const int32_t *rbias;   /* a bias known only at run time, or NULL */
    const float *scale;     /* per column; NULL for int32 outputs (the accumulators) */
    int64_t K, N, CB, ncb;
    int32_t yz, lo, hi;
} pdc_qi_matmul_job;
"""

QMM_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1) {
    const pdc_qi_matmul_job *j = (const pdc_qi_matmul_job *)vj;
    const @TA@ *A = (const @TA@ *)j->a;
    @TY@ *Y = (@TY@ *)j->y;
    const int8_t *Bt = j->bt;
    const int64_t *bias = j->bias;
    const int32_t *rbias = j->rbias;
    const float *scale = j->scale;
    const int64_t K = j->K, N = j->N, CB = j->CB, ncb = j->ncb;
    const int32_t yz = j->yz, lo = j->lo, hi = j->hi;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t r = u / ncb, c0 = (u % ncb) * CB, c1 = N - c0 < CB ? N : c0 + CB;
        const @TA@ *ar = A + r * K;
        @TY@ *yr = Y + r * N;
        for (int64_t n = c0; n < c1; n++) {
            const int8_t *br = Bt + n * K;
            @ACC@ acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (@ACC@)((int32_t)ar[k] * (int32_t)br[k]);
            const int64_t b = bias[n] + (rbias ? (int64_t)rbias[n] : 0);
            const float sc = scale ? scale[n] : 0.0f;
            (void)sc; (void)yz; (void)lo; (void)hi;
            yr[n] = @STORE@;
        }
    }
}
"""


@kernel("qmatmul")
def qmatmul(ctx: KernelContext) -> str:
    a_s, b_s = ctx.inputs[0].shape, ctx.inputs[1].shape
    b = ctx.const(1)
    if b is None:
        ctx.fail("b is computed at run time: qmatmul needs a constant b")
    if len(b_s) != 2 or len(a_s) < 1:
        ctx.fail(f"a {list(a_s)} x b {list(b_s)}: a [..., K] and a 2-D b [K, N] expected")
    _check_output_type(ctx, accumulators=True)
    K, N = b_s
    R = math.prod(a_s[:-1])
    if R * N == 0:
        return mark("qmatmul", "portable", _empty(ctx))
    a_dt, y_dt = ctx.inputs[0].dtype, ctx.outputs[0].dtype
    bt = np.ascontiguousarray(np.asarray(b, np.int8).T)  # [N][K]
    bias, rbias = _bias_table(ctx, bt, int(ctx.attrs.get("a_zero", 0)), N)
    out, store = _epilogue(ctx, N)
    acc = _acc_type(a_dt, bt)
    # rows of a are the units; a few rows: columns in blocks too, so that threads share the work
    CB = N if R >= 8 else max(16, -(-N // 8))
    ncb = -(-N // CB)
    name = f"pdc_qi_matmul_{a_dt.short}_{y_dt.short}_{acc[:5]}"
    _rq(ctx)
    ctx.helper("pdc_qi_matmul_job", QMM_JOB)
    ctx.helper(name, _fill(QMM_TASK, NAME=name, TA=ctx.ctype(a_dt), TY=ctx.ctype(y_dt), ACC=acc, STORE=store))
    fields = dict(a="in0", y="(void *)out0", bt=add_weight(ctx, bt, "int8_t"), bias=bias, rbias=rbias, K=K, N=N,
                  CB=CB, ncb=ncb, **out)
    lines = ["    pdc_qi_matmul_job j;", "    memset(&j, 0, sizeof j);"]
    lines += [f"    j.{k} = {v};" for k, v in fields.items()]
    lines.append("    (void)in1;")
    lines.append(_dispatch(ctx, name, R * ncb, R * N * max(K, 1), PARALLEL_MIN_MACS))
    return mark("qmatmul", "portable", "\n".join(lines))


# ---- requantize -----------------------------------------------------------------------------------
RQZ_JOB = """typedef struct {
    const void *x;
    void *y;
    int64_t n;
    float sc;
    int32_t xz, yz, lo, hi;
} pdc_qi_rqz_job;
"""

RQZ_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1) {
    const pdc_qi_rqz_job *j = (const pdc_qi_rqz_job *)vj;
    const @TX@ *X = (const @TX@ *)j->x;
    @TY@ *Y = (@TY@ *)j->y;
    const int64_t n = j->n;
    const float sc = j->sc;
    const int32_t xz = j->xz, yz = j->yz, lo = j->lo, hi = j->hi;
    const int64_t i0 = u0 * @CHUNK@, i1 = u1 * @CHUNK@ < n ? u1 * @CHUNK@ : n;
    for (int64_t i = i0; i < i1; i++) Y[i] = (@TY@)pdc_qi_rq((int64_t)((int32_t)X[i] - xz), sc, yz, lo, hi);
}
"""


@kernel("requantize")
def requantize(ctx: KernelContext) -> str:
    _check_output_type(ctx)
    n = math.prod(ctx.inputs[0].shape)
    if n == 0:
        return _empty(ctx)
    x_dt, y_dt = ctx.inputs[0].dtype, ctx.outputs[0].dtype
    scale = ctx.attrs["scale"]
    if len(scale) != 1:
        ctx.fail(f"requantize takes one scale, got {len(scale)}")
    lo, hi = _clamp(ctx)
    name = f"pdc_qi_rqz_{x_dt.short}_{y_dt.short}"
    _rq(ctx)
    ctx.helper("pdc_qi_rqz_job", RQZ_JOB)
    ctx.helper(name, _fill(RQZ_TASK, NAME=name, TX=ctx.ctype(x_dt), TY=ctx.ctype(y_dt), CHUNK=CHUNK))
    fields = dict(x="in0", y="(void *)out0", n=n, xz=int(ctx.attrs.get("x_zero", 0)), sc=float_literal(scale[0]),
                  yz=int(ctx.attrs.get("y_zero", 0)), lo=lo, hi=hi)
    lines = ["    pdc_qi_rqz_job j;"] + [f"    j.{k} = {v};" for k, v in fields.items()]
    lines.append(_dispatch(ctx, name, -(-n // CHUNK), n, PARALLEL_MIN_ELEMS))
    return "\n".join(lines)


# ---- qadd, qmul ------------------------------------------------------------------------------------
QADD_JOB = f"""#define PDC_QI_MAXD {MAX_DIMS}
/* y = a + b rescaled (or a * b), over rows of the (coalesced) output: outer dims dims[0..nd), inner L; a and b
   read at their strides per outer dim, and at stride ai / bi (0 or 1) along the inner dim. */
typedef struct {{
    const void *a, *b;
    void *y;
    int64_t nd, L, nch, ai, bi;
    int64_t dims[PDC_QI_MAXD], as[PDC_QI_MAXD], bs[PDC_QI_MAXD];
    float ra, rb, c;        /* qadd: the ratios and constant; qmul: ra the scale */
    int32_t az, bz, yz, lo, hi;
}} pdc_qi_add_job;
"""

QADD_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1) {
    const pdc_qi_add_job *j = (const pdc_qi_add_job *)vj;
    const @TA@ *A = (const @TA@ *)j->a;
    const @TB@ *B = (const @TB@ *)j->b;
    @TY@ *Y = (@TY@ *)j->y;
    const int64_t nd = j->nd, L = j->L, nch = j->nch;
    const float ra = j->ra, rb = j->rb, c = j->c;
    const int32_t az = j->az, bz = j->bz, yz = j->yz, lo = j->lo, hi = j->hi;
    (void)ra; (void)rb; (void)c; (void)az; (void)bz; (void)yz;
#define PDC_QI_ADD(ia, ib) @COMBINE@
    for (int64_t u = u0; u < u1; u++) {
        const int64_t r = u / nch, i0 = (u % nch) * @CHUNK@, i1 = L - i0 < @CHUNK@ ? L : i0 + @CHUNK@;
        int64_t ao = 0, bo = 0;
        for (int64_t d = nd - 1, q = r; d >= 0; d--) {
            const int64_t i = q % j->dims[d];
            q /= j->dims[d];
            ao += i * j->as[d];
            bo += i * j->bs[d];
        }
        const @TA@ *ar = A + ao;
        const @TB@ *br = B + bo;
        @TY@ *yr = Y + r * L;
        if (j->ai && j->bi) for (int64_t i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(i, i);
        else if (j->ai) for (int64_t i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(i, 0);
        else if (j->bi) for (int64_t i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(0, i);
        else for (int64_t i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(0, 0);
    }
#undef PDC_QI_ADD
}
"""


def coalesce(out_shape, in_shapes) -> tuple[list[int], list[list[int]]]:
    """The output's dims (size-1 dims dropped, neighbours merged where every input steps through
    both as through one dim) and each input's broadcast strides over them; at least one dim."""
    sts = [broadcast_strides(s, out_shape) for s in in_shapes]
    dims, out_st = [], [[] for _ in in_shapes]
    for d, size in enumerate(out_shape):
        if size == 1:
            continue
        if dims and all(st[-1] == s[d] * size for st, s in zip(out_st, sts)):
            dims[-1] *= size
            for st, s in zip(out_st, sts):
                st[-1] = s[d]
            continue
        dims.append(size)
        for st, s in zip(out_st, sts):
            st.append(s[d])
    if not dims:
        return [1], [[0] for _ in in_shapes]
    return dims, out_st


# the requantized combination of a's and b's codes at ia / ib
COMBINE = {
    "qadd": "pdc_qi_round(fmaf((float)ar[ia], ra, fmaf((float)br[ib], rb, c)), lo, hi)",
    "qmul": "pdc_qi_rq((int64_t)((int32_t)ar[ia] - az) * ((int32_t)br[ib] - bz), ra, yz, lo, hi)",
}


@kernel("qadd", "qmul")
def qadd(ctx: KernelContext) -> str:
    """qadd and qmul: a binary op on broadcast int8 codes, requantized."""
    _check_output_type(ctx)
    ys = ctx.outputs[0].shape
    total = math.prod(ys)
    if total == 0:
        return _empty(ctx)
    dims, (sa, sb) = coalesce(ys, [ctx.inputs[0].shape, ctx.inputs[1].shape])
    if len(dims) - 1 > MAX_DIMS:
        ctx.fail(f"output {list(ys)} broadcasts over {len(dims)} dims: at most {MAX_DIMS + 1} are supported")
    assert sa[-1] in (0, 1) and sb[-1] in (0, 1), (dims, sa, sb)
    L = dims[-1]
    nch = -(-L // CHUNK)
    rows = total // L
    a_dt, b_dt, y_dt = ctx.inputs[0].dtype, ctx.inputs[1].dtype, ctx.outputs[0].dtype
    lo, hi = _clamp(ctx)
    op = ctx.node.op
    name = f"pdc_qi_{op[1:]}_{a_dt.short}_{b_dt.short}_{y_dt.short}"
    _rq(ctx)
    ctx.helper("pdc_qi_add_job", QADD_JOB)
    ctx.helper(name, _fill(QADD_TASK, NAME=name, TA=ctx.ctype(a_dt), TB=ctx.ctype(b_dt), TY=ctx.ctype(y_dt),
                           CHUNK=CHUNK, COMBINE=COMBINE[op]))
    az, bz, yz = (int(ctx.attrs.get(k, 0)) for k in ("a_zero", "b_zero", "y_zero"))
    if op == "qadd":
        ra, rb = ctx.attrs["a_scale"], ctx.attrs["b_scale"]
        c = qadd_constant(ra, az, rb, bz, yz)
    else:
        ra, rb, c = ctx.attrs["scale"][0], 0.0, 0.0
    fields = dict(a="in0", b="in1", y="(void *)out0", nd=len(dims) - 1, L=L, nch=nch, ai=sa[-1], bi=sb[-1],
                  ra=float_literal(ra), rb=float_literal(rb), c=float_literal(c), az=az, bz=bz, yz=yz, lo=lo, hi=hi)
    lines = ["    pdc_qi_add_job j;", "    memset(&j, 0, sizeof j);"]
    lines += [f"    j.{k} = {v};" for k, v in fields.items()]
    for d in range(len(dims) - 1):
        lines.append(f"    j.dims[{d}] = {dims[d]}; j.as[{d}] = {sa[d]}; j.bs[{d}] = {sb[d]};")
    lines.append(_dispatch(ctx, name, rows * nch, total, PARALLEL_MIN_ELEMS))
    return "\n".join(lines)


# ---- lookup ---------------------------------------------------------------------------------------
@kernel("lookup")
def lookup(ctx: KernelContext) -> str:
    """y = table[x - min]: the table is the node's second input (a constant, in the weights)."""
    n = math.prod(ctx.inputs[0].shape)
    if n == 0:
        return _empty(ctx)
    low = _int_range(ctx.inputs[0].dtype)[0]
    return f"    for (int64_t i = 0; i < {n}; i++) out0[i] = in1[(int32_t)in0[i] - ({low})];"
