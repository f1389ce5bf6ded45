"""Convolutions: Conv, ConvTranspose and ConvInteger (1-D, 2-D and 3-D, grouped, dilated, strided).

The references lower to one batched matrix product per call: the input windows are gathered
with sliding_window_view (im2col), grouped as (group, rows, Cg*k) and multiplied with the
weights; ConvTranspose multiplies first and scatter-adds each kernel tap into the output
(col2im), one strided slice per tap. float16/bfloat16 accumulate in float32.
"""
from __future__ import annotations

import itertools

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .nn_common import (check_window_attrs, compute_dtype, extract_windows, fit_region, prod, resolve_window,
                        spatial_attrs, window_geometry)

_CONV_ATTRS = {
    "auto_pad": Attr("string", "NOTSET"),
    "dilations": Attr("ints", None),
    "group": Attr("int", 1),
    "kernel_shape": Attr("ints", None),
    "pads": Attr("ints", None),
    "strides": Attr("ints", None),
}


def _rank_of(ctx: InferContext) -> int | None:
    """The input rank from X, W or kernel_shape, whichever is known."""
    for i in (0, 1):
        t = ctx.types[i]
        if t is not None and t.shape is not None:
            return len(t.shape)
    ks = ctx.attrs.get("kernel_shape")
    return None if ks is None else len(ks) + 2


def _conv_infer_shape(ctx: InferContext):
    """Output shape of Conv / ConvInteger; shared checks on X, W and group."""
    x, w = ctx.types[0], ctx.types[1]
    rank = _rank_of(ctx)
    if rank is not None and rank < 3:
        ctx.fail(f"input must have rank >= 3 (N, C, spatial...), got rank {rank}")
    for t, what in ((x, "X"), (w, "W")):
        if t.shape is not None and rank is not None and len(t.shape) != rank:
            ctx.fail(f"{what} has rank {len(t.shape)}, expected {rank}")
    nsp = None if rank is None else rank - 2
    kernel = None
    if w.shape is not None:
        kernel = list(w.shape[2:])
    elif ctx.attrs.get("kernel_shape") is not None:
        kernel = list(ctx.attrs["kernel_shape"])
    check_window_attrs(ctx, nsp, kernel)
    group = ctx.attrs.get("group", 1)
    if group < 1:
        ctx.fail(f"group must be >= 1, got {group}")
    if x.shape is not None and w.shape is not None:
        c, wc = x.shape[1], w.shape[1]
        if isinstance(c, int) and isinstance(wc, int) and c != wc * group:
            ctx.fail(f"X has {c} channels but W expects {wc} x group {group} = {wc * group}")
    m = w.shape[0] if w.shape is not None else UNKNOWN
    if isinstance(m, int) and m % group:
        ctx.fail(f"W has {m} output channels, not divisible by group {group}")
    if rank is None:
        return None
    if x.shape is None or kernel is None:
        return (UNKNOWN if x.shape is None else x.shape[0], m) + (UNKNOWN,) * nsp
    strides, dilations, pads = spatial_attrs(ctx.attrs, nsp)
    out, _ = window_geometry(list(x.shape[2:]), kernel, strides, dilations, pads,
                             ctx.attrs.get("auto_pad", "NOTSET"), 0, ctx)
    return (x.shape[0], m, *out)


def _conv_infer(ctx: InferContext):
    x, w = ctx.types[0], ctx.types[1]
    if not x.dtype.is_float:
        ctx.fail(f"X must be a float tensor, got {x.dtype}")
    if w.dtype != x.dtype:
        ctx.fail(f"W has dtype {w.dtype}, X has {x.dtype}")
    shape = _conv_infer_shape(ctx)
    if ctx.has_input(2):
        b = ctx.types[2]
        if b.dtype != x.dtype:
            ctx.fail(f"B has dtype {b.dtype}, X has {x.dtype}")
        if b.shape is not None:
            m = w.shape[0] if w.shape is not None else UNKNOWN
            if len(b.shape) != 1 or (isinstance(m, int) and isinstance(b.shape[0], int) and b.shape[0] != m):
                ctx.fail(f"B must have shape [{m}], got {list(b.shape)}")
    return [TensorType(x.dtype, shape)]


