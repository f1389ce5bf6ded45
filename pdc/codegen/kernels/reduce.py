"""Reduction kernels: Reduce* (ReduceSum ... ReduceLogSumExp), ArgMax / ArgMin, TopK and CumSum.

A reduction is one or more phases over each group of elements (log-sum-exp first finds the
max, then sums the shifted exponentials), then a final expression per group. Two loop shapes:
- the innermost dim is reduced (or nothing is kept): one state per group; fp32 rows go through
  the vectorized row helpers of _axis, other types keep LANES partial states (gcc vectorizes
  the lane loop) when the row is long;
- the innermost dim is kept: a block of up to BLOCK neighbouring groups is reduced together,
  the block's states in a small array, so the inner loop runs over contiguous memory.
Axes fed at run time (the output shape declared by the model) compile one loop nest per axes
set that fits the shapes and choose by the actual axes.
Reduce*, ArgMax / ArgMin and the scans are built as kernel IR (pdc/codegen/kir); the fp32 row
helpers they call (_axis: C with native vector slots) and TopK's heap stay C text.
Kernel paths (paths.py), family "reduce": "groups" (one state per group, any layout: the general
path), "lanes" (contiguous rows in LANES partial states), "rows-f32" (contiguous fp32 rows through
the vector row helpers), "blocks" (innermost dim kept); family "arg": "blocks" (the general path,
neighbouring rows together) and "rows" (the innermost axis).
Numerics follow the references: half precision accumulates in float, integer sums / products
wrap (computed in uint64_t), max / min propagate NaN, an empty reduction gives the identity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ...ir import dtypes as D
from ...ir.dtypes import DType
from ...ir.symbolic import is_runtime, upper
from .. import kir
from ..context import KernelContext
from ._axis import LANES, Groups, Num, axis_kernel, outer_n_inner, row_f32_helper, vexp_helper
from ._kir import io, prints_kir, render
from .loops import PAR, flat_index
from .paths import declare, take

declare("reduce", "groups", "lanes", "rows-f32", "blocks")
declare("arg", "blocks", "rows")

BLOCK = 64  # neighbouring groups reduced together when the innermost dim is kept
ROW_HELPER_MIN = 16  # contiguous fp32 rows from this length take the vector helpers


@dataclass(frozen=True)
class Phase:
    """One pass over a group, as kir expressions: update(a, v, names) the state after element v
    (already loaded), combine(a, b) two partial states, post(a) the phase's result; `names` maps
    earlier phases' variables to their results."""
    var: str
    acc: DType  # type of the state
    init: kir.Expr
    update: Callable
    combine: Callable
    post: Optional[Callable] = None
    lanes: bool = False  # reassociation is fine: contiguous rows keep LANES partial states
    row: str = ""  # fp32 contiguous rows: the _axis.row_f32_helper op (or "expsum") computing one row


@dataclass(frozen=True)
class Reduction:
    phases: tuple
    final: Callable  # names -> the output value (before the store conversion)
    vtype: DType  # type the element is loaded as
    load: Callable  # kir Load of a stored element -> vtype expression


def compute_type(dt: DType) -> DType:
    """The type arithmetic runs in: half precision computes in float."""
    return D.float32 if dt.short in ("f16", "bf16") else dt


def loader(dt: DType) -> Callable:
    """A stored element -> its value in the compute type (half precision widened)."""
    ct = compute_type(dt)
    return lambda e: kir.cast(ct, e)


def lowest(dt: DType) -> kir.Expr:
    """The smallest value: -inf for floats, the minimum of an integer type, 0 for bool."""
    if dt.is_float:
        return kir.lit(float("-inf"), compute_type(dt))
    return kir.lit(int(np.iinfo(dt.np).min) if dt.short != "bool" else 0, dt)


def highest(dt: DType) -> kir.Expr:
    if dt.is_float:
        return kir.lit(float("inf"), compute_type(dt))
    return kir.lit(int(np.iinfo(dt.np).max) if dt.short != "bool" else 1, dt)


def isfinite(x: kir.Expr) -> kir.Expr:
    return kir.call("isfinite", kir.C_INT, x)


