"""Hypothesis strategies of Gemm / MatMul / MatMulInteger layers (tests/kernels/harness.Layer) over
the attribute space the ONNX spec allows: transposes, alpha / beta, every broadcast form of
Gemm's C, MatMul's 1-D operands and broadcast batch dims of different ranks, constant or
runtime operands, and the epilogues the -O2 pipeline fuses (a constant bias add, a residual,
an activation). Extents are drawn around the kernels' register tiles and K blocks (see
dense_core.py, arm/gemm.py) as well as at random, then shrunk to a MAC budget."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from hypothesis import strategies as st

from harness import Const, Layer, layer_outputs
from strategies import MAX_MACS, activation, rand

# tile and block edges of the x86 and ARM kernels: MR (rows), NR (columns), KC (K blocks)
M_EDGES = (2, 4, 6, 8, 12, 24)
N_EDGES = (4, 8, 12, 16, 32, 48, 64, 96)
K_EDGES = (64, 80, 256, 320, 512, 640, 1024)

# which operands are constants (initializers) for each operand-source kind; never both, which
# constant folding would compute at compile time instead of a kernel
OPERANDS = {"packed-b": [(False, True)], "packed-a": [(True, False)], "runtime": [(False, False)],
            "any": [(False, True), (False, True), (True, False), (False, False)]}


def extent(draw, edges, hi: int) -> int:
    """A small extent, one next to a tile edge, or any up to hi."""
    kind = draw(st.integers(0, 9))
    if kind < 4:
        return draw(st.integers(1, 9))
    if kind < 7:
        return max(1, draw(st.sampled_from(edges)) + draw(st.integers(-1, 1)))
    return draw(st.integers(1, hi))


def mkn(draw, max_macs: int, batch: int = 1) -> tuple[int, int, int]:
    """(M, K, N) within the MAC budget: M and N shrink first, so a drawn K block edge survives."""
    m, k, n = extent(draw, M_EDGES, 64), extent(draw, K_EDGES, 1100), extent(draw, N_EDGES, 200)
    while batch * m * k * n > max_macs:
        if max(m, n) > 2:
            m, n = (m // 2, n) if m >= n else (m, n // 2)
        else:
            k = max(1, k // 2)
    return m, k, n


def operand(rng, shape, const: bool, scale: float = 1.0, dtype=np.float32):
    a = values(rng, shape, scale, dtype)
    return Const(a) if const else a


def values(rng, shape, scale: float, dtype):
    """Random values of dtype: normal for floats (times scale), small integers (no overflow) else."""
    if np.dtype(dtype).kind in "iu":
        lo = 0 if np.dtype(dtype).kind == "u" else -4
        return rng.integers(lo, 5, size=shape).astype(dtype)
    return rand(rng, shape, scale, dtype)


def is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


# ---- Gemm -------------------------------------------------------------------------------------------
C_FORMS = ("none", "scalar", "one", "1x1", "row", "1xN", "Mx1", "MxN")


def c_shape(form: str, m: int, n: int):
    return {"scalar": (), "one": (1,), "1x1": (1, 1), "row": (n,), "1xN": (1, n), "Mx1": (m, 1), "MxN": (m, n)}[form]


@st.composite
def gemm_layer(draw, operands: str = "any", dtype=np.float32, max_macs: int = MAX_MACS, fuse: bool = True):
    """One Gemm: transposes, alpha / beta (or omitted), C absent or of any unidirectional broadcast
    form, constant or runtime; then a fused epilogue (a constant add folded into C, a residual,
    an activation)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    m, k, n = mkn(draw, max_macs)
    ta, tb = draw(st.booleans()), draw(st.booleans())
    a_const, b_const = draw(st.sampled_from(OPERANDS[operands]))
    attrs = {}
    if ta or draw(st.booleans()):
        attrs["transA"] = int(ta)
    if tb or draw(st.booleans()):
        attrs["transB"] = int(tb)
    if is_float(dtype):  # integer Gemm: alpha and beta stay 1 (the spec's floats do not apply)
        for key, choices in (("alpha", [1.0, 0.5, -1.25, 2.0, 0.0]), ("beta", [1.0, 0.0, 0.5, -2.0])):
            if draw(st.booleans()):
                attrs[key] = draw(st.sampled_from(choices))
    inputs = [operand(rng, (k, m) if ta else (m, k), a_const, dtype=dtype),
              operand(rng, (n, k) if tb else (k, n), b_const, 1 / math.sqrt(k), dtype)]
    form = draw(st.sampled_from(C_FORMS))
    if form != "none":
        inputs.append(operand(rng, c_shape(form, m, n), draw(st.booleans()), dtype=dtype))
    post = []
    if fuse and is_float(dtype):
        if draw(st.integers(0, 3)) == 0:  # a constant add after the Gemm: fused into C when C is constant
            add_form = draw(st.sampled_from(C_FORMS[1:]))
            post.append(("Add", {}, [Const(values(rng, c_shape(add_form, m, n), 1.0, dtype))]))
        post += activation(draw, rng, [m, n], dtype)
    return Layer("Gemm", inputs, attrs, post)


