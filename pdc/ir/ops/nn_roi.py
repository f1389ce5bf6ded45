"""Region-of-interest pooling: RoiAlign (opset 16 form) and MaxRoiPool.

RoiAlign samples each output bin on a regular grid (sampling_ratio points per axis, or
ceil(roi_size / output_size) when it is 0) with bilinear interpolation, then averages the
samples (mode=avg) or takes the largest weighted corner value over them (mode=max, the
behaviour ONNX's reference and ONNX Runtime share). A sample more than one pixel outside the
image contributes 0. coordinate_transformation_mode=half_pixel shifts the ROI by -0.5 pixel;
output_half_pixel (the only behaviour before opset 16) does not, and makes the ROI at least
1x1. MaxRoiPool follows Caffe: ROI corners rounded to pixels, bins of roi_size / pooled_size.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .nn_common import compute_dtype

_FLOATS = (dtypes.float16, dtypes.float32, dtypes.float64, dtypes.bfloat16)


def _roi_count(ctx: InferContext, i: int, width: int):
    t = ctx.types[i]
    if t.dtype not in _FLOATS:
        ctx.fail(f"rois must be a float tensor, got {t.dtype}")
    if t.shape is None:
        return UNKNOWN
    if len(t.shape) != 2 or (isinstance(t.shape[1], int) and t.shape[1] != width):
        ctx.fail(f"rois must have shape [num_rois, {width}], got {list(t.shape)}")
    return t.shape[0]


def _channels(ctx: InferContext):
    x = ctx.types[0]
    if x.dtype not in _FLOATS:
        ctx.fail(f"X must be a float tensor, got {x.dtype}")
    if x.shape is None:
        return UNKNOWN
    if len(x.shape) != 4:
        ctx.fail(f"X must be 4-D (N, C, H, W), got shape {list(x.shape)}")
    return x.shape[1]


# ---- RoiAlign --------------------------------------------------------------------------------
def _roi_align_infer(ctx: InferContext):
    a = ctx.attrs
    if a.get("mode", "avg") not in ("avg", "max"):
        ctx.fail(f"mode must be 'avg' or 'max', got '{a['mode']}'")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if ctm not in ("half_pixel", "output_half_pixel"):
        ctx.fail(f"coordinate_transformation_mode must be half_pixel or output_half_pixel, got '{ctm}'")
    for k in ("output_height", "output_width"):
        if a.get(k, 1) < 1:
            ctx.fail(f"{k} must be >= 1, got {a[k]}")
    if a.get("sampling_ratio", 0) < 0:
        ctx.fail(f"sampling_ratio must be >= 0, got {a['sampling_ratio']}")
    c = _channels(ctx)
    n = _roi_count(ctx, 1, 4)
    if ctx.types[2].dtype != dtypes.int64:
        ctx.fail(f"batch_indices must be int64, got {ctx.types[2].dtype}")
    return [TensorType(ctx.types[0].dtype, (n, c, a.get("output_height", 1), a.get("output_width", 1)))]


def _axis_samples(start, bin_size, out, grid, size):
    """Bilinear taps along one axis: (low, high, weight_low, weight_high), each of length out*grid."""
    pos = start + np.arange(out)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid
    pos = pos.reshape(-1)
    outside = (pos < -1.0) | (pos > size)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos).astype(np.int64)
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    frac = np.where(at_edge, 0.0, pos - low)
    w_low = np.where(outside, 0.0, 1.0 - frac)
    w_high = np.where(outside, 0.0, frac)
    return low, high, w_low, w_high


def _roi_align_reference(inputs, attrs):
    x, rois, batch = inputs[:3]
    acc = compute_dtype(x)
    oh, ow = attrs.get("output_height", 1), attrs.get("output_width", 1)
    ratio = attrs.get("sampling_ratio", 0)
    scale = attrs.get("spatial_scale", 1.0)
    half_pixel = attrs.get("coordinate_transformation_mode", "half_pixel") == "half_pixel"
    use_max = attrs.get("mode", "avg") == "max"
    h, w = x.shape[2:]
    out = np.zeros((rois.shape[0], x.shape[1], oh, ow), acc)
    offset = 0.5 if half_pixel else 0.0
    for r in range(rois.shape[0]):
        x1, y1, x2, y2 = (float(v) * scale - offset for v in rois[r])
        rw, rh = x2 - x1, y2 - y1
        if not half_pixel:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = ratio if ratio > 0 else max(math.ceil(rh / oh), 0)
        gw = ratio if ratio > 0 else max(math.ceil(rw / ow), 0)
        if gh == 0 or gw == 0:
            continue  # no samples: the bin stays 0
        ylo, yhi, wyl, wyh = _axis_samples(y1, rh / oh, oh, gh, h)
        xlo, xhi, wxl, wxh = _axis_samples(x1, rw / ow, ow, gw, w)
        img = x[int(batch[r])].astype(acc, copy=False)
        corners = [img[:, yi[:, None], xi[None, :]] * (wy[:, None] * wx[None, :]).astype(acc)
                   for yi, wy in ((ylo, wyl), (yhi, wyh)) for xi, wx in ((xlo, wxl), (xhi, wxh))]
        if use_max:
            v = np.maximum.reduce(corners).reshape(-1, oh, gh, ow, gw).max(axis=(2, 4))
        else:
            v = sum(corners).reshape(-1, oh, gh, ow, gw).sum(axis=(2, 4)) / (gh * gw)
        out[r] = v
    return out.astype(x.dtype)


register_op("roi_align", ["X", "rois", "batch_indices"], ["Y"], onnx="RoiAlign",
            attrs={"coordinate_transformation_mode": Attr("string", "half_pixel"), "mode": Attr("string", "avg"),
                   "output_height": Attr("int", 1), "output_width": Attr("int", 1),
                   "sampling_ratio": Attr("int", 0), "spatial_scale": Attr("float", 1.0)},
            infer=_roi_align_infer, reference=_roi_align_reference,
            doc="ONNX RoiAlign: bilinear ROI pooling to output_height x output_width bins (avg or max).")


# ---- MaxRoiPool ------------------------------------------------------------------------------
def _max_roi_pool_infer(ctx: InferContext):
    ps = ctx.attrs["pooled_shape"]
    if len(ps) != 2 or min(ps) < 1:
        ctx.fail(f"pooled_shape must be two positive ints, got {ps}")
    c = _channels(ctx)
    n = _roi_count(ctx, 1, 5)
    return [TensorType(ctx.types[0].dtype, (n, c, *ps))]


def _round_half_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def _max_roi_pool_reference(inputs, attrs):
    x, rois = inputs[:2]
    ph, pw = attrs["pooled_shape"]
    scale = attrs.get("spatial_scale", 1.0)
    h, w = x.shape[2:]
    out = np.zeros((rois.shape[0], x.shape[1], ph, pw), x.dtype)
    for r in range(rois.shape[0]):
        b = int(rois[r, 0])
        x1, y1, x2, y2 = (_round_half_away(float(v) * scale) for v in rois[r, 1:])
        bin_h = max(y2 - y1 + 1, 1) / ph
        bin_w = max(x2 - x1 + 1, 1) / pw
        for i in range(ph):  # a handful of bins per ROI
            hs = min(max(math.floor(i * bin_h) + y1, 0), h)
            he = min(max(math.ceil((i + 1) * bin_h) + y1, 0), h)
            for j in range(pw):
                ws = min(max(math.floor(j * bin_w) + x1, 0), w)
                we = min(max(math.ceil((j + 1) * bin_w) + x1, 0), w)
                if he > hs and we > ws:
                    out[r, :, i, j] = x[b, :, hs:he, ws:we].max(axis=(1, 2))
    return out


register_op("max_roi_pool", ["X", "rois"], ["Y"], onnx="MaxRoiPool",
            attrs={"pooled_shape": Attr("ints", REQUIRED), "spatial_scale": Attr("float", 1.0)},
            infer=_max_roi_pool_infer, reference=_max_roi_pool_reference,
            doc="ONNX MaxRoiPool: max over pooled_shape bins of each ROI [batch, x1, y1, x2, y2].")
