"""Quantized types in the IR text, the verifier's checks, and the integer ops' reference arithmetic
(checked against exact rational arithmetic, not against itself)."""
import math
from fractions import Fraction

import numpy as np
import pytest

from pdc.ir import PdcError, dtypes
from pdc.ir.interpreter import run_graph
from pdc.ir.ops.qint import fma32, qadd_constant, requant_scale, rescale
from pdc.ir.parser import parse_graph, parse_type
from pdc.ir.printer import print_graph
from pdc.ir.types import Quant, TensorType
from pdc.ir.verify import verify_graph

QUANT_TEXT = '''graph @q(%x: i8[1,2,3,3]{scale=0.5, zero=-3}) -> (%y: i8[1,4,3,3]{scale=0.25, zero=1}) {
  %w = const i8[4,2,1,1]{axis=0, scale=[0.01, 0.02, 0.5, 1e-05], zero=[0, 0, 0, 0]}
  %b = const i32[4]
  %y = qconv(%x, %w, %b) {scale=[0.5, 0.25, 0.125, 0.0625], x_zero=-3, y_zero=1} : i8[1,4,3,3]{scale=0.25, zero=1}
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


def _f32(x) -> Fraction:
    return Fraction(float(np.float32(x)))


def _round_f32(q: Fraction) -> Fraction:
    """q rounded to the nearest float32, ties to even (normal range), exactly."""
    if q == 0:
        return q
    e = math.floor(math.log2(abs(q)))
    e += (abs(q) >= Fraction(2) ** (e + 1)) - (abs(q) < Fraction(2) ** e)
    ulp = Fraction(2) ** (e - 23)
    n = q / ulp
    r = math.floor(n)
    if n - r > Fraction(1, 2) or (n - r == Fraction(1, 2) and r % 2):
        r += 1
    return r * ulp


def _rint(q: Fraction) -> int:
    r = math.floor(q)
    return r + 1 if q - r > Fraction(1, 2) or (q - r == Fraction(1, 2) and r % 2) else r


def test_requant_scale_is_the_float32_steps_of_onnx_runtime():
    sx, sw, sy = 0.0123, 0.00456, 0.0789
    want = _round_f32(_round_f32(_f32(sx) * _f32(sw)) / _f32(sy))
    assert Fraction(requant_scale(sx, sw, divisor=sy)) == want
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            requant_scale(bad)


def test_rescale_rounds_the_float32_product_half_to_even():
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-2 ** 24, 2 ** 24, 400), rng.integers(-2 ** 31, 2 ** 31, 100),
                          [0, 1, -1, 2 ** 31 - 1, -2 ** 31]])
    for scale in (0.0037, 0.5, 1.7, 3e-7):
        sc = float(np.float32(scale))
        got = rescale(acc, sc)
        want = [_rint(_round_f32(_round_f32(Fraction(int(a))) * Fraction(sc))) for a in acc]
        assert got.tolist() == want
    # ties to even: -2.5 -> -2, 2.5 -> 2, 1.5 -> 2, -1.5 -> -2
    assert rescale(np.array([-5, 5, 3, -3]), 0.5).tolist() == [-2, 2, 2, -2]


def test_fma32_rounds_once_even_where_float64_would_round_twice():
    rng = np.random.default_rng(2)
    x = rng.integers(-255, 256, 3000)
    r = rng.uniform(0.01, 4, 3000).astype(np.float32)
    c = rng.uniform(-300, 300, 3000).astype(np.float32)
    # sums with a tiny c: x * r + c lands next to float32 halfway points, where rounding twice goes wrong
    c[:1000] = (np.float32(2.0) ** rng.integers(-60, -30, 1000)).astype(np.float32) * np.sign(c[:1000])
    got = fma32(x, r, c)
    want = [float(_round_f32(Fraction(int(a)) * Fraction(float(b)) + Fraction(float(d)))) for a, b, d in zip(x, r, c)]
    assert got.astype(np.float64).tolist() == want
    # 97 * (172961 * 2^-24) = 1 + 2^-24, a float32 halfway point; + 2^-60 puts the exact sum above it
    # (so 1 + 2^-23), where the float64 sum drops the 2^-60 and rounding that to even would give 1
    r = np.float32(172961 * 2.0 ** -24)
    got = fma32(np.array([97, -97]), r, np.array([2.0 ** -60, -(2.0 ** -60)], np.float32))
    assert got.astype(np.float64).tolist() == [1 + 2.0 ** -23, -(1 + 2.0 ** -23)]
    assert np.float32(97 * np.float64(r) + 2.0 ** -60) == np.float32(1.0)  # what rounding twice gives


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
  %y = qconv(%x, %w, %b) {clamp=[5, 250], scale=[0.25, 0.75], x_zero=-3, y_dtype=u8, y_zero=10} : u8[1,2,1,1]
}
'''
    y = _run(text, {"x": x}, {"w": w, "b": b})["y"]
    acc0 = 13 * 1 + 0 * 2 + 3 * 3 + 10 * 4 + 7  # 69 * 0.25 = 17.25 -> 17
    acc1 = -13 + 10 - 100  # -103 * 0.75 = -77.25 -> -77, + 10 -> -67, clamped to 5
    assert y.reshape(-1).tolist() == [10 + 17, 5] and acc0 == 69 and acc1 == -103