# ---- MatMul -----------------------------------------------------------------------------------------
def batch_dims(draw, max_rank: int) -> tuple[list, list]:
    """Two batch shapes that broadcast together: suffixes of one shape (so the ranks differ), with
    some dims 1 on one side."""
    full = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, max_rank)))]
    a_rank, b_rank = draw(st.integers(0, len(full))), draw(st.integers(0, len(full)))
    a = [d if draw(st.integers(0, 2)) else 1 for d in full[len(full) - a_rank:]]
    b = [d if draw(st.integers(0, 2)) else 1 for d in full[len(full) - b_rank:]]
    for i in range(1, min(a_rank, b_rank) + 1):  # where both have the dim and it is not 1, they agree
        if a[-i] != b[-i] and 1 not in (a[-i], b[-i]):
            b[-i] = a[-i]
    return a, b


@st.composite
def matmul_layer(draw, operands: str = "any", dtype=np.float32, max_macs: int = MAX_MACS, fuse: bool = True,
                 max_batch_rank: int = 3):
    """One MatMul: 1-D operands (promoted and the unit dim dropped), batch dims that broadcast
    between ranks, constant or runtime operands; then a fused epilogue (a constant bias along the
    output's last axis, a residual, an activation)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a_batch, b_batch = batch_dims(draw, max_batch_rank)
    a_vec = not a_batch and draw(st.integers(0, 4)) == 0
    b_vec = not b_batch and draw(st.integers(0, 4)) == 0
    nb = math.prod(np.broadcast_shapes(tuple(a_batch), tuple(b_batch)))
    m, k, n = mkn(draw, max_macs, nb)
    a_const, b_const = draw(st.sampled_from(OPERANDS[operands]))
    a_shape = [k] if a_vec else a_batch + [m, k]
    b_shape = [k] if b_vec else b_batch + [k, n]
    inputs = [operand(rng, a_shape, a_const, dtype=dtype), operand(rng, b_shape, b_const, 1 / math.sqrt(k), dtype)]
    out = list(np.broadcast_shapes(tuple(a_batch), tuple(b_batch))) + ([] if a_vec else [m]) + ([] if b_vec else [n])
    post = []
    if fuse and is_float(dtype):
        if out and draw(st.integers(0, 2)) == 0:  # a bias along the last axis (any rank up to the output's)
            lead = draw(st.integers(0, len(out) - 1))
            post.append(("Add", {}, [Const(values(rng, [1] * lead + out[-1:], 0.5, dtype))]))
        post += activation(draw, rng, out, dtype)
    return Layer("MatMul", inputs, {}, post)


@st.composite
def gemm_or_matmul(draw, operands: str = "any", dtype=np.float32, max_macs: int = MAX_MACS):
    if draw(st.booleans()):
        return draw(gemm_layer(operands, dtype, max_macs))
    return draw(matmul_layer(operands, dtype, max_macs))


# ---- MatMulInteger ----------------------------------------------------------------------------------
@st.composite
def matmul_integer_layer(draw, max_macs: int = MAX_MACS):
    """MatMulInteger over int8 / uint8 operands: batch dims, zero points absent, one value, one
    per row of A / column of B, or those per matrix ([D1, M, 1] / [D1, 1, N])."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a_batch, b_batch = batch_dims(draw, 2)
    nb = math.prod(np.broadcast_shapes(tuple(a_batch), tuple(b_batch)))
    m, k, n = mkn(draw, max_macs, nb)
    at, bt = draw(st.sampled_from([np.int8, np.uint8])), draw(st.sampled_from([np.int8, np.uint8]))

    def q(shape, dt):
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max + 1, size=shape).astype(dt)

    inputs = [q(a_batch + [m, k], at), q(b_batch + [k, n], bt)]
    a_forms = {"scalar": (), "one": (1,), "rows": (m,), "rows-2d": (m, 1), "per-matrix": tuple(a_batch) + (m, 1)}
    b_forms = {"scalar": (), "one": (1,), "cols": (n,), "cols-2d": (1, n), "per-matrix": tuple(b_batch) + (1, n)}
    if draw(st.booleans()):
        inputs.append(q(a_forms[draw(st.sampled_from(sorted(a_forms)))], at))
        if draw(st.booleans()):
            inputs.append(q(b_forms[draw(st.sampled_from(sorted(b_forms)))], bt))
    if len(inputs) > 2 and draw(st.booleans()):
        inputs[2:] = [Const(x) for x in inputs[2:]]
    layer = Layer("MatMulInteger", inputs)
    if len(inputs) > 2 and np.shape(value(inputs[2])) == (m,) and m > 1:
        # one zero point per row of A as a vector: ONNX Runtime refuses it and ONNX's reference
        # subtracts it along K; the oracle runs on the same values as [M, 1]
        az = value(inputs[2]).reshape(m, 1)
        layer.want = layer_outputs(replace(layer, inputs=inputs[:2] + [az] + inputs[3:]))
    return layer


def value(i):
    return i.value if isinstance(i, Const) else i

