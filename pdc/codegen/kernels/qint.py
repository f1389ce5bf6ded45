"""pdc's integer ops (pdc/ir/ops/qint.py): qconv, qmatmul, requantize and qadd, in portable C.

Numerics are the NumPy references', bit for bit:
- products are accumulated in int32 (int64 when the weights could overflow it: the bound
  max|x| * sum|w| is checked per output channel at compile time), and acc + bias in int32 too
  where max|x| * sum|w| + |bias| fits it (else int64; see Accumulation);
- the requantization is the reference's float32 rule, one IEEE operation per step: (float)acc
  (the same float from an int32 as from an int64), times the channel's float32 scale, clamped in
  float to [lo - y_zero, hi - y_zero] (`clamp`, else the output type's range), rounded half to even by
  adding and subtracting 1.5 * 2^23 (exact for |v| < 2^22, which the clamp guarantees; gcc does
  not fold it without -ffast-math, and the clamp between the product and the sum keeps them from
  being contracted into an fma), + y_zero. qadd's two fmas are fmaf (one rounding each).
Layouts (weights and bias are constants, packed at compile time):
- qconv (2-D, NCHW): the weights stay [M][K] with K = (c, kh, kw) per output channel, as w is;
  a block of up to PB output pixels of one output row is gathered into a per-thread im2col buffer
  [PB][K] in x's own type, padding taps holding x_zero, so each output is one contiguous dot
  product over K of x-typed by int8 values. x_zero * sum(w) is folded into the bias (padding
  taps then contribute (x_zero - x_zero) * w = 0, as in the reference). Work units are
  (image, group, output row, pixel block), split over threads with pdc_parallel_slots.
- qmatmul: b [K, N] packed transposed as [N][K]; each output is a dot product of a row of a with a
  row of b^T; a_zero * colsum(b) folded into the bias; units (row of a, column block). A b that is not
  constant int8 weights (an activation: run time, b_zero, uint8, batch dims) is read where it lies,
  both zero points subtracted in the loop (_qmatmul_activations); the native kernels decline it.
- requantize / qadd: elementwise; qadd broadcasts a and b (dims coalesced at compile time, the
  innermost output dim read with stride 0 or 1 per input).
A per-tensor scale is expanded into a per-channel table (float, M or N entries). The tasks index in
int32 where every index product fits (a 32-bit core then calls no int64 multiply or divide).
qconv / qmatmul with y_dtype int32 store the accumulators (acc + bias, wrapped to int32 as numpy's
cast does) instead. These are the general path ("portable") of the qconv / qmatmul kernel families:
x86/qint.py's AVX-512 VNNI kernels take what they cover first on x86-avx512.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...ir import dtypes
from ...ir.ops.qint import qadd_constant
from ...ir.ops.quant import conv_geometry
from ..context import KernelContext, broadcast_strides
from . import kernel
from .paths import declare, mark
from ..ctypes_c import float_literal
from .quant import QUANTIZE_ROUND, add_weight

# the general paths of the families whose native kernels (x86/qint.py) fall back to these
declare("qconv", "portable")
declare("qmatmul", "portable")

PARALLEL_MIN_MACS = 200_000    # convolutions / matmuls smaller than this run on the calling thread
PARALLEL_MIN_ELEMS = 65_536    # elementwise ops: outputs
COL_BYTES = 8192               # im2col block of one thread (pixels x K), in x's type
MAX_PIXELS = 32                # pixels per im2col block
CHUNK = 4096                   # elementwise work unit (outputs)
MAX_DIMS = 8                   # qadd, qmatmul of activations: broadcast dims after coalescing
QMADD_HEADER = f"""#ifndef PDC_QI_MAXD
#define PDC_QI_MAXD {MAX_DIMS}
#endif
"""


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


class QconvGrid(QconvGeometry):
    """The flat output grid of the u8 x s8 dot-product kernels (x86 VNNI, Hexagon HVX): the padded input
    split into stride phases, each a plane of Hq x Wq; output (oh, ow) is the flat index
    q = oh * Wq + ow, and tap (kh, kw) reads q + a constant offset in its phase's plane. Columns
    ow >= OW of the grid are computed and dropped."""

    @classmethod
    def window(cls, H: int, W: int, kernel, strides, dil, begin, out) -> "QconvGrid":
        """The grid of a 2-D window over an H x W plane (a pooling layer's): no channels, no weights."""
        g = cls.__new__(cls)
        g.H, g.W, (g.KH, g.KW), (g.sh, g.sw), (g.dh, g.dw), (g.pt, g.pl), (g.OH, g.OW) = H, W, kernel, strides, dil, \
            begin, out
        return g

    def flatten_planes(self) -> None:
        """Pointwise: each channel plane one row of H * W pixels."""
        self.W = self.OW = self.H * self.W
        self.H = self.OH = 1

    def flat_outputs(self) -> int:
        return (self.OH - 1) * (self.OW + ((self.KW - 1) * self.dw) // self.sw) + self.OW

    def grid(self, qvec: int, rows: Optional[int] = None) -> dict:
        """The packed planes (for `rows` output rows, default all): used stride phases, rows / columns
        per phase, flat outputs, each tap's offset, the flat outputs padded to whole vectors of qvec."""
        rows = self.OH if rows is None else rows
        taps = [(kh, kw) for kh in range(self.KH) for kw in range(self.KW)]
        phases = sorted({((kh * self.dh) % self.sh, (kw * self.dw) % self.sw) for kh, kw in taps})
        index = {p: i for i, p in enumerate(phases)}
        Hq = rows + ((self.KH - 1) * self.dh) // self.sh
        Wq = self.OW + ((self.KW - 1) * self.dw) // self.sw
        NQ = (rows - 1) * Wq + self.OW
        # a tap's offset from the output's flat index: its phase plane, rows and columns down
        tap_off = [index[(kh * self.dh) % self.sh, (kw * self.dw) % self.sw] * Hq * Wq
                   + ((kh * self.dh) // self.sh) * Wq + (kw * self.dw) // self.sw for kh, kw in taps]
        nq_pad = -(-NQ // qvec) * qvec
        return dict(phases=phases, Hq=Hq, Wq=Wq, NQ=NQ, tap_off=tap_off, nq_pad=nq_pad)


def unsigned_conv_setup(ctx: KernelContext, grid_cls, output):
    """(grid, w, output side, x_zero, off) of a qconv a u8 x s8 kernel takes: constant int8 weights (see
    native_qconv_weights), activations made unsigned (off = 128 for int8), output(ctx, w2d, x_zero, off)
    the kernel's output side or None (the portable kernel takes the layer); else None."""
    w = native_qconv_weights(ctx)
    if w is None:
        return None
    g = grid_cls(ctx)
    off = 128 if ctx.inputs[0].dtype.short == "i8" else 0
    xz = int(ctx.attrs.get("x_zero", 0))
    out = output(ctx, w.reshape(g.M, -1), xz, off)
    return None if out is None else (g, w, out, xz, off)


def wrap32(a) -> np.ndarray:
    """int64 values to int32 modulo 2^32 (the native kernels' accumulators wrap alike)."""
    return ((np.asarray(a, np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def folded_bias(ctx: KernelContext, w2d: np.ndarray, zero: int, off: int):
    """(bias - (zero + off) * sum(w row) per channel, amax) for kernels summing u * w over unsigned
    codes u = x + off (off = 128 for int8 made unsigned, 0 for uint8; padding taps hold zero + off,
    which the fold cancels); amax bounds the true accumulators, 255 * sum|w| + |bias|. None where
    the portable kernel (int64 sums) takes the layer: a bias known only at run time, or, for a
    requantized output, an accumulator that might not fit int32 (the kernels wrap modulo 2^32, so
    the result is exact when the true accumulator fits; y_dtype i32 outputs, the reference's sums
    cast to int32, need no bound)."""
    w64 = w2d.astype(np.int64)
    bias = np.zeros(w2d.shape[0], np.int64)
    if ctx.has_input(2):
        b = ctx.const(2)
        if b is None:
            return None
        bias = np.asarray(b, np.int64).reshape(-1)
    amax = 255 * np.abs(w64).sum(axis=1) + np.abs(bias)
    if ctx.outputs[0].dtype.short != "i32" and amax.max(initial=0) >= 2 ** 31:
        return None
    return bias - (zero + off) * w64.sum(axis=1), amax


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
    """(b, K, N, rows of a) of a qmatmul the native (x86, arm) kernels take: constant 2-D int8 weights b
    (b_zero 0; they are packed at compile time), int8 / uint8 a, an int8 / uint8 / int32 output, a non-empty reduction; None leaves it to this module."""
    a_s, b_s, y_s = ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.outputs[0].shape
    b = ctx.const(1)
    if b is None or len(b_s) != 2 or len(a_s) < 1 or math.prod(y_s) == 0 or b_s[0] == 0:
        return None
    if ctx.inputs[1].dtype is not dtypes.int8 or ctx.attrs.get("b_zero", 0):  # b is not weights
        return None
    if ctx.outputs[0].dtype.short not in ("i8", "u8", "i32") or ctx.inputs[0].dtype.short not in ("i8", "u8"):
        return None
    return b, b_s[0], b_s[1], math.prod(a_s[:-1])


def _empty(ctx: KernelContext) -> str:
    names = [f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))]
    return "    " + " ".join(f"(void){n};" for n in names)


# (float)acc rounds the same integer to the same float32 from int32 as from int64: the int32 entry
# gives the same bits, without the int64 -> float conversion a 32-bit core calls libgcc for
RQ = {
    "int32_t": """/* clamp(zy + rint((float)acc * sc), lo, hi) */
static inline int32_t pdc_qi_rq32(int32_t acc, float sc, int32_t zy, int32_t lo, int32_t hi) {
    return pdc_quantize_round((float)acc * sc, zy, lo, hi);
}
""",
    "int64_t": """/* clamp(zy + rint((float)acc * sc), lo, hi) */
static inline int32_t pdc_qi_rq(int64_t acc, float sc, int32_t zy, int32_t lo, int32_t hi) {
    return pdc_quantize_round((float)acc * sc, zy, lo, hi);
}
""",
}
RQ_NAME = {"int32_t": "pdc_qi_rq32", "int64_t": "pdc_qi_rq"}


def _rq(ctx: KernelContext, acc_type: str = "int32_t") -> str:
    """Registers the requantization helper taking an `acc_type` accumulator; returns its name. The
    rounding is quantize_linear's (clamp to [lo, hi] in float, then half to even)."""
    ctx.helper("pdc_quantize_round", QUANTIZE_ROUND)
    return ctx.helper(RQ_NAME[acc_type], RQ[acc_type])


def _fits_int32(bound: int) -> bool:
    return bound < 2 ** 31


def _index_type(*extents: int) -> str:
    """int32_t when every index product a task forms (bounded by these extents) fits it: a 32-bit
    core then does no int64 multiply or divide (libgcc's __aeabi_ldivmod) on its loop indices."""
    return "int32_t" if all(_fits_int32(e) for e in extents) else "int64_t"


def _check_output_type(ctx: KernelContext, accumulators: bool = False) -> None:
    """int8 / uint8 outputs; with `accumulators` (qconv, qmatmul) int32 too: the accumulators themselves."""
    dt = ctx.outputs[0].dtype
    if dt not in (dtypes.int8, dtypes.uint8) and not (accumulators and dt is dtypes.int32):
        ctx.fail(f"output type {dt}: int8 or uint8{' (or int32, the accumulators)' if accumulators else ''} expected")


class Accumulation:
    """How a qconv / qmatmul output channel sums, from its weights rows w2d [channels, K]:
    `dot` the C type of sum(x * w) (int32_t when no partial sum can overflow it), `total` that of
    dot + bias (int32_t when |dot| + |bias| fits and no bias comes at run time: then the bias table is
    int32 and the requantization takes an int32, which a 32-bit core converts to float in one
    instruction), `bias` the [channels] table of bias - x_zero * sum(w row) in `total`'s type,
    `rbias` the run-time bias pointer or 0."""

    def __init__(self, ctx: KernelContext, xdt, w2d: np.ndarray, zero: int, channels: int):
        xmax = max(abs(v) for v in _int_range(xdt))
        self._setup(ctx, -int(zero) * w2d.astype(np.int64).sum(axis=1),
                    np.abs(w2d.astype(np.int64)).sum(axis=1) * xmax, channels)

    @classmethod
    def bounded(cls, ctx: KernelContext, dot_bound: int, channels: int) -> "Accumulation":
        """For products whose sum is bounded by dot_bound (a run-time b, zero points subtracted in the loop)."""
        acc = cls.__new__(cls)
        acc._setup(ctx, np.zeros(1, np.int64), np.array([dot_bound], np.int64), channels)
        return acc

    def _setup(self, ctx: KernelContext, fold: np.ndarray, dot: np.ndarray, channels: int) -> None:
        """fold: the constant part of each channel's bias; dot: bounds of |sum(x * w)| per channel."""
        self.rbias = "0"
        if ctx.has_input(2):
            b = ctx.const(2)
            if b is None:
                self.rbias = "in2"
            else:
                fold = fold + np.asarray(b, np.int64).reshape(-1)
        fold = np.ascontiguousarray(np.broadcast_to(fold, (channels,)), np.int64)
        dot = np.broadcast_to(dot, (channels,))
        self.dot = "int32_t" if _fits_int32(int(dot.max(initial=0))) else "int64_t"
        total = int((dot + np.abs(fold)).max(initial=0))
        self.total = "int32_t" if self.rbias == "0" and _fits_int32(total) else "int64_t"
        self.bias = fold.astype(np.int32 if self.total == "int32_t" else np.int64)

    @property
    def suffix(self) -> str:
        """The task's name part: the dot product's type, and _bias64 where the sum with the bias is wider."""
        return self.dot[:5] + ("_bias64" if self.total != self.dot else "")

    def bias_expr(self, channel: str) -> str:
        """The C expression of a channel's whole bias, in `total`'s type."""
        if self.total == "int32_t":
            return f"bias[{channel}]"
        return f"bias[{channel}] + (rbias ? (int64_t)rbias[{channel}] : 0)"


def _epilogue(ctx: KernelContext, channels: int, acc: Accumulation) -> tuple[dict, str, Optional[np.ndarray]]:
    """qconv / qmatmul's output stage: (job fields yz, lo, hi; the C expression of an output from
    `acc` and `b`, the channel's bias, with the channel's scale `sc`; the scale table, or None).
    y_dtype int32 asks for the accumulators: acc + bias truncated to int32 (wrapping, as numpy's cast)."""
    total = "acc + b" if acc.total == "int32_t" else "(int64_t)acc + b"
    if ctx.outputs[0].dtype is dtypes.int32:
        return dict(yz=0, lo=0, hi=0), total if acc.total == "int32_t" else f"(int32_t)({total})", None
    lo, hi = _clamp(ctx)
    return (dict(yz=int(ctx.attrs.get("y_zero", 0)), lo=lo, hi=hi),
            f"({ctx.ctype(ctx.outputs[0].dtype)}){_rq(ctx, acc.total)}({total}, sc, yz, lo, hi)",
            scale_table(ctx, channels))


def add_tables(ctx: KernelContext, tables: dict) -> dict:
    """One layer's constant tables {name: (array or None, C type)} back to back in one weight chunk,
    each at its own alignment: the blob pads each chunk to 64 bytes, so a layer pads once, not once per
    table (a few hundred bytes of a microcontroller's flash). Returns {name: C pointer, "0" for None}."""
    offsets, at = {}, 0
    for name, (a, _) in tables.items():
        if a is not None:
            at = -(-at // a.itemsize) * a.itemsize
            offsets[name] = at
            at += a.nbytes
    chunk = np.zeros(at, np.uint8)
    for name, off in offsets.items():
        a = np.ascontiguousarray(tables[name][0])
        chunk[off:off + a.nbytes] = a.reshape(-1).view(np.uint8)
    base = add_weight(ctx, chunk, "uint8_t")
    return {name: f"((const {t} *)({base} + {offsets[name]}))" if name in offsets else "0"
            for name, (_, t) in tables.items()}


def _channel_scale(ctx: KernelContext, channel: str) -> str:
    """The C expression of a channel's scale: none (0) where the output is the accumulators."""
    return "0.0f" if ctx.outputs[0].dtype is dtypes.int32 else f"scale[{channel}]"


def scale_table(ctx: KernelContext, channels: int) -> np.ndarray:
    """The float32 [channels] requantization scales (a per-tensor value repeated)."""
    v = np.asarray(ctx.attrs["scale"], np.float32).reshape(-1)
    if v.size not in (1, channels):
        ctx.fail(f"scale has {v.size} values for {channels} output channels (give 1 or {channels})")
    return np.ascontiguousarray(np.broadcast_to(v, (channels,)))


def _dispatch(ctx: KernelContext, fn: str, units: int, work: int, min_work: int) -> str:
    if ctx.split(work, min_work) and units > 1:
        return f"    pdc_parallel_for({units}, {fn}, (void *)&j);"
    return f"    {fn}((void *)&j, 0, {units});"


def job_lines(job: str, fields: dict) -> list[str]:
    """The job as a zeroed local with these fields set (fields past them, e.g. arrays, set after)."""
    return [f"    {job} j;", "    memset(&j, 0, sizeof j);"] + [f"    j.{k} = {v};" for k, v in fields.items()]


def slots_call(fn: str, units: int, slots: int) -> str:
    """The C line running task fn over `units` units on the job j: over the pool's `slots` slots,
    or on the calling thread (slot 0) when slots is 1."""
    if slots > 1:
        return f"    pdc_parallel_slots({units}, {slots}, {fn}, (void *)&j);"
    return f"    {fn}((void *)&j, 0, {units}, 0);"


def _job_init(job: str, fields: dict) -> list[str]:
    """The job as one initialized local (every field given, so no memset)."""
    return [f"    const {job} j = {{"] + [f"        .{k} = {v}," for k, v in fields.items()] + ["    };"]


def _job(ctx: KernelContext, template: str, base: str, idx: str) -> str:
    """Registers the job struct of a task indexing in `idx` (its size fields are of that type); returns its name."""
    name = base if idx == "int32_t" else base + "64"
    return ctx.helper(name, _fill(template, IDX=idx, JOB=name))


# ---- qconv ----------------------------------------------------------------------------------------
QCONV_JOB = """/* A 2-D integer convolution: x [N][C][H][W], weights [M][K] (K = C/G x KH x KW), y [N][M][OH][OW]. */
typedef struct {
    const void *x;
    void *y;
    void *col;              /* im2col blocks: slot s at col + s * col_stride elements */
    const int8_t *w;
    const void *bias;       /* bias - x_zero * sum(w), per output channel: int32 or int64 (the task's) */
    const int32_t *rbias;   /* a bias known only at run time, or NULL */
    const float *scale;     /* per output channel; NULL for int32 outputs (the accumulators) */
    @IDX@ col_stride, C, H, W, M, G, KH, KW, OH, OW, sh, sw, dh, dw, ph, pw, K, PB, nblk;
    int32_t xz, yz, lo, hi;
} @JOB@;
"""

QCONV_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1, int slot) {
    const @JOB@ *j = (const @JOB@ *)vj;
    const @TX@ *X = (const @TX@ *)j->x;
    @TY@ *Y = (@TY@ *)j->y;
    @TX@ *col = (@TX@ *)j->col + slot * j->col_stride;
    const int8_t *Wt = j->w;
    const @SUM@ *bias = (const @SUM@ *)j->bias;
    const int32_t *rbias = j->rbias;
    const float *scale = j->scale;
    const @IDX@ C = j->C, H = j->H, W = j->W, M = j->M, G = j->G, KH = j->KH, KW = j->KW;
    const @IDX@ OH = j->OH, OW = j->OW, sh = j->sh, sw = j->sw, dh = j->dh, dw = j->dw, ph = j->ph, pw = j->pw;
    const @IDX@ K = j->K, PB = j->PB, nblk = j->nblk, cg = C / G, mg = M / G;
    const int32_t yz = j->yz, lo = j->lo, hi = j->hi;
    const @TX@ xz = (@TX@)j->xz;
    (void)rbias; (void)scale;
    for (@IDX@ u = (@IDX@)u0; u < (@IDX@)u1; u++) {
        const @IDX@ blk = u % nblk, r = u / nblk, oh = r % OH, ng = r / OH, g = ng % G, n = ng / G;
        const @IDX@ ow0 = blk * PB, np = OW - ow0 < PB ? OW - ow0 : PB;
        const @TX@ *xg = X + (n * C + g * cg) * H * W;
        const @IDX@ ih0 = oh * sh - ph;
        /* im2col: pixel p's taps in (c, kh, kw) order, x_zero where a tap reads the padding */
        for (@IDX@ p = 0; p < np; p++) {
            @TX@ *d = col + p * K;
            const @IDX@ iw0 = (ow0 + p) * sw - pw;
            for (@IDX@ c = 0; c < cg; c++)
                for (@IDX@ kh = 0; kh < KH; kh++, d += KW) {
                    const @IDX@ ih = ih0 + kh * dh;
                    if (ih < 0 || ih >= H) {
                        for (@IDX@ kw = 0; kw < KW; kw++) d[kw] = xz;
                        continue;
                    }
                    const @TX@ *xr = xg + (c * H + ih) * W;
                    for (@IDX@ kw = 0; kw < KW; kw++) {
                        const @IDX@ iw = iw0 + kw * dw;
                        d[kw] = iw >= 0 && iw < W ? xr[iw] : xz;
                    }
                }
        }
        for (@IDX@ mm = 0; mm < mg; mm++) {
            const @IDX@ m = g * mg + mm;
            const int8_t *wr = Wt + m * K;
            const @SUM@ b = @BIAS@;
            const float sc = @SC@;
            (void)sc; (void)yz; (void)lo; (void)hi;
            @TY@ *yr = Y + ((n * M + m) * OH + oh) * OW + ow0;
            for (@IDX@ p = 0; p < np; p++) {
                const @TX@ *cr = col + p * K;
                @ACC@ acc = 0;
                for (@IDX@ k = 0; k < K; k++) acc += (@ACC@)((int32_t)cr[k] * (int32_t)wr[k]);
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


def _task(ctx: KernelContext, kind: str, job_text: str, template: str, x_type: dict, acc, idx: str,
          channel: str, store: str) -> tuple[str, str]:
    """(the job struct's name, the task's name) of a qconv / qmatmul task for these types, accumulation
    and index width: the task function emitted once per such variant."""
    job = _job(ctx, job_text, f"pdc_qi_{kind}_job", idx)
    x_dt, y_dt = ctx.inputs[0].dtype, ctx.outputs[0].dtype
    name = f"pdc_qi_{kind}_{x_dt.short}_{y_dt.short}_{acc.suffix}{'' if idx == 'int32_t' else '_idx64'}"
    ctx.helper(name, _fill(template, NAME=name, JOB=job, IDX=idx, TY=ctx.ctype(y_dt), ACC=acc.dot, SUM=acc.total,
                           BIAS=acc.bias_expr(channel), SC=_channel_scale(ctx, channel), STORE=store, **x_type))
    return job, name


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
    x_dt = ctx.inputs[0].dtype
    w2d = np.asarray(w, np.int8).reshape(M, K)
    xz = int(ctx.attrs.get("x_zero", 0))
    acc = Accumulation(ctx, x_dt, w2d, xz, M)
    out, store, scale = _epilogue(ctx, M, acc)
    PB = max(1, min(OW, MAX_PIXELS, COL_BYTES // max(K, 1)))
    nblk = -(-OW // PB)
    units = N * G * OH * nblk
    slots = ctx.slots(ctx.split(N * M * OH * OW * K, PARALLEL_MIN_MACS) and units > 1)
    col, col_stride = ctx.thread_scratch(max(PB * K, 1), slots, ctx.ctype(x_dt), 1)
    # the index products stay below these: x's and y's elements, the weights, the im2col slots, the
    # units, the input rows and columns a tap reaches
    idx = _index_type(N * C * H * W, N * M * OH * OW, M * K, slots * col_stride, units,
                      (H + KH * dil[0] + sum(pads)) * strides[0], (W + KW * dil[1] + sum(pads)) * strides[1])
    job, name = _task(ctx, "conv", QCONV_JOB, QCONV_TASK, dict(TX=ctx.ctype(x_dt)), acc, idx, "m", store)
    tables = add_tables(ctx, dict(bias=(acc.bias, acc.total), scale=(scale, "float"), w=(w2d, "int8_t")))
    fields = dict(x="in0", y="(void *)out0", col=f"(void *){col}", **tables, rbias=acc.rbias,
                  col_stride=col_stride, C=C, H=H, W=W, M=M, G=G,
                  KH=KH, KW=KW, OH=OH, OW=OW, sh=strides[0], sw=strides[1], dh=dil[0], dw=dil[1], ph=pads[0],
                  pw=pads[1], K=K, PB=PB, nblk=nblk, xz=xz, **out)
    lines = _job_init(job, fields)
    lines.append("    (void)in1;" + (" (void)in2;" if ctx.has_input(2) else ""))
    lines.append(slots_call(name, units, slots))
    return mark("qconv", "portable", "\n".join(lines))


# ---- qmatmul --------------------------------------------------------------------------------------
QMM_JOB = """/* y [R][N] = requant(a [R][K] x b [K][N]), b packed transposed as [N][K]. */
typedef struct {
    const void *a;
    void *y;
    const int8_t *bt;
    const void *bias;       /* bias - a_zero * sum over k of b, per column: int32 or int64 (the task's) */
    const int32_t *rbias;   /* a bias known only at run time, or NULL */
    const float *scale;     /* per column; NULL for int32 outputs (the accumulators) */
    @IDX@ K, N, CB, ncb;
    int32_t yz, lo, hi;
} @JOB@;
"""

QMM_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1) {
    const @JOB@ *j = (const @JOB@ *)vj;
    const @TA@ *A = (const @TA@ *)j->a;
    @TY@ *Y = (@TY@ *)j->y;
    const int8_t *Bt = j->bt;
    const @SUM@ *bias = (const @SUM@ *)j->bias;
    const int32_t *rbias = j->rbias;
    const float *scale = j->scale;
    const @IDX@ K = j->K, N = j->N, CB = j->CB, ncb = j->ncb;
    const int32_t yz = j->yz, lo = j->lo, hi = j->hi;
    (void)rbias; (void)scale;
    for (@IDX@ u = (@IDX@)u0; u < (@IDX@)u1; u++) {
        const @IDX@ r = u / ncb, c0 = (u % ncb) * CB, c1 = N - c0 < CB ? N : c0 + CB;
        const @TA@ *ar = A + r * K;
        @TY@ *yr = Y + r * N;
        for (@IDX@ n = c0; n < c1; n++) {
            const int8_t *br = Bt + n * K;
            @ACC@ acc = 0;
            for (@IDX@ k = 0; k < K; k++) acc += (@ACC@)((int32_t)ar[k] * (int32_t)br[k]);
            const @SUM@ b = @BIAS@;
            const float sc = @SC@;
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
    _check_output_type(ctx, accumulators=True)
    if b is None or len(b_s) != 2 or ctx.inputs[1].dtype is not dtypes.int8 or ctx.attrs.get("b_zero", 0):
        return _qmatmul_activations(ctx)
    if len(a_s) < 1:
        ctx.fail(f"a {list(a_s)} x b {list(b_s)}: a [..., K] and a 2-D b [K, N] expected")
    K, N = b_s
    R = math.prod(a_s[:-1])
    if R * N == 0:
        return mark("qmatmul", "portable", _empty(ctx))
    a_dt = ctx.inputs[0].dtype
    bt = np.ascontiguousarray(np.asarray(b, np.int8).T)  # [N][K]
    acc = Accumulation(ctx, a_dt, bt, int(ctx.attrs.get("a_zero", 0)), N)
    out, store, scale = _epilogue(ctx, N, acc)
    # rows of a are the units; a few rows: columns in blocks too, so that threads share the work
    CB = N if R >= 8 else max(16, -(-N // 8))
    ncb = -(-N // CB)
    idx = _index_type(R * K, R * N, K * N, R * ncb, N + CB)
    job, name = _task(ctx, "matmul", QMM_JOB, QMM_TASK, dict(TA=ctx.ctype(a_dt)), acc, idx, "n", store)
    tables = add_tables(ctx, dict(bias=(acc.bias, acc.total), scale=(scale, "float"), bt=(bt, "int8_t")))
    fields = dict(a="in0", y="(void *)out0", **tables, rbias=acc.rbias, K=K, N=N, CB=CB, ncb=ncb, **out)
    lines = _job_init(job, fields)
    lines.append("    (void)in1;" + (" (void)in2;" if ctx.has_input(2) else ""))
    lines.append(_dispatch(ctx, name, R * ncb, R * N * max(K, 1), PARALLEL_MIN_MACS))
    return mark("qmatmul", "portable", "\n".join(lines))


# a quantized activation b (attention's q @ k^T, p @ v): read as it is, both zero points subtracted in
# the loop; the batch dims (numpy's matmul broadcasting, coalesced) step a and b by whole matrices
QMM_ACT_JOB = """/* y [batch][M][N] = requant((a [batch][M][K] - az) x (b [batch][K][N] - bz)), the batch dims broadcast. */
typedef struct {
    const void *a, *b;
    void *y;
    const void *bias;       /* per column: int32 or int64 (the task's) */
    const int32_t *rbias;   /* a bias known only at run time, or NULL */
    const float *scale;     /* per column; NULL for int32 outputs (the accumulators) */
    @IDX@ M, K, N, nd;
    @IDX@ dims[PDC_QI_MAXD], as[PDC_QI_MAXD], bs[PDC_QI_MAXD];
    int32_t az, bz, yz, lo, hi;
} @JOB@;
"""

QMM_ACT_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1) {
    const @JOB@ *j = (const @JOB@ *)vj;
    const @TA@ *A = (const @TA@ *)j->a;
    const @TB@ *B = (const @TB@ *)j->b;
    @TY@ *Y = (@TY@ *)j->y;
    const @SUM@ *bias = (const @SUM@ *)j->bias;
    const int32_t *rbias = j->rbias;
    const float *scale = j->scale;
    const @IDX@ M = j->M, K = j->K, N = j->N, nd = j->nd;
    const int32_t az = j->az, bz = j->bz, yz = j->yz, lo = j->lo, hi = j->hi;
    (void)rbias; (void)scale;
    for (@IDX@ u = (@IDX@)u0; u < (@IDX@)u1; u++) {
        const @IDX@ m = u % M;
        @IDX@ ao = 0, bo = 0;
        for (@IDX@ d = nd - 1, q = u / M; d >= 0; d--) {
            const @IDX@ i = q % j->dims[d];
            q /= j->dims[d];
            ao += i * j->as[d];
            bo += i * j->bs[d];
        }
        const @TA@ *ar = A + ao + m * K;
        const @TB@ *bm = B + bo;
        @TY@ *yr = Y + u * N;
        for (@IDX@ n = 0; n < N; n++) {
            @ACC@ acc = 0;
            for (@IDX@ k = 0; k < K; k++) acc += (@ACC@)(((int32_t)ar[k] - az) * ((int32_t)bm[k * N + n] - bz));
            const @SUM@ b = @BIAS@;
            const float sc = @SC@;
            (void)sc; (void)yz; (void)lo; (void)hi;
            yr[n] = @STORE@;
        }
    }
}
"""


def _zero_distance(dt, zero: int) -> int:
    """The largest |code - zero| of dt's codes."""
    lo, hi = _int_range(dt)
    return max(abs(lo - zero), abs(hi - zero))


def _qmatmul_activations(ctx: KernelContext) -> str:
    """qmatmul of a run-time (or non-weights) b [..., K, N]: b is read where it lies, nothing packed."""
    a_s, b_s, y_s = ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.outputs[0].shape
    K, N = b_s[-2], b_s[-1]
    if len(b_s) == 2:  # every row of a times the one b
        M, a_batch, b_batch, y_batch = math.prod(a_s[:-1]), [], [], []
    else:
        M, a_batch, b_batch, y_batch = a_s[-2], list(a_s[:-2]), list(b_s[:-2]), list(y_s[:-2])
    if math.prod(y_s) == 0:
        return mark("qmatmul", "portable", _empty(ctx))
    dims, (sa, sb) = coalesce(y_batch, [a_batch, b_batch])
    if len(dims) > MAX_DIMS:
        ctx.fail(f"output {list(y_s)} broadcasts over {len(dims)} batch dims: at most {MAX_DIMS} are supported")
    a_dt, b_dt = ctx.inputs[0].dtype, ctx.inputs[1].dtype
    az, bz = int(ctx.attrs.get("a_zero", 0)), int(ctx.attrs.get("b_zero", 0))
    acc = Accumulation.bounded(ctx, K * _zero_distance(a_dt, az) * _zero_distance(b_dt, bz), N)
    out, store, scale = _epilogue(ctx, N, acc)
    units = math.prod(y_s) // N
    idx = _index_type(math.prod(a_s) + M * K, math.prod(b_s) + K * N, math.prod(y_s) + N, units)
    job = _job(ctx, QMADD_HEADER + QMM_ACT_JOB, "pdc_qi_matmul_act_job", idx)
    name = (f"pdc_qi_matmul_act_{a_dt.short}_{b_dt.short}_{ctx.outputs[0].dtype.short}_{acc.suffix}"
            f"{'' if idx == 'int32_t' else '_idx64'}")
    ctx.helper(name, _fill(QMM_ACT_TASK, NAME=name, JOB=job, IDX=idx, TA=ctx.ctype(a_dt), TB=ctx.ctype(b_dt),
                           TY=ctx.ctype(ctx.outputs[0].dtype), ACC=acc.dot, SUM=acc.total, BIAS=acc.bias_expr("n"),
                           SC=_channel_scale(ctx, "n"), STORE=store))
    tables = add_tables(ctx, dict(bias=(acc.bias, acc.total), scale=(scale, "float")))
    fields = dict(a="in0", b="in1", y="(void *)out0", **tables, rbias=acc.rbias, M=M, K=K, N=N, nd=len(dims),
                  az=az, bz=bz, **out)
    lines = job_lines(job, fields)
    for d in range(len(dims)):
        lines.append(f"    j.dims[{d}] = {dims[d]}; j.as[{d}] = {sa[d] * M * K}; j.bs[{d}] = {sb[d] * K * N};")
    lines.append(_dispatch(ctx, name, units, math.prod(y_s) * max(K, 1), PARALLEL_MIN_MACS))
    return mark("qmatmul", "portable", "\n".join(lines))


# ---- requantize -----------------------------------------------------------------------------------
RQZ_JOB = """typedef struct {
    const void *x;
    void *y;
    @IDX@ n;
    float sc;
    int32_t xz, yz, lo, hi;
} @JOB@;
"""

RQZ_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1) {
    const @JOB@ *j = (const @JOB@ *)vj;
    const @TX@ *X = (const @TX@ *)j->x;
    @TY@ *Y = (@TY@ *)j->y;
    const @IDX@ n = j->n;
    const float sc = j->sc;
    const int32_t xz = j->xz, yz = j->yz, lo = j->lo, hi = j->hi;
    const @IDX@ i0 = (@IDX@)u0 * @CHUNK@, i1 = (@IDX@)u1 * @CHUNK@ < n ? (@IDX@)u1 * @CHUNK@ : n;
    for (@IDX@ i = i0; i < i1; i++) Y[i] = (@TY@)pdc_qi_rq32((int32_t)X[i] - xz, sc, yz, lo, hi);
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
    _rq(ctx, "int32_t")  # x - x_zero of int8 / uint8 codes
    idx = _index_type(n + CHUNK)
    job = _job(ctx, RQZ_JOB, "pdc_qi_rqz_job", idx)
    name += "" if idx == "int32_t" else "_idx64"
    ctx.helper(name, _fill(RQZ_TASK, NAME=name, JOB=job, IDX=idx, TX=ctx.ctype(x_dt), TY=ctx.ctype(y_dt),
                           CHUNK=CHUNK))
    fields = dict(x="in0", y="(void *)out0", n=n, xz=int(ctx.attrs.get("x_zero", 0)), sc=float_literal(scale[0]),
                  yz=int(ctx.attrs.get("y_zero", 0)), lo=lo, hi=hi)
    lines = _job_init(job, fields)
    lines.append(_dispatch(ctx, name, -(-n // CHUNK), n, PARALLEL_MIN_ELEMS))
    return "\n".join(lines)


# ---- qadd, qmul ------------------------------------------------------------------------------------
QADD_JOB = """/* y = a + b rescaled (or a * b), over rows of the (coalesced) output: outer dims dims[0..nd), inner L; a and b
   read at their strides per outer dim, and at stride ai / bi (0 or 1) along the inner dim. */
typedef struct {
    const void *a, *b;
    void *y;
    @IDX@ nd, L, nch, ai, bi;
    @IDX@ dims[PDC_QI_MAXD], as[PDC_QI_MAXD], bs[PDC_QI_MAXD];
    float ra, rb, c;        /* qadd: the ratios and constant; qmul: ra the scale */
    int32_t az, bz, yz, lo, hi;
} @JOB@;
"""

QADD_TASK = """static void @NAME@(void *vj, int64_t u0, int64_t u1) {
    const @JOB@ *j = (const @JOB@ *)vj;
    const @TA@ *A = (const @TA@ *)j->a;
    const @TB@ *B = (const @TB@ *)j->b;
    @TY@ *Y = (@TY@ *)j->y;
    const @IDX@ nd = j->nd, L = j->L, nch = j->nch;
    const float ra = j->ra, rb = j->rb, c = j->c;
    const int32_t az = j->az, bz = j->bz, yz = j->yz, lo = j->lo, hi = j->hi;
    (void)ra; (void)rb; (void)c; (void)az; (void)bz; (void)yz;
#define PDC_QI_ADD(ia, ib) @COMBINE@
    for (@IDX@ u = (@IDX@)u0; u < (@IDX@)u1; u++) {
        const @IDX@ r = u / nch, i0 = (u % nch) * @CHUNK@, i1 = L - i0 < @CHUNK@ ? L : i0 + @CHUNK@;
        @IDX@ ao = 0, bo = 0;
        for (@IDX@ d = nd - 1, q = r; d >= 0; d--) {
            const @IDX@ i = q % j->dims[d];
            q /= j->dims[d];
            ao += i * j->as[d];
            bo += i * j->bs[d];
        }
        const @TA@ *ar = A + ao;
        const @TB@ *br = B + bo;
        @TY@ *yr = Y + r * L;
        if (j->ai && j->bi) for (@IDX@ i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(i, i);
        else if (j->ai) for (@IDX@ i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(i, 0);
        else if (j->bi) for (@IDX@ i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(0, i);
        else for (@IDX@ i = i0; i < i1; i++) yr[i] = (@TY@)PDC_QI_ADD(0, 0);
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
    "qadd": "pdc_quantize_round(fmaf((float)ar[ia], ra, fmaf((float)br[ib], rb, c)), 0, lo, hi)",
    "qmul": "pdc_qi_rq32(((int32_t)ar[ia] - az) * ((int32_t)br[ib] - bz), ra, yz, lo, hi)",
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
    idx = _index_type(total + CHUNK, math.prod(ctx.inputs[0].shape), math.prod(ctx.inputs[1].shape))
    name = f"pdc_qi_{op[1:]}_{a_dt.short}_{b_dt.short}_{y_dt.short}{'' if idx == 'int32_t' else '_idx64'}"
    _rq(ctx, "int32_t")  # qmul: (a - a_zero) * (b - b_zero) of int8 / uint8 codes, |.| <= 255^2
    job = _job(ctx, QMADD_HEADER + QADD_JOB, "pdc_qi_add_job", idx)
    ctx.helper(name, _fill(QADD_TASK, NAME=name, JOB=job, IDX=idx, TA=ctx.ctype(a_dt), TB=ctx.ctype(b_dt),
                           TY=ctx.ctype(y_dt), CHUNK=CHUNK, COMBINE=COMBINE[op]))
    az, bz, yz = (int(ctx.attrs.get(k, 0)) for k in ("a_zero", "b_zero", "y_zero"))
    if op == "qadd":
        ra, rb = ctx.attrs["a_scale"], ctx.attrs["b_scale"]
        c = qadd_constant(ra, az, rb, bz, yz)
    else:
        ra, rb, c = ctx.attrs["scale"][0], 0.0, 0.0
    fields = dict(a="in0", b="in1", y="(void *)out0", nd=len(dims) - 1, L=L, nch=nch, ai=sa[-1], bi=sb[-1],
                  ra=float_literal(ra), rb=float_literal(rb), c=float_literal(c), az=az, bz=bz, yz=yz, lo=lo, hi=hi)
    lines = job_lines(job, fields)
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
