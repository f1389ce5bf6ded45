"""Einsum as a generated loop nest (static shapes).

The equation is parsed as the IR op parses it (pdc/ir/ops/misc.py: explicit or implicit output,
'...' broadcast dims). Every label becomes one loop: the output's labels outermost, in output
order, then the summed labels; each operand is read at the sum of (loop index x its stride),
where a label repeated in one term adds its strides (diagonals) and a size-1 dim broadcasts
(stride 0). Half precision computes in float; integers accumulate in their own width, wrapping
(computed unsigned, as numpy's einsum wraps).
"""
from __future__ import annotations

import math

from ...ir.ops.misc import EinsumError, parse_einsum
from ..context import KernelContext, strides
from . import kernel


def _tokens(term: str, rank: int, n_ell: int) -> list[str]:
    """The labels of a term with '...' expanded into the broadcast dims #k (right-aligned)."""
    if "..." not in term:
        return list(term)
    pre, post = term.split("...")
    mine = rank - len(pre) - len(post)
    return list(pre) + [f"#{n_ell - mine + k}" for k in range(mine)] + list(post)


@kernel("einsum")
def einsum(ctx: KernelContext) -> str:
    try:
        terms, rhs = parse_einsum(ctx.attrs["equation"], len(ctx.inputs))
    except EinsumError as e:
        ctx.fail(str(e))
    shapes = [t.shape for t in ctx.inputs]
    n_ell = max([len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t] or [0])
    toks = [_tokens(t, len(s), n_ell) for t, s in zip(terms, shapes)]
    out_toks = _tokens(rhs, n_ell + len(rhs.replace("...", "")), n_ell)
    size: dict[str, int] = {}
    for tk, s in zip(toks, shapes):
        for label, d in zip(tk, s):
            if size.get(label, 1) == 1:
                size[label] = d
            elif d != 1 and d != size[label]:
                ctx.fail(f"label '{label}' has sizes {size[label]} and {d}")
    out = ctx.outputs[0]
    if tuple(size.get(t, 1) for t in out_toks) != tuple(out.shape):
        ctx.fail(f"the equation gives shape {[size.get(t, 1) for t in out_toks]}, the output is {list(out.shape)}")
    summed = [label for label in dict.fromkeys(label for tk in toks for label in tk) if label not in out_toks]
    loops = list(out_toks) + summed
    var = {label: f"l{k}" for k, label in enumerate(loops)}

    dt = ctx.inputs[0].dtype
    ct = ctx.compute_ctype(dt)
    acc_t = ct
    if dt.is_int:
        acc_t = "uint64_t" if dt.itemsize == 8 else "uint32_t"
    total = math.prod(out.shape)
    if total == 0:
        return "    (void)in0;"

    def offset(k: int) -> str:
        st = strides(shapes[k])
        per: dict[str, int] = {}
        for label, d, s in zip(toks[k], shapes[k], st):
            if d != 1:
                per[label] = per.get(label, 0) + s
        return " + ".join(f"{var[label]} * {s}" for label, s in per.items()) or "0"

    factors = [f"({acc_t}){ctx.load(t.dtype, f'in{k}[{offset(k)}]')}" for k, t in enumerate(ctx.inputs)]
    lines = ["    int64_t o = 0;"]
    pad = "    "
    for label in out_toks:
        lines.append(f"{pad}for (int64_t {var[label]} = 0; {var[label]} < {size[label]}; {var[label]}++) {{")
        pad += "    "
    lines.append(f"{pad}{acc_t} acc = 0;")
    inner = pad
    for label in summed:
        lines.append(f"{inner}for (int64_t {var[label]} = 0; {var[label]} < {size[label]}; {var[label]}++)")
        inner += "    "
    lines.append(f"{inner}acc += {' * '.join(factors)};")
    lines.append(f"{pad}out0[o++] = {ctx.store(out.dtype, 'acc' if not dt.is_int else f'({ctx.ctype(dt)})acc')};")
    for _ in out_toks:
        pad = pad[:-4]
        lines.append(f"{pad}}}")
    return "\n".join(lines)
