"""Loop-nest helpers shared by kernel generators (static shapes, row-major)."""
from __future__ import annotations

from typing import Callable, Sequence

from .. import kir
from ..context import broadcast_strides


def broadcast_nest(out_shape, in_shapes, body: Callable[[Sequence[kir.Expr], kir.Expr], list]) -> list:
    """Loops over every output element (row-major); `body(inputs, o)` gives the statements for one
    element from `o`, its flat output index, and the flat index of every input under numpy
    broadcasting. One flat loop when no input broadcasts; else one loop per output dim, each input's
    index advanced by its stride at every level (a broadcast dim adds nothing) and `o` counted up."""
    total = 1
    for d in out_shape:
        total *= d
    if all(tuple(s) == tuple(out_shape) for s in in_shapes):
        o = kir.index_var("o")
        return [kir.loop(o, total, body([o] * len(in_shapes), o))]
    rank = len(out_shape)
    st = [broadcast_strides(s, out_shape) for s in in_shapes]
    o = kir.index_var("o")
    at: list[kir.Expr] = [kir.as_expr(0)] * len(in_shapes)

    def level(d: int) -> list:
        if d == rank:
            return list(body(at, o)) + [kir.Assign(o, o + 1)]
        dv = kir.index_var(f"d{d}")
        decls = []
        for k in range(len(in_shapes)):
            if st[k][d]:
                v = kir.index_var(f"i{k}_{d + 1}")
                decls.append(kir.Declare(v, kir.iadd(at[k], kir.imul(dv, st[k][d]))))
                at[k] = v
        return [kir.loop(dv, out_shape[d], decls, level(d + 1))]

    return [kir.Declare(o, kir.as_expr(0), const=False)] + level(0)
