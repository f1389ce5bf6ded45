"""Tensor ops added in opsets 24-26: bit_cast (BitCast), cum_prod (CumProd) and tensor_scatter
(TensorScatter, the KV-cache update).

- bit_cast reinterprets the bytes of each element (little endian) as another type of the same
  width; the shape is unchanged.
- cum_prod follows cum_sum: the product along a run-time axis, inclusive by default; `exclusive`
  shifts by one (the first element becomes 1), `reverse` runs from the end. Products are rounded
  to the element type after every step and integers wrap, as NumPy's cumprod does.
- tensor_scatter copies past_cache and writes `update` into it along `axis` (not the batch axis)
  at write_indices[b] (0 when absent) for each batch item b; mode=circular wraps the position
  modulo max_sequence_length, mode=linear requires it to stay in range.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import TensorType
from .common import normalize_axis
from .tensor import runtime_error


# ---- bit_cast ------------------------------------------------------------------------------------
def _bit_cast_infer(ctx: InferContext):
    t, to = ctx.types[0], ctx.attrs["to"]
    if t.dtype.itemsize != to.itemsize:
        ctx.fail(f"cannot bit-cast {t.dtype} ({t.dtype.itemsize * 8} bits) to {to} ({to.itemsize * 8} bits): "
                 f"the widths must match")
    return [TensorType(to, t.shape)]


def _bit_cast_ref(inputs, attrs):
    x = np.array(inputs[0], order="C")  # a contiguous copy that keeps a 0-d shape
    return x.view(attrs["to"].np)


register_op("bit_cast", ["input"], ["output"], onnx="BitCast", attrs={"to": Attr("dtype", REQUIRED)},
            infer=_bit_cast_infer, reference=_bit_cast_ref,
            doc="Reinterprets each element's bits as dtype `to` (same width).")


# ---- cum_prod ------------------------------------------------------------------------------------
_CUM_PROD_TYPES = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64,
                   dtypes.int32, dtypes.int64, dtypes.uint32, dtypes.uint64)


def _cum_prod_infer(ctx: InferContext):
    x, axis = ctx.types[0], ctx.types[1]
    if x.dtype not in _CUM_PROD_TYPES:
        ctx.fail(f"x has dtype {x.dtype}; CumProd takes {', '.join(map(str, _CUM_PROD_TYPES))}")
    if axis.dtype not in (dtypes.int32, dtypes.int64):
        ctx.fail(f"axis must be int32 or int64, got {axis.dtype}")
    if axis.numel not in (None, 1):
        ctx.fail(f"axis must be a scalar, got {axis}")
    if x.rank == 0:
        ctx.fail("x must have rank >= 1")
    data = ctx.const(1)
    if data is not None and x.rank is not None:
        normalize_axis(int(data.reshape(-1)[0]), x.rank, ctx)
    for k in ("exclusive", "reverse"):
        if ctx.attrs.get(k, 0) not in (0, 1):
            ctx.fail(f"attribute '{k}' must be 0 or 1, got {ctx.attrs[k]}")
    return [x]


def _cum_prod_ref(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        runtime_error("cum_prod: input must have rank >= 1")
    try:
        axis = normalize_axis(int(np.asarray(inputs[1]).reshape(-1)[0]), x.ndim)
    except ValueError as e:
        runtime_error(f"cum_prod: {e}")
    reverse = attrs.get("reverse", 0)
    src = np.flip(x, axis) if reverse else x
    if attrs.get("exclusive", 0):  # y[i] = product of the elements before i
        ones = np.ones_like(np.take(src, [0], axis=axis))
        src = np.concatenate([ones, np.take(src, np.arange(src.shape[axis] - 1), axis=axis)], axis=axis)
    with np.errstate(over="ignore"):
        y = np.cumprod(src, axis=axis, dtype=x.dtype)
    return np.ascontiguousarray(np.flip(y, axis) if reverse else y)


register_op("cum_prod", ["x", "axis"], ["y"], onnx="CumProd",
            attrs={"exclusive": Attr("int", 0), "reverse": Attr("int", 0)},
            infer=_cum_prod_infer, reference=_cum_prod_ref,
            doc="Cumulative product along an axis (optionally exclusive and/or reversed).")


# ---- tensor_scatter ------------------------------------------------------------------------------
TENSOR_SCATTER_MODES = ("linear", "circular")


def tensor_scatter_axis(attrs, rank: int, ctx=None) -> int:
    """The sequence axis in [1, rank)."""
    axis = normalize_axis(attrs.get("axis", -2), rank, ctx)
    if axis == 0:
        msg = f"axis {attrs.get('axis', -2)} is the batch axis; TensorScatter's sequence axis cannot be 0"
        if ctx is not None:
            ctx.fail(msg)
        runtime_error(msg)
    return axis


def _tensor_scatter_infer(ctx: InferContext):
    past, upd = ctx.types[0], ctx.types[1]
    mode = ctx.attrs.get("mode", "linear")
    if mode not in TENSOR_SCATTER_MODES:
        ctx.fail(f"mode must be 'linear' or 'circular', got '{mode}'")
    if past.dtype != upd.dtype:
        ctx.fail(f"past_cache ({past.dtype}) and update ({upd.dtype}) must share one dtype")
    if ctx.has_input(2):
        wi = ctx.types[2]
        if wi.dtype != dtypes.int64:
            ctx.fail(f"write_indices must be int64, got {wi.dtype}")
        if wi.rank not in (None, 1):
            ctx.fail(f"write_indices must be 1-D (batch_size,), got {wi}")
    if past.shape is None or upd.shape is None:
        return [past]
    if len(past.shape) != len(upd.shape):
        ctx.fail(f"past_cache {past} and update {upd} must have the same rank")
    if len(past.shape) < 2:
        ctx.fail(f"past_cache must have rank >= 2, got {past}")
    axis = tensor_scatter_axis(ctx.attrs, len(past.shape), ctx)
    for d, (p, u) in enumerate(zip(past.shape, upd.shape)):
        if not (isinstance(p, int) and isinstance(u, int)):
            continue
        if d != axis and p != u:
            ctx.fail(f"update {upd} differs from past_cache {past} in dim {d} (only the sequence axis {axis} may)")
        if d == axis and u > p:
            ctx.fail(f"update {upd} is longer than past_cache {past} along the sequence axis {axis}")
    if ctx.has_input(2):
        wi = ctx.types[2]
        if wi.shape is not None and isinstance(wi.shape[0], int) and isinstance(past.shape[0], int) \
                and wi.shape[0] != past.shape[0]:
            ctx.fail(f"write_indices {wi} must have one index per batch item ({past.shape[0]})")
    return [past]


def _tensor_scatter_ref(inputs, attrs):
    past, upd, wi = inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None
    axis = tensor_scatter_axis(attrs, past.ndim)
    batch, max_len, seq = past.shape[0], past.shape[axis], upd.shape[axis]
    wi = np.zeros(batch, np.int64) if wi is None else np.asarray(wi).reshape(-1)
    if wi.size != batch:
        runtime_error(f"tensor_scatter: write_indices has {wi.size} values for batch size {batch}")
    circular = attrs.get("mode", "linear") == "circular"
    out = past.copy()
    for b in range(batch):
        pos = int(wi[b]) + np.arange(seq)
        if circular:
            pos = np.mod(pos, max_len) if max_len else pos
        elif seq and (wi[b] < 0 or wi[b] + seq > max_len):
            runtime_error(f"tensor_scatter: write index {int(wi[b])} + sequence length {seq} is outside "
                          f"[0, {max_len}] (mode=linear)")
        # batch item b, every index of dims 1..axis-1, the chosen positions along axis
        dst = np.moveaxis(out[b], axis - 1, 0)
        dst[pos] = np.moveaxis(upd[b], axis - 1, 0)
    return out


register_op("tensor_scatter", ["past_cache", "update", "write_indices?"], ["present_cache"], onnx="TensorScatter",
            attrs={"mode": Attr("string", "linear"), "axis": Attr("int", -2)},
            infer=_tensor_scatter_infer, reference=_tensor_scatter_ref,
            doc="past_cache with `update` written along the sequence axis at each batch item's write index.")
