"""Softmax, LogSoftmax, Hardmax, DepthToSpace and SpaceToDepth kernels.
(Flatten is in copy.py; Dropout and the losses in misc.py.)

Softmax-like ops see the input as (outer, n, inner) around their axis. With inner == 1 each row
is contiguous: a max pass, an exp-and-sum pass (LANES partial sums), a scaling pass. With
inner > 1, blocks of up to BLOCK neighbouring rows are processed together so the inner loops
stay contiguous. The max is subtracted first; a row whose max is not finite is not shifted,
as in the reference. Half precision computes in float and rounds once on store.
"""
from __future__ import annotations

from ..context import KernelContext
from . import kernel
from ._axis import LANES, Num, indent, outer_n_inner, prod

BLOCK = 64


def row_max_helper(ctx: KernelContext, num: Num) -> str:
    """A static `ct pdc_row_max_<t>(const T *p, int64_t n)`: the max of a contiguous row, NaN if any
    element is NaN, -inf for an empty row. fp32 has an AVX-512 / AVX2 path (gcc keeps a NaN-aware
    max loop scalar)."""
    name = f"pdc_row_max_{num.dt.short}"
    ct = num.ct
    scalar = (f"    {ct} m = {num.lowest()};\n"
              f"    int nan = 0;\n"
              f"    for (; i < n; i++) {{ const {ct} v = {num.load('p[i]')}; m = v > m ? v : m; nan |= v != v; }}\n"
              f"    return nan ? ({ct})NAN : m;\n")
    if num.dt.short != "f32":
        code = f"static inline {ct} {name}(const {num.c} *p, int64_t n) {{\n    int64_t i = 0;\n{scalar}}}\n"
        return ctx.helper(name, code)
    code = f"""#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
static inline float {name}(const float *p, int64_t n) {{
    int64_t i = 0;
    float m = -INFINITY;
    int nan = 0;
#if defined(__AVX512F__)
    if (n >= 64) {{
        __m512 a0 = _mm512_set1_ps(-INFINITY), a1 = a0, a2 = a0, a3 = a0;
        __mmask16 u = 0;
        for (; i + 64 <= n; i += 64) {{
            __m512 v0 = _mm512_loadu_ps(p + i), v1 = _mm512_loadu_ps(p + i + 16);
            __m512 v2 = _mm512_loadu_ps(p + i + 32), v3 = _mm512_loadu_ps(p + i + 48);
            a0 = _mm512_max_ps(a0, v0); a1 = _mm512_max_ps(a1, v1);
            a2 = _mm512_max_ps(a2, v2); a3 = _mm512_max_ps(a3, v3);
            u |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q);
        }}
        m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)));
        nan = u != 0;
    }}
#elif defined(__AVX2__)
    if (n >= 32) {{
        __m256 a0 = _mm256_set1_ps(-INFINITY), a1 = a0, a2 = a0, a3 = a0, u = _mm256_setzero_ps();
        for (; i + 32 <= n; i += 32) {{
            __m256 v0 = _mm256_loadu_ps(p + i), v1 = _mm256_loadu_ps(p + i + 8);
            __m256 v2 = _mm256_loadu_ps(p + i + 16), v3 = _mm256_loadu_ps(p + i + 24);
            a0 = _mm256_max_ps(a0, v0); a1 = _mm256_max_ps(a1, v1);
            a2 = _mm256_max_ps(a2, v2); a3 = _mm256_max_ps(a3, v3);
            u = _mm256_or_ps(u, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
        }}
        __m256 a = _mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        m = _mm_cvtss_f32(h);
        nan = _mm256_movemask_ps(u) != 0;
    }}
#endif
    for (; i < n; i++) {{ const float v = p[i]; m = v > m ? v : m; nan |= v != v; }}
    return nan ? NAN : m;
}}
"""
    return ctx.helper(name, code)


