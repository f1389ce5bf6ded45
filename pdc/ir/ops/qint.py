"""pdc's integer ops, made by the quantizer: qconv, qmatmul, qadd, qmul, requantize and lookup.

Their arithmetic is integer-only and lives in their attributes, so the NumPy references here are
the bit-exact integer reference every target's code must equal:

    acc = sum((x - x_zero) * w) + bias                         exactly, in int32 (qconv / qmatmul)
    acc = x - x_zero                                           (requantize)
    y   = clamp(y_zero + rq(acc, multiplier, shift), lo, hi)

The one requantization rule, for a real multiplier M (s_x * s_w / s_y) written as m / 2^s with
m a 31-bit integer in [2^30, 2^31) (`fixed_point`):

    rq(acc, m, s) = (acc * m + 2^(s-1)) >> s                   in int64, arithmetic shift

that is, acc * m / 2^s rounded to nearest with ties toward +infinity (a single rounding; the
product of an int32 accumulator and m fits in 62 bits). qadd rescales both inputs onto one
shift: acc = (a - a_zero) * a_multiplier + (b - b_zero) * b_multiplier, then the same rounding.
`clamp` ([lo, hi], within the output type's range) is where a fused ReLU / ReLU6 goes.
qconv and qmatmul with y_dtype=i32 give the accumulators themselves (no multiplier, shift,
y_zero or clamp): for a layer whose result is wanted in float, dequantized per channel with
scale s_x * s_w, without an int8 rounding on the way. qmul multiplies (a - a_zero) * (b - b_zero)
exactly and requantizes by s_a * s_b / s_y; lookup tabulates any function over the 256 codes.
Weights are symmetric (zero point 0) int8; multiplier and shift hold one value, or one per
output channel (qconv's axis 1, qmatmul's last axis).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import TensorType
from .common import broadcast_shapes
from .quant import _CONV_ATTRS, _conv_infer_shape, int_conv

ACTIVATION_TYPES = (dtypes.int8, dtypes.uint8)
MAX_SHIFT = 62


def fixed_point(real: float) -> tuple[int, int]:
    """(m, s) with m / 2^s == real to 31 significant bits, 1 <= s <= MAX_SHIFT; m is 0 for tiny values."""
    if not (math.isfinite(real) and real >= 0):
        raise ValueError(f"requantization multiplier {real} must be finite and >= 0")
    if real == 0:
        return 0, 1
    frac, exp = math.frexp(real)  # real = frac * 2^exp, frac in [0.5, 1)
    m, s = round(frac * (1 << 31)), 31 - exp
    if m == 1 << 31:
        m, s = m >> 1, s - 1
    if s < 1:
        raise ValueError(f"requantization multiplier {real} is too large (at most 2^30)")
    if s > MAX_SHIFT:  # below 2^-31: keep the rounding exact on fewer mantissa bits
        m, s = (m + (1 << (s - MAX_SHIFT - 1))) >> (s - MAX_SHIFT), MAX_SHIFT
    return m, s


def rounding_shift(acc: np.ndarray, m, s) -> np.ndarray:
    """(acc * m + 2^(s-1)) >> s in int64; m and s broadcast against acc."""
    acc = np.asarray(acc, np.int64)
    m, s = np.asarray(m, np.int64), np.asarray(s, np.int64)
    return (acc * m + (np.int64(1) << (s - 1))) >> s


def activation_bounds(node) -> tuple[float, float]:
    """The real interval a ReLU or a Clip with constant (or absent) bounds keeps: [0, inf), [min, max]."""
    if node.op == "relu":
        return 0.0, math.inf
    lo, hi = (None if v is None else float(v.data) for v in (node.inputs[1:] + [None, None])[:2])
    return -math.inf if lo is None else lo, math.inf if hi is None else hi


def clamp_codes(lo: float, hi: float, scale: float, zero: int, dt) -> list:
    """[lo, hi] in dt's codes of the real interval [lo, hi] (infinite ends: dt's range) for clamp."""
    qmin, qmax = _range(dt)
    code = lambda r: zero + r / scale  # noqa: E731
    # the tolerance keeps a bound that is a whole code (ReLU6 at 6 / scale) from moving a step
    qlo = qmin if lo == -math.inf else int(np.clip(math.ceil(code(lo) - 1e-9), qmin, qmax))
    qhi = qmax if hi == math.inf else int(np.clip(math.floor(code(hi) + 1e-9), qmin, qmax))
    return [qlo, max(qlo, qhi)]


def _range(dt) -> tuple[int, int]:
    info = np.iinfo(dt.np)
    return int(info.min), int(info.max)


_REQUANT_ATTRS = {
    "multiplier": Attr("ints", None), "shift": Attr("ints", None), "y_zero": Attr("int", 0),
    "clamp": Attr("ints", None), "y_dtype": Attr("dtype", dtypes.int8),
}


def _output(acc: np.ndarray, attrs) -> np.ndarray:
    """y_zero + rq(acc), clamped; acc's channel axis already lines up with multiplier / shift."""
    dt = attrs.get("y_dtype", dtypes.int8)
    lo, hi = attrs.get("clamp") or _range(dt)
    return np.clip(attrs.get("y_zero", 0) + acc, lo, hi).astype(dt.np)


