"""Pooling kernels: MaxPool (with Indices), AveragePool, LpPool (N-d), their Global forms, MaxUnpool.

The window geometry (strides, dilations, pads, auto_pad, ceil_mode) is resolved at compile time
with the reference's own helper (pdc.ir.ops.nn_common.resolve_window). Windowed pools compute
one output row (the last spatial dim) at a time, in chunks of up to CHUNK outputs held in small
arrays: for every tap of the window (leading dims through tables of the taps inside the input,
the last dim unrolled with its static range of outputs whose tap is inside), one simple loop
over the row's outputs updates the states. Those loops have no padding tests and vectorize.
Padding never wins a max and adds nothing to a sum; AveragePool divides by a per-position
count (a product of per-dim counts) that does or does not include the pads.

Kernel paths (paths.py): "generic" does each tap of the last dim in its own loop over the outputs
it reaches; "interior" first does every tap in one loop over the outputs whose taps are all inside
(the states stay in registers), then the few others tap by tap. ARM's band kernels (arm/pool.py)
join the family.

MaxPool's Indices: the first maximum in window order among the taps inside the input, NaN
counting as the maximum (a slice holding a NaN, rare, takes a scalar path in window order); a
window whose maximum is the type's lowest value (uint8 zeros, -inf) reports its first tap inside
the input. Global pools are reductions (reduce.py).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...ir.errors import UnsupportedError
from ...ir.ops.nn_common import resolve_window
from ..context import KernelContext, strides
from ..ctypes_c import float_literal
from ._axis import Groups, Num, axis_kernel, indent, prod
from .. import kir
from ._kir import io, prints_kir, render
from .paths import declare, mark, take
from .reduce import Phase, Reduction, compute_type, emit_reduction, loader, reduction_for

declare("pool", "generic", "interior")

CHUNK = 256  # outputs of one row computed together
INTERIOR_TAPS = 16  # the interior loop unrolls the row's taps: up to this many
MAX_TABLE = 4096  # outputs of a dim whose tap ranges / counts are tabulated; longer dims compute them in C
MAX_UNROLLED_TAPS = 1024  # taps of the last dim given their own loop; a longer row loops over them in C
MAX_GEOMETRY = 1 << 40  # sizes, pads, strides and window extents the int64 index arithmetic stays far from


def _table(name: str, values) -> str:
    vals = [int(v) for v in values]
    ct = "int32_t" if all(-2**31 <= v < 2**31 for v in vals) else "int64_t"
    return f"static const {ct} {name}[{len(vals)}] = {{{', '.join(map(str, vals))}}};"


class Window2D(NamedTuple):
    """A 1-D or 2-D pooling window seen as 2-D (a 1-D one gets a leading row axis of extent 1), for
    the native band kernels: input, output and kernel extents, strides, dilations, leading pads,
    the pads count_include_pad counts (per axis: begin, end), and the planes (N * C)."""
    H: int
    W: int
    OH: int
    OW: int
    KH: int
    KW: int
    sh: int
    sw: int
    dh: int
    dw: int
    ph: int
    pw: int
    counted: list
    planes: int


def window_2d(ctx: KernelContext) -> Window2D:
    """The node's window (kernel_shape of rank 1 or 2: the caller checks) as a Window2D."""
    x = ctx.inputs[0]
    kernel = list(ctx.attrs["kernel_shape"])
    strides_, dil, begin, out, counted = resolve_window(x.shape, kernel, ctx.attrs, ctx.attrs.get("ceil_mode", 0) or 0)
    lead = [1] * (2 - len(kernel))
    two = lambda v, first=1: [first] * len(lead) + list(v)  # noqa: E731
    return Window2D(*two(x.shape[2:]), *two(out), *two(kernel), *two(strides_), *two(dil), *two(begin, 0),
                    [(0, 0)] * len(lead) + list(counted), x.shape[0] * x.shape[1])


