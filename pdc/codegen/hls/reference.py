"""The fixed-point reference of a planned design: what its HLS C++ computes, bit for bit, in NumPy.

Values are integer codes of each stream's type (pdc/quantize/fixed.py), images [N, C, H, W] over a
batch of N samples. Every layer computes exactly (products and sums of codes in int64, the
accumulator types being wide enough) and rounds once, into its output type, as the C++ does:
- conv / dense: acc = bias + sum x * w; y = (Out) acc; then the activation in Out (relu, clip, leaky_relu);
- activation layers: the function on the input (a table indexed by the input code's top bits), cast to Out;
- max_pool: the largest tap inside the image (padding never wins); avg_pool: the taps' exact sum times
  the reciprocal of the count, a constant of aux_t; add: the exact sum; concat / clone: casts.
"""
from __future__ import annotations

import math

import numpy as np

from ...quantize.fixed import Fixed
from .plan import Design, Layer

TABLE_BITS = 10  # a table activation has 2^min(W, TABLE_BITS) entries
# softmax: exp(-d) for d = max - x >= 0 in steps of 2^-EXP_STEP_BITS up to 16, as the product of two tables
# of EXP_ENTRIES entries (the step's high and low halves); entries, products and their sum with E_FRAC
# fractional bits, the sum's reciprocal with Q_FRAC
EXP_STEP_BITS, EXP_ENTRIES, E_FRAC, Q_FRAC = 12, 256, 17, 18


def run(design: Design, feeds: dict) -> dict:
    """Graph output name -> float32 [N, ...] for feeds {input name: float32 [N, ...]} (N samples)."""
    codes = {}
    for s in design.inputs:
        x = np.asarray(feeds[s.value.name], np.float64)
        codes[id(s)] = s.type.from_float(x.reshape((x.shape[0],) + s.image))
    for layer in design.layers:
        outs = compute(layer, [codes[id(s)] for s in layer.inputs])
        for s, c in zip(layer.outputs, outs):
            codes[id(s)] = c
    out = {}
    for s, v in zip(design.outputs, design.output_values):
        c = codes[id(s)]
        out[v.name] = s.type.values(c).astype(np.float32).reshape((c.shape[0],) + tuple(v.type.shape[1:]))
    return out


def compute(layer: Layer, xs: list) -> list:
    kind = layer.kind
    if kind == "clone":
        return [xs[0]] * len(layer.outputs)
    out_t = layer.outputs[0].type
    in_t = layer.inputs[0].type
    if kind in ("conv", "dense"):
        acc = _conv(layer, xs[0]) if kind == "conv" else _dense(layer, xs[0])
        y = out_t.from_codes(acc, layer.acc_t.frac)
        return [activate(layer, y, out_t)]
    if kind == "activation":
        if layer.activation == "table":
            return [table_codes(layer)[table_index(xs[0], in_t)]]
        return [out_t.from_codes(activate(layer, xs[0], in_t), in_t.frac)]
    if kind == "max_pool":
        return [out_t.from_codes(_max_pool(layer, xs[0], in_t), in_t.frac)]
    if kind == "avg_pool":
        total, count = _window_sum(layer, xs[0])
        recip = reciprocals(layer)[count]
        return [out_t.from_codes(total * recip, in_t.frac + layer.aux_t.frac)]
    if kind == "add":
        (a, ta), (b, tb) = zip(xs, (s.type for s in layer.inputs))
        frac = max(ta.frac, tb.frac)
        return [out_t.from_codes((a << (frac - ta.frac)) + (b << (frac - tb.frac)), frac)]
    if kind == "softmax":
        return [softmax(xs[0], in_t, out_t, layer.inputs[0].channels)]
    if kind == "concat":
        return [np.concatenate([out_t.from_codes(x, s.type.frac) for x, s in zip(xs, layer.inputs)], axis=1)]
    raise AssertionError(kind)


def activate(layer: Layer, y: np.ndarray, t: Fixed) -> np.ndarray:
    """relu / clip / leaky_relu on codes of type t, giving codes of t."""
    if layer.activation == "relu":
        return np.maximum(y, 0)
    if layer.activation == "clip":
        lo, hi = clip_bounds(layer, t)
        return np.clip(y, lo, hi)
    if layer.activation == "leaky_relu":
        slope = layer.aux_t.from_float(layer.alpha)
        return np.where(y > 0, y, t.from_codes(y * slope, t.frac + layer.aux_t.frac))
    return y


def clip_bounds(layer: Layer, t: Fixed) -> tuple[int, int]:
    lo = t.lo if layer.alpha == -math.inf else int(t.from_float(max(layer.alpha, t.values(t.lo))))
    hi = t.hi if layer.beta == math.inf else int(t.from_float(min(layer.beta, t.values(t.hi))))
    return lo, hi


def softmax_types(in_t: Fixed, channels: int) -> dict:
    """The types of a softmax layer's steps (the generated C++ declares the same)."""
    grow = max(1, math.ceil(math.log2(channels)))
    return {"d_t": Fixed(in_t.width, in_t.integer, False), "e_t": Fixed(E_FRAC + 1, 1, False, "AP_RND"),
            "s_t": Fixed(E_FRAC + 1 + grow, 1 + grow, False), "q_t": Fixed(Q_FRAC + 1, 1, False)}


def exp_tables() -> tuple[np.ndarray, np.ndarray]:
    """e_t codes of exp(-i * 2^(8 - EXP_STEP_BITS)) and of exp(-j * 2^-EXP_STEP_BITS), i, j < EXP_ENTRIES: for a
    step k = 256 i + j, exp(-k 2^-EXP_STEP_BITS) is their product (entry 0 of both is exactly 1)."""
    e_t = softmax_types(Fixed(8, 4), 2)["e_t"]
    k = np.arange(EXP_ENTRIES)
    return (e_t.from_float(np.exp(-np.ldexp(k * EXP_ENTRIES, -EXP_STEP_BITS))),
            e_t.from_float(np.exp(-np.ldexp(k, -EXP_STEP_BITS))))


