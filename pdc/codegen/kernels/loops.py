"""Loop-nest helpers shared by kernel generators (static shapes, row-major)."""
from __future__ import annotations

from typing import Callable, Sequence

from ...ir.symbolic import same_shape
from .. import kir
from ..context import broadcast_strides, strides

PAR = kir.Parallel()  # the annotation of a loop whose iterations are independent (kir.parallel)


def flat_index(idx: Sequence[kir.Expr], shape: Sequence[int]) -> kir.Expr:
    """The row-major flat index of the multi-index `idx` in `shape`: sum idx_k * stride_k, the
    innermost index last (so a compiler hoists the rest out of the innermost loop)."""
    out: kir.Expr = kir.idx(0)
    for v, s in zip(idx, strides(shape)):
        out = kir.iadd(out, kir.imul(v, s))
    return out


def broadcast_nest(out_shape, in_shapes, body: Callable[[Sequence[kir.Expr], kir.Expr], list]) -> list:
    """Parallel loops over every output element (row-major); `body(inputs, o)` gives the statements
    for one element from `o`, its flat output index, and the flat index of every input under numpy
    broadcasting. One flat loop when no input broadcasts; else one loop per output dim, each input's
    index advanced by its stride at every level (a broadcast dim adds nothing) and `o` computed
    from the indices at the innermost level."""
    total = 1
    for d in out_shape:
        total *= d
    o = kir.index_var("o")
    if all(same_shape(s, out_shape) for s in in_shapes):
        return [kir.loop(o, total, body([o] * len(in_shapes), o), annotation=PAR)]
    out_shape, st = coalesce(out_shape, [broadcast_strides(s, out_shape) for s in in_shapes])
    rank = len(out_shape)
    at: list[kir.Expr] = [kir.as_expr(0)] * len(in_shapes)
    dims = [kir.index_var(f"d{d}") for d in range(rank)]

    def level(d: int) -> list:
        if d == rank:
            return [kir.Declare(o, flat_index(dims, out_shape))] + list(body(at, o))
        decls = []
        for k in range(len(in_shapes)):
            if st[k][d]:
                v = kir.index_var(f"i{k}_{d + 1}")
                decls.append(kir.Declare(v, kir.iadd(at[k], kir.imul(dims[d], st[k][d]))))
                at[k] = v
        return [kir.loop(dims[d], out_shape[d], decls, level(d + 1), annotation=PAR)]

    return level(0)


def coalesce(shape, input_strides: list) -> tuple[list, list]:
    """The loop nest of an output `shape` whose inputs advance by `input_strides` per dim, with the
    dims of size 1 dropped and each pair of neighbours that every input reads as one (contiguous,
    or broadcast in both) merged: a per-channel gate over 14x14 pixels loops over 672 x 196, the
    inner loop one the compiler vectorizes, instead of 672 x 14 x 14. Static sizes only."""
    if not all(isinstance(d, int) for d in shape) or not all(isinstance(x, int) for s in input_strides for x in s):
        return list(shape), input_strides
    dims: list[list] = []  # [size, strides of each input]
    for d, size in enumerate(shape):
        if size == 1:
            continue
        here = [s[d] for s in input_strides]
        if dims and all(outer == inner * size for outer, inner in zip(dims[-1][1], here)):
            dims[-1] = [dims[-1][0] * size, here]
        else:
            dims.append([size, here])
    return [d[0] for d in dims], [[d[1][k] for d in dims] for k in range(len(input_strides))]
