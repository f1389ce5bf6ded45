"""The IR text form: canonical printing, parsing back to an equal graph, clear syntax errors."""
import numpy as np
import pytest

from pdc.ir import Graph, Node, PdcError, TensorType, Value, dtypes
from pdc.ir.parser import parse_graph
from pdc.ir.printer import print_graph
from pdc.ir.textio import load_ir, save_ir

TEXT = '''graph @"g 1"(%x: f32[N,3,?], %"in\\"2": i64[]) -> (%y: f32[N,3,?], %w: bf16[2]) {
  %w = const bf16[2]
  %"a\\nb*/", %c = some_op(%x, _, %"in\\"2") {f=1.5, fs=[1.0, -2.5e-05, inf, -inf, nan], i=-3, is=[1, 2], s="q\\"\\\\#include", ss=["a", "\\u00e9"], t=f16, v=dense(i64[2,1], [4, 5])} : f32[N,3,?], f32[*] @"node\\u00e9"
  %y = other.op(%"a\\nb*/") : f32[N,3,?]
}
'''


def test_print_parse_print_is_identity():
    w = np.array([1.5, -2], dtype=dtypes.bfloat16.np)
    g = parse_graph(TEXT, {"w": w})
    assert print_graph(g) == TEXT
    node = g.nodes[0]
    assert node.name == "node\u00e9"
    assert node.inputs[1] is None
    assert node.outputs[0].name == "a\nb*/"
    assert node.attrs["i"] == -3 and node.attrs["f"] == 1.5 and node.attrs["is"] == [1, 2]
    assert node.attrs["s"] == 'q"\\#include'
    assert node.attrs["ss"] == ["a", "\u00e9"]
    assert node.attrs["t"] is dtypes.float16
    assert np.isnan(node.attrs["fs"][4]) and node.attrs["fs"][2] == float("inf")
    np.testing.assert_array_equal(node.attrs["v"], np.array([[4], [5]], np.int64))
    assert g.inputs[0].type == TensorType(dtypes.float32, ("N", 3, "?"))
    assert node.outputs[1].type.shape is None
    assert g.outputs[1] is g.constants[0]


def test_printed_text_is_ascii_and_safe():
    text = print_graph(parse_graph(TEXT, {"w": np.zeros(2, dtypes.bfloat16.np)}))
    assert text.isascii()
    assert "\n" not in text.splitlines()[2]  # a newline in a name is escaped


def test_floats_round_trip_exactly():
    g = Graph("g")
    x = Value("x", TensorType(dtypes.float32, (1,)))
    y = Value("y", TensorType(dtypes.float32, (1,)))
    vals = [0.1, 1e-300, 3.4028234663852886e38, float(np.float32(0.1)), -0.0]
    g.inputs, g.outputs = [x], [y]
    g.nodes = [Node("op", [x], [y], {"a": vals[0], "b": vals})]
    g2 = parse_graph(print_graph(g))
    assert g2.nodes[0].attrs["b"] == vals
    assert str(g2.nodes[0].attrs["b"][-1]) == "-0.0"


def test_save_and_load_pdir(tmp_path):
    from pdc.ir.registry import all_ops
    assert "identity" in all_ops()
    g = parse_graph('''graph @m(%x: f32[2]) -> (%y: f32[2]) {
  %k = const f32[2]
  %y = identity(%x) : f32[2]
}
''', {"k": np.array([1, 2], np.float32)})
    path = str(tmp_path / "m.pdir")
    save_ir(g, path)
    g2 = load_ir(path)
    assert print_graph(g2) == print_graph(g)
    np.testing.assert_array_equal(g2.constants[0].data, [1, 2])


@pytest.mark.parametrize("text, message", [
    ("graph @g(%x: f32[1]) -> (%y: f32[1]) {\n  %y = relu(%x : f32[1]\n}\n", r"<ir>:2:\d+: syntax error near '%y = relu"),
    ("graph @g(%x: f32[1]) -> (%y: f32[1]) {\n  %y = relu(%z) : f32[1]\n}\n", r"<ir>:2: %z is used before it is defined"),
    ("graph @g(%x: f32[1]) -> (%x: f32[1]) {\n  %x = relu(%x) : f32[1]\n}\n", r"<ir>:2: %x is defined twice"),
    ("graph @g(%x: f32[1]) -> (%y: f32[1]) {\n  %y, %z = relu(%x) : f32[1]\n}\n", r"<ir>:2: 2 results but 1 types"),
    ("graph @g(%x: f32[1]) -> (%y: f32[2]) {\n  %y = relu(%x) : f32[1]\n}\n", r"output %y is declared f32\[2\] but defined as f32\[1\]"),
    ("graph @g(%x: f32[1]) -> (%y: f32[1]) {\n  %y = relu(%x) {a=1, a=2} : f32[1]\n}\n", r"attribute 'a' given twice"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(PdcError, match=message):
        parse_graph(text)


def test_missing_constant_data_is_an_error():
    with pytest.raises(PdcError, match=r"no data for constant %k"):
        parse_graph("graph @g() -> (%k: f32[1]) {\n  %k = const f32[1]\n}\n", {})
    with pytest.raises(PdcError, match=r"%k: constant data has shape \[2\], declared f32\[1\]"):
        parse_graph("graph @g() -> (%k: f32[1]) {\n  %k = const f32[1]\n}\n", {"k": np.zeros(2, np.float32)})


def test_load_ir_verifies(tmp_path):
    path = tmp_path / "bad.pdir"
    path.write_text("graph @g(%x: f32[2]) -> (%y: f32[3]) {\n  %y = identity(%x) : f32[3]\n}\n")
    with pytest.raises(PdcError, match=r"output %y is declared f32\[3\] but the op gives f32\[2\]"):
        load_ir(str(path))
    path.write_text("graph @g(%x: f32[2]) -> (%y: f32[2]) {\n  %y = no_such_op(%x) : f32[2]\n}\n")
    with pytest.raises(PdcError, match=r"unknown op 'no_such_op'"):
        load_ir(str(path))
