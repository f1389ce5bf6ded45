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


def _logits(outputs: dict) -> np.ndarray:
    return next(iter(outputs.values()))[0]


def x86_digits(qg, x, folder: str):
    """(feeds, logits) of the held-back digits one by one through the x86 int8 build, which must equal the
    integer reference's."""
    feeds = [{"x": x[i:i + 1]} for i in range(len(x))]
    reference = np.stack([_logits(run_graph(qg, f)) for f in feeds])
    x86 = pdc.compile(qg, target="x86", out_dir=folder)
    got_x86 = np.stack([_logits(x86.run(f)) for f in feeds])
    np.testing.assert_array_equal(got_x86, reference)
    return feeds, got_x86


def test_digits_int8_is_bit_identical_on_x86_aarch64_and_cortex_m4(digits, tmp_path, record_property):
    require_tools("arm64")
    require_mcu_tools()
    g, qg, x, y = digits
    feeds, reference = x86_digits(qg, x, str(tmp_path / "x86"))
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


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "transformer_encoder"])
def test_zoo_models_int8_are_bit_identical_on_x86_and_aarch64(zoo, tmp_path, name):
    """Quantized end to end (convolutions, residual adds, pooling, hard-swish tables, SE multiplies;
    the transformer's attention matmuls, softmax and residual LayerNorms): the compiled outputs equal
    the integer reference's exactly."""
    require_tools("arm64")
    g = load_model(zoo(name))
    rng = np.random.default_rng(0)
    feed = lambda: {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}  # noqa: E731
    qg, _ = quantize_model(g, {v.name: np.stack([feed()[v.name] for _ in range(8)]) for v in g.inputs})
    float_ops = {n.op for n in qg.nodes} - {"qconv", "qmatmul", "qadd", "qmul", "lookup", "qsoftmax", "qlayer_norm",
                                             "max_pool", "reshape", "flatten", "transpose"}
    # only at the model's input and output (the transformer's last qlayer_norm gives float itself)
    assert float_ops == {"quantize_linear"} | ({"dequantize_linear"} if name != "transformer_encoder" else set())
    x86 = pdc.compile(qg, target="x86", out_dir=str(tmp_path / "x86"))
    arm64 = pdc.compile(qg, target="arm64", out_dir=str(tmp_path / "arm64"))
    for _ in range(2):
        x = feed()
        want = _logits(run_graph(qg, x))
        np.testing.assert_array_equal(_logits(x86.run(x)), want)
        np.testing.assert_array_equal(_logits(arm64.run(x)), want)
