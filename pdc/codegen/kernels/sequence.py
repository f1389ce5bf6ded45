"""Recurrent layers (ONNX LSTM, GRU, RNN) as C: one task per (direction, batch entry).

Semantics are those of pdc/ir/ops/rnn.py. Each (direction, batch entry) pair is an independent
recurrence (split over threads when the layer is big enough); inside a pair every time step is a
few matrix-vector products (gates = bias + W x_t + R h) followed by the cell update, written as
passes over whole gate vectors: peepholes, clip, the direction's activations, the state update.

- Matrix-vector products, float compute with a constant matrix: packed at compile time into
  panels of 16 rows stored k-major ([panel][k][16], zero padded) and multiplied by an AVX-512 /
  AVX2 helper that keeps up to four panels of accumulators in registers. Runtime weights and
  float64: a plain row-by-row dot product over the stored matrix.
- Activations: float sigmoid and tanh (also inside ScaledTanh) run vectorized (an exp
  polynomial, ~2 ulp); the others are plain loops of their C expression.
Half-precision tensors compute in float and round once on store, like the reference.
A sequence length outside [0, seq_length] is clamped to it (the reference rejects it).

Paths (pdc/codegen/kernels/paths.py): family "rnn", how the matrices are multiplied: "packed"
(the panels above; hard limit: a constant matrix and float compute) or "rowdot" (the general
path); family "rnn-split": "parallel" (the (direction, batch) pairs over threads; hard limit: more
than one pair; heuristic: PARALLEL_MIN_MACS) or "serial".
"""
from __future__ import annotations

import re

import numpy as np

from ...ir.ops.rnn import _DIRECTIONS, _KINDS, ActivationError, resolve_activations
from ..context import KernelContext
from ..ctypes_c import float_literal
from . import kernel, native
from .activations import act_expr
from .paths import declare, mark, take

declare("rnn", "rowdot", "packed")
declare("rnn-split", "serial", "parallel")

PANEL = 16
PARALLEL_MIN_MACS = 1_000_000  # below ~30 us of work a second thread costs more than it saves (KERNELS.md §4)

GEMV16_C = r"""@native vector_include @end
/* acc[p*16 + l] += sum_k x[k] * w[(p*K + k)*16 + l] for the P panels of 16 rows of a packed matrix. */
static void pdc_seq_gemv16(float *restrict acc, const float *restrict x, const float *restrict w,
                           int64_t K, int64_t P) {
    int64_t p = 0;
@native seq_gemv16 @end
    for (; p < P; p++)
        for (int64_t k = 0; k < K; k++)
            for (int l = 0; l < 16; l++) acc[p * 16 + l] += x[k] * w[(p * K + k) * 16 + l];
}
"""

# exp by the Cephes expf reduction (2^n * a degree-6 polynomial of the remainder, ~2 ulp), then
# sigmoid = 1 / (1 + exp(-x)) in its stable form and tanh (a polynomial below |x| = 0.625, else
# 1 - 2 / (exp(2|x|) + 1)). The scalar form mirrors the vector one (same fma order) for tails.
VMATH_C = r"""@native vector_include @end
#define PDC_SEQ_EXP_POLY(F, r) F(F(F(F(F(1.9875691500e-4f, r, 1.3981999507e-3f), r, 8.3334519073e-3f), r, \
    4.1665795894e-2f), r, 1.6666665459e-1f), r, 5.0000001201e-1f)
#define PDC_SEQ_TANH_POLY(F, z) F(F(F(F(-5.70498872745e-3f, z, 2.06390887954e-2f), z, -5.37397155531e-2f), z, \
    1.33314422036e-1f), z, -3.33332819422e-1f)
static inline float pdc_seq_exp1(float x) {
    if (x != x) return x;
    if (x < -87.0f) return 0.0f; /* below FLT_MIN: flushed */
    x = x > 88.0f ? 88.0f : x;
    const float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    const float p = PDC_SEQ_EXP_POLY(fmaf, r);
    const float y = fmaf(p, r * r, r + 1.0f);
    union { uint32_t u; float f; } e = { (uint32_t)((int32_t)n + 127) << 23 };
    return y * e.f;
}
static inline float pdc_seq_sigmoid1(float x) {
    const float e = pdc_seq_exp1(-fabsf(x)), s = 1.0f / (1.0f + e);
    return x >= 0 ? s : e * s;
}
static inline float pdc_seq_tanh1(float x) {
    const float ax = fabsf(x);
    if (ax < 0.625f) { const float z = x * x; return fmaf(PDC_SEQ_TANH_POLY(fmaf, z) * z, x, x); }
    const float t = 1.0f - 2.0f / (pdc_seq_exp1(2.0f * ax) + 1.0f);
    return copysignf(t, x);
}
@native seq_vmath @end
static void pdc_seq_sigmoid(float *v, int64_t n) {
    int64_t j = 0;
@native seq_sigmoid @end
    for (; j < n; j++) v[j] = pdc_seq_sigmoid1(v[j]);
}
/* v[j] = exp(v[j] - shift); returns the sum */
static float pdc_seq_exp_sum(float *v, int64_t n, float shift) {
    int64_t j = 0;
    float total = 0;
@native seq_exp_sum @end
    for (; j < n; j++) { v[j] = pdc_seq_exp1(v[j] - shift); total += v[j]; }
    return total;
}
static void pdc_seq_tanh(float *v, int64_t n) {
    int64_t j = 0;
@native seq_tanh @end
    for (; j < n; j++) v[j] = pdc_seq_tanh1(v[j]);
}
"""


