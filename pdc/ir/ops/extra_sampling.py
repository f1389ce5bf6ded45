"""Spatial sampling ops: grid_sample (GridSample), affine_grid (AffineGrid), col2im (Col2Im) and
deform_conv (DeformConv), for any number of spatial dims.

- grid_sample (opset 20+ form; the converter renames opset 16's bilinear / bicubic): grid holds
  normalized positions in [-1, 1], innermost dim first (x, y[, z]). A position maps to pixel
  coordinates by ((v + 1) * size - 1) / 2, or (v + 1) / 2 * (size - 1) with align_corners=1.
  For nearest and linear, a coordinate outside [-0.5, size - 0.5] ([0, size - 1] with
  align_corners) is first clamped to [0, size - 1] (padding_mode=border) or reflected at those
  bounds (reflection), per dim. Then nearest rounds half to even, linear mixes 2 taps and cubic
  4 taps (Keys, a = -0.75) per dim; a tap outside the image reads 0 (zeros), the nearest pixel
  (border) or its mirror (reflection). Cubic adjusts only the taps, not the coordinate (as PyTorch
  and ONNX Runtime do; ONNX's reference clamps the coordinate too, which differs for border).
  Pixel coordinates are clamped to +-2^30 (far outside any image), a non-finite grid value gives
  NaN (0 for integers). Integer inputs are computed in float64 and truncated.
- affine_grid: the sampling grid theta @ (x, y[, z], 1) over an evenly spaced grid of `size`
  ((2i + 1) / n - 1, or -1 + 2i / (n - 1) with align_corners=1).
- col2im: sums column blocks (N, C * prod(block), L) back into an image (N, C, *image_shape),
  with strides, dilations and pads like a convolution's.
- deform_conv: a convolution whose taps sit at learned offsets (offset: per offset group, kernel
  tap and spatial dim), read with N-linear interpolation (taps outside the input read 0) and
  scaled by `mask` (default 1); groups and bias as in Conv.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .tensor import runtime_error

_FLOATS = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)
_NUMERIC = tuple(d for d in dtypes.ALL if d != dtypes.bool_)
_HALF = (np.dtype(np.float16), dtypes.bfloat16.np)
GRID_MODES = ("linear", "nearest", "cubic")
PADDING_MODES = ("zeros", "border", "reflection")
CUBIC_A = -0.75
COORD_LIMIT = 2.0 ** 30  # pixel coordinates are clamped to +-COORD_LIMIT


def _bool_attr(ctx: InferContext, name: str):
    if ctx.attrs.get(name, 0) not in (0, 1):
        ctx.fail(f"attribute '{name}' must be 0 or 1, got {ctx.attrs[name]}")


def _dims_match(a, b) -> bool:
    return a == b or not isinstance(a, int) or not isinstance(b, int)


# ---- grid_sample ---------------------------------------------------------------------------------
def _grid_sample_infer(ctx: InferContext):
    x, grid = ctx.types[0], ctx.types[1]
    a = ctx.attrs
    if a.get("mode", "linear") not in GRID_MODES:
        ctx.fail(f"mode must be one of {', '.join(GRID_MODES)}, got '{a['mode']}'")
    if a.get("padding_mode", "zeros") not in PADDING_MODES:
        ctx.fail(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got '{a['padding_mode']}'")
    _bool_attr(ctx, "align_corners")
    if x.dtype not in _NUMERIC:
        ctx.fail(f"X has dtype {x.dtype}; GridSample takes numeric tensors")
    if grid.dtype not in _FLOATS:
        ctx.fail(f"grid must be a float tensor, got {grid.dtype}")
    if x.shape is None or grid.shape is None:
        return [TensorType(x.dtype, None if grid.shape is None else (UNKNOWN,) * len(grid.shape))]
    r = len(x.shape) - 2
    if r < 1:
        ctx.fail(f"X must have rank >= 3 (N, C, spatial...), got {x}")
    if len(grid.shape) != r + 2:
        ctx.fail(f"grid {grid} must have rank {r + 2} for X {x}")
    if not _dims_match(grid.shape[-1], r):
        ctx.fail(f"grid's last dim must be {r} (one coordinate per spatial dim), got {grid}")
    if not _dims_match(grid.shape[0], x.shape[0]):
        ctx.fail(f"grid {grid} and X {x} differ in batch size")
    n = x.shape[0] if isinstance(x.shape[0], int) else grid.shape[0]
    return [TensorType(x.dtype, (n, x.shape[1]) + tuple(grid.shape[1:-1]))]


def denormalize(v, size: int, align: bool):
    """Pixel coordinates of normalized positions, in v's precision (each step rounded)."""
    return (v + 1) / 2 * (size - 1) if align else ((v + 1) * size - 1) / 2


