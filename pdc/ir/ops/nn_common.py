"""Helpers shared by the NN ops (conv, pooling, normalization): window geometry and numerics.

Window geometry follows ONNX: `pads` is [x1_begin, x2_begin, ..., x1_end, x2_end, ...];
`auto_pad` SAME_UPPER / SAME_LOWER pads so that out = ceil(in / stride) (the odd pixel at the
end for SAME_UPPER, at the beginning for SAME_LOWER), VALID pads nothing. With explicit pads,
out = floor((in + pads - dk) / stride) + 1 where dk = (k - 1) * dilation + 1 is the dilated
window extent; pooling's ceil_mode rounds up instead, but drops a last window that would start
in the end padding.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import dtypes
from ..registry import InferContext
from ..types import UNKNOWN

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_HALF = (np.dtype(np.float16), dtypes.bfloat16.np)


def compute_dtype(*arrays) -> np.dtype:
    """The dtype float math runs in: float16/bfloat16 widen to float32, float64 stays."""
    for a in arrays:
        if a is not None and a.dtype == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def is_half(a: np.ndarray) -> bool:
    return a.dtype in _HALF


# ---- attributes -----------------------------------------------------------------------------
def spatial_attrs(attrs: dict, nsp: int) -> tuple[list, list, list]:
    """strides, dilations and pads with their defaults for `nsp` spatial dims."""
    strides = list(attrs.get("strides") or [1] * nsp)
    dilations = list(attrs.get("dilations") or [1] * nsp)
    pads = list(attrs.get("pads") or [0] * (2 * nsp))
    return strides, dilations, pads


def check_window_attrs(ctx: InferContext, nsp: Optional[int], kernel=None) -> None:
    """Verifies lengths and ranges of kernel_shape / strides / dilations / pads / auto_pad."""
    a = ctx.attrs
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        ctx.fail(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got '{auto_pad}'")
    for name, n in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("pads", 2), ("output_padding", 1)):
        v = a.get(name)
        if v is None:
            continue
        if nsp is not None and len(v) != n * nsp:
            ctx.fail(f"{name} has {len(v)} values, expected {n * nsp} for {nsp} spatial dims")
        lo = 0 if name in ("pads", "output_padding") else 1
        if any(x < lo for x in v):
            ctx.fail(f"{name} values must be >= {lo}, got {v}")
    if kernel is not None and a.get("kernel_shape") is not None and list(a["kernel_shape"]) != list(kernel):
        if all(isinstance(k, int) for k in kernel):
            ctx.fail(f"kernel_shape {a['kernel_shape']} does not match the weight's spatial dims {list(kernel)}")
    if auto_pad != "NOTSET" and any(a.get("pads") or []):
        ctx.fail(f"pads {a['pads']} cannot be combined with auto_pad={auto_pad}")


def _dim_out(size, k, s, d, pb, pe, auto_pad, ceil_mode):
    dk = (k - 1) * d + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // s)
    if auto_pad == "VALID":
        return (size - dk) // s + 1 if size >= dk else None
    span = size + pb + pe - dk
    if span < 0:
        return None
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + pb:  # the last window would start in the end padding
        out -= 1
    return out


def window_geometry(in_sp, kernel, strides, dilations, pads, auto_pad, ceil_mode=0, ctx=None):
    """(out_sp, pads_begin) for static spatial sizes; out dims are "?" where a size is not known.

    pads_begin is None unless every size is known. Raises through ctx.fail (or ValueError)
    when the padded input is smaller than the window.
    """
    nsp = len(kernel)
    out, begin = [], []
    for i in range(nsp):
        size = in_sp[i]
        if not isinstance(size, int) or not isinstance(kernel[i], int):
            out.append(UNKNOWN)
            begin = None
            continue
        pb, pe = pads[i], pads[i + nsp]
        o = _dim_out(size, kernel[i], strides[i], dilations[i], pb, pe, auto_pad, ceil_mode)
        if o is None or o < 1:
            msg = (f"the window ({kernel[i]} dilated by {dilations[i]}) is larger than the padded input "
                   f"({size} + pads) along spatial axis {i}")
            if ctx is not None:
                ctx.fail(msg)
            raise ValueError(msg)
        out.append(o)
        if begin is None:
            continue
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, (o - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        elif auto_pad == "VALID":
            begin.append(0)
        else:
            begin.append(pb)
    return out, begin


def resolve_window(x_shape, kernel, attrs, ceil_mode=0):
    """Run-time geometry: (strides, dilations, pads_begin, out_sp, pads_for_counting).

    pads_for_counting are the (begin, end) pads the window may legitimately cover (explicit or
    SAME pads, not the extra reach of ceil_mode); AveragePool's count_include_pad counts them.
    """
    nsp = len(kernel)
    strides, dilations, pads = spatial_attrs(attrs, nsp)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    out, begin = window_geometry(list(x_shape[2:]), list(kernel), strides, dilations, pads, auto_pad, ceil_mode)
    if auto_pad == "NOTSET":
        counted = [(pads[i], pads[i + nsp]) for i in range(nsp)]
    elif auto_pad == "VALID":
        counted = [(0, 0)] * nsp
    else:
        counted = []
        for i in range(nsp):
            total = max(0, (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - x_shape[2 + i])
            counted.append((begin[i], total - begin[i]))
    return strides, dilations, begin, out, counted


# ---- sliding windows ------------------------------------------------------------------------
def extract_windows(x: np.ndarray, kernel, strides, dilations, begin, out, fill=0) -> np.ndarray:
    """A (N, C, *out, *kernel) view of the windows of x (N, C, *spatial), padded with `fill`."""
    nsp = len(kernel)
    pad_width = [(0, 0), (0, 0)]
    crop = [slice(None), slice(None)]
    for i in range(nsp):
        need = (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
        end = need - begin[i] - x.shape[2 + i]  # negative: the windows never reach the tail
        pad_width.append((begin[i], max(end, 0)))
        crop.append(slice(0, need))
    if any(p != (0, 0) for p in pad_width):
        x = np.pad(x, pad_width, mode="constant", constant_values=fill)
    x = x[tuple(crop)]
    extents = [(kernel[i] - 1) * dilations[i] + 1 for i in range(nsp)]
    v = sliding_window_view(x, extents, axis=tuple(range(2, 2 + nsp)))
    sel = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides) \
        + tuple(slice(None, None, d) for d in dilations)
    return v[sel]


def window_counts(in_sp, kernel, strides, dilations, begin, out, valid) -> np.ndarray:
    """How many taps of each window fall inside [lo, hi) per axis, multiplied over the axes.

    valid[i] = (lo, hi) in input coordinates. Returns an array of shape `out`.
    """
    total = np.ones((), np.int64)
    for i in range(len(kernel)):
        starts = np.arange(out[i]) * strides[i] - begin[i]
        taps = starts[:, None] + np.arange(kernel[i])[None, :] * dilations[i]
        lo, hi = valid[i]
        cnt = ((taps >= lo) & (taps < hi)).sum(axis=1)
        total = np.multiply.outer(total, cnt)
    return total


def fit_region(y: np.ndarray, begin, size) -> np.ndarray:
    """y[..., begin:begin+size] over the trailing len(begin) axes, zero-filled where out of range."""
    nsp = len(begin)
    lead = y.ndim - nsp
    pad_width = [(0, 0)] * lead
    sel = [slice(None)] * lead
    for i in range(nsp):
        n = y.shape[lead + i]
        before = max(0, -begin[i])
        after = max(0, begin[i] + size[i] - n)
        pad_width.append((before, after))
        start = begin[i] + before
        sel.append(slice(start, start + size[i]))
    if any(p != (0, 0) for p in pad_width):
        y = np.pad(y, pad_width)
    return y[tuple(sel)]


def prod(xs) -> int:
    return math.prod(xs)
