"""Loop-nest helpers shared by kernel generators (static shapes, row-major)."""
from __future__ import annotations

from ..context import broadcast_strides


def broadcast_loop(out_shape, in_shapes, body: str, indent: str = "    ") -> str:
    """Loops over every output element with `o` the flat output index and `iK` the flat index of
    input K under numpy broadcasting; `body` is a statement using them. Collapses to one flat loop
    when no input broadcasts."""
    total = 1
    for d in out_shape:
        total *= d
    if all(tuple(s) == tuple(out_shape) for s in in_shapes):
        idx = "".join(f" const int64_t i{k} = o;" for k in range(len(in_shapes)))
        return f"{indent}for (int64_t o = 0; o < {total}; o++) {{{idx} {body} }}"
    rank = len(out_shape)
    st = [broadcast_strides(s, out_shape) for s in in_shapes]
    lines = [f"{indent}int64_t o = 0;"]
    for k in range(len(in_shapes)):
        lines.append(f"{indent}int64_t i{k}_0 = 0;")
    for d in range(rank):
        pad = indent + "    " * d
        lines.append(f"{pad}for (int64_t d{d} = 0; d{d} < {out_shape[d]}; d{d}++) {{")
        for k in range(len(in_shapes)):
            lines.append(f"{pad}    const int64_t i{k}_{d + 1} = i{k}_{d} + d{d} * {st[k][d]};")
    pad = indent + "    " * rank
    for k in range(len(in_shapes)):
        lines.append(f"{pad}const int64_t i{k} = i{k}_{rank};")
    lines.append(f"{pad}{body} o++;")
    for d in reversed(range(rank)):
        lines.append(indent + "    " * d + "}")
    return "\n".join(lines)
