"""Quantization ops against ONNX Runtime: QuantizeLinear / DequantizeLinear (per tensor, per axis,
blocked), DynamicQuantizeLinear, QLinearMatMul and QLinearConv; clear errors for float8/int4."""
import numpy as np
import pytest
from onnx import TensorProto

from onnx_cases import check as _check, one_node as _one_node
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import PdcError, UnsupportedError
from tolerances import ROUNDED, Tolerance


def one_node(op, inputs, attrs=None, opset=21, n_out=1, consts=()):
    return _one_node(op, inputs, attrs, opset, n_out, consts)


def check(model, feeds, tolerance: Tolerance = ROUNDED):
    _check(model, feeds, tolerance)


rng = np.random.default_rng(17)


def qrand(dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)


# ---- QuantizeLinear / DequantizeLinear ------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_quantize_per_tensor(dtype):
    x = (rng.standard_normal((3, 4, 5)) * 40).astype(np.float32)
    x.flat[:4] = [0.5, 1.5, -2.5, 2.5]  # ties round to even
    zp = np.array(3, dtype)
    check(*one_node("QuantizeLinear", [("x", x), ("s", np.float32(0.5)), ("zp", zp)], consts=("s", "zp")))
    check(*one_node("DequantizeLinear", [("q", qrand(dtype, (3, 4))), ("s", np.float32(0.25)), ("zp", zp)],
                    consts=("s", "zp")))


def test_quantize_default_uint8_and_output_dtype():
    x = (rng.standard_normal((4, 6)) * 100).astype(np.float32)
    check(*one_node("QuantizeLinear", [("x", x), ("s", np.float32(0.7))], consts=("s",)))
    check(*one_node("QuantizeLinear", [("x", x), ("s", np.float32(0.7))], {"output_dtype": TensorProto.INT8},
                    consts=("s",)))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_axis(axis):
    x = (rng.standard_normal((3, 4, 5)) * 10).astype(np.float32)
    n = x.shape[axis]
    scale = rng.uniform(0.05, 0.5, n).astype(np.float32)
    zp = rng.integers(-10, 10, n).astype(np.int8)
    check(*one_node("QuantizeLinear", [("x", x), ("s", scale), ("zp", zp)], {"axis": axis}, consts=("s", "zp")))
    check(*one_node("DequantizeLinear", [("q", qrand(np.int8, x.shape)), ("s", scale), ("zp", zp)], {"axis": axis},
                    consts=("s", "zp")))