def bounds(size: int, align: bool) -> tuple[float, float]:
    return (0.0, size - 1.0) if align else (-0.5, size - 0.5)


def reflect(x, lo: float, hi: float):
    """Reflects coordinates at lo and hi until they are inside (a zero-width range gives lo)."""
    rng = x.dtype.type(hi - lo)
    lo, hi = x.dtype.type(lo), x.dtype.type(hi)
    if rng <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    dx = np.where(below, lo - x, np.where(above, x - hi, 0.0))
    n = np.floor(dx / rng)
    r = dx - n * rng
    even = np.mod(n, 2) == 0
    y = np.where(below, np.where(even, lo + r, hi - r), x)
    return np.where(above, np.where(even, hi - r, lo + r), y)


def cubic_coeffs(t):
    """Keys cubic convolution weights of the taps at -1, 0, 1, 2 for a fraction t in [0, 1)."""
    a = CUBIC_A

    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _tap_index(i, size: int, pad: str, align: bool):
    """(index to read, valid mask) of integer taps under a padding mode."""
    if pad == "zeros":
        ok = (i >= 0) & (i < size)
        return np.clip(i, 0, max(size - 1, 0)), ok
    if pad == "border":
        return np.clip(i, 0, size - 1), np.ones(i.shape, bool)
    lo, hi = bounds(size, align)
    j = np.trunc(reflect(i.astype(np.float64), lo, hi)).astype(np.int64)
    return np.clip(j, 0, size - 1), np.ones(i.shape, bool)


def _grid_sample_ref(inputs, attrs):
    x, grid = inputs
    mode, pad = attrs.get("mode", "linear"), attrs.get("padding_mode", "zeros")
    align = bool(attrs.get("align_corners", 0))
    n_batch, chans, *sizes = x.shape
    r = len(sizes)
    out_sp = grid.shape[1:-1]
    if x.size == 0 or grid.size == 0 or math.prod(sizes) == 0:
        if math.prod(sizes) == 0 and pad != "zeros" and grid.size and x.shape[0] * x.shape[1]:
            runtime_error(f"grid_sample: padding_mode={pad} cannot sample an empty image")
        return np.zeros((n_batch, chans) + tuple(out_sp), x.dtype)
    # coordinates in the grid's precision (float32 for float32 and half grids), as ONNX Runtime
    # computes them: rounding decides nearest pixels and exact borders
    g = grid.astype(np.float64 if grid.dtype == np.float64 else np.float32)
    lost = ~np.isfinite(g).all(axis=-1)  # a non-finite coordinate gives NaN
    coords = []
    for d, size in enumerate(sizes):
        v = denormalize(np.where(lost, 0, g[..., r - 1 - d]), size, align)
        v = np.clip(v, -COORD_LIMIT, COORD_LIMIT)  # far enough out for every mode; keeps taps in int64
        if mode == "nearest":
            v = np.rint(v)
        lo, hi = bounds(size, align)
        out = (v < lo) | (v > hi)
        if mode == "cubic":
            pass  # each tap is clamped / reflected instead (as PyTorch and ONNX Runtime do)
        elif pad == "border":
            v = np.where(out, np.clip(v, 0, size - 1), v)
        elif pad == "reflection":
            v = np.where(out, reflect(v, lo, hi), v)
        coords.append(v)
    taps_per_dim = []  # per dim: [(integer tap, weight)]
    for d, v in enumerate(coords):
        v = v.astype(g.dtype)
        if mode == "nearest":
            taps_per_dim.append([(np.trunc(v).astype(np.int64), np.ones(v.shape))])
            continue
        base = np.floor(v)
        t = v - base
        base = base.astype(np.int64)
        if mode == "linear":
            taps_per_dim.append([(base, 1 - t.astype(np.float64)), (base + 1, t.astype(np.float64))])
        else:
            taps_per_dim.append([(base + k - 1, c.astype(np.float64)) for k, c in enumerate(cubic_coeffs(t))])
    xf = x.astype(np.float64)
    nidx = np.arange(n_batch).reshape((n_batch,) + (1,) * len(out_sp))
    acc = np.zeros((n_batch,) + tuple(out_sp) + (chans,))
    for combo in itertools.product(*taps_per_dim):
        weight = np.ones(g.shape[:-1])
        idx = []
        for d, (tap, w) in enumerate(combo):
            j, ok = _tap_index(tap, sizes[d], pad, align)
            weight = weight * np.where(ok, w, 0.0)
            idx.append(j)
        acc += weight[..., None] * xf[(nidx, slice(None)) + tuple(idx)]
    acc[lost] = np.nan
    y = np.moveaxis(acc, -1, 1)
    if x.dtype.kind in "iu":
        y = np.where(np.isnan(y), 0, y)
        info = np.iinfo(x.dtype)
        return np.clip(np.trunc(y), info.min, info.max).astype(x.dtype)
    return y.astype(x.dtype)


