"""fold-pad: merges an explicit pad into the pads of the conv or pooling that reads it."""
from __future__ import annotations

import math
from typing import Optional

from ..ir.graph import Graph, Node
from ._rewrite import input_or_none, remove_dead, sole_user
from .manager import Pass, register_pass


@register_pass
class FoldPad(Pass):
    """pad -> conv / average_pool / max_pool becomes one node with larger `pads`.

    The pad must be constant-mode with constant, non-negative pads on the spatial axes only,
    and be read by nothing else. Its value must be what the consumer pads with: 0 for conv and
    for average_pool with count_include_pad=1 (count_include_pad=0 would stop counting the
    padded zeros); -inf for max_pool (a pad by 0 would change its maxima). Pools must not use
    ceil_mode (it treats windows that start in the padding differently) and max_pool's Indices
    must be unused (they would count the padded positions).
    """

    name = "fold-pad"

    def run(self, graph: Graph) -> None:
        users = graph.users()
        producers = graph.producers()
        folded = []
        for node in graph.nodes:
            if node.op not in ("conv", "average_pool", "max_pool") or node.inputs[0] is None:
                continue
            pad = producers.get(node.inputs[0])
            if pad is None or pad.op != "pad" or sole_user(graph, users, node.inputs[0]) is not node:
                continue
            extra = _spatial_pads(pad)
            if extra is None or not _consumer_accepts(graph, node, pad, users):
                continue
            nsp = len(extra) // 2
            auto_pad = node.attrs.get("auto_pad", "NOTSET")
            if auto_pad not in ("NOTSET", "VALID"):
                continue
            own = list(node.attrs.get("pads") or [0] * (2 * nsp)) if auto_pad == "NOTSET" else [0] * (2 * nsp)
            if len(own) != 2 * nsp:
                continue
            node.attrs = dict(node.attrs, auto_pad="NOTSET", pads=[a + b for a, b in zip(own, extra)])
            node.inputs = [pad.inputs[0]] + node.inputs[1:]
            folded.append(pad)
        remove_dead(graph, folded)


def _spatial_pads(pad: Node) -> Optional[list[int]]:
    """ONNX-style [begins..., ends...] over the spatial axes (2...), or None when the pad touches
    N or C, is negative, not constant-mode, or not known at compile time."""
    x = pad.inputs[0]
    rank = x.type.rank
    if pad.attrs.get("mode", "constant") != "constant" or rank is None or rank < 3:
        return None
    pads_v, axes_v = input_or_none(pad, 1), input_or_none(pad, 3)
    if pads_v is None or pads_v.data is None or (axes_v is not None and axes_v.data is None):
        return None
    pads = [int(p) for p in pads_v.data.reshape(-1)]
    axes = list(range(rank)) if axes_v is None else [int(a) for a in axes_v.data.reshape(-1)]
    if len(pads) != 2 * len(axes) or any(not -rank <= a < rank for a in axes):
        return None
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a % rank] += pads[i]
        end[a % rank] += pads[i + len(axes)]
    if any(p < 0 for p in begin + end) or begin[0] or begin[1] or end[0] or end[1]:
        return None
    return begin[2:] + end[2:]


def _pad_value(pad: Node) -> Optional[float]:
    v = input_or_none(pad, 2)
    if v is None:
        return 0.0
    if v.data is None or v.data.size > 1:
        return None
    return 0.0 if v.data.size == 0 else float(v.data.reshape(-1)[0])


def _consumer_accepts(graph: Graph, node: Node, pad: Node, users) -> bool:
    value = _pad_value(pad)
    if value is None:
        return False
    if node.op == "conv":
        return value == 0
    if node.attrs.get("ceil_mode", 0):
        return False
    if node.op == "average_pool":
        return value == 0 and node.attrs.get("count_include_pad", 0) == 1
    # max_pool
    if any(users.get(v) or v in graph.outputs for v in node.outputs[1:]):
        return False
    return math.isinf(value) and value < 0
