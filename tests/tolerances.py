"""Numeric tolerances for tests, stated in one place.

Whole models (the zoo) are compared with one number per output: the max relative error
    max|actual - expected| / max(max|expected|, 1e-6)
which stays meaningful for deep nets with random weights, whose outputs can be large or tiny.
Single ops are compared element-wise with rtol/atol (np.testing.assert_allclose).
"""
from __future__ import annotations

import numpy as np

# zoo models vs onnxruntime: max relative error per output, by output dtype
ZOO_MAX_REL_ERROR = {"float32": 1e-4, "float64": 1e-4, "float16": 1e-2, "bfloat16": 2e-2}
# integer and bool outputs must match exactly
EXACT = 0.0

# single ops and kernels, element by element: |actual - expected| <= atol + rtol * |expected|, by dtype.
# Inputs are drawn so outputs are O(1) (weights scaled by 1/sqrt(fan-in)), which makes atol meaningful:
# it covers the rounding of long sums whose exact value is near zero. fp32 sums of up to ~1e4 terms
# summed in another order than the oracle's stay within 2e-5.
ELEMENTWISE = {
    "float64": (1e-10, 1e-10),
    "float32": (1e-5, 2e-5),
    "float16": (5e-3, 5e-3),   # fp16 storage, fp32 compute (one rounding to fp16 each way)
    "bfloat16": (2e-2, 2e-2),
}
OP_RTOL, OP_ATOL = ELEMENTWISE["float32"]

REL_ERROR_FLOOR = 1e-6  # the denominator's floor, so an all-zero expected output does not divide by zero


def zoo_tolerance(dtype) -> float:
    """The max relative error a zoo model's output of this dtype may have."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return EXACT
    return ZOO_MAX_REL_ERROR.get(dtype.name, ZOO_MAX_REL_ERROR["float32"])


def max_rel_error(actual, expected) -> float:
    """max|a - b| / max(max|b|, 1e-6); inf when the shapes differ or NaNs do not line up."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    a_nan, b_nan = np.isnan(a), np.isnan(b)
    if (a_nan != b_nan).any():
        return float("inf")
    a, b = a[~b_nan], b[~b_nan]
    if a.size == 0:
        return 0.0
    same = a == b  # equal infinities count as exact matches
    if (~same & (np.isinf(a) | np.isinf(b))).any():
        return float("inf")
    diff = np.where(same, 0.0, np.abs(a - b))
    scale = np.abs(np.where(np.isinf(b), 0.0, b)).max()
    return float(diff.max() / max(scale, REL_ERROR_FLOOR))


def elementwise_tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing element by element values of this dtype (0, 0 for integers and bool)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return EXACT, EXACT
    return ELEMENTWISE.get(dtype.name, ELEMENTWISE["float32"])


def mismatches(actual, expected, rtol: float | None = None, atol: float | None = None) -> str:
    """'' when actual matches expected element by element (|a - b| <= atol + rtol * |b|, NaNs and
    infinities in the same places), else a one-line account of the worst elements."""
    a, b = np.asarray(actual), np.asarray(expected)
    if a.shape != b.shape:
        return f"shape {a.shape} vs expected {b.shape}"
    d_rtol, d_atol = elementwise_tolerance(b.dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(a64) & np.isnan(b64)
    same = (a64 == b64) | both_nan
    bad = ~same & ~(np.abs(a64 - b64) <= atol + rtol * np.abs(b64))
    if not bad.any():
        return ""
    idx = np.argwhere(bad)
    first = tuple(int(i) for i in idx[0])
    with np.errstate(invalid="ignore"):
        excess = np.where(bad, np.abs(a64 - b64) - rtol * np.abs(b64), -np.inf)
    worst = np.unravel_index(int(np.argmax(excess)), a.shape) if a.ndim else ()
    worst = tuple(int(i) for i in worst)
    return (f"{int(bad.sum())} of {a.size} elements differ (|a-b| > {atol:g} + {rtol:g}*|b|): "
            f"first at {first}: {a64[first]!r} vs {b64[first]!r}; worst at {worst}: {a64[worst]!r} vs {b64[worst]!r}")


def assert_close(actual, expected, rtol: float | None = None, atol: float | None = None, what: str = "") -> None:
    """Element by element comparison with the dtype's tolerance (see mismatches)."""
    msg = mismatches(actual, expected, rtol, atol)
    assert not msg, f"{what}: {msg}" if what else msg
