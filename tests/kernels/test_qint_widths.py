"""The portable int8 kernels' arithmetic widths, on every target, against the NumPy references bit for bit:
- qconv / qmatmul sum x * w + bias in int32 where max|x| * sum|w| + |bias| fits it (the requantization
  then converts an int32 to float: the same float as from the int64), in int64 where only the bias
  pushes the sum past int32 (`_bias64`: the accumulators wrap as numpy's cast wraps them) or the
  bias comes at run time;
- quantize_linear rounds outputs of up to 16 bits without rintf (clamp, then the 1.5 * 2^23
  rounding): ties to even, saturation, infinities and NaN (0) as the reference gives them."""
from __future__ import annotations

import numpy as np
import pytest

from pdc.ir import dtypes
from pdc.ir.ops.qint import requant_scale
from targets import TARGETS, options, require
from test_qint_kernels import PORTABLE, Const, QLayer, check_qlayers

ALL_TARGETS = list(TARGETS)
BIG_BIAS = np.array([2 ** 31 - 10, -2 ** 31 + 5, 1000], np.int32)  # |dot| + |bias| past int32 in two channels


def _weights(rng, shape) -> np.ndarray:
    return rng.choice(np.array([-127, 127, 3, -1], np.int8), size=shape)


def _bias_layers() -> list[QLayer]:
    """qconv / qmatmul whose dot products fit int32 but not with their bias, requantized and as
    accumulators (these wrap), and the same with the bias as a run-time input."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (1, 2, 5, 5)).astype(np.uint8)
    w = _weights(rng, (3, 2, 3, 3))
    a = rng.integers(-128, 128, (4, 18)).astype(np.int8)
    b = _weights(rng, (18, 3))
    scales = [requant_scale(2.0 ** -25), requant_scale(2.0 ** -25), requant_scale(1e-4)]
    conv = {"x_zero": 7, "pads": [1, 1, 1, 1]}
    layers = []
    for bias in (Const(BIG_BIAS), BIG_BIAS):  # constant (folded into the table), then at run time
        layers += [
            QLayer("qconv", [x, Const(w), bias], {**conv, "scale": scales, "y_zero": -3, "y_dtype": dtypes.int8}),
            QLayer("qconv", [x, Const(w), bias], {**conv, "y_dtype": dtypes.int32}),
            QLayer("qmatmul", [a, Const(b), bias], {"a_zero": -2, "scale": scales, "y_zero": 100,
                                                   "y_dtype": dtypes.uint8}),
            QLayer("qmatmul", [a, Const(b), bias], {"a_zero": -2, "y_dtype": dtypes.int32}),
        ]
    return layers


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_sums_past_int32_through_the_bias(target):
    require(target)
    layers = _bias_layers()
    source = check_qlayers(layers, target, force=PORTABLE, **options(target))
    assert "pdc_qi_conv_u8_i8_int32_bias64" in source and "pdc_qi_matmul_i8_i32_int32_bias64" in source


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_int32_sums_requantize_from_int32(target):
    require(target)
    rng = np.random.default_rng(12)
    x = rng.integers(-128, 128, (1, 3, 6, 6)).astype(np.int8)
    layer = QLayer("qconv", [x, Const(_weights(rng, (4, 3, 3, 3))), Const(np.array([5, -9000, 0, 70000], np.int32))],
                   {"x_zero": -128, "scale": [requant_scale(3e-5)], "y_zero": 4, "y_dtype": dtypes.int8})
    source = check_qlayers([layer], target, force=PORTABLE, **options(target))
    assert "pdc_qi_rq32(acc + b" in source and "pdc_qi_conv_i8_i8_int32(" in source


def _quantize_inputs(scale: float, lo: int, hi: int, zero: int) -> np.ndarray:
    """Ties (k + 1/2) over and past the output range, the values around its edges, infinities, NaN, -0."""
    ties = (np.arange(lo - zero - 3, hi - zero + 3, max(1, (hi - lo) // 600)) + 0.5) * scale
    edges = np.array([lo - zero, hi - zero], np.float64)[:, None] + np.array([-0.51, -0.5, -0.49, 0.49, 0.5, 0.51])
    special = [np.nan, np.inf, -np.inf, -0.0, 1e-40, 1e9, -1e9, 3e38]
    return np.concatenate([ties, (edges * scale).ravel(), special]).astype(np.float32)


def _quantize_layers() -> list[QLayer]:
    layers = []
    for dt, zero in ((np.int8, -3), (np.uint8, 131), (np.int16, 1000), (np.uint16, 7)):
        info = np.iinfo(dt)
        for scale in (0.5, 1.0, 0.37):
            x = _quantize_inputs(scale, int(info.min), int(info.max), zero)
            # reversed too: the infinities, NaN and -0 at the start, in a vector loop's lanes, not its tail
            for v in (x, x[::-1].copy()):
                layers.append(QLayer("quantize_linear", [v, Const(np.float32(scale)), Const(np.array(zero, dt))]))
        # scale and zero point at run time
        layers.append(QLayer("quantize_linear", [x, np.float32(0.37), np.array(zero, dt)]))
    # per axis: a zero point per row
    x = np.stack([_quantize_inputs(0.25, -128, 127, z)[:64] for z in (-128, 0, 127)])
    layers.append(QLayer("quantize_linear", [x, Const(np.full(3, 0.25, np.float32)),
                                             Const(np.array([-128, 0, 127], np.int8))], {"axis": 0}))
    return layers


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_quantize_linear_rounds_like_the_reference(target):
    require(target)
    source = check_qlayers(_quantize_layers(), target, **options(target))
    assert "pdc_quantize_round(" in source and "rintf(" not in source
