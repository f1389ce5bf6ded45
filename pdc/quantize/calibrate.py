"""Activation ranges for int8 post-training quantization, from calibration samples.

A `RangeObserver` watches the values one tensor takes over the calibration samples and gives the
float range [lo, hi] its int8 scale is derived from; lo <= 0 <= hi so that zero stays exact.

- minmax: the exact min and max seen. Loses nothing to clipping, but a single outlier (common in
  activations) stretches the range and wastes most of the 256 codes on values that never occur.
- percentile: clips each side at the given percentile of its magnitudes (positives give hi,
  negatives give lo; zeros count on neither side), trading a few clipped outliers for finer
  steps where the values are.
- mse: the range [a * min, b * max] (factors a, b in (0, 1], each side searched apart) whose int8
  grid has the smallest expected squared error over the observed values: the rounding noise
  step^2 / 12 of the values inside plus the squared distance of the clipped ones.
- entropy: TensorRT's calibration. Picks the threshold t on |x| whose clipped-and-quantized
  distribution loses the least information, i.e. has the smallest KL divergence from the
  clipped distribution; the range is (-t, t), or (0, t) when no value was negative. |x| is
  merged into 127 levels for signed data and 128 for non-negative data (see `_levels`).

percentile, mse and entropy read streaming histograms of fixed size, so memory does not grow with the
number of samples. A histogram's range is fixed by the first values it sees and doubled (merging
pairs of bins) whenever a later sample exceeds it, so no value is ever dropped.
"""
from __future__ import annotations

import numpy as np

from ..ir.errors import PdcError

METHODS = ("minmax", "percentile", "mse", "entropy")
# mse: the factors of the min-max range it tries
_MSE_FACTORS = np.linspace(1.0, 0.02, 99)

# entropy: thresholds start at this many bins, as in TensorRT
_FIRST_CANDIDATE = 128
# entropy: the count Q gets where it would be empty under P's mass (MXNet, TVM and ONNX Runtime
# smooth with the same eps); without it a clipped outlier would rule its candidate out entirely
_EMPTY_Q = 1e-4


