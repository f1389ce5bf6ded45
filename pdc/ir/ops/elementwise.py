"""Elementwise ops: unary math, activations, broadcasting binary and variadic ops, logic and
comparisons, bit operations, Clip, Where, Cast and CastLike.

Every op mirrors the latest ONNX form of its namesake (`onnx=`). Binary and variadic ops use
multidirectional (numpy) broadcasting; PRelu broadcasts its slope to X (unidirectional).

Numerics of the NumPy references:
- float16 and bfloat16 math runs in float32 and is rounded once to the input type.
- integer Div truncates toward zero (C semantics); Mod follows `fmod` (0: sign of the divisor,
  1: sign of the dividend), for integers and floats alike.
- Pow takes base and exponent of different types; the result has the base's type (an integer
  base with a float exponent truncates the float result).
- BitShift by a negative amount or by the bit width or more gives 0 (-1 for a right shift of a
  negative signed value); signed left shifts discard the bits shifted past the sign bit.
"""
from __future__ import annotations

import math
from functools import reduce

import numpy as np
from onnx import numpy_helper

from .. import dtypes
from ..registry import REGISTRY, Attr, InferContext, REQUIRED, register_op, with_defaults
from ..types import TensorType
from .common import broadcast_shapes, require_dtype, require_same_dtype

FLOATS = dtypes.FLOATS
INTS = dtypes.INTS
NUMERIC = FLOATS + INTS
BOOL = (dtypes.bool_,)
ALL = dtypes.ALL

_HALF = (np.dtype(np.float16), dtypes.bfloat16.np)


# ---- helpers ------------------------------------------------------------------------------
def _wide(x: np.ndarray) -> np.ndarray:
    """float16/bfloat16 widened to float32 for computing; everything else unchanged."""
    return x.astype(np.float32) if x.dtype in _HALF else x


def _register(name, inputs, outputs, infer, fn, *, attrs=None, verify=None, doc="", onnx=None):
    """register_op for this family: elementwise, and the reference sees every attribute default."""
    def reference(args, node_attrs):
        with np.errstate(all="ignore"):  # overflow, 0/0, log(-1): IEEE results are the answer
            return fn(args, with_defaults(REGISTRY[name], node_attrs))

    def checked_infer(ctx: InferContext):
        if verify is not None:  # bad attribute values fail as soon as a node is built, not only in verify_graph
            verify(ctx)
        return infer(ctx)
    return register_op(name, inputs, outputs, infer=checked_infer, reference=reference, attrs=attrs,
                       verify=verify, doc=doc, onnx=onnx, elementwise=True)


def _check_inputs(ctx: InferContext, allowed, indices=None):
    for i in range(len(ctx.types)) if indices is None else indices:
        if ctx.has_input(i):
            require_dtype(ctx, i, allowed)


def unary_infer(allowed, out_dtype=None):
    """Infer for unary ops: same shape; dtype of the input unless `out_dtype`."""
    def infer(ctx: InferContext):
        _check_inputs(ctx, allowed)
        t = ctx.types[0]
        return [t if out_dtype is None else t.with_dtype(out_dtype)]
    return infer


def broadcast_infer(allowed, out_dtype=None, same_dtype=True, lo=1):
    """Infer for broadcasting ops: multidirectional broadcast of every input's shape."""
    def infer(ctx: InferContext):
        present = [i for i in range(len(ctx.types)) if ctx.has_input(i)]
        if len(present) < lo:
            ctx.fail(f"needs at least {lo} input{'s' if lo > 1 else ''}, got {len(present)}")
        _check_inputs(ctx, allowed)
        if same_dtype:
            require_same_dtype(ctx, *present)
        dt = out_dtype or ctx.types[present[0]].dtype
        return [TensorType(dt, broadcast_shapes([ctx.types[i].shape for i in present], ctx))]
    return infer


def _choice(name, values):
    def verify(ctx: InferContext):
        v = ctx.attrs.get(name)
        if v is not None and v not in values:
            ctx.fail(f"attribute '{name}' must be one of {', '.join(map(repr, values))}, got {v!r}")
    return verify


