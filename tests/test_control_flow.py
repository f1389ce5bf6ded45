"""If, Loop and Scan: models written as exporters write them (bodies reading outer values and
initializers), compiled for x86 and aarch64 and compared with ONNX Runtime; the IR text of their
nested bodies round-trips; and the limits of static shapes give clear errors."""
from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph, verify_graph
from pdc.ir.errors import PdcError
from pdc.ir.parser import parse_graph
from pdc.ir.printer import print_graph

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "kernels"))
from targets import options, require  # noqa: E402

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 4)).astype(np.float32) * 0.5


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "cf", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def if_model():
    """y = relu(x @ W) + b if sum(x) > 0 else x * 2 - b: both branches read x, W and b from outside."""
    then = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["t0"]), helper.make_node("Relu", ["t0"], ["t1"]),
                              helper.make_node("Add", ["t1", "b"], ["then_y"])], "then_branch", [],
                             [helper.make_tensor_value_info("then_y", F, (2, 4))])
    other = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["e0"]), helper.make_node("Sub", ["e0", "b"], ["else_y"])],
                              "else_branch", [], [helper.make_tensor_value_info("else_y", F, (2, 4))],
                              [numpy_helper.from_array(np.array(2, np.float32), "two")])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, (2, 4))], [helper.make_tensor_value_info("y", F, (2, 4))],
                  [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.float32(0.0).reshape(()), "zero"),
                   numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b")])


def loop_model(trips=5):
    """An RNN-like loop over a constant trip count: h = tanh(h @ W + x), every h stacked."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "W"], ["m"]), helper.make_node("Add", ["m", "x"], ["a"]),
         helper.make_node("Tanh", ["a"], ["h_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["h_out"], ["h_scan"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, ()),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, ()),
                 helper.make_tensor_value_info("h_in", F, (1, 4))],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, ()), helper.make_tensor_value_info("h_out", F, (1, 4)),
         helper.make_tensor_value_info("h_scan", F, (1, 4))])
    nodes = [helper.make_node("Loop", ["M", "", "h0"], ["h", "hs"], body=body)]
    return _model(nodes, [helper.make_tensor_value_info("h0", F, (1, 4)), helper.make_tensor_value_info("x", F, (1, 4))],
                  [helper.make_tensor_value_info("h", F, (1, 4)), helper.make_tensor_value_info("hs", F, (trips, 1, 4))],
                  [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array(trips, np.int64), "M")])


def while_model():
    """A while loop with a run-time trip count and an early exit: double x until its sum passes a limit;
    the iteration number is carried out too."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_in", "two"], ["x_out"]), helper.make_node("ReduceSum", ["x_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "limit"], ["cond_out"]), helper.make_node("Cast", ["i"], ["i_f"], to=F),
         helper.make_node("Add", ["n_in", "i_f"], ["n_out"])],
        "while_body", [helper.make_tensor_value_info("i", TensorProto.INT64, ()),
                       helper.make_tensor_value_info("cond_in", TensorProto.BOOL, ()),
                       helper.make_tensor_value_info("x_in", F, (3,)), helper.make_tensor_value_info("n_in", F, ())],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, ()), helper.make_tensor_value_info("x_out", F, (3,)),
         helper.make_tensor_value_info("n_out", F, ())])
    nodes = [helper.make_node("Loop", ["M", "go", "x", "n0"], ["y", "n"], body=body)]
    return _model(nodes, [helper.make_tensor_value_info("M", TensorProto.INT64, ()),
                          helper.make_tensor_value_info("go", TensorProto.BOOL, ()),
                          helper.make_tensor_value_info("x", F, (3,)), helper.make_tensor_value_info("limit", F, ())],
                  [helper.make_tensor_value_info("y", F, (3,)), helper.make_tensor_value_info("n", F, ())],
                  [numpy_helper.from_array(np.array(2, np.float32), "two"),
                   numpy_helper.from_array(np.array(0, np.float32), "n0")])