@pytest.mark.parametrize("block,axis", [(2, 1), (3, 1), (4, 0)])
def test_blocked(block, axis):
    x = (rng.standard_normal((6, 7)) * 10).astype(np.float32)
    sshape = list(x.shape)
    sshape[axis] = -(-x.shape[axis] // block)
    scale = rng.uniform(0.05, 0.5, sshape).astype(np.float32)
    zp = rng.integers(0, 20, sshape).astype(np.uint8)
    attrs = {"axis": axis, "block_size": block}
    check(*one_node("QuantizeLinear", [("x", x), ("s", scale), ("zp", zp)], attrs, consts=("s", "zp")))
    check(*one_node("DequantizeLinear", [("q", qrand(np.uint8, x.shape)), ("s", scale), ("zp", zp)], attrs,
                    consts=("s", "zp")))


def test_dequantize_int32_float16_and_old_opsets():
    q = rng.integers(-(2 ** 20), 2 ** 20, (5, 3)).astype(np.int32)
    check(*one_node("DequantizeLinear", [("q", q), ("s", np.float32(0.001))], opset=10, consts=("s",)))
    x = (rng.standard_normal((2, 8)) * 5).astype(np.float16)
    s16 = np.float16(0.125)
    check(*one_node("QuantizeLinear", [("x", x), ("s", s16), ("zp", np.int8(-1))], opset=19, consts=("s", "zp")))
    check(*one_node("DequantizeLinear", [("q", qrand(np.uint8, (2, 8))), ("s", s16)], opset=19, consts=("s",)))
    # opset 10: per-tensor only, scale and zero point fed as graph inputs
    check(*one_node("QuantizeLinear", [("x", x.astype(np.float32)), ("s", np.array(0.2, np.float32)),
                                       ("zp", np.array(128, np.uint8))],
                    opset=10))


def test_dynamic_quantize_linear():
    for x in ((rng.standard_normal((3, 5)) * 3).astype(np.float32),
              rng.uniform(1, 4, (7,)).astype(np.float32),  # all positive: the range is stretched to 0
              -rng.uniform(1, 4, (2, 2)).astype(np.float32)):
        check(*one_node("DynamicQuantizeLinear", [("x", x)], opset=11, n_out=3))


@pytest.mark.parametrize("code, message", [
    (TensorProto.FLOAT6E2M3, r"QuantizeLinear node: output_dtype=FLOAT6E2M3 is not supported \(int8, uint8, int16, "
                             r"uint16, the 4- and 2-bit integers, float8 and float4e2m1\)"),
    (TensorProto.FLOAT8E8M0, r"quantizing to f8e8m0 is not supported \(int8, uint8, int16, uint16, the 4- and 2-bit "
                             r"integers, float8 and float4e2m1\)")])
def test_unsupported_output_dtype(code, message):
    model, _ = one_node("QuantizeLinear", [("x", np.ones((2, 2), np.float32)), ("s", np.float32(1))],
                        {"output_dtype": code}, consts=("s",))
    with pytest.raises(UnsupportedError, match=message):
        import_onnx(model)


def test_quantize_errors():
    x = np.ones((2, 4), np.float32)
    model, _ = one_node("QuantizeLinear", [("x", x), ("s", np.float32(1)), ("zp", np.int8(0))],
                        {"output_dtype": TensorProto.UINT8}, consts=("s", "zp"))
    with pytest.raises(PdcError, match="differs from the zero point's dtype"):
        import_onnx(model)
    model, _ = one_node("QuantizeLinear", [("x", x), ("s", np.ones(3, np.float32))], consts=("s",))
    with pytest.raises(PdcError, match="per-axis scale has 3 values"):
        import_onnx(model)
    model, _ = one_node("DequantizeLinear", [("q", np.ones((2, 4), np.uint8)), ("s", np.ones((2, 3), np.float32))],
                        {"block_size": 2}, consts=("s",))
    with pytest.raises(PdcError, match="expected ceil"):
        import_onnx(model)


# ---- QLinearMatMul / QLinearConv ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("shapes", [((4, 6), (6, 5)), ((2, 4, 6), (6, 3)), ((2, 3, 4), (2, 4, 5))])
def test_qlinear_matmul(dtype, shapes):
    a, b = qrand(dtype, shapes[0]), qrand(dtype, shapes[1])
    zp = np.array(5 if dtype == np.uint8 else -3, dtype)
    inputs = [("a", a), ("as", np.float32(0.02)), ("az", zp), ("b", b), ("bs", np.float32(0.03)), ("bz", zp),
              ("ys", np.float32(0.9)), ("yz", np.array(7, dtype))]
    check(*one_node("QLinearMatMul", inputs, opset=10, consts=("as", "az", "bs", "bz", "ys", "yz")))


def test_qlinear_matmul_per_column():
    a, b = qrand(np.uint8, (3, 8)), qrand(np.int8, (8, 4))
    inputs = [("a", a), ("as", np.float32(0.02)), ("az", np.uint8(128)), ("b", b),
              ("bs", rng.uniform(0.01, 0.05, 4).astype(np.float32)), ("bz", np.zeros(4, np.int8)),
              ("ys", np.float32(0.5)), ("yz", np.uint8(100))]
    check(*one_node("QLinearMatMul", inputs, opset=10, consts=("as", "az", "bs", "bz", "ys", "yz")))


@pytest.mark.parametrize("attrs", [{}, {"pads": [1, 1, 1, 1], "strides": [2, 2]},
                                   {"group": 2, "dilations": [2, 1]}, {"auto_pad": "SAME_UPPER"}])
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv(attrs, per_channel):
    x = qrand(np.uint8, (2, 4, 7, 6))
    w = qrand(np.int8, (6, 4 // attrs.get("group", 1), 3, 3))
    ws = rng.uniform(0.001, 0.01, 6).astype(np.float32) if per_channel else np.float32(0.004)
    wz = np.zeros(6, np.int8) if per_channel else np.int8(0)
    bias = rng.integers(-2000, 2000, 6).astype(np.int32)
    inputs = [("x", x), ("xs", np.float32(0.05)), ("xz", np.uint8(120)), ("w", w), ("ws", ws), ("wz", wz),
              ("ys", np.float32(0.3)), ("yz", np.uint8(110)), ("B", bias)]
    check(*one_node("QLinearConv", inputs, attrs, opset=10, consts=("xs", "xz", "w", "ws", "wz", "ys", "yz", "B")))


def test_qlinear_conv_1d_int8_without_bias():
    x, w = qrand(np.int8, (1, 3, 9)), qrand(np.int8, (2, 3, 4))
    inputs = [("x", x), ("xs", np.float32(0.1)), ("xz", np.int8(-5)), ("w", w), ("ws", np.float32(0.01)),
              ("wz", np.int8(0)), ("ys", np.float32(0.2)), ("yz", np.int8(3))]
    check(*one_node("QLinearConv", inputs, {"pads": [2, 1]}, opset=10, consts=("xs", "xz", "ws", "wz", "ys", "yz")))
