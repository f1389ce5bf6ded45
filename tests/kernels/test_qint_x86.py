"""The x86 int8 kernels (pdc/codegen/kernels/x86/qint.py: vpdpbusd) against the NumPy references of
qconv / qmatmul BIT FOR BIT (np.array_equal, same dtype), on x86-avx512, each kernel path forced
with PDC_FORCE_PATH so that every draw takes it:

- qconv=vnni: the implicit GEMM over the packed input, on dense, grouped and depthwise layers
  (kernels 1..7, strides and dilations 1..3, asymmetric pads, auto_pad), each of its packs (quads
  over taps for few channels, rows up to 64 columns, the general one) on its edges;
- qconv=vnni-pointwise: 1x1 stride-1 unpadded layers as a plain GEMM;
- qconv=vnni-depthwise: one input channel per group (channel multipliers 1..3 too), each of its
  modes (column stride 1 and 2 read in place, other strides / dilations as laid-out quads), on
  narrow and on wide (> 64 columns) images;
- qconv=vnni-window: depthwise with one output pixel whose window is the whole unpadded plane
  (global average pooling made integer), planes past 64 bytes;
- qmatmul=vnni: a [..., K] x b [K, N], K and N off the 4 / 16 multiples;
- qadd=avx512: a residual add of same-shape tensors in float32 lanes;
- int8-dot=emulated: the same kernels with vpdpbusd emulated by vpmaddwd (the code a CPU
  without AVX512-VNNI runs).
Draws mix int8 / uint8 inputs and outputs, zero points, per-tensor / per-channel scales
(natural, log-uniform, extreme, dyadic ones with many ties), clamps and int32
accumulator outputs (the strategies of test_qint_kernels.py). Each draw asserts that every layer
took the forced path (a silent fallback to the portable kernel would prove nothing); a runtime
bias, which the x86 kernels leave to the portable one, is made a constant for that reason.
PDC_FUZZ_SCALE / PDC_FUZZ_SEED scale and reseed the draws as for the other kernel properties.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import strategies as st

from pdc.ir import dtypes
from pdc.ir.ops.qint import requant_scale
from targets import require
import test_qint_kernels
from test_qint_kernels import (ACT, Const, QLayer, _acc_scale, _bias, _operands, _output_attrs, _scales, _zero,
                               check_qlayers, qadd_layer, qconv_layer, qmatmul_layer, run_qproperty)

TARGET = "x86-avx512"


@pytest.fixture(autouse=True)
def _avx512():
    require(TARGET)


def check_path(layers: list[QLayer], force: str, path: str, threads: int = 2) -> str:
    return test_qint_kernels.check_path(layers, TARGET, force, path, threads)


def run(strategy, force: str, path: str, examples: int) -> None:
    run_qproperty(strategy, TARGET, examples=examples, force=force, check=lambda layers: check_path(layers, force, path))


# ---- strategies -------------------------------------------------------------------------------------
# this file's channel ranges for test_qint_kernels.qconv_layer
CONV_CHANNELS = {"depthwise": (40, [1, 1, 1, 2, 3]), "grouped": (9, 20), "dense": (24, 40), "pointwise": (70, 70)}


@st.composite
def conv_layer(draw, kind: str, max_extent: int = 24, max_macs: int = 400_000):
    """A qconv of one kind: dense, grouped, depthwise (one input channel per group, a channel
    multiplier 1..3) or pointwise (1x1, stride 1, no padding; any groups)."""
    return draw(qconv_layer(max_extent, max_macs, kind, CONV_CHANNELS))


@st.composite
def window_layer(draw):
    """A depthwise qconv whose window is its whole unpadded input plane (one output pixel; strides
    do not matter then): channels past 16-lane blocks, multipliers 1..2, planes of 1..300 bytes."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n, c, mg = draw(st.sampled_from([1, 1, 2])), draw(st.integers(1, 40)), draw(st.sampled_from([1, 1, 2]))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 15))
    x_dt = draw(st.sampled_from(ACT))
    attrs = {"x_zero": _zero(rng, x_dt) if draw(st.integers(0, 3)) else 0, "kernel_shape": [h, w], "group": c}
    if draw(st.booleans()):
        attrs["strides"] = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    x, wt = _operands(draw, rng, x_dt, attrs["x_zero"], (n, c, h, w), (c * mg, 1, h, w))
    scale = _acc_scale(x, attrs["x_zero"], wt.reshape(c * mg, -1))
    out = _output_attrs(draw, rng, accumulators=True)
    if out["y_dtype"] is not dtypes.int32:
        attrs["scale"] = _scales(draw, rng, c * mg, draw(st.booleans()), scale)
    attrs.update(out)
    bias = _bias(draw, rng, c * mg, scale)
    return QLayer("qconv", [x, Const(wt)] + ([bias] if bias is not None else []), attrs)


