"""Oracles that are not pdc's own code, for checking compiled and interpreted results.

`node_by_node(model, feeds)` computes every value of an ONNX model one node at a time: ONNX Runtime
where it runs the node; where it cannot (a dtype or op it lacks: float64 Det, bfloat16 pools,
mixed quantized types...), ONNX Runtime on float32 copies of half-precision inputs, then ONNX's own
reference evaluator (`onnx.reference`), fed float64 copies of half-precision inputs so that its NumPy
arithmetic is not done in the half type; last, for the few spec-legal nodes neither handles (LRN of
rank other than 4, GlobalLpPool / MeanVarianceNormalization in float64, float64 LayerNormalization
statistics), float64 NumPy written here. Results computed wider than the output's dtype are compared
unrounded (the tolerance is the output dtype's). A test may route nodes to the reference evaluator
(where ONNX Runtime departs from the spec) or leave outputs out (where both oracles do); each such
choice is the test's to explain.

`check_outputs` then compares a run's outputs with the oracle's, element by element, by a
tolerance from tolerances.py; `check_against_oracles` does both, with the test's routing.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Iterable, Optional

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from pdc.targets.x86 import host_flags
from tolerances import Tolerance

HALF_TYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
ONNXRUNTIME, REFERENCE = "onnxruntime", "onnx-reference"


@dataclass
class Expected:
    """An oracle's value of one tensor. `value` is float64 where the oracle computed a half-precision
    result in float64 (`widened`); `typed` is the value in the tensor's own dtype, which later nodes read."""
    value: np.ndarray
    typed: np.ndarray
    oracle: str
    widened: bool = False
    op: str = ""


# ONNX Runtime's x86 kernels for products with an int8 second operand (uint8 x int8, and int8 x int8
# shifted to it) add pairs of products in int16 with saturation (vpmaddubsw) on a CPU without VNNI:
# 217 * -59 + 163 * -124 gives -32768, not -33015. The spec's sums are exact, so there ONNX's reference
# evaluator is the oracle of these ops.
_SECOND_OPERAND = {"MatMulInteger": 1, "ConvInteger": 1, "QLinearMatMul": 3, "QLinearConv": 3}
_ORT_SATURATES = platform.machine() in ("x86_64", "AMD64") and not {"avx512_vnni", "avx_vnni"} & host_flags()


def onnxruntime_saturates(model: onnx.ModelProto) -> bool:
    """Whether ONNX Runtime on this CPU may saturate a product of one of the model's nodes."""
    if not _ORT_SATURATES:
        return False
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return any(types.get(n.input[_SECOND_OPERAND[n.op_type]]) == onnx.TensorProto.INT8
               for n in g.node if n.op_type in _SECOND_OPERAND and n.domain in ("", "ai.onnx"))


class NoOracle(AssertionError):
    """Neither ONNX Runtime nor ONNX's reference evaluator computes this node."""


def typed_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model whose graph outputs carry the types ONNX's shape inference gives them."""
    inferred = onnx.shape_inference.infer_shapes(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for o, io in zip(m.graph.output, inferred.graph.output):
        o.CopyFrom(io)
    return m


def onnxruntime_run(model: onnx.ModelProto, feeds: dict, names: Optional[list] = None) -> list:
    """The model's outputs from ONNX Runtime's CPU provider (outputs typed by shape inference)."""
    sess = ort.InferenceSession(typed_outputs(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, feeds)


def _one_node(model: onnx.ModelProto, node: onnx.NodeProto, arrays: dict,
              consts: set) -> tuple[onnx.ModelProto, dict]:
    """A model of the single node: its inputs are graph inputs (initializers where the source has them)."""
    inputs, inits, feeds = [], [], {}
    for name in dict.fromkeys(i for i in node.input if i):
        a = np.asarray(arrays[name])
        if name in consts:
            inits.append(numpy_helper.from_array(a, name))
        else:
            inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape))
            feeds[name] = a
    outs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
    graph = helper.make_graph([node], "node", inputs, outs, inits)
    m = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return typed_outputs(m), feeds


def _declared_dtypes(m: onnx.ModelProto) -> dict:
    out = {}
    for o in m.graph.output:
        elem = o.type.tensor_type.elem_type
        if elem:
            out[o.name] = helper.tensor_dtype_to_np_dtype(elem)
    return out


def _run_onnxruntime(m: onnx.ModelProto, feeds: dict) -> dict:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in m.graph.output]
    return dict(zip(names, sess.run(names, feeds)))


def _widenable(node_arrays: dict, declared: dict) -> bool:
    """Half-precision inputs and only float outputs: the node may be computed in a wider float
    (a quantizing op's rounding in the half type is part of its meaning, so not those)."""
    return any(a.dtype in HALF_TYPES for a in node_arrays.values()) and bool(declared) and \
        all(np.dtype(d).kind == "f" or np.dtype(d) in HALF_TYPES for d in declared.values())


