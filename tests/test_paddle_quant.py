"""Paddle models quantized with Paddle's own API (paddle.quantization PTQ, `convert`, paddle.jit.save)
import into pdc and compute what Paddle Inference computes; -O2 runs them on pdc's integer ops.

The models come from tests/paddle_quant_models.py (generated once per format, cached under
.cache/paddle_quant/): a small CNN with AbsmaxObserver PTQ, and a probe of quantize_linear /
dequantize_linear pairs on rounding ties, saturation and per-axis scales.

The reference is Paddle Inference on the legacy (.pdmodel) export. Paddle 3.3.1 cannot run the PIR
(inference.json) export of the quantized CNN (create_predictor fails: "Tensor holds no memory"), and
on the probe it runs pd_op.dequantize_linear with the quantize kernel (the results are the codes
requantized, q * 127 / scale); the generator records both. Both formats are the same model: the PIR
export's eager outputs equal the legacy export's Paddle Inference outputs (checked below), so pdc's
import of either file is compared with the legacy Paddle Inference outputs.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import paddle_quant_models as pqm
import pdc
from pdc.compiler import optimize
from pdc.frontend.paddle import load_paddle
from pdc.ir import dtypes, run_graph, verify_graph

needs_paddle = pytest.mark.usefixtures("paddle_installed")  # skips without paddle, fails in CI

_dirs: dict[str, str] = {}


def folder(fmt: str, name: str) -> str:
    if not _dirs:  # both formats side by side, one paddle process each
        with ThreadPoolExecutor(len(pqm.FORMATS)) as pool:
            _dirs.update(zip(pqm.FORMATS, pool.map(pqm.ensure_models, pqm.FORMATS)))
    return os.path.join(_dirs[fmt], name)


def io(fmt: str, name: str):
    return np.load(os.path.join(folder(fmt, name), "io.npz"))


def reference(name: str) -> list[np.ndarray]:
    """Paddle Inference's outputs (of the legacy export; see the module docstring)."""
    data = io("legacy", name)
    return [data[f"paddle_{k}"] for k in range(sum(f.startswith("paddle_") for f in data.files))]


def imported(fmt: str, name: str):
    g = load_paddle(folder(fmt, name))
    verify_graph(g)
    return g


def run(graph, x) -> list[np.ndarray]:
    out = run_graph(graph, {graph.inputs[0].name: x})
    return [out[v.name] for v in graph.outputs]


def const_of(graph, v):
    assert v.data is not None, f"{v.name} is not a constant"
    return v.data


# ---- the reference -----------------------------------------------------------------------------------
@needs_paddle
@pytest.mark.parametrize("name", pqm.MODELS)
def test_both_formats_are_the_model_paddle_inference_ran(name):
    ref = reference(name)
    for fmt in pqm.FORMATS:
        data = io(fmt, name)
        for k, r in enumerate(ref):
            np.testing.assert_allclose(data[f"eager_{k}"], r, rtol=1e-6, atol=1e-6, err_msg=f"{fmt} eager output {k}")
    spec = json.load(open(os.path.join(folder("pir", name), "spec.json")))
    if spec["paddle_inference_error"]:
        print(f"Paddle Inference on the PIR export of {name}: {spec['paddle_inference_error'].splitlines()[-3:]}")


# ---- what Paddle's ops mean: scale = range, ties to even, saturation, per-axis scales --------------------
@needs_paddle
@pytest.mark.parametrize("fmt", pqm.FORMATS)
def test_probe_matches_paddle_inference(fmt):
    g = imported(fmt, "probe")
    ops = [n.op for n in g.nodes]
    assert ops.count("quantize_linear") == 3 and ops.count("dequantize_linear") == 3, ops
    for n in g.nodes:  # the step is scale / 127, the codes int8
        if n.op == "quantize_linear":
            assert n.outputs[0].type.dtype is dtypes.int8
    steps = sorted(float(np.ravel(const_of(g, n.inputs[1]))[0]) for n in g.nodes if n.op == "quantize_linear")
    assert steps == pytest.approx([0.1, 1.0, 1.0], rel=1e-6)
    x = io(fmt, "probe")["in_x"]
    got, ref = run(g, x), reference("probe")
    assert len(got) == len(ref) == 6
    for k in range(0, 6, 2):  # the codes, bit for bit (ties included), and the dequantized values
        np.testing.assert_array_equal(got[k], ref[k], err_msg=f"codes {k // 2}")
        np.testing.assert_allclose(got[k + 1], ref[k + 1], rtol=1e-6, atol=0, err_msg=f"dequantized {k // 2}")
    assert np.any(ref[0] == -128) and np.all(ref[0] <= 127)  # saturation at [-128, 127]
    assert ref[0][0, :6].tolist() == [0, 2, 2, 0, -2, -2]  # x = +-0.5, 1.5, 2.5 at step 1: half to even


