"""A minimal protobuf wire-format reader, driven by small hand-written message schemas.

Paddle's .pdmodel (ProgramDesc) and the TensorDesc inside .pdiparams are protobuf messages. pdc
does not import paddle, so it decodes them here: a schema maps field numbers to (name, kind,
repeated) with kinds int (varint, two's complement for negatives), bool, float (fixed32),
double (fixed64), string, bytes, or a nested schema (a dict). Unknown fields are skipped, as
protobuf does; repeated scalars are accepted packed or unpacked.
"""
from __future__ import annotations

import struct

from ...ir.errors import PdcError


class WireError(PdcError):
    """The bytes are not a valid protobuf message of the expected shape."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def fields(buf: bytes, pos: int = 0, end: int | None = None):
    """Yields (field number, wire type, value) with value an int (varint/fixed) or a (start, end) span."""
    end = len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise WireError("field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos, end)
        elif wt == 1:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise WireError("truncated length-delimited field")
            val, pos = (pos, pos + n), pos + n
        elif wt == 5:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wt}")
        yield num, wt, val


_SCALAR_WIRE = {"int": 0, "bool": 0, "float": 5, "double": 1}


def _scalar(kind: str, wt: int, val):
    if kind == "int":
        return _signed(val)
    if kind == "bool":
        return bool(val)
    if kind == "float":
        return struct.unpack("<f", val)[0]
    if kind == "double":
        return struct.unpack("<d", val)[0]
    raise AssertionError(kind)


def _packed(buf: bytes, kind: str, start: int, end: int) -> list:
    out = []
    pos = start
    if kind in ("int", "bool"):
        while pos < end:
            v, pos = _varint(buf, pos, end)
            out.append(_scalar(kind, 0, v))
    else:
        size = 4 if kind == "float" else 8
        if (end - start) % size:
            raise WireError("packed field length is not a multiple of the element size")
        fmt = "<f" if kind == "float" else "<d"
        out = [x[0] for x in struct.iter_unpack(fmt, buf[start:end])]
    return out


def decode(buf: bytes, schema: dict, start: int = 0, end: int | None = None) -> dict:
    """Decodes a message into a dict keyed by field name. Repeated fields are lists; absent
    singular fields are missing from the dict (callers use .get with their default)."""
    msg: dict = {}
    for num, (name, kind, repeated) in schema.items():
        if repeated:
            msg[name] = []
    for num, wt, val in fields(buf, start, end):
        spec = schema.get(num)
        if spec is None:
            continue
        name, kind, repeated = spec
        if isinstance(kind, dict):
            if wt != 2:
                raise WireError(f"field '{name}' has wire type {wt}, expected a message")
            v = decode(buf, kind, *val)
        elif kind in ("string", "bytes"):
            if wt != 2:
                raise WireError(f"field '{name}' has wire type {wt}, expected bytes")
            raw = bytes(buf[val[0]:val[1]])
            v = raw.decode("utf-8", "replace") if kind == "string" else raw
        elif wt == 2 and repeated:
            msg[name].extend(_packed(buf, kind, *val))
            continue
        elif wt != _SCALAR_WIRE[kind]:
            raise WireError(f"field '{name}' has wire type {wt}, expected {_SCALAR_WIRE[kind]}")
        else:
            v = _scalar(kind, wt, val)
        if repeated:
            msg[name].append(v)
        else:
            msg[name] = v
    return msg
