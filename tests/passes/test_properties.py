"""Property tests: random graphs of elementwise ops, convs, pads, batch norms and pools keep their
outputs through the -O2 pipeline (and through the fusion / layout passes on their own).

Graphs have up to 16 nodes over up to 16 channels and 10x10 images; every pipeline names registered
passes only (an unknown pass is an error, not a pass left out). Examples per test are fixed (the
CI tier, a few seconds each); PDC_PASS_EXAMPLES=N scales them for a longer local run.
"""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdc.ir import dtypes
from pdc.ir.graph import Graph, Node, Value
from pdc.ir.types import TensorType
from pdc.ir.verify import infer_node, verify_graph
from pdc.passes import parse_pipeline
from pdc.passes.manager import OPT_LEVELS

from .util import assert_same_outputs, random_feeds, run_passes

F32 = dtypes.float32
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
SCALE = float(os.environ.get("PDC_PASS_EXAMPLES", "1"))
MAX_NODES, MAX_CHANNELS, MAX_SIZE = 16, 16, 10
LAYOUT_PIPELINE = OPT_LEVELS[2] + ",convert-layout,fuse-elementwise"


def examples(n: int) -> int:
    return max(1, round(n * SCALE))


UNARY = [("relu", {}), ("sigmoid", {}), ("tanh", {}), ("neg", {}), ("abs", {}), ("hard_swish", {}),
         ("leaky_relu", {"alpha": 0.1}), ("softsign", {}), ("hard_sigmoid", {"alpha": 0.3, "beta": 0.4})]
BINARY = ["add", "mul", "sub", "max", "min"]
KINDS = ["unary", "binary", "clip", "select", "conv", "batch_norm", "max_pool", "average_pool", "pad",
         "global_pool"]


@st.composite
def graphs(draw):
    """A graph over one (1, C, H, W) input; every node's result may feed any later node."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    c, hw = draw(st.integers(1, MAX_CHANNELS)), draw(st.integers(3, MAX_SIZE))
    g = Graph("prop", [Value("x", TensorType(F32, (1, c, hw, hw)))])
    pool = list(g.inputs)

    def const(shape, scale=1.0, positive=False):
        data = rng.standard_normal(shape).astype(np.float32) * np.float32(scale)
        return g.add_constant(f"c{len(g.constants)}", np.abs(data) + np.float32(0.5) if positive else data)

    def other_operand(a):
        same = [v for v in pool if v.type.shape == a.type.shape and v is not a]
        choice = draw(st.sampled_from(["value", "channel", "scalar"] if same else ["channel", "scalar"]))
        if choice == "value":
            return draw(st.sampled_from(same))
        return const((a.type.shape[1], 1, 1) if choice == "channel" else ())

    for i in range(draw(st.integers(1, MAX_NODES))):
        a = draw(st.sampled_from(pool))
        ch = a.type.shape[1]
        kind = draw(st.sampled_from(KINDS))
        attrs, op = {}, kind
        if kind == "unary":
            op, attrs = draw(st.sampled_from(UNARY))
            inputs = [a]
        elif kind == "binary":
            op = draw(st.sampled_from(BINARY))
            inputs = [a, other_operand(a)]
            if draw(st.booleans()):
                inputs.reverse()
        elif kind == "clip":  # relu6-like, constant bounds
            inputs = [a, const((), 0.1), g.add_constant(f"c{len(g.constants)}", np.float32(6.0))]
        elif kind == "select":  # bool intermediates: where(a > b, a, b)
            b = other_operand(a)
            cond = Value(f"cond{i}", TensorType(dtypes.bool_, None))
            g.nodes.append(Node("greater", [a, b], [cond]))
            cond.type = infer_node(g.nodes[-1])[0]
            op, inputs = "where", [cond, a, b]
        elif kind == "conv":
            k = draw(st.sampled_from([1, 3]))
            depthwise = draw(st.booleans())
            cout = ch if depthwise else draw(st.integers(1, MAX_CHANNELS))
            group = ch if depthwise else 1
            w = const((cout, ch // group, k, k), 1 / np.sqrt(ch // group * k * k))
            inputs = [a, w] + ([const((cout,))] if draw(st.booleans()) else [])
            attrs = {"pads": [k // 2] * 4, "group": group}
        elif kind == "batch_norm":
            op = "batch_normalization"
            inputs = [a, const((ch,)), const((ch,)), const((ch,)), const((ch,), positive=True)]
            attrs = {"epsilon": 1e-5}
        elif kind in ("max_pool", "average_pool"):
            inputs, attrs = [a], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
            if kind == "average_pool":
                attrs["count_include_pad"] = int(draw(st.booleans()))
        elif kind == "pad":  # constant padding of the image, which fold-pad merges into a conv or pool
            edges = [draw(st.integers(0, 2)) for _ in range(4)]
            pads = g.add_constant(f"c{len(g.constants)}", np.array([0, 0] + edges[:2] + [0, 0] + edges[2:], np.int64))
            inputs, attrs = [a, pads], {"mode": "constant"}
        else:
            op, inputs = draw(st.sampled_from(["global_average_pool", "global_max_pool"])), [a]
        out = Value(f"v{i}", TensorType(F32, None))
        g.nodes.append(Node(op, inputs, [out], attrs))
        out.type = infer_node(g.nodes[-1])[0]
        pool.append(out)
    g.outputs = [pool[-1]]
    extra = draw(st.sampled_from(pool[1:]))
    if extra is not pool[-1] and draw(st.booleans()):  # a graph output in the middle of a chain
        g.outputs.insert(0, extra)
    verify_graph(g)
    return g


def check(g: Graph, pipeline: str):
    reference = g.copy()
    run_passes(g, pipeline)  # an unknown pass is a PdcError; the graph is verified after every pass
    assert_same_outputs(reference, g, random_feeds(reference, seed=3))
    return g


def test_pipelines_name_registered_passes():
    for pipeline in (OPT_LEVELS[1], OPT_LEVELS[2], LAYOUT_PIPELINE):
        assert parse_pipeline(pipeline), pipeline  # raises on a pass that is not registered


@settings(max_examples=examples(300), **SETTINGS)
@given(graphs())
def test_o2_keeps_outputs(g):
    check(g, OPT_LEVELS[2])


@settings(max_examples=examples(100), **SETTINGS)
@given(graphs(), st.integers(0, 4))
def test_fuse_elementwise_keeps_outputs_and_respects_max_ops(g, max_ops):
    check(g, f"fuse-elementwise{{max-ops={max_ops}}}")
    assert all(len(n.attrs["ops"]) <= max_ops or max_ops == 0 for n in g.nodes if n.op == "fused_elementwise")


@settings(max_examples=examples(150), **SETTINGS)
@given(graphs())
def test_o2_then_convert_layout_keeps_outputs(g):
    check(g, LAYOUT_PIPELINE)
    # transposes only at borders: none of them feeds another one
    producer = g.producers()
    assert not any(n.op == "transpose" and getattr(producer.get(n.inputs[0]), "op", None) == "transpose"
                   for n in g.nodes)