def tap_range(start: int, kernel: int, dil: int, lo: int, hi: int) -> tuple[int, int]:
    """[first, end) of the taps k in [0, kernel) with lo <= start + k * dil < hi; (0, 0) when none.
    The taps inside form one run because the position grows with k."""
    first = max(0, -((start - lo) // dil))
    end = min(kernel, (hi - 1 - start) // dil + 1) if hi > start else 0
    return (first, end) if first < end else (0, 0)


def c_tap_range(start: str, kernel: int, dil: int, lo: int, hi: int) -> tuple[str, str]:
    """tap_range as C expressions of `start` (an int64 C expression), empty runs as a first >= end."""
    first = f"({start} < {lo} ? ({lo} - ({start}) + {dil - 1}) / {dil} : 0)"
    reach = f"(({hi} - 1 - ({start})) / {dil} + 1)"
    end = f"({start} >= {hi} ? 0 : {reach} < {kernel} ? {reach} : {kernel})"
    return first, end


def c_tap_count(start: str, kernel: int, dil: int, lo: int, hi: int) -> str:
    first, end = c_tap_range(start, kernel, dil, lo, hi)
    return f"({end} > {first} ? {end} - {first} : 0)"


class PoolWindow:
    """A windowed pool's geometry, resolved at compile time: the kernel, the spatial input dims and
    their strides, the window's strides, dilations, first taps, output dims and counted taps."""

    def __init__(self, ctx: KernelContext):
        x = ctx.inputs[0]
        self.kernel = list(ctx.attrs["kernel_shape"])
        self.nsp = len(self.kernel)
        self.in_sp = list(x.shape[2:])
        self.strides, self.dil, self.begin, self.out, self.counted = resolve_window(
            x.shape, self.kernel, ctx.attrs, ctx.attrs.get("ceil_mode", 0) or 0)
        self.NC = x.shape[0] * x.shape[1]
        self.in_st = strides(self.in_sp)


class _Window(PoolWindow):
    """Static geometry of a pooling node and the C tables it needs. Per-output tables (leading
    dims' tap ranges, AveragePool's counts) and the last dim's unrolled taps are emitted while they
    stay small; past MAX_TABLE outputs or MAX_UNROLLED_TAPS taps the same numbers are computed in C
    by formula, in the same order, so a huge but legal tensor compiles in constant time."""

    def __init__(self, ctx: KernelContext):
        super().__init__(ctx)
        self._check_geometry(ctx)
        self.tables: list[str] = []
        self.path = "generic"  # set by generate()
        self.lo, self.hi = [], []  # leading dims: C expressions of the valid tap range, by o{i}
        self.by_formula = []  # leading dims whose range is computed in C (range_lines)
        for i in range(self.nsp - 1):
            self._leading_range(i)
        # last dim: per tap, the outputs whose tap is inside the input; None: too many taps to unroll
        L = self.nsp - 1
        self.row = None
        if self.kernel[L] <= MAX_UNROLLED_TAPS:
            self.row = []  # (kw, input offset of output 0's tap, first output, end output)
            for kw in range(self.kernel[L]):
                off = kw * self.dil[L] - self.begin[L]
                js = tap_range(off, self.out[L], self.strides[L], 0, self.in_sp[L])
                if js[0] < js[1]:
                    self.row.append((kw, off, js[0], js[1]))

    def _check_geometry(self, ctx: KernelContext) -> None:
        sizes = self.in_sp + self.out + self.strides + self.begin + [
            (k - 1) * d + 1 for k, d in zip(self.kernel, self.dil)] + [p for c in self.counted for p in c]
        if any(abs(v) > MAX_GEOMETRY for v in sizes):
            where = f"node '{ctx.node.name}' ({ctx.node.op})" if ctx.node.name else f"{ctx.node.op} node"
            raise UnsupportedError(f"{where}: pooling window geometry (kernel {self.kernel}, strides "
                                   f"{self.strides}, pads {self.counted}) is over pdc's limit of 2^40")

    def _leading_range(self, i: int) -> None:
        K, d, n_in, n_out = self.kernel[i], self.dil[i], self.in_sp[i], self.out[i]
        starts = (0, (n_out - 1) * self.strides[i]) if n_out else ()
        if n_out and all(tap_range(s - self.begin[i], K, d, 0, n_in) == (0, K) for s in starts):
            # the first and last windows lie wholly inside, so every window in between does
            self.lo.append("0")
            self.hi.append(str(K))
            self.by_formula.append(False)
        elif n_out <= MAX_TABLE:
            taps = [self.valid_range(i, o) for o in range(n_out)]
            self.tables += [_table(f"lo{i}", [t[0] for t in taps]), _table(f"hi{i}", [t[1] for t in taps])]
            self.lo.append(f"lo{i}[o{i}]")
            self.hi.append(f"hi{i}[o{i}]")
            self.by_formula.append(False)
        else:
            self.lo.append(f"lo{i}")
            self.hi.append(f"hi{i}")
            self.by_formula.append(True)

    def range_lines(self, i: int) -> list[str]:
        """C lines computing leading dim i's tap range from s{i}, where it is not tabulated."""
        if not self.by_formula[i]:
            return []
        first, end = c_tap_range(f"s{i}", self.kernel[i], self.dil[i], 0, self.in_sp[i])
        return [f"int64_t lo{i} = {first}, hi{i} = {end};",
                f"if (lo{i} >= hi{i}) lo{i} = hi{i} = 0;"]

    def valid_range(self, i: int, o: int) -> tuple[int, int]:
        return tap_range(o * self.strides[i] - self.begin[i], self.kernel[i], self.dil[i], 0, self.in_sp[i])

    def first_tap(self, weights, last_start: str) -> str:
        """C expression of the position (spatial index weights) of the window's first tap inside the
        input, in window order: the first inside along every dim. Leading dims take it from their
        tables (o{i}, s{i} in scope); the last dim's window starts at `last_start`."""
        L = self.nsp - 1
        d = self.dil[L]
        first = f"({last_start} < 0 ? (-({last_start}) + {d - 1}) / {d} * {d} : 0)"
        terms = [f"(s{i} + {self.lo[i]} * {self.dil[i]}) * {weights[i]}" for i in range(L)]
        return " + ".join(terms + [f"({last_start} + {first}) * {weights[L]}"])

    def count_terms(self, include_pad: bool) -> list[str]:
        """Per dim, the C expression of how many taps AveragePool divides by: a constant, a table
        entry or a formula (o{i} / s{i} in scope for leading dims, j0 + j for the last)."""
        terms = []
        L = self.nsp - 1
        for i in range(self.nsp):
            pb, pe = self.counted[i]
            lo_v, hi_v = (-pb, self.in_sp[i] + pe) if include_pad else (0, self.in_sp[i])
            K, d, S, b = self.kernel[i], self.dil[i], self.strides[i], self.begin[i]
            if self.out[i] <= MAX_TABLE:
                row = [(lambda r: r[1] - r[0])(tap_range(o * S - b, K, d, lo_v, hi_v)) for o in range(self.out[i])]
                if len(set(row)) == 1:
                    terms.append(str(row[0]))
                else:
                    self.tables.append(_table(f"cnt{i}", row))
                    terms.append(f"cnt{i}[o{i}]" if i < L else f"cnt{i}[j0 + j]")
            else:
                start = f"s{i}" if i < L else f"((j0 + j) * {S} - {b})"
                terms.append(c_tap_count(start, K, d, lo_v, hi_v))
        return terms

    def generate(self, num: Num, states: list[tuple[str, str, str]], update: str, finish: str,
                 pos_weights=None) -> str:
        """The loops over one (n, c) slice. states: (C type, name, init) of per-output arrays.
        `update` runs for every tap with v (the element, loaded), j (output in the chunk), t (its
        offset in the slice) and, with pos_weights (index weights of the spatial dims), pos (the
        tap's index). `finish` runs per output with j and o (the output's offset in the slice)."""
        L = self.nsp - 1
        OW, S = self.out[L], self.strides[L]
        ch = min(OW, CHUNK)
        lines = []
        for i in range(L):
            pad = "    " * i
            lines.append(f"{pad}for (int64_t o{i} = 0; o{i} < {self.out[i]}; o{i}++) {{")
            lines.append(f"{pad}    const int64_t s{i} = o{i} * {self.strides[i]} - {self.begin[i]};")
            lines += [f"{pad}    {ln}" for ln in self.range_lines(i)]
        body = [f"const int64_t orow = {' + '.join(f'o{i} * {prod(self.out[i + 1:])}' for i in range(L)) or '0'};"]
        body.append(f"for (int64_t j0 = 0; j0 < {OW}; j0 += {ch}) {{")
        chunk = []
        single = ch == OW
        jn = str(ch) if single else f"({OW} - j0 < {ch} ? {OW} - j0 : {ch})"
        chunk.append(f"const int64_t jn = {jn};")
        for ctype, name, init in states:
            chunk.append(f"{ctype} {name}[{ch}];")
            chunk.append(f"for (int64_t j = 0; j < jn; j++) {name}[j] = {init};")
        # taps: leading dims through their tables, the last dim unrolled
        taps, close = [], []
        for i in range(L):
            pad = "    " * i
            prev_r = f"r{i - 1}" if i else "0"
            taps.append(f"{pad}for (int64_t k{i} = {self.lo[i]}; k{i} < {self.hi[i]}; k{i}++) {{")
            taps.append(f"{pad}    const int64_t c{i} = s{i} + k{i} * {self.dil[i]};")
            taps.append(f"{pad}    const int64_t r{i} = {prev_r} + c{i} * {self.in_st[i]};")
            if pos_weights is not None:
                prev_p = f"p{i - 1}" if i else "0"
                taps.append(f"{pad}    const int64_t p{i} = {prev_p} + c{i} * {pos_weights[i]};")
            close.append(pad + "}")
        inner = []
        r = f"r{L - 1}" if L else "0"
        pw = f"p{L - 1}" if L else "0"

        def tap(off: str) -> str:
            t = f"{r} + (j0 + j) * {S} + {off}"
            pos = f" const int64_t pos = {pw} + ((j0 + j) * {S} + {off}) * {pos_weights[L]};" if pos_weights else ""
            return f"{{ const int64_t t = {t};{pos} const {num.ct} v = {num.load('x[t]')}; {update} }}"

        def rng(a: int, b: int) -> tuple[str, str]:
            """[a, b) in row outputs as a range of chunk positions j."""
            if single:
                return str(a), str(b)
            return f"({a} > j0 ? {a} - j0 : 0)", f"({b} < j0 + jn ? {b} - j0 : jn)"

        # outputs whose taps are all inside: one loop doing every tap of the row in order (the
        # states stay in registers); the few other outputs: one loop per tap over its own range
        row = self.row or []
        JL = max((jlo for _, _, jlo, _ in row), default=0)
        JH = min((jhi for _, _, _, jhi in row), default=0)
        # some output has every tap that reaches the input inside (taps that never do are skipped
        # by every loop); worth it for a short row of taps which all reach the input somewhere
        short_row = len(row) == self.kernel[L] and self.kernel[L] <= INTERIOR_TAPS
        interior = self.row is not None and JL < JH and take("pool", "interior", short_row)
        self.path = "interior" if interior else "generic"
        if interior:
            lo, hi = rng(JL, JH)
            every = "\n".join("    " + tap(str(off)) for _, off, _, _ in row)
            inner.append(f"for (int64_t j = {lo}; j < {hi}; j++) {{\n{every}\n}}")
            for kw, off, jlo, jhi in row:
                for a, b in ((jlo, JL), (JH, jhi)):
                    if a < b:
                        lo, hi = rng(a, b)
                        inner.append(f"for (int64_t j = {lo}; j < {hi}; j++) {tap(str(off))}")
        elif self.row is not None:
            for kw, off, jlo, jhi in row:
                lo, hi = rng(jlo, jhi)
                inner.append(f"for (int64_t j = {lo}; j < {hi}; j++) {tap(str(off))}")
        else:
            inner.append(self._rolled_row(rng, tap))
        taps.append(indent("\n".join(inner), L))
        taps += close[::-1]
        chunk += taps
        chunk.append(f"for (int64_t j = 0; j < jn; j++) {{ const int64_t o = orow + j0 + j; {finish} }}")
        body.append(indent("\n".join(chunk)))
        body.append("}")
        lines.append(indent("\n".join(body), L))
        lines += ["    " * i + "}" for i in reversed(range(L))]
        return "\n".join(lines)

    def _rolled_row(self, rng, tap) -> str:
        """The last dim's taps in a C loop (a row too long to unroll), each over the outputs whose
        tap is inside, found by formula: the same updates in the same order as the unrolled row."""
        L = self.nsp - 1
        first, end = c_tap_range("off", self.out[L], self.strides[L], 0, self.in_sp[L])
        lo, hi = rng("ja", "jb")
        return "\n".join([
            f"for (int64_t kw = 0; kw < {self.kernel[L]}; kw++) {{",
            f"    const int64_t off = kw * {self.dil[L]} - {self.begin[L]};",
            f"    const int64_t ja = {first}, jb = {end};",
            f"    for (int64_t j = {lo}; j < {hi}; j++) {tap('off')}",
            "}"])

    def wrap(self, num: Num, slice_code: str) -> str:
        """The tables, then slice_code for every (n, c) slice, with x / y pointing at it."""
        return "\n".join(self.tables + [
            f"for (int64_t nc = 0; nc < {self.NC}; nc++) {{",
            f"    const {num.c} *x = in0 + nc * {prod(self.in_sp)};",
            f"    {num.c} *y = out0 + nc * {prod(self.out)};",
            indent(slice_code),
            "}"])


def _exact_max(w: _Window, num: Num, weights, with_index: bool) -> str:
    """Max pooling of one slice one output at a time, in window order, NaN counting as the
    maximum (the first NaN's index): the path for slices that hold a NaN."""
    n = w.nsp
    lines = []
    for i in range(n):
        pad = "    " * i
        lines.append(f"{pad}for (int64_t o{i} = 0; o{i} < {w.out[i]}; o{i}++) {{")
        lines.append(f"{pad}    const int64_t s{i} = o{i} * {w.strides[i]} - {w.begin[i]};")
        if i < n - 1:
            lines += [f"{pad}    {ln}" for ln in w.range_lines(i)]
    o = " + ".join(f"o{i} * {prod(w.out[i + 1:])}" for i in range(n))
    body = [f"{num.ct} best = {num.lowest()};"]
    if with_index:
        body.append(f"int64_t at = {w.first_tap(weights, f's{n - 1}')};")
    for i in range(n - 1):
        prev_r = f"r{i - 1}" if i else "0"
        body.append("    " * i + f"for (int64_t k{i} = {w.lo[i]}; k{i} < {w.hi[i]}; k{i}++) {{")
        body.append("    " * i + f"    const int64_t c{i} = s{i} + k{i} * {w.dil[i]};")
        body.append("    " * i + f"    const int64_t r{i} = {prev_r} + c{i} * {w.in_st[i]};")
    L = n - 1
    r = f"r{L - 1}" if L else "0"
    pos = " + ".join([f"c{i} * {weights[i]}" for i in range(L)] + [f"c * {weights[L]}"]) if with_index else ""
    take = "best = v; at = " + pos + ";" if with_index else "best = v;"
    body.append("    " * L + f"for (int64_t kw = 0; kw < {w.kernel[L]}; kw++) {{")
    body.append("    " * L + f"    const int64_t c = s{L} + kw * {w.dil[L]};")
    body.append("    " * L + f"    if (c < 0 || c >= {w.in_sp[L]}) continue;")
    body.append("    " * L + f"    const {num.ct} v = {num.load(f'x[{r} + c]')};")
    body.append("    " * L + f"    if ((v > best) | ((v != v) & (best == best))) {{ {take} }}")
    body.append("    " * L + "}")
    body += ["    " * i + "}" for i in reversed(range(L))]
    body.append(f"y[{o}] = {num.store('best')};")
    if with_index:
        body.append(f"out1[nc * {prod(w.out)} + {o}] = nc * {prod(w.in_sp)} + at;")
    lines.append(indent("\n".join(body), n))
    lines += ["    " * i + "}" for i in reversed(range(n))]
    return "\n".join(lines)


@axis_kernel("max_pool")
def max_pool(ctx: KernelContext) -> str:
    """A slice without NaN takes the vectorized row loops (plain max, index of the first larger
    value); a slice holding a NaN takes _exact_max."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    w = _Window(ctx)
    if w.NC * prod(w.out) == 0:
        return "    /* empty */"
    with_index = len(ctx.outputs) > 1
    L = w.nsp - 1
    states = [(num.ct, "best", num.lowest())]
    update = "best[j] = v > best[j] ? v : best[j];"
    finish = f"y[o] = {num.store('best[j]')};"
    weights = None
    if with_index:
        # index of a tap: (n * C + c) * prod(in_sp) + its spatial position in storage order
        weights = w.in_st if not ctx.attrs.get("storage_order", 0) else strides(w.in_sp[::-1])[::-1]
        first = w.first_tap(weights, f"((j0 + j) * {w.strides[L]} - {w.begin[L]})")
        states.append(("int64_t", "at", "0"))
        update = "{ const int c = v > best[j]; best[j] = c ? v : best[j]; at[j] = c ? pos : at[j]; }"
        # where nothing beat the lowest value (every tap inside holds it), the first tap inside wins
        finish = (f"{{ if (best[j] == {num.lowest()}) at[j] = {first}; {finish} "
                  f"out1[nc * {prod(w.out)} + o] = nc * {prod(w.in_sp)} + at[j]; }}")
    fast = w.generate(num, states, update, finish, weights)
    if not num.is_float:
        return mark("pool", w.path, indent(w.wrap(num, fast)))
    code = (f"int nan = 0;\n"
            f"for (int64_t i = 0; i < {prod(w.in_sp)}; i++) nan |= x[i] != x[i];\n"
            f"if (!nan) {{\n{indent(fast)}\n}} else {{\n{indent(_exact_max(w, num, weights, with_index))}\n}}")
    return mark("pool", w.path, indent(w.wrap(num, code)))


@axis_kernel("average_pool", "lp_pool")
def average_pool(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    ct, f = num.ct, num.f
    w = _Window(ctx)
    if w.NC * prod(w.out) == 0:
        return "    /* empty */"
    states = [(ct, "s", f"({ct})0")]
    if ctx.node.op == "average_pool":
        update = "s[j] += v;"
        terms = w.count_terms(bool(ctx.attrs.get("count_include_pad", 0)))
        wide = "(int64_t)" if prod(w.kernel) >= 2 ** 31 else ""  # a product of int literals would overflow
        count = wide + " * ".join(terms)
        finish = f"y[o] = {num.store(f's[j] / ({ct})({count})')};"
    else:
        p = ctx.attrs.get("p", 2)
        if p == 1:
            update, res = f"s[j] += fabs{f}(v);", "s[j]"
        elif p == 2:
            update, res = "s[j] += v * v;", f"sqrt{f}(s[j])"
        else:
            pl = float_literal(p, ct)
            inv = float_literal(float(np.dtype(np.float64 if ct == "double" else np.float32).type(1.0 / p)), ct)
            update, res = f"s[j] += pow{f}(fabs{f}(v), {pl});", f"pow{f}(s[j], {inv})"
        finish = f"y[o] = {num.store(res)};"
    code = w.generate(num, states, update, finish)
    return mark("pool", w.path, indent(w.wrap(num, code)))


@axis_kernel("global_average_pool", "global_max_pool", "global_lp_pool")
@prints_kir
def global_pool(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    g = Groups(x.shape, range(2, len(x.shape)))
    op = ctx.node.op
    if op == "global_lp_pool" and ctx.attrs.get("p", 2) not in (1, 2):
        ct = compute_type(num.dt)
        p = ctx.attrs["p"]
        inv = float(np.dtype(np.float64 if ct.short == "f64" else np.float32).type(1.0 / p))
        red = Reduction((Phase("s", ct, kir.zero(ct),
                               lambda a, v, _: a + kir.math("pow", kir.math("fabs", v), kir.lit(p, ct)),
                               lambda a, b: a + b, lanes=True),),
                        lambda r: kir.math("pow", r["s"], kir.lit(inv, ct)), ct, loader(num.dt))
    else:
        name = {"global_average_pool": "reduce_mean", "global_max_pool": "reduce_max"}.get(op)
        if name is None:
            name = "reduce_l1" if ctx.attrs.get("p", 2) == 1 else "reduce_l2"
        red = reduction_for(name, num, g.n_red)
    return render(ctx, emit_reduction(ctx, g, red, num))


@axis_kernel("max_unpool")
@prints_kir
def max_unpool(ctx: KernelContext) -> str:
    """Zeros, then X scattered to the flat positions I (positions outside the output are skipped)."""
    out = ctx.outputs[0]
    n_out, n_in = prod(out.shape), prod(ctx.inputs[0].shape)
    ins, outs = io(ctx)
    lines = [kir.Fill(outs[0], kir.idx(0), kir.idx(n_out), kir.zero(out.dtype), zero=True)] if n_out else []
    if n_in and n_out:
        i, t = kir.index_var("i"), kir.index_var("t")
        lines.append(kir.loop(i, n_in, kir.Declare(t, kir.cast(kir.INDEX, ins[1][i])),
                              kir.when((t >= 0).land(t < n_out), kir.store(outs[0], t, ins[0][i]))))
    return render(ctx, lines or kir.Comment("empty"))
