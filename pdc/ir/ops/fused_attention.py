"""fused_attention: scaled dot-product attention, softmax(Q K^T * scale + mask) V, as one node.

    %o = fused_attention(%q, %k, %v, _) {num_heads=4, scale=0.25} : f32[1,16,64]

Two input forms, as in ONNX Attention (opset 23):
- num_heads > 0: Q (B, Sq, H*dk), K (B, Skv, H*dk), V (B, Skv, H*dv); heads are split off the
  last dim and merged back into it, so Y is (B, Sq, H*dv).
- num_heads = 0: Q (B, H, Sq, dk), K (B, H, Skv, dk), V (B, H, Skv, dv); Y is (B, H, Sq, dv).
`scale` multiplies Q K^T (absent: 1/sqrt(dk)). The optional mask broadcasts to the scores
(B, H, Sq, Skv) without growing them: a float mask is added, a bool mask keeps the scores where
it is true (-inf elsewhere). With nan_to_zero=1, NaN probabilities count as zeros (a row of
scores all -inf, or with a NaN or +inf, gives zeros), as PyTorch exports
scaled_dot_product_attention: Where(IsNaN(P), 0, P). The reference runs the component ops'
references (matmul, mul, add, where, softmax) in the same order as the unfused graph.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, get_op, register_op
from ..types import TensorType, dims_compatible
from .common import broadcast_shapes

_FLOATS = dtypes.FLOATS


def _heads(ctx: InferContext):
    """(B, H, S, d) of Q, K, V, in whichever form the node uses."""
    h = ctx.attrs.get("num_heads", 0)
    if h < 0:
        ctx.fail(f"num_heads must be >= 0, got {h}")
    rank = 3 if h else 4
    shapes = []
    for i, what in enumerate("QKV"):
        t = ctx.types[i]
        if t.dtype not in _FLOATS:
            ctx.fail(f"{what} must be a float tensor, got {t.dtype}")
        if t.dtype != ctx.types[0].dtype:
            ctx.fail(f"{what} has dtype {t.dtype}, Q has {ctx.types[0].dtype}")
        if t.shape is None:
            shapes.append(None)
            continue
        if len(t.shape) != rank:
            ctx.fail(f"{what} must have rank {rank} with num_heads={h}, got {t}")
        if h:
            b, s, hidden = t.shape
            if isinstance(hidden, int) and hidden % h:
                ctx.fail(f"{what}'s hidden size {hidden} is not divisible by num_heads {h}")
            shapes.append((b, h, s, hidden // h if isinstance(hidden, int) else "?"))
        else:
            shapes.append(tuple(t.shape))
    return shapes


def _infer(ctx: InferContext):
    q, k, v = _heads(ctx)
    h = ctx.attrs.get("num_heads", 0)
    if q is None or k is None or v is None:
        return [TensorType(ctx.types[0].dtype, None)]
    for (a, b, what) in ((q[0], k[0], "batch"), (k[0], v[0], "batch"), (q[1], k[1], "heads"), (k[1], v[1], "heads"),
                         (q[3], k[3], "Q/K head size"), (k[2], v[2], "K/V sequence length")):
        if not dims_compatible(a, b):
            ctx.fail(f"{what} differs ({a} vs {b})")
    scores = (q[0], q[1], q[2], k[2])
    if ctx.has_input(3):
        m = ctx.types[3]
        if m.dtype != dtypes.bool_ and m.dtype != ctx.types[0].dtype:
            ctx.fail(f"mask must be bool or {ctx.types[0].dtype}, got {m.dtype}")
        if m.shape is not None:
            if len(m.shape) > 4:
                ctx.fail(f"mask {m} has a higher rank than the scores {list(scores)}")
            both = broadcast_shapes([scores, m.shape], ctx)
            if not all(dims_compatible(a, b) for a, b in zip(both, scores)):
                ctx.fail(f"mask {m} would grow the scores {list(scores)}")
    if h:
        dv = v[3]
        hidden = h * dv if isinstance(dv, int) else ctx.types[2].shape[2]
        return [TensorType(ctx.types[0].dtype, (q[0], q[2], hidden))]
    return [TensorType(ctx.types[0].dtype, (q[0], q[1], q[2], v[3]))]


def _ref(op, inputs, **attrs):
    return np.asarray(get_op(op).reference(inputs, attrs))


def _reference(inputs, attrs):
    q, k, v, mask = (list(inputs) + [None])[:4]
    h = attrs.get("num_heads", 0)
    if h:  # (B, S, H*d) -> (B, H, S, d)
        q, k, v = (x.reshape(x.shape[0], x.shape[1], h, -1).transpose(0, 2, 1, 3) for x in (q, k, v))
    scale = attrs.get("scale")
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = _ref("matmul", [q, np.swapaxes(k, -1, -2)])
    s = _ref("mul", [s, np.asarray(scale, s.dtype)])
    if mask is not None:
        if mask.dtype == np.bool_:
            s = _ref("where", [mask, s, np.asarray(-np.inf, s.dtype)])
        else:
            s = _ref("add", [s, mask])
    p = _ref("softmax", [s], axis=-1)
    if attrs.get("nan_to_zero", 0):
        p = _ref("where", [np.isnan(p), np.asarray(0, p.dtype), p])
    y = _ref("matmul", [p, v])
    if h:  # (B, H, Sq, dv) -> (B, Sq, H*dv)
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    return y


def _verify(ctx: InferContext):
    s = ctx.attrs.get("scale")
    if s is not None and not math.isfinite(s):
        ctx.fail(f"scale must be finite, got {s}")
    if ctx.attrs.get("nan_to_zero", 0) not in (0, 1):
        ctx.fail(f"nan_to_zero must be 0 or 1, got {ctx.attrs['nan_to_zero']}")


register_op("fused_attention", ["Q", "K", "V", "mask?"], ["Y"], infer=_infer, reference=_reference, verify=_verify,
            attrs={"num_heads": Attr("int", 0), "scale": Attr("float", None), "nan_to_zero": Attr("int", 0)},
            doc="softmax(Q K^T * scale + mask) V; num_heads > 0 splits and merges heads (3-D Q, K, V).")
