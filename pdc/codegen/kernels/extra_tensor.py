"""Kernels of the opset 24-26 tensor ops: bit_cast, cum_prod, tensor_scatter.

- bit_cast is one memcpy (both types have one width; x86 is little endian, as ONNX requires).
- cum_prod is cum_sum's scan (reduce.scan_along_axis) with products.
- tensor_scatter copies past_cache, then copies each updated row of the innermost dims. Write
  indices are read at run time; the reference rejects a linear write past the cache's end, the
  kernel cannot report errors and skips such rows instead (memory-safe).
"""
from __future__ import annotations

from ...ir.ops.extra_tensor import tensor_scatter_axis
from ..context import KernelContext, numel
from . import kernel
from ._axis import prod
from .reduce import scan_along_axis


def _memcpy(dst: str, src: str, nbytes: int) -> str:
    return f"memcpy({dst}, {src}, {nbytes});" if nbytes else f"(void){dst}; (void){src};"


@kernel("bit_cast")
def bit_cast(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    return "    " + _memcpy("out0", "in0", numel(x) * x.dtype.itemsize)


@kernel("cum_prod")
def cum_prod(ctx: KernelContext) -> str:
    return scan_along_axis(ctx, "*", 1)


@kernel("tensor_scatter")
def tensor_scatter(ctx: KernelContext) -> str:
    past, upd = ctx.inputs[0], ctx.inputs[1]
    size = past.dtype.itemsize
    axis = tensor_scatter_axis(ctx.attrs, len(past.shape))
    batch = past.shape[0]
    mid = prod(past.shape[1:axis])
    max_len, seq = past.shape[axis], upd.shape[axis]
    inner = prod(past.shape[axis + 1:])
    lines = ["    " + _memcpy("out0", "in0", numel(past) * size)]
    if batch * mid * seq * inner == 0:
        lines.append("    (void)in1;" + (" (void)in2;" if ctx.has_input(2) else ""))
        return "\n".join(lines)
    if ctx.attrs.get("mode", "linear") == "circular":
        place = f"int64_t p = (w + s) % {max_len}; if (p < 0) p += {max_len};"
    else:
        place = f"const int64_t p = w + s; if (p < 0 || p >= {max_len}) continue; /* out of range: skipped */"
    w = "in2[b]" if ctx.has_input(2) else "0"
    lines.append(f"""    for (int64_t b = 0; b < {batch}; b++) {{
        const int64_t w = {w};
        for (int64_t m = 0; m < {mid}; m++) {{
            const int64_t row = b * {mid} + m;
            for (int64_t s = 0; s < {seq}; s++) {{
                {place}
                memcpy(out0 + (row * {max_len} + p) * {inner}, in1 + (row * {seq} + s) * {inner}, {inner * size});
            }}
        }}
    }}""")
    return "\n".join(lines)
