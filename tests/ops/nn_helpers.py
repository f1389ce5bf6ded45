"""Helpers for the NN op tests: one-node ONNX models run through pdc and through ONNX Runtime
(or ONNX's reference evaluator where ORT lacks the opset)."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph, verify_graph
from tolerances import REDUCED, Tolerance

rng = np.random.default_rng(11)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def model_of(op, inputs, attrs=None, opset=18, n_out=1, consts=(), dims=None):
    """A one-node model. `inputs`: (name, array) pairs ('' = omitted optional input); names in
    `consts` become initializers. `dims` overrides declared input shapes (e.g. symbolic dims)."""
    dims = dims or {}
    feeds = {n: a for n, a in inputs if n and n not in consts}
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), dims.get(n, a.shape))
           for n, a in feeds.items()]
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in inputs if n in consts]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, [n for n, _ in inputs], outs, **(attrs or {}))
    graph = helper.make_graph([node], "t", vis, [helper.make_tensor_value_info(o, 0, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return model, feeds


def run_pdc(model, feeds):
    g = import_onnx(model)
    verify_graph(g)
    res = run_graph(g, feeds)
    return [res[v.name] for v in g.outputs]


def run_ort(model, feeds):
    inferred = onnx.shape_inference.infer_shapes(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for o, io in zip(m.graph.output, inferred.graph.output):  # ORT wants typed outputs
        o.CopyFrom(io)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_close(got, want, tolerance: Tolerance = REDUCED):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        tolerance.check(g, w)


def check(op, inputs, attrs=None, opset=18, n_out=1, consts=(), oracle="ort", tolerance: Tolerance = REDUCED,
          dims=None):
    """pdc vs the oracle on a one-node model."""
    model, feeds = model_of(op, inputs, attrs, opset, n_out, consts, dims)
    got = run_pdc(model, feeds)
    want = run_ort(model, feeds) if oracle == "ort" else ReferenceEvaluator(model).run(None, feeds)
    assert_close(got, want, tolerance)
    return got


def import_only(op, inputs, attrs=None, opset=18, n_out=1, consts=()):
    model, feeds = model_of(op, inputs, attrs, opset, n_out, consts)
    g = import_onnx(model)
    verify_graph(g)
    return g, feeds