def _softmax_rows(ctx: KernelContext, op: str, num: Num, outer: int, n: int) -> str:
    """inner == 1: contiguous rows."""
    ct, f = num.ct, num.f
    rmax = row_max_helper(ctx, num)
    main = n - n % LANES if n >= 2 * LANES else 0
    lines = [f"const {num.c} *x = in0 + o * {n};",
             f"{num.c} *y = out0 + o * {n};"]
    if op == "hardmax":
        lines += [f"{ct} best = {num.load('x[0]')};", "int64_t at = 0;",
                  f"for (int64_t i = 1; i < {n}; i++) {{ const {ct} v = {num.load('x[i]')}; "
                  f"if (v > best || (v != v && best == best)) {{ best = v; at = i; }} }}",
                  f"for (int64_t i = 0; i < {n}; i++) y[i] = {num.store('0')};",
                  f"y[at] = {num.store('1')};"]
        return "\n".join(lines)
    lines += [f"{ct} m = {rmax}(x, {n});",
              f"if (!isfinite(m)) m = ({ct})0;",
              f"{ct} acc[{LANES}];",
              f"for (int u = 0; u < {LANES}; u++) acc[u] = 0;"]
    keep = op == "softmax" and num.ct == num.c  # the exponentials go to y, then are scaled in place
    e = f"exp{f}({num.load('x[i]')} - m)"
    if keep:
        step = f"{{ const int64_t i = r + u; const {ct} e = {e}; y[i] = e; acc[u] += e; }}"
        tail = f"{{ const {ct} e = {e}; y[i] = e; acc[0] += e; }}"
    else:
        step = f"{{ const int64_t i = r + u; acc[u] += {e}; }}"
        tail = f"acc[0] += {e};"
    if main:
        lines.append(f"for (int64_t r = 0; r < {main}; r += {LANES}) for (int u = 0; u < {LANES}; u++) {step}")
    lines.append(f"for (int64_t i = {main}; i < {n}; i++) {tail}")
    lines.append(f"{ct} s = acc[0];")
    lines.append(f"for (int u = 1; u < {LANES}; u++) s += acc[u];")
    if op == "softmax":
        if keep:
            lines.append(f"for (int64_t i = 0; i < {n}; i++) y[i] = y[i] / s;")
        else:
            lines.append(f"for (int64_t i = 0; i < {n}; i++) y[i] = {num.store(f'{e} / s')};")
    else:
        xi = num.load("x[i]")
        lines.append(f"const {ct} lse = log{f}(s);")
        lines.append(f"for (int64_t i = 0; i < {n}; i++) y[i] = {num.store(f'({xi} - m) - lse')};")
    return "\n".join(lines)


def _softmax_block(op: str, num: Num, n: int, inner: int, w: int) -> str:
    """inner > 1: w neighbouring rows (stride `inner` along the axis) at x / y."""
    ct, f = num.ct, num.f
    X = lambda: num.load(f"x[i * {inner} + j]")  # noqa: E731
    lines = [f"{ct} m[{w}];",
             f"for (int j = 0; j < {w}; j++) m[j] = {num.load('x[j]')};"]
    if op == "hardmax":
        lines += [f"int64_t at[{w}];",
                  f"for (int j = 0; j < {w}; j++) at[j] = 0;",
                  f"for (int64_t i = 1; i < {n}; i++) for (int j = 0; j < {w}; j++) {{ const {ct} v = {X()}; "
                  f"if (v > m[j] || (v != v && m[j] == m[j])) {{ m[j] = v; at[j] = i; }} }}",
                  f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) y[i * {inner} + j] = "
                  f"{num.store('0')};",
                  f"for (int j = 0; j < {w}; j++) y[at[j] * {inner} + j] = {num.store('1')};"]
        return "\n".join(lines)
    lines += [f"for (int64_t i = 1; i < {n}; i++) for (int j = 0; j < {w}; j++) {{ const {ct} v = {X()}; "
              f"m[j] = (v > m[j] || v != v) ? v : m[j]; }}",
              f"for (int j = 0; j < {w}; j++) if (!isfinite(m[j])) m[j] = ({ct})0;",
              f"{ct} s[{w}];",
              f"for (int j = 0; j < {w}; j++) s[j] = 0;"]
    e = f"exp{f}({X()} - m[j])"
    keep = op == "softmax" and num.ct == num.c
    if keep:
        lines.append(f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) {{ const {ct} e = {e}; "
                     f"y[i * {inner} + j] = e; s[j] += e; }}")
        lines.append(f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) "
                     f"y[i * {inner} + j] = y[i * {inner} + j] / s[j];")
    else:
        lines.append(f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) s[j] += {e};")
        if op == "softmax":
            val = f"{e} / s[j]"
        else:
            lines.append(f"for (int j = 0; j < {w}; j++) s[j] = log{f}(s[j]);")
            val = f"({X()} - m[j]) - s[j]"
        lines.append(f"for (int64_t i = 0; i < {n}; i++) for (int j = 0; j < {w}; j++) "
                     f"y[i * {inner} + j] = {num.store(val)};")
    return "\n".join(lines)