def _flag(*names):
    def verify(ctx: InferContext):
        for n in names:
            v = ctx.attrs.get(n)
            if v is not None and v not in (0, 1):
                ctx.fail(f"attribute '{n}' must be 0 or 1, got {v}")
    return verify


def _float_unary(fn):
    """Reference for float math: computed at >= float32, returned in the input's dtype."""
    def ref(args, attrs):
        x = args[0]
        return np.asarray(fn(_wide(x), attrs)).astype(x.dtype, copy=False)
    return ref


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(x):
    # NumPy has no erf; math.erf is exact to double precision (frompyfunc gives a scalar for 0-d input)
    return np.asarray(_erf_scalar(np.asarray(x, np.float64)), np.float64).astype(x.dtype)


def _softplus(x):
    return np.logaddexp(0, x).astype(x.dtype)


def _gelu(x, attrs):
    if attrs["approximate"] == "tanh":
        c = math.sqrt(2 / math.pi)
        return 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


# ---- unary math -----------------------------------------------------------------------------
_FLOAT_MATH = {
    # IR name: (ONNX type, function of the widened input)
    "exp": ("Exp", np.exp),
    "log": ("Log", np.log),
    "sqrt": ("Sqrt", np.sqrt),
    "reciprocal": ("Reciprocal", np.reciprocal),
    "floor": ("Floor", np.floor),
    "ceil": ("Ceil", np.ceil),
    "round": ("Round", np.rint),  # half to even
    "sin": ("Sin", np.sin),
    "cos": ("Cos", np.cos),
    "tan": ("Tan", np.tan),
    "asin": ("Asin", np.arcsin),
    "acos": ("Acos", np.arccos),
    "atan": ("Atan", np.arctan),
    "sinh": ("Sinh", np.sinh),
    "cosh": ("Cosh", np.cosh),
    "asinh": ("Asinh", np.arcsinh),
    "acosh": ("Acosh", np.arccosh),
    "atanh": ("Atanh", np.arctanh),
    "erf": ("Erf", _erf),
    "tanh": ("Tanh", np.tanh),
    "sigmoid": ("Sigmoid", _sigmoid),
    "softplus": ("Softplus", _softplus),
    "softsign": ("Softsign", lambda x: x / (1 + np.abs(x))),
    "mish": ("Mish", lambda x: x * np.tanh(_softplus(x))),
}

for _name, (_onnx, _fn) in _FLOAT_MATH.items():
    _register(_name, ["X"], ["Y"], unary_infer(FLOATS), _float_unary(lambda x, attrs, f=_fn: f(x)),
              onnx=_onnx, doc=f"Elementwise {_onnx}.")

_register("abs", ["X"], ["Y"], unary_infer(NUMERIC), lambda a, attrs: np.abs(a[0]), onnx="Abs",
          doc="Absolute value (integer minimum wraps to itself).")
_register("neg", ["X"], ["Y"], unary_infer(NUMERIC), lambda a, attrs: np.negative(a[0]), onnx="Neg",
          doc="Negation.")
_register("sign", ["X"], ["Y"], unary_infer(NUMERIC), lambda a, attrs: np.sign(a[0]), onnx="Sign",
          doc="-1, 0 or 1 by the sign of X (NaN stays NaN).")
_register("is_nan", ["X"], ["Y"], unary_infer(FLOATS, dtypes.bool_), lambda a, attrs: np.isnan(_wide(a[0])),
          onnx="IsNaN", doc="True where X is NaN.")


def _is_inf(args, attrs):
    x = _wide(args[0])
    return (np.isposinf(x) & bool(attrs["detect_positive"])) | (np.isneginf(x) & bool(attrs["detect_negative"]))


_register("is_inf", ["X"], ["Y"], unary_infer(FLOATS, dtypes.bool_), _is_inf, onnx="IsInf",
          attrs={"detect_negative": Attr("int", 1), "detect_positive": Attr("int", 1)},
          verify=_flag("detect_negative", "detect_positive"),
          doc="True where X is +inf (detect_positive) or -inf (detect_negative).")
