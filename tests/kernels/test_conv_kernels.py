"""Conv kernels, every path on every target that runs here, against ONNX Runtime (ONNX's reference
where ONNX Runtime departs from the spec): random layers over the attribute space, each path
forced on layers that would not normally pick it (see tests/kernels/harness.py)."""
from __future__ import annotations

import numpy as np
import pytest

from harness import Const, Layer, check_layers, run_property
from strategies import conv_layer, layers
from targets import examples, options, require

# (target, path, the draw that reaches it); every path of the conv family on each target
X86_PATHS = [("im2col", "any"), ("depthwise-flat", "flat"), ("depthwise-rows", "depthwise"), ("direct", "any")]
AVX512_PATHS = X86_PATHS + [("transposed", "small"), ("pointwise", "pointwise"), ("band", "any")]
ARM_PATHS = [("im2col", "any"), ("neon-gemm", "any"), ("neon-depthwise", "depthwise")]
CASES = ([("x86-avx512", p, k) for p, k in AVX512_PATHS] + [("x86-avx2", p, k) for p, k in X86_PATHS]
         + [(t, p, k) for t in ("arm64", "armv7", "cortex-m4") for p, k in ARM_PATHS])
EXAMPLES = 12


@pytest.mark.parametrize("target,path,kind", CASES, ids=[f"{t}-{p}" for t, p, _ in CASES])
def test_conv_path_matches_onnxruntime(target, path, kind):
    require(target)
    arm = not target.startswith("x86")
    draw = conv_layer(kind, max_dims=2 if arm and path.startswith("neon") else 3,
                      max_extent=32 if arm else 64, max_macs=300_000 if arm else 1_500_000,
                      dtype=np.float64 if path == "direct" else np.float32)
    run_property(layers(draw, max_size=4 if arm else 6), target, examples=examples(target, EXAMPLES),
                 force=f"conv={path}", expect_path=f"conv/{path}", **options(target))


# ---- the layers the properties or real models found wrong, kept as they were found ----------------------
def _conv(x_shape, w_shape, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    fan_in = int(np.prod(w_shape[1:]))
    return Layer("Conv", [rng.standard_normal(x_shape).astype(np.float32),
                          Const((rng.standard_normal(w_shape) / np.sqrt(fan_in)).astype(np.float32)),
                          Const(rng.standard_normal(w_shape[0]).astype(np.float32))], attrs)


REGRESSIONS = {
    # DeepLab's ASPP head: most taps in the padding; im2col wrote zeros past a row segment lying
    # wholly inside the left / right padding, over the neighbouring panel
    "aspp-dilation-6": _conv([1, 64, 14, 14], [64, 64, 3, 3], dilations=[6, 6], pads=[6] * 4),
    "aspp-dilation-12": _conv([1, 64, 14, 14], [64, 64, 3, 3], dilations=[12, 12], pads=[12] * 4),
    # MixNet's 9x9 depthwise on 14x14 (the same im2col bug: 81 taps go to im2col)
    "mixnet-dw9x9": _conv([1, 90, 14, 14], [90, 1, 9, 9], pads=[4] * 4, group=90),
}


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2", "arm64", "armv7"])
def test_conv_regressions(target):
    require(target)
    check_layers(list(REGRESSIONS.values()), target, rtol=1e-5, atol=1e-5, **options(target))
