"""Quantized types in the IR text, the verifier's checks, and the integer ops' reference arithmetic
(checked against exact rational arithmetic, not against itself)."""
import math
from fractions import Fraction

import numpy as np
import pytest

from pdc.ir import PdcError, dtypes
from pdc.ir.interpreter import run_graph
from pdc.ir.ops.qint import MAX_SHIFT, fixed_point, qadd_params, rounding_shift
from pdc.ir.parser import parse_graph, parse_type
from pdc.ir.printer import print_graph
from pdc.ir.types import Quant, TensorType
from pdc.ir.verify import verify_graph

QUANT_TEXT = '''graph @q(%x: i8[1,2,3,3]{scale=0.5, zero=-3}) -> (%y: i8[1,4,3,3]{scale=0.25, zero=1}) {
  %w = const i8[4,2,1,1]{axis=0, scale=[0.01, 0.02, 0.5, 1e-05], zero=[0, 0, 0, 0]}
  %b = const i32[4]
  %y = qconv(%x, %w, %b) {multiplier=[1073741824, 1073741824, 1073741824, 1073741824], shift=[31, 32, 33, 34], x_zero=-3, y_zero=1} : i8[1,4,3,3]{scale=0.25, zero=1}
}
'''


def _quant_graph():
    return parse_graph(QUANT_TEXT, {"w": np.arange(-4, 4, dtype=np.int8).reshape(4, 2, 1, 1),
                                    "b": np.array([5, -5, 100, 0], np.int32)})


def test_quantized_types_print_and_parse_back():
    g = _quant_graph()
    assert print_graph(g) == QUANT_TEXT
    assert g.inputs[0].type.quant == Quant((0.5,), (-3,))
    assert g.constants[0].type.quant == Quant((0.01, 0.02, 0.5, 1e-05), (0, 0, 0, 0), axis=0)
    verify_graph(g)


@pytest.mark.parametrize("text, message", [
    ("f32[2]{scale=0.5, zero=0}", "quantization on a f32 tensor (integer types only)"),
    ("i8[2]{scale=0.0, zero=0}", "quantization scales must be finite and positive, got [0.0]"),
    ("u8[2]{scale=1.0, zero=-1}", "zero points [-1] are outside u8's range [0, 255]"),
    ("i8[3,2]{axis=0, scale=[1.0, 2.0], zero=[0, 0]}", "quantization along axis 0 has 2 scales for 3 indices"),
    ("i8[3,2]{axis=2, scale=[1.0], zero=[0]}", "quantization axis 2 is outside the rank 2"),
])
def test_verifier_rejects_bad_quantization(text, message):
    g = parse_graph(f"graph @g(%x: {text}) -> (%x: {text}) {{\n}}\n")
    with pytest.raises(PdcError, match=r"^value %x \(graph input\): " + message.replace("[", r"\[").replace(
            "]", r"\]").replace("(", r"\(").replace(")", r"\)") + "$"):
        verify_graph(g)


@pytest.mark.parametrize("text", ["i8[2]{scale=0.5}", "i8[2]{scale=[0.5], zero=[0]}", "i8[2]{axis=0, scale=0.5, zero=0}",
                                  "i8[2]{scale=x, zero=0}"])
def test_malformed_quantization_text(text):
    with pytest.raises(PdcError, match="malformed quantization"):
        parse_type(text)


def test_reshaping_keeps_a_per_tensor_quantization_only():
    q = Quant((0.5,), (1,))
    assert TensorType(dtypes.int8, (2, 3), q).with_shape((6,)).quant == q
    per_axis = TensorType(dtypes.int8, (2, 3), Quant((1.0, 2.0), (0, 0), 0))
    assert per_axis.with_shape((6,)).quant is None
    assert TensorType(dtypes.int8, (2,), q).with_dtype(dtypes.float32).quant is None


