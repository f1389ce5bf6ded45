"""Hypothesis strategies of attention layers (tests/kernels/harness.Layer): the ONNX Attention op
over its attribute space (3-D / 4-D inputs, multi-head / grouped-query / multi-query heads,
boolean or additive masks of every broadcast rank, short masks, causal, scale, softcap, a KV
cache with present outputs, the qk_matmul_output debug output, softmax_precision; opset 24's
nonpad_kv_seqlen and opset 25's sliding windows), and the MatMul / Softmax subgraph exporters
write that pdc's fuse-attention pass turns into one node (pdc/passes/fuse_attention.py)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from hypothesis import strategies as st
from onnx import TensorProto

from harness import Chain, Const, Layer, build_model, oracle_outputs
from strategies import rand
from tolerances import elementwise_tolerance

MAX_MACS = 1_500_000
SOFTMAX_PRECISIONS = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16,
                      TensorProto.DOUBLE: np.float64}


def _seq(draw, hi: int) -> int:
    """A sequence length: short, around the kernel's 32-row blocks, or any up to hi."""
    kind = draw(st.integers(0, 4))
    if kind < 2:
        return draw(st.integers(1, 6))
    if kind == 2:
        return min(hi, draw(st.sampled_from([31, 32, 33])))
    return draw(st.integers(1, hi))


def _heads(draw) -> tuple[int, int]:
    """(q heads, kv heads): multi-head, grouped-query or multi-query."""
    hkv = draw(st.integers(1, 3))
    return hkv * draw(st.sampled_from([1, 1, 2, 3])), hkv


