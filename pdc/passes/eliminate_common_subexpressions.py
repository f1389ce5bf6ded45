"""eliminate-common-subexpressions: merges nodes that compute the same thing, and equal constants."""
import numpy as np

from ..ir.graph import Graph
from ..ir.printer import format_attr
from .manager import Pass, register_pass


def _constant_key(v):
    d = v.data
    return (str(v.type), d.tobytes()) if d.size <= 4096 else None


@register_pass
class EliminateCommonSubexpressions(Pass):
    """Two nodes with the same op, inputs and attributes become one; so do small equal constants."""

    name = "eliminate-common-subexpressions"

    def run(self, graph: Graph) -> None:
        replace = {}
        seen_consts = {}
        for c in graph.constants:
            key = _constant_key(c)
            if key is None or c in graph.outputs:
                continue
            if key in seen_consts and np.array_equal(seen_consts[key].data, c.data, equal_nan=True):
                replace[c] = seen_consts[key]
            else:
                seen_consts.setdefault(key, c)
        seen = {}
        kept = []
        for node in graph.nodes:
            node.inputs = [replace.get(v, v) for v in node.inputs]
            key = (node.op, tuple(id(v) for v in node.inputs), len(node.outputs),
                   tuple(sorted((k, format_attr(a)) for k, a in node.attrs.items())))
            twin = seen.get(key)
            if twin is not None and not any(v in graph.outputs for v in node.outputs):
                replace.update(zip(node.outputs, twin.outputs))
                continue
            seen.setdefault(key, node)
            kept.append(node)
        graph.nodes = kept
        graph.outputs = [replace.get(v, v) for v in graph.outputs]
        graph.remove_unused_constants()
