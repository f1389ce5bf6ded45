"""What the ONNX and Paddle mutation fuzzing found, kept as plain cases: each used to end in an
internal error, a wrong answer beside ONNX Runtime, or a compile that walked every output position
in Python; each is now a one-line PdcError or a quick compile."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import paddle_models as pm
from pdc.compiler import compile_bundle
from pdc.frontend import load_model
from pdc.ir.errors import PdcError
from pdc.ir.limits import human_bytes

F32 = TensorProto.FLOAT


def _model(nodes, x_shape, inits=(), opset=18):
    graph = helper.make_graph(nodes, "finding", [helper.make_tensor_value_info("x", F32, x_shape)],
                              [helper.make_tensor_value_info("y", F32, None)], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _const(name, values):
    return numpy_helper.from_array(np.asarray(values), name)


def _refusal(model, tmp_path) -> str:
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(PdcError) as e:
        load_model(str(path))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_flag_attribute_outside_0_and_1_is_refused(tmp_path):
    """ONNX Runtime reads keepdims=-1 as 0, pdc read it as 1: the outputs differed in rank."""
    m = _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum", keepdims=-1)], [2, 3],
               [_const("axes", np.array([1], np.int64))])
    assert _refusal(m, tmp_path).endswith("node 'sum' (ReduceSum): attribute 'keepdims' is -1, it must be 0 or 1")


def test_future_opset_and_ir_version_are_refused(tmp_path):
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [2], opset=99)
    assert "opset 99 is not supported" in _refusal(m, tmp_path)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [2])
    m.ir_version = 123
    assert "ONNX IR version 123 is newer than pdc reads" in _refusal(m, tmp_path)


def test_sizes_past_a_float_are_spelled_as_powers_of_two():
    assert human_bytes(10 ** 4000) == "over 2^13287 B"
    assert human_bytes(4 << 80) == "4,194,304 EiB"


@pytest.mark.parametrize("op,shape,attrs,inits", [
    ("Pad", [1, 1, 2, 2 ** 26], dict(mode="reflect"), [_const("p", np.array([0, 0, 1, 3, 0, 0, 1, 3], np.int64))]),
    ("Resize", [1, 1, 2 ** 26, 2], dict(mode="nearest"), [_const("s", np.array([1, 1, 2, 1], np.float32))]),
    ("Resize", [1, 1, 4, 2 ** 26], dict(mode="linear"), [_const("s", np.array([1, 1, 1, 2 ** -20], np.float32))]),
], ids=["pad-reflect", "resize-nearest", "resize-linear"])
def test_index_tables_past_the_limit_are_refused_quickly(tmp_path, op, shape, attrs, inits):
    inputs = ["x", "p"] if op == "Pad" else ["x", "", "s"]
    m = _model([helper.make_node(op, inputs, ["y"], name="big", **attrs)], shape, inits)
    t0 = time.perf_counter()
    with pytest.raises(PdcError, match="over pdc's limit"):
        compile_bundle(m, str(tmp_path / "b"), build=False)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("target", ["x86", "arm64"])
def test_depthwise_conv_over_a_huge_plane_compiles_quickly(tmp_path, target):
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])], [1, 2, 4, 2 ** 26],
               [_const("w", np.ones((2, 1, 3, 3), np.float32))])
    t0 = time.perf_counter()
    compile_bundle(m, str(tmp_path / "b"), build=False, target=target)
    assert time.perf_counter() - t0 < 5


@pytest.fixture(scope="module")
def lenet_pir(paddle_installed) -> str:
    return pm.ensure_models(["lenet"], "pir")["lenet"]


def _pir_variant(lenet_pir: str, tmp_path, edit) -> str:
    shutil.copy(f"{lenet_pir}/inference.pdiparams", tmp_path)
    doc = json.load(open(f"{lenet_pir}/inference.json"))
    edit(doc["program"]["regions"][0]["blocks"][0]["ops"])
    (tmp_path / "inference.json").write_text(json.dumps(doc))
    return str(tmp_path / "inference.json")


def _first(ops, tag):
    return next(op for op in ops if op.get("#") == tag)


@pytest.mark.parametrize("edit,message", [
    (lambda ops: _first(ops, "1.relu").pop("I"), "op #15 'relu': operand 'X' of relu is missing"),
    (lambda ops: _first(ops, "p")["O"].update({"%": []}), "a value id [] that is not an integer"),
    (lambda ops: _first(ops, "p")["O"]["TT"]["D"].__setitem__(0, {"#": []}), "element type '[]' is not supported"),
], ids=["missing-operand", "list-as-value-id", "list-as-element-type"])
def test_malformed_pir_json_is_refused(lenet_pir, tmp_path, edit, message):
    path = _pir_variant(lenet_pir, tmp_path, edit)
    with pytest.raises(PdcError) as e:
        load_model(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_int_where_the_schema_says_float_is_refused(tmp_path):
    """Gemm alpha written as INT: the onnx checker and ONNX Runtime refuse the model; pdc read it by value."""
    gemm = helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm", transB=1)
    gemm.attribute.append(helper.make_attribute("alpha", 2))  # an INT attribute
    model = _model([gemm], [2, 3], [_const("w", np.ones((4, 3), np.float32))])
    assert _refusal(model, tmp_path).endswith("node 'gemm' (Gemm): attribute 'alpha' must be FLOAT, got INT")
