import pytest

from pdc.ir.ops.fused_elementwise import Step, decode_program, encode_program
from pdc.ir.printer import print_graph

from .pass_checks import check_zoo_model
from .util import assert_same_outputs, check_pass, graph_from_text, random_feeds, run_passes


def test_fuses_a_chain_into_one_node():
    check_pass("fuse-elementwise", """
        graph @g(%x: f32[2,3], %b: f32[3]) -> (%y: f32[2,3]) {
          %s = const f32[]
          %a = add(%x, %b) : f32[2,3]
          %m = mul(%a, %s) : f32[2,3]
          %y = relu(%m) : f32[2,3]
        }""", """
        graph @g(%x: f32[2,3], %b: f32[3]) -> (%y: f32[2,3]) {
          %s = const f32[]
          %y = fused_elementwise(%x, %b, %s) {args=[0, 1, -1, 2, -2], arity=[2, 2, 1], ops=["add", "mul", "relu"]} : f32[2,3]
        }""")


def test_fuses_a_tree_and_computes_a_value_used_twice_once():
    # swish: x * sigmoid(x * s): x is one input read twice; the scaled value is one step read twice
    check_pass("fuse-elementwise", """
        graph @g(%x: f32[4,8]) -> (%y: f32[4,8]) {
          %s = const f32[1]
          %t = mul(%x, %s) : f32[4,8]
          %g = sigmoid(%t) : f32[4,8]
          %y = mul(%t, %g) : f32[4,8]
        }""", """
        graph @g(%x: f32[4,8]) -> (%y: f32[4,8]) {
          %s = const f32[1]
          %y = fused_elementwise(%x, %s) {args=[0, 1, -1, -1, -2], arity=[2, 1, 2], ops=["mul", "sigmoid", "mul"]} : f32[4,8]
        }""")


def test_step_attributes_are_printed_and_kept():
    g = check_pass("fuse-elementwise", """
        graph @g(%x: f32[2,3]) -> (%y: f16[2,3]) {
          %lo = const f32[]
          %a = leaky_relu(%x) {alpha=0.25} : f32[2,3]
          %c = clip(%a, %lo) : f32[2,3]
          %y = cast(%c) {to=f16} : f16[2,3]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f16[2,3]) {
          %lo = const f32[]
          %y = fused_elementwise(%x, %lo) {args=[0, -1, 1, -2], arity=[1, 2, 1], ops=["leaky_relu", "clip", "cast"], step_attrs=["alpha=0.25", "", "to=f16"]} : f16[2,3]
        }""")
    steps = decode_program(g.nodes[0].attrs)
    assert [s.attrs for s in steps][0] == {"alpha": 0.25}
    assert steps[2].attrs["to"].short == "f16"


