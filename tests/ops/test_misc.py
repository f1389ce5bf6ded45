"""Einsum, Det, NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against ONNX Runtime."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from pdc.frontend.onnx_import import import_onnx
from pdc.ir import PdcError, run_graph, verify_graph
from tolerances import ACCUMULATED, KERNEL, REDUCED, Tolerance

rng = np.random.default_rng(5)


def one_node(op, arrays, attrs=None, opset=18):
    feeds = {f"x{i}": a for i, a in enumerate(arrays)}
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()]
    node = helper.make_node(op, list(feeds), ["y"], **(attrs or {}))
    model = helper.make_model(helper.make_graph([node], "t", vis, [helper.make_tensor_value_info("y", 0, None)]),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    # ORT wants a typed output
    model.graph.output[0].type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(arrays[0].dtype)
    return model, feeds


def check(model, feeds, tolerance: Tolerance = KERNEL):
    g = import_onnx(model)
    verify_graph(g)
    got = run_graph(g, feeds)[g.outputs[0].name]
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    tolerance.check(got, want)
    # the inferred static shape agrees with the result
    assert g.outputs[0].type.shape == got.shape


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (1, 3, 4, 5)]),  # broadcast batch dims
    ("ii->i", [(4, 4)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("ij->", [(3, 4)]),
    ("i,i", [(5,), (5,)]),  # implicit: scalar
    ("ij,jk", [(3, 4), (4, 5)]),  # implicit: ik
    ("ba", [(3, 4)]),  # implicit output sorts the labels: a transpose
    ("bhid, bhjd -> bhij", [(1, 2, 3, 4), (1, 2, 5, 4)]),  # spaces
    ("i,j->ij", [(3,), (4,)]),
    ("ijk,ikl,ilm->im", [(2, 3, 4), (2, 4, 5), (2, 5, 3)]),
    ("...j->...", [(2, 3, 4)]),
])
def test_einsum(equation, shapes):
    check(*one_node("Einsum", [randn(*s) for s in shapes], {"equation": equation}, opset=12))


def test_einsum_types():
    a, b = rng.integers(-5, 5, (3, 4)).astype(np.int32), rng.integers(-5, 5, (4, 2)).astype(np.int32)
    check(*one_node("Einsum", [a, b], {"equation": "ij,jk->ik"}))
    check(*one_node("Einsum", [randn(3, 4), randn(4, 2)], {"equation": "ij,jk->ik"}))
    check(*one_node("Einsum", [randn(3, 4, dtype=np.float64)], {"equation": "ij->ji"}))


@pytest.mark.parametrize("equation,shapes,match", [
    ("ij,jk->ik", [(3, 4)], "1 inputs"),
    ("ij,jk->ik", [(3, 4), (5, 6)], "sizes 4 and 5"),
    ("ij->iz", [(3, 4)], "appear in no input"),
    ("ij->ii", [(3, 4)], "repeats a label"),
    ("i1->i", [(3, 4)], "must be letters"),
    ("ijk->i", [(3, 4)], "3 labels for an input of rank 2"),
])
def test_einsum_errors(equation, shapes, match):
    model, _ = one_node("Einsum", [randn(*s) for s in shapes], {"equation": equation})
    with pytest.raises(PdcError, match=match):
        import_onnx(model)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (2, 1, 2, 2)])
def test_det(shape):
    check(*one_node("Det", [randn(*shape)], opset=11), ACCUMULATED)  # elimination: pivots amplify rounding


def test_det_rejects_non_square():
    with pytest.raises(PdcError, match="square"):
        import_onnx(one_node("Det", [randn(3, 4)])[0])


def _loss_model(op, x, target, weight, attrs, n_out):
    arrays = [x, target] + ([weight] if weight is not None else [])
    model, feeds = one_node(op, arrays, attrs, opset=13)
    if n_out == 2:
        model.graph.node[0].output.append("log_prob")
        model.graph.output.append(helper.make_tensor_value_info("log_prob", helper.np_dtype_to_tensor_dtype(x.dtype),
                                                                None))
    return model, feeds


@pytest.mark.parametrize("op,n_out", [("NegativeLogLikelihoodLoss", 1), ("SoftmaxCrossEntropyLoss", 1),
                                      ("SoftmaxCrossEntropyLoss", 2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape,weighted,ignore", [((4, 5), False, None), ((3, 5, 2, 2), True, None),
                                                   ((4, 5, 3), True, 1), ((4, 5), False, -1)])
def test_losses(op, n_out, reduction, shape, weighted, ignore):
    x = randn(*shape)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:]).astype(np.int64)
    if ignore == -1:
        target[0] = -1
    weight = rng.uniform(0.2, 2, shape[1]).astype(np.float32) if weighted else None
    attrs = {"reduction": reduction}
    if ignore is not None:
        attrs["ignore_index"] = ignore
    model, feeds = _loss_model(op, x, target, weight, attrs, n_out)
    g = import_onnx(model)
    verify_graph(g)
    res = run_graph(g, feeds)
    got = [res[v.name] for v in g.outputs]
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        REDUCED.check(a, b)


def test_loss_errors():
    with pytest.raises(PdcError, match="reduction 'avg'"):
        import_onnx(one_node("NegativeLogLikelihoodLoss", [randn(2, 3), np.zeros(2, np.int64)],
                             {"reduction": "avg"})[0])
    with pytest.raises(PdcError, match="must have rank 1"):
        import_onnx(one_node("NegativeLogLikelihoodLoss", [randn(2, 3), np.zeros((2, 3), np.int64)])[0])
