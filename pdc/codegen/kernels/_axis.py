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
from ...ir.symbolic import same_size
from ..context import KernelContext, strides
from ..ctypes_c import ctype, float_literal, int_literal
from . import kernel, native

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


STABLE_SORT_C = """/* Sorts the n indices in idx stably, a bottom-up merge sort (tmp: n more): before(ctx, a, b) says
   whether index a goes strictly before index b. */
typedef int (*pdc_before_fn)(const void *ctx, int64_t a, int64_t b);
static void pdc_sort_stable(int64_t *idx, int64_t *tmp, int64_t n, pdc_before_fn before, const void *ctx) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            const int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t l = lo, r = mid, k = lo;
            while (l < mid && r < hi) tmp[k++] = before(ctx, idx[r], idx[l]) ? idx[r++] : idx[l++];
            while (l < mid) tmp[k++] = idx[l++];
            while (r < hi) tmp[k++] = idx[r++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}
"""


def stable_sort(ctx: KernelContext) -> str:
    """Registers pdc_sort_stable (a stable sort of int64 indices by a comparison callback); returns
    its name. Register it before the helpers that call it."""
    return ctx.helper("pdc_sort_stable", STABLE_SORT_C)


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
            if same_size(d, 1):  # (a size known only at run time stays a dim)
                continue
            r = i in red
            if dims and dims[-1][2] == r and same_size(dims[-1][1], d * s) and d > 0:
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


# ---- fp32 row helpers: plain C with native vector loops (native.py; x86/rows.py) -------------------
# gcc does not vectorize NaN-aware max loops reliably, nor exp at all (glibc's expf is a ~7 ns call),
# so the fp32 rows that matter (softmax, norms, reductions over a contiguous innermost dim) use these.
VEXP = r"""@native vexp @end
/* y[i] = exp(x[i] - m) (y may be NULL), returns the sum of the exponentials. */
static inline float pdc_exp_sum_f32(const float *x, float *y, int64_t n, float m) {
    int64_t i = 0;
    float s = 0;
@native exp_sum_f32 @end
    for (; i < n; i++) { const float e = expf(x[i] - m); if (y) y[i] = e; s += e; }
    return s;
}
/* y[j] = exp(x[j] - m[j]) */
static inline void pdc_exp_sub_f32(const float *x, const float *m, float *y, int64_t n) {
    int64_t i = 0;
@native exp_sub_f32 @end
    for (; i < n; i++) y[i] = expf(x[i] - m[i]);
}
"""


def vexp_helper(ctx: KernelContext) -> str:
    """Registers pdc_exp_sum_f32(x, y, n, m) (y = exp(x - m), y may be NULL; returns the sum) and
    pdc_exp_sub_f32(x, m, y, n) (y = exp(x - m), m per element). Cephes' expf range reduction and
    degree-6 polynomial: within 2 ulp of expf; NaN, inf and underflow behave like expf."""
    return ctx.helper("pdc_vexp_f32", native.fill(ctx, VEXP))


_ROW_SCALAR = {"sum": "v", "sumsq": "v * v", "sqdev": "(v - c) * (v - c)", "abs": "fabsf(v)"}  # of a loaded v


def row_f32_helper(ctx: KernelContext, op: str) -> str:
    """`float pdc_rowf_<op>(const float *p, int64_t n, float c)` over a contiguous fp32 row:
    sum / sumsq / sqdev (sum of (x - c)^2) / abs (sum of |x|), or max / min (NaN if any element is
    NaN; -inf / +inf for an empty row). The native loops keep 4 vector accumulators."""
    name = f"pdc_rowf_{op}"
    if op in ("max", "min"):
        big = op == "max"
        init = "-INFINITY" if big else "INFINITY"
        cmp = ">" if big else "<"
        code = f"""@native vector_include @end
static inline float {name}(const float *p, int64_t n, float c) {{
    (void)c;
    int64_t i = 0;
    float s = {init};
    int nan = 0;
@native row_minmax_f32 @end
    for (; i < n; i++) {{ const float v = p[i]; s = v {cmp} s ? v : s; nan |= v != v; }}
    return nan ? NAN : s;
}}
"""
        return ctx.helper(name, native.fill(ctx, code, op=op, init=init))
    t1 = _ROW_SCALAR[op]
    code = f"""@native vector_include @end
static inline float {name}(const float *p, int64_t n, float c) {{
    (void)c;
    int64_t i = 0;
    float s = 0;
@native row_sum_f32 @end
    for (; i < n; i++) {{ const float v = p[i]; s += {t1}; }}
    return s;
}}
"""
    return ctx.helper(name, native.fill(ctx, code, op=op))
