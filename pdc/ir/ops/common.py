"""Helpers shared by op definitions: broadcasting, axis handling, common infer functions."""
from __future__ import annotations

from typing import Optional

from ..dtypes import DType
from ..registry import InferContext
from ..symbolic import RuntimeSizeError, SizeExpr
from ..types import UNKNOWN, TensorType


def broadcast_dims(a, b, ctx: Optional[InferContext] = None):
    """Numpy-style broadcast of two dims (ints, symbols or '?'; in kernels, sizes known only at run
    time, which a 1 broadcasts to and which equal only themselves)."""
    if isinstance(a, SizeExpr) or isinstance(b, SizeExpr):
        if isinstance(b, int) and b == 1 or a is b or isinstance(b, SizeExpr) and a.__eq__(b) is True:
            return a
        if isinstance(a, int) and a == 1:
            return b
        raise RuntimeSizeError(f"a broadcast of {a} against {b}")
    if a == 1:
        return b
    if b == 1:
        return a
    if a == b:
        return a
    if isinstance(a, int) and isinstance(b, int):
        if ctx is not None:
            ctx.fail(f"shapes do not broadcast ({a} vs {b})")
        raise ValueError(f"shapes do not broadcast ({a} vs {b})")
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return UNKNOWN


def broadcast_shapes(shapes, ctx: Optional[InferContext] = None):
    """Multidirectional (numpy) broadcast of shapes; None (unknown rank) makes the result unknown."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        padded = (1,) * (rank - len(s)) + tuple(s)
        out = [broadcast_dims(x, y, ctx) for x, y in zip(out, padded)]
    return tuple(out)


def normalize_axis(axis: int, rank: int, ctx: Optional[InferContext] = None, *, inclusive: bool = False) -> int:
    """Maps a negative axis into [0, rank) (or [0, rank] when `inclusive`)."""
    hi = rank + 1 if inclusive else rank
    if not -hi <= axis < hi:
        msg = f"axis {axis} is out of range for rank {rank}"
        if ctx is not None:
            ctx.fail(msg)
        raise ValueError(msg)
    return axis + hi if axis < 0 else axis


def same_as_input(i: int = 0):
    """Infer function: every output has the type of input i."""
    def infer(ctx: InferContext):
        return [ctx.types[i]] * ctx.num_outputs
    return infer


def broadcast_infer(out_dtype: Optional[DType] = None):
    """Infer function for broadcasting elementwise ops; dtype of input 0 unless `out_dtype`."""
    def infer(ctx: InferContext):
        present = [t for t in ctx.types if t is not None]
        dt = out_dtype or present[0].dtype
        return [TensorType(dt, broadcast_shapes([t.shape for t in present], ctx))]
    return infer


def require_same_dtype(ctx: InferContext, *indices):
    dts = {ctx.types[i].dtype for i in indices if ctx.has_input(i)}
    if len(dts) > 1:
        ctx.fail(f"inputs must share one dtype, got {sorted(map(str, dts))}")


def require_dtype(ctx: InferContext, i: int, allowed):
    t = ctx.types[i]
    if t is not None and t.dtype not in allowed:
        ctx.fail(f"input {i} has dtype {t.dtype}, expected one of {', '.join(map(str, allowed))}")


def const_ints(ctx: InferContext, i: int) -> Optional[list[int]]:
    """The values of constant integer input i as a list, or None when it is not constant."""
    data = ctx.const(i)
    return None if data is None else [int(x) for x in data.reshape(-1)]
