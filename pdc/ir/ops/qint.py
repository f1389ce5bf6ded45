"""pdc's integer ops, made by the quantizer: qconv, qmatmul, qadd, qmul, requantize, lookup, qsoftmax
and qlayer_norm.

Their arithmetic lives in their attributes, so the NumPy references here are the bit-exact
reference every target's code must equal:

    acc = sum((x - x_zero) * w) + bias                         exactly, in integers (qconv / qmatmul;
                                                               qmatmul's b may be an activation: b - b_zero)
    acc = x - x_zero                                           (requantize)
    acc = (a - a_zero) * (b - b_zero)                          (qmul)
    y   = clamp(y_zero + rint(f32(acc) * scale), lo, hi)

The one requantization rule is ONNX's (QLinearConv, QLinearMatMul) as ONNX Runtime computes it:
the accumulator converted to float32, multiplied by the float32 `scale` (s_x * s_w / s_y, one
value or one per output channel, computed in float32 in that order by `requant_scale`), the
float32 product rounded to the nearest integer, ties to even. Every step is one IEEE single
operation, so each target's code, vector or scalar, gives the same bits (the product may be
rounded in a vector lane or a scalar register alike; nothing is fused or reassociated).
qadd follows ONNX Runtime's QLinearAdd: with ratios a_scale = s_a / s_y and b_scale = s_b / s_y
(float32) and the constant c = f32(y_zero) - (a_scale * a_zero + b_scale * b_zero) (float32 steps),
y = clamp(rint(fma(a, a_scale, fma(b, b_scale, c))), lo, hi) with two fused multiply-adds.
`clamp` ([lo, hi], within the output type's range) is where a fused ReLU / ReLU6 goes.
qconv and qmatmul with y_dtype=i32 give the accumulators themselves (no scale, y_zero or clamp):
for a layer whose result is wanted in float, dequantized per channel with scale s_x * s_w,
without an int8 rounding on the way. lookup tabulates any function over the 256 codes.
Weights are symmetric (zero point 0) int8; scale holds one value, or one per output channel
(qconv's axis 1, qmatmul's last axis). qmatmul's b is either such weights (2-D [K, N]) or a
quantized activation (attention's q @ k^T, p @ v: int8 / uint8 with b_zero, [..., K, N] whose batch
dims broadcast with a's as numpy's matmul does).

qlayer_norm normalizes rows of D codes (dims [axis, rank)) with integer sums and a fixed sequence
of float32 operations, so that every target computes the same bits:

    d = x_mult * (x - x_zero) [+ r_mult * (r - r_zero)]                               (a residual r)
    S1 = sum d;  S2 = sum d^2;  V = D * S2 - S1^2;  n = D * d - S1                    (exact integers)
    inv = 1 / sqrt(f32(V) + var_epsilon)        float32 conversion (one rounding), add, sqrt, divide
    u = f32(n) * inv                            float32 conversion (one rounding), multiply
    y = fma(u, gamma, beta)                     one rounding
    q_y = clamp(rint(y) + y_zero, lo, hi)       (y_dtype i8 / u8; f32 gives y itself)

which is LayerNorm: for x = unit * d, (x - mean) / sqrt(var + eps) = n / sqrt(V + eps * D^2 / unit^2),
so var_epsilon = eps * D^2 / unit^2 (`layer_norm_epsilon`). The residual form is a post-LN
transformer's add + LayerNorm with the sum kept exact: x_mult / r_mult are the two scales' ratio on a
finer grid (`residual_multipliers`; x_mult 1 and no r: unit = s_x). gamma and beta are in the output's
units (divided by y's scale for an integer output). D * max|d| < 2^26 keeps V below 2^53 (float64
holds it exactly, so the reference's conversions round once, as C's do).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import TensorType
from .common import broadcast_shapes, normalize_axis
from .quant import _CONV_ATTRS, _conv_infer_shape, int_conv

ACTIVATION_TYPES = (dtypes.int8, dtypes.uint8)


def requant_scale(*factors: float, divisor: float = 1.0) -> float:
    """The float32 product of `factors` divided by `divisor`, one float32 rounding per step (as
    ONNX Runtime forms s_x * s_w / s_y): a value the requantization rule takes as it is."""
    acc = np.float32(1.0)
    for f in factors:
        acc = np.float32(acc * np.float32(f))
    value = np.float32(acc / np.float32(divisor))
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"requantization scale {float(value)} must be finite and >= 0")
    return float(value)


def rescale(acc: np.ndarray, scale) -> np.ndarray:
    """rint(f32(acc) * f32(scale)) as float64 (exact integers): the float32 product, ties to even."""
    return np.rint(np.asarray(acc).astype(np.float32) * np.asarray(scale, np.float32)).astype(np.float64)


def fma32(x: np.ndarray, r, c) -> np.ndarray:
    """float32 fma(x, r, c): x * r + c rounded once to float32, for integers |x| < 2^29 or float32 x, and
    float32 r, c. x * r is exact in float64 (at most 48 significant bits); the float64 sum's rounding error e (TwoSum) decides the one case its
    float32 rounding can differ from the exact sum's: a sum on a float32 halfway point."""
    p = np.asarray(x, np.float64) * np.float64(np.float32(r))
    c = np.asarray(c, np.float32).astype(np.float64)
    s = p + c
    bp = s - p
    e = (p - (s - bp)) + (c - bp)
    out = s.astype(np.float32)
    toward = np.where(s > out.astype(np.float64), np.float32(np.inf), np.float32(-np.inf))
    other = np.nextafter(out, toward.astype(np.float32))
    halfway = (s != out.astype(np.float64)) & (s == (out.astype(np.float64) + other.astype(np.float64)) / 2)
    # on a halfway point the float32 cast rounded to even; the exact sum lies beyond it by e
    fix = halfway & (e != 0)
    beyond = np.sign(e) == np.sign(other.astype(np.float64) - out.astype(np.float64))
    return np.where(fix & beyond, other, out).astype(np.float32)


