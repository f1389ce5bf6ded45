"""Kernels of the opset 24-26 tensor ops: bit_cast, cum_prod, tensor_scatter.

- bit_cast is one memcpy (both types have one width; x86 is little endian, as ONNX requires).
- cum_prod mirrors cum_sum: products in the element type, rounded after every step (half
  precision through float, like NumPy's cumprod), integers wrap (computed in uint64_t); a run-time
  axis switches between the loop nests compiled for every axis.
- tensor_scatter copies past_cache, then copies each updated row of the innermost dims. Write
  indices are read at run time; the reference rejects a linear write past the cache's end, the
  kernel cannot report errors and skips such rows instead (memory-safe).
"""
from __future__ import annotations

from ...ir.ops.extra_tensor import tensor_scatter_axis
from ..context import KernelContext, numel
from . import kernel
from ._axis import Num, indent, outer_n_inner, prod


def _memcpy(dst: str, src: str, nbytes: int) -> str:
    return f"memcpy({dst}, {src}, {nbytes});" if nbytes else f"(void){dst}; (void){src};"


@kernel("bit_cast")
def bit_cast(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    return "    " + _memcpy("out0", "in0", numel(x) * x.dtype.itemsize)


@kernel("cum_prod")
def cum_prod(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    rank = len(x.shape)
    if rank == 0:
        ctx.fail("input must have rank >= 1")
    exclusive = bool(ctx.attrs.get("exclusive", 0))
    reverse = bool(ctx.attrs.get("reverse", 0))
    if num.is_float:
        acc, one = num.ct, f"({num.ct})1"
        # half precision rounds every partial product to its storage type, as NumPy does
        step = (lambda s, v: num.load(num.store(f"{s} * {v}"))) if num.ct != num.c else (lambda s, v: f"{s} * {v}")
        ld, st = num.load, num.store
    else:
        acc, one = "uint64_t", "(uint64_t)1"
        step = lambda s, v: f"{s} * {v}"  # noqa: E731
        ld = lambda e: f"(uint64_t){e}"  # noqa: E731
        st = lambda e: f"({num.c})({e})"  # noqa: E731

    def along(axis: int) -> str:
        outer, n, inner = outer_n_inner(x.shape, axis)
        if outer * n * inner == 0:
            return "/* empty */"
        order = f"int64_t i = {n - 1}; i >= 0; i--" if reverse else f"int64_t i = 0; i < {n}; i++"
        elem = f"in0[b + i * {inner}]"
        if exclusive:
            body = f"out0[b + i * {inner}] = {st('s')}; s = {step('s', ld(elem))};"
        else:
            body = f"s = {step('s', ld(elem))}; out0[b + i * {inner}] = {st('s')};"
        return (f"for (int64_t o = 0; o < {outer}; o++) for (int64_t j = 0; j < {inner}; j++) {{\n"
                f"    const int64_t b = o * {n * inner} + j;\n"
                f"    {acc} s = {one};\n"
                f"    for ({order}) {{ {body} }}\n}}")

    data = ctx.const(1)
    if data is not None:
        if data.size != 1:
            ctx.fail(f"axis must be a scalar, got {data.tolist()}")
        a = int(data.reshape(-1)[0])
        if not -rank <= a < rank:
            ctx.fail(f"axis {a} is out of range for rank {rank}")
        return indent(along(a % rank))
    cases = "\n".join(f"case {a}: case {a - rank}: {{\n{indent(along(a))}\n    break;\n}}" for a in range(rank))
    return (f"    const int64_t axis = (int64_t)in1[0];\n"
            f"    switch (axis) {{\n{indent(cases)}\n    default: break; /* out of range: left as is */\n    }}")


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
