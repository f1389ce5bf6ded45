"""Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul and
QLinearConv. (MatMulInteger and ConvInteger live with the NN ops in nn.py / nn_conv.py.)

Quantized types are int8/uint8/int16/uint16 (and int32 as a DequantizeLinear input). Scales and
zero points are per tensor (a scalar or a one-element 1-D tensor), per axis (1-D along `axis`),
or blocked (same rank as x, `block_size` consecutive elements along `axis` share one value).
Rounding is to nearest, ties to even. Integer accumulation is done in int64, so the results are
exact; requantization multiplies the accumulator by `a_scale * b_scale / y_scale` (computed in
the scale dtype) in float64, as ONNX's reference does.
"""
from __future__ import annotations

import math
from typing import Optional

import ml_dtypes
import numpy as np

from .. import dtypes
from ..errors import UnsupportedError
from ..registry import Attr, InferContext, get_op, register_op
from ..types import UNKNOWN, TensorType
from .common import broadcast_shapes, normalize_axis
from .elementwise import cast_array

QUANT_TYPES = (dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16)
# QuantizeLinear / DequantizeLinear also take the narrow types (dtypes.NARROW) but float8e8m0
NARROW_QUANT_INTS = dtypes.NARROW_INTS
NARROW_QUANT_FLOATS = tuple(d for d in dtypes.NARROW_FLOATS if d is not dtypes.float8e8m0)
QDQ_TYPES = QUANT_TYPES + NARROW_QUANT_INTS + NARROW_QUANT_FLOATS
SCALE_TYPES = (dtypes.float32, dtypes.float16, dtypes.bfloat16)
_INT8 = (dtypes.int8, dtypes.uint8)


def _range(dt: np.dtype):
    info = ml_dtypes.iinfo(dt)
    return info.min, info.max


