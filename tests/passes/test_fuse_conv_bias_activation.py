import pytest

from pdc.passes import OPT_LEVELS, all_passes

from .pass_checks import check_pass_symbolic, check_zoo_model
from .util import check_pass, graph_from_text, run_passes

PASS = "fuse-conv-bias-activation"


def test_conv_bias_residual_relu_and_conv_activation_residual():
    check_pass(PASS, """
        graph @g(%x: f32[1,3,5,5], %r: f32[1,4,5,5]) -> (%y: f32[1,4,5,5], %z: f32[1,4,5,5]) {
          %w = const f32[4,3,3,3]
          %bias = const f32[1,4,1,1]
          %w2 = const f32[4,4,1,1]
          %b2 = const f32[4]
          %c = conv(%x, %w) {pads=[1,1,1,1]} : f32[1,4,5,5]
          %cb = add(%c, %bias) : f32[1,4,5,5]
          %s = add(%r, %cb) : f32[1,4,5,5]
          %y = relu(%s) : f32[1,4,5,5]
          %c2 = conv(%y, %w2, %b2) : f32[1,4,5,5]
          %a2 = leaky_relu(%c2) {alpha=0.1} : f32[1,4,5,5]
          %z = add(%a2, %y) : f32[1,4,5,5]
        }""", """
        graph @g(%x: f32[1,3,5,5], %r: f32[1,4,5,5]) -> (%y: f32[1,4,5,5], %z: f32[1,4,5,5]) {
          %w = const f32[4,3,3,3]
          %w2 = const f32[4,4,1,1]
          %b2 = const f32[4]
          %w.bias_0 = const f32[4]
          %y = fused_conv(%x, %w, %w.bias_0, %r) {activation="relu", pads=[1, 1, 1, 1], residual="before_activation"} : f32[1,4,5,5]
          %z = fused_conv(%y, %w2, %b2, %y) {activation="leaky_relu", activation_alpha=0.1, residual="after_activation"} : f32[1,4,5,5]
        }""")


def test_resnet_block_output_of_two_convs():
    # conv -> (bn folded) -> add(shortcut conv) -> relu: the later conv's output is the residual
    check_pass(PASS, """
        graph @g(%x: f32[1,4,6,6]) -> (%y: f32[1,8,3,3]) {
          %w1 = const f32[8,4,3,3]
          %w2 = const f32[8,4,1,1]
          %a = conv(%x, %w1) {pads=[1,1,1,1], strides=[2,2]} : f32[1,8,3,3]
          %b = conv(%x, %w2) {strides=[2,2]} : f32[1,8,3,3]
          %s = add(%a, %b) : f32[1,8,3,3]
          %y = relu(%s) : f32[1,8,3,3]
        }""", """
        graph @g(%x: f32[1,4,6,6]) -> (%y: f32[1,8,3,3]) {
          %w1 = const f32[8,4,3,3]
          %w2 = const f32[8,4,1,1]
          %b = conv(%x, %w2) {strides=[2, 2]} : f32[1,8,3,3]
          %y = fused_conv(%x, %w1, _, %b) {activation="relu", pads=[1, 1, 1, 1], residual="before_activation", strides=[2, 2]} : f32[1,8,3,3]
        }""")


def test_relu6_and_one_sided_clip():
    check_pass(PASS, """
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4], %z: f32[1,2,4,4]) {
          %w = const f32[2,1,3,3]
          %lo = const f32[]
          %hi = const f32[]
          %c = conv(%x, %w) {group=2, pads=[1,1,1,1]} : f32[1,2,4,4]
          %y = clip(%c, %lo, %hi) : f32[1,2,4,4]
          %d = conv(%y, %w) {group=2, pads=[1,1,1,1]} : f32[1,2,4,4]
          %z = clip(%d, _, %hi) : f32[1,2,4,4]
        }""", """
        graph @g(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4], %z: f32[1,2,4,4]) {
          %w = const f32[2,1,3,3]
          %y = fused_conv(%x, %w) {activation="clip", activation_alpha=0.0, activation_beta=6.0, group=2, pads=[1, 1, 1, 1], residual="none"} : f32[1,2,4,4]
          %z = fused_conv(%y, %w) {activation="clip", activation_alpha=-inf, activation_beta=6.0, group=2, pads=[1, 1, 1, 1], residual="none"} : f32[1,2,4,4]
        }""", constants={"lo": 0.0, "hi": 6.0})


def test_gemm_and_matmul_with_bias():
    check_pass_symbolic(PASS, """
        graph @g(%x: f32[N,3], %t: f32[N,5,3]) -> (%y: f32[N,4], %z: f32[N,5,4]) {
          %w = const f32[4,3]
          %c = const f32[4]
          %bias = const f32[1,4]
          %v = const f32[3,4]
          %vb = const f32[1,1,4]
          %g = gemm(%x, %w, %c) {beta=0.5, transB=1} : f32[N,4]
          %gb = add(%bias, %g) : f32[N,4]
          %y = hard_sigmoid(%gb) {alpha=0.3} : f32[N,4]
          %m = matmul(%t, %v) : f32[N,5,4]
          %mb = add(%m, %vb) : f32[N,5,4]
          %z = gelu(%mb) {approximate="tanh"} : f32[N,5,4]
        }""", """
        graph @g(%x: f32[N,3], %t: f32[N,5,3]) -> (%y: f32[N,4], %z: f32[N,5,4]) {
          %w = const f32[4,3]
          %v = const f32[3,4]
          %c_0 = const f32[1,4]
          %v.bias_0 = const f32[4]
          %y = fused_gemm(%x, %w, %c_0) {activation="hard_sigmoid", activation_alpha=0.3, activation_beta=0.5, beta=1.0, residual="none", transB=1} : f32[N,4]
          %z = fused_matmul(%t, %v, %v.bias_0) {activation="gelu_tanh", residual="none"} : f32[N,5,4]
        }""")


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "hard_swish", "gelu", "leaky_relu", "hard_sigmoid",
                                 "swish"])