def _max_expr(a, b, is_float: bool, largest: bool) -> kir.Expr:
    """b replaces a when it is larger (smaller); for floats a NaN b always does, so NaN sticks.
    The bitwise | keeps it branch-free: gcc vectorizes it (a || would not be)."""
    beats = b > a if largest else b < a
    if is_float:
        beats = beats | b.ne(b)
    return kir.select(beats, b, a)


def reduction_for(op: str, num: Num, n: int) -> Reduction:
    """The phases and final expression of Reduce<op> over groups of n elements of type num."""
    name = op[len("reduce_"):]
    add = lambda a, b: a + b  # noqa: E731
    if num.is_float:
        ct = compute_type(num.dt)
        load = loader(num.dt)
        s = lambda upd, row: Phase("s", ct, kir.zero(ct), upd, add, lanes=True, row=row)  # noqa: E731
        if name in ("max", "min"):
            big = name == "max"
            ph = Phase("m", ct, lowest(num.dt) if big else highest(num.dt),
                       lambda a, v, _: _max_expr(a, v, True, big), lambda a, b: _max_expr(a, b, True, big),
                       lanes=True, row=name)
            return Reduction((ph,), lambda r: r["m"], ct, load)
        table = {
            "sum": (s(lambda a, v, _: a + v, "sum"), lambda r: r["s"]),
            "mean": (s(lambda a, v, _: a + v, "sum"),
                     lambda r: r["s"] / (kir.cast(ct, kir.as_expr(n)) if is_runtime(n) else kir.lit(n, ct))),
            "prod": (Phase("s", ct, kir.lit(1, ct), lambda a, v, _: a * v, lambda a, b: a * b), lambda r: r["s"]),
            "l1": (s(lambda a, v, _: a + kir.math("fabs", v), "abs"), lambda r: r["s"]),
            "l2": (s(lambda a, v, _: a + v * v, "sumsq"), lambda r: kir.math("sqrt", r["s"])),
            "log_sum": (s(lambda a, v, _: a + v, "sum"), lambda r: kir.math("log", r["s"])),
            "sum_square": (s(lambda a, v, _: a + v * v, "sumsq"), lambda r: r["s"]),
        }
        if name == "log_sum_exp":
            m = Phase("m", ct, lowest(num.dt), lambda a, v, _: _max_expr(a, v, True, True),
                      lambda a, b: _max_expr(a, b, True, True),
                      post=lambda a: kir.select(isfinite(a), a, kir.zero(ct)), lanes=True, row="max")
            e = Phase("s", ct, kir.zero(ct), lambda a, v, r: a + kir.math("exp", v - r["m"]), add, lanes=True,
                      row="expsum")
            return Reduction((m, e), lambda r: kir.math("log", r["s"]) + r["m"], ct, load)
        ph, final = table[name]
        return Reduction((ph,), final, ct, load)
    # integers (and bool for max / min): sums and products wrap, as numpy's do in the input type
    t = num.dt
    u = D.uint64
    f64 = D.float64
    signed = num.dt.short.startswith("i")
    raw = lambda e: e  # noqa: E731
    if name in ("max", "min"):
        big = name == "max"
        ph = Phase("m", t, lowest(t) if big else highest(t), lambda a, v, _: _max_expr(a, v, False, big),
                   lambda a, b: _max_expr(a, b, False, big), lanes=True)
        return Reduction((ph,), lambda r: r["m"], t, raw)
    wrap = lambda upd: Phase("s", u, kir.lit(0, u), upd, add, lanes=True)  # noqa: E731
    wide = lambda v: kir.cast(u, v)  # noqa: E731
    if signed:
        absu = lambda v: kir.select(v < 0, kir.lit(0, u) - wide(v), wide(v))  # noqa: E731
    else:
        absu = wide
    as_t = lambda r: kir.cast(t, r["s"])  # noqa: E731
    in_double = lambda r: kir.cast(f64, kir.cast(t, r["s"]))  # noqa: E731
    mean = ((lambda r: kir.cast(t, kir.math("trunc", kir.cast(f64, kir.cast(D.int64, r["s"])) / n))) if n
            else (lambda r: kir.cast(t, 0)))
    table = {
        "sum": (wrap(lambda a, v, _: a + wide(v)), as_t),
        "mean": (wrap(lambda a, v, _: a + wide(v)), mean),
        "prod": (Phase("s", u, kir.lit(1, u), lambda a, v, _: a * wide(v), lambda a, b: a * b, lanes=True), as_t),
        "l1": (wrap(lambda a, v, _: a + absu(v)), as_t),
        "l2": (wrap(lambda a, v, _: a + wide(v) * wide(v)), lambda r: kir.cast(t, kir.math("sqrt", in_double(r)))),
        "log_sum": (wrap(lambda a, v, _: a + wide(v)), lambda r: kir.cast(t, kir.math("log", in_double(r)))),
        "sum_square": (wrap(lambda a, v, _: a + wide(v) * wide(v)), as_t),
    }
    if name == "log_sum_exp":
        m = Phase("m", f64, kir.lit(float("-inf"), f64), lambda a, v, _: _max_expr(a, kir.cast(f64, v), True, True),
                  lambda a, b: _max_expr(a, b, True, True),
                  post=lambda a: kir.select(isfinite(a), a, kir.zero(f64)), lanes=True)
        e = Phase("s", f64, kir.zero(f64), lambda a, v, r: a + kir.math("exp", kir.cast(f64, v) - r["m"]), add,
                  lanes=True)
        return Reduction((m, e), lambda r: kir.cast(t, kir.math("log", r["s"]) + r["m"]), t, raw)
    ph, final = table[name]
    return Reduction((ph,), final, t, raw)


