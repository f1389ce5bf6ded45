"""Softmax and normalization kernels, every path on every target that runs here, against ONNX
Runtime (ONNX's reference where ONNX Runtime refuses the layer): Softmax / LogSoftmax / Hardmax on
every axis, LayerNormalization, BatchNormalization (inference), InstanceNormalization,
GroupNormalization, LpNormalization, MeanVarianceNormalization, RMSNormalization and LRN, with
their parameters as constants and as run-time inputs (see tests/kernels/harness.py).

Oracles: ONNX Runtime refuses GroupNormalization-21, float64 Hardmax / InstanceNormalization and a
few more; the harness asks ONNX's reference for those, except GroupNormalization (the reference
run in float64: _group_norm_in_float64), LRN (the spec's formula in float64: _lrn_in_float64) and
MeanVarianceNormalization outside float32 or over groups of one element (its function body run by
ONNX Runtime in float64: _mvn_in_float64). The reference computes LpNormalization p=1 as sum(x)
instead of sum(|x|), so p=1 is drawn only in the dtypes ONNX Runtime takes (float32, float64).
Neither implements LayerNormalization's stash_type=11, which is not drawn.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import strategies as st
from onnx import TensorProto, helper

from harness import Const, Layer, build_model, oracle_outputs, run_property
from targets import examples, options, require

# Statistics of one element: x - mean and the variance are exactly 0, the output exactly B.
# ONNX Runtime's mean of one value is off by a rounding, which (x - mean) / sqrt(var + eps)
# multiplies by 1 / sqrt(eps): ONNX's reference computes them exactly
ONE_ELEMENT_ORACLE = "onnx-reference"
MAX_ELEMS = 20_000   # input elements of a layer (the emulated targets take a quarter)
F16_TOL = dict(rtol=5e-3, atol=5e-3)


def _dims(draw, rank: int, max_elems: int, wide: int = 0) -> list[int]:
    """A shape of `rank` dims, one of them (sometimes) up to `wide` long, within max_elems."""
    shape = [draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31])) for _ in range(rank)]
    if wide and draw(st.booleans()):
        shape[draw(st.integers(0, rank - 1))] = draw(st.integers(60, wide))
    while math.prod(shape) > max_elems:
        i = int(np.argmax(shape))
        shape[i] = max(1, shape[i] // 2)
    return shape


def _x(draw, rng, shape, dtype, spread: bool = True) -> np.ndarray:
    """O(1) values, or (spread) wider and off-center ones; float16 ones stay O(1) outside softmax:
    ONNX's reference sums their squares in float16, which overflows past 65504."""
    scale = draw(st.sampled_from([1.0, 1.0, 8.0, 40.0])) if spread else 1.0
    offset = draw(st.sampled_from([0.0, 0.0, 3.0, -50.0])) if spread else 0.0
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def _tol(dtype, stash: bool = False) -> dict:
    """The dtype's tolerance; with stash (the statistics in stash_type, float32 by default, as the
    spec's function body computes them: Cast(X, stash_type) first) float64 layers get float32's,
    where ONNX Runtime computes them in float64."""
    if np.dtype(dtype) == np.float16:
        return F16_TOL
    return dict(rtol=1e-5, atol=2e-5) if stash and np.dtype(dtype) == np.float64 else {}


def conditioned(layer: Layer, x: np.ndarray, groups, eps: float, gain: float = 1.0, stash=np.float32) -> Layer:
    """Widens the layer's atol to the rounding a (x - mean) / sqrt(var + eps) in `stash` precision
    cannot avoid: x - mean is off by the mean's rounding, which the division scales by
    1 / sqrt(var + eps) (two close values far from 0 in a group of two; a row at -50 with a spread
    of 1). The mean of n values summed in float32 is off by up to about n / 16 ulps of |x| with four
    vector lanes of partial sums (each lane adds n / 4 values, its error growing with its sum):
    on arm64, 1456 values at -50 +- 1.3 give 1.3e-4 where 16 ulps allow 1.0e-4 (ONNX Runtime is off
    by 6.3e-4 on such a group). Groups drawn well conditioned keep the dtype's tolerance; a one-pass
    E[x^2] - E[x]^2 still shows."""
    if np.dtype(stash) == np.float64 and x.dtype == np.float64:
        return layer
    x64 = x.astype(np.float64)
    var = float(x64.var(axis=groups).min()) if x64.size else 1.0
    count = math.prod(x.shape[g] for g in groups)
    ulps = 16 + count / 16
    bound = ulps * 2.0 ** -24 * float(np.abs(x64).max(initial=0)) * gain / math.sqrt(var + eps)
    default = layer.atol if layer.atol is not None else (5e-3 if x.dtype == np.float16 else 2e-5)
    layer.atol = max(default, bound)
    return layer


