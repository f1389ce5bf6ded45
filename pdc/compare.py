"""Comparing outputs against a reference, with the per-dtype tolerances used everywhere in pdc."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# max relative error (max|a-b| / max|b|) accepted per output dtype
REL_TOLERANCE = {"float64": 1e-7, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""

    def __str__(self) -> str:
        status = "ok" if self.ok else "MISMATCH"
        return f"{self.name}: max abs err {self.max_abs:.3g}, max rel err {self.max_rel:.3g} {status}{self.note}"


def compare_arrays(name: str, got: np.ndarray, want: np.ndarray) -> Comparison:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return Comparison(name, float("inf"), float("inf"), False, f" (shape {list(got.shape)} vs {list(want.shape)})")
    if want.dtype.kind in "biu" or want.dtype == np.bool_:
        diff = int(np.sum(got != want))
        ok = diff == 0
        return Comparison(name, float(diff), float(diff), ok, "" if ok else f" ({diff} elements differ)")
    g, w = got.astype(np.float64), want.astype(np.float64)
    same_special = (np.isnan(g) & np.isnan(w)) | ((g == w) & np.isinf(w))
    finite = ~same_special
    max_abs = float(np.max(np.abs(g - w)[finite], initial=0.0))
    scale = max(float(np.max(np.abs(w[finite]), initial=0.0)), 1e-6)
    max_rel = max_abs / scale
    tol = REL_TOLERANCE.get(want.dtype.name, 1e-4)
    return Comparison(name, max_abs, max_rel, bool(max_rel <= tol) and not np.isnan(max_abs))


def compare_outputs(got: dict, want: dict) -> list[Comparison]:
    return [compare_arrays(k, got[k], want[k]) for k in want]
