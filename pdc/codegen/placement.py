"""Placement: the memory space each node runs in, and explicit copies where a value crosses spaces.

A target names its memory spaces (Target.memory_spaces, "host" first; a GPU adds "device", whose
kernels may use "on-chip" memory for their scratch) and the space each node's kernel runs in
(Target.space_of): a node a device target has no kernel for runs on the host. `place` makes every
crossing explicit: a value read in a space other than the one it was written in goes through a
`copy` node (attribute `to`), one per (value, space), before its first reader there. Graph
inputs and outputs are the caller's buffers, in host memory; constants are wherever their readers
are (a device target uploads its weights once, at init). The memory plan then gives each space
its own arena (pdc/codegen/memory.py, `spaces`).

Host-only targets place every node on the host: the graph comes back unchanged.
"""
from __future__ import annotations

from typing import Callable

from ..ir.errors import PdcError
from ..ir.graph import Graph, Node, Value

HOST = "host"


def place(graph: Graph, space_of: Callable[[Node], str], spaces: tuple = (HOST,)) -> tuple[Graph, dict[Value, str]]:
    """The graph with copy nodes where values cross spaces, and the space of every value a node
    writes (graph outputs: host). `spaces`: the target's memory spaces, which space_of answers from."""
    node_spaces = [space_of(node) for node in graph.nodes]
    for node, space in zip(graph.nodes, node_spaces):
        if space not in spaces:
            raise PdcError(f"placement: {node.describe()} placed in '{space}', not one of the target's memory spaces "
                           f"({', '.join(spaces)})")
    if all(s == HOST for s in node_spaces):
        return graph, {v: HOST for n in graph.nodes for v in n.outputs}
    g = graph.copy()
    outputs = set(g.outputs)
    where: dict[Value, str] = {v: HOST for v in g.inputs}  # the space each value is written in
    copies: dict[tuple[Value, str], Value] = {}  # (value, space) -> its copy there
    twin: dict[Value, Value] = {}  # a graph output written on a device -> the device value
    taken = g.value_names()
    nodes: list[Node] = []

    def fresh(v: Value, space: str) -> Value:
        new = Value(g.fresh_name(f"{v.name}_{space}_", taken), v.type)
        taken.add(new.name)
        return new

    def in_space(v: Value, space: str) -> Value:
        if v is None or v.is_const:
            return v
        v = twin.get(v, v)
        if where[v] == space:
            return v
        if (v, space) not in copies:
            c = fresh(v, space)
            nodes.append(Node("copy", [v], [c], {"to": space}))
            where[c] = space
            copies[(v, space)] = c
        return copies[(v, space)]

    for node, space in zip(g.nodes, node_spaces):
        node.inputs = [in_space(v, space) for v in node.inputs]
        nodes.append(node)
        for k, v in enumerate(node.outputs):
            if v in outputs and space != HOST:  # the caller's buffer is host memory: write a twin, copy it there
                d = twin[v] = node.outputs[k] = fresh(v, space)
                where[d] = space
                nodes.append(Node("copy", [d], [v], {"to": HOST}))
                copies[(d, HOST)] = v
            where[v] = HOST if v in outputs else space
    g.nodes = nodes
    return g, {v: where[v] for n in g.nodes for v in n.outputs}
