"""Reductions: Reduce* (sum, mean, max, min, prod, L1, L2, log-sum, log-sum-exp, sum-square),
ArgMax/ArgMin and TopK.

Reduce ops follow the latest ONNX form: `axes` is an optional int64 input. Empty or absent axes
reduce every axis, unless `noop_with_empty_axes` is set, in which case the reduction runs over
the empty set of axes (numpy `axis=()`): ReduceSumSquare then returns the square of its input,
ReduceLogSum its log, and so on. Reducing an empty set of values gives the identity of the
reduction (0 for sums, 1 for products, -inf / the dtype minimum for max, ...).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import dtypes
from ..errors import PdcError
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .bounded import BOUND_ATTR, length_dim, padded, with_length
from .common import const_ints, normalize_axis

_NUMERIC = tuple(d for d in dtypes.ALL if d is not dtypes.bool_)


# ---- axes handling ------------------------------------------------------------------------
def _infer_axes(ctx: InferContext, rank: int) -> Optional[tuple]:
    """The normalized reduced axes, () for a no-op, or None when they are not constant."""
    axes = const_ints(ctx, 1) if ctx.has_input(1) else []
    if axes is None:
        return None
    if not axes:
        return () if ctx.attrs.get("noop_with_empty_axes", 0) else tuple(range(rank))
    norm = [normalize_axis(a, rank, ctx) for a in axes]
    if len(set(norm)) != len(norm):
        ctx.fail(f"axes {axes} name an axis twice")
    return tuple(sorted(norm))


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def reduce_infer(allowed):
    def infer(ctx: InferContext):
        t = ctx.types[0]
        if t.dtype not in allowed:
            ctx.fail(f"input has dtype {t.dtype}, expected one of {', '.join(map(str, allowed))}")
        if ctx.has_input(1) and ctx.types[1].dtype not in (dtypes.int64, dtypes.int32):
            ctx.fail(f"axes must be int64, got {ctx.types[1].dtype}")
        keep = ctx.attrs.get("keepdims", 1)
        if t.shape is None:
            return [TensorType(t.dtype, None)]
        axes = _infer_axes(ctx, len(t.shape))
        if axes is not None:
            return [TensorType(t.dtype, _reduced_shape(t.shape, axes, keep))]
        # axes only known at run time
        if keep:
            return [TensorType(t.dtype, (UNKNOWN,) * len(t.shape))]
        ashape = ctx.types[1].shape
        if ashape is not None and len(ashape) == 1 and isinstance(ashape[0], int) and ashape[0] > 0:
            return [TensorType(t.dtype, (UNKNOWN,) * (len(t.shape) - ashape[0]))]
        return [TensorType(t.dtype, None)]
    return infer


def _run_axes(x: np.ndarray, axes: Optional[np.ndarray], noop: int) -> Optional[tuple]:
    """Axes for numpy: a tuple (possibly empty) or None (= all axes)."""
    if axes is None or axes.size == 0:
        return () if noop else None
    if x.ndim == 0:
        return None
    return tuple(int(a) % x.ndim for a in axes.reshape(-1))


def _work_dtype(x: np.ndarray):
    """Half-precision floats accumulate in float32."""
    if x.dtype in (np.float16, dtypes.bfloat16.np):
        return np.float32
    return x.dtype


def _reduction(fn):
    """Wraps fn(x, axis, keepdims) into a reference: axes handling and dtype round trip."""
    def reference(inputs, attrs):
        x = inputs[0]
        axes = _run_axes(x, inputs[1] if len(inputs) > 1 else None, attrs.get("noop_with_empty_axes", 0))
        keep = bool(attrs.get("keepdims", 1))
        out = fn(x.astype(_work_dtype(x), copy=False), axes, keep)
        return np.asarray(out).astype(x.dtype)
    return reference


def _extreme(x: np.ndarray, largest: bool):
    """The identity of max (largest) / min over x's dtype."""
    if x.dtype == np.bool_:
        return not largest
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return info.min if largest else info.max
    return -np.inf if largest else np.inf


