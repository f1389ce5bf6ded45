"""conv and fused_conv on NVIDIA GPUs (NCHW float32 in its storage type; 1-D / 2-D / 3-D, strides,
pads, dilations, groups, bias, the fused epilogue): the OpenCL family's geometry and products
(kernels/opencl/conv.py) on the CUDA kernels of matrix.py.

Paths (PDC_FORCE_PATH="cuda-conv=<path>" forces one where it can compute the layer):
- "cuda/conv-depthwise" (one input channel per group): the OpenCL family's direct kernel
  specialized to it (8 pixels x up to 4 channels of the group's multiplier per thread);
- "cuda/conv-1x1-<kernel>" (1x1, stride 1, unpadded): per image and group, weights (Mg x Cg)
  times the input planes (Cg x pixels);
- "cuda/conv-implicit-<kernel>": weights times the implicit im2col of the input (the element of
  input channel and tap k at output pixel p gathered as the slab is staged): the implicit GEMM;
- "cuda/conv-direct" where the product would be mostly padding (few output channels per group).
<kernel>: wmma (tensor cores, fp16 / bf16 storage), tiled or simple (gemm.py product_kernel; forced
by PDC_FORCE_PATH=cuda-gemm=<kernel>).
"""
from __future__ import annotations

import math
from typing import Optional

from ...context import KernelContext
from .. import kernel
from ..opencl.conv import device_layer, direct, im2col_product, pointwise_product
from ..paths import declare, take
from . import CUDA, DeviceKernel
from .gemm import product_kernel

FAMILY = "cuda-conv"
declare(FAMILY, "depthwise", "1x1", "implicit", "direct")


def _kernel(src: str, launch, path: str) -> DeviceKernel:
    return DeviceKernel(f"/* path: {FAMILY}/{path} */\n{src}", [launch], path=f"cuda/conv-{path}")


@kernel("conv", "fused_conv", family=CUDA)
def conv(ctx: KernelContext) -> Optional[DeviceKernel]:
    L = device_layer(ctx)
    if L is None:
        return None
    g, fn = L.g, ctx.fn_name
    if math.prod(ctx.outputs[0].shape) == 0:
        return DeviceKernel("", [], path="cuda/conv-direct")  # nothing to compute
    if g.cg == 1 and g.group > 1 and take(FAMILY, "depthwise"):
        src, launch = direct(L, f"{fn}_dw", MT=4, PT=8)
        return _kernel(src, launch, "depthwise")
    product = g.mg >= 8
    if g.pointwise and take(FAMILY, "1x1", product):
        return product_kernel(ctx, pointwise_product(L), "conv-1x1")
    if take(FAMILY, "implicit", product):
        mp, helper = im2col_product(L, fn)
        return product_kernel(ctx, mp, "conv-implicit", setup=helper)
    src, launch = direct(L, f"{fn}_direct", MT=8, PT=8 if g.OW >= 14 else 4)
    return _kernel(src, launch, "direct")
