"""Kernels of the opset 24-26 tensor ops: bit_cast, cum_prod, tensor_scatter.

- bit_cast is one memcpy (both types have one width; x86 is little endian, as ONNX requires).
- cum_prod is cum_sum's scan (reduce.scan_along_axis) with products.
- tensor_scatter copies past_cache, then copies each updated row of the innermost dims. Write
  indices are read at run time; the reference rejects a linear write past the cache's end, the
  kernel cannot report errors and skips such rows instead (memory-safe).
"""
from __future__ import annotations

from ...ir.ops.extra_tensor import tensor_scatter_axis
from ...ir import dtypes as D
from .. import kir
from ..context import KernelContext, numel
from . import kernel
from ._axis import prod
from ._kir import io, prints_kir, render
from .reduce import scan_along_axis


@kernel("bit_cast")
@prints_kir
def bit_cast(ctx: KernelContext) -> str:
    ins, outs = io(ctx)
    n = numel(ctx.inputs[0])
    return render(ctx, kir.Copy(outs[0], kir.idx(0), ins[0], kir.idx(0), kir.idx(n)) if n else None)


@kernel("cum_prod")
@prints_kir
def cum_prod(ctx: KernelContext) -> str:
    return scan_along_axis(ctx, "mul", 1)


@kernel("tensor_scatter")
@prints_kir
def tensor_scatter(ctx: KernelContext) -> str:
    past, upd = ctx.inputs[0], ctx.inputs[1]
    axis = tensor_scatter_axis(ctx.attrs, len(past.shape))
    batch = past.shape[0]
    mid = prod(past.shape[1:axis])
    max_len, seq = past.shape[axis], upd.shape[axis]
    inner = prod(past.shape[axis + 1:])
    ins, outs = io(ctx)
    lines = [kir.Copy(outs[0], kir.idx(0), ins[0], kir.idx(0), kir.idx(numel(past)))] if numel(past) else []
    if batch * mid * seq * inner == 0:
        return render(ctx, lines)
    b, w, m, row, s, p = (kir.index_var(n) for n in ("b", "w", "m", "row", "s", "p"))
    if ctx.attrs.get("mode", "linear") == "circular":
        place = [kir.Declare(p, (w + s) % max_len, const=False), kir.when(p < 0, kir.Assign(p, p + max_len))]
    else:
        place = [kir.Declare(p, w + s), kir.when((p < 0).lor(p >= max_len), kir.Comment("out of range: skipped"),
                                                 kir.Continue())]
    lines.append(kir.loop(b, batch, kir.Declare(w, kir.cast(D.int64, ins[2][b]) if ctx.has_input(2) else kir.idx(0)),
                          kir.loop(m, mid, kir.Declare(row, kir.iadd(kir.imul(b, mid), m)),
                                   kir.loop(s, seq, place,
                                            kir.Copy(outs[0], kir.imul(row * max_len + p, inner), ins[1],
                                                     kir.imul(row * seq + s, inner), kir.idx(inner))))))
    return render(ctx, lines)
