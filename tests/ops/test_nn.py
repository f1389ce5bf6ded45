"""Gemm, MatMul, MatMulInteger, Softmax / LogSoftmax / Hardmax, Dropout, Flatten, DepthToSpace and
SpaceToDepth against ONNX Runtime, across their opset forms."""
import numpy as np
import pytest

from nn_helpers import check, import_only, model_of, randn, rng, run_pdc
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import PdcError, UnsupportedError


# ---- Gemm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("c_shape", [None, (), (1,), (5,), (3, 1), (1, 5), (3, 5)])
@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.5, "beta": 2.0}, {"transA": 1}, {"transB": 1},
                                   {"transA": 1, "transB": 1, "alpha": -1.5, "beta": 0.0}])
def test_gemm(c_shape, attrs):
    a = randn(4, 3) if attrs.get("transA") else randn(3, 4)
    b = randn(5, 4) if attrs.get("transB") else randn(4, 5)
    inputs = [("a", a), ("b", b)] + ([] if c_shape is None else [("c", randn(*c_shape))])
    check("Gemm", inputs, attrs, opset=13)


def test_gemm_opset7_and_int():
    check("Gemm", [("a", randn(3, 4)), ("b", randn(4, 2)), ("c", randn(2))], {"beta": 0.5}, opset=7)
    a = rng.integers(-5, 5, (3, 4)).astype(np.int32)
    b = rng.integers(-5, 5, (4, 2)).astype(np.int32)
    c = rng.integers(-5, 5, (2,)).astype(np.int32)
    (y,) = run_pdc(*model_of("Gemm", [("a", a), ("b", b), ("c", c)], {"alpha": 2.0}, opset=13))
    np.testing.assert_array_equal(y, 2 * (a @ b) + c)
    assert y.dtype == np.int32


def test_gemm_errors():
    with pytest.raises(PdcError, match="inner dimensions"):
        import_only("Gemm", [("a", randn(3, 4)), ("b", randn(3, 5))], opset=13)
    with pytest.raises(PdcError, match="does not broadcast"):
        import_only("Gemm", [("a", randn(3, 4)), ("b", randn(4, 5)), ("c", randn(4))], opset=13)


# ---- MatMul ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4,)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,)),
                                   ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 2)), ((2, 3, 4), (4, 5))])
def test_matmul(sa, sb):
    check("MatMul", [("a", randn(*sa)), ("b", randn(*sb))], opset=13)


def test_matmul_types_and_symbols():
    check("MatMul", [("a", randn(2, 3, dtype=np.float16)), ("b", randn(3, 4, dtype=np.float16))], opset=13)
    a = rng.integers(-9, 9, (2, 3)).astype(np.int64)
    b = rng.integers(-9, 9, (3, 4)).astype(np.int64)
    check("MatMul", [("a", a), ("b", b)], opset=13)
    model, _ = model_of("MatMul", [("a", randn(2, 3, 4)), ("b", randn(4, 5))], opset=13, dims={"a": ["B", "S", 4]})
    assert import_onnx(model).outputs[0].type.shape == ("B", "S", 5)
    with pytest.raises(PdcError, match="inner dimensions differ"):
        import_only("MatMul", [("a", randn(2, 3)), ("b", randn(4, 5))], opset=13)


