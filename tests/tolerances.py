"""Numeric tolerances for tests, stated in one place: every test takes its tolerance from here.

Two kinds of comparison:
- element by element, |actual - expected| <= atol + rtol * |expected| (NaNs and infinities in the
  same places), for single ops and kernels: `assert_close` / `mismatches`, and the `Tolerance`
  constants below, one per purpose, each with (rtol, atol) per dtype;
- for whole models (the zoo, Paddle networks) with random weights, whose outputs can be large or
  tiny, one number per output: the max relative error max|actual - expected| / max(max|expected|, 1e-6)
  (`max_rel_error`, `zoo_tolerance`), plus an element-by-element check whose atol is relative to the
  output's largest magnitude (`ZOO_ELEMENTWISE`), so that an error in the small elements is not
  hidden behind the largest one.

Integer and bool outputs always match exactly. A tolerance is picked by the dtype under test (the
actual value's): a float16 result checked against a float64 oracle gets the float16 tolerance.

What a dtype supports, in units of its rounding error u (float64 1.1e-16, float32 6.0e-8,
float16 4.9e-4, bfloat16 3.9e-3): a result computed exactly and rounded once is within u; sums and
products of k terms computed in another order than the oracle's differ by about sqrt(k) u to k u
relative to the sum of the magnitudes, which is what the atol terms (inputs drawn so outputs are O(1))
cover. Every tolerance looser than that says why.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

# ---- whole models --------------------------------------------------------------------------------
# zoo models vs onnxruntime: max relative error per output, by output dtype
ZOO_MAX_REL_ERROR = {"float32": 1e-4, "float64": 1e-4, "float16": 1e-2, "bfloat16": 2e-2}
# integer and bool outputs must match exactly
EXACT = 0.0

REL_ERROR_FLOOR = 1e-6  # the denominator's floor, so an all-zero expected output does not divide by zero

# ---- kernels, element by element -------------------------------------------------------------------
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
    with np.errstate(invalid="ignore"):  # inf - inf where infinities do not line up: a mismatch
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


# ---- tolerances by purpose -------------------------------------------------------------------------
Pair = tuple[float, float]


def _dtype_name(dtype) -> str:
    return np.dtype(dtype).name


@dataclass(frozen=True)
class Tolerance:
    """(rtol, atol) per float dtype for one purpose; integers and bools compare exactly.

    `scaled`: atol is relative to the expected output's largest magnitude (whole graphs and models,
    whose outputs are not O(1)). A dtype without its own entry takes float32's."""
    float32: Pair
    float64: Optional[Pair] = None
    float16: Optional[Pair] = None
    bfloat16: Optional[Pair] = None
    scaled: bool = False
    integer_units: int = 0  # integers may be off by this much ...
    integer_share: float = 0.0  # ... in at most this share of the elements

    def __call__(self, dtype) -> Pair:
        name = _dtype_name(dtype)
        if np.dtype(dtype).kind in "biu":
            return EXACT, EXACT
        return getattr(self, name, None) or self.float32

    def pair(self, actual, expected) -> Pair:
        """(rtol, atol) for this comparison: by the dtype under test (actual's), atol scaled if asked."""
        a, b = np.asarray(actual), np.asarray(expected, dtype=np.float64)
        rtol, atol = self(a.dtype)
        if self.scaled:
            finite = np.abs(b[np.isfinite(b)])
            atol *= max(float(finite.max(initial=0.0)), REL_ERROR_FLOOR)
        return rtol, atol

    def mismatches(self, actual, expected) -> str:
        a = np.asarray(actual)
        if self.integer_units and a.dtype.kind in "iu":
            return self._integer_mismatches(a, np.asarray(expected))
        rtol, atol = self.pair(actual, expected)
        return mismatches(actual, expected, rtol, atol)

    def _integer_mismatches(self, a: np.ndarray, b: np.ndarray) -> str:
        if a.shape != b.shape:
            return f"shape {a.shape} vs expected {b.shape}"
        diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
        off = int((diff > 0).sum())
        if diff.max(initial=0) <= self.integer_units and off <= self.integer_share * a.size:
            return ""
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), a.shape)) if a.ndim else ()
        return (f"{off} of {a.size} elements differ (at most {self.integer_share:.0%} may, by up to "
                f"{self.integer_units}); worst at {worst}: {a[worst]} vs {b[worst]}")

    def check(self, actual, expected, what: str = "") -> None:
        """Asserts actual matches expected element by element (and has its shape)."""
        msg = self.mismatches(actual, expected)
        assert not msg, f"{what}: {msg}" if what else msg


