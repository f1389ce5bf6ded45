"""Outputs whose length depends on the data (NonZero, Unique, NonMaxSuppression, TopK with a K
known at run time only), compiled with a bound.

Such an op infers `?` for the data-dependent axis. Compiled code needs static buffers, so before
code generation compiler.bound_outputs gives the node a `bound` attribute (the largest length the
data can give, from the input shapes) and one more output, `length` (an int64 scalar): the node
then writes its values into the first `length` positions of that axis, zeros after them, and the
length. The reference below pads the same way, so a bounded graph runs on the interpreter too.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext
from ..types import TensorType

BOUND_ATTR = {"bound": Attr("int", None)}
LENGTH = TensorType(dtypes.int64, ())


def length_dim(ctx: InferContext, unknown):
    """The data-dependent dim: the node's bound once it has one."""
    return ctx.attrs["bound"] if ctx.attrs.get("bound") is not None else unknown


def with_length(ctx: InferContext, types: list) -> list:
    """The inferred output types, with the length output's where the node has one."""
    types = list(types) + [LENGTH] if ctx.attrs.get("bound") is not None else list(types)
    return types[:ctx.num_outputs]


def padded(outputs: list, attrs: dict, axes: list) -> list:
    """The reference's exact outputs padded with zeros to the bound along their data-dependent axis
    (axes[i] for output i; None: not data-dependent), and the length, for a bounded node."""
    bound = attrs.get("bound")
    if bound is None:
        return outputs
    n = next(o.shape[a] for o, a in zip(outputs, axes) if a is not None)
    out = []
    for o, a in zip(outputs, axes):
        if a is not None:
            width = [(0, 0)] * o.ndim
            width[a] = (0, bound - o.shape[a])
            o = np.pad(o, width)
        out.append(o)
    return out + [np.array(n, np.int64)]
