"""gemm, fused_gemm, matmul and fused_matmul on NVIDIA GPUs: the OpenCL family's MatrixProducts
(kernels/opencl/gemm.py: transposes, alpha / beta and C, broadcast batches, the fused epilogue)
computed by the CUDA kernels of matrix.py.

Paths: "cuda/gemm-wmma" (tensor cores) under --precision fp16 / bf16 where M, N and K are at
least 16; "cuda/gemm-tiled" (CUDA cores) for float32 products with some size in both M and N;
"cuda/gemm-simple" (a thread per output) for tiny ones and single rows or columns.
"""
from __future__ import annotations

import math
from typing import Optional

from ...context import KernelContext
from .. import kernel
from ..opencl._matrix import MatrixProduct, simple
from ..opencl.gemm import gemm_product, matmul_product
from ..paths import declare, take
from . import CUDA, DeviceKernel
from .matrix import tiled, wmma

FAMILY = "cuda-gemm"
declare(FAMILY, "wmma", "tiled", "simple")


def product_kernel(ctx: KernelContext, mp: MatrixProduct, stem: str = "gemm", setup: str = "") -> DeviceKernel:
    """The kernel of a product (gemm, matmul, or a convolution's, whose path names start with
    `stem`): tensor cores where the storage is 16-bit and the product fills their fragments, else
    the tiled or the simple kernel (PDC_FORCE_PATH=cuda-gemm=<kernel> forces one for every product).
    `setup`: C the kernel's source needs first (a convolution's gather helper)."""
    if any(math.prod(t.shape) == 0 for t in ctx.outputs):
        return DeviceKernel("", [], path=f"cuda/{stem}-simple")  # nothing to compute
    storage = ctx.config.float_storage
    fills = mp.M >= 16 and mp.N >= 16 and mp.K >= 16
    big = mp.M >= 8 and mp.N >= 8 and mp.M * mp.N * mp.batch >= 1024 and mp.K >= 4
    fn = ctx.fn_name
    if storage != "f32" and take(FAMILY, "wmma", fills):
        path = "wmma"
        src, launch = wmma(ctx, f"{fn}_wmma", mp, storage)
    elif take(FAMILY, "tiled", big):
        path = "tiled"
        src, launch = tiled(ctx, f"{fn}_tiled", mp)
    else:
        path = "simple"
        src, launch = simple(ctx, f"{fn}_simple", mp)
    return DeviceKernel(f"/* path: {FAMILY}/{path} */\n{setup}{src}", [launch], path=f"cuda/{stem}-{path}")


@kernel("gemm", "fused_gemm", family=CUDA)
def gemm(ctx: KernelContext) -> Optional[DeviceKernel]:
    mp = gemm_product(ctx)
    return None if mp is None else product_kernel(ctx, mp)


@kernel("matmul", "fused_matmul", family=CUDA)
def matmul(ctx: KernelContext) -> Optional[DeviceKernel]:
    mp = matmul_product(ctx)
    return None if mp is None else product_kernel(ctx, mp)