def scan_model():
    """A running sum over axis 1 of x, backwards, with a captured scale; outputs stacked on axis 1."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_t", "scale"], ["xs"]), helper.make_node("Add", ["acc_in", "xs"], ["acc_out"]),
         helper.make_node("Identity", ["acc_out"], ["y_t"])],
        "scan_body", [helper.make_tensor_value_info("acc_in", F, (2,)), helper.make_tensor_value_info("x_t", F, (2,))],
        [helper.make_tensor_value_info("acc_out", F, (2,)), helper.make_tensor_value_info("y_t", F, (2,))])
    nodes = [helper.make_node("Scan", ["acc0", "x"], ["acc", "y"], body=body, num_scan_inputs=1,
                              scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1])]
    return _model(nodes, [helper.make_tensor_value_info("acc0", F, (2,)), helper.make_tensor_value_info("x", F, (2, 5))],
                  [helper.make_tensor_value_info("acc", F, (2,)), helper.make_tensor_value_info("y", F, (2, 5))],
                  [numpy_helper.from_array(np.array(0.5, np.float32), "scale")])


def scan8_model():
    """Scan-8 (opset 8): a batch axis first; per item a running sum of x (forwards) and of z
    (backwards), scaled by a captured constant."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["x_t", "scale"], ["xs"]), helper.make_node("Add", ["acc_in", "xs"], ["a"]),
         helper.make_node("Add", ["a", "z_t"], ["acc_out"]), helper.make_node("Identity", ["acc_out"], ["y_t"])],
        "scan8_body", [helper.make_tensor_value_info("acc_in", F, (2,)), helper.make_tensor_value_info("x_t", F, (2,)),
                       helper.make_tensor_value_info("z_t", F, (2,))],
        [helper.make_tensor_value_info("acc_out", F, (2,)), helper.make_tensor_value_info("y_t", F, (2,))])
    nodes = [helper.make_node("Scan", ["", "acc0", "x", "z"], ["acc", "y"], body=body, num_scan_inputs=2,
                              directions=[0, 1])]
    return _model(nodes, [helper.make_tensor_value_info("acc0", F, (3, 2)), helper.make_tensor_value_info("x", F, (3, 4, 2)),
                          helper.make_tensor_value_info("z", F, (3, 4, 2))],
                  [helper.make_tensor_value_info("acc", F, (3, 2)), helper.make_tensor_value_info("y", F, (3, 4, 2))],
                  [numpy_helper.from_array(np.array(0.5, np.float32), "scale")], opset=8)


