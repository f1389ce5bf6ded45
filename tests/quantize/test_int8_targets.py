"""int8 models compiled for x86, AArch64 (qemu-aarch64) and Cortex-M4 (qemu-system-arm) give the
integer reference's outputs bit for bit: the requantization is integer-only, so every target
computes the same integers, not numbers within a tolerance."""
from __future__ import annotations

import numpy as np
import pytest

import pdc
from pdc.frontend import load_model
from pdc.ir.interpreter import run_graph
from pdc.quantize import quantize_model
from pdc.targets.cortex_m import load_manifest, run_samples
from test_arm import require_tools
from test_cortex_m import require_mcu_tools

from .test_ptq import digits_split


@pytest.fixture(scope="module")
def digits(zoo):
    """(float graph, int8 graph, held-back images, labels): 100 calibration images from the training split."""
    g = load_model(zoo("digits_cnn"))
    x_tr, x_te, y_te = digits_split()
    qg, _ = quantize_model(g, x_tr[:100][:, None])
    return g, qg, x_te, y_te


def _logits(outputs: dict) -> np.ndarray:
    return next(iter(outputs.values()))[0]


def test_digits_int8_is_bit_identical_on_x86_aarch64_and_cortex_m4(digits, tmp_path, record_property):
    require_tools("arm64")
    require_mcu_tools()
    g, qg, x, y = digits
    feeds = [{"x": x[i:i + 1]} for i in range(len(x))]
    reference = np.stack([_logits(run_graph(qg, f)) for f in feeds])
    x86 = pdc.compile(qg, target="x86", out_dir=str(tmp_path / "x86"))
    got_x86 = np.stack([_logits(x86.run(f)) for f in feeds])
    np.testing.assert_array_equal(got_x86, reference)
    arm64 = pdc.compile(qg, target="arm64", out_dir=str(tmp_path / "arm64"))
    np.testing.assert_array_equal(np.stack([_logits(arm64.run(f)) for f in feeds]), reference)
    pdc.compile(qg, target="cortex-m4", out_dir=str(tmp_path / "m4"))
    outs, _ = run_samples(str(tmp_path / "m4"), load_manifest(str(tmp_path / "m4")), feeds)
    np.testing.assert_array_equal(np.stack([_logits(o) for o in outs]), reference)
    float_logits = np.stack([_logits(run_graph(g, f)) for f in feeds])
    acc_float, acc_int8 = (float((a.argmax(1) == y).mean()) for a in (float_logits, reference))
    record_property("digits_accuracy_float", acc_float)
    record_property("digits_accuracy_int8", acc_int8)
    print(f"\ndigits CNN: float {acc_float:.4f}, int8 {acc_int8:.4f} (x86, aarch64, cortex-m4 bit-identical) "
          f"on {len(y)} held-back digits")
    assert abs(acc_int8 - acc_float) <= 0.01
