"""One-node ONNX models for op tests, and the check of pdc's reference against ONNX Runtime."""
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from oracles import onnxruntime_saturates
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph, verify_graph
from tolerances import REDUCED, Tolerance


def one_node(op, inputs, attrs=None, opset=18, n_out=1, consts=()):
    """A one-node model; `inputs` are (name, array) pairs ('' = omitted), names in `consts` are initializers."""
    feeds = {n: a for n, a in inputs if n and n not in consts}
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()]
    inits = [numpy_helper.from_array(a, n) for n, a in inputs if n in consts]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, [n for n, _ in inputs], outs, **(attrs or {}))
    graph = helper.make_graph([node], "t", vis, [helper.make_tensor_value_info(o, 0, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    inferred = onnx.shape_inference.infer_shapes(model)
    for o, io in zip(model.graph.output, inferred.graph.output):  # ORT wants typed outputs
        o.CopyFrom(io)
    return model, feeds


def check(model, feeds, tolerance: Tolerance = REDUCED):
    """pdc's reference interpreter agrees with ONNX Runtime on every output (dtype, shape, values), or with
    ONNX's reference where ONNX Runtime saturates products on this CPU (oracles.onnxruntime_saturates)."""
    g = import_onnx(model)
    verify_graph(g)
    res = run_graph(g, feeds)
    got = [res[v.name] for v in g.outputs]
    if onnxruntime_saturates(model):
        want = ReferenceEvaluator(model).run(None, feeds)
    else:
        want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        tolerance.check(a, b)
