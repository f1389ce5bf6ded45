import numpy as np
import pytest

from .util import check_pass, graph_from_text, run_passes
from .pass_checks import check_pass_symbolic, check_zoo_model


def test_identities_go_and_the_output_keeps_its_name():
    check_pass("simplify-algebra", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3]) {
          %a = relu(%x) : f32[2,3]
          %b = identity(%a) : f32[2,3]
          %c = dropout(%b) : f32[2,3]
          %d = cast(%c) {to=f32} : f32[2,3]
          %y = identity(%d) : f32[2,3]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3]) {
          %y = relu(%x) : f32[2,3]
        }""")


def test_an_identity_between_two_interface_names_stays():
    text = """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3], %z: f32[2,3]) {
          %a = relu(%x) : f32[2,3]
          %y = identity(%x) : f32[2,3]
          %z = identity(%a) : f32[2,3]
        }"""
    check_pass("simplify-algebra", text, """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3], %z: f32[2,3]) {
          %z = relu(%x) : f32[2,3]
          %y = identity(%x) : f32[2,3]
        }""")


def test_cancelling_transposes_from_an_input_to_an_output_leave_an_identity():
    check_pass("simplify-algebra", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3]) {
          %t = transpose(%x) {perm=[1,0]} : f32[3,2]
          %y = transpose(%t) {perm=[1,0]} : f32[2,3]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3]) {
          %y = identity(%x) : f32[2,3]
        }""")


