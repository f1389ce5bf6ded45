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

# single ops vs onnxruntime / NumPy (fp32)
OP_RTOL = 1e-5
OP_ATOL = 1e-6

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
