"""Dense and shape-level NN ops: Gemm, MatMul, MatMulInteger, Softmax, LogSoftmax, Hardmax,
Dropout (inference), Flatten, DepthToSpace and SpaceToDepth.

Convolutions, pooling and normalizations live in nn_conv.py, nn_pool.py and nn_norm.py.
Softmax-like ops take the opset-13 form (one axis); the importer rewrites the older
"coerce to 2-D" form. Half-precision matrix products and softmaxes run in float32.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..errors import UnsupportedError
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import broadcast_shapes, normalize_axis
from .nn_common import compute_dtype, is_half

_FLOATS = (dtypes.float16, dtypes.float32, dtypes.float64, dtypes.bfloat16)
_MATMUL_TYPES = _FLOATS + (dtypes.int32, dtypes.int64, dtypes.uint32, dtypes.uint64)
_INT8 = (dtypes.int8, dtypes.uint8)


def _check_dtypes(ctx: InferContext, allowed, indices, same=True):
    seen = None
    for i in indices:
        if not ctx.has_input(i):
            continue
        dt = ctx.types[i].dtype
        if dt not in allowed:
            ctx.fail(f"input {i} has dtype {dt}, expected one of {', '.join(map(str, allowed))}")
        if same and seen is not None and dt != seen:
            ctx.fail(f"inputs must share one dtype, got {seen} and {dt}")
        seen = dt


def dims_product(dims):
    """The product of dims: an int when all are ints, a lone symbol times ones stays that symbol."""
    if all(isinstance(d, int) for d in dims):
        return math.prod(dims)
    rest = [d for d in dims if d != 1]
    if len(rest) == 1 and rest[0] != UNKNOWN:
        return rest[0]
    return UNKNOWN


def _dims_match(ctx, a, b, what):
    if isinstance(a, int) and isinstance(b, int) and a != b:
        ctx.fail(f"{what}: {a} vs {b}")


# ---- Gemm ------------------------------------------------------------------------------------
def _gemm_infer(ctx: InferContext):
    _check_dtypes(ctx, _MATMUL_TYPES, (0, 1, 2))
    a, b = ctx.types[0], ctx.types[1]
    for t, name in ((a, "A"), (b, "B")):
        if t.shape is not None and len(t.shape) != 2:
            ctx.fail(f"{name} must be 2-D, got shape {list(t.shape)}")
    ta, tb = ctx.attrs.get("transA", 0), ctx.attrs.get("transB", 0)
    m = k1 = n = k2 = UNKNOWN
    if a.shape is not None:
        m, k1 = a.shape[::-1] if ta else a.shape
    if b.shape is not None:
        k2, n = b.shape[::-1] if tb else b.shape
    _dims_match(ctx, k1, k2, "inner dimensions of A and B differ")
    if ctx.has_input(2) and ctx.types[2].shape is not None:
        cs = ctx.types[2].shape
        if len(cs) > 2:
            ctx.fail(f"C must have rank <= 2, got shape {list(cs)}")
        for c, d in zip(reversed(cs), (n, m)):  # C broadcasts to (M, N) unidirectionally
            if isinstance(c, int) and isinstance(d, int) and c not in (1, d):
                ctx.fail(f"C of shape {list(cs)} does not broadcast to ({m}, {n})")
    return [TensorType(a.dtype, (m, n))]


def _gemm_reference(inputs, attrs):
    a, b, c = (inputs + [None])[:3]
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if np.issubdtype(a.dtype, np.integer):  # integer Gemm: exact, alpha / beta cast to the type
        y = np.matmul(a, b)
        if alpha != 1:
            y = y * a.dtype.type(alpha)
        if c is not None:
            y = y + (c if beta == 1 else c * a.dtype.type(beta))
        return y.astype(a.dtype)
    acc = compute_dtype(a)
    y = np.matmul(a.astype(acc, copy=False), b.astype(acc, copy=False))
    if alpha != 1:
        y *= acc.type(alpha)
    if c is not None and beta != 0:
        y = y + acc.type(beta) * c.astype(acc)
    return y.astype(a.dtype)


register_op("gemm", ["A", "B", "C?"], ["Y"], onnx="Gemm",
            attrs={"alpha": Attr("float", 1.0), "beta": Attr("float", 1.0),
                   "transA": Attr("int", 0), "transB": Attr("int", 0)},
            infer=_gemm_infer, reference=_gemm_reference,
            doc="ONNX Gemm: alpha * A' B' + beta * C, C broadcast to (M, N).")


# ---- MatMul ----------------------------------------------------------------------------------
def matmul_shape(ctx: InferContext, a, b):
    """numpy.matmul's result shape (1-D operands are promoted, then their dim removed)."""
    if a is None or b is None:
        return None
    if len(a) == 0 or len(b) == 0:
        ctx.fail("MatMul operands must have rank >= 1")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    _dims_match(ctx, a2[-1], b2[-2], "inner dimensions differ")
    batch = broadcast_shapes([a2[:-2], b2[:-2]], ctx)
    out = list(batch)
    if len(a) > 1:
        out.append(a2[-2])
    if len(b) > 1:
        out.append(b2[-1])
    return tuple(out)


