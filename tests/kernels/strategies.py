"""Hypothesis strategies of layers (tests/kernels/harness.Layer) over the attribute space the ONNX
spec allows. Arrays are seeded from the draw, and weights are scaled by 1/sqrt(fan-in) so outputs
are O(1) and the elementwise tolerances mean the same thing for every layer."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from harness import Const, Layer

MAX_MACS = 1_500_000     # per layer: keeps a draw's compile and (emulated) run short


def rand(rng: np.random.Generator, shape, scale: float = 1.0, dtype=np.float32) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ---- fused activations (the -O2 pipeline fuses them into conv / gemm / matmul) ------------------------
def activation(draw, rng, out_shape, dtype=np.float32, allow_residual: bool = True) -> list:
    """A random epilogue: nothing, an activation, a residual add, or both, in the orders pdc fuses."""
    acts = [
        None,
        ("Relu", {}, []),
        ("Clip", {}, [Const(np.asarray(0, dtype)), Const(np.asarray(6, dtype))]),
        ("Clip", {}, [Const(np.asarray(-0.5, dtype)), Const(np.asarray(0.7, dtype))]),
        ("LeakyRelu", {"alpha": 0.1}, []),
        ("Sigmoid", {}, []),
        ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}, []),
        ("HardSwish", {}, []),
        [("Sigmoid", {}, []), ("Mul", {}, ["before"])],  # SiLU as exporters write it: x * Sigmoid(x)
        ("Tanh", {}, []),
        ("Gelu", {}, []),
    ]
    if np.dtype(dtype) == np.float64:  # neither oracle has a float64 erf (ONNX's reference computes it in float32)
        acts = [a for a in acts if a is None or isinstance(a, list) or a[0] != "Gelu"]
    act = draw(st.sampled_from(acts))
    residual = allow_residual and draw(st.sampled_from(["none", "none", "before", "after"]))
    post = []
    if residual == "before":
        post.append(("Add", {}, [rand(rng, out_shape, dtype=dtype)]))
    if act is not None:
        post.extend(act if isinstance(act, list) else [act])
    if residual == "after" and act is not None:
        post.append(("Add", {}, [rand(rng, out_shape, dtype=dtype)]))
    return post


# ---- convolution --------------------------------------------------------------------------------------
def _out_extent(size, k, s, d, pads, auto_pad):
    ext = (k - 1) * d + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // s)
    if auto_pad == "VALID":
        return (size - ext) // s + 1
    return (size + pads[0] + pads[1] - ext) // s + 1


CONV_KINDS = ("any", "depthwise", "pointwise", "small", "flat", "gemv")


@st.composite
def conv_layer(draw, kind: str = "any", max_dims: int = 3, max_extent: int = 64, max_macs: int = MAX_MACS,
               runtime_weights: bool = True, activations: bool = True, dtype=np.float32):
    """One Conv over the whole attribute space; kind steers the draw toward a kernel path's layers:
    'depthwise' (one input channel per group, channel multipliers), 'pointwise' (1x1, stride 1, no
    pads), 'small' (1-D/2-D, output width <= 16), 'flat' (depthwise, stride 1 same-size or stride 2),
    'winograd' (2-D 3x3, stride 1, no dilation), 'gemv' (pointwise on one pixel, up to 80 channels
    per group in and out)."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    nsp = draw(st.integers(1, max_dims if kind not in ("small", "flat", "depthwise") else min(max_dims, 2)))
    if kind == "winograd":
        nsp = 2
    n = draw(st.sampled_from([1, 1, 1, 2, 3]))
    if kind in ("depthwise", "flat"):
        group = draw(st.integers(1, 12))
        cg, mg = 1, draw(st.sampled_from([1, 1, 1, 2, 3]))
    else:
        group = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
        cg = draw(st.integers(1, 80 if kind == "gemv" else 24))
        mg = draw(st.integers(1, 80 if kind == "gemv" else 40))
        if draw(st.booleans()) and group > 1:  # depthwise-like with a multiplier, in the general path too
            cg = 1
    c, m = cg * group, mg * group
    kernel, strides, dils, pads, ins = [], [], [], [], []
    auto_pad = draw(st.sampled_from(["NOTSET"] * 6 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    if kind in ("pointwise", "gemv"):
        auto_pad = "NOTSET"
    if kind == "flat":
        auto_pad = "NOTSET"
        flat_stride = draw(st.sampled_from([1, 2]))
    for _ in range(nsp):
        if kind in ("pointwise", "gemv"):
            k, s, d = 1, 1, 1
        elif kind == "winograd":
            k, s, d = 3, 1, 1
        else:
            k = draw(st.integers(1, 11 if nsp < 3 else 5))
            s = draw(st.integers(1, 4))
            d = draw(st.integers(1, 4)) if draw(st.booleans()) else 1
        if kind == "flat":
            s = flat_stride
        ext = (k - 1) * d + 1
        if draw(st.integers(0, 9)) == 0 and kind not in ("pointwise", "winograd", "gemv"):  # dilation beyond the input
            d = draw(st.integers(4, 16))
            ext = (k - 1) * d + 1
        lo = 1 if auto_pad in ("NOTSET", "SAME_UPPER", "SAME_LOWER") else ext
        size = draw(st.integers(lo, max(lo, max_extent if nsp < 3 else 12)))
        if kind == "small":
            size = min(size, 16 * s)
        if kind == "gemv":
            size = 1
        if kind in ("pointwise", "gemv"):
            p = (0, 0)
        elif kind == "flat":  # total pad ext - 1: output width W (stride 1) or ceil(W / 2) (stride 2)
            pb = draw(st.integers(0, ext - 1))
            p = (pb, ext - 1 - pb)
        else:
            wide = ext + 2
            p = (draw(st.integers(0, wide)), draw(st.integers(0, wide)))
        if auto_pad == "NOTSET" and size + p[0] + p[1] < ext:  # no output: widen the input
            size = ext - p[0] - p[1]
        kernel.append(k), strides.append(s), dils.append(d), pads.append(p), ins.append(max(size, 1))
    def fit(i):  # the smallest input the window fits in, then axis i's output extent
        ext = (kernel[i] - 1) * dils[i] + 1
        if auto_pad == "VALID":
            ins[i] = max(ins[i], ext)
        elif auto_pad == "NOTSET":
            ins[i] = max(ins[i], ext - pads[i][0] - pads[i][1], 1)
        return _out_extent(ins[i], kernel[i], strides[i], dils[i], pads[i], auto_pad)

    outs = [fit(i) for i in range(nsp)]
    macs = n * m * math.prod(outs) * cg * math.prod(kernel)
    while macs > max_macs:  # shrink channels first, then the image
        if mg > 1 or cg > 1:
            mg, cg = max(1, mg // 2), max(1, cg // 2)
        else:
            i = int(np.argmax(outs))
            if outs[i] == 1 and kernel[i] > 1 and kind != "winograd":
                kernel[i] = max(1, kernel[i] // 2)
            ins[i] = max(1, ins[i] // 2)
        c, m = cg * group, mg * group
        outs = [fit(i) for i in range(nsp)]
        macs = n * m * math.prod(outs) * cg * math.prod(kernel)
        if n > 1 and macs > max_macs:
            n = 1
    while kind == "small" and outs[-1] > 16:  # the transposed path's output widths
        if auto_pad == "NOTSET" and sum(pads[-1]) > 0:
            pads[-1] = (pads[-1][0] // 2, pads[-1][1] // 2)
        else:
            ins[-1] = max(1, ins[-1] - (outs[-1] - 16) * strides[-1])
        outs[-1] = fit(nsp - 1)
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dils, "group": group}
    if auto_pad == "NOTSET":
        attrs["pads"] = [p[0] for p in pads] + [p[1] for p in pads]
    else:
        attrs["auto_pad"] = auto_pad
    for key in ("kernel_shape", "strides", "dilations"):  # omitted attributes take their defaults
        if draw(st.integers(0, 4)) == 0:
            if key == "strides" and any(s != 1 for s in strides):
                continue
            if key == "dilations" and any(d != 1 for d in dils):
                continue
            del attrs[key]
    if group == 1 and draw(st.booleans()):
        del attrs["group"]
    x = rand(rng, [n, c] + ins, dtype=dtype)
    w = rand(rng, [m, cg] + kernel, 1 / math.sqrt(cg * math.prod(kernel)), dtype=dtype)
    const_w = not runtime_weights or draw(st.integers(0, 4)) > 0
    inputs = [x, Const(w) if const_w else w]
    if draw(st.booleans()):
        b = rand(rng, [m], 0.5, dtype=dtype)
        inputs.append(Const(b) if const_w else b)
    post = activation(draw, rng, [n, m] + outs, dtype) if activations else []
    return Layer("Conv", inputs, attrs, post, oracle=window_oracle(auto_pad, ins, kernel, strides, dils, outs))


def window_oracle(auto_pad, ins, kernel, strides, dils, outs) -> str:
    """ONNX Runtime refuses dilations with SAME auto_pad, and where the SAME padding would be
    negative (stride past the window) it crops the input instead of padding nothing, as the spec
    ("pad the input"), ONNX's reference and TensorFlow do: those layers go to ONNX's reference."""
    if not auto_pad.startswith("SAME"):
        return "ort"
    dilated = any(d > 1 for d in dils)
    negative = any((o - 1) * s + (k - 1) * d + 1 < i for i, k, s, d, o in zip(ins, kernel, strides, dils, outs))
    return "onnx-reference" if dilated or negative else "ort"


def layers(one, min_size: int = 1, max_size: int = 6):
    """A draw: several layers compiled side by side in one bundle."""
    return st.lists(one, min_size=min_size, max_size=max_size)


@st.composite
def conv_transpose_layer(draw, max_dims: int = 3, max_extent: int = 24, max_macs: int = MAX_MACS,
                         dtype=np.float32):
    """One ConvTranspose: kernel, strides, dilations, pads (explicit, asymmetric, or SAME/VALID auto_pad),
    output_padding below the stride, output_shape given instead of pads, groups."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    nsp = draw(st.integers(1, max_dims))
    n = draw(st.sampled_from([1, 1, 2]))
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cg, mg = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    mode = draw(st.sampled_from(["pads", "pads", "output_shape", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    kernel, strides, dils, pads, ins, opad, outs = [], [], [], [], [], [], []
    for _ in range(nsp):
        k = draw(st.integers(1, 7 if nsp < 3 else 3))
        s = draw(st.integers(1, 4))
        d = draw(st.integers(1, 3))
        size = draw(st.integers(1, max_extent if nsp < 3 else 6))
        ext = (k - 1) * d + 1
        op = draw(st.integers(0, s - 1)) if mode == "pads" else 0  # ONNX Runtime: below the stride
        full = s * (size - 1) + op + ext
        pb = draw(st.integers(0, max(0, min(ext - 1, full - 1))))
        pe = draw(st.integers(0, max(0, min(ext - 1, full - 1 - pb))))
        if mode.startswith("SAME"):
            out = size * s
        elif mode == "VALID":
            out = full
        else:
            out = full - pb - pe
        kernel.append(k), strides.append(s), dils.append(d), ins.append(size), opad.append(op)
        pads.append((pb, pe)), outs.append(out)
    macs = n * group * cg * mg * math.prod(ins) * math.prod(kernel)
    while macs > max_macs and (cg > 1 or mg > 1):
        cg, mg = max(1, cg // 2), max(1, mg // 2)
        macs = n * group * cg * mg * math.prod(ins) * math.prod(kernel)
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dils, "group": group}
    if mode == "pads":
        attrs["pads"] = [p[0] for p in pads] + [p[1] for p in pads]
        if any(opad):
            attrs["output_padding"] = opad
    elif mode == "output_shape":
        attrs["output_shape"] = outs  # the total padding follows, split as SAME_UPPER (ONNX)
    else:
        attrs["auto_pad"] = mode
    c, m = cg * group, mg * group
    x = rand(rng, [n, c] + ins, dtype=dtype)
    w = rand(rng, [c, mg] + kernel, 1 / math.sqrt(cg * math.prod(kernel)), dtype=dtype)
    inputs = [x, Const(w) if draw(st.integers(0, 3)) else w]
    if draw(st.booleans()):
        inputs.append(Const(rand(rng, [m], 0.5, dtype=dtype)))
    # an output longer than the full scatter (SAME with a stride past the kernel, or a larger output_shape)
    # means negative total padding, which the spec splits like any other; ONNX Runtime clips the output or
    # puts the input at 0 instead: such layers need the test's own oracle (see test_conv_kernels.py)
    fulls = [s * (i - 1) + op + (k - 1) * d + 1 for i, k, s, d, op in zip(ins, kernel, strides, dils, opad)]
    negative = mode.startswith("SAME") or mode == "output_shape"
    negative = negative and any(f < o for f, o in zip(fulls, outs))
    return Layer("ConvTranspose", inputs, attrs, oracle="spec" if negative else "ort")