def qadd_constant(a_scale: float, a_zero: int, b_scale: float, b_zero: int, y_zero: int) -> np.float32:
    """qadd's c = f32(y_zero) - (a_scale * a_zero + b_scale * b_zero), each step rounded to float32."""
    f = np.float32
    return f(f(y_zero) - f(f(f(a_scale) * f(a_zero)) + f(f(b_scale) * f(b_zero))))


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
    "scale": Attr("floats", None), "y_zero": Attr("int", 0),
    "clamp": Attr("ints", None), "y_dtype": Attr("dtype", dtypes.int8),
}


def _output(acc: np.ndarray, attrs) -> np.ndarray:
    """y_zero + acc (rounded already), clamped to [lo, hi]."""
    dt = attrs.get("y_dtype", dtypes.int8)
    lo, hi = attrs.get("clamp") or _range(dt)
    return np.clip(attrs.get("y_zero", 0) + acc, lo, hi).astype(dt.np)


def _requantized(acc: np.ndarray, attrs, channel_axis: int) -> np.ndarray:
    """qconv / qmatmul's output from the exact accumulators (themselves for y_dtype i32)."""
    if attrs.get("y_dtype") is dtypes.int32:
        return acc.astype(np.int32)
    return _output(rescale(acc, _per_channel(attrs["scale"], channel_axis, acc.ndim)), attrs)


def _per_channel(values, axis: int, rank: int) -> np.ndarray:
    """A per-tensor (1 value) or per-channel list shaped to broadcast along `axis` of a rank-`rank` array."""
    a = np.asarray(values, np.float32)
    if a.size == 1:
        return a.reshape(())
    shape = [1] * rank
    shape[axis] = a.size
    return a.reshape(shape)


def _check_requant(ctx: InferContext, channels, accumulators: bool = False) -> None:
    """scale: one value or one per channel, float32, finite, >= 0; clamp within y_dtype.
    With `accumulators` (qconv, qmatmul) y_dtype i32 asks for the accumulators, without any of them."""
    if accumulators and ctx.attrs.get("y_dtype") is dtypes.int32:
        given = [k for k in ("scale", "y_zero", "clamp") if k in ctx.attrs]
        if given:
            ctx.fail(f"y_dtype i32 gives the accumulators: {', '.join(given)} must be absent")
        return
    scale = ctx.attrs.get("scale") or []
    if not scale:
        ctx.fail("scale is missing: give one value or one per output channel")
    if len(scale) != 1 and isinstance(channels, int) and len(scale) != channels:
        ctx.fail(f"scale has {len(scale)} values for {channels} output channels (give 1 or {channels})")
    _check_scales(ctx, "scale", scale)
    dt = ctx.attrs.get("y_dtype", dtypes.int8)
    if dt not in ACTIVATION_TYPES:
        ctx.fail(f"y_dtype must be int8{', uint8 or int32 (the accumulators)' if accumulators else ' or uint8'}, got {dt}")
    lo, hi = _range(dt)
    if not lo <= ctx.attrs.get("y_zero", 0) <= hi:
        ctx.fail(f"y_zero {ctx.attrs.get('y_zero', 0)} is outside {dt}'s range [{lo}, {hi}]")
    clamp = ctx.attrs.get("clamp")
    if clamp is not None and (len(clamp) != 2 or not lo <= clamp[0] <= clamp[1] <= hi):
        ctx.fail(f"clamp {clamp} must be [lo, hi] with {lo} <= lo <= hi <= {hi}")


