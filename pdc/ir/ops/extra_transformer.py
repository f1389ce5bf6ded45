"""Transformer ops of opsets 23-28: swiglu (SwiGLU) and rotary_embedding (RotaryEmbedding).

- swiglu: Y = A * sigmoid(alpha * A) * B, A and B of one shape (no broadcasting).
- rotary_embedding (RoPE): X is (batch, num_heads, seq, head_size) or (batch, seq, hidden) with
  hidden = num_heads * head_size. The first rotary_embedding_dim (default head_size) values of
  each head are rotated pairwise by the angle whose cos / sin come from the caches: indexed by
  position_ids (batch, seq) in caches of shape (max_position, rot / 2), or, without position_ids,
  caches of shape (batch, seq, rot / 2). The pairs are (i, i + rot/2) or, with interleaved=1,
  (2i, 2i + 1): real = cos * x1 - sin * x2, imag = sin * x1 + cos * x2.
Half precision computes in float32 and rounds once, like the other references.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import TensorType
from .tensor import runtime_error

_FLOATS = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)
_HALF = (np.dtype(np.float16), dtypes.bfloat16.np)


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype in _HALF else x


# ---- swiglu --------------------------------------------------------------------------------------
def _swiglu_infer(ctx: InferContext):
    a, b = ctx.types[0], ctx.types[1]
    if a.dtype not in _FLOATS:
        ctx.fail(f"A has dtype {a.dtype}; SwiGLU takes float16, bfloat16, float32 or float64")
    if a.dtype != b.dtype:
        ctx.fail(f"A ({a.dtype}) and B ({b.dtype}) must share one dtype")
    if a.shape is not None and b.shape is not None:
        same = len(a.shape) == len(b.shape) and all(
            x == y or not isinstance(x, int) or not isinstance(y, int) for x, y in zip(a.shape, b.shape))
        if not same:
            ctx.fail(f"A {a} and B {b} must have the same shape (SwiGLU does not broadcast)")
        shape = tuple(x if isinstance(x, int) else y for x, y in zip(a.shape, b.shape))
        return [TensorType(a.dtype, shape)]
    return [a if a.shape is not None else b]


def _swiglu_ref(inputs, attrs):
    a, b = inputs
    if a.shape != b.shape:
        runtime_error(f"swiglu: A {list(a.shape)} and B {list(b.shape)} must have the same shape")
    x, y = _wide(a), _wide(b)
    alpha = x.dtype.type(attrs.get("alpha", 1.0))
    with np.errstate(over="ignore"):
        z = alpha * x
        e = np.exp(-np.abs(z))
        sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        return (x * sig * y).astype(a.dtype)


register_op("swiglu", ["A", "B"], ["Y"], onnx="SwiGLU", attrs={"alpha": Attr("float", 1.0)},
            infer=_swiglu_infer, reference=_swiglu_ref,
            doc="Swish(A) * B with Swish(a) = a * sigmoid(alpha * a).")


# ---- rotary_embedding ----------------------------------------------------------------------------
def rope_geometry(x_shape, attrs, fail):
    """(batch, heads, seq, head_size, rot) of a static X shape; `fail(msg)` reports bad shapes."""
    num_heads = attrs.get("num_heads")
    if len(x_shape) == 4:
        batch, heads, seq, head = x_shape
        if num_heads is not None and num_heads != heads:
            fail(f"num_heads={num_heads} does not match X's head dim {heads}")
    elif len(x_shape) == 3:
        batch, seq, hidden = x_shape
        if not num_heads:
            fail("num_heads must be given (> 0) for a 3-D X (batch, seq, hidden)")
        if hidden % num_heads:
            fail(f"hidden size {hidden} is not a multiple of num_heads={num_heads}")
        heads, head = num_heads, hidden // num_heads
    else:
        fail(f"X must be 3-D or 4-D, got rank {len(x_shape)}")
    rot = attrs.get("rotary_embedding_dim", 0) or head
    if rot < 0 or rot > head or rot % 2:
        fail(f"rotary_embedding_dim={rot} must be even and at most the head size {head}")
    return batch, heads, seq, head, rot


def _rope_infer(ctx: InferContext):
    x, cos, sin = ctx.types[0], ctx.types[1], ctx.types[2]
    if x.dtype not in _FLOATS:
        ctx.fail(f"X has dtype {x.dtype}; RotaryEmbedding takes float16, bfloat16, float32 or float64")
    for name, t in (("cos_cache", cos), ("sin_cache", sin)):
        if t.dtype != x.dtype:
            ctx.fail(f"{name} ({t.dtype}) must have X's dtype ({x.dtype})")
    if ctx.attrs.get("interleaved", 0) not in (0, 1):
        ctx.fail(f"attribute 'interleaved' must be 0 or 1, got {ctx.attrs['interleaved']}")
    has_pos = ctx.has_input(3)
    if has_pos and ctx.types[3].dtype != dtypes.int64:
        ctx.fail(f"position_ids must be int64, got {ctx.types[3].dtype}")
    if x.is_static:
        batch, _, seq, _, rot = rope_geometry(x.shape, ctx.attrs, ctx.fail)
        want_rank = 2 if has_pos else 3
        for name, t in (("cos_cache", cos), ("sin_cache", sin)):
            if t.shape is None:
                continue
            if len(t.shape) != want_rank:
                ctx.fail(f"{name} must be {want_rank}-D {'with' if has_pos else 'without'} position_ids, got {t}")
            want = [None, rot // 2] if has_pos else [batch, seq, rot // 2]
            if any(isinstance(d, int) and w is not None and d != w for d, w in zip(t.shape, want)):
                ctx.fail(f"{name} {t} does not match the expected "
                         f"{'(max_position, ' if has_pos else f'({batch}, {seq}, '}{rot // 2})")
        if has_pos:
            p = ctx.types[3]
            if p.shape is not None and (len(p.shape) != 2 or any(
                    isinstance(d, int) and d != w for d, w in zip(p.shape, (batch, seq)))):
                ctx.fail(f"position_ids must have shape ({batch}, {seq}), got {p}")
    elif x.rank not in (None, 3, 4):
        ctx.fail(f"X must be 3-D or 4-D, got {x}")
    return [x]


def _rope_ref(inputs, attrs):
    x, cos, sin = inputs[0], inputs[1], inputs[2]
    pos = inputs[3] if len(inputs) > 3 else None
    batch, heads, seq, head, rot = rope_geometry(x.shape, attrs, lambda m: runtime_error(f"rotary_embedding: {m}"))
    # a (batch, heads, seq, head) view, whatever the input layout
    xs = x.reshape(batch, seq, heads, head).transpose(0, 2, 1, 3) if x.ndim == 3 else x
    xs = _wide(xs)
    cos, sin = _wide(cos), _wide(sin)
    if pos is not None:
        if pos.size and (pos.min() < 0 or pos.max() >= cos.shape[0]):
            runtime_error(f"rotary_embedding: position_ids must be in [0, {cos.shape[0]})")
        cos, sin = cos[pos], sin[pos]
    half = rot // 2
    if cos.shape != (batch, seq, half) or sin.shape != (batch, seq, half):
        runtime_error(f"rotary_embedding: the caches give {list(cos.shape)}, expected {[batch, seq, half]}")
    c, s = cos[:, None], sin[:, None]  # (batch, 1, seq, half): the same angle for every head
    y = xs.copy()
    if attrs.get("interleaved", 0):
        x1, x2 = xs[..., 0:rot:2], xs[..., 1:rot:2]
        y[..., 0:rot:2] = c * x1 - s * x2
        y[..., 1:rot:2] = s * x1 + c * x2
    else:
        x1, x2 = xs[..., :half], xs[..., half:rot]
        y[..., :half] = c * x1 - s * x2
        y[..., half:rot] = s * x1 + c * x2
    if x.ndim == 3:
        y = y.transpose(0, 2, 1, 3).reshape(x.shape)
    return np.ascontiguousarray(y).astype(x.dtype)


register_op("rotary_embedding", ["X", "cos_cache", "sin_cache", "position_ids?"], ["Y"], onnx="RotaryEmbedding",
            attrs={"interleaved": Attr("int", 0), "num_heads": Attr("int", None),
                   "rotary_embedding_dim": Attr("int", 0)},
            infer=_rope_infer, reference=_rope_ref,
            doc="Rotary positional embedding (RoPE) of each head's first rotary_embedding_dim values.")