def _wide_model(m: onnx.ModelProto, node: onnx.NodeProto, arrays: dict, dtype) -> tuple[onnx.ModelProto, dict]:
    """The node alone with its half-precision inputs (all as graph inputs) cast to `dtype`."""
    feeds = {}
    for n in dict.fromkeys(i for i in node.input if i):
        a = np.asarray(arrays[n])
        feeds[n] = a.astype(dtype) if a.dtype in HALF_TYPES else a
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in feeds.items()]
    outs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
    graph = helper.make_graph([node], "node", vis, outs)
    return typed_outputs(helper.make_model(graph, opset_imports=m.opset_import, ir_version=m.ir_version)), feeds


def _run_reference(m: onnx.ModelProto, node: onnx.NodeProto, arrays: dict, widen: bool) -> dict:
    """ONNX's reference evaluator on the node (half-precision inputs in float64 when `widen`)."""
    if widen:
        wide, feeds = _wide_model(m, node, arrays, np.float64)
    else:
        names = list(dict.fromkeys(i for i in node.input if i))
        feeds = {n: np.asarray(arrays[n]) for n in names}
        vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in feeds.items()]
        outs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
        wide = helper.make_model(helper.make_graph([node], "node", vis, outs), opset_imports=m.opset_import,
                                 ir_version=m.ir_version)
    results = ReferenceEvaluator(wide).run(None, feeds)
    return dict(zip([o for o in node.output if o], results))


def _lrn(x, size, alpha=float(np.float32(1e-4)), beta=0.75, bias=1.0):
    """LRN on (N, C, D1, ...) of any rank (ONNX's reference takes 4-D only); the default alpha is
    ONNX's float32 attribute value."""
    sq = np.square(x)
    out = np.empty_like(x)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    for c in range(x.shape[1]):
        window = sq[:, max(0, c - lo):min(x.shape[1], c + hi + 1)].sum(axis=1)
        out[:, c] = x[:, c] / (bias + alpha / size * window) ** beta
    return out


def _global_lp_pool(x, p=2):
    axes = tuple(range(2, x.ndim))
    return np.power(np.sum(np.power(np.abs(x), p), axis=axes, keepdims=True), 1.0 / p)


def _layer_norm(x, scale, bias=None, axis=-1, epsilon=1e-5, stash_type=1):
    """LayerNormalization in float64, whatever stash_type asks (float64 is at least as wide)."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(np.square(x - mean).mean(axis=axes, keepdims=True) + epsilon)
    y = (x - mean) * inv_std * scale + (0.0 if bias is None else bias)
    return y, mean, inv_std


def _mean_variance_normalization(x, axes=(0, 2, 3)):
    """The spec's function body: (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9)."""
    axes = tuple(axes)
    mean = x.mean(axis=axes, keepdims=True)
    std = np.sqrt(np.square(x).mean(axis=axes, keepdims=True) - np.square(mean))
    return (x - mean) / (std + 1e-9)


# float64 NumPy for spec-legal nodes neither ONNX Runtime nor ONNX's reference evaluator computes:
# LRN of rank other than 4, GlobalLpPool and MeanVarianceNormalization in dtypes ONNX Runtime lacks
# (ONNX's reference expands MVN with float32 constants), LayerNormalization with float64 statistics
NUMPY_ORACLES = {"LRN": _lrn, "GlobalLpPool": _global_lp_pool, "LayerNormalization": _layer_norm,
                 "MeanVarianceNormalization": _mean_variance_normalization}
# ops whose ONNX reference is wrong, so NumPy goes first where ONNX Runtime cannot run the node: LRN's
# reference (onnx 1.23) sums each channel's window over the batch axis's range instead of the channels'
REFERENCE_DEPARTS = {"LRN"}


def _run_numpy(node: onnx.NodeProto, arrays: dict) -> dict:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    ins = [None if not i else np.asarray(arrays[i]) for i in node.input]
    ins = [a.astype(np.float64) if a is not None and (a.dtype.kind == "f" or a.dtype in HALF_TYPES) else a
           for a in ins]
    results = NUMPY_ORACLES[node.op_type](*ins, **attrs)
    results = results if isinstance(results, tuple) else (results,)
    return {name: r for name, r in zip(node.output, results) if name}


def _oracle_attempts(model, node, arrays, one, declared, force_reference: bool):
    """(label, widened, thunk) in the order they are tried: ONNX Runtime as is; ONNX Runtime on
    float32 copies of half-precision inputs (the half type is what it lacks); ONNX's reference
    evaluator, on float64 copies of half-precision inputs."""
    widen = _widenable({i: np.asarray(arrays[i]) for i in node.input if i}, declared)
    if not force_reference and not onnxruntime_saturates(one[0]):
        yield ONNXRUNTIME, False, lambda: _run_onnxruntime(*one)
        if widen:
            yield ONNXRUNTIME + " in float32", True, lambda: _run_onnxruntime(*_wide_model(model, node, arrays,
                                                                                           np.float32))
    numpy = node.op_type in NUMPY_ORACLES and node.domain in ("", "ai.onnx")
    if numpy and node.op_type in REFERENCE_DEPARTS:
        yield "float64 NumPy", True, lambda: _run_numpy(node, arrays)
    yield REFERENCE + (" in float64" if widen else ""), widen, lambda: _run_reference(model, node, arrays, widen)
    if numpy:
        yield "float64 NumPy", True, lambda: _run_numpy(node, arrays)