def _check_scales(ctx, name: str, values) -> None:
    for v in values:
        if not (math.isfinite(v) and v >= 0) or float(np.float32(v)) != v:
            ctx.fail(f"{name} {v} must be a finite float32 value >= 0")


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
            doc="Integer convolution (int8 weights, int32 bias) requantized by a float32 scale (ties to even).")


# ---- qmatmul -----------------------------------------------------------------------------------
def _qmatmul_infer(ctx: InferContext):
    _check_input(ctx, 0, "a", ACTIVATION_TYPES, "a_zero")
    _check_input(ctx, 1, "b", ACTIVATION_TYPES, "b_zero")
    a, b = ctx.types[0].shape, ctx.types[1].shape
    if b is not None and len(b) < 2:
        ctx.fail(f"b must be [..., K, N] (2-D for weights), got {list(b)}")
    if a is not None and len(a) < (1 if b is None or len(b) == 2 else 2):
        ctx.fail(f"a must have at least {1 if b is None or len(b) == 2 else 2} dims, got {list(a)}")
    if a is not None and b is not None and isinstance(a[-1], int) and isinstance(b[-2], int) and a[-1] != b[-2]:
        ctx.fail(f"a's last dim {a[-1]} differs from b's dim K {b[-2]}")
    channels = None if b is None else b[-1]
    _check_bias(ctx, 2, channels)
    _check_requant(ctx, channels, accumulators=True)
    if a is None or b is None:
        shape = None
    elif len(b) == 2:
        shape = tuple(a[:-1]) + (b[1],)
    else:  # numpy's matmul: the batch dims broadcast
        shape = tuple(broadcast_shapes([a[:-2], b[:-2]], ctx)) + (a[-2], b[-1])
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), shape)]


def _qmatmul_reference(inputs, attrs):
    a, b = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    # int64 products summed by matmul: exact (|a - z| * |b - z| * K stays far below 2^63)
    acc = (a.astype(np.int64) - attrs.get("a_zero", 0)) @ (b.astype(np.int64) - attrs.get("b_zero", 0))
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return _requantized(acc, attrs, acc.ndim - 1)


register_op("qmatmul", ["a", "b", "bias?"], ["y"],
            attrs={"a_zero": Attr("int", 0), "b_zero": Attr("int", 0), **_REQUANT_ATTRS},
            infer=_qmatmul_infer, reference=_qmatmul_reference,
            doc="Integer a[..., K] x b[..., K, N] (numpy's matmul: weights are a 2-D int8 b with b_zero 0; "
                "an activation b, int8 or uint8 with its b_zero, may carry batch dims that broadcast), "
                "int32 bias, requantized by a float32 scale (ties to even).")


# ---- requantize --------------------------------------------------------------------------------
def _requantize_infer(ctx: InferContext):
    _check_input(ctx, 0, "x", ACTIVATION_TYPES, "x_zero")
    _check_requant(ctx, 1)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), ctx.types[0].shape)]


def _requantize_reference(inputs, attrs):
    acc = inputs[0].astype(np.int64) - attrs.get("x_zero", 0)
    return _output(rescale(acc, attrs["scale"][0]), attrs)


register_op("requantize", ["x"], ["y"], attrs={"x_zero": Attr("int", 0), **_REQUANT_ATTRS},
            infer=_requantize_infer, reference=_requantize_reference,
            doc="Moves an int8/uint8 tensor to another scale and zero point.")


# ---- qadd --------------------------------------------------------------------------------------
_QADD_ATTRS = {
    "a_zero": Attr("int", 0), "b_zero": Attr("int", 0), "a_scale": Attr("float", REQUIRED), "b_scale": Attr("float", REQUIRED),
    "y_zero": Attr("int", 0), "clamp": Attr("ints", None), "y_dtype": Attr("dtype", dtypes.int8),
}


