import numpy as np
import pytest

from tolerances import KERNEL

from .util import check_pass, graph_from_text, run_passes


def test_pad_merges_into_conv_pads():
    check_pass("fold-pad", """
        graph @g(%x: f32[1,2,5,5]) -> (%y: f32[1,3,6,7]) {
          %pads = const i64[8]
          %w = const f32[3,2,3,3]
          %p = pad(%x, %pads) {mode="constant"} : f32[1,2,6,7]
          %y = conv(%p, %w) {pads=[1,1,1,1]} : f32[1,3,6,7]
        }""", """
        graph @g(%x: f32[1,2,5,5]) -> (%y: f32[1,3,6,7]) {
          %w = const f32[3,2,3,3]
          %y = conv(%x, %w) {auto_pad="NOTSET", pads=[1, 2, 2, 2]} : f32[1,3,6,7]
        }""", constants={"pads": [0, 0, 0, 1, 0, 0, 1, 1]})


def test_pad_with_axes_and_zero_value_into_average_pool_counting_pads():
    check_pass("fold-pad", """
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[1,2,5,4]) {
          %pads = const i64[4]
          %axes = const i64[2]
          %zero = const f32[]
          %p = pad(%x, %pads, %zero, %axes) {mode="constant"} : f32[1,2,6,5]
          %y = average_pool(%p) {count_include_pad=1, kernel_shape=[2,2]} : f32[1,2,5,4]
        }""", """
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[1,2,5,4]) {
          %y = average_pool(%x) {auto_pad="NOTSET", count_include_pad=1, kernel_shape=[2, 2], pads=[2, 1, 0, 0]} : f32[1,2,5,4]
        }""", constants={"pads": [2, 1, 0, 0], "axes": [-2, 3], "zero": 0.0})


def test_minus_infinity_pad_into_max_pool():
    check_pass("fold-pad", """
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[1,2,3,3]) {
          %pads = const i64[8]
          %ninf = const f32[]
          %p = pad(%x, %pads, %ninf) {mode="constant"} : f32[1,2,6,6]
          %y = max_pool(%p) {kernel_shape=[2,2], strides=[2,2]} : f32[1,2,3,3]
        }""", """
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[1,2,3,3]) {
          %y = max_pool(%x) {auto_pad="NOTSET", kernel_shape=[2, 2], pads=[1, 1, 1, 1], strides=[2, 2]} : f32[1,2,3,3]
        }""", constants={"pads": [0, 0, 1, 1, 0, 0, 1, 1], "ninf": -np.inf})


@pytest.mark.parametrize("case", [
    # zeros are not what max_pool pads with
    ("%p = pad(%x, %pads) {mode=\"constant\"} : f32[1,2,6,6]",
     "%y = max_pool(%p) {kernel_shape=[2,2], strides=[2,2]} : f32[1,2,3,3]", [0, 0, 1, 1, 0, 0, 1, 1]),
    # count_include_pad=0 would stop counting the padded zeros
    ("%p = pad(%x, %pads) {mode=\"constant\"} : f32[1,2,6,6]",
     "%y = average_pool(%p) {kernel_shape=[2,2], strides=[2,2]} : f32[1,2,3,3]", [0, 0, 1, 1, 0, 0, 1, 1]),
    # ceil_mode treats windows that start in the padding differently
    ("%p = pad(%x, %pads) {mode=\"constant\"} : f32[1,2,5,5]",
     "%y = average_pool(%p) {ceil_mode=1, count_include_pad=1, kernel_shape=[2,2], strides=[2,2]} : f32[1,2,3,3]",
     [0, 0, 1, 1, 0, 0, 0, 0]),
    # reflect padding, channel padding, cropping
    ("%p = pad(%x, %pads) {mode=\"reflect\"} : f32[1,2,6,6]",
     "%y = conv(%p, %w) : f32[1,2,4,4]", [0, 0, 1, 1, 0, 0, 1, 1]),
    ("%p = pad(%x, %pads) {mode=\"constant\"} : f32[1,4,4,4]",
     "%y = conv(%p, %w4) : f32[1,2,2,2]", [0, 1, 0, 0, 0, 1, 0, 0]),
    ("%p = pad(%x, %pads) {mode=\"constant\"} : f32[1,2,4,3]",
     "%y = conv(%p, %w) : f32[1,2,2,1]", [0, 0, 0, 0, 0, 0, 0, -1]),
    # the conv chooses its own padding
    ("%p = pad(%x, %pads) {mode=\"constant\"} : f32[1,2,6,6]",
     "%y = conv(%p, %w) {auto_pad=\"SAME_UPPER\"} : f32[1,2,6,6]", [0, 0, 1, 1, 0, 0, 1, 1]),
])
def test_does_not_fold(case):
    pad_line, use_line, pads = case
    text = f"""
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[{use_line.rsplit('f32[', 1)[1]}) {{
          %pads = const i64[8]
          %w = const f32[2,2,3,3]
          %w4 = const f32[2,4,3,3]
          {pad_line}
          {use_line}
        }}"""
    g = graph_from_text(text, {"pads": pads})
    run_passes(g, "fold-pad")
    assert [n.op for n in g.nodes][0] == "pad"


def test_pad_with_another_reader_stays():
    text = """
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4], %p: f32[1,2,6,6]) {
          %pads = const i64[8]
          %w = const f32[2,2,3,3]
          %p = pad(%x, %pads) {mode="constant"} : f32[1,2,6,6]
          %y = conv(%p, %w) : f32[1,2,4,4]
        }"""
    check_pass("fold-pad", text, text, constants={"pads": [0, 0, 1, 1, 0, 0, 1, 1]})


def test_onnx_model_against_onnxruntime():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from pdc.frontend.onnx_import import import_onnx
    from pdc.ir.interpreter import run_graph

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array([1, 2, 0, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
             numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")]
    nodes = [helper.make_node("Pad", ["x", "pads", "", "axes"], ["p"]),
             helper.make_node("Conv", ["p", "w", "b"], ["c"], strides=[2, 1]),
             helper.make_node("Pad", ["c", "pads", "", "axes"], ["q"]),
             helper.make_node("AveragePool", ["q"], ["y"], kernel_shape=[3, 3], count_include_pad=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    g = import_onnx(model)
    run_passes(g, "fold-pad")
    assert [n.op for n in g.nodes] == ["conv", "average_pool"]
    x = rng.standard_normal((1, 3, 9, 8)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    KERNEL.check(run_graph(g, {"x": x})["y"], want)