CASES = {
    "if_true": (if_model, lambda: {"x": np.abs(RNG.standard_normal((2, 4))).astype(np.float32)}),
    "if_false": (if_model, lambda: {"x": -np.abs(RNG.standard_normal((2, 4))).astype(np.float32)}),
    "loop": (loop_model, lambda: {"h0": RNG.standard_normal((1, 4)).astype(np.float32),
                                  "x": RNG.standard_normal((1, 4)).astype(np.float32)}),
    "while_exits_early": (while_model, lambda: {"M": np.array(20, np.int64), "go": np.array(True),
                                                "x": np.array([1, 2, 3], np.float32), "limit": np.array(100, np.float32)}),
    "while_runs_out": (while_model, lambda: {"M": np.array(3, np.int64), "go": np.array(True),
                                             "x": np.array([1, 2, 3], np.float32), "limit": np.array(1e9, np.float32)}),
    "while_never_starts": (while_model, lambda: {"M": np.array(5, np.int64), "go": np.array(False),
                                                 "x": np.array([1, 2, 3], np.float32), "limit": np.array(1, np.float32)}),
    "scan": (scan_model, lambda: {"acc0": np.array([1, -1], np.float32),
                                  "x": RNG.standard_normal((2, 5)).astype(np.float32)}),
    "scan8": (scan8_model, lambda: {"acc0": RNG.standard_normal((3, 2)).astype(np.float32),
                                    "x": RNG.standard_normal((3, 4, 2)).astype(np.float32),
                                    "z": RNG.standard_normal((3, 4, 2)).astype(np.float32)}),
}


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.mark.parametrize("target,opt_level", [("x86", 0), ("x86", 2), ("arm64", 0)])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_onnxruntime(case, target, opt_level, tmp_path):
    """-O0 compiles every loop as C control flow; -O2 unrolls the small ones of a static length."""
    require("arm64") if target == "arm64" else None
    make, feeds_of = CASES[case]
    model, feeds = make(), feeds_of()
    onnx.checker.check_model(model, full_check=True)
    want = _ort(model, feeds)
    module = pdc.compile(model, target=target, out_dir=str(tmp_path / "b"), opt_level=opt_level, **options(target))
    ops = {k["op"] for k in module.manifest["kernels"]}
    control = {"if", "loop", "scan"} & ops
    if opt_level == 0 or case.startswith(("if", "while")):
        assert control, ops
    else:  # the static loop and the scan: unrolled
        assert not control, ops
    got = module.run(feeds)
    for name, w in want.items():
        np.testing.assert_allclose(got[name], w, rtol=1e-5, atol=1e-6, err_msg=f"{case}: {name}")
    ref = run_graph(import_onnx(model), feeds)  # and the reference interpreter
    for name, w in want.items():
        np.testing.assert_allclose(ref[name], w, rtol=1e-5, atol=1e-6, err_msg=f"{case} (reference): {name}")


@pytest.mark.parametrize("make", [if_model, loop_model, while_model, scan_model, scan8_model])
def test_ir_text_round_trips_nested_bodies(make):
    g = import_onnx(make())
    verify_graph(g)
    text = print_graph(g)
    assert "graph @" in text.split("\n", 1)[1]  # a body inside
    back = parse_graph(text, g.constant_arrays())
    verify_graph(back)
    assert print_graph(back) == text


def test_if_text_form():
    """The body's lines are indented one level deeper; what it reads from outside are inputs."""
    text = print_graph(import_onnx(if_model()))
    # both branches take every capture (x, W, b and the else branch's initializer, now outside)
    assert ("  %y = if(%c, %x, %W, %b, %two) {else_branch=graph @else_branch(%x: f32[2,4], %unused0: f32[4,4], "
            "%b: f32[4], %two: f32[]) -> (%else_y: f32[2,4]) {\n    %e0 = mul(%x, %two) : f32[2,4]\n") in text
    assert ("  }, then_branch=graph @then_branch(%x: f32[2,4], %W: f32[4,4], %b: f32[4], %unused0: f32[]) -> "
            "(%then_y: f32[2,4]) {\n    %t0 = matmul(%x, %W) : f32[2,4]\n") in text
    assert text.endswith("    %then_y = add(%t1, %b) : f32[2,4]\n  }} : f32[2,4]\n}\n")


def test_constant_condition_inlines_the_branch():
    m = if_model()
    m.graph.node[1].CopyFrom(helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(False))))
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["reduce_sum", "mul", "sub", "identity"]  # the sum is dead code now


def test_scanned_outputs_need_a_static_trip_count(tmp_path):
    m = while_model()
    body = m.graph.node[0].attribute[0].g
    body.node.append(helper.make_node("Identity", ["x_out"], ["x_scan"]))
    body.output.append(helper.make_tensor_value_info("x_scan", F, (3,)))
    m.graph.node[0].output.append("xs")
    m.graph.output.append(helper.make_tensor_value_info("xs", F, None))
    with pytest.raises(PdcError, match=r"the shape of %xs \(f32\[\w+,3\]\) depends on the input values; pdc compiles "
                                       r"static shapes only"):
        pdc.compile(m, target="x86", out_dir=str(tmp_path / "b"))