# Data movement (transpose, gather, pad, slice, nearest resize...): the values themselves, bit for bit
# (NaN where NaN).
IDENTICAL = Tolerance(float32=(0.0, 0.0), float64=(0.0, 0.0), float16=(0.0, 0.0), bfloat16=(0.0, 0.0))

# Outputs that are one or a few correctly rounded operations of the inputs (quantize / dequantize,
# elementwise math against NumPy, the window functions, a fused chain against its steps): float32
# and float64 about 17 u relative (libm's exp, erf... are within a few ulps, and an oracle computed
# wider rounds once more); float16 / bfloat16 2 u, being computed in float32 and rounded once.
ROUNDED = Tolerance(float32=(1e-6, 1e-7), float64=(2e-15, 1e-15), float16=(1e-3, 1e-6), bfloat16=(8e-3, 1e-5))

# Quantized outputs (QLinearConv, QLinearMatMul) against an oracle that requantizes in another float
# precision (ONNX Runtime multiplies in float32, ONNX's reference in float64): where the exact value
# lies within that rounding of a half-way point the two round apart, so an output may be one unit off
# in a few elements (at most 1%); against pdc's own reference interpreter they match exactly.
REQUANTIZED = dataclasses.replace(ROUNDED, integer_units=1, integer_share=0.01)

# Outputs of reductions over up to a few hundred elements or of a few transcendental functions
# (pooling, normalization, softmax, reductions, interpolation), computed in the op's dtype or wider
# in another order than the oracle's: float32 170 u and float64 9000 u relative (k u for sums of k up
# to a few hundred terms, relative to the sum of their magnitudes), with an atol for results that
# cancel to near zero; float16 / bfloat16 2 u to 3 u (computed in float32, rounded once).
REDUCED = Tolerance(float32=(1e-5, 1e-6), float64=(1e-12, 1e-12), float16=(1e-3, 1e-3), bfloat16=(1e-2, 1e-2))

# Compiled GEMM-like kernels (convolutions, matrix products, the kernels of tests/kernels) against an
# oracle or the reference interpreter: the ELEMENTWISE table above (blocked sums of up to ~1e4 terms
# in another order than the oracle's; float16 stored, computed in float32).
KERNEL = Tolerance(ELEMENTWISE["float32"], ELEMENTWISE["float64"], ELEMENTWISE["float16"],
                   ELEMENTWISE["bfloat16"])

# Looser, said why: one op whose outputs are long sums or iterations evaluated in another order than
# the oracle's, where the oracle's own float32 error shows, or where cancellation leaves outputs far
# smaller than their terms (attention, DFT / STFT against ONNX Runtime's float32 transforms, Lp pools
# whose p-th powers and roots amplify rounding, determinants by elimination, recurrences over time,
# DeformConv, the variance E[X^2] - E[X]^2 of MeanVarianceNormalization): k u relative for k up to
# ~1e3. float64 1e-10 (what the dtype supports with the same k); float16 / bfloat16 4 u to 5 u, where
# ONNX Runtime's half-precision kernels round partial results.
ACCUMULATED = Tolerance(float32=(1e-4, 1e-5), float64=(1e-10, 1e-10), float16=(2e-3, 2e-3),
                        bfloat16=(2e-2, 2e-2))

