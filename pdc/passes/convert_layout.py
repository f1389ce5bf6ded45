"""convert-layout: regions of 2-D conv / pool / norm / elementwise ops -> channels-last (NHWC)."""
from __future__ import annotations

import networkx as nx
import numpy as np

from ..ir.errors import PdcError
from ..ir.graph import Graph, Node, Value
from ..ir.ops.layout import NHWC_VARIANTS, TO_NCHW, TO_NHWC, permute_shape, weight_perm
from ..ir.registry import all_ops
from .manager import Pass, register_pass

WEIGHT_LAYOUT = "OHWI"
_CONVS = ("conv", "fused_conv")


def _rank(v) -> int | None:
    return None if v is None else v.type.rank


def _is_scalar_like(v: Value) -> bool:
    return v.type.shape is not None and all(d == 1 for d in v.type.shape)


@register_pass
class ConvertLayout(Pass):
    """Converts regions of 2-D convs, pools and batch norms (with the elementwise ops between) to NHWC.

    conv -> conv_nhwc (weights stored OHWI), fused_conv -> fused_conv_nhwc, max_pool ->
    max_pool_nhwc, ...; elementwise ops, identities and concats inside a region keep their op.

    A region is a connected set of such nodes with at least one layout-sensitive op. Transposes
    appear only at its borders: one per NCHW value entering it, one per NHWC value leaving it
    (used outside or a graph output). Constants feeding a region are permuted at compile time.
    A border transpose that meets an existing transpose is composed with it, and a pair that
    cancels disappears. Only `layout=NHWC` is implemented.
    """

    name = "convert-layout"
    layout: str = "NHWC"

    def run(self, graph: Graph) -> None:
        if self.layout != "NHWC":
            raise PdcError(f"pass 'convert-layout': layout '{self.layout}' is not supported (supported: NHWC)")
        regions = _regions(graph)
        if not regions:
            return
        converter = _Converter(graph, regions)
        converter.run()
        _cancel_transposes(graph, converter.created)


# ---- which nodes ---------------------------------------------------------------------------------
def _sensitive(n: Node) -> bool:
    """A 2-D layout-sensitive op with an NHWC variant."""
    if n.op not in NHWC_VARIANTS or _rank(n.inputs[0]) != 4 or len(n.outputs) != 1:
        return False
    if n.op in _CONVS:
        return n.inputs[1].is_const and n.inputs[1].type.rank == 4
    if n.op == "batch_normalization":
        return n.attrs.get("training_mode", 0) == 0
    return True


def _agnostic(n: Node, ops) -> bool:
    """Elementwise ops, identities and concats over 4-D tensors, whose other inputs can follow a permutation."""
    opdef = ops.get(n.op)
    if opdef is None or len(n.outputs) != 1 or _rank(n.outputs[0]) != 4:
        return False
    if n.op == "concat":
        return all(_rank(v) == 4 for v in n.inputs)
    if not opdef.elementwise and n.op != "identity":
        return False
    # a constant is permuted, a 4-D value transposed, a one-element value needs nothing
    return all(v is None or v.is_const or _rank(v) == 4 or _is_scalar_like(v) for v in n.inputs)


def _regions(graph: Graph) -> list[set[Node]]:
    """Connected groups of convertible nodes that hold at least one layout-sensitive op."""
    ops = all_ops()
    producer = graph.producers()
    cand = {n for n in graph.nodes if _sensitive(n) or _agnostic(n, ops)}
    g = nx.Graph()
    g.add_nodes_from(cand)
    for n in cand:
        for v in n.inputs:
            p = producer.get(v)
            if p in cand and _rank(v) == 4:
                g.add_edge(p, n)
    return [set(c) for c in nx.connected_components(g) if any(_sensitive(n) for n in c)]


