"""Small helpers the rewriting passes share: who uses a value, constants, shapes, dead nodes."""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.types import UNKNOWN


def sole_user(graph: Graph, users: dict, v: Value) -> Optional[Node]:
    """The one node that reads `v` (exactly once), when `v` is not a graph output; else None.

    A value with a second reader or a graph output must stay observable, so no pattern may
    swallow it."""
    readers = users.get(v, [])
    if len(readers) != 1 or v in graph.outputs:
        return None
    node = readers[0]
    if sum(1 for x in node.inputs if x is v) != 1:
        return None
    return node


def input_or_none(node: Node, i: int) -> Optional[Value]:
    return node.inputs[i] if i < len(node.inputs) else None


def same_shape(a, b) -> bool:
    """Whether two shapes are known to be equal: same rank, dims equal, no unknown dims.

    Equal symbols name the same run-time extent."""
    return a is not None and b is not None and len(a) == len(b) and UNKNOWN not in a and tuple(a) == tuple(b)


def broadcasts_into(small, big) -> bool:
    """Whether a static shape `small` broadcasts to `big` without growing it."""
    if big is None or len(small) > len(big):
        return False
    return all(s == 1 or s == b for s, b in zip(reversed(small), reversed(big)))


def channel_vector(c: np.ndarray, out_shape, axis: int) -> Optional[np.ndarray]:
    """`c` as a 1-D array with one value per index of `axis`, if `c` only varies along that axis
    and broadcasts into `out_shape` without growing it; else None."""
    if out_shape is None or not isinstance(out_shape[axis], int) or not broadcasts_into(c.shape, out_shape):
        return None
    n = out_shape[axis]
    lead = len(out_shape) - c.ndim
    for i, d in enumerate(c.shape):
        if d != 1 and i + lead != axis:
            return None
    return np.broadcast_to(c.reshape(-1), (n,)).copy() if c.size in (1, n) else None


def new_constant(graph: Graph, base: str, data: np.ndarray, dtype) -> Value:
    """A fresh constant named after `base` (never mutates a possibly shared one)."""
    return graph.add_constant(graph.fresh_name(base + "_"), np.asarray(data, dtype.np), dtype)


def remove_dead(graph: Graph, candidates: Iterable[Node]) -> None:
    """Drops the candidate nodes (and, in turn, their producers) whose outputs nobody reads."""
    pending = {id(n) for n in candidates}
    if not pending:
        return
    while True:
        used = {v for n in graph.nodes for v in n.inputs if v is not None} | set(graph.outputs)
        dead = [n for n in graph.nodes if id(n) in pending and not any(v in used for v in n.outputs)]
        if not dead:
            break
        producers = graph.producers()
        dead_ids = {id(n) for n in dead}
        graph.nodes = [n for n in graph.nodes if id(n) not in dead_ids]
        pending = {id(producers[v]) for n in dead for v in n.inputs if v is not None and v in producers}
        pending -= dead_ids
    graph.remove_unused_constants()
