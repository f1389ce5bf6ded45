"""Index-driven ops (gather*, scatter*, one_hot, non_zero, compress, reverse_sequence) against
ONNX Runtime, plus the clear-error cases."""
import numpy as np
import pytest

from pdc.ir.errors import PdcError, UnsupportedError, VerifyError
from tensor_helpers import check, make_model, pdc_graph, randn, run_pdc

I64 = np.int64


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("idx_dt", [np.int32, np.int64])
def test_gather(axis, idx_dt):
    idx = np.array([[0, -1], [2, 1]], idx_dt)
    check("Gather", [("x", randn(3, 4, 5)), ("i", idx)], {"axis": axis})
    check("Gather", [("x", randn(3, 4, 5)), ("i", np.array(-2, idx_dt))], {"axis": axis})


def test_gather_out_of_range():
    model, feeds = make_model("Gather", [("x", randn(3, 4)), ("i", np.array([3], I64))])
    with pytest.raises(PdcError, match="index out of range"):
        run_pdc(model, feeds)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(axis):
    idx = np.array([[0, -1, 1], [1, 0, -2]], I64)
    check("GatherElements", [("x", randn(3, 3)), ("i", idx)], {"axis": axis})


@pytest.mark.parametrize("b,xs,idx", [
    (0, (2, 3, 4), [[0, 1], [1, -1]]),
    (0, (2, 3, 4), [[[1]], [[0]]]),
    (0, (2, 3), [[0, 0], [1, 2], [1, -1]]),
    (1, (2, 3, 4), [[[1], [0]], [[2], [2]]]),
    (1, (2, 3, 4), [[1, 3], [0, 0]]),
    (2, (2, 3, 4, 5), np.zeros((2, 3, 2, 1), I64)),
])
def test_gather_nd(b, xs, idx):
    check("GatherND", [("x", randn(*xs)), ("i", np.array(idx, I64))], {"batch_dims": b})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, -1])
def test_scatter_elements(reduction, axis):
    idx = np.array([[1, 0, -1], [0, 2, 1]], I64)  # no duplicates along either axis
    check("ScatterElements", [("x", randn(3, 3)), ("i", idx), ("u", randn(2, 3))],
          {"axis": axis, "reduction": reduction})


@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
def test_scatter_elements_duplicates(reduction):
    idx = np.array([[1, 1, 0, 1]], I64)
    check("ScatterElements", [("x", randn(2, 4)), ("i", idx), ("u", randn(1, 4))],
          {"axis": 1, "reduction": reduction})


@pytest.mark.parametrize("opset", [9, 10])
def test_scatter_old(opset):
    check("Scatter", [("x", randn(3, 3)), ("i", np.array([[1, 0, 2]], I64)), ("u", randn(1, 3))],
          {"axis": 0}, opset=opset)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd(reduction):
    check("ScatterND", [("x", randn(4, 3, 2)), ("i", np.array([[0], [2]], I64)), ("u", randn(2, 3, 2))],
          {"reduction": reduction})
    check("ScatterND", [("x", randn(4, 3)), ("i", np.array([[0, 1], [3, -1]], I64)), ("u", randn(2))],
          {"reduction": reduction})


def test_scatter_nd_duplicates_add():
    check("ScatterND", [("x", randn(4)), ("i", np.array([[1], [1], [3]], I64)), ("u", randn(3))],
          {"reduction": "add"})


def test_scatter_errors():
    with pytest.raises(UnsupportedError, match="reduction 'avg' is not supported"):
        pdc_graph("ScatterND", [("x", randn(4)), ("i", np.array([[1]], I64)), ("u", randn(1))],
                  {"reduction": "avg"})
    with pytest.raises(VerifyError, match="updates .* must have shape"):
        pdc_graph("ScatterND", [("x", randn(4, 3)), ("i", np.array([[1]], I64)), ("u", randn(1))])


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("idx_dt", [np.int64, np.float32])
def test_one_hot(axis, idx_dt):
    idx = np.array([[0, 3, -1], [5, -4, 2]], idx_dt)  # 5 and -5 are out of range for depth 4
    # type combinations ONNX Runtime implements: (indices, values, depth)
    check("OneHot", [("i", idx), ("d", np.array(4, np.float32)), ("v", np.array([0.5, 2], np.float32))],
          {"axis": axis}, consts=("d",))
    if idx_dt == np.int64:
        check("OneHot", [("i", idx), ("d", np.array([4], np.int64)), ("v", np.array([1, 3], np.int64))],
              {"axis": axis})


@pytest.mark.parametrize("x", [np.array([[1, 0], [0, 3]], np.float32), np.array([0, 0, 1], np.int32),
                               np.array([[[True], [False]]]), np.zeros((2, 3), np.float32)])
def test_non_zero(x):
    check("NonZero", [("x", x)])


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_compress(axis):
    cond = np.array([True, False, True])
    check("Compress", [("x", randn(3, 4)), ("c", cond)], {} if axis is None else {"axis": axis})
    check("Compress", [("x", randn(3, 4)), ("c", cond[:2])], {} if axis is None else {"axis": axis},
          consts=("c",))


@pytest.mark.parametrize("batch_axis,time_axis", [(1, 0), (0, 1)])
def test_reverse_sequence(batch_axis, time_axis):
    x = randn(4, 4, 2)
    check("ReverseSequence", [("x", x), ("l", np.array([4, 1, 0, 2], I64))],
          {"batch_axis": batch_axis, "time_axis": time_axis})


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("sorted_", [0, 1])
def test_unique(axis, sorted_):
    x = np.array([[2, 1, 2], [0, 1, 0], [2, 1, 2], [3, 3, 3]], np.float32)
    attrs = {"sorted": sorted_} | ({} if axis is None else {"axis": axis})
    check("Unique", [("x", x)], attrs, n_out=4)
    check("Unique", [("x", x.astype(np.int64))], attrs, n_out=1)
