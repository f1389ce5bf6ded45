"""x86 kernels of pooling, normalization, softmax-like, reduction, arg / top-k / cumsum and
block-move ops, compiled and run against the reference interpreter and an oracle that is not pdc's
(tests/oracles.py): ONNX Runtime, or ONNX's reference evaluator (in float64 for float16 / bfloat16)
where ONNX Runtime lacks the dtype or departs from the spec. Element by element, tolerances.REDUCED.

Each test batches many one-node cases into one model, so it compiles once: every node reads its
own graph inputs and every output is a graph output. Also checks that the generated C is free of
warnings under -Wall -Wextra.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import pdc
from oracles import check_against_oracles, node_by_node
from pdc.compiler import compile_bundle
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph
from pdc.ir.errors import PdcError
from tolerances import REDUCED, assert_zoo_close

rng = np.random.default_rng(7)
BF16 = ml_dtypes.bfloat16


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


class Net:
    """Builds a multi-node model: every node gets fresh inputs; all outputs are graph outputs."""

    def __init__(self):
        self.nodes, self.feeds, self.inits, self.outputs = [], {}, [], []

    def inp(self, a) -> str:
        name = f"i{len(self.feeds) + len(self.inits)}"
        self.feeds[name] = np.asarray(a)
        return name

    def const(self, a) -> str:
        name = f"i{len(self.feeds) + len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def add(self, op, ins, n_out=1, **attrs) -> list[str]:
        outs = [f"o{len(self.outputs) + k}" for k in range(n_out)]
        self.outputs += outs
        names = [i if isinstance(i, str) else self.inp(i) for i in ins]
        self.nodes.append(helper.make_node(op, names, outs, **attrs))
        return outs

    def model(self, opset=21) -> onnx.ModelProto:
        vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in self.feeds.items()]
        outs = [helper.make_tensor_value_info(o, 0, None) for o in self.outputs]
        g = helper.make_graph(self.nodes, "t", vis, outs, self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def compiled_and_reference(net: Net, tmp_path, opset=21):
    model = net.model(opset)
    mod = pdc.compile(model, out_dir=str(tmp_path / "m"), opt_level=0)
    got = mod.run(dict(net.feeds))
    want = run_graph(import_onnx(model), dict(net.feeds))
    return got, want


def assert_same(got, want, names=None, tolerance=REDUCED):
    for name in names or want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, g.shape, w.dtype, w.shape)
        tolerance.check(g, w, name)


def check(net: Net, tmp_path, opset=21, tolerance=REDUCED, reference=(), in_dtype=(), numpy=None, unchecked=()):
    """Compiled vs the reference interpreter and vs the independent oracle. Outputs in `reference` go
    to ONNX's reference evaluator (`in_dtype`: computing in their own half-precision dtype), those in
    `numpy` (name -> expected) are computed by the test in NumPy: the call says where ONNX Runtime
    (and ONNX's reference) depart from the spec. `unchecked` outputs have a test of their own."""
    got, want = compiled_and_reference(net, tmp_path, opset)
    assert_same(got, want, tolerance=tolerance)
    check_against_oracles(got, net.model(opset), net.feeds, tolerance, net.outputs, reference=reference,
                          in_dtype=in_dtype, numpy=numpy, unchecked=unchecked)
    return got


# ---- pooling -----------------------------------------------------------------------------------
def test_pooling_fp32(tmp_path):
    net = Net()
    x2 = randn(2, 3, 9, 10)
    net.add("MaxPool", [x2], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    net.add("MaxPool", [x2], 2, kernel_shape=[2, 3], dilations=[2, 1], strides=[2, 1], storage_order=1)
    net.add("MaxPool", [x2], 2, kernel_shape=[3, 3], strides=[3, 2], auto_pad="SAME_LOWER")
    net.add("MaxPool", [randn(1, 2, 11)], 2, kernel_shape=[4], strides=[3], pads=[2, 1], ceil_mode=1)
    net.add("MaxPool", [randn(1, 2, 5, 6, 7)], 2, kernel_shape=[2, 3, 2], strides=[2, 2, 3], pads=[1, 1, 0, 0, 1, 1])
    net.add("AveragePool", [x2], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    net.add("AveragePool", [x2], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    net.add("AveragePool", [x2], kernel_shape=[3, 2], strides=[2, 3], pads=[0, 1, 1, 0], ceil_mode=1,
            count_include_pad=1)
    net.add("AveragePool", [randn(1, 3, 8, 6, 5)], kernel_shape=[3, 2, 3], auto_pad="VALID")
    net.add("LpPool", [x2], kernel_shape=[2, 3], strides=[2, 2], pads=[1, 1, 0, 1], p=1)
    net.add("LpPool", [x2], kernel_shape=[3, 3], p=2, auto_pad="SAME_LOWER")
    net.add("LpPool", [x2], kernel_shape=[2, 2], p=3, dilations=[1, 2])
    # rows longer than a chunk (256 outputs): the taps' output ranges are cut per chunk
    net.add("MaxPool", [randn(1, 2, 600)], 2, kernel_shape=[5], pads=[2, 2])
    net.add("AveragePool", [randn(1, 1, 3, 700)], kernel_shape=[2, 3], pads=[0, 1, 1, 1], strides=[1, 2])
    for op in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
        net.add(op, [randn(2, 5, 7, 9)])
    net.add("GlobalLpPool", [randn(2, 3, 40)], p=3)
    net.add("GlobalLpPool", [randn(2, 3, 40)], p=1)
    check(net, tmp_path)


def test_max_pool_int8_padding_ties_and_nan(tmp_path):
    """Windows whose max is the padding value report their first tap; NaN wins; int8 / uint8 work."""
    net = Net()
    lowest = np.full((1, 1, 4, 4), -128, np.int8)
    # windows whose max is the dtype's lowest value (int8 -128, float -inf): the index of the first tap
    # inside the input (the padding takes no part)
    net.add("MaxPool", [lowest], 2, kernel_shape=[3, 3], pads=[2, 2, 2, 2])
    x = randn(1, 2, 6, 6)
    x[0, 0, 1, 1] = np.nan
    x[0, 1] = -np.inf
    # ONNX Runtime skips a NaN (ONNX's reference, like NumPy, takes it as the max)
    nan_max = net.add("MaxPool", [x], 2, kernel_shape=[2, 2], pads=[1, 1, 1, 1], strides=[2, 2])
    net.add("MaxPool", [rng.integers(0, 255, (2, 3, 7, 7), dtype=np.uint8)], 2, kernel_shape=[3, 3], strides=[2, 2],
            pads=[1, 1, 1, 1])
    net.add("MaxPool", [rng.integers(-128, 127, (2, 3, 7, 7), dtype=np.int8)], kernel_shape=[2, 2])
    # rank 2: no spatial dims, so each pools one value (ONNX Runtime rejects these, ONNX's reference
    # pools over every axis)
    rank2 = randn(3, 4)
    no_spatial = {net.add(op, [rank2])[0]: want for op, want in
                  (("GlobalAveragePool", rank2), ("GlobalMaxPool", rank2), ("GlobalLpPool", np.abs(rank2)))}
    # where ONNX Runtime's output sizes differ from the spec's (ONNX's reference): a ceil_mode window
    # that would start in the end padding is dropped; SAME pads account for dilations
    x2 = randn(2, 3, 9, 10)
    spec_sizes = net.add("MaxPool", [x2], 2, kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1], ceil_mode=1)
    spec_sizes += net.add("MaxPool", [x2], 2, kernel_shape=[2, 3], dilations=[2, 2], auto_pad="SAME_UPPER",
                          storage_order=1)
    # ONNX's reference averages dilated windows wrongly: NumPy
    (dilated,) = net.add("AveragePool", [x2], kernel_shape=[2, 2], dilations=[2, 3], auto_pad="SAME_UPPER")
    no_spatial[dilated] = average_pool_same_upper(x2, (2, 2), (2, 3))
    check(net, tmp_path, reference=nan_max + spec_sizes, numpy=no_spatial)


def average_pool_same_upper(x, kernel, dilations):
    """AveragePool, stride 1, SAME_UPPER pads for the dilated window, padding not counted, in float64."""
    h, w = x.shape[2:]
    (kh, kw), (dh, dw) = kernel, dilations
    extent = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    top, left = (extent[0] - 1) // 2, (extent[1] - 1) // 2  # SAME_UPPER: the odd pad goes at the end
    total, count = np.zeros(x.shape), np.zeros((h, w))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh - top, j * dw - left
            rows = slice(max(0, -r0), min(h, h - r0))
            cols = slice(max(0, -c0), min(w, w - c0))
            total[:, :, rows, cols] += x[:, :, rows.start + r0:rows.stop + r0, cols.start + c0:cols.stop + c0]
            count[rows, cols] += 1
    return (total / count).astype(x.dtype)


def test_max_pool_index_of_lowest_values_is_in_the_image(tmp_path):
    """A window whose every image element is the dtype's lowest value: its index is the first of them
    (pdc used to report the window's first tap, in the padding: a negative index)."""
    net = Net()
    net.add("MaxPool", [np.full((1, 1, 4, 4), -128, np.int8)], 2, kernel_shape=[3, 3], pads=[2, 2, 2, 2])
    net.add("MaxPool", [np.full((1, 1, 4, 4), -np.inf, np.float32)], 2, kernel_shape=[3, 3], pads=[2, 2, 2, 2])
    got, want = compiled_and_reference(net, tmp_path)
    rows, cols = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    first_in_image = (np.maximum(rows - 2, 0) * 4 + np.maximum(cols - 2, 0)).reshape(1, 1, 6, 6)
    oracle = node_by_node(net.model(), net.feeds)
    np.testing.assert_array_equal(oracle["o3"].value, first_in_image)  # ONNX Runtime agrees
    for name in ("o1", "o3"):
        np.testing.assert_array_equal(got[name], first_in_image, err_msg=f"{name} compiled")
        np.testing.assert_array_equal(want[name], first_in_image, err_msg=f"{name} reference interpreter")


OTHER_FLOATS = (np.float16, BF16, np.float64)


def test_pooling_other_floats(tmp_path):
    net = Net()
    for dtype in OTHER_FLOATS:
        x = randn(2, 3, 7, 8, dtype=dtype)
        net.add("MaxPool", [x], 2, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        net.add("AveragePool", [x], kernel_shape=[2, 3], pads=[1, 1, 1, 1], ceil_mode=1, strides=[2, 2])
        net.add("LpPool", [x], kernel_shape=[2, 2], p=2)
        for op in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
            net.add(op, [x])
    check(net, tmp_path)


def test_max_unpool(tmp_path):
    net = Net()
    x = randn(1, 2, 6, 6)
    y, ind = net.add("MaxPool", [x], 2, kernel_shape=[2, 2], strides=[2, 2])
    net.add("MaxUnpool", [y, ind], kernel_shape=[2, 2], strides=[2, 2])
    net.add("MaxUnpool", [randn(2, 3, 2, 2), np.array(rng.permutation(2 * 3 * 16)[:24].reshape(2, 3, 2, 2), np.int64)],
            kernel_shape=[2, 2], strides=[2, 2])
    check(net, tmp_path)


# ---- normalization -----------------------------------------------------------------------------
def test_normalizations_fp32(tmp_path):
    net = Net()
    c = 5
    x = randn(2, c, 6, 7)
    params = [randn(c), randn(c), randn(c), np.abs(randn(c)) + 0.5]
    net.add("BatchNormalization", [x] + [net.const(p) for p in params], epsilon=1e-3)  # folded at compile time
    net.add("BatchNormalization", [x] + params)  # parameters at run time
    net.add("BatchNormalization", [randn(4, c)] + params)
    net.add("InstanceNormalization", [x, randn(c), randn(c)], epsilon=1e-2)
    net.add("InstanceNormalization", [randn(2, 3, 50), randn(3), randn(3)])
    net.add("LayerNormalization", [randn(3, 4, 40), randn(40), randn(40)], 3)
    net.add("LayerNormalization", [randn(3, 4, 5), randn(4, 5)], 3, axis=1, epsilon=1e-3)
    net.add("LayerNormalization", [randn(3, 4, 5), randn(4, 1), randn(5)], axis=-2)  # broadcast params
    net.add("LayerNormalization", [randn(3, 4, 5), net.const(randn(4, 1)), net.const(randn(1, 5))], axis=1)
    net.add("LayerNormalization", [randn(2, 3, 6), randn(2, 3, 6)], 3, axis=0)
    net.add("GroupNormalization", [randn(2, 6, 4, 5), randn(6), randn(6)], num_groups=3)
    net.add("GroupNormalization", [randn(2, 4, 33), randn(4), randn(4)], num_groups=1, epsilon=1e-2)
    net.add("LRN", [randn(2, 7, 5, 6)], size=3)
    net.add("LRN", [randn(1, 6, 20, 15)], size=5, alpha=2e-3, beta=0.6, bias=2.0)  # two spatial blocks
    net.add("MeanVarianceNormalization", [randn(2, 3, 4, 5)])
    net.add("MeanVarianceNormalization", [randn(2, 12, 4, 5)], axes=[1])
    net.add("MeanVarianceNormalization", [randn(2, 3, 4, 5)], axes=[0, -1])
    net.add("LpNormalization", [randn(3, 4, 5)], axis=1, p=1)
    net.add("LpNormalization", [randn(3, 4, 5)], p=2)
    z = randn(3, 4)
    z[1] = 0
    net.add("LpNormalization", [z], axis=1)
    check(net, tmp_path)


def test_rms_normalization_and_double_statistics(tmp_path):
    net = Net()
    net.add("LRN", [randn(1, 6, 300)], size=4, alpha=2e-3, beta=0.6, bias=2.0)  # even size, 3-D: not in ORT
    net.add("LayerNormalization", [randn(2, 6), randn(6), randn(6)], 3, stash_type=11)  # stats in double
    net.add("RMSNormalization", [randn(3, 4, 40), randn(40)])
    net.add("RMSNormalization", [randn(3, 4, 5), randn(4, 1)], axis=1, epsilon=1e-2)
    net.add("RMSNormalization", [randn(2, 8, dtype=np.float16), randn(8, dtype=np.float16)])
    check(net, tmp_path, opset=23)


def test_normalizations_other_floats(tmp_path):
    net = Net()
    c = 4
    for dtype in OTHER_FLOATS:
        x = randn(2, c, 3, 5, dtype=dtype)
        p = lambda: randn(c, dtype=dtype)  # noqa: E731
        st = {"stash_type": 11} if dtype == np.float64 else {}  # float64 statistics for float64 inputs
        net.add("BatchNormalization", [x, p(), p(), p(), (np.abs(randn(c)) + 0.5).astype(dtype)])
        net.add("InstanceNormalization", [x, p(), p()])
        net.add("LayerNormalization", [randn(3, 20, dtype=dtype), randn(20, dtype=dtype), randn(20, dtype=dtype)],
                3, **st)
        if dtype != np.float64:
            net.add("LayerNormalization", [randn(3, 20, dtype=dtype), randn(20, dtype=dtype)], 3, stash_type=1)
        net.add("GroupNormalization", [x, p(), p()], num_groups=2, **st)
        net.add("LRN", [x], size=3)
        net.add("MeanVarianceNormalization", [x])
        net.add("LpNormalization", [x], axis=1)
    check(net, tmp_path)


# ---- softmax family, dropout, block moves --------------------------------------------------------
def test_softmax_family(tmp_path):
    net = Net()
    for op in ("Softmax", "LogSoftmax", "Hardmax"):
        net.add(op, [randn(3, 100)])  # contiguous rows with partial sums
        net.add(op, [randn(2, 70, 3)], axis=1)  # rows strided by 3
        net.add(op, [randn(2, 5, 130)], axis=1)  # 130 rows: two blocks and a tail
        net.add(op, [randn(4, 7)], axis=0)
        big = randn(2, 5) * 100
        big[0, 2] = np.inf  # rows whose max is infinite: all NaN, as ONNX Runtime and ONNX's reference give
        big[1] = -np.inf
        net.add(op, [big])
    tie = np.array([[1, 3, 3, 2], [0, 0, 0, 0]], np.float32)
    net.add("Hardmax", [tie])
    check(net, tmp_path)


def test_softmax_other_floats(tmp_path):
    net = Net()
    for dtype in OTHER_FLOATS:
        for op in ("Softmax", "LogSoftmax", "Hardmax"):
            net.add(op, [randn(3, 40, dtype=dtype)])
            net.add(op, [randn(2, 6, 3, dtype=dtype)], axis=1)
    check(net, tmp_path)


def test_block_moves(tmp_path):
    net = Net()
    for mode in ("DCR", "CRD"):
        net.add("DepthToSpace", [randn(2, 8, 3, 4)], blocksize=2, mode=mode)
    net.add("SpaceToDepth", [randn(2, 3, 6, 9)], blocksize=3)
    check(net, tmp_path)


def test_space_to_depth_crd(tmp_path):
    """pdc's space_to_depth also takes DepthToSpace's mode (ONNX's SpaceToDepth is always DCR)."""
    net = Net()
    net.add("SpaceToDepth", [randn(2, 3, 6, 9)], blocksize=3, mode="CRD")
    net.add("SpaceToDepth", [randn(1, 2, 4, 4)], blocksize=2, mode="DCR")
    net.add("DepthToSpace", [rng.integers(0, 9, (1, 9, 2, 2)).astype(np.int64)], blocksize=3)
    check(net, tmp_path)


# ---- reductions --------------------------------------------------------------------------------
REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


def _reduce_cases(net: Net, make, ops=REDUCE) -> list[tuple]:
    """The cases of each op: (output, op, x, axes or None, attributes) per case."""
    cases = []

    def add(op, x, axes=None, **attrs):
        ins = [x] if axes is None else [x, net.const(np.array(axes, np.int64))]
        cases.append((net.add(op, ins, **attrs)[0], op, x, axes, attrs))

    for op in ops:
        add(op, make(2, 3, 70), [-1])  # contiguous rows (partial sums)
        add(op, make(2, 3, 4, 5), [0, 2], keepdims=0)  # innermost kept: blocks
        add(op, make(3, 150), [0])  # two blocks and a tail
        add(op, make(2, 3, 4), [1, 2])
        add(op, make(2, 3, 4), [0, 2])  # reduced, kept, reduced
        add(op, make(2, 3, 4), keepdims=0)  # all axes
        add(op, make(2, 3), np.zeros(0, np.int64), noop_with_empty_axes=1)
        add(op, make(2, 0, 3), [1])  # an empty reduction gives the identity
    return cases


def empty_reductions(cases) -> list[str]:
    return [out for out, _, x, _, _ in cases if x.size == 0]


def integer_reduction(op, x, axes, attrs):
    """An integer reduction in NumPy: exact in int64 / uint64, then wrapped into x's dtype (two's
    complement, the spec's one type T); the mean truncates toward zero like C's division."""
    wide = x.astype(np.uint64 if x.dtype.kind == "u" else np.int64)
    ax = None if axes is None or (len(axes) == 0 and not attrs.get("noop_with_empty_axes")) else \
        tuple(int(a) % x.ndim for a in axes)
    keep = bool(attrs.get("keepdims", 1))
    with np.errstate(over="ignore"):
        if op == "ReduceMean":
            n = x.size if ax is None else int(np.prod([x.shape[a] for a in ax]))
            total = wide.sum(axis=ax, keepdims=keep)
            out = np.trunc(total / n) if n else np.zeros_like(total)
        elif op in ("ReduceMax", "ReduceMin"):
            info = np.iinfo(x.dtype)
            fn = np.max if op == "ReduceMax" else np.min
            out = fn(wide, axis=ax, keepdims=keep, initial=info.min if op == "ReduceMax" else info.max)
        else:
            term = {"ReduceSum": wide, "ReduceProd": wide, "ReduceL1": np.abs(wide), "ReduceSumSquare": wide * wide}[op]
            out = (np.prod if op == "ReduceProd" else np.sum)(term, axis=ax, keepdims=keep)
    return np.asarray(out).astype(wide.dtype).astype(x.dtype)


def test_reductions_fp32(tmp_path):
    net = Net()
    empty = empty_reductions(_reduce_cases(net, lambda *s: np.abs(randn(*s)) + 0.5))
    # reducing nothing: the spec's identities (the mean of nothing is 0 / 0 = NaN), as ONNX's reference
    # has them; ONNX Runtime gives 0 for the mean
    check(net, tmp_path, reference=empty)


def test_reductions_other_floats(tmp_path):
    net, empty = Net(), []
    for dtype in OTHER_FLOATS:
        empty += empty_reductions(_reduce_cases(net, lambda *s: (np.abs(randn(*s)) + 0.5).astype(dtype),
                                                ops=("ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2",
                                                     "ReduceLogSumExp")))
    check(net, tmp_path, reference=empty)


def test_reductions_int(tmp_path):
    """Sums and products wrap in the input type; the integer mean truncates. Checked against NumPy:
    ONNX Runtime saturates integer products and lacks 8-bit reductions, ONNX's reference widens sums
    of squares to int64 and takes integer means in float."""
    net, cases = Net(), []
    for dtype in (np.int8, np.uint8, np.int32, np.int64, np.uint64):
        info = np.iinfo(dtype)
        make = lambda *s: rng.integers(max(info.min, -100), min(info.max, 100), s, endpoint=True).astype(dtype)  # noqa
        cases += _reduce_cases(net, make, ops=("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                                               "ReduceL1", "ReduceSumSquare"))
    check(net, tmp_path, numpy={out: integer_reduction(op, x, axes, attrs) for out, op, x, axes, attrs in cases})


def test_reduce_max_nan_and_bool(tmp_path):
    net, nan_in = Net(), []
    x = randn(4, 40)
    x[1, 7] = np.nan
    x[2, 39] = np.nan
    one = lambda v: net.const(np.array([v], np.int64))  # noqa: E731
    for op in ("ReduceMax", "ReduceMin", "ReduceLogSumExp"):
        nan_in += net.add(op, [x, one(1)])
        nan_in += net.add(op, [x, one(0)])
    b = rng.integers(0, 2, (3, 5)).astype(bool)
    net.add("ReduceMax", [b, one(1)])
    net.add("ReduceMin", [b, one(0)])
    # a NaN propagates (as in ONNX's reference); ONNX Runtime's max / min skip it
    check(net, tmp_path, reference=nan_in)


def test_reduce_axes_at_run_time(tmp_path):
    """axes fed as an input with a declared output shape: several axes sets fit the shapes, the
    kernel picks the loop nest of the axes it is given at run time."""
    x = randn(3, 2, 2)
    net = Net()
    net.add("ReduceSum", [x, np.array([1], np.int64)], keepdims=0)
    model = net.model()
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("o0", onnx.TensorProto.FLOAT, [3, 2]))
    mod = pdc.compile(model, out_dir=str(tmp_path / "m"), opt_level=0)
    for axes in ([1], [2], [-1], [-2]):
        feeds = {"i0": x, "i1": np.array(axes, np.int64)}
        REDUCED.check(mod.run(feeds)["o0"], x.sum(axis=axes[0]), f"axes {axes}")


# ---- arg / top-k / cumsum -------------------------------------------------------------------------
def test_arg_top_k_cum_sum(tmp_path):
    net = Net()
    x = rng.integers(0, 4, (3, 70, 5)).astype(np.float32)  # many ties
    x[0, 3, 1] = np.nan
    x[1, 5, 2] = np.nan
    x[1, 9, 2] = np.nan
    nan_in = []  # a NaN is both the max and the min, as in ONNX's reference (NumPy); ONNX Runtime skips it
    for op in ("ArgMax", "ArgMin"):
        for last in (0, 1):
            nan_in += net.add(op, [x], axis=1, select_last_index=last)
            nan_in += net.add(op, [x], axis=-1, keepdims=0, select_last_index=last)
            net.add(op, [rng.integers(-5, 5, (4, 9)).astype(np.int32)], axis=0, select_last_index=last)
    k = lambda v: net.const(np.array([v], np.int64))  # noqa: E731
    for largest in (1, 0):
        net.add("TopK", [x, k(7)], 2, axis=1, largest=largest)
        net.add("TopK", [x, k(5)], 2, axis=-1, largest=largest)
        net.add("TopK", [rng.integers(0, 3, (2, 30)).astype(np.uint8), k(30)], 2, largest=largest)
        net.add("TopK", [rng.integers(-9, 9, (6, 4)).astype(np.int64), k(1)], 2, axis=0, largest=largest)
    xs = randn(2, 3, 4)
    for exclusive in (0, 1):
        for reverse in (0, 1):
            net.add("CumSum", [xs, net.const(np.array(1, np.int64))], exclusive=exclusive, reverse=reverse)
            net.add("CumSum", [rng.integers(-50, 50, (3, 5)).astype(np.int32), net.const(np.array(-1, np.int32))],
                    exclusive=exclusive, reverse=reverse)
    # float16 partial sums are rounded at every step, as ONNX's reference (NumPy's cumsum) does them;
    # ONNX Runtime keeps them in float32
    half_sums = net.add("CumSum", [randn(4, 30, dtype=np.float16), net.const(np.array(1, np.int64))])
    net.add("CumSum", [xs, np.array(2, np.int64)])  # axis at run time
    check(net, tmp_path, reference=nan_in, in_dtype=half_sums)


# ---- whole models, sanitizers, errors, warnings ---------------------------------------------------
@pytest.mark.zoo
@pytest.mark.parametrize("name", ["squeezenet1_1", "transformer_encoder"])
def test_zoo_models(name, zoo, tmp_path):
    """MaxPool (ceil_mode), GlobalAveragePool, Softmax, ReduceMean in whole models vs ONNX Runtime."""
    from zoo import make_feeds, run_onnxruntime
    path = zoo(name)
    feeds = make_feeds(path)
    mod = pdc.compile(path, target="x86", out_dir=str(tmp_path / "b"), opt_level=2)
    got = mod.run(feeds)
    for k, w in run_onnxruntime(path, feeds):
        assert_zoo_close(got[k], w, k)


def test_sanitizers(tmp_path):
    """Chunked pool rows, NaN slices, top-k heaps, blocked softmax and reductions under
    AddressSanitizer and UBSan."""
    from pdc.harness import build_harness, run_harness
    from pdc.targets.x86 import c_compiler
    net = Net()
    x = randn(1, 2, 9, 300)
    x[0, 1, 3, 7] = np.nan
    net.add("MaxPool", [x], 2, kernel_shape=[3, 3], strides=[2, 1], pads=[1, 1, 1, 1], ceil_mode=1)
    net.add("AveragePool", [x], kernel_shape=[2, 3], pads=[1, 0, 1, 2], strides=[1, 2], count_include_pad=1)
    net.add("LpPool", [randn(1, 2, 5, 6, 7)], kernel_shape=[2, 3, 2], dilations=[2, 1, 2], p=3)
    net.add("GlobalMaxPool", [randn(2, 3, 70)])
    net.add("Softmax", [randn(2, 100, 70)], axis=1)
    net.add("LogSoftmax", [randn(3, 77)])
    net.add("Hardmax", [randn(3, 5, 66)], axis=1)
    net.add("TopK", [randn(3, 50, 4), net.const(np.array([9], np.int64))], 2, axis=1, largest=0)
    net.add("ArgMin", [randn(3, 50, 70)], axis=1, select_last_index=1)
    net.add("ReduceLogSumExp", [randn(3, 4, 70), net.const(np.array([0, 2], np.int64))])
    net.add("ReduceMax", [randn(3, 150), net.const(np.array([0], np.int64))], keepdims=0)
    net.add("ReduceProd", [rng.integers(-3, 3, (4, 33)).astype(np.int8), net.const(np.array([1], np.int64))])
    net.add("CumSum", [randn(3, 5, 4), np.array(-2, np.int64)], exclusive=1, reverse=1)
    net.add("LayerNormalization", [randn(3, 4, 5), randn(4, 1), randn(5)], 3, axis=1)
    net.add("GroupNormalization", [randn(2, 6, 17), randn(6), randn(6)], num_groups=2)
    net.add("LRN", [randn(1, 5, 300)], size=3)
    net.add("MeanVarianceNormalization", [randn(2, 3, 4, 5)], axes=[1, 3])
    net.add("DepthToSpace", [randn(1, 8, 3, 5)], blocksize=2, mode="CRD")
    model = net.model()
    folder = str(tmp_path / "asan")
    compile_bundle(model, folder, target="x86", opt_level=0, build=False)
    flags = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")
    exe = build_harness(folder, c_compiler(), ["-O1", "-march=native", "-std=gnu11"], extra=flags)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    got = run_harness([exe], folder, manifest, net.feeds, env=env)
    assert_same(got, run_graph(import_onnx(model), dict(net.feeds)))


# ---- errors and code quality ---------------------------------------------------------------------
def test_non_constant_axes_with_unknown_shape_is_a_clear_error(tmp_path):
    net = Net()
    net.add("ReduceSum", [randn(2, 3), np.array([1], np.int64)], keepdims=0)
    model = net.model()
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("o0", onnx.TensorProto.FLOAT, None))
    with pytest.raises(PdcError):
        pdc.compile(model, out_dir=str(tmp_path / "m"), opt_level=0)


def test_generated_code_is_warning_free(tmp_path):
    net = Net()
    x = randn(2, 4, 6, 6)
    net.add("MaxPool", [x], 2, kernel_shape=[3, 3], pads=[1, 1, 1, 1], storage_order=1)
    net.add("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    net.add("GlobalAveragePool", [x])
    net.add("LayerNormalization", [randn(2, 3), randn(3), randn(3)], 3)
    net.add("BatchNormalization", [x] + [np.abs(randn(4)) + 0.1 for _ in range(4)])
    net.add("InstanceNormalization", [x, randn(4), randn(4)])
    net.add("GroupNormalization", [x, randn(4), randn(4)], num_groups=2)
    net.add("LRN", [x], size=3)
    net.add("MeanVarianceNormalization", [x])
    net.add("LpNormalization", [x])
    net.add("Softmax", [randn(2, 40)])
    net.add("LogSoftmax", [x], axis=1)
    net.add("Hardmax", [x])
    net.add("ReduceLogSumExp", [x, net.const(np.array([1, 3], np.int64))])
    net.add("ReduceSum", [x.astype(np.int8), net.const(np.array([1], np.int64))])
    net.add("ReduceMean", [x, net.const(np.array([1], np.int64))])
    net.add("ArgMax", [x], axis=1)
    net.add("TopK", [x, net.const(np.array([2], np.int64))], 2)
    net.add("CumSum", [x, np.array(1, np.int64)])
    net.add("DepthToSpace", [x], blocksize=2)
    net.add("Softmax", [x], axis=1)
    net.add("ReduceLogSumExp", [randn(3, 40), net.const(np.array([1], np.int64))])
    net.add("ReduceL1", [randn(3, 40), net.const(np.array([1], np.int64))])
    net.add("ReduceMin", [randn(3, 40), net.const(np.array([1], np.int64))])
    net.add("Softmax", [randn(2, 40, dtype=np.float16)])
    net.add("LayerNormalization", [randn(2, 40, dtype=np.float16), randn(40, dtype=np.float16)], 3)
    net.add("MaxPool", [randn(1, 2, 300, dtype=np.float16)], 2, kernel_shape=[3], strides=[1])
    out = tmp_path / "b"
    compile_bundle(net.model(), str(out), name="net", build=False, opt_level=0)
    srcs = sorted(f for f in os.listdir(out) if f.startswith("net_kernels_") and f.endswith(".c"))
    for cc in ("gcc", "clang"):
        for march in ("x86-64-v3", "x86-64-v4"):  # the AVX2 and the AVX-512 paths
            if shutil.which(cc):
                r = subprocess.run([cc, "-std=gnu11", "-O2", f"-march={march}", "-Wall", "-Wextra", "-Werror", "-I.",
                                    "-Iruntime", "-c", *srcs], cwd=out, capture_output=True, text=True)
                assert r.returncode == 0, r.stderr[:3000]