def test_qmatmul_per_column_and_qadd_by_hand():
    text = '''graph @g(%a: u8[2,3], %c: i8[2,2]) -> (%y: i8[2,2], %z: i8[2,2]) {
  %b = const i8[3,2]
  %y = qmatmul(%a, %b) {a_zero=128, scale=[0.5, 0.125]} : i8[2,2]
  %z = qadd(%y, %c) {a_scale=1.5, a_zero=0, b_scale=0.5, b_zero=-1, y_zero=0} : i8[2,2]
}
'''
    a = np.array([[128, 129, 130], [255, 0, 128]], np.uint8)  # minus 128: [0,1,2], [127,-128,0]
    b = np.array([[1, -1], [2, 3], [-4, 5]], np.int8)
    c = np.array([[-1, 0], [5, -7]], np.int8)
    out = _run(text, {"a": a, "c": c}, {"b": b})
    acc = np.array([[0, 1, 2], [127, -128, 0]]) @ b.astype(np.int64)  # [[-6, 13], [-129, -511]]
    want_y = [[_rint(v * Fraction(1, 2 ** (1 + k * 2))) for k, v in enumerate(r)] for r in acc]
    assert out["y"].tolist() == want_y == [[-3, 2], [-64, -64]]  # -64.5: the tie goes to even
    # c = 0 - (1.5 * 0 + 0.5 * -1) = 0.5; every step exact in float32 here
    want_z = [[_rint(Fraction(3 * y + (cc + 1), 2)) for y, cc in zip(ry, rc)] for ry, rc in zip(want_y, c.tolist())]
    assert out["z"].tolist() == want_z


def test_qmul_broadcasts_and_lookup_tabulates_by_code():
    text = '''graph @g(%a: i8[1,2,2], %b: u8[1,2,1]) -> (%y: i8[1,2,2], %z: f32[1,2,2]) {
  %t = const f32[256]
  %y = qmul(%a, %b) {a_zero=1, b_zero=128, scale=[0.25], y_zero=-1} : i8[1,2,2]
  %z = lookup(%y, %t) : f32[1,2,2]
}
'''
    a = np.array([[[5, -7], [1, 127]]], np.int8)  # minus 1: [[4, -8], [0, 126]]
    b = np.array([[[130], [0]]], np.uint8)  # minus 128: [[2], [-128]]
    table = np.arange(256, dtype=np.float32) * 0.5
    out = _run(text, {"a": a, "b": b}, {"t": table})
    products = [[8, -16], [0, -16128]]  # times 1/4, rounded, then + y_zero, clamped to int8
    want_y = [[max(-128, min(127, -1 + _rint(Fraction(p, 4)))) for p in row] for row in products]
    assert out["y"][0].tolist() == want_y == [[1, -5], [-1, -128]]
    assert out["z"][0].tolist() == [[(v + 128) * 0.5 for v in row] for row in want_y]


def test_qadd_rounds_like_onnx_runtime_two_fmas_from_the_constant():
    ra, rb = requant_scale(0.1, divisor=0.07), requant_scale(0.05, divisor=0.07)
    c = qadd_constant(ra, 3, rb, -5, 7)
    assert Fraction(float(c)) == _round_f32(7 - _round_f32(_round_f32(_f32(ra) * 3) + _round_f32(_f32(rb) * -5)))
    text = f'''graph @g(%a: i8[256], %b: i8[256]) -> (%y: i8[256]) {{
  %y = qadd(%a, %b) {{a_scale={ra!r}, a_zero=3, b_scale={rb!r}, b_zero=-5, y_zero=7}} : i8[256]
}}
'''
    a = np.arange(-128, 128).astype(np.int8)
    b = np.random.default_rng(0).integers(-128, 128, 256).astype(np.int8)
    y = _run(text, {"a": a, "b": b})["y"]
    want = [max(-128, min(127, _rint(_round_f32(Fraction(int(x)) * _f32(ra) + _round_f32(
        Fraction(int(z)) * _f32(rb) + Fraction(float(c))))))) for x, z in zip(a, b)]
    assert y.tolist() == want


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
    g = parse_graph(text.replace("a_zero=1,", "a_zero=1, scale=[0.5],"), {"b": np.zeros((2, 2), np.int8),
                                                                        "bias": np.zeros(2, np.int32)})
    with pytest.raises(PdcError, match="y_dtype i32 gives the accumulators: scale must be absent"):
        verify_graph(g)


