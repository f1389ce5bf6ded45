"""Tensor types: an element type and a shape whose dims are ints, named symbols, or unknown."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

from .dtypes import DType

Dim = Union[int, str]  # int: static; str: a named symbol such as "N"; "?": unknown
UNKNOWN = "?"


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: Optional[tuple]  # None: the rank is unknown

    def __post_init__(self):
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(d if isinstance(d, str) else int(d) for d in self.shape))

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> Optional[int]:
        return math.prod(self.shape) if self.is_static else None

    @property
    def nbytes(self) -> Optional[int]:
        n = self.numel
        return None if n is None else n * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, None if shape is None else tuple(shape))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype.short}[*]"
        return f"{self.dtype.short}[{','.join(str(d) for d in self.shape)}]"

    __repr__ = __str__


def dims_compatible(a: Dim, b: Dim) -> bool:
    """Whether two dims may describe the same extent (unknown and symbols match anything)."""
    return a == b or not isinstance(a, int) or not isinstance(b, int)


def types_compatible(declared: TensorType, inferred: TensorType) -> bool:
    if declared.dtype != inferred.dtype:
        return False
    if declared.shape is None or inferred.shape is None:
        return True
    return len(declared.shape) == len(inferred.shape) and all(
        dims_compatible(a, b) for a, b in zip(declared.shape, inferred.shape))


def refine(declared: TensorType, inferred: TensorType) -> TensorType:
    """The more precise of two compatible types, dim by dim (static beats symbolic beats unknown)."""
    if declared.shape is None:
        return inferred
    if inferred.shape is None:
        return declared

    def pick(a, b):
        if isinstance(a, int):
            return a
        if isinstance(b, int):
            return b
        return a if a != UNKNOWN else b

    return declared.with_shape(pick(a, b) for a, b in zip(declared.shape, inferred.shape))
