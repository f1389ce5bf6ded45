"""OpenCL device kernels of the recurrent layers (pdc/codegen/kernels/opencl/recurrent.py): ONNX
LSTM, GRU and RNN compiled for the opencl target and run on the machine's OpenCL platform (PoCL on the
CPU here), against ONNX Runtime.

A seeded list of single-node models covers the attribute space: every direction, layout 0 and 1,
with and without B, sequence_lens (lengths from 0 to seq_length), initial_h / initial_c,
peepholes, clip, linear_before_reset, input_forget, non-default activations with alpha / beta,
weights as initializers (transposed into device tables) or as graph inputs, hidden sizes from 1 to
300 (one and two hidden units per work-item) and every combination of the optional outputs.
ONNX Runtime has no layout 1: a layout-1 model is checked against its layout-0 twin (inputs and
outputs with batch and time swapped), as the spec defines it. Tolerance: ACCUMULATED (float32
recurrences over time, summed in another order than the oracle's).

The configs of FP16 (the fixed ones and every 4th random one, each op twice) also run with
precision="fp16" (every float32 tensor half in device memory, the arithmetic in float), against
ONNX Runtime's float32 outputs within tolerances.HALF_STORAGE (rtol 2e-3, atol 5e-3: half's unit
roundoff 2^-11 ~ 4.9e-4 on X, W, R, B, the initial states and P; the kernel keeps h and c in
float between steps, so they are rounded to half only where they are output), through the same
opencl/<op> kernel as in fp32.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from conftest import require_module
from pdc.compiler import compile_details
from tolerances import ACCUMULATED, HALF_STORAGE

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
STATE_OUTPUTS = {"LSTM": ("Y", "Y_h", "Y_c"), "GRU": ("Y", "Y_h"), "RNN": ("Y", "Y_h")}

# non-default activations of one direction, with the alphas / betas they take (in order); bounded
# enough that the states stay O(1) over a few steps
ACTIVATIONS = {
    "LSTM": [(["HardSigmoid", "Tanh", "Softsign"], [0.3], [0.4]),
             (["Sigmoid", "ScaledTanh", "Tanh"], [0.9], [1.1]),
             (["Sigmoid", "Softsign", "Softplus"], [], []),
             (["HardSigmoid", "Affine", "Tanh"], [0.25, 0.5], [0.45, 0.1])],
    "GRU": [(["Sigmoid", "LeakyRelu"], [0.2], []),
            (["HardSigmoid", "Tanh"], [0.3], [0.6]),
            (["Sigmoid", "Elu"], [0.8], []),
            (["Sigmoid", "ThresholdedRelu"], [0.1], [])],
    "RNN": [(["Relu"], [], []), (["Affine"], [0.5], [0.1]), (["ThresholdedRelu"], [0.1], []),
            (["Softsign"], [], []), (["Sigmoid"], [], []), (["LeakyRelu"], [0.05], [])],
}

pytestmark = pytest.mark.usefixtures("opencl_platform")


def _random_configs(seed: int, count: int) -> list[dict]:
    r = random.Random(seed)
    out = []
    for k in range(count):
        op = ("LSTM", "GRU", "RNN")[k % 3]
        c = dict(op=op, direction=r.choice(["forward", "reverse", "bidirectional"]), layout=r.randint(0, 1),
                 H=r.choice([1, 3, 8, 17, 32, 64, 100, 255, 300]), N=r.randint(1, 4), T=r.randint(1, 8),
                 I=r.randint(1, 16), bias=r.random() < 0.75, seq=r.random() < 0.4, init=r.random() < 0.5,
                 runtime_weights=r.random() < 0.25, clip=r.choice([None, None, None, 0.7, 2.0]),
                 acts=r.randrange(len(ACTIVATIONS[op])) if r.random() < 0.4 else None)
        if op == "LSTM":
            c.update(peep=r.random() < 0.4, input_forget=int(r.random() < 0.2))
        if op == "GRU":
            c.update(linear_before_reset=r.randint(0, 1))
        names = STATE_OUTPUTS[op]
        outs = [n if r.random() < 0.7 else "" for n in names]
        if not any(outs):
            outs[r.randrange(len(outs))] = names[0]
        c["outputs"] = outs
        out.append(c)
    return out


def _fixed_configs() -> list[dict]:
    base = dict(direction="forward", layout=0, N=2, T=5, I=6, bias=True, seq=False, init=False,
                runtime_weights=False, clip=None, acts=None)
    return [
        # every optional input at once, lengths 0 and T, both directions
        dict(base, op="LSTM", direction="bidirectional", H=20, N=3, seq=True, init=True, peep=True,
             input_forget=0, outputs=["Y", "Y_h", "Y_c"]),
        dict(base, op="GRU", direction="bidirectional", layout=1, H=33, N=3, seq=True, init=True,
             linear_before_reset=0, outputs=["Y", "Y_h"]),
        dict(base, op="GRU", direction="reverse", H=33, N=3, seq=True, init=True, linear_before_reset=1,
             outputs=["Y", "Y_h"]),
        dict(base, op="RNN", direction="reverse", layout=1, H=7, N=4, seq=True, init=True, outputs=["Y", "Y_h"]),
        # two hidden units per work-item, runtime weights
        dict(base, op="LSTM", H=300, N=1, T=3, runtime_weights=True, peep=True, input_forget=1,
             outputs=["", "Y_h", "Y_c"]),
        dict(base, op="GRU", H=257, N=2, T=3, linear_before_reset=0, clip=1.0, outputs=["Y"]),
        # one hidden unit, one step
        dict(base, op="RNN", H=1, N=1, T=1, I=1, bias=False, outputs=["", "Y_h"]),
        dict(base, op="LSTM", H=1, N=4, T=1, I=3, seq=True, peep=False, input_forget=0, outputs=["", "", "Y_c"]),
    ]


CONFIGS = _fixed_configs() + _random_configs(20240611, 24)


def _config_id(c: dict) -> str:
    flags = [k for k in ("bias", "seq", "init", "peep", "runtime_weights") if c.get(k)]
    if c.get("linear_before_reset"):
        flags.append("lbr")
    if c.get("input_forget"):
        flags.append("input_forget")
    if c["clip"] is not None:
        flags.append(f"clip{c['clip']}")
    if c["acts"] is not None:
        flags.append("acts" + str(c["acts"]))
    outs = "".join("1" if o else "0" for o in c["outputs"])
    return (f"{c['op']}-{c['direction']}-l{c['layout']}-H{c['H']}-N{c['N']}-T{c['T']}-I{c['I']}-"
            f"{'-'.join(flags) or 'plain'}-out{outs}")


def build(c: dict, rng: np.random.Generator):
    """(model, feeds, ONNX Runtime's layout-0 twin and its feeds, the twin's output names by
    output) for config c."""
    op, H, N, T, I = c["op"], c["H"], c["N"], c["T"], c["I"]
    D = 2 if c["direction"] == "bidirectional" else 1
    G = GATES[op]
    scale = 1.0 / np.sqrt(max(H, I))
    arrays = {"X": rng.standard_normal((T, N, I)).astype(np.float32),
              "W": (rng.standard_normal((D, G * H, I)) * scale).astype(np.float32),
              "R": (rng.standard_normal((D, G * H, H)) * scale).astype(np.float32)}
    if c["bias"]:
        arrays["B"] = (rng.standard_normal((D, 2 * G * H)) * 0.5).astype(np.float32)
    if c["seq"]:
        lens = rng.integers(0, T + 1, N).astype(np.int32)
        lens[rng.integers(0, N)] = T
        arrays["sequence_lens"] = lens
    if c["init"]:
        arrays["initial_h"] = rng.standard_normal((D, N, H)).astype(np.float32)
        if op == "LSTM":
            arrays["initial_c"] = rng.standard_normal((D, N, H)).astype(np.float32)
    if c.get("peep"):
        arrays["P"] = (rng.standard_normal((D, 3 * H)) * 0.5).astype(np.float32)
    order = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"][:8 if op == "LSTM" else 6]
    inputs = [n if n in arrays else "" for n in order]
    while inputs[-1] == "":
        inputs.pop()

    attrs = dict(hidden_size=H, direction=c["direction"])
    if c["clip"] is not None:
        attrs["clip"] = c["clip"]
    if op == "LSTM" and c.get("input_forget"):
        attrs["input_forget"] = 1
    if op == "GRU":
        attrs["linear_before_reset"] = c.get("linear_before_reset", 0)
    if c["acts"] is not None:
        names, alphas, betas = ACTIVATIONS[op][c["acts"]]
        attrs["activations"] = names * D
        if alphas:
            attrs["activation_alpha"] = alphas * D
        if betas:
            attrs["activation_beta"] = betas * D

    def model(layout: int, data: dict):
        a = dict(attrs, layout=1) if layout else attrs
        node = helper.make_node(op, inputs, c["outputs"], **a)
        feeds = {n: v for n, v in data.items() if n == "X" or n == "sequence_lens" or n.startswith("initial")
                 or c["runtime_weights"]}
        inits = [numpy_helper.from_array(v, n) for n, v in data.items() if n not in feeds]
        vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for n, v in feeds.items()]
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in c["outputs"] if o]
        g = helper.make_graph([node], "recurrent", vis, outs, inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=8), feeds

    model0, feeds0 = model(0, arrays)
    if not c["layout"]:
        return model0, feeds0, model0, feeds0
    # layout 1: X [N, T, I] and the states [N, D, H]
    swapped = {n: (v.transpose(1, 0, 2).copy() if n == "X" or n.startswith("initial") else v)
               for n, v in arrays.items()}
    model1, feeds1 = model(1, swapped)
    return model1, feeds1, model0, feeds0


def to_layout1(name: str, y: np.ndarray) -> np.ndarray:
    return y.transpose(2, 0, 1, 3) if name == "Y" else y.transpose(1, 0, 2)


def run_onnxruntime(model, feeds) -> dict:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


FIXED = len(_fixed_configs())
# with fp16 storage too: the fixed configs (every optional input, one and two units per work-item,
# runtime weights) and every 4th random one (LSTM, GRU and RNN twice each)
FP16 = [c for k, c in enumerate(CONFIGS) if k < FIXED or (k - FIXED) % 4 == 0]
RUNS = [pytest.param(c, "fp32", id=_config_id(c)) for c in CONFIGS] + \
    [pytest.param(c, "fp16", id=f"{_config_id(c)}-fp16") for c in FP16]


def kernel_paths(manifest: dict) -> list:
    """(op, path) of each of the bundle's kernels but the copies."""
    return [(k["op"], k.get("path")) for k in manifest["kernels"] if k["op"] != "copy"]


