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
    def is_narrow(self) -> bool:
        """A float8, 4-bit or 2-bit type: one element per byte, converted by Cast, QuantizeLinear and
        DequantizeLinear and moved by data-movement ops; no arithmetic runs on it."""
        return self.short in _NARROW_SHORTS

    @property
    def is_float(self) -> bool:
        return self.short[0] in "fb" and self.short != "bool" and not self.is_narrow

    @property
    def is_int(self) -> bool:
        return self.short[0] in "iu" and not self.is_narrow

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

# narrow types, stored one element per byte as ml_dtypes lays them out (4- and 2-bit integers in the
# low bits); they have no arithmetic of their own
float8e4m3fn = _d("float8e4m3fn", "f8e4m3fn", ml_dtypes.float8_e4m3fn, TensorProto.FLOAT8E4M3FN)
float8e4m3fnuz = _d("float8e4m3fnuz", "f8e4m3fnuz", ml_dtypes.float8_e4m3fnuz, TensorProto.FLOAT8E4M3FNUZ)
float8e5m2 = _d("float8e5m2", "f8e5m2", ml_dtypes.float8_e5m2, TensorProto.FLOAT8E5M2)
float8e5m2fnuz = _d("float8e5m2fnuz", "f8e5m2fnuz", ml_dtypes.float8_e5m2fnuz, TensorProto.FLOAT8E5M2FNUZ)
float8e8m0 = _d("float8e8m0", "f8e8m0", ml_dtypes.float8_e8m0fnu, TensorProto.FLOAT8E8M0)
float4e2m1 = _d("float4e2m1", "f4e2m1", ml_dtypes.float4_e2m1fn, TensorProto.FLOAT4E2M1)
int4 = _d("int4", "i4", ml_dtypes.int4, TensorProto.INT4)
uint4 = _d("uint4", "u4", ml_dtypes.uint4, TensorProto.UINT4)
int2 = _d("int2", "i2", ml_dtypes.int2, TensorProto.INT2)
uint2 = _d("uint2", "u2", ml_dtypes.uint2, TensorProto.UINT2)

ALL = (float64, float32, float16, bfloat16, int8, uint8, int16, uint16, int32, uint32, int64, uint64, bool_)
NARROW_FLOATS = (float8e4m3fn, float8e4m3fnuz, float8e5m2, float8e5m2fnuz, float8e8m0, float4e2m1)
NARROW_INTS = (int4, uint4, int2, uint2)
NARROW = NARROW_FLOATS + NARROW_INTS
_NARROW_SHORTS = frozenset(d.short for d in NARROW)
FLOATS = tuple(d for d in ALL if d.is_float)
INTS = tuple(d for d in ALL if d.is_int)

_BY_SHORT = {d.short: d for d in ALL + NARROW}
_BY_NAME = {d.name: d for d in ALL + NARROW}
_BY_ONNX = {d.onnx: d for d in ALL + NARROW}
_BY_NP = {d.np: d for d in ALL + NARROW}


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
