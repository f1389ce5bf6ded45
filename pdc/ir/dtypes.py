"""Element types of the IR, with their NumPy and ONNX counterparts."""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import TensorProto

from .errors import UnsupportedError


@dataclass(frozen=True)
class DType:
    name: str  # long name, e.g. "float32"
    short: str  # the spelling in IR text, e.g. "f32"
    np: np.dtype
    onnx: int  # TensorProto.DataType code

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def is_float(self) -> bool:
        return self.short[0] in "fb" and self.short != "bool"

    @property
    def is_int(self) -> bool:
        return self.short[0] in "iu"

    def __repr__(self) -> str:
        return self.short

    __str__ = __repr__


def _d(name, short, np_dtype, onnx_code):
    return DType(name, short, np.dtype(np_dtype), onnx_code)


float64 = _d("float64", "f64", np.float64, TensorProto.DOUBLE)
float32 = _d("float32", "f32", np.float32, TensorProto.FLOAT)
float16 = _d("float16", "f16", np.float16, TensorProto.FLOAT16)
bfloat16 = _d("bfloat16", "bf16", ml_dtypes.bfloat16, TensorProto.BFLOAT16)
int8 = _d("int8", "i8", np.int8, TensorProto.INT8)
uint8 = _d("uint8", "u8", np.uint8, TensorProto.UINT8)
int16 = _d("int16", "i16", np.int16, TensorProto.INT16)
uint16 = _d("uint16", "u16", np.uint16, TensorProto.UINT16)
int32 = _d("int32", "i32", np.int32, TensorProto.INT32)
uint32 = _d("uint32", "u32", np.uint32, TensorProto.UINT32)
int64 = _d("int64", "i64", np.int64, TensorProto.INT64)
uint64 = _d("uint64", "u64", np.uint64, TensorProto.UINT64)
bool_ = _d("bool", "bool", np.bool_, TensorProto.BOOL)

ALL = (float64, float32, float16, bfloat16, int8, uint8, int16, uint16, int32, uint32, int64, uint64, bool_)
FLOATS = tuple(d for d in ALL if d.is_float)
INTS = tuple(d for d in ALL if d.is_int)

_BY_SHORT = {d.short: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_ONNX = {d.onnx: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}


def from_short(short: str) -> DType:
    try:
        return _BY_SHORT[short]
    except KeyError:
        raise UnsupportedError(f"unknown dtype '{short}'") from None


def from_name(name: str) -> DType:
    """Accepts the long or the short spelling."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    return from_short(name)


def from_onnx(code: int) -> DType:
    try:
        return _BY_ONNX[code]
    except KeyError:
        name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
        raise UnsupportedError(f"unsupported ONNX element type {name}") from None


def from_numpy(dt) -> DType:
    try:
        return _BY_NP[np.dtype(dt)]
    except KeyError:
        raise UnsupportedError(f"unsupported NumPy dtype {np.dtype(dt)}") from None
