"""Fixed-point types for a planned design: given by the user, or chosen from calibration data.

Given (`--precision ap_fixed<16,6>`): every stream, weight and bias has that type, as in hls4ml.
Chosen (`--calibration data.npz`): each stream's integer bits cover the largest magnitude it takes over
the calibration samples, each layer's weights and bias cover theirs, and one width W for all of them
is the smallest of WIDTHS whose fixed-point reference agrees with the float model on the calibration
samples (the same top-1 class on at least `agreement` of them for an output of class scores [1, C], every
element within 1 % of the output's range for any other output). Streams round to nearest and saturate (AP_RND, AP_SAT).

Either way the accumulators are exact: their fractional bits are the product's (input + weight), their
integer bits hold the largest sum the input type's range and the weights allow; so each layer rounds
once, into its output type. Pools keep their input's type.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...ir.errors import PdcError
from ...quantize.fixed import MAX_BITS, Fixed, integer_bits
from . import reference
from .plan import Design, split_values

WIDTHS = (6, 8, 10, 12, 14, 16, 18, 20, 24)
DEFAULT = "ap_fixed<16,6>"  # hls4ml's default precision
AUX = 18  # bits of an avg_pool's reciprocals and a leaky_relu's slope (one DSP operand)
SEARCH_SAMPLES = 512


@dataclass
class Choice:
    """How the types were set: 'given' (one type, or a per-layer file) or 'calibrated' (the width found)."""
    how: str
    width: Optional[int] = None
    agreement: Optional[float] = None  # the chosen width's agreement with float on the calibration samples
    samples: int = 0
    target: Optional[float] = None  # the agreement asked for


def assign(design: Design, graph, precision: Optional[str], calibration, agreement: float = 0.99) -> Choice:
    """Sets every stream's and layer's types (`precision`: a type, a per-layer JSON file, or None)."""
    if calibration is not None and precision is not None:
        raise PdcError("give either --precision TYPE (the types) or --calibration (pdc chooses them; --precision "
                       "auto:AGREEMENT sets how closely), not both")
    if calibration is None:
        overrides = {}
        if precision is not None and os.path.isfile(precision):
            default, overrides = _read_layer_file(precision, design)
        else:
            default = Fixed.parse(precision or DEFAULT)
        uniform(design, default, overrides)
        return Choice("given")
    return calibrated(design, graph, calibration, agreement)


def uniform(design: Design, t: Fixed, overrides: Optional[dict] = None) -> None:
    overrides = overrides or {}
    for s in design.inputs:
        s.type = t
    for layer in design.layers:
        mine = overrides.get(layer.name, {})
        for s in layer.outputs:
            s.type = mine.get("result", t)
        layer.weight_t = mine.get("weight", t)
        layer.bias_t = mine.get("bias", t)
        layer.reuse_asked = mine.get("reuse")
    _derive(design)


def _read_layer_file(path: str, design: Design) -> tuple[Fixed, dict]:
    """{"default": "ap_fixed<16,6>", "layers": {"conv1": {"weight": T, "bias": T, "result": T, "reuse": N}}}"""
    expected = 'expected {"default": "ap_fixed<16,6>", "layers": {"NAME": {"weight": T, "bias": T, "result": T, ' \
               '"reuse": N}}}'

    try:
        with open(path) as f:
            spec = json.load(f)
        default = Fixed.parse(spec.get("default", DEFAULT))
        layers = spec.get("layers", {})
        known = {layer.name for layer in design.layers}
        out = {}
        for name, kinds in layers.items():
            if name not in known:
                raise PdcError(f"{path}: no layer '{name}' (layers: {', '.join(sorted(known))})")
            bad = set(kinds) - {"weight", "bias", "result", "reuse"}
            if bad:
                raise PdcError(f"{path}: layer '{name}': unknown key(s) {', '.join(sorted(bad))} ({expected})")
            out[name] = {k: (int(v) if k == "reuse" else Fixed.parse(v)) for k, v in kinds.items()}
            if out[name].get("reuse", 1) < 1:
                raise PdcError(f"{path}: layer '{name}': reuse {out[name]['reuse']} must be at least 1")
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise PdcError(f"{path}: not a per-layer precision file ({e}); {expected}")
    return default, out


def _derive(design: Design) -> None:
    """Pools keep their input's type; accumulators and constants follow from the chosen types."""
    for layer in design.layers:
        in_t = layer.inputs[0].type
        if layer.kind in ("max_pool", "clone"):
            for s in layer.outputs:
                s.type = in_t
        if layer.kind in ("conv", "dense"):
            layer.acc_t = _accumulator(layer)
        elif layer.kind == "avg_pool":
            grow = math.ceil(math.log2(math.prod(layer.attrs["kernel"])))  # a window's sum
            layer.acc_t = Fixed(in_t.width + grow, in_t.integer + grow, in_t.signed)
            layer.aux_t = Fixed(AUX, 1, False, "AP_RND", "AP_SAT")
        if layer.activation == "leaky_relu":
            layer.aux_t = Fixed(AUX, integer_bits(abs(layer.alpha)), True, "AP_RND", "AP_SAT")


