import pytest

from .pass_checks import check_zoo_model
from .util import check_pass

# paddle2onnx's LayerNorm at opset 13 (identities included)
PADDLE_LN = """
    graph @g(%x: f32[2,5,8]) -> (%y: f32[2,5,8]) {
      %axes = const i64[1]
      %two = const f32[]
      %eps = const f32[]
      %gamma = const f32[8]
      %beta = const f32[8]
      %xi = identity(%x) : f32[2,5,8]
      %m = reduce_mean(%xi, %axes) {keepdims=1, noop_with_empty_axes=0} : f32[2,5,1]
      %d = sub(%xi, %m) : f32[2,5,8]
      %p = pow(%d, %two) : f32[2,5,8]
      %v = reduce_mean(%p, %axes) {keepdims=1, noop_with_empty_axes=0} : f32[2,5,1]
      %ve = add(%v, %eps) : f32[2,5,1]
      %s = sqrt(%ve) : f32[2,5,1]
      %n = div(%d, %s) : f32[2,5,8]
      %g = mul(%n, %gamma) : f32[2,5,8]
      %y = add(%g, %beta) : f32[2,5,8]
    }"""
CONSTS = {"axes": [-1], "two": 2.0, "eps": 1e-5}


def test_fuses_paddles_layer_norm():
    check_pass("fuse-layer-norm", PADDLE_LN, """
        graph @g(%x: f32[2,5,8]) -> (%y: f32[2,5,8]) {
          %gamma = const f32[8]
          %beta = const f32[8]
          %xi = identity(%x) : f32[2,5,8]
          %y = layer_normalization(%xi, %gamma, %beta) {axis=2, epsilon=1e-05} : f32[2,5,8]
        }""", CONSTS)


def test_square_as_mul_no_affine_and_two_normalized_axes():
    check_pass("fuse-layer-norm", """
        graph @g(%x: f32[3,4,6]) -> (%y: f32[3,4,6]) {
          %axes = const i64[2]
          %eps = const f32[1]
          %m = reduce_mean(%x, %axes) {keepdims=1} : f32[3,1,1]
          %d = sub(%x, %m) : f32[3,4,6]
          %p = mul(%d, %d) : f32[3,4,6]
          %v = reduce_mean(%p, %axes) {keepdims=1} : f32[3,1,1]
          %ve = add(%eps, %v) : f32[3,1,1]
          %s = sqrt(%ve) : f32[3,1,1]
          %y = div(%d, %s) : f32[3,4,6]
        }""", """
        graph @g(%x: f32[3,4,6]) -> (%y: f32[3,4,6]) {
          %x.ln_scale0 = const f32[4,6]
          %y = layer_normalization(%x, %x.ln_scale0) {axis=1, epsilon=0.001} : f32[3,4,6]
        }""", {"axes": [2, 1], "eps": [1e-3]})


def test_reshapes_a_constant_gamma_with_leading_ones():
    g = check_pass("fuse-layer-norm", PADDLE_LN.replace("%gamma = const f32[8]", "%gamma = const f32[1,1,8]"), """
        graph @g(%x: f32[2,5,8]) -> (%y: f32[2,5,8]) {
          %beta = const f32[8]
          %xi.ln_scale0 = const f32[8]
          %xi = identity(%x) : f32[2,5,8]
          %y = layer_normalization(%xi, %xi.ln_scale0, %beta) {axis=2, epsilon=1e-05} : f32[2,5,8]
        }""", CONSTS)
    assert g.nodes[-1].inputs[1].type.shape == (8,)


NOT_LAYER_NORM = {  # (text to replace in PADDLE_LN, its replacement, constants)
    "the reduction is over a leading axis": ("f32[2,5,1]", "f32[2,1,8]", {"axes": [1]}),
    "the mean is read elsewhere": ("-> (%y: f32[2,5,8])", "-> (%y: f32[2,5,8], %m: f32[2,5,1])", {}),
    "the square is not of the difference": ("%p = pow(%d, %two)", "%p = pow(%xi, %two)", {}),
    "the exponent is not 2": ("%two = const f32[]", "%two = const f32[]", {"two": 4.0}),
}


@pytest.mark.parametrize("case", NOT_LAYER_NORM)
def test_does_not_fire(case):
    old, new, consts = NOT_LAYER_NORM[case]
    text = PADDLE_LN.replace(old, new)
    check_pass("fuse-layer-norm", text, text, {**CONSTS, **consts})


def test_a_gamma_varying_along_a_kept_dim_stays_outside():
    check_pass("fuse-layer-norm", PADDLE_LN.replace("%gamma = const f32[8]", "%gamma = const f32[5,1]"), """
        graph @g(%x: f32[2,5,8]) -> (%y: f32[2,5,8]) {
          %gamma = const f32[5,1]
          %beta = const f32[8]
          %xi.ln_scale0 = const f32[8]
          %xi = identity(%x) : f32[2,5,8]
          %n = layer_normalization(%xi, %xi.ln_scale0) {axis=2, epsilon=1e-05} : f32[2,5,8]
          %g = mul(%n, %gamma) : f32[2,5,8]
          %y = add(%g, %beta) : f32[2,5,8]
        }""", CONSTS)


@pytest.mark.zoo
def test_transformer_encoder(zoo):
    g, before, after = check_zoo_model(zoo("transformer_encoder"), "fuse-layer-norm")
    assert after["layer_normalization"] == 4
    for op in ("reduce_mean", "sqrt", "pow", "div"):
        assert after[op] == 0
