"""fuse-attention: the transformer's attention subgraph -> one attention node per head group."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ir import dtypes
from ..ir.errors import PdcError
from ..ir.graph import Graph, Node, Value
from ..ir.ops.common import broadcast_shapes
from ..ir.registry import all_ops
from ._pattern_match import Matcher, NoMatch, Rewriter, all_sizes, named_shape, scalar, short_float, static_shape
from .manager import Pass, register_pass

_SPLIT = [0, 2, 1, 3]  # (B, S, H, d) <-> (B, H, S, d)
_SPLIT_T = [0, 2, 3, 1]  # (B, S, H, d) -> (B, H, d, S): K split and transposed at once
_SWAP = [0, 1, 3, 2]  # (B, H, S, d) -> (B, H, d, S)


@dataclass
class _Core:
    q: Value  # (B, H, Sq, dk)
    kt: Value  # (B, H, dk, Skv)
    v: Value  # (B, H, Skv, dv)
    mask: Optional[Value]
    scale: float
    out: Value  # (B, H, Sq, dv)
    nan_to_zero: bool = False  # Where(IsNaN(P), 0, P) after the softmax


def _perm(n: Node) -> list:
    return list(n.attrs.get("perm", []))


@register_pass
class FuseAttention(Pass):
    """Fuses MatMul(Q, K^T) -> [Mul/Div by a constant] -> [Add mask] -> Softmax(last axis) -> MatMul(., V).

    A constant scale may sit on the scores, on Q (as Paddle's `scale` exports it: a Mul and an
    Add of zero) or on both Q and K^T (PyTorch's export of scaled_dot_product_attention), and the
    probabilities may pass Where(IsNaN(P), 0, P) (the same export: a row masked out entirely
    gives zeros; fused_attention's nan_to_zero). When Q, K and V come from Reshape (B, S, H*d) ->
    (B, S, H, d) + Transpose to (B, H, S, d) and the result goes back the same way, those are
    absorbed too and the node takes the 3-D tensors with num_heads=H; otherwise it takes the 4-D
    ones. Every absorbed value must be used only inside the pattern. `op` picks the node:
    `attention` (ONNX Attention, opset 23), `fused_attention`, or `auto` (attention when that op is
    registered and computes the subgraph as it is, else fused_attention: see _exact_as_attention).
    """

    name = "fuse-attention"
    op: str = "auto"

    def run(self, graph: Graph) -> None:
        ops = all_ops()
        op = ("attention" if "attention" in ops else "fused_attention") if self.op == "auto" else self.op
        if op not in ("attention", "fused_attention"):
            raise PdcError(f"pass 'fuse-attention': option 'op' must be auto, attention or fused_attention, got '{op}'")
        if op not in ops:
            raise PdcError(f"pass 'fuse-attention': op '{op}' is not registered")
        m = Matcher(graph)
        rewriter = Rewriter(graph)
        for node in list(graph.nodes):
            if node.op != "matmul" or node in rewriter.taken:
                continue
            m.reset()
            core = m.attempt(_match_core, m, node)
            if core is None:
                continue
            node_op = op
            if op == "attention" and not _exact_as_attention(core):
                if self.op != "auto" or "fused_attention" not in ops:
                    continue
                node_op = "fused_attention"
            core_nodes = list(m.nodes)
            split = m.attempt(_match_heads, m, core)
            if split is not None and m.interior_ok(split[3]):
                q, k, v, out, heads = split
                if rewriter.add(m.nodes, out, _attention_node(node_op, [q, k, v, core.mask], out, core, heads)):
                    continue
            m.nodes = core_nodes  # the 4-D form: K^T must be a transpose of a 4-D K
            t = m.peek(core.kt)
            if t is None or t.op != "transpose" or _perm(t) != _SWAP:
                continue
            k = m.node(core.kt, "transpose").inputs[0]
            if m.interior_ok(core.out):
                new = _attention_node(node_op, [core.q, k, core.v, core.mask], core.out, core, 0)
                rewriter.add(m.nodes, core.out, new)
        rewriter.apply()


def _exact_as_attention(core: _Core) -> bool:
    """Whether the attention op (ONNX Attention) computes the subgraph: its mask must have a value
    per key (the op reads a shorter last dim as keys not attended, where the Add broadcast it
    over the keys), and its scale is a float32 whose square root it takes in float32, which a
    float64 subgraph's scale does not survive; and NaN probabilities are not zeros there."""
    every_key = core.mask is None or static_shape(core.mask)[-1] == static_shape(core.kt)[-1]
    return every_key and core.out.type.dtype != dtypes.float64 and not core.nan_to_zero


def _attention_node(op: str, inputs: list, out: Value, core: _Core, heads: int) -> Node:
    attrs = {"scale": short_float(core.scale, out.type.dtype)}
    if op == "fused_attention":
        attrs["num_heads"] = heads
        if core.nan_to_zero:
            attrs["nan_to_zero"] = 1
    elif heads:
        attrs.update(q_num_heads=heads, kv_num_heads=heads)
    while inputs and inputs[-1] is None:
        inputs = inputs[:-1]
    return Node(op, inputs, [out], attrs, "")


def _match_core(m: Matcher, second: Node) -> _Core:
    """second = MatMul(Softmax(scores), V), scores from MatMul(Q, K^T), a scale and a mask."""
    m.nodes.append(second)
    probs, v = second.inputs
    nan_to_zero = m.attempt(_nan_to_zero, m, probs)
    if nan_to_zero is not None:
        probs = nan_to_zero
    sm = m.node(probs, "softmax")
    rank = sm.inputs[0].type.rank
    if rank != 4 or sm.attrs.get("axis", -1) not in (-1, 3) or v.type.rank != 4:
        raise NoMatch
    scores = named_shape(sm.inputs[0])
    scale, mask, s = 1.0, None, sm.inputs[0]
    n = m.peek(s)
    if n is not None and n.op == "add":
        m.node(s, "add")  # the mask: whichever operand is not the scaled scores
        for a, b in ((0, 1), (1, 0)):
            first = m.attempt(_scaled_scores, m, n.inputs[a])
            if first is not None:
                mask = n.inputs[b]
                break
        else:
            raise NoMatch
        if mask.type.shape is None or not 2 <= len(mask.type.shape) <= 4 or \
                broadcast_shapes([scores, mask.type.shape]) != tuple(scores):
            raise NoMatch
    else:
        first = _scaled_scores(m, s)
    mm, scale = first
    q, kt = mm.inputs
    q, q_scale = _peel_scale(m, q)
    kt, k_scale = _peel_scale(m, kt)  # the square root of the scale on each (PyTorch's export)
    return _Core(q, kt, v, mask, scale * q_scale * k_scale, second.outputs[0], nan_to_zero is not None)


def _nan_to_zero(m: Matcher, p: Value) -> Value:
    """The probabilities x of p = Where(IsNaN(x), 0, x) (a row of scores masked out entirely gives
    NaN probabilities, which PyTorch's export of scaled_dot_product_attention turns into zeros)."""
    where = m.node(p, "where")
    cond, zero, x = where.inputs
    if scalar(zero) != 0.0 or m.node(cond, "is_nan").inputs[0] is not x:
        raise NoMatch
    return x


def _scaled_scores(m: Matcher, s: Value):
    """(the Q K^T matmul, the constant scale applied to its result)."""
    n = m.node(s, "mul", "div", "matmul")
    if n.op == "matmul":
        return n, 1.0
    for a, b in ((0, 1), (1, 0)) if n.op == "mul" else ((0, 1),):
        c = scalar(n.inputs[b])
        if c is not None and c != 0:
            mm = m.attempt(m.node, n.inputs[a], "matmul")
            if mm is not None:
                return mm, (c if n.op == "mul" else 1 / c)
    raise NoMatch


def _peel_scale(m: Matcher, x: Value):
    """(x with a constant scale (Mul or Div, then an optional Add of zero) peeled off, the scale):
    Q or K^T as an exporter scaled it; (x, 1.0) when it was not."""
    def peel():
        n = m.node(x, "add", "mul", "div")
        if n.op == "add":
            zero = [i for i in (0, 1) if scalar(n.inputs[i]) == 0.0]
            if not zero:
                raise NoMatch
            n = m.node(n.inputs[1 - zero[0]], "mul", "div")
        for a, b in ((0, 1), (1, 0)) if n.op == "mul" else ((0, 1),):
            c = scalar(n.inputs[b])
            if c is not None and c != 0:
                return n.inputs[a], (c if n.op == "mul" else 1 / c)
        raise NoMatch
    return m.attempt(peel) or (x, 1.0)


def _split_heads(m: Matcher, v4: Value, perm: list):
    """The 3-D (B, S, H*d) tensor that Reshape + Transpose(perm) turned into `v4`, and H."""
    t = m.node(v4, "transpose")
    if _perm(t) != perm:
        raise NoMatch
    r = m.node(t.inputs[0], "reshape")
    x = m.source(r.inputs[0])
    xs, rs = named_shape(x), named_shape(r.outputs[0])
    if len(xs) != 3 or len(rs) != 4 or rs[:2] != xs[:2] or not all_sizes(rs[2:] + xs[2:]) or rs[2] * rs[3] != xs[2]:
        raise NoMatch
    return x, rs[2]


def _match_heads(m: Matcher, core: _Core):
    """(Q3, K3, V3, Y3, H) when heads are split from and merged into 3-D tensors around the core."""
    q, hq = _split_heads(m, core.q, _SPLIT)
    t = m.peek(core.kt)
    if t is not None and t.op == "transpose" and _perm(t) == _SWAP:  # K^T = Transpose(split K)
        k = _split_heads(m, m.node(core.kt, "transpose").inputs[0], _SPLIT)
    else:  # K split and transposed by one Transpose
        k = _split_heads(m, core.kt, _SPLIT_T)
    v, hv = _split_heads(m, core.v, _SPLIT)
    if not hq == k[1] == hv:
        raise NoMatch
    users = m.users.get(core.out, [])
    if len(users) != 1 or core.out in m.outputs:
        raise NoMatch
    t = users[0]
    while t.op == "identity":  # look through identities downstream too
        m.nodes.append(t)
        nxt = m.users.get(t.outputs[0], [])
        if len(nxt) != 1 or t.outputs[0] in m.outputs:
            raise NoMatch
        t = nxt[0]
    if t.op != "transpose" or _perm(t) != _SPLIT:
        raise NoMatch
    m.nodes.append(t)
    users = m.users.get(t.outputs[0], [])
    if len(users) != 1 or users[0].op != "reshape" or users[0].inputs[0] is not t.outputs[0]:
        raise NoMatch
    r = users[0]
    m.nodes.append(r)
    ts, ys = named_shape(t.outputs[0]), named_shape(r.outputs[0])
    if len(ys) != 3 or ys[:2] != ts[:2] or not all_sizes(ts[2:] + ys[2:]) or ys[2] != ts[2] * ts[3]:
        raise NoMatch
    return q, k[0], v, r.outputs[0], hq
