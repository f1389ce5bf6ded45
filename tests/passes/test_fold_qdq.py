"""fold-qdq: QDQ-form quantization (DequantizeLinear -> float op -> QuantizeLinear) becomes pdc's
integer ops; on models quantized by ONNX Runtime the outputs stay within one quantization step of
ONNX Runtime's own int8 execution."""
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.ir import PdcError
from pdc.ir.interpreter import run_graph
from pdc.ir.printer import print_graph

from .util import graph_from_text, run_passes

BEFORE = """
graph @g(%x: i8[1,2,4,4]) -> (%y: f32[1,3,2,2]) {
  %sx = const f32[]
  %zx = const i8[]
  %w = const i8[3,2,3,3]
  %sw = const f32[]
  %zw = const i8[]
  %b = const i32[3]
  %sb = const f32[]
  %zb = const i32[]
  %sy = const f32[]
  %zy = const i8[]
  %xf = dequantize_linear(%x, %sx, %zx) : f32[1,2,4,4]
  %wf = dequantize_linear(%w, %sw, %zw) : f32[3,2,3,3]
  %bf = dequantize_linear(%b, %sb, %zb) : f32[3]
  %c = conv(%xf, %wf, %bf) {pads=[1, 1, 1, 1]} : f32[1,3,4,4]
  %r = relu(%c) : f32[1,3,4,4]
  %p = max_pool(%r) {kernel_shape=[2, 2], strides=[2, 2]} : f32[1,3,2,2]
  %q = quantize_linear(%p, %sy, %zy) : i8[1,3,2,2]
  %y = dequantize_linear(%q, %sy, %zy) : f32[1,3,2,2]
}"""

# x_scale * w_scale / y_scale = 0.5 * 0.25 / 1 = 0.125; ReLU is y_zero = 3 as the lower clamp
AFTER = """
graph @g(%x: i8[1,2,4,4]) -> (%y: f32[1,3,2,2]) {
  %w = const i8[3,2,3,3]
  %b = const i32[3]
  %sy = const f32[]
  %zy = const i8[]
  %q.int = qconv(%x, %w, %b) {clamp=[3, 127], pads=[1, 1, 1, 1], scale=[0.125], x_zero=-2, y_dtype=i8, y_zero=3} : i8[1,3,4,4]{scale=1.0, zero=3}
  %q = max_pool(%q.int) {kernel_shape=[2, 2], strides=[2, 2]} : i8[1,3,2,2]{scale=1.0, zero=3}
  %y = dequantize_linear(%q, %sy, %zy) : f32[1,3,2,2]
}"""

PARAMS = {"sx": 0.5, "zx": -2, "sw": 0.25, "zw": 0, "sb": 0.125, "zb": 0, "sy": 1.0, "zy": 3, "b": [40, -3, 0]}


def test_conv_relu_pool_between_dq_and_q_becomes_qconv_and_integer_pooling():
    g = graph_from_text(BEFORE, PARAMS)
    before = g.copy()
    run_passes(g, "fold-qdq")
    assert print_graph(g) == textwrap.dedent(AFTER).strip() + "\n"
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = {"x": rng.integers(-128, 128, (1, 2, 4, 4)).astype(np.int8)}
        want, got = run_graph(before, x)["y"], run_graph(g, x)["y"]
        # the float path rounds the float sum, qconv the exact accumulator times the float32 scale: a step at most
        assert np.abs(got - want).max() <= 1.0


def test_a_zero_scale_is_an_error():
    g = graph_from_text(BEFORE, dict(PARAMS, sx=0.0))
    with pytest.raises(PdcError, match=r"^node dequantize_linear -> %xf: the scale must be positive and finite, "
                                       r"got \[0\.0\]$"):
        run_passes(g, "fold-qdq")


def test_unmatched_patterns_stay_float():
    """A sigmoid between DQ and Q has no integer op: the graph is unchanged."""
    text = """
    graph @g(%x: i8[4]) -> (%q: i8[4]) {
      %s = const f32[]
      %z = const i8[]
      %f = dequantize_linear(%x, %s, %z) : f32[4]
      %t = sigmoid(%f) : f32[4]
      %q = quantize_linear(%t, %s, %z) : i8[4]
    }"""
    g = graph_from_text(text, {"s": 0.1, "z": 0})
    want = print_graph(g)
    run_passes(g, "fold-qdq")
    assert print_graph(g) == want


