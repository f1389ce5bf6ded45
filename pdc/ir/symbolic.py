"""Bounded dims: a size known only at run time, within a range fixed when compiling.

`--shape batch=1..8` leaves the dim `batch` symbolic in the graph and records its range in the
graph's `dim_bounds`. Kernel generators then see such a dim as a `SizeExpr`: an integer expression
that renders as C (reading the run's sizes, `pdc_dims[k]`), does integer arithmetic, and knows the
range of its values. A comparison is answered only when every value in that range gives the same
answer; otherwise it raises `RuntimeSizeError`, as does any use that needs one concrete number
(`int()`, `range()`, a NumPy shape). So a generator that decides something from a size either
decides it for the whole range or refuses: it never emits code that is right for the bound only.
"""
from __future__ import annotations

import math
from typing import Optional, Union

from .errors import UnsupportedError

BoundsMap = dict  # symbol -> (lo, hi)


class RuntimeSizeError(UnsupportedError):
    """A kernel generator needed a concrete number where the size is known only at run time."""


class SizeExpr:
    """An int64 C expression of the run's sizes with the range [lo, hi] of its values."""

    __slots__ = ("expr", "lo", "hi", "atom", "negated")

    def __init__(self, expr: str, lo: int, hi: int, atom: bool = False, negated=None):
        self.expr, self.lo, self.hi, self.atom = expr, int(lo), int(hi), atom
        self.negated = negated  # -self, when self was made as its negation

    # ---- rendering -----------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.expr if self.atom else f"({self.expr})"

    def __format__(self, spec: str) -> str:
        if spec:
            raise RuntimeSizeError(f"a size known only at run time ({self}) formatted as '{spec}'")
        return str(self)

    def __repr__(self) -> str:
        return f"SizeExpr({self.expr!r}, {self.lo}..{self.hi})"

    def __hash__(self) -> int:
        return hash(self.expr)

    # ---- what needs a concrete number ------------------------------------------------------------
    def _concrete(self, what: str):
        raise RuntimeSizeError(f"{what} of a size known only at run time ({self.expr}, {self.lo}..{self.hi})")

    def __index__(self):
        self._concrete("a concrete value")

    __int__ = __index__

    def __float__(self):
        self._concrete("a float value")

    def __truediv__(self, other):
        self._concrete("a true division")

    __rtruediv__ = __truediv__

    def __bool__(self) -> bool:
        if self.lo > 0 or self.hi < 0:
            return True
        if self.lo == self.hi == 0:
            return False
        self._concrete("a truth value")

    # ---- comparisons: decided over the whole range, or refused -----------------------------------
    def __eq__(self, other):
        if isinstance(other, SizeExpr) and other.expr == self.expr:
            return True
        if not isinstance(other, (int, SizeExpr)) or isinstance(other, bool):
            return NotImplemented
        lo, hi = _span(other)
        if self.hi < lo or hi < self.lo:
            return False
        if self.lo == self.hi == lo == hi:
            return True
        self._concrete(f"a comparison with {other}")

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def _order(self, other, strict: bool, flip: bool):
        if isinstance(other, SizeExpr) and other.expr == self.expr:
            return not strict
        if not isinstance(other, (int, SizeExpr)):
            return NotImplemented
        lo, hi = _span(other)
        a_lo, a_hi, b_lo, b_hi = (lo, hi, self.lo, self.hi) if flip else (self.lo, self.hi, lo, hi)
        if (a_hi < b_lo) if strict else (a_hi <= b_lo):
            return True
        if (a_lo >= b_hi) if strict else (a_lo > b_hi):
            return False
        self._concrete(f"a comparison with {other}")

    def __lt__(self, other):
        return self._order(other, True, False)

    def __le__(self, other):
        return self._order(other, False, False)

    def __gt__(self, other):
        return self._order(other, True, True)

    def __ge__(self, other):
        return self._order(other, False, True)

    # ---- arithmetic --------------------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, int) and other == 0:
            return self
        if not isinstance(other, (int, SizeExpr)):
            return NotImplemented
        lo, hi = _span(other)
        return SizeExpr(f"{self} + {other}", self.lo + lo, self.hi + hi)

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, int) and other == 0:
            return self
        if isinstance(other, SizeExpr) and other.expr == self.expr:
            return 0
        if not isinstance(other, (int, SizeExpr)):
            return NotImplemented
        lo, hi = _span(other)
        return SizeExpr(f"{self} - {_operand(other)}", self.lo - hi, self.hi - lo)

    def __rsub__(self, other):
        if not isinstance(other, int):
            return NotImplemented
        return SizeExpr(f"{_operand(other)} - {self}", other - self.hi, other - self.lo)

    def __neg__(self):
        if self.negated is not None:
            return self.negated
        return SizeExpr(f"-{self}", -self.hi, -self.lo, negated=self)

    def __mul__(self, other):
        if isinstance(other, int):
            if other == 0:
                return 0
            if other == 1:
                return self
        elif not isinstance(other, SizeExpr):
            return NotImplemented
        lo, hi = _span(other)
        ends = [self.lo * lo, self.lo * hi, self.hi * lo, self.hi * hi]
        return SizeExpr(f"{self} * {_operand(other)}", min(ends), max(ends))

    __rmul__ = __mul__

    def __floordiv__(self, other):
        return _floordiv(self, other)

    def __rfloordiv__(self, other):
        return _floordiv(other, self) if isinstance(other, int) else NotImplemented

    def __mod__(self, other):
        return _mod(self, other)

    def __rmod__(self, other):
        return _mod(other, self) if isinstance(other, int) else NotImplemented