def _gain(p) -> float:
    v = p.value if isinstance(p, Const) else p
    return float(np.abs(v.astype(np.float64)).max(initial=1.0))


def _param(draw, rng, shape, dtype, scale=1.0, const=None):
    """A parameter tensor: a constant or a run-time input (drawn unless `const` says)."""
    v = (rng.standard_normal(shape) * scale).astype(dtype)
    return Const(v) if (draw(st.booleans()) if const is None else const) else v


# ---- Softmax / LogSoftmax / Hardmax ----------------------------------------------------------------------
@st.composite
def softmax_layer(draw, kind: str = "any", max_elems: int = MAX_ELEMS, dtypes=(np.float32,)):
    """kind 'last': the axis is the last one (contiguous rows); 'inner': rows strided by the
    dims after the axis (sometimes more than a block of 64)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    op = draw(st.sampled_from(["Softmax", "LogSoftmax", "Hardmax"]))
    dtype = draw(st.sampled_from(list(dtypes)))
    rank = draw(st.integers(1 if kind != "inner" else 2, 5))
    shape = _dims(draw, rank, max_elems, wide=300)
    if kind == "last":
        axis = rank - 1
    elif kind == "inner":
        axis = draw(st.integers(0, rank - 2))
        if math.prod(shape[axis + 1:]) == 1:
            shape[-1] = draw(st.sampled_from([2, 5, 16, 64, 70, 129]))
    else:
        axis = draw(st.integers(0, rank - 1))
    while math.prod(shape) > max_elems:
        i = int(np.argmax(shape))
        shape[i] = max(1, shape[i] // 2)
    x = _x(draw, rng, shape, dtype)  # ONNX Runtime takes float16 softmax (in float)
    if op != "Hardmax" and draw(st.integers(0, 3)) == 0:  # masked entries; a whole masked row gives NaN
        x[rng.random(shape) < draw(st.sampled_from([0.3, 1.0]))] = -np.inf
    if op == "Hardmax" and draw(st.booleans()):  # ties: the first maximum wins
        x = np.round(x).astype(dtype)
    attrs = {}
    if axis != rank - 1 or draw(st.booleans()):
        attrs["axis"] = axis - rank if draw(st.booleans()) else axis
    return Layer(op, [x], attrs, **_tol(dtype))


# ---- LayerNormalization / RMSNormalization ---------------------------------------------------------------
@st.composite
def row_norm_layer(draw, max_elems: int = MAX_ELEMS, dtypes=(np.float32,)):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    op = draw(st.sampled_from(["LayerNormalization", "LayerNormalization", "RMSNormalization"]))
    dtype = draw(st.sampled_from(list(dtypes)))
    rank = draw(st.integers(1, 4))
    shape = _dims(draw, rank, max_elems, wide=700)
    axis = draw(st.integers(0, rank - 1))
    tail = shape[axis:]
    # Scale / B broadcast to the normalized tail: the whole tail, a suffix of it, ones in between
    pshape = list(tail[draw(st.integers(0, len(tail) - 1)):]) if draw(st.booleans()) else list(tail)
    pshape = [d if draw(st.integers(0, 3)) else 1 for d in pshape]
    inputs = [_x(draw, rng, shape, dtype, dtype != np.float16), _param(draw, rng, pshape, dtype)]
    outputs = 1
    if op == "LayerNormalization":
        if draw(st.booleans()):
            inputs.append(_param(draw, rng, pshape, dtype))
        outputs = draw(st.integers(1, 3))
    attrs = {"axis": axis - rank if draw(st.booleans()) else axis}
    if draw(st.booleans()):
        attrs["epsilon"] = draw(st.sampled_from([1e-5, 1e-3, 0.25]))
    layer = Layer(op, inputs, attrs, outputs=outputs, opset=23 if op == "RMSNormalization" else None,
                  **_tol(dtype, stash=True))
    if math.prod(tail) == 1:
        layer.oracle = ONE_ELEMENT_ORACLE
    if op == "LayerNormalization":
        conditioned(layer, inputs[0], tuple(range(axis, rank)), attrs.get("epsilon", 1e-5), _gain(inputs[1]))
    return layer


# ---- Batch / Instance / Group normalization, LRN -----------------------------------------------------------
@st.composite
def channel_norm_layer(draw, max_elems: int = MAX_ELEMS, dtypes=(np.float32,), const_params=None):
    """const_params: True / False for constant / run-time parameters, None to draw them."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    op = draw(st.sampled_from(["BatchNormalization", "InstanceNormalization", "GroupNormalization", "LRN"]))
    dtype = draw(st.sampled_from(list(dtypes)))
    rank = 4 if op == "LRN" else draw(st.integers(2 if op == "BatchNormalization" else 3, 5))
    shape = _dims(draw, rank, max_elems, wide=600)
    C = shape[1]
    attrs = {}
    wide = np.dtype(dtype) != np.float16
    def param(shape, scale=1.0):
        return _param(draw, rng, shape, dtype, scale, const_params)
    if op == "BatchNormalization":
        var = np.abs(rng.standard_normal(C)).astype(dtype) + np.asarray(0.05, dtype)
        inputs = [_x(draw, rng, shape, dtype, wide), param([C]), param([C], scale=0.5),
                  param([C]), Const(var) if const_params else var]
    elif op == "InstanceNormalization":
        inputs = [_x(draw, rng, shape, dtype, wide), param([C]), param([C], scale=0.5)]
    elif op == "GroupNormalization":
        groups = draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0]))
        attrs["num_groups"] = groups
        inputs = [_x(draw, rng, shape, dtype, wide), param([C]), param([C], scale=0.5)]
    else:
        attrs["size"] = draw(st.integers(1, 2 * C + 1))
        if draw(st.booleans()):
            attrs.update(alpha=draw(st.sampled_from([1e-4, 0.01, 0.5])), beta=draw(st.sampled_from([0.75, 0.5, 1.3])),
                         bias=draw(st.sampled_from([1.0, 2.0, 0.5])))
        inputs = [_x(draw, rng, shape, dtype, wide)]
    if op != "LRN" and draw(st.booleans()):
        attrs["epsilon"] = draw(st.sampled_from([1e-5, 1e-3, 0.25]))
    layer = Layer(op, inputs, attrs, **_tol(dtype, stash=op == "GroupNormalization"))
    if op == "GroupNormalization":
        layer.want = _group_norm_in_float64(layer)
        grouped = inputs[0].reshape(shape[0], attrs["num_groups"], -1)
        conditioned(layer, grouped, (2,), attrs.get("epsilon", 1e-5), _gain(inputs[1]))
    if op == "InstanceNormalization":
        conditioned(layer, inputs[0], tuple(range(2, rank)), attrs.get("epsilon", 1e-5), _gain(inputs[1]),
                    stash=dtype)
    if op == "LRN":
        layer.want = _lrn_in_float64(layer)
        if np.dtype(dtype) == np.float32:  # the window's squares summed in float32
            layer.rtol = max(1e-5, 2 * attrs["size"] * float(np.finfo(np.float32).eps))
    group_size = math.prod(shape[2:]) * C // attrs.get("num_groups", C)
    if op in ("InstanceNormalization", "GroupNormalization") and group_size == 1:
        layer.oracle = ONE_ELEMENT_ORACLE
    return layer