def node_by_node(model: onnx.ModelProto, feeds: dict, *, reference: Iterable[str] = (),
                 in_dtype: Iterable[str] = (), skip: Iterable[str] = ()) -> dict[str, Expected]:
    """Every node output of the model, computed one node at a time by an independent oracle.

    `reference`: output names whose nodes go to ONNX's reference evaluator even where ONNX Runtime
    runs them (it departs from the spec there). `in_dtype`: the same, but the reference computes in
    the node's own half-precision dtype (its rounding at every step is what the spec's reference
    does). `skip`: outputs neither oracle gets right; a node all of whose outputs are skipped is left
    out, and so are the nodes that read them."""
    in_dtype = set(in_dtype)
    reference, skip = set(reference) | in_dtype, set(skip)
    consts = {t.name for t in model.graph.initializer}
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    arrays.update(feeds)
    expected: dict[str, Expected] = {}
    for node in model.graph.node:
        outs = [o for o in node.output if o]
        if set(outs) <= skip or any(i and i not in arrays for i in node.input):
            continue
        one = _one_node(model, node, arrays, consts)
        declared = _declared_dtypes(one[0])
        errors, results = [], None
        declared_wide = {} if in_dtype & set(outs) else declared  # no float result to widen
        for label, widened, attempt in _oracle_attempts(model, node, arrays, one, declared_wide,
                                                        bool(reference & set(outs))):
            try:
                results = attempt()
                break
            except Exception as e:  # a dtype or op this oracle lacks: the next one takes it
                errors.append(f"{label}: {str(e).strip().splitlines()[0][:160]}")
        if results is None:
            raise NoOracle(f"node {node.op_type} -> {outs}: no oracle runs it ({'; '.join(errors)})")
        half = next((d for d in (np.asarray(arrays[i]).dtype for i in node.input if i) if d in HALF_TYPES), None)
        for name in outs:
            value = np.asarray(results[name])
            # a widened result without an inferred type has the half-precision inputs' type
            dtype = declared.get(name, half if widened and half is not None else value.dtype)
            typed = value.astype(dtype) if widened and value.dtype != dtype else value
            expected[name] = Expected(value, typed, label, widened, node.op_type)
            arrays[name] = typed
    return expected


def check_outputs(got: dict, expected: dict[str, Expected], tolerance: Tolerance, names: Iterable[str],
                  what: str = "") -> None:
    """Every named output of a run (`got`) against the oracle, element by element. Integer outputs
    exactly; an output the oracle did not compute fails (leave it out of `names` on purpose)."""
    problems = []
    for name in names:
        if name not in expected:
            problems.append(f"{name}: no oracle value")
            continue
        e = expected[name]
        g = np.asarray(got[name])
        if g.dtype != e.typed.dtype or g.shape != e.value.shape:
            problems.append(f"{name} ({e.op}): {g.dtype}{list(g.shape)} vs {e.oracle} "
                            f"{e.typed.dtype}{list(e.value.shape)}")
            continue
        msg = tolerance.mismatches(g, e.value)
        if msg:
            problems.append(f"{name} ({e.op} vs {e.oracle}): {msg}")
    label = f"{what}: " if what else ""
    assert not problems, label + "outputs differ from the oracle:\n" + "\n".join(problems)


def check_against_oracles(got: dict, model: onnx.ModelProto, feeds: dict, tolerance: Tolerance,
                          names: Iterable[str], *, reference: Iterable[str] = (), in_dtype: Iterable[str] = (),
                          numpy: Optional[dict] = None, unchecked: Iterable[str] = (), what: str = "") -> None:
    """A run's outputs (`names`) against the independent oracles, node by node (see node_by_node for
    `reference` and `in_dtype`). `numpy`: output -> value the test computed in NumPy, where neither ONNX
    oracle gets the node right (those not in `names` are left out, not checked); `unchecked`: outputs
    no oracle can check (the caller says why)."""
    names, numpy, unchecked = list(names), dict(numpy or {}), set(unchecked)
    expected = node_by_node(model, feeds, reference=reference, in_dtype=in_dtype, skip=set(numpy) | unchecked)
    check_outputs(got, expected, tolerance, [n for n in names if n not in numpy and n not in unchecked], what)
    for name in [n for n in names if n in numpy]:
        tolerance.check(got[name], numpy[name], f"{name} (vs NumPy)")
