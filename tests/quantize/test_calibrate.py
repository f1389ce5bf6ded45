"""RangeObserver: minmax, streaming-histogram percentile and entropy (KL) calibration ranges."""
import math

import numpy as np
import pytest

from pdc.ir.errors import PdcError
from pdc.quantize.calibrate import METHODS, RangeObserver


def _observe(method, samples, **options):
    obs = RangeObserver(method, **options)
    for x in samples:
        obs.update(x)
    return obs.range()


def _bin_width(side_samples, bins):
    """The width of a histogram's bins after these samples: the first one's max, doubled until
    every later max fits (the growth rule RangeObserver documents)."""
    edge = side_samples[0].max()
    for x in side_samples[1:]:
        while x.max() > edge:
            edge *= 2
    return edge / bins


def _check_percentile(samples, q, bins=2048):
    lo, hi = _observe("percentile", samples, percentile=q, bins=bins)
    pos = [x[x > 0] for x in samples]
    neg = [-x[x < 0] for x in samples]
    expect_hi = np.percentile(np.concatenate(pos), q)
    expect_lo = -np.percentile(np.concatenate(neg), q)
    # a hair above one bin: values on a bin edge may round into the bin beside
    assert abs(hi - expect_hi) <= _bin_width(pos, bins) * (1 + 1e-9)
    assert abs(lo - expect_lo) <= _bin_width(neg, bins) * (1 + 1e-9)


def test_minmax_is_exact():
    rng = np.random.default_rng(0)
    samples = [rng.normal(0.3, 2.0, size=(2, 3, 50)).astype(np.float32) for _ in range(6)]
    everything = np.concatenate([x.ravel() for x in samples])
    assert _observe("minmax", samples) == (float(everything.min()), float(everything.max()))


def test_minmax_keeps_zero_in_range():
    rng = np.random.default_rng(1)
    samples = [rng.uniform(2.0, 5.0, size=100) for _ in range(3)]
    lo, hi = _observe("minmax", samples)
    assert lo == 0.0 and hi == max(x.max() for x in samples)
    assert _observe("minmax", [-x for x in samples]) == (-hi, 0.0)


def test_non_finite_values_are_ignored():
    x = np.array([np.nan, -3.0, np.inf, 2.0, -np.inf])
    assert _observe("minmax", [x]) == (-3.0, 2.0)
    assert _observe("percentile", [x], percentile=100) == pytest.approx((-3.0, 2.0), rel=1e-3)


@pytest.mark.parametrize("q", [99.99, 99.0, 90.0])
def test_percentile_matches_numpy_on_both_sides(q):
    rng = np.random.default_rng(2)
    # skewed on purpose: the two sides must not share a percentile
    samples = [np.where(x > 0, 3.0 * x, x) for x in (rng.standard_t(4, size=20000) for _ in range(8))]
    _check_percentile(samples, q)


def test_percentile_of_non_negative_data_has_lo_zero():
    rng = np.random.default_rng(3)
    samples = [np.maximum(rng.normal(size=5000), 0.0) for _ in range(4)]  # ReLU output
    lo, hi = _observe("percentile", samples, percentile=99.9)
    assert lo == 0.0
    pos = [x[x > 0] for x in samples]  # zeros count on neither side
    assert abs(hi - np.percentile(np.concatenate(pos), 99.9)) <= _bin_width(pos, 2048) * (1 + 1e-9)


def test_percentile_survives_a_later_sample_100x_larger():
    rng = np.random.default_rng(4)
    samples = [rng.normal(size=10000) for _ in range(5)]
    samples.insert(3, 100.0 * rng.normal(size=10000))
    _check_percentile(samples, 99.9, bins=512)
    _check_percentile(samples, 50.0, bins=512)


def test_histogram_memory_does_not_grow():
    rng = np.random.default_rng(5)
    obs = RangeObserver("percentile", bins=256)
    for scale in (1.0, 1e3, 1e-3, 1e6):
        obs.update(scale * rng.normal(size=1000))
    assert obs._pos.counts.shape == obs._neg.counts.shape == (256,)
    assert obs._pos.counts.sum() + obs._neg.counts.sum() == 4000


def test_entropy_clips_outliers_of_a_gaussian():
    rng = np.random.default_rng(6)
    samples = [rng.normal(size=20000) for _ in range(8)]
    samples[5][:4] = [50.0, -50.0, 48.0, 45.0]  # a few huge outliers, 50 sigma out
    lo, t = _observe("entropy", samples)
    # Covering the outliers would leave N(0, 1) about ten of int8's 128 magnitude steps; clipping
    # them costs 4 values in 160000. Clipping at 2 sigma would clip 4.6% of all values instead.
    assert lo == -t
    assert 2.0 < t < 50.0 / 4
    everything = np.concatenate(samples)
    assert np.mean(np.abs(everything) > t) < 1e-3


