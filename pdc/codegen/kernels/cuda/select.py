"""The device kernel of a node on a CUDA target: the cuda family's hand-written kernel (the matrix
products and convolutions), else the opencl family's (scalar OpenCL C, compiled as CUDA), else
the kernel-IR generator's kernel printed in CUDA C (its parallel loop nest bound to threads),
else None (the node runs on the host)."""
from __future__ import annotations

from typing import Optional

from ...context import KernelContext
from ...kir.cuda import CUDAPrinter
from .. import PORTABLE, load_all
from ..opencl import OPENCL, DeviceKernel
from ..opencl.select import from_kir
from . import CUDA

BLOCK = 128  # threads per block of a bound kir kernel (4 warps)


def device_kernel(ctx: KernelContext) -> Optional[DeviceKernel]:
    registry = load_all()
    gen = registry.get((ctx.node.op, CUDA))
    if gen is None:  # the opencl family's kernel, compiled as CUDA (program.py OPENCL_SUBSET)
        gen = registry.get((ctx.node.op, OPENCL))
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
    return from_kir(ctx.kir_kernel, CUDAPrinter(ctx.config.float_storage), CUDA, BLOCK)