@pytest.mark.parametrize("config,precision", RUNS)
def test_recurrent_matches_onnxruntime(config, precision, tmp_path):
    require_module("onnxruntime")
    rng = np.random.default_rng(CONFIGS.index(config))
    model, feeds, model0, feeds0 = build(config, rng)
    module = pdc.compile(model, target="opencl", out_dir=str(tmp_path / "b"), precision=precision)
    assert module.manifest["precision"] == precision
    got = module.run(feeds)
    want = run_onnxruntime(model0, feeds0)
    names = [o for o in config["outputs"] if o]
    assert sorted(got) == sorted(names)
    tolerance = HALF_STORAGE if precision == "fp16" else ACCUMULATED
    for n in names:
        expected = to_layout1(n, want[n]) if config["layout"] else want[n]
        assert got[n].shape == expected.shape and got[n].dtype == np.float32, (n, got[n].shape, expected.shape)
        tolerance.check(got[n], expected, f"{_config_id(config)} {n}")
    op = config["op"].lower()
    paths = kernel_paths(module.manifest)
    assert paths == [(op, f"opencl/{op}")], paths
    if precision == "fp16":  # the same device kernel as with float storage
        fp32 = compile_details(model, str(tmp_path / "fp32"), target="opencl", build=False)
        assert paths == kernel_paths(fp32.manifest)
