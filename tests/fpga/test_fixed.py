"""pdc's NumPy ap_fixed (pdc/quantize/fixed.py) against the ap_types headers' own conversions, compiled
with g++: every quantization and overflow mode, signed and unsigned, integer bits below zero and above
the width, values on ties, inside the range and far outside it."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import missing_dependency
from pdc.ir.errors import PdcError
from pdc.quantize.fixed import OVERFLOW, ROUNDING, Fixed
from pdc.targets.fpga import ap_types_dir

rng = np.random.default_rng(5)


def _types(n: int) -> list[Fixed]:
    out = []
    for k in range(n):
        w = int(rng.integers(2, 25))
        i = int(rng.integers(-3, w + 4))
        out.append(Fixed(w, i, bool(rng.integers(0, 2)), ROUNDING[k % len(ROUNDING)],
                         OVERFLOW[(k // len(ROUNDING)) % len(OVERFLOW)]))
    return out


def _values(t: Fixed, n: int = 24) -> np.ndarray:
    """Ties (odd multiples of half a step), values near the ends of the range and far past them."""
    step = t.step()
    span = max(abs(t.values(t.lo)), abs(t.values(t.hi)), step)
    ties = (rng.integers(-2 * (1 << t.width), 2 * (1 << t.width), n // 3) + 0.5) * step
    near = rng.uniform(-1.2, 1.2, n // 3) * span
    far = rng.uniform(-50, 50, n - 2 * (n // 3)) * span
    return np.concatenate([ties, near, far, [0.0, step / 4, -step / 4]])


def _program(cases: list) -> str:
    body = []
    for t, src, xs in cases:
        lits = ", ".join(repr(float(x)) for x in xs)
        body.append(f"  {{ const double xs[] = {{{lits}}};\n"
                    f"    for (double x : xs) printf(\"%.17g\\n\", {t}(x).to_double());\n"
                    f"    for (double x : xs) printf(\"%.17g\\n\", {t}({src}(x)).to_double()); }}")
    return "#include <ap_fixed.h>\n#include <cstdio>\nint main() {\n" + "\n".join(body) + "\n  return 0;\n}\n"


def test_conversions_match_ap_types(tmp_path):
    ap = ap_types_dir()
    if ap is None:
        missing_dependency("the ap_types headers (pip install --no-deps hls4ml)")
    cases = []
    for t in _types(56):  # 7 quantization x 4 overflow modes, twice
        # a wider source type: its own conversion first, then into t (from_codes)
        src = Fixed(min(t.width + 10, 40), t.integer + 4, True, "AP_RND_CONV", "AP_SAT")
        cases.append((t, src, _values(t)))
    (tmp_path / "conv.cpp").write_text(_program(cases))
    subprocess.run(["g++", "-std=c++14", "-O0", "-isystem", ap, "-o", "conv", "conv.cpp"], cwd=tmp_path, check=True)
    got = np.array(subprocess.run(["./conv"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split(),
                   np.float64)
    pos, bad = 0, []
    for t, src, xs in cases:
        direct = t.values(t.from_float(xs))
        via = t.values(t.from_codes(src.from_float(xs), src.frac))
        for what, want in (("from double", direct), (f"through {src}", via)):
            g = got[pos:pos + len(xs)]
            pos += len(xs)
            if not np.array_equal(g, want):
                k = int(np.flatnonzero(g != want)[0])
                bad.append(f"{t} {what}: x={xs[k]!r} ap_types {g[k]!r}, pdc {want[k]!r}")
    assert pos == len(got)
    assert not bad, "\n".join(bad[:20])


def test_parse_and_spell():
    assert str(Fixed.parse("ap_fixed<16,6>")) == "ap_fixed<16,6>"
    assert str(Fixed.parse(" ap_ufixed< 8 , 0 , AP_RND , AP_SAT > ")) == "ap_ufixed<8,0,AP_RND,AP_SAT>"
    with pytest.raises(PdcError, match=r"^precision 'float16': expected ap_fixed<W,I>"):
        Fixed.parse("float16")
    with pytest.raises(PdcError, match="quantization modes are"):
        Fixed.parse("ap_fixed<8,3,AP_ROUND,AP_SAT>")
    with pytest.raises(PdcError, match="1 to 62 bits wide"):
        Fixed.parse("ap_fixed<64,8>")
