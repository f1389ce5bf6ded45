"""Normalizations: BatchNormalization (inference), InstanceNormalization, LayerNormalization,
GroupNormalization, RMSNormalization, LRN, MeanVarianceNormalization and LpNormalization.

Statistics are computed in float32 (or float64 for float64 inputs); LayerNormalization,
GroupNormalization and RMSNormalization compute them in `stash_type` and round the normalized
values to the input type before scaling, as the ONNX function bodies do.
GroupNormalization follows opset 21: scale and bias hold one value per channel.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import normalize_axis
from .nn_common import compute_dtype

# ONNX float attributes are float32: the default epsilon is float32(1e-5), as ONNX Runtime reads it
EPSILON = float(np.float32(1e-5))
LRN_ALPHA = float(np.float32(1e-4))  # LRN's default alpha, a float32 attribute like epsilon

_FLOATS = (dtypes.float16, dtypes.float32, dtypes.float64, dtypes.bfloat16)


def _require_float(ctx: InferContext, *indices):
    for i in indices:
        if ctx.has_input(i) and ctx.types[i].dtype not in _FLOATS:
            ctx.fail(f"input {i} must be a float tensor, got {ctx.types[i].dtype}")


def _check_channel_param(ctx: InferContext, i: int, what: str, channels):
    t = ctx.types[i] if ctx.has_input(i) else None
    if t is None or t.shape is None:
        return
    if len(t.shape) != 1:
        ctx.fail(f"{what} must be 1-D with one value per channel, got shape {list(t.shape)}")
    if isinstance(channels, int) and isinstance(t.shape[0], int) and t.shape[0] != channels:
        ctx.fail(f"{what} has {t.shape[0]} values, X has {channels} channels")


def _channels(ctx: InferContext):
    x = ctx.types[0]
    if x.shape is None:
        return UNKNOWN
    if len(x.shape) < 2:
        ctx.fail(f"X must have rank >= 2 (N, C, ...), got rank {len(x.shape)}")
    return x.shape[1]


def _per_channel(p: np.ndarray, ndim: int, acc) -> np.ndarray:
    return p.astype(acc, copy=False).reshape((1, -1) + (1,) * (ndim - 2))


def _stash(attrs) -> np.dtype:
    dt = attrs.get("stash_type", dtypes.float32)
    return np.dtype(np.float32) if dt in (dtypes.bfloat16, dtypes.float16) else dt.np


# ---- BatchNormalization ----------------------------------------------------------------------
def _batch_norm_infer(ctx: InferContext):
    if ctx.attrs.get("training_mode", 0):
        ctx.unsupported("training_mode=1 is not supported: pdc compiles inference graphs "
                        "(BatchNormalization uses input_mean / input_var)")
    if ctx.num_outputs > 1:
        ctx.unsupported("running_mean / running_var outputs exist only in training mode, "
                        "which pdc does not support")
    _require_float(ctx, 0, 1, 2, 3, 4)
    c = _channels(ctx)
    for i, what in ((1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")):
        _check_channel_param(ctx, i, what, c)
    return [ctx.types[0]]


def _batch_norm_reference(inputs, attrs):
    x, scale, b, mean, var = inputs[:5]
    acc = compute_dtype(x)
    eps = attrs.get("epsilon", EPSILON)
    # folded into one multiply-add, as an inference kernel does
    inv = scale.astype(acc) / np.sqrt(var.astype(acc) + acc.type(eps))
    shift = b.astype(acc) - mean.astype(acc) * inv
    y = x.astype(acc) * _per_channel(inv, x.ndim, acc) + _per_channel(shift, x.ndim, acc)
    return y.astype(x.dtype)


register_op("batch_normalization", ["X", "scale", "B", "input_mean", "input_var"],
            ["Y", "running_mean?", "running_var?"], onnx="BatchNormalization",
            attrs={"epsilon": Attr("float", EPSILON), "momentum": Attr("float", 0.9), "training_mode": Attr("int", 0)},
            infer=_batch_norm_infer, reference=_batch_norm_reference,
            doc="ONNX BatchNormalization in inference mode: per-channel (x - mean) / sqrt(var + eps) * scale + B.")


# ---- InstanceNormalization -------------------------------------------------------------------
def _instance_norm_infer(ctx: InferContext):
    _require_float(ctx, 0, 1, 2)
    c = _channels(ctx)
    _check_channel_param(ctx, 1, "scale", c)
    _check_channel_param(ctx, 2, "B", c)
    return [ctx.types[0]]


def _instance_norm_reference(inputs, attrs):
    x, scale, b = inputs[:3]
    acc = compute_dtype(x)
    xa = x.astype(acc)
    axes = tuple(range(2, x.ndim))
    mean = xa.mean(axis=axes, keepdims=True)
    var = np.square(xa - mean).mean(axis=axes, keepdims=True)
    y = (xa - mean) / np.sqrt(var + acc.type(attrs.get("epsilon", EPSILON)))
    y = y * _per_channel(scale, x.ndim, acc) + _per_channel(b, x.ndim, acc)
    return y.astype(x.dtype)


register_op("instance_normalization", ["input", "scale", "B"], ["output"], onnx="InstanceNormalization",
            attrs={"epsilon": Attr("float", EPSILON)},
            infer=_instance_norm_infer, reference=_instance_norm_reference,
            doc="ONNX InstanceNormalization: normalizes each (n, c) slice over its spatial dims.")


# ---- LayerNormalization / RMSNormalization ---------------------------------------------------
def _check_stash(ctx: InferContext):
    st = ctx.attrs.get("stash_type", dtypes.float32)
    if st not in _FLOATS:
        ctx.fail(f"stash_type must be a float type, got {st}")
    return st


def _trailing_param(ctx: InferContext, i: int, what: str, x_shape, axis: int):
    """Scale / B broadcast unidirectionally to X[axis:]."""
    t = ctx.types[i] if ctx.has_input(i) else None
    if t is None or t.shape is None or x_shape is None:
        return
    tail = x_shape[axis:]
    if len(t.shape) > len(tail):
        ctx.fail(f"{what} has rank {len(t.shape)}, more than the {len(tail)} normalized dims")
    for p, d in zip(reversed(t.shape), reversed(tail)):
        if isinstance(p, int) and isinstance(d, int) and p != d and p != 1:
            ctx.fail(f"{what} of shape {list(t.shape)} does not broadcast to the normalized dims {list(tail)}")


_STASH_ATTRS = {"axis": Attr("int", -1), "epsilon": Attr("float", EPSILON), "stash_type": Attr("dtype", dtypes.float32)}


def _layer_norm_infer(ctx: InferContext):
    _require_float(ctx, 0, 1, 2)
    st = _check_stash(ctx)
    x = ctx.types[0]
    if x.shape is None:
        return [x, TensorType(st, None), TensorType(st, None)][:ctx.num_outputs]
    rank = len(x.shape)
    axis = normalize_axis(ctx.attrs.get("axis", -1), rank, ctx)
    _trailing_param(ctx, 1, "Scale", x.shape, axis)
    _trailing_param(ctx, 2, "B", x.shape, axis)
    stat = TensorType(st, tuple(x.shape[:axis]) + (1,) * (rank - axis))
    return [x, stat, stat][:ctx.num_outputs]


def _layer_norm_reference(inputs, attrs):
    x, scale, b = (inputs + [None])[:3]
    st = _stash(attrs)
    axis = attrs.get("axis", -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    xs = x.astype(st)
    mean = xs.mean(axis=axes, keepdims=True)
    d = xs - mean
    inv_std = 1 / np.sqrt(np.square(d).mean(axis=axes, keepdims=True) + st.type(attrs.get("epsilon", EPSILON)))
    normalized = (d * inv_std).astype(x.dtype)
    acc = compute_dtype(x)
    y = normalized.astype(acc) * scale.astype(acc)
    if b is not None:
        y = y + b.astype(acc)
    out_st = attrs.get("stash_type", dtypes.float32).np
    return [y.astype(x.dtype), mean.astype(out_st), inv_std.astype(out_st)]


register_op("layer_normalization", ["X", "Scale", "B?"], ["Y", "Mean?", "InvStdDev?"], onnx="LayerNormalization",
            attrs=dict(_STASH_ATTRS), infer=_layer_norm_infer, reference=_layer_norm_reference,
            doc="ONNX LayerNormalization: normalizes over dims [axis, rank); optional Mean / InvStdDev outputs.")


def _rms_norm_infer(ctx: InferContext):
    _require_float(ctx, 0, 1)
    _check_stash(ctx)
    x = ctx.types[0]
    if x.shape is not None:
        axis = normalize_axis(ctx.attrs.get("axis", -1), len(x.shape), ctx)
        _trailing_param(ctx, 1, "scale", x.shape, axis)
    return [x]


def _rms_norm_reference(inputs, attrs):
    x, scale = inputs[:2]
    st = _stash(attrs)
    axis = attrs.get("axis", -1) % x.ndim
    xs = x.astype(st)
    ms = np.square(xs).mean(axis=tuple(range(axis, x.ndim)), keepdims=True)
    normalized = (xs / np.sqrt(ms + st.type(attrs.get("epsilon", EPSILON)))).astype(x.dtype)
    acc = compute_dtype(x)
    return (normalized.astype(acc) * scale.astype(acc)).astype(x.dtype)


register_op("rms_normalization", ["X", "scale"], ["Y"], onnx="RMSNormalization",
            attrs=dict(_STASH_ATTRS), infer=_rms_norm_infer, reference=_rms_norm_reference,
            doc="ONNX RMSNormalization: x / sqrt(mean(x^2 over [axis, rank)) + eps) * scale.")


# ---- GroupNormalization (opset 21 form) ------------------------------------------------------
def _group_norm_infer(ctx: InferContext):
    _require_float(ctx, 0, 1, 2)
    _check_stash(ctx)
    g = ctx.attrs["num_groups"]
    if g < 1:
        ctx.fail(f"num_groups must be >= 1, got {g}")
    c = _channels(ctx)
    if isinstance(c, int) and c % g:
        ctx.fail(f"X has {c} channels, not divisible by num_groups={g}")
    _check_channel_param(ctx, 1, "scale", c)
    _check_channel_param(ctx, 2, "bias", c)
    return [ctx.types[0]]


def _group_norm_reference(inputs, attrs):
    x, scale, b = inputs[:3]
    st = _stash(attrs)
    g = attrs["num_groups"]
    n = x.shape[0]
    xs = x.astype(st).reshape(n, g, -1)
    mean = xs.mean(axis=2, keepdims=True)
    var = np.square(xs - mean).mean(axis=2, keepdims=True)
    normalized = ((xs - mean) / np.sqrt(var + st.type(attrs.get("epsilon", EPSILON)))).astype(x.dtype).reshape(x.shape)
    acc = compute_dtype(x)
    y = normalized.astype(acc) * _per_channel(scale, x.ndim, acc) + _per_channel(b, x.ndim, acc)
    return y.astype(x.dtype)


register_op("group_normalization", ["X", "scale", "bias"], ["Y"], onnx="GroupNormalization",
            attrs={"epsilon": Attr("float", EPSILON), "num_groups": Attr("int", REQUIRED),
                   "stash_type": Attr("dtype", dtypes.float32)},
            infer=_group_norm_infer, reference=_group_norm_reference,
            doc="ONNX GroupNormalization (opset 21): normalizes channel groups; per-channel scale and bias.")


# ---- LRN -------------------------------------------------------------------------------------
def _lrn_infer(ctx: InferContext):
    _require_float(ctx, 0)
    if ctx.attrs["size"] < 1:
        ctx.fail(f"size must be >= 1, got {ctx.attrs['size']}")
    _channels(ctx)
    return [ctx.types[0]]


def _lrn_reference(inputs, attrs):
    x = inputs[0]
    acc = compute_dtype(x)
    size = attrs["size"]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)  # channels below / above each channel
    sq = np.square(x.astype(acc))
    c = x.shape[1]
    # windowed sum over channels via a cumulative sum with a leading zero
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    idx = np.arange(c)
    top = np.minimum(idx + hi + 1, c)
    bottom = np.maximum(idx - lo, 0)
    square_sum = np.take(csum, top, axis=1) - np.take(csum, bottom, axis=1)
    denom = (acc.type(attrs.get("bias", 1.0)) + acc.type(attrs.get("alpha", LRN_ALPHA)) / size * square_sum) \
        ** acc.type(attrs.get("beta", 0.75))
    return (x.astype(acc) / denom).astype(x.dtype)


register_op("lrn", ["X"], ["Y"], onnx="LRN",
            attrs={"alpha": Attr("float", LRN_ALPHA), "beta": Attr("float", 0.75), "bias": Attr("float", 1.0),
                   "size": Attr("int", REQUIRED)},
            infer=_lrn_infer, reference=_lrn_reference,
            doc="ONNX LRN: local response normalization across `size` neighbouring channels.")


# ---- MeanVarianceNormalization ---------------------------------------------------------------
def _mvn_infer(ctx: InferContext):
    _require_float(ctx, 0)
    x = ctx.types[0]
    axes = ctx.attrs.get("axes", [0, 2, 3])
    if x.shape is not None:
        norm = [normalize_axis(a, len(x.shape), ctx) for a in axes]
        if len(set(norm)) != len(norm):
            ctx.fail(f"axes {axes} name an axis twice")
    return [x]


def _mvn_reference(inputs, attrs):
    x = inputs[0]
    acc = compute_dtype(x)
    xa = x.astype(acc)
    axes = tuple(a % x.ndim for a in attrs.get("axes", [0, 2, 3]))
    mean = xa.mean(axis=axes, keepdims=True)
    var = np.square(xa).mean(axis=axes, keepdims=True) - np.square(mean)  # E[x^2] - E[x]^2, as ONNX defines it
    with np.errstate(invalid="ignore"):
        std = np.sqrt(np.maximum(var, 0))
    return ((xa - mean) / (std + acc.type(1e-9))).astype(x.dtype)


register_op("mean_variance_normalization", ["X"], ["Y"], onnx="MeanVarianceNormalization",
            attrs={"axes": Attr("ints", [0, 2, 3])},
            infer=_mvn_infer, reference=_mvn_reference,
            doc="ONNX MeanVarianceNormalization: (x - mean) / (std + 1e-9) over `axes`.")


# ---- LpNormalization -------------------------------------------------------------------------
def _lp_norm_infer(ctx: InferContext):
    _require_float(ctx, 0)
    p = ctx.attrs.get("p", 2)
    if p not in (1, 2):
        ctx.unsupported(f"p={p} is not supported (ONNX defines p=1 and p=2)")
    x = ctx.types[0]
    if x.shape is not None:
        normalize_axis(ctx.attrs.get("axis", -1), len(x.shape), ctx)
    return [x]


def _lp_norm_reference(inputs, attrs):
    x = inputs[0]
    acc = compute_dtype(x)
    xa = x.astype(acc)
    axis = attrs.get("axis", -1)
    if attrs.get("p", 2) == 1:
        norm = np.abs(xa).sum(axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.square(xa).sum(axis=axis, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(norm == 0, 0, xa / norm)  # an all-zero slice stays zero
    return y.astype(x.dtype)


register_op("lp_normalization", ["input"], ["output"], onnx="LpNormalization",
            attrs={"axis": Attr("int", -1), "p": Attr("int", 2)},
            infer=_lp_norm_infer, reference=_lp_norm_reference,
            doc="ONNX LpNormalization: x / ||x||_p along `axis` (p = 1 or 2); zero where the norm is zero.")
