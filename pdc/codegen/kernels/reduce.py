"""Reduction kernels: Reduce* (ReduceSum ... ReduceLogSumExp), ArgMax / ArgMin, TopK and CumSum.

A reduction is one or more phases over each group of elements (log-sum-exp first finds the
max, then sums the shifted exponentials), then a final expression per group. Two loop shapes:
- the innermost dim is reduced (or nothing is kept): one state per group; fp32 rows go through
  the vectorized row helpers of _axis, other types keep LANES partial states (gcc vectorizes
  the lane loop) when the row is long;
- the innermost dim is kept: a block of up to BLOCK neighbouring groups is reduced together,
  the block's states in a small array, so the inner loop runs over contiguous memory.
Axes fed at run time (the output shape declared by the model) compile one loop nest per axes
set that fits the shapes and switch on the actual axes.
Kernel paths (paths.py), family "reduce": "groups" (one state per group, any layout: the general
path), "lanes" (contiguous rows in LANES partial states), "rows-f32" (contiguous fp32 rows through
the vector row helpers), "blocks" (innermost dim kept); family "arg": "blocks" (the general path,
neighbouring rows together) and "rows" (the innermost axis).
Numerics follow the references: half precision accumulates in float, integer sums / products
wrap (computed in uint64_t), max / min propagate NaN, an empty reduction gives the identity.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..context import KernelContext
from ._axis import LANES, Groups, Num, axis_kernel, indent, nest, outer_n_inner, row_f32_helper, vexp_helper
from .paths import declare, mark, take

declare("reduce", "groups", "lanes", "rows-f32", "blocks")
declare("arg", "blocks", "rows")

BLOCK = 64  # neighbouring groups reduced together when the innermost dim is kept
ROW_HELPER_MIN = 16  # contiguous fp32 rows from this length take the vector helpers


@dataclass(frozen=True)
class Phase:
    """One pass over a group. Expressions are format strings: {a} the state, {v} the element
    (already loaded), {b} a second state (combine) and earlier phases' results by name."""
    var: str
    acc: str  # C type of the state
    init: str
    update: str
    combine: str
    post: str = "{a}"
    lanes: bool = False  # reassociation is fine: contiguous rows keep LANES partial states
    row: str = ""  # fp32 contiguous rows: the _axis.row_f32_helper op (or "expsum") computing one row


@dataclass(frozen=True)
class Reduction:
    phases: tuple
    final: str  # the output value (before the store conversion), over the phases' results
    vtype: str  # C type the element is loaded as
    load: object  # callable: C expression of a stored element -> vtype expression


def _max_expr(a: str, b: str, is_float: bool, largest: bool) -> str:
    """b replaces a when it is larger (smaller); for floats a NaN b always does, so NaN sticks.
    The bitwise | keeps it branch-free: gcc vectorizes it (a || would not be)."""
    op = ">" if largest else "<"
    if is_float:
        return f"((({b}) {op} ({a})) | (({b}) != ({b}))) ? ({b}) : ({a})"
    return f"(({b}) {op} ({a})) ? ({b}) : ({a})"


