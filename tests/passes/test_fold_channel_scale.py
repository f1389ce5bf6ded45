import numpy as np
import pytest

from tolerances import KERNEL

from .util import check_pass

BEFORE = """
    graph @g(%x: f32[1,8,16,16], %s: {s}) -> (%y: f32[1,4,16,16]) {{
      %w = const f32[4,8,3,3]
      %b = const f32[4]
      %xs = mul({a}, {b}) : f32[1,8,16,16]
      %y = conv(%xs, %w, %b) {{pads=[1,1,1,1]}} : f32[1,4,16,16]
    }}"""


@pytest.mark.parametrize("s,a,b", [("f32[1,8,1,1]", "%x", "%s"), ("f32[8,1,1]", "%s", "%x")])
def test_channel_scale_moves_onto_the_weights(s, a, b):
    """Either operand order, the scale with or without its batch dim: the mul takes the weights."""
    check_pass("fold-channel-scale", BEFORE.format(s=s, a=a, b=b), f"""
        graph @g(%x: f32[1,8,16,16], %s: {s}) -> (%y: f32[1,4,16,16]) {{
          %w = const f32[4,8,3,3]
          %b = const f32[4]
          %w.scaled0 = mul(%w, %s) : f32[4,8,3,3]
          %y = conv(%x, %w.scaled0, %b) {{pads=[1, 1, 1, 1]}} : f32[1,4,16,16]
        }}""")


@pytest.mark.parametrize("case", [
    # a scale per image: the images would need different weights
    """graph @g(%x: f32[2,8,16,16], %s: f32[2,8,1,1]) -> (%y: f32[2,4,16,16]) {
      %w = const f32[4,8,1,1]
      %xs = mul(%x, %s) : f32[2,8,16,16]
      %y = conv(%xs, %w) : f32[2,4,16,16]
    }""",
    # a scale that varies along the rows is no channel scale
    """graph @g(%x: f32[1,8,16,16], %s: f32[1,8,16,1]) -> (%y: f32[1,4,16,16]) {
      %w = const f32[4,8,1,1]
      %xs = mul(%x, %s) : f32[1,8,16,16]
      %y = conv(%xs, %w) : f32[1,4,16,16]
    }""",
    # a grouped conv: weight channel c is input channel g * 4 + c
    """graph @g(%x: f32[1,8,16,16], %s: f32[1,8,1,1]) -> (%y: f32[1,4,16,16]) {
      %w = const f32[4,4,1,1]
      %xs = mul(%x, %s) : f32[1,8,16,16]
      %y = conv(%xs, %w) {group=2} : f32[1,4,16,16]
    }""",
    # the scaled input is read elsewhere too
    """graph @g(%x: f32[1,8,16,16], %s: f32[1,8,1,1]) -> (%y: f32[1,4,16,16], %xs: f32[1,8,16,16]) {
      %w = const f32[4,8,1,1]
      %xs = mul(%x, %s) : f32[1,8,16,16]
      %y = conv(%xs, %w) : f32[1,4,16,16]
    }""",
    # weights made at run time
    """graph @g(%x: f32[1,8,16,16], %s: f32[1,8,1,1], %w: f32[4,8,1,1]) -> (%y: f32[1,4,16,16]) {
      %xs = mul(%x, %s) : f32[1,8,16,16]
      %y = conv(%xs, %w) : f32[1,4,16,16]
    }""",
    # weights larger than a quarter of the input: scaling them would cost more than the mul
    """graph @g(%x: f32[1,64,4,4], %s: f32[1,64,1,1]) -> (%y: f32[1,64,4,4]) {
      %w = const f32[64,64,1,1]
      %xs = mul(%x, %s) : f32[1,64,4,4]
      %y = conv(%xs, %w) : f32[1,64,4,4]
    }""",
], ids=["per-image", "per-row", "grouped", "shared", "runtime-weights", "large-weights"])
def test_scales_that_stay(case):
    lines = [line.strip() for line in case.splitlines()]
    text = "\n".join([lines[0]] + ["  " + line for line in lines[1:-1]] + [lines[-1]])
    check_pass("fold-channel-scale", text, text)


def test_squeeze_excitation_block_on_x86_against_onnxruntime(tmp_path):
    """A squeeze-excitation block (pool, two 1x1 convs, sigmoid gate) before a 3x3 conv with bias and
    ReLU, compiled for x86 at -O2: the gate goes onto the 3x3 weights and the outputs are ONNX
    Runtime's; with two images (a scale per image) the mul stays."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    import pdc
    from pdc.compiler import optimize
    from pdc.frontend.onnx_import import import_onnx
    from pdc.targets.x86 import X86_AVX2

    rng = np.random.default_rng(0)
    c, m = 16, 8

    def model(batch):
        inits = [numpy_helper.from_array((rng.standard_normal(shape) / 4).astype(np.float32), name) for name, shape in
                 (("w1", (4, c, 1, 1)), ("w2", (c, 4, 1, 1)), ("w3", (m, c, 3, 3)), ("b3", (m,)))]
        nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                 helper.make_node("Conv", ["p", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("Conv", ["r", "w2"], ["g"]), helper.make_node("Sigmoid", ["g"], ["s"]),
                 helper.make_node("Mul", ["x", "s"], ["xs"]),
                 helper.make_node("Conv", ["xs", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c3"], ["y"])]
        graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, 20, 20])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, m, 20, 20])], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    for batch in (1, 2):
        path = str(tmp_path / f"se{batch}.onnx")
        onnx.save(model(batch), path)
        graph = optimize(import_onnx(onnx.load(path)), 2, X86_AVX2)
        scaled = [n for n in graph.nodes if n.op == "mul" and n.inputs[0].data is not None]
        assert len(scaled) == (batch == 1), [n.op for n in graph.nodes]
        mod = pdc.compile(path, target="x86", out_dir=str(tmp_path / f"b{batch}"), threads=2)
        x = rng.standard_normal((batch, c, 20, 20)).astype(np.float32)
        want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        KERNEL.check(mod.run({"x": x})["y"], want)
