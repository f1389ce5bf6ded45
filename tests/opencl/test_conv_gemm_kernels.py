"""The OpenCL device kernels of conv / fused_conv (pdc/codegen/kernels/opencl/conv.py) and gemm /
fused_gemm / matmul / fused_matmul (opencl/gemm.py), through a compiled opencl bundle, against
ONNX Runtime.

Seeded draws over the attribute space: conv 1-D / 2-D / 3-D, strides, asymmetric pads, auto_pad,
dilations, groups (depthwise, grouped), bias or none, batch, constant or run-time weights,
followed by the activations and residual adds that -O2 fuses (fused_conv); Gemm with transA /
transB / alpha / beta and C absent, a scalar, a row, a column or full; MatMul with 1-D operands
and broadcast batch dims, + bias + activation + residual. Each draw runs under the heuristic and
with every path forced (PDC_FORCE_PATH) that can compute it; the forced path must be the one the
bundle's manifest names. Every third draw also runs with --precision fp16 (half storage of every
float32 tensor on the device, float arithmetic), each path again, the heuristic taking the path it
takes in fp32.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import pdc
from conftest import require_module
from kernel_draws import (Net, assert_matches, conv_case, conv_model, gemm_case, matmul_case, onnxruntime_outputs,
                          product_model)

pytestmark = pytest.mark.usefixtures("opencl_platform")


def _require_target():
    require_module("onnxruntime")


def check(model, feeds, tmp_path, monkeypatch, force=None, family=None, expect=None, precision="fp32"):
    if force:
        monkeypatch.setenv("PDC_FORCE_PATH", f"{family}={force}")
    else:
        monkeypatch.delenv("PDC_FORCE_PATH", raising=False)
    module = pdc.compile(model, target="opencl", out_dir=str(tmp_path / "b"), precision=precision)
    assert module.manifest["precision"] == precision
    assert_matches(module.run(feeds)["y"], onnxruntime_outputs(model, feeds), precision)
    taken = [k.get("path") for k in module.manifest.get("kernels", [])]
    if expect is not None:
        assert expect in taken, f"expected {expect}, the kernels took {taken}"
    return taken


CONV_SEEDS = list(range(1000, 1040))
PRODUCT_SEEDS = list(range(2000, 2040))
FP16_CONV_SEEDS, FP16_PRODUCT_SEEDS = CONV_SEEDS[::3], PRODUCT_SEEDS[::3]


@pytest.mark.parametrize("seed", CONV_SEEDS)
def test_conv_matches_onnxruntime(seed, tmp_path, monkeypatch):
    _require_target()
    case = conv_case(seed)
    model, feeds = conv_model(case)
    taken = check(model, feeds, tmp_path / "auto", monkeypatch)
    assert any(p and p.startswith("opencl/conv-") for p in taken), f"no opencl conv kernel ran: {taken}"
    for path in case["paths"]:
        check(model, feeds, tmp_path / path, monkeypatch, force=path, family="opencl-conv",
              expect=f"opencl/conv-{path}")


@pytest.mark.parametrize("seed", PRODUCT_SEEDS)
def test_gemm_matmul_matches_onnxruntime(seed, tmp_path, monkeypatch):
    _require_target()
    case = gemm_case(seed) if seed % 2 == 0 else matmul_case(seed)
    model, feeds = product_model(case)
    taken = check(model, feeds, tmp_path / "auto", monkeypatch)
    assert any(p and p.startswith("opencl/gemm-") for p in taken), f"no opencl gemm kernel ran: {taken}"
    for path in ("tiled", "simple"):
        check(model, feeds, tmp_path / path, monkeypatch, force=path, family="opencl-gemm",
              expect=f"opencl/gemm-{path}")


@pytest.mark.parametrize("seed", FP16_CONV_SEEDS)
def test_conv_fp16_storage_matches_onnxruntime(seed, tmp_path, monkeypatch):
    """--precision fp16: the heuristic's path (the one it takes in fp32) and every forced path."""
    _require_target()
    case = conv_case(seed)
    model, feeds = conv_model(case)
    taken32 = check(model, feeds, tmp_path / "auto32", monkeypatch)
    taken = check(model, feeds, tmp_path / "auto", monkeypatch, precision="fp16")
    assert taken == taken32, f"fp16 took {taken}, fp32 {taken32}"
    assert any(p and p.startswith("opencl/conv-") for p in taken), f"no opencl conv kernel ran: {taken}"
    for path in case["paths"]:
        check(model, feeds, tmp_path / path, monkeypatch, force=path, family="opencl-conv",
              expect=f"opencl/conv-{path}", precision="fp16")


