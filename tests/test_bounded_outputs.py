"""Outputs whose length depends on the data (NonZero, Unique, NonMaxSuppression), compiled with a
bound (passes/bound_outputs.py): against ONNX Runtime (ONNX's reference evaluator for the types
ONNX Runtime lacks) over their attributes on x86, a draw of each on aarch64 under qemu; the
manifest, the C header, the bounded graph on the interpreter and its IR text, and the refusals."""
from __future__ import annotations

import os
import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import pdc
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph
from pdc.ir.errors import PdcError
from pdc.ir.parser import parse_graph
from pdc.ir.printer import print_graph
from pdc.passes.bound_outputs import bound_outputs

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "kernels"))
from targets import options, require  # noqa: E402

ORT_UNIQUE = {np.float32, np.float16, np.float64, np.int8, np.int64}  # what its Unique kernel takes


def _model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "bounded", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _io(name, array):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)


def _check(model, feeds, target="x86", oracle="ort"):
    """Compiles model for target and compares every output, exactly, with the oracle's."""
    if oracle == "ort":
        want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    else:
        want = ReferenceEvaluator(model).run(None, feeds)
    module = pdc.compile(model, target=target, **options(target))
    got = module.run({k: v for k, v in feeds.items() if k in {s.name for s in module.inputs}})
    names = [o.name for o in model.graph.output]
    assert set(got) == set(names)
    for name, w in zip(names, want):
        assert got[name].dtype == w.dtype and got[name].shape == w.shape, (name, got[name], w)
        np.testing.assert_array_equal(got[name], w, err_msg=name)
    return module


# ---- Unique -----------------------------------------------------------------------------------------
def _unique_draws():
    rng = np.random.default_rng(1)
    shapes = [(7,), (4, 3), (2, 5, 3), (1,)]
    dtypes = [np.float32, np.int64, np.float16, np.int8, np.float64, np.int32, np.uint8]
    draws = []
    for k in range(18):
        shape = shapes[k % len(shapes)]
        axes = [None] + list(range(len(shape))) + [-1]
        draws.append((shape, axes[k % len(axes)], k % 2, dtypes[k % len(dtypes)], int(rng.integers(1 << 30))))
    return draws


@pytest.mark.parametrize("shape,axis,sorted_,dtype,seed", _unique_draws())
def test_unique_matches_the_oracle(shape, axis, sorted_, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, shape).astype(dtype)  # few values: many repeats
    if x.ndim > 1:
        x[-1] = x[0]  # a repeated slice along the first axis
    attrs = {"sorted": sorted_, **({} if axis is None else {"axis": axis})}
    outs = ["y", "indices", "inverse", "counts"]
    types = [helper.np_dtype_to_tensor_dtype(x.dtype)] + [TensorProto.INT64] * 3
    model = _model([helper.make_node("Unique", ["x"], outs, **attrs)], [_io("x", x)],
                   [helper.make_tensor_value_info(n, t, None) for n, t in zip(outs, types)])
    _check(model, {"x": x}, oracle="ort" if dtype in ORT_UNIQUE else "reference")


