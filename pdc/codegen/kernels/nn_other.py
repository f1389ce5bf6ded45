"""Softmax, LogSoftmax, Hardmax, DepthToSpace and SpaceToDepth kernels.
(Flatten is in copy.py; Dropout and the losses in misc.py.)

Softmax-like ops see the input as (outer, n, inner) around their axis. With inner == 1 each row
is contiguous: a max pass, an exp-and-sum pass, a scaling pass. With inner > 1, blocks of up to
BLOCK neighbouring rows are processed together so the inner loops stay contiguous. The max is
subtracted first; a row whose max is not finite is not shifted, as in the reference. Half
precision computes in float and rounds once on store.

fp32 exponentials use _axis.vexp_helper's vectorized exp (glibc's expf is a scalar call of ~7 ns).

Paths (pdc/codegen/kernels/paths.py, family "softmax"): "rows" (inner == 1, its hard limit) and
"block" (any inner, the general path; inner == 1 is a block of one row).
"""
from __future__ import annotations

from ...ir.symbolic import is_runtime, same_size
from .. import kir
from ..context import KernelContext
from ._axis import LANES, Num, axis_kernel, indent, outer_n_inner, prod, row_f32_helper, vexp_helper
from ._kir import io, prints_kir, render
from .loops import PAR, flat_index
from .paths import declare, mark, take

declare("softmax", "block", "rows")

BLOCK = 64


def row_max_helper(ctx: KernelContext, num: Num) -> str:
    """A static `ct fn(const T *p, int64_t n, ct unused)`: the max of a contiguous row, NaN if any
    element is NaN, -inf for an empty row. fp32: _axis.row_f32_helper; other types: LANES partial
    maxima, the NaN-sticky update written with a bitwise | so gcc can vectorize it."""
    if num.dt.short == "f32":
        return row_f32_helper(ctx, "max")
    name = f"pdc_row_max_{num.dt.short}"
    ct = num.ct
    upd = lambda a, v: f"((({v}) > ({a})) | (({v}) != ({v}))) ? ({v}) : ({a})"  # noqa: E731
    code = (f"static inline {ct} {name}(const {num.c} *p, int64_t n, {ct} c) {{\n"
            f"    (void)c;\n"
            f"    {ct} acc[{LANES}];\n"
            f"    for (int u = 0; u < {LANES}; u++) acc[u] = {num.lowest()};\n"
            f"    int64_t i = 0;\n"
            f"    for (; i + {LANES} <= n; i += {LANES})\n"
            f"        for (int u = 0; u < {LANES}; u++) {{ const {ct} v = {num.load('p[i + u]')}; "
            f"acc[u] = {upd('acc[u]', 'v')}; }}\n"
            f"    for (; i < n; i++) {{ const {ct} v = {num.load('p[i]')}; acc[0] = {upd('acc[0]', 'v')}; }}\n"
            f"    {ct} m = acc[0];\n"
            f"    for (int u = 1; u < {LANES}; u++) m = {upd('m', 'acc[u]')};\n"
            f"    return m;\n}}\n")
    return ctx.helper(name, code)


def _first_max(v: str, best: str) -> str:
    """v becomes the new maximum: larger, or the first NaN (branch-free)."""
    return f"(({v} > {best}) | (({v} != {v}) & ({best} == {best})))"


