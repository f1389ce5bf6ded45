"""Shared pieces of the kernels that work along axes (reductions, normalizations, softmax, pooling).

- `Num`: the C spellings of one element type: storage type, the type arithmetic runs in (half
  precision computes in float, like the NumPy references), load / store conversions, literals.
- `Groups`: a tensor viewed as groups of elements reduced together (an axes set): adjacent dims of
  the same kind are merged, size-1 dims dropped, and loop nests are emitted over the kept dims
  (one group each, output index `o`) and over the reduced dims of one group.
- `outer_n_inner`: the (outer, n, inner) view of a tensor around one axis.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from ...ir.dtypes import DType
from ..context import KernelContext, strides
from ..ctypes_c import ctype, float_literal, int_literal
from . import kernel

def axis_kernel(*ops: str):
    """@kernel for this family: parameters the body does not use get a (void) cast (-Wextra clean)."""
    def wrap(fn):
        @functools.wraps(fn)
        def gen(ctx: KernelContext) -> str:
            body = fn(ctx)
            names = [f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))]
            unused = [n for n in names if not re.search(rf"\b{n}\b", body)]
            return "".join(f"    (void){n};\n" for n in unused) + body
        return kernel(*ops)(gen)
    return wrap


LANES = 64  # partial states of a contiguous reduction: gcc vectorizes the lane loop (16 lanes get unrolled
# into scalar code for max-like updates)


@dataclass(frozen=True)
class Num:
    """One element type as C sees it."""
    dt: DType

    @property
    def c(self) -> str:
        return ctype(self.dt)

    @property
    def is_float(self) -> bool:
        return self.dt.is_float

    @property
    def ct(self) -> str:
        """The arithmetic type: float for half precision, the type itself otherwise."""
        return KernelContext.compute_ctype(self.dt)

    def load(self, expr: str) -> str:
        return KernelContext.load(self.dt, expr)

    def store(self, expr: str) -> str:
        return KernelContext.store(self.dt, expr)

    @property
    def f(self) -> str:
        """The libm suffix of the arithmetic type (expf / exp)."""
        return "f" if self.ct == "float" else ""

    def lit(self, x: float) -> str:
        return float_literal(x, self.ct) if self.is_float else int_literal(int(x))

    def lowest(self) -> str:
        """The smallest value: -inf for floats, the minimum of an integer type, 0 for bool."""
        if self.is_float:
            return f"(-({self.ct})INFINITY)"
        return _int_limit(self.dt, low=True)

    def highest(self) -> str:
        if self.is_float:
            return f"(({self.ct})INFINITY)"
        return _int_limit(self.dt, low=False)


def _int_limit(dt: DType, low: bool) -> str:
    if dt.short == "bool":
        return "0" if low else "1"
    bits = dt.itemsize * 8
    if dt.short.startswith("u"):
        return "0" if low else f"UINT{bits}_MAX"
    return f"INT{bits}_MIN" if low else f"INT{bits}_MAX"


def prod(xs) -> int:
    return math.prod(xs)


def outer_n_inner(shape, axis: int) -> tuple[int, int, int]:
    return prod(shape[:axis]), shape[axis], prod(shape[axis + 1:])


def indent(code: str, n: int = 1) -> str:
    pad = "    " * n
    return "\n".join(pad + line if line else line for line in code.splitlines())


class Groups:
    """A static shape split into kept dims (one group per index) and reduced dims (a group's elements).

    dims: merged (size, stride, reduced) in memory order. Output index `o` of a group is row-major
    over the kept dims, which is the layout of the reduced output (with or without keepdims).
    """

    def __init__(self, shape, reduced_axes):
        red = set(reduced_axes)
        st = strides(shape)
        dims: list[tuple[int, int, bool]] = []
        for i, (d, s) in enumerate(zip(shape, st)):
            if d == 1:
                continue
            r = i in red
            if dims and dims[-1][2] == r and dims[-1][1] == d * s and d > 0:
                dims[-1] = (dims[-1][0] * d, s, r)
            else:
                dims.append((d, s, r))
        self.dims = dims
        self.kept = [(d, s) for d, s, r in dims if not r]
        self.red = [(d, s) for d, s, r in dims if r]
        self.n_out = prod(d for d, _ in self.kept)
        self.n_red = prod(d for d, _ in self.red)
        self.numel = prod(shape)

    @property
    def last_reduced(self) -> bool:
        """The innermost (stride-1) dim is reduced: each group has contiguous rows."""
        return bool(self.dims) and self.dims[-1][2]

    @property
    def last_kept(self) -> bool:
        return bool(self.dims) and not self.dims[-1][2]


def nest(dims, body: str, base: str, var: str, off: str) -> str:
    """Loops over `dims` [(size, stride)] with `off` the element offset (from `base`) of each index."""
    if not dims:
        return f"{{ const int64_t {off} = {base};\n{indent(body)}\n}}"
    lines, close = [], []
    prev = base
    for k, (size, stride) in enumerate(dims):
        pad = "    " * k
        cur = f"{var}_{k}" if k < len(dims) - 1 else off
        lines.append(f"{pad}for (int64_t {var}{k} = 0; {var}{k} < {size}; {var}{k}++) {{")
        lines.append(f"{pad}    const int64_t {cur} = {prev} + {var}{k} * {stride};")
        close.append(pad + "}")
        prev = cur
    lines.append(indent(body, len(dims)))
    return "\n".join(lines + close[::-1])


def row_sum_helper(ctx: KernelContext, num: Num, st: str, kind: str) -> str:
    """A static `st fn(const T *p, int64_t n, st c)` over a contiguous row, with LANES partial sums:
    kind "sum": sum of x; "sumsq": sum of x*x; "sqdev": sum of (x - c)^2. x is converted to st."""
    if num.dt.short == "f32" and st == "float":
        return row_f32_helper(ctx, kind)
    name = f"pdc_row_{kind}_{num.dt.short}_{st}"
    expr = {"sum": "v", "sumsq": "v * v", "sqdev": "(v - c) * (v - c)"}[kind]
    code = (f"static inline {st} {name}(const {num.c} *p, int64_t n, {st} c) {{\n"
            f"    (void)c;\n"
            f"    {st} acc[{LANES}];\n"
            f"    for (int u = 0; u < {LANES}; u++) acc[u] = 0;\n"
            f"    int64_t i = 0;\n"
            f"    for (; i + {LANES} <= n; i += {LANES})\n"
            f"        for (int u = 0; u < {LANES}; u++) {{ const {st} v = ({st}){num.load('p[i + u]')}; acc[u] += {expr}; }}\n"
            f"    for (; i < n; i++) {{ const {st} v = ({st}){num.load('p[i]')}; acc[0] += {expr}; }}\n"
            f"    {st} s = 0;\n"
            f"    for (int u = 0; u < {LANES}; u++) s += acc[u];\n"
            f"    return s;\n}}\n")
    return ctx.helper(name, code)


# ---- fp32 vector helpers (AVX-512 / AVX2 intrinsics with a plain C fallback) ---------------------
# gcc does not vectorize NaN-aware max loops reliably, nor exp at all (glibc's expf is a ~7 ns call),
# so the fp32 rows that matter (softmax, norms, reductions over a contiguous innermost dim) use these.
VEXP = r"""#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__)
static inline __m512 pdc_exp16(__m512 x) {
    /* clamp (NaN passes: max/min return their second operand when one is NaN) */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n); /* p * 2^n: overflows to inf, underflows through denormals */
}
#elif defined(__AVX2__)
static inline __m256 pdc_exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n as two in-range powers, so n in [-150, 129] neither wraps nor saturates early */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
#endif
/* y[i] = exp(x[i] - m) (y may be NULL), returns the sum of the exponentials. */
static inline float pdc_exp_sum_f32(const float *x, float *y, int64_t n, float m) {
    int64_t i = 0;
    float s = 0;
#if defined(__AVX512F__)
    const __m512 vm = _mm512_set1_ps(m);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        const __m512 e0 = pdc_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        const __m512 e1 = pdc_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
        if (y) { _mm512_storeu_ps(y + i, e0); _mm512_storeu_ps(y + i + 16, e1); }
        a0 = _mm512_add_ps(a0, e0);
        a1 = _mm512_add_ps(a1, e1);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = pdc_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
        if (y) _mm512_mask_storeu_ps(y + i, k, e);
        a0 = _mm512_mask_add_ps(a0, k, a0, e);
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__)
    const __m256 vm = _mm256_set1_ps(m);
    __m256 a0 = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256 e = pdc_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        if (y) _mm256_storeu_ps(y + i, e);
        a0 = _mm256_add_ps(a0, e);
    }
    if (i < n) { /* the last 1..7 elements through a padded vector */
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0}, e[8];
        const int r = (int)(n - i);
        for (int j = 0; j < r && j < 8; j++) t[j] = x[i + j] - m;
        _mm256_storeu_ps(e, pdc_exp8(_mm256_loadu_ps(t)));
        for (int j = 0; j < r && j < 8; j++) { if (y) y[i + j] = e[j]; s += e[j]; }
        i = n;
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s += _mm_cvtss_f32(h);
#endif
    for (; i < n; i++) { const float e = expf(x[i] - m); if (y) y[i] = e; s += e; }
    return s;
}
/* y[j] = exp(x[j] - m[j]) */
static inline void pdc_exp_sub_f32(const float *x, const float *m, float *y, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, pdc_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i),
                                                                _mm512_maskz_loadu_ps(k, m + i))));
    }