def _lrn_in_float64(layer: Layer) -> list:
    """LRN by the spec's formula in float64 (attributes as their float32 values). Neither oracle
    fits: ONNX Runtime (odd sizes, float32 only) is up to 2.4e-4 (relative) off where a window's
    other squares are large next to the element's (-0.7400805 for pdc's and float64's -0.7399017,
    as a window sum kept in float32 would give), and ONNX's reference sums the squares of channel c over
    c < N (its loop runs over the batch dim)."""
    x = layer.inputs[0].astype(np.float64)
    a = layer.attrs
    size = a["size"]
    alpha, beta, bias = (float(np.float32(a.get(k, d))) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    C, lo, hi = x.shape[1], (size - 1) // 2, size // 2  # channels [c - lo, c + hi]: floor / ceil of (size - 1) / 2
    squares = x * x
    sums = np.stack([squares[:, max(0, c - lo):min(C, c + hi + 1)].sum(axis=1) for c in range(C)], axis=1)
    return [(x / (bias + alpha / size * sums) ** beta).astype(layer.inputs[0].dtype)]


def _group_norm_in_float64(layer: Layer) -> list:
    """GroupNormalization's output by ONNX's reference (ONNX Runtime refuses opset 21) run in float64
    (stash_type double): the function body it follows takes the variance as E[x^2] - E[x]^2, which
    in float32 cancels to a few correct digits where the mean is large next to the spread."""
    wide = [Const(i.value.astype(np.float64)) if isinstance(i, Const) else i.astype(np.float64) for i in layer.inputs]
    twin = Layer(layer.op, wide, dict(layer.attrs, stash_type=int(TensorProto.DOUBLE)))
    model, feeds, outs = build_model([twin])
    y = oracle_outputs(model, feeds, "onnx-reference")[outs[0][0]]
    return [y.astype(layer.inputs[0].dtype)]


# ---- LpNormalization / MeanVarianceNormalization -----------------------------------------------------------
@st.composite
def axes_norm_layer(draw, max_elems: int = MAX_ELEMS, dtypes=(np.float32,)):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    op = draw(st.sampled_from(["LpNormalization", "MeanVarianceNormalization"]))
    dtype = draw(st.sampled_from(list(dtypes)))
    rank = draw(st.integers(1, 4))
    shape = _dims(draw, rank, max_elems, wide=600)
    x = _x(draw, rng, shape, dtype, spread=op == "MeanVarianceNormalization" and dtype != np.float16)
    attrs = {}
    if op == "LpNormalization":
        axis = draw(st.integers(0, rank - 1))
        p = draw(st.sampled_from([1, 2])) if np.dtype(dtype) != np.float16 else 2
        attrs = {"axis": axis - rank if draw(st.booleans()) else axis, "p": p}
        if draw(st.integers(0, 3)) == 0:  # a zero row has norm 0: zeros out
            idx = [slice(None)] * rank
            idx[axis] = slice(None)
            for d in range(rank):
                if d != axis:
                    idx[d] = 0
            x[tuple(idx)] = 0
    else:
        if rank >= 3 and draw(st.integers(0, 3)) == 0:
            if rank == 4:
                pass  # the default axes [0, 2, 3]
            else:
                attrs["axes"] = [0, 2]
        else:
            axes = sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1, max_size=rank)))
            attrs["axes"] = [a - rank if draw(st.booleans()) else a for a in axes]
        if rank < 4 and "axes" not in attrs:
            attrs["axes"] = [0]
    layer = Layer(op, [x], attrs, **_tol(dtype))
    if op == "MeanVarianceNormalization":  # its epsilon is 1e-9, added to the standard deviation
        axes = tuple(sorted({a % rank for a in attrs.get("axes", [0, 2, 3])}))
        if np.dtype(dtype) != np.float32 or math.prod(shape[a] for a in axes) == 1:
            layer.want = [_mvn_in_float64(x, axes)]
        else:
            conditioned(layer, x, axes, 1e-18)
    return layer


