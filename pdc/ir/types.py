"""Tensor types: an element type and a shape whose dims are ints, named symbols, or unknown, and
for quantized integer tensors the meaning of their values (real = scale * (q - zero)).

The quantization is a description, not an instruction: integer ops carry their arithmetic in their
attributes, so a pass that drops a type's quantization never changes a number."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .dtypes import DType
from .symbolic import SizeExpr

Dim = Union[int, str]  # int: static; str: a named symbol such as "N"; "?": unknown
UNKNOWN = "?"


@dataclass(frozen=True)
class Quant:
    """Affine quantization: per tensor (axis None, one scale and zero) or per `axis` (one each per index)."""
    scale: tuple
    zero: tuple
    axis: Optional[int] = None

    def __post_init__(self):
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "zero", tuple(int(z) for z in self.zero))

    def problem(self, t: "TensorType") -> Optional[str]:
        """Why this quantization cannot describe a tensor of type t (None when it can)."""
        if not t.dtype.is_int:
            return f"quantization on a {t.dtype} tensor (integer types only)"
        if len(self.scale) != len(self.zero) or not self.scale:
            return "quantization needs as many zero points as scales (at least one)"
        if not all(math.isfinite(s) and s > 0 for s in self.scale):
            return f"quantization scales must be finite and positive, got {list(self.scale)}"
        info = np.iinfo(t.dtype.np)
        if not all(info.min <= z <= info.max for z in self.zero):
            return f"zero points {list(self.zero)} are outside {t.dtype}'s range [{info.min}, {info.max}]"
        if self.axis is None:
            return None if len(self.scale) == 1 else "a per-tensor quantization has one scale"
        if t.shape is not None:
            if not 0 <= self.axis < len(t.shape):
                return f"quantization axis {self.axis} is outside the rank {len(t.shape)}"
            dim = t.shape[self.axis]
            if isinstance(dim, int) and dim != len(self.scale):
                return f"quantization along axis {self.axis} has {len(self.scale)} scales for {dim} indices"
        return None

    def __str__(self) -> str:
        from .printer import format_float  # the printer's float spelling round-trips exactly
        if self.axis is None:
            return f"{{scale={format_float(self.scale[0])}, zero={self.zero[0]}}}"
        scales = ", ".join(format_float(s) for s in self.scale)
        return f"{{axis={self.axis}, scale=[{scales}], zero=[{', '.join(map(str, self.zero))}]}}"


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: Optional[tuple]  # None: the rank is unknown
    quant: Optional[Quant] = None

    def __post_init__(self):
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(d if isinstance(d, (str, SizeExpr)) else int(d) for d in self.shape))

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
        """The same element type (and a per-tensor quantization) with another shape."""
        quant = self.quant if self.quant is not None and self.quant.axis is None else None
        return TensorType(self.dtype, None if shape is None else tuple(shape), quant)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def with_quant(self, quant: Optional[Quant]) -> "TensorType":
        return TensorType(self.dtype, self.shape, quant)

    def __str__(self) -> str:
        q = "" if self.quant is None else str(self.quant)
        if self.shape is None:
            return f"{self.dtype.short}[*]{q}"
        return f"{self.dtype.short}[{','.join(str(d) for d in self.shape)}]{q}"

    __repr__ = __str__


def dims_compatible(a: Dim, b: Dim) -> bool:
    """Whether two dims may describe the same extent (unknown and symbols match anything)."""
    return a == b or not isinstance(a, int) or not isinstance(b, int)


def types_compatible(declared: TensorType, inferred: TensorType) -> bool:
    """Same dtype, shapes that may agree, and no conflicting quantization (ops infer none mostly)."""
    if declared.dtype != inferred.dtype:
        return False
    if declared.quant is not None and inferred.quant is not None and declared.quant != inferred.quant:
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
