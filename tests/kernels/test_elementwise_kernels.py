"""Elementwise, fused-elementwise and data-movement kernels (the generators printed through the kernel
IR, pdc/codegen/kir) against ONNX Runtime (ONNX's reference where ONNX Runtime refuses a layer):
random broadcasting shapes over float and integer types, chains of elementwise ops that the -O2
pipeline fuses into one fused_elementwise kernel, and transposes, slices, pads, tiles, expands,
concats and gathers over every dtype class (see harness.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st
from onnx import helper

from harness import Const, Layer, run_property
from strategies import layers
from targets import examples, options, require

TARGETS = ("x86-avx2", "arm64")
EXAMPLES = 12


def values(rng, shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(-60 if dtype.kind == "i" else 0, 61, size=shape).astype(dtype)
    return (rng.standard_normal(shape) * 2).astype(dtype)


@st.composite
def broadcast_shapes(draw, n: int, max_rank: int = 4):
    """n shapes that broadcast together (size-1 and missing leading dims), at most ~4k elements."""
    rank = draw(st.integers(0, max_rank))
    out = [draw(st.sampled_from([1, 2, 3, 5, 8, 17])) for _ in range(rank)]
    shapes = []
    for _ in range(n):
        r = draw(st.integers(0, rank))
        shapes.append([1 if draw(st.integers(0, 3)) == 0 else d for d in out[rank - r:]])
    return shapes


FLOAT_UNARY = ("Relu", "Neg", "Abs", "Sigmoid", "Tanh", "Exp", "Floor", "Ceil")
FLOATS = (np.float32, np.float32, np.float64, np.float16)
INTS = (np.int32, np.int64, np.int8)


@st.composite
def elementwise_layer(draw, fuse: bool):
    """A broadcasting binary op, a unary op, Where, Clip or Cast; with `fuse`, followed by a chain of
    elementwise ops (the -O2 pipeline makes them one fused_elementwise kernel)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    kind = draw(st.sampled_from(["binary", "binary", "unary", "where", "clip", "cast", "compare"]))
    dtype = np.dtype(draw(st.sampled_from(FLOATS + (INTS if kind in ("binary", "cast", "compare") else ()))))
    if kind in ("binary", "compare", "where"):
        a_shape, b_shape, c_shape = draw(broadcast_shapes(3))
    else:
        a_shape = draw(broadcast_shapes(1))[0]
    if kind == "binary":
        op = draw(st.sampled_from(["Add", "Sub", "Mul", "Max", "Min"] + (["Div"] if dtype.kind == "f" else [])))
        layer = Layer(op, [values(rng, a_shape, dtype), values(rng, b_shape, dtype)])
    elif kind == "compare":
        op = draw(st.sampled_from(["Less", "Greater", "Equal", "LessOrEqual"]))
        layer = Layer(op, [values(rng, a_shape, dtype), values(rng, b_shape, dtype)])
    elif kind == "unary":
        layer = Layer(draw(st.sampled_from(FLOAT_UNARY)), [values(rng, a_shape, dtype)])
    elif kind == "where":
        layer = Layer("Where", [values(rng, a_shape, np.bool_), values(rng, b_shape, dtype), values(rng, c_shape, dtype)])
    elif kind == "clip":
        lo, hi = sorted(rng.standard_normal(2))
        layer = Layer("Clip", [values(rng, a_shape, dtype), Const(np.asarray(lo, dtype)), Const(np.asarray(hi, dtype))])
    else:
        to = np.dtype(draw(st.sampled_from((np.float32, np.float64, np.float16, np.int32, np.int64, np.bool_))))
        x = values(rng, a_shape, dtype)
        if dtype.kind == "f" and to.kind in "iu":
            x = np.trunc(x * 10).astype(dtype)  # in range of every integer type
        layer = Layer("Cast", [x], {"to": helper.np_dtype_to_tensor_dtype(to)})
    if fuse and dtype.kind == "f" and kind not in ("compare", "cast"):
        shape = np.broadcast_shapes(*[np.shape(i.value if isinstance(i, Const) else i) for i in layer.inputs])
        chain = draw(st.lists(st.sampled_from(["Relu", "Sigmoid", "Add", "Mul", "Tanh", "Neg"]), min_size=1, max_size=3))
        layer.post = [(op, {}, [values(rng, shape[-1:] if shape else [], dtype)] if op in ("Add", "Mul") else [])
                      for op in chain]
    return layer