def _saturate(values: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Round half to even, then clamp into dt's range."""
    lo, hi = _range(dt)
    return np.clip(np.rint(values), lo, hi).astype(dt)


def _scale_work_dtype(dt):
    """Arithmetic for half-precision scales is carried out in float32."""
    return np.float32 if dt in (np.float16, dtypes.bfloat16.np) else dt


# ---- scale / zero point layouts -----------------------------------------------------------
def check_quant_params(ctx: InferContext, x_shape, i_scale: int, i_zp: Optional[int]) -> None:
    """Validates the shapes of a (scale, zero point) pair against x for the three granularities."""
    s = ctx.types[i_scale].shape
    if i_zp is not None and ctx.has_input(i_zp):
        z = ctx.types[i_zp].shape
        if s is not None and z is not None and len(s) == len(z) and not all(
                a == b or not isinstance(a, int) or not isinstance(b, int) for a, b in zip(s, z)):
            ctx.fail(f"zero point shape {list(z)} differs from scale shape {list(s)}")
    block = ctx.attrs.get("block_size", 0)
    if block < 0:
        ctx.fail(f"block_size must be >= 0, got {block}")
    if s is None or x_shape is None:
        return
    per_tensor = len(s) == 0 or (len(s) == 1 and s[0] == 1)
    if block == 0:
        if per_tensor:
            return
        if len(s) != 1:
            ctx.fail(f"scale must be a scalar or a 1-D tensor when block_size is 0, got shape {list(s)}")
        axis = normalize_axis(ctx.attrs.get("axis", 1), len(x_shape), ctx)
        d = x_shape[axis]
        if isinstance(d, int) and isinstance(s[0], int) and d != s[0]:
            ctx.fail(f"per-axis scale has {s[0]} values, axis {axis} has size {d}")
        return
    if len(s) != len(x_shape):
        ctx.fail(f"blocked quantization needs a scale of rank {len(x_shape)}, got shape {list(s)}")
    axis = normalize_axis(ctx.attrs.get("axis", 1), len(x_shape), ctx)
    for i, (a, b) in enumerate(zip(x_shape, s)):
        if not (isinstance(a, int) and isinstance(b, int)):
            continue
        if i == axis:
            if b != math.ceil(a / block):
                ctx.fail(f"blocked scale dim {i} is {b}, expected ceil({a}/{block}) = {math.ceil(a / block)}")
        elif a != b:
            ctx.fail(f"blocked scale dim {i} is {b}, expected {a}")


def expand_param(p: np.ndarray, x_shape: tuple, axis: int, block: int) -> np.ndarray:
    """A scale or zero point reshaped/repeated so that it broadcasts against x."""
    if p.ndim == 0 or p.size == 1 and p.ndim == 1:
        return p.reshape(())
    axis = axis % len(x_shape)
    if not block:
        shape = [1] * len(x_shape)
        shape[axis] = p.size
        return p.reshape(shape)
    return np.repeat(p, block, axis=axis).take(np.arange(x_shape[axis]), axis=axis)


# ---- QuantizeLinear -----------------------------------------------------------------------
def _quantize_out_dtype(ctx: InferContext):
    od = ctx.attrs.get("output_dtype")
    if ctx.has_input(2):
        zd = ctx.types[2].dtype
        if od is not None and od is not zd:
            ctx.fail(f"output_dtype {od} differs from the zero point's dtype {zd}")
        od = zd
    od = od or dtypes.uint8
    if od not in QDQ_TYPES:
        ctx.unsupported(f"quantizing to {od} is not supported (int8, uint8, int16, uint16, the 4- and 2-bit "
                        f"integers, float8 and float4e2m1)")
    return od


def _quantize_infer(ctx: InferContext):
    x = ctx.types[0]
    if x.dtype not in SCALE_TYPES + (dtypes.int32,):
        ctx.fail(f"x has dtype {x.dtype}, expected float32, float16, bfloat16 or int32")
    if ctx.types[1].dtype not in SCALE_TYPES:
        ctx.unsupported(f"y_scale of dtype {ctx.types[1].dtype} is not supported (float32, float16, bfloat16)")
    prec = ctx.attrs.get("precision")
    if prec is not None and prec not in SCALE_TYPES:
        ctx.unsupported(f"precision {prec} is not supported (float32, float16, bfloat16)")
    od = _quantize_out_dtype(ctx)
    check_quant_params(ctx, x.shape, 1, 2)
    return [TensorType(od, x.shape)]


def _quantize_reference(inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    out = zp.dtype if zp is not None else (attrs.get("output_dtype") or dtypes.uint8).np
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    # the division runs in `precision`, by default the scale's dtype
    prec = attrs["precision"].np if attrs.get("precision") is not None else scale.dtype
    prec = _scale_work_dtype(prec)
    s = expand_param(scale, x.shape, axis, block).astype(prec)
    if dtypes.from_numpy(out) in NARROW_QUANT_FLOATS:  # no rounding to integers: a float cast
        with np.errstate(all="ignore"):
            q = x.astype(prec) / s
            if zp is not None:  # 0 for float8 (as ONNX requires); float4 adds it
                q = q + expand_param(zp, x.shape, axis, block).astype(np.float32)
        return cast_array(q, out, attrs.get("saturate", 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(x.astype(prec) / s).astype(np.float64)
    if zp is not None:
        q = q + expand_param(zp, x.shape, axis, block).astype(np.float64)
    return _saturate(q, out)


register_op("quantize_linear", ["x", "y_scale", "y_zero_point?"], ["y"], onnx="QuantizeLinear",
            attrs={"axis": Attr("int", 1), "block_size": Attr("int", 0), "output_dtype": Attr("dtype", None),
                   "saturate": Attr("int", 1), "precision": Attr("dtype", None)},
            infer=_quantize_infer, reference=_quantize_reference,
            doc="ONNX QuantizeLinear: y = saturate(round(x / y_scale) + y_zero_point); to float8 and "
                "float4, y = cast(x / y_scale + y_zero_point), clamped to the largest finite value unless "
                "`saturate` is 0.")


# ---- DequantizeLinear ---------------------------------------------------------------------
def _dequantize_infer(ctx: InferContext):
    x = ctx.types[0]
    if x.dtype not in QDQ_TYPES + (dtypes.int32,):
        ctx.unsupported(f"dequantizing {x.dtype} is not supported (int8, uint8, int16, uint16, int32, the 4- and "
                        f"2-bit integers, float8 and float4e2m1)")
    if ctx.types[1].dtype not in SCALE_TYPES:
        ctx.unsupported(f"x_scale of dtype {ctx.types[1].dtype} is not supported (float32, float16, bfloat16)")
    if ctx.has_input(2) and ctx.types[2].dtype is not x.dtype:
        ctx.fail(f"zero point dtype {ctx.types[2].dtype} differs from x's dtype {x.dtype}")
    od = ctx.attrs.get("output_dtype") or ctx.types[1].dtype
    if od not in SCALE_TYPES:
        ctx.unsupported(f"output_dtype {od} is not supported (float32, float16, bfloat16)")
    check_quant_params(ctx, x.shape, 1, 2)
    return [TensorType(od, x.shape)]


def _dequantize_reference(inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    out = attrs["output_dtype"].np if attrs.get("output_dtype") is not None else scale.dtype
    wide = np.float32 if dtypes.from_numpy(x.dtype) in NARROW_QUANT_FLOATS else np.int64  # exact
    dx = x.astype(wide)
    if zp is not None:
        dx = dx - expand_param(zp, x.shape, axis, block).astype(wide)
    # one rounding at the end: float32 math, then the output dtype
    y = dx.astype(np.float32) * expand_param(scale, x.shape, axis, block).astype(np.float32)
    return y.astype(out)


register_op("dequantize_linear", ["x", "x_scale", "x_zero_point?"], ["y"], onnx="DequantizeLinear",
            attrs={"axis": Attr("int", 1), "block_size": Attr("int", 0), "output_dtype": Attr("dtype", None)},
            infer=_dequantize_infer, reference=_dequantize_reference,
            doc="ONNX DequantizeLinear: y = (x - x_zero_point) * x_scale.")


# ---- DynamicQuantizeLinear ----------------------------------------------------------------
def _dynamic_quantize_infer(ctx: InferContext):
    x = ctx.types[0]
    if x.dtype is not dtypes.float32:
        ctx.fail(f"x must be float32, got {x.dtype}")
    return [TensorType(dtypes.uint8, x.shape), TensorType(dtypes.float32, ()), TensorType(dtypes.uint8, ())]


def _dynamic_quantize_reference(inputs, attrs):
    x = inputs[0]
    # the range always includes 0 so that 0 is exactly representable
    hi = np.float32(max(0.0, float(np.max(x)) if x.size else 0.0))
    lo = np.float32(min(0.0, float(np.min(x)) if x.size else 0.0))
    scale = np.float32(1.0 if hi == lo else hi - lo) / np.float32(255)
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
    y = _saturate(np.rint(x / scale).astype(np.float64) + zp, np.uint8)
    return [y, np.array(scale, np.float32), np.array(zp, np.uint8)]


register_op("dynamic_quantize_linear", ["x"], ["y", "y_scale", "y_zero_point"], onnx="DynamicQuantizeLinear",
            infer=_dynamic_quantize_infer, reference=_dynamic_quantize_reference,
            doc="ONNX DynamicQuantizeLinear: uint8 quantization with scale and zero point from x's range.")


# ---- integer matmul -----------------------------------------------------------------------
def _matmul_shape(ctx: InferContext, a, b):
    if a is None or b is None:
        return None
    if len(a) == 0 or len(b) == 0:
        ctx.fail("matmul inputs must have rank >= 1")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    k1, k2 = a2[-1], b2[-2]
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        ctx.fail(f"inner dims differ: {list(a)} x {list(b)}")
    batch = broadcast_shapes([a2[:-2], b2[:-2]], ctx)
    out = list(batch) + [a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return tuple(out)


def row_param(p: Optional[np.ndarray], a: np.ndarray) -> np.ndarray:
    """A per-tensor or per-row (of a) scale / zero point, shaped to broadcast against a."""
    if p is None:
        return np.zeros((), np.int64)
    if p.ndim == 0 or p.size == 1:
        return p.reshape(())
    if p.ndim == 1 and a.ndim >= 2:
        return p.reshape(p.size, 1)  # [M] -> [M, 1]
    return p


def col_param(p: Optional[np.ndarray], b: np.ndarray) -> np.ndarray:
    """A per-tensor or per-column (of b) scale / zero point, shaped to broadcast against b."""
    if p is None:
        return np.zeros((), np.int64)
    if p.ndim == 0 or p.size == 1:
        return p.reshape(())
    return p  # [N] and [..., 1, N] already broadcast along b's columns


def _int_matmul(a, a_zp, b, b_zp) -> np.ndarray:
    A = a.astype(np.int64) - row_param(a_zp, a).astype(np.int64)
    B = b.astype(np.int64) - col_param(b_zp, b).astype(np.int64)
    return np.matmul(A, B)


def _check_int_inputs(ctx, pairs):
    for i, zp in pairs:
        if ctx.types[i].dtype not in _INT8:
            ctx.unsupported(f"input {i} has dtype {ctx.types[i].dtype}; int8 and uint8 are supported")
        if zp is not None and ctx.has_input(zp) and ctx.types[zp].dtype is not ctx.types[i].dtype:
            ctx.fail(f"zero point (input {zp}) dtype {ctx.types[zp].dtype} differs from input {i}'s "
                     f"{ctx.types[i].dtype}")


def _qlinear_matmul_infer(ctx: InferContext):
    _check_int_inputs(ctx, [(0, 2), (3, 5), (7, None)])
    for i in (1, 4, 6):
        if ctx.types[i].dtype not in SCALE_TYPES:
            ctx.fail(f"scale input {i} has dtype {ctx.types[i].dtype}, expected a float type")
    return [TensorType(ctx.types[7].dtype, _matmul_shape(ctx, ctx.types[0].shape, ctx.types[3].shape))]


def _qlinear_matmul_reference(inputs, attrs):
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = inputs
    acc = _int_matmul(a, a_zp, b, b_zp)
    sd = a_scale.dtype
    mult = row_param(a_scale, a) * col_param(b_scale, b) / y_scale.astype(sd)
    return _saturate(acc * mult.astype(np.float64) + y_zp.astype(np.float64), y_zp.dtype)


register_op("qlinear_matmul", ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point",
                               "y_scale", "y_zero_point"], ["y"], onnx="QLinearMatMul",
            infer=_qlinear_matmul_infer, reference=_qlinear_matmul_reference,
            doc="ONNX QLinearMatMul: quantized matmul, requantized to y_scale / y_zero_point.")


# ---- integer convolution ------------------------------------------------------------------
_CONV_ATTRS = {"auto_pad": Attr("string", "NOTSET"), "dilations": Attr("ints", None), "group": Attr("int", 1),
               "kernel_shape": Attr("ints", None), "pads": Attr("ints", None), "strides": Attr("ints", None)}


def conv_geometry(spatial, kernel, attrs):
    """(strides, dilations, pads [begin..., end...]) with auto_pad resolved; spatial dims may be symbols."""
    n = len(kernel)
    strides = list(attrs.get("strides") or [1] * n)
    dilations = list(attrs.get("dilations") or [1] * n)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = list(attrs.get("pads") or [0] * (2 * n))
    elif auto_pad == "VALID":
        pads = [0] * (2 * n)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * n)
        for i in range(n):
            s = spatial[i]
            if not isinstance(s, int):
                pads[i] = pads[i + n] = None
                continue
            out = -(-s // strides[i])
            total = max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - s)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    else:
        raise ValueError(f"auto_pad '{auto_pad}' must be NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    return strides, dilations, pads


def _conv_infer_shape(ctx: InferContext, xi: int, wi: int):
    x, w = ctx.types[xi].shape, ctx.types[wi].shape
    if x is None or w is None:
        return None
    if len(x) < 3 or len(w) != len(x):
        ctx.fail(f"x {list(x)} and w {list(w)} must have the same rank >= 3")
    n = len(x) - 2
    kernel = list(w[2:])
    ks = ctx.attrs.get("kernel_shape")
    if ks is not None:
        if len(ks) != n or any(isinstance(k, int) and k != a for k, a in zip(kernel, ks)):
            ctx.fail(f"kernel_shape {ks} does not match w's spatial dims {kernel}")
        kernel = list(ks)
    group = ctx.attrs.get("group", 1)
    if group < 1:
        ctx.fail(f"group must be >= 1, got {group}")
    if isinstance(x[1], int) and isinstance(w[1], int) and x[1] != w[1] * group:
        ctx.fail(f"x has {x[1]} channels, w expects {w[1]} x group {group}")
    if isinstance(w[0], int) and w[0] % group:
        ctx.fail(f"w's {w[0]} output channels do not divide into {group} groups")
    for name, want in (("strides", n), ("dilations", n), ("pads", 2 * n)):
        v = ctx.attrs.get(name)
        if v is not None and len(v) != want:
            ctx.fail(f"{name} {v} must have {want} values")
    if any(not isinstance(k, int) for k in kernel):
        return (x[0], w[0]) + (UNKNOWN,) * n
    try:
        strides, dilations, pads = conv_geometry(x[2:], kernel, ctx.attrs)
    except ValueError as e:
        ctx.fail(str(e))
    out = []
    for i in range(n):
        s = x[2 + i]
        if not isinstance(s, int) or pads[i] is None:
            out.append(UNKNOWN)
            continue
        o = (s + pads[i] + pads[i + n] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        if o < 1:
            ctx.fail(f"spatial dim {i} of size {s} is smaller than the dilated kernel")
        out.append(o)
    return (x[0], w[0]) + tuple(out)


def int_conv(x: np.ndarray, w: np.ndarray, attrs) -> np.ndarray:
    """Exact N-D grouped convolution of int64 tensors (x [N, C, *S], w [M, C/group, *K]).

    Uses the float `conv` op's reference in float64 when that op is registered (exact: every
    product is below 2^16 and every sum below 2^53), else a small tap-by-tap loop.
    """
    try:
        conv = get_op("conv")
    except UnsupportedError:
        conv = None
    if conv is not None:
        y = conv.reference([x.astype(np.float64), w.astype(np.float64), None], dict(attrs))
        return np.rint(y).astype(np.int64)
    n = x.ndim - 2
    kernel = list(w.shape[2:])
    strides, dilations, pads = conv_geometry(list(x.shape[2:]), kernel, attrs)
    group = attrs.get("group", 1)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + n]) for i in range(n)])
    out_sp = [(xp.shape[2 + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(n)]
    N, M, cg = x.shape[0], w.shape[0], w.shape[1]
    mg = M // group
    y = np.zeros([N, M] + out_sp, np.int64)
    # accumulate one kernel tap at a time: a strided view of x times the tap's weights
    for tap in np.ndindex(*kernel):
        idx = tuple(slice(tap[i] * dilations[i], tap[i] * dilations[i] + strides[i] * (out_sp[i] - 1) + 1,
                          strides[i]) for i in range(n))
        patch = xp[(slice(None), slice(None)) + idx]  # [N, C, *out]
        for g in range(group):
            wg = w[(slice(g * mg, (g + 1) * mg), slice(None)) + tap]  # [mg, cg]
            y[:, g * mg:(g + 1) * mg] += np.tensordot(wg, patch[:, g * cg:(g + 1) * cg], axes=([1], [1])).swapaxes(0, 1)
    return y


def _channel_param(p: Optional[np.ndarray], rank: int) -> np.ndarray:
    """A per-tensor or per-output-channel parameter shaped [M, 1, ...] (or a scalar)."""
    if p is None:
        return np.zeros((), np.int64)
    if p.size == 1:
        return p.reshape(())
    return p.reshape((p.size,) + (1,) * (rank - 1))


def _check_channel_param(ctx: InferContext, i: int, wi: int, what: str):
    if not ctx.has_input(i):
        return
    s, w = ctx.types[i].shape, ctx.types[wi].shape
    if s is None or len(s) == 0 or (len(s) == 1 and s[0] == 1):
        return
    if len(s) != 1 or (w is not None and isinstance(w[0], int) and isinstance(s[0], int) and s[0] != w[0]):
        ctx.fail(f"{what} must be a scalar or hold one value per output channel, got shape {list(s)}")


def _check_scalar(ctx: InferContext, i: int, what: str):
    s = ctx.types[i].shape if ctx.has_input(i) else None
    if s is not None and not (len(s) == 0 or (len(s) == 1 and s[0] == 1)):
        ctx.fail(f"{what} must be a scalar, got shape {list(s)}")


def _qlinear_conv_infer(ctx: InferContext):
    _check_int_inputs(ctx, [(0, 2), (3, 5), (7, None)])
    for i in (1, 4, 6):
        if ctx.types[i].dtype not in SCALE_TYPES:
            ctx.fail(f"scale input {i} has dtype {ctx.types[i].dtype}, expected a float type")
    for i, what in ((1, "x_scale"), (2, "x_zero_point"), (6, "y_scale"), (7, "y_zero_point")):
        _check_scalar(ctx, i, what)
    _check_channel_param(ctx, 4, 3, "w_scale")
    _check_channel_param(ctx, 5, 3, "w_zero_point")
    if ctx.has_input(8) and ctx.types[8].dtype is not dtypes.int32:
        ctx.fail(f"B must be int32, got {ctx.types[8].dtype}")
    return [TensorType(ctx.types[7].dtype, _conv_infer_shape(ctx, 0, 3))]


def _qlinear_conv_reference(inputs, attrs):
    inputs = list(inputs) + [None] * (9 - len(inputs))
    x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias = inputs
    X = x.astype(np.int64) - x_zp.astype(np.int64).reshape(())
    W = w.astype(np.int64) - _channel_param(w_zp, w.ndim).astype(np.int64)
    acc = int_conv(X, W, attrs)
    if bias is not None:
        acc = acc + bias.astype(np.int64).reshape((1, -1) + (1,) * (x.ndim - 2))
    ws = _channel_param(w_scale, x.ndim - 1)  # [M, 1, ...]: lines up with y's channel axis
    mult = x_scale.reshape(()) * ws / y_scale.reshape(())
    return _saturate(acc * mult.astype(np.float64) + y_zp.astype(np.float64).reshape(()), y_zp.dtype)


register_op("qlinear_conv", ["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point",
                             "y_scale", "y_zero_point", "B?"], ["y"], onnx="QLinearConv",
            attrs=dict(_CONV_ATTRS), infer=_qlinear_conv_infer, reference=_qlinear_conv_reference,
            doc="ONNX QLinearConv: quantized convolution (per-tensor or per-output-channel weights), "
                "requantized to y_scale / y_zero_point.")