@pytest.mark.parametrize("dt_a,dt_b", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
def test_matmul_integer(dt_a, dt_b):
    """Against the exact int32 product: ONNX Runtime's uint8 x int8 kernel on AVX2 without VNNI adds
    pairs of products in int16 with saturation (vpmaddubsw), so it is off for large operands."""
    a = rng.integers(np.iinfo(dt_a).min, np.iinfo(dt_a).max, (2, 3, 4)).astype(dt_a)
    b = rng.integers(np.iinfo(dt_b).min, np.iinfo(dt_b).max, (4, 5)).astype(dt_b)
    az, bz = np.array(3, dt_a), np.arange(5).astype(dt_b)
    (y,) = run_pdc(*model_of("MatMulInteger", [("a", a), ("b", b)], opset=10))
    np.testing.assert_array_equal(y, a.astype(np.int32) @ b.astype(np.int32))
    (y,) = run_pdc(*model_of("MatMulInteger", [("a", a), ("b", b), ("az", az), ("bz", bz)], opset=10,
                             consts=("az", "bz")))
    np.testing.assert_array_equal(y, (a.astype(np.int32) - az.astype(np.int32)) @ (b.astype(np.int32) - bz))


def test_matmul_integer_per_row_zero_point():
    a = rng.integers(0, 255, (3, 4)).astype(np.uint8)
    b = rng.integers(0, 255, (4, 2)).astype(np.uint8)
    az = np.array([1, 2, 3], np.uint8)
    (y,) = run_pdc(*model_of("MatMulInteger", [("a", a), ("b", b), ("az", az)], opset=10, consts=("az",)))
    np.testing.assert_array_equal(y, (a.astype(np.int32) - az[:, None]) @ b.astype(np.int32))


# ---- Softmax family --------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -2])
def test_softmax_family(op, opset, axis):
    x = randn(2, 3, 4)
    if op == "Hardmax":
        x[0, 1, :2] = 5.0  # ties: the first maximum wins
    check(op, [("x", x)], {} if axis is None else {"axis": axis}, opset=opset)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_old_opset_symbolic_and_large(op):
    # coerced to 2-D with a dynamic batch: flatten -> op -> reshape(shape(x))
    check(op, [("x", randn(2, 3, 4) * 100)], {"axis": 1}, opset=11, dims={"x": ["N", 3, 4]})
    check(op, [("x", randn(2, 3, 1) * 100)], {"axis": 1}, opset=11)  # trailing ones: no reshape needed
    g, _ = import_only(op, [("x", randn(2, 3, 1))], {"axis": 1}, opset=11)
    assert [n.op for n in g.nodes] == [op.lower().replace("logs", "log_s")]


def test_softmax_half():
    check("Softmax", [("x", randn(3, 7, dtype=np.float16))], {}, opset=13)


# ---- Dropout ---------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [7, 10, 12, 13])
def test_dropout_inference(opset):
    attrs = {"ratio": 0.3} if opset < 12 else {}
    check("Dropout", [("x", randn(2, 3))], attrs, opset=opset)
    # the mask keeps everything (ORT answers all false before opset 12; ONNX's reference, all true)
    x = randn(2, 3)
    y, mask = run_pdc(*model_of("Dropout", [("x", x)], attrs, opset=opset, n_out=2))
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == (np.float32 if opset < 10 else np.bool_) and mask.shape == x.shape and mask.all()


def test_dropout_ratio_and_training_mode_inputs():
    x = randn(2, 3)
    inputs = [("x", x), ("r", np.array(0.4, np.float32)), ("t", np.array(False))]
    y, mask = run_pdc(*model_of("Dropout", inputs, opset=13, n_out=2, consts=("r", "t")))
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
    with pytest.raises(UnsupportedError, match="training_mode=true is not supported"):
        import_only("Dropout", [("x", x), ("r", np.array(0.4, np.float32)), ("t", np.array(True))], opset=13,
                    consts=("r", "t"))
    with pytest.raises(UnsupportedError, match="training_mode must be a constant"):
        import_only("Dropout", [("x", x), ("r", np.array(0.4, np.float32)), ("t", np.array(True))], opset=13)


# ---- Flatten / DepthToSpace / SpaceToDepth ---------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, 3, 4, -1, -2, -4])
def test_flatten(axis):
    check("Flatten", [("x", randn(2, 3, 4, 5))], {"axis": axis}, opset=13)


def test_flatten_symbolic_and_errors():
    model, _ = model_of("Flatten", [("x", randn(2, 3, 4))], {"axis": 1}, opset=13, dims={"x": ["N", 3, 4]})
    assert import_onnx(model).outputs[0].type.shape == ("N", 12)
    with pytest.raises(PdcError, match="axis 4 is out of range"):
        import_only("Flatten", [("x", randn(2, 3, 4))], {"axis": 4}, opset=13)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    check("DepthToSpace", [("x", randn(2, 8, 3, 2))], {"blocksize": 2, "mode": mode}, opset=13)


def test_space_to_depth():
    check("SpaceToDepth", [("x", randn(2, 3, 4, 6))], {"blocksize": 2}, opset=13)
    # opset 28 adds `mode`; each mode inverts DepthToSpace in the same mode
    x = randn(1, 2, 4, 6)
    for mode in ("DCR", "CRD"):
        (d,) = run_pdc(*model_of("SpaceToDepth", [("x", x)], {"blocksize": 2, "mode": mode}, opset=28))
        (back,) = run_pdc(*model_of("DepthToSpace", [("d", d)], {"blocksize": 2, "mode": mode}, opset=28))
        np.testing.assert_array_equal(back, x)
    with pytest.raises(PdcError, match="height 5 is not divisible by 2"):
        import_only("SpaceToDepth", [("x", randn(1, 2, 5, 6))], {"blocksize": 2}, opset=13)