@pytest.mark.parametrize("real", [1.0, 0.5, 0.75, 1e-3, 0.3333333333, 2.5, 1e-9, 2.0 ** -40, 1e-20, 1000.0])
def test_fixed_point_is_the_real_multiplier_to_31_bits(real):
    m, s = fixed_point(real)
    assert 1 <= s <= MAX_SHIFT
    if s < MAX_SHIFT:
        assert (1 << 30) <= m < (1 << 31)
        assert abs(Fraction(m, 1 << s) - Fraction(real)) <= Fraction(1, 1 << (s + 1))
    else:  # tiny multipliers keep fewer bits, still rounded to nearest
        assert abs(Fraction(m, 1 << s) - Fraction(real)) <= Fraction(1, 1 << (s + 1))


def test_fixed_point_rejects_huge_and_negative():
    for bad in (2.0 ** 31, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            fixed_point(bad)


def test_rounding_shift_is_round_half_up_of_the_exact_product():
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 500), [0, 1, -1, 2 ** 31 - 1, -2 ** 31]])
    for real in (0.0037, 0.5, 1.7, 3e-7):
        m, s = fixed_point(real)
        got = rounding_shift(acc, m, s)
        want = [math.floor(Fraction(int(a) * m, 1 << s) + Fraction(1, 2)) for a in acc]
        assert got.tolist() == want
    # ties go toward +infinity: -2.5 -> -2, 2.5 -> 3
    assert rounding_shift(np.array([-5, 5, -3, 3]), 1, 1).tolist() == [-2, 3, -1, 2]


def _run(text, feeds, consts=None):
    g = parse_graph(text, consts or {})
    verify_graph(g)
    return run_graph(g, feeds)


def test_qconv_reference_by_hand():
    x = np.array([[[[10, -3], [0, 7]]]], np.int8)  # zero point -3 -> values 13, 0, 3, 10
    w = np.array([[[[1, 2], [3, 4]]], [[[-1, 0], [0, 1]]]], np.int8)
    b = np.array([7, -100], np.int32)
    text = '''graph @g(%x: i8[1,1,2,2]) -> (%y: u8[1,2,1,1]) {
  %w = const i8[2,1,2,2]
  %b = const i32[2]
  %y = qconv(%x, %w, %b) {clamp=[5, 250], multiplier=[1073741824, 1610612736], shift=[32, 31], x_zero=-3, y_dtype=u8, y_zero=10} : u8[1,2,1,1]
}
'''
    y = _run(text, {"x": x}, {"w": w, "b": b})["y"]
    acc0 = 13 * 1 + 0 * 2 + 3 * 3 + 10 * 4 + 7  # 69 * 0.25 = 17.25 -> 17
    acc1 = -13 + 10 - 100  # -103 * 0.75 = -77.25 -> -77, + 10 -> -67, clamped to 5
    assert y.reshape(-1).tolist() == [10 + 17, 5] and acc0 == 69 and acc1 == -103


def test_qmatmul_per_column_and_qadd_by_hand():
    text = '''graph @g(%a: u8[2,3], %c: i8[2,2]) -> (%y: i8[2,2], %z: i8[2,2]) {
  %b = const i8[3,2]
  %y = qmatmul(%a, %b) {a_zero=128, multiplier=[1073741824, 1073741824], shift=[31, 33]} : i8[2,2]
  %z = qadd(%y, %c) {a_multiplier=3, a_zero=0, b_multiplier=1, b_zero=-1, shift=1, y_zero=0} : i8[2,2]
}
'''
    a = np.array([[128, 129, 130], [255, 0, 128]], np.uint8)  # minus 128: [0,1,2], [127,-128,0]
    b = np.array([[1, -1], [2, 3], [-4, 5]], np.int8)
    c = np.array([[-1, 0], [5, -7]], np.int8)
    out = _run(text, {"a": a, "c": c}, {"b": b})
    acc = np.array([[0, 1, 2], [127, -128, 0]]) @ b.astype(np.int64)  # [[-6, 13], [-129, -511]]
    want_y = [[math.floor(v * Fraction(1, 2 ** (1 + k * 2)) + Fraction(1, 2)) for k, v in enumerate(r)] for r in acc]
    assert out["y"].tolist() == want_y == [[-3, 2], [-64, -64]]
    want_z = [[math.floor(Fraction(3 * y + (cc + 1), 2) + Fraction(1, 2)) for y, cc in zip(ry, rc)]
              for ry, rc in zip(want_y, c.tolist())]
    assert out["z"].tolist() == want_z