def conv_nd(x: np.ndarray, w: np.ndarray, group: int, attrs: dict, acc) -> np.ndarray:
    """Grouped N-d correlation of x (N, C, *S) with w (M, C/group, *K), computed in dtype `acc`."""
    kernel = list(w.shape[2:])
    strides, dilations, begin, out, _ = resolve_window(x.shape, kernel, attrs)
    n, c = x.shape[:2]
    m, nsp = w.shape[0], len(kernel)
    cg, mg = c // group, m // group
    if group == 1 and prod(kernel) == 1 and list(out) == list(x.shape[2:]) and not any(begin):
        # pointwise (1x1, stride 1, unpadded): one product, no window gathering
        xm = x.reshape(n, c, -1).astype(acc, copy=False)
        return np.matmul(w.reshape(m, c).astype(acc, copy=False), xm).reshape(n, m, *out)
    win = extract_windows(x, kernel, strides, dilations, begin, out, 0)  # (N, C, *O, *K)
    if cg == 1 and group > 1:
        # depthwise: a multiply-add per kernel tap beats gathering tiny matrices
        y = np.zeros((n, group, mg, *out), acc)
        wd = w.reshape(group, mg, -1).astype(acc, copy=False)
        bshape = (1, group, mg) + (1,) * nsp
        for t, tap in enumerate(itertools.product(*(range(k) for k in kernel))):
            y += win[(slice(None), slice(None), None, Ellipsis) + tap] * wd[:, :, t].reshape(bshape)
        return y.reshape(n, m, *out)
    win = win.reshape(n, group, cg, *out, *kernel)
    # rows: (N, *O); columns: (Cg, *K) -- one matrix per group
    perm = [1, 0, *range(3, 3 + nsp), 2, *range(3 + nsp, 3 + 2 * nsp)]
    cols = np.ascontiguousarray(win.transpose(perm), dtype=acc).reshape(group, n * prod(out), cg * prod(kernel))
    wm = w.reshape(group, mg, cg * prod(kernel)).astype(acc, copy=False).transpose(0, 2, 1)
    y = np.matmul(cols, wm)  # (G, N*O, Mg)
    y = y.reshape(group, n, prod(out), mg).transpose(1, 0, 3, 2).reshape(n, m, *out)
    return y


def _conv_reference(inputs, attrs):
    x, w, b = (inputs + [None])[:3]
    acc = compute_dtype(x)
    y = conv_nd(x, w, attrs.get("group", 1), attrs, acc)
    if b is not None:
        y += b.astype(acc).reshape((1, -1) + (1,) * (y.ndim - 2))
    return y.astype(x.dtype)


register_op("conv", ["X", "W", "B?"], ["Y"], onnx="Conv", attrs=dict(_CONV_ATTRS),
            infer=_conv_infer, reference=_conv_reference,
            doc="ONNX Conv: grouped N-d convolution (cross-correlation) with optional bias.")


# ---- ConvInteger -----------------------------------------------------------------------------
def _conv_integer_infer(ctx: InferContext):
    x, w = ctx.types[0], ctx.types[1]
    for i, t in enumerate(ctx.types):
        if t is not None and t.dtype not in (dtypes.int8, dtypes.uint8):
            ctx.fail(f"input {i} must be int8 or uint8, got {t.dtype}")
    if ctx.has_input(2) and ctx.types[2].dtype != x.dtype:
        ctx.fail("x_zero_point must have the dtype of x")
    if ctx.has_input(3) and ctx.types[3].dtype != w.dtype:
        ctx.fail("w_zero_point must have the dtype of w")
    if ctx.has_input(2) and ctx.types[2].shape is not None and prod(
            d if isinstance(d, int) else 2 for d in ctx.types[2].shape) != 1:
        ctx.unsupported("x_zero_point must be a scalar (per-tensor)")
    return [TensorType(dtypes.int32, _conv_infer_shape(ctx))]


def _conv_integer_reference(inputs, attrs):
    x, w, xz, wz = (inputs + [None] * 4)[:4]
    # subtracting the zero points first makes the implicit zero padding equal to x_zero_point
    xs = x.astype(np.float64) - (0 if xz is None else float(xz.reshape(-1)[0]))
    ws = w.astype(np.float64)
    if wz is not None:
        wz = wz.astype(np.float64).reshape(-1)
        ws = ws - (wz.reshape((-1,) + (1,) * (w.ndim - 1)) if wz.size > 1 else wz[0])
    y = conv_nd(xs, ws, attrs.get("group", 1), attrs, np.float64)  # exact: products < 2^16, sums < 2^53
    return np.rint(y).astype(np.int32)


register_op("conv_integer", ["x", "w", "x_zero_point?", "w_zero_point?"], ["y"], onnx="ConvInteger",
            attrs=dict(_CONV_ATTRS), infer=_conv_integer_infer, reference=_conv_integer_reference,
            doc="ONNX ConvInteger: 8-bit convolution with zero points, int32 result.")


# ---- ConvTranspose ---------------------------------------------------------------------------
_CONV_T_ATTRS = dict(_CONV_ATTRS, output_padding=Attr("ints", None), output_shape=Attr("ints", None))


