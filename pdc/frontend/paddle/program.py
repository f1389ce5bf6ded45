"""The program both Paddle parsers produce, in PIR terms, before it is lowered to pdc IR.

PIR JSON maps onto it directly. Legacy ProgramDesc ops are rewritten into the same form by
`legacy_ops` (op names, operand order, attributes that PIR passes as operands become `Const`),
so `ops.py` lowers one set of semantics.

Operands are keys of values defined earlier (ints for PIR, variable names for legacy), `None`
for an absent optional operand, `Const` for data known at import time, or a list of those
(PIR's `combine`d vectors, legacy's multi-argument slots).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from ...ir import dtypes
from ...ir.errors import UnsupportedError
from ...ir.types import TensorType
from .pdiparams import ParamSpec


# dtype strings of `1.a_dtype` attributes
DTYPE_NAMES = {
    "float32": dtypes.float32, "float64": dtypes.float64, "float16": dtypes.float16, "bfloat16": dtypes.bfloat16,
    "int8": dtypes.int8, "uint8": dtypes.uint8, "int16": dtypes.int16, "int32": dtypes.int32,
    "int64": dtypes.int64, "bool": dtypes.bool_, "uint16": dtypes.uint16,
}


@dataclass
class Const:
    """An operand whose data is known when the file is read (a legacy attribute, say)."""
    data: np.ndarray


@dataclass
class Op:
    type: str  # the PIR op name without its dialect prefix: "conv2d", "batch_norm_", "combine"
    operands: list
    results: list  # keys (None for a result nothing can refer to)
    attrs: dict[str, Any]
    result_types: list  # declared TensorType (or a list of them for a vector, or None) per result
    where: str  # how messages name this op: "op #12 'pd_op.conv2d'"
    name: str = ""  # the IR node name for its lowering
    unsupported: bool = False  # a legacy op pdc cannot rewrite (type is then the legacy name)
    regions: list = field(default_factory=list)  # a control-flow op's bodies: one Block each


@dataclass
class Block:
    """A control-flow body: its arguments (key, declared type), its ops, and the operands its
    closing yield gives back (the body's results)."""
    args: list
    ops: list
    yields: list


@dataclass
class Program:
    source: str  # the model file, for messages
    format: str  # "pir" or "legacy"
    inputs: list[tuple[str, Hashable, TensorType]] = field(default_factory=list)
    params: list[tuple[ParamSpec, Hashable]] = field(default_factory=list)
    # keys of values that exist in the program but have no data (non-persistable parameters)
    unavailable: dict[Hashable, str] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    outputs: list[Hashable] = field(default_factory=list)


def declared_type(dtype, dims) -> TensorType:
    """A TensorType from a Paddle dtype and dims, with -1 (unknown) as '?'."""
    return TensorType(dtype, tuple("?" if d < 0 else d for d in dims))


def parse_dtype(value, where: str):
    """A DType from a `1.a_dtype` attribute value; None for 'Undefined' (keep the input's)."""
    if isinstance(value, str) and value.startswith("Undefined"):
        return None
    if value not in DTYPE_NAMES:
        raise UnsupportedError(f"{where}: dtype '{value}' is not supported")
    return DTYPE_NAMES[value]
