"""fold-channel-scale: a per-channel scale computed at run time (the gate of a squeeze-excitation
block) moves from a conv's input onto its weights where they are the smaller tensor."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ir.graph import Graph, Node, Value
from ._rewrite import sole_user
from .manager import Pass, register_pass


@register_pass
class FoldChannelScale(Pass):
    """mul(x, s) -> conv(., W) becomes conv(x, mul(W, s)), where s holds one value per input channel
    (shape [1, C, 1, ...] or a suffix of it: the same for every image). A conv of one group sums
    W[m, c, taps] * x[c, ...] over c, and its zero padding scales to zero, so scaling channel c of
    x or of W gives the same sums. Taken where W has at most 1 / `ratio` of x's elements (the
    gates of the early, large-image stages: 96 x 24 weights against 96 x 56 x 56 values), so that
    the run-time product is cheaper than the multiply it replaces; the conv then reads weights made
    at run time. The mul must be read by nothing but the conv, and W must be a constant."""

    name = "fold-channel-scale"
    ratio: int = 4

    def run(self, graph: Graph) -> None:
        users = graph.users()
        producers = graph.producers()
        for conv in graph.nodes:
            if conv.op != "conv" or int(conv.attrs.get("group", 1)) != 1 or len(conv.inputs) < 2:
                continue
            mul = producers.get(conv.inputs[0])
            w = conv.inputs[1]
            if mul is None or mul.op != "mul" or w is None or w.data is None:
                continue
            if sole_user(graph, users, mul.outputs[0]) is not conv:
                continue
            operands = _scale_and_input(mul, w)
            if operands is None or w.data.size * self.ratio > int(np.prod(mul.outputs[0].type.shape)):
                continue
            scale, x = operands
            scaled = Value(graph.fresh_name(f"{w.name}.scaled"), w.type)
            # the new mul takes the old one's place: after the scale is made, before the conv
            mul.inputs, mul.outputs = [w, scale], [scaled]
            conv.inputs = [x, scaled] + conv.inputs[2:]


def _scale_and_input(mul: Node, w: Value) -> Optional[tuple[Value, Value]]:
    """(s, x) of mul(x, s) in either order, s one value per input channel of the conv weights `w`
    and x of the mul's own static shape, or None."""
    out = mul.outputs[0].type
    shape = out.shape
    if shape is None or len(shape) < 3 or not all(isinstance(d, int) for d in shape):
        return None
    if np.dtype(out.dtype.np).kind != "f" or out.quant is not None or w.type.quant is not None:
        return None
    if w.type.dtype != out.dtype or len(w.type.shape) != len(shape) or w.type.shape[1] != shape[1]:
        return None
    for s, x in (mul.inputs, reversed(mul.inputs)):
        if x is None or s is None or x.type.shape is None or tuple(x.type.shape) != shape:
            continue
        dims = s.type.shape
        if dims is None or s.type.dtype != out.dtype or len(dims) > len(shape):
            continue
        full = [1] * (len(shape) - len(dims)) + list(dims)
        if full[1] == shape[1] and all(d == 1 for i, d in enumerate(full) if i != 1):
            return s, x
    return None
