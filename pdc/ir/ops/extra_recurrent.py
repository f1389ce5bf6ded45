"""Stateful sequence ops of opset 27: causal_conv_with_state (CausalConvWithState) and
linear_attention (LinearAttention).

- causal_conv_with_state: a depthwise 1-D convolution over (batch, channels, length) that looks
  only at the current and past positions: the input is prefixed with past_state (the last k - 1
  positions of the previous call; zeros when absent), convolved with the (channels, 1, k) weight
  (valid padding) plus the optional bias, optionally followed by SiLU (activation silu / swish).
  present_state is the last k - 1 positions of the prefixed input.
- linear_attention: per KV head, a d_k x d_v state S (past_state, zeros when absent) runs over the
  tokens: gated rules first decay it by exp(decay) (per head or per key dim), delta rules replace
  v by beta * (v - S^T k); then S += k (x) v, and each query head of the group reads
  scale * q^T S (scale defaults to 1 / sqrt(d_k)). Q/K/V and decay/beta are packed (B, T, H * D).
The state accumulates in float32; half-precision results are rounded once, as the ONNX reference
does. present_state has past_state's dtype (the query's when past_state is absent).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .tensor import runtime_error

_FLOATS = (dtypes.float16, dtypes.bfloat16, dtypes.float32)
_HALF = (np.dtype(np.float16), dtypes.bfloat16.np)
ACTIVATIONS = ("none", "silu", "swish")
UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


def _known(d) -> bool:
    return isinstance(d, int)


# ---- causal_conv_with_state --------------------------------------------------------------------------
def _causal_conv_infer(ctx: InferContext):
    x, w = ctx.types[0], ctx.types[1]
    if ctx.attrs.get("activation", "none") not in ACTIVATIONS:
        ctx.fail(f"activation must be one of {', '.join(ACTIVATIONS)}, got '{ctx.attrs['activation']}'")
    if x.dtype not in _FLOATS:
        ctx.fail(f"input has dtype {x.dtype}; CausalConvWithState takes float32, float16 or bfloat16")
    for i in (1, 2, 3):
        if ctx.has_input(i) and ctx.types[i].dtype != x.dtype:
            ctx.fail(f"input {i} ({ctx.types[i].dtype}) must have the input's dtype ({x.dtype})")
    if x.rank not in (None, 3) or w.rank not in (None, 3):
        ctx.fail(f"input {x} and weight {w} must be 3-D ((batch, channels, length) and (channels, 1, k))")
    batch, chans = (x.shape[0], x.shape[1]) if x.shape is not None else (UNKNOWN, UNKNOWN)
    k = w.shape[2] if w.shape is not None else UNKNOWN
    if w.shape is not None:
        if _known(w.shape[1]) and w.shape[1] != 1:
            ctx.fail(f"weight must have shape (channels, 1, k), got {w}")
        if _known(w.shape[0]) and _known(chans) and w.shape[0] != chans:
            ctx.fail(f"weight {w} must have one kernel per channel ({chans})")
        if _known(k) and k < 1:
            ctx.fail(f"the kernel size must be >= 1, got {w}")
    state = (batch, chans, k - 1 if _known(k) else UNKNOWN)
    if ctx.has_input(2) and ctx.types[2].shape is not None:
        b = ctx.types[2].shape
        if len(b) != 1 or (_known(b[0]) and _known(chans) and b[0] != chans):
            ctx.fail(f"bias must have shape ({chans},), got {ctx.types[2]}")
    if ctx.has_input(3) and ctx.types[3].shape is not None:
        p = ctx.types[3].shape
        if len(p) != 3 or any(_known(a) and _known(b) and a != b for a, b in zip(p, state)):
            ctx.fail(f"past_state must have shape {list(state)}, got {ctx.types[3]}")
    return [x, TensorType(x.dtype, state)]


def _causal_conv_ref(inputs, attrs):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    past = inputs[3] if len(inputs) > 3 else None
    batch, chans, length = x.shape
    k = w.shape[2]
    if past is None:
        past = np.zeros((batch, chans, k - 1), x.dtype)
    padded = np.concatenate([past, x], axis=2)
    wide = padded.astype(np.float32)
    y = np.zeros((batch, chans, length), np.float32)
    for j in range(k):  # tap j looks j positions after the window start
        y += wide[:, :, j:j + length] * w[:, 0, j].astype(np.float32)[None, :, None]
    if b is not None:
        y += b.astype(np.float32)[None, :, None]
    if attrs.get("activation", "none") in ("silu", "swish"):
        y = y.astype(x.dtype).astype(np.float32)  # the convolution's result is rounded first
        with np.errstate(over="ignore"):
            y = y / (1 + np.exp(-y))
    return [y.astype(x.dtype), np.ascontiguousarray(padded[:, :, padded.shape[2] - (k - 1):])]


register_op("causal_conv_with_state", ["input", "weight", "bias?", "past_state?"], ["output", "present_state"],
            onnx="CausalConvWithState", attrs={"activation": Attr("string", "none")},
            infer=_causal_conv_infer, reference=_causal_conv_ref,
            doc="Causal depthwise 1-D convolution carrying its last k - 1 inputs as state; optional SiLU.")


# ---- linear_attention ----------------------------------------------------------------------------------
def linear_attention_geometry(q_shape, k_shape, v_shape, attrs, fail):
    """(batch, tokens, q_heads, kv_heads, d_k, d_v, scale) of static packed Q/K/V shapes."""
    hq, hkv = attrs.get("q_num_heads"), attrs.get("kv_num_heads")
    if not hq or not hkv or hq < 1 or hkv < 1 or hq % hkv:
        fail(f"q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})")
    for name, s in (("query", q_shape), ("key", k_shape), ("value", v_shape)):
        if len(s) != 3:
            fail(f"{name} must be 3-D (B, T, H * D), got {list(s)}")
    b, t = q_shape[0], q_shape[1]
    if tuple(k_shape[:2]) != (b, t) or tuple(v_shape[:2]) != (b, t):
        fail(f"query {list(q_shape)}, key {list(k_shape)} and value {list(v_shape)} differ in (B, T)")
    if q_shape[2] % hq or v_shape[2] % hkv:
        fail(f"query's last dim {q_shape[2]} / value's {v_shape[2]} is not a multiple of its head count")
    d_k, d_v = q_shape[2] // hq, v_shape[2] // hkv
    if k_shape[2] != hkv * d_k:
        fail(f"key's last dim {k_shape[2]} must be kv_num_heads * d_k = {hkv * d_k}")
    scale = float(attrs.get("scale", 0.0) or 0.0)
    if scale == 0.0:
        scale = 1.0 / math.sqrt(d_k) if d_k else 1.0
    return b, t, hq, hkv, d_k, d_v, scale


def _gates(rule: str):
    return rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")


def _linear_attention_infer(ctx: InferContext):
    q, k, v = ctx.types[0], ctx.types[1], ctx.types[2]
    a = ctx.attrs
    rule = a.get("update_rule", "gated_delta")
    if rule not in UPDATE_RULES:
        ctx.fail(f"update_rule must be one of {', '.join(UPDATE_RULES)}, got '{rule}'")
    if a.get("chunk_size", 64) < 1:
        ctx.fail(f"chunk_size must be >= 1, got {a['chunk_size']}")
    if q.dtype not in _FLOATS:
        ctx.fail(f"query has dtype {q.dtype}; LinearAttention takes float32, float16 or bfloat16")
    for i, name in ((1, "key"), (2, "value"), (4, "decay"), (5, "beta")):
        if ctx.has_input(i) and ctx.types[i].dtype != q.dtype:
            ctx.fail(f"{name} ({ctx.types[i].dtype}) must have the query's dtype ({q.dtype})")
    state_dt = ctx.types[3].dtype if ctx.has_input(3) else q.dtype
    if state_dt not in _FLOATS:
        ctx.fail(f"past_state has dtype {state_dt}; it must be float32, float16 or bfloat16")
    gated, delta = _gates(rule)
    for i, name, needed in ((4, "decay", gated), (5, "beta", delta)):
        if needed and not ctx.has_input(i):
            ctx.fail(f"update_rule '{rule}' needs the {name} input")
        if not needed and ctx.has_input(i):
            ctx.fail(f"update_rule '{rule}' takes no {name} input")
    if not (q.is_static and k.is_static and v.is_static):
        hq, hkv = a.get("q_num_heads"), a.get("kv_num_heads")
        b = q.shape[0] if q.shape is not None else UNKNOWN
        return [TensorType(q.dtype, None if q.shape is None else (b, q.shape[1], UNKNOWN)),
                TensorType(state_dt, (b, hkv or UNKNOWN, UNKNOWN, UNKNOWN))]
    b, t, hq, hkv, d_k, d_v, _ = linear_attention_geometry(q.shape, k.shape, v.shape, a, ctx.fail)
    state = (b, hkv, d_k, d_v)
    if ctx.has_input(3) and ctx.types[3].shape is not None and not (
            len(ctx.types[3].shape) == 4 and all(not _known(x) or x == y for x, y in zip(ctx.types[3].shape, state))):
        ctx.fail(f"past_state must have shape {list(state)}, got {ctx.types[3]}")
    for i, name, lasts in ((4, "decay", (hkv, hkv * d_k)), (5, "beta", (hkv, 1))):
        t_i = ctx.types[i] if ctx.has_input(i) else None
        if t_i is None or t_i.shape is None:
            continue
        s = t_i.shape
        if len(s) != 3 or any(_known(x) and x != y for x, y in zip(s[:2], (b, t))) or (
                _known(s[2]) and s[2] not in lasts):
            ctx.fail(f"{name} must have shape ({b}, {t}, {' or '.join(map(str, sorted(set(lasts))))}), got {t_i}")
    return [TensorType(q.dtype, (b, t, hq * d_v)), TensorType(state_dt, state)]


def _linear_attention_ref(inputs, attrs):
    inputs = list(inputs) + [None] * (6 - len(inputs))
    q, k, v, past, decay, beta = inputs
    rule = attrs.get("update_rule", "gated_delta")
    gated, delta = _gates(rule)
    fail = lambda m: runtime_error(f"linear_attention: {m}")  # noqa: E731
    b, t, hq, hkv, d_k, d_v, scale = linear_attention_geometry(q.shape, k.shape, v.shape, attrs, fail)

    def heads(x, h):  # (B, T, H * D) -> (B, H, T, D) in float32
        return x.reshape(b, t, h, -1).transpose(0, 2, 1, 3).astype(np.float32)
    q4, k4, v4 = heads(q, hq), heads(k, hkv), heads(v, hkv)
    g4 = heads(decay, hkv) if gated else None  # (B, H, T, 1 or d_k)
    if beta is not None:
        beta4 = heads(beta, beta.shape[2])  # (B, H or 1, T, 1)
    state = np.zeros((b, hkv, d_k, d_v), np.float32) if past is None else past.astype(np.float32).copy()
    out = np.zeros((b, hq, t, d_v), np.float32)
    group = hq // hkv
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(t):
            kt, vt = k4[:, :, i], v4[:, :, i]
            if gated:
                state = state * np.exp(g4[:, :, i])[..., None]
            if delta:
                vt = beta4[:, :, i] * (vt - np.einsum("bhdm,bhd->bhm", state, kt))
            state = state + kt[..., :, None] * vt[..., None, :]
            out[:, :, i] = scale * np.einsum("bhd,bhdm->bhm", q4[:, :, i], np.repeat(state, group, axis=1))
    state_dt = past.dtype if past is not None else q.dtype
    return [out.transpose(0, 2, 1, 3).reshape(b, t, hq * d_v).astype(q.dtype), state.astype(state_dt)]


register_op("linear_attention", ["query", "key", "value", "past_state?", "decay?", "beta?"],
            ["output", "present_state"], onnx="LinearAttention",
            attrs={"chunk_size": Attr("int", 64), "kv_num_heads": Attr("int", REQUIRED),
                   "q_num_heads": Attr("int", REQUIRED), "scale": Attr("float", 0.0),
                   "update_rule": Attr("string", "gated_delta")},
            infer=_linear_attention_infer, reference=_linear_attention_ref,
            doc="Recurrent linear attention (linear / gated / delta / gated_delta state updates), with GQA.")