# ---- the quantized CNN ---------------------------------------------------------------------------------
def output_step(ref: np.ndarray) -> float:
    """One quantization step of the output: the step Paddle's AbsmaxObserver would give it, |y|max / 127
    (the last layer's output is float: Paddle quantizes the inputs of layers, not their outputs)."""
    return float(np.abs(ref).max()) / 127


def check_within_one_step(got, ref, what: str) -> float:
    """Asserts |got - ref| <= one output step; returns the share of outputs equal up to float rounding."""
    step = output_step(ref)
    diff = np.abs(got.astype(np.float64) - ref)
    exact = diff <= 1e-5 * np.abs(ref).max()
    print(f"{what}: max |pdc - paddle| = {diff.max():.3g} = {diff.max() / step:.3f} output steps "
          f"(step {step:.3g}); exact up to float rounding: {exact.mean():.1%} of {exact.size}")
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert diff.max() <= step, f"{what}: {diff.max() / step:.3f} output steps off"
    return float(exact.mean())


def values(graph, x) -> dict[str, np.ndarray]:
    """Every value the graph computes, by name (the reference interpreter, node by node)."""
    from pdc.ir.interpreter import run_node
    env = {graph.inputs[0].name: x}
    for n in graph.nodes:
        args = [None if v is None else v.data if v.data is not None else env[v.name] for v in n.inputs]
        env.update((v.name, r) for v, r in zip(n.outputs, run_node(n, args)))
    return env


@needs_paddle
@pytest.mark.parametrize("fmt", pqm.FORMATS)
def test_quantized_cnn_matches_paddle_inference(fmt, tmp_path):
    g = imported(fmt, "cnn")
    ops = [n.op for n in g.nodes]
    # a Q/DQ pair on each quantized layer's input, a DQ on each weight
    assert ops.count("quantize_linear") == 4 and ops.count("dequantize_linear") == 8, ops
    assert ops.count("conv") == 2 and ops.count("gemm") == 2 and "add" not in ops, ops  # biases fused
    x, ref = io(fmt, "cnn")["in_x"], reference("cnn")[0]

    # the imported graph computes what Paddle computes: the same codes, the output up to float rounding
    imported_values = values(g, x)
    got = imported_values[g.outputs[0].name]
    exact = check_within_one_step(got, ref, f"{fmt} reference interpreter (imported graph)")
    # (here all of them; a code rounded the other way by Paddle's float conv on another CPU moves one row)
    assert exact >= 0.9

    # -O2: integer ops; the bias rounded to int32 on s_x * s_w and the fixed-point requantization
    # (fold-qdq) may round a value the other way: one code
    codes = [n.outputs[0].name for n in g.nodes if n.op == "quantize_linear"]
    o2 = optimize(g.copy(), 2)  # (the passes edit the graph they are given)
    o2_values = values(o2, x)
    for name in codes[1:]:  # the input's quantize_linear stays as it is
        a, b = imported_values[name].astype(np.int32), o2_values[name].astype(np.int32)
        print(f"{fmt} -O2 {name}: {np.count_nonzero(a != b)} of {a.size} codes differ by one")
        assert np.abs(a - b).max() <= 1, name
    check_within_one_step(o2_values[o2.outputs[0].name], ref, f"{fmt} reference interpreter -O2")

    path = os.path.join(folder(fmt, "cnn"), "inference.json" if fmt == "pir" else "inference.pdmodel")
    module = pdc.compile(path, target="x86", out_dir=str(tmp_path / "bundle"))
    compiled = list(module.run({module.inputs[0].name: x}).values())[0]
    check_within_one_step(compiled, ref, f"{fmt} x86 -O2")
    np.testing.assert_allclose(compiled, o2_values[o2.outputs[0].name], rtol=0, atol=1e-5 * np.abs(ref).max())


@needs_paddle
@pytest.mark.parametrize("fmt", pqm.FORMATS)
def test_quantized_cnn_runs_on_integer_ops_at_O2(fmt):
    g = optimize(imported(fmt, "cnn"), 2)
    verify_graph(g)
    ops = [n.op for n in g.nodes]
    assert ops.count("qconv") == 2 and ops.count("qmatmul") == 1, ops
    assert not {"conv", "fused_conv", "relu"} & set(ops), ops  # no float conv / activation left
    # left in float: the input's quantize_linear, the last layer (Paddle leaves its output unquantized)
    assert ops.count("quantize_linear") == 1 and ops.count("dequantize_linear") == 1, ops
    q = [n for n in g.nodes if n.op in ("qconv", "qmatmul")]
    assert all(n.inputs[1].type.dtype is dtypes.int8 and n.inputs[2].type.dtype is dtypes.int32 for n in q)


