"""Evaluating nodes at compile time: what the importer and the fold-constants pass share."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .graph import Node
from .interpreter import run_node


def static_shape_value(node: Node) -> Optional[np.ndarray]:
    """Shape and Size of a statically shaped tensor are known without its data."""
    src = node.inputs[0]
    if src is None or not src.type.is_static:
        return None
    shape = np.array(src.type.shape, np.int64)
    if node.op == "shape":
        rank = len(shape)
        start = node.attrs.get("start", 0)
        end = node.attrs.get("end", rank)
        start, end = (max(0, min(rank, s + rank if s < 0 else s)) for s in (start, end))
        return shape[start:end]
    if node.op == "size":
        return np.array(int(np.prod(shape)), np.int64)
    return None


def try_fold(node: Node, max_elements: Optional[int] = None) -> Optional[list[np.ndarray]]:
    """The outputs of `node` if they can be computed now (and each has at most max_elements)."""
    if node.op in ("shape", "size"):
        value = static_shape_value(node)
        return None if value is None else [value]
    if any(v is not None and v.data is None for v in node.inputs):
        return None
    if max_elements is not None and any(v.type.is_static and v.type.numel > max_elements for v in node.outputs):
        return None
    try:
        results = run_node(node, [None if v is None else v.data for v in node.inputs])
    except Exception:
        return None  # leave it to run time, where the same error is reported in context
    if max_elements is not None and any(r.size > max_elements for r in results):
        return None  # a data-dependent shape turned out large
    return results
