"""Index-driven data movement: gather, gather_elements, gather_nd, scatter_elements, scatter_nd,
one_hot, non_zero, compress, reverse_sequence, unique.

Negative indices count from the end of their axis; indices out of range are a runtime error.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .bounded import BOUND_ATTR, length_dim, padded, with_length
from .common import normalize_axis, require_dtype
from .tensor import check_failed, ints_of, merge_dims, runtime_error

INDEX_DTYPES = (dtypes.int32, dtypes.int64)
REDUCTIONS = ("none", "add", "mul", "max", "min")


def _check_indices(idx: np.ndarray, dim: int, what: str) -> np.ndarray:
    """Indices mapped into [0, dim); out-of-range ones are an error."""
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        runtime_error(f"{what}: index out of range [{-dim}, {dim - 1}]")
    return np.where(idx < 0, idx + dim, idx)


# ---------------------------------------------------------------------------------------------
# gather
def _gather_infer(ctx: InferContext):
    data, idx = ctx.types
    require_dtype(ctx, 1, INDEX_DTYPES)
    if data.shape is None or idx.shape is None:
        return [TensorType(data.dtype, None)]
    if data.rank == 0:
        ctx.fail("data must have rank >= 1")
    axis = normalize_axis(ctx.attrs.get("axis", 0), data.rank, ctx)
    return [data.with_shape(data.shape[:axis] + idx.shape + data.shape[axis + 1:])]


def _gather_ref(inputs, attrs):
    data, idx = inputs
    axis = normalize_axis(attrs.get("axis", 0), data.ndim)
    return np.take(data, _check_indices(idx, data.shape[axis], "gather"), axis=axis)


register_op("gather", ["data", "indices"], ["output"], onnx="Gather", attrs={"axis": Attr("int", 0)},
            infer=_gather_infer, reference=_gather_ref,
            doc="Takes slices of data along an axis at the given indices.")


def _elements_infer(ctx: InferContext):
    data, idx = ctx.types[0], ctx.types[1]
    require_dtype(ctx, 1, INDEX_DTYPES)
    if data.rank is not None and idx.rank is not None and data.rank != idx.rank:
        ctx.fail(f"data {data} and indices {idx} must have the same rank")
    rank = data.rank if data.rank is not None else idx.rank
    if rank is not None:
        normalize_axis(ctx.attrs.get("axis", 0), rank, ctx)
    return rank


def _gather_elements_infer(ctx: InferContext):
    _elements_infer(ctx)
    return [TensorType(ctx.types[0].dtype, ctx.types[1].shape)]


def _element_index(data_shape, idx: np.ndarray, axis: int, what: str):
    """Full coordinate arrays for *_elements ops: idx replaces the coordinate along `axis`."""
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = _check_indices(idx, data_shape[axis], what)
    return tuple(grid)


def _gather_elements_ref(inputs, attrs):
    data, idx = inputs
    axis = normalize_axis(attrs.get("axis", 0), data.ndim)
    if idx.ndim != data.ndim:
        runtime_error("gather_elements: data and indices must have the same rank")
    return data[_element_index(data.shape, idx, axis, "gather_elements")]


register_op("gather_elements", ["data", "indices"], ["output"], onnx="GatherElements",
            attrs={"axis": Attr("int", 0)}, infer=_gather_elements_infer, reference=_gather_elements_ref,
            doc="out[i][j][k] = data[idx[i][j][k]][j][k] (for axis 0): an element-wise gather.")


def _gather_nd_infer(ctx: InferContext):
    data, idx = ctx.types
    require_dtype(ctx, 1, (dtypes.int64,))
    b = ctx.attrs.get("batch_dims", 0)
    if data.shape is None or idx.shape is None:
        return [TensorType(data.dtype, None)]
    if idx.rank < 1 or b >= min(data.rank, idx.rank):
        ctx.fail(f"batch_dims={b} must be smaller than the ranks of data {data} and indices {idx}")
    k = idx.shape[-1]
    if not isinstance(k, int):
        return [TensorType(data.dtype, None)]
    if k > data.rank - b:
        ctx.fail(f"indices' last dim ({k}) exceeds the rank of data {data} minus batch_dims")
    batch = [merge_dims([d, i], ctx, "batch dims of data and indices") for d, i in zip(data.shape[:b], idx.shape[:b])]
    return [data.with_shape(tuple(batch) + idx.shape[b:-1] + data.shape[b + k:])]


def _gather_nd_ref(inputs, attrs):
    data, idx = inputs
    b = attrs.get("batch_dims", 0)
    k = idx.shape[-1]
    batch = data.shape[:b]
    if idx.shape[:b] != batch:
        runtime_error("gather_nd: batch dims of data and indices differ")
    out_shape = batch + idx.shape[b:-1] + data.shape[b + k:]
    nb = int(np.prod(batch, dtype=np.int64))
    d = data.reshape((nb,) + data.shape[b:])
    ii = idx.reshape((nb,) + idx.shape[b:]).astype(np.int64)
    ii = np.stack([_check_indices(ii[..., j], data.shape[b + j], "gather_nd") for j in range(k)], -1) \
        if k else ii
    out = np.empty((nb,) + out_shape[b:], data.dtype)
    for i in range(nb):
        out[i] = d[i][tuple(np.moveaxis(ii[i], -1, 0))]
    return out.reshape(out_shape)


register_op("gather_nd", ["data", "indices"], ["output"], onnx="GatherND", attrs={"batch_dims": Attr("int", 0)},
            infer=_gather_nd_infer, reference=_gather_nd_ref,
            doc="Gathers slices of data addressed by the last dim of indices (after batch_dims shared dims).")


# ---------------------------------------------------------------------------------------------
# scatter
def _reduction_verify(ctx: InferContext):
    r = ctx.attrs.get("reduction", "none")
    if r not in REDUCTIONS:
        ctx.unsupported(f"reduction '{r}' is not supported (expected one of {', '.join(REDUCTIONS)})")


def _scatter_into(out: np.ndarray, index, updates: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        out[index] = updates  # duplicates: the last update wins
    else:
        ufunc = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction]
        ufunc.at(out, index, updates)
    return out


def _scatter_elements_infer(ctx: InferContext):
    _reduction_verify(ctx)
    _elements_infer(ctx)
    data, idx, upd = ctx.types
    if upd.dtype != data.dtype:
        ctx.fail(f"updates ({upd.dtype}) and data ({data.dtype}) must share one dtype")
    if idx.shape is not None and upd.shape is not None and len(idx.shape) != len(upd.shape):
        ctx.fail(f"indices {idx} and updates {upd} must have the same shape")
    return [data]


def _scatter_elements_ref(inputs, attrs):
    data, idx, upd = inputs
    axis = normalize_axis(attrs.get("axis", 0), data.ndim)
    if idx.shape != upd.shape or idx.ndim != data.ndim:
        runtime_error("scatter_elements: indices and updates must have one shape, of the rank of data")
    index = _element_index(data.shape, idx, axis, "scatter_elements")
    return _scatter_into(data.copy(), index, upd, attrs.get("reduction", "none"))


register_op("scatter_elements", ["data", "indices", "updates"], ["output"], onnx="ScatterElements",
            attrs={"axis": Attr("int", 0), "reduction": Attr("string", "none")}, verify=_reduction_verify,
            infer=_scatter_elements_infer, reference=_scatter_elements_ref,
            doc="Writes (or reduces) updates into a copy of data at per-element indices along an axis.")


def _scatter_nd_infer(ctx: InferContext):
    _reduction_verify(ctx)
    require_dtype(ctx, 1, (dtypes.int64,))
    data, idx, upd = ctx.types
    if upd.dtype != data.dtype:
        ctx.fail(f"updates ({upd.dtype}) and data ({data.dtype}) must share one dtype")
    if data.shape is not None and idx.shape is not None and upd.shape is not None and idx.rank >= 1:
        k = idx.shape[-1]
        if isinstance(k, int):
            if k > data.rank:
                ctx.fail(f"indices' last dim ({k}) exceeds the rank of data {data}")
            want = idx.shape[:-1] + data.shape[k:]
            if len(want) != upd.rank:
                ctx.fail(f"updates {upd} must have shape {list(want)}")
    return [data]


def _scatter_nd_ref(inputs, attrs):
    data, idx, upd = inputs
    k = idx.shape[-1]
    if upd.shape != idx.shape[:-1] + data.shape[k:]:
        runtime_error(f"scatter_nd: updates have shape {list(upd.shape)}, "
                      f"expected {list(idx.shape[:-1] + data.shape[k:])}")
    index = tuple(_check_indices(idx[..., j], data.shape[j], "scatter_nd") for j in range(k))
    return _scatter_into(data.copy(), index, upd, attrs.get("reduction", "none"))


register_op("scatter_nd", ["data", "indices", "updates"], ["output"], onnx="ScatterND",
            attrs={"reduction": Attr("string", "none")}, verify=_reduction_verify,
            infer=_scatter_nd_infer, reference=_scatter_nd_ref,
            doc="Writes (or reduces) slices of updates into a copy of data at the addressed positions.")


# ---------------------------------------------------------------------------------------------
# one_hot / non_zero / compress / reverse_sequence
def _one_hot_infer(ctx: InferContext):
    idx, _, values = ctx.types
    depth = ctx.const(1)
    if depth is not None and depth.size != 1:
        ctx.fail(f"depth must hold one value, got shape {list(depth.shape)}")
    if values.shape is not None and values.shape not in ((2,), (UNKNOWN,)):
        ctx.fail(f"values must be [off_value, on_value], got {values}")
    if idx.shape is None:
        return [TensorType(values.dtype, None)]
    axis = normalize_axis(ctx.attrs.get("axis", -1), idx.rank + 1, ctx)
    d = UNKNOWN if depth is None else int(depth.reshape(-1)[0])
    return [TensorType(values.dtype, idx.shape[:axis] + (d,) + idx.shape[axis:])]


def _one_hot_ref(inputs, attrs):
    idx, depth, values = inputs
    depth = int(depth.reshape(-1)[0])
    if depth < 1:
        runtime_error(f"one_hot: depth {depth} must be positive")
    axis = normalize_axis(attrs.get("axis", -1), idx.ndim + 1)
    idx = idx.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    hot = np.expand_dims(idx, axis) == np.arange(depth).reshape((-1,) + (1,) * (idx.ndim - axis))
    off, on = values.reshape(-1)
    return np.where(hot, on, off).astype(values.dtype)


register_op("one_hot", ["indices", "depth", "values"], ["output"], onnx="OneHot", attrs={"axis": Attr("int", -1)},
            infer=_one_hot_infer, reference=_one_hot_ref,
            doc="on_value where the new axis' position equals the index, off_value elsewhere "
                "(indices out of range give an all-off row).")


def _non_zero_infer(ctx: InferContext):
    t = ctx.types[0]
    x = ctx.const(0)
    if x is not None and ctx.attrs.get("bound") is None:
        return [TensorType(dtypes.int64, (max(x.ndim, 1), int(np.count_nonzero(x))))]
    return with_length(ctx, [TensorType(dtypes.int64, (UNKNOWN if t.rank is None else max(t.rank, 1),
                                                       length_dim(ctx, UNKNOWN)))])


def _non_zero_ref(inputs, attrs):
    x = inputs[0]
    y = np.array(np.nonzero(np.atleast_1d(x)), np.int64).reshape(max(x.ndim, 1), -1)
    return padded([y], attrs, [1])


register_op("non_zero", ["X"], ["Y", "length?"], onnx="NonZero", attrs=BOUND_ATTR, infer=_non_zero_infer,
            reference=_non_zero_ref,
            doc="The coordinates of the non-zero elements, one column each (a scalar counts as 1-D).")


def _compress_infer(ctx: InferContext):
    t, cond = ctx.types
    require_dtype(ctx, 1, (dtypes.bool_,))
    if cond.rank is not None and cond.rank != 1:
        ctx.fail(f"condition must be 1-D, got {cond}")
    c = ctx.const(1)
    n = UNKNOWN if c is None else int(np.count_nonzero(c))
    axis = ctx.attrs.get("axis")
    if axis is None:
        return [TensorType(t.dtype, (n,))]
    if t.shape is None:
        return [t]
    axis = normalize_axis(axis, t.rank, ctx)
    if c is not None and isinstance(t.shape[axis], int) and c.size > t.shape[axis]:
        ctx.fail(f"condition has {c.size} entries, axis {axis} only {t.shape[axis]}")
    return [t.with_shape(t.shape[:axis] + (n,) + t.shape[axis + 1:])]


def _compress_ref(inputs, attrs):
    x, cond = inputs
    axis = attrs.get("axis")
    axis = None if axis is None else normalize_axis(axis, x.ndim)
    if cond.size > (x.size if axis is None else x.shape[axis]):
        runtime_error("compress: condition is longer than the input")
    return np.compress(cond.reshape(-1), x, axis=axis)


register_op("compress", ["input", "condition"], ["output"], onnx="Compress", attrs={"axis": Attr("int", None)},
            infer=_compress_infer, reference=_compress_ref,
            doc="Keeps the slices (or, without axis, the flattened elements) whose condition is true.")


def _reverse_sequence_axes(attrs, rank, ctx=None):
    b = normalize_axis(attrs.get("batch_axis", 1), rank, ctx)
    t = normalize_axis(attrs.get("time_axis", 0), rank, ctx)
    if {b, t} != {0, 1}:
        check_failed(ctx, f"batch_axis and time_axis must be 0 and 1 (in either order), got {b} and {t}")
    return b, t


def _reverse_sequence_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.rank is not None:
        if t.rank < 2:
            ctx.fail(f"input must have rank >= 2, got {t}")
        _reverse_sequence_axes(ctx.attrs, t.rank, ctx)
    return [t]


def _reverse_sequence_ref(inputs, attrs):
    x, lens = inputs
    b, t = _reverse_sequence_axes(attrs, x.ndim)
    lens = ints_of(lens)
    if len(lens) != x.shape[b] or any(not 0 <= n <= x.shape[t] for n in lens):
        runtime_error("reverse_sequence: sequence_lens must give one length in [0, time] per batch entry")
    out = x.copy()
    for i, n in enumerate(lens):
        src = [slice(None)] * x.ndim
        src[b], src[t] = i, slice(n - 1, None, -1) if n else slice(0, 0)
        dst = list(src)
        dst[t] = slice(0, n)
        out[tuple(dst)] = x[tuple(src)]
    return out


register_op("reverse_sequence", ["input", "sequence_lens"], ["Y"], onnx="ReverseSequence",
            attrs={"batch_axis": Attr("int", 1), "time_axis": Attr("int", 0)},
            infer=_reverse_sequence_infer, reference=_reverse_sequence_ref,
            doc="Reverses the first sequence_lens[i] time steps of each batch entry.")


# ---------------------------------------------------------------------------------------------
# unique
def _unique_infer(ctx: InferContext):
    t = ctx.types[0]
    axis = ctx.attrs.get("axis")
    n = length_dim(ctx, UNKNOWN)
    if axis is None:
        y = TensorType(t.dtype, (n,))
        n_in = t.numel if t.shape is not None else None
    elif t.shape is None:
        y, n_in = TensorType(t.dtype, None), None
    else:
        axis = normalize_axis(axis, t.rank, ctx)
        y = t.with_shape(t.shape[:axis] + (n,) + t.shape[axis + 1:])
        n_in = t.shape[axis]
    i64 = TensorType(dtypes.int64, (n,))
    inverse = TensorType(dtypes.int64, (UNKNOWN if n_in is None else n_in,))
    return with_length(ctx, [y, i64, inverse, i64])


def _unique_ref(inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis")
    if axis is not None:
        axis = normalize_axis(axis, x.ndim)
    y, first, inverse, counts = np.unique(x if axis is not None else x.reshape(-1), return_index=True,
                                          return_inverse=True, return_counts=True, axis=axis)
    inverse = inverse.reshape(-1)
    if not attrs.get("sorted", 1):  # order by first occurrence instead
        order = np.argsort(first, kind="stable")
        y = np.take(y, order, axis=0 if axis is None else axis)
        first, counts = first[order], counts[order]
        inverse = np.argsort(order)[inverse]
    outs = [y.astype(x.dtype), first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)]
    return padded(outs, attrs, [0 if axis is None else axis, 0, None, 0])


register_op("unique", ["X"], ["Y", "indices?", "inverse_indices?", "counts?", "length?"], onnx="Unique",
            attrs={"axis": Attr("int", None), "sorted": Attr("int", 1), **BOUND_ATTR},
            infer=_unique_infer, reference=_unique_ref,
            doc="The distinct elements (or slices along axis), sorted or in order of first occurrence, with "
                "their first indices, the inverse mapping and their counts.")