def _fit(dims: dict, macs_of, max_macs: int) -> None:
    """Halves the largest of dims until macs_of(dims) fits the budget."""
    while macs_of(dims) > max_macs:
        key = max(dims, key=dims.get)
        if dims[key] == 1:
            break
        dims[key] = max(1, dims[key] // 2)


def _qk_scale(draw, scale: float, d: int) -> float:
    """The spread of Q and K values that makes the scores (scale * q . k over d terms) about
    N(0, t^2) for a temperature t of 1 or 3: softmax outputs stay meaningful in float16, whose
    rounding of large scores would swamp the comparison."""
    t = draw(st.sampled_from([1.0, 1.0, 3.0]))
    return math.sqrt(t / (scale * math.sqrt(d)))


def _mask(draw, rng, lead: tuple, keys: int, dtype, short_ok: bool, min_rank: int = 1, every_row: bool = False,
          lowest: bool = True):
    """A boolean or additive mask broadcast to lead + (keys,): rank min_rank to 4, dims 1 where
    broadcast, the last possibly shorter than keys (the rest is not attended). Masked-out keys
    (False, -inf or, with `lowest`, the lowest float) may leave a row no key, unless `every_row`."""
    rank = draw(st.integers(min_rank, 4))
    shape = [d if draw(st.booleans()) else 1 for d in lead[len(lead) - (rank - 1):]]
    last = keys
    if short_ok and keys > 1 and draw(st.integers(0, 4)) == 0:
        last = draw(st.integers(1, keys - 1))
    shape.append(last)
    dropped = draw(st.sampled_from([0.2, 0.2, 0.7]))
    if draw(st.booleans()):
        m = rng.random(shape) >= dropped
        if every_row:
            m[..., 0] = True
        return m
    m = rand(rng, shape, 1.0, dtype)
    if draw(st.integers(0, 3)) == 0:  # masked-out keys as exporters write them
        m[rng.random(shape) < dropped] = np.finfo(dtype).min if lowest and draw(st.booleans()) else -np.inf
        if every_row:
            m[..., 0] = 0
    return m


@st.composite
def attention_layer(draw, dtype=np.float32, max_macs: int = MAX_MACS, opset: int = 23):
    """One ONNX Attention over the attribute space of `opset` (23, 24: + nonpad_kv_seqlen,
    25: + left / right windows)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    rank3 = draw(st.booleans())
    hq, hkv = _heads(draw)
    past = draw(st.integers(0, 3)) == 0
    nonpad = opset >= 24 and not past and draw(st.integers(0, 3)) == 0
    dims = dict(b=draw(st.integers(1, 2)), sq=_seq(draw, 40), skv=_seq(draw, 70),
                p=draw(st.integers(1, 20)) if past else 0,
                d=draw(st.sampled_from([1, 3, 8, 16, 17, 32, 64, 80])), dv=0)
    dims["dv"] = dims["d"] if draw(st.booleans()) else draw(st.integers(1, 40))
    _fit(dims, lambda x: x["b"] * hq * x["sq"] * (x["p"] + x["skv"]) * (x["d"] + x["dv"]), max_macs)
    b, sq, skv, p, d, dv = (dims[x] for x in ("b", "sq", "skv", "p", "d", "dv"))
    if past and p == 0:
        p = 1
    total = p + skv
    attrs = {}
    if draw(st.booleans()):
        attrs["scale"] = draw(st.sampled_from([0.05, 0.125, 0.5, 1.0, 2.0]))
    qk = _qk_scale(draw, attrs.get("scale", 1 / math.sqrt(d)), d)
    if rank3:
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
        q, k, v = rand(rng, (b, sq, hq * d), qk, dtype), rand(rng, (b, skv, hkv * d), qk, dtype), \
            rand(rng, (b, skv, hkv * dv), dtype=dtype)
    else:
        q, k, v = rand(rng, (b, hq, sq, d), qk, dtype), rand(rng, (b, hkv, skv, d), qk, dtype), \
            rand(rng, (b, hkv, skv, dv), dtype=dtype)
    inputs = [q, k, v]
    if draw(st.booleans()):
        inputs.append(_mask(draw, rng, (b, hq, sq), total, dtype, short_ok=True, lowest=not nonpad))
    if past:
        inputs += [None] * (4 - len(inputs)) + [rand(rng, (b, hkv, p, d), qk, dtype),
                                                 rand(rng, (b, hkv, p, dv), dtype=dtype)]
    causal = draw(st.booleans())
    if nonpad:
        valid = rng.integers(1, skv + 1, size=b)
        if causal and np.dtype(dtype) == np.float16:  # ONNX's reference decides: see attention_oracle
            causal = skv >= sq
            valid = np.maximum(valid, sq) if causal else valid
        inputs += [None] * (6 - len(inputs)) + [valid.astype(np.int64)]
    while inputs and inputs[-1] is None:
        inputs.pop()
    if causal:
        attrs["is_causal"] = 1
    if draw(st.integers(0, 3)) == 0:
        attrs["softcap"] = draw(st.sampled_from([0.5, 5.0, 50.0]))
    if draw(st.integers(0, 3)) == 0:  # no narrower softmax with nonpad_kv_seqlen: see attention_oracle
        precisions = [p for p in sorted(SOFTMAX_PRECISIONS)
                      if not (nonpad and narrow_softmax({"softmax_precision": p}, dtype))]
        attrs["softmax_precision"] = draw(st.sampled_from(precisions))
    if opset >= 25 and draw(st.booleans()):
        attrs["left_window_size"] = draw(st.integers(-1, 6))
        attrs["right_window_size"] = draw(st.integers(-1, 6))
    oracle = attention_oracle(attrs, sq, skv, past, dtype, inputs[3] if len(inputs) > 3 else None)
    outputs = 1
    if past:
        outputs = 3
        if draw(st.booleans()):  # the debug output; ONNX's reference softcaps mode 0's raw scores
            outputs = 4
            modes = [1, 2, 3] if oracle != "ort" and attrs.get("softcap") else [0, 1, 2, 3]
            attrs["qk_matmul_output_mode"] = draw(st.sampled_from(modes))
            if attrs["qk_matmul_output_mode"] == 2:  # ONNX Runtime writes -FLT_MAX for the spec's -inf bias
                oracle = "onnx-reference"
    layer = Layer("Attention", inputs, attrs, outputs=outputs, opset=opset, oracle=oracle)
    sp = narrow_softmax(attrs, dtype)
    if sp is not None:  # the probabilities are only as precise as the softmax's dtype
        layer.rtol, layer.atol = elementwise_tolerance(sp)
    same = equivalent(layer, sq, total, d)
    if same is not layer:
        layer.want = oracle_run(same)
    return layer


def equivalent(layer: Layer, sq: int, total: int, head_size: int) -> Layer:
    """The layer in a form its oracle computes as the spec says (the layer itself if it does):
    - a mask broadcast along the query axis or shorter than the keys becomes a full one
      (full_mask);
    - for ONNX's reference, float64 inputs without a scale get the default as the op's function
      body computes it, in float32 (the reference computes it in float64; a scale attribute is a
      float32 either way)."""
    inputs, attrs = layer.inputs, layer.attrs
    if len(inputs) > 3 and inputs[3] is not None:
        full = full_mask(inputs[3], sq, total)
        if full.shape != inputs[3].shape:
            inputs = inputs[:3] + [full] + inputs[4:]
    if layer.oracle != "ort" and inputs[0].dtype == np.float64 and "scale" not in attrs:
        attrs = {**attrs, "scale": float(np.float32(1) / np.sqrt(np.float32(head_size)))}
    return layer if inputs is layer.inputs and attrs is layer.attrs else replace(layer, inputs=inputs, attrs=attrs)


def full_mask(mask: np.ndarray, sq: int, total: int) -> np.ndarray:
    """The mask with its query axis broadcast to sq rows and its key axis padded to total keys
    (not attended: False, -inf), as the spec reads a broadcast or short mask. ONNX Runtime refuses
    both forms, and ONNX's reference applies the causal frontier of a broadcast mask's single row
    to every row: such layers are checked against the oracle on this mask."""
    m = np.broadcast_to(mask, mask.shape[:-2] + (sq, mask.shape[-1])) if mask.ndim >= 2 else \
        np.broadcast_to(mask, (sq,) + mask.shape)
    pad = False if mask.dtype == np.bool_ else -np.inf
    return np.concatenate([m, np.full(m.shape[:-1] + (total - m.shape[-1],), pad, mask.dtype)], axis=-1)


def oracle_run(layer: Layer) -> list:
    """The layer's outputs by its oracle (ONNX's reference where ONNX Runtime refuses it)."""
    model, feeds, outs = build_model([layer])
    try:
        got = oracle_outputs(model, feeds, layer.oracle)
    except Exception:
        if layer.oracle != "ort":
            raise
        got = oracle_outputs(model, feeds, "onnx-reference")
    return [got[n] for n in outs[0]]


def attention_oracle(attrs: dict, sq: int, skv: int, past: bool, dtype, mask=None) -> str:
    """ONNX Runtime departs from the spec on these points, where ONNX's reference decides:
    - with a KV cache the causal frontier is `j <= i + past_sequence_length` (spec); ONNX Runtime
      aligns it to the end of the keys (`j <= i + total - q_sequence_length`), the same only when
      the new keys are as many as the queries;
    - a softmax_precision narrower than the inputs rounds the scores and probabilities to it
      (spec: "cast to this type before softmax and then cast back"); ONNX Runtime ignores it;
    - a float mask holding the lowest float is added to the scores like any value (spec); ONNX
      Runtime takes it for a masked key, and a row whose other keys are masked for a dead row.
    - float16: ONNX Runtime's rows drift from the function body by more than float16's tolerance
      as keys add up (0.3057 against the body's 0.3164 over 31 keys of head size 1, where computing
      all in float32 gives 0.3135).
    ONNX's reference in turn zeroes the rows of a negative causal offset (nonpad_kv_seqlen below
    q_sequence_length) that still attend keys: layers with nonpad_kv_seqlen are drawn so that
    they never go to it (no narrower softmax or lowest-float mask; float16 causal layers keep
    nonpad_kv_seqlen >= q_sequence_length)."""
    causal_offset = attrs.get("is_causal") and past and skv != sq
    lowest = mask is not None and mask.dtype != np.bool_ and (mask == np.finfo(mask.dtype).min).any()
    half = np.dtype(dtype) == np.float16
    return "onnx-reference" if causal_offset or narrow_softmax(attrs, dtype) or lowest or half else "ort"


def narrow_softmax(attrs: dict, dtype):
    """The softmax_precision dtype when it is narrower than the inputs, else None."""
    sp = SOFTMAX_PRECISIONS.get(attrs.get("softmax_precision"))
    return sp if sp is not None and np.dtype(sp).itemsize < np.dtype(dtype).itemsize else None


# ---- the subgraph fuse-attention matches ---------------------------------------------------------
def _split(x, b, s, h, d, perm):
    """Reshape (B, S, H*d) -> (B, S, H, d), then Transpose(perm): the exporters' head split."""
    return Chain(x, [("Reshape", {}, [Const(np.array([b, s, h, d], np.int64))]), ("Transpose", {"perm": perm}, [])])


