"""The device kernel of a node: the opencl family's hand-written kernel, else the kernel-IR
generator's kernel printed in OpenCL C (its parallel loop nest bound to work-items), else None
(the node runs on the host). `from_kir` is shared with the CUDA family."""
from __future__ import annotations

from typing import Optional

from ... import kir
from ...context import KernelContext
from ...kir.opencl import OpenCLPrinter
from ...kir.parallel import bind_parallel, fission
from ...kir.walk import nodes
from ....ir.errors import UnsupportedError
from .. import PORTABLE, load_all
from . import OPENCL, DeviceKernel, Launch, round_up

GROUP = 64  # work-items per group of a bound kir kernel


def device_kernel(ctx: KernelContext) -> Optional[DeviceKernel]:
    printer = OpenCLPrinter(half_storage=ctx.config.float_storage == "f16")
    return select(ctx, (OPENCL,), printer, "opencl", GROUP)


def select(ctx: KernelContext, families: tuple, printer, family: str, group: int) -> Optional[DeviceKernel]:
    """The node's kernel from the first of `families` with a generator for its op, else (that one
    declining, or none) from its kernel-IR generator printed by `printer` (see from_kir), else None."""
    registry = load_all()
    gen = next((registry[(ctx.node.op, f)] for f in families if (ctx.node.op, f) in registry), None)
    if gen is not None:
        dk = gen(ctx)
        if dk is not None:
            return dk
    gen = registry.get((ctx.node.op, PORTABLE))
    if gen is None or not getattr(gen, "pdc_kir", False):
        return None
    gen(ctx)
    if ctx.kir_kernel is None:
        return None
    return from_kir(ctx.kir_kernel, printer, family, group)


def from_kir(k: kir.Kernel, printer, family: str, group: int) -> Optional[DeviceKernel]:
    """The kernel in a device language (the printer's), split into one launch per top-level loop,
    copy or fill (fission), each with one work-item per iteration of its parallel nest (in groups
    of `group`), or one work-item when it has none. None for what a device cannot hold: constant
    data outside the source (WeightsView), a float buffer in 16-bit storage handed to a C helper,
    what the printer cannot spell (UnsupportedError)."""
    if any(isinstance(n, kir.WeightsView) for n in nodes(k.body)):
        return None
    if any(isinstance(n, kir.Address) and printer.halved(n.buffer) for n in nodes(k.body)):
        return None  # a C helper walking a float buffer cannot read half storage
    sources, launches, parallel = [], [], False
    for piece in fission(k):
        bound, items = bind_parallel(piece)
        args = [p.buffer.name if p.buffer.dtype is not None else "none" for p in bound.params]
        if any(isinstance(n, kir.Check) for n in nodes(bound.body)):
            args.append("status")
        try:
            sources.append(printer.function(bound))
        except UnsupportedError:
            return None
        if bound is piece:  # serial: one work-item runs it all
            launches.append(Launch(piece.name, tuple(args), (1,), (1,)))
        else:
            launches.append(Launch(piece.name, tuple(args), (round_up(items, group),), (group,)))
            parallel = True
    return DeviceKernel("\n".join(sources), launches,
                        path=f"{family}/kir-parallel" if parallel else f"{family}/kir-serial")
