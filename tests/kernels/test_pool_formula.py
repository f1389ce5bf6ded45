"""Pooling layers too large for compile-time tables: the portable kernel computes the leading dims'
tap ranges, AveragePool's counts and the last dim's taps in C by formula (pool.MAX_TABLE,
pool.MAX_UNROLLED_TAPS). Here the thresholds drop to 0 so every small layer of the pool properties
takes the formula code, against ONNX Runtime; and tensors the size limit allows but a table could
not hold (a 2^30-long dim, a 2^20-tap window) compile in about a second."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from harness import run_property
from strategies import layers
from targets import examples, options, require
from test_pool_kernels import pool_layer

from pdc.codegen.kernels import pool
from pdc.compiler import compile_bundle


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(-40, 40), st.integers(1, 12), st.integers(1, 4), st.integers(-6, 6), st.integers(-6, 40))
def test_tap_range_matches_enumeration(start, kernel, dil, lo, hi):
    inside = [k for k in range(kernel) if lo <= start + k * dil < hi]
    want = (inside[0], inside[-1] + 1) if inside else (0, 0)
    assert pool.tap_range(start, kernel, dil, lo, hi) == want


@pytest.fixture
def formula_everywhere(monkeypatch):
    monkeypatch.setattr(pool, "MAX_TABLE", 0)
    monkeypatch.setattr(pool, "MAX_UNROLLED_TAPS", 0)


@pytest.mark.parametrize("target", ["x86-avx2", "arm64"])
def test_formula_pools_match_onnxruntime(target, formula_everywhere):
    require(target)
    arm = target == "arm64"
    small = dict(max_dims=2, max_extent=24, max_work=100_000) if arm else {}
    run_property(layers(pool_layer(nan=True, **small), max_size=4 if arm else 6), target,
                 examples=examples(target, 10), force="pool=generic", expect_path="pool/generic", **options(target))


def _pool_model(op: str, shape: list, **attrs):
    node = helper.make_node(op, ["x"], ["y"], name="pool", **attrs)
    graph = helper.make_graph([node], "huge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


HUGE = [
    ("MaxPool", [1, 1, 2 ** 30, 2], dict(kernel_shape=[3, 2], pads=[1, 0, 1, 0])),
    ("AveragePool", [1, 1, 2 ** 30, 2], dict(kernel_shape=[3, 2], pads=[1, 0, 1, 0])),
    ("AveragePool", [1, 1, 2, 2 ** 30], dict(kernel_shape=[2, 3], pads=[0, 1, 0, 1])),
    ("MaxPool", [1, 1, 2, 2 ** 24], dict(kernel_shape=[2, 2 ** 20], strides=[1, 2 ** 10], pads=[0, 1, 0, 1])),
    ("LpPool", [1, 1, 2 ** 20, 4], dict(kernel_shape=[2 ** 20, 3], strides=[2 ** 10, 1], pads=[1, 1, 1, 1])),
]


@pytest.mark.parametrize("target", ["x86", "arm64"])
@pytest.mark.parametrize("op,shape,attrs", HUGE, ids=[f"{op}-{'x'.join(map(str, s))}" for op, s, _ in HUGE])
def test_huge_pools_compile_quickly(tmp_path, target, op, shape, attrs):
    t0 = time.perf_counter()
    compile_bundle(_pool_model(op, shape, **attrs), str(tmp_path / "b"), target=target, build=False)
    assert time.perf_counter() - t0 < 5
    assert max(f.stat().st_size for f in (tmp_path / "b").iterdir() if f.is_file()) < 100_000