def _qadd_infer(ctx: InferContext):
    _check_input(ctx, 0, "a", ACTIVATION_TYPES, "a_zero")
    _check_input(ctx, 1, "b", ACTIVATION_TYPES, "b_zero")
    _check_scales(ctx, "a_scale", [ctx.attrs["a_scale"]])
    _check_scales(ctx, "b_scale", [ctx.attrs["b_scale"]])
    # the output checks, on a stand-in per-tensor scale
    _check_requant(_Attrs(ctx, dict(ctx.attrs, scale=[1.0])), 1)
    a, b = ctx.types[0].shape, ctx.types[1].shape
    shape = broadcast_shapes([a, b], ctx)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), shape)]


class _Attrs:
    """An InferContext seen with other attributes."""

    def __init__(self, ctx: InferContext, attrs: dict):
        self.attrs, self.fail = attrs, ctx.fail


def _qadd_reference(inputs, attrs):
    a, b = np.broadcast_arrays(*(x.astype(np.int64) for x in inputs))
    ra, rb = attrs["a_scale"], attrs["b_scale"]
    c = qadd_constant(ra, attrs.get("a_zero", 0), rb, attrs.get("b_zero", 0), attrs.get("y_zero", 0))
    v = fma32(a, ra, fma32(b, rb, c))
    dt = attrs.get("y_dtype", dtypes.int8)
    lo, hi = attrs.get("clamp") or _range(dt)
    return np.clip(np.rint(v.astype(np.float64)), lo, hi).astype(dt.np)


register_op("qadd", ["a", "b"], ["y"], attrs=_QADD_ATTRS, infer=_qadd_infer, reference=_qadd_reference,
            doc="Integer a + b of two quantized tensors onto the output's scale (ONNX Runtime's QLinearAdd rule).")


# ---- qmul --------------------------------------------------------------------------------------
def _qmul_infer(ctx: InferContext):
    _check_input(ctx, 0, "a", ACTIVATION_TYPES, "a_zero")
    _check_input(ctx, 1, "b", ACTIVATION_TYPES, "b_zero")
    _check_requant(ctx, 1)
    return [TensorType(ctx.attrs.get("y_dtype", dtypes.int8), broadcast_shapes([ctx.types[0].shape, ctx.types[1].shape], ctx))]


def _qmul_reference(inputs, attrs):
    a, b = (x.astype(np.int64) - attrs.get(k, 0) for x, k in zip(inputs, ("a_zero", "b_zero")))
    return _output(rescale(a * b, attrs["scale"][0]), attrs)


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


# ---- qsoftmax ----------------------------------------------------------------------------------
def softmax_table(x_scale: float, length: int) -> np.ndarray:
    """ONNX Runtime's QLinearSoftmax table: float32 e^((i - 255 + b) * x_scale) for the 256 code
    distances i, with the shift b = max(0, ln(FLT_MAX / length) - 5) / x_scale that keeps a row's
    sum of `length` entries finite."""
    flt_max, n = np.finfo(np.float32).max, np.float32(length)
    shift = max(0.0, math.log(float(flt_max / n)) - 5.0) / float(np.float32(x_scale))
    return np.exp((np.arange(256) - 255 + shift) * float(np.float32(x_scale))).astype(np.float32)


def softmax_reciprocal(y_scale: float) -> np.float32:
    """floor(1 / y_scale) in float32, the factor ONNX Runtime's QLinearSoftmax scales by."""
    return np.float32(np.floor(np.float32(1.0) / np.float32(y_scale)))


def _qsoftmax_infer(ctx: InferContext):
    _check_input(ctx, 0, "x", ACTIVATION_TYPES)
    t = ctx.types[0]
    if t.shape is not None:
        normalize_axis(ctx.attrs.get("axis", -1), len(t.shape), ctx)
    _check_scales(ctx, "x_scale", [ctx.attrs["x_scale"]])
    _check_scales(ctx, "y_scale", [ctx.attrs["y_scale"]])
    if ctx.attrs["y_scale"] == 0:
        ctx.fail("y_scale must be > 0")
    lo, hi = _range(t.dtype)
    if not lo <= ctx.attrs.get("y_zero", 0) <= hi:
        ctx.fail(f"y_zero {ctx.attrs.get('y_zero', 0)} is outside {t.dtype}'s range [{lo}, {hi}]")
    return [TensorType(t.dtype, t.shape)]


