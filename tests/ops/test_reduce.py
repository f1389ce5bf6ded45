"""Reductions (Reduce*, ArgMax/ArgMin, TopK) against ONNX Runtime, across opset forms."""
import numpy as np
import pytest

from onnx_cases import check as _check, one_node as _one_node
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import PdcError
from tolerances import REDUCED, Tolerance


def one_node(op, inputs, attrs=None, opset=18, n_out=1, consts=()):
    return _one_node(op, inputs, attrs, opset, n_out, consts)


def check(model, feeds, tolerance: Tolerance = REDUCED):
    _check(model, feeds, tolerance)


rng = np.random.default_rng(3)


REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


def _data(op, shape, dtype=np.float32):
    x = rng.uniform(0.5, 2.0, shape) if op == "ReduceLogSum" else rng.standard_normal(shape)
    return x.astype(dtype)


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes", [None, [1], [-1, 0]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_input(op, axes, keepdims):
    opset = 13 if op == "ReduceSum" else 18
    inputs = [("x", _data(op, (3, 4, 5)))]
    if axes is not None:
        inputs.append(("axes", np.array(axes, np.int64)))
    check(*one_node(op, inputs, {"keepdims": keepdims}, opset=opset, consts=("axes",)))


@pytest.mark.parametrize("op", REDUCE)
def test_reduce_axes_attribute_opset11(op):
    x = _data(op, (2, 3, 4))
    check(*one_node(op, [("x", x)], {"axes": [0, -1], "keepdims": 0}, opset=11))
    check(*one_node(op, [("x", x)], {}, opset=11))


@pytest.mark.parametrize("op", REDUCE)
def test_reduce_noop_with_empty_axes(op):
    x = _data(op, (2, 3))
    # ReduceSumSquare squares, ReduceLogSum takes the log, ...: the reduction itself is the identity
    check(*one_node(op, [("x", x), ("axes", np.zeros(0, np.int64))], {"noop_with_empty_axes": 1},
                    opset=18, consts=("axes",)))


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceLogSumExp"])
def test_reduce_empty_set(op):
    x = np.zeros((2, 0, 3), np.float32)
    check(*one_node(op, [("x", x), ("axes", np.array([1], np.int64))], {"keepdims": 1}, opset=18, consts=("axes",)))


def test_reduce_runtime_axes_and_int_types():
    x = rng.integers(-3, 4, (3, 4, 5)).astype(np.int32)  # small: ReduceProd stays in range
    for op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceMean"):
        model, feeds = one_node(op, [("x", x), ("axes", np.array([2, 0], np.int64))], {"keepdims": 0})
        check(model, feeds)  # axes is a graph input: shapes are inferred as "?"
    check(*one_node("ReduceMax", [("x", rng.random((3, 4)) > 0.5)], {"keepdims": 0}, opset=20))
    check(*one_node("ReduceMean", [("x", _data("ReduceMean", (4, 6), np.float16))], {}))


def test_reduce_errors():
    x = _data("ReduceSum", (2, 3))
    with pytest.raises(PdcError, match="name an axis twice"):
        import_onnx(one_node("ReduceMean", [("x", x), ("a", np.array([1, -1], np.int64))], consts=("a",))[0])
    with pytest.raises(PdcError, match="out of range"):
        import_onnx(one_node("ReduceMean", [("x", x)], {"axes": [2]}, opset=13)[0])


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": -1, "keepdims": 0}, {"axis": 1, "select_last_index": 1},
                                   {"axis": 0, "keepdims": 0, "select_last_index": 1}])
def test_arg_reductions(op, attrs):
    x = rng.integers(0, 3, (3, 4, 5)).astype(np.float32)  # many ties
    check(*one_node(op, [("x", x)], attrs, opset=13))


def test_arg_old_opset():
    check(*one_node("ArgMax", [("x", rng.standard_normal((3, 4)).astype(np.float32))], {"axis": 1}, opset=7))


@pytest.mark.parametrize("attrs", [{}, {"largest": 0}, {"axis": 0}, {"axis": -2, "largest": 0, "sorted": 1}])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
def test_topk(attrs, dtype):
    x = rng.integers(0, 5, (4, 6)).astype(dtype)  # ties: lower index first
    check(*one_node("TopK", [("x", x), ("k", np.array([3], np.int64))], attrs, opset=11, n_out=2, consts=("k",)))


def test_topk_old_opsets():
    x = rng.standard_normal((3, 7)).astype(np.float32)
    check(*one_node("TopK", [("x", x)], {"k": 2}, opset=9, n_out=2))
    check(*one_node("TopK", [("x", x), ("k", np.array([4], np.int64))], {"axis": 1}, opset=10, n_out=2))
    # K fed at run time: the output's dim is unknown until then
    check(*one_node("TopK", [("x", x), ("k", np.array([5], np.int64))], {}, opset=11, n_out=2))


def test_topk_k_too_large():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(PdcError, match="exceeds"):
        import_onnx(one_node("TopK", [("x", x), ("k", np.array([5], np.int64))], n_out=2, consts=("k",))[0])
