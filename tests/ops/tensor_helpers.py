"""Helpers for the tensor-family op tests: one-node ONNX models run through pdc and an oracle
(ONNX Runtime, or ONNX's reference evaluator where ORT lacks the opset or differs from the spec)."""
import ml_dtypes
import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph, verify_graph
from oracles import typed_outputs
from tolerances import REDUCED, Tolerance

BF16 = np.dtype(ml_dtypes.bfloat16)
rng = np.random.default_rng(7)


def randn(*shape, dtype=np.float32):
    return np.asarray(rng.standard_normal(shape)).astype(dtype)


def make_model(op, inputs, attrs=None, opset=18, n_out=1, consts=()):
    """A one-node model. `inputs`: (name, array) pairs, '' for an omitted optional input; names in
    `consts` become initializers (so shape-like operands are constant), the rest graph inputs."""
    names = [n for n, _ in inputs]
    feeds = [(n, a) for n, a in inputs if n and n not in consts]
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds]
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in inputs if n in consts]
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    graph = helper.make_graph([node], "t", vis, [helper.make_tensor_value_info(o, 0, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return model, dict(feeds)


def run_pdc(model, feeds):
    g = import_onnx(model)
    verify_graph(g)
    res = run_graph(g, feeds)
    return [res[v.name] for v in g.outputs], g


def run_oracle(model, feeds, oracle="ort"):
    if oracle == "ort":
        sess = ort.InferenceSession(typed_outputs(model).SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def assert_same(got, want, tolerance: Tolerance = REDUCED):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        tolerance.check(g, w)


def check(op, inputs, attrs=None, opset=18, n_out=1, consts=(), oracle="ort", tolerance: Tolerance = REDUCED):
    """Runs the node through pdc and the oracle and compares; returns pdc's graph."""
    model, feeds = make_model(op, inputs, attrs, opset, n_out, consts)
    got, g = run_pdc(model, feeds)
    assert_same(got, run_oracle(model, feeds, oracle), tolerance)
    return g


def pdc_graph(op, inputs, attrs=None, opset=18, n_out=1, consts=()):
    model, _ = make_model(op, inputs, attrs, opset, n_out, consts)
    return import_onnx(model)