def _qsoftmax_reference(inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", -1) % x.ndim
    xm = np.moveaxis(x.astype(np.int64), axis, -1)
    if xm.size == 0:
        return x.copy()
    e = softmax_table(attrs["x_scale"], xm.shape[-1])[255 + xm - xm.max(axis=-1, keepdims=True)]
    total = np.cumsum(e, axis=-1, dtype=np.float32)[..., -1:]  # summed in order, in float32
    with np.errstate(over="ignore"):  # rows of one code: e * r passes FLT_MAX (saturates below)
        v = np.minimum((e * softmax_reciprocal(attrs["y_scale"])) / total, np.float32(512))
    q = np.rint(v).astype(np.int64) + attrs.get("y_zero", 0)
    q = np.minimum(q, 255)  # ONNX Runtime's bound for both types; an int8 code wraps as its cast does
    y = q.astype(np.uint8).view(np.int8) if x.dtype == np.int8 else q.astype(np.uint8)
    return np.moveaxis(y, -1, axis)


register_op("qsoftmax", ["x"], ["y"],
            attrs={"axis": Attr("int", -1), "x_scale": Attr("float", REQUIRED), "y_scale": Attr("float", REQUIRED),
                   "y_zero": Attr("int", 0)},
            infer=_qsoftmax_infer, reference=_qsoftmax_reference,
            doc="Softmax of quantized codes by ONNX Runtime's QLinearSoftmax rule (a 256-entry exp table, "
                "a float32 sum per row, outputs scaled by floor(1 / y_scale)): what ONNX Runtime runs for "
                "DequantizeLinear -> Softmax -> QuantizeLinear. (e * r) / sum is bounded at 512 before "
                "the rounding (any value above gives 255): a row of one code, where ONNX Runtime's "
                "float32 product overflows, saturates.")


# ---- qlayer_norm -------------------------------------------------------------------------------
NORM_BOUND = 1 << 26  # D * max|d|: V < 2^52 (exact in float64) and |n| < 2^27 (int32)


def layer_norm_epsilon(epsilon: float, size: int, unit: float) -> float:
    """qlayer_norm's var_epsilon: a LayerNorm's epsilon in the units of V = D * S2 - S1^2 for d in
    steps of `unit` (x = unit * d), epsilon * D^2 / unit^2, computed in float64, rounded once to float32."""
    value = float(np.float32(float(epsilon) * size * size / (float(unit) ** 2)))
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"LayerNorm epsilon {epsilon} in steps of {unit} gives var_epsilon {value}: must be finite and > 0")
    return value


def residual_multipliers(x_scale: float, r_scale: float, bits: int) -> tuple[int, int, float]:
    """(x_mult, r_mult, unit) that put x's and r's codes on one integer grid of step `unit`: the larger
    scale's multiplier 2^bits, the other's its ratio to it rounded (>= 1), unit = the larger / 2^bits."""
    top = max(x_scale, r_scale)
    mult = lambda s: max(1, int(round(s / top * (1 << bits))))  # noqa: E731
    return mult(x_scale), mult(r_scale), top / (1 << bits)


def layer_norm_codes(inputs, attrs) -> np.ndarray:
    """qlayer_norm's d (int64): x_mult * (x - x_zero) [+ r_mult * (r - r_zero)]."""
    d = (inputs[0].astype(np.int64) - attrs.get("x_zero", 0)) * attrs.get("x_mult", 1)
    r = inputs[3] if len(inputs) > 3 else None
    if r is not None:
        d = d + (r.astype(np.int64) - attrs.get("r_zero", 0)) * attrs.get("r_mult", 1)
    return d


def qlayer_norm_rows(d: np.ndarray, var_epsilon: float, gamma: np.ndarray, beta) -> np.ndarray:
    """qlayer_norm's float32 values before the output rounding, for rows d [R, D] (int64): the
    documented sequence of float32 operations (no step promoted to float64)."""
    f = np.float32
    s1, s2 = d.sum(axis=1, keepdims=True), (d * d).sum(axis=1, keepdims=True)
    size = d.shape[1]
    v = size * s2 - s1 * s1                                  # exact, >= 0 (Cauchy-Schwarz)
    n = size * d - s1                                        # exact
    # integers below 2^53 convert to float64 exactly: one rounding to float32, as C's (float)v
    vf, nf = (a.astype(np.float64).astype(np.float32) for a in (v, n))
    inv = f(1) / np.sqrt(vf + f(var_epsilon))                # float32 add, sqrt, divide
    u = nf * inv                                             # float32 multiply
    b = np.zeros(size, np.float32) if beta is None else np.asarray(beta, np.float32).reshape(-1)
    return fma32(u, np.asarray(gamma, np.float32).reshape(-1), b)   # one rounding


