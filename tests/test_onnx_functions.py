"""ONNX ops defined as functions of other ops (pdc/frontend/onnx_functions.py): a node pdc has no
converter for is replaced by its body before import. FlexAttention (ai.onnx.preview, a body built
from the node and its input types) with score_mod / prob_mod subgraphs and a given scale, in a model
that uses the body's internal names itself, against ONNX's reference evaluator on x86."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import pdc
from pdc.frontend.onnx_functions import expand_function_ops
from pdc.frontend.onnx_import import supported_onnx_ops

F = TensorProto.FLOAT


def _mod(name: str, op: str, value: float):
    """A score_mod / prob_mod body: scores op value."""
    const = helper.make_tensor("c", F, [], [value])
    return helper.make_graph([helper.make_node(op, ["s", "c"], ["t"])], name,
                             [helper.make_tensor_value_info("s", F, None)], [helper.make_tensor_value_info("t", F, None)],
                             [const])


def _flex_model(**attrs):
    q = helper.make_tensor_value_info("Q", F, [2, 3, 5, 4])
    k = helper.make_tensor_value_info("K", F, [2, 3, 6, 4])
    v = helper.make_tensor_value_info("V", F, [2, 3, 6, 8])
    nodes = [helper.make_node("FlexAttention", ["Q", "K", "V"], ["A"], domain="ai.onnx.preview", **attrs),
             # a value named as an expanded body's internal value might be: the expansion must not clash
             helper.make_node("Relu", ["A"], ["FlexAttention_0__Score"]),
             helper.make_node("Neg", ["FlexAttention_0__Score"], ["Y"])]
    g = helper.make_graph(nodes, "flex", [q, k, v], [helper.make_tensor_value_info("Y", F, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 26), helper.make_opsetid("ai.onnx.preview", 1)])


@pytest.mark.parametrize("attrs", [{}, {"scale": 0.3}, {"score_mod": _mod("bias", "Add", 0.5)},
                                   {"prob_mod": _mod("scale", "Mul", 2.0), "scale": 0.7}],
                         ids=["plain", "scale", "score_mod", "prob_mod"])
def test_flex_attention_expands_and_matches_the_reference(attrs):
    model = _flex_model(**attrs)
    rng = np.random.default_rng(0)
    feeds = {"Q": rng.standard_normal((2, 3, 5, 4)).astype(np.float32),
             "K": rng.standard_normal((2, 3, 6, 4)).astype(np.float32),
             "V": rng.standard_normal((2, 3, 6, 8)).astype(np.float32)}
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    expanded = expand_function_ops(model, supported_onnx_ops())
    assert "FlexAttention" not in {n.op_type for n in expanded.graph.node}
    assert len({o for n in expanded.graph.node for o in n.output}) == sum(len(n.output) for n in expanded.graph.node)
    got = pdc.compile(model, target="x86").run(feeds)["Y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_model_without_function_ops_is_left_as_it_is():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", F, [2])],
                          [helper.make_tensor_value_info("y", F, [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert expand_function_ops(model, supported_onnx_ops()) is model
