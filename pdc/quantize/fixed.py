"""Vivado HLS `ap_fixed` / `ap_ufixed` arithmetic in NumPy, bit for bit.

A value of `ap_fixed<W, I, Q, O>` is an integer code c of W bits (two's complement when signed) that
stands for c * 2^-(W - I). Products and sums of codes are exact; a conversion into a type (from a
float, or from a wider exact result) first rounds to the type's fractional bits by its quantization
mode Q, then fits the integer bits by its overflow mode O. Codes are int64 arrays here, so every
width pdc uses stays below 63 bits (`MAX_BITS`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..ir.errors import PdcError

ROUNDING = ("AP_TRN", "AP_TRN_ZERO", "AP_RND", "AP_RND_ZERO", "AP_RND_INF", "AP_RND_MIN_INF", "AP_RND_CONV")
OVERFLOW = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")
MAX_BITS = 62  # codes and exact intermediate results fit int64
_SPELLING = re.compile(r"\s*ap_(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(\w+)\s*(?:,\s*(\w+)\s*)?)?>\s*")


@dataclass(frozen=True)
class Fixed:
    """One fixed-point type: `width` bits of which `integer` are left of the binary point (sign included)."""
    width: int
    integer: int
    signed: bool = True
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"

    def __post_init__(self):
        if not 1 <= self.width <= MAX_BITS:
            raise PdcError(f"{self}: pdc's fixed-point types are 1 to {MAX_BITS} bits wide")
        if self.rounding not in ROUNDING or self.overflow not in OVERFLOW:
            raise PdcError(f"{self}: quantization modes are {', '.join(ROUNDING)}; overflow modes "
                           f"{', '.join(OVERFLOW)}")

    @staticmethod
    def parse(text: str) -> "Fixed":
        """'ap_fixed<16,6>', 'ap_ufixed<8,0>', 'ap_fixed<18,8,AP_RND,AP_SAT>' (one-line error otherwise)."""
        m = _SPELLING.fullmatch(text)
        if not m:
            raise PdcError(f"precision '{text}': expected ap_fixed<W,I> or ap_fixed<W,I,Q,O> "
                           f"(e.g. ap_fixed<16,6> or ap_fixed<18,8,AP_RND,AP_SAT>)")
        u, w, i, q, o = m.groups()
        return Fixed(int(w), int(i), not u, q or "AP_TRN", o or "AP_WRAP")

    def __str__(self) -> str:
        modes = "" if (self.rounding, self.overflow) == ("AP_TRN", "AP_WRAP") else f",{self.rounding},{self.overflow}"
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}{modes}>"

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def step(self) -> float:
        return math.ldexp(1.0, -self.frac)

    def values(self, codes) -> np.ndarray:
        """The real values of codes, in float64 (exact: codes stay below 2^53)."""
        return np.ldexp(np.asarray(codes, np.float64), -self.frac)

    def from_float(self, x) -> np.ndarray:
        """Codes of float values, as the type's constructor from double converts them."""
        x = np.asarray(x, np.float64)
        if not np.all(np.isfinite(x)):
            raise PdcError(f"{self}: cannot hold NaN or infinity")
        scaled = np.ldexp(x, self.frac)  # exact: a power-of-two scale
        if np.any(np.abs(scaled) >= 2.0 ** MAX_BITS):
            raise PdcError(f"{self}: a value of magnitude {np.abs(x).max():g} is beyond pdc's {MAX_BITS}-bit codes")
        whole = np.floor(scaled)
        return self._fit(_round(whole.astype(np.int64), scaled - whole, self.rounding))

    def from_codes(self, codes, frac: int) -> np.ndarray:
        """Codes of this type for exact values given as codes with `frac` fractional bits."""
        codes = np.asarray(codes, np.int64)
        if frac <= self.frac:
            return self._fit(codes << (self.frac - frac))
        shift = frac - self.frac
        whole = codes >> shift  # floor
        rest = codes - (whole << shift)  # 0 <= rest < 2^shift
        return self._fit(_round(whole, rest / float(1 << shift), self.rounding))

    def _fit(self, codes: np.ndarray) -> np.ndarray:
        over = (codes < self.lo) | (codes > self.hi)
        if not over.any():
            return codes
        if self.overflow == "AP_WRAP":
            low = codes & ((1 << self.width) - 1)
            return low - ((low >> (self.width - 1)) << self.width) if self.signed else low
        if self.overflow == "AP_SAT_ZERO":
            return np.where(over, 0, codes)
        lo = -self.hi if self.overflow == "AP_SAT_SYM" and self.signed else self.lo
        return np.clip(codes, lo, self.hi)

    def covering(self, bound: float) -> "Fixed":
        """This type's width and modes with the fewest integer bits that hold +-bound."""
        return type(self)(self.width, integer_bits(bound, self.signed), self.signed, self.rounding, self.overflow)


def _round(whole: np.ndarray, fraction, mode: str = None) -> np.ndarray:
    """whole + fraction (0 <= fraction < 1) rounded to an integer by an AP quantization mode."""
    fraction = np.asarray(fraction, np.float64)
    nonzero, half, above = fraction > 0, fraction == 0.5, fraction > 0.5
    negative = whole < 0  # the value is negative when whole < 0 (whole + fraction < 0)
    up = {"AP_TRN": np.zeros_like(nonzero),
          "AP_TRN_ZERO": nonzero & negative,
          "AP_RND": fraction >= 0.5,
          "AP_RND_ZERO": above | (half & negative),
          "AP_RND_INF": above | (half & ~negative),
          "AP_RND_MIN_INF": above,
          "AP_RND_CONV": above | (half & (whole % 2 == 1))}[mode or "AP_TRN"]
    return whole + up.astype(np.int64)


def integer_bits(bound: float, signed: bool = True) -> int:
    """The integer bits (sign included) a type needs to hold every value of magnitude up to bound."""
    if bound <= 0:
        return 1 if signed else 0
    bits = math.floor(math.log2(bound)) + 1  # 2^(bits-1) <= bound < 2^bits
    return bits + 1 if signed else bits