register_op("grid_sample", ["X", "grid"], ["Y"], onnx="GridSample",
            attrs={"align_corners": Attr("int", 0), "mode": Attr("string", "linear"),
                   "padding_mode": Attr("string", "zeros")},
            infer=_grid_sample_infer, reference=_grid_sample_ref,
            doc="Samples X at the normalized grid positions (nearest, N-linear or N-cubic).")


# ---- affine_grid ---------------------------------------------------------------------------------
def _affine_grid_infer(ctx: InferContext):
    theta, size = ctx.types[0], ctx.types[1]
    _bool_attr(ctx, "align_corners")
    if theta.dtype not in _FLOATS:
        ctx.fail(f"theta must be a float tensor, got {theta.dtype}")
    if size.dtype != dtypes.int64 or size.rank not in (None, 1):
        ctx.fail(f"size must be a 1-D int64 tensor, got {size}")
    if theta.shape is not None and len(theta.shape) != 3:
        ctx.fail(f"theta must have shape (N, 2, 3) or (N, 3, 4), got {theta}")
    dims = ctx.const(1)
    if dims is None:
        n = size.shape[0] if size.shape is not None else None
        if not isinstance(n, int):
            return [TensorType(theta.dtype, None)]
        if n not in (4, 5):
            ctx.fail(f"size must have 4 (N, C, H, W) or 5 (N, C, D, H, W) values, got {n}")
        return [TensorType(theta.dtype, (UNKNOWN,) * (n - 1) + (n - 2,))]
    dims = [int(v) for v in dims.reshape(-1)]
    if len(dims) not in (4, 5) or any(d < 0 for d in dims):
        ctx.fail(f"size must be (N, C, H, W) or (N, C, D, H, W) of non-negative values, got {dims}")
    r = len(dims) - 2
    if ctx.attrs.get("align_corners", 0) and 1 in dims[2:]:
        ctx.unsupported(f"align_corners=1 with a spatial size of 1 (size {dims}) has no agreed grid position "
                        f"(ONNX Runtime gives 1, PyTorch 0, ONNX's reference -1)")
    if theta.shape is not None:
        want = (dims[0], r, r + 1)
        if not all(_dims_match(a, b) for a, b in zip(theta.shape, want)):
            ctx.fail(f"theta {theta} must have shape {want} for size {dims}")
    return [TensorType(theta.dtype, (dims[0],) + tuple(dims[2:]) + (r,))]


def base_grid(sizes, align: bool) -> np.ndarray:
    """The (*sizes, r + 1) homogeneous positions (x, y[, z], 1), innermost dim first, in float64."""
    axes = []
    for n in sizes:
        i = np.arange(n, dtype=np.float64)
        if align:
            if n == 1:
                runtime_error("affine_grid: align_corners=1 with a spatial size of 1 has no agreed grid position")
            axes.append(-1 + 2 * i / (n - 1))
        else:
            axes.append((2 * i + 1) / n - 1 if n else i)
    mesh = np.meshgrid(*axes, indexing="ij")  # outermost first
    return np.stack(list(mesh[::-1]) + [np.ones(tuple(sizes))], axis=-1)