def norm_code_bound(attrs, x_dt, r_dt=None) -> int:
    """The largest |d| of qlayer_norm's integer grid."""
    def dist(dt, zero):
        lo, hi = _range(dt)
        return max(abs(lo - zero), abs(hi - zero))
    bound = attrs.get("x_mult", 1) * dist(x_dt, attrs.get("x_zero", 0))
    if r_dt is not None:
        bound += attrs.get("r_mult", 1) * dist(r_dt, attrs.get("r_zero", 0))
    return bound


_QLN_ATTRS = {
    "axis": Attr("int", -1), "x_zero": Attr("int", 0), "x_mult": Attr("int", 1), "r_zero": Attr("int", 0),
    "r_mult": Attr("int", 1), "var_epsilon": Attr("float", REQUIRED),
    "y_dtype": Attr("dtype", dtypes.int8), "y_zero": Attr("int", 0), "clamp": Attr("ints", None),
}


def _qlayer_norm_infer(ctx: InferContext):
    _check_input(ctx, 0, "x", ACTIVATION_TYPES, "x_zero")
    r_dt = None
    if ctx.has_input(3):
        _check_input(ctx, 3, "r", ACTIVATION_TYPES, "r_zero")
        r_dt = ctx.types[3].dtype
        if ctx.types[0].shape is not None and ctx.types[3].shape is not None and ctx.types[3].shape != ctx.types[0].shape:
            ctx.fail(f"r {list(ctx.types[3].shape)} must have x's shape {list(ctx.types[0].shape)}")
    for k in ("x_mult", "r_mult"):
        if not 1 <= ctx.attrs.get(k, 1) <= 1 << 16:
            ctx.fail(f"{k} {ctx.attrs.get(k, 1)} must be in [1, 65536]")
    eps = ctx.attrs["var_epsilon"]
    _check_scales(ctx, "var_epsilon", [eps])
    if eps == 0:
        ctx.fail("var_epsilon must be > 0")
    x = ctx.types[0].shape
    tail = None
    if x is not None:
        axis = normalize_axis(ctx.attrs.get("axis", -1), len(x), ctx)
        tail = tuple(x[axis:])
        bound = norm_code_bound(ctx.attrs, ctx.types[0].dtype, r_dt)
        if all(isinstance(d, int) for d in tail) and math.prod(tail) * bound >= NORM_BOUND:
            ctx.fail(f"{math.prod(tail)} elements per row of codes up to {bound}: their product must stay below 2^26")
    for i, what in ((1, "gamma"), (2, "beta")):
        t = ctx.types[i] if ctx.has_input(i) else None
        if t is None:
            continue
        if t.dtype is not dtypes.float32:
            ctx.fail(f"{what} must be f32, got {t.dtype}")
        if tail is not None and t.shape is not None and tuple(t.shape) != tail:
            ctx.fail(f"{what} must have the normalized dims {list(tail)}, got {list(t.shape)}")
    dt = ctx.attrs.get("y_dtype", dtypes.int8)
    if dt is dtypes.float32:
        given = [k for k in ("y_zero", "clamp") if k in ctx.attrs]
        if given:
            ctx.fail(f"y_dtype f32 gives the float values: {', '.join(given)} must be absent")
    else:
        _check_requant(_Attrs(ctx, dict(ctx.attrs, scale=[1.0])), 1)
    return [TensorType(dt, x)]


def _qlayer_norm_reference(inputs, attrs):
    x, gamma = inputs[0], inputs[1]
    beta = inputs[2] if len(inputs) > 2 else None
    dt = attrs.get("y_dtype", dtypes.int8)
    if x.size == 0:
        return np.zeros(x.shape, dt.np)
    axis = attrs.get("axis", -1) % x.ndim
    d = layer_norm_codes(inputs, attrs)
    y = qlayer_norm_rows(d.reshape(-1, math.prod(x.shape[axis:])), attrs["var_epsilon"], gamma, beta).reshape(x.shape)
    if dt is dtypes.float32:
        return y
    return _output(np.rint(y.astype(np.float64)), attrs)


register_op("qlayer_norm", ["x", "gamma", "beta?", "r?"], ["y"], attrs=_QLN_ATTRS,
            infer=_qlayer_norm_infer, reference=_qlayer_norm_reference,
            doc="LayerNorm of quantized codes (x, or the residual sum x + r on one integer grid) over dims "
                "[axis, rank): integer sums, then a fixed sequence of float32 steps; gamma / beta (f32, the "
                "normalized dims) in the output's units (divided by y's scale for an int8 / uint8 output; "
                "y_dtype f32 gives the values).")
