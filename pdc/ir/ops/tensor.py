"""Shape and data-movement ops: reshape, transpose, concat, split, slice, squeeze/unsqueeze,
expand, tile, pad; and the helpers the tensor family shares (tensor_index, tensor_fill, resize).

Shape-like operands (Reshape's shape, Slice's starts...) are inputs, as in the latest ONNX opset.
When such an input is constant, inference computes the output shape (keeping symbolic dims where
it can); otherwise the affected dims are "?" (or the rank is unknown).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Optional

import numpy as np

from ..errors import PdcError
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import broadcast_shapes, const_ints, normalize_axis

INT64_MAX = 2 ** 63 - 1
# An end at or beyond this value means "to the end of the axis" (exporters write INT_MAX or INT64_MAX).
_OPEN_END = 2 ** 31 - 1


# ---------------------------------------------------------------------------------------------
# helpers shared by the family
def runtime_error(msg: str):
    """Raised by references on input data the op cannot accept (the interpreter reports it)."""
    raise PdcError(msg)


def check_failed(ctx: Optional[InferContext], msg: str):
    """Fails inference (with a context) or a reference run (without one)."""
    if ctx is not None:
        ctx.fail(msg)
    runtime_error(msg)


def ints_of(arr) -> list[int]:
    return [int(v) for v in np.asarray(arr).reshape(-1)]


def known_length(ctx: InferContext, i: int) -> Optional[int]:
    """The static length of 1-D input i (a shape-like operand), or None."""
    t = ctx.types[i] if ctx.has_input(i) else None
    if t is None or t.shape is None or len(t.shape) != 1 or not isinstance(t.shape[0], int):
        return None
    return t.shape[0]


def norm_axes(axes, rank, ctx: Optional[InferContext] = None, what: str = "axes") -> list[int]:
    """Normalizes negative axes and rejects repeated ones."""
    out = [normalize_axis(int(a), rank, ctx) for a in axes]
    if len(set(out)) != len(out):
        check_failed(ctx, f"{what} {list(axes)} repeat an axis")
    return out


def mul_dim(d, k: int):
    """A dim times a static factor."""
    if isinstance(d, int):
        return d * k
    if k == 1:
        return d
    return 0 if k == 0 else UNKNOWN


def add_dim(d, k: int):
    """A dim plus a static offset."""
    if isinstance(d, int):
        return d + k
    return d if k == 0 else UNKNOWN


def merge_dims(dims, ctx: InferContext, what: str):
    """The one extent several dims must share: static beats symbolic beats unknown."""
    ints = {d for d in dims if isinstance(d, int)}
    if len(ints) > 1:
        ctx.fail(f"{what}: dims {sorted(ints)} differ")
    if ints:
        return ints.pop()
    syms = [d for d in dims if d != UNKNOWN]
    return syms[0] if syms else UNKNOWN


def _factor(dims):
    """A shape's element count as (static product, Counter of symbols), or None with '?' dims."""
    prod, syms = 1, Counter()
    for d in dims:
        if d == UNKNOWN:
            return None
        if isinstance(d, int):
            prod *= d
        else:
            syms[d] += 1
    return prod, syms


# ---------------------------------------------------------------------------------------------
# reshape
def _solve_minus_one(in_shape, known_out, ctx):
    """The dim a -1 stands for: input numel / product of the other output dims."""
    if in_shape is None:
        return UNKNOWN
    fin, fout = _factor(in_shape), _factor(known_out)
    if fin is None or fout is None:
        return UNKNOWN
    (pin, sin), (pout, sout) = fin, fout
    if sout - sin:  # output symbols the input does not have
        return UNKNOWN
    rest = sin - sout
    if pout == 0:
        if pin == 0 and not rest:
            ctx.fail("cannot infer the -1 dim of an empty tensor whose other dims include 0")
        return UNKNOWN
    if pin % pout:
        if not rest:
            ctx.fail(f"cannot reshape {list(in_shape)} into {[*known_out, -1]}: sizes do not divide")
        return UNKNOWN
    q = pin // pout
    if not rest:
        return q
    if q == 1 and sum(rest.values()) == 1:
        return next(iter(rest))
    return UNKNOWN