def _accumulator(layer) -> Fixed:
    in_t, w_t, b_t = layer.inputs[0].type, layer.weight_t, layer.bias_t
    frac = max(in_t.frac + w_t.frac, b_t.frac)
    w = w_t.values(w_t.from_float(layer.weights))
    b = b_t.values(b_t.from_float(layer.bias))
    per_output = np.abs(w).reshape(w.shape[0], -1).sum(axis=1) if layer.kind == "conv" else np.abs(w).sum(axis=0)
    largest = max(abs(in_t.values(in_t.lo)), abs(in_t.values(in_t.hi)))
    bound = float((per_output * largest + np.abs(b)).max()) if per_output.size else 0.0
    ints = integer_bits(bound)
    if ints + frac > MAX_BITS:
        raise PdcError(f"layer '{layer.name}': its exact accumulator would need {ints + frac} bits (more than "
                       f"{MAX_BITS}): narrow the input or weight types")
    return Fixed(ints + frac, ints)


# ---- chosen from calibration ------------------------------------------------------------------------
def float_run(graph, samples: list) -> tuple[dict, dict]:
    """The float model over the samples, run once by the interpreter: (value name -> the largest magnitude
    it takes, the streams inside fused nodes included; graph output name -> its values stacked per sample)."""
    from ...ir.interpreter import check_feeds, run_node
    largest: dict = {}
    outputs: dict = {v.name: [] for v in graph.outputs}

    def see(name, a):
        a = np.asarray(a)
        largest[name] = max(largest.get(name, 0.0), float(np.max(np.abs(a))) if a.size else 0.0)
    for feeds in samples:
        env = check_feeds(graph, feeds)
        env.update({c: c.data for c in graph.constants})
        for v in graph.inputs:
            see(v.name, env[v])
        for node in graph.nodes:
            args = [None if v is None else env[v] for v in node.inputs]
            for v, r in zip(node.outputs, run_node(node, args)):
                env[v] = r
                see(v.name, r)
            for name, a in split_values(node, args).items():
                see(name, a)
        for v in graph.outputs:
            outputs[v.name].append(env[v])
    return largest, {name: np.concatenate(values) for name, values in outputs.items()}


def calibrated(design: Design, graph, calibration, agreement: float) -> Choice:
    from ...quantize import load_calibration
    samples = load_calibration(calibration, graph)[:SEARCH_SAMPLES]
    largest, want = float_run(graph, samples)
    feeds = {v.name: np.stack([s[v.name] for s in samples]) for v in graph.inputs}
    best = None
    for width in WIDTHS:
        _calibrated_types(design, largest, width)
        got = reference.run(design, feeds)
        score = _agreement(got, want)
        best = (width, score)
        if score >= agreement:
            break
    width, score = best
    if score < agreement:
        raise PdcError(f"no width up to {WIDTHS[-1]} bits reaches {agreement:.1%} agreement with the float model on "
                       f"the calibration samples (best {score:.1%}): give the types with --precision")
    return Choice("calibrated", width, score, len(samples), agreement)


def _calibrated_types(design: Design, largest: dict, width: int) -> None:
    def stream_type(s):
        return Fixed(width, integer_bits(largest.get(s.value.name, 0.0)), True, "AP_RND", "AP_SAT")
    for s in design.inputs:
        s.type = stream_type(s)
    for layer in design.layers:
        for s in layer.outputs:
            s.type = stream_type(s)
        if layer.weights is not None:
            layer.weight_t = Fixed(width, integer_bits(float(np.abs(layer.weights).max())), True, "AP_RND_CONV", "AP_SAT")
            layer.bias_t = Fixed(width, integer_bits(float(np.abs(layer.bias).max()) if layer.bias.size else 0.0),
                                 True, "AP_RND_CONV", "AP_SAT")
    _derive(design)


def _agreement(got: dict, want: dict) -> float:
    """The share of samples on which the fixed-point outputs agree with the float ones (top-1 class where an
    output is a vector of scores, else every element within 1 % of the output's range)."""
    ok = None
    for name, w in want.items():
        scores = w.ndim == 2 and w.shape[1] > 1  # [N, C]: a vector of class scores per sample
        g = got[name].reshape(w.shape[0], -1)
        w = w.reshape(w.shape[0], -1)
        if scores:
            same = g.argmax(axis=1) == w.argmax(axis=1)
        else:
            span = max(float(w.max() - w.min()), 1e-12)
            same = np.abs(g - w).max(axis=1) <= 0.01 * span
        ok = same if ok is None else ok & same
    return float(ok.mean()) if ok is not None else 1.0


def summary(design: Design) -> list[str]:
    """One line per layer: its output type, and its weight / bias / accumulator types."""
    lines = []
    for layer in design.layers:
        if layer.kind == "clone":
            continue
        parts = [f"{layer.kind} {layer.name}: out {layer.outputs[0].type}"]
        if layer.weight_t is not None:
            parts.append(f"weights {layer.weight_t}, bias {layer.bias_t}, acc {layer.acc_t}")
        lines.append("; ".join(parts))
    return lines