_register("not", ["X"], ["Y"], unary_infer(BOOL), lambda a, attrs: np.logical_not(a[0]), onnx="Not",
          doc="Logical not.")
_register("bitwise_not", ["X"], ["Y"], unary_infer(INTS), lambda a, attrs: np.invert(a[0]), onnx="BitwiseNot",
          doc="Bitwise not.")


# ---- activations ----------------------------------------------------------------------------
def _activation(name, onnx, fn, attrs=None, doc="", verify=None):
    _register(name, ["X"], ["Y"], unary_infer(FLOATS), _float_unary(fn), attrs=attrs, onnx=onnx, doc=doc,
              verify=verify)


_register("relu", ["X"], ["Y"], unary_infer(NUMERIC), lambda a, attrs: np.maximum(a[0], a[0].dtype.type(0)),
          onnx="Relu", doc="max(X, 0).")
_activation("leaky_relu", "LeakyRelu", lambda x, a: np.where(x >= 0, x, a["alpha"] * x),
            {"alpha": Attr("float", 0.01)}, "X if X >= 0 else alpha * X.")
_activation("elu", "Elu", lambda x, a: np.where(x >= 0, x, a["alpha"] * np.expm1(x)),
            {"alpha": Attr("float", 1.0)}, "X if X >= 0 else alpha * (exp(X) - 1).")
_activation("selu", "Selu",
            lambda x, a: a["gamma"] * np.where(x > 0, x, a["alpha"] * np.expm1(x)),
            {"alpha": Attr("float", 1.67326319217681884765625), "gamma": Attr("float", 1.05070102214813232421875)},
            "gamma * (X if X > 0 else alpha * (exp(X) - 1)).")
_activation("celu", "Celu",
            lambda x, a: np.maximum(x, 0) + np.minimum(0, a["alpha"] * np.expm1(x / a["alpha"])),
            {"alpha": Attr("float", 1.0)}, "max(0, X) + min(0, alpha * (exp(X / alpha) - 1)).")
_activation("hard_sigmoid", "HardSigmoid", lambda x, a: np.clip(a["alpha"] * x + a["beta"], 0, 1),
            {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)}, "max(0, min(1, alpha * X + beta)).")
# ONNX defines HardSwish as X * HardSigmoid<alpha = 1/6, beta = 0.5>(X); HardSigmoid's alpha is a float
# attribute, so alpha is 1/6 rounded to float32 in every dtype (ONNX Runtime and ONNX's reference agree)
HARD_SWISH_ALPHA = float(np.float32(1 / 6))
_activation("hard_swish", "HardSwish",
            lambda x, a: x * np.clip(x * np.asarray(HARD_SWISH_ALPHA, x.dtype) + np.asarray(0.5, x.dtype), 0, 1),
            doc="X * max(0, min(1, alpha * X + 1 / 2)), alpha = float32(1 / 6).")
_activation("gelu", "Gelu", _gelu, {"approximate": Attr("string", "none")},
            "Gaussian error linear unit; approximate='tanh' uses the tanh formula.",
            verify=_choice("approximate", ("none", "tanh")))
_activation("thresholded_relu", "ThresholdedRelu", lambda x, a: np.where(x > a["alpha"], x, 0),
            {"alpha": Attr("float", 1.0)}, "X if X > alpha else 0.")
_activation("swish", "Swish", lambda x, a: x * _sigmoid(a["alpha"] * x), {"alpha": Attr("float", 1.0)},
            "X * sigmoid(alpha * X).")


def _shrink(args, attrs):
    x = args[0]
    w = x.astype(np.float64) if x.dtype.kind in "iu" else _wide(x)
    lambd, bias = attrs["lambd"], attrs["bias"]
    y = np.where(w < -lambd, w + bias, np.where(w > lambd, w - bias, 0))
    return y.astype(x.dtype)