@pytest.mark.parametrize("seed", FP16_PRODUCT_SEEDS)
def test_gemm_matmul_fp16_storage_matches_onnxruntime(seed, tmp_path, monkeypatch):
    _require_target()
    case = gemm_case(seed) if seed % 2 == 0 else matmul_case(seed)
    model, feeds = product_model(case)
    taken32 = check(model, feeds, tmp_path / "auto32", monkeypatch)
    taken = check(model, feeds, tmp_path / "auto", monkeypatch, precision="fp16")
    assert taken == taken32, f"fp16 took {taken}, fp32 {taken32}"
    assert any(p and p.startswith("opencl/gemm-") for p in taken), f"no opencl gemm kernel ran: {taken}"
    for path in ("tiled", "simple"):
        check(model, feeds, tmp_path / path, monkeypatch, force=path, family="opencl-gemm",
              expect=f"opencl/gemm-{path}", precision="fp16")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_big_layers_take_the_tiled_paths(precision, tmp_path, monkeypatch):
    """The shapes the heuristics send to the matrix-product paths (and a depthwise layer); in fp16
    too (its Gemm, K = 18816, the deepest product of the file)."""
    _require_target()
    net = Net(7)
    x = net.feed("x", net.array((1, 64, 14, 14)))
    y = net.node("Conv", [x, net.const("W1", net.array((64, 64, 3, 3), 1 / 24)), net.const("B1", net.array(64))],
                 "c1", pads=[1, 1, 1, 1])
    y = net.node("Relu", [y], "r1")
    y = net.node("Conv", [y, net.const("W2", net.array((64, 1, 3, 3), 1 / 3))], "c2", pads=[1, 1, 1, 1], group=64)
    y = net.node("Conv", [y, net.const("W3", net.array((96, 64, 1, 1), 1 / 8))], "c3")
    y = net.node("Flatten", [y], "f")
    y = net.node("Gemm", [y, net.const("G", net.array((96 * 196, 64), 0.01)), net.const("Gc", net.array(64))], "g")
    y = net.node("Reshape", [y, net.const("s", [8, 8], np.int64)], "rs")
    net.node("Identity", [net.node("MatMul", [y, net.const("M", net.array((8, 40)))], "mm")], "y")
    model = net.model()
    taken = check(model, net.feeds, tmp_path, monkeypatch, precision=precision)
    for path in ("opencl/conv-tiled", "opencl/conv-depthwise", "opencl/conv-1x1-gemm"):
        assert path in taken, taken


if os.environ.get("PDC_OPENCL_DRAWS"):  # a long run: PDC_OPENCL_DRAWS=500 pytest ... -k draws
    @pytest.mark.parametrize("seed", range(int(os.environ["PDC_OPENCL_DRAWS"])))
    def test_many_draws(seed, tmp_path, monkeypatch):
        _require_target()
        case = conv_case(10_000 + seed)
        model, feeds = conv_model(case)
        check(model, feeds, tmp_path / "c", monkeypatch)
        case = gemm_case(20_000 + seed) if seed % 2 else matmul_case(20_000 + seed)
        model, feeds = product_model(case)
        check(model, feeds, tmp_path / "g", monkeypatch)