def test_malformed_bodies_get_one_line_errors():
    m = if_model()
    attrs = m.graph.node[2].attribute
    del attrs[[a.name for a in attrs].index("else_branch")]
    with pytest.raises(PdcError, match=r"^If node: attribute 'else_branch' is required$"):
        import_onnx(m, "cf")
    m = loop_model()
    body = m.graph.node[0].attribute[0].g
    del body.input[2]  # the body takes fewer inputs than the loop passes
    with pytest.raises(PdcError, match=r"^cf: Loop node body: takes 2 inputs, the node passes 3$"):
        import_onnx(m, "cf")
    m = scan_model()
    m.graph.node[0].attribute[0].g.node[0].input[1] = "nowhere"
    with pytest.raises(PdcError, match=r"^cf: Scan node body: Mul node uses 'nowhere', which nothing defines$"):
        import_onnx(m, "cf")


def test_compiled_bodies_hold_their_captured_constants_and_are_optimized():
    """What code generation takes (compiler.lower_bodies): constants a body reads are its own, so
    its kernels pack them, and the -O2 pipeline has fused inside each body."""
    from pdc.compiler import lower_bodies, optimize
    g = lower_bodies(optimize(import_onnx(if_model()), 2), 2)
    (node,) = [n for n in g.nodes if n.op == "if"]
    assert [v.name for v in node.inputs] == ["c", "x"]  # W, b and two moved into the branches
    assert [c.name for c in g.constants] == ["zero"]
    then, other = node.attrs["then_branch"], node.attrs["else_branch"]
    assert [c.name for c in then.constants] == ["W", "b"] and [c.name for c in other.constants] == ["b", "two"]
    assert [n.op for n in then.nodes] == ["fused_matmul", "add"] and [n.op for n in other.nodes] == ["fused_elementwise"]
    g = lower_bodies(optimize(import_onnx(while_model()), 2), 2)
    (node,) = [n for n in g.nodes if n.op == "loop"]
    assert node.attrs["captures"] == 1 and node.inputs[-1].name == "limit"  # a graph input stays captured
    assert [c.name for c in node.attrs["body"].constants] == ["two"]


def test_a_carried_constant_is_not_folded_into_the_body(tmp_path):
    """A counter carried from a constant 0 (bound shapes re-infer the body): the body must not read
    the initial value as its data, or `k + 1 < 4` folds to true and the loop runs to its guard M."""
    I64 = TensorProto.INT64
    body = helper.make_graph(
        [helper.make_node("Add", ["k_in", "one"], ["k_out"]), helper.make_node("Less", ["k_out", "four"], ["cond_out"]),
         helper.make_node("Mul", ["acc_in", "two"], ["acc_out"])],
        "count_body", [helper.make_tensor_value_info("i", I64, ()), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, ()),
                       helper.make_tensor_value_info("k_in", I64, ()), helper.make_tensor_value_info("acc_in", F, ("N", 3))],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, ()), helper.make_tensor_value_info("k_out", I64, ()),
         helper.make_tensor_value_info("acc_out", F, ("N", 3))])
    inits = [numpy_helper.from_array(np.array(100, np.int64), "M"), numpy_helper.from_array(np.array(True), "go"),
             numpy_helper.from_array(np.array(0, np.int64), "k0"), numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array(4, np.int64), "four"), numpy_helper.from_array(np.array(2, np.float32), "two")]
    model = _model([helper.make_node("Loop", ["M", "go", "k0", "x"], ["k", "acc"], body=body)],
                   [helper.make_tensor_value_info("x", F, ("N", 3))],
                   [helper.make_tensor_value_info("k", I64, ()), helper.make_tensor_value_info("acc", F, ("N", 3))], inits)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    got = pdc.compile(model, target="x86", out_dir=str(tmp_path / "b"), shapes={"x": (2, 3)}).run({"x": x})
    assert int(got["k"]) == 4
    np.testing.assert_array_equal(got["acc"], x * 16)