def vmath_helper(ctx: KernelContext) -> str:
    """Registers pdc_seq_sigmoid / pdc_seq_tanh / pdc_seq_exp_sum (in place over a float row)."""
    return ctx.helper("pdc_seq_vmath", native.fill(ctx, VMATH_C))


# ---- activations ----------------------------------------------------------------------------
# the RNN activations that are fused-op activations too (activations.py), by their ONNX RNN name
_SHARED_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "leakyrelu": "leaky_relu",
                       "hardsigmoid": "hard_sigmoid"}


def activation_expr(ctx: KernelContext, name: str, alpha, beta, ct: str, v: str) -> str:
    """C expression of an RNN activation (names as in ONNX, any case) applied to the variable v."""
    f = "f" if ct == "float" else ""
    lit = lambda x: float_literal(x, ct)  # noqa: E731
    n = name.lower()
    if n in _SHARED_ACTIVATIONS:
        params = {k: lit(p) for k, p in (("alpha", alpha), ("beta", beta)) if p is not None}
        return f"({act_expr(ctx, _SHARED_ACTIVATIONS[n], v, ct, **params)})"
    if n == "affine":
        return f"({lit(alpha)} * {v} + {lit(beta)})"
    if n == "thresholdedrelu":
        return f"({v} > {lit(alpha)} ? {v} : 0)"
    if n == "scaledtanh":
        return f"({lit(alpha)} * tanh{f}({lit(beta)} * {v}))"
    if n == "elu":
        return f"({v} >= 0 ? {v} : {lit(alpha)} * expm1{f}({v}))"
    if n == "softsign":
        return f"({v} / (1 + fabs{f}({v})))"
    if n == "softplus":
        return f"(({v} > 0 ? {v} : 0) + log1p{f}(exp{f}(-fabs{f}({v}))))"
    raise ValueError(name)


def _activation_names(op: str, attrs: dict) -> list[str]:
    ndir = _DIRECTIONS[attrs.get("direction", "forward")]
    return list(attrs.get("activations") or _KINDS[op][2] * ndir)


