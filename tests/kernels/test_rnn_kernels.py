"""Recurrent kernels (LSTM, GRU, RNN), every path on every target that runs here, against ONNX
Runtime: directions, every activation the spec lists (with alpha / beta), clip, input_forget,
linear_before_reset, layout 0 / 1, sequence_lens, initial states, peepholes, batches, hidden sizes
from 1 to past the 16-wide panels, weights as constants and as run-time inputs (see
tests/kernels/harness.py).

Oracles: ONNX Runtime, which refuses layout 1, float64 and a missing hidden_size. A layout 1 layer
is compared with ONNX Runtime's run of its layout 0 twin (inputs and outputs transposed: the same
recurrence). ONNX's reference ignores activations, clip, sequence_lens and input_forget, so float64
layers (which go to it) are drawn without them.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import strategies as st

from harness import Const, Layer, build_model, oracle_outputs, run_property
from targets import examples, options, require

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SLOTS = {"LSTM": 3, "GRU": 2, "RNN": 1}        # activations per direction
DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
# name -> (alpha range or None, beta range or None)
ACTIVATIONS = {
    "Relu": (None, None), "Tanh": (None, None), "Sigmoid": (None, None), "Softsign": (None, None),
    "Softplus": (None, None), "Affine": ((-1.0, 1.0), (-0.5, 0.5)), "LeakyRelu": ((0.01, 0.5), None),
    "ThresholdedRelu": ((-0.5, 0.5), None), "ScaledTanh": ((0.5, 1.5), (0.5, 1.5)),
    "HardSigmoid": ((0.1, 0.5), (0.3, 0.7)), "Elu": ((0.5, 1.5), None),
}
HIDDEN = (1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 40)
# activations above 1 for some inputs: as LSTM / GRU gates they multiply the state by more than 1
# at every step, and every rounding with it
UNBOUNDED = {"Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "Elu", "Softplus", "ScaledTanh"}
F16_TOL = dict(rtol=5e-3, atol=5e-3)


def _f(rng, shape, dtype, scale=1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _maybe_const(draw, v):
    return Const(v) if draw(st.booleans()) else v


@st.composite
def rnn_layer(draw, max_macs: int = 200_000, dtypes=(np.float32,), big: bool = False):
    """One recurrent layer over the attribute space; big draws layers past the threading threshold."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    op = draw(st.sampled_from(["LSTM", "GRU"] if big else list(GATES)))
    dtype = draw(st.sampled_from(list(dtypes)))
    rich = np.dtype(dtype) != np.float64  # ONNX Runtime's features; float64 goes to the reference
    direction = draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    D = 2 if direction == "bidirectional" else 1
    T, N = (6, 4) if big else (draw(st.integers(1, 6)), draw(st.sampled_from([1, 1, 2, 3, 4])))
    H = draw(st.sampled_from(HIDDEN if not big else (64, 96)))
    I = draw(st.sampled_from((1, 2, 3, 7, 16, 17, 40) if not big else (64, 128)))
    G = GATES[op]
    while T * N * D * G * H * (H + I) > max_macs and T > 1:
        T -= 1
    layout = draw(st.sampled_from([0, 0, 1]))
    attrs = {"hidden_size": H}
    if direction != "forward" or draw(st.booleans()):
        attrs["direction"] = direction
    if layout or draw(st.integers(0, 3)) == 0:
        attrs["layout"] = layout
    if rich and draw(st.integers(0, 2)) == 0:
        names = [draw(st.sampled_from(list(ACTIVATIONS))) for _ in range(SLOTS[op] * D)]
        alphas, betas = [], []
        for n in names:  # consumed in order by the activations that take one
            a, b = ACTIVATIONS[n]
            if a:
                alphas.append(float(np.float32(rng.uniform(*a))))
            if b:
                betas.append(float(np.float32(rng.uniform(*b))))
        attrs["activations"] = names
        if alphas:
            attrs["activation_alpha"] = alphas
        if betas:
            attrs["activation_beta"] = betas
    elif draw(st.integers(0, 4)) == 0:
        attrs["activations"] = DEFAULTS[op] * D
    if rich and draw(st.integers(0, 3)) == 0:
        attrs["clip"] = draw(st.sampled_from([0.1, 0.5, 2.0]))
    if op == "LSTM" and rich and draw(st.integers(0, 3)) == 0:
        attrs["input_forget"] = 1
    if op == "GRU" and draw(st.booleans()):
        attrs["linear_before_reset"] = draw(st.sampled_from([0, 1]))
    # small pre-activations keep unbounded gates below ~1: the recurrence does not blow the
    # (order-dependent) roundings of the matrix products up past the tolerance
    gain = 0.3 if UNBOUNDED & set(attrs.get("activations", [])) else 1.0
    x_shape = [T, N, I] if layout == 0 else [N, T, I]
    state_shape = [D, N, H] if layout == 0 else [N, D, H]
    inputs = [_f(rng, x_shape, dtype),
              _maybe_const(draw, _f(rng, [D, G * H, I], dtype, gain / math.sqrt(I))),
              _maybe_const(draw, _f(rng, [D, G * H, H], dtype, gain / math.sqrt(H)))]
    optional = [None] * 5  # B, sequence_lens, initial_h, initial_c, P
    if draw(st.booleans()):
        optional[0] = _maybe_const(draw, _f(rng, [D, 2 * G * H], dtype, 0.5 * gain))
    if rich and draw(st.integers(0, 2)) == 0:
        lens = rng.integers(0 if draw(st.booleans()) else 1, T + 1, N).astype(np.int32)
        optional[1] = _maybe_const(draw, lens)
    if draw(st.booleans()):
        optional[2] = _maybe_const(draw, _f(rng, state_shape, dtype, 0.5))
    if op == "LSTM" and draw(st.booleans()):
        optional[3] = _maybe_const(draw, _f(rng, state_shape, dtype, 0.5))
    if op == "LSTM" and draw(st.booleans()):
        optional[4] = _maybe_const(draw, _f(rng, [D, 3 * H], dtype, 0.5))
    last = max([i for i, v in enumerate(optional) if v is not None], default=-1)
    inputs += optional[:last + 1]
    outputs = draw(st.integers(1, 3 if op == "LSTM" else 2))
    tol = F16_TOL if np.dtype(dtype) == np.float16 else {}
    layer = Layer(op, inputs, attrs, outputs=outputs, **tol)
    if not rich:
        layer.oracle = "onnx-reference"
        if draw(st.booleans()):  # optional: R's last dim (ONNX Runtime requires it)
            del attrs["hidden_size"]
    elif layout == 1:
        layer.want = layout0_twin_outputs(layer)
    return layer


