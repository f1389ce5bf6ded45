"""Attention (opset 25 form; opsets 23 and 24 are subsets): scaled dot-product attention with
multi-head / grouped-query / multi-query heads, 3-D or 4-D inputs, an additive or boolean mask,
offset-aware causal masking, sliding windows, an internal KV cache (past -> present) or an
external one (nonpad_kv_seqlen), softcap and the qk_matmul_output debug output.

The reference follows the spec's pipeline: Q and K are each scaled by sqrt(scale), the bias
combines mask, causal frontier, window and padding (-inf where a key is not attended), softmax
runs in softmax_precision (or float32 for half inputs), and a query row whose bias is -inf for
every key gives a zero row instead of NaN.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import broadcast_shapes
from .nn_common import compute_dtype

_FLOATS = (dtypes.float16, dtypes.float32, dtypes.float64, dtypes.bfloat16)


def _split_heads(t, heads):
    """(B, S, H*D) -> (B, H, S, D); 4-D inputs pass through."""
    if t.ndim == 4:
        return t
    b, s, hidden = t.shape
    return t.reshape(b, s, heads, hidden // heads).transpose(0, 2, 1, 3)


def _div_dim(a, b):
    return a // b if isinstance(a, int) and isinstance(b, int) else UNKNOWN


def _add_dims(a, b):
    return a + b if isinstance(a, int) and isinstance(b, int) else UNKNOWN


# ---- type inference --------------------------------------------------------------------------
def _attention_infer(ctx: InferContext):
    a = ctx.attrs
    q, k, v = ctx.types[:3]
    for i, t in enumerate((q, k, v)):
        if t.dtype not in _FLOATS:
            ctx.fail(f"input {i} must be a float tensor, got {t.dtype}")
    if k.dtype != q.dtype:
        ctx.fail(f"Q and K must share one dtype, got {q.dtype} and {k.dtype}")
    if a.get("qk_matmul_output_mode", 0) not in (0, 1, 2, 3):
        ctx.fail(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {a['qk_matmul_output_mode']}")
    for side in ("left_window_size", "right_window_size"):
        if a.get(side, -1) < -1:
            ctx.fail(f"{side} must be -1 or non-negative, got {a[side]}")
    sp = a.get("softmax_precision")
    if sp is not None and sp not in _FLOATS:
        ctx.fail(f"softmax_precision must be a float type, got {sp}")
    if ctx.has_input(4) != ctx.has_input(5):
        ctx.fail("past_key and past_value must be given together")
    if ctx.has_input(6) and ctx.has_input(4):
        ctx.fail("nonpad_kv_seqlen cannot be combined with past_key / past_value")
    if ctx.has_input(6) and ctx.types[6].dtype != dtypes.int64:
        ctx.fail(f"nonpad_kv_seqlen must be int64, got {ctx.types[6].dtype}")
    if ctx.has_input(3):
        mt = ctx.types[3].dtype
        if mt != dtypes.bool_ and mt != q.dtype:
            ctx.fail(f"attn_mask must be bool or {q.dtype}, got {mt}")

    ranks = {t.rank for t in (q, k, v) if t.rank is not None}
    if len(ranks) > 1:
        ctx.fail(f"Q, K and V must have the same rank, got {sorted(ranks)}")
    rank = ranks.pop() if ranks else None
    if rank is not None and rank not in (3, 4):
        ctx.fail(f"Q, K and V must be 3-D or 4-D, got rank {rank}")
    hq, hkv = a.get("q_num_heads"), a.get("kv_num_heads")
    if rank == 3 and (hq is None or hkv is None):
        ctx.fail("3-D inputs need the q_num_heads and kv_num_heads attributes")
    shapes = [t.shape for t in (q, k, v)]
    if rank is None or any(s is None for s in shapes):
        unknown = [TensorType(q.dtype, None), TensorType(k.dtype, None), TensorType(v.dtype, None),
                   TensorType(q.dtype, None)]
        return unknown[:ctx.num_outputs]
    if rank == 4:
        b, hq4, sq, dq = q.shape
        _, hk4, skv, dk = k.shape
        dv = v.shape[3]
        for given, actual, what in ((hq, hq4, "q_num_heads"), (hkv, hk4, "kv_num_heads")):
            if given is not None and isinstance(actual, int) and given != actual:
                ctx.fail(f"{what}={given} does not match the 4-D input's {actual} heads")
        hq, hkv = hq4, hk4
    else:
        b, sq, qh = q.shape
        _, skv, kh = k.shape
        dq, dk, dv = _div_dim(qh, hq), _div_dim(kh, hkv), _div_dim(v.shape[2], hkv)
        for hidden, heads, what in ((qh, hq, "Q"), (kh, hkv, "K"), (v.shape[2], hkv, "V")):
            if isinstance(hidden, int) and hidden % heads:
                ctx.fail(f"{what}'s hidden size {hidden} is not divisible by its {heads} heads")
    if isinstance(hq, int) and isinstance(hkv, int) and hq % hkv:
        ctx.fail(f"q_num_heads={hq} is not a multiple of kv_num_heads={hkv}")
    if isinstance(dq, int) and isinstance(dk, int) and dq != dk:
        ctx.fail(f"Q and K head sizes differ ({dq} vs {dk})")
    past = ctx.types[4].shape[2] if ctx.has_input(4) and ctx.types[4].shape is not None else (
        0 if not ctx.has_input(4) else UNKNOWN)
    total = _add_dims(past, skv)
    if ctx.has_input(3) and ctx.types[3].shape is not None:
        ms = ctx.types[3].shape
        if len(ms) > 4:
            ctx.fail(f"attn_mask has rank {len(ms)}, at most 4 is allowed")
        if ms and isinstance(ms[-1], int) and isinstance(total, int) and ms[-1] > total:
            ctx.fail(f"attn_mask's last dim {ms[-1]} exceeds the total sequence length {total}")
        broadcast_shapes([tuple(ms[:-1]), (b, hq, sq)], ctx)
    y_shape = (b, hq, sq, dv) if rank == 4 else (b, sq, hq * dv if isinstance(hq, int) and isinstance(dv, int)
                                                 else UNKNOWN)
    outs = [TensorType(q.dtype, y_shape),
            TensorType(k.dtype, (b, hkv, total, dk)),
            TensorType(v.dtype, (b, hkv, total, dv)),
            TensorType(q.dtype, (b, hq, sq, total))]
    return outs[:ctx.num_outputs]


# ---- reference -------------------------------------------------------------------------------
def _allowed_band(sq, skv, offset, lo=None, hi=None):
    """Boolean (.., sq, skv): key j is inside [p - lo, p + hi] for p = offset + i (None: unbounded)."""
    i = np.arange(sq)[:, None]
    j = np.arange(skv)[None, :]
    pos = i + (np.asarray(offset).reshape(-1, 1, 1) if np.ndim(offset) else offset)
    ok = np.ones(np.broadcast_shapes(np.shape(pos), j.shape), bool)
    if lo is not None:
        ok &= j >= pos - lo
    if hi is not None:
        ok &= j <= pos + hi
    return ok


def _bias_term(allowed, per_batch):
    """0 where allowed, -inf elsewhere; per-batch masks get their head axis."""
    bias = np.where(allowed, 0.0, -np.inf)
    return bias[:, None] if per_batch else bias


def _attention_reference(inputs, attrs):
    q, k, v, mask, past_k, past_v, nonpad = (inputs + [None] * 7)[:7]
    out_dt = q.dtype
    acc = compute_dtype(q, k, v)
    rank3 = q.ndim == 3
    hq = attrs.get("q_num_heads") if rank3 else q.shape[1]
    hkv = attrs.get("kv_num_heads") if rank3 else k.shape[1]
    q4 = _split_heads(q, hq).astype(acc)
    k4 = _split_heads(k, hkv)
    v4 = _split_heads(v, hkv)
    if past_k is not None:
        k4 = np.concatenate([past_k, k4.astype(past_k.dtype)], axis=2)
        v4 = np.concatenate([past_v, v4.astype(past_v.dtype)], axis=2)
    present_k, present_v = k4, v4
    b, _, sq, head = q4.shape
    skv = k4.shape[2]

    # additive bias: mask, causal frontier, window, padding
    bias = np.zeros((sq, skv), acc)
    if mask is not None:
        m = np.where(mask, 0.0, -np.inf).astype(acc) if mask.dtype == np.bool_ else mask.astype(acc)
        if m.shape[-1] < skv:  # a short mask: the missing keys are not attended
            m = np.pad(m, [(0, 0)] * (m.ndim - 1) + [(0, skv - m.shape[-1])], constant_values=-np.inf)
        bias = bias + m
    per_batch = past_k is None and nonpad is not None
    offset = nonpad.reshape(-1) - sq if per_batch else (past_k.shape[2] if past_k is not None else 0)
    if attrs.get("is_causal", 0):
        bias = bias + _bias_term(_allowed_band(sq, skv, offset, hi=0), per_batch)
    lw, rw = attrs.get("left_window_size", -1), attrs.get("right_window_size", -1)
    if lw >= 0 or rw >= 0:
        band = _allowed_band(sq, skv, offset, lo=lw if lw >= 0 else None, hi=rw if rw >= 0 else None)
        bias = bias + _bias_term(band, per_batch)
    if nonpad is not None:
        valid = np.arange(skv)[None, :] < nonpad.reshape(-1, 1)
        bias = bias + np.where(valid, 0.0, -np.inf).reshape(b, 1, 1, skv)
    bias = bias.astype(acc)

    if hq != hkv:  # grouped-query: each KV head serves hq / hkv consecutive query heads
        k4 = np.repeat(k4, hq // hkv, axis=1)
        v4 = np.repeat(v4, hq // hkv, axis=1)
    # each step of the spec's function body yields T1: round to it between steps (a no-op for float32)
    rnd = (lambda t: t.astype(out_dt).astype(acc)) if out_dt != acc else (lambda t: t)
    scale = attrs.get("scale")
    root = acc.type(out_dt.type(np.sqrt(1.0 / np.sqrt(head) if scale is None else scale)))
    scores = rnd(np.matmul(rnd(q4 * root), rnd(k4.astype(acc) * root).transpose(0, 1, 3, 2)))
    raw = scores
    softcap = attrs.get("softcap", 0.0)
    if softcap > 0:
        scores = rnd(softcap * np.tanh(scores / softcap))
    mode = attrs.get("qk_matmul_output_mode", 0)
    debug = {0: raw, 1: scores}.get(mode)
    with np.errstate(invalid="ignore"):
        scores = rnd(scores + bias)
    if mode == 2:
        debug = scores

    # softmax runs in softmax_precision, else in T1 itself (bfloat16: float32)
    sp = attrs.get("softmax_precision") or dtypes.from_numpy(out_dt)
    s = scores.astype(acc if sp is dtypes.bfloat16 else sp.np)
    top = np.max(s, axis=-1, keepdims=True)
    top = np.where(np.isneginf(top), 0, top)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(s - top)
        total = e.sum(axis=-1, keepdims=True)
        probs = e / np.where(total == 0, 1, total)
    dead = np.isneginf(np.max(np.broadcast_to(bias, scores.shape), axis=-1, keepdims=True))
    probs = np.where(dead, 0, probs)  # no attended key: a zero row, not NaN
    if mode == 3:
        debug = probs
    probs = rnd(probs.astype(acc))  # the spec casts the probabilities to T1 before P @ V
    y = np.matmul(probs, v4.astype(acc))
    if rank3:
        y = y.transpose(0, 2, 1, 3).reshape(b, sq, -1)
    return [y.astype(out_dt), present_k, present_v, np.asarray(debug).astype(out_dt)]


register_op("attention", ["Q", "K", "V", "attn_mask?", "past_key?", "past_value?", "nonpad_kv_seqlen?"],
            ["Y", "present_key?", "present_value?", "qk_matmul_output?"], onnx="Attention",
            attrs={"is_causal": Attr("int", 0), "kv_num_heads": Attr("int", None), "q_num_heads": Attr("int", None),
                   "qk_matmul_output_mode": Attr("int", 0), "scale": Attr("float", None),
                   "softcap": Attr("float", 0.0), "softmax_precision": Attr("dtype", None),
                   "left_window_size": Attr("int", -1), "right_window_size": Attr("int", -1)},
            infer=_attention_infer, reference=_attention_reference,
            doc="ONNX Attention (opset 23-25): scaled dot-product attention with masks, GQA, KV cache, softcap.")