def _affine_grid_ref(inputs, attrs):
    theta, size = inputs
    dims = [int(v) for v in np.asarray(size).reshape(-1)]
    r = len(dims) - 2
    if r not in (2, 3) or theta.shape != (dims[0], r, r + 1):
        runtime_error(f"affine_grid: theta {list(theta.shape)} does not match size {dims}")
    grid = base_grid(dims[2:], bool(attrs.get("align_corners", 0)))
    out = np.einsum("...k,nrk->n...r", grid, theta.astype(np.float64))
    return out.astype(theta.dtype)


register_op("affine_grid", ["theta", "size"], ["grid"], onnx="AffineGrid", attrs={"align_corners": Attr("int", 0)},
            infer=_affine_grid_infer, reference=_affine_grid_ref,
            doc="The sampling grid of affine matrices theta over an image of `size`.")


# ---- col2im --------------------------------------------------------------------------------------
def col2im_geometry(image, block, attrs, fail):
    """(strides, dilations, pads, blocks per dim) of Col2Im."""
    nsp = len(image)
    if len(block) != nsp or nsp < 1:
        fail(f"image_shape {image} and block_shape {block} must have one value per spatial dim")
    strides = list(attrs.get("strides") or [1] * nsp)
    dilations = list(attrs.get("dilations") or [1] * nsp)
    pads = list(attrs.get("pads") or [0] * (2 * nsp))
    for name, v, n, lo in (("strides", strides, nsp, 1), ("dilations", dilations, nsp, 1), ("pads", pads, 2 * nsp, 0)):
        if len(v) != n:
            fail(f"{name} has {len(v)} values, expected {n}")
        if any(x < lo for x in v):
            fail(f"{name} values must be >= {lo}, got {v}")
    if any(b < 1 for b in block) or any(i < 0 for i in image):
        fail(f"block_shape {block} must be >= 1 and image_shape {image} >= 0")
    counts = []
    for d in range(nsp):
        span = image[d] + pads[d] + pads[d + nsp] - dilations[d] * (block[d] - 1) - 1
        if span < 0:
            fail(f"the block ({block[d]} dilated by {dilations[d]}) is larger than the padded image "
                 f"({image[d]} + pads) along spatial dim {d}")
        counts.append(span // strides[d] + 1)
    return strides, dilations, pads, counts


def _col2im_infer(ctx: InferContext):
    x = ctx.types[0]
    for i, name in ((1, "image_shape"), (2, "block_shape")):
        t = ctx.types[i]
        if t.dtype != dtypes.int64 or t.rank not in (None, 1):
            ctx.fail(f"{name} must be a 1-D int64 tensor, got {t}")
    if x.rank not in (None, 3):
        ctx.fail(f"input must be 3-D (N, C * prod(block_shape), L), got {x}")
    if x.dtype == dtypes.bool_:
        ctx.fail("bool input is not supported (overlapping blocks are summed)")
    image, block = ctx.const(1), ctx.const(2)
    if image is None or block is None or x.shape is None:
        n = ctx.types[1].shape[0] if ctx.types[1].shape is not None else None
        lead = (x.shape[0], UNKNOWN) if x.shape is not None else (UNKNOWN, UNKNOWN)
        if image is not None:
            return [TensorType(x.dtype, lead + tuple(int(v) for v in image.reshape(-1)))]
        return [TensorType(x.dtype, None if not isinstance(n, int) else lead + (UNKNOWN,) * n)]
    image, block = [int(v) for v in image.reshape(-1)], [int(v) for v in block.reshape(-1)]
    _, _, _, counts = col2im_geometry(image, block, ctx.attrs, ctx.fail)
    k = math.prod(block)
    n, ck, length = x.shape
    if isinstance(ck, int) and ck % k:
        ctx.fail(f"input dim 1 ({ck}) is not a multiple of prod(block_shape) = {k}")
    if isinstance(length, int) and length != math.prod(counts):
        ctx.fail(f"input dim 2 ({length}) must be the number of blocks {' * '.join(map(str, counts))} = "
                 f"{math.prod(counts)}")
    return [TensorType(x.dtype, (n, ck // k if isinstance(ck, int) else UNKNOWN) + tuple(image))]


def _col2im_ref(inputs, attrs):
    x = inputs[0]
    image = [int(v) for v in inputs[1].reshape(-1)]
    block = [int(v) for v in inputs[2].reshape(-1)]
    strides, dilations, pads, counts = col2im_geometry(image, block, attrs,
                                                       lambda m: runtime_error(f"col2im: {m}"))
    nsp = len(image)
    k = math.prod(block)
    n, ck, length = x.shape
    if ck % k or length != math.prod(counts):
        runtime_error(f"col2im: input {list(x.shape)} does not match block_shape {block} and {counts} blocks")
    c = ck // k
    cols = x.reshape((n, c) + tuple(block) + tuple(counts))
    padded = [image[d] + pads[d] + pads[d + nsp] for d in range(nsp)]
    acc = np.zeros((n, c) + tuple(padded), x.dtype)
    for kpos in itertools.product(*[range(b) for b in block]):
        sel = tuple(slice(kpos[d] * dilations[d], kpos[d] * dilations[d] + (counts[d] - 1) * strides[d] + 1, strides[d])
                    for d in range(nsp))
        acc[(slice(None), slice(None)) + sel] += cols[(slice(None), slice(None)) + kpos]
    crop = tuple(slice(pads[d], pads[d] + image[d]) for d in range(nsp))
    return np.ascontiguousarray(acc[(slice(None), slice(None)) + crop])


register_op("col2im", ["input", "image_shape", "block_shape"], ["output"], onnx="Col2Im",
            attrs={"dilations": Attr("ints", None), "pads": Attr("ints", None), "strides": Attr("ints", None)},
            infer=_col2im_infer, reference=_col2im_ref,
            doc="Sums column blocks back into an image (the inverse layout of im2col).")


# ---- deform_conv ---------------------------------------------------------------------------------
def deform_geometry(x_shape, w_shape, attrs, fail):
    """(kernel, strides, dilations, pads, out spatial) of a DeformConv over static shapes."""
    nsp = len(x_shape) - 2
    if nsp < 1 or len(w_shape) != nsp + 2:
        fail(f"X {list(x_shape)} and W {list(w_shape)} must both have rank >= 3 and equal ranks")
    kernel = list(w_shape[2:])
    if attrs.get("kernel_shape") is not None and list(attrs["kernel_shape"]) != kernel:
        fail(f"kernel_shape {attrs['kernel_shape']} does not match W's spatial dims {kernel}")
    strides = list(attrs.get("strides") or [1] * nsp)
    dilations = list(attrs.get("dilations") or [1] * nsp)
    pads = list(attrs.get("pads") or [0] * (2 * nsp))
    for name, v, n, lo in (("strides", strides, nsp, 1), ("dilations", dilations, nsp, 1), ("pads", pads, 2 * nsp, 0)):
        if len(v) != n:
            fail(f"{name} has {len(v)} values, expected {n}")
        if any(x < lo for x in v):
            fail(f"{name} values must be >= {lo}, got {v}")
    out = []
    for d in range(nsp):
        span = x_shape[2 + d] + pads[d] + pads[d + nsp] - dilations[d] * (kernel[d] - 1) - 1
        if span < 0:
            fail(f"the kernel ({kernel[d]} dilated by {dilations[d]}) is larger than the padded input along "
                 f"spatial dim {d}")
        out.append(span // strides[d] + 1)
    return kernel, strides, dilations, pads, out


def _deform_check_groups(c, oc, wc, group, offset_group, fail):
    if group < 1 or offset_group < 1:
        fail(f"group ({group}) and offset_group ({offset_group}) must be >= 1")
    if c % group or oc % group or c // group != wc:
        fail(f"X's {c} channels and W's {oc} x {wc} do not split into group={group}")
    if c % offset_group:
        fail(f"X's {c} channels are not a multiple of offset_group={offset_group}")


def _deform_conv_infer(ctx: InferContext):
    x, w = ctx.types[0], ctx.types[1]
    a = ctx.attrs
    if x.dtype not in _FLOATS:
        ctx.fail(f"X has dtype {x.dtype}; DeformConv takes float tensors")
    for i in range(1, 5):
        if ctx.has_input(i) and ctx.types[i].dtype != x.dtype:
            ctx.fail(f"input {i} ({ctx.types[i].dtype}) must have X's dtype ({x.dtype})")
    if not (x.is_static and w.is_static):
        n = x.rank if x.rank is not None else w.rank
        return [TensorType(x.dtype, None if n is None else (UNKNOWN,) * n)]
    kernel, _, _, _, out = deform_geometry(x.shape, w.shape, a, ctx.fail)
    n, c = x.shape[:2]
    oc = w.shape[0]
    og = a.get("offset_group", 1)
    _deform_check_groups(c, oc, w.shape[1], a.get("group", 1), og, ctx.fail)
    k = math.prod(kernel)
    for i, name, ch in ((2, "offset", og * k * len(kernel)), (4, "mask", og * k)):
        if not ctx.has_input(i) or ctx.types[i].shape is None:
            continue
        want = (n, ch) + tuple(out)
        if not all(_dims_match(p, q) for p, q in zip(ctx.types[i].shape, want)) or ctx.types[i].rank != len(want):
            ctx.fail(f"{name} {ctx.types[i]} must have shape {list(want)}")
    if ctx.has_input(3) and ctx.types[3].shape is not None and not (
            ctx.types[3].rank == 1 and _dims_match(ctx.types[3].shape[0], oc)):
        ctx.fail(f"B must have shape [{oc}], got {ctx.types[3]}")
    return [TensorType(x.dtype, (n, oc) + tuple(out))]


def _deform_conv_ref(inputs, attrs):
    x, w, off = inputs[0], inputs[1], inputs[2]
    b = inputs[3] if len(inputs) > 3 else None
    mask = inputs[4] if len(inputs) > 4 else None
    fail = lambda m: runtime_error(f"deform_conv: {m}")  # noqa: E731
    kernel, strides, dilations, pads, out = deform_geometry(x.shape, w.shape, attrs, fail)
    group, og = attrs.get("group", 1), attrs.get("offset_group", 1)
    n, c, *sizes = x.shape
    oc, nsp = w.shape[0], len(kernel)
    _deform_check_groups(c, oc, w.shape[1], group, og, fail)
    k = math.prod(kernel)
    ct = np.float64
    off = off.astype(ct).reshape((n, og, k, nsp) + tuple(out))
    mask = np.ones((n, og, k) + tuple(out)) if mask is None else mask.astype(ct).reshape((n, og, k) + tuple(out))
    xf = x.astype(ct).reshape((n, og, c // og) + tuple(sizes))
    # cols[n, g, cg, k, *out]: the interpolated input of every tap
    cols = np.zeros((n, og, c // og, k) + tuple(out))
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    for kidx, kpos in enumerate(itertools.product(*[range(kk) for kk in kernel])):
        pos = [grids[d] * strides[d] - pads[d] + kpos[d] * dilations[d] + off[:, :, kidx, d] for d in range(nsp)]
        val = np.zeros((n, og, c // og) + tuple(out))
        base = [np.floor(p) for p in pos]
        for corner in itertools.product((0, 1), repeat=nsp):
            weight = np.ones((n, og) + tuple(out))
            idx, ok = [], np.ones((n, og) + tuple(out), bool)
            for d in range(nsp):
                t = base[d].astype(np.int64) + corner[d]
                frac = pos[d] - base[d]
                weight = weight * (frac if corner[d] else 1 - frac)
                ok &= (t >= 0) & (t < sizes[d])
                idx.append(np.clip(t, 0, sizes[d] - 1))
            weight = np.where(ok, weight, 0.0)
            ni = np.arange(n).reshape((n, 1) + (1,) * nsp)
            gi = np.arange(og).reshape((1, og) + (1,) * nsp)
            vals = xf[(ni, gi, slice(None)) + tuple(idx)]  # (n, og, *out, c/og)
            val += np.moveaxis(vals * weight[..., None], -1, 2)
        cols[:, :, :, kidx] = val * mask[:, :, kidx][:, :, None]
    cols = cols.reshape((n, group, c // group, k) + tuple(out))
    wg = w.astype(ct).reshape((group, oc // group, c // group, k))
    y = np.einsum("ngck...,gock->ngo...", cols, wg).reshape((n, oc) + tuple(out))
    if b is not None:
        y = y + b.astype(ct).reshape((1, oc) + (1,) * nsp)
    return y.astype(x.dtype)


register_op("deform_conv", ["X", "W", "offset", "B?", "mask?"], ["Y"], onnx="DeformConv",
            attrs={"dilations": Attr("ints", None), "group": Attr("int", 1), "kernel_shape": Attr("ints", None),
                   "offset_group": Attr("int", 1), "pads": Attr("ints", None), "strides": Attr("ints", None)},
            infer=_deform_conv_infer, reference=_deform_conv_ref,
            doc="Deformable convolution: taps at learned offsets, N-linear interpolation, optional mask.")