# ---- loop shapes -------------------------------------------------------------------------------
def loop_nest(dims, body, base, var: str, off: str, annotation=None, scoped: bool = True) -> list:
    """Loops over `dims` [(size, stride)] (index variables var0, var1, ...; `annotation` on each)
    with `off` the element offset (from `base`) of each index, around `body` (kir statements).
    No dims: `off` and the body in a block, scoped unless told otherwise."""
    at = kir.index_var(off)
    base = kir.index_var(base) if isinstance(base, str) else kir.idx(base)
    if not dims:
        return [kir.block(kir.Declare(at, base), body, scoped=scoped)]
    out = None
    names = [f"{var}_{k}" for k in range(len(dims) - 1)] + [off]
    for k in reversed(range(len(dims))):
        size, stride = dims[k]
        i = kir.index_var(f"{var}{k}")
        prev = base if k == 0 else kir.index_var(names[k - 1])
        inner = body if out is None else out
        out = kir.loop(i, size, kir.Declare(kir.index_var(names[k]), kir.iadd(prev, kir.imul(i, stride))), inner,
                       annotation=annotation)
    return [out]


def kept_index(kept, var: str = "k") -> kir.Expr:
    """The flat output index of a group: row-major over the kept dims' loop variables (loop_nest's
    var0, var1, ...)."""
    return flat_index([kir.index_var(f"{var}{k}") for k in range(len(kept))], [n for n, _ in kept])


def path_comment(family: str, path: str) -> kir.Comment:
    return kir.Comment(f"path: {family}/{path}")


