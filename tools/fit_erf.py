"""Fits the two polynomials of pdc_erff (pdc/codegen/c_renderer.py's preamble) and prints their
float32 coefficients and the worst error of the float32 evaluation against erf.

    python tools/fit_erf.py

erf(x) = x * P(x^2) for |x| < 0.9 (P of degree 7), Q(u) with u = (|x| - 2.41) / 1.51 for
0.9 <= |x| < 3.92 (Q of degree 14, clamped to 1), 1 beyond: least squares on 6000 Chebyshev nodes
of each interval, in float64, against math.erf.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SMALL, LO, HI = 0.9, 0.9, 3.92


def nodes(lo: float, hi: float, n: int = 6000) -> np.ndarray:
    return (np.cos(np.linspace(0, np.pi, n)) * 0.5 + 0.5) * (hi - lo) + lo


def fit() -> tuple[np.ndarray, np.ndarray, float, float]:
    erf = np.vectorize(math.erf)
    x = nodes(0, SMALL)
    ratio = np.where(x > 0, erf(x) / np.where(x > 0, x, 1), 2 / math.sqrt(math.pi))
    p = np.polynomial.Polynomial.fit(x * x, ratio, 7, domain=[0, SMALL ** 2], window=[0, SMALL ** 2]).coef
    mid, half = (LO + HI) / 2, (HI - LO) / 2
    xb = nodes(LO, HI)
    q = np.polynomial.Polynomial.fit((xb - mid) / half, erf(xb), 14, domain=[-1, 1], window=[-1, 1]).coef
    return p.astype(np.float32), q.astype(np.float32), mid, half


def horner(coef: np.ndarray, t: np.ndarray) -> np.ndarray:
    """float32 Horner with fused multiply-adds (what the C compiles to on FMA machines)."""
    r = np.full_like(t, coef[-1])
    for c in coef[-2::-1]:
        r = (r.astype(np.float64) * t + np.float64(c)).astype(np.float32)
    return r


def main() -> None:
    p, q, mid, half = fit()
    x = np.concatenate([np.linspace(-5, 5, 400001), np.logspace(-30, 0.7, 20000),
                        -np.logspace(-30, 0.7, 20000)]).astype(np.float32)
    a = np.abs(x)
    small = x * horner(p, x * x)
    u = ((np.minimum(a, np.float32(HI)) - np.float32(mid)) * np.float32(1 / half)).astype(np.float32)
    big = np.copysign(np.minimum(horner(q, u), np.float32(1)), x)
    got = np.where(a < SMALL, small, big).astype(np.float64)
    want = np.vectorize(math.erf)(x.astype(np.float64))
    ulp = np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    print("P (x^2, from degree 0):", ", ".join(f"{c:.9g}f" for c in p))
    print("Q (u, from degree 0):", ", ".join(f"{c:.9g}f" for c in q))
    print(f"u = (|x| - {np.float32(mid):.9g}) * {np.float32(1 / half):.9g}")
    print(f"worst: {np.abs(got - want).max():.3g} absolute, {ulp.max():.2f} ulp")
    from pdc.codegen.c_renderer import ERF_P, ERF_Q
    same = [f"{c:.9g}f" for c in p] == list(ERF_P) and [f"{c:.9g}f" for c in q] == list(ERF_Q)
    print("pdc/codegen/c_renderer.py's ERF_P and ERF_Q:", "the same" if same else "DIFFERENT")


if __name__ == "__main__":
    main()
