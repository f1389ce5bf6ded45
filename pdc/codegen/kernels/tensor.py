"""Data-movement and shape kernels: transpose, concat, split, slice, expand, tile, pad,
center_crop_pad; and the ones that make values: shape, size, constant_of_shape, range, trilu,
eye_like.

Every movement is a static loop nest from `_movement` (strided copies, index tables), built as
kernel IR (pdc/codegen/kir) like the rest of this module's kernels. Shape-like
operands (Slice's starts, Pad's pads, Tile's repeats...) must be compile-time constants; values
(Pad's constant_value, Trilu's k, Range's start and delta) are read at run time.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ir.ops.common import normalize_axis
from ...ir.ops.tensor_fill import _shape_range
from ...ir.ops.tensor import _pad_widths, _perm, _slice_params, slice_bounds
from ...ir import dtypes as D
from ...ir.symbolic import is_runtime
from .. import kir
from ..context import KernelContext, broadcast_strides, numel, strides
from . import kernel
from ._kir import io, prints_kir, render
from ._movement import check_axis_table, copy_nest, fill, gather_axes, table_ir
from .loops import PAR


def const_ints(ctx: KernelContext, i: int, what: str) -> Optional[list[int]]:
    """The values of constant input i (None when the optional input is absent); fails when not constant."""
    if not ctx.has_input(i):
        return None
    data = ctx.const(i)
    if data is None:
        ctx.fail(f"{what} (input {i}) must be a compile-time constant")
    return [int(v) for v in np.asarray(data).reshape(-1)]


def c_value(dt, value) -> kir.Expr:
    """`value` as a literal of dt (half precision rounded from float, like KernelContext.store)."""
    value = np.asarray(value).reshape(-1)[0]
    if dt.is_float:
        return kir.cast(dt, kir.lit(float(value), D.float32 if dt.short in ("f16", "bf16") else dt))
    if dt.short == "bool":
        return kir.as_expr(1 if value else 0)
    return kir.cast(dt, kir.as_expr(int(value)))


def _is_zero_bits(value: Optional[np.ndarray]) -> bool:
    return value is not None and not np.asarray(value).reshape(-1)[:1].tobytes().strip(b"\0")


# ---- transpose / concat / split --------------------------------------------------------------
@kernel("transpose")
@prints_kir
def transpose(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    perm = _perm(ctx.attrs, len(x.shape))
    ist, ost = strides(x.shape), strides(y.shape)
    ins, outs = io(ctx)
    return render(ctx, copy_nest(ctx, [(y.shape[d], ist[p], ost[d]) for d, p in enumerate(perm)], ins[0], outs[0]))


@kernel("concat")
@prints_kir
def concat(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    axis = normalize_axis(ctx.attrs["axis"], len(y.shape))
    ost = strides(y.shape)
    ins, outs = io(ctx)
    parts, at = [], 0
    for k, t in enumerate(ctx.inputs):
        ist = strides(t.shape)
        parts.append(kir.block(copy_nest(ctx, [(n, ist[d], ost[d]) for d, n in enumerate(t.shape)], ins[k], outs[0],
                                         0, at * ost[axis]), scoped=True))
        at += t.shape[axis]
    return render(ctx, parts)


@kernel("split")
@prints_kir
def split(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(x.shape))
    ist = strides(x.shape)
    ins, outs = io(ctx)
    parts, at = [], 0
    for k, t in enumerate(ctx.outputs):
        ost = strides(t.shape)
        parts.append(kir.block(copy_nest(ctx, [(n, ist[d], ost[d]) for d, n in enumerate(t.shape)], ins[0], outs[k],
                                         at * ist[axis], 0), scoped=True))
        at += t.shape[axis]
    if at != x.shape[axis]:
        ctx.fail(f"the outputs' sizes along axis {axis} add up to {at}, not {x.shape[axis]}")
    return render(ctx, parts)


# ---- slice / expand / tile -----------------------------------------------------------------
@kernel("slice")
@prints_kir
def slice_(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    starts, ends = const_ints(ctx, 1, "starts"), const_ints(ctx, 2, "ends")
    axes, steps = const_ints(ctx, 3, "axes"), const_ints(ctx, 4, "steps")
    ist, ost = strides(x.shape), strides(y.shape)
    dims = [[n, ist[d], ost[d]] for d, n in enumerate(x.shape)]
    base = 0
    for axis, start, end, step in _slice_params(len(x.shape), starts, ends, axes, steps):
        start, _, length = slice_bounds(x.shape[axis], start, end, step)
        if length:
            base += start * ist[axis]
        dims[axis] = [length, step * ist[axis], ost[axis]]
    if [d[0] for d in dims] != list(y.shape):
        ctx.fail(f"slice of {list(x.shape)} gives {[d[0] for d in dims]}, the output is {list(y.shape)}")
    ins, outs = io(ctx)
    return render(ctx, copy_nest(ctx, [tuple(d) for d in dims], ins[0], outs[0], src_base=base))


@kernel("expand")
@prints_kir
def expand(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    bst, ost = broadcast_strides(x.shape, y.shape), strides(y.shape)
    ins, outs = io(ctx)
    return render(ctx, copy_nest(ctx, [(n, bst[d], ost[d]) for d, n in enumerate(y.shape)], ins[0], outs[0]))


@kernel("tile")
@prints_kir
def tile(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    reps = [y.shape[d] // x.shape[d] if x.shape[d] else 0 for d in range(len(x.shape))]
    ist, ost = strides(x.shape), strides(y.shape)
    dims = []
    for d, (n, r) in enumerate(zip(x.shape, reps)):  # output axis d seen as (repeat, index)
        dims += [(r, 0, n * ost[d]), (n, ist[d], ost[d])]
    ins, outs = io(ctx)
    return render(ctx, copy_nest(ctx, dims, ins[0], outs[0]))


# ---- pad / center_crop_pad -----------------------------------------------------------------
def _pad_source(mode: str, n: int, b: int, out_len: int) -> np.ndarray:
    """The source index of every output index along one axis (-1: the constant)."""
    j = np.arange(out_len) - b
    if mode == "constant":
        return np.where((j >= 0) & (j < n), j, -1)
    if mode == "edge":
        return np.clip(j, 0, n - 1)
    if mode == "wrap":
        return np.mod(j, n)
    period = 2 * (n - 1)  # reflect (pads < n)
    j = np.abs(j) % period if period else np.zeros_like(j)
    return np.where(j > n - 1, period - j, j)


@kernel("pad")
@prints_kir
def pad(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    mode = ctx.attrs.get("mode", "constant")
    pads = const_ints(ctx, 1, "pads")
    axes = const_ints(ctx, 3, "axes")
    widths = _pad_widths(len(x.shape), pads, axes)
    # negative pads crop first; the positive ones pad what is left
    crop = [(max(-b, 0), n - max(-e, 0)) for n, (b, e) in zip(x.shape, widths)]
    maps = []
    for d, ((b, e), (lo, hi)) in enumerate(zip(widths, crop)):
        n, grow_b = hi - lo, max(b, 0)
        if n < 0:
            ctx.fail(f"pads {pads} crop more than axis {d} ({x.shape[d]}) has")
        if mode != "constant" and (grow_b or e > 0):
            if n == 0:
                ctx.fail(f"mode '{mode}' cannot pad an empty axis {d}")
            if mode == "reflect" and max(grow_b, e) >= n:
                ctx.fail(f"reflect pads {grow_b, max(e, 0)} must be smaller than axis {d} ({n})")
        if (b, e) == (0, 0):
            maps.append(None)
            continue
        if mode != "constant":
            check_axis_table(ctx, d, y.shape[d])
        src = _pad_source(mode, n, grow_b, y.shape[d])
        maps.append(np.where(src >= 0, src + lo, -1))
    ins, outs = io(ctx)
    value, zero = kir.as_expr(0), True
    if mode == "constant" and ctx.has_input(2) and numel(ctx.inputs[2]):
        zero = _is_zero_bits(ctx.const(2))
        value = ins[2][0]
    return render(ctx, gather_axes(ctx, x.shape, y.shape, maps, ins[0], outs[0], value, zero))


@kernel("center_crop_pad")
@prints_kir
def center_crop_pad(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    maps = []
    for d, (n, s) in enumerate(zip(x.shape, y.shape)):
        if n == s:
            maps.append(None)
        elif s < n:  # crop: the extra element of an odd difference goes to the end
            maps.append(np.arange(s) + (n - s) // 2)
        else:
            j = np.arange(s) - (s - n) // 2
            maps.append(np.where((j >= 0) & (j < n), j, -1))
    ins, outs = io(ctx)
    return render(ctx, gather_axes(ctx, x.shape, y.shape, maps, ins[0], outs[0], kir.as_expr(0), True))


# ---- shape / size / constant_of_shape --------------------------------------------------------
EMPTY = kir.Comment("empty output")


def _write_constant(ctx: KernelContext, values: np.ndarray) -> str:
    y = ctx.outputs[0]
    values = np.asarray(values).reshape(-1)
    _, outs = io(ctx)
    if values.size == 0:
        return render(ctx, EMPTY)
    if values.size <= 64:
        return render(ctx, [kir.Store(outs[0], kir.idx(i), c_value(y.dtype, v)) for i, v in enumerate(values)])
    decl, data = table_ir(ctx, values.astype(y.dtype.np), "values")
    return render(ctx, decl, kir.Copy(outs[0], kir.idx(0), data, kir.idx(0), kir.idx(values.size)))


@kernel("shape")
@prints_kir
def shape(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    s, e = _shape_range(len(x.shape), ctx.attrs)
    return _write_sizes(ctx, list(x.shape[s:e]) if e > s else [])


def _write_sizes(ctx: KernelContext, sizes: list) -> str:
    """Shape / Size: the sizes, a constant unless some are known only at run time."""
    if not any(is_runtime(d) for d in sizes):
        return _write_constant(ctx, np.array(sizes, np.int64))
    _, outs = io(ctx)
    return render(ctx, [kir.Store(outs[0], kir.idx(i), kir.cast(ctx.outputs[0].dtype, kir.as_expr(d)))
                        for i, d in enumerate(sizes)])


@kernel("size")
@prints_kir
def size(ctx: KernelContext) -> str:
    return _write_sizes(ctx, [numel(ctx.inputs[0])])


@kernel("constant_of_shape")
@prints_kir
def constant_of_shape(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    v = ctx.attrs.get("value")
    v = np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)
    _, outs = io(ctx)
    return render(ctx, fill(outs[0], numel(y), c_value(y.dtype, v[0]), _is_zero_bits(v)) or EMPTY)


# ---- range / trilu / eye_like ----------------------------------------------------------------
@kernel("range")
@prints_kir
def range_(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    n = numel(y)
    if n == 0:
        return render(ctx, EMPTY)
    dt = y.dtype
    ins, outs = io(ctx)
    i = kir.index_var("i")
    if dt.is_float:
        start, delta = kir.Var("start", D.float64), kir.Var("delta", D.float64)
        return render(ctx, kir.Declare(start, kir.cast(D.float64, ins[0][0])),
                      kir.Declare(delta, kir.cast(D.float64, ins[2][0])),
                      # rounded once from double, like the reference
                      kir.loop(i, n, kir.store(outs[0], i, start + kir.cast(D.float64, i) * delta), annotation=PAR))
    # integers wrap in their own width, like the reference's arithmetic in the dtype
    u = {1: D.uint8, 2: D.uint16, 4: D.uint32, 8: D.uint64}[dt.itemsize]
    start, delta = kir.Var("start", u), kir.Var("delta", u)
    return render(ctx, kir.Declare(start, kir.cast(u, ins[0][0])), kir.Declare(delta, kir.cast(u, ins[2][0])),
                  kir.loop(i, n, kir.store(outs[0], i, start + kir.cast(u, i) * delta), annotation=PAR))


@kernel("trilu")
@prints_kir
def trilu(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    *batch, rows, cols = x.shape
    nb = int(np.prod(batch, dtype=np.int64))
    if nb * rows * cols == 0:
        return render(ctx, EMPTY)
    ins, outs = io(ctx)
    b, i, j, o, k = (kir.index_var(n) for n in "bijok")
    keep = (j - i >= k) if ctx.attrs.get("upper", 1) else (j - i <= k)
    kept = kir.select(keep, ins[0][o + j], c_value(x.dtype, 0))
    return render(ctx, kir.Declare(k, kir.cast(kir.INDEX, ins[1][0]) if ctx.has_input(1) else kir.idx(0)),
                  kir.loop(b, nb, kir.loop(i, rows, kir.Declare(o, (b * rows + i) * cols),
                                           kir.loop(j, cols, kir.store(outs[0], o + j, kept), annotation=PAR),
                                           annotation=PAR), annotation=PAR))


@kernel("eye_like")
@prints_kir
def eye_like(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    rows, cols = y.shape
    k = ctx.attrs.get("k", 0)
    _, outs = io(ctx)
    i = kir.index_var("i")
    body = fill(outs[0], rows * cols, kir.as_expr(0), True) or [EMPTY]
    first, last = max(0, -k), min(rows, cols - k)  # rows holding a one: 0 <= i + k < cols
    if first < last:
        body.append(kir.loop(i, last, kir.store(outs[0], i * cols + i + k, c_value(y.dtype, 1)), start=first))
    return render(ctx, body)
