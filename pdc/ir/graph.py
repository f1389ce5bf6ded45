"""The graph IR: SSA values, nodes with an op and typed attributes, graphs with constants."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import networkx as nx
import numpy as np

from .types import TensorType


class Value:
    """An SSA value. Constants carry their data (`data`), everything else is computed or fed."""

    __slots__ = ("name", "type", "data")

    def __init__(self, name: str, type: TensorType, data: Optional[np.ndarray] = None):
        self.name = name
        self.type = type
        self.data = data

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """One op application. `inputs` may hold None for an omitted optional input."""

    __slots__ = ("op", "inputs", "outputs", "attrs", "name")

    def __init__(self, op: str, inputs: list, outputs: list, attrs: Optional[dict] = None, name: str = ""):
        self.op = op
        self.inputs: list[Optional[Value]] = list(inputs)
        self.outputs: list[Value] = list(outputs)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.name = name

    def describe(self) -> str:
        """How error messages refer to this node."""
        return f"node '{self.name}' ({self.op})" if self.name else f"node {self.op} -> %{self.outputs[0].name}"

    def __repr__(self) -> str:
        return f"<Node {self.describe()}>"


class Graph:
    def __init__(self, name: str = "main", inputs=(), outputs=(), nodes=(), constants=()):
        self.name = name
        self.inputs: list[Value] = list(inputs)
        self.outputs: list[Value] = list(outputs)
        self.nodes: list[Node] = list(nodes)
        self.constants: list[Value] = list(constants)
        self.dim_bounds: dict[str, tuple[int, int]] = {}  # symbol -> (lo, hi): sizes known at run time

    # ---- queries -------------------------------------------------------
    def values(self) -> Iterable[Value]:
        """Every value once: inputs, constants, then node outputs in order."""
        yield from self.inputs
        yield from self.constants
        for n in self.nodes:
            yield from n.outputs

    def producers(self) -> dict[Value, Node]:
        return {v: n for n in self.nodes for v in n.outputs}

    def users(self) -> dict[Value, list[Node]]:
        result: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v is not None:
                    result.setdefault(v, []).append(n)
        return result

    def value_names(self) -> set[str]:
        return {v.name for v in self.values()}

    def fresh_name(self, prefix: str, taken: Optional[set] = None) -> str:
        taken = self.value_names() if taken is None else taken
        i = 0
        while f"{prefix}{i}" in taken:
            i += 1
        return f"{prefix}{i}"

    # ---- edits ---------------------------------------------------------
    def add_constant(self, name: str, data: np.ndarray, dtype=None) -> Value:
        from . import dtypes
        data = np.asarray(data)
        dt = dtype or dtypes.from_numpy(data.dtype)
        v = Value(name, TensorType(dt, data.shape), np.array(data, dtype=dt.np, order="C"))
        self.constants.append(v)
        return v

    def replace_uses(self, old: Value, new: Value) -> None:
        for n in self.nodes:
            n.inputs = [new if v is old else v for v in n.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def topo_sort(self) -> None:
        """Reorders nodes so that every value is defined before use (stable where possible)."""
        producer = self.producers()
        g = nx.DiGraph()
        g.add_nodes_from(range(len(self.nodes)))
        index = {id(n): i for i, n in enumerate(self.nodes)}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                if v is not None and v in producer:
                    g.add_edge(index[id(producer[v])], i)
        order = nx.lexicographical_topological_sort(g)
        self.nodes = [self.nodes[i] for i in order]

    def remove_unused_constants(self) -> None:
        used = {v for n in self.nodes for v in n.inputs if v is not None} | set(self.outputs)
        self.constants = [c for c in self.constants if c in used]

    def copy(self) -> "Graph":
        """A structural copy: new Values and Nodes (subgraph attributes copied too), constant arrays
        shared (they are never mutated)."""
        vmap = {}

        def cp(v):
            if v is None:
                return None
            if v not in vmap:
                vmap[v] = Value(v.name, v.type, v.data)
            return vmap[v]

        g = Graph(self.name, [cp(v) for v in self.inputs], [], [], [cp(v) for v in self.constants])
        g.nodes = [Node(n.op, [cp(v) for v in n.inputs], [cp(v) for v in n.outputs],
                        {k: a.copy() if isinstance(a, Graph) else a for k, a in n.attrs.items()}, n.name)
                   for n in self.nodes]
        g.outputs = [cp(v) for v in self.outputs]
        g.dim_bounds = dict(self.dim_bounds)
        return g

    def constant_arrays(self) -> dict[str, np.ndarray]:
        return {c.name: c.data for c in self.constants}
