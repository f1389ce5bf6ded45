from .util import check_pass


def test_merges_identical_nodes():
    check_pass("eliminate-common-subexpressions,eliminate-dead-code", """
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %a = relu(%x) : f32[2]
          %b = relu(%x) : f32[2]
          %y = add(%a, %b) : f32[2]
        }""", """
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %a = relu(%x) : f32[2]
          %y = add(%a, %a) : f32[2]
        }""")


def test_different_attributes_are_not_merged():
    text = """
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %a = leaky_relu(%x) {alpha=0.1} : f32[2]
          %b = leaky_relu(%x) {alpha=0.2} : f32[2]
          %y = add(%a, %b) : f32[2]
        }"""
    check_pass("eliminate-common-subexpressions", text, text)


def test_equal_constants_merge():
    check_pass("eliminate-common-subexpressions,eliminate-dead-code", """
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %k1 = const f32[2]
          %k2 = const f32[2]
          %a = add(%x, %k1) : f32[2]
          %y = mul(%a, %k2) : f32[2]
        }""", """
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %k1 = const f32[2]
          %a = add(%x, %k1) : f32[2]
          %y = mul(%a, %k1) : f32[2]
        }""", constants={"k1": [1, 2], "k2": [1, 2]})
