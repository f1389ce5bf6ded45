"""Ops that read shapes or make and mask values: shape, size, constant_of_shape, range, trilu,
cum_sum, eye_like.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import const_ints, normalize_axis
from .tensor import ints_of, known_length, runtime_error


# ---------------------------------------------------------------------------------------------
# shape / size / constant_of_shape
def _shape_range(rank: int, attrs):
    start = attrs.get("start", 0)
    end = attrs.get("end")
    end = rank if end is None else end

    def clamp(i):
        return min(max(i + rank if i < 0 else i, 0), rank)
    return clamp(start), clamp(end)


def _shape_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.shape is None:
        return [TensorType(dtypes.int64, (UNKNOWN,))]
    s, e = _shape_range(t.rank, ctx.attrs)
    return [TensorType(dtypes.int64, (max(e - s, 0),))]


def _shape_ref(inputs, attrs):
    x = inputs[0]
    s, e = _shape_range(x.ndim, attrs)
    return np.array(x.shape[s:e] if e > s else [], np.int64)


register_op("shape", ["data"], ["shape"], onnx="Shape",
            attrs={"start": Attr("int", 0), "end": Attr("int", None)},
            infer=_shape_infer, reference=_shape_ref,
            doc="The input's shape (dims start..end) as an int64 vector.")

register_op("size", ["data"], ["size"], onnx="Size",
            infer=lambda ctx: [TensorType(dtypes.int64, ())],
            reference=lambda x, a: np.array(x[0].size, np.int64),
            doc="The input's element count as an int64 scalar.")


def _cos_value(attrs) -> np.ndarray:
    v = attrs.get("value")
    return np.zeros(1, np.float32) if v is None else np.asarray(v)


def _constant_of_shape_infer(ctx: InferContext):
    value = _cos_value(ctx.attrs)
    if value.size != 1:
        ctx.fail(f"value must hold one element, got shape {list(value.shape)}")
    dt = dtypes.from_numpy(value.dtype)
    shape = const_ints(ctx, 0)
    if shape is None:
        n = known_length(ctx, 0)
        return [TensorType(dt, None if n is None else (UNKNOWN,) * n)]
    if any(d < 0 for d in shape):
        ctx.fail(f"shape {shape} has a negative dim")
    return [TensorType(dt, shape)]


def _constant_of_shape_ref(inputs, attrs):
    value = _cos_value(attrs)
    shape = ints_of(inputs[0])
    if any(d < 0 for d in shape):
        runtime_error(f"constant_of_shape: shape {shape} has a negative dim")
    return np.full(shape, value.reshape(-1)[0], value.dtype)


register_op("constant_of_shape", ["input"], ["output"], onnx="ConstantOfShape",
            attrs={"value": Attr("tensor", None)}, infer=_constant_of_shape_infer,
            reference=_constant_of_shape_ref,
            doc="A tensor of the given shape filled with `value` (default float32 0).")


# ---------------------------------------------------------------------------------------------
# range
def _range_count(start, limit, delta) -> int:
    if delta == 0:
        runtime_error("range: delta is 0")
    if isinstance(start, int) and isinstance(delta, int):
        return max(-((start - limit) // delta), 0)  # exact ceil division
    return max(int(math.ceil((limit - start) / delta)), 0)


def _scalar(arr):
    v = np.asarray(arr).reshape(-1)[0]
    return int(v) if np.issubdtype(v.dtype, np.integer) else float(v)


def _range_infer(ctx: InferContext):
    dts = {t.dtype for t in ctx.types}
    if len(dts) > 1:
        ctx.fail(f"start, limit and delta must share one dtype, got {sorted(map(str, dts))}")
    for i, t in enumerate(ctx.types):
        if t.numel not in (None, 1):
            ctx.fail(f"input {i} must be a scalar, got {t}")
    dt = ctx.types[0].dtype
    vals = [ctx.const(i) for i in range(3)]
    if any(v is None for v in vals):
        return [TensorType(dt, (UNKNOWN,))]
    start, limit, delta = (_scalar(v) for v in vals)
    if delta == 0:
        ctx.fail("delta is 0")
    return [TensorType(dt, (_range_count(start, limit, delta),))]


def _range_ref(inputs, attrs):
    dt = inputs[0].dtype
    start, limit, delta = (_scalar(v) for v in inputs)
    n = _range_count(start, limit, delta)
    if isinstance(start, int):
        return start + np.arange(n, dtype=np.int64).astype(dt) * dt.type(delta)
    return (start + np.arange(n, dtype=np.float64) * delta).astype(dt)


register_op("range", ["start", "limit", "delta"], ["output"], onnx="Range",
            infer=_range_infer, reference=_range_ref,
            doc="start, start+delta, ... up to (not including) limit.")


# ---------------------------------------------------------------------------------------------
# trilu / cum_sum / eye_like
def _trilu_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.rank is not None and t.rank < 2:
        ctx.fail(f"input must have rank >= 2, got {t}")
    return [t]


def _trilu_ref(inputs, attrs):
    x = inputs[0]
    k = 0 if len(inputs) < 2 or inputs[1] is None else int(np.asarray(inputs[1]).reshape(-1)[0])
    return np.triu(x, k) if attrs.get("upper", 1) else np.tril(x, k)


register_op("trilu", ["input", "k?"], ["output"], onnx="Trilu", attrs={"upper": Attr("int", 1)},
            infer=_trilu_infer, reference=_trilu_ref,
            doc="Keeps the upper (or lower) triangle of the last two dims, from diagonal k.")


def _cum_sum_infer(ctx: InferContext):
    t = ctx.types[1]
    if t.numel not in (None, 1):
        ctx.fail(f"axis must be a scalar, got {t}")
    return [ctx.types[0]]


def _cum_sum_ref(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        runtime_error("cum_sum: input must have rank >= 1")
    axis = normalize_axis(int(np.asarray(inputs[1]).reshape(-1)[0]), x.ndim)
    reverse = attrs.get("reverse", 0)
    y = np.cumsum(np.flip(x, axis) if reverse else x, axis=axis, dtype=x.dtype)
    if attrs.get("exclusive", 0):  # shift by one: y[i] = sum of the elements before i
        head = np.zeros_like(np.take(y, [0], axis=axis))
        y = np.concatenate([head, np.take(y, np.arange(y.shape[axis] - 1), axis=axis)], axis=axis)
    return np.ascontiguousarray(np.flip(y, axis) if reverse else y)


register_op("cum_sum", ["x", "axis"], ["y"], onnx="CumSum",
            attrs={"exclusive": Attr("int", 0), "reverse": Attr("int", 0)},
            infer=_cum_sum_infer, reference=_cum_sum_ref,
            doc="Cumulative sum along an axis (optionally exclusive and/or reversed).")


def _eye_like_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.rank is not None and t.rank != 2:
        ctx.fail(f"input must be 2-D, got {t}")
    return [TensorType(ctx.attrs.get("dtype") or t.dtype, t.shape if t.shape is not None else (UNKNOWN,) * 2)]


def _eye_like_ref(inputs, attrs):
    x = inputs[0]
    dt = attrs["dtype"].np if attrs.get("dtype") is not None else x.dtype
    return np.eye(x.shape[0], x.shape[1], attrs.get("k", 0), dtype=dt)


register_op("eye_like", ["input"], ["output"], onnx="EyeLike",
            attrs={"dtype": Attr("dtype", None), "k": Attr("int", 0)},
            infer=_eye_like_infer, reference=_eye_like_ref,
            doc="Ones on diagonal k, zeros elsewhere, shaped like the 2-D input.")