def _float_model(tmp_path):
    """conv+relu -> conv -> residual add -> relu -> global pool -> flatten -> gemm (biases included)."""
    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32))  # noqa: E731
    inits = [w(8, 3, 3, 3), w(8), w(8, 8, 3, 3), w(8), w(5, 8), w(5)]
    for t, name in zip(inits, ["w1", "b1", "w2", "b2", "fw", "fb"]):
        t.name = name
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw2", "fb"], ["y"], transB=1)]
    inits[4] = numpy_helper.from_array(rng.normal(0, 0.3, (5, 8 * 4 * 4)).astype(np.float32), "fw2")
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _ort_quantized(float_path, qdq_path, samples: list, **options):
    """qdq_path: ONNX Runtime's quantize_static (QDQ, int8 weights) of the float model on these samples."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(qdq_path), Reader(), quant_format=QuantFormat.QDQ,
                    weight_type=QuantType.QInt8, **options)
    return qdq_path


@pytest.mark.parametrize("per_channel", [True, False])
def test_onnxruntime_quantize_static_model_equals_onnxruntime(tmp_path, per_channel):
    """pdc's integer ops round as ONNX Runtime's QLinearConv / QGemm / QLinearAdd kernels do (float32
    scale products, fmas, ties to even), so the folded model gives ORT's outputs bit for bit."""
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType
    from pdc.frontend import load_model
    from pdc.passes.manager import pipeline_for_level
    rng = np.random.default_rng(1)
    cal = [{"x": rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(16)]
    qdq = _ort_quantized(_float_model(tmp_path), tmp_path / "qdq.onnx", cal, per_channel=per_channel,
                         activation_type=QuantType.QInt8)
    g = load_model(str(qdq))
    run_passes(g, pipeline_for_level(2))
    ops = {n.op for n in g.nodes}
    assert {"qconv", "qadd", "qmatmul"} <= ops and "conv" not in ops and "gemm" not in ops, ops
    sess = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    step = float(numpy_helper.to_array(next(t for t in onnx.load(str(qdq)).graph.initializer
                                            if t.name == "y_scale")))
    exact = []
    for _ in range(30):
        x = rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
        want, got = sess.run(None, {"x": x})[0], run_graph(g, {"x": x})["y"]
        assert np.abs(got - want).max() <= step * 1.0001
        exact.append(np.mean(got == want))
    assert np.mean(exact) == 1.0, f"{100 * np.mean(exact):.1f}% of outputs equal ONNX Runtime's"


def _attention_model(tmp_path):
    """q k^T -> softmax -> x v, the attention core (float)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (16, 16)).astype(np.float32), n) for n in ("wq", "wk", "wv")]
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]), helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Softmax", ["s"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    graph = helper.make_graph(nodes, "att", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12, 16])], inits)
    path = tmp_path / "att.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_quantized_softmax_folds_into_onnxruntime_qlinearsoftmax_rule(tmp_path):
    """DQ -> Softmax -> Q, which ONNX Runtime runs as its QLinearSoftmax, becomes qsoftmax: the model's
    outputs equal ONNX Runtime's, where a float softmax between the codes differs by a step."""
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType
    from pdc.frontend import load_model
    rng = np.random.default_rng(4)
    cal = [{"x": rng.normal(0, 1, (1, 12, 16)).astype(np.float32)} for _ in range(16)]
    qdq = _ort_quantized(_attention_model(tmp_path), tmp_path / "qdq.onnx", cal, activation_type=QuantType.QUInt8)
    g = load_model(str(qdq))
    run_passes(g, "fold-qdq")
    assert [n.op for n in g.nodes].count("qsoftmax") == 1 and "softmax" not in {n.op for n in g.nodes}
    sess = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    module = pdc.compile(str(qdq), target="x86", out_dir=str(tmp_path / "b"))
    for _ in range(10):
        x = {"x": rng.normal(0, 1, (1, 12, 16)).astype(np.float32)}
        want = sess.run(None, x)[0]
        assert np.array_equal(run_graph(g, x)["y"], want) and np.array_equal(module.run(x)["y"], want)


def test_compile_names_the_node_with_a_zero_scale(tmp_path):
    import subprocess
    import sys
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant_in"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant_in")]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "z.onnx"))
    r = subprocess.run([sys.executable, "-m", "pdc.cli", "compile", str(tmp_path / "z.onnx"), "-o", str(tmp_path / "b")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("pdc: error: node 'quant_in' (quantize_linear): the scale must be "
                                                 "positive and finite, got [0.0]")
    assert not (tmp_path / "b").exists()