def _reshape_infer(ctx: InferContext):
    t = ctx.types[0]
    shape = const_ints(ctx, 1)
    if shape is None:
        n = known_length(ctx, 1)
        return [TensorType(t.dtype, None if n is None else (UNKNOWN,) * n)]
    allowzero = ctx.attrs.get("allowzero", 0)
    if shape.count(-1) > 1:
        ctx.fail(f"shape {shape} has more than one -1")
    if any(s < -1 for s in shape):
        ctx.fail(f"shape {shape} has a negative dim other than -1")
    if allowzero and 0 in shape and -1 in shape:
        ctx.fail(f"shape {shape} has both 0 and -1 with allowzero=1")
    out = []
    for i, s in enumerate(shape):
        if s == 0 and not allowzero:
            if t.shape is None:
                out.append(UNKNOWN)
            elif i >= len(t.shape):
                ctx.fail(f"shape {shape}: the 0 at position {i} copies a dim the rank-{len(t.shape)} input lacks")
            else:
                out.append(t.shape[i])
        else:
            out.append(s)
    if -1 in out:
        k = out.index(-1)
        out[k] = _solve_minus_one(t.shape, out[:k] + out[k + 1:], ctx)
    elif t.is_static and all(isinstance(d, int) for d in out) and math.prod(out) != t.numel:
        ctx.fail(f"cannot reshape {list(t.shape)} ({t.numel} elements) into {out}")
    return [TensorType(t.dtype, out)]


def _reshape_ref(inputs, attrs):
    x, shape = inputs[0], ints_of(inputs[1])
    if not attrs.get("allowzero", 0):
        if any(s == 0 and i >= x.ndim for i, s in enumerate(shape)):
            runtime_error(f"reshape: shape {shape} copies a dim the rank-{x.ndim} input lacks")
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    try:
        return x.reshape(shape)
    except ValueError:
        runtime_error(f"reshape: cannot reshape {list(x.shape)} into {shape}")


register_op("reshape", ["data", "shape"], ["reshaped"], onnx="Reshape",
            attrs={"allowzero": Attr("int", 0)}, infer=_reshape_infer, reference=_reshape_ref,
            doc="Reshape: 0 copies the input dim (unless allowzero), -1 is inferred.")


# ---------------------------------------------------------------------------------------------
# transpose
def _perm(attrs, rank, ctx=None):
    perm = attrs.get("perm")
    if perm is None:
        return list(range(rank))[::-1]
    if sorted(perm) != list(range(rank)):
        check_failed(ctx, f"perm {list(perm)} is not a permutation of the {rank} axes")
    return list(perm)


def _transpose_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.shape is None:
        perm = ctx.attrs.get("perm")
        return [TensorType(t.dtype, None if perm is None else (UNKNOWN,) * len(perm))]
    perm = _perm(ctx.attrs, t.rank, ctx)
    return [t.with_shape(t.shape[p] for p in perm)]


register_op("transpose", ["data"], ["transposed"], onnx="Transpose",
            attrs={"perm": Attr("ints", None)}, infer=_transpose_infer,
            reference=lambda x, a: np.ascontiguousarray(np.transpose(x[0], _perm(a, x[0].ndim))),
            doc="Permutes axes; without perm the axes are reversed.")