def _matmul_infer(ctx: InferContext):
    _check_dtypes(ctx, _MATMUL_TYPES, (0, 1))
    return [TensorType(ctx.types[0].dtype, matmul_shape(ctx, ctx.types[0].shape, ctx.types[1].shape))]


def _matmul_reference(inputs, attrs):
    a, b = inputs[:2]
    if np.issubdtype(a.dtype, np.integer):
        return np.matmul(a, b)
    acc = compute_dtype(a)
    return np.matmul(a.astype(acc, copy=False), b.astype(acc, copy=False)).astype(a.dtype)


register_op("matmul", ["A", "B"], ["Y"], onnx="MatMul",
            infer=_matmul_infer, reference=_matmul_reference,
            doc="ONNX MatMul: numpy.matmul semantics (1-D operands, broadcast batch dims).")


def _matmul_integer_infer(ctx: InferContext):
    _check_dtypes(ctx, _INT8, (0, 1, 2, 3), same=False)
    for zp, src in ((2, 0), (3, 1)):
        if ctx.has_input(zp) and ctx.types[zp].dtype != ctx.types[src].dtype:
            ctx.fail(f"input {zp} (zero point) must have the dtype of input {src}")
    return [TensorType(dtypes.int32, matmul_shape(ctx, ctx.types[0].shape, ctx.types[1].shape))]


def _matmul_integer_reference(inputs, attrs):
    a, b, az, bz = (inputs + [None] * 4)[:4]
    af = a.astype(np.float64)
    bf = b.astype(np.float64)
    if az is not None:
        az = az.astype(np.float64)
        if az.ndim == 1 and az.size > 1:
            az = az.reshape(-1, 1)  # one zero point per row of A
        af = af - az
    if bz is not None:
        bf = bf - bz.astype(np.float64)  # scalar or one per column of B: broadcasts as is
    return np.rint(np.matmul(af, bf)).astype(np.int32)  # exact: |products| < 2^16, sums < 2^53


register_op("matmul_integer", ["A", "B", "a_zero_point?", "b_zero_point?"], ["Y"], onnx="MatMulInteger",
            infer=_matmul_integer_infer, reference=_matmul_integer_reference,
            doc="ONNX MatMulInteger: (A - a_zero_point) @ (B - b_zero_point) in int32.")


# ---- Softmax family --------------------------------------------------------------------------
def _softmax_infer(ctx: InferContext):
    _check_dtypes(ctx, _FLOATS, (0,))
    x = ctx.types[0]
    if x.shape is not None:
        if len(x.shape) == 0:
            ctx.fail("input must have rank >= 1")
        normalize_axis(ctx.attrs.get("axis", -1), len(x.shape), ctx)
    return [x]