# ---- generator ------------------------------------------------------------------------------
class _Gen:
    """Emits the C of one recurrent node."""

    def __init__(self, ctx: KernelContext, op: str):
        self.ctx, self.op = ctx, op
        a = ctx.attrs
        x = ctx.inputs[0]
        self.dt = x.dtype
        self.T_c = ctx.ctype(x.dtype)
        self.ct = ctx.compute_ctype(x.dtype)
        self.layout = a.get("layout", 0)
        self.direction = a.get("direction", "forward")
        self.ndir = _DIRECTIONS[self.direction]
        self.G = _KINDS[op][0]
        self.H = ctx.inputs[2].shape[2]
        self.I = ctx.inputs[1].shape[2]
        self.T, self.N = (x.shape[0], x.shape[1]) if self.layout == 0 else (x.shape[1], x.shape[0])
        try:
            self.acts = resolve_activations(op, a)
        except ActivationError as e:
            ctx.fail(str(e))
        self.act_names = _activation_names(op, a)
        self.clip = a.get("clip")
        self.fn = ctx.fn_name
        self.nout = len(ctx.outputs)
        self.packed = False  # whether a matrix was packed into panels

    # -- small spellings
    def load(self, expr: str) -> str:
        return self.ctx.load(self.dt, expr)

    def store(self, expr: str) -> str:
        return self.ctx.store(self.dt, expr)

    def lit(self, x: float) -> str:
        return float_literal(x, self.ct)

    def clipped(self, v: str) -> str:
        if self.clip is None:
            return v
        c = self.lit(self.clip)
        return f"({v} < -{c} ? -{c} : ({v} > {c} ? {c} : {v}))"

    @staticmethod
    def padded(n: int) -> int:
        return -(-n // PANEL) * PANEL

    # -- matrix-vector products
    def matvec(self, acc: str, vec: str, idx: int, d: int, row0: int, rows: int) -> str:
        """acc[0:rows] += M[d][row0:row0+rows] @ vec, M = input idx (W: 1, R: 2)."""
        ctx = self.ctx
        K = ctx.inputs[idx].shape[2]
        data = ctx.const(idx)
        if data is not None and self.ct == "float" and take("rnn", "packed"):
            self.packed = True
            m = np.asarray(data[d, row0:row0 + rows], dtype=np.float32)  # (rows, K)
            P = -(-rows // PANEL)
            packed = np.zeros((P * PANEL, K), np.float32)
            packed[:rows] = m
            packed = packed.reshape(P, PANEL, K).transpose(0, 2, 1)  # [panel][k][16]
            ptr = ctx.add_weight(packed)
            ctx.helper("pdc_seq_gemv16", native.fill(ctx, GEMV16_C))
            return f"pdc_seq_gemv16({acc}, {vec}, {ptr}, {K}, {P});"
        base = f"a->in{idx} + {(d * self.G * self.H + row0) * K}"
        return (f"{{ const {self.T_c} *m = {base};\n"
                f"          for (int64_t j = 0; j < {rows}; j++, m += {K}) {{\n"
                f"              {self.ct} s = 0;\n"
                f"              for (int64_t k = 0; k < {K}; k++) s += ({self.ct}){self.load('m[k]')} * {vec}[k];\n"
                f"              {acc}[j] += s;\n"
                f"          }} }}")

    def bias_init(self, acc: str, d: int, parts: list[int], n: int) -> str:
        """acc[0:n] = sum of the bias slices (start offsets in B[d], length n each); zeros without B."""
        ctx = self.ctx
        if not ctx.has_input(3) or not parts:
            return f"for (int64_t j = 0; j < {self.padded(n)}; j++) {acc}[j] = 0;"
        data = ctx.const(3)
        if data is not None:
            wd = np.float64 if self.ct == "double" else np.float32
            total = np.zeros(self.padded(n), wd)
            for start in parts:
                total[:n] += np.asarray(data[d, start:start + n], dtype=wd)
            ptr = ctx.add_weight(total, self.ct)
            return f"memcpy({acc}, {ptr}, sizeof({self.ct}) * {self.padded(n)});"
        terms = " + ".join(f"({self.ct}){self.load(f'bd[{start} + j]')}" for start in parts)
        return (f"{{ const {self.T_c} *bd = a->in3 + {d * 2 * self.G * self.H};\n"
                f"          for (int64_t j = 0; j < {n}; j++) {acc}[j] = {terms};\n"
                f"          for (int64_t j = {n}; j < {self.padded(n)}; j++) {acc}[j] = 0; }}")

    # -- index helpers (C expressions)
    def x_row(self) -> str:
        T, N, I = self.T, self.N, self.I
        return f"a->in0 + ((t) * {N} + b) * {I}" if self.layout == 0 else f"a->in0 + (b * {T} + (t)) * {I}"

    def y_row(self, d: int, t: str) -> str:
        T, N, H, D = self.T, self.N, self.H, self.ndir
        return f"(({t}) * {D * N} + {d * N} + b) * {H}" if self.layout == 0 else f"((b * {T} + ({t})) * {D} + {d}) * {H}"

    def state_row(self, d: int) -> str:
        N, H, D = self.N, self.H, self.ndir
        return f"({d * N} + b) * {H}" if self.layout == 0 else f"(b * {D} + {d}) * {H}"

    # -- the per-direction function
    def apply(self, d: int, slot: int, buf: str, n: int) -> str:
        """Applies activation `slot` of direction d in place to buf[0:n] (float sigmoid / tanh
        through the vectorized helpers, everything else as a plain loop)."""
        k = d * _KINDS[self.op][1] + slot
        name = self.act_names[k].lower()
        _, alpha, beta = self.acts[k]
        if self.ct == "float" and name in ("sigmoid", "tanh", "scaledtanh"):
            vmath_helper(self.ctx)
            if name == "sigmoid":
                return f"pdc_seq_sigmoid({buf}, {n});"
            if name == "tanh":
                return f"pdc_seq_tanh({buf}, {n});"
            al, be = self.lit(alpha), self.lit(beta)
            return (f"{{ float *v = {buf}; for (int64_t j = 0; j < {n}; j++) v[j] *= {be}; pdc_seq_tanh(v, {n}); "
                    f"for (int64_t j = 0; j < {n}; j++) v[j] *= {al}; }}")
        expr = activation_expr(self.ctx, name, alpha, beta, self.ct, "x")
        return f"{{ {self.ct} *v = {buf}; for (int64_t j = 0; j < {n}; j++) {{ const {self.ct} x = v[j]; v[j] = {expr}; }} }}"

    def clip_range(self, buf: str, n: int) -> list[str]:
        if self.clip is None:
            return []
        return [f"{{ {self.ct} *v = {buf}; for (int64_t j = 0; j < {n}; j++) v[j] = {self.clipped('v[j]')}; }}"]

    def cell(self, d: int) -> list[str]:
        """One time step: the gate pre-activations, then the elementwise update as passes over
        whole gate vectors (so the activations vectorize)."""
        H = self.H
        out = []
        if self.op == "rnn":
            out.append(self.bias_init("g", d, [0, H], H))
            out.append(self.matvec("g", "xv", 1, d, 0, H))
            out.append(self.matvec("g", "h", 2, d, 0, H))
            out += self.clip_range("g", H)
            out.append(self.apply(d, 0, "g", H))
            out.append(f"memcpy(h, g, sizeof(h[0]) * {H});")
            return out
        if self.op == "lstm":
            # gate order i, o, f, c
            G = 4 * H
            out.append(self.bias_init("g", d, [0, G], G))
            out.append(self.matvec("g", "xv", 1, d, 0, G))
            out.append(self.matvec("g", "h", 2, d, 0, G))
            peep = self.ctx.has_input(7)
            coupled = self.ctx.attrs.get("input_forget", 0)
            if peep:
                out.append(f"for (int64_t j = 0; j < {H}; j++) {{ g[j] += pi[j] * c[j]; "
                           f"g[{2 * H} + j] += pf[j] * c[j]; }}")
                out += self.clip_range("g", H) + self.clip_range(f"g + {2 * H}", 2 * H)
                out.append(self.apply(d, 0, "g", H))
                if not coupled:
                    out.append(self.apply(d, 0, f"g + {2 * H}", H))
            else:
                out += self.clip_range("g", G)
                out.append(self.apply(d, 0, "g", 2 * H if coupled else 3 * H))
            if coupled:
                out.append(f"for (int64_t j = 0; j < {H}; j++) g[{2 * H} + j] = 1 - g[j];")
            out.append(self.apply(d, 1, f"g + {3 * H}", H))
            out.append(f"for (int64_t j = 0; j < {H}; j++) c[j] = g[{2 * H} + j] * c[j] + g[j] * g[{3 * H} + j];")
            if peep:
                out.append(f"for (int64_t j = 0; j < {H}; j++) g[{H} + j] += po[j] * c[j];")
                out += self.clip_range(f"g + {H}", H)
                out.append(self.apply(d, 0, f"g + {H}", H))
            out.append(f"memcpy(ht, c, sizeof(c[0]) * {H});")
            out.append(self.apply(d, 2, "ht", H))
            out.append(f"for (int64_t j = 0; j < {H}; j++) h[j] = g[{H} + j] * ht[j];")
            return out
        # gru: gate order z, r, h
        lbr = self.ctx.attrs.get("linear_before_reset", 0)
        G = 3 * H
        out.append(self.bias_init("g", d, [0], G))          # Wb: z, r, h
        out.append(self.matvec("g", "xv", 1, d, 0, G))
        out.append(self.bias_init("gr", d, [G], 2 * H))     # Rb: z, r
        out.append(self.matvec("gr", "h", 2, d, 0, 2 * H))
        out.append(f"for (int64_t j = 0; j < {2 * H}; j++) gr[j] = g[j] + gr[j];")
        out += self.clip_range("gr", 2 * H)
        out.append(self.apply(d, 0, "gr", 2 * H))           # gr holds z, r
        out.append(self.bias_init("gh", d, [G + 2 * H], H))  # Rb: h
        if lbr:
            out.append(self.matvec("gh", "h", 2, d, 2 * H, H))
            out.append(f"for (int64_t j = 0; j < {H}; j++) gh[j] = g[{2 * H} + j] + gr[{H} + j] * gh[j];")
        else:
            out.append(f"for (int64_t j = 0; j < {H}; j++) rh[j] = gr[{H} + j] * h[j];")
            out.append(self.matvec("gh", "rh", 2, d, 2 * H, H))
            out.append(f"for (int64_t j = 0; j < {H}; j++) gh[j] = g[{2 * H} + j] + gh[j];")
        out += self.clip_range("gh", H)
        out.append(self.apply(d, 1, "gh", H))
        out.append(f"for (int64_t j = 0; j < {H}; j++) h[j] = (1 - gr[j]) * gh[j] + gr[j] * h[j];")
        return out

    def buffer_sizes(self, convert_x: bool) -> list[tuple[str, int]]:
        """The task's buffers (name, elements; each a multiple of PANEL, so every one is aligned):
        gates, state, and per cell kind the rest; they live in its thread's slot of the scratch."""
        H, pad = self.H, self.padded
        sizes = [("g", pad(self.G * H)), ("h", pad(H))]
        if self.op == "lstm":
            sizes += [("c", pad(H)), ("ht", pad(H))]
        if self.op == "gru":
            sizes += [("gr", pad(2 * H)), ("gh", pad(H)), ("rh", pad(H))]
        if convert_x:
            sizes.append(("xv", pad(self.I)))
        return sizes

    def buffers(self, ct: str, convert_x: bool) -> list[str]:
        out, offset = [], 0
        for name, n in self.buffer_sizes(convert_x):
            out.append(f"{ct} *restrict {name} = buf + {offset};")  # disjoint, like the arrays they were
            offset += n
        return out

    def direction_fn(self, d: int) -> str:
        ctx, H, I, T, ct = self.ctx, self.H, self.I, self.T, self.ct
        reverse = self.direction == "reverse" or d == 1
        lstm = self.op == "lstm"
        convert_x = not (self.T_c == ct)
        lines = [f"static void {self.fn}_d{d}(const {self.fn}_args *a, int64_t b, {ct} *buf) {{"]
        lines += ["    " + s for s in self.buffers(ct, convert_x)]
        if ctx.has_input(4):
            lines.append(f"    int64_t len = a->in4[b]; if (len < 0) len = 0; if (len > {T}) len = {T};")
        else:
            lines.append(f"    const int64_t len = {T};")
        srow = self.state_row(d)
        for name, idx in (("h", 5),) + ((("c", 6),) if lstm else ()):
            if ctx.has_input(idx):
                lines.append(f"    for (int64_t j = 0; j < {H}; j++) {name}[j] = ({ct}){self.load(f'a->in{idx}[{srow} + j]')};")
            else:
                lines.append(f"    for (int64_t j = 0; j < {H}; j++) {name}[j] = 0;")
        if lstm and ctx.has_input(7):
            lines.append(f"    {ct} pi[{H}], po[{H}], pf[{H}];")
            lines.append(f"    for (int64_t j = 0; j < {H}; j++) {{ const {self.T_c} *p = a->in7 + {d * 3 * H}; "
                         f"pi[j] = {self.load('p[j]')}; po[j] = {self.load(f'p[{H} + j]')}; "
                         f"pf[j] = {self.load(f'p[{2 * H} + j]')}; }}")
        lines.append("    for (int64_t s = 0; s < len; s++) {")
        lines.append(f"        const int64_t t = {'len - 1 - s' if reverse else 's'};")
        if convert_x:
            lines.append(f"        {{ const {self.T_c} *xr = {self.x_row()}; "
                         f"for (int64_t k = 0; k < {I}; k++) xv[k] = {self.load('xr[k]')}; }}")
        else:
            lines.append(f"        const {ct} *xv = {self.x_row()};")
        for stmt in self.cell(d):
            lines.append("        " + stmt)
        if self.nout > 0:
            lines.append(f"        {{ {self.T_c} *y = a->out0 + {self.y_row(d, 't')}; "
                         f"for (int64_t j = 0; j < {H}; j++) y[j] = {self.store('h[j]')}; }}")
        lines.append("    }")
        if self.nout > 0:
            lines.append(f"    for (int64_t t = len; t < {T}; t++) {{ {self.T_c} *y = a->out0 + {self.y_row(d, 't')}; "
                         f"memset(y, 0, sizeof({self.T_c}) * {H}); }}")
        finals = [("h", 1)] + ([("c", 2)] if lstm else [])
        for name, k in finals:
            if k < self.nout:
                lines.append(f"    {{ {self.T_c} *o = a->out{k} + {srow}; "
                             f"for (int64_t j = 0; j < {H}; j++) o[j] = len > 0 ? {self.store(f'{name}[j]')} : "
                             f"{self.store('0')}; }}")
        lines.append("}")
        return "\n".join(lines)

    def render(self) -> str:
        ctx, fn = self.ctx, self.fn
        fields = [f"const {ctx.ctype(t.dtype) if t is not None else 'void'} *in{i};" for i, t in enumerate(ctx.inputs)]
        fields += [f"{ctx.ctype(t.dtype)} *out{i};" for i, t in enumerate(ctx.outputs)]
        fields.append(f"{self.ct} *scratch; int64_t slot_items;")  # the tasks' buffers, one slot per thread
        code = [f"typedef struct {{ {' '.join(fields)} }} {fn}_args;"]
        code += [self.direction_fn(d) for d in range(self.ndir)]
        calls = " else ".join(f"if (d == {d}) {fn}_d{d}(a, b, buf);" for d in range(self.ndir))
        code.append(f"static void {fn}_task(void *arg, int64_t begin, int64_t end, int slot) {{\n"
                    f"    const {fn}_args *a = (const {fn}_args *)arg;\n"
                    f"    {self.ct} *buf = a->scratch + slot * a->slot_items;\n"
                    f"    for (int64_t i = begin; i < end; i++) {{ const int64_t d = i / {self.N}, b = i % {self.N}; "
                    f"{calls} }}\n}}\n")
        ctx.helper(f"{fn}_impl", "\n".join(code))
        # an input the direction functions never read (W, R, B packed into the blob) is passed as 0, so
        # the bundle does not keep its original too
        impl = "\n".join(code)
        read = [t is not None and re.search(rf"\ba->in{i}\b", impl) is not None for i, t in enumerate(ctx.inputs)]
        inits = ", ".join([f"in{i}" if r else "0" for i, r in enumerate(read)]
                          + [f"out{i}" for i in range(len(ctx.outputs))])
        items = self.ndir * self.N
        macs = self.T * (self.I + self.H) * self.G * self.H
        parallel = items > 1 and take("rnn-split", "parallel", ctx.split(macs * items, PARALLEL_MIN_MACS))
        slots = ctx.slots(parallel)
        itemsize = 8 if self.ct == "double" else 4
        count = sum(n for _, n in self.buffer_sizes(self.T_c != self.ct))
        scratch, stride = ctx.thread_scratch(count, slots, self.ct, itemsize)
        inits += f", {scratch}, {stride}"
        call = (f"pdc_parallel_slots({items}, {slots}, {fn}_task, (void *)&a);" if parallel
                else f"{fn}_task((void *)&a, 0, {items}, 0);")
        unused = " ".join(f"(void)in{i};" for i, r in enumerate(read) if not r)
        body = f"    {fn}_args a = {{ {inits} }};\n    {unused}\n    {call}"
        return mark("rnn", "packed" if self.packed else "rowdot",
                    mark("rnn-split", "parallel" if parallel else "serial", body))


@kernel("lstm", "gru", "rnn")
def recurrent(ctx: KernelContext) -> str:
    dt = ctx.inputs[0].dtype
    if not dt.is_float:
        ctx.fail(f"X has dtype {dt}, expected a float type")
    for i, t in enumerate(ctx.inputs):
        if t is not None and i not in (4,) and t.dtype is not dt:
            ctx.fail(f"input {i} has dtype {t.dtype}, X has {dt}")
    g = _Gen(ctx, ctx.node.op)
    if g.T == 0 or g.N == 0 or g.H == 0:
        # no steps: Y is empty and the final states are zero
        return "\n".join(f"    memset(out{i}, 0, {t.nbytes});" for i, t in enumerate(ctx.outputs) if t.nbytes) \
            or "    (void)in0;"
    return g.render()
