"""Data-movement and shape kernels: transpose, concat, split, slice, expand, tile, pad,
center_crop_pad; and the ones that make values: shape, size, constant_of_shape, range, trilu,
eye_like.

Every movement is a static loop nest from `_movement` (strided copies, index tables). Shape-like
operands (Slice's starts, Pad's pads, Tile's repeats...) must be compile-time constants; values
(Pad's constant_value, Trilu's k, Range's start and delta) are read at run time.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ir.ops.common import normalize_axis
from ...ir.ops.tensor_fill import _shape_range
from ...ir.ops.tensor import _pad_widths, _perm, _slice_params, slice_bounds
from ..context import KernelContext, broadcast_strides, numel, strides
from ..ctypes_c import float_literal, int_literal
from . import kernel
from ._movement import copy_nest, fill, gather_axes, pack, uses_all_params


def const_ints(ctx: KernelContext, i: int, what: str) -> Optional[list[int]]:
    """The values of constant input i (None when the optional input is absent); fails when not constant."""
    if not ctx.has_input(i):
        return None
    data = ctx.const(i)
    if data is None:
        ctx.fail(f"{what} (input {i}) must be a compile-time constant")
    return [int(v) for v in np.asarray(data).reshape(-1)]


def c_value(ctx: KernelContext, dt, value) -> str:
    """A C literal of `value` in the storage type of dt (half precision converted by ctx.store)."""
    value = np.asarray(value).reshape(-1)[0]
    if dt.is_float:
        return ctx.store(dt, float_literal(float(value), ctx.compute_ctype(dt)))
    if dt.short == "bool":
        return "1" if value else "0"
    return f"({ctx.ctype(dt)}){int_literal(int(value))}"


def _is_zero_bits(value: Optional[np.ndarray]) -> bool:
    return value is not None and not np.asarray(value).reshape(-1)[:1].tobytes().strip(b"\0")


# ---- transpose / concat / split --------------------------------------------------------------
@kernel("transpose")
@uses_all_params
def transpose(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    perm = _perm(ctx.attrs, len(x.shape))
    ist, ost = strides(x.shape), strides(y.shape)
    return copy_nest(ctx, [(y.shape[d], ist[p], ost[d]) for d, p in enumerate(perm)])


@kernel("concat")
@uses_all_params
def concat(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    axis = normalize_axis(ctx.attrs["axis"], len(y.shape))
    ost = strides(y.shape)
    parts, at = [], 0
    for k, t in enumerate(ctx.inputs):
        ist = strides(t.shape)
        parts.append(copy_nest(ctx, [(n, ist[d], ost[d]) for d, n in enumerate(t.shape)], f"in{k}", "out0",
                               0, at * ost[axis]))
        at += t.shape[axis]
    return "\n".join(f"    {{\n{p}\n    }}" for p in parts)


@kernel("split")
@uses_all_params
def split(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(x.shape))
    ist = strides(x.shape)
    parts, at = [], 0
    for k, t in enumerate(ctx.outputs):
        ost = strides(t.shape)
        parts.append(copy_nest(ctx, [(n, ist[d], ost[d]) for d, n in enumerate(t.shape)], "in0", f"out{k}",
                               at * ist[axis], 0))
        at += t.shape[axis]
    if at != x.shape[axis]:
        ctx.fail(f"the outputs' sizes along axis {axis} add up to {at}, not {x.shape[axis]}")
    return "\n".join(f"    {{\n{p}\n    }}" for p in parts)


# ---- slice / expand / tile -----------------------------------------------------------------
@kernel("slice")
@uses_all_params
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
    return copy_nest(ctx, [tuple(d) for d in dims], src_base=base)


@kernel("expand")
@uses_all_params
def expand(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    bst, ost = broadcast_strides(x.shape, y.shape), strides(y.shape)
    return copy_nest(ctx, [(n, bst[d], ost[d]) for d, n in enumerate(y.shape)])


@kernel("tile")
@uses_all_params
def tile(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    reps = [y.shape[d] // x.shape[d] if x.shape[d] else 0 for d in range(len(x.shape))]
    ist, ost = strides(x.shape), strides(y.shape)
    dims = []
    for d, (n, r) in enumerate(zip(x.shape, reps)):  # output axis d seen as (repeat, index)
        dims += [(r, 0, n * ost[d]), (n, ist[d], ost[d])]
    return copy_nest(ctx, dims)


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
@uses_all_params
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
        src = _pad_source(mode, n, grow_b, y.shape[d])
        maps.append(np.where(src >= 0, src + lo, -1))
    value, zero = "0", True
    if mode == "constant" and ctx.has_input(2) and numel(ctx.inputs[2]):
        const = ctx.const(2)
        zero = _is_zero_bits(const)
        value = "in2[0]"
    return gather_axes(ctx, x.shape, y.shape, maps, value, zero)


@kernel("center_crop_pad")
@uses_all_params
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
    return gather_axes(ctx, x.shape, y.shape, maps, "0", True)


# ---- shape / size / constant_of_shape --------------------------------------------------------
def _write_constant(ctx: KernelContext, values: np.ndarray) -> str:
    y = ctx.outputs[0]
    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return "    /* empty output */"
    if values.size <= 64:
        return "\n".join(f"    out0[{i}] = {c_value(ctx, y.dtype, v)};" for i, v in enumerate(values))
    return f"    memcpy(out0, {pack(ctx, values.astype(y.dtype.np), ctx.ctype(y.dtype))}, {values.nbytes});"


@kernel("shape")
@uses_all_params
def shape(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    s, e = _shape_range(len(x.shape), ctx.attrs)
    return _write_constant(ctx, np.array(x.shape[s:e] if e > s else [], np.int64))


@kernel("size")
@uses_all_params
def size(ctx: KernelContext) -> str:
    return _write_constant(ctx, np.array([numel(ctx.inputs[0])], np.int64))


@kernel("constant_of_shape")
@uses_all_params
def constant_of_shape(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    v = ctx.attrs.get("value")
    v = np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)
    return fill("out0", numel(y), c_value(ctx, y.dtype, v[0]), _is_zero_bits(v)) or "    /* empty output */"


# ---- range / trilu / eye_like ----------------------------------------------------------------
@kernel("range")
@uses_all_params
def range_(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    n = numel(y)
    if n == 0:
        return "    /* empty output */"
    dt = y.dtype
    if dt.is_float:
        load = lambda e: f"(double){ctx.load(dt, e)}"  # noqa: E731
        expr = ctx.store(dt, "start + (double)i * delta")  # rounded once from double, like the reference
        return (f"    const double start = {load('in0[0]')}, delta = {load('in2[0]')};\n"
                f"    for (int64_t i = 0; i < {n}; i++) out0[i] = {expr};")
    # integers wrap in their own width, like the reference's arithmetic in the dtype
    u = f"uint{dt.itemsize * 8}_t"
    return (f"    const {u} start = ({u})in0[0], delta = ({u})in2[0];\n"
            f"    for (int64_t i = 0; i < {n}; i++) out0[i] = ({ctx.ctype(dt)})(start + ({u})i * delta);")


@kernel("trilu")
@uses_all_params
def trilu(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    *batch, rows, cols = x.shape
    nb = int(np.prod(batch, dtype=np.int64))
    if nb * rows * cols == 0:
        return "    /* empty output */"
    keep = "j - i >= k" if ctx.attrs.get("upper", 1) else "j - i <= k"
    k = "(in1 ? (int64_t)in1[0] : 0)" if ctx.has_input(1) else "0"
    return (f"    const int64_t k = {k};\n"
            f"    for (int64_t b = 0; b < {nb}; b++)\n"
            f"        for (int64_t i = 0; i < {rows}; i++) {{\n"
            f"            const int64_t o = (b * {rows} + i) * {cols};\n"
            f"            for (int64_t j = 0; j < {cols}; j++) out0[o + j] = ({keep}) ? in0[o + j] : 0;\n"
            f"        }}")


@kernel("eye_like")
@uses_all_params
def eye_like(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    rows, cols = y.shape
    k = ctx.attrs.get("k", 0)
    one = c_value(ctx, y.dtype, 1)
    lines = [fill("out0", rows * cols, "0", True) or "    /* empty output */"]
    first, last = max(0, -k), min(rows, cols - k)  # rows holding a one: 0 <= i + k < cols
    if first < last:
        lines.append(f"    for (int64_t i = {first}; i < {last}; i++) out0[i * {cols} + i + {k}] = {one};")
    return "\n".join(lines)