# ---------------------------------------------------------------------------------------------
# concat
def _concat_infer(ctx: InferContext):
    types = ctx.types
    if len({t.dtype for t in types}) > 1:
        ctx.fail(f"inputs must share one dtype, got {sorted({str(t.dtype) for t in types})}")
    ranked = [t for t in types if t.shape is not None]
    if not ranked:
        return [TensorType(types[0].dtype, None)]
    rank = ranked[0].rank
    if any(t.rank != rank for t in ranked):
        ctx.fail(f"inputs have different ranks {[t.rank for t in ranked]}")
    if rank == 0:
        ctx.fail("cannot concatenate scalars")
    axis = normalize_axis(ctx.attrs["axis"], rank, ctx)
    out = []
    for i in range(rank):
        if i == axis:
            dims = [t.shape[i] if t.shape is not None else UNKNOWN for t in types]
            nonzero = [d for d in dims if d != 0]
            if all(isinstance(d, int) for d in dims):
                out.append(sum(dims))
            elif len(nonzero) == 1:
                out.append(nonzero[0])
            else:
                out.append(UNKNOWN)
        else:
            out.append(merge_dims([t.shape[i] for t in ranked], ctx, f"dim {i} of the inputs"))
    return [TensorType(types[0].dtype, out)]


register_op("concat", ["inputs*"], ["concat_result"], onnx="Concat",
            attrs={"axis": Attr("int", REQUIRED)}, infer=_concat_infer,
            reference=lambda x, a: np.concatenate(x, axis=a["axis"]),
            doc="Joins tensors along an axis.")


