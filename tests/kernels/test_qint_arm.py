"""The AArch64 NEON int8 kernels (pdc/codegen/kernels/arm/qint.py) against the NumPy references of
qconv / qmatmul BIT FOR BIT (np.array_equal, same dtype), on arm64 under qemu-aarch64, each kernel
path forced with PDC_FORCE_PATH so that every draw takes it:

- qconv=neon-gemm: the im2col GEMM over the packed input, on dense, grouped and depthwise layers
  (kernels 1..7, strides and dilations 1..3, asymmetric pads, auto_pad);
- qconv=neon-pointwise: 1x1 stride-1 unpadded layers, the packed planes read in place;
- qconv=neon-depthwise: one input channel per group (channel multipliers 1..3 too);
- qmatmul=neon: a [..., K] x b [K, N], K and N off the 4 / 16 multiples;
- qadd=neon: same-shape operands (residual adds), any zero points, multipliers and shifts;
each with the ISA picked at run time (qemu's CPU has dotprod: SDOT) and with int8-dot=emulated
(SMULL/SMLAL/SADALP only: the code a core without dotprod runs).
Draws mix int8 / uint8 inputs and outputs, zero points, per-tensor / per-channel scales
(natural, log-uniform, extreme, dyadic ones with many ties), clamps and int32 accumulator outputs (the strategies of test_qint_kernels.py); weights over
[-128, 127] (the unpaired SMULL form) or, in half of the draws, pdc's symmetric [-127, 127] (two
products per int16 lane). Each draw asserts that every layer took the forced path (a silent
fallback to the portable kernel would prove nothing); a runtime bias, which the NEON kernels leave
to the portable one, is made a constant for that reason. PDC_FUZZ_SCALE / PDC_FUZZ_SEED scale and
reseed the draws as for the other kernel properties.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import strategies as st

from pdc.ir import dtypes
from targets import examples, require
import test_qint_kernels
from test_qint_kernels import (Const, QLayer, _ints, _zero, build_graph, check_qlayers, const_bias, draws, qadd_layer,
                               qconv_layer, qmatmul_layer, run_qproperty)

TARGET = "arm64"
EMULATED = "int8-dot=emulated"


def check_path(layers: list[QLayer], force: str, path: str, threads: int = 2) -> str:
    """test_qint_kernels.check_path on arm64, and the dispatch: both ISAs, or the mlal kernels alone."""
    source = test_qint_kernels.check_path(layers, TARGET, force, path, threads)
    if path in ("qconv/neon-gemm", "qconv/neon-pointwise", "qmatmul/neon"):
        assert ("pdc_qa_has_dot()" in source) == (EMULATED not in force)
    return source


def run(strategy, force: str, path: str, count: int) -> None:
    run_qproperty(strategy, TARGET, examples=examples(TARGET, count), force=force,
                  check=lambda layers: check_path(layers, force, path))


@pytest.fixture(autouse=True)
def _arm64():
    require(TARGET)


# ---- strategies ---------------------------------------------------------------------------------------
def _symmetric(draw, layer: QLayer) -> QLayer:
    """In half of the draws the weights avoid -128, as pdc's quantizer's do (paired products)."""
    if draw(st.booleans()):
        w = layer.inputs[1]
        w.value = np.maximum(w.value, -127).astype(np.int8)
    return layer


# this file's channel ranges for test_qint_kernels.qconv_layer
CONV_CHANNELS = {"depthwise": (24, [1, 1, 1, 2, 3]), "grouped": (9, 20), "dense": (20, 30), "pointwise": (40, 40)}


@st.composite
def conv_layer(draw, kind: str, max_extent: int = 16, max_macs: int = 120_000):
    """A qconv of one kind: dense, grouped, depthwise (one input channel per group, a channel
    multiplier 1..3) or pointwise (1x1, stride 1, no padding; any groups)."""
    return _symmetric(draw, draw(qconv_layer(max_extent, max_macs, kind, CONV_CHANNELS)))


@st.composite
def matmul_layer(draw):
    return _symmetric(draw, draw(qmatmul_layer(max_macs=150_000)))


@st.composite
def add_layer(draw):
    """qadd_layer's zero points, ratios (natural, log-uniform, extreme, dyadic) and
    outputs, on same-shape operands (a residual add: what the NEON qadd takes)."""
    layer = draw(qadd_layer())
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    shape = np.broadcast_shapes(*(np.shape(x) for x in layer.inputs))
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    layer.inputs = [_ints(rng, x.dtype.type, shape) for x in layer.inputs]
    return layer


DENSE = st.one_of(conv_layer("dense"), conv_layer("grouped"), conv_layer("depthwise"))


# ---- properties ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("isa", ["dispatch", "emulated"])
def test_gemm_path(isa):
    """Every conv kind through the im2col GEMM."""
    force = "qconv=neon-gemm" + (f",{EMULATED}" if isa == "emulated" else "")
    run(draws(DENSE, 3), force, "qconv/neon-gemm", 10)


@pytest.mark.parametrize("isa", ["dispatch", "emulated"])
def test_pointwise_path(isa):
    force = "qconv=neon-pointwise" + (f",{EMULATED}" if isa == "emulated" else "")
    run(draws(conv_layer("pointwise"), 3), force, "qconv/neon-pointwise", 8)


def test_depthwise_path():
    run(draws(conv_layer("depthwise", max_extent=24), 4), "qconv=neon-depthwise", "qconv/neon-depthwise", 10)


@pytest.mark.parametrize("isa", ["dispatch", "emulated"])
def test_qmatmul_path(isa):
    force = "qmatmul=neon" + (f",{EMULATED}" if isa == "emulated" else "")
    run(draws(matmul_layer(), 4), force, "qmatmul/neon", 8)


def test_qadd_path():
    run(draws(add_layer(), 5), "qadd=neon", "qadd/neon", 10)


# ---- fixed layers: the shapes and splits a random draw reaches rarely -----------------------------------
def _conv(seed, x_shape, w_shape, x_dt=np.int8, y_dt=dtypes.int8, wmin=-127, per_channel=True, scale=None, **attrs):
    """A layer like the quantizer's: symmetric weights, per-channel scales of a real net."""
    from pdc.ir.ops.qint import requant_scale
    rng = np.random.default_rng(seed)
    m = w_shape[0]
    reals = 10 ** rng.uniform(-4.5, -2.5, m if per_channel else 1)
    a = {"x_zero": _zero(rng, x_dt), "scale": scale or [requant_scale(float(v)) for v in reals],
         "y_zero": 3, "y_dtype": y_dt, **attrs}
    return QLayer("qconv", [rng.integers(np.iinfo(x_dt).min, np.iinfo(x_dt).max + 1, x_shape).astype(x_dt),
                            Const(rng.integers(wmin, 128, w_shape).astype(np.int8)),
                            Const(rng.integers(-5000, 5000, m).astype(np.int32))], a)


