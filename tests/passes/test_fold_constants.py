import numpy as np

from .util import check_pass


def test_folds_constant_subgraphs_and_static_shapes():
    check_pass("fold-constants", """
        graph @g(%x: f32[2,3]) -> (%y: f32[3,2]) {
          %a = const f32[3]
          %b = const f32[3]
          %s = shape(%x) {start=0} : i64[2]
          %rev = const i64[2]
          %c = add(%a, %b) : f32[3]
          %t = reshape(%x, %rev) {allowzero=0} : f32[3,2]
          %y = relu(%t) : f32[3,2]
        }""", """
        graph @g(%x: f32[2,3]) -> (%y: f32[3,2]) {
          %rev = const i64[2]
          %t = reshape(%x, %rev) {allowzero=0} : f32[3,2]
          %y = relu(%t) : f32[3,2]
        }""", constants={"rev": np.array([3, 2])})


def test_folded_values_are_computed_by_the_reference():
    from .util import graph_from_text, run_passes
    g = graph_from_text("""
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %a = const f32[2]
          %b = const f32[2]
          %c = mul(%a, %b) : f32[2]
          %y = add(%x, %c) : f32[2]
        }""", constants={"a": [1, 2], "b": [3, 4]})
    run_passes(g, "fold-constants")
    assert [n.op for n in g.nodes] == ["add"]
    np.testing.assert_array_equal(g.nodes[0].inputs[1].data, [3, 8])


def test_respects_max_elements():
    from .util import graph_from_text, run_passes
    g = graph_from_text("""
        graph @g(%x: f32[4]) -> (%y: f32[4]) {
          %a = const f32[4]
          %c = neg(%a) : f32[4]
          %y = add(%x, %c) : f32[4]
        }""")
    run_passes(g, "fold-constants{max-elements=3}")
    assert [n.op for n in g.nodes] == ["neg", "add"]