@pytest.mark.parametrize("attrs, message", [
    ("x_zero=0", "scale is missing: give one value or one per output channel"),
    ("scale=[-0.5]", "scale -0.5 must be a finite float32 value >= 0"),
    ("scale=[0.1]", "scale 0.1 must be a finite float32 value >= 0"),
    ("scale=[0.5, 0.25, 0.125]", "scale has 3 values for 2 output channels"),
    ("scale=[0.5], clamp=[5, 1]", "clamp [5, 1] must be [lo, hi] with -128 <= lo <= hi <= 127"),
    ("scale=[0.5], y_zero=300", "y_zero 300 is outside i8's range"),
    ("scale=[0.5], x_zero=200", "x_zero 200 is outside i8's range"),
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


def test_qmatmul_of_two_activations_broadcasts_batches_and_subtracts_both_zero_points():
    text = '''graph @g(%a: i8[2,1,2,3], %b: u8[3,3,2]) -> (%y: i8[2,3,2,2]) {
  %y = qmatmul(%a, %b) {a_zero=-3, b_zero=100, scale=[0.25], y_zero=1} : i8[2,3,2,2]
}
'''
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (2, 1, 2, 3)).astype(np.int8)
    b = rng.integers(0, 256, (3, 3, 2)).astype(np.uint8)
    y = _run(text, {"a": a, "b": b})["y"]
    for i in range(2):
        for j in range(3):
            acc = (a[i, 0].astype(np.int64) + 3) @ (b[j].astype(np.int64) - 100)
            want = [[max(-128, min(127, 1 + _rint(Fraction(int(v), 4)))) for v in row] for row in acc]
            assert y[i, j].tolist() == want


@pytest.mark.parametrize("b_type, attrs, message", [
    ("i8[3]", "scale=[0.5]", "b must be [..., K, N]"),
    ("i8[2,4,2]", "scale=[0.5]", "a's last dim 3 differs from b's dim K 4"),
    ("i8[2,3,2]", "b_zero=200, scale=[0.5]", "b_zero 200 is outside i8's range"),
    ("i32[3,2]", "scale=[0.5]", "b must be i8 or u8, got i32"),
])
def test_qmatmul_activation_checks(b_type, attrs, message):
    g = parse_graph(f'''graph @g(%a: i8[2,3], %b: {b_type}) -> (%y: i8[2,2]) {{
  %y = qmatmul(%a, %b) {{{attrs}}} : i8[2,2]
}}
''')
    with pytest.raises(PdcError) as e:
        verify_graph(g)
    assert message in str(e.value)


def _layer_norm_graph(x_type, y_type, attrs, residual=None):
    r = f", %r: {residual}" if residual else ""
    return parse_graph(f'''graph @g(%x: {x_type}{r}) -> (%y: {y_type}) {{
  %gamma = const f32[8]
  %beta = const f32[8]
  %y = qlayer_norm(%x, %gamma, %beta{", %r" if residual else ""}) {{{attrs}}} : {y_type}
}}
''', {"gamma": np.linspace(0.5, 1.5, 8, dtype=np.float32), "beta": np.linspace(-0.2, 0.3, 8, dtype=np.float32)})


def _float_layer_norm(x, gamma, beta, eps):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


def test_qlayer_norm_is_layer_norm_within_a_step():
    """From codes on scale s_x: the float output is LayerNorm of the real values to float32
    precision; an int8 output (gamma, beta divided by s_y) within one step of rounding that."""
    from pdc.ir.ops.qint import layer_norm_epsilon
    rng = np.random.default_rng(6)
    sx, sy, xz = 0.03, 0.02, -5
    x = rng.integers(-128, 128, (40, 8)).astype(np.int8)
    x[0] = 7  # a constant row: variance 0, epsilon alone
    gamma, beta = np.linspace(0.5, 1.5, 8), np.linspace(-0.2, 0.3, 8)
    want = _float_layer_norm((x.astype(np.float64) - xz) * sx, gamma, beta, 1e-5)
    eps = layer_norm_epsilon(1e-5, 8, sx)
    g = _layer_norm_graph("i8[40,8]", "f32[40,8]", f"var_epsilon={eps!r}, x_zero={xz}, y_dtype=f32")
    verify_graph(g)
    got = run_graph(g, {"x": x})["y"]
    assert got.dtype == np.float32 and np.abs(got - want).max() < 1e-5 and got[0].tolist() == [float(np.float32(b)) for b in beta]
    g = _layer_norm_graph("i8[40,8]", "u8[40,8]", f"var_epsilon={eps!r}, x_zero={xz}, y_dtype=u8, y_zero=128")
    g.constants[0].data, g.constants[1].data = (np.float32(p / sy).astype(np.float32) for p in (gamma, beta))
    got = run_graph(g, {"x": x})["y"].astype(np.int64)
    assert np.abs(got - np.clip(want / sy + 128, 0, 255)).max() <= 0.5 + 1e-4


def test_qlayer_norm_of_a_residual_sum():
    """x_mult (x - x_zero) + r_mult (r - r_zero) on the grid residual_multipliers gives: the LayerNorm of
    s_x (x - x_zero) + s_r (r - r_zero), to the grid's ratio error."""
    from pdc.ir.ops.qint import layer_norm_epsilon, residual_multipliers
    rng = np.random.default_rng(7)
    sx, sr = 0.03, 0.07
    xm, rm, unit = residual_multipliers(sx, sr, 10)
    assert (xm, rm) == (round(sx / sr * 1024), 1024) and unit == sr / 1024
    x, r = rng.integers(-128, 128, (30, 8)).astype(np.int8), rng.integers(0, 256, (30, 8)).astype(np.uint8)
    eps = layer_norm_epsilon(1e-5, 8, unit)
    g = _layer_norm_graph("i8[30,8]", "f32[30,8]", f"r_mult={rm}, r_zero=120, var_epsilon={eps!r}, x_mult={xm}, "
                          f"x_zero=2, y_dtype=f32", residual="u8[30,8]")
    verify_graph(g)
    got = run_graph(g, {"x": x, "r": r})["y"]
    real = (x.astype(np.float64) - 2) * sx + (r.astype(np.float64) - 120) * sr
    assert np.abs(got - _float_layer_norm(real, np.linspace(0.5, 1.5, 8), np.linspace(-0.2, 0.3, 8), 1e-5)).max() < 2e-3


def test_qlayer_norm_steps_are_float32():
    """The reference's steps, each rounded to float32 (Fractions), for a few rows: no float64 shortcut."""
    from pdc.ir.ops.qint import qlayer_norm_rows
    rng = np.random.default_rng(8)
    d = rng.integers(-300, 300, (6, 8)).astype(np.int64)
    gamma, beta = rng.uniform(-3, 3, 8).astype(np.float32), rng.uniform(-1, 1, 8).astype(np.float32)
    eps = float(np.float32(37.3))
    got = qlayer_norm_rows(d, eps, gamma, beta)
    for row, out in zip(d.tolist(), got):
        s1, s2 = sum(row), sum(v * v for v in row)
        v = _round_f32(Fraction(8 * s2 - s1 * s1))
        root = _round_f32(Fraction(math.sqrt(float(_round_f32(v + Fraction(eps))))))  # sqrt of a float32: exact in double
        inv = _round_f32(1 / root)
        for i, di in enumerate(row):
            u = _round_f32(_round_f32(Fraction(8 * di - s1)) * inv)
            assert Fraction(float(out[i])) == _round_f32(u * Fraction(float(gamma[i])) + Fraction(float(beta[i])))


@pytest.mark.parametrize("attrs, message", [
    ("var_epsilon=0.0", "var_epsilon must be > 0"),
    ("var_epsilon=0.1", "var_epsilon 0.1 must be a finite float32 value >= 0"),
    ("var_epsilon=1.0, y_dtype=f32, y_zero=1", "y_dtype f32 gives the float values: y_zero must be absent"),
    ("var_epsilon=1.0, y_zero=300", "y_zero 300 is outside i8's range"),
    ("var_epsilon=1.0, x_mult=0", "x_mult 0 must be in [1, 65536]"),
    ("var_epsilon=1.0, x_mult=65536", "8 elements per row of codes up to 8388608: their product must stay below 2^26"),
])
def test_qlayer_norm_attribute_checks(attrs, message):
    y = "f32[2,8]" if "f32" in attrs else "i8[2,8]"
    with pytest.raises(PdcError) as e:
        verify_graph(_layer_norm_graph("i8[2,8]", y, attrs))
    assert message in str(e.value)


def test_qlayer_norm_parameter_checks():
    g = parse_graph('''graph @g(%x: i8[2,8], %r: i8[2,4]) -> (%y: i8[2,8]) {
  %gamma = const f32[4]
  %y = qlayer_norm(%x, %gamma) {var_epsilon=1.0} : i8[2,8]
}
''', {"gamma": np.ones(4, np.float32)})
    with pytest.raises(PdcError, match=r"gamma must have the normalized dims \[8\], got \[4\]"):
        verify_graph(g)
    g = _layer_norm_graph("i8[2,8]", "i8[2,8]", "var_epsilon=1.0", residual="i8[2,4]")
    with pytest.raises(PdcError, match=r"r \[2, 4\] must have x's shape \[2, 8\]"):
        verify_graph(g)