_register("shrink", ["input"], ["output"], unary_infer(NUMERIC), _shrink, onnx="Shrink",
          attrs={"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)},
          doc="X + bias if X < -lambd, X - bias if X > lambd, else 0.")


def _prelu_infer(ctx: InferContext):
    _check_inputs(ctx, NUMERIC)
    require_same_dtype(ctx, 0, 1)
    x, slope = ctx.types
    if x.shape is not None and slope.shape is not None:
        # unidirectional: slope broadcasts to X's shape, X's shape never grows
        if len(slope.shape) > len(x.shape):
            ctx.fail(f"slope {slope} has a higher rank than X {x}")
        for xd, sd in zip(x.shape[len(x.shape) - len(slope.shape):], slope.shape):
            if sd != 1 and isinstance(sd, int) and isinstance(xd, int) and sd != xd:
                ctx.fail(f"slope {slope} does not broadcast to X {x}")
    return [x]


def _prelu(args, attrs):
    x, slope = args
    w = _wide(x)
    return np.where(w < 0, _wide(slope) * w, w).astype(x.dtype)


_register("prelu", ["X", "slope"], ["Y"], _prelu_infer, _prelu, onnx="PRelu",
          doc="X if X >= 0 else slope * X; slope broadcasts to X (unidirectional).")


# ---- binary arithmetic ---------------------------------------------------------------------
def _same_type_binary(fn):
    """Reference for binary arithmetic: half floats computed in float32, result in A's dtype."""
    def ref(args, attrs):
        a, b = args
        return np.asarray(fn(_wide(a), _wide(b), attrs)).astype(a.dtype, copy=False)
    return ref


def _div(a, b, attrs):
    if a.dtype.kind not in "iu":
        return a / b
    q = np.floor_divide(a, b)
    if a.dtype.kind == "i":  # floor -> truncation toward zero
        q = q + ((q * b != a) & ((a < 0) != (b < 0)) & (b != 0)).astype(a.dtype)
    return q


def _mod(a, b, attrs):
    return np.fmod(a, b) if attrs["fmod"] else np.mod(a, b)


_ARITH = {
    "add": ("Add", lambda a, b, attrs: a + b),
    "sub": ("Sub", lambda a, b, attrs: a - b),
    "mul": ("Mul", lambda a, b, attrs: a * b),
    "div": ("Div", _div),
}
for _name, (_onnx, _fn) in _ARITH.items():
    _register(_name, ["A", "B"], ["C"], broadcast_infer(NUMERIC), _same_type_binary(_fn), onnx=_onnx,
              doc=f"Elementwise {_onnx} with numpy broadcasting; integers wrap"
                  + (" and divide truncating toward zero." if _name == "div" else "."))

_register("mod", ["A", "B"], ["C"], broadcast_infer(NUMERIC), _same_type_binary(_mod), onnx="Mod",
          attrs={"fmod": Attr("int", 0)}, verify=_flag("fmod"),
          doc="Remainder: fmod=0 takes the sign of B (A - floor(A/B)*B), fmod=1 the sign of A (C fmod).")


def _pow(args, attrs):
    x, y = args
    if x.dtype.kind in "iu" and y.dtype.kind in "iu" and not (y < 0).any():
        return np.power(x, y.astype(x.dtype))
    if x.dtype.kind in "iu":  # float or negative exponent: compute in double, truncate
        return np.power(x.astype(np.float64), y.astype(np.float64)).astype(x.dtype)
    w = _wide(x)
    return np.power(w, _wide(y).astype(w.dtype)).astype(x.dtype)


_register("pow", ["X", "Y"], ["Z"], broadcast_infer(NUMERIC, same_dtype=False), _pow, onnx="Pow",
          doc="X ** Y with numpy broadcasting; X and Y may differ in type, Z has X's type.")


# ---- variadic ------------------------------------------------------------------------------
def _variadic(fn, mean=False):
    def ref(args, attrs):
        dt = args[0].dtype
        out = reduce(fn, [_wide(a) for a in args])
        if mean:
            out = out / len(args)
        return np.asarray(out).astype(dt, copy=False)
    return ref


_register("max", ["data_0*"], ["max"], broadcast_infer(NUMERIC), _variadic(np.maximum), onnx="Max",
          doc="Elementwise maximum of one or more inputs (NaN propagates).")
_register("min", ["data_0*"], ["min"], broadcast_infer(NUMERIC), _variadic(np.minimum), onnx="Min",
          doc="Elementwise minimum of one or more inputs (NaN propagates).")
_register("sum", ["data_0*"], ["sum"], broadcast_infer(NUMERIC), _variadic(np.add), onnx="Sum",
          doc="Elementwise sum of one or more inputs.")
_register("mean", ["data_0*"], ["mean"], broadcast_infer(FLOATS), _variadic(np.add, mean=True), onnx="Mean",
          doc="Elementwise mean of one or more inputs.")


# ---- logic, comparisons, bit operations ------------------------------------------------------
for _name, _onnx, _fn in (("and", "And", np.logical_and), ("or", "Or", np.logical_or),
                          ("xor", "Xor", np.logical_xor)):
    _register(_name, ["A", "B"], ["C"], broadcast_infer(BOOL), lambda a, attrs, f=_fn: f(a[0], a[1]),
              onnx=_onnx, doc=f"Logical {_name} of two bool tensors, broadcasting.")

for _name, _onnx, _fn in (("equal", "Equal", np.equal), ("less", "Less", np.less),
                          ("greater", "Greater", np.greater), ("less_or_equal", "LessOrEqual", np.less_equal),
                          ("greater_or_equal", "GreaterOrEqual", np.greater_equal)):
    _register(_name, ["A", "B"], ["C"], broadcast_infer(ALL, dtypes.bool_),
              lambda a, attrs, f=_fn: f(_wide(a[0]), _wide(a[1])),
              onnx=_onnx, doc=f"Elementwise {_onnx} comparison giving bool, broadcasting.")

for _name, _onnx, _fn in (("bitwise_and", "BitwiseAnd", np.bitwise_and), ("bitwise_or", "BitwiseOr", np.bitwise_or),
                          ("bitwise_xor", "BitwiseXor", np.bitwise_xor)):
    _register(_name, ["A", "B"], ["C"], broadcast_infer(INTS), lambda a, attrs, f=_fn: f(a[0], a[1]),
              onnx=_onnx, doc=f"Elementwise {_onnx} of integers, broadcasting.")


def _bit_shift(args, attrs):
    x, y = args
    x, y = np.broadcast_arrays(x, y)
    bits = x.dtype.itemsize * 8
    y = y.astype(np.int64)
    out_of_range = (y < 0) | (y >= bits)
    amount = np.where(out_of_range, 0, y).astype(x.dtype)
    ux = x.view(np.dtype(f"u{x.dtype.itemsize}"))  # shift the bit pattern: no signed overflow
    if attrs["direction"] == "LEFT":
        shifted = np.left_shift(ux, amount.astype(ux.dtype)).view(x.dtype)
        fill = np.zeros_like(x)
    else:
        shifted = np.right_shift(x, amount)  # arithmetic for signed types
        fill = np.where(x < 0, x.dtype.type(-1) if x.dtype.kind == "i" else 0, 0).astype(x.dtype)
    return np.where(out_of_range, fill, shifted).astype(x.dtype)


_register("bit_shift", ["X", "Y"], ["Z"], broadcast_infer(INTS), _bit_shift, onnx="BitShift",
          attrs={"direction": Attr("string", REQUIRED)}, verify=_choice("direction", ("LEFT", "RIGHT")),
          doc="Shifts X by Y bits (direction LEFT or RIGHT); right shifts of signed types are arithmetic.")


# ---- clip, where ---------------------------------------------------------------------------
def _clip_infer(ctx: InferContext):
    _check_inputs(ctx, NUMERIC)
    require_same_dtype(ctx, *[i for i in range(len(ctx.types)) if ctx.has_input(i)])
    for i, what in ((1, "min"), (2, "max")):
        t = ctx.types[i] if ctx.has_input(i) else None
        if t is not None and t.is_static and t.numel != 1:
            ctx.fail(f"'{what}' must be a scalar, got {t}")
    return [ctx.types[0]]


def _clip(args, attrs):
    x = args[0]
    lo = args[1] if len(args) > 1 else None
    hi = args[2] if len(args) > 2 else None
    y = x
    if lo is not None:
        y = np.maximum(y, lo.reshape(()))
    if hi is not None:
        y = np.minimum(y, hi.reshape(()))  # min > max gives max everywhere, as ONNX says
    return np.asarray(y).astype(x.dtype, copy=False)


_register("clip", ["input", "min?", "max?"], ["output"], _clip_infer, _clip, onnx="Clip",
          doc="Limits input to [min, max] (scalar inputs; either may be absent).")


def _where_infer(ctx: InferContext):
    require_dtype(ctx, 0, BOOL)
    require_same_dtype(ctx, 1, 2)
    return [TensorType(ctx.types[1].dtype, broadcast_shapes([t.shape for t in ctx.types], ctx))]


_register("where", ["condition", "X", "Y"], ["output"], _where_infer,
          lambda a, attrs: np.where(a[0], a[1], a[2]), onnx="Where",
          doc="X where condition is true, else Y; the three inputs broadcast.")


# ---- casts ---------------------------------------------------------------------------------
def cast_array(x: np.ndarray, to: np.dtype, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    """ONNX Cast for pdc's dtypes: floats to integers truncate toward zero, nonzero to True,
    integers wrap; out-of-range float-to-integer results are undefined (as in ONNX; ml_dtypes,
    which ONNX's reference calls, gives 0 for the 4- and 2-bit integers). To float8, `saturate`
    clamps to the largest finite value (else infinity or NaN); float8e8m0 rounds by round_mode."""
    to = np.dtype(to)
    with np.errstate(all="ignore"):
        if x.dtype == dtypes.bfloat16.np and to != np.float32:
            x = x.astype(np.float32)  # exact; avoids ml_dtypes' narrower set of direct casts
        if dtypes.from_numpy(x.dtype).is_narrow:
            x = x.astype(np.int32 if dtypes.from_numpy(x.dtype) in dtypes.NARROW_INTS else np.float32)  # exact
        if to == dtypes.bfloat16.np and x.dtype.kind in "iub":
            x = x.astype(np.float64)
        if to == dtypes.float8e8m0.np:
            return numpy_helper.to_float8e8m0(x, bool(saturate), round_mode)
        if saturate and to in _SATURATING:
            return numpy_helper.saturate_cast(x, to)
        return x.astype(to)


_SATURATING = tuple(d.np for d in dtypes.NARROW_FLOATS if d is not dtypes.float8e8m0)
_CAST_VERIFY = [_flag("saturate"), _choice("round_mode", ("up", "down", "nearest"))]


def _cast_verify(ctx: InferContext):
    for v in _CAST_VERIFY:
        v(ctx)


_CAST_ATTRS = {"saturate": Attr("int", 1), "round_mode": Attr("string", "up")}

def _cast_infer(ctx: InferContext):
    to = ctx.attrs.get("to")
    if not isinstance(to, dtypes.DType):
        ctx.fail(f"attribute 'to' must be a dtype, got {to!r}")
    return [ctx.types[0].with_dtype(to)]


_register("cast", ["input"], ["output"], _cast_infer,
          lambda a, attrs: cast_array(a[0], attrs["to"].np, attrs["saturate"], attrs["round_mode"]), onnx="Cast",
          attrs={"to": Attr("dtype", REQUIRED), **_CAST_ATTRS}, verify=_cast_verify,
          doc="Converts to dtype `to`. saturate (float8 targets: clamp to the largest finite value) and "
              "round_mode (float8e8m0: up, down or nearest) follow ONNX Cast.")
_register("cast_like", ["input", "target_type"], ["output"],
          lambda ctx: [ctx.types[0].with_dtype(ctx.types[1].dtype)],
          lambda a, attrs: cast_array(a[0], a[1].dtype, attrs["saturate"], attrs["round_mode"]), onnx="CastLike", attrs=dict(_CAST_ATTRS),
          verify=_cast_verify, doc="Converts to the dtype of target_type.")