def _span(x) -> tuple[int, int]:
    """(lo, hi) of a size: an int's is itself."""
    return (x, x) if isinstance(x, int) else (x.lo, x.hi)


def _operand(x) -> str:
    return f"({x})" if isinstance(x, int) and x < 0 else str(x)


def _floordiv(a, b):
    """a // b as C's `/`, which truncates: the same only for a >= 0 and b > 0, else refused."""
    (a_lo, a_hi), (b_lo, b_hi) = _span(a), _span(b)
    if isinstance(a, SizeExpr) and a.hi <= 0 and isinstance(b, int) and b > 0:
        # -(-x // b), the ceiling of x / b, as exporters and kernels write it: C's / on -a >= 0
        return SizeExpr(f"-(({-a} + {b - 1}) / {b})", a.lo // b, a.hi // b)
    if a_lo < 0 or b_lo <= 0:
        raise RuntimeSizeError(f"a floor division {a} // {b} with a size known only at run time that may be "
                               f"negative")
    if isinstance(b, int) and b == 1:
        return a
    if same_size(a, b):
        return 1
    return SizeExpr(f"{a} / {b}", a_lo // b_hi, a_hi // b_lo)


def _mod(a, b):
    """a % b as C's %, which is Python's for a >= 0 and b > 0; refused otherwise."""
    if not isinstance(b, (int, SizeExpr)) or isinstance(b, bool):
        return NotImplemented
    (a_lo, a_hi), (b_lo, b_hi) = _span(a), _span(b)
    if a_lo < 0 or b_lo <= 0:
        raise RuntimeSizeError(f"a remainder {a} % {b} with a size known only at run time that may be negative")
    if same_size(a, b):
        return 0
    if a_hi < b_lo:
        return a
    return SizeExpr(f"{a} % {_operand(b)}", 0, min(a_hi, b_hi - 1))


Size = Union[int, SizeExpr]


def same_size(a, b) -> bool:
    """Whether a and b are provably the same size: equal ints, or the same expression (two
    expressions that are equal only for some runs, or written differently, are not)."""
    if isinstance(a, SizeExpr) or isinstance(b, SizeExpr):
        return isinstance(a, SizeExpr) and isinstance(b, SizeExpr) and a.expr == b.expr
    return a == b


def same_shape(a, b) -> bool:
    """Whether two shapes are provably the same (see same_size)."""
    return len(a) == len(b) and all(same_size(x, y) for x, y in zip(a, b))


def is_runtime(d) -> bool:
    return isinstance(d, SizeExpr)


def upper(d: Size) -> int:
    """The largest value a size takes: what memory is sized for."""
    return d.hi if isinstance(d, SizeExpr) else int(d)


def dim_exprs(bounds: BoundsMap) -> dict:
    """symbol -> the SizeExpr reading its run-time value: pdc_dims[k], k in the bounds' order."""
    return {sym: SizeExpr(f"pdc_dims[{k}]", lo, hi, atom=True) for k, (sym, (lo, hi)) in enumerate(bounds.items())}


def upper_shape(shape, bounds: BoundsMap) -> tuple:
    """A shape with every bounded symbol at its upper bound."""
    return tuple(bounds[d][1] if isinstance(d, str) and d in bounds else upper(d) if is_runtime(d) else d
                 for d in shape)


def bound_nbytes(t, bounds: Optional[BoundsMap]):
    """A tensor type's bytes with its bounded symbols at their upper bounds; None when some dim is
    neither a size nor a bounded symbol."""
    if t.shape is None:
        return None
    shape = upper_shape(t.shape, bounds or {})
    if not all(isinstance(d, int) for d in shape):
        return None
    return math.prod(shape) * t.dtype.itemsize


def concrete_shape(shape, sizes: dict) -> tuple:
    """A shape with its symbols replaced by the sizes of one run."""
    return tuple(sizes[d] if isinstance(d, str) else d for d in shape)


def parse_range(text: str):
    """'1..8' -> (1, 8); None when text is not a range."""
    lo, sep, hi = text.partition("..")
    if not sep:
        return None
    try:
        lo, hi = int(lo), int(hi)
    except ValueError:
        return None
    return lo, hi
