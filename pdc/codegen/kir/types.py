"""Element and vector types of kernel-IR expressions, and C's rules for combining them.

Scalars are the graph IR's DTypes. An expression's type is the type C gives it (integer promotion,
the usual arithmetic conversions, `int` for comparisons), so that a printer can leave out a cast
to the type an expression already has without changing what the C computes. Half-precision types
(f16, bf16) are storage types: arithmetic runs on values converted to float (kir.expr.cast).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ...ir import dtypes as D
from ...ir.dtypes import DType
from ...ir.errors import UnsupportedError


@dataclass(frozen=True)
class VectorType:
    """`lanes` elements of `elem` handled as one value (OpenCL float4, a GCC vector)."""
    elem: DType
    lanes: int

    @property
    def short(self) -> str:
        return f"{self.elem.short}x{self.lanes}"

    def __str__(self) -> str:
        return self.short


Type = Union[DType, VectorType]

INDEX = D.int64   # loop variables and flat element offsets
C_INT = D.int32   # C's int: comparisons, logical operators, promoted small integers
HALF = ("f16", "bf16")

_RANK = {1: 1, 2: 2, 4: 3, 8: 4}


def elem(t: Type) -> DType:
    return t.elem if isinstance(t, VectorType) else t


def lanes(t: Type) -> int:
    return t.lanes if isinstance(t, VectorType) else 1


def with_elem(t: Type, e: DType) -> Type:
    return VectorType(e, t.lanes) if isinstance(t, VectorType) else e


def promote(t: DType) -> DType:
    """C's integer promotion: types narrower than int compute as int."""
    if t.short == "bf16":
        raise UnsupportedError("kir: bf16 is a storage type; convert it to float (kir.cast) before arithmetic")
    if t.is_float:
        return t
    return C_INT if t.itemsize < 4 else t


def _unsigned(t: DType) -> bool:
    return t.short.startswith("u") or t.short == "bool"


def arith(a: Type, b: Type) -> Type:
    """The type of a binary arithmetic expression (C's usual arithmetic conversions); a vector
    operand gives a vector of the combined element type."""
    va, vb = isinstance(a, VectorType), isinstance(b, VectorType)
    if va or vb:
        if va and vb and a.lanes != b.lanes:
            raise UnsupportedError(f"kir: vectors of {a.lanes} and {b.lanes} lanes do not combine")
        n = a.lanes if va else b.lanes
        return VectorType(arith(elem(a), elem(b)), n)
    a, b = promote(a), promote(b)
    for f in (D.float64, D.float32, D.float16):
        if f in (a, b):
            return f
    if a == b:
        return a
    ua, ub = _unsigned(a), _unsigned(b)
    ra, rb = _RANK[a.itemsize], _RANK[b.itemsize]
    if ua == ub:
        return a if ra >= rb else b
    u, s = (a, b) if ua else (b, a)
    if _RANK[u.itemsize] >= _RANK[s.itemsize]:
        return u
    return s  # the signed type is wider, so it holds every value of the unsigned one


def int_type_of(value: int) -> DType:
    """The type C gives an unsuffixed integer literal (int, else a 64-bit type)."""
    if -2 ** 31 <= value < 2 ** 31:
        return C_INT
    if value < 2 ** 63:
        return D.int64
    return D.uint64