def _requantized(acc: np.ndarray, attrs, channel_axis: int) -> np.ndarray:
    """qconv / qmatmul's output from the exact accumulators (themselves for y_dtype i32)."""
    if attrs.get("y_dtype") is dtypes.int32:
        return acc.astype(np.int32)
    m, s = (_per_channel(attrs[k], channel_axis, acc.ndim) for k in ("multiplier", "shift"))
    return _output(rounding_shift(acc, m, s), attrs)


def _per_channel(values, axis: int, rank: int) -> np.ndarray:
    """A per-tensor (1 value) or per-channel list shaped to broadcast along `axis` of a rank-`rank` array."""
    a = np.asarray(values, np.int64)
    if a.size == 1:
        return a.reshape(())
    shape = [1] * rank
    shape[axis] = a.size
    return a.reshape(shape)


def _check_requant(ctx: InferContext, channels, accumulators: bool = False) -> None:
    """multiplier / shift: one value or one per channel; shift in [1, 62]; clamp within y_dtype.
    With `accumulators` (qconv, qmatmul) y_dtype i32 asks for the accumulators, without any of them."""
    if accumulators and ctx.attrs.get("y_dtype") is dtypes.int32:
        given = [k for k in ("multiplier", "shift", "y_zero", "clamp") if k in ctx.attrs]
        if given:
            ctx.fail(f"y_dtype i32 gives the accumulators: {', '.join(given)} must be absent")
        return
    m, s = ctx.attrs.get("multiplier") or [], ctx.attrs.get("shift") or []
    if len(m) != len(s) or not m:
        ctx.fail(f"multiplier ({len(m)} values) and shift ({len(s)} values) must have the same, non-zero length")
    if len(m) != 1 and isinstance(channels, int) and len(m) != channels:
        ctx.fail(f"multiplier has {len(m)} values for {channels} output channels (give 1 or {channels})")
    if any(not 0 <= v < (1 << 31) for v in m):
        ctx.fail("multipliers must be in [0, 2^31)")
    if any(not 1 <= v <= MAX_SHIFT for v in s):
        ctx.fail(f"shifts must be in [1, {MAX_SHIFT}]")
    dt = ctx.attrs.get("y_dtype", dtypes.int8)
    if dt not in ACTIVATION_TYPES:
        ctx.fail(f"y_dtype must be int8{', uint8 or int32 (the accumulators)' if accumulators else ' or uint8'}, got {dt}")
    lo, hi = _range(dt)
    if not lo <= ctx.attrs.get("y_zero", 0) <= hi:
        ctx.fail(f"y_zero {ctx.attrs.get('y_zero', 0)} is outside {dt}'s range [{lo}, {hi}]")
    clamp = ctx.attrs.get("clamp")
    if clamp is not None and (len(clamp) != 2 or not lo <= clamp[0] <= clamp[1] <= hi):
        ctx.fail(f"clamp {clamp} must be [lo, hi] with {lo} <= lo <= hi <= {hi}")


def _check_input(ctx: InferContext, i: int, what: str, allowed, zero_attr=None) -> None:
    dt = ctx.types[i].dtype
    if dt not in allowed:
        ctx.fail(f"{what} must be {' or '.join(str(d) for d in allowed)}, got {dt}")
    if zero_attr is not None:
        lo, hi = _range(dt)
        z = ctx.attrs.get(zero_attr, 0)
        if not lo <= z <= hi:
            ctx.fail(f"{zero_attr} {z} is outside {dt}'s range [{lo}, {hi}]")