def reduction_for(op: str, num: Num, n: int) -> Reduction:
    """The phases and final expression of Reduce<op> over groups of n elements of type num."""
    name = op[len("reduce_"):]
    if num.is_float:
        ct, f = num.ct, num.f
        add = "{a} + {b}"
        s = lambda upd, row, **kw: Phase("s", ct, f"({ct})0", upd, add, lanes=True, row=row, **kw)  # noqa: E731
        if name in ("max", "min"):
            lo = num.lowest() if name == "max" else num.highest()
            ph = Phase("m", ct, lo, _max_expr("{a}", "{v}", True, name == "max"),
                       _max_expr("{a}", "{b}", True, name == "max"), lanes=True, row=name)
            return Reduction((ph,), "m", ct, num.load)
        table = {
            "sum": (s("{a} + {v}", "sum"), "s"),
            "mean": (s("{a} + {v}", "sum"), f"s / ({ct}){n}"),
            "prod": (Phase("s", ct, f"({ct})1", "{a} * {v}", "{a} * {b}"), "s"),
            "l1": (s(f"{{a}} + fabs{f}({{v}})", "abs"), "s"),
            "l2": (s("{a} + {v} * {v}", "sumsq"), f"sqrt{f}(s)"),
            "log_sum": (s("{a} + {v}", "sum"), f"log{f}(s)"),
            "sum_square": (s("{a} + {v} * {v}", "sumsq"), "s"),
        }
        if name == "log_sum_exp":
            m = Phase("m", ct, num.lowest(), _max_expr("{a}", "{v}", True, True), _max_expr("{a}", "{b}", True, True),
                      post=f"isfinite({{a}}) ? {{a}} : ({ct})0", lanes=True, row="max")
            e = Phase("s", ct, f"({ct})0", f"{{a}} + exp{f}({{v}} - {{m}})", add, lanes=True, row="expsum")
            return Reduction((m, e), f"log{f}(s) + m", ct, num.load)
        ph, final = table[name]
        return Reduction((ph,), final, ct, num.load)
    # integers (and bool for max / min): sums and products wrap, as numpy's do in the input type
    t = num.c
    u = "uint64_t"
    signed = num.dt.short.startswith("i")
    raw = lambda e: e  # noqa: E731
    if name in ("max", "min"):
        lo = num.lowest() if name == "max" else num.highest()
        ph = Phase("m", t, lo, _max_expr("{a}", "{v}", False, name == "max"),
                   _max_expr("{a}", "{b}", False, name == "max"), lanes=True)
        return Reduction((ph,), "m", t, raw)
    wrap = lambda upd: Phase("s", u, f"({u})0", upd, "{a} + {b}", lanes=True)  # noqa: E731
    absu = f"({{v}} < 0 ? ({u})0 - ({u}){{v}} : ({u}){{v}})" if signed else f"({u}){{v}}"
    table = {
        "sum": (wrap(f"{{a}} + ({u}){{v}}"), f"({t})s"),
        "mean": (wrap(f"{{a}} + ({u}){{v}}"), f"({t})trunc((double)(int64_t)s / {n})" if n else f"({t})0"),
        "prod": (Phase("s", u, f"({u})1", f"{{a}} * ({u}){{v}}", "{a} * {b}", lanes=True), f"({t})s"),
        "l1": (wrap(f"{{a}} + {absu}"), f"({t})s"),
        "l2": (wrap(f"{{a}} + ({u}){{v}} * ({u}){{v}}"), f"({t})sqrt((double)({t})s)"),
        "log_sum": (wrap(f"{{a}} + ({u}){{v}}"), f"({t})log((double)({t})s)"),
        "sum_square": (wrap(f"{{a}} + ({u}){{v}} * ({u}){{v}}"), f"({t})s"),
    }
    if name == "log_sum_exp":
        m = Phase("m", "double", "(-(double)INFINITY)", _max_expr("{a}", "(double){v}", True, True),
                  _max_expr("{a}", "{b}", True, True), post="isfinite({a}) ? {a} : 0.0", lanes=True)
        e = Phase("s", "double", "0.0", "{a} + exp((double){v} - {m})", "{a} + {b}", lanes=True)
        return Reduction((m, e), f"({t})(log(s) + m)", t, raw)
    ph, final = table[name]
    return Reduction((ph,), final, t, raw)


def _fmt(expr: str, names: dict, **kw) -> str:
    return expr.format(**names, **kw)