# ---------------------------------------------------------------------------------------------
# split
def _equal_split(dim: int, n: int):
    """ONNX's split into n parts: ceil(dim / n) each, the last one smaller."""
    chunk = -(-dim // n)
    sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    return None if sizes[-1] < 0 else sizes


def _split_infer(ctx: InferContext):
    t = ctx.types[0]
    n = ctx.num_outputs
    num_outputs = ctx.attrs.get("num_outputs")
    if num_outputs is not None and num_outputs != n:
        ctx.fail(f"num_outputs={num_outputs} but the node has {n} outputs")
    if num_outputs is not None and ctx.has_input(1):
        ctx.fail("give either the split input or num_outputs, not both")
    _split_verify(ctx)
    if t.shape is None:
        return [t] * n
    axis = normalize_axis(ctx.attrs.get("axis", 0), t.rank, ctx)
    dim = t.shape[axis]
    if ctx.has_input(1):
        split = const_ints(ctx, 1)
        if split is None:
            sizes = [UNKNOWN] * n
        else:
            if len(split) != n:
                ctx.fail(f"split {split} has {len(split)} entries for {n} outputs")
            if any(s < 0 for s in split):
                ctx.fail(f"split {split} has a negative size")
            if isinstance(dim, int) and sum(split) != dim:
                ctx.fail(f"split {split} does not add up to dim {axis} ({dim})")
            sizes = split
    elif isinstance(dim, int):
        sizes = _equal_split(dim, n)
        if sizes is None:
            ctx.fail(f"cannot split dim {axis} ({dim}) into {n} parts")
    else:
        sizes = [dim] if n == 1 else [UNKNOWN] * n
    return [t.with_shape(t.shape[:axis] + (s,) + t.shape[axis + 1:]) for s in sizes]


def _split_ref(inputs, attrs):
    x, split = inputs[0], inputs[1] if len(inputs) > 1 else None
    axis = normalize_axis(attrs.get("axis", 0), x.ndim)
    n = attrs.get("num_outputs")
    if split is not None:
        sizes = ints_of(split)
        if sum(sizes) != x.shape[axis]:
            runtime_error(f"split: sizes {sizes} do not add up to dim {axis} ({x.shape[axis]})")
    else:
        sizes = _equal_split(x.shape[axis], n)
        if sizes is None:
            runtime_error(f"split: cannot split dim {axis} ({x.shape[axis]}) into {n} parts")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _split_verify(ctx: InferContext):
    if not ctx.has_input(1) and ctx.attrs.get("num_outputs") is None:
        ctx.fail("needs the split input or the num_outputs attribute")


register_op("split", ["input", "split?"], ["outputs*"], onnx="Split",
            attrs={"axis": Attr("int", 0), "num_outputs": Attr("int", None)},
            infer=_split_infer, reference=_split_ref, verify=_split_verify,
            doc="Splits along an axis by the sizes in `split`, else into num_outputs equal parts "
                "(the last one smaller).")


# ---------------------------------------------------------------------------------------------
# slice
def slice_bounds(dim: int, start: int, end: int, step: int):
    """ONNX's clamping of one axis' slice: (start, end, length); end -1 means 'before 0' for step < 0."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
        length = max(0, -(-(end - start) // step))
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
        length = max(0, -(-(start - end) // -step))
    return start, end, length


def _slice_params(rank, starts, ends, axes, steps, ctx=None):
    if not len(starts) == len(ends):
        msg = f"starts ({len(starts)}) and ends ({len(ends)}) differ in length"
        check_failed(ctx, msg)
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(axes) == len(steps) == len(starts):
        msg = f"starts, ends, axes and steps differ in length ({len(starts)}, {len(axes)}, {len(steps)})"
        check_failed(ctx, msg)
    if 0 in steps:
        msg = "a step is 0"
        check_failed(ctx, msg)
    return list(zip(norm_axes(axes, rank, ctx), starts, ends, steps))


def _slice_infer(ctx: InferContext):
    t = ctx.types[0]
    starts, ends = const_ints(ctx, 1), const_ints(ctx, 2)
    axes = const_ints(ctx, 3) if ctx.has_input(3) else None
    steps = const_ints(ctx, 4) if ctx.has_input(4) else None
    if t.shape is None:
        return [t]
    known = starts is not None and ends is not None and (axes is not None or not ctx.has_input(3)) \
        and (steps is not None or not ctx.has_input(4))
    if not known:
        if axes is not None:
            touched = set(norm_axes(axes, t.rank, ctx))
        elif not ctx.has_input(3) and known_length(ctx, 1) is not None:
            touched = set(range(known_length(ctx, 1)))  # the leading axes
        else:
            touched = set(range(t.rank))
        return [t.with_shape(UNKNOWN if i in touched else d for i, d in enumerate(t.shape))]
    out = list(t.shape)
    for axis, start, end, step in _slice_params(t.rank, starts, ends, axes, steps, ctx):
        dim = t.shape[axis]
        if isinstance(dim, int):
            out[axis] = slice_bounds(dim, start, end, step)[2]
        elif (step == 1 and start in (0, -INT64_MAX - 1) and end >= _OPEN_END) or \
                (step == -1 and start in (-1, INT64_MAX) and end <= -_OPEN_END):
            out[axis] = dim  # the whole axis, forwards or backwards
        else:
            out[axis] = UNKNOWN
    return [t.with_shape(out)]


def _slice_ref(inputs, attrs):
    x = inputs[0]
    axes = None if len(inputs) < 4 or inputs[3] is None else ints_of(inputs[3])
    steps = None if len(inputs) < 5 or inputs[4] is None else ints_of(inputs[4])
    index = [slice(None)] * x.ndim
    for axis, start, end, step in _slice_params(x.ndim, ints_of(inputs[1]), ints_of(inputs[2]), axes, steps):
        start, end, length = slice_bounds(x.shape[axis], start, end, step)
        index[axis] = slice(start, None if end < 0 else end, step) if length else slice(0, 0)
    return x[tuple(index)].copy()


register_op("slice", ["data", "starts", "ends", "axes?", "steps?"], ["output"], onnx="Slice",
            infer=_slice_infer, reference=_slice_ref,
            doc="Strided slice with ONNX clamping; negative steps walk backwards.")


# ---------------------------------------------------------------------------------------------
# squeeze / unsqueeze
def _squeeze_infer(ctx: InferContext):
    t = ctx.types[0]
    if t.shape is None:
        return [t]
    if not ctx.has_input(1):
        if not all(isinstance(d, int) for d in t.shape):
            return [TensorType(t.dtype, None)]  # which symbolic dims are 1 is unknown
        return [t.with_shape(d for d in t.shape if d != 1)]
    axes = const_ints(ctx, 1)
    if axes is None:
        n = known_length(ctx, 1)
        return [TensorType(t.dtype, None if n is None else (UNKNOWN,) * (t.rank - n))]
    axes = norm_axes(axes, t.rank, ctx)
    for a in axes:
        if isinstance(t.shape[a], int) and t.shape[a] != 1:
            ctx.fail(f"cannot squeeze axis {a} of size {t.shape[a]}")
    return [t.with_shape(d for i, d in enumerate(t.shape) if i not in axes)]


def _squeeze_ref(inputs, attrs):
    x = inputs[0]
    if len(inputs) < 2 or inputs[1] is None:
        return np.squeeze(x)
    axes = norm_axes(ints_of(inputs[1]), x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        runtime_error(f"squeeze: axes {axes} of shape {list(x.shape)} are not all 1")
    return np.squeeze(x, axis=tuple(axes))


register_op("squeeze", ["data", "axes?"], ["squeezed"], onnx="Squeeze",
            infer=_squeeze_infer, reference=_squeeze_ref,
            doc="Removes size-1 axes (all of them without `axes`).")


def _unsqueeze_shape(shape, axes, ctx=None):
    rank = len(shape) + len(axes)
    axes = norm_axes(axes, rank, ctx)
    rest = iter(shape)
    return [1 if i in axes else next(rest) for i in range(rank)]


def _unsqueeze_infer(ctx: InferContext):
    t = ctx.types[0]
    axes = const_ints(ctx, 1)
    if axes is None:
        n = known_length(ctx, 1)
        if n is None or t.shape is None:
            return [TensorType(t.dtype, None)]
        return [t.with_shape((UNKNOWN,) * (t.rank + n))]
    if t.shape is None:
        return [t]
    return [t.with_shape(_unsqueeze_shape(t.shape, axes, ctx))]


register_op("unsqueeze", ["data", "axes"], ["expanded"], onnx="Unsqueeze", infer=_unsqueeze_infer,
            reference=lambda x, a: x[0].reshape(_unsqueeze_shape(x[0].shape, ints_of(x[1]))),
            doc="Inserts size-1 axes at the given positions of the output.")


# ---------------------------------------------------------------------------------------------
# expand / tile
def _expand_infer(ctx: InferContext):
    t = ctx.types[0]
    shape = const_ints(ctx, 1)
    if shape is None:
        n = known_length(ctx, 1)
        if n is None or t.shape is None:
            return [TensorType(t.dtype, None)]
        shape = (UNKNOWN,) * n
    if t.shape is None:
        return [TensorType(t.dtype, None)]
    return [t.with_shape(broadcast_shapes([t.shape, tuple(shape)], ctx))]


def _expand_ref(inputs, attrs):
    x, shape = inputs[0], ints_of(inputs[1])
    try:
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape))).copy()
    except ValueError:
        runtime_error(f"expand: shape {list(x.shape)} does not broadcast to {shape}")


register_op("expand", ["input", "shape"], ["output"], onnx="Expand", infer=_expand_infer, reference=_expand_ref,
            doc="Broadcasts the input to `shape` (bidirectionally, as NumPy does).")


def _tile_infer(ctx: InferContext):
    t = ctx.types[0]
    reps = const_ints(ctx, 1)
    if t.shape is None:
        return [t]
    if reps is None:
        return [t.with_shape((UNKNOWN,) * t.rank)]
    if len(reps) != t.rank:
        ctx.fail(f"repeats {reps} has {len(reps)} entries for a rank-{t.rank} input")
    if any(r < 0 for r in reps):
        ctx.fail(f"repeats {reps} has a negative entry")
    return [t.with_shape(mul_dim(d, r) for d, r in zip(t.shape, reps))]


def _tile_ref(inputs, attrs):
    x, reps = inputs[0], ints_of(inputs[1])
    if len(reps) != x.ndim or any(r < 0 for r in reps):
        runtime_error(f"tile: repeats {reps} do not fit a rank-{x.ndim} input")
    return np.tile(x, reps)


register_op("tile", ["input", "repeats"], ["output"], onnx="Tile", infer=_tile_infer, reference=_tile_ref,
            doc="Repeats the input along each axis.")


# ---------------------------------------------------------------------------------------------
# pad
PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_widths(rank, pads, axes, ctx=None):
    """Per-axis (begin, end) pads from ONNX's [begins..., ends...] over `axes`."""
    axes = list(range(rank)) if axes is None else norm_axes(axes, rank, ctx)
    if len(pads) != 2 * len(axes):
        msg = f"pads has {len(pads)} entries, expected {2 * len(axes)} (2 per axis)"
        check_failed(ctx, msg)
    widths = [(0, 0)] * rank
    for i, a in enumerate(axes):
        widths[a] = (pads[i], pads[i + len(axes)])
    return widths


def _pad_verify(ctx: InferContext):
    if ctx.attrs.get("mode", "constant") not in PAD_MODES:
        ctx.unsupported(f"mode '{ctx.attrs['mode']}' is not supported (expected one of {', '.join(PAD_MODES)})")


def _pad_infer(ctx: InferContext):
    t = ctx.types[0]
    _pad_verify(ctx)
    if t.shape is None:
        return [t]
    pads = const_ints(ctx, 1)
    axes = const_ints(ctx, 3) if ctx.has_input(3) else None
    if pads is None or (ctx.has_input(3) and axes is None):
        if axes is None and ctx.has_input(3):
            return [t.with_shape((UNKNOWN,) * t.rank)]
        touched = set(range(t.rank) if axes is None else norm_axes(axes, t.rank, ctx))
        return [t.with_shape(UNKNOWN if i in touched else d for i, d in enumerate(t.shape))]
    out = []
    for d, (b, e) in zip(t.shape, _pad_widths(t.rank, pads, axes, ctx)):
        d = add_dim(d, b + e)
        if isinstance(d, int) and d < 0:
            ctx.fail(f"pads {pads} crop more than the input has")
        out.append(d)
    return [t.with_shape(out)]


def _pad_ref(inputs, attrs):
    x, pads = inputs[0], ints_of(inputs[1])
    value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    axes = ints_of(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
    mode = attrs.get("mode", "constant")
    widths = _pad_widths(x.ndim, pads, axes)
    # negative pads crop first (as ONNX Runtime does); the positive ones then pad what is left
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths))
    x = x[crop]
    if any(n < 0 for n in x.shape):
        runtime_error(f"pad: pads {pads} crop more than the input has")
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        cv = 0 if value is None or value.size == 0 else value.reshape(-1)[0]
        return np.pad(x, grow, mode="constant", constant_values=cv).astype(x.dtype)
    for i, (b, e) in enumerate(grow):
        if (b or e) and x.shape[i] == 0:
            runtime_error(f"pad: mode '{mode}' cannot pad an empty axis {i}")
        if mode == "reflect" and max(b, e) >= x.shape[i] and (b or e) and x.shape[i] > 0:
            runtime_error(f"pad: reflect pads {b, e} must be smaller than axis {i} ({x.shape[i]})")
    return np.pad(x, grow, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


register_op("pad", ["data", "pads", "constant_value?", "axes?"], ["output"], onnx="Pad",
            attrs={"mode": Attr("string", "constant")}, verify=_pad_verify,
            infer=_pad_infer, reference=_pad_ref,
            doc="Pads (or crops, for negative pads) with a constant, a reflection, the edge, or a wrap-around.")