# ---- rewriting -----------------------------------------------------------------------------------
class _Converter:
    def __init__(self, graph: Graph, regions: list[set[Node]]):
        self.graph = graph
        self.region = set().union(*regions)
        self.users = graph.users()
        self.outputs = set(graph.outputs)
        self.names = graph.value_names()
        self.nhwc: dict[Value, Value] = {}  # NCHW value -> its NHWC twin (computed in a region or transposed)
        self.const_cache: dict[tuple, Value] = {}
        self.created: set[Node] = set()  # the border transposes

    def fresh(self, base: str) -> str:
        name = base if base not in self.names else self.graph.fresh_name(base + ".", self.names)
        self.names.add(name)
        return name

    def run(self) -> None:
        out = []
        for n in self.graph.nodes:
            if n not in self.region:
                out.append(n)
                continue
            inputs = [self.operand(n, i, v, out) for i, v in enumerate(n.inputs)]
            results = []
            for v in n.outputs:
                escapes = v in self.outputs or any(u not in self.region for u in self.users.get(v, ()))
                t = v.type.with_shape(permute_shape(v.type.shape, TO_NHWC))
                nv = Value(self.fresh(v.name + "_nhwc"), t) if escapes else v
                if not escapes:
                    v.type = t
                self.nhwc[v] = nv
                results.append((v, nv, escapes))
            out.append(self.convert(n, inputs, [nv for _, nv, _ in results]))
            for v, nv, escapes in results:
                if escapes:  # back to NCHW for the users outside the region
                    out.append(self.transpose(nv, v, TO_NCHW))
        self.graph.nodes = out
        self.graph.remove_unused_constants()

    def operand(self, n: Node, i: int, v, out: list):
        if v is None:
            return None
        if v in self.nhwc:
            return self.nhwc[v]
        if n.op in _CONVS and i == 1:
            return self.constant(v, _inverse(weight_perm(WEIGHT_LAYOUT)), WEIGHT_LAYOUT.lower())
        if (n.op in _CONVS and i == 2) or (n.op == "batch_normalization" and i > 0):
            return v  # bias and per-channel parameters are 1-D
        if _is_scalar_like(v):
            return v  # a one-element value broadcasts the same in any layout
        if v.is_const:
            return self.constant(v, TO_NHWC, "nhwc")
        if _rank(v) == 4:  # a border: an NCHW value enters the region
            t = Value(self.fresh(v.name + "_nhwc"), v.type.with_shape(permute_shape(v.type.shape, TO_NHWC)))
            out.append(self.transpose(v, t, TO_NHWC))
            self.nhwc[v] = t
            return t
        raise AssertionError(f"convert-layout: unexpected operand %{v.name}")  # excluded by _agnostic

    def transpose(self, src: Value, dst: Value, perm) -> Node:
        node = Node("transpose", [src], [dst], {"perm": list(perm)})
        self.created.add(node)
        return node

    def constant(self, v: Value, perm, tag: str) -> Value:
        key = (id(v), tuple(perm))
        if key not in self.const_cache:
            data = v.data.reshape((1,) * (4 - v.data.ndim) + v.data.shape)  # numpy broadcasting aligns right
            self.const_cache[key] = self.graph.add_constant(self.fresh(f"{v.name}_{tag}"),
                                                            np.ascontiguousarray(data.transpose(perm)), v.type.dtype)
        return self.const_cache[key]

    def convert(self, n: Node, inputs: list, outputs: list) -> Node:
        attrs = dict(n.attrs)
        op = NHWC_VARIANTS.get(n.op, n.op)
        if n.op in _CONVS:
            attrs["weight_layout"] = WEIGHT_LAYOUT
        elif n.op == "concat":
            attrs["axis"] = TO_NHWC.index(attrs["axis"] % 4)
        return Node(op, inputs, outputs, attrs, n.name)


def _forward_identity_outputs(graph: Graph) -> None:
    """A graph output made by an identity transpose: the transposed node computes it directly."""
    producer = graph.producers()
    outputs = set(graph.outputs)
    for n in list(graph.nodes):
        if n.op != "transpose" or n.attrs.get("perm") != list(range(len(n.attrs.get("perm", [])))):
            continue
        src, out = n.inputs[0], n.outputs[0]
        p = producer.get(src)
        if p is None or src in outputs or out not in outputs or src.type != out.type:
            continue
        p.outputs = [out if v is src else v for v in p.outputs]
        graph.nodes.remove(n)
        graph.replace_uses(src, out)
        producer[out] = p


def _inverse(perm) -> tuple:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _cancel_transposes(graph: Graph, created: set) -> None:
    """transpose(transpose(x, p), q) -> transpose(x, p then q), or x itself when that is the identity,
    where one of the two is a border transpose of this pass (`created`)."""
    producer = graph.producers()
    outputs = set(graph.outputs)
    replace: dict[Value, Value] = {}
    for n in graph.nodes:
        n.inputs = [replace.get(v, v) for v in n.inputs]
        if n.op != "transpose":
            continue
        inner = producer.get(n.inputs[0])
        if inner is None or inner.op != "transpose" or not ({n, inner} & created):
            continue
        p, q = inner.attrs["perm"], n.attrs["perm"]
        composed = [p[i] for i in q]
        if composed == list(range(len(composed))) and n.outputs[0] not in outputs:
            replace[n.outputs[0]] = inner.inputs[0]
        else:
            n.inputs = [inner.inputs[0]]
            n.attrs["perm"] = composed
    _forward_identity_outputs(graph)
    live = set(graph.outputs)
    kept = []
    for n in reversed(graph.nodes):  # drop the transposes nothing uses any more
        if n.op == "transpose" and not any(v in live for v in n.outputs):
            continue
        kept.append(n)
        live.update(v for v in n.inputs if v is not None)
    graph.nodes = kept[::-1]
    graph.remove_unused_constants()