def test_every_activation_computes_the_same(act):
    g = graph_from_text(f"""
        graph @g(%x: f32[2,3,4,4]) -> (%y: f32[2,5,4,4]) {{
          %w = const f32[5,3,1,1]
          %c = conv(%x, %w) : f32[2,5,4,4]
          %y = {act}(%c) : f32[2,5,4,4]
        }}""")
    from .util import assert_same_outputs, random_feeds
    before = g.copy()
    run_passes(g, PASS)
    assert [n.op for n in g.nodes] == ["fused_conv"] and g.nodes[0].attrs["activation"] == act
    assert_same_outputs(before, g, random_feeds(before))


def test_does_not_swallow_values_read_elsewhere():
    # %c has two readers; %r is a graph output inside the chain; %s broadcasts; %bias varies along W
    text = """
        graph @g(%x: f32[1,2,3,3], %small: f32[1,1,3,3]) -> (%y: f32[1,2,3,3], %r: f32[1,2,3,3], %u: f32[1,2,3,3], %v: f32[1,2,3,3]) {
          %w = const f32[2,2,1,1]
          %bias = const f32[1,1,1,3]
          %c = conv(%x, %w) : f32[1,2,3,3]
          %a = relu(%c) : f32[1,2,3,3]
          %y = add(%a, %c) : f32[1,2,3,3]
          %d = conv(%x, %w) : f32[1,2,3,3]
          %r = relu(%d) : f32[1,2,3,3]
          %e = conv(%r, %w) : f32[1,2,3,3]
          %u = add(%e, %small) : f32[1,2,3,3]
          %f = conv(%u, %w) : f32[1,2,3,3]
          %v = add(%f, %bias) : f32[1,2,3,3]
        }"""
    g = check_pass(PASS, text, """
        graph @g(%x: f32[1,2,3,3], %small: f32[1,1,3,3]) -> (%y: f32[1,2,3,3], %r: f32[1,2,3,3], %u: f32[1,2,3,3], %v: f32[1,2,3,3]) {
          %w = const f32[2,2,1,1]
          %bias = const f32[1,1,1,3]
          %c = conv(%x, %w) : f32[1,2,3,3]
          %a = relu(%c) : f32[1,2,3,3]
          %y = add(%a, %c) : f32[1,2,3,3]
          %r = fused_conv(%x, %w) {activation="relu", residual="none"} : f32[1,2,3,3]
          %e = conv(%r, %w) : f32[1,2,3,3]
          %u = add(%e, %small) : f32[1,2,3,3]
          %f = conv(%u, %w) : f32[1,2,3,3]
          %v = add(%f, %bias) : f32[1,2,3,3]
        }""")
    assert g is not None


def test_fused_op_verifier():
    from pdc.ir.errors import VerifyError
    base = """
        graph @g(%x: f32[1,2,3,3], %r: f32[1,2,3,3]) -> (%y: f32[1,2,3,3]) {{
          %w = const f32[2,2,1,1]
          %y = fused_conv(%x, %w, {inputs}) {{{attrs}}} : f32[1,2,3,3]
        }}"""
    for inputs, attrs, message in [
            ("_, %r", 'activation="relu", residual="none"', "takes no input R"),
            ("_", 'activation="relu", residual="after_activation"', "needs input R"),
            ("_", 'activation="clip", activation_alpha=0.0, residual="none"', "needs activation_beta"),
            ("_", 'activation="relu", activation_alpha=0.0, residual="none"', "takes no activation_alpha"),
            ("_", 'activation="swish", residual="none"', "activation 'swish' needs activation_alpha"),
            ("_", 'activation="mish", residual="none"', "activation 'mish' is not one of"),
            ("_, %x", 'activation="relu", residual="sideways"', "residual 'sideways' is not one of")]:
        with pytest.raises(VerifyError, match=message):
            graph_from_text(base.format(inputs=inputs, attrs=attrs))


def _o2_pipeline() -> str:
    """-O2, minus the passes that are not written yet."""
    known = all_passes()
    return ",".join(p for p in OPT_LEVELS[2].split(",") if p in known)


def _activation_after_conv(graph) -> list[str]:
    producers = graph.producers()
    acts = ("relu", "clip", "hard_swish", "hard_sigmoid", "leaky_relu", "sigmoid", "tanh", "gelu", "swish")
    return [n.describe() for n in graph.nodes
            if n.op in acts and producers.get(n.inputs[0]) is not None and producers[n.inputs[0]].op == "conv"]


@pytest.mark.zoo
@pytest.mark.parametrize("name,activation", [("resnet18", "relu"), ("mobilenet_v2", "clip"),
                                             ("mobilenet_v3_small", "hard_swish")])
def test_o2_on_zoo_models(zoo, name, activation):
    graph, before, after = check_zoo_model(zoo(name), _o2_pipeline())
    assert not {"batch_normalization", "identity"} & set(after), after
    assert not _activation_after_conv(graph)
    assert after[activation] == 0 and after["fused_conv"] > 0.8 * before["conv"]
    assert sum(after.values()) <= 0.4 * sum(before.values()), (sum(before.values()), dict(after))
    if name == "resnet18":  # 8 basic blocks, each ending in one conv + residual + relu
        assert sum(n.attrs.get("residual") == "before_activation" for n in graph.nodes) == 8