def _sum(x, axis, keep):
    return np.sum(x, axis=axis, keepdims=keep, dtype=x.dtype)


def _mean(x, axis, keep):
    n = x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))
    if np.issubdtype(x.dtype, np.integer):
        s = np.sum(x, axis=axis, keepdims=keep, dtype=np.int64)
        return np.trunc(s / n) if n else np.zeros_like(s)  # integer mean truncates like C division
    with np.errstate(invalid="ignore", divide="ignore"):  # the mean of nothing is NaN
        return np.sum(x, axis=axis, keepdims=keep) / x.dtype.type(n)


def _max(x, axis, keep):
    return np.max(x, axis=axis, keepdims=keep, initial=_extreme(x, True))


def _min(x, axis, keep):
    return np.min(x, axis=axis, keepdims=keep, initial=_extreme(x, False))


def _prod(x, axis, keep):
    return np.prod(x, axis=axis, keepdims=keep, dtype=x.dtype)


def _l1(x, axis, keep):
    return np.sum(np.abs(x), axis=axis, keepdims=keep, dtype=x.dtype)


def _l2(x, axis, keep):
    s = np.sum(np.square(x), axis=axis, keepdims=keep, dtype=x.dtype)
    return np.sqrt(s.astype(np.float64) if np.issubdtype(x.dtype, np.integer) else s)


def _log_sum(x, axis, keep):
    s = np.sum(x, axis=axis, keepdims=keep, dtype=x.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(s.astype(np.float64) if np.issubdtype(x.dtype, np.integer) else s)


def _log_sum_exp(x, axis, keep):
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64)
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)  # all -inf (or empty): no shift
    with np.errstate(divide="ignore", over="ignore"):
        s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    out = s + m
    return out if keep else np.squeeze(out, axis=axis)


def _sum_square(x, axis, keep):
    return np.sum(np.square(x), axis=axis, keepdims=keep, dtype=x.dtype)


_REDUCE_ATTRS = {"keepdims": Attr("int", 1), "noop_with_empty_axes": Attr("int", 0)}

# (IR name, ONNX name, numpy implementation, allowed dtypes)
REDUCE_OPS = [
    ("reduce_sum", "ReduceSum", _sum, _NUMERIC),
    ("reduce_mean", "ReduceMean", _mean, _NUMERIC),
    ("reduce_max", "ReduceMax", _max, dtypes.ALL),
    ("reduce_min", "ReduceMin", _min, dtypes.ALL),
    ("reduce_prod", "ReduceProd", _prod, _NUMERIC),
    ("reduce_l1", "ReduceL1", _l1, _NUMERIC),
    ("reduce_l2", "ReduceL2", _l2, _NUMERIC),
    ("reduce_log_sum", "ReduceLogSum", _log_sum, _NUMERIC),
    ("reduce_log_sum_exp", "ReduceLogSumExp", _log_sum_exp, _NUMERIC),
    ("reduce_sum_square", "ReduceSumSquare", _sum_square, _NUMERIC),
]

for _name, _onnx, _fn, _allowed in REDUCE_OPS:
    register_op(_name, ["data", "axes?"], ["reduced"], onnx=_onnx, attrs=dict(_REDUCE_ATTRS),
                infer=reduce_infer(_allowed), reference=_reduction(_fn),
                doc=f"ONNX {_onnx}: reduces `data` over `axes` (all axes when absent or empty).")


# ---- ArgMax / ArgMin ------------------------------------------------------------------------
def _arg_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.dtype is dtypes.bool_:
        ctx.fail("input must be numeric, got bool")
    if t.shape is None:
        return [TensorType(dtypes.int64, None)]
    axis = normalize_axis(ctx.attrs.get("axis", 0), max(len(t.shape), 1), ctx)
    if not t.shape:
        ctx.fail("input must have rank >= 1")
    if t.shape[axis] == 0:
        ctx.fail(f"cannot take an arg-reduction over the empty axis {axis}")
    return [TensorType(dtypes.int64, _reduced_shape(t.shape, (axis,), ctx.attrs.get("keepdims", 1)))]


