"""The device kernel of a node: the opencl family's hand-written kernel, else the kernel-IR
generator's kernel printed in OpenCL C (its parallel loop nest bound to work-items), else None
(the node runs on the host)."""
from __future__ import annotations

from typing import Optional

from ... import kir
from ...context import KernelContext
from ...kir.opencl import OpenCLPrinter
from ...kir.parallel import bind_parallel, fission
from ...kir.walk import nodes
from .. import PORTABLE, load_all
from . import OPENCL, DeviceKernel, Launch, round_up

GROUP = 64  # work-items per group of a bound kir kernel


def device_kernel(ctx: KernelContext) -> Optional[DeviceKernel]:
    registry = load_all()
    gen = registry.get((ctx.node.op, OPENCL))
    if gen is not None:
        dk = gen(ctx)
        if dk is not None:
            return dk
    gen = registry.get((ctx.node.op, PORTABLE))
    if gen is None or not getattr(gen, "pdc_kir", False):
        return None
    gen(ctx)
    return None if ctx.kir_kernel is None else from_kir(ctx, ctx.kir_kernel)


def from_kir(ctx: KernelContext, k: kir.Kernel) -> Optional[DeviceKernel]:
    """The kernel in OpenCL C, split into one launch per top-level loop, copy or fill (fission),
    each with one work-item per iteration of its parallel nest, or one work-item when it has none. None for what a device cannot hold: constant data
    outside the source (WeightsView), a float buffer in half storage handed to a C helper."""
    if any(isinstance(n, kir.WeightsView) for n in nodes(k.body)):
        return None
    printer = OpenCLPrinter(half_storage=ctx.config.float_storage == "f16")
    if any(isinstance(n, kir.Address) and printer.halved(n.buffer) for n in nodes(k.body)):
        return None  # a C helper walking a float buffer cannot read half storage
    sources, launches, parallel = [], [], False
    for piece in fission(k):
        bound, items = bind_parallel(piece)
        args = [p.buffer.name if p.buffer.dtype is not None else "none" for p in bound.params]
        if any(isinstance(n, kir.Check) for n in nodes(bound.body)):
            args.append("status")
        sources.append(printer.function(bound))
        if bound is piece:  # serial: one work-item runs it all
            launches.append(Launch(piece.name, tuple(args), (1,), (1,)))
        else:
            launches.append(Launch(piece.name, tuple(args), (round_up(items, GROUP),), (GROUP,)))
            parallel = True
    return DeviceKernel("\n".join(sources), launches, path="opencl/kir-parallel" if parallel else "opencl/kir-serial")