@st.composite
def same_shape_qadd(draw):
    """test_qint_kernels' qadd draws (natural, log-uniform, extreme and dyadic ratios, clamps)
    with b and y the shape of a, sometimes large."""
    layer = draw(qadd_layer())
    a, b = layer.inputs
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    shape = list(a.shape) if a.size > 1 or draw(st.booleans()) else [draw(st.integers(1, 200_000))]
    if draw(st.integers(0, 3)) == 0:
        shape = [1, draw(st.integers(1, 64)), draw(st.integers(1, 60)), draw(st.integers(1, 60))]

    def full(v):
        info = np.iinfo(v.dtype)
        return rng.integers(int(info.min), int(info.max) + 1, shape).astype(v.dtype)
    return QLayer("qadd", [full(a), full(b)], layer.attrs)


def layers(one, max_size: int):
    return st.lists(one, min_size=1, max_size=max_size)


ANY_CONV = st.one_of(conv_layer("dense"), conv_layer("dense"), conv_layer("grouped"), conv_layer("depthwise"),
                     conv_layer("pointwise"))


# ---- properties ---------------------------------------------------------------------------------------
def test_vnni_implicit_gemm_matches_reference():
    run(layers(ANY_CONV, 5), "qconv=vnni", "qconv/vnni", examples=24)


def test_vnni_pointwise_matches_reference():
    run(layers(conv_layer("pointwise"), 5), "qconv=vnni-pointwise", "qconv/vnni-pointwise", examples=12)


def test_vnni_depthwise_matches_reference():
    run(layers(conv_layer("depthwise"), 5), "qconv=vnni-depthwise", "qconv/vnni-depthwise", examples=16)


def test_vnni_window_matches_reference():
    run(layers(window_layer(), 5), "qconv=vnni-window", "qconv/vnni-window", examples=12)


def test_vnni_depthwise_wide_images_match_reference():
    """Images up to 200 columns: rows of several 64-byte vectors, tiles crossing grid rows."""
    run(layers(conv_layer("depthwise", max_extent=200), 3), "qconv=vnni-depthwise", "qconv/vnni-depthwise",
        examples=10)


def test_vnni_qmatmul_matches_reference():
    run(layers(qmatmul_layer(max_macs=400_000), 6), "qmatmul=vnni", "qmatmul/vnni", examples=16)


def test_qadd_matches_reference():
    run(layers(same_shape_qadd(), 5), "qadd=avx512", "qadd/avx512", examples=12)


def test_qadd_on_every_pair_of_values():
    """Every (a, b) code pair of each type combination, on dyadic ratios (exact ties, negative ones
    too) and on ratios with full float32 mantissas."""
    layers_ = []
    for i, (a_dt, b_dt, y_dt) in enumerate([(np.int8, np.int8, dtypes.int8), (np.uint8, np.int8, dtypes.uint8),
                                            (np.int8, np.uint8, dtypes.int8), (np.uint8, np.uint8, dtypes.uint8)]):
        a = np.repeat(np.arange(256) + np.iinfo(a_dt).min, 256).astype(a_dt).reshape(256, 256)
        b = np.tile(np.arange(256) + np.iinfo(b_dt).min, 256).astype(b_dt).reshape(256, 256)
        for ra, rb in ((0.25, 0.75), (0.625, 0.25), (0.25, 0.375), (requant_scale(0.3), requant_scale(0.4))):
            layers_.append(QLayer("qadd", [a, b], {"a_zero": [-5, 131, 0, 126][i], "b_zero": [3, -2, 128, 0][i],
                                                  "a_scale": ra, "b_scale": rb,
                                                  "y_zero": [0, 128, -3, 17][i], "y_dtype": y_dt}))
    source = check_qlayers(layers_, TARGET, force="qadd=avx512")
    assert source.count("/* path: qadd/avx512 */") == len(layers_)


