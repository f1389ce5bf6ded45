"""Helpers for passes that match a subgraph backwards from its last node and replace it by one node.

A `Matcher` walks producers (looking through `identity` nodes), records every node it visits,
and raises `NoMatch` when the graph differs from the pattern. `attempt` undoes the record of a
failed alternative. `interior_ok` then checks that the matched nodes can go: every value they
compute, except the pattern's result, is used only inside the match and is not a graph output.
`Rewriter` replaces matches by new nodes in one sweep.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..ir.errors import PdcError
from ..ir.graph import Graph, Node, Value
from ..ir.types import UNKNOWN, types_compatible


class NoMatch(Exception):
    """The subgraph does not have the pattern's shape."""


class Matcher:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.producer = graph.producers()
        self.users = graph.users()
        self.outputs = set(graph.outputs)
        self.nodes: list[Node] = []

    def reset(self) -> None:
        self.nodes = []

    def node(self, v: Optional[Value], *ops: str) -> Node:
        """The node computing `v` (through identities), which must be one of `ops`; recorded."""
        if v is None:
            raise NoMatch
        p = self.producer.get(v)
        while p is not None and p.op == "identity" and "identity" not in ops:
            self.nodes.append(p)
            p = self.producer.get(p.inputs[0])
        if p is None or (ops and p.op not in ops):
            raise NoMatch
        self.nodes.append(p)
        return p

    def peek(self, v: Optional[Value]) -> Optional[Node]:
        """The node computing `v` (through identities), not recorded; None for inputs/constants."""
        p = None if v is None else self.producer.get(v)
        while p is not None and p.op == "identity":
            p = self.producer.get(p.inputs[0])
        return p

    def resolve(self, v: Value) -> Value:
        """`v` with identities looked through, not recorded."""
        p = self.producer.get(v)
        while p is not None and p.op == "identity":
            v = p.inputs[0]
            p = self.producer.get(v)
        return v

    def source(self, v: Value) -> Value:
        """`v` with identities looked through (recorded)."""
        p = self.producer.get(v)
        while p is not None and p.op == "identity":
            self.nodes.append(p)
            v = p.inputs[0]
            p = self.producer.get(v)
        return v

    def attempt(self, fn: Callable, *args):
        """fn(*args), or None (with its recorded nodes dropped) when it raises NoMatch."""
        mark = len(self.nodes)
        try:
            return fn(*args)
        except NoMatch:
            del self.nodes[mark:]
            return None

    def interior_ok(self, result: Value) -> bool:
        """Whether every value the matched nodes compute, but `result`, is used only by them."""
        inside = set(self.nodes)
        for n in inside:
            for v in n.outputs:
                if v is result:
                    continue
                if v in self.outputs or any(u not in inside for u in self.users.get(v, ())):
                    return False
        return True


def scalar(v: Optional[Value]) -> Optional[float]:
    """The value of a one-element float constant, else None."""
    if v is None or not v.is_const or v.data.size != 1 or not v.type.dtype.is_float:
        return None
    return float(np.asarray(v.data, np.float64).reshape(()))


def short_float(x: float, dtype) -> float:
    """`x` as the shortest decimal that rounds to the same value in `dtype` (f16/bf16/f32), so that
    an attribute taken from a float32 constant prints as 1e-05, not 9.999999747378752e-06."""
    if dtype.is_float and dtype.itemsize <= 4:
        return float(str(np.float32(x)))
    return float(x)


def static_shape(v: Value) -> tuple:
    if not v.type.is_static:
        raise NoMatch
    return v.type.shape


def all_sizes(dims) -> bool:
    """Every dim is a size (no symbol): what a rewrite lays out or splits at compile time."""
    return all(isinstance(d, int) for d in dims)


def named_shape(v: Value) -> tuple:
    """v's shape when every dim is a size or a named symbol (the same symbol is the same size,
    whatever it is at run time); NoMatch for an unknown rank or dim."""
    if v.type.shape is None or UNKNOWN in v.type.shape:
        raise NoMatch
    return v.type.shape


class Rewriter:
    """Collects (matched nodes, replacement) pairs; `apply` edits the graph once."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.taken: set[Node] = set()
        self.replacements: dict[Node, Node] = {}  # last matched node -> its replacement

    def add(self, matched: list[Node], result: Value, new: Node) -> bool:
        """Replaces `matched` (whose result is `result`) by `new` when they are untouched so far
        and `new` type-checks to `result`'s type. Returns whether it will."""
        from ..ir.verify import check_node_schema, infer_node
        if self.taken & set(matched):
            return False
        try:
            check_node_schema(new)
            if not types_compatible(result.type, infer_node(new)[0]):
                return False
        except PdcError:
            return False
        last = max(matched, key=self.graph.nodes.index)
        self.taken |= set(matched)
        self.replacements[last] = new
        return True

    def apply(self) -> int:
        if not self.replacements:
            return 0
        self.graph.nodes = [self.replacements.get(n, n) for n in self.graph.nodes
                            if n not in self.taken or n in self.replacements]
        self.graph.remove_unused_constants()
        return len(self.replacements)
