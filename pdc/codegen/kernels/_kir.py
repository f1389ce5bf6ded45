"""Kernel generators on the kernel IR (pdc/codegen/kir): the bridge from a KernelContext, and the
record of which generators print through it.

A generator marked `@prints_kir` builds its kernel as kir statements and returns
`render(ctx, ...)`: the body printed by the printer of the compile's target language (C99 today).
render also leaves the kir Kernel it printed in `ctx.kir_kernel`, for a caller that prints it in
another language or transforms it first (kir.parallel.bind_parallel for a GPU):

    gen(ctx); kernel = ctx.kir_kernel
"""
from __future__ import annotations

from typing import Callable

from .. import kir
from ..context import KernelContext
from ..kir.walk import nodes


def prints_kir(fn: Callable) -> Callable:
    """Marks a generator whose C comes from the kernel IR (see kir_generated_ops)."""
    fn.pdc_kir = True
    return fn


def io(ctx: KernelContext) -> tuple[list[kir.Buffer], list[kir.Buffer]]:
    """The kernel's parameter buffers: in0.. (None dtype for an absent optional input), out0.."""
    return kir.io_buffers([None if t is None else t.dtype for t in ctx.inputs], [t.dtype for t in ctx.outputs])


def printer(ctx: KernelContext) -> kir.CPrinter:
    """The printer of the target's kernel language."""
    return kir.CPrinter()


def build(ctx: KernelContext, *body) -> kir.Kernel:
    """ctx's kernel made of `body` (kir statements), with the signature of pdc's kernels."""
    ins, outs = io(ctx)
    return kir.make_kernel(ctx.fn_name, ins, outs, *body)


def render(ctx: KernelContext, *body) -> str:
    """The C body of ctx's kernel made of `body` (kir statements); the Kernel is left in
    ctx.kir_kernel."""
    k = build(ctx, *body)
    if any(isinstance(n, kir.Check) for n in nodes(k.body)):
        ctx.reports_status = True  # the signature takes the status pointer the checks write
    ctx.kir_kernel = k
    return printer(ctx).body(k)


def kir_generated_ops() -> list[str]:
    """The registered ops whose generator prints through the kernel IR, sorted."""
    from . import generators
    out = []
    for op, fn in generators().items():
        if getattr(fn, "pdc_kir", False):
            out.append(op)
    return sorted(out)