def test_unique_of_floats_with_nan_and_only_y():
    """NaN after every number, all NaNs one value, as ONNX's reference (NumPy) has it; ONNX Runtime
    drops them (its comparisons are undefined on NaN). A node with its first output alone."""
    x = np.array([2.0, np.nan, -1.0, 2.0, np.nan, 0.5, -1.0], np.float32)
    model = _model([helper.make_node("Unique", ["x"], ["y"])], [_io("x", x)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    _check(model, {"x": x}, oracle="reference")


# ---- NonMaxSuppression ------------------------------------------------------------------------------
def _nms_draws():
    draws = []
    for k in range(16):
        draws.append(dict(seed=k, nb=1 + k % 2, nc=(1, 3)[k // 2 % 2], n=(1, 6, 25, 12)[k % 4], center=k // 4 % 2,
                          iou=(0.0, 0.5, 1.0, 0.3)[k % 4], score=(None, 0.25)[k // 8],
                          limit=("const", "input", "absent", "const0")[k // 3 % 4]))
    return draws


@pytest.mark.parametrize("draw", _nms_draws(), ids=lambda d: "-".join(f"{k}{v}" for k, v in d.items()))
def test_non_max_suppression_matches_onnxruntime(draw):
    _check(*_nms_case(**draw))


def _nms_case(seed, nb, nc, n, center, iou, score, limit):
    rng = np.random.default_rng(seed)
    if center:
        boxes = np.concatenate([rng.uniform(0, 8, (nb, n, 2)), rng.uniform(0, 4, (nb, n, 2))], -1)
    else:  # corners in either order, and a few boxes without area
        a, b = rng.uniform(0, 8, (nb, n, 2)), rng.uniform(0, 8, (nb, n, 2))
        boxes = np.concatenate([a, np.where(rng.random((nb, n, 1)) < 0.15, a, b)], -1)
    scores = np.round(rng.random((nb, nc, n)), 1)  # rounded: ties, broken by the lower index
    feeds = {"boxes": boxes.astype(np.float32), "scores": scores.astype(np.float32),
             "iou": np.array([iou], np.float32)}
    names = ["boxes", "scores", "limit", "iou"]
    inits = []
    if limit == "input":
        feeds["limit"] = np.array([3], np.int64)
    elif limit == "absent":
        names[2] = ""
    else:
        inits.append(numpy_helper.from_array(np.array([0 if limit == "const0" else 4], np.int64), "limit"))
    if score is not None:
        feeds["score"] = np.array([score], np.float32)
        names.append("score")
    node = helper.make_node("NonMaxSuppression", names, ["selected"], center_point_box=center)
    inputs = [_io(k, v) for k, v in feeds.items()]
    model = _model([node], inputs, [helper.make_tensor_value_info("selected", TensorProto.INT64, None)], inits)
    return model, feeds


# ---- NonZero, aarch64, the bundle ---------------------------------------------------------------------
def test_non_zero_matches_onnxruntime_and_the_header_names_the_length(tmp_path):
    x = (np.random.default_rng(3).random((3, 5)) > 0.6).astype(np.float32)
    model = _model([helper.make_node("NonZero", ["x"], ["y"])], [_io("x", x)],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    module = _check(model, {"x": x})
    assert module.manifest["outputs"] == [
        {"name": "y", "dtype": "int64", "shape": [2, 15], "length": "y_length", "length_axis": 1},
        {"name": "y_length", "dtype": "int64", "shape": []}]
    header = open(os.path.join(module.folder, f"{module.name}.h")).read()
    assert ("/*   its length depends on the data: the first y_length (an output) entries of axis 1 hold it, "
            "zeros follow */") in header
    assert [o.name for o in module.signature().outputs] == ["y"]


def test_bounded_outputs_on_aarch64():
    require("arm64")
    model, feeds = _nms_case(seed=5, nb=2, nc=3, n=12, center=0, iou=0.4, score=0.2, limit="input")
    _check(model, feeds, target="arm64")
    x = np.array([[3, 1, 3], [0, 1, 1]], np.int64)
    model = _model([helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], sorted=0)], [_io("x", x)],
                   [helper.make_tensor_value_info(n, TensorProto.INT64, None) for n in ("y", "i", "inv", "c")])
    _check(model, {"x": x}, target="arm64")


def test_a_bounded_graph_runs_on_the_interpreter_and_prints():
    """bound_outputs gives the node its bound and length output: the interpreter pads to the bound
    and gives the length; the IR text shows both and parses back to the same text."""
    x = np.array([0.0, 2.0, 0.0, 5.0], np.float32)
    model = _model([helper.make_node("NonZero", ["x"], ["y"])], [_io("x", x)],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    graph = bound_outputs(import_onnx(model))
    text = print_graph(graph)
    assert "  %y, %y_length = non_zero(%x) {bound=4} : i64[1,4], i64[]\n" in text, text
    assert print_graph(parse_graph(text)) == text
    out = run_graph(graph, {"x": x})
    np.testing.assert_array_equal(out["y"], [[1, 3, 0, 0]])
    assert out["y_length"] == 2


def test_a_bounded_output_read_by_another_node_is_refused():
    x = np.ones((2, 3), np.float32)
    model = _model([helper.make_node("NonZero", ["x"], ["y"]), helper.make_node("Transpose", ["y"], ["t"])],
                   [_io("x", x)], [helper.make_tensor_value_info("t", TensorProto.INT64, None)])
    with pytest.raises(PdcError) as e:
        pdc.compile(model, target="x86")
    assert str(e.value) == ("node non_zero -> %y: its output length depends on the data; compiled code takes 'y' "
                            "only as a model output that no other node reads (its length is known at run time only)")


@pytest.mark.parametrize("shape,axis,largest,k", [((3, 7), -1, 1, 4), ((3, 7), 0, 0, 2), ((2, 5, 3), 1, 1, 5),
                                                  ((6,), 0, 0, 0), ((4, 4), 1, 1, 1)])
def test_top_k_with_k_known_at_run_time(shape, axis, largest, k):
    """K an input of the model: the bound is the axis; K = 0 and K = the whole axis included; ties
    (rounded values) keep the lower index first."""
    x = np.round(np.random.default_rng(k).standard_normal(shape), 1).astype(np.float32)
    kk = np.array([k], np.int64)
    model = _model([helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis, largest=largest)],
                   [_io("x", x), _io("k", kk)],
                   [helper.make_tensor_value_info("values", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("indices", TensorProto.INT64, None)])
    _check(model, {"x": x, "k": kk})


@pytest.mark.usefixtures("opencl_platform")
def test_bounded_outputs_on_opencl():
    """NonZero runs as a device kernel, NMS on the host: the manifest follows the placement's copies."""
    x = (np.random.default_rng(4).random((3, 5)) > 0.6).astype(np.float32)
    model = _model([helper.make_node("NonZero", ["x"], ["y"])], [_io("x", x)],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    module = _check(model, {"x": x}, target="opencl")
    assert module.manifest["outputs"][0]["length"] == "y_length"
    _check(*_nms_case(seed=2, nb=1, nc=2, n=9, center=1, iou=0.5, score=None, limit="const"), target="opencl")


def test_values_outside_what_the_op_allows_fail_the_run():
    """TopK's K beyond the axis and an IoU threshold outside [0, 1] make the run fail
    (PDC_ERR_VALUE), as ONNX Runtime refuses them."""
    x = np.zeros((2, 5), np.float32)
    model = _model([helper.make_node("TopK", ["x", "k"], ["v", "i"])], [_io("x", x), _io("k", np.zeros(1, np.int64))],
                   [helper.make_tensor_value_info(n, t, None) for n, t in (("v", TensorProto.FLOAT),
                                                                          ("i", TensorProto.INT64))])
    module = pdc.compile(model, target="x86")
    assert module.run({"x": x, "k": np.array([5], np.int64)})["v"].shape == (2, 5)
    for k in (6, -1):
        with pytest.raises(PdcError, match=r"an input holds a value outside what its op allows \(status 9\)"):
            module.run({"x": x, "k": np.array([k], np.int64)})
    model, feeds = _nms_case(seed=1, nb=1, nc=1, n=4, center=0, iou=0.5, score=None, limit="const")
    module = pdc.compile(model, target="x86")
    with pytest.raises(PdcError, match=r"\(status 9\)"):
        module.run({**feeds, "iou": np.array([1.5], np.float32)})
