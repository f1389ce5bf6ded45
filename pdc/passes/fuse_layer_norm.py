"""fuse-layer-norm: LayerNorm decomposed into reductions and arithmetic -> one layer_normalization."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ._pattern_match import Matcher, NoMatch, Rewriter, all_sizes, named_shape, scalar, short_float
from .manager import Pass, register_pass


@register_pass
class FuseLayerNorm(Pass):
    """Fuses LayerNorm written out as reductions and arithmetic into one layer_normalization.

    This is how exporters such as paddle2onnx (opset < 17) write it:

        m = ReduceMean(x, axes); d = x - m; v = ReduceMean(Pow(d, 2) or d * d, axes)
        y = d / Sqrt(v + eps) [* gamma] [+ beta]

    over trailing axes (kept dims), and replaces it by layer_normalization(x, gamma, beta)
    {axis, epsilon}. Constant gamma / beta are reshaped to the normalized dims; a missing gamma
    becomes ones. A gamma / beta that varies along a non-normalized dim, or that would broadcast
    the result beyond x's shape, is not LayerNorm's: no fusion. Every intermediate value must be
    used only inside the pattern.
    """

    name = "fuse-layer-norm"

    def run(self, graph: Graph) -> None:
        m = Matcher(graph)
        rewriter = Rewriter(graph)
        taken = graph.value_names()
        for node in reversed(graph.nodes):
            if node.op not in ("div", "mul", "add") or node in rewriter.taken:
                continue
            m.reset()
            found = m.attempt(_match, m, node)
            if found is None or not m.interior_ok(node.outputs[0]):
                continue
            x, axis, eps, gamma, beta = found
            shape = named_shape(x)[axis:]
            if not all_sizes(shape):
                continue  # the parameters are laid out over the normalized dims at compile time
            scale = _param(graph, gamma, shape, x, taken, "ln_scale")
            bias = None if beta is None else _param(graph, beta, shape, x, taken, "ln_bias")
            if scale is None or (beta is not None and bias is None):
                continue
            attrs = {"axis": axis, "epsilon": short_float(eps, x.type.dtype)}
            if x.type.dtype == dtypes.float64:
                attrs["stash_type"] = dtypes.float64  # the decomposed form computed in double
            new = Node("layer_normalization", [x, scale] + ([bias] if bias is not None else []),
                       [node.outputs[0]], attrs, node.name)
            rewriter.add(m.nodes, node.outputs[0], new)
        rewriter.apply()


def _param(graph: Graph, v: Optional[Value], shape: tuple, x: Value, taken: set, what: str) -> Optional[Value]:
    """gamma / beta with the normalized shape (ones for a missing gamma); None when impossible."""
    if v is None:
        data = np.ones(shape, x.type.dtype.np)
    elif v.type.dtype != x.type.dtype or v.type.shape is None:
        return None
    elif tuple(v.type.shape) == tuple(shape):
        return v
    elif not v.is_const:  # a computed parameter must already have the normalized shape
        return None
    else:  # leading dims are 1 (checked by _match): drop them, then broadcast
        d = v.data.reshape(v.data.shape[max(0, v.data.ndim - len(shape)):])
        data = np.ascontiguousarray(np.broadcast_to(d, shape))
    name = graph.fresh_name(f"{x.name}.{what}", taken)
    taken.add(name)
    return graph.add_constant(name, data, x.type.dtype)


def _axes(n: Node, rank: int) -> list:
    """The reduce_mean's axes, normalized; they must be the trailing ones, with kept dims."""
    axes_in = n.inputs[1] if len(n.inputs) > 1 else None
    if n.attrs.get("keepdims", 1) != 1 or axes_in is None or not axes_in.is_const:
        raise NoMatch
    axes = sorted(int(a) % rank for a in np.asarray(axes_in.data).reshape(-1))
    if not axes or axes != list(range(axes[0], rank)):
        raise NoMatch
    return axes


def _split_affine(m: Matcher, node: Node, inner_ops: tuple):
    """(param, inner value) of node = op(inner, param) or op(param, inner), inner from `inner_ops`."""
    for a, b in ((0, 1), (1, 0)):
        inner = m.peek(node.inputs[a])
        if inner is not None and inner.op in inner_ops:
            return node.inputs[b], node.inputs[a]
    raise NoMatch


def _match(m: Matcher, last: Node):
    gamma = beta = None
    n = last
    m.nodes.append(n)
    if n.op == "add":  # + beta
        beta, inner = _split_affine(m, n, ("mul", "div"))
        n = m.node(inner, "mul", "div")
    if n.op == "mul":  # * gamma
        gamma, inner = _split_affine(m, n, ("div",))
        n = m.node(inner, "div")
    if n.op != "div":
        raise NoMatch
    sub = m.node(n.inputs[0], "sub")
    d = sub.outputs[0]
    e = m.node(m.node(n.inputs[1], "sqrt").inputs[0], "add")
    for a, b in ((0, 1), (1, 0)):
        eps = scalar(e.inputs[b])
        if eps is not None and m.peek(e.inputs[a]) is not None and m.peek(e.inputs[a]).op == "reduce_mean":
            var = m.node(e.inputs[a], "reduce_mean")
            break
    else:
        raise NoMatch
    x, mean = sub.inputs
    mean_node = m.node(mean, "reduce_mean")
    if m.resolve(mean_node.inputs[0]) is not m.resolve(x) or not x.type.dtype.is_float:
        raise NoMatch
    x_shape = named_shape(x)
    rank = len(x_shape)
    axes = _axes(mean_node, rank)
    if _axes(var, rank) != axes:
        raise NoMatch
    sq = m.node(var.inputs[0], "pow", "mul")
    if sq.op == "pow":
        if m.resolve(sq.inputs[0]) is not d or scalar(sq.inputs[1]) != 2.0:
            raise NoMatch
    elif not (m.resolve(sq.inputs[0]) is d and m.resolve(sq.inputs[1]) is d):
        raise NoMatch
    if named_shape(last.outputs[0]) != x_shape:
        raise NoMatch  # gamma / beta broadcast the result beyond x
    normalized = rank - axes[0]
    for p in (gamma, beta):
        if p is not None and (p.type.shape is None or len(p.type.shape) > rank
                              or any(dim != 1 for dim in p.type.shape[:max(0, len(p.type.shape) - normalized)])):
            raise NoMatch  # a parameter that varies along a non-normalized dim
    return x, axes[0], eps, gamma, beta
