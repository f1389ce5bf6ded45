"""Gemm / MatMul / MatMulInteger kernels, every path on every target that runs here, against ONNX
Runtime (ONNX's reference where ONNX Runtime refuses a layer): random layers over the attribute
space, each path forced on layers that would not normally pick it (see tests/kernels/harness.py).

Paths (family "gemm"): "packed-b" (B constant, packed at compile time), "packed-a" (A constant),
"runtime" (both packed at run time), "loops" (other dtypes; forced, float32 too), and on ARM
"neon" (B constant, the NEON / plain-C register tiles of pdc/codegen/kernels/arm/gemm.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from harness import Const, Layer, check_layers, run_property
from strategies import layers
from strategies_gemm import gemm_or_matmul, matmul_integer_layer
from targets import examples, options, require

X86_PATHS = ["packed-b", "packed-a", "runtime", "loops"]
ARM_PATHS = ["neon"] + X86_PATHS
CASES = ([(t, p) for t in ("x86-avx512", "x86-avx2") for p in X86_PATHS]
         + [(t, p) for t in ("arm64", "armv7", "cortex-m4") for p in ARM_PATHS])
EXAMPLES = 8  # draws per x86 test (ARM: fewer); each draw holds several layers
# the operands each path needs constant; "loops" and "neon" take any
OPERANDS = {"packed-b": "packed-b", "packed-a": "packed-a", "runtime": "any", "loops": "any", "neon": "packed-b"}
# the loops path computes every dtype: float32 forced there, and the dtypes only it computes
LOOP_DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint32]


def draw_for(target: str, path: str):
    # the budgets reach past the kernels' threshold for splitting a job over threads (400k MACs)
    macs = {"cortex-m4": 150_000, "arm64": 600_000, "armv7": 600_000}.get(target, 1_500_000)
    if path == "loops":
        macs //= 10  # scalar loops (and soft-float doubles on Cortex-M)
        return st.sampled_from(LOOP_DTYPES).flatmap(lambda dt: gemm_or_matmul("any", dt, macs))
    return gemm_or_matmul(OPERANDS[path], np.float32, macs)


@pytest.mark.parametrize("target,path", CASES, ids=[f"{t}-{p}" for t, p in CASES])
def test_gemm_path_matches_onnxruntime(target, path):
    require(target)
    arm = not target.startswith("x86")
    run_property(layers(draw_for(target, path), min_size=2 if arm else 3, max_size=5 if arm else 8), target,
                 examples=examples(target, EXAMPLES), force=f"gemm={path}", expect_path=f"gemm/{path}",
                 **options(target))


@pytest.mark.parametrize("target", ["x86-avx512", "arm64"])
def test_matmul_integer_matches_onnxruntime(target):
    require(target)
    run_property(layers(matmul_integer_layer(max_macs=200_000), max_size=4), target,
                 examples=examples(target, 4), **options(target))


# ---- the layers the properties found wrong, kept as they were found -----------------------------------
def _r(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _q(*shape, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, size=shape).astype(np.int8)


REGRESSIONS = {
    # MatMul with a 1-D B: the output's last axis is M, and the fused bias along it is one value per
    # row; the generators read it as one value per column (N = 1) and failed to compile
    "matmul-1d-b-bias": Layer("MatMul", [_r(3, 5, 7), Const(_r(7, seed=1))], {}, [("Add", {}, [Const(_r(5, seed=2))])]),
    # MatMulInteger's zero points per matrix of an N-D operand ([D1, M, 1] / [D1, 1, N], the spec's
    # N-D forms) were refused ("has 8 values, expected 1 or 4")
    "matmul-integer-zero-points-per-matrix": Layer("MatMulInteger", [_q(2, 4, 5), _q(2, 5, 3, seed=1),
                                                                     _q(2, 4, 1, seed=2), _q(2, 1, 3, seed=3)]),
}
# edges no draw reaches: K = 0 (the output is beta * C, the bias, the activation), empty outputs
EDGES = [
    Layer("Gemm", [_r(3, 0), _r(0, 4), _r(4)], {"beta": 0.5}),
    Layer("MatMul", [_r(2, 3, 0), Const(_r(0, 4))], {}, [("Add", {}, [Const(_r(4))]), ("Relu", {}, [])]),
    Layer("Gemm", [_r(0, 5), Const(_r(5, 4))]),
    Layer("MatMul", [_r(3, 5), _r(5, 0)]),
]


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2", "arm64", "armv7", "cortex-m4"])
def test_gemm_regressions(target):
    require(target)
    check_layers(list(REGRESSIONS.values()), target, **options(target))


@pytest.mark.parametrize("target", ["x86-avx512", "arm64"])
def test_gemm_regressions_loops_and_edges(target):
    require(target)
    check_layers(list(REGRESSIONS.values()), target, force="gemm=loops", **options(target))
    check_layers(EDGES, target, **options(target))
