"""Size limits checked where a model enters pdc, so a hostile or mistaken model fails in a
second with one line instead of hanging a generator or asking for petabytes later."""
from __future__ import annotations

import math
import re
from typing import Optional

from .dtypes import DType
from .errors import PdcError
from .graph import Graph, Value

DEFAULT_MAX_TENSOR_BYTES = 16 << 30  # 16 GiB: over any arena a single device of today can hold
MAX_RANK = 64  # far above any real model; a 10^6-rank shape would only slow everything down


class LimitError(PdcError):
    """A model is larger than a configured limit."""


def human_bytes(n: int) -> str:
    """1 KiB ... EiB with 3 significant digits; plain bytes under 1 KiB; a power of two past 2^1000."""
    if n.bit_length() > 1000:  # a float would overflow on the 4000-digit sizes a hostile model can spell
        return f"over 2^{n.bit_length() - 1} B"
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    return f"{n} B"


def parse_byte_size(text, what: str = "--max-tensor-bytes") -> int:
    """Bytes from an int or a string such as '16G', '512M', '64K', '1048576' (K = 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text > 0:
            return text
    else:
        m = re.fullmatch(r"\s*(\d{1,20})\s*([kKmMgGtT]?)(i?[bB])?\s*", str(text))
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]
    raise PdcError(f"{what} '{text}': expected a positive size such as 16G, 512M or 1048576")


def min_nbytes(shape, dtype: DType) -> int:
    """The bytes a tensor takes at least: its static dims multiplied, symbolic dims taken as 1."""
    return math.prod(d for d in shape if isinstance(d, int)) * dtype.itemsize


def check_shape(shape, dtype: DType, limit: int, what: str) -> None:
    """Refuses negative dims, absurd ranks and tensors over `limit` bytes; `what` names the tensor."""
    if shape is None:
        return
    if len(shape) > MAX_RANK:
        raise LimitError(f"{what}: rank {len(shape)} is over pdc's limit of {MAX_RANK}")
    for d in shape:
        if isinstance(d, int) and d < 0:
            raise PdcError(f"{what}: negative dim {d} in shape {list(shape)}")
    size = min_nbytes(shape, dtype)
    spanned = min_nbytes([d for d in shape if d != 0], dtype)
    if size == 0 and spanned > limit:  # generators still walk an empty tensor's other dims
        raise LimitError(f"{what}: {dtype}{_spelled(shape)} is empty but its other dims span "
                         f"{human_bytes(spanned)}, over the limit of {human_bytes(limit)} (--max-tensor-bytes)")
    if size > limit:
        raise LimitError(f"{what}: {dtype}{_spelled(shape)} takes {human_bytes(size)}, over the limit of "
                         f"{human_bytes(limit)} (--max-tensor-bytes)")


def _spelled(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_value(v: Value, limit: int, where: Optional[str] = None) -> None:
    what = f"{where}: output '{v.name}'" if where else f"tensor '{v.name}'"
    check_shape(v.type.shape, v.type.dtype, limit, what)


def check_graph_limits(graph: Graph, limit: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
    """Every input, constant and node output of `graph` within `limit` bytes (symbolic dims as 1)."""
    for v in graph.inputs:
        check_shape(v.type.shape, v.type.dtype, limit, f"input '{v.name}'")
    for v in graph.constants:
        check_shape(v.type.shape, v.type.dtype, limit, f"constant '{v.name}'")
    for n in graph.nodes:
        for v in n.outputs:
            check_value(v, limit, f"node '{n.name}' ({n.op})" if n.name else f"{n.op} node")