def _mvn_in_float64(x: np.ndarray, axes) -> np.ndarray:
    """MeanVarianceNormalization by ONNX Runtime's float64 ReduceMean / Sub / Mul / Sqrt / Div (the
    function body with the variance as E[(x - E[x])^2], equal to its E[x^2] - E[x]^2). ONNX Runtime
    has MeanVarianceNormalization in float32 only, and there takes the variance of one element as
    a rounding below 0 (sqrt: NaN); ONNX's reference fails on float64 (a float32 epsilon)."""
    ax = helper.make_tensor("axes", TensorProto.INT64, [len(axes)], list(axes))
    eps = helper.make_tensor("eps", TensorProto.DOUBLE, [], [1e-9])
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["mean"]),
             helper.make_node("Sub", ["x", "mean"], ["d"]),
             helper.make_node("Mul", ["d", "d"], ["d2"]),
             helper.make_node("ReduceMean", ["d2", "axes"], ["var"]),
             helper.make_node("Sqrt", ["var"], ["sd"]),
             helper.make_node("Add", ["sd", "eps"], ["den"]),
             helper.make_node("Div", ["d", "den"], ["y"])]
    graph = helper.make_graph(nodes, "mvn", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, x.shape)], [ax, eps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    y = oracle_outputs(model, {"x": x.astype(np.float64)}, "ort")["y"]
    return y.astype(x.dtype)


# ---- the tests -----------------------------------------------------------------------------------------------
TARGETS = ("x86-avx512", "x86-avx2", "arm64")
DTYPES = (np.float32, np.float32, np.float32, np.float64, np.float16)
SOFTMAX_PATHS = [("rows", "last"), ("block", "any")]   # block: strided rows and (forced) contiguous ones
EXAMPLES = 10


def _scaled(target, max_elems=MAX_ELEMS) -> int:
    return max_elems if target.startswith("x86") else max_elems // 4


@pytest.mark.parametrize("target,path,kind", [(t, p, k) for t in TARGETS for p, k in SOFTMAX_PATHS],
                         ids=[f"{t}-{p}" for t in TARGETS for p, _ in SOFTMAX_PATHS])
def test_softmax_path_matches_oracle(target, path, kind):
    require(target)
    draw = st.lists(softmax_layer(kind, _scaled(target), DTYPES), min_size=1, max_size=5)
    run_property(draw, target, examples=examples(target, EXAMPLES), force=f"softmax={path}",
                 expect_path=f"softmax/{path}", **options(target))


def norm_layers(max_elems, dtypes=DTYPES, const_params=None):
    one = st.one_of(row_norm_layer(max_elems, dtypes), channel_norm_layer(max_elems, dtypes, const_params),
                    axes_norm_layer(max_elems, dtypes))
    return st.lists(one, min_size=1, max_size=6)


@pytest.mark.parametrize("target", TARGETS)
def test_norm_matches_oracle(target):
    require(target)
    run_property(norm_layers(_scaled(target)), target, examples=examples(target, 2 * EXAMPLES), **options(target))


@pytest.mark.parametrize("target", TARGETS)
def test_constant_channel_norms_unfolded(target):
    """Constant parameters: at -O1 nothing folds batch normalization away, so its kernel folds them."""
    require(target)
    draw = st.lists(channel_norm_layer(_scaled(target), DTYPES, const_params=True), min_size=1, max_size=5)
    run_property(draw, target, examples=examples(target, EXAMPLES // 2), opt_level=1, **options(target))


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2", "arm64"])
def test_default_epsilon_is_float32(target):
    """Found by fuzz-kernels: a float64 InstanceNormalization without an epsilon attribute took 1e-5 in
    float64, where ONNX (its float attributes are float32) and ONNX Runtime take float32(1e-5): two
    elements per instance make the variance small enough for that to show (2e-10 relative)."""
    from harness import check_layers
    require(target)
    rng = np.random.default_rng(0)
    layer = Layer("InstanceNormalization", [rng.standard_normal([68, 1, 2]) * 0.05,
                                            Const(np.array([1.3])), Const(np.array([0.2]))], {})
    check_layers([layer], target, opt_level=1, rtol=1e-12, atol=1e-12, **options(target))


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2", "arm64"])
def test_lrn_default_alpha_is_float32(target):
    """Found by fuzz-kernels: a float64 LRN without an alpha attribute took 1e-4 in float64, where
    ONNX's attribute (a float32) is float32(1e-4): 3.8e-9 relative on an element of -42.2."""
    from harness import check_layers
    require(target)
    x = np.array([[[[-42.2], [3.0]]], [[[0.5], [-7.25]]]])  # (2, 1, 2, 1): size 1 sees each element alone
    layer = Layer("LRN", [x], {"size": 1})
    layer.want = [x / (1.0 + float(np.float32(1e-4)) * x * x) ** 0.75]
    check_layers([layer], target, rtol=1e-13, atol=1e-13, **options(target))