def test_emulated_dot_products_match_reference():
    """The AVX-512BW emulation of vpdpbusd (what runs without AVX512-VNNI), every kernel kind."""
    run(layers(st.one_of(ANY_CONV, conv_layer("depthwise")), 4), "qconv=vnni,int8-dot=emulated", "qconv/vnni",
        examples=6)
    run(layers(conv_layer("depthwise", max_extent=100), 3), "qconv=vnni-depthwise,int8-dot=emulated",
        "qconv/vnni-depthwise", examples=4)
    run(layers(conv_layer("pointwise"), 3), "qconv=vnni-pointwise,int8-dot=emulated", "qconv/vnni-pointwise",
        examples=3)
    run(layers(window_layer(), 3), "qconv=vnni-window,int8-dot=emulated", "qconv/vnni-window", examples=3)
    run(layers(qmatmul_layer(), 4), "qmatmul=vnni,int8-dot=emulated", "qmatmul/vnni", examples=4)


# ---- fixed layers: model-sized shapes, threads, the paths' edges ---------------------------------------------
def _conv(seed, x_shape, w_shape, x_dt=np.int8, y_dt=dtypes.int8, per_channel=True, bias=True, y_zero=-5, **attrs):
    rng = np.random.default_rng(seed)
    m = w_shape[0]
    x = rng.integers(np.iinfo(x_dt).min, np.iinfo(x_dt).max + 1, x_shape).astype(x_dt)
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    a = {"x_zero": _zero(rng, x_dt), **attrs}
    if y_dt is not dtypes.int32:
        k = math.prod(w_shape[1:])
        reals = 1.0 / (40 * math.sqrt(k)) * 10 ** rng.uniform(-0.5, 0.5, m if per_channel else 1)
        a.update(scale=[requant_scale(float(v)) for v in reals], y_zero=y_zero, y_dtype=y_dt)
    else:
        a["y_dtype"] = y_dt
    ins = [x, Const(w)]
    if bias:
        ins.append(Const(rng.integers(-20000, 20000, m).astype(np.int32)))
    return QLayer("qconv", ins, a)


MODEL_LAYERS = [  # ResNet / MobileNet-like, two threads
    ("qconv/vnni", _conv(1, [1, 3, 64, 64], [32, 3, 7, 7], strides=[2, 2], pads=[3, 3, 3, 3], clamp=[-128, 127])),
    ("qconv/vnni", _conv(2, [1, 64, 28, 28], [64, 64, 3, 3], pads=[1, 1, 1, 1], y_zero=-128, clamp=[-128, 127])),
    ("qconv/vnni", _conv(3, [1, 64, 29, 30], [96, 64, 3, 3], x_dt=np.uint8, y_dt=dtypes.uint8, strides=[2, 2],
                         pads=[1, 0, 1, 1], y_zero=3)),
    ("qconv/vnni", _conv(4, [1, 128, 14, 14], [128, 128, 1, 1], strides=[2, 2], per_channel=False)),
    ("qconv/vnni", _conv(5, [1, 256, 7, 7], [200, 256, 3, 3], pads=[1, 1, 1, 1])),
    ("qconv/vnni-pointwise", _conv(6, [1, 96, 56, 56], [24, 96, 1, 1])),
    ("qconv/vnni-pointwise", _conv(7, [1, 24, 56, 56], [144, 24, 1, 1], clamp=[-128, 40])),
    ("qconv/vnni-pointwise", _conv(8, [1, 320, 7, 7], [1280, 320, 1, 1], y_dt=dtypes.int32)),
    ("qconv/vnni-depthwise", _conv(9, [1, 144, 56, 56], [144, 1, 3, 3], group=144, pads=[1, 1, 1, 1])),
    ("qconv/vnni-depthwise", _conv(10, [1, 96, 57, 56], [96, 1, 3, 3], group=96, strides=[2, 2], pads=[1, 1, 1, 1])),
    ("qconv/vnni-window", _conv(11, [2, 64, 7, 7], [64, 1, 7, 7], group=64, x_dt=np.uint8, y_dt=dtypes.int32)),
    ("qconv/vnni-window", _conv(13, [1, 1280, 7, 7], [1280, 1, 7, 7], group=1280)),
    ("qconv/vnni-depthwise", _conv(14, [2, 64, 7, 7], [64, 1, 7, 7], group=64, pads=[3, 3, 3, 3], x_dt=np.uint8,
                                   y_dt=dtypes.int32)),
    ("qconv/vnni-depthwise", _conv(12, [1, 32, 33, 31], [64, 1, 5, 5], group=32, strides=[2, 1], pads=[3, 0, 1, 4],
                                   dilations=[1, 2])),
]