def _shifted(x, axis):
    acc = compute_dtype(x)
    xa = x.astype(acc)
    m = np.max(xa, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):  # a row whose max is +-inf or NaN gives all NaN, as ONNX Runtime
        return xa - m


def _softmax_reference(inputs, attrs):
    x = inputs[0]
    e = np.exp(_shifted(x, attrs.get("axis", -1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (e / e.sum(axis=attrs.get("axis", -1), keepdims=True)).astype(x.dtype)


def _log_softmax_reference(inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", -1)
    s = _shifted(x, axis)
    with np.errstate(divide="ignore"):
        return (s - np.log(np.exp(s).sum(axis=axis, keepdims=True))).astype(x.dtype)


def _hardmax_reference(inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", -1) % x.ndim
    key = x.astype(np.float32) if is_half(x) else x
    idx = np.expand_dims(np.argmax(key, axis=axis), axis)  # the first maximum wins
    y = np.zeros(x.shape, x.dtype)
    np.put_along_axis(y, idx, 1, axis=axis)
    return y


for _name, _onnx, _ref, _what in (
        ("softmax", "Softmax", _softmax_reference, "exp(x) / sum(exp(x))"),
        ("log_softmax", "LogSoftmax", _log_softmax_reference, "x - log(sum(exp(x)))"),
        ("hardmax", "Hardmax", _hardmax_reference, "1 at the first maximum, 0 elsewhere")):
    register_op(_name, ["input"], ["output"], onnx=_onnx, attrs={"axis": Attr("int", -1)},
                infer=_softmax_infer, reference=_ref,
                doc=f"ONNX {_onnx} (opset 13 form): {_what} along one axis.")


# ---- Dropout ---------------------------------------------------------------------------------
def _dropout_infer(ctx: InferContext):
    x = ctx.types[0]
    if ctx.has_input(1):
        if ctx.types[1].dtype not in _FLOATS:
            ctx.fail(f"ratio must be a float scalar, got {ctx.types[1].dtype}")
        r = ctx.const(1)
        if r is not None and (r.size != 1 or not 0 <= float(r.reshape(-1)[0]) < 1):
            ctx.fail(f"ratio must be a scalar in [0, 1), got {r.tolist()}")
    if ctx.has_input(2):
        if ctx.types[2].dtype != dtypes.bool_:
            ctx.fail(f"training_mode must be bool, got {ctx.types[2].dtype}")
        t = ctx.const(2)
        if t is None:
            ctx.unsupported("training_mode must be a constant (pdc compiles inference graphs)")
        if bool(t.reshape(-1)[0]):
            ctx.unsupported("training_mode=true is not supported: pdc compiles inference graphs "
                            "(Dropout is the identity there)")
    return [x, TensorType(dtypes.bool_, x.shape)][:ctx.num_outputs]


def _dropout_reference(inputs, attrs):
    x = inputs[0]
    t = inputs[2] if len(inputs) > 2 else None
    if t is not None and bool(np.asarray(t).reshape(-1)[0]):
        raise UnsupportedError("Dropout: training_mode=true is not supported (inference only)")
    return [x.copy(), np.ones(x.shape, np.bool_)]


register_op("dropout", ["data", "ratio?", "training_mode?"], ["output", "mask?"], onnx="Dropout",
            attrs={"seed": Attr("int", None)},
            infer=_dropout_infer, reference=_dropout_reference,
            doc="ONNX Dropout in inference mode: the identity; the optional mask is all true.")


# ---- Flatten ---------------------------------------------------------------------------------
def _flatten_infer(ctx: InferContext):
    x = ctx.types[0]
    if x.shape is None:
        return [TensorType(x.dtype, (UNKNOWN, UNKNOWN))]
    rank = len(x.shape)
    axis = ctx.attrs.get("axis", 1)
    if not -rank <= axis <= rank:
        ctx.fail(f"axis {axis} is out of range [-{rank}, {rank}]")
    axis = axis + rank if axis < 0 else axis
    return [TensorType(x.dtype, (dims_product(x.shape[:axis]), dims_product(x.shape[axis:])))]


def _flatten_reference(inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


register_op("flatten", ["input"], ["output"], onnx="Flatten", attrs={"axis": Attr("int", 1)},
            infer=_flatten_infer, reference=_flatten_reference,
            doc="ONNX Flatten: reshapes to 2-D, (prod(dims[:axis]), prod(dims[axis:])).")


# ---- DepthToSpace / SpaceToDepth -------------------------------------------------------------
def _block_check(ctx: InferContext):
    bs = ctx.attrs["blocksize"]
    if bs < 1:
        ctx.fail(f"blocksize must be >= 1, got {bs}")
    mode = ctx.attrs.get("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        ctx.fail(f"mode must be DCR or CRD, got '{mode}'")
    x = ctx.types[0]
    if x.shape is not None and len(x.shape) != 4:
        ctx.fail(f"input must be 4-D (N, C, H, W), got shape {list(x.shape)}")
    return bs, x


def _scale_dim(d, factor, divide, ctx, what):
    if not isinstance(d, int):
        return UNKNOWN
    if divide:
        if d % factor:
            ctx.fail(f"{what} {d} is not divisible by {factor}")
        return d // factor
    return d * factor


def _depth_to_space_infer(ctx: InferContext):
    bs, x = _block_check(ctx)
    if x.shape is None:
        return [TensorType(x.dtype, (UNKNOWN,) * 4)]
    n, c, h, w = x.shape
    return [TensorType(x.dtype, (n, _scale_dim(c, bs * bs, True, ctx, "channel count"),
                                 _scale_dim(h, bs, False, ctx, ""), _scale_dim(w, bs, False, ctx, "")))]


def _depth_to_space_reference(inputs, attrs):
    x = inputs[0]
    bs = attrs["blocksize"]
    n, c, h, w = x.shape
    if attrs.get("mode", "DCR") == "DCR":  # channel = (row, column, depth)
        t = x.reshape(n, bs, bs, c // (bs * bs), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:  # CRD: channel = (depth, row, column)
        t = x.reshape(n, c // (bs * bs), bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (bs * bs), h * bs, w * bs)


def _space_to_depth_infer(ctx: InferContext):
    bs, x = _block_check(ctx)
    if x.shape is None:
        return [TensorType(x.dtype, (UNKNOWN,) * 4)]
    n, c, h, w = x.shape
    return [TensorType(x.dtype, (n, _scale_dim(c, bs * bs, False, ctx, ""),
                                 _scale_dim(h, bs, True, ctx, "height"), _scale_dim(w, bs, True, ctx, "width")))]


def _space_to_depth_reference(inputs, attrs):
    x = inputs[0]
    bs = attrs["blocksize"]
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // bs, bs, w // bs, bs)
    if attrs.get("mode", "DCR") == "DCR":
        t = t.transpose(0, 3, 5, 1, 2, 4)
    else:
        t = t.transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(n, c * bs * bs, h // bs, w // bs)


_BLOCK_ATTRS = {"blocksize": Attr("int", REQUIRED), "mode": Attr("string", "DCR")}
register_op("depth_to_space", ["input"], ["output"], onnx="DepthToSpace", attrs=dict(_BLOCK_ATTRS),
            infer=_depth_to_space_infer, reference=_depth_to_space_reference,
            doc="ONNX DepthToSpace: moves channel blocks into blocksize x blocksize spatial tiles (DCR / CRD).")
register_op("space_to_depth", ["input"], ["output"], onnx="SpaceToDepth", attrs=dict(_BLOCK_ATTRS),
            infer=_space_to_depth_infer, reference=_space_to_depth_reference,
            doc="ONNX SpaceToDepth: moves blocksize x blocksize spatial tiles into channels (DCR / CRD).")
