from .util import check_pass


def test_removes_unused_nodes_and_constants():
    check_pass("eliminate-dead-code", """
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %k = const f32[2]
          %unused = add(%x, %k) : f32[2]
          %dead2 = relu(%unused) : f32[2]
          %y = relu(%x) : f32[2]
        }""", """
        graph @g(%x: f32[2]) -> (%y: f32[2]) {
          %y = relu(%x) : f32[2]
        }""")


def test_keeps_everything_an_output_needs():
    text = """
        graph @g(%x: f32[2]) -> (%y: f32[2], %k: f32[2]) {
          %k = const f32[2]
          %a = add(%x, %k) : f32[2]
          %y = relu(%a) : f32[2]
        }"""
    check_pass("eliminate-dead-code", text, text)
