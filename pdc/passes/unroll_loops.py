"""unroll-loops: a Loop that runs a number of times known at compile time, and a Scan over a static
length, become copies of their body in the enclosing graph when small, so that the passes after
this one (folding, fusion) and the memory planner see through them.

A Loop qualifies when M is a constant and its condition input is absent, or a true constant that
the body passes on unchanged (the loop then runs exactly M times). Each copy reads the iteration
number and the condition as constants, the values the previous copy carried, and the node's
captured inputs; a value stacked per iteration becomes an unsqueeze of each copy's value and one
concat. A Scan's copies read slices of the scan inputs (a gather at the step's index, counted
from the end for a reverse direction) and their outputs are stacked on each output's axis.
Loops and scans with more than `max-trips` steps, or more than `max-nodes` nodes once unrolled,
stay as they are (C loops around their bodies' kernels). A loop in an unrolled body is unrolled in
the next round (MAX_NESTING rounds), under the same limits.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ..ir.ops.control_flow import passes_condition, scan_layout
from ..ir.types import TensorType
from ..ir.verify import infer_node
from .manager import Pass, register_pass

MAX_NESTING = 4  # rounds: loops nested this deep inside unrolled bodies are unrolled too


class _Builder:
    """Appends nodes to the graph being rewritten, with fresh names."""

    def __init__(self, graph: Graph, nodes: list):
        self.graph = graph
        self.nodes = nodes
        self.taken = graph.value_names()

    def name(self, hint: str) -> str:
        name = self.graph.fresh_name(f"{hint}_", self.taken)
        self.taken.add(name)
        return name

    def const(self, data, hint: str) -> Value:
        v = self.graph.add_constant(self.name(hint), np.asarray(data))
        self.taken.add(v.name)
        return v

    def node(self, op: str, inputs: list, attrs: dict, hint: str) -> Value:
        out = Value(self.name(hint), TensorType(dtypes.float32, None))
        node = Node(op, inputs, [out], attrs)
        out.type = infer_node(node)[0]
        self.nodes.append(node)
        return out

    def body(self, body: Graph, args: list, hint: str) -> list[Value]:
        """A copy of the body's nodes reading `args` for its inputs; its outputs."""
        env = dict(zip(body.inputs, args))
        for n in body.nodes:
            outs = [Value(self.name(f"{hint}_{v.name}"), v.type) for v in n.outputs]
            env.update(zip(n.outputs, outs))
            attrs = {k: a.copy() if isinstance(a, Graph) else a for k, a in n.attrs.items()}
            self.nodes.append(Node(n.op, [None if v is None else env[v] for v in n.inputs], outs, attrs, n.name))
        return [env[v] for v in body.outputs]

    def stack(self, values: list, axis: int, hint: str, empty: TensorType) -> Value:
        """The values stacked on a new axis (an empty constant of type `empty` when there are none)."""
        if not values:
            return self.const(np.zeros(empty.shape, empty.dtype.np), hint)
        axes = self.const(np.array([axis], np.int64), f"{hint}_axis")
        parts = [self.node("unsqueeze", [v, axes], {}, hint) for v in values]
        return parts[0] if len(parts) == 1 else self.node("concat", parts, {"axis": axis}, hint)


def _trips(node: Node):
    """The number of iterations of a loop node, when known at compile time."""
    m = node.inputs[0].data if node.inputs[0] is not None else None
    if m is None:
        return None
    cond = node.inputs[1]
    if cond is not None and not (cond.data is not None and bool(np.asarray(cond.data).reshape(-1)[0])
                                 and passes_condition(node.attrs["body"])):
        return None
    return max(int(np.asarray(m).reshape(-1)[0]), 0)


@register_pass
class UnrollLoops(Pass):
    """Replaces small loops and scans of a static length by copies of their bodies."""

    name = "unroll-loops"
    max_trips: int = 16
    max_nodes: int = 256

    def run(self, graph: Graph) -> None:
        for _ in range(MAX_NESTING):  # a loop inside an unrolled body is unrolled the next round
            if not self.unroll_once(graph):
                break

    def unroll_once(self, graph: Graph) -> bool:
        """One pass over the graph's nodes; whether any loop or scan was unrolled."""
        nodes: list = []
        b = _Builder(graph, nodes)
        unrolled = False
        for node in graph.nodes:
            if node.op == "loop":
                replaced = self.loop(node, b)
            elif node.op == "scan":
                replaced = self.scan(node, b)
            else:
                replaced = None
            if replaced is None:
                nodes.append(node)
                continue
            unrolled = True
            for old, new in zip(node.outputs, replaced):
                if old in graph.outputs:  # the output's name is the model's interface
                    if new in graph.inputs or new in graph.outputs or new.data is not None:
                        nodes.append(Node("identity", [new], [old], {}))  # both names are interface
                        continue
                    b.taken.add(old.name)
                    new.name = old.name
                graph.replace_uses(old, new)  # the nodes after this one, and the graph's outputs
        graph.nodes = nodes
        graph.remove_unused_constants()
        return unrolled

    def fits(self, steps, body: Graph) -> bool:
        return steps is not None and steps <= self.max_trips and steps * len(body.nodes) <= self.max_nodes

    def loop(self, node: Node, b: _Builder):
        body: Graph = node.attrs["body"]
        steps = _trips(node)
        if not self.fits(steps, body):
            return None
        c = node.attrs.get("captures", 0)
        n = len(node.inputs) - 2 - c
        carried, captures = list(node.inputs[2:2 + n]), list(node.inputs[2 + n:])
        true = b.const(np.array(True), "cond")
        scanned: list[list] = [[] for _ in body.outputs[1 + n:]]
        for t in range(steps):
            outs = b.body(body, [b.const(np.array(t, np.int64), "iteration"), true] + carried + captures, f"it{t}")
            carried = outs[1:1 + n]
            for acc, v in zip(scanned, outs[1 + n:]):
                acc.append(v)
        return carried + [b.stack(acc, 0, v.name, v.type) for acc, v in zip(scanned, node.outputs[n:])]

    def scan(self, node: Node, b: _Builder):
        body: Graph = node.attrs["body"]
        n, m, c, k, in_axes, in_dirs, out_axes, out_dirs = scan_layout(node.attrs, len(node.inputs),
                                                                         len(node.outputs))
        first = node.inputs[n]
        if first.type.shape is None:
            return None
        steps = first.type.shape[in_axes[0] % len(first.type.shape)]
        if not isinstance(steps, int) or not self.fits(steps, body):
            return None
        states, xs, captures = list(node.inputs[:n]), node.inputs[n:n + m], list(node.inputs[n + m:])
        scanned: list[list] = [[] for _ in range(k)]
        for t in range(steps):
            slices = []
            for x, a, d in zip(xs, in_axes, in_dirs):
                index = b.const(np.array(steps - 1 - t if d else t, np.int64), "step")
                slices.append(b.node("gather", [x, index], {"axis": a % len(x.type.shape)}, f"{x.name}_t{t}"))
            outs = b.body(body, states + slices + captures, f"step{t}")
            states = outs[:n]
            for acc, v in zip(scanned, outs[n:]):
                acc.append(v)
        stacked = []
        for acc, v, a, d in zip(scanned, node.outputs[n:], out_axes, out_dirs):
            stacked.append(b.stack(acc[::-1] if d else acc, a % len(v.type.shape), v.name, v.type))
        return states + stacked
