"""Reads Paddle's combined parameter file (.pdiparams).

The file is a bare concatenation of tensor records with no names: the program says which
parameters exist, and the records come in ascending order of the parameter names. Each record:

    u32 version (0) | u64 lod_level | lod_level x (u64 nbytes, nbytes of offsets)
    u32 version (0) | i32 desc_len | TensorDesc protobuf (data_type, dims) | raw little-endian data

Every record is checked against what the program declares (dtype and dims), and the file must
end exactly after the last one, so a wrong order, a truncated file or a file from another model
is reported instead of producing silently wrong weights.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from ...ir import dtypes
from ...ir.dtypes import DType
from ...ir.errors import PdcError, UnsupportedError
from .protowire import WireError, decode

# VarType.Type codes of element types (framework.proto)
VARTYPE_DTYPES: dict[int, DType] = {
    0: dtypes.bool_, 1: dtypes.int16, 2: dtypes.int32, 3: dtypes.int64, 4: dtypes.float16,
    5: dtypes.float32, 6: dtypes.float64, 20: dtypes.uint8, 21: dtypes.int8, 22: dtypes.bfloat16,
    36: dtypes.uint16, 37: dtypes.uint32, 38: dtypes.uint64,
}
VARTYPE_NAMES = {19: "SIZE_T", 23: "COMPLEX64", 24: "COMPLEX128", 32: "FP8_E4M3FN", 33: "FP8_E5M2"}

TENSOR_DESC = {1: ("data_type", "int", False), 2: ("dims", "int", True)}

MAX_DESC = 1 << 20  # a TensorDesc is a few bytes; anything huge means a corrupt file


def vartype_dtype(code: int, where: str) -> DType:
    try:
        return VARTYPE_DTYPES[code]
    except KeyError:
        name = VARTYPE_NAMES.get(code, str(code))
        raise UnsupportedError(f"{where}: element type {name} is not supported") from None


@dataclass
class ParamSpec:
    """A parameter the program declares: its name, dtype and static shape."""
    name: str
    dtype: DType
    shape: tuple


def read_pdiparams(path: str, params: list[ParamSpec], program: str = "the program") -> dict[str, np.ndarray]:
    """Reads every parameter of `params` (any order) from `path`; returns name -> array."""
    specs = sorted(params, key=lambda p: p.name.encode("utf-8"))
    size = os.path.getsize(path)
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        def read(n: int, what: str, k: int, name: str) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise PdcError(f"{path}: truncated: the file ends inside {what} of parameter #{k} '{name}' "
                               f"({len(specs)} parameters expected from {program})")
            return data

        for k, spec in enumerate(specs):
            if f.tell() == size:
                raise PdcError(f"{path}: holds {k} parameters but {program} declares {len(specs)} "
                               f"(truncated file or program/params mismatch; next expected '{spec.name}')")
            (ver,) = struct.unpack("<I", read(4, "the record header", k, spec.name))
            if ver != 0:
                raise PdcError(f"{path}: parameter #{k} '{spec.name}': unknown tensor record version {ver} "
                               f"(not a .pdiparams file, or a program/params mismatch)")
            (lod_level,) = struct.unpack("<Q", read(8, "the record header", k, spec.name))
            if lod_level > 16:
                raise PdcError(f"{path}: parameter #{k} '{spec.name}': implausible lod level {lod_level}")
            for _ in range(lod_level):
                (nbytes,) = struct.unpack("<Q", read(8, "the lod", k, spec.name))
                if nbytes > size:
                    raise PdcError(f"{path}: parameter #{k} '{spec.name}': corrupt lod size {nbytes}")
                read(nbytes, "the lod", k, spec.name)
            ver, desc_len = struct.unpack("<Ii", read(8, "the tensor header", k, spec.name))
            if ver != 0 or not 0 <= desc_len <= MAX_DESC:
                raise PdcError(f"{path}: parameter #{k} '{spec.name}': corrupt tensor header "
                               f"(version {ver}, desc length {desc_len})")
            try:
                desc = decode(read(desc_len, "the tensor description", k, spec.name), TENSOR_DESC)
            except WireError as e:
                raise PdcError(f"{path}: parameter #{k} '{spec.name}': corrupt tensor description ({e})") from None
            where = f"{path}: parameter #{k} '{spec.name}'"
            dt = vartype_dtype(desc.get("data_type", -1), where)
            dims = tuple(desc.get("dims", ()))
            if any(d < 0 for d in dims):
                raise PdcError(f"{where}: negative dim in [{','.join(map(str, dims))}]")
            if dt != spec.dtype or dims != tuple(spec.shape):
                raise PdcError(f"{where} is {dt}[{','.join(map(str, dims))}] in the file but "
                               f"{spec.dtype}[{','.join(map(str, spec.shape))}] in {program} "
                               f"(program/params mismatch)")
            count = math.prod(dims)
            nbytes = count * dt.itemsize
            if f.tell() + nbytes > size:
                raise PdcError(f"{path}: truncated: the data of parameter #{k} '{spec.name}' needs {nbytes} bytes, "
                               f"{size - f.tell()} remain")
            arr = np.empty(dims, dt.np.newbyteorder("<"))
            if nbytes and f.readinto(memoryview(arr.reshape(-1).view(np.uint8))) != nbytes:
                raise PdcError(f"{path}: truncated data in parameter #{k} '{spec.name}'")
            out[spec.name] = arr.astype(dt.np, copy=False)
        extra = size - f.tell()
    if extra:
        raise PdcError(f"{path}: {extra} bytes remain after the {len(specs)} parameters {program} declares "
                       f"(program/params mismatch)")
    return out