def _softmax_rows(ctx: KernelContext, op: str, num: Num, n: int) -> str:
    """inner == 1: contiguous rows."""
    ct, f = num.ct, num.f
    lines = [f"const {num.c} *x = in0 + o * {n};",
             f"{num.c} *y = out0 + o * {n};"]
    if op == "hardmax":
        lines += [f"{ct} best = {num.load('x[0]')};", "int64_t at = 0;",
                  f"for (int64_t i = 1; i < {n}; i++) {{ const {ct} v = {num.load('x[i]')}; "
                  f"const int c = {_first_max('v', 'best')}; best = c ? v : best; at = c ? i : at; }}",
                  f"for (int64_t i = 0; i < {n}; i++) y[i] = {num.store('0')};",
                  f"y[at] = {num.store('1')};"]
        return "\n".join(lines)
    rmax = row_max_helper(ctx, num)
    lines += [f"{ct} m = {rmax}(x, {n}, 0);",
              "if (!isfinite(m)) {  /* +-inf or NaN in the row: all NaN, as ONNX Runtime gives */",
              f"    for (int64_t i = 0; i < {n}; i++) y[i] = {num.store('NAN')};",
              "    continue;",
              "}"]
    xi = num.load("x[i]")
    if num.dt.short == "f32":
        vexp_helper(ctx)
        if op == "softmax":
            lines += [f"const float s = pdc_exp_sum_f32(x, y, {n}, m);",
                      f"for (int64_t i = 0; i < {n}; i++) y[i] = y[i] / s;"]
        else:
            lines += [f"const float lse = logf(pdc_exp_sum_f32(x, 0, {n}, m));",
                      f"for (int64_t i = 0; i < {n}; i++) y[i] = (x[i] - m) - lse;"]
        return "\n".join(lines)
    main = n - n % LANES if n >= 2 * LANES else 0
    e = f"exp{f}({xi} - m)"
    lines += [f"{ct} acc[{LANES}];",
              f"for (int u = 0; u < {LANES}; u++) acc[u] = 0;"]
    if main:
        lines.append(f"for (int64_t r = 0; r < {main}; r += {LANES}) for (int u = 0; u < {LANES}; u++) "
                     f"{{ const int64_t i = r + u; acc[u] += {e}; }}")
    lines.append(f"for (int64_t i = {main}; i < {n}; i++) acc[0] += {e};")
    lines.append(f"{ct} s = 0;")
    lines.append(f"for (int u = 0; u < {LANES}; u++) s += acc[u];")
    if op == "softmax":
        lines.append(f"for (int64_t i = 0; i < {n}; i++) y[i] = {num.store(f'{e} / s')};")
    else:
        lines.append(f"const {ct} lse = log{f}(s);")
        lines.append(f"for (int64_t i = 0; i < {n}; i++) y[i] = {num.store(f'({xi} - m) - lse')};")
    return "\n".join(lines)


def _softmax_block(ctx: KernelContext, op: str, num: Num, n: int, inner: int, w: int) -> str:
    """inner > 1: w neighbouring rows (stride `inner` along the axis) at x / y."""
    body = _softmax_block_body(ctx, op, num, n, inner, w)
    if op == "hardmax":
        return body
    # a row whose max is +-inf or NaN is all NaN, as ONNX Runtime gives
    return body + (f"\nfor (int j = 0; j < {w}; j++) if (nonfinite[j]) for (int64_t i = 0; i < {n}; i++) "
                   f"y[i * {inner} + j] = {num.store('NAN')};")


def _softmax_block_body(ctx: KernelContext, op: str, num: Num, n: int, inner: int, w: int) -> str:
    ct, f = num.ct, num.f
    X = lambda: num.load(f"x[i * {inner} + j]")  # noqa: E731
    lines = [f"{ct} m[{w}];",
             f"for (int j = 0; j < {w}; j++) m[j] = {num.load('x[j]')};"]
    if op == "hardmax":
        lines += [f"int64_t at[{w}];",
                  f"for (int j = 0; j < {w}; j++) at[j] = 0;",
                  f"for (int64_t i = 1; i < {n}; i++) for (int j = 0; j < {w}; j++) {{ const {ct} v = {X()}; "
                  f"const int c = {_first_max('v', 'm[j]')}; m[j] = c ? v : m[j]; at[j] = c ? i : at[j]; }}",
                  f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) y[i * {inner} + j] = "
                  f"{num.store('0')};",
                  f"for (int j = 0; j < {w}; j++) y[at[j] * {inner} + j] = {num.store('1')};"]
        return "\n".join(lines)
    lines += [f"for (int64_t i = 1; i < {n}; i++) for (int j = 0; j < {w}; j++) {{ const {ct} v = {X()}; "
              f"m[j] = ((v > m[j]) | (v != v)) ? v : m[j]; }}",
              f"int nonfinite[{w}];",
              f"for (int j = 0; j < {w}; j++) {{ nonfinite[j] = !isfinite(m[j]); m[j] = nonfinite[j] ? ({ct})0 : m[j]; }}",
              f"{ct} s[{w}];",
              f"for (int j = 0; j < {w}; j++) s[j] = 0;"]
    if num.dt.short == "f32":
        vexp_helper(ctx)
        if op == "softmax":
            lines += [f"for (int64_t i = 0; i < {n}; i++) {{",
                      f"    pdc_exp_sub_f32(x + i * {inner}, m, y + i * {inner}, {w});",
                      f"    for (int j = 0; j < {w}; j++) s[j] += y[i * {inner} + j];",
                      "}",
                      f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) "
                      f"y[i * {inner} + j] = y[i * {inner} + j] / s[j];"]
        else:
            lines += [f"float e[{w}];",
                      f"for (int64_t i = 0; i < {n}; i++) {{",
                      f"    pdc_exp_sub_f32(x + i * {inner}, m, e, {w});",
                      f"    for (int j = 0; j < {w}; j++) s[j] += e[j];",
                      "}",
                      f"for (int j = 0; j < {w}; j++) s[j] = logf(s[j]);",
                      f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) "
                      f"y[i * {inner} + j] = (x[i * {inner} + j] - m[j]) - s[j];"]
        return "\n".join(lines)
    e = f"exp{f}({X()} - m[j])"
    lines.append(f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) s[j] += {e};")
    if op == "softmax":
        val = f"{e} / s[j]"
    else:
        lines.append(f"for (int j = 0; j < {w}; j++) s[j] = log{f}(s[j]);")
        val = f"({X()} - m[j]) - s[j]"
    lines.append(f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) "
                 f"y[i * {inner} + j] = {num.store(val)};")
    return "\n".join(lines)