# ---- loop shapes -------------------------------------------------------------------------------
def emit_group_scalar(g: Groups, red: Reduction, num: Num, store, ctx: KernelContext) -> str:
    """Innermost dim reduced (or nothing kept): one state per group; output o = group index."""
    red_dims = g.red or [(1, 1)]
    R, sr = red_dims[-1]
    outer_red = red_dims[:-1]
    idx = (lambda e: f"p[{e}]") if sr == 1 else (lambda e: f"p[({e}) * {sr}]")
    path = _row_path(red, num, R, sr)
    names = {}
    lines = []
    for ph in red.phases:
        if path == "rows-f32":
            # a vectorized helper per contiguous row
            if ph.row == "expsum":
                vexp_helper(ctx)
                call = f"pdc_exp_sum_f32(p, 0, {R}, m)"
            else:
                call = f"{row_f32_helper(ctx, ph.row)}(p, {R}, 0)"
            lines.append(f"{ph.acc} {ph.var} = {ph.init};")
            body = f"const float *p = in0 + q;\nconst float rv = {call};\n{ph.var} = {_fmt(ph.combine, names, a=ph.var, b='rv')};"
            lines.append(nest(outer_red, body, "b", "r", "q"))
            if ph.post != "{a}":
                lines.append(f"{ph.var} = {_fmt(ph.post, names, a=ph.var)};")
            names[ph.var] = ph.var
            continue
        lanes = LANES if path == "lanes" else 1
        main = R - R % lanes
        a = f"acc_{ph.var}"
        up = lambda acc, e: _fmt(ph.update, names, a=acc, v=e)  # noqa: E731
        row = []
        if lanes > 1:
            lines.append(f"{ph.acc} {a}[{lanes}];")
            lines.append(f"for (int u = 0; u < {lanes}; u++) {a}[u] = {ph.init};")
            row.append(f"for (int64_t r = 0; r < {main}; r += {lanes}) {{")
            row.append(f"    for (int u = 0; u < {lanes}; u++) {{ const {red.vtype} v = {red.load(idx('r + u'))}; "
                       f"{a}[u] = {up(f'{a}[u]', 'v')}; }}")
            row.append("}")
            if main < R:
                row.append(f"for (int64_t r = {main}; r < {R}; r++) {{ const {red.vtype} v = {red.load(idx('r'))}; "
                           f"{a}[0] = {up(f'{a}[0]', 'v')}; }}")
        else:
            lines.append(f"{ph.acc} {a} = {ph.init};")
            row.append(f"for (int64_t r = 0; r < {R}; r++) {{ const {red.vtype} v = {red.load(idx('r'))}; "
                       f"{a} = {up(a, 'v')}; }}")
        body = f"const {num.c} *p = in0 + q;\n" + "\n".join(row)
        lines.append(nest(outer_red, body, "b", "r", "q"))
        if lanes > 1:
            lines.append(f"{ph.acc} {ph.var} = {a}[0];")
            lines.append(f"for (int u = 1; u < {lanes}; u++) {ph.var} = {_fmt(ph.combine, names, a=ph.var, b=f'{a}[u]')};")
        else:
            lines.append(f"{ph.acc} {ph.var} = {a};")
        if ph.post != "{a}":
            lines.append(f"{ph.var} = {_fmt(ph.post, names, a=ph.var)};")
        names[ph.var] = ph.var
    lines.append(f"out0[o] = {store(red.final)};")
    lines.append("o++;")
    return mark("reduce", path, "    int64_t o = 0;\n" + indent(nest(g.kept, "\n".join(lines), "0", "k", "b")))


def _row_path(red: Reduction, num: Num, R: int, sr: int) -> str:
    """How emit_group_scalar reduces a group's innermost reduced dim (R elements, stride sr): the
    vector helpers and the partial states need contiguous rows (and phases that allow them)."""
    if (sr == 1 and num.dt.short == "f32" and all(ph.row and ph.acc == "float" for ph in red.phases)
            and take("reduce", "rows-f32", R >= ROW_HELPER_MIN)):
        return "rows-f32"
    if sr == 1 and all(ph.lanes for ph in red.phases) and take("reduce", "lanes", R >= 2 * LANES):
        return "lanes"
    return "groups"


def emit_group_block(g: Groups, red: Reduction, num: Num, store) -> str:
    """Innermost dim kept: blocks of neighbouring groups share the loops over the reduced dims."""
    W = g.kept[-1][0]
    bw = min(W, BLOCK)
    full = W - W % bw

    def block(w: int) -> str:
        names = {}
        lines = []
        for ph in red.phases:
            a = f"acc_{ph.var}"
            lines.append(f"{ph.acc} {a}[{w}];")
            lines.append(f"for (int j = 0; j < {w}; j++) {a}[j] = {ph.init};")
            upd = _fmt(ph.update, {k: f"{v}[j]" for k, v in names.items()}, a=f"{a}[j]", v="v")
            body = (f"const {num.c} *p = in0 + q + j0;\n"
                    f"for (int j = 0; j < {w}; j++) {{ const {red.vtype} v = {red.load('p[j]')}; {a}[j] = {upd}; }}")
            lines.append(nest(g.red, body, "b", "r", "q"))
            if ph.post != "{a}":
                lines.append(f"for (int j = 0; j < {w}; j++) {a}[j] = {_fmt(ph.post, {}, a=f'{a}[j]')};")
            names[ph.var] = a
        final = red.final
        for var, arr in names.items():  # phase results by name -> their array element
            final = _subst(final, var, f"{arr}[j]")
        lines.append(f"for (int j = 0; j < {w}; j++) out0[o + j0 + j] = {store(final)};")
        return "\n".join(lines)

    parts = []
    if full:
        parts.append(f"for (int64_t j0 = 0; j0 < {full}; j0 += {bw}) {{\n{indent(block(bw))}\n}}")
    if full < W:
        parts.append(f"{{ const int64_t j0 = {full};\n{indent(block(W - full))}\n}}")
    parts.append(f"o += {W};")
    return "    int64_t o = 0;\n" + indent(nest(g.kept[:-1], "\n".join(parts), "0", "k", "b"))


