"""Resize (nearest / N-linear / N-cubic interpolation) and center_crop_pad.

Resize is separable: the reference resizes one axis at a time. Along an axis, every output
coordinate x is mapped to a source coordinate x_ori (coordinate_transformation_mode); nearest picks
one source index (nearest_mode), linear and cubic weigh the source indices around x_ori with a
kernel k((i - x_ori) * s), where s = min(scale, 1) with antialias (the filter stretched by 1/scale
when downsampling) and 1 otherwise. Source indices outside the axis take the edge value, or with
exclude_outside get weight 0 (the rest renormalized). Coordinates are evaluated exactly (rationals;
with `sizes` the scale is the fraction out/in) and rounded once to float64, so coordinates that are
mathematically integers or halves stay exact (nearest rounding depends on it).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN
from .tensor import known_length, norm_axes, runtime_error

MODES = ("nearest", "linear", "cubic")
COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _check_choice(ctx: InferContext, name: str, choices):
    v = ctx.attrs.get(name)
    if v is not None and v not in choices:
        ctx.unsupported(f"{name} '{v}' is not supported (expected one of {', '.join(choices)})")


def _resize_verify(ctx: InferContext):
    _check_choice(ctx, "mode", MODES)
    _check_choice(ctx, "coordinate_transformation_mode", COORD_MODES)
    _check_choice(ctx, "nearest_mode", NEAREST_MODES)
    _check_choice(ctx, "keep_aspect_ratio_policy", ASPECT_POLICIES)
    if ctx.attrs.get("antialias", 0) not in (0, 1):
        ctx.fail(f"antialias must be 0 or 1, got {ctx.attrs['antialias']}")
    if ctx.attrs.get("exclude_outside", 0) not in (0, 1):
        ctx.fail(f"exclude_outside must be 0 or 1, got {ctx.attrs['exclude_outside']}")


def _present(arr):
    """Treats an empty scales/sizes/roi tensor as absent (opset 11 writes empty ones)."""
    return arr is not None and np.asarray(arr).size > 0


def plan_sizes(in_shape, axes, scales, sizes, policy):
    """Per resized axis: (output length, scale); the scale is a Fraction when it comes from sizes."""
    in_len = [in_shape[a] for a in axes]
    if _present(sizes):
        sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(sizes) != len(axes):
            runtime_error(f"resize: sizes has {len(sizes)} entries for {len(axes)} axes")
        if any(n <= 0 for n in in_len) or any(o < 0 for o in sizes):
            runtime_error(f"resize: cannot resize axes of lengths {in_len} to sizes {sizes}")
        ratios = [Fraction(o, i) for o, i in zip(sizes, in_len)]
        if policy == "stretch":
            return list(zip(sizes, ratios))
        s = min(ratios) if policy == "not_larger" else max(ratios)
        return [(math.floor(s * i + Fraction(1, 2)), s) for i in in_len]  # round half up
    scales = [float(v) for v in np.asarray(scales, np.float64).reshape(-1)]
    if len(scales) != len(axes):
        runtime_error(f"resize: scales has {len(scales)} entries for {len(axes)} axes")
    if any(not s > 0 for s in scales):
        runtime_error(f"resize: scales {scales} must be positive")
    return [(int(math.floor(s * i)), s) for s, i in zip(scales, in_len)]


def _resize_axes(attrs, rank, ctx=None):
    axes = attrs.get("axes")
    return list(range(rank)) if axes is None else norm_axes(axes, rank, ctx)


def _resize_infer(ctx: InferContext):
    _resize_verify(ctx)
    t = ctx.types[0]
    scales = ctx.const(2) if ctx.has_input(2) else None
    sizes = ctx.const(3) if ctx.has_input(3) else None
    # an input of static length 0 is absent; one of unknown length may be either
    length = {i: known_length(ctx, i) if ctx.has_input(i) else 0 for i in (2, 3)}
    if all(n == 0 for n in length.values()) or all(n for n in length.values()):
        ctx.fail("needs exactly one of scales and sizes")
    if t.shape is None:
        return [t]
    axes = _resize_axes(ctx.attrs, t.rank, ctx)
    for i, n in length.items():
        if n and n != len(axes):
            ctx.fail(f"{'scales' if i == 2 else 'sizes'} has {n} entries for {len(axes)} axes")
    out = list(t.shape)
    policy = ctx.attrs.get("keep_aspect_ratio_policy", "stretch")
    if _present(sizes) and (policy == "stretch" or all(isinstance(t.shape[a], int) for a in axes)):
        if policy == "stretch":
            for a, v in zip(axes, sizes.reshape(-1)):
                out[a] = int(v)
        else:
            for a, (o, _) in zip(axes, plan_sizes(t.shape, axes, None, sizes, policy)):
                out[a] = o
    elif _present(scales):
        for a, s in zip(axes, np.asarray(scales, np.float64).reshape(-1)):
            d = t.shape[a]
            out[a] = int(math.floor(s * d)) if isinstance(d, int) else (d if s == 1 else UNKNOWN)
    else:
        for a in axes:
            out[a] = UNKNOWN
    return [t.with_shape(out)]


# ---------------------------------------------------------------------------------------------
def source_coords(mode: str, out_len: int, in_len: int, scale, roi=(0.0, 1.0)) -> np.ndarray:
    """x_ori for every output index along one axis, evaluated exactly (in rationals: a float scale
    or roi is the exact value of its binary float) and rounded once to float64. A coordinate that
    is mathematically an integer or a half therefore stays one, which nearest rounding, the window
    of exclude_outside and the crop box of tf_crop_and_resize depend on (the float formulas miss
    them: half_pixel_symmetric's offset 3.5 * (1 - 3 / 3.5) is 0.49999999999999994)."""
    s = scale if isinstance(scale, Fraction) else Fraction(float(scale))
    box = tuple(Fraction(float(v)) for v in roi)
    return np.array([float(_source_coord(mode, Fraction(x), out_len, in_len, s, box)) for x in range(out_len)],
                    dtype=np.float64)


def _source_coord(mode: str, x: Fraction, out_len: int, in_len: int, s: Fraction, box) -> Fraction:
    """The spec's x_original of output index x (exact arithmetic)."""
    out_w = s * in_len  # the fractional target length ONNX's formulas use
    half = Fraction(1, 2)
    if mode == "half_pixel":
        return (x + half) / s - half
    if mode == "half_pixel_symmetric":
        return in_len * half * (1 - out_len / out_w) + (x + half) / s - half
    if mode == "pytorch_half_pixel":
        return (x + half) / s - half if out_len > 1 else Fraction(0)
    if mode == "align_corners":
        return Fraction(0) if out_w == 1 else x * (in_len - 1) / (out_w - 1)
    if mode == "asymmetric":
        return x / s
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / s
    start, end = box
    if out_w == 1:
        return (start + end) * half * (in_len - 1)
    return start * (in_len - 1) + x * (end - start) * (in_len - 1) / (out_w - 1)


def nearest_index(x_ori: np.ndarray, mode: str, in_len: int) -> np.ndarray:
    if mode == "round_prefer_floor":
        i = np.ceil(x_ori - 0.5)
    elif mode == "round_prefer_ceil":
        i = np.floor(x_ori + 0.5)
    elif mode == "floor":
        i = np.floor(x_ori)
    else:
        i = np.ceil(x_ori)
    return np.clip(i, 0, in_len - 1).astype(np.intp)


def _linear_kernel(d):
    return np.clip(1 - np.abs(d), 0, None)


def _cubic_kernel(a: float):
    def k(d):
        d = np.abs(d)
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        return np.where(d <= 1, near, np.where(d < 2, far, 0.0))
    return k


def interpolation_matrix(x_ori, in_len, kernel, support, stretch, exclude_outside, normalize) -> np.ndarray:
    """W[out, in]: the weight of each source index for each output index along one axis."""
    reach = math.ceil(support / stretch)
    base = np.floor(x_ori).astype(np.int64)
    idx = base[:, None] + np.arange(1 - reach, reach + 1)[None, :]
    w = kernel((idx - x_ori[:, None]) * stretch)
    if normalize:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    m = np.zeros((len(x_ori), in_len))
    rows = np.broadcast_to(np.arange(len(x_ori))[:, None], idx.shape)
    np.add.at(m, (rows, np.clip(idx, 0, in_len - 1)), w)
    return m


def _cast_like(y: np.ndarray, dt) -> np.ndarray:
    """Integer outputs truncate toward zero (as ONNX Runtime does) and saturate."""
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return np.clip(np.trunc(y), info.min, info.max).astype(dt)
    return y.astype(dt)


def _resize_ref(inputs, attrs):
    x = inputs[0]
    roi, scales, sizes = (inputs[i] if len(inputs) > i else None for i in (1, 2, 3))
    if _present(scales) == _present(sizes):
        runtime_error("resize: needs exactly one of scales and sizes")
    axes = _resize_axes(attrs, x.ndim)
    plan = plan_sizes(x.shape, axes, scales, sizes, attrs.get("keep_aspect_ratio_policy", "stretch"))
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    mode = attrs.get("mode", "nearest")
    roi = np.asarray(roi, np.float64).reshape(-1) if _present(roi) else None
    if coord == "tf_crop_and_resize" and (roi is None or roi.size != 2 * len(axes)):
        runtime_error(f"resize: tf_crop_and_resize needs a roi of {2 * len(axes)} values")
    y = x if mode == "nearest" else x.astype(np.float64)
    for j, (a, (out_len, scale)) in enumerate(zip(axes, plan)):
        in_len = x.shape[a]
        box = (0.0, 1.0) if roi is None else (roi[j], roi[j + len(axes)])
        if out_len == in_len and scale == 1 and box == (0.0, 1.0):
            continue  # identity along this axis in every mode
        if out_len == 0:
            y = np.take(y, np.zeros(0, np.intp), axis=a)
            continue
        if in_len == 0:
            runtime_error(f"resize: cannot resize empty axis {a} to {out_len}")
        x_ori = source_coords(coord, out_len, in_len, scale, box)
        if mode == "nearest":
            y = np.take(y, nearest_index(x_ori, attrs.get("nearest_mode", "round_prefer_floor"), in_len), axis=a)
        else:
            antialias = attrs.get("antialias", 0)
            stretch = min(float(scale), 1.0) if antialias else 1.0
            if mode == "linear":
                kernel, support = _linear_kernel, 1
            else:
                kernel, support = _cubic_kernel(attrs.get("cubic_coeff_a", -0.75)), 2
            w = interpolation_matrix(x_ori, in_len, kernel, support, stretch,
                                     attrs.get("exclude_outside", 0), normalize=bool(antialias))
            y = np.moveaxis(np.tensordot(w, y, axes=([1], [a])), 0, a)
        if coord == "tf_crop_and_resize":
            outside = (x_ori < 0) | (x_ori > in_len - 1)
            if outside.any():
                y = y.astype(np.float64) if mode == "nearest" else y
                shape = [1] * y.ndim
                shape[a] = out_len
                y = np.where(outside.reshape(shape), attrs.get("extrapolation_value", 0.0), y)
    return _cast_like(np.asarray(y), x.dtype)


register_op("resize", ["X", "roi?", "scales?", "sizes?"], ["Y"], onnx="Resize",
            attrs={"antialias": Attr("int", 0), "axes": Attr("ints", None),
                   "coordinate_transformation_mode": Attr("string", "half_pixel"),
                   "cubic_coeff_a": Attr("float", -0.75), "exclude_outside": Attr("int", 0),
                   "extrapolation_value": Attr("float", 0.0),
                   "keep_aspect_ratio_policy": Attr("string", "stretch"),
                   "mode": Attr("string", "nearest"), "nearest_mode": Attr("string", "round_prefer_floor")},
            verify=_resize_verify, infer=_resize_infer, reference=_resize_ref,
            doc="Resizes by scales or to sizes with nearest, N-linear or N-cubic interpolation.")


# ---------------------------------------------------------------------------------------------
def _ccp_axes(attrs, rank, ctx=None):
    axes = attrs.get("axes")
    return list(range(rank)) if axes is None else norm_axes(axes, rank, ctx)


def _center_crop_pad_infer(ctx: InferContext):
    t = ctx.types[0]
    shape = ctx.const(1)
    if t.shape is None:
        return [t]
    axes = _ccp_axes(ctx.attrs, t.rank, ctx)
    n = known_length(ctx, 1)
    if n is not None and n != len(axes):
        ctx.fail(f"shape has {n} entries for {len(axes)} axes")
    out = list(t.shape)
    for i, a in enumerate(axes):
        out[a] = UNKNOWN if shape is None else int(shape.reshape(-1)[i])
    return [t.with_shape(out)]


def _center_crop_pad_ref(inputs, attrs):
    x, shape = inputs[0], [int(v) for v in inputs[1].reshape(-1)]
    axes = _ccp_axes(attrs, x.ndim)
    if len(shape) != len(axes) or any(s < 0 for s in shape):
        runtime_error(f"center_crop_pad: shape {shape} does not fit axes {axes}")
    out_shape, src, dst = list(x.shape), [slice(None)] * x.ndim, [slice(None)] * x.ndim
    for a, s in zip(axes, shape):
        d = x.shape[a]
        out_shape[a] = s
        if s < d:  # crop: the extra element of an odd difference goes to the end
            src[a] = slice((d - s) // 2, (d - s) // 2 + s)
        elif s > d:
            dst[a] = slice((s - d) // 2, (s - d) // 2 + d)
    out = np.zeros(out_shape, x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


register_op("center_crop_pad", ["input_data", "shape"], ["output_data"], onnx="CenterCropPad",
            attrs={"axes": Attr("ints", None)}, infer=_center_crop_pad_infer, reference=_center_crop_pad_ref,
            doc="Crops or zero-pads each of `axes` to `shape`, keeping the input centred.")