class RangeObserver:
    """Streams the values one tensor takes over the calibration samples; .range() gives [lo, hi]."""

    def __init__(self, method: str = "minmax", *, percentile: float = 99.99, bins: int = 2048):
        if method not in METHODS:
            raise PdcError(f"unknown calibration method {method!r}; expected one of: {', '.join(METHODS)}")
        if not 0 < percentile <= 100:
            raise PdcError(f"calibration percentile must be in (0, 100], got {percentile}")
        if bins < _FIRST_CANDIDATE or bins % 2:
            raise PdcError(f"calibration bins must be an even number >= {_FIRST_CANDIDATE}, got {bins}")
        self.method = method
        self.percentile = percentile
        self._min = np.inf
        self._max = -np.inf
        self._finite = 0
        self._nonfinite = 0
        # percentile and mse keep each side's magnitudes apart; entropy needs only |x|
        self._pos = _Histogram(bins) if method in ("percentile", "mse") else None
        self._neg = _Histogram(bins) if method in ("percentile", "mse") else None
        self._abs = _Histogram(bins) if method == "entropy" else None

    def update(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(x)
        if not finite.all():
            self._nonfinite += x.size - int(finite.sum())
            x = x[finite]
        if x.size == 0:
            return
        self._finite += x.size
        self._min = min(self._min, float(x.min()))
        self._max = max(self._max, float(x.max()))
        if self._pos is not None:
            self._pos.add(x[x > 0])  # zeros are always representable: they do not count on either side
            self._neg.add(-x[x < 0])
        elif self.method == "entropy":
            self._abs.add(np.abs(x))

    def extent(self) -> tuple[float, float]:
        """[min, max] of the values seen (0 included), whatever the method."""
        self.range()  # the same errors for no values
        return min(self._min, 0.0), max(self._max, 0.0)

    def range(self) -> tuple[float, float]:
        if self._finite == 0:
            if self._nonfinite:
                raise PdcError(f"all {self._nonfinite} calibration values were non-finite (nan or inf)")
            raise PdcError("no calibration values were observed")
        if self.method == "minmax":
            lo, hi = self._min, self._max
        elif self.method == "percentile":
            lo, hi = -self._neg.percentile(self.percentile), self._pos.percentile(self.percentile)
        elif self.method == "mse":
            lo, hi = self._mse_range()
        else:
            signed = self._min < 0
            t = self._abs.entropy_threshold(_levels(signed))
            lo, hi = (-t if signed else 0.0), t
        return min(float(lo), 0.0), max(float(hi), 0.0)


    def _mse_range(self) -> tuple[float, float]:
        """Each side's end searched apart (a * min, b * max), the pair with the smallest error."""
        lo, hi = min(self._min, 0.0), max(self._max, 0.0)
        if hi - lo == 0:
            return lo, hi
        (pos_clip, pos_in), (neg_clip, neg_in) = (_side_errors(h, end) for h, end in ((self._pos, hi), (self._neg, -lo)))
        his, los = _MSE_FACTORS * hi, _MSE_FACTORS * lo
        steps = (his[None, :] - los[:, None]) / 255  # [lo candidate, hi candidate]
        total = neg_clip[:, None] + pos_clip[None, :] + (neg_in[:, None] + pos_in[None, :]) * steps ** 2 / 12
        a, b = np.unravel_index(int(np.argmin(total)), total.shape)
        return float(los[a]), float(his[b])


def _side_errors(h: "_Histogram", end: float) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate end f * `end` of one side: (the squared error of the values clipped to it,
    the count of values inside it)."""
    counts = h.counts.astype(np.float64)
    mids = (np.arange(len(counts)) + 0.5) * h.width
    over = np.maximum(mids[None, :] - (_MSE_FACTORS * end)[:, None], 0.0)
    return (counts * over ** 2).sum(axis=1), (counts * (over == 0)).sum(axis=1)


def _levels(signed: bool) -> int:
    """Quantized levels |x| in [0, t] is merged into for the KL search.

    Signed data uses the symmetric int8 grid -127..127 (-128 is left out so that -t and t are
    both codes), whose positive half has 127 steps; non-negative data keeps TensorRT's 128.
    """
    return 127 if signed else 128


class _Histogram:
    """Counts of non-negative values in `bins` equal bins over [0, edge]; the last bin is closed."""

    def __init__(self, bins: int):
        self.counts = np.zeros(bins, dtype=np.int64)
        self.edge = 0.0

    @property
    def width(self) -> float:
        return self.edge / len(self.counts)

    def add(self, mags: np.ndarray) -> None:
        if mags.size == 0:
            return
        top = float(mags.max())
        if self.edge == 0.0:
            self.edge = top  # zeros seen so far sit in bin 0, which stays bin 0 under any edge
        while top > self.edge:
            self._double()
        if self.edge == 0.0:
            self.counts[0] += mags.size
            return
        bins = len(self.counts)
        # divide first: edge may be tiny, and bins / edge could overflow
        index = np.minimum((mags / self.edge * bins).astype(np.int64), bins - 1)
        self.counts += np.bincount(index, minlength=bins)

    def _double(self) -> None:
        merged = self.counts.reshape(-1, 2).sum(axis=1)
        self.counts = np.concatenate([merged, np.zeros_like(merged)])
        self.edge *= 2.0

    def percentile(self, q: float) -> float:
        """np.percentile (linear interpolation) of the counted values, to within one bin width.

        Each of the two order statistics it interpolates is placed inside its own bin, spread
        evenly over the bin's values, so neither is off by more than a bin.
        """
        n = int(self.counts.sum())
        if n == 0:
            return 0.0
        rank = q / 100.0 * (n - 1)
        ranks = np.array([np.floor(rank), np.ceil(rank)])
        cum = np.cumsum(self.counts)
        b = np.searchsorted(cum, ranks, side="right")  # the bin holding each order statistic
        before = cum[b] - self.counts[b]
        below, above = (b + (ranks - before + 0.5) / self.counts[b]) * self.width
        return float(below + (rank - ranks[0]) * (above - below))

    def entropy_threshold(self, levels: int) -> float:
        """The bin edge t minimising KL(P || Q), TensorRT-style.

        For each candidate of i bins, P is the histogram's first i bins with everything beyond
        added to the last one (clipping at t), and Q is those i bins merged into `levels` groups
        and expanded back, each group's count spread evenly over its non-empty bins (what int8
        can tell apart). Q leaves the clipped values out, so clipping many of them costs KL.
        """
        if self.edge == 0.0:
            return 0.0
        counts = self.counts.astype(np.float64)
        beyond = counts.sum() - np.cumsum(counts)  # beyond[i - 1]: the values clipped at i bins
        candidates = range(_FIRST_CANDIDATE, len(counts) + 1)
        kl = [_kl_divergence(counts[:i], beyond[i - 1], levels) for i in candidates]
        return candidates[int(np.argmin(kl))] * self.width


def _kl_divergence(kept: np.ndarray, clipped: float, levels: int) -> float:
    """KL(P || Q) for one candidate; see `_Histogram.entropy_threshold`."""
    p = kept.copy()
    p[-1] += clipped
    group = np.arange(len(kept)) * levels // len(kept)  # equal-sized groups, no remainder bin
    nonempty = kept > 0
    sums = np.bincount(group, weights=kept, minlength=levels)
    filled = np.bincount(group, weights=nonempty, minlength=levels)
    q = np.where(nonempty, sums[group] / np.maximum(filled[group], 1), 0.0)
    used = p > 0
    p, q = p[used], np.where(q[used] == 0, _EMPTY_Q, q[used])
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))