def test_does_not_fuse_a_value_read_outside_the_group():
    # %a is read by the relu and by the graph's second output path: it stays a node of its own
    check_pass("fuse-elementwise", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3], %z: f32[2,3]) {
          %a = exp(%x) : f32[2,3]
          %r = relu(%a) : f32[2,3]
          %y = neg(%r) : f32[2,3]
          %z = transpose(%a) {perm=[0, 1]} : f32[2,3]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f32[2,3], %z: f32[2,3]) {
          %a = exp(%x) : f32[2,3]
          %y = fused_elementwise(%a) {args=[0, -1], arity=[1, 1], ops=["relu", "neg"]} : f32[2,3]
          %z = transpose(%a) {perm=[0, 1]} : f32[2,3]
        }""")


def test_does_not_fuse_through_a_graph_output():
    check_pass("fuse-elementwise", """
        graph @g(%x: f32[2,3]) -> (%a: f32[2,3], %y: f32[2,3]) {
          %a = exp(%x) : f32[2,3]
          %y = relu(%a) : f32[2,3]
        }""", """
        graph @g(%x: f32[2,3]) -> (%a: f32[2,3], %y: f32[2,3]) {
          %a = exp(%x) : f32[2,3]
          %y = relu(%a) : f32[2,3]
        }""")


def test_does_not_pull_a_smaller_broadcast_operand_into_the_group():
    # exp(%b) has 3 elements, the sum 6: fusing it would compute exp twice per column
    check_pass("fuse-elementwise", """
        graph @g(%x: f32[2,3], %b: f32[3]) -> (%y: f32[2,3]) {
          %e = exp(%b) : f32[3]
          %s = add(%x, %e) : f32[2,3]
          %y = relu(%s) : f32[2,3]
        }""", """
        graph @g(%x: f32[2,3], %b: f32[3]) -> (%y: f32[2,3]) {
          %e = exp(%b) : f32[3]
          %y = fused_elementwise(%x, %e) {args=[0, 1, -1], arity=[2, 1], ops=["add", "relu"]} : f32[2,3]
        }""")


def test_respects_max_ops():
    before = """
        graph @g(%x: f32[4]) -> (%y: f32[4]) {
          %a = exp(%x) : f32[4]
          %b = neg(%a) : f32[4]
          %c = relu(%b) : f32[4]
          %y = sigmoid(%c) : f32[4]
        }"""
    g = check_pass("fuse-elementwise{max-ops=2}", before, """
        graph @g(%x: f32[4]) -> (%y: f32[4]) {
          %b = fused_elementwise(%x) {args=[0, -1], arity=[1, 1], ops=["exp", "neg"]} : f32[4]
          %y = fused_elementwise(%b) {args=[0, -1], arity=[1, 1], ops=["relu", "sigmoid"]} : f32[4]
        }""")
    # a second run with a larger budget merges the two fused nodes
    ref = graph_from_text(before)
    run_passes(g, "fuse-elementwise")
    assert [n.attrs["ops"] for n in g.nodes] == [["exp", "neg", "relu", "sigmoid"]]
    assert_same_outputs(ref, g, random_feeds(ref))


def test_is_idempotent():
    g = graph_from_text("""
        graph @g(%x: f32[2,3], %w: f32[2,3]) -> (%y: f32[2,3]) {
          %a = mul(%x, %w) : f32[2,3]
          %b = tanh(%a) : f32[2,3]
          %c = add(%b, %a) : f32[2,3]
          %y = abs(%c) : f32[2,3]
        }""")
    run_passes(g, "fuse-elementwise")
    once = print_graph(g)
    run_passes(g, "fuse-elementwise")
    assert print_graph(g) == once


def test_leaves_single_ops_and_absent_middle_inputs_alone():
    # clip(x, _, max) has an absent input in the middle: the program cannot express it
    check_pass("fuse-elementwise", """
        graph @g(%x: f32[3]) -> (%y: f32[3], %z: f32[3]) {
          %hi = const f32[]
          %c = clip(%x, _, %hi) : f32[3]
          %y = relu(%c) : f32[3]
          %z = exp(%x) : f32[3]
        }""", """
        graph @g(%x: f32[3]) -> (%y: f32[3], %z: f32[3]) {
          %hi = const f32[]
          %c = clip(%x, _, %hi) : f32[3]
          %y = relu(%c) : f32[3]
          %z = exp(%x) : f32[3]
        }""")


def test_keeps_integer_and_bool_intermediates_exact():
    check_pass("fuse-elementwise", """
        graph @g(%x: f32[5], %y: f32[5]) -> (%z: f32[5]) {
          %c = greater(%x, %y) : bool[5]
          %n = not(%c) : bool[5]
          %z = where(%n, %x, %y) : f32[5]
        }""", """
        graph @g(%x: f32[5], %y: f32[5]) -> (%z: f32[5]) {
          %z = fused_elementwise(%x, %y) {args=[0, 1, -1, -2, 0, 1], arity=[2, 1, 3], ops=["greater", "not", "where"]} : f32[5]
        }""")


def test_program_encoding_round_trips():
    steps = [Step("mul", [0, 1], {}), Step("leaky_relu", [-1], {"alpha": 0.5}), Step("add", [-2, 0], {})]
    attrs = encode_program(steps)
    assert attrs == {"ops": ["mul", "leaky_relu", "add"], "arity": [2, 1, 2], "args": [0, 1, -1, -2, 0],
                     "step_attrs": ["", "alpha=0.5", ""]}
    assert decode_program(attrs) == steps


@pytest.mark.zoo
@pytest.mark.parametrize("name", ["transformer_encoder", "mobilenet_v2"])
def test_zoo_models_keep_their_outputs(zoo, name):
    g, before, after = check_zoo_model(zoo(name), "simplify-algebra,fold-batchnorm,fuse-conv-bias-activation,"
                                                  "fuse-elementwise")
    assert after["fused_elementwise"] >= 1 or name == "mobilenet_v2"
    assert sum(after.values()) < sum(before.values())