# ---- lowerings no Paddle export above exercises (hand-built programs) -------------------------------------
def lower(ops, shape):
    from pdc.frontend.paddle.lower import Lowering
    from pdc.frontend.paddle.program import Program
    from pdc.ir.types import TensorType
    program = Program("hand-built", "pir", inputs=[("x", 1, TensorType(dtypes.float32, shape))], ops=ops,
                      outputs=[ops[-1].results[0]])
    return Lowering(program, {}).run()


def qdq_op(kind, operand, result, scale, **attrs):
    from pdc.frontend.paddle.program import Const, Op
    base = {"quant_axis": -1, "bit_length": 8, "qmin": -128, "qmax": 127, "round_type": 0, "is_test": True,
            "only_observer": False}
    return Op(kind, [operand, Const(np.asarray(scale, np.float32)), Const(np.zeros_like(scale, np.float32)),
                     None, None], [result, None, None, None], {**base, **attrs}, [None] * 4, f"op '{kind}'", kind)


def test_round_type_1_clips_to_the_scale_first():
    # round_type 1 (half away from zero after clipping x to [-scale, scale]): codes in [-127, 127];
    # exact ties round half to even in pdc (a documented deviation of one step)
    g = lower([qdq_op("quantize_linear", 1, 2, 12.7, round_type=1)], (5,))
    assert [n.op for n in g.nodes] == ["clip", "quantize_linear", "cast"]
    out = run(g, np.array([100.0, -100.0, 0.31, -0.36, 12.7], np.float32))[0]
    assert out.tolist() == [127, -127, 3, -4, 127]


def test_dequantize_of_a_computed_float_multiplies_by_the_step():
    from pdc.frontend.paddle.program import Op
    relu = Op("relu", [1], [2], {}, [None], "op 'relu'", "relu")
    g = lower([relu, qdq_op("dequantize_linear", 2, 3, [127.0, 254.0], quant_axis=1)], (3, 2))
    assert [n.op for n in g.nodes] == ["relu", "mul"]
    out = run(g, np.array([[1, 2], [3, -4], [5, 6]], np.float32))[0]
    np.testing.assert_allclose(out, [[1, 4], [3, 0], [5, 12]])


def test_only_observer_is_a_copy_and_training_mode_is_rejected():
    from pdc.ir.errors import UnsupportedError
    g = lower([qdq_op("quantize_linear", 1, 2, 1.0, only_observer=True)], (2,))
    assert [n.op for n in g.nodes] == ["identity"]
    with pytest.raises(UnsupportedError, match="training mode"):
        lower([qdq_op("quantize_linear", 1, 2, 1.0, is_test=False)], (2,))


def test_per_channel_weights_fold_to_qconv():
    # a conv with per-output-channel weight scales (quant_axis 0), as Paddle's channel-wise quantizers
    # write it: the weights' float codes become int8 behind a per-axis DequantizeLinear, fold-qdq makes
    # a qconv with one scale per channel
    from pdc.frontend.paddle.program import Const, Op
    rng = np.random.default_rng(0)
    w_scales = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    codes = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.float32)
    conv_attrs = {"strides": [1, 1], "paddings": [1, 1], "dilations": [1, 1], "groups": 1, "data_format": "NCHW",
                  "padding_algorithm": "EXPLICIT"}
    ops = [qdq_op("quantize_linear", 1, 2, 3.0), qdq_op("dequantize_linear", 2, 3, 3.0),
           qdq_op("dequantize_linear", Const(codes), 4, w_scales, quant_axis=0),
           Op("conv2d", [3, 4], [5], conv_attrs, [None], "op 'conv2d'", "conv2d"),
           Op("add", [5, Const(rng.uniform(-1, 1, (1, 4, 1, 1)).astype(np.float32))], [6], {}, [None], "op 'add'",
              "add"),
           Op("relu", [6], [7], {}, [None], "op 'relu'", "relu"),
           qdq_op("quantize_linear", 7, 8, 40.0), qdq_op("dequantize_linear", 8, 9, 40.0)]
    g = lower(ops, (1, 3, 6, 6))
    assert [n.op for n in g.nodes] == ["quantize_linear", "dequantize_linear", "dequantize_linear", "conv", "relu",
                                       "quantize_linear", "dequantize_linear"]  # the bias in conv, no casts left
    w_dq = next(n for n in g.nodes if n.op == "dequantize_linear" and n.inputs[0].data is not None)
    assert w_dq.inputs[0].type.dtype is dtypes.int8 and w_dq.attrs["axis"] == 0
    np.testing.assert_allclose(w_dq.inputs[1].data, w_scales / 127)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    want = run(g, x)[0]
    o2 = optimize(g.copy(), 2)
    qconv = [n for n in o2.nodes if n.op == "qconv"]
    assert len(qconv) == 1 and len(qconv[0].attrs["scale"]) == 4
    got = run(o2, x)[0]
    assert np.abs(got - want).max() <= 40.0 / 127 * 1.0001