def conv_transpose_geometry(in_sp, kernel, attrs):
    """(out_sp, pads_begin) of ConvTranspose; dims are "?" where a size is unknown."""
    nsp = len(kernel)
    strides, dilations, pads = spatial_attrs(attrs, nsp)
    out_pad = list(attrs.get("output_padding") or [0] * nsp)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    out_shape = attrs.get("output_shape")
    if out_shape is not None:
        out_shape = list(out_shape)[-nsp:]  # a few exporters include N and C
    out, begin = [], []
    for i in range(nsp):
        size, k = in_sp[i], kernel[i]
        if not isinstance(size, int) or not isinstance(k, int):
            out.append(UNKNOWN if out_shape is None else out_shape[i])
            begin.append(None)
            continue
        full = strides[i] * (size - 1) + out_pad[i] + (k - 1) * dilations[i] + 1
        if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = out_shape[i] if out_shape is not None else size * strides[i]
            total = full - target
            # the odd pixel: at the end for SAME_UPPER, at the beginning otherwise
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
            out.append(target)
        elif auto_pad == "VALID":
            begin.append(0)
            out.append(full)
        else:
            begin.append(pads[i])
            out.append(full - pads[i] - pads[i + nsp])
    return out, begin


def _conv_transpose_infer(ctx: InferContext):
    x, w = ctx.types[0], ctx.types[1]
    if not x.dtype.is_float:
        ctx.fail(f"X must be a float tensor, got {x.dtype}")
    if w.dtype != x.dtype:
        ctx.fail(f"W has dtype {w.dtype}, X has {x.dtype}")
    rank = _rank_of(ctx)
    if rank is not None and rank < 3:
        ctx.fail(f"input must have rank >= 3 (N, C, spatial...), got rank {rank}")
    nsp = None if rank is None else rank - 2
    kernel = list(w.shape[2:]) if w.shape is not None else ctx.attrs.get("kernel_shape")
    check_window_attrs(ctx, nsp, kernel)
    a = ctx.attrs
    if a.get("output_shape") is not None and nsp is not None and len(a["output_shape"]) not in (nsp, nsp + 2):
        ctx.fail(f"output_shape has {len(a['output_shape'])} values, expected {nsp}")
    group = a.get("group", 1)
    if group < 1:
        ctx.fail(f"group must be >= 1, got {group}")
    if x.shape is not None and w.shape is not None:
        c, wc = x.shape[1], w.shape[0]
        if isinstance(c, int) and isinstance(wc, int) and c != wc:
            ctx.fail(f"X has {c} channels but W has {wc} input channels")
        if isinstance(c, int) and c % group:
            ctx.fail(f"X has {c} channels, not divisible by group {group}")
    if nsp is not None and a.get("output_padding") is not None:
        strides, dilations, _ = spatial_attrs(a, nsp)
        for i, p in enumerate(a["output_padding"]):
            if p >= max(strides[i], dilations[i]):
                ctx.fail(f"output_padding {a['output_padding']} must be smaller than the stride or dilation")
    m = w.shape[1] * group if w.shape is not None and isinstance(w.shape[1], int) else UNKNOWN
    if rank is None:
        return [TensorType(x.dtype, None)]
    if x.shape is None or kernel is None:
        return [TensorType(x.dtype, (UNKNOWN, m) + (UNKNOWN,) * nsp)]
    out, _ = conv_transpose_geometry(list(x.shape[2:]), kernel, a)
    if any(isinstance(o, int) and o < 1 for o in out):
        ctx.fail(f"the output would have spatial shape {out}")
    return [TensorType(x.dtype, (x.shape[0], m, *out))]


def _conv_transpose_reference(inputs, attrs):
    x, w, b = (inputs + [None])[:3]
    acc = compute_dtype(x)
    group = attrs.get("group", 1)
    kernel = list(w.shape[2:])
    nsp = len(kernel)
    strides, dilations, _ = spatial_attrs(attrs, nsp)
    in_sp = list(x.shape[2:])
    out, begin = conv_transpose_geometry(in_sp, kernel, attrs)
    n, c = x.shape[:2]
    cg, mg = c // group, w.shape[1]
    m = mg * group
    # columns: for every input pixel, its contribution to each (output channel, kernel tap)
    xm = x.reshape(n, group, cg, prod(in_sp)).astype(acc, copy=False)
    wm = w.reshape(group, cg, mg * prod(kernel)).astype(acc, copy=False).transpose(0, 2, 1)
    cols = np.matmul(wm[None], xm).reshape(n, m, *kernel, *in_sp)  # (N, M, *K, *S)
    full = [(in_sp[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(nsp)]
    y = np.zeros((n, m, *full), acc)
    for tap in itertools.product(*(range(k) for k in kernel)):  # col2im, one slice per kernel tap
        sel = tuple(slice(t * d, t * d + (s_ - 1) * st + 1, st)
                    for t, d, s_, st in zip(tap, dilations, in_sp, strides))
        y[(slice(None), slice(None)) + sel] += cols[(slice(None), slice(None)) + tap]
    y = fit_region(y, begin, out)
    if b is not None:
        y = y + b.astype(acc).reshape((1, -1) + (1,) * nsp)
    return y.astype(x.dtype)


register_op("conv_transpose", ["X", "W", "B?"], ["Y"], onnx="ConvTranspose", attrs=_CONV_T_ATTRS,
            infer=_conv_transpose_infer, reference=_conv_transpose_reference,
            doc="ONNX ConvTranspose: grouped N-d transposed convolution (output_padding / output_shape / auto_pad).")