def _subst(expr: str, var: str, repl: str) -> str:
    import re
    return re.sub(rf"\b{var}\b", repl, expr)


def emit_reduction(ctx: KernelContext, g: Groups, red: Reduction, num: Num, store) -> str:
    if g.n_out == 0:
        return "    /* empty output */"
    if g.red and g.last_kept and take("reduce", "blocks"):
        return mark("reduce", "blocks", emit_group_block(g, red, num, store))
    return emit_group_scalar(g, red, num, store, ctx)


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
def reduce(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    if x.dtype.short == "bool" and ctx.node.op not in ("reduce_max", "reduce_min"):
        ctx.fail("bool input is only supported by reduce_max / reduce_min")
    out_num = Num(ctx.outputs[0].dtype)
    store = (lambda e: out_num.store(e)) if num.is_float else (lambda e: e)
    rank = len(x.shape)

    def body(axes) -> str:
        g = Groups(x.shape, axes)
        return emit_reduction(ctx, g, reduction_for(ctx.node.op, num, g.n_red), num, store)

    axes = _const_axes(ctx, rank)
    if axes is not None:
        return body(axes)
    # axes fed at run time with a static output shape: one loop nest per axes set that fits it
    variants: dict[tuple, list[int]] = {}
    for cand in _candidate_axes(ctx, rank):
        variants.setdefault(tuple(Groups(x.shape, cand).dims), []).append(sum(1 << a for a in cand))
    if not variants:
        ctx.fail(f"no axes set reduces {list(x.shape)} to {list(ctx.outputs[0].shape)}")
    if len(variants) == 1:
        (masks,) = variants.values()
        return body([a for a in range(rank) if masks[0] >> a & 1])
    n_axes = ctx.inputs[1].shape[0]
    noop = ctx.attrs.get("noop_with_empty_axes", 0)
    cases = []
    for masks in variants.values():
        labels = " ".join(f"case {m}:" for m in masks)
        cases.append(f"{labels} {{\n{indent(body([a for a in range(rank) if masks[0] >> a & 1]))}\n    break;\n}}")
    return (f"    int64_t mask = 0;\n"
            f"    for (int i = 0; i < {n_axes}; i++) {{ const int64_t a = (int64_t)in1[i]; "
            f"if (a >= -{rank} && a < {rank}) mask |= (int64_t)1 << (a < 0 ? a + {rank} : a); }}\n"
            f"    if (mask == 0 && !{noop}) mask = {(1 << rank) - 1};\n"
            f"    switch (mask) {{\n{indent(chr(10).join(cases))}\n    default: break; /* axes that do not fit the "
            f"compiled shapes */\n    }}")


# ---- ArgMax / ArgMin ---------------------------------------------------------------------------
def _better(num: Num, v: str, best: str, largest: bool, last: bool) -> str:
    """v replaces the current best: first (or last) extreme; NaN counts as the extreme."""
    op = ">" if largest else "<"
    if num.is_float:  # bitwise & and | keep it branch-free
        if last:
            return f"(({v} != {v}) | (({best} == {best}) & ({v} {op}= {best})))"
        return f"(({v} {op} {best}) | (({v} != {v}) & ({best} == {best})))"
    return f"({v} {op}= {best})" if last else f"({v} {op} {best})"


@axis_kernel("arg_max", "arg_min")
def arg_extreme(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    axis = ctx.attrs.get("axis", 0) % len(x.shape)
    outer, n, inner = outer_n_inner(x.shape, axis)
    largest = ctx.node.op == "arg_max"
    last = bool(ctx.attrs.get("select_last_index", 0))
    if outer * inner == 0:
        return "    /* empty output */"
    ct = num.ct if num.is_float else num.c
    if inner == 1 and take("arg", "rows"):
        cond = _better(num, "v", "best", largest, last)
        body = (f"    for (int64_t o = 0; o < {outer}; o++) {{\n"
                f"        const {num.c} *p = in0 + o * {n};\n"
                f"        {ct} best = {num.load('p[0]')};\n"
                f"        int64_t at = 0;\n"
                f"        for (int64_t i = 1; i < {n}; i++) {{ const {ct} v = {num.load('p[i]')}; "
                f"const int c = {cond}; best = c ? v : best; at = c ? i : at; }}\n"
                f"        out0[o] = at;\n"
                f"    }}")
        return mark("arg", "rows", body)
    bw = min(inner, BLOCK)
    full = inner - inner % bw
    cond = _better(num, "v", "best[j]", largest, last)

    def block(w):
        return (f"{ct} best[{w}];\nint64_t at[{w}];\n"
                f"for (int j = 0; j < {w}; j++) {{ best[j] = {num.load('p[j]')}; at[j] = 0; }}\n"
                f"for (int64_t i = 1; i < {n}; i++) {{\n"
                f"    for (int j = 0; j < {w}; j++) {{ const {ct} v = {num.load(f'p[i * {inner} + j]')}; "
                f"const int c = {cond}; best[j] = c ? v : best[j]; at[j] = c ? i : at[j]; }}\n}}\n"
                f"for (int j = 0; j < {w}; j++) out0[o * {inner} + j0 + j] = at[j];")
    parts = []
    if full:
        parts.append(f"for (int64_t j0 = 0; j0 < {full}; j0 += {bw}) {{\n"
                     f"    const {num.c} *p = in0 + o * {n * inner} + j0;\n{indent(block(bw))}\n}}")
    if full < inner:
        parts.append(f"{{ const int64_t j0 = {full};\n    const {num.c} *p = in0 + o * {n * inner} + j0;\n"
                     f"{indent(block(inner - full))}\n}}")
    body = f"    for (int64_t o = 0; o < {outer}; o++) {{\n{indent(chr(10).join(parts), 2)}\n    }}"
    return mark("arg", "blocks", body)


# ---- TopK --------------------------------------------------------------------------------------
@axis_kernel("top_k")
def top_k(ctx: KernelContext) -> str:
    """A bounded heap per row, kept in the Indices output (worst of the k best at the root), then
    sorted in place; ties keep the lower index first, NaN ranks above every number."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    axis = ctx.attrs.get("axis", -1) % len(x.shape)
    outer, n, inner = outer_n_inner(x.shape, axis)
    k = ctx.outputs[0].shape[axis]
    largest = bool(ctx.attrs.get("largest", 1))
    if outer * inner * k == 0:
        return "    /* empty output */"
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
    return f"""    for (int64_t o = 0; o < {outer}; o++) {{
        for (int64_t j = 0; j < {inner}; j++) {{
            const {num.c} *p = in0 + o * {n * inner} + j;
            int64_t *ix = out1 + o * {k * inner} + j;
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
            {num.c} *y = out0 + o * {k * inner} + j;
            for (int64_t i = 0; i < {k}; i++) y[i * {inner}] = p[{h('i')} * {inner}];
        }}
    }}"""


# ---- CumSum ------------------------------------------------------------------------------------
@axis_kernel("cum_sum")
def cum_sum(ctx: KernelContext) -> str:
    """Sums in the element type, rounding after every step as numpy's cumsum does."""
    return scan_along_axis(ctx, "+", 0)


def scan_along_axis(ctx: KernelContext, op: str, identity: int) -> str:
    """An inclusive/exclusive, forward/reverse scan with `op` (cum_sum, cum_prod): computed in the
    element type and rounded after every step (half precision through float, like numpy);
    integers wrap (computed in uint64_t). A run-time axis switches between loop nests compiled
    for every axis."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    rank = len(x.shape)
    if rank == 0:
        ctx.fail("input must have rank >= 1")
    exclusive = bool(ctx.attrs.get("exclusive", 0))
    reverse = bool(ctx.attrs.get("reverse", 0))
    if num.is_float:
        acc, init = num.ct, f"({num.ct}){identity}"
        step = lambda s, v: num.load(num.store(f"{s} {op} {v}")) if num.ct != num.c else f"{s} {op} {v}"  # noqa: E731
        ld, st = num.load, num.store
    else:
        acc, init = "uint64_t", f"(uint64_t){identity}"
        step = lambda s, v: f"{s} {op} {v}"  # noqa: E731
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
                f"    {acc} s = {init};\n"
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