@kernel("softmax", "log_softmax", "hardmax")
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
    if inner == 1:
        return f"    for (int64_t o = 0; o < {outer}; o++) {{\n{indent(_softmax_rows(ctx, op, num, outer, n), 2)}\n    }}"
    bw = min(inner, BLOCK)
    full = inner - inner % bw
    parts = []
    ptrs = lambda: (f"const {num.c} *x = in0 + o * {n * inner} + j0;\n"  # noqa: E731
                    f"{num.c} *y = out0 + o * {n * inner} + j0;\n")
    if full:
        parts.append(f"for (int64_t j0 = 0; j0 < {full}; j0 += {bw}) {{\n"
                     f"{indent(ptrs() + _softmax_block(op, num, n, inner, bw))}\n}}")
    if full < inner:
        parts.append(f"{{\n    const int64_t j0 = {full};\n"
                     f"{indent(ptrs() + _softmax_block(op, num, n, inner, inner - full))}\n}}")
    return f"    for (int64_t o = 0; o < {outer}; o++) {{\n{indent(chr(10).join(parts), 2)}\n    }}"


# ---- block moves ----------------------------------------------------------------------------
@kernel("depth_to_space", "space_to_depth")
def depth_space(ctx: KernelContext) -> str:
    """Loops over the output in order; the input channel of each output element depends on mode."""
    bs = ctx.attrs["blocksize"]
    dcr = ctx.attrs.get("mode", "DCR") == "DCR"
    if prod(ctx.outputs[0].shape) == 0:
        return "    /* empty */"
    if ctx.node.op == "depth_to_space":
        N, C, H, W = ctx.inputs[0].shape
        Co = C // (bs * bs)
        ch = f"(i * {bs} + j) * {Co} + c" if dcr else f"c * {bs * bs} + i * {bs} + j"
        return (f"    int64_t o = 0;\n"
                f"    for (int64_t n = 0; n < {N}; n++) for (int64_t c = 0; c < {Co}; c++)\n"
                f"    for (int64_t h = 0; h < {H}; h++) for (int64_t i = 0; i < {bs}; i++)\n"
                f"    for (int64_t w = 0; w < {W}; w++) for (int64_t j = 0; j < {bs}; j++)\n"
                f"        out0[o++] = in0[((n * {C} + {ch}) * {H} + h) * {W} + w];")
    N, C, H, W = ctx.inputs[0].shape
    Ho, Wo = H // bs, W // bs
    if dcr:
        loops = (f"for (int64_t i = 0; i < {bs}; i++) for (int64_t j = 0; j < {bs}; j++) "
                 f"for (int64_t c = 0; c < {C}; c++)")
    else:
        loops = (f"for (int64_t c = 0; c < {C}; c++) for (int64_t i = 0; i < {bs}; i++) "
                 f"for (int64_t j = 0; j < {bs}; j++)")
    return (f"    int64_t o = 0;\n"
            f"    for (int64_t n = 0; n < {N}; n++) {loops}\n"
            f"    for (int64_t h = 0; h < {Ho}; h++) for (int64_t w = 0; w < {Wo}; w++)\n"
            f"        out0[o++] = in0[((n * {C} + c) * {H} + h * {bs} + i) * {W} + w * {bs} + j];")