def test_neutral_elements():
    check_pass("simplify-algebra", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3]) {
          %one = const f32[3]
          %zero = const f32[]
          %ones = const f32[1,1]
          %a = mul(%x, %one) : f32[2,3]
          %b = add(%zero, %a) : f32[2,3]
          %c = sub(%b, %zero) : f32[2,3]
          %d = div(%c, %ones) : f32[2,3]
          %y = mul(%ones, %d) : f32[2,3]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3]) {
          %y = identity(%x) : f32[2,3]
        }""", constants={"one": [1, 1, 1], "zero": 0, "ones": [[1]]})


def test_neutral_constants_that_broadcast_or_differ_stay():
    text = """
        graph @g(%x: f32[3]) -> (%y: f32[2,3], %z: f32[3], %w: f32[3]) {
          %ones = const f32[2,3]
          %zero = const f32[3]
          %half = const f32[3]
          %y = mul(%x, %ones) : f32[2,3]
          %z = sub(%zero, %x) : f32[3]
          %w = mul(%x, %half) : f32[3]
        }"""
    check_pass("simplify-algebra", text, text,
               constants={"ones": np.ones((2, 3)), "zero": [0, 0, 0], "half": [1, 0.5, 1]})


def test_no_op_data_movement():
    check_pass_symbolic("simplify-algebra", """
        graph @g(%x: f32[N,3,4]) -> (%y: f32[N,3,4]) {
          %pads = const i64[6]
          %starts = const i64[2]
          %ends = const i64[2]
          %axes = const i64[2]
          %shape = const i64[3]
          %p = pad(%x, %pads) {mode="reflect"} : f32[N,3,4]
          %s = slice(%p, %starts, %ends, %axes) : f32[N,3,4]
          %e = expand(%s, %shape) : f32[N,3,4]
          %y = relu(%e) : f32[N,3,4]
        }""", """
        graph @g(%x: f32[N,3,4]) -> (%y: f32[N,3,4]) {
          %y = relu(%x) : f32[N,3,4]
        }""", constants={"pads": [0] * 6, "starts": [0, -10], "ends": [2**63 - 1, 4], "axes": [0, 2],
                         "shape": [1, 3, 1]})


def test_partial_slice_and_real_pad_stay():
    text = """
        graph @g(%x: f32[N,3,4]) -> (%y: f32[N,3,3], %z: f32[N,3,6]) {
          %starts = const i64[1]
          %ends = const i64[1]
          %axes = const i64[1]
          %pads = const i64[6]
          %y = slice(%x, %starts, %ends, %axes) : f32[N,3,3]
          %z = pad(%x, %pads) {mode="constant"} : f32[N,3,6]
        }"""
    check_pass_symbolic("simplify-algebra", text, text,
               constants={"starts": [1], "ends": [100], "axes": [-1], "pads": [0, 0, 1, 0, 0, 1]})


def test_reshape_chains():
    check_pass("simplify-algebra", """
        graph @g(%x: f32[2,3,4]) -> (%y: f32[4,6], %z: f32[2,3,4]) {
          %s1 = const i64[2]
          %s2 = const i64[2]
          %axes = const i64[1]
          %a = reshape(%x, %s1) {allowzero=0} : f32[6,4]
          %y = reshape(%a, %s2) {allowzero=0} : f32[4,6]
          %u = unsqueeze(%x, %axes) : f32[2,1,3,4]
          %z = squeeze(%u, %axes) : f32[2,3,4]
        }""", """
        graph @g(%x: f32[2,3,4]) -> (%y: f32[4,6], %z: f32[2,3,4]) {
          %s2 = const i64[2]
          %y = reshape(%x, %s2) {allowzero=0} : f32[4,6]
          %z = identity(%x) : f32[2,3,4]
        }""", constants={"s1": [6, 4], "s2": [4, -1], "axes": [1]})


def test_reshape_copying_a_dim_of_the_intermediate_gets_a_spelled_out_shape():
    check_pass("simplify-algebra", """
        graph @g(%x: f32[2,3,4]) -> (%y: f32[6,2,2]) {
          %s1 = const i64[2]
          %s2 = const i64[3]
          %a = reshape(%x, %s1) {allowzero=0} : f32[6,4]
          %y = reshape(%a, %s2) {allowzero=0} : f32[6,2,2]
        }""", """
        graph @g(%x: f32[2,3,4]) -> (%y: f32[6,2,2]) {
          %s2_0 = const i64[3]
          %y = reshape(%x, %s2_0) {allowzero=0} : f32[6,2,2]
        }""", constants={"s1": [6, 4], "s2": [0, 2, 2]})


def test_hard_sigmoid_times_input_is_hard_swish():
    check_pass("simplify-algebra", """
        graph @g(%x: f32[2,8]) -> (%y: f32[2,8], %z: f32[2,8]) {
          %h = hard_sigmoid(%x) {alpha=0.1666666716337204, beta=0.5} : f32[2,8]
          %y = mul(%h, %x) : f32[2,8]
          %k = hard_sigmoid(%x) {alpha=0.2, beta=0.5} : f32[2,8]
          %z = mul(%x, %k) : f32[2,8]
        }""", """
        graph @g(%x: f32[2,8]) -> (%y: f32[2,8], %z: f32[2,8]) {
          %y = hard_swish(%x) : f32[2,8]
          %k = hard_sigmoid(%x) {alpha=0.2, beta=0.5} : f32[2,8]
          %z = mul(%x, %k) : f32[2,8]
        }""")


def test_input_times_its_sigmoid_is_swish():
    # the sigmoid another node reads stays; sigmoid(x) * y is no SiLU
    check_pass("simplify-algebra", """
        graph @g(%x: f32[2,8], %t: f32[2,8]) -> (%y: f32[2,8], %z: f32[2,8], %u: f32[2,8], %s2: f32[2,8]) {
          %s = sigmoid(%x) : f32[2,8]
          %y = mul(%x, %s) : f32[2,8]
          %s2 = sigmoid(%t) : f32[2,8]
          %z = mul(%s2, %t) : f32[2,8]
          %u = mul(%s, %t) : f32[2,8]
        }""", """
        graph @g(%x: f32[2,8], %t: f32[2,8]) -> (%y: f32[2,8], %z: f32[2,8], %u: f32[2,8], %s2: f32[2,8]) {
          %s = sigmoid(%x) : f32[2,8]
          %y = swish(%x) {alpha=1.0} : f32[2,8]
          %s2 = sigmoid(%t) : f32[2,8]
          %z = swish(%t) {alpha=1.0} : f32[2,8]
          %u = mul(%s, %t) : f32[2,8]
        }""")


def test_dropout_whose_mask_is_used_stays():
    text = """
        graph @g(%x: f32[4]) -> (%y: f32[4], %m: bool[4]) {
          %y, %m = dropout(%x) : f32[4], bool[4]
        }"""
    check_pass("simplify-algebra", text, text)


def test_symbolic_broadcast_is_not_a_no_op():
    # ones[3] against x[N] may broadcast N=1 up to 3
    text = """
        graph @g(%x: f32[N]) -> (%y: f32[3]) {
          %one = const f32[3]
          %y = mul(%x, %one) : f32[3]
        }"""
    g = graph_from_text(text, {"one": [1, 1, 1]})
    run_passes(g, "simplify-algebra")
    assert [n.op for n in g.nodes] == ["mul"]


@pytest.mark.zoo
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_zoo_models_keep_their_outputs(zoo, name):
    _, before, after = check_zoo_model(zoo(name), "simplify-algebra")
    assert before["identity"] > 0 and "identity" not in after
    if name == "mobilenet_v3_small":  # its HardSwish is exported as x * HardSigmoid(x)
        assert after["hard_swish"] == 19 and after["hard_sigmoid"] == before["hard_sigmoid"] - 19
