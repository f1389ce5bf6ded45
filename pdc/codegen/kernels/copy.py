"""Kernels that move bytes unchanged: identity and the view ops when the planner could not alias them."""
from __future__ import annotations

from ..context import KernelContext
from . import kernel


@kernel("identity", "reshape", "flatten", "squeeze", "unsqueeze")
def copy(ctx: KernelContext) -> str:
    n = ctx.outputs[0].nbytes
    return f"    if ((const void *)out0 != (const void *)in0) memcpy(out0, in0, {n});" if n else "    (void)in0; (void)out0;"
