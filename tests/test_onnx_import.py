"""ONNX import: shape subgraphs fold, symbolic dims stay, names survive, opt/inspect on real files."""
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph, verify_graph
from pdc.ir.printer import print_graph
from tolerances import IDENTICAL


def shape_subgraph_model(batch="N"):
    """x[N,4,6] -> Reshape(x, Concat(Gather(Shape(x), 0), [-1])) -> [N, 24], then Relu."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "i0"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    g = helper.make_graph(nodes, "shapes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 24])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_subgraph_folds_when_static():
    g = import_onnx(shape_subgraph_model(batch=2))
    verify_graph(g)
    assert [n.op for n in g.nodes] == ["reshape", "relu"]
    shape_const = g.nodes[0].inputs[1]
    np.testing.assert_array_equal(shape_const.data, [2, -1])
    assert str(g.outputs[0].type) == "f32[2,24]"


def test_symbolic_batch_is_kept_and_runs():
    m = shape_subgraph_model()
    g = import_onnx(m)
    verify_graph(g)
    assert str(g.inputs[0].type) == "f32[N,4,6]"
    assert g.outputs[0].type.shape[1] == 24
    assert "shape" in [n.op for n in g.nodes]  # not foldable: N is only known at run time
    x = np.random.default_rng(0).standard_normal((3, 4, 6)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    IDENTICAL.check(run_graph(g, {"x": x})["y"], want)  # a reshape: the values themselves


def test_hostile_names_survive_as_quoted_text():
    names = ["a*/b", 'q"uote', "back\\slash", "new\nline", "#include <x>", "caf\u00e9"]
    nodes = [helper.make_node("Relu", [names[i]], [names[i + 1]], name=names[i]) for i in range(len(names) - 1)]
    g = helper.make_graph(nodes, "evil\u00e9", [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [1])])
    graph = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    text = print_graph(graph)
    assert text.isascii()
    assert len(text.splitlines()) == 2 + len(nodes)
    assert [v.name for v in graph.values()] == names


def test_cli_opt_round_trip_and_inspect(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(shape_subgraph_model(), p)
    a, b = tmp_path / "a.pdir", tmp_path / "b.pdir"
    run = lambda *args: subprocess.run([sys.executable, "-m", "pdc.cli", *args], capture_output=True,  # noqa: E731
                                       text=True, check=True)
    run("opt", str(p), "--emit", "ir", "-o", str(a))
    run("opt", str(a), "--emit", "ir", "-o", str(b))
    assert a.read_bytes() == b.read_bytes()
    assert run("opt", str(a)).stdout == a.read_text()
    info = json.loads(run("inspect", str(a), "--json").stdout)
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["N", 4, 6]}]
    assert info["ops"] == {"concat": 1, "gather": 1, "relu": 1, "reshape": 1, "shape": 1, "unsqueeze": 1}
    assert info["parameters"] == 3


def _old_opset_mul(axis):
    node = helper.make_node("Mul", ["a", "b"], ["y"], broadcast=1, axis=axis)
    g = helper.make_graph([node], "mul6", [helper.make_tensor_value_info("a", TensorProto.FLOAT, (2, 3, 4)),
                                           helper.make_tensor_value_info("b", TensorProto.FLOAT, (3, 4))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 6)])


def test_old_opsets_are_converted_up():
    """An opset-6 Mul with the legacy broadcast attributes, brought to opset 7 by ONNX's converter."""
    import pdc
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    g = import_onnx(_old_opset_mul(1))
    np.testing.assert_array_equal(run_graph(g, {"a": a, "b": b})["y"], a * b)
    module = pdc.compile(_old_opset_mul(1), target="x86")
    np.testing.assert_array_equal(module.run({"a": a, "b": b})["y"], a * b)


def test_old_opset_the_converter_cannot_take():
    import pytest
    from pdc.ir.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match=r"^mul6: opset 6 is older than pdc reads \(7 and up\), and ONNX's "
                                               r"version converter could not bring it to opset 7: assert_numpy"):
        import_onnx(_old_opset_mul(0), "mul6")
