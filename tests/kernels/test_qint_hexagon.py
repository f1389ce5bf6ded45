"""The Hexagon HVX int8 convolutions (pdc/codegen/kernels/hexagon/qconv.py) against the NumPy reference of
qconv BIT FOR BIT (np.array_equal, same dtype), on hexagon-v66 under qemu-hexagon, each path forced with
PDC_FORCE_PATH so that every draw takes it:

- qconv=hvx-gemm: the implicit GEMM over the flat phase grid, on dense, grouped, depthwise and
  pointwise layers (kernels 1..7, strides and dilations 1..3, asymmetric pads, auto_pad);
- qconv=hvx-depthwise: one input channel per group (channel multipliers 1..3 too);
- both with a VTCM so small that the layers are cut into bands of a few output rows;
- qmatmul=hvx: a [..., K] x constant int8 b [K, N], K and N off the 4 / 32 multiples;
- pool=hvx: int8 / uint8 max pooling, kernels 1..4, strides 1..3, dilations 1..2, pads, ceil_mode, the
  type's lowest value in the inputs (what the padding holds) and all-padding windows.
Draws mix int8 / uint8 inputs and outputs, zero points, per-tensor / per-channel scales, clamps and
int32 accumulator outputs (the strategies of test_qint_kernels.py); weights over [-128, 127]. Each draw
asserts that every layer took the forced path (a runtime bias, which the HVX kernels leave to the
portable one, is made a constant for that reason).
"""
from __future__ import annotations

import numpy as np
import pytest

import test_qint_kernels
from targets import examples, require
from hypothesis import strategies as st
from test_qint_kernels import QLayer, build_graph, check_qlayers, const_bias, draws, qconv_layer, run_qproperty
from test_qint_arm import CONV_CHANNELS, matmul_layer

TARGET = "hexagon-v66"


@pytest.fixture(autouse=True)
def _hexagon():
    require(TARGET)


def conv_layer(kind: str, max_extent: int = 16):
    return qconv_layer(max_extent, 120_000, kind, CONV_CHANNELS)


def run(strategy, force: str, path: str, count: int, **options) -> None:
    """`count` (x86-scaled) draws of strategy, each layer forced onto `path` and checked bit for bit."""
    def check(layers):
        layers = [const_bias(layer) for layer in layers]
        source = check_qlayers(layers, TARGET, threads=1, force=force, **options)
        taken = source.count(f"/* path: {path} */")
        assert taken == len(layers), f"{taken} of {len(layers)} layers took {path} under PDC_FORCE_PATH={force}"
    run_qproperty(strategy, TARGET, examples=examples(TARGET, count), check=check)


GEMM_KINDS = test_qint_kernels.st.one_of(conv_layer("dense"), conv_layer("grouped"), conv_layer("depthwise"),
                                         conv_layer("pointwise"))


def test_gemm_path():
    run(draws(GEMM_KINDS, 3), "qconv=hvx-gemm", "qconv/hvx-gemm", 40)


def test_depthwise_path():
    run(draws(conv_layer("depthwise", max_extent=24), 4), "qconv=hvx-depthwise", "qconv/hvx-depthwise", 40)


def test_qmatmul_path():
    run(draws(matmul_layer(), 4), "qmatmul=hvx", "qmatmul/hvx", 24)


@st.composite
def pool_layer(draw):
    dt = draw(st.sampled_from([np.int8, np.uint8]))
    k = [draw(st.integers(1, 4)) for _ in range(2)]
    d = [draw(st.integers(1, 2)) for _ in range(2)]
    pads = [draw(st.integers(0, k[i] - 1)) for i in (0, 1)] + [draw(st.integers(0, k[i] - 1)) for i in (0, 1)]
    size = [draw(st.integers(max(1, (k[i] - 1) * d[i] + 1 - pads[i] - pads[i + 2]), 40)) for i in (0, 1)]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    info = np.iinfo(dt)
    x = rng.integers(info.min, info.max + 1, (draw(st.integers(1, 2)), draw(st.integers(1, 5)), *size)).astype(dt)
    x[rng.random(x.shape) < 0.2] = info.min  # the padding's value among the data
    return QLayer("max_pool", [x], {"kernel_shape": k, "strides": [draw(st.integers(1, 3)) for _ in range(2)],
                                    "dilations": d, "pads": pads, "ceil_mode": draw(st.integers(0, 1))})


def test_max_pool_path():
    run(draws(pool_layer(), 4), "pool=hvx", "pool/hvx", 24)


@pytest.mark.parametrize("path", ["hvx-gemm", "hvx-depthwise"])
def test_bands_in_a_small_vtcm(path):
    """A VTCM of 24 KiB: the layers' packed inputs are cut into bands of output rows."""
    kind = "depthwise" if path == "hvx-depthwise" else "dense"
    run(draws(conv_layer(kind, max_extent=24), 2), f"qconv={path}", f"qconv/{path}", 6, vtcm="24K")


def test_a_layer_too_big_for_the_vtcm_is_refused(tmp_path):
    """One output row of this layer's packed input (64 channels x 3 rows x 200 columns) does not fit 16 KiB."""
    import pdc
    from pdc.ir.errors import PdcError
    from test_qint_arm import _conv
    layer = const_bias(_conv(1, (1, 64, 8, 200), (8, 64, 3, 3), pads=[1, 1, 1, 1]))
    g, _ = build_graph([layer])
    with pytest.raises(PdcError, match=r"needs [\d,]+ bytes of VTCM for one output row, more than the target's "
                                       r"16,384 \(pick a part with more VTCM: --vtcm SIZE\)"):
        pdc.compile(g, target=TARGET, out_dir=str(tmp_path / "b"), vtcm="16K")
    np.testing.assert_equal(list(tmp_path.iterdir()), [])  # nothing half-written