# layers the threads split: channel chunks (few pixel blocks), several pixel blocks, batch 2
THREADED = [
    _conv(1, [1, 64, 5, 5], [96, 64, 3, 3], pads=[1, 1, 1, 1], clamp=[3, 100]),       # nmc > 1
    _conv(2, [2, 16, 30, 31], [24, 16, 3, 3], x_dt=np.uint8, strides=[2, 2], pads=[0, 1, 1, 0]),
    _conv(3, [1, 40, 28, 28], [48, 40, 1, 1], y_dt=dtypes.uint8),                     # pointwise, big
    _conv(4, [2, 48, 17, 19], [48, 1, 3, 3], group=48, pads=[1, 1, 1, 1], wmin=-128),  # depthwise
    _conv(5, [1, 12, 9, 40], [8, 12, 1, 1], strides=[1, 3]),                           # 1x1 stride 3 (im2col)
]


@pytest.mark.parametrize("isa", ["dispatch", "emulated"])
def test_threaded_layers(isa):
    force = "" if isa == "dispatch" else EMULATED
    source = check_qlayers([const_bias(x) for x in THREADED], TARGET, threads=2, force=force or None)
    assert "pdc_parallel_slots(" in source
    paths = re.findall(r"/\* path: (\S+) \*/", source)
    assert paths == ["qconv/neon-gemm", "qconv/neon-gemm", "qconv/neon-pointwise", "qconv/neon-depthwise",
                     "qconv/neon-gemm"], paths


