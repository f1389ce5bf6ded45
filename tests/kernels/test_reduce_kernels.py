"""Reduction kernels (ReduceSum ... ReduceLogSumExp, ArgMax / ArgMin, CumSum), every path on every
target that runs here, against ONNX Runtime (ONNX's reference where ONNX Runtime refuses a layer):
random layers over the attribute space the spec allows (every axes set, negative and unordered axes,
keepdims, noop_with_empty_axes, axes as a constant or fed at run time, select_last_index, exclusive
and reverse scans), each path forced on layers that would not normally pick it (see harness.py)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import strategies as st

from harness import Const, Layer, build_model, oracle_outputs, run_property
from strategies import layers
from targets import examples, options, require

REDUCE_OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
# the ops of each integer type: LogSum and LogSumExp left the integer types in opset 28 (ONNX
# Runtime takes each exp(x - max) in the integer type; ONNX's reference refuses them); int8 / uint8:
# Max and Min only, as bool (False < True)
INT_REDUCE_OPS = tuple(op for op in REDUCE_OPS if op not in ("ReduceLogSum", "ReduceLogSumExp"))
INT_OPS = {np.dtype(np.int32): INT_REDUCE_OPS, np.dtype(np.int64): INT_REDUCE_OPS,
           np.dtype(np.int8): ("ReduceMax", "ReduceMin"), np.dtype(np.uint8): ("ReduceMax", "ReduceMin"),
           np.dtype(np.bool_): ("ReduceMax", "ReduceMin")}


# ---- inputs ---------------------------------------------------------------------------------------------
def reduce_input(rng, op: str, shape, dtype) -> np.ndarray:
    """Values that keep the op's output finite and O(1)-ish: positive sums for LogSum, factors near 1
    for Prod (integers: +-1 and a few 2s, no overflow, which the spec leaves undefined), the type's
    whole range for integer max / min."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < rng.choice([0.05, 0.5, 0.95])
    if dtype.kind in "iu":
        if op in ("ReduceMax", "ReduceMin"):
            info = np.iinfo(dtype)
            return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        if op == "ReduceProd":
            x = rng.choice(np.array([-1, 1, 1, 1], dtype), size=shape)
            x.flat[rng.choice(x.size, size=min(x.size, 20), replace=False)] *= 2
            return x
        return rng.integers(-50, 51, size=shape).astype(dtype)
    if op == "ReduceProd":
        return rng.uniform(0.7, 1.4, size=shape).astype(dtype)
    if op == "ReduceLogSum":
        return (np.abs(rng.standard_normal(shape)) + 0.1).astype(dtype)
    if op == "ReduceLogSumExp":  # exp(40) overflows float32: the max must be taken out first
        return (rng.standard_normal(shape) * rng.choice([3, 40])).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def add_specials(rng, x: np.ndarray) -> np.ndarray:
    """A few NaNs and infinities among the values."""
    if x.dtype.kind == "f" and x.size:
        x = x.copy()
        at = rng.choice(x.size, size=max(1, x.size // 40))
        x.flat[at] = rng.choice(np.array([np.nan, np.inf, -np.inf], x.dtype), size=at.size)
    return x


def nan_oracle(layer: Layer) -> Layer:
    """Reductions over NaNs, where the spec follows numpy (NaN wins; the arg ops give the first or last
    NaN's index). ONNX's reference does for max, min and the arg ops, while ONNX Runtime's kernels keep
    or drop a NaN by its position. For log-sum-exp ONNX Runtime drops a NaN next to an infinity and
    ONNX's reference turns a group of -inf (or of +inf and -inf) into NaN: the oracle is then ONNX
    Runtime with the NaNs taken out, and NaN for every group that held one."""
    x = layer.inputs[0]
    if x.dtype.kind != "f" or not np.isnan(x).any():
        if layer.op == "ReduceLogSumExp" and x.dtype == np.float32:
            layer.want = log_sum_exp_in_float64(layer)
        return layer
    if layer.op in ("ReduceMax", "ReduceMin", "ArgMax", "ArgMin"):
        layer.oracle = "onnx-reference"
    elif layer.op == "ReduceLogSumExp":
        nan = np.isnan(x)
        (value,) = log_sum_exp_in_float64(replace(layer, inputs=[np.where(nan, x.dtype.type(0), x)] + layer.inputs[1:]))
        (held,) = oracle_of(replace(layer, op="ReduceMax", inputs=[nan.astype(x.dtype)] + layer.inputs[1:]))
        layer.want = [np.where(held > 0, x.dtype.type(np.nan), value)]
    return layer


def log_sum_exp_in_float64(layer: Layer) -> list:
    """ReduceLogSumExp by the oracle on the layer's float64 twin, cast back: ONNX Runtime's float32
    kernel gives -102.586 for {-inf, -102.375}, where the answer is -102.375: ln(2 x 1.4e-45), the
    log of a float32 denormal, as exp(x) summed without taking the max out gives."""
    x = layer.inputs[0]
    (y,) = oracle_of(replace(layer, inputs=[x.astype(np.float64)] + layer.inputs[1:]))
    return [y.astype(x.dtype)]


@st.composite
def tensor_shape(draw, kind: str, max_rank: int = 5, max_numel: int = 60_000, empty: bool = False):
    """A shape; kind 'rows' gives a long innermost dim, 'blocks' a wide one (more than a block of
    neighbouring groups), 'any' mostly short dims with size-1 dims among them (and size-0 ones where
    `empty`)."""
    rank = draw(st.integers(1 if kind != "any" else 0, max_rank))
    sizes = [1, 2, 3, 4, 5, 7, 8, 16] + ([0] if empty else [])
    shape = [draw(st.sampled_from(sizes)) for _ in range(rank)]
    if rank and (kind in ("rows", "blocks") or draw(st.integers(0, 3)) == 0):
        shape[-1] = draw(st.integers(17, 300))
    while math.prod(shape) > max_numel:
        i = int(np.argmax(shape))
        shape[i] = max(1, shape[i] // 2)
    return shape


@st.composite
def axes_of(draw, rank: int, kind: str):
    """(axes as given to the op: None = absent, reduced axes): unordered, some negative; kind 'rows'
    reduces the innermost dim, 'blocks' keeps it."""
    if rank == 0:
        return (None if draw(st.booleans()) else []), []
    chosen = draw(st.lists(st.integers(0, rank - 1), unique=True, max_size=rank))
    if kind == "rows" and rank - 1 not in chosen:
        chosen.append(rank - 1)
    if kind == "blocks":
        chosen = [a for a in chosen if a != rank - 1] or ([0] if rank > 1 else [])
    if not chosen and kind == "any" and draw(st.booleans()):
        return None, []
    given = [a - rank if draw(st.booleans()) else a for a in chosen]
    return given, sorted(chosen)


@st.composite
def reduce_layer(draw, op: str = "any", kind: str = "any", dtype=np.float32, max_rank: int = 5,
                 max_numel: int = 60_000, runtime_axes: bool = True, specials: bool = False):
    """One Reduce* layer (op 'any': drawn among those of the dtype) over a shape of `kind` (see
    tensor_shape and axes_of); axes absent, empty, constant or fed at run time; specials: NaNs and
    infinities in half the inputs."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if op == "any":
        op = draw(st.sampled_from(INT_OPS.get(dtype, REDUCE_OPS)))
    shape = draw(tensor_shape(kind, max_rank, max_numel, empty=kind == "any"))
    given, axes = draw(axes_of(len(shape), kind))
    if op == "ReduceMean" and math.prod(shape) == 0:  # the mean of nothing is undefined
        shape = [max(1, d) for d in shape]
    attrs = {}
    if draw(st.integers(0, 2)):
        attrs["keepdims"] = draw(st.integers(0, 1))
    if given is None or not given:
        if draw(st.booleans()):
            attrs["noop_with_empty_axes"] = draw(st.integers(0, 1))
    elif draw(st.integers(0, 3)) == 0:
        attrs["noop_with_empty_axes"] = 0
    x = reduce_input(rng, op, shape, dtype)
    if specials and draw(st.booleans()):
        x = add_specials(rng, x)
    inputs = [x]
    fed = False
    if given is not None:
        axes_arr = np.asarray(given, np.int64)
        fed = runtime_axes and draw(st.integers(0, 3)) == 0
        inputs.append(axes_arr if fed else Const(axes_arr))
    layer = nan_oracle(Layer(op, inputs, attrs))
    if fed and layer.want is None:  # the model declares the output shape, which ONNX's inference cannot know
        layer.want = oracle_of(layer)
    return layer


def oracle_of(layer: Layer) -> list:
    """The outputs of layer by ONNX Runtime, or ONNX's reference where ONNX Runtime refuses it."""
    model, feeds, names = build_model([layer])
    try:
        got = oracle_outputs(model, feeds, layer.oracle)
    except Exception:
        got = oracle_outputs(model, feeds, "onnx-reference")
    return [got[n] for n in names[0]]


ARG_DTYPES = (np.float32, np.float64, np.float16, np.int32, np.int64, np.int8, np.uint8)


@st.composite
def arg_layer(draw, kind: str = "any", dtype=None, max_rank: int = 4, specials: bool = False):
    """ArgMax / ArgMin; kind 'rows' takes the innermost axis, 'blocks' another one. Values are often
    few distinct numbers, so ties (select_last_index) happen."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(draw(st.sampled_from(ARG_DTYPES)) if dtype is None else dtype)
    shape = draw(tensor_shape("rows" if kind == "rows" else "any", max_rank, empty=True))
    if not shape:
        shape = [draw(st.integers(1, 9))]
    rank = len(shape)
    if kind == "rows":
        axis = rank - 1
    elif kind == "blocks" and rank > 1:
        axis = draw(st.integers(0, rank - 2))
    else:
        axis = draw(st.integers(0, rank - 1))
    shape[axis] = max(1, shape[axis])  # the index of a max of nothing is undefined
    if draw(st.booleans()):
        x = rng.integers(-3, 4, size=shape).astype(dtype)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    if specials and draw(st.booleans()):
        x = add_specials(rng, x)
    attrs = {"axis": axis - rank if draw(st.booleans()) else axis}
    if draw(st.booleans()):
        attrs["keepdims"] = draw(st.integers(0, 1))
    if draw(st.booleans()):
        attrs["select_last_index"] = draw(st.integers(0, 1))
    return nan_oracle(Layer(draw(st.sampled_from(["ArgMax", "ArgMin"])), [x], attrs))


CUMSUM_DTYPES = (np.float32, np.float64, np.float16, np.int32, np.int64)


@st.composite
def cumsum_layer(draw, dtype=None, max_rank: int = 4):
    """CumSum along any axis (constant or fed at run time, int32 or int64), exclusive, reverse."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(draw(st.sampled_from(CUMSUM_DTYPES)) if dtype is None else dtype)
    shape = draw(tensor_shape("any", max_rank, empty=True))
    if not shape:
        shape = [draw(st.integers(1, 9))]
    rank = len(shape)
    axis = draw(st.integers(-rank, rank - 1))
    if dtype.kind in "iu":
        x = rng.integers(-1000, 1001, size=shape).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    attrs = {k: draw(st.integers(0, 1)) for k in ("exclusive", "reverse") if draw(st.booleans())}
    axis_arr = np.asarray(axis, draw(st.sampled_from([np.int32, np.int64])))
    fed = draw(st.integers(0, 3)) == 0
    # float16 partial sums are rounded at every step, as ONNX's reference (NumPy's cumsum) does them;
    # ONNX Runtime keeps them in float32
    oracle = "onnx-reference" if dtype == np.float16 else "ort"
    return Layer("CumSum", [x, axis_arr if fed else Const(axis_arr)], attrs, oracle=oracle)


# ---- the properties -------------------------------------------------------------------------------------
# float32 mainly, and the other types the ops take (int8 / uint8 / bool: Max and Min only)
DTYPES = (np.float32, np.float32, np.float32, np.float16, np.float64, np.int32, np.int64, np.int8, np.uint8,
          np.bool_)
TARGETS = ("x86-avx512", "x86-avx2", "arm64")
# (family, path, the draw that reaches it): forced paths see the layers that would take another one
# (short rows for the row paths, strided rows for groups, the innermost axis for the arg blocks)
PATHS = [("reduce", "groups", "any"), ("reduce", "lanes", "rows"), ("reduce", "rows-f32", "any"),
         ("reduce", "blocks", "blocks"), ("arg", "rows", "rows"), ("arg", "blocks", "any")]
CASES = [(t, f, p, k) for t in TARGETS for f, p, k in PATHS]
EXAMPLES = 8


@st.composite
def reduce_draw(draw, family: str, path: str, kind: str, arm: bool):
    """One layer of the family; the fp32 row helpers see fp32 only."""
    if family == "arg":
        return draw(arg_layer(kind, max_rank=3 if arm else 4, specials=True))
    dtype = np.float32 if path == "rows-f32" else draw(st.sampled_from(DTYPES))
    return draw(reduce_layer(kind=kind, dtype=dtype, max_rank=4 if arm else 5,
                             max_numel=20_000 if arm else 60_000, specials=True))


@pytest.mark.parametrize("target,family,path,kind", CASES, ids=[f"{t}-{f}-{p}" for t, f, p, _ in CASES])
def test_reduce_path_matches_onnxruntime(target, family, path, kind):
    require(target)
    arm = not target.startswith("x86")
    run_property(layers(reduce_draw(family, path, kind, arm), max_size=4 if arm else 6), target,
                 examples=examples(target, EXAMPLES), force=f"{family}={path}",
                 expect_path=f"{family}/{path}", **options(target))


@pytest.mark.parametrize("target", TARGETS)
def test_cumsum_matches_onnxruntime(target):
    require(target)
    run_property(layers(cumsum_layer(), max_size=6), target, examples=examples(target, EXAMPLES), **options(target))