#elif defined(__AVX2__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, pdc_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(m + i))));
    if (i < n) {
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0}, e[8];
        const int r = (int)(n - i);
        for (int j = 0; j < r && j < 8; j++) t[j] = x[i + j] - m[i + j];
        _mm256_storeu_ps(e, pdc_exp8(_mm256_loadu_ps(t)));
        for (int j = 0; j < r && j < 8; j++) y[i + j] = e[j];
        i = n;
    }
#endif
    for (; i < n; i++) y[i] = expf(x[i] - m[i]);
}
"""




def vexp_helper(ctx: KernelContext) -> str:
    """Registers pdc_exp_sum_f32(x, y, n, m) (y = exp(x - m), y may be NULL; returns the sum) and
    pdc_exp_sub_f32(x, m, y, n) (y = exp(x - m), m per element). Cephes' expf range reduction and
    degree-6 polynomial: within 2 ulp of expf; NaN, inf and underflow behave like expf."""
    return ctx.helper("pdc_vexp_f32", VEXP)


_ROW_OPS = {  # op: (512-bit transform, 256-bit transform, scalar transform) of a loaded v
    "sum": ("v", "v", "v"),
    "sumsq": ("_mm512_mul_ps(v, v)", "_mm256_mul_ps(v, v)", "v * v"),
    "sqdev": ("_mm512_mul_ps(_mm512_sub_ps(v, vc), _mm512_sub_ps(v, vc))",
              "_mm256_mul_ps(_mm256_sub_ps(v, vc), _mm256_sub_ps(v, vc))", "(v - c) * (v - c)"),
    "abs": ("_mm512_abs_ps(v)", "_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v)", "fabsf(v)"),
}


def row_f32_helper(ctx: KernelContext, op: str) -> str:
    """`float pdc_rowf_<op>(const float *p, int64_t n, float c)` over a contiguous fp32 row:
    sum / sumsq / sqdev (sum of (x - c)^2) / abs (sum of |x|) with 4 vector accumulators, or
    max / min (NaN if any element is NaN; -inf / +inf for an empty row)."""
    name = f"pdc_rowf_{op}"
    if op in ("max", "min"):
        big = op == "max"
        init = "-INFINITY" if big else "INFINITY"
        cmp = ">" if big else "<"
        code = f"""#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