def _dw(seed, c, h, w, k, stride, pad, dil=1, mg=1, **kw):
    return _conv(seed, [1, c, h, w], [c * mg, 1, k, k], group=c, strides=[stride, stride], pads=[pad] * 4,
                 dilations=[dil, dil], **kw)


DEPTHWISE_MODES = [  # (column stride, dilation) 1/1, 2/1 read in place; 3/1, 1/2 as quads: kernels 3/5/7, mg 1/2
    _dw(40, 6, 9, 131, 3, 1, 1), _dw(41, 5, 8, 97, 5, 1, 2, mg=2, x_dt=np.uint8, y_dt=dtypes.uint8, y_zero=9),
    _dw(42, 4, 7, 70, 7, 1, 3, y_dt=dtypes.int32), _dw(43, 6, 12, 133, 3, 2, 1, mg=2),
    _dw(44, 5, 9, 150, 5, 2, 2, x_dt=np.uint8, y_dt=dtypes.int32), _dw(45, 4, 11, 99, 7, 2, 0, y_zero=-128),
    _dw(46, 5, 10, 140, 3, 3, 1, mg=2),
    _dw(47, 4, 9, 101, 5, 1, 4, dil=2, x_dt=np.uint8, y_dt=dtypes.uint8, y_zero=0),
    _dw(48, 3, 5, 5, 3, 1, 0), _dw(49, 3, 6, 7, 2, 2, 0, mg=2), _dw(50, 3, 4, 9, 1, 1, 0, y_dt=dtypes.int32),
    # flat grids of 2..4 vectors, cut into rows in registers
    _dw(53, 6, 14, 14, 3, 1, 1), _dw(54, 5, 28, 29, 3, 2, 1, mg=2, x_dt=np.uint8, y_dt=dtypes.uint8, y_zero=3),
    _dw(55, 4, 9, 11, 5, 1, 2, clamp=[-128, 60]),
]
for _layer, _scale in ((_dw(51, 4, 7, 90, 3, 1, 1, clamp=[-20, 100]), 3e4), (_dw(52, 4, 9, 9, 3, 2, 1), 1e5)):
    _layer.attrs["scale"] = [requant_scale(_scale)]  # products past 2^30: clamped in float32 before packing
    DEPTHWISE_MODES.append(_layer)


@pytest.mark.parametrize("emulated", [False, True])
def test_depthwise_modes_on_wide_rows(emulated):
    """Every depthwise mode on rows wider than a vector and on grids of 1..4 vectors (cut into rows
    in registers), both clamps (after the packs; in float32 where a product may pass 2^30)."""
    force = "qconv=vnni-depthwise" + (",int8-dot=emulated" if emulated else "")
    source = check_path(DEPTHWISE_MODES, force, "qconv/vnni-depthwise")
    assert all(f"pdc_qx_dwconv_{m}_" in source for m in ("s1", "s2", "q"))
    assert "_lc_" in source and re.search(r"dwconv_\w+_[iu]8_(vnni|bw)\(", source)  # both clamps


