"""Pooling kernels: MaxPool (with Indices), AveragePool, LpPool (N-d), their Global forms, MaxUnpool.

The window geometry (strides, dilations, pads, auto_pad, ceil_mode) is resolved at compile time
with the reference's own helper (pdc.ir.ops.nn_common.resolve_window). Per spatial dim and output
position, small static tables hold the range of taps that fall inside the input, so the loops
never test for padding: padding never wins a max, adds nothing to a sum, and AveragePool divides
by a per-position count (a product of per-dim counts, also tabulated) that does or does not
include the pads. Global pools are reductions over the spatial dims (reduce.py's loops).
"""
from __future__ import annotations

import numpy as np

from ...ir.ops.nn_common import resolve_window
from ..context import KernelContext, strides
from ..ctypes_c import float_literal
from ._axis import Groups, Num, axis_kernel, indent, prod
from .reduce import Phase, Reduction, emit_reduction, reduction_for


def _table(name: str, values) -> str:
    vals = [int(v) for v in values]
    ct = "int32_t" if all(-2**31 <= v < 2**31 for v in vals) else "int64_t"
    return f"static const {ct} {name}[{len(vals)}] = {{{', '.join(map(str, vals))}}};"


class _Window:
    """Static geometry of a pooling node, with the C tables of valid tap ranges."""

    def __init__(self, ctx: KernelContext):
        x = ctx.inputs[0]
        self.kernel = list(ctx.attrs["kernel_shape"])
        self.nsp = len(self.kernel)
        self.in_sp = list(x.shape[2:])
        self.strides, self.dil, self.begin, self.out, self.counted = resolve_window(
            x.shape, self.kernel, ctx.attrs, ctx.attrs.get("ceil_mode", 0))
        self.NC = x.shape[0] * x.shape[1]
        self.in_st = strides(self.in_sp)
        self.tables: list[str] = []
        self.lo, self.hi = [], []  # C expressions per dim, indexed by o{i}
        for i in range(self.nsp):
            lo, hi = [], []
            for o in range(self.out[i]):
                start = o * self.strides[i] - self.begin[i]
                ks = [k for k in range(self.kernel[i]) if 0 <= start + k * self.dil[i] < self.in_sp[i]]
                lo.append(ks[0] if ks else 0)
                hi.append(ks[-1] + 1 if ks else 0)
            if set(lo) == {0} and set(hi) == {self.kernel[i]}:
                self.lo.append("0")
                self.hi.append(str(self.kernel[i]))
            else:
                self.tables += [_table(f"lo{i}", lo), _table(f"hi{i}", hi)]
                self.lo.append(f"lo{i}[o{i}]")
                self.hi.append(f"hi{i}[o{i}]")

    def counts(self, include_pad: bool) -> list[list[int]]:
        """Per dim and output position: how many taps AveragePool divides by."""
        res = []
        for i in range(self.nsp):
            pb, pe = self.counted[i]
            lo_v, hi_v = (-pb, self.in_sp[i] + pe) if include_pad else (0, self.in_sp[i])
            row = []
            for o in range(self.out[i]):
                start = o * self.strides[i] - self.begin[i]
                row.append(sum(1 for k in range(self.kernel[i]) if lo_v <= start + k * self.dil[i] < hi_v))
            res.append(row)
        return res

    def loops(self, body: str, init: str, final: str) -> str:
        """Over every output position (o = flat spatial output index): init; taps -> body; final.
        In the body, `r` is the tap's row-major spatial offset and c{i} its coordinates."""
        n = self.nsp
        lines = []
        for i in range(n):
            pad = "    " * i
            lines.append(f"{pad}for (int64_t o{i} = 0; o{i} < {self.out[i]}; o{i}++) {{")
            lines.append(f"{pad}    const int64_t s{i} = o{i} * {self.strides[i]} - {self.begin[i]};")
        inner = [init]
        taps = []
        for i in range(n):
            pad = "    " * i
            prev = f"r{i - 1}" if i else "0"
            taps.append(f"{pad}for (int64_t k{i} = {self.lo[i]}; k{i} < {self.hi[i]}; k{i}++) {{")
            taps.append(f"{pad}    const int64_t c{i} = s{i} + k{i} * {self.dil[i]};")
            taps.append(f"{pad}    const int64_t r{i} = {prev} + c{i} * {self.in_st[i]};")
        taps.append(indent(f"const int64_t r = r{n - 1};\n{body}", n))
        taps += ["    " * i + "}" for i in reversed(range(n))]
        inner += taps
        inner.append(final)
        lines.append(indent("\n".join(inner), n))
        lines += ["    " * i + "}" for i in reversed(range(n))]
        return "\n".join(lines)

    def wrap(self, code: str, num_in: Num, num_out: Num) -> str:
        """Runs `code` for every (n, c) slice with x / y pointing at it and o counting outputs."""
        return "\n".join(self.tables + [
            f"for (int64_t nc = 0; nc < {self.NC}; nc++) {{",
            f"    const {num_in.c} *x = in0 + nc * {prod(self.in_sp)};",
            f"    {num_out.c} *y = out0 + nc * {prod(self.out)};",
            "    int64_t o = 0;",
            indent(code),
            "}"])


