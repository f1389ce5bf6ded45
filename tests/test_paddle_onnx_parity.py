"""A Paddle model and its paddle.onnx.export (paddle2onnx) optimize to the same pdc IR, up to naming.

Each model (tests/paddle_models.py, format "pir") and its ONNX export (format "onnx": same seed,
same weights) is imported with pdc, its inputs bound to the test input's shape (as `pdc compile`
does), and optimized with the -O2 pipeline; the two graphs must have the same canonical form
(tests/graph_canon.py: op sequence, attributes, shapes, constant data).

Where they differ the difference is named in EXPLAINED and asserted exactly: an explanation either
rewrites one side the way the difference says (and must change something: a stale explanation
fails the test) or lists the nodes only one side has, whose graphs must then compute the same.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pytest

import paddle_models as pm
from graph_canon import attr_text, canonical, differences
from tolerances import REWRITE
from pdc.frontend import load_model
from pdc.ir import run_graph
from pdc.ir.errors import VerifyError
from pdc.ir.graph import Graph
from pdc.ir.parser import parse_graph
from pdc.ir.shapes import bind_shapes
from pdc.passes import run_pipeline
from pdc.passes.manager import OPT_LEVELS

needs_paddle = pytest.mark.usefixtures("paddle2onnx_installed")  # skips without them, fails in CI

# the representative set: every architecture family once (the larger ResNets, the other MobileNet v3
# and SqueezeNet, VGG with BN add nothing the ones here do not have)
MODELS = ["lenet", "alexnet", "vgg11", "resnet18", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
          "squeezenet1_1", "shufflenet_v2_x0_25", "shufflenet_v2_swish", "densenet121", "googlenet", "inception_v3",
          "transformer_encoder", "transformer_encoder_prenorm", "lstm", "lstm_forward", "gru", "gru_time_major"]


# ---- rewrites that state a difference precisely -------------------------------------------------
def spelled_out_reshapes(g: Graph, _bound) -> int:
    """Paddle's flatten is lowered (before any binding) to reshape(x, [0, -1]); paddle2onnx computes
    the shape from Shape(x), which folds to [N, -1] once N is bound. With a static input both mean
    the output's shape: that, spelled out, replaces the shape operand of every static reshape whose
    constant shape has a 0 or a -1."""
    changed = 0
    for n in g.nodes:
        out = n.outputs[0].type
        if n.op == "reshape" and out.is_static and n.inputs[1].is_const and (n.inputs[1].data <= 0).any():
            n.inputs[1] = g.add_constant(g.fresh_name("shape"), np.array(out.shape, np.int64))
            changed += 1
    g.remove_unused_constants()
    return changed


def scalar_operands(g: Graph, _bound) -> int:
    """paddle2onnx writes the scalar of a scale (here dropout's downscale_in_infer factor) as a [1]
    tensor; Paddle's own program (and so pdc) has a rank-0 scalar. Where the [1] broadcasts into a
    tensor of rank >= 1 the two are the same: rank-0 copies replace them."""
    changed, scalars = 0, {}
    for n in g.nodes:
        if n.op not in ("add", "sub", "mul", "div"):
            continue
        for i, c in enumerate(n.inputs):
            other = n.inputs[1 - i]
            if c.is_const and c.type.shape == (1,) and other.type.rank and other.type.rank >= 1:
                if c not in scalars:
                    scalars[c] = g.add_constant(g.fresh_name("scalar"), c.data.reshape(()))
                n.inputs[i] = scalars[c]
                changed += 1
    g.remove_unused_constants()
    return changed


def last_layer_states(g: Graph, _bound) -> int:
    """paddle2onnx bug: a multi-layer (or bidirectional multi-layer) paddle.nn.LSTM / GRU exports
    its final-state outputs as the LAST layer's states ([D, N, H]) instead of every layer's
    ([L*D, N, H], what Paddle returns; io.npz has Paddle's shapes). Applied to the Paddle side:
    each state output (a concat of the per-layer states) becomes its last layer's part."""
    producer = g.producers()
    changed = 0
    for k, v in enumerate(g.outputs):
        node = producer.get(v)
        if node is not None and node.op == "concat" and node.attrs.get("axis") == 0 and \
                all(producer.get(x) is not None and producer[x].op in ("lstm", "gru") for x in node.inputs):
            g.outputs[k] = node.inputs[-1]
            changed += 1
    return changed


def signatures(g: Graph) -> Counter:
    """How many nodes of each op + attributes (no operands, no types)."""
    def attrs(n):
        return ", ".join(f"{k}={attr_text(a)}" for k, a in sorted(n.attrs.items()) if a is not None)
    return Counter(f"{n.op}{{{attrs(n)}}}" for n in g.nodes)


@dataclass
class Explained:
    why: str
    onnx: tuple[Callable, ...] = ()  # rewrites of the ONNX side, each must change something
    paddle: tuple[Callable, ...] = ()  # rewrites of the Paddle side, likewise
    paddle_only: Counter = field(default_factory=Counter)  # node signatures only one side has
    onnx_only: Counter = field(default_factory=Counter)
    onnx_error: Optional[tuple] = None  # (exception type, message regex): pdc rejects the export


FLATTEN = "the classifier's flatten: [0, -1] vs Shape(x)-derived [N, -1] (see spelled_out_reshapes)"
SCALAR = "dropout's 1 - p as a [1] tensor (see scalar_operands)"
GELU_ERF = ("fused_elementwise{args=[0, 1, -1, -2, 2, 0, -3, -4, 3], arity=[2, 1, 2, 2, 2], "
            "ops=[\"div\", \"erf\", \"add\", \"mul\", \"mul\"]}")
EXPLAINED = {
    **{name: Explained(FLATTEN, onnx=(spelled_out_reshapes,), paddle=(spelled_out_reshapes,))
       for name in ("lenet", "resnet18", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_25",
                    "shufflenet_v2_swish", "densenet121")},
    # dropout(mode="downscale_in_infer") scales by 1 - p
    "alexnet": Explained(SCALAR + "; " + FLATTEN, onnx=(spelled_out_reshapes, scalar_operands),
                           paddle=(spelled_out_reshapes,)),
    "googlenet": Explained(SCALAR + "; " + FLATTEN, onnx=(spelled_out_reshapes, scalar_operands),
                           paddle=(spelled_out_reshapes,)),
    "squeezenet1_1": Explained(SCALAR, onnx=(scalar_operands,)),
    "inception_v3": Explained(SCALAR, onnx=(scalar_operands,)),
    "vgg11": Explained(
        "paddle2onnx bug: adaptive_avg_pool2d to 7x7 of a 2x2 map (the 64x64 test input) is exported as an "
        "AveragePool with strides [0, 0], which is not valid ONNX; pdc rejects it",
        onnx_error=(VerifyError, r"node 'AveragePool.0' \(average_pool\): strides values must be >= 1, got \[0, 0\]")),
    "transformer_encoder_prenorm": Explained(
        "paddle2onnx writes gelu (exact, erf form) as x / sqrt(2) -> erf -> + 1 -> * x -> * 0.5 (opsets 17 to 21 "
        "alike); "
        "pdc keeps Paddle's gelu, which fuses into the matmul as its activation",
        paddle_only=Counter({'fused_matmul{activation="gelu", residual="none"}': 2}),
        onnx_only=Counter({'fused_matmul{activation="none", residual="none"}': 2, GELU_ERF: 2})),
    **{name: Explained("paddle2onnx bug: states of the last layer only (see last_layer_states)",
                     paddle=(last_layer_states,))
       for name in ("lstm", "gru", "gru_time_major")},
}

_dirs: dict[str, dict[str, str]] = {}


def folder(name: str, fmt: str) -> str:
    if not _dirs:  # the first call generates what is missing, both formats side by side
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(2) as pool:
            jobs = {f: pool.submit(pm.ensure_models, MODELS, f) for f in ("pir", "onnx")}
            _dirs.update({f: job.result() for f, job in jobs.items()})
    return _dirs[fmt][name]


def optimized(path: str, shapes: dict) -> tuple[Graph, dict]:
    """The -O2 graph of a model with its inputs bound to `shapes`, and the symbols the binding bound."""
    g = load_model(path)
    bound = {d: s for v in g.inputs for d, s in zip(v.type.shape or (), shapes[v.name]) if isinstance(d, str)}
    return run_pipeline(bind_shapes(g, shapes), OPT_LEVELS[2]), bound


@needs_paddle
@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_optimizes_to_the_same_ir(name):
    io = np.load(os.path.join(folder(name, "pir"), "io.npz"))
    feeds = {k[3:]: io[k] for k in io.files if k.startswith("in_")}
    shapes = {k: v.shape for k, v in feeds.items()}
    explained = EXPLAINED.get(name, Explained(""))
    paddle, _ = optimized(folder(name, "pir"), shapes)
    onnx_path = os.path.join(folder(name, "onnx"), "inference.onnx")
    if explained.onnx_error:
        with pytest.raises(explained.onnx_error[0], match=explained.onnx_error[1]):
            optimized(onnx_path, shapes)
        return
    onnx, bound = optimized(onnx_path, shapes)
    for side, graph, rewrites in (("onnx", onnx, explained.onnx), ("paddle", paddle, explained.paddle)):
        for rewrite in rewrites:
            assert rewrite(graph, bound) > 0, f"{rewrite.__name__} no longer changes the {side} graph: drop it"

    if explained.paddle_only or explained.onnx_only:
        a, b = signatures(paddle), signatures(onnx)
        assert (a - b, b - a) == (explained.paddle_only, explained.onnx_only)
        ref = run_graph(paddle, feeds)
        got = run_graph(onnx, feeds)
        for x, y in zip(paddle.outputs, onnx.outputs):
            REWRITE.check(got[y.name], ref[x.name], y.name)
        return
    problems = differences(canonical(paddle), canonical(onnx))
    assert not problems, f"{name}: Paddle (a) and its ONNX export (b) differ after -O2:\n" + "\n".join(problems[:80])


@needs_paddle
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_onnx_export_drops_the_lower_layers_states(name):
    """What last_layer_states says, measured: the ONNX export's state outputs are the last layer's
    part of what the Paddle model returns (its eager outputs, recorded with the export)."""
    io = np.load(os.path.join(folder(name, "onnx"), "io.npz"))
    g = load_model(os.path.join(folder(name, "onnx"), "inference.onnx"))
    out = run_graph(g, {k[3:]: io[k] for k in io.files if k.startswith("in_")})
    for k, v in enumerate(g.outputs[1:], 1):
        got, ref = out[v.name], io[f"out_{k}"]
        assert (got.shape, ref.shape) == ((2, pm.BATCH, 24), (4, pm.BATCH, 24))
        REWRITE.check(got, ref[2:], v.name)


def test_canonical_form_ignores_names_and_branch_order():
    a = """graph @a(%x: f32[N,4]) -> (%y: f32[N,4]) {
      %w = const f32[4]
      %p = relu(%x) : f32[N,4]
      %q = leaky_relu(%x) {alpha=0.1} : f32[N,4]
      %r = mul(%q, %w) : f32[N,4]
      %y = add(%p, %r) : f32[N,4]
    }
    """
    b = """graph @b(%in: f32[B,4]) -> (%out: f32[B,4]) {
      %k = const f32[4]
      %t = leaky_relu(%in) {alpha=0.1} : f32[B,4]
      %u = mul(%t, %k) : f32[B,4]
      %s = relu(%in) : f32[B,4]
      %out = add(%s, %u) : f32[B,4]
    }
    """
    w = np.arange(4, dtype=np.float32)
    form = canonical(parse_graph(a, {"w": w}))
    assert form.lines[1] == "v0 = relu(in0) : f32[s0,4]"
    assert differences(form, canonical(parse_graph(b, {"k": w}))) == []
    assert differences(form, canonical(parse_graph(b, {"k": w + 1}))) == ["c0: data differs (max |a - b| = 1)"]
    diff = differences(form, canonical(parse_graph(b.replace("0.1", "0.2"), {"k": w})))
    assert "-v1 = leaky_relu(in0) {alpha=0.1} : f32[s0,4]" in diff
    assert "+v1 = leaky_relu(in0) {alpha=0.2} : f32[s0,4]" in diff
