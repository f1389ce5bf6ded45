import pytest

from pdc.ir.errors import PdcError

from .pass_checks import check_zoo_model
from .util import check_pass, graph_from_text, run_passes


def test_converts_a_conv_region_with_transposes_at_its_borders():
    check_pass("convert-layout", """
        graph @g(%x: f32[1,3,8,8]) -> (%y: f32[1,4,4,4]) {
          %w = const f32[4,3,3,3]
          %b = const f32[4,1,1]
          %c = conv(%x, %w) {pads=[1,1,1,1]} : f32[1,4,8,8]
          %a = add(%c, %b) : f32[1,4,8,8]
          %r = relu(%a) : f32[1,4,8,8]
          %y = max_pool(%r) {kernel_shape=[2,2], strides=[2,2]} : f32[1,4,4,4]
        }""", """
        graph @g(%x: f32[1,3,8,8]) -> (%y: f32[1,4,4,4]) {
          %w_ohwi = const f32[4,3,3,3]
          %b_nhwc = const f32[1,1,1,4]
          %x_nhwc = transpose(%x) {perm=[0, 2, 3, 1]} : f32[1,8,8,3]
          %c = conv_nhwc(%x_nhwc, %w_ohwi) {pads=[1, 1, 1, 1], weight_layout="OHWI"} : f32[1,8,8,4]
          %a = add(%c, %b_nhwc) : f32[1,8,8,4]
          %r = relu(%a) : f32[1,8,8,4]
          %y_nhwc = max_pool_nhwc(%r) {kernel_shape=[2, 2], strides=[2, 2]} : f32[1,4,4,4]
          %y = transpose(%y_nhwc) {perm=[0, 3, 1, 2]} : f32[1,4,4,4]
        }""")


def test_cancels_transposes_and_remaps_concat():
    # the model already converts its NHWC input and output: those transposes cancel with the borders
    check_pass("convert-layout", """
        graph @g(%x: f32[1,8,8,3]) -> (%y: f32[1,8,8,8], %z: f32[1,4,8,8]) {
          %w = const f32[4,3,1,1]
          %xt = transpose(%x) {perm=[0, 3, 1, 2]} : f32[1,3,8,8]
          %c = conv(%xt, %w) : f32[1,4,8,8]
          %s = sigmoid(%c) : f32[1,4,8,8]
          %cat = concat(%c, %s) {axis=1} : f32[1,8,8,8]
          %y = transpose(%cat) {perm=[0, 2, 3, 1]} : f32[1,8,8,8]
          %z = neg(%s) : f32[1,4,8,8]
        }""", """
        graph @g(%x: f32[1,8,8,3]) -> (%y: f32[1,8,8,8], %z: f32[1,4,8,8]) {
          %w_ohwi = const f32[4,1,1,3]
          %c = conv_nhwc(%x, %w_ohwi) {weight_layout="OHWI"} : f32[1,8,8,4]
          %s = sigmoid(%c) : f32[1,8,8,4]
          %y = concat(%c, %s) {axis=3} : f32[1,8,8,8]
          %z_nhwc = neg(%s) : f32[1,8,8,4]
          %z = transpose(%z_nhwc) {perm=[0, 3, 1, 2]} : f32[1,4,8,8]
        }""")


def test_a_value_entering_twice_is_transposed_once():
    check_pass("convert-layout", """
        graph @g(%x: f32[2,4,5,5], %r: f32[2,4,5,5]) -> (%y: f32[2,4,1,1]) {
          %w = const f32[4,1,3,3]
          %c = conv(%x, %w) {group=4, pads=[1,1,1,1]} : f32[2,4,5,5]
          %a = add(%c, %r) : f32[2,4,5,5]
          %m = mul(%a, %r) : f32[2,4,5,5]
          %y = global_average_pool(%m) : f32[2,4,1,1]
        }""", """
        graph @g(%x: f32[2,4,5,5], %r: f32[2,4,5,5]) -> (%y: f32[2,4,1,1]) {
          %w_ohwi = const f32[4,3,3,1]
          %x_nhwc = transpose(%x) {perm=[0, 2, 3, 1]} : f32[2,5,5,4]
          %c = conv_nhwc(%x_nhwc, %w_ohwi) {group=4, pads=[1, 1, 1, 1], weight_layout="OHWI"} : f32[2,5,5,4]
          %r_nhwc = transpose(%r) {perm=[0, 2, 3, 1]} : f32[2,5,5,4]
          %a = add(%c, %r_nhwc) : f32[2,5,5,4]
          %m = mul(%a, %r_nhwc) : f32[2,5,5,4]
          %y_nhwc = global_average_pool_nhwc(%m) : f32[2,1,1,4]
          %y = transpose(%y_nhwc) {perm=[0, 3, 1, 2]} : f32[2,4,1,1]
        }""")


NOT_CONVERTED = {
    "a 1-d conv": """
        graph @g(%x: f32[1,3,8]) -> (%y: f32[1,4,8]) {
          %w = const f32[4,3,1]
          %y = conv(%x, %w) : f32[1,4,8]
        }""",
    "a conv with computed weights": """
        graph @g(%x: f32[1,3,8,8], %w: f32[4,3,1,1]) -> (%y: f32[1,4,8,8]) {
          %y = conv(%x, %w) : f32[1,4,8,8]
        }""",
    "elementwise ops alone": """
        graph @g(%x: f32[1,3,8,8]) -> (%y: f32[1,3,8,8]) {
          %b = const f32[3,1,1]
          %a = add(%x, %b) : f32[1,3,8,8]
          %y = relu(%a) : f32[1,3,8,8]
        }""",
    "max_pool with indices": """
        graph @g(%x: f32[1,3,8,8]) -> (%y: f32[1,3,4,4], %i: i64[1,3,4,4]) {
          %y, %i = max_pool(%x) {kernel_shape=[2, 2], strides=[2, 2]} : f32[1,3,4,4], i64[1,3,4,4]
        }""",
}


@pytest.mark.parametrize("case", NOT_CONVERTED)
def test_does_not_fire(case):
    check_pass("convert-layout", NOT_CONVERTED[case], NOT_CONVERTED[case])


def test_only_nhwc_is_implemented():
    g = graph_from_text(NOT_CONVERTED["a 1-d conv"])
    with pytest.raises(PdcError, match="layout 'NCHWc' is not supported"):
        run_passes(g, "convert-layout{layout=NCHWc}")


@pytest.mark.zoo
@pytest.mark.parametrize("name, pipeline", [
    ("resnet18", "convert-layout"),
    ("mobilenet_v2", "fold-batchnorm,fuse-conv-bias-activation,convert-layout"),
])
def test_zoo_models(zoo, name, pipeline):
    g, before, after = check_zoo_model(zoo(name), pipeline)
    # one region from the image input to the global pool: two borders, one transpose each
    assert after["transpose"] == 2
    assert not any(op in after for op in ("conv", "fused_conv", "batch_normalization", "max_pool",
                                          "global_average_pool"))
    convs = [n for n in g.nodes if n.op in ("conv_nhwc", "fused_conv_nhwc")]
    assert len(convs) == before["conv"] and all(n.attrs["weight_layout"] == "OHWI" for n in convs)