def emit_group_scalar(g: Groups, red: Reduction, num: Num, ctx: KernelContext) -> list:
    """Innermost dim reduced (or nothing kept): one state per group; output o = group index."""
    ins, outs = io(ctx)
    x, y = ins[0], outs[0]
    red_dims = g.red or [(1, 1)]
    R, sr = red_dims[-1]
    outer_red = red_dims[:-1]
    q = kir.index_var("q")
    at = lambda e: x[kir.iadd(q, kir.imul(e, sr))]  # noqa: E731
    path = _row_path(red, num, R, sr)
    o = kir.index_var("o")
    names: dict = {}
    lines: list = []
    for ph in red.phases:
        var = kir.Var(ph.var, ph.acc)
        if path == "rows-f32":
            # a vectorized helper per contiguous row
            if ph.row == "expsum":
                vexp_helper(ctx)
                call = kir.call("pdc_exp_sum_f32", D.float32, kir.address(x, q), 0, R, names["m"])
            else:
                call = kir.call(row_f32_helper(ctx, ph.row), D.float32, kir.address(x, q), R, 0)
            rv = kir.Var("rv", D.float32)
            lines.append(kir.Declare(var, ph.init, const=False))
            lines += loop_nest(outer_red, [kir.Declare(rv, call), kir.Assign(var, ph.combine(var, rv))], "b", "r", "q")
            if ph.post is not None:
                lines.append(kir.Assign(var, ph.post(var)))
            names[ph.var] = var
            continue
        lanes = LANES if path == "lanes" else 1
        main = R - R % lanes
        v = kir.Var("v", red.vtype)
        r, u = kir.index_var("r"), kir.index_var("u")
        if lanes > 1:
            acc = kir.Buffer(f"acc_{ph.var}", ph.acc, "private")
            lines.append(kir.Allocate(acc, lanes))
            lines.append(kir.loop(u, lanes, kir.store(acc, u, ph.init)))
            row = [kir.loop(r, main, kir.loop(u, lanes, kir.Declare(v, red.load(x[kir.iadd(q + r, u)])),
                                              kir.store(acc, u, ph.update(acc[u], v, names))), step=lanes)]
            if main < R:
                row.append(kir.loop(r, R, kir.Declare(v, red.load(at(r))),
                                    kir.store(acc, 0, ph.update(acc[0], v, names)), start=main))
        else:
            acc = kir.Var(f"acc_{ph.var}", ph.acc)
            lines.append(kir.Declare(acc, ph.init, const=False))
            row = [kir.loop(r, R, kir.Declare(v, red.load(at(r))), kir.Assign(acc, ph.update(acc, v, names)))]
        lines += loop_nest(outer_red, row, "b", "r", "q")
        if lanes > 1:
            lines.append(kir.Declare(var, acc[0], const=False))
            lines.append(kir.loop(u, lanes, kir.Assign(var, ph.combine(var, acc[u])), start=1))
        else:
            lines.append(kir.Declare(var, acc, const=ph.post is None))
        if ph.post is not None:
            lines.append(kir.Assign(var, ph.post(var)))
        names[ph.var] = var
    lines.append(kir.store(y, o, red.final(names)))
    # the groups are independent: each computes its own output element o
    return [path_comment("reduce", path)] + loop_nest(g.kept, [kir.Declare(o, kept_index(g.kept))] + lines, 0, "k", "b",
                                                      annotation=PAR)


def _row_path(red: Reduction, num: Num, R: int, sr: int) -> str:
    """How emit_group_scalar reduces a group's innermost reduced dim (R elements, stride sr): the
    vector helpers and the partial states need contiguous rows (and phases that allow them)."""
    if (sr == 1 and num.dt.short == "f32" and all(ph.row and ph.acc == D.float32 for ph in red.phases)
            and take("reduce", "rows-f32", upper(R) >= ROW_HELPER_MIN)):  # (the helpers take any length)
        return "rows-f32"
    if sr == 1 and all(ph.lanes for ph in red.phases) and take("reduce", "lanes", upper(R) >= 2 * LANES):
        return "lanes"
    return "groups"


def emit_group_block(g: Groups, red: Reduction, num: Num, ctx: KernelContext) -> list:
    """Innermost dim kept: blocks of neighbouring groups share the loops over the reduced dims."""
    ins, outs = io(ctx)
    x, y = ins[0], outs[0]
    W = g.kept[-1][0]
    # a width known only at run time: blocks of one group (a block's accumulators are sized when compiling)
    bw = 1 if is_runtime(W) else min(W, BLOCK)
    full = W if bw == 1 else W - W % bw
    q, j, j0, o = (kir.index_var(n) for n in ("q", "j", "j0", "o"))
    v = kir.Var("v", red.vtype)

    def block(w: int) -> list:
        names: dict = {}
        lines: list = []
        for ph in red.phases:
            acc = kir.Buffer(f"acc_{ph.var}", ph.acc, "private")
            lines.append(kir.Allocate(acc, w))
            lines.append(kir.loop(j, w, kir.store(acc, j, ph.init)))
            row = kir.loop(j, w, kir.Declare(v, red.load(x[q + j0 + j])),
                           kir.store(acc, j, ph.update(acc[j], v, {k: b[j] for k, b in names.items()})))
            lines += loop_nest(g.red, [row], "b", "r", "q")
            if ph.post is not None:
                lines.append(kir.loop(j, w, kir.store(acc, j, ph.post(acc[j]))))
            names[ph.var] = acc
        final = red.final({k: b[j] for k, b in names.items()})
        lines.append(kir.loop(j, w, kir.store(y, o + j0 + j, final)))
        return lines

    parts: list = [kir.Declare(o, kir.imul(kept_index(g.kept[:-1]), W))]  # the output of the row's first group
    if full:
        parts.append(kir.loop(j0, full, block(bw), step=bw, annotation=PAR))
    if full < W:
        parts.append(kir.block(kir.Declare(j0, kir.idx(full)), block(W - full), scoped=True))
    return loop_nest(g.kept[:-1], parts, 0, "k", "b", annotation=PAR, scoped=False)