@axis_kernel("softmax", "log_softmax", "hardmax")
def softmax(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    if not num.is_float:
        ctx.fail(f"{x.dtype} input is not supported")
    op = ctx.node.op
    axis = ctx.attrs.get("axis", -1) % len(x.shape)
    outer, n, inner = outer_n_inner(x.shape, axis)
    if outer * n * inner == 0:
        return "    /* empty */"
    if same_size(inner, 1) and take("softmax", "rows"):
        return mark("softmax", "rows",
                    f"    for (int64_t o = 0; o < {outer}; o++) {{\n{indent(_softmax_rows(ctx, op, num, n), 2)}\n    }}")
    # a width known only at run time: blocks of one column (the block's registers are sized when compiling)
    bw = 1 if is_runtime(inner) else min(inner, BLOCK)
    full = inner if bw == 1 else inner - inner % bw
    parts = []
    ptrs = (f"const {num.c} *x = in0 + o * {n * inner} + j0;\n"
            f"{num.c} *y = out0 + o * {n * inner} + j0;\n")
    if full:
        parts.append(f"for (int64_t j0 = 0; j0 < {full}; j0 += {bw}) {{\n"
                     f"{indent(ptrs + _softmax_block(ctx, op, num, n, inner, bw))}\n}}")
    if full < inner:
        parts.append(f"{{\n    const int64_t j0 = {full};\n"
                     f"{indent(ptrs + _softmax_block(ctx, op, num, n, inner, inner - full))}\n}}")
    return mark("softmax", "block", f"    for (int64_t o = 0; o < {outer}; o++) {{\n{indent(chr(10).join(parts), 2)}\n    }}")


# ---- block moves ----------------------------------------------------------------------------
@axis_kernel("depth_to_space", "space_to_depth")
@prints_kir
def depth_space(ctx: KernelContext) -> str:
    """Loops over the output in order; the input channel of each output element depends on mode."""
    bs = ctx.attrs["blocksize"]
    dcr = ctx.attrs.get("mode", "DCR") == "DCR"
    if prod(ctx.outputs[0].shape) == 0:
        return render(ctx, kir.Comment("empty"))
    ins, outs = io(ctx)
    n, c, h, i, w, j, o = (kir.index_var(v) for v in ("n", "c", "h", "i", "w", "j", "o"))
    N, C, H, W = ctx.inputs[0].shape

    def nest(order, sizes, src) -> list:
        # o: the output element, row-major over the loops; every iteration writes its own
        body = [kir.Declare(o, flat_index(order, [sizes[v.name] for v in order])), kir.store(outs[0], o, ins[0][src])]
        for var in reversed(order):
            body = [kir.loop(var, sizes[var.name], body, annotation=PAR)]
        return body

    if ctx.node.op == "depth_to_space":
        Co = C // (bs * bs)
        ch = (i * bs + j) * Co + c if dcr else c * (bs * bs) + i * bs + j
        sizes = {"n": N, "c": Co, "h": H, "i": bs, "w": W, "j": bs}
        return render(ctx, nest([n, c, h, i, w, j], sizes, ((n * C + ch) * H + h) * W + w))
    Ho, Wo = H // bs, W // bs
    sizes = {"n": N, "c": C, "h": Ho, "i": bs, "w": Wo, "j": bs}
    order = [n, i, j, c, h, w] if dcr else [n, c, i, j, h, w]
    return render(ctx, nest(order, sizes, ((n * C + c) * H + h * bs + i) * W + w * bs + j))