def layout0_twin_outputs(layer: Layer) -> list:
    """ONNX Runtime's outputs of a layout 1 layer, through its layout 0 twin: X and the initial
    states with batch and sequence / direction swapped, the outputs swapped back."""
    def swap(v):
        if v is None or np.asarray(v.value if isinstance(v, Const) else v).ndim != 3:
            return v
        a = np.ascontiguousarray((v.value if isinstance(v, Const) else v).transpose(1, 0, 2))
        return Const(a) if isinstance(v, Const) else a
    inputs = [swap(v) if i in (0, 5, 6) else v for i, v in enumerate(layer.inputs)]
    twin = Layer(layer.op, inputs, dict(layer.attrs, layout=0), outputs=layer.outputs)
    model, feeds, outs = build_model([twin])
    got = oracle_outputs(model, feeds, "ort")
    ys = [got[n] for n in outs[0]]
    return [np.ascontiguousarray(y.transpose(2, 0, 1, 3) if k == 0 else y.transpose(1, 0, 2)) for k, y in enumerate(ys)]


def rnn_layers(max_macs=200_000, max_size=4, dtypes=(np.float32,), big=False):
    return st.lists(rnn_layer(max_macs=max_macs, dtypes=dtypes, big=big), min_size=1, max_size=max_size)


# the paths forced together: every path of the rnn and rnn-split families, on each target
TARGETS = ("x86-avx512", "x86-avx2", "arm64")
FORCED = [("packed", "parallel"), ("rowdot", "serial")]
DTYPES = (np.float32, np.float32, np.float32, np.float64, np.float16)
EXAMPLES = 10


@pytest.mark.parametrize("target,matvec,split", [(t, m, p) for t in TARGETS for m, p in FORCED],
                         ids=[f"{t}-{m}-{p}" for t in TARGETS for m, p in FORCED])
def test_rnn_path_matches_oracle(target, matvec, split):
    require(target)
    arm = not target.startswith("x86")
    draw = rnn_layers(max_macs=60_000 if arm else 200_000, max_size=3 if arm else 4, dtypes=DTYPES)
    seen = run_property(draw, target, examples=examples(target, EXAMPLES), force=f"rnn={matvec},rnn-split={split}",
                        expect_path=f"rnn/{matvec}", **options(target))
    assert seen[f"rnn-split/{split}"] > 0, f"no draw took rnn-split/{split} on {target} (paths taken: {dict(seen)})"


@pytest.mark.parametrize("target", TARGETS)
def test_rnn_threaded_by_size(target):
    """A layer past the threading threshold takes the parallel split by itself."""
    require(target)
    run_property(rnn_layers(max_macs=6_000_000, max_size=1, big=True), target, examples=2,
                 expect_path="rnn-split/parallel", **options(target))
