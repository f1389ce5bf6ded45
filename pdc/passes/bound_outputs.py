"""Bounds for outputs whose length depends on the data (ir/ops/bounded.py), before code generation.

A NonZero, Unique, NonMaxSuppression or TopK (K known at run time only) node whose output length
is not static gets a `bound` (the most its inputs' shapes allow) and a `length` output, which
becomes a model output named `<first output>_length` right after the outputs it measures. Compiled code has no shapes known
only at run time, so the bounded values must be model outputs that no other node reads: the
caller (Module.run, or C code reading the length) trims them. Anything else is refused.
"""
from __future__ import annotations

from typing import Optional

from ..ir.errors import PdcError
from ..ir.graph import Graph, Node, Value
from ..ir.ops.common import normalize_axis
from ..ir.registry import get_op
from ..ir.verify import infer_node


def _nms_bound(node: Node) -> Optional[int]:
    boxes, scores = node.inputs[0].type, node.inputs[1].type
    if not (boxes.is_static and scores.is_static):
        return None
    per_class = boxes.shape[1]
    limit = node.inputs[2] if len(node.inputs) > 2 else None
    if limit is not None and limit.is_const:  # max_output_boxes_per_class, known when compiling
        per_class = min(per_class, max(int(limit.data.reshape(-1)[0]), 0) if limit.data.size else 0)
    return boxes.shape[0] * scores.shape[1] * per_class


def _unique_bound(node: Node) -> Optional[int]:
    x = node.inputs[0].type
    if not x.is_static:
        return None
    axis = node.attrs.get("axis")
    return x.numel if axis is None else x.shape[normalize_axis(axis, x.rank)]


def _unique_axes(node: Node) -> list:
    axis = node.attrs.get("axis")
    return [0 if axis is None else normalize_axis(axis, node.inputs[0].type.rank), 0, None, 0]


def _non_zero_bound(node: Node) -> Optional[int]:
    x = node.inputs[0].type
    return x.numel if x.is_static else None


def _top_k_axis(node: Node) -> Optional[int]:
    x = node.inputs[0].type
    return normalize_axis(node.attrs.get("axis", -1), x.rank) if x.shape is not None else None


def _top_k_bound(node: Node) -> Optional[int]:
    x, axis = node.inputs[0].type, _top_k_axis(node)
    return x.shape[axis] if axis is not None and x.is_static else None


# op -> (its bound, the data-dependent axis of each output but the length: None where static)
BOUNDS = {"non_max_suppression": (_nms_bound, lambda node: [0]), "unique": (_unique_bound, _unique_axes),
          "non_zero": (_non_zero_bound, lambda node: [1]),
          "top_k": (_top_k_bound, lambda node: [_top_k_axis(node)] * 2)}


def measured_outputs(graph: Graph) -> dict:
    """{model output: (the model output holding its length, its data-dependent axis)} of the bounded
    nodes' outputs; through the copies a device target's placement puts between a host node and
    the model's outputs (codegen/placement.py)."""
    producer = graph.producers()

    def origin(v: Value) -> Value:
        while v in producer and producer[v].op == "copy":
            v = producer[v].inputs[0]
        return v

    bounded = {}
    for node in graph.nodes:
        if node.op in BOUNDS and node.attrs.get("bound") is not None:
            for v, axis in zip(node.outputs[:-1], BOUNDS[node.op][1](node)):
                if axis is not None:
                    bounded[v] = (node.outputs[-1], axis)
    shown = {origin(v): v for v in graph.outputs}  # the model output each value reaches
    out = {}
    for v in graph.outputs:
        if origin(v) in bounded:
            length, axis = bounded[origin(v)]
            out[v] = (shown.get(length, length), axis)
    return out


def bound_outputs(graph: Graph) -> Graph:
    """Bounds every data-dependent output of graph (in place; returns graph)."""
    readers = {v for n in graph.nodes for v in n.inputs if v is not None}
    for node in graph.nodes:
        if node.op not in BOUNDS or node.attrs.get("bound") is not None:
            continue
        # the op's own inference, not the outputs' types: a model may declare the length its test
        # data gives, which other data does not
        dependent = [v for v, t in zip(node.outputs, infer_node(node)) if v is not None and not t.is_static]
        if not dependent:
            continue
        what = f"{node.describe()}: its output length depends on the data"
        bound = BOUNDS[node.op][0](node)
        if bound is None:
            raise PdcError(f"{what}, and its inputs' shapes give no bound for it")
        for v in dependent:
            if v in readers:
                raise PdcError(f"{what}; compiled code takes '{v.name}' only as a model output that no "
                               f"other node reads (its length is known at run time only)")
        _add_length(graph, node, bound)
    return graph


def _add_length(graph: Graph, node: Node, bound: int) -> None:
    """Gives node its bound, every optional output a value (unused ones too: the kernel writes
    them) and the length output, placed among the model outputs after the last one it measures."""
    node.attrs["bound"] = bound
    names = graph.value_names()
    specs = get_op(node.op).outputs
    outputs = list(node.outputs) + [None] * (len(specs) - 1 - len(node.outputs))
    first = node.outputs[0].name
    for i, v in enumerate(outputs):
        if v is None:
            outputs[i] = Value(graph.fresh_name(f"{first}_unused", names), None)
            names.add(outputs[i].name)
    name = f"{first}_length"
    length = Value(name if name not in names else graph.fresh_name(name, names), None)
    node.outputs = outputs + [length]
    for v, t in zip(node.outputs, infer_node(node)):
        v.type = t
    shown = [graph.outputs.index(v) for v in node.outputs[:-1] if v in graph.outputs]
    if shown:
        graph.outputs.insert(max(shown) + 1, length)