# Winograd F(4x4, 3x3) convolutions (the x86 winograd4 path) against a direct oracle: the transforms'
# coefficients (up to 8 and 1/2 on the points 0, +-1, 2, -1/2) amplify float32 rounding about 10x over
# a direct sum of the same terms: max abs error 1.0e-5 on 64-channel layers and 1.6e-5 on 512-channel
# ones with O(1) outputs (numpy in float32, pdc/codegen/kernels/winograd.py), so atol 1e-4 (6x that
# largest error); rtol the accumulated sums' (F(2x2) stays within KERNEL).
WINOGRAD4 = Tolerance(float32=(1e-4, 1e-4))

# float32 tensors stored as half on an OpenCL device (pdc.compile(..., precision="fp16")), the
# arithmetic in float, against ONNX Runtime's float32. Half's unit roundoff u = 2^-11 ~ 4.9e-4 applies
# to every input, weight and stored intermediate, and once more to the output (a recurrent layer's
# state stays float between steps: rounded only where it is output); the float arithmetic adds
# nothing at this scale. rtol 2e-3 (4 u: the output's rounding and its inputs' carried through a few
# operations), atol 5e-3 (10 u: where a result cancels to near zero, the inputs' roundings stay, u
# times terms of a few units: (x - mean) * inv * scale + b, a log-softmax's x - max). The NN and
# recurrent kernel tests (tests/opencl) use at most 27% of this.
HALF_STORAGE = Tolerance(float32=(2e-3, 5e-3))

# A graph before and after a rewrite (passes, memory plans, the two import paths of a Paddle model),
# both on the reference interpreter: a rewrite may reassociate (folding a batch norm into conv
# weights, fusing) and the intermediate values of a deep random graph are not O(1), so atol is
# relative to the output's largest magnitude.
REWRITE = Tolerance(float32=(1e-5, 1e-6), float64=(1e-12, 1e-13), float16=(2e-3, 1e-3), bfloat16=(1e-2, 1e-2),
                    scaled=True)

# Whole models (zoo, Paddle networks) element by element, atol relative to the output's largest
# magnitude: the max-relative-error tolerance above bounds the largest errors; this bounds each
# element by its own size (rtol) plus a floor a tenth of that bound, so that an error confined to the
# small elements shows. float32, measured against ONNX Runtime on the zoo (interpreter and x86 -O2):
# the worst element uses 25% of this allowance (resnet50), every other model under 2%. The half
# types keep the same ratios to their max-relative tolerance (no half-precision model in the zoo yet).
ZOO_ELEMENTWISE = Tolerance(float32=(1e-3, 1e-5), float64=(1e-3, 1e-5), float16=(2e-2, 1e-3),
                            bfloat16=(5e-2, 2e-3), scaled=True)


def assert_zoo_close(actual, expected, what: str = "") -> None:
    """A whole model's output: max relative error within zoo_tolerance, and element by element
    within ZOO_ELEMENTWISE."""
    b = np.asarray(expected)
    err = max_rel_error(actual, b)
    prefix = f"{what}: " if what else ""
    assert err <= zoo_tolerance(b.dtype), f"{prefix}max rel error {err:.3g} > {zoo_tolerance(b.dtype):g}"
    ZOO_ELEMENTWISE.check(actual, b, what)


def top1_near_tie(got, ref, label: str) -> bool:
    """Whether a classifier's top-1 differs from the reference's on a near-tie; fails otherwise.
    Random weights make near-ties: where the reference's best classes lie closer than the output's
    error, pdc's class must be one of those the reference cannot separate (within twice the error)."""
    g, r = np.asarray(got).reshape(-1), np.asarray(ref).reshape(-1)
    if g.argmax() == r.argmax():
        return False
    error = float(np.abs(g.astype(np.float64) - r).max())
    assert r[g.argmax()] >= r.max() - 2 * error, f"{label}: top-1 {g.argmax()}, reference {r.argmax()}"
    return True