def _arg_reference(pick):
    def reference(inputs, attrs):
        x = inputs[0]
        axis = attrs.get("axis", 0) % x.ndim
        if x.dtype == dtypes.bfloat16.np:
            x = x.astype(np.float32)
        if attrs.get("select_last_index", 0):
            # search the flipped axis, then map the position back
            idx = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis)
        else:
            idx = pick(x, axis=axis)
        if attrs.get("keepdims", 1):
            idx = np.expand_dims(idx, axis)
        return np.asarray(idx, np.int64)
    return reference


_ARG_ATTRS = {"axis": Attr("int", 0), "keepdims": Attr("int", 1), "select_last_index": Attr("int", 0)}
register_op("arg_max", ["data"], ["reduced"], onnx="ArgMax", attrs=dict(_ARG_ATTRS),
            infer=_arg_infer, reference=_arg_reference(np.argmax),
            doc="ONNX ArgMax: int64 index of the largest element along `axis` (first, or last with select_last_index).")
register_op("arg_min", ["data"], ["reduced"], onnx="ArgMin", attrs=dict(_ARG_ATTRS),
            infer=_arg_infer, reference=_arg_reference(np.argmin),
            doc="ONNX ArgMin: int64 index of the smallest element along `axis` (first, or last with select_last_index).")


# ---- TopK -----------------------------------------------------------------------------------
def _topk_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.dtype is dtypes.bool_:
        ctx.fail("input must be numeric, got bool")
    if ctx.types[1].dtype is not dtypes.int64:
        ctx.fail(f"K must be int64, got {ctx.types[1].dtype}")
    if t.shape is None:
        return [TensorType(t.dtype, None), TensorType(dtypes.int64, None)]
    if not t.shape:
        ctx.fail("input must have rank >= 1")
    axis = normalize_axis(ctx.attrs.get("axis", -1), len(t.shape), ctx)
    k = const_ints(ctx, 1)
    if k is not None:
        if len(k) != 1:
            ctx.fail(f"K must hold one value, got {k}")
        k = k[0]
        if k < 0:
            ctx.fail(f"K must be non-negative, got {k}")
        if isinstance(t.shape[axis], int) and k > t.shape[axis]:
            ctx.fail(f"K={k} exceeds the size {t.shape[axis]} of axis {axis}")
    shape = list(t.shape)
    shape[axis] = length_dim(ctx, UNKNOWN) if k is None else k
    return with_length(ctx, [TensorType(t.dtype, shape), TensorType(dtypes.int64, shape)])


def _topk_reference(inputs, attrs):
    x, k = inputs[0], int(inputs[1].reshape(-1)[0])
    axis = attrs.get("axis", -1) % x.ndim
    if k > x.shape[axis] or k < 0:
        raise PdcError(f"top_k: K={k} is out of range for axis of size {x.shape[axis]}")
    key = x.astype(np.float32) if x.dtype == dtypes.bfloat16.np else x
    if attrs.get("largest", 1):
        # A stable ascending sort of the flipped axis, reversed, is descending with ties in
        # ascending index order (the spec's tiebreak); works for unsigned types where -x does not.
        n = x.shape[axis]
        order = np.flip(n - 1 - np.argsort(np.flip(key, axis), axis=axis, kind="stable"), axis)
    else:
        order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    # `sorted=0` leaves the order unspecified; sorted output is a valid choice.
    return padded([np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)], attrs, [axis, axis])


register_op("top_k", ["X", "K"], ["Values", "Indices", "length?"], onnx="TopK",
            attrs={"axis": Attr("int", -1), "largest": Attr("int", 1), "sorted": Attr("int", 1), **BOUND_ATTR},
            infer=_topk_infer, reference=_topk_reference,
            doc="ONNX TopK: the K largest (or smallest) elements along `axis` and their int64 indices.")