def _check_bias(ctx: InferContext, i: int, channels) -> None:
    if not ctx.has_input(i):
        return
    t = ctx.types[i]
    if t.dtype is not dtypes.int32 or (t.shape is not None and (len(t.shape) != 1 or (
            isinstance(channels, int) and isinstance(t.shape[0], int) and t.shape[0] != channels))):
        ctx.fail(f"bias must be i32[{channels}], got {t}")


# ---- qconv -------------------------------------------------------------------------------------
def _qconv_infer(ctx: InferContext):
    _check_input(ctx, 0, "x", ACTIVATION_TYPES, "x_zero")
    _check_input(ctx, 1, "w", (dtypes.int8,))
    shape = _conv_infer_shape(ctx, 0, 1)
    channels = None if shape is None else shape[1]
    _check_bias(ctx, 2, channels)
    _check_requant(ctx, channels, accumulators=True)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), shape)]


def _qconv_reference(inputs, attrs):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    acc = int_conv(x.astype(np.int64) - attrs.get("x_zero", 0), w.astype(np.int64), attrs)
    if bias is not None:
        acc = acc + bias.astype(np.int64).reshape((1, -1) + (1,) * (x.ndim - 2))
    return _requantized(acc, attrs, 1)


register_op("qconv", ["x", "w", "bias?"], ["y"],
            attrs={**_CONV_ATTRS, "x_zero": Attr("int", 0), **_REQUANT_ATTRS},
            infer=_qconv_infer, reference=_qconv_reference,
            doc="Integer convolution (int8 weights, int32 bias) requantized by a fixed-point multiplier.")


# ---- qmatmul -----------------------------------------------------------------------------------
def _qmatmul_infer(ctx: InferContext):
    _check_input(ctx, 0, "a", ACTIVATION_TYPES, "a_zero")
    _check_input(ctx, 1, "b", (dtypes.int8,))
    a, b = ctx.types[0].shape, ctx.types[1].shape
    if b is not None and len(b) != 2:
        ctx.fail(f"b must be 2-D [K, N], got {list(b)}")
    if a is not None and len(a) < 1:
        ctx.fail("a must have at least one dim")
    if a is not None and b is not None and isinstance(a[-1], int) and isinstance(b[0], int) and a[-1] != b[0]:
        ctx.fail(f"a's last dim {a[-1]} differs from b's first dim {b[0]}")
    channels = None if b is None else b[1]
    _check_bias(ctx, 2, channels)
    _check_requant(ctx, channels, accumulators=True)
    shape = None if a is None or b is None else tuple(a[:-1]) + (b[1],)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), shape)]


def _qmatmul_reference(inputs, attrs):
    a, b = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    # int64 products summed by matmul: exact (|a - z| * |b| * K stays far below 2^63)
    acc = (a.astype(np.int64) - attrs.get("a_zero", 0)) @ b.astype(np.int64)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return _requantized(acc, attrs, acc.ndim - 1)


register_op("qmatmul", ["a", "b", "bias?"], ["y"], attrs={"a_zero": Attr("int", 0), **_REQUANT_ATTRS},
            infer=_qmatmul_infer, reference=_qmatmul_reference,
            doc="Integer a[..., K] x b[K, N] (int8 b, int32 bias) requantized by a fixed-point multiplier.")


# ---- requantize --------------------------------------------------------------------------------
def _requantize_infer(ctx: InferContext):
    _check_input(ctx, 0, "x", ACTIVATION_TYPES, "x_zero")
    _check_requant(ctx, 1)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), ctx.types[0].shape)]


def _requantize_reference(inputs, attrs):
    acc = inputs[0].astype(np.int64) - attrs.get("x_zero", 0)
    return _output(rounding_shift(acc, attrs["multiplier"][0], attrs["shift"][0]), attrs)


register_op("requantize", ["x"], ["y"], attrs={"x_zero": Attr("int", 0), **_REQUANT_ATTRS},
            infer=_requantize_infer, reference=_requantize_reference,
            doc="Moves an int8/uint8 tensor to another scale and zero point.")


# ---- qadd --------------------------------------------------------------------------------------
_QADD_ATTRS = {
    "a_zero": Attr("int", 0), "b_zero": Attr("int", 0), "a_multiplier": Attr("int", REQUIRED), "b_multiplier": Attr("int", REQUIRED),
    "shift": Attr("int", REQUIRED), "y_zero": Attr("int", 0), "clamp": Attr("ints", None), "y_dtype": Attr("dtype", dtypes.int8),
}


