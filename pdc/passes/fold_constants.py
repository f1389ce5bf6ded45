"""fold-constants: evaluates nodes whose inputs are all constants (and Shape/Size of static tensors)."""
from ..ir.folding import try_fold
from ..ir.graph import Graph
from ..ir.shapes import reinfer
from .manager import Pass, register_pass


@register_pass
class FoldConstants(Pass):
    """Replaces every node computable at compile time by constants, in one forward sweep.

    `max-elements` bounds the size of a folded output (0: no bound), so that folding never
    materializes a tensor much larger than the weights it came from (an Expand of a scalar).
    """

    name = "fold-constants"
    max_elements: int = 1 << 24

    def run(self, graph: Graph) -> None:
        limit = self.max_elements or None
        kept = []
        folded_any = False
        for node in graph.nodes:
            folded = try_fold(node, limit)
            if folded is None:
                kept.append(node)
                continue
            folded_any = True
            for v, data in zip(node.outputs, folded):
                v.data = data
                v.type = v.type.with_shape(data.shape)
                graph.constants.append(v)
        graph.nodes = kept
        graph.remove_unused_constants()
        if folded_any:
            reinfer(graph)  # shapes computed from folded values become static downstream
