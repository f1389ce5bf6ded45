"""Kernels that move bytes unchanged: identity, the view ops when the planner could not alias them, and
a copy between memory spaces that are both the host's."""
from __future__ import annotations

from .. import kir
from ..context import KernelContext, numel
from . import kernel
from ._kir import io, prints_kir, render


@kernel("identity", "reshape", "flatten", "squeeze", "unsqueeze", "copy")
@prints_kir
def copy(ctx: KernelContext) -> str:
    ins, outs = io(ctx)
    n = numel(ctx.outputs[0])
    if not n:
        return render(ctx)
    # the output may be the input itself (an in-place view the planner did not alias away)
    return render(ctx, kir.Copy(outs[0], kir.idx(0), ins[0], kir.idx(0), kir.idx(n), in_place=True))