def emit_reduction(ctx: KernelContext, g: Groups, red: Reduction, num: Num) -> list:
    """The kir statements of the reduction `red` over groups g."""
    if g.n_out == 0:
        return [kir.Comment("empty output")]
    if g.red and g.last_kept and take("reduce", "blocks"):
        return [path_comment("reduce", "blocks")] + emit_group_block(g, red, num, ctx)
    return emit_group_scalar(g, red, num, ctx)


def _const_axes(ctx: KernelContext, rank: int):
    """The reduced axes (normalized, sorted; [] = none), or None when they are only known at run time."""
    axes = []
    if ctx.has_input(1):
        data = ctx.const(1)
        if data is None:
            if ctx.inputs[1].shape and ctx.inputs[1].shape[0] > 0:
                return None
        else:
            axes = [int(a) for a in data.reshape(-1)]
    if not axes:
        return [] if ctx.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    if rank == 0:
        return []
    return sorted({a % rank for a in axes})


def _candidate_axes(ctx: KernelContext, rank: int) -> list[list[int]]:
    """Every axes set that gives the static output shape (axes fed at run time)."""
    if rank > 12:
        ctx.fail("axes must be a constant for inputs of rank > 12")
    shape, out = ctx.inputs[0].shape, tuple(ctx.outputs[0].shape)
    keep = ctx.attrs.get("keepdims", 1)
    found = []
    for mask in range(1 << rank):
        axes = [i for i in range(rank) if mask >> i & 1]
        if keep:
            got = tuple(1 if i in axes else d for i, d in enumerate(shape))
        else:
            got = tuple(d for i, d in enumerate(shape) if i not in axes)
        if got == out:
            found.append(axes)
    return found


REDUCE_OPS = ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_l1", "reduce_l2",
              "reduce_log_sum", "reduce_log_sum_exp", "reduce_sum_square")


