"""bind_parallel: a kernel's parallel loop nest as one loop over GPU work-items.

Generators mark a loop Parallel when its iterations are independent: each writes only its own
output elements and reads nothing another iteration writes. For a GPU target, bind_parallel
collapses the kernel's nest of such loops into one loop bound to work-items (Bind("global.x")),
each recovering its loop indices from the flat id:

    for (i = 0; i < 4; i++) {           [Parallel]        for (g = 0; g < 24; g++) {   [Bind global.x]
        const p = i * 6;                                      const i = g / 6;
        for (j = 0; j < 6; j++) {       [Parallel]   ->       const j = g % 6;
            body                                              const p = i * 6;
        }                                                     body
    }                                                     }

The rule: the kernel's statements are a preamble that every work-item may run again (comments,
constant tables, private arrays, const Declares of pure values) followed by exactly one Parallel
loop with constant bounds; the nest goes on down while a loop's body is pure const Declares
followed by exactly one Parallel loop with constant bounds (the Declares move inside, below the
recovered indices). Anything else is left as it is, to run in one work-item.
"""
from __future__ import annotations

from .expr import Address, Call, Const, Load, bitcast, cast, iadd, idiv, imod, imul, index_var
from .stmt import (Allocate, Bind, Block, Comment, ConstArray, Copy, Declare, Fill, For, Kernel, Parallel, Store,
                   WeightsView, block)
from .walk import nodes, variables_used


def bind_parallel(kernel: Kernel) -> tuple[Kernel, int]:
    """(the kernel with its parallel loop nest bound to work-items, the number of work-items to
    launch); (the kernel unchanged, 1) when it has no such nest."""
    stmts = kernel.body.body
    if not stmts:
        return kernel, 1
    *preamble, top = stmts
    written = _written(kernel.body)
    if not (_bindable(top) and all(_redundant(s, written) for s in preamble)):
        return kernel, 1
    loops, lets = [top], []
    while loops[-1].body.body:
        *decls, inner = loops[-1].body.body
        if not (_bindable(inner) and all(_pure_declare(d, written) for d in decls)):
            break
        loops.append(inner)
        lets += decls
    trips = [_trip(s) for s in loops]
    total = 1
    for t in trips:
        total *= t
    if total == 0:
        return kernel, 1
    used, name = variables_used(kernel.body), "gid"
    while name in used:
        name += "_"
    gid = index_var(name)
    recover, below = [], 1  # below: the iterations of the loops inside this one
    for k in reversed(range(len(loops))):
        s = loops[k]
        at = idiv(gid, below)
        if k:  # the outermost index is < its trip count already: gid < total
            at = imod(at, trips[k])
        recover.insert(0, Declare(s.var, iadd(s.start, imul(s.step, at))))
        below *= trips[k]
    bound = For(gid, Const(0, gid.dtype), Const(total, gid.dtype), block(recover, lets, loops[-1].body),
                annotation=Bind("global.x"))
    return Kernel(kernel.name, kernel.params, block(preamble, bound)), total


def fission(kernel: Kernel) -> list[Kernel]:
    """The kernel as a sequence of kernels, one per top-level loop, copy or fill (each with the
    shared preamble; a copy or fill becomes a Parallel loop), for a GPU to launch one after the
    other, each then bound by bind_parallel: a concat's blocks, a pad's fill then its copies.
    [kernel] when its statements are not such a sequence (a scalar carried from one to the next)."""
    stmts = kernel.body.body
    written = _written(kernel.body)
    preamble = [x for x in stmts if _redundant(x, written)]
    pieces = []
    for x in stmts:
        if _redundant(x, written):
            continue
        inner = x.body if isinstance(x, Block) and x.scoped else (x,)
        *decls, last = inner if inner else (None,)
        if not all(_pure_declare(d, written) for d in decls):
            return [kernel]
        if isinstance(last, Copy):
            k = index_var("copy_k")
            value = Load(last.src, iadd(last.src_index, k))
            if last.src.dtype != last.dst.dtype:  # a copy moves bits (bit_cast): reinterpret them
                value = bitcast(last.dst.dtype, value)
            last = For(k, Const(0, k.dtype), last.count, block(Store(last.dst, iadd(last.dst_index, k), value)),
                       annotation=Parallel())
        elif isinstance(last, Fill):
            k = index_var("fill_k")
            last = For(k, Const(0, k.dtype), last.count, block(Store(last.dst, iadd(last.index, k), cast(last.dst.dtype, last.value))),
                       annotation=Parallel())
        elif not isinstance(last, For):
            return [kernel]
        pieces.append(decls + [last])
    if len(pieces) < 2 and not (pieces and pieces[0][-1] is not stmts[-1]):
        return [kernel]  # one loop already: nothing to split or convert
    return [Kernel(f"{kernel.name}_{j}", kernel.params, block(preamble, piece)) for j, piece in enumerate(pieces)]


def _trip(s: For):
    """The loop's number of iterations when its bounds are int literals, else None."""
    a, b = s.start, s.stop
    if not all(isinstance(x, Const) and isinstance(x.value, int) for x in (a, b)):
        return None
    return max(0, -(-(b.value - a.value) // s.step))


def _bindable(s) -> bool:
    return isinstance(s, For) and isinstance(s.annotation, Parallel) and s.step > 0 and _trip(s) is not None


def _written(root) -> set[str]:
    """The buffers a kernel writes (or may: a helper call gets their address)."""
    out = set()
    for n in nodes(root):
        if isinstance(n, Store):
            out.add(n.buffer.name)
        elif isinstance(n, (Copy, Fill)):
            out.add(n.dst.name)
        elif isinstance(n, Address):
            out.add(n.buffer.name)
    return out


def _pure_declare(s, written: set[str]) -> bool:
    """A const Declare whose value reads nothing the kernel writes and calls no helper: computing it
    again (in every work-item, or inside a loop it was above) gives the same value."""
    if not (isinstance(s, Declare) and s.const and s.init is not None):
        return False
    return not any(isinstance(n, Call) or (isinstance(n, Load) and n.buffer.name in written) for n in nodes(s.init))


def _redundant(s, written: set[str]) -> bool:
    """A statement every work-item may run: it changes nothing another one reads."""
    if isinstance(s, (Comment, ConstArray, WeightsView)):
        return True
    if isinstance(s, Allocate):
        return s.buffer.space == "private"
    return _pure_declare(s, written)


__all__ = ["bind_parallel", "fission"]
