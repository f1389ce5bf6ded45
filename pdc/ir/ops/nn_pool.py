"""Pooling: MaxPool (with Indices), AveragePool, LpPool, their Global forms, MaxUnpool, MaxRoiPool
and RoiAlign.

Windows come from nn_common.extract_windows (a strided view, no per-pixel loops). MaxPool pads
with the dtype's lowest value, so padding never wins; its Indices are flat positions in the
unpadded input, row-major (storage_order=0) or with the spatial dims column-major
(storage_order=1), batch and channel offsets included. AveragePool divides by the taps that fall
inside the input (count_include_pad=0) or inside input plus pads (count_include_pad=1); taps that
only ceil_mode reaches are never counted.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import const_ints
from .nn_common import (check_window_attrs, compute_dtype, extract_windows, is_half, prod, resolve_window,
                        spatial_attrs, window_counts, window_geometry)

_POOL_FLOATS = (dtypes.float16, dtypes.float32, dtypes.float64, dtypes.bfloat16)


def _window_attrs(**extra):
    attrs = {
        "auto_pad": Attr("string", "NOTSET"),
        "ceil_mode": Attr("int", 0),
        "dilations": Attr("ints", None),
        "kernel_shape": Attr("ints", REQUIRED),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }
    attrs.update(extra)
    return attrs


def _pool_shape(ctx: InferContext, allowed):
    x = ctx.types[0]
    if x.dtype not in allowed:
        ctx.fail(f"X has dtype {x.dtype}, expected one of {', '.join(map(str, allowed))}")
    kernel = list(ctx.attrs["kernel_shape"])
    nsp = len(kernel)
    if x.shape is not None and len(x.shape) != nsp + 2:
        ctx.fail(f"X has rank {len(x.shape)}, but kernel_shape has {nsp} spatial dims")
    check_window_attrs(ctx, nsp)
    if ctx.attrs.get("ceil_mode", 0) not in (0, 1):
        ctx.fail(f"ceil_mode must be 0 or 1, got {ctx.attrs['ceil_mode']}")
    if x.shape is None:
        return (UNKNOWN, UNKNOWN) + (UNKNOWN,) * nsp
    strides, dilations, pads = spatial_attrs(ctx.attrs, nsp)
    out, _ = window_geometry(list(x.shape[2:]), kernel, strides, dilations, pads,
                             ctx.attrs.get("auto_pad", "NOTSET"), ctx.attrs.get("ceil_mode", 0), ctx)
    return (x.shape[0], x.shape[1], *out)


def _windows(x, attrs, fill):
    kernel = list(attrs["kernel_shape"])
    strides, dilations, begin, out, counted = resolve_window(x.shape, kernel, attrs, attrs.get("ceil_mode", 0))
    win = extract_windows(x, kernel, strides, dilations, begin, out, fill)
    return win, (kernel, strides, dilations, begin, out, counted)


def _lowest(dtype):
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min
    return -np.inf


# ---- MaxPool ---------------------------------------------------------------------------------
def _max_pool_infer(ctx: InferContext):
    allowed = _POOL_FLOATS + (dtypes.int8, dtypes.uint8)
    shape = _pool_shape(ctx, allowed)
    if ctx.attrs.get("storage_order", 0) not in (0, 1):
        ctx.fail(f"storage_order must be 0 or 1, got {ctx.attrs['storage_order']}")
    t = TensorType(ctx.types[0].dtype, shape)
    return [t, TensorType(dtypes.int64, shape)][:ctx.num_outputs]


def _max_pool_reference(inputs, attrs):
    x = inputs[0]
    work = x.astype(np.float32) if is_half(x) else x
    win, (kernel, strides, dilations, begin, out, _) = _windows(work, attrs, _lowest(work.dtype))
    nsp = len(kernel)
    axes = tuple(range(-nsp, 0))
    y = win.max(axis=axes).astype(x.dtype)
    # Indices: position of the first maximum of each window among its taps inside the input (padding
    # takes no part, even where it equals the maximum: the type's lowest value), NaN counting as the max
    in_sp = x.shape[2:]
    flat = win.reshape(win.shape[:2 + nsp] + (-1,)).astype(np.float64)
    best = flat.max(axis=-1, keepdims=True)
    is_max = (flat == best) | (np.isnan(flat) & np.isnan(best))
    arg = np.argmax(is_max & _taps_inside(in_sp, kernel, strides, dilations, begin, out), axis=-1)  # (N, C, *O)
    taps = np.unravel_index(arg, kernel)
    index = np.zeros(arg.shape, np.int64)
    order = range(nsp) if attrs.get("storage_order", 0) == 0 else reversed(range(nsp))
    for i in order:  # Horner over the spatial dims, in storage order
        o = np.arange(out[i]).reshape((-1,) + (1,) * (nsp - 1 - i))
        coord = o * strides[i] - begin[i] + taps[i] * dilations[i]
        index = index * in_sp[i] + coord
    n, c = x.shape[:2]
    nc = (np.arange(n)[:, None] * c + np.arange(c)[None, :]).reshape((n, c) + (1,) * nsp)
    index = index + nc * prod(in_sp)
    return [y, index]


def _taps_inside(in_sp, kernel, strides, dilations, begin, out) -> np.ndarray:
    """(*out, prod(kernel)) booleans: which taps of each window fall inside the input."""
    nsp = len(kernel)
    inside = np.ones(tuple(out) + tuple(kernel), bool)
    for i in range(nsp):
        o = np.arange(out[i]).reshape((-1,) + (1,) * (2 * nsp - 1 - i))
        k = np.arange(kernel[i]).reshape((-1,) + (1,) * (nsp - 1 - i))
        coord = o * strides[i] - begin[i] + k * dilations[i]
        inside = inside & (coord >= 0) & (coord < in_sp[i])
    return inside.reshape(tuple(out) + (-1,))


register_op("max_pool", ["X"], ["Y", "Indices?"], onnx="MaxPool",
            attrs=_window_attrs(storage_order=Attr("int", 0)),
            infer=_max_pool_infer, reference=_max_pool_reference,
            doc="ONNX MaxPool: N-d max pooling; optional int64 Indices of the maxima (flat, storage_order).")


# ---- AveragePool -----------------------------------------------------------------------------
def _average_pool_infer(ctx: InferContext):
    if ctx.attrs.get("count_include_pad", 0) not in (0, 1):
        ctx.fail(f"count_include_pad must be 0 or 1, got {ctx.attrs['count_include_pad']}")
    return [TensorType(ctx.types[0].dtype, _pool_shape(ctx, _POOL_FLOATS))]


def _average_pool_reference(inputs, attrs):
    x = inputs[0]
    acc = compute_dtype(x)
    win, (kernel, strides, dilations, begin, out, counted) = _windows(x.astype(acc, copy=False), attrs, 0)
    nsp = len(kernel)
    total = win.sum(axis=tuple(range(-nsp, 0)))
    in_sp = x.shape[2:]
    if attrs.get("count_include_pad", 0):
        valid = [(-pb, in_sp[i] + pe) for i, (pb, pe) in enumerate(counted)]
    else:
        valid = [(0, s) for s in in_sp]
    counts = window_counts(in_sp, kernel, strides, dilations, begin, out, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / counts).astype(x.dtype)


register_op("average_pool", ["X"], ["Y"], onnx="AveragePool",
            attrs=_window_attrs(count_include_pad=Attr("int", 0)),
            infer=_average_pool_infer, reference=_average_pool_reference,
            doc="ONNX AveragePool: N-d average pooling (count_include_pad, ceil_mode, dilations).")


# ---- LpPool ----------------------------------------------------------------------------------
def _lp_pool_infer(ctx: InferContext):
    if ctx.attrs.get("p", 2) < 1:
        ctx.fail(f"p must be >= 1, got {ctx.attrs['p']}")
    return [TensorType(ctx.types[0].dtype, _pool_shape(ctx, _POOL_FLOATS))]


def _lp(win_or_x, p, axes):
    a = np.abs(win_or_x)
    if p == 1:
        return a.sum(axis=axes)
    if p == 2:
        return np.sqrt(np.square(a).sum(axis=axes))
    return np.power(np.power(a, p).sum(axis=axes), 1.0 / p)


def _lp_pool_reference(inputs, attrs):
    x = inputs[0]
    acc = compute_dtype(x)
    win, (kernel, *_rest) = _windows(x.astype(acc, copy=False), attrs, 0)
    nsp = len(kernel)
    return _lp(win, attrs.get("p", 2), tuple(range(-nsp, 0))).astype(x.dtype)


register_op("lp_pool", ["X"], ["Y"], onnx="LpPool", attrs=_window_attrs(p=Attr("int", 2)),
            infer=_lp_pool_infer, reference=_lp_pool_reference,
            doc="ONNX LpPool: N-d Lp-norm pooling, (sum |x|^p)^(1/p) over each window.")


# ---- Global pools ----------------------------------------------------------------------------
def _global_infer(allowed):
    def infer(ctx: InferContext):
        x = ctx.types[0]
        if x.dtype not in allowed:
            ctx.fail(f"X has dtype {x.dtype}, expected one of {', '.join(map(str, allowed))}")
        if ctx.attrs.get("p", 2) < 1:
            ctx.fail(f"p must be >= 1, got {ctx.attrs['p']}")
        if x.shape is None:
            return [x]
        if len(x.shape) < 2:
            ctx.fail(f"X must have rank >= 2 (N, C, ...), got rank {len(x.shape)}")
        return [TensorType(x.dtype, (*x.shape[:2], *[1] * (len(x.shape) - 2)))]
    return infer


def _global(fn):
    def reference(inputs, attrs):
        x = inputs[0]
        axes = tuple(range(2, x.ndim))
        work = x.astype(compute_dtype(x), copy=False) if x.dtype.kind == "f" or is_half(x) else x
        return np.asarray(fn(work, axes, attrs)).astype(x.dtype)
    return reference


register_op("global_average_pool", ["X"], ["Y"], onnx="GlobalAveragePool",
            infer=_global_infer(_POOL_FLOATS),
            reference=_global(lambda x, axes, a: x.mean(axis=axes, keepdims=True)),
            doc="ONNX GlobalAveragePool: mean over all spatial dims, kept as size-1 dims.")
register_op("global_max_pool", ["X"], ["Y"], onnx="GlobalMaxPool",
            infer=_global_infer(_POOL_FLOATS),
            reference=_global(lambda x, axes, a: x.max(axis=axes, keepdims=True)),
            doc="ONNX GlobalMaxPool: max over all spatial dims, kept as size-1 dims.")
register_op("global_lp_pool", ["X"], ["Y"], onnx="GlobalLpPool", attrs={"p": Attr("int", 2)},
            infer=_global_infer(_POOL_FLOATS),
            reference=_global(lambda x, axes, a: np.expand_dims(_lp(x, a.get("p", 2), axes), axes)),
            doc="ONNX GlobalLpPool: Lp norm over all spatial dims, kept as size-1 dims.")


# ---- MaxUnpool -------------------------------------------------------------------------------
def _max_unpool_infer(ctx: InferContext):
    x, ind = ctx.types[0], ctx.types[1]
    if x.dtype not in _POOL_FLOATS:
        ctx.fail(f"X must be a float tensor, got {x.dtype}")
    if ind.dtype != dtypes.int64:
        ctx.fail(f"I must be int64, got {ind.dtype}")
    kernel = list(ctx.attrs["kernel_shape"])
    nsp = len(kernel)
    check_window_attrs(ctx, nsp)
    if x.shape is not None and len(x.shape) != nsp + 2:
        ctx.fail(f"X has rank {len(x.shape)}, but kernel_shape has {nsp} spatial dims")
    if ctx.has_input(2):
        shape = const_ints(ctx, 2)
        if shape is None:
            return [TensorType(x.dtype, (UNKNOWN,) * (nsp + 2))]
        if len(shape) != nsp + 2:
            ctx.fail(f"output_shape {shape} must have {nsp + 2} values")
        return [TensorType(x.dtype, shape)]
    if x.shape is None:
        return [TensorType(x.dtype, (UNKNOWN,) * (nsp + 2))]
    return [TensorType(x.dtype, (*x.shape[:2], *_unpool_size(x.shape[2:], kernel, ctx.attrs)))]


def _unpool_size(in_sp, kernel, attrs):
    nsp = len(kernel)
    strides, _, pads = spatial_attrs(attrs, nsp)
    return [(s - 1) * strides[i] + kernel[i] - pads[i] - pads[i + nsp] if isinstance(s, int) else UNKNOWN
            for i, s in enumerate(in_sp)]


def _max_unpool_reference(inputs, attrs):
    x, ind = inputs[0], inputs[1]
    shape_in = inputs[2] if len(inputs) > 2 else None
    kernel = list(attrs["kernel_shape"])
    if shape_in is not None:
        shape = [int(s) for s in shape_in.reshape(-1)]
    else:
        shape = [*x.shape[:2], *_unpool_size(x.shape[2:], kernel, attrs)]
    y = np.zeros(prod(shape), x.dtype)
    flat = ind.reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= y.size):
        raise ValueError(f"MaxUnpool: an index in I is outside the output of shape {shape}")
    y[flat] = x.reshape(-1)
    return y.reshape(shape)


register_op("max_unpool", ["X", "I", "output_shape?"], ["output"], onnx="MaxUnpool",
            attrs={"kernel_shape": Attr("ints", REQUIRED), "pads": Attr("ints", None), "strides": Attr("ints", None)},
            infer=_max_unpool_infer, reference=_max_unpool_reference,
            doc="ONNX MaxUnpool: scatters X to the flat positions I in a zero tensor (MaxPool's inverse).")
