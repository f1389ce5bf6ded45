"""C spellings of IR element types, and literals."""
from __future__ import annotations

import math

from ..ir.dtypes import NARROW, DType

C_TYPES = {
    "f64": "double", "f32": "float", "f16": "_Float16", "bf16": "uint16_t",
    "i8": "int8_t", "u8": "uint8_t", "i16": "int16_t", "u16": "uint16_t",
    "i32": "int32_t", "u32": "uint32_t", "i64": "int64_t", "u64": "uint64_t", "bool": "uint8_t",
    # narrow types: one element per byte (pdc/codegen/narrow_c.py converts them)
    **{d.short: "uint8_t" for d in NARROW},
}


def ctype(dt: DType) -> str:
    return C_TYPES[dt.short]


def float_literal(x: float, c_type: str = "float") -> str:
    """An exact C literal for x (hex float), with inf/nan spelled portably."""
    x = float(x)
    suffix = "f" if c_type == "float" else ""
    if math.isnan(x):
        return f"(({c_type})NAN)"
    if math.isinf(x):
        return f"(({c_type})INFINITY)" if x > 0 else f"(-({c_type})INFINITY)"
    return f"{x.hex()}{suffix}"


def int_literal(x: int) -> str:
    x = int(x)
    if x == -(2 ** 63):
        return "INT64_MIN"
    return f"{x}LL" if abs(x) > 2 ** 31 - 1 else str(x)
