"""The reference interpreter: runs any IR graph with the ops' NumPy implementations."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import PdcError
from .graph import Graph, Node
from .registry import get_op
from .types import dims_compatible


def _conform(node: Node, i: int, result: np.ndarray) -> np.ndarray:
    """Casts a reference result to the declared dtype and checks its shape."""
    out = node.outputs[i]
    arr = np.asarray(result)
    if arr.dtype != out.type.dtype.np:
        arr = arr.astype(out.type.dtype.np)
    shape = out.type.shape
    if shape is not None and (len(shape) != arr.ndim or not all(dims_compatible(a, b) for a, b in zip(shape, arr.shape))):
        raise PdcError(f"{node.describe()}: output %{out.name} has shape {list(arr.shape)}, declared {out.type}")
    return arr


def run_node(node: Node, inputs: list) -> list[np.ndarray]:
    opdef = get_op(node.op)
    try:
        results = opdef.reference(inputs, node.attrs)
    except PdcError as e:
        raise PdcError(f"{node.describe()}: {e}") from e
    if isinstance(results, np.ndarray) or np.isscalar(results):
        results = [results]
    results = list(results)
    if len(results) < len(node.outputs):
        raise PdcError(f"{node.describe()}: reference gave {len(results)} outputs, node has {len(node.outputs)}")
    return [_conform(node, i, r) for i, r in enumerate(results[:len(node.outputs)])]


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict:
    """Feeds keyed by input name, converted to the declared dtypes; raises PdcError on a mismatch."""
    env = {}
    for v in graph.inputs:
        if v.name not in feeds:
            raise PdcError(f"missing input '{v.name}' ({v.type})")
        arr = np.asarray(feeds[v.name])
        if arr.dtype != v.type.dtype.np:
            raise PdcError(f"input '{v.name}' has dtype {arr.dtype}, expected {v.type.dtype.name}")
        shape = v.type.shape
        if shape is not None and (len(shape) != arr.ndim or not all(dims_compatible(a, b) for a, b in zip(shape, arr.shape))):
            raise PdcError(f"input '{v.name}' has shape {list(arr.shape)}, expected {v.type}")
        env[v] = arr
    unknown = set(feeds) - {v.name for v in graph.inputs}
    if unknown:
        raise PdcError(f"unknown input(s) {sorted(unknown)}; the graph takes {[v.name for v in graph.inputs]}")
    return env


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Executes `graph` on `feeds` (name -> array) and returns its outputs by name."""
    env = check_feeds(graph, feeds)
    for c in graph.constants:
        env[c] = c.data
    for node in graph.nodes:
        args = [None if v is None else env[v] for v in node.inputs]
        for v, r in zip(node.outputs, run_node(node, args)):
            env[v] = r
    return {v.name: env[v] for v in graph.outputs}