DENSE_PACKS = [  # the dense conv's packs: quads over taps (few channels), rows of <= 64 columns, the general one
    # quads over taps: column stride 2 / 1 / 3, dilation 2 (gaps in the quads), groups, 1..3 channels
    _conv(60, [1, 3, 40, 70], [20, 3, 7, 7], strides=[2, 2], pads=[3, 3, 3, 3]),
    _conv(61, [2, 2, 9, 11], [7, 2, 3, 3], pads=[1, 2, 0, 1], x_dt=np.uint8, y_dt=dtypes.int32),
    _conv(62, [1, 2, 17, 23], [10, 1, 5, 4], group=2, strides=[1, 3], pads=[2, 1, 2, 0], y_dt=dtypes.uint8, y_zero=7),
    _conv(63, [1, 1, 12, 19], [5, 1, 3, 3], dilations=[1, 2], pads=[1, 1, 1, 1]),
    _conv(72, [1, 1, 15, 30], [6, 1, 3, 3], strides=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2]),  # one column phase
    # rows: column stride 1 up to 64 columns, stride 2 up to 32, row strides 1..3, channels off quads
    _conv(64, [1, 13, 9, 62], [11, 13, 3, 3], pads=[1, 1, 1, 1], x_dt=np.uint8, y_dt=dtypes.uint8, y_zero=0),
    _conv(65, [2, 10, 11, 61], [6, 10, 3, 5], strides=[3, 2], pads=[0, 2, 1, 2], y_dt=dtypes.int32),
    _conv(66, [1, 24, 14, 14], [40, 12, 1, 1], strides=[2, 2], group=2),
    _conv(67, [1, 8, 6, 7], [12, 8, 2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
    # the general pack: rows past 64 columns, column stride 3
    _conv(68, [1, 8, 5, 80], [9, 8, 3, 3], pads=[1, 1, 1, 1]),
    _conv(69, [1, 6, 8, 40], [7, 6, 3, 3], strides=[1, 3], x_dt=np.uint8, y_dt=dtypes.uint8, y_zero=2),
]
for _layer in (_conv(70, [1, 3, 20, 33], [8, 3, 7, 7], strides=[2, 2], pads=[3, 3, 3, 3], clamp=[-30, 90]),
               _conv(71, [1, 2, 9, 40], [6, 2, 3, 3], x_dt=np.uint8, y_dt=dtypes.uint8, y_zero=4)):
    _layer.attrs["scale"] = [requant_scale(3e4)]  # tap quads: products past 2^30, clamped in float32 before packing
    DENSE_PACKS.append(_layer)


@pytest.mark.parametrize("emulated", [False, True])
def test_dense_packs(emulated):
    """Every pack of the dense conv (and the tap quads' microkernel) on the edges of its range."""
    force = "qconv=vnni" + (",int8-dot=emulated" if emulated else "")
    source = check_path(DENSE_PACKS, force, "qconv/vnni")
    assert all(f"pdc_qx_pack_{m}(" in source for m in ("taps", "rows", "quads"))
    assert all(re.search(rf"pdc_qx_conv_\d+x\d+t_{k}_(vnni|bw)\(", source) for k in ("i8", "i8_lc", "u8", "u8_lc", "i32"))


# dense tiles of 4 vectors: the epilogue packs 64 bytes at a time (int8 / uint8 outputs; the clamp on
# bytes, or in float32 before the packs where products may pass 2^30)
PACKED_EPILOGUE = [_conv(80, [1, 96, 28, 28], [24, 96, 1, 1]),
                   _conv(81, [1, 48, 20, 20], [36, 48, 3, 3], pads=[1, 1, 1, 1], x_dt=np.uint8, y_dt=dtypes.uint8,
                         y_zero=3),
                   _conv(82, [1, 64, 14, 30], [30, 64, 1, 1], y_dt=dtypes.uint8, y_zero=0, clamp=[0, 200]),
                   _conv(83, [1, 40, 24, 24], [24, 40, 3, 3], pads=[1, 1, 1, 1])]
for _layer in PACKED_EPILOGUE[2:]:
    _layer.attrs["scale"] = [requant_scale(3e4)] * len(_layer.attrs["scale"])


@pytest.mark.parametrize("emulated", [False, True])
def test_dense_packed_epilogue(emulated):
    source = check_path(PACKED_EPILOGUE, "qconv=vnni" + (",int8-dot=emulated" if emulated else ""), "qconv/vnni")
    assert all(re.search(rf"pdc_qx_conv_\d+x[48]_{k}_(vnni|bw)\(", source) for k in ("i8", "i8_lc", "u8", "u8_lc"))
    assert "perm_rows" in source


@pytest.mark.parametrize("emulated", [False, True])
def test_model_sized_layers_on_two_threads(emulated):
    source = check_qlayers([layer for _, layer in MODEL_LAYERS], TARGET, threads=2,
                           force="int8-dot=emulated" if emulated else None)
    for path in {p for p, _ in MODEL_LAYERS}:
        assert source.count(f"/* path: {path} */") == sum(p == path for p, _ in MODEL_LAYERS), path
    assert "pdc_parallel_for" in source and "pdc_parallel_slots" in source
    assert ("= pdc_qx_has_vnni() ?" in source) != emulated
    assert "perm_rows" in source  # dense tiles of 4 vectors pack their epilogue


def test_qmatmul_rows_and_columns():
    rng = np.random.default_rng(20)
    cases = []
    for i, (shape, n, a_dt) in enumerate([((1, 512), 1000, np.int8), ((1, 1280), 1000, np.uint8), ((37, 96), 33, np.int8),
                                          ((2, 5, 258), 17, np.uint8), ((3, 1), 16, np.int8)]):
        k = shape[-1]
        a = rng.integers(np.iinfo(a_dt).min, np.iinfo(a_dt).max + 1, shape).astype(a_dt)
        b = rng.integers(-127, 128, (k, n)).astype(np.int8)
        attrs = {"a_zero": _zero(rng, a_dt)}
        if i == 0:
            attrs["y_dtype"] = dtypes.int32
        else:
            reals = 1.0 / (40 * math.sqrt(k)) * 10 ** rng.uniform(-0.5, 0.5, n)
            attrs.update(scale=[requant_scale(float(v)) for v in reals], y_zero=7, y_dtype=dtypes.int8)
        cases.append(QLayer("qmatmul", [a, Const(b), Const(rng.integers(-9000, 9000, n).astype(np.int32))], attrs))
    check_path(cases, "qmatmul=vnni", "qmatmul/vnni")


def test_vnni_kernel_is_in_the_code():
    """The heuristics pick the VNNI path for a 3x3 conv and a dense layer, and the code holds vpdpbusd."""
    layers_ = [_conv(30, [1, 16, 12, 12], [32, 16, 3, 3], pads=[1, 1, 1, 1]),
               QLayer("qmatmul", [np.ones((2, 40), np.uint8), Const(np.ones((40, 24), np.int8))],
                      {"scale": [0.125], "y_dtype": dtypes.uint8})]
    source = check_qlayers(layers_, TARGET)
    assert "/* path: qconv/vnni */" in source and "/* path: qmatmul/vnni */" in source
    assert "_mm512_dpbusd_epi32" in source and 'target("avx512vnni")' in source


def test_accumulators_past_int32_are_left_to_the_portable_kernel():
    """255 * sum|w| + |bias| >= 2^31: an int32 accumulator could wrap, the reference's int64 sum
    does not; the x86 generator declines and the portable kernel (int64 sums) computes the layer."""
    x = np.full((1, 8192, 3, 3), 255, np.uint8)
    w = np.full((2, 8192, 3, 3), -128, np.int8)
    layer = QLayer("qconv", [x, Const(w)], {"scale": [requant_scale(2e-9)], "y_dtype": dtypes.int8})
    source = check_qlayers([layer], TARGET)
    assert "path: qconv/vnni" not in source


def test_avx2_targets_keep_the_portable_kernel(tmp_path):
    layer = _conv(31, [1, 8, 10, 10], [16, 8, 3, 3], pads=[1, 1, 1, 1])
    from test_qint_kernels import build_graph

    import pdc
    g, feeds = build_graph([layer])
    module = pdc.compile(g, target="x86-avx2", out_dir=str(tmp_path / "b"))
    assert [k.get("path") for k in module.manifest["kernels"]] in ([None], ["qconv/portable"])