def test_entropy_of_non_negative_data_has_lo_zero():
    rng = np.random.default_rng(7)
    lo, hi = _observe("entropy", [np.abs(rng.normal(size=20000)) for _ in range(2)])
    assert lo == 0.0 and 2.0 < hi < 6.0


def _brute_force_kl_threshold(counts, width, levels, first=128, empty_q=1e-4):
    """KL(P || Q) for every candidate, with explicit loops over the quantized groups."""
    best_kl, best_t = math.inf, None
    for i in range(first, len(counts) + 1):
        p = counts[:i].astype(float)
        p[-1] += counts[i:].sum()
        q = np.zeros(i)
        for g in range(levels):  # group g holds bins [ceil(g i / levels), ceil((g+1) i / levels))
            start, stop = -(-g * i // levels), -(-(g + 1) * i // levels)
            chunk = counts[start:stop]
            if chunk.any():
                q[start:stop][chunk > 0] = chunk.sum() / np.count_nonzero(chunk)
        q[(p > 0) & (q == 0)] = empty_q
        p, q = p / p.sum(), q / q.sum()
        kl = sum(pj * math.log(pj / qj) for pj, qj in zip(p, q) if pj > 0)
        if kl < best_kl:
            best_kl, best_t = kl, i * width
    return best_t


def test_entropy_matches_brute_force_kl():
    rng = np.random.default_rng(8)
    bins, width = 256, 2.0**-5  # powers of two: the data below lands on bin centres exactly
    g = rng.normal(scale=1.5, size=30000)
    k = np.minimum((np.abs(g) / width).astype(np.int64), bins - 1)
    x = np.sign(g) * (k + 0.5) * width
    x[0] = bins * width  # fixes the histogram's edge at bins * width on the first update
    counts = np.bincount(k[1:], minlength=bins)
    counts[-1] += 1
    lo, hi = _observe("entropy", np.array_split(x, 4), bins=bins)
    expect = _brute_force_kl_threshold(counts, width, levels=127)  # signed data: 127 levels
    assert (lo, hi) == (-expect, expect)
    assert 128 * width < expect < bins * width  # an interior choice, not a boundary candidate


def test_entropy_of_all_zeros_is_zero_range():
    assert _observe("entropy", [np.zeros(10)] * 2) == (0.0, 0.0)


def test_unknown_method_message():
    with pytest.raises(PdcError) as err:
        RangeObserver("kl")
    assert str(err.value) == "unknown calibration method 'kl'; expected one of: minmax, percentile, mse, entropy"


@pytest.mark.parametrize("method", METHODS)
def test_no_values_message(method):
    obs = RangeObserver(method)
    obs.update(np.zeros((0, 3)))
    with pytest.raises(PdcError) as err:
        obs.range()
    assert str(err.value) == "no calibration values were observed"


@pytest.mark.parametrize("method", METHODS)
def test_all_nan_message(method):
    obs = RangeObserver(method)
    obs.update(np.full(3, np.nan, dtype=np.float16))
    obs.update(np.array([np.inf, np.nan]))
    with pytest.raises(PdcError) as err:
        obs.range()
    assert str(err.value) == "all 5 calibration values were non-finite (nan or inf)"


def _grid_mse(x: np.ndarray, lo: float, hi: float) -> float:
    """The squared error of x on the 256-code grid over [lo, hi] (clipped outside), exactly."""
    step = (hi - lo) / 255
    q = np.clip(np.round((x - lo) / step), 0, 255) * step + lo
    return float(np.mean((x - q) ** 2))


def test_mse_clips_long_tails_and_keeps_a_uniform_range():
    rng = np.random.default_rng(0)
    x = rng.laplace(0, 1, 400_000)  # tails out to about 13: most of the grid would go to values that are rare
    lo, hi = _observe("mse", [x])
    assert 6 < hi < 0.9 * x.max() and 0.9 * x.min() < lo < -6
    assert _grid_mse(x, lo, hi) < 0.8 * _grid_mse(x, x.min(), x.max())
    u = rng.uniform(-2, 5, 100_000)
    lo, hi = _observe("mse", [u])
    assert lo == pytest.approx(u.min(), rel=0.03) and hi == pytest.approx(u.max(), rel=0.03)