static inline float {name}(const float *p, int64_t n, float c) {{
    (void)c;
    int64_t i = 0;
    float s = {init};
    int nan = 0;
#if defined(__AVX512F__)
    const __m512 fill = _mm512_set1_ps({init});
    __m512 a0 = fill, a1 = fill, a2 = fill, a3 = fill;
    __mmask16 u = 0;
    for (; i + 64 <= n; i += 64) {{
        const __m512 v0 = _mm512_loadu_ps(p + i), v1 = _mm512_loadu_ps(p + i + 16);
        const __m512 v2 = _mm512_loadu_ps(p + i + 32), v3 = _mm512_loadu_ps(p + i + 48);
        a0 = _mm512_{op}_ps(a0, v0); a1 = _mm512_{op}_ps(a1, v1);
        a2 = _mm512_{op}_ps(a2, v2); a3 = _mm512_{op}_ps(a3, v3);
        u |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q);
    }}
    for (; i < n; i += 16) {{
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_mask_loadu_ps(fill, k, p + i);
        a0 = _mm512_{op}_ps(a0, v);
        u |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }}
    s = _mm512_reduce_{op}_ps(_mm512_{op}_ps(_mm512_{op}_ps(a0, a1), _mm512_{op}_ps(a2, a3)));
    nan = u != 0;
#elif defined(__AVX2__)
    const __m256 fill = _mm256_set1_ps({init});
    __m256 a0 = fill, a1 = fill, a2 = fill, a3 = fill, u = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {{
        const __m256 v0 = _mm256_loadu_ps(p + i), v1 = _mm256_loadu_ps(p + i + 8);
        const __m256 v2 = _mm256_loadu_ps(p + i + 16), v3 = _mm256_loadu_ps(p + i + 24);
        a0 = _mm256_{op}_ps(a0, v0); a1 = _mm256_{op}_ps(a1, v1);
        a2 = _mm256_{op}_ps(a2, v2); a3 = _mm256_{op}_ps(a3, v3);
        u = _mm256_or_ps(u, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
    }}
    for (; i + 8 <= n; i += 8) {{
        const __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_{op}_ps(a0, v);
        u = _mm256_or_ps(u, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }}
    const __m256 a = _mm256_{op}_ps(_mm256_{op}_ps(a0, a1), _mm256_{op}_ps(a2, a3));
    __m128 h = _mm_{op}_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_{op}_ps(h, _mm_movehl_ps(h, h));
    h = _mm_{op}_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
    nan = _mm256_movemask_ps(u) != 0;
#endif
    for (; i < n; i++) {{ const float v = p[i]; s = v {cmp} s ? v : s; nan |= v != v; }}
    return nan ? NAN : s;
}}
"""
        return ctx.helper(name, code)
    t512, t256, t1 = _ROW_OPS[op]
    code = f"""#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
static inline float {name}(const float *p, int64_t n, float c) {{
    (void)c;
    int64_t i = 0;
    float s = 0;
#if defined(__AVX512F__)
    const __m512 vc = _mm512_set1_ps(c);
    (void)vc;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 64 <= n; i += 64) {{
        __m512 v = _mm512_loadu_ps(p + i);
        a0 = _mm512_add_ps(a0, {t512});
        v = _mm512_loadu_ps(p + i + 16);
        a1 = _mm512_add_ps(a1, {t512});
        v = _mm512_loadu_ps(p + i + 32);
        a2 = _mm512_add_ps(a2, {t512});
        v = _mm512_loadu_ps(p + i + 48);
        a3 = _mm512_add_ps(a3, {t512});
    }}
    for (; i < n; i += 16) {{
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, p + i);
        a0 = _mm512_mask_add_ps(a0, k, a0, {t512});
    }}
    s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(__AVX2__)
    const __m256 vc = _mm256_set1_ps(c);
    (void)vc;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= n; i += 32) {{
        __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_add_ps(a0, {t256});
        v = _mm256_loadu_ps(p + i + 8);
        a1 = _mm256_add_ps(a1, {t256});
        v = _mm256_loadu_ps(p + i + 16);
        a2 = _mm256_add_ps(a2, {t256});
        v = _mm256_loadu_ps(p + i + 24);
        a3 = _mm256_add_ps(a3, {t256});
    }}
    for (; i + 8 <= n; i += 8) {{
        const __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_add_ps(a0, {t256});
    }}
    const __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
    for (; i < n; i++) {{ const float v = p[i]; s += {t1}; }}
    return s;
}}
"""
    return ctx.helper(name, code)
