"""The device kernel of a node on a CUDA target: the cuda family's hand-written kernel (the matrix
products and convolutions), else the opencl family's (scalar OpenCL C, compiled as CUDA: see
program.py), else the kernel-IR generator's kernel printed in CUDA C (its parallel loop nest bound
to threads), else None (the node runs on the host)."""
from __future__ import annotations

from typing import Optional

from ...context import KernelContext
from ...kir.cuda import CUDAPrinter
from ..opencl import OPENCL, DeviceKernel
from ..opencl.select import select
from . import CUDA

BLOCK = 128  # threads per block of a bound kir kernel (4 warps)


def device_kernel(ctx: KernelContext) -> Optional[DeviceKernel]:
    return select(ctx, (CUDA, OPENCL), CUDAPrinter(ctx.config.float_storage), CUDA, BLOCK)
