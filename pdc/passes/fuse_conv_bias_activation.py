"""fuse-conv-bias-activation: conv / gemm / matmul + bias add + residual add + activation -> one node."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..ir.graph import Graph, Node, Value
from ._rewrite import broadcasts_into, channel_vector, input_or_none, new_constant, same_shape, sole_user
from .manager import Pass, register_pass

_FUSED = {"conv": "fused_conv", "gemm": "fused_gemm", "matmul": "fused_matmul"}
_PLAIN_ACTIVATIONS = ("relu", "sigmoid", "tanh", "hard_swish")


@register_pass
class FuseConvBiasActivation(Pass):
    """Fuses a conv, gemm or matmul with what follows it into fused_conv / fused_gemm / fused_matmul.

    After the base node, in this order, each optional:
    - add of a constant bias that varies only along the output channel (conv: axis 1, matmul:
      the last axis; gemm: any constant that broadcasts to (M, N)) -> folded into the bias;
    - add of another tensor of exactly the output's shape -> residual="before_activation";
    - an activation: relu, clip with constant bounds (relu6), leaky_relu, sigmoid, hard_sigmoid,
      hard_swish, swish (SiLU: simplify-algebra makes it of x * sigmoid(x)), gelu, tanh;
    - (with an activation and no residual yet) add of a same-shape tensor -> "after_activation".
    Every intermediate value must have a single reader and not be a graph output. A base node
    with nothing to fuse is left alone. The fused node takes the last fused node's place and
    output, so the output keeps its name and every input is defined before it.
    """

    name = "fuse-conv-bias-activation"

    def run(self, graph: Graph) -> None:
        for base in list(graph.nodes):
            if base.op in _FUSED and any(n is base for n in graph.nodes):
                _fuse(graph, base)


def _fuse(graph: Graph, base: Node) -> None:
    users = graph.users()
    out = base.outputs[0]
    if len(base.outputs) != 1 or not out.type.dtype.is_float:
        return
    chain: list[Node] = []
    cur = out
    extra_bias = None
    residual, r = "none", None
    activation = None

    def step(node):
        nonlocal cur
        chain.append(node)
        cur = node.outputs[0]
        return sole_user(graph, users, cur)

    u = sole_user(graph, users, cur)
    if u is not None and u.op == "add":
        other = _other(u, cur)
        if other is not None and other.data is not None:
            extra_bias = _bias_addend(base, other.data)
            if extra_bias is not None:
                u = step(u)
    if u is not None and u.op == "add" and _residual_ok(_other(u, cur), cur):
        residual, r = "before_activation", _other(u, cur)
        u = step(u)
    if u is not None:
        activation = _activation(u, cur)
        if activation is not None:
            u = step(u)
    if activation is not None and residual == "none" and u is not None and u.op == "add" \
            and _residual_ok(_other(u, cur), cur):
        residual, r = "after_activation", _other(u, cur)
        u = step(u)
    if not chain:
        return

    inputs = list(base.inputs) + [None] * (3 - len(base.inputs))
    attrs = dict(base.attrs)
    if extra_bias is not None:
        inputs[2] = _merged_bias(graph, base, extra_bias, attrs)
    name, alpha, beta = activation or ("none", None, None)
    attrs.update(activation=name, residual=residual)
    if alpha is not None:
        attrs["activation_alpha"] = alpha
    if beta is not None:
        attrs["activation_beta"] = beta
    inputs.append(r)
    while inputs[-1] is None:
        inputs.pop()
    fused = Node(_FUSED[base.op], inputs, [cur], attrs, base.name)
    gone = {id(n) for n in chain[:-1]} | {id(base)}
    graph.nodes = [fused if n is chain[-1] else n for n in graph.nodes if id(n) not in gone]
    graph.remove_unused_constants()


def _other(add: Node, v: Value) -> Optional[Value]:
    a, b = add.inputs
    return b if a is v else a


def _residual_ok(r: Optional[Value], cur: Value) -> bool:
    """A residual is added as is: same dtype and exactly the output's shape (no broadcasting)."""
    return r is not None and r is not cur and r.type.dtype == cur.type.dtype \
        and same_shape(r.type.shape, cur.type.shape)


def _bias_addend(base: Node, c: np.ndarray) -> Optional[np.ndarray]:
    """What adding constant `c` after the base node adds to its bias, or None if it is no bias."""
    out = base.outputs[0].type
    if c.dtype != out.dtype.np or out.shape is None:
        return None
    if base.op == "gemm":
        existing = input_or_none(base, 2)
        return c if broadcasts_into(c.shape, out.shape) and (existing is None or existing.data is not None) else None
    if base.op == "conv":
        existing = input_or_none(base, 2)
        if existing is not None and existing.data is None:
            return None
        return channel_vector(c, out.shape, 1) if len(out.shape) >= 2 else None
    # matmul: one value per column
    return channel_vector(c, out.shape, len(out.shape) - 1) if len(out.shape) >= 2 else None


def _merged_bias(graph: Graph, base: Node, addend: np.ndarray, attrs: dict) -> Value:
    existing = input_or_none(base, 2)
    dt = base.outputs[0].type.dtype
    name = existing.name if existing is not None else f"{base.inputs[1].name}.bias"
    if base.op == "gemm":
        beta = float(attrs.get("beta", 1.0))
        total = addend if existing is None or beta == 0 else beta * existing.data.astype(np.float64) + addend
        attrs["beta"] = 1.0
        return new_constant(graph, name, total, dt)
    total = addend if existing is None else existing.data.astype(np.float64) + addend
    return new_constant(graph, name, total, dt)


def _scalar(v: Optional[Value], default: float) -> Optional[float]:
    if v is None:
        return default
    if v.data is None or v.data.size != 1:
        return None
    return float(v.data.reshape(-1)[0])


def _activation(node: Node, cur: Value) -> Optional[tuple]:
    """(activation, alpha, beta) for an activation node reading `cur`, or None."""
    if not node.inputs or node.inputs[0] is not cur:
        return None
    op, a = node.op, node.attrs
    if op in _PLAIN_ACTIVATIONS:
        return op, None, None
    if op == "leaky_relu":
        return op, float(a.get("alpha", 0.01)), None
    if op == "swish":
        return op, float(a.get("alpha", 1.0)), None
    if op == "hard_sigmoid":
        return op, float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if op == "gelu":
        approximate = a.get("approximate", "none")
        return ({"none": "gelu", "tanh": "gelu_tanh"}[approximate], None, None) \
            if approximate in ("none", "tanh") else None
    if op == "clip":
        lo, hi = _scalar(input_or_none(node, 1), -math.inf), _scalar(input_or_none(node, 2), math.inf)
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return None
        return "clip", lo, hi
    return None
