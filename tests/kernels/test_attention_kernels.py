"""Attention kernels (pdc/codegen/kernels/attention.py), every path on every target that runs here:
the ONNX Attention op (opsets 23-25) and the MatMul / Softmax subgraph that fuse-attention turns
into an `attention` node (-O2) or, with its op=fused_attention option, a `fused_attention` node,
against ONNX Runtime on the unfused layer (ONNX's reference where ONNX Runtime refuses a layer
or departs from the spec: strategies_attention.attention_oracle).

Paths (family "attention"): "keys-transposed" (float32, the head's keys transposed into a stack
block), "keys-direct" (float32, one dot product per key), "scalar" (plain loops: other dtypes,
and float32 forced)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import Chain, Const, Layer, build_model, check_layers, run_property
from strategies import layers
from strategies_attention import attention_layer, attention_pattern
from targets import examples, options, require

PATHS = ["keys-transposed", "keys-direct", "scalar"]
CASES = [(t, p) for t in ("x86-avx512", "x86-avx2", "arm64") for p in PATHS]
EXAMPLES = 6  # draws per x86 test (ARM: fewer); each draw holds several layers
FUSED = "fold-constants,fuse-attention{op=fused_attention}"
# the scalar path computes every float dtype: float32 forced there, and the dtypes only it computes
SCALAR_DTYPES = [np.float32, np.float16, np.float64]


def attention_draw(target: str, path: str, fused: bool = False):
    """Attention ops and the subgraph fuse-attention matches (`fused`: the subgraph only)."""
    macs = 300_000 if target == "arm64" else 1_500_000
    dtypes = SCALAR_DTYPES if path == "scalar" else [np.float32]

    def one(dtype):
        kinds = [attention_layer(dtype, macs, opset) for opset in (23, 24, 25)] if not fused else []
        return st.one_of(kinds + [attention_pattern(dtype, macs)])
    return layers(st.sampled_from(dtypes).flatmap(one), min_size=2, max_size=4 if target == "arm64" else 6)


@pytest.mark.parametrize("target,path", CASES, ids=[f"{t}-{p}" for t, p in CASES])
def test_attention_path_matches_onnxruntime(target, path):
    require(target)
    run_property(attention_draw(target, path), target, examples=examples(target, EXAMPLES),
                 force=f"attention={path}", expect_path=f"attention/{path}", **options(target))


# fused_attention: the same kernels, another op; its main path on every target, the others on one
FUSED_CASES = [(t, "keys-transposed") for t in ("x86-avx512", "x86-avx2", "arm64")] + \
    [("x86-avx512", "keys-direct"), ("x86-avx512", "scalar")]


@pytest.mark.parametrize("target,path", FUSED_CASES, ids=[f"{t}-{p}" for t, p in FUSED_CASES])
def test_fused_attention_path_matches_onnxruntime(target, path):
    require(target)
    run_property(attention_draw(target, path, fused=True), target, examples=examples(target, EXAMPLES // 2),
                 force=f"attention={path}", expect_path=f"attention/{path}", passes=FUSED, **options(target))


@settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(attention_pattern(np.float32, 1_500_000))
def test_patterns_drawn_are_fused(layer):
    """Every drawn subgraph becomes one attention node at -O2 (else the properties above would test
    MatMul and Softmax kernels instead): fused_attention where its mask is broadcast over the keys,
    which the attention op would read as keys not attended, or where NaN probabilities are zeroed."""
    from pdc.compiler import load_graph, optimize
    ops = [n.op for n in optimize(load_graph(build_model([layer])[0]), 2).nodes]
    keys = layer.inputs[1].source.shape[-2]  # K is (B, H, S, d) or (B, S, H*d)
    masks = [e for op, _, extra in layer.post if op == "Add" for e in extra]
    # (a constant mask of zeros is no mask: simplify-algebra drops the Add)
    keys_broadcast = keys > 1 and any(np.shape(getattr(e, "value", e))[-1] == 1
                                      and not (isinstance(e, Const) and not e.value.any()) for e in masks)
    nan_guard = any(op == "IsNaN" for op, _, _ in layer.post)  # zeroed NaN probabilities: not ONNX Attention's
    assert ops == ["fused_attention" if keys_broadcast or nan_guard else "attention"], (layer.describe(), ops)


# ---- the layers the properties found wrong, kept as they were found -----------------------------------
def _r(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _pattern(mask_shape, scale: float, dtype=np.float32):
    """Q K^T * scale + mask -> Softmax -> V, on (B, H, S, d) tensors."""
    q, k, v, m = (_r(*shape, seed=i, dtype=dtype) for i, shape in
                  enumerate([(1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4), mask_shape]))
    return Layer("MatMul", [q, Chain(k, [("Transpose", {"perm": [0, 1, 3, 2]}, [])])], {},
                 [("Mul", {}, [Const(np.asarray(scale, dtype))]), ("Add", {}, [m]), ("Softmax", {"axis": -1}, []),
                  ("MatMul", {}, [v])])


REGRESSIONS = {
    # fuse-attention made an attention node of a subgraph whose mask broadcasts over the keys (last
    # dim 1), which the attention op reads as "only key 0 attended" (a short mask)
    "mask-broadcast-over-keys": _pattern((1, 1, 3, 1), 0.5),
    # and of a float64 subgraph, whose scale the attention op takes as a float32 (its sqrt too)
    "double-subgraph": _pattern((3, 5), 0.3, np.float64),
    # float64: sqrt(scale) (and the default scale) are float32 in the op's function body, then cast;
    # the kernel took the square root in float64, 1e-8 off (ONNX Runtime and ONNX's reference agree)
    "double-scale": Layer("Attention", [_r(1, 2, 3, 8), _r(1, 2, 6, 8, seed=1), _r(1, 2, 6, 8, seed=2)],
                          {"scale": 0.3}, opset=23),
    "double-default-scale": Layer("Attention", [_r(1, 2, 3, 8), _r(1, 2, 6, 8, seed=1), _r(1, 2, 6, 8, seed=2)],
                                  opset=23),
}


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2", "arm64"])
def test_attention_regressions(target):
    require(target)
    check_layers(list(REGRESSIONS.values()), target, **options(target))