@st.composite
def attention_pattern(draw, dtype=np.float32, max_macs: int = MAX_MACS):
    """MatMul(Q, K^T) -> scale (Mul / Div, on the scores, on Q, or its square root on Q and K^T) ->
    [Add mask] -> Softmax -> [Where(IsNaN(P), 0, P)] -> MatMul(., V): on 4-D (B, H, S, d) tensors,
    or split into heads from (B, S, H*d) and merged back by Reshape / Transpose as exporters write it."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    heads_form = draw(st.booleans())
    dims = dict(b=draw(st.integers(1, 2)), h=draw(st.integers(1, 4)), sq=_seq(draw, 40), skv=_seq(draw, 70),
                d=draw(st.sampled_from([1, 4, 8, 16, 17, 32, 64])), dv=0)
    dims["dv"] = dims["d"] if heads_form or draw(st.booleans()) else draw(st.integers(1, 40))
    _fit(dims, lambda x: x["b"] * x["h"] * x["sq"] * x["skv"] * (x["d"] + x["dv"]), max_macs)
    b, h, sq, skv, d, dv = (dims[x] for x in ("b", "h", "sq", "skv", "d", "dv"))
    scale = draw(st.sampled_from([None, 1 / math.sqrt(d), 0.125, 2.0]))
    qk = _qk_scale(draw, 1.0 if scale is None else scale, d)
    on_q = scale is not None and draw(st.integers(0, 3)) == 0
    divide = scale is not None and draw(st.booleans())
    scale_step = ("Div", {}, [Const(np.asarray(1 / scale, dtype))]) if divide else \
        ("Mul", {}, [Const(np.asarray(scale, dtype))]) if scale is not None else None
    if heads_form:
        q_data = rand(rng, (b, sq, h * d), qk, dtype)
        q = _split(q_data, b, sq, h, d, [0, 2, 1, 3])
        k_data = rand(rng, (b, skv, h * d), qk, dtype)
        if draw(st.booleans()):  # K split and transposed by one Transpose
            kt = _split(k_data, b, skv, h, d, [0, 2, 3, 1])
        else:
            kt = _split(k_data, b, skv, h, d, [0, 2, 1, 3])
            kt.ops.append(("Transpose", {"perm": [0, 1, 3, 2]}, []))
        q4, k4 = (a.reshape(b, -1, h, d).transpose(0, 2, 1, 3) for a in (q_data, k_data))
        v_data = rand(rng, (b, skv, h * dv), dtype=dtype)
        v = _split(v_data, b, skv, h, dv, [0, 2, 1, 3])
    else:
        q = q4 = rand(rng, (b, h, sq, d), qk, dtype)
        k4 = rand(rng, (b, h, skv, d), qk, dtype)
        kt = Chain(k4, [("Transpose", {"perm": [0, 1, 3, 2]}, [])])
        v = v_data = rand(rng, (b, h, skv, dv), dtype=dtype)
    # PyTorch's export of scaled_dot_product_attention: NaN probabilities (a row with no key) zeroed
    # by Where(IsNaN(P), 0, P), and the scale's square root on Q and on K^T
    nan_guard = draw(st.integers(0, 2)) == 0
    on_qk = nan_guard and scale is not None and not on_q and draw(st.booleans())
    if on_q:  # Paddle's scale: a Mul and an Add of zero on Q
        q = Chain(q, [scale_step, ("Add", {}, [Const(np.asarray(0, dtype))])])
    if on_qk:
        root = ("Mul", {}, [Const(np.asarray(math.sqrt(scale), dtype))])
        q, kt = (Chain(x.source, x.ops + [root]) if isinstance(x, Chain) else Chain(x, [root]) for x in (q, kt))
    post = [] if on_q or on_qk or scale_step is None else [scale_step]
    oracle, tol = "ort", {}
    if draw(st.booleans()):  # ranks 2 to 4 (what the pass matches); a last dim of 1 broadcasts over the keys
        # every row attends a key: a row of -inf is NaN in the subgraph and zeros in the attention op
        # (a mask broadcast over the keys stays a subgraph at -O2)
        keys = 1 if draw(st.integers(0, 4)) == 0 else skv
        mask = _mask(draw, rng, (b, h, sq), keys, dtype, short_ok=False, min_rank=2,
                     every_row=keys > 1 and not nan_guard)
        if mask.dtype == np.bool_:  # the pattern's mask is additive (-inf as PyTorch writes it)
            mask = np.where(mask, 0, -np.inf if nan_guard else -1e4).astype(dtype)
        post.append(("Add", {}, [Const(mask) if draw(st.booleans()) else mask]))
        sizes = np.abs(mask[np.isfinite(mask)].astype(np.float64))
        shift = float(sizes[sizes < 1e30].max(initial=0.0))  # the lowest float leaves a row uniform in both
        if keys == 1 and shift > 1 and np.dtype(dtype) == np.float32:
            # a row shifted as a whole: its scores keep only the shift's ulp, so a last-bit difference
            # in a dot product (pdc's order vs the oracle's) moves a probability by up to eps * shift
            # (-10000 in float32: 23 of 1984 outputs 5e-4 apart, 0.169075 vs 0.168989)
            r = 4 * float(np.finfo(dtype).eps) * shift
            tol = dict(rtol=max(r, 1e-5), atol=max(r * float(np.abs(v_data).max()), 2e-5))
        if np.dtype(dtype) == np.float16 and keys < skv:
            # a row shifted as a whole by a large mask value keeps a few bits of its scores in float16
            # (ulp 8 at 1e4); ONNX Runtime runs the float16 Add and Softmax in float32 without the
            # rounding to float16 between them, which ONNX's reference (and pdc) do
            oracle = "onnx-reference"
    if np.dtype(dtype) == np.float16:
        # the subgraph rounds the scores to float16 (where pdc's kernel, ONNX Runtime and ONNX's reference
        # each round differently): a score of size S moves by up to S * eps16, each probability by as
        # much relatively (scores up to 9.8: an output 0.0056 off in pdc, 0.0076 in ONNX's reference,
        # 0.0009 in ONNX Runtime, against float64)
        scores = np.abs(q4.astype(np.float64) @ np.swapaxes(k4.astype(np.float64), -1, -2)).max(initial=0.0)
        size = float(scores) * (1.0 if scale is None else scale)
        tol = dict(rtol=5e-3, atol=max(5e-3, 2 * size * float(np.finfo(np.float16).eps) * float(np.abs(v_data).max())))
    post.append(("Softmax", {"axis": draw(st.sampled_from([-1, 3]))}, []))
    if nan_guard:
        post += [("IsNaN", {}, []), ("Where", {}, [Const(np.asarray(0, dtype)), "before"])]
    post.append(("MatMul", {}, [v]))
    if heads_form:
        post += [("Transpose", {"perm": [0, 2, 1, 3]}, []),
                 ("Reshape", {}, [Const(np.array([b, sq, h * dv], np.int64))])]
    return Layer("MatMul", [q, kt], {}, post, oracle=oracle, **tol)