def test_qmul_broadcasts_and_lookup_tabulates_by_code():
    text = '''graph @g(%a: i8[1,2,2], %b: u8[1,2,1]) -> (%y: i8[1,2,2], %z: f32[1,2,2]) {
  %t = const f32[256]
  %y = qmul(%a, %b) {a_zero=1, b_zero=128, multiplier=[1073741824], shift=[32], y_zero=-1} : i8[1,2,2]
  %z = lookup(%y, %t) : f32[1,2,2]
}
'''
    a = np.array([[[5, -7], [1, 127]]], np.int8)  # minus 1: [[4, -8], [0, 126]]
    b = np.array([[[130], [0]]], np.uint8)  # minus 128: [[2], [-128]]
    table = np.arange(256, dtype=np.float32) * 0.5
    out = _run(text, {"a": a, "b": b}, {"t": table})
    products = [[8, -16], [0, -16128]]  # times 1/4, ties up, then + y_zero, clamped to int8
    want_y = [[max(-128, min(127, -1 + math.floor(Fraction(p, 4) + Fraction(1, 2)))) for p in row] for row in products]
    assert out["y"][0].tolist() == want_y == [[1, -5], [-1, -128]]
    assert out["z"][0].tolist() == [[(v + 128) * 0.5 for v in row] for row in want_y]


def test_qadd_params_put_both_ratios_on_one_shift():
    ma, mb, s = qadd_params(0.1, 0.05, 0.07)
    assert max(ma, mb) < 2 ** 31 and max(ma, mb) >= 2 ** 30
    assert abs(ma / 2 ** s - 0.1 / 0.07) < 2 ** -30 and abs(mb / 2 ** s - 0.05 / 0.07) < 2 ** -30


def test_qmatmul_int32_gives_the_accumulators():
    text = '''graph @g(%a: i8[1,2]) -> (%y: i32[1,2]) {
  %b = const i8[2,2]
  %bias = const i32[2]
  %y = qmatmul(%a, %b, %bias) {a_zero=1, y_dtype=i32} : i32[1,2]
}
'''
    out = _run(text, {"a": np.array([[3, -128]], np.int8)}, {"b": np.array([[127, -1], [-127, 2]], np.int8),
                                                             "bias": np.array([100000, -7], np.int32)})
    assert out["y"].tolist() == [[2 * 127 + 129 * 127 + 100000, -2 - 258 - 7]]
    g = parse_graph(text.replace("a_zero=1,", "a_zero=1, shift=[3],"), {"b": np.zeros((2, 2), np.int8),
                                                                        "bias": np.zeros(2, np.int32)})
    with pytest.raises(PdcError, match="y_dtype i32 gives the accumulators: shift must be absent"):
        verify_graph(g)


@pytest.mark.parametrize("attrs, message", [
    ("multiplier=[1], shift=[0]", "shifts must be in [1, 62]"),
    ("multiplier=[1, 2], shift=[3]", "must have the same, non-zero length"),
    ("multiplier=[1, 2, 3], shift=[3, 3, 3]", "multiplier has 3 values for 2 output channels"),
    ("multiplier=[1], shift=[3], clamp=[5, 1]", "clamp [5, 1] must be [lo, hi] with -128 <= lo <= hi <= 127"),
    ("multiplier=[1], shift=[3], y_zero=300", "y_zero 300 is outside i8's range"),
    ("multiplier=[1], shift=[3], x_zero=200", "x_zero 200 is outside i8's range"),
])
def test_qconv_attribute_checks(attrs, message):
    text = f'''graph @g(%x: i8[1,1,2,2]) -> (%y: i8[1,2,1,1]) {{
  %w = const i8[2,1,2,2]
  %y = qconv(%x, %w) {{{attrs}}} : i8[1,2,1,1]
}}
'''
    g = parse_graph(text, {"w": np.zeros((2, 1, 2, 2), np.int8)})
    with pytest.raises(PdcError) as e:
        verify_graph(g)
    assert message in str(e.value)