@axis_kernel("max_pool")
def max_pool(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    ct = num.ct if num.is_float else num.c
    w = _Window(ctx)
    if w.NC * prod(w.out) == 0:
        return "    /* empty */"
    with_index = len(ctx.outputs) > 1
    init = f"{ct} best = {num.lowest()};"
    if num.is_float:
        better = "v > best || (v != v && best == best)"
    else:
        better = "v > best"
    body = f"const {ct} v = {num.load('x[r]')};\nif ({better}) {{ best = v;{' at = r;' if with_index else ''} }}"
    final = f"y[o] = {num.store('best')};"
    if with_index:
        # flat index of a tap: (n * C + c) * prod(in_sp) + spatial position in storage order; a
        # window whose max is the padding value reports its first tap, as the reference does
        if ctx.attrs.get("storage_order", 0):
            col = strides(w.in_sp[::-1])[::-1]
            pos = lambda c: " + ".join(f"({c[i]}) * {col[i]}" for i in range(w.nsp))  # noqa: E731
            body = body.replace(" at = r;", f" at = {pos([f'c{i}' for i in range(w.nsp)])};")
        else:
            pos = lambda c: " + ".join(f"({c[i]}) * {w.in_st[i]}" for i in range(w.nsp))  # noqa: E731
        init += f"\nint64_t at = {pos([f's{i}' for i in range(w.nsp)])};"
        final += f"\nout1[nc * {prod(w.out)} + o] = nc * {prod(w.in_sp)} + at;"
    final += "\no++;"
    return indent(w.wrap(w.loops(body, init, final), num, num))


@axis_kernel("average_pool", "lp_pool")
def average_pool(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    ct, f = num.ct, num.f
    w = _Window(ctx)
    if w.NC * prod(w.out) == 0:
        return "    /* empty */"
    init = f"{ct} s = 0;"
    if ctx.node.op == "average_pool":
        body = f"s += {num.load('x[r]')};"
        counts = w.counts(bool(ctx.attrs.get("count_include_pad", 0)))
        terms = []
        for i, row in enumerate(counts):
            if len(set(row)) == 1:
                terms.append(str(row[0]))
            else:
                w.tables.append(_table(f"cnt{i}", row))
                terms.append(f"cnt{i}[o{i}]")
        count = " * ".join(terms)
        final = f"y[o] = {num.store(f's / ({ct})({count})')};"
    else:
        p = ctx.attrs.get("p", 2)
        v = num.load("x[r]")
        if p == 1:
            body, res = f"s += fabs{f}({v});", "s"
        elif p == 2:
            body, res = f"{{ const {ct} v = {v}; s += v * v; }}", f"sqrt{f}(s)"
        else:
            pl = float_literal(p, ct)
            inv = float_literal(float(np.dtype(np.float64 if ct == "double" else np.float32).type(1.0 / p)), ct)
            body, res = f"s += pow{f}(fabs{f}({v}), {pl});", f"pow{f}(s, {inv})"
        final = f"y[o] = {num.store(res)};"
    final += "\no++;"
    return indent(w.wrap(w.loops(body, init, final), num, num))


@axis_kernel("global_average_pool", "global_max_pool", "global_lp_pool")
def global_pool(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    g = Groups(x.shape, range(2, len(x.shape)))
    op = ctx.node.op
    if op == "global_lp_pool" and ctx.attrs.get("p", 2) not in (1, 2):
        ct, f = num.ct, num.f
        p = ctx.attrs["p"]
        inv = float_literal(float(np.dtype(np.float64 if ct == "double" else np.float32).type(1.0 / p)), ct)
        red = Reduction((Phase("s", ct, f"({ct})0", f"{{a}} + pow{f}(fabs{f}({{v}}), {float_literal(p, ct)})",
                               "{a} + {b}", lanes=True),), f"pow{f}(s, {inv})", ct, num.load)
    else:
        name = {"global_average_pool": "reduce_mean", "global_max_pool": "reduce_max"}.get(op)
        if name is None:
            name = "reduce_l1" if ctx.attrs.get("p", 2) == 1 else "reduce_l2"
        red = reduction_for(name, num, g.n_red)
    return emit_reduction(g, red, num, num.store)


@axis_kernel("max_unpool")
def max_unpool(ctx: KernelContext) -> str:
    """Zeros, then X scattered to the flat positions I (positions outside the output are skipped)."""
    out = ctx.outputs[0]
    n_out, n_in = prod(out.shape), prod(ctx.inputs[0].shape)
    lines = [f"    memset(out0, 0, {out.nbytes});"] if out.nbytes else []
    if n_in and n_out:
        lines.append(f"    for (int64_t i = 0; i < {n_in}; i++) {{ const int64_t t = in1[i]; "
                     f"if (t >= 0 && t < {n_out}) out0[t] = in0[i]; }}")
    return "\n".join(lines) or "    /* empty */"