@pytest.mark.parametrize("target", TARGETS)
def test_elementwise_matches_onnxruntime(target):
    require(target)
    run_property(layers(elementwise_layer(fuse=False), max_size=8), target, examples=examples(target, EXAMPLES),
                 opt_level=0, **options(target))


@pytest.mark.parametrize("target", TARGETS)
def test_fused_elementwise_matches_onnxruntime(target):
    require(target)
    run_property(layers(elementwise_layer(fuse=True), max_size=6), target, examples=examples(target, EXAMPLES),
                 **options(target))


MOVE_DTYPES = (np.float32, np.float16, np.int8, np.int64, np.bool_, np.float64)


@st.composite
def movement_layer(draw):
    """Transpose, Slice (negative and reversed steps), Pad (every mode), Tile, Expand, Concat, Gather."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    dtype = np.dtype(draw(st.sampled_from(MOVE_DTYPES)))
    rank = draw(st.integers(1, 4))
    shape = [draw(st.sampled_from([1, 2, 3, 5, 9, 16, 24])) for _ in range(rank)]
    x = values(rng, shape, dtype)
    op = draw(st.sampled_from(["Transpose", "Slice", "Pad", "Tile", "Expand", "Concat", "Gather"]))
    i64 = lambda v: Const(np.asarray(v, np.int64))  # noqa: E731
    if op == "Transpose":
        return Layer(op, [x], {"perm": [int(p) for p in rng.permutation(rank)]})
    if op == "Slice":
        starts, ends, steps = [], [], []
        for n in shape:
            step = int(rng.choice([1, 1, 2, -1, -2]))
            a, b = sorted(rng.integers(-n - 2, n + 2, 2))
            starts.append(int(b if step < 0 else a))
            ends.append(int(a if step < 0 else b))
            steps.append(step)
        return Layer(op, [x, i64(starts), i64(ends), i64(list(range(rank))), i64(steps)])
    if op == "Pad":
        mode = draw(st.sampled_from(["constant", "reflect", "edge", "wrap"]))
        pads = [int(rng.integers(0, n if mode == "reflect" else 4)) for n in shape * 2]
        if mode == "constant" and draw(st.booleans()):
            return Layer(op, [x, i64(pads), Const(values(rng, [], dtype))], {"mode": mode})
        return Layer(op, [x, i64(pads)], {"mode": mode})
    if op == "Tile":
        return Layer(op, [x, i64([int(r) for r in rng.integers(1, 4, rank)])])
    if op == "Expand":
        small = [1 if rng.random() < 0.5 else n for n in shape]
        return Layer(op, [values(rng, small, dtype), i64(shape)])
    if op == "Concat":
        axis = int(rng.integers(-rank, rank))
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            s = list(shape)
            s[axis] = int(rng.integers(0, 6))
            parts.append(values(rng, s, dtype))
        return Layer(op, parts, {"axis": axis})
    axis = int(rng.integers(-rank, rank))
    n = shape[axis]
    idx = rng.integers(-n, n, size=[int(d) for d in rng.integers(1, 4, int(rng.integers(0, 3)))])
    return Layer(op, [x, i64(idx)], {"axis": axis})


@pytest.mark.parametrize("target", TARGETS)
def test_movement_matches_onnxruntime(target):
    require(target)
    run_property(layers(movement_layer(), max_size=8), target, examples=examples(target, EXAMPLES), opt_level=0,
                 **options(target))
