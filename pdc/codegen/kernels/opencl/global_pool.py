"""OpenCL kernels of global_average_pool and global_max_pool (float32, NC...): one row per (n, c),
its spatial elements summed (or maxed, NaN-sticky as the reference) by one work-item, or by a
work-group with a __local tree reduction for long rows (_rows.Rows)."""
from __future__ import annotations

from .. import kernel
from ...context import KernelContext
from . import OPENCL, DeviceKernel
from ._rows import F32S, Rows, kernel_source, ld, lit, prod, st


@kernel("global_average_pool", "global_max_pool", family=OPENCL)
def global_pool(ctx: KernelContext):
    x = ctx.inputs[0]
    if x.dtype.short != "f32" or len(x.shape) < 3:
        return None
    count, n = prod(x.shape[:2]), prod(x.shape[2:])
    rows = Rows(count, n)
    path = f"opencl/global-pool-{rows.kind}"
    if count * n == 0:
        return DeviceKernel("", [], path=path)
    fn = f"{ctx.fn_name}_pool"
    if ctx.node.op == "global_average_pool":
        body = ["float s = 0.0f;", f"{rows.loop()} s += {ld('x', 'i')};", rows.reduce("s", "sum"),
                f"if (lid == 0) {st('out0', 'r', f's / {lit(n)}')}"]
    else:
        body = ["float s = -INFINITY;",
                f"{rows.loop()} {{ const float v = {ld('x', 'i')}; s = (v > s || v != v) ? v : s; }}",
                rows.reduce("s", "max"), f"if (lid == 0) {st('out0', 'r', 's')}"]
    lines = [rows.prologue(), f"__global const {F32S} *x = in0 + r * {n};", *body]
    source = kernel_source(rows.attribute(), fn, [f"__global const {F32S} *restrict in0",
                                                  f"__global {F32S} *restrict out0"], "\n".join(lines))
    return DeviceKernel(source, [rows.launch(fn, ("in0", "out0"))], path=path)