def _qadd_infer(ctx: InferContext):
    _check_input(ctx, 0, "a", ACTIVATION_TYPES, "a_zero")
    _check_input(ctx, 1, "b", ACTIVATION_TYPES, "b_zero")
    for k in ("a_multiplier", "b_multiplier"):
        if not 0 <= ctx.attrs[k] < (1 << 31):
            ctx.fail(f"{k} must be in [0, 2^31)")
    if not 1 <= ctx.attrs["shift"] <= MAX_SHIFT:
        ctx.fail(f"shift must be in [1, {MAX_SHIFT}]")
    # the requantization checks on a stand-in one-value multiplier
    attrs = dict(ctx.attrs, multiplier=[0], shift=[ctx.attrs["shift"]])
    _check_requant(_Attrs(ctx, attrs), 1)
    a, b = ctx.types[0].shape, ctx.types[1].shape
    shape = broadcast_shapes([a, b], ctx)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), shape)]


class _Attrs:
    """An InferContext seen with other attributes."""

    def __init__(self, ctx: InferContext, attrs: dict):
        self.attrs, self.fail = attrs, ctx.fail


def _qadd_reference(inputs, attrs):
    a, b = (x.astype(np.int64) - attrs.get(k, 0) for x, k in zip(inputs, ("a_zero", "b_zero")))
    acc = a * attrs["a_multiplier"] + b * attrs["b_multiplier"]
    return _output(rounding_shift(acc, 1, attrs["shift"]), attrs)


def qadd_params(a_scale: float, b_scale: float, y_scale: float) -> tuple[int, int, int]:
    """(a_multiplier, b_multiplier, shift): both ratios on the largest shift that keeps them below 2^31."""
    ra, rb = a_scale / y_scale, b_scale / y_scale
    shift = min(MAX_SHIFT, 31 - math.frexp(max(ra, rb))[1])
    if shift < 1:
        raise ValueError(f"add rescales by {max(ra, rb)}: too large (at most 2^30)")
    ma, mb = (min(round(r * 2.0 ** shift), (1 << 31) - 1) for r in (ra, rb))
    return ma, mb, shift


register_op("qadd", ["a", "b"], ["y"], attrs=_QADD_ATTRS, infer=_qadd_infer, reference=_qadd_reference,
            doc="Integer a + b of two quantized tensors onto the output's scale (one rounding).")


# ---- qmul --------------------------------------------------------------------------------------
def _qmul_infer(ctx: InferContext):
    _check_input(ctx, 0, "a", ACTIVATION_TYPES, "a_zero")
    _check_input(ctx, 1, "b", ACTIVATION_TYPES, "b_zero")
    _check_requant(ctx, 1)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), broadcast_shapes([ctx.types[0].shape, ctx.types[1].shape], ctx))]


def _qmul_reference(inputs, attrs):
    a, b = (x.astype(np.int64) - attrs.get(k, 0) for x, k in zip(inputs, ("a_zero", "b_zero")))
    return _output(rounding_shift(a * b, attrs["multiplier"][0], attrs["shift"][0]), attrs)


register_op("qmul", ["a", "b"], ["y"], attrs={"a_zero": Attr("int", 0), "b_zero": Attr("int", 0), **_REQUANT_ATTRS},
            infer=_qmul_infer, reference=_qmul_reference,
            doc="Integer a * b of two quantized tensors (numpy broadcasting), requantized by a_scale * b_scale / y_scale.")


# ---- lookup ------------------------------------------------------------------------------------
def _lookup_infer(ctx: InferContext):
    _check_input(ctx, 0, "x", ACTIVATION_TYPES)
    t = ctx.types[1]
    entries = 1 << (8 * ctx.types[0].dtype.itemsize)
    if t.shape is not None and (len(t.shape) != 1 or t.shape[0] != entries):
        ctx.fail(f"table must be 1-D with {entries} entries (one per {ctx.types[0].dtype} code), got {t}")
    return [TensorType(t.dtype, ctx.types[0].shape)]


def _lookup_reference(inputs, attrs):
    x, table = inputs
    return table[x.astype(np.int64) - int(np.iinfo(x.dtype).min)]


register_op("lookup", ["x", "table"], ["y"], infer=_lookup_infer, reference=_lookup_reference,
            doc="y = table[x - min(x's type)]: any function of an int8/uint8 tensor, tabulated per code "
                "(sigmoid, hard-swish... between quantized tensors, or their float values).")
