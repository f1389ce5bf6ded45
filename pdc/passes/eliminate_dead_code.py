"""eliminate-dead-code: drops nodes and constants that no graph output depends on."""
from ..ir.graph import Graph
from .manager import Pass, register_pass


@register_pass
class EliminateDeadCode(Pass):
    """Removes nodes whose outputs are never used (all ops are side-effect free) and unused constants."""

    name = "eliminate-dead-code"

    def run(self, graph: Graph) -> None:
        live = set(graph.outputs)
        kept = []
        for node in reversed(graph.nodes):
            if any(v in live for v in node.outputs):
                kept.append(node)
                live.update(v for v in node.inputs if v is not None)
        graph.nodes = kept[::-1]
        graph.remove_unused_constants()