def test_quantizer_like_layers_single_thread():
    """The heuristics' own choices (no forcing), one thread: mobilenet-like shapes, int8 codes,
    ReLU6-like clamps, and scales that saturate most outputs."""
    layers = [
        _conv(6, [1, 16, 14, 14], [48, 16, 1, 1], clamp=[-128, 90]),
        _conv(7, [1, 48, 14, 14], [48, 1, 3, 3], group=48, pads=[1, 1, 1, 1], strides=[2, 2]),
        _conv(8, [1, 3, 23, 23], [16, 3, 3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        _conv(9, [1, 24, 7, 7], [20, 24, 1, 1], scale=[0.5] * 20),   # saturating outputs, ties
        _conv(10, [1, 32, 7, 7], [32, 1, 7, 7], group=32),   # a global average pool, as the quantizer's
    ]
    layers[-1].attrs = {"x_zero": -128, "kernel_shape": [7, 7], "group": 32, "y_dtype": dtypes.int32}
    source = check_qlayers(layers, TARGET, threads=1)
    paths = re.findall(r"/\* path: (\S+) \*/", source)
    assert paths == ["qconv/neon-pointwise", "qconv/neon-depthwise", "qconv/neon-gemm", "qconv/neon-pointwise",
                     "qconv/neon-depthwise"], paths


def test_runtime_dispatch_without_dotprod(tmp_path):
    """One bundle, both ISAs: run under qemu's Cortex-A53 (no dotprod) the dispatch takes the
    SMULL/SMLAL kernels, under its default CPU the SDOT ones; both equal the reference."""
    import pdc
    from pdc.harness import run_harness
    from pdc.ir.interpreter import run_graph
    from pdc.targets.arm import Tool
    layers = [const_bias(x) for x in THREADED[:3]] + [
        QLayer("qmatmul", [np.random.default_rng(11).integers(-128, 128, (5, 70)).astype(np.int8),
                           Const(np.random.default_rng(12).integers(-127, 128, (70, 33)).astype(np.int8))],
               {"a_zero": 4, "scale": [2.0 ** -10], "y_zero": -2})]
    g, feeds = build_graph(layers)
    want = run_graph(g, feeds)
    module = pdc.compile(g, target=TARGET, out_dir=str(tmp_path / "b"), threads=1)
    import json
    with open(os.path.join(module.folder, "manifest.json")) as f:
        manifest = json.load(f)
    qemu = Tool("qemu-aarch64", "qemu-user").path()
    exe = os.path.join(module.folder, manifest["runner"]["executable"])
    for cpu in ("cortex-a53", "max"):
        got = run_harness([qemu, "-cpu", cpu, exe], module.folder, manifest, feeds)
        for y in g.outputs:
            assert np.array_equal(np.asarray(got[y.name]), want[y.name]), f"{y.name} differs on -cpu {cpu}"


def test_armv7_declines(tmp_path):
    """ARMv7 (neon32) gets the portable kernels: the NEON int8 generators are AArch64-only."""
    from pdc.compiler import compile_bundle
    g, _ = build_graph([const_bias(x) for x in THREADED[2:4]])
    out = tmp_path / "v7"
    compile_bundle(g, str(out), target="armv7", build=False)
    source = "".join(open(out / f).read() for f in sorted(os.listdir(out)) if "kernels" in f and f.endswith(".c"))
    assert "pdc_qa_" not in source and source.count("/* path: qconv/portable */") == 2
