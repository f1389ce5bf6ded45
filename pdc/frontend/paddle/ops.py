"""Paddle op -> pdc IR lowering, one converter per Paddle (PIR) op.

IR ops follow ONNX semantics; where Paddle differs the converter says so in a comment and emits
the few extra nodes needed (flatten ranges, adaptive pooling, ceil-mode pooling, recurrent weight
layouts, ...). Operands that Paddle passes as tensors but that must be static here (a pooling
kernel, a concat axis) are read with `cx.ints` / `cx.scalar`, which reject computed values.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes
from ...ir.types import TensorType
from .lower import OpContext, converter
from .program import parse_dtype


# ---------------------------------------------------------------------------------------------
# helpers
def i64(values) -> np.ndarray:
    return np.asarray(values, np.int64).reshape(-1)


def const_like(cx: OpContext, x, value):
    """A scalar constant with x's dtype."""
    return cx.constant(np.asarray(value, x.type.dtype.np))


def norm_axis(cx: OpContext, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        cx.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def transpose(cx: OpContext, x, perm):
    if list(perm) == list(range(len(perm))):
        return x
    return cx.emit("transpose", [x], {"perm": [int(p) for p in perm]})


def reshape(cx: OpContext, x, shape):
    return cx.emit("reshape", [x, cx.constant(i64(shape))])


def swap_last_two(cx: OpContext, x):
    r = cx.rank(x)
    if r < 2:
        return x
    perm = list(range(r))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return transpose(cx, x, perm)


def shape_tensor(cx: OpContext, i: int):
    """Operand i as a 1-D int64 shape-like tensor: a constant, a tensor, or a list of scalars."""
    data = cx.const(i)
    if data is not None:
        return cx.constant(i64(data))
    parts = cx.values(i)
    if len(parts) == 1 and cx.rank(parts[0]) == 1:
        return cast(cx, parts[0], dtypes.int64)
    pieces = [reshape(cx, cast(cx, p, dtypes.int64), [1]) for p in parts]
    return pieces[0] if len(pieces) == 1 else cx.emit("concat", pieces, {"axis": 0})


def cast(cx: OpContext, x, dt):
    if x.type.dtype == dt:
        return x
    return cx.emit("cast", [x], {"to": dt})


def dtype_attr(cx: OpContext, name: str = "dtype", default=None):
    value = cx.attr(name)
    if value is None:
        return default
    dt = parse_dtype(value, cx.where)
    return default if dt is None else dt


def to_nchw(cx: OpContext, x, fmt: str):
    """Channel-last tensors are transposed to channel-first around NCHW-only IR ops."""
    if fmt in ("NCHW", "NCDHW", "NCL", "NC", "AnyLayout", None, ""):
        return x, lambda y: y
    if fmt in ("NHWC", "NDHWC", "NLC"):
        r = cx.rank(x)
        to = [0, r - 1] + list(range(1, r - 1))
        back = [0] + list(range(2, r)) + [1]
        return transpose(cx, x, to), (lambda y: transpose(cx, y, back))
    cx.unsupported(f"data format '{fmt}' is not supported")


def spatial_pads(cx: OpContext, paddings, nsp: int) -> list[int]:
    """Paddle paddings ([p] per axis, or [begin, end] per axis) -> ONNX pads (all begins, all ends)."""
    p = [int(v) for v in paddings]
    if len(p) == nsp:
        return p + p
    if len(p) == 2 * nsp:
        return p[0::2] + p[1::2]
    cx.unsupported(f"paddings {p} do not fit {nsp} spatial axes")


def same_pads(cx: OpContext, x, kernel, strides, what: str) -> list[int]:
    """Paddle's SAME padding (extra at the end), computed from the static input size."""
    dims = x.type.shape[2:]
    if not all(isinstance(d, int) for d in dims):
        cx.unsupported(f"padding_algorithm SAME needs static spatial dims for {what}, got {x.type}")
    begin, end = [], []
    for d, k, s in zip(dims, kernel, strides):
        out = -(-d // s)
        total = max((out - 1) * s + k - d, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


# ---------------------------------------------------------------------------------------------
# program structure: constants, vectors, copies
@converter("builtin.combine")
def combine(cx: OpContext):
    return [[cx.value(i) for i in range(len(cx.op.operands))]]


@converter("builtin.split")
def builtin_split(cx: OpContext):
    return cx.values(0)


@converter("full")
def full(cx: OpContext):
    dt = dtype_attr(cx, default=dtypes.float32)
    return cx.constant(np.full([int(d) for d in cx.attr("shape", [])], cx.attr("value", 0.0)).astype(dt.np), dt)


@converter("full_int_array")
def full_int_array(cx: OpContext):
    dt = dtype_attr(cx, default=dtypes.int64)
    return cx.constant(np.asarray(cx.attr("value", []), dtype=np.int64).astype(dt.np), dt)


@converter("assign_value", "assign_value_")
def assign_value(cx: OpContext):
    dt = dtype_attr(cx, default=dtypes.float32)
    values = np.asarray(cx.attr("values", []), dtype=np.float64 if dt.is_float else np.int64)
    return cx.constant(values.astype(dt.np).reshape([int(d) for d in cx.attr("shape", [])]), dt)


@converter("full_with_tensor")
def full_with_tensor(cx: OpContext):
    value, dt = cx.value(0), dtype_attr(cx)
    dt = dt or value.type.dtype
    scalar = cast(cx, reshape(cx, value, []), dt)
    return cx.emit("expand", [scalar, shape_tensor(cx, 1)])


@converter("full_like")
def full_like(cx: OpContext):
    x, value = cx.value(0), cx.value(1)
    dt = dtype_attr(cx) or x.type.dtype
    scalar = cast(cx, reshape(cx, value, []), dt)
    return cx.emit("expand", [scalar, cx.emit("shape", [x])])


@converter("full_batch_size_like")
def full_batch_size_like(cx: OpContext):
    # `shape`, with dim output_dim_idx taken from the input's dim input_dim_idx
    x = cx.value(0)
    dt = dtype_attr(cx, default=dtypes.float32)
    shape = [int(d) for d in cx.attr("shape", [])]
    i, o = int(cx.attr("input_dim_idx", 0)), int(cx.attr("output_dim_idx", 0))
    scalar = cx.constant(np.asarray(cx.attr("value", 0.0)).astype(dt.np), dt)
    size = cx.emit("slice", [cx.emit("shape", [x]), cx.constant(i64([i])), cx.constant(i64([i + 1]))])
    target = cx.emit("concat", [cx.constant(i64(shape[:o])), size, cx.constant(i64(shape[o + 1:]))], {"axis": 0})
    return cx.emit("expand", [scalar, target])


@converter("assign", "assign_out_", "share_data_", "memcpy", "memcpy_h2d", "memcpy_d2h")
def assign(cx: OpContext):
    return cx.value(0)


@converter("shape", "shape64")
def shape(cx: OpContext):
    s = cx.emit("shape", [cx.value(0)])
    declared = cx.out_type(0)
    return cast(cx, s, declared.dtype if isinstance(declared, TensorType) else dtypes.int64)


@converter("cast")
def cast_op(cx: OpContext):
    x = cx.value(0)
    return cast(cx, x, dtype_attr(cx) or x.type.dtype)


# ---------------------------------------------------------------------------------------------
# elementwise
BINARY = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "maximum": "max",
          "minimum": "min", "elementwise_pow": "pow", "equal": "equal", "less_than": "less",
          "less_equal": "less_or_equal", "greater_than": "greater", "greater_equal": "greater_or_equal",
          "logical_and": "and", "logical_or": "or", "logical_xor": "xor", "bitwise_and": "bitwise_and",
          "bitwise_or": "bitwise_or", "bitwise_xor": "bitwise_xor"}
LOGICAL = {"logical_and", "logical_or", "logical_xor"}


def legacy_broadcast(cx: OpContext, x, y):
    """Legacy elementwise ops align Y with X starting at `axis` (-1: trailing, NumPy style)."""
    axis = cx.attr("axis", -1)
    if axis is None or axis == -1:
        return y
    rx, ry = cx.rank(x), cx.rank(y)
    if ry >= rx:
        return y
    axis = axis % rx
    shape_y = list(y.type.shape)
    while shape_y and shape_y[-1] == 1 and len(shape_y) > 1:  # Paddle trims trailing 1s first
        shape_y.pop()
    if not all(isinstance(d, int) for d in shape_y):
        return cx.emit("unsqueeze", [y, cx.constant(i64(range(ry, rx - axis)))])
    return reshape(cx, y, shape_y + [1] * (rx - axis - len(shape_y)))


def binary_inputs(cx: OpContext):
    x, y = cx.value(0), cx.value(1)
    return x, legacy_broadcast(cx, x, y)


@converter(*BINARY)
def binary(cx: OpContext):
    x, y = binary_inputs(cx)
    if cx.op.type in LOGICAL:
        x, y = cast(cx, x, dtypes.bool_), cast(cx, y, dtypes.bool_)
    return cx.emit(BINARY[cx.op.type], [x, y])


@converter("not_equal")
def not_equal(cx: OpContext):
    return cx.emit("not", [cx.emit("equal", list(binary_inputs(cx)))])


@converter("remainder")
def remainder(cx: OpContext):
    x, y = binary_inputs(cx)
    if x.type.dtype.is_int:
        return cx.emit("mod", [x, y])  # integer mod takes the divisor's sign, like Python
    # float: x - floor(x / y) * y (Python's sign rule; ONNX's fmod would take the dividend's)
    return cx.emit("sub", [x, cx.emit("mul", [cx.emit("floor", [cx.emit("div", [x, y])]), y])])


@converter("floor_divide")
def floor_divide(cx: OpContext):
    x, y = binary_inputs(cx)
    if x.type.dtype.is_int:
        cx.unsupported("integer floor_divide is not supported")
    return cx.emit("floor", [cx.emit("div", [x, y])])


@converter("logical_not")
def logical_not(cx: OpContext):
    return cx.emit("not", [cast(cx, cx.value(0), dtypes.bool_)])


@converter("bitwise_not")
def bitwise_not(cx: OpContext):
    x = cx.value(0)
    return cx.emit("not" if x.type.dtype == dtypes.bool_ else "bitwise_not", [x])


UNARY = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log", "sqrt": "sqrt",
         "abs": "abs", "floor": "floor", "ceil": "ceil", "sin": "sin", "cos": "cos", "tan": "tan",
         "asin": "asin", "acos": "acos", "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh",
         "acosh": "acosh", "atanh": "atanh", "erf": "erf", "reciprocal": "reciprocal", "sign": "sign",
         "softsign": "softsign", "mish": "mish", "isnan": "is_nan", "isinf": "is_inf", "hardswish": "hard_swish"}


@converter(*UNARY)
def unary(cx: OpContext):
    return cx.emit(UNARY[cx.op.type], [cx.value(0)])


@converter("silu", "swish")
def swish(cx: OpContext):
    # x * sigmoid(x), spelled as ONNX before opset 24 (and paddle2onnx) spells it, so that a model and
    # its ONNX export optimize to the same graph; legacy swish carries a beta
    x = cx.value(0)
    beta = float(cx.attr("beta", 1.0)) if cx.op.type == "swish" else 1.0
    if beta != 1.0:
        return cx.emit("swish", [x], {"alpha": beta})
    return cx.emit("mul", [x, cx.emit("sigmoid", [x])])


@converter("isfinite")
def isfinite(cx: OpContext):
    x = cx.value(0)
    bad = cx.emit("or", [cx.emit("is_inf", [x]), cx.emit("is_nan", [x])])
    return cx.emit("not", [bad])


@converter("round")
def round_op(cx: OpContext):
    # Paddle rounds half away from zero; ONNX Round rounds half to even
    x = cx.value(0)
    mag = cx.emit("floor", [cx.emit("add", [cx.emit("abs", [x]), const_like(cx, x, 0.5)])])
    return cx.emit("mul", [cx.emit("sign", [x]), mag])


@converter("square")
def square(cx: OpContext):
    x = cx.value(0)
    return cx.emit("mul", [x, x])


@converter("rsqrt")
def rsqrt(cx: OpContext):
    return cx.emit("reciprocal", [cx.emit("sqrt", [cx.value(0)])])


@converter("log2", "log10", "log1p")
def log_variants(cx: OpContext):
    x = cx.value(0)
    if cx.op.type == "log1p":
        return cx.emit("log", [cx.emit("add", [x, const_like(cx, x, 1)])])
    base = 2.0 if cx.op.type == "log2" else 10.0
    return cx.emit("div", [cx.emit("log", [x]), const_like(cx, x, math.log(base))])


@converter("expm1")
def expm1(cx: OpContext):
    x = cx.value(0)
    return cx.emit("sub", [cx.emit("exp", [x]), const_like(cx, x, 1)])


@converter("relu6")
def relu6(cx: OpContext):
    x = cx.value(0)
    return cx.emit("clip", [x, const_like(cx, x, 0), const_like(cx, x, cx.attr("threshold", 6.0))])


@converter("hardtanh")
def hardtanh(cx: OpContext):
    x = cx.value(0)
    return cx.emit("clip", [x, const_like(cx, x, cx.attr("t_min", -1.0)), const_like(cx, x, cx.attr("t_max", 1.0))])


@converter("hardsigmoid")
def hardsigmoid(cx: OpContext):
    return cx.emit("hard_sigmoid", [cx.value(0)], {"alpha": float(cx.attr("slope", 1 / 6)),
                                                   "beta": float(cx.attr("offset", 0.5))})


@converter("legacy_hard_swish")
def legacy_hard_swish(cx: OpContext):
    # Paddle 3 runs legacy hard_swish as x * relu6(x + 3) / 6 whatever its attributes say, and older
    # versions honoured them; rather than pick one, other values are rejected
    values = tuple(float(cx.attr(k, d)) for k, d in (("offset", 3.0), ("scale", 6.0), ("threshold", 6.0)))
    if values != (3.0, 6.0, 6.0):
        cx.unsupported(f"hard_swish with offset, scale, threshold = {values} is not supported (only 3, 6, 6)")
    return cx.emit("hard_swish", [cx.value(0)])


@converter("leaky_relu")
def leaky_relu(cx: OpContext):
    return cx.emit("leaky_relu", [cx.value(0)], {"alpha": float(cx.attr("negative_slope", 0.02))})


@converter("elu", "celu")
def elu(cx: OpContext):
    return cx.emit(cx.op.type, [cx.value(0)], {"alpha": float(cx.attr("alpha", 1.0))})


@converter("selu")
def selu(cx: OpContext):
    return cx.emit("selu", [cx.value(0)], {"alpha": float(cx.attr("alpha", 1.6732632423543772)),
                                           "gamma": float(cx.attr("scale", 1.0507009873554805))})


@converter("gelu")
def gelu(cx: OpContext):
    return cx.emit("gelu", [cx.value(0)], {"approximate": "tanh" if cx.attr("approximate", False) else "none"})


@converter("softplus")
def softplus(cx: OpContext):
    # Paddle: x if beta*x > threshold else log(1 + exp(beta*x)) / beta
    x = cx.value(0)
    beta, threshold = float(cx.attr("beta", 1.0)), float(cx.attr("threshold", 20.0))
    if beta == 1.0 and threshold >= 15.0:  # the switch changes the result by < 1e-6 relative
        return cx.emit("softplus", [x])
    bx = cx.emit("mul", [x, const_like(cx, x, beta)])
    soft = cx.emit("div", [cx.emit("softplus", [bx]), const_like(cx, x, beta)])
    return cx.emit("where", [cx.emit("greater", [bx, const_like(cx, x, threshold)]), x, soft])


@converter("logsigmoid")
def logsigmoid(cx: OpContext):
    x = cx.value(0)
    return cx.emit("neg", [cx.emit("softplus", [cx.emit("neg", [x])])])


@converter("tanh_shrink")
def tanh_shrink(cx: OpContext):
    x = cx.value(0)
    return cx.emit("sub", [x, cx.emit("tanh", [x])])


@converter("thresholded_relu")
def thresholded_relu(cx: OpContext):
    x = cx.value(0)
    threshold, value = float(cx.attr("threshold", 1.0)), float(cx.attr("value", 0.0))
    if value == 0.0:
        return cx.emit("thresholded_relu", [x], {"alpha": threshold})
    return cx.emit("where", [cx.emit("greater", [x, const_like(cx, x, threshold)]), x, const_like(cx, x, value)])


@converter("prelu")
def prelu(cx: OpContext):
    x, alpha = cx.value(0), cx.value(1)
    mode, fmt = cx.attr("mode", "all"), cx.attr("data_format", "NCHW")
    r = cx.rank(x)
    if mode == "channel":
        n = alpha.type.numel
        slope = reshape(cx, alpha, [n] + [1] * (r - 2)) if fmt.startswith("NC") else reshape(cx, alpha, [n])
    elif mode == "all":
        slope = reshape(cx, alpha, [1])
    elif mode == "element":
        slope = alpha
    else:
        cx.unsupported(f"prelu mode '{mode}' is not supported")
    return cx.emit("prelu", [x, slope])


@converter("pow")
def pow_op(cx: OpContext):
    x = cx.value(0)
    y = cx.attr("y", cx.attr("factor", 1.0))
    if cx.has(1):  # legacy FactorTensor
        return cx.emit("pow", [x, cast(cx, cx.value(1), x.type.dtype)])
    return cx.emit("pow", [x, const_like(cx, x, float(y))])


@converter("scale")
def scale(cx: OpContext):
    # y = x * scale + bias (bias_after_scale) or (x + bias) * scale
    x = cx.value(0)
    s = cx.const(1) if cx.has(1) else np.asarray(cx.attr("scale", 1.0))
    s_val = cast(cx, reshape(cx, cx.value(1), []), x.type.dtype) if s is None else None
    bias, after = float(cx.attr("bias", 0.0)), bool(cx.attr("bias_after_scale", True))

    def mul(v):
        if s is not None and float(np.asarray(s).reshape(-1)[0]) == 1.0:
            return v
        return cx.emit("mul", [v, s_val if s is None else const_like(cx, x, float(np.asarray(s).reshape(-1)[0]))])

    def add(v, b):
        return v if b == 0.0 else cx.emit("add", [v, const_like(cx, x, b)])

    return add(mul(x), bias) if after else mul(add(x, bias))


@converter("clip")
def clip(cx: OpContext):
    x = cx.value(0)
    bounds = []
    for i, name in ((1, "min"), (2, "max")):
        if cx.has(i):
            bounds.append(cast(cx, reshape(cx, cx.value(i), []), x.type.dtype))
        else:
            limits = np.finfo(x.type.dtype.np) if x.type.dtype.is_float else np.iinfo(x.type.dtype.np)
            bounds.append(const_like(cx, x, cx.attr(name, limits.min if name == "min" else limits.max)))
    return cx.emit("clip", [x] + bounds)


@converter("where")
def where(cx: OpContext):
    return cx.emit("where", [cast(cx, cx.value(0), dtypes.bool_), cx.value(1), cx.value(2)])


@converter("softmax", "log_softmax")
def softmax(cx: OpContext):
    op = "softmax" if cx.op.type == "softmax" else "log_softmax"
    return cx.emit(op, [cx.value(0)], {"axis": int(cx.attr("axis", -1))})


@converter("add_n")
def add_n(cx: OpContext):
    vs = cx.values(0)
    return vs[0] if len(vs) == 1 else cx.emit("sum", vs)


# ---------------------------------------------------------------------------------------------
# matmul, convolution, normalization
@converter("matmul", "bmm")
def matmul(cx: OpContext):
    x, y = cx.value(0), cx.value(1)
    if cx.attr("transpose_x", False):
        x = swap_last_two(cx, x)
    if cx.attr("transpose_y", False):
        y = swap_last_two(cx, y)
    return cx.emit("matmul", [x, y])


@converter("legacy_mul")
def legacy_mul(cx: OpContext):
    # the old fc-style mul: X's first x_num_col_dims dims stay, the rest is contracted with Y flattened
    # to 2-D at y_num_col_dims; the result is X's kept dims followed by Y's trailing dims
    x, y = cx.value(0), cx.value(1)
    xn, yn = int(cx.attr("x_num_col_dims", 1)), int(cx.attr("y_num_col_dims", 1))
    if cx.rank(x) != xn + 1:
        x = reshape(cx, x, [0] * xn + [-1])  # 0 keeps the leading dims, symbolic ones included
    y_tail = list(y.type.shape[yn:])
    if cx.rank(y) != 2 or yn != 1:
        y = cx.emit("flatten", [y], {"axis": yn})
    out = cx.emit("matmul", [x, y])
    if len(y_tail) != 1:
        out = reshape(cx, out, [0] * xn + y_tail)
    return out


def conv_common(cx: OpContext, transposed: bool):
    x, w = cx.value(0), cx.value(1)
    x, back = to_nchw(cx, x, cx.attr("data_format", "NCHW"))
    nsp = cx.rank(w) - 2
    strides = [int(s) for s in cx.attr("strides", [1] * nsp)]
    dilations = [int(d) for d in cx.attr("dilations", [1] * nsp)]
    kernel = list(w.type.shape[2:])
    algo = cx.attr("padding_algorithm", "EXPLICIT")
    if algo == "VALID":
        pads = [0] * (2 * nsp)
    elif algo == "SAME":
        if transposed:
            cx.unsupported("padding_algorithm SAME is not supported for transposed convolution")
        pads = same_pads(cx, x, kernel, strides, "conv")
        dilations = [1] * nsp  # Paddle ignores dilation under SAME padding
    else:
        pads = spatial_pads(cx, cx.attr("paddings", [0] * nsp), nsp)
    attrs = {"strides": strides, "dilations": dilations, "pads": pads, "group": int(cx.attr("groups", 1)),
             "kernel_shape": [int(k) for k in kernel]}
    if not transposed:
        return back(cx.emit("conv", [x, w], attrs))
    out_pad = [int(p) for p in cx.attr("output_padding", [])] or [0] * nsp
    size = cx.const(2) if cx.has(2) else None
    size = [int(s) for s in size.reshape(-1)] if size is not None else [int(s) for s in cx.attr("output_size", [])]
    if size:
        dims = x.type.shape[2:]
        if not all(isinstance(d, int) for d in dims):
            cx.unsupported("output_size needs static spatial input dims")
        for i in range(nsp):
            natural = (dims[i] - 1) * strides[i] - pads[i] - pads[nsp + i] + dilations[i] * (kernel[i] - 1) + 1
            out_pad[i] = size[i] - natural
            if not 0 <= out_pad[i] < max(strides[i], dilations[i]):
                cx.fail(f"output_size {size} is not reachable from input {x.type}")
    attrs["output_padding"] = out_pad
    return back(cx.emit("conv_transpose", [x, w], attrs))


@converter("conv2d", "depthwise_conv2d", "conv3d")
def conv(cx: OpContext):
    return conv_common(cx, transposed=False)


@converter("conv2d_transpose", "depthwise_conv2d_transpose", "conv3d_transpose")
def conv_transpose(cx: OpContext):
    return conv_common(cx, transposed=True)


@converter("batch_norm", "batch_norm_")
def batch_norm(cx: OpContext):
    # PIR operand order: x, mean, variance, scale, bias
    x, mean, var = cx.value(0), cx.value(1), cx.value(2)
    if not cx.attr("is_test", True) and not cx.attr("use_global_stats", False):
        cx.unsupported("batch_norm in training mode (is_test=false) is not supported")
    c = mean.type.shape[0]
    scale = cx.value(3) if cx.has(3) else const_like(cx, mean, np.ones(c))
    bias = cx.value(4) if cx.has(4) else const_like(cx, mean, np.zeros(c))
    x, back = to_nchw(cx, x, cx.attr("data_format", cx.attr("data_layout", "NCHW")))
    return back(cx.emit("batch_normalization", [x, scale, bias, mean, var],
                        {"epsilon": float(cx.attr("epsilon", 1e-5))}))


@converter("layer_norm")
def layer_norm(cx: OpContext):
    x = cx.value(0)
    r = cx.rank(x)
    axis = int(cx.attr("begin_norm_axis", 1)) % r
    norm_shape = list(x.type.shape[axis:])
    if not all(isinstance(d, int) for d in norm_shape):
        cx.unsupported(f"layer_norm needs static normalized dims, got {x.type}")
    # Paddle keeps scale and bias flattened to 1-D
    scale = reshape(cx, cx.value(1), norm_shape) if cx.has(1) else const_like(cx, x, np.ones(norm_shape))
    bias = reshape(cx, cx.value(2), norm_shape) if cx.has(2) else None
    return cx.emit("layer_normalization", [x, scale, bias], {"axis": axis, "epsilon": float(cx.attr("epsilon", 1e-5))})


@converter("group_norm")
def group_norm(cx: OpContext):
    x = cx.value(0)
    x, back = to_nchw(cx, x, cx.attr("data_format", cx.attr("data_layout", "NCHW")))
    c = x.type.shape[1]
    scale = cx.value(1) if cx.has(1) else const_like(cx, x, np.ones(c))
    bias = cx.value(2) if cx.has(2) else const_like(cx, x, np.zeros(c))
    return back(cx.emit("group_normalization", [x, scale, bias], {"epsilon": float(cx.attr("epsilon", 1e-5)),
                                                                    "num_groups": int(cx.attr("groups"))}))


@converter("instance_norm")
def instance_norm(cx: OpContext):
    x = cx.value(0)
    c = x.type.shape[1]
    scale = cx.value(1) if cx.has(1) else const_like(cx, x, np.ones(c))
    bias = cx.value(2) if cx.has(2) else const_like(cx, x, np.zeros(c))
    return cx.emit("instance_normalization", [x, scale, bias], {"epsilon": float(cx.attr("epsilon", 1e-5))})


@converter("dropout")
def dropout(cx: OpContext):
    # inference semantics: upscale_in_train is the identity, downgrade_in_infer scales by 1 - p
    x = cx.value(0)
    mode = cx.attr("mode", "upscale_in_train")
    if mode == "upscale_in_train":
        return x
    if mode != "downgrade_in_infer":
        cx.unsupported(f"dropout mode '{mode}' is not supported")
    p = cx.scalar(2, "dropout probability") if cx.has(2) else float(cx.attr("p", 0.5))
    return x if p == 0 else cx.emit("mul", [x, const_like(cx, x, 1.0 - p)])


# ---------------------------------------------------------------------------------------------
# pooling
def adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Averaging weights of adaptive pooling: row i averages [floor(i*n/m), ceil((i+1)*n/m))."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_pool(cx: OpContext, x, out_size, kind: str):
    dims = x.type.shape[2:]
    if not all(isinstance(d, int) for d in dims):
        cx.unsupported(f"adaptive pooling to {out_size} needs static spatial dims, got {x.type}")
    if all(d % o == 0 for d, o in zip(dims, out_size)):
        k = [d // o for d, o in zip(dims, out_size)]
        op = "average_pool" if kind == "avg" else "max_pool"
        return cx.emit(op, [x], {"kernel_shape": k, "strides": k})
    r = cx.rank(x)
    if kind == "avg":
        # separable: average each spatial axis with a constant matrix, last axis first
        y = x
        for ax in reversed(range(2, r)):
            m = adaptive_matrix(dims[ax - 2], out_size[ax - 2]).astype(x.type.dtype.np)
            perm = list(range(r))
            perm[ax], perm[-1] = perm[-1], perm[ax]
            y = transpose(cx, cx.emit("matmul", [transpose(cx, y, perm), cx.constant(m.T.copy())]), perm)
        return y
    # max: also separable; one slice + reduce per output index along each axis
    y = x
    for ax in range(2, r):
        n_in, n_out = dims[ax - 2], out_size[ax - 2]
        parts = []
        for i in range(n_out):
            lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
            part = cx.emit("slice", [y, cx.constant(i64([lo])), cx.constant(i64([hi])), cx.constant(i64([ax]))])
            parts.append(cx.emit("reduce_max", [part, cx.constant(i64([ax]))], {"keepdims": 1}))
        y = cx.emit("concat", parts, {"axis": ax})
    return y


@converter("pool2d", "pool3d")
def pool(cx: OpContext):
    x = cx.value(0)
    kernel = cx.ints(1, "kernel_size") if cx.has(1) else [int(k) for k in cx.attr("kernel_size", [])]
    kind = cx.attr("pooling_type", "max")
    if kind not in ("max", "avg"):
        cx.unsupported(f"pooling_type '{kind}' is not supported")
    x, back = to_nchw(cx, x, cx.attr("data_format", "NCHW"))
    nsp = cx.rank(x) - 2
    if len(kernel) == 1:
        kernel = kernel * nsp
    if cx.attr("global_pooling", False) or (cx.attr("adaptive", False) and all(k == 1 for k in kernel)):
        return back(cx.emit("global_average_pool" if kind == "avg" else "global_max_pool", [x]))
    if cx.attr("adaptive", False):
        return back(adaptive_pool(cx, x, kernel, kind))
    strides = [int(s) for s in cx.attr("strides", [1] * nsp)]
    algo = cx.attr("padding_algorithm", "EXPLICIT")
    if algo == "VALID":
        pads = [0] * (2 * nsp)
    elif algo == "SAME":
        pads = same_pads(cx, x, kernel, strides, "pooling")
    else:
        pads = spatial_pads(cx, cx.attr("paddings", [0] * nsp), nsp)
    correction = None
    if cx.attr("ceil_mode", False):
        # Paddle's ceil mode: out = ceil((in + pads - k) / s) + 1 with no further clamp. Expressed as
        # extra end padding, which max and exclusive avg ignore; non-exclusive avg divides by the
        # window clipped to the explicitly padded input, so its result is rescaled where that differs
        dims = x.type.shape[2:]
        if not all(isinstance(d, int) for d in dims):
            cx.unsupported(f"ceil_mode pooling needs static spatial dims, got {x.type}")
        divisors = []
        for i in range(nsp):
            total = dims[i] + pads[i] + pads[nsp + i]
            out = (total - kernel[i] + strides[i] - 1) // strides[i] + 1
            starts = np.arange(out) * strides[i] - pads[i]
            divisors.append(np.minimum(starts + kernel[i], dims[i] + pads[nsp + i]) - starts)
            pads[nsp + i] += max((out - 1) * strides[i] + kernel[i] - total, 0)
        full = np.ones(())
        for i, dv in enumerate(divisors):
            full = np.multiply.outer(full, kernel[i] / dv)
        if kind == "avg" and not cx.attr("exclusive", True) and not np.all(full == 1):
            correction = full
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads}
    if kind == "avg":
        attrs["count_include_pad"] = 0 if cx.attr("exclusive", True) else 1
        y = cx.emit("average_pool", [x], attrs)
        if correction is not None:
            y = cx.emit("mul", [y, cx.constant(correction.astype(x.type.dtype.np))])
        return back(y)
    return back(cx.emit("max_pool", [x], attrs))


@converter("max_pool2d_with_index", "max_pool3d_with_index")
def max_pool_with_index(cx: OpContext):
    return [pool(cx), None]  # the argmax mask is only used for training


# ---------------------------------------------------------------------------------------------
# shapes and data movement
@converter("reshape")
def reshape_op(cx: OpContext):
    # Paddle's 0 copies the input dim and -1 is inferred: ONNX Reshape with allowzero=0
    return cx.emit("reshape", [cx.value(0), shape_tensor(cx, 1)])


@converter("flatten")
def flatten(cx: OpContext):
    x = cx.value(0)
    r = cx.rank(x)
    if r == 0:
        return reshape(cx, x, [1])
    start, stop = int(cx.attr("start_axis", 1)) % r, int(cx.attr("stop_axis", -1)) % r
    if start > stop:
        cx.fail(f"start_axis {start} is after stop_axis {stop}")
    tail = list(x.type.shape[stop + 1:])
    if all(isinstance(d, int) for d in tail):
        return reshape(cx, x, [0] * start + [-1] + tail)  # 0 copies the leading dims
    dims = cx.emit("shape", [x])
    parts = []
    if start:
        parts.append(cx.emit("slice", [dims, cx.constant(i64([0])), cx.constant(i64([start]))]))
    parts.append(cx.constant(i64([-1])))
    parts.append(cx.emit("slice", [dims, cx.constant(i64([stop + 1])), cx.constant(i64([r]))]))
    return cx.emit("reshape", [x, cx.emit("concat", parts, {"axis": 0})])


@converter("legacy_flatten")
def legacy_flatten(cx: OpContext):
    return cx.emit("flatten", [cx.value(0)], {"axis": int(cx.attr("axis", 1))})


@converter("transpose")
def transpose_op(cx: OpContext):
    return transpose(cx, cx.value(0), [int(p) for p in cx.attr("perm")])


@converter("squeeze")
def squeeze(cx: OpContext):
    # Paddle skips listed axes whose dim is not 1 (ONNX would fail)
    x = cx.value(0)
    r = cx.rank(x)
    axes = cx.ints(1, "squeeze axes") if cx.has(1) else [int(a) for a in cx.attr("axes", [])]
    axes = sorted({a % r for a in axes}) if axes else list(range(r))
    declared = cx.out_type(0)
    shape = x.type.shape
    keep = [a for a in axes if shape[a] == 1]
    maybe = [a for a in axes if not isinstance(shape[a], int)]
    if maybe:
        if not isinstance(declared, TensorType) or declared.shape is None:
            cx.unsupported(f"cannot tell which of axes {maybe} of {x.type} are 1")
        if len(declared.shape) == r - len(keep) - len(maybe):
            keep = sorted(keep + maybe)
        elif len(declared.shape) != r - len(keep):
            cx.unsupported(f"cannot tell which of axes {maybe} of {x.type} are 1")
    if not keep:
        return x
    return cx.emit("squeeze", [x, cx.constant(i64(keep))])


def paddle_unsqueeze_positions(axes, rank: int) -> list[int]:
    """Paddle inserts the axes one after another, each relative to the rank so far."""
    marks = ["x"] * rank
    for a in axes:
        cur = len(marks)
        a = a + cur + 1 if a < 0 else min(a, cur)
        marks.insert(a, "new")
    return [i for i, m in enumerate(marks) if m == "new"]


@converter("unsqueeze")
def unsqueeze(cx: OpContext):
    x = cx.value(0)
    axes = cx.ints(1, "unsqueeze axes") if cx.has(1) else [int(a) for a in cx.attr("axes", [])]
    return cx.emit("unsqueeze", [x, cx.constant(i64(paddle_unsqueeze_positions(axes, cx.rank(x))))])


@converter("concat")
def concat(cx: OpContext):
    vs = cx.values(0)
    axis = int(cx.scalar(1, "concat axis")) if cx.has(1) else int(cx.attr("axis", 0))
    return vs[0] if len(vs) == 1 else cx.emit("concat", vs, {"axis": axis})


@converter("stack")
def stack(cx: OpContext):
    vs = cx.values(0)
    r = cx.rank(vs[0])
    axis = int(cx.attr("axis", 0))
    axis = axis + r + 1 if axis < 0 else axis
    parts = [cx.emit("unsqueeze", [v, cx.constant(i64([axis]))]) for v in vs]
    return parts[0] if len(parts) == 1 else cx.emit("concat", parts, {"axis": axis})


@converter("unstack")
def unstack(cx: OpContext):
    x = cx.value(0)
    r = cx.rank(x)
    axis = norm_axis(cx, int(cx.attr("axis", 0)), r)
    n = x.type.shape[axis]
    if not isinstance(n, int):
        cx.unsupported(f"unstack needs a static dim on axis {axis}, got {x.type}")
    parts = cx.emit("split", [x], {"axis": axis, "num_outputs": n}, n=n) if n > 1 else [x]
    return [[cx.emit("squeeze", [p, cx.constant(i64([axis]))]) for p in parts]]


@converter("split", "split_with_num")
def split(cx: OpContext):
    x = cx.value(0)
    r = cx.rank(x)
    if cx.op.type == "split":
        axis = int(cx.scalar(2, "split axis")) if cx.has(2) else int(cx.attr("axis", 0))
    else:
        axis = int(cx.scalar(1, "split axis")) if cx.has(1) else int(cx.attr("axis", 0))
    axis = norm_axis(cx, axis, r)
    dim = x.type.shape[axis]
    if cx.op.type == "split_with_num":
        n = int(cx.attr("num"))
        if n == 1:
            return [[x]]
        if not isinstance(dim, int):
            return [cx.emit("split", [x], {"axis": axis, "num_outputs": n}, n=n)]
        sizes = [dim // n] * n
    else:
        sizes = cx.ints(1, "split sections")
        if -1 in sizes:
            if not isinstance(dim, int):
                cx.unsupported(f"split sections {sizes} need a static dim on axis {axis}, got {x.type}")
            sizes[sizes.index(-1)] = dim - (sum(sizes) + 1)
    if len(sizes) == 1:
        return [[x]]
    return [cx.emit("split", [x, cx.constant(i64(sizes))], {"axis": axis}, n=len(sizes))]


@converter("slice", "strided_slice")
def slice_op(cx: OpContext):
    x = cx.value(0)
    axes = [int(a) for a in cx.attr("axes", [])]
    starts, ends = shape_tensor(cx, 1), shape_tensor(cx, 2)
    inputs = [x, starts, ends, cx.constant(i64(axes))]
    if cx.op.type == "strided_slice":
        inputs.append(shape_tensor(cx, 3))
    y = cx.emit("slice", inputs)
    decrease = [int(a) for a in cx.attr("decrease_axis", [])]
    if decrease:
        y = cx.emit("squeeze", [y, cx.constant(i64(decrease))])
    return y


@converter("expand")
def expand(cx: OpContext):
    # Paddle's -1 keeps the input dim: ONNX Expand does that for a target dim of 1
    x = cx.value(0)
    target = cx.const(1)
    if target is not None:
        t = i64(target)
        return cx.emit("expand", [x, cx.constant(np.where(t == -1, 1, t))])
    return cx.emit("expand", [x, shape_tensor(cx, 1)])


@converter("expand_as")
def expand_as(cx: OpContext):
    x = cx.value(0)
    if cx.has(1):
        return cx.emit("expand", [x, cx.emit("shape", [cx.value(1)])])
    return cx.emit("expand", [x, cx.constant(i64(cx.attr("target_shape")))])


@converter("tile")
def tile(cx: OpContext):
    x = cx.value(0)
    reps = cx.ints(1, "repeat_times") if cx.has(1) else [int(v) for v in cx.attr("repeat_times", [])]
    r = cx.rank(x)
    if len(reps) > r:  # Paddle prepends 1s to the input's shape
        x = cx.emit("unsqueeze", [x, cx.constant(i64(range(len(reps) - r)))])
    reps = [1] * (max(r, len(reps)) - len(reps)) + reps
    return cx.emit("tile", [x, cx.constant(i64(reps))])


@converter("gather")
def gather(cx: OpContext):
    x, index = cx.value(0), cx.value(1)
    axis = int(cx.scalar(2, "gather axis")) if cx.has(2) else int(cx.attr("axis", 0))
    return cx.emit("gather", [x, index], {"axis": axis})


@converter("index_select")
def index_select(cx: OpContext):
    return cx.emit("gather", [cx.value(0), cx.value(1)], {"axis": int(cx.attr("axis", 0))})


@converter("gather_nd")
def gather_nd(cx: OpContext):
    return cx.emit("gather_nd", [cx.value(0), cx.value(1)])


@converter("take_along_axis")
def take_along_axis(cx: OpContext):
    return cx.emit("gather_elements", [cx.value(0), cx.value(1)], {"axis": int(cx.attr("axis", 0))})


@converter("embedding")
def embedding(cx: OpContext):
    ids, weight = cx.value(0), cx.value(1)
    pad = int(cx.attr("padding_idx", -1))
    if pad != -1:
        # Paddle returns zeros for padding_idx
        if weight.data is None:
            cx.unsupported("embedding with padding_idx needs a constant weight")
        w = weight.data.copy()
        w[pad] = 0
        weight = cx.constant(w)
    return cx.emit("gather", [weight, ids], {"axis": 0})


@converter("arange")
def arange(cx: OpContext):
    dt = dtype_attr(cx) or cx.value(0).type.dtype
    parts = [cast(cx, reshape(cx, cx.value(i), []), dt) for i in range(3)]
    return cx.emit("range", parts)


@converter("pad3d")
def pad3d(cx: OpContext):
    x = cx.value(0)
    p = cx.ints(1, "paddings") if cx.has(1) else [int(v) for v in cx.attr("paddings", [])]
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}.get(cx.attr("mode"))
    if mode is None:
        cx.unsupported(f"pad mode '{cx.attr('mode')}' is not supported")
    x, back = to_nchw(cx, x, cx.attr("data_format", "NCDHW"))
    r = cx.rank(x)
    nsp = len(p) // 2
    # paddings run from the last axis backwards: [left, right, top, bottom, front, back]
    begins, ends = [0] * r, [0] * r
    for i in range(nsp):
        begins[r - 1 - i], ends[r - 1 - i] = p[2 * i], p[2 * i + 1]
    inputs = [x, cx.constant(i64(begins + ends))]
    if mode == "constant":
        inputs.append(const_like(cx, x, float(cx.attr("pad_value", cx.attr("value", 0.0)))))
    return back(cx.emit("pad", inputs, {"mode": mode}))


@converter("pad")
def pad(cx: OpContext):
    x = cx.value(0)
    p = [int(v) for v in cx.attr("paddings", [])]
    value = cx.scalar(1, "pad value") if cx.has(1) else float(cx.attr("pad_value", 0.0))
    return cx.emit("pad", [x, cx.constant(i64(p[0::2] + p[1::2])), const_like(cx, x, value)])


@converter("pixel_shuffle")
def pixel_shuffle(cx: OpContext):
    x, back = to_nchw(cx, cx.value(0), cx.attr("data_format", "NCHW"))
    return back(cx.emit("depth_to_space", [x], {"blocksize": int(cx.attr("upscale_factor")), "mode": "CRD"}))


# ---------------------------------------------------------------------------------------------
# reductions
REDUCE = {"mean": "reduce_mean", "sum": "reduce_sum", "max": "reduce_max", "min": "reduce_min",
          "prod": "reduce_prod", "logsumexp": "reduce_log_sum_exp", "any": "reduce_max", "all": "reduce_min",
          "amax": "reduce_max", "amin": "reduce_min"}


@converter(*REDUCE)
def reduce(cx: OpContext):
    x = cx.value(0)
    if cx.has(1):
        axes = cx.ints(1, "reduction axes")
    else:
        axes = cx.attr("axis", cx.attr("dims", []))
        axes = [int(a) for a in (axes if isinstance(axes, list) else [axes])]
    keep = bool(cx.attr("keepdim", cx.attr("keep_dim", False)))
    if cx.attr("reduce_all", False):
        axes = []
    r = cx.rank(x)
    axes = list(range(r)) if not axes else [a % r for a in axes]
    is_bool = cx.op.type in ("any", "all")
    if is_bool:
        x = cast(cx, x, dtypes.int32)
    dt = dtype_attr(cx)
    if cx.op.type == "sum" and dt is not None:
        x = cast(cx, x, dt)
    elif cx.op.type == "sum" and x.type.dtype in (dtypes.bool_, dtypes.int32):
        x = cast(cx, x, dtypes.int64)  # Paddle sums bools and int32 into int64
    if r == 0:
        y = x
    else:
        y = cx.emit(REDUCE[cx.op.type], [x, cx.constant(i64(axes))], {"keepdims": int(keep)})
    return cast(cx, y, dtypes.bool_) if is_bool else y


@converter("numel")
def numel(cx: OpContext):
    return cx.emit("size", [cx.value(0)])


@converter("p_norm")
def p_norm(cx: OpContext):
    x = cx.value(0)
    p, keep = float(cx.attr("porder", 2.0)), int(bool(cx.attr("keepdim", False)))
    if cx.attr("asvector", False):
        x, axes = reshape(cx, x, [-1]), [0]
    else:
        axes = [int(cx.attr("axis", -1)) % max(cx.rank(x), 1)]
    ax = cx.constant(i64(axes))
    if p == 2.0:
        return cx.emit("reduce_l2", [x, ax], {"keepdims": keep})
    if p == 1.0:
        return cx.emit("reduce_l1", [x, ax], {"keepdims": keep})
    a = cx.emit("abs", [x])
    if math.isinf(p):
        return cx.emit("reduce_max" if p > 0 else "reduce_min", [a, ax], {"keepdims": keep})
    if p == 0.0:  # the count of non-zeros
        nz = cast(cx, cx.emit("not", [cx.emit("equal", [x, const_like(cx, x, 0)])]), x.type.dtype)
        return cx.emit("reduce_sum", [nz, ax], {"keepdims": keep})
    s = cx.emit("reduce_sum", [cx.emit("pow", [a, const_like(cx, x, p)]), ax], {"keepdims": keep})
    return cx.emit("pow", [s, const_like(cx, x, 1.0 / p)])


@converter("mean_all")
def mean_all(cx: OpContext):
    x = cx.value(0)
    return cx.emit("reduce_mean", [x, cx.constant(i64(range(cx.rank(x))))], {"keepdims": 0})


@converter("argmax", "argmin")
def argmax(cx: OpContext):
    x = cx.value(0)
    axis = int(cx.scalar(1, "axis")) if cx.has(1) else int(cx.attr("axis", -1))
    if cx.attr("flatten", False):
        x, axis = reshape(cx, x, [-1]), 0
    y = cx.emit("arg_max" if cx.op.type == "argmax" else "arg_min", [x],
                {"axis": axis, "keepdims": int(bool(cx.attr("keepdims", False)))})
    return cast(cx, y, dtype_attr(cx) or dtypes.int64)


@converter("cumsum")
def cumsum(cx: OpContext):
    x = cx.value(0)
    axis = int(cx.scalar(1, "axis")) if cx.has(1) else int(cx.attr("axis", -1))
    if cx.attr("flatten", False):
        x, axis = reshape(cx, x, [-1]), 0
    return cx.emit("cum_sum", [x, cx.constant(np.asarray(axis, np.int64))],
                   {"exclusive": int(bool(cx.attr("exclusive", False))),
                    "reverse": int(bool(cx.attr("reverse", False)))})


@converter("topk")
def topk(cx: OpContext):
    x = cx.value(0)
    k = int(cx.scalar(1, "k")) if cx.has(1) else int(cx.attr("k"))
    values, indices = cx.emit("top_k", [x, cx.constant(i64([k]))],
                              {"axis": int(cx.attr("axis", -1)), "largest": int(bool(cx.attr("largest", True))),
                               "sorted": int(bool(cx.attr("sorted", True)))}, n=2)
    return [values, indices]


# ---------------------------------------------------------------------------------------------
# resizing
@converter("bilinear_interp", "nearest_interp", "bicubic_interp", "linear_interp", "trilinear_interp")
def interp(cx: OpContext):
    x = cx.value(0)
    x, back = to_nchw(cx, x, cx.attr("data_format", cx.attr("data_layout", "NCHW")))
    r = cx.rank(x)
    nsp = r - 2
    method = cx.attr("interp_method", cx.op.type.split("_")[0])
    align_corners, align_mode = bool(cx.attr("align_corners", False)), int(cx.attr("align_mode", 1))
    if method == "nearest":
        attrs = {"mode": "nearest",
                 "coordinate_transformation_mode": "align_corners" if align_corners else "asymmetric",
                 "nearest_mode": "round_prefer_ceil" if align_corners else "floor"}
    elif method in ("bilinear", "linear", "trilinear", "bicubic"):
        mode = "cubic" if method == "bicubic" else "linear"
        if align_corners:
            ctm = "align_corners"
        elif method == "bicubic" or align_mode == 0:
            ctm = "half_pixel"
        else:
            ctm = "asymmetric"
        attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
        if mode == "cubic":
            attrs["cubic_coeff_a"] = -0.75
    else:
        cx.unsupported(f"interp_method '{method}' is not supported")
    sizes = scales = None
    if cx.has(1):  # out_size tensor
        sizes = shape_tensor(cx, 1)
    elif cx.has(2):  # a list of scalar size tensors
        sizes = shape_tensor(cx, 2)
    elif cx.has(3):  # scale tensor
        sc = cx.const(3)
        if sc is None:
            cx.unsupported("a computed scale tensor is not supported")
        scales = [float(s) for s in np.asarray(sc).reshape(-1)]
    else:
        out = [int(cx.attr(k, -1)) for k in ("out_d", "out_h", "out_w")][3 - nsp:]
        scale = [float(s) for s in cx.attr("scale", [])]
        if scale and all(s > 0 for s in scale):
            scales = scale
        elif all(o > 0 for o in out):
            sizes = cx.constant(i64(out))
        else:
            cx.fail("no output size or scale given")
    if scales is not None:
        if len(scales) == 1:
            scales = scales * nsp
        y = cx.emit("resize", [x, None, cx.constant(np.asarray([1.0, 1.0] + scales, np.float32))], attrs)
    else:
        if sizes.type.shape not in ((nsp,), None):
            cx.fail(f"output size has shape {sizes.type.shape}, expected {nsp} values")
        y = cx.emit("resize", [x, None, None, sizes], {**attrs, "axes": list(range(2, r))})
    return back(y)


# ---------------------------------------------------------------------------------------------
# recurrent networks
GATE_ORDER = {  # Paddle gate blocks -> ONNX gate order
    "LSTM": (4, [0, 3, 1, 2]),  # Paddle i, f, g(c), o -> ONNX i, o, f, c
    "GRU": (3, [1, 0, 2]),  # Paddle r, z, c -> ONNX z, r, h
    "RNN_TANH": (1, [0]),
    "RNN_RELU": (1, [0]),
}


def reorder_gates(w: np.ndarray, mode: str) -> np.ndarray:
    n, order = GATE_ORDER[mode]
    blocks = np.split(w, n, axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


@converter("rnn")
def rnn(cx: OpContext):
    # operands: x [T, N, C] (time major), pre_state vector, weight vector, sequence_length, dropout state
    x = cx.value(0)
    states = cx.values(1)
    weights = cx.values(2)
    mode = cx.attr("mode", "LSTM")
    if mode not in GATE_ORDER:
        cx.unsupported(f"rnn mode '{mode}' is not supported")
    if cx.has(3):
        cx.unsupported("rnn with sequence_length is not supported")
    layers, hidden = int(cx.attr("num_layers", 1)), int(cx.attr("hidden_size"))
    dirs = 2 if cx.attr("is_bidirec", False) else 1
    n = layers * dirs
    if len(weights) not in (2 * n, 4 * n):
        cx.fail(f"expected {4 * n} weights for {layers} layers x {dirs} directions, got {len(weights)}")
    if any(w.data is None for w in weights):
        cx.unsupported("rnn weights must be constants")
    has_bias = len(weights) == 4 * n
    lstm = mode == "LSTM"
    if len(states) != (2 if lstm else 1):
        cx.fail(f"expected {2 if lstm else 1} initial states, got {len(states)}")
    dt = x.type.dtype.np

    y = x
    last_h, last_c = [], []
    for layer in range(layers):
        ws, rs, bs = [], [], []
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh = weights[2 * k].data, weights[2 * k + 1].data
            ws.append(reorder_gates(w_ih, mode))
            rs.append(reorder_gates(w_hh, mode))
            if has_bias:
                b_ih, b_hh = weights[2 * n + 2 * k].data, weights[2 * n + 2 * k + 1].data
                bs.append(np.concatenate([reorder_gates(b_ih, mode), reorder_gates(b_hh, mode)]))
            else:
                bs.append(np.zeros(2 * w_ih.shape[0], dt))
        inputs = [y, cx.constant(np.stack(ws).astype(dt)), cx.constant(np.stack(rs).astype(dt)),
                  cx.constant(np.stack(bs).astype(dt)), None]
        lo, hi = cx.constant(i64([layer * dirs])), cx.constant(i64([(layer + 1) * dirs]))
        inputs.append(cx.emit("slice", [states[0], lo, hi, cx.constant(i64([0]))]))
        attrs = {"hidden_size": hidden, "direction": "bidirectional" if dirs == 2 else "forward"}
        if lstm:
            inputs.append(cx.emit("slice", [states[1], lo, hi, cx.constant(i64([0]))]))
            out, h, c = cx.emit("lstm", inputs, attrs, n=3)
            last_c.append(c)
        else:
            if mode == "GRU":
                attrs["linear_before_reset"] = 1  # Paddle applies the reset gate after the matmul
                op = "gru"
            else:
                attrs["activations"] = ["Tanh" if mode == "RNN_TANH" else "Relu"] * dirs
                op = "rnn"
            out, h = cx.emit(op, inputs, attrs, n=2)
        last_h.append(h)
        # [T, D, N, H] -> [T, N, D*H]
        y = reshape(cx, transpose(cx, out, [0, 2, 1, 3]), [0, 0, -1])
    h_n = last_h[0] if layers == 1 else cx.emit("concat", last_h, {"axis": 0})
    final = [h_n]
    if lstm:
        final.append(last_c[0] if layers == 1 else cx.emit("concat", last_c, {"axis": 0}))
    return [y, None, final, None]