def softmax(x: np.ndarray, in_t: Fixed, out_t: Fixed, channels: int) -> np.ndarray:
    """Over axis 1: d = max - x (exact, >= 0); its step k (at most the last); e = (e_t)(high[k / 256] *
    low[k % 256]); s = the exact sum; q = floor(2^(E_FRAC + Q_FRAC) / s's code), i.e. 1 / s in Q_FRAC
    bits; y = (Out)(e * q)."""
    d = x.max(axis=1, keepdims=True) - x
    shift = in_t.frac - EXP_STEP_BITS
    k = np.minimum(d >> shift if shift >= 0 else d << -shift, EXP_ENTRIES * EXP_ENTRIES - 1)
    high, low = exp_tables()
    e_t = softmax_types(in_t, channels)["e_t"]
    e = e_t.from_codes(high[k >> 8] * low[k & (EXP_ENTRIES - 1)], 2 * E_FRAC)
    q = (1 << (E_FRAC + Q_FRAC)) // e.sum(axis=1, keepdims=True)
    return out_t.from_codes(e * q, E_FRAC + Q_FRAC)


def table_index(x: np.ndarray, t: Fixed) -> np.ndarray:
    """The entry of a code of type t: its top TABLE_BITS bits, offset so that the lowest code is entry 0."""
    offset = x - t.lo
    return offset >> max(t.width - TABLE_BITS, 0)


def table_codes(layer: Layer) -> np.ndarray:
    """A table activation's entries (codes of the output type): the function at each bin's centre."""
    t, out_t = layer.inputs[0].type, layer.outputs[0].type
    shift = max(t.width - TABLE_BITS, 0)
    first = t.lo + (np.arange(1 << min(t.width, TABLE_BITS), dtype=np.int64) << shift)
    centre = t.values(first) + (((1 << shift) - 1) / 2.0) * t.step()
    return out_t.from_float(layer.table(centre))


def reciprocals(layer: Layer) -> np.ndarray:
    """aux_t codes of 1 / n for every tap count n of an avg_pool window (index 0 unused)."""
    kh, kw = layer.attrs["kernel"]
    return layer.aux_t.from_float(1.0 / np.maximum(np.arange(kh * kw + 1), 1))


def _padded(layer: Layer, x: np.ndarray, fill: int) -> np.ndarray:
    top, left, bottom, right = layer.attrs["pads"]
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)


def _windows(layer: Layer, x: np.ndarray) -> np.ndarray:
    """[N, C, OH, OW, KH, KW] taps of every output position over the padded image x."""
    kh, kw = layer.attrs["kernel"]
    sh, sw = layer.attrs["strides"]
    dh, dw = layer.attrs["dilations"]
    _, oh, ow = layer.outputs[0].image
    n, c = x.shape[:2]
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw), writeable=False)


def _conv(layer: Layer, x: np.ndarray) -> np.ndarray:
    w_t, b_t, acc_t, in_t = layer.weight_t, layer.bias_t, layer.acc_t, layer.inputs[0].type
    w = w_t.from_float(layer.weights)  # [F, C/G, KH, KW]
    f, cg = w.shape[:2]
    g = layer.attrs["group"]
    taps = _windows(layer, _padded(layer, x, 0))  # [N, C, OH, OW, KH, KW]
    n, _, oh, ow = taps.shape[:4]
    fg = f // g
    acc = np.empty((n, f, oh, ow), np.int64)
    for gi in range(g):
        cols = taps[:, gi * cg:(gi + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, -1)
        acc[:, gi * fg:(gi + 1) * fg] = np.matmul(cols, w[gi * fg:(gi + 1) * fg].reshape(fg, -1).T).transpose(0, 3, 1, 2)
    bias = b_t.from_float(layer.bias) << (acc_t.frac - b_t.frac)
    return (acc << (acc_t.frac - in_t.frac - w_t.frac)) + bias[None, :, None, None]


def _dense(layer: Layer, x: np.ndarray) -> np.ndarray:
    w_t, b_t, acc_t, in_t = layer.weight_t, layer.bias_t, layer.acc_t, layer.inputs[0].type
    flat = x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)  # pixel order: the weights' rows
    acc = np.matmul(flat, w_t.from_float(layer.weights))
    bias = b_t.from_float(layer.bias) << (acc_t.frac - b_t.frac)
    y = (acc << (acc_t.frac - in_t.frac - w_t.frac)) + bias[None, :]
    return y[:, :, None, None]


def _inside(layer: Layer, shape: tuple) -> np.ndarray:
    """[OH, OW, KH, KW] whether each tap falls inside the (unpadded) image."""
    _, h, w = layer.inputs[0].image
    mask = _padded(layer, np.ones((1, 1, h, w), np.int64), 0)
    return _windows(layer, mask)[0, 0].astype(bool)


def _max_pool(layer: Layer, x: np.ndarray, t: Fixed) -> np.ndarray:
    taps = _windows(layer, _padded(layer, x, t.lo))
    inside = _inside(layer, x.shape)
    return np.where(inside, taps, t.lo).max(axis=(4, 5))


def _window_sum(layer: Layer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    taps = _windows(layer, _padded(layer, x, 0))
    inside = _inside(layer, x.shape)
    total = taps.sum(axis=(4, 5))
    kh, kw = layer.attrs["kernel"]
    count = np.full(inside.shape[:2], kh * kw) if layer.attrs["count_pad"] else inside.sum(axis=(2, 3))
    return total, count[None, None]