@axis_kernel(*REDUCE_OPS)
@prints_kir
def reduce(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    if x.dtype.short == "bool" and ctx.node.op not in ("reduce_max", "reduce_min"):
        ctx.fail("bool input is only supported by reduce_max / reduce_min")
    rank = len(x.shape)

    def body(axes) -> list:
        g = Groups(x.shape, axes)
        return emit_reduction(ctx, g, reduction_for(ctx.node.op, num, g.n_red), num)

    axes = _const_axes(ctx, rank)
    if axes is not None:
        return render(ctx, body(axes))
    # axes fed at run time with a static output shape: one loop nest per axes set that fits it
    variants: dict[tuple, list[int]] = {}
    for cand in _candidate_axes(ctx, rank):
        variants.setdefault(tuple(Groups(x.shape, cand).dims), []).append(sum(1 << a for a in cand))
    if not variants:
        ctx.fail(f"no axes set reduces {list(x.shape)} to {list(ctx.outputs[0].shape)}")
    if len(variants) == 1:
        (masks,) = variants.values()
        return render(ctx, body([a for a in range(rank) if masks[0] >> a & 1]))
    ins, _ = io(ctx)
    n_axes = ctx.inputs[1].shape[0]
    mask, i, a = kir.index_var("mask"), kir.index_var("i"), kir.index_var("a")
    lines = [kir.Declare(mask, kir.idx(0), const=False),
             kir.loop(i, n_axes, kir.Declare(a, kir.cast(D.int64, ins[1][i])),
                      kir.when((a >= -rank).land(a < rank),
                               kir.Assign(mask, mask | kir.lit(1, D.int64) << kir.select(a < 0, a + rank, a))))]
    if not ctx.attrs.get("noop_with_empty_axes", 0):
        lines.append(kir.when(mask.eq(0), kir.Assign(mask, kir.idx((1 << rank) - 1))))
    chain = None  # axes that fit none of the compiled shapes leave the output as is
    for masks in reversed(list(variants.values())):
        cond = kir.any_of([mask.eq(m) for m in masks])
        then = kir.block(body([a for a in range(rank) if masks[0] >> a & 1]))
        chain = kir.If(cond, then, None if chain is None else kir.block(chain))
    return render(ctx, lines, chain)


# ---- ArgMax / ArgMin ---------------------------------------------------------------------------
def _better(num: Num, v, best, largest: bool, last: bool) -> kir.Expr:
    """v replaces the current best: first (or last) extreme; NaN counts as the extreme."""
    beats = (v >= best if largest else v <= best) if last else (v > best if largest else v < best)
    if num.is_float:  # bitwise & and | keep it branch-free
        if last:
            return v.ne(v) | (best.eq(best) & beats)
        return beats | (v.ne(v) & best.eq(best))
    return beats


@axis_kernel("arg_max", "arg_min")
@prints_kir
def arg_extreme(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    axis = ctx.attrs.get("axis", 0) % len(x.shape)
    outer, n, inner = outer_n_inner(x.shape, axis)
    largest = ctx.node.op == "arg_max"
    last = bool(ctx.attrs.get("select_last_index", 0))
    if outer * inner == 0:
        return render(ctx, kir.Comment("empty output"))
    ins, outs = io(ctx)
    src, dst = ins[0], outs[0]
    ct = compute_type(num.dt)
    load = loader(num.dt)
    o, i, j, j0 = (kir.index_var(name) for name in ("o", "i", "j", "j0"))
    v, c = kir.Var("v", ct), kir.Var("c", kir.C_INT)
    if inner == 1 and take("arg", "rows"):
        best, at = kir.Var("best", ct), kir.index_var("at")
        base = kir.imul(o, n)
        row = kir.loop(o, outer,
                       kir.Declare(best, load(src[base]), const=False),
                       kir.Declare(at, kir.idx(0), const=False),
                       kir.loop(i, n, kir.Declare(v, load(src[base + i])),
                                kir.Declare(c, _better(num, v, best, largest, last)),
                                kir.Assign(best, kir.select(c, v, best)), kir.Assign(at, kir.select(c, i, at)),
                                start=1),
                       kir.store(dst, o, at), annotation=PAR)
        return render(ctx, path_comment("arg", "rows"), row)
    bw = min(inner, BLOCK)
    full = inner - inner % bw
    base = kir.iadd(kir.imul(o, n * inner), j0)

    def block(w: int) -> list:
        best = kir.Buffer("best", ct, "private")
        at = kir.Buffer("at", D.int64, "private")
        return [kir.Allocate(best, w), kir.Allocate(at, w),
                kir.loop(j, w, kir.store(best, j, load(src[base + j])), kir.store(at, j, 0)),
                kir.loop(i, n, kir.loop(j, w, kir.Declare(v, load(src[base + i * inner + j])),
                                        kir.Declare(c, _better(num, v, best[j], largest, last)),
                                        kir.store(best, j, kir.select(c, v, best[j])),
                                        kir.store(at, j, kir.select(c, i, at[j]))), start=1),
                kir.loop(j, w, kir.store(dst, kir.imul(o, inner) + j0 + j, at[j]))]
    parts: list = []
    if full:
        parts.append(kir.loop(j0, full, block(bw), step=bw, annotation=PAR))
    if full < inner:
        parts.append(kir.block(kir.Declare(j0, kir.idx(full)), block(inner - full), scoped=True))
    return render(ctx, path_comment("arg", "blocks"), kir.loop(o, outer, parts, annotation=PAR))


# ---- TopK --------------------------------------------------------------------------------------
@axis_kernel("top_k")
def top_k(ctx: KernelContext) -> str:
    """A bounded heap per row, kept in the Indices output (worst of the k best at the root), then
    sorted in place; ties keep the lower index first, NaN ranks above every number. With a bound
    (K known at run time only: passes/bound_outputs.py) the loops run to K, read from its input
    and clamped to the axis (a K outside [0, axis] makes the run return PDC_ERR_VALUE); the
    positions past it are zeros and K goes to the length output."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    axis = ctx.attrs.get("axis", -1) % len(x.shape)
    outer, n, inner = outer_n_inner(x.shape, axis)
    width = ctx.outputs[0].shape[axis]  # K, or the bound
    bounded = ctx.attrs.get("bound") is not None
    k = "kk" if bounded else width
    largest = bool(ctx.attrs.get("largest", 1))
    if outer * inner * width == 0:
        return "    *out2 = 0;" if bounded else "    /* empty output */"
    ct = num.ct if num.is_float else num.c
    # worse(a at ia, b at ib): a ranks after b in the output order
    if num.is_float:
        if largest:
            worse = ("((a != a) ? ((b != b) && ia > ib) : ((b != b) || a < b || (a == b && ia > ib)))")
        else:
            worse = ("((b != b) ? ((a != a) && ia > ib) : ((a != a) || a > b || (a == b && ia > ib)))")
    else:
        worse = "(a < b || (a == b && ia > ib))" if largest else "(a > b || (a == b && ia > ib))"
    helper = ctx.helper(f"pdc_topk_worse_{num.dt.short}_{int(largest)}",
                        f"static inline int pdc_topk_worse_{num.dt.short}_{int(largest)}({ct} a, int64_t ia, "
                        f"{ct} b, int64_t ib) {{ return {worse}; }}\n")
    val = lambda i: num.load(f"p[({i}) * {inner}]")  # noqa: E731
    h = lambda i: f"ix[({i}) * {inner}]"  # noqa: E731
    # sift down in a heap of `size` entries (stride `inner`) whose root is the worst kept element
    siftname = f"pdc_topk_sift_{num.dt.short}_{int(largest)}"
    hv = lambda i: f"ix[({i}) * inner]"  # noqa: E731
    vv = lambda i: num.load(f"p[{hv(i)} * inner]")  # noqa: E731
    ctx.helper(siftname,
               f"static inline void {siftname}(const {num.c} *p, int64_t *ix, int64_t inner, int64_t size, "
               f"int64_t at) {{\n"
               f"    for (;;) {{\n"
               f"        int64_t c = 2 * at + 1, w = at;\n"
               f"        if (c < size && {helper}({vv('c')}, {hv('c')}, {vv('w')}, {hv('w')})) w = c;\n"
               f"        if (c + 1 < size && {helper}({vv('c + 1')}, {hv('c + 1')}, {vv('w')}, {hv('w')})) w = c + 1;\n"
               f"        if (w == at) return;\n"
               f"        int64_t t = {hv('at')}; {hv('at')} = {hv('w')}; {hv('w')} = t;\n"
               f"        at = w;\n"
               f"    }}\n}}\n")
    # a later element beats the root rv (an earlier index): strictly better, or NaN over a number
    if num.is_float:
        beats = "(rv == rv) & ((v != v) | (v > rv))" if largest else "(v == v) & ((rv != rv) | (v < rv))"
    else:
        beats = "v > rv" if largest else "v < rv"
    head = ""
    if bounded:
        head = (f"    {ctx.check(f'*in1 < 0 || *in1 > {n}', 'PDC_ERR_VALUE')}\n"
                f"    const int64_t kk = *in1 < 0 ? 0 : (*in1 > {n} ? {n} : *in1);\n"
                f"    memset(out0, 0, {outer * width * inner} * sizeof *out0);\n"
                f"    memset(out1, 0, {outer * width * inner} * sizeof *out1);\n"
                f"    *out2 = kk;\n    if (kk == 0) return;\n")
    return head + f"""    for (int64_t o = 0; o < {outer}; o++) {{
        for (int64_t j = 0; j < {inner}; j++) {{
            const {num.c} *p = in0 + o * {n * inner} + j;
            int64_t *ix = out1 + o * {width * inner} + j;
            /* build a heap from the first k elements: sift up one by one */
            for (int64_t i = 0; i < {k}; i++) {{
                int64_t at = i;
                {h('at')} = i;
                while (at > 0) {{
                    int64_t up = (at - 1) / 2;
                    if (!{helper}({val(h('at'))}, {h('at')}, {val(h('up'))}, {h('up')})) break;
                    int64_t t = {h('at')}; {h('at')} = {h('up')}; {h('up')} = t;
                    at = up;
                }}
            }}
            {ct} rv = {val(h('0'))};
            for (int64_t i = {k}; i < {n}; i++) {{
                const {ct} v = {val('i')};
                if ({beats}) {{ {h('0')} = i; {siftname}(p, ix, {inner}, {k}, 0); rv = {val(h('0'))}; }}
            }}
            /* heap sort: move the worst to the back, best ends first */
            for (int64_t size = {k}; size > 1; size--) {{
                int64_t t = {h('0')}; {h('0')} = {h('size - 1')}; {h('size - 1')} = t;
                {siftname}(p, ix, {inner}, size - 1, 0);
            }}
            {num.c} *y = out0 + o * {width * inner} + j;
            for (int64_t i = 0; i < {k}; i++) y[i * {inner}] = p[{h('i')} * {inner}];
        }}
    }}"""


# ---- CumSum ------------------------------------------------------------------------------------
@axis_kernel("cum_sum")
@prints_kir
def cum_sum(ctx: KernelContext) -> str:
    """Sums in the element type, rounding after every step as numpy's cumsum does."""
    return scan_along_axis(ctx, "add", 0)


def scan_along_axis(ctx: KernelContext, op: str, identity: int) -> str:
    """An inclusive/exclusive, forward/reverse scan with the kir binary `op` (cum_sum: "add",
    cum_prod: "mul"): computed in the element type and rounded after every step (half precision
    through float, like numpy); integers wrap (computed in uint64_t). A run-time axis chooses
    between loop nests compiled for every axis."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    rank = len(x.shape)
    if rank == 0:
        ctx.fail("input must have rank >= 1")
    exclusive = bool(ctx.attrs.get("exclusive", 0))
    reverse = bool(ctx.attrs.get("reverse", 0))
    if num.is_float:
        acc = compute_type(num.dt)
        ld = loader(num.dt)
        if acc != num.dt:  # half precision: rounded to the element type after every step
            step = lambda s, v: kir.cast(acc, kir.cast(num.dt, kir.binary(op, s, v)))  # noqa: E731
        else:
            step = lambda s, v: kir.binary(op, s, v)  # noqa: E731
    else:
        acc = D.uint64
        ld = lambda e: kir.cast(D.uint64, e)  # noqa: E731
        step = lambda s, v: kir.binary(op, s, v)  # noqa: E731
    ins, outs = io(ctx)
    o, j, b, i = (kir.index_var(name) for name in ("o", "j", "b", "i"))
    s = kir.Var("s", acc)

    def along(axis: int) -> list:
        outer, n, inner = outer_n_inner(x.shape, axis)
        if outer * n * inner == 0:
            return [kir.Comment("empty")]
        at = (n - 1 - i) if reverse else i  # a reverse scan walks i from the back
        elem = ins[0][b + at * inner]
        put = kir.store(outs[0], b + at * inner, s)
        body = [put, kir.Assign(s, step(s, ld(elem)))] if exclusive else [kir.Assign(s, step(s, ld(elem))), put]
        # parallel over the positions of the scan (o, j); each one's scan along i is serial
        return [kir.loop(o, outer, kir.loop(j, inner, kir.Declare(b, kir.iadd(kir.imul(o, n * inner), j)),
                                            kir.Declare(s, kir.lit(identity, acc), const=False),
                                            kir.loop(i, n, body), annotation=PAR), annotation=PAR)]

    data = ctx.const(1)
    if data is not None:
        if data.size != 1:
            ctx.fail(f"axis must be a scalar, got {data.tolist()}")
        a = int(data.reshape(-1)[0])
        if not -rank <= a < rank:
            ctx.fail(f"axis {a} is out of range for rank {rank}")
        return render(ctx, along(a % rank))
    axis = kir.index_var("axis")
    chain = None  # an axis out of range leaves the output as is
    for a in reversed(range(rank)):
        chain = kir.If(axis.eq(a).lor(axis.eq(a - rank)), kir.block(along(a)),
                       None if chain is None else kir.block(chain))
    return render(ctx, kir.Declare(axis, kir.cast(D.int64, ins[1][0])), chain)
