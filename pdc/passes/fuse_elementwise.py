"""fuse-elementwise: merges trees of elementwise ops into single fused_elementwise nodes."""
from __future__ import annotations

from ..ir.graph import Graph, Node, Value
from ..ir.ops.fused_elementwise import OP, Step, decode_program, encode_program
from ..ir.ops.common import broadcast_shapes
from ..ir.registry import all_ops
from ..ir.types import UNKNOWN
from .manager import Pass, register_pass


def _fusible(node: Node, ops) -> bool:
    """An elementwise node with one output of known shape and no absent inputs (but trailing ones)."""
    opdef = ops.get(node.op)
    if opdef is None or not opdef.elementwise or len(node.outputs) != 1:
        return False
    inputs = _present_inputs(node)
    shape = node.outputs[0].type.shape
    if not inputs or None in inputs or shape is None or UNKNOWN in shape:
        return False
    # the fused op broadcasts all its inputs to the result: an op whose result is not that
    # broadcast (cast_like reads only the dtype of its second input) stays on its own
    try:
        return broadcast_shapes([v.type.shape for v in inputs]) == tuple(shape)
    except ValueError:
        return False


def _present_inputs(node: Node) -> list:
    inputs = list(node.inputs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    return inputs


def _num_steps(node: Node) -> int:
    return len(node.attrs["ops"]) if node.op == OP else 1


@register_pass
class FuseElementwise(Pass):
    """Merges each tree of elementwise / broadcasting ops into one fused_elementwise node.

    A producer joins a group only when every use of its result is inside the group, the result
    is not a graph output, and it has the group's output shape: every interior value is then
    computed once per output element, so the fused node neither recomputes work nor changes a
    broadcast. Existing fused_elementwise nodes are merged like any other member (so running the
    pass twice changes nothing). `max-ops` bounds the steps of one node (0: no bound).
    """

    name = "fuse-elementwise"
    max_ops: int = 16

    def run(self, graph: Graph) -> None:
        ops = all_ops()
        producer = graph.producers()
        users = graph.users()
        outputs = set(graph.outputs)
        limit = self.max_ops if self.max_ops > 0 else float("inf")
        group_of: dict[Node, Node] = {}  # member -> root
        groups: dict[Node, set[Node]] = {}

        for root in reversed(graph.nodes):
            if root in group_of or not _fusible(root, ops) or _num_steps(root) > limit:
                continue
            shape = root.outputs[0].type.shape
            members, size = {root}, _num_steps(root)
            grown = True
            while grown:  # until no producer can join: a join may complete another's set of users
                grown = False
                for n in list(members):
                    for v in _present_inputs(n):
                        p = producer.get(v)
                        if (p is None or p in group_of or p in members or not _fusible(p, ops)
                                or v in outputs or v.type.shape != shape or size + _num_steps(p) > limit
                                or not all(u in members for u in users[v])):
                            continue
                        members.add(p)
                        size += _num_steps(p)
                        grown = True
            if size < 2 or (len(members) == 1 and root.op == OP):
                continue
            for m in members:
                group_of[m] = root
            groups[root] = members

        if not groups:
            return
        new_nodes = []
        for node in graph.nodes:
            root = group_of.get(node)
            if root is None:
                new_nodes.append(node)
            elif root is node:
                new_nodes.append(_fuse(root, groups[root], producer))
        graph.nodes = new_nodes


def _fuse(root: Node, members: set[Node], producer: dict[Value, Node]) -> Node:
    """One fused_elementwise node computing `root` from the members' external inputs."""
    inputs: list[Value] = []
    steps: list[Step] = []
    done: dict[Node, int] = {}  # member -> the operand of its result (a value used twice is computed once)

    def operand(v: Value) -> int:
        if v not in inputs:
            inputs.append(v)
        return inputs.index(v)

    def emit(n: Node) -> int:
        if n in done:
            return done[n]
        refs = [emit(producer[v]) if producer.get(v) in members else operand(v) for v in _present_inputs(n)]
        if n.op != OP:
            steps.append(Step(n.op, refs, dict(n.attrs)))
        else:
            local: list[int] = []  # inline the member's own program, renumbering its operands
            for s in decode_program(n.attrs):
                steps.append(Step(s.op, [refs[a] if a >= 0 else local[-a - 1] for a in s.args], s.attrs))
                local.append(-len(steps))
        done[n] = -len(steps)
        return done[n]

    emit(root)
    return Node(OP, inputs, list(root.outputs), encode_program(steps), root.name)
