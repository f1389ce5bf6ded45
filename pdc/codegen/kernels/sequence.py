"""Recurrent layers (ONNX LSTM, GRU, RNN) as C: one task per (direction, batch entry).

Semantics are those of pdc/ir/ops/rnn.py. Each (direction, batch entry) pair is an independent
recurrence, so the pairs are split over threads; inside a pair every time step is a few
matrix-vector products (gates = bias + W x_t + R h) followed by the elementwise cell update,
with the direction's activations, clip and peepholes inlined.

Matrix-vector products:
- float compute with a constant weight matrix: packed at compile time into panels of 16 rows
  stored k-major ([panel][k][16], zero padded), multiplied by an AVX-512 / AVX2 helper that
  keeps four panels of accumulators in registers;
- otherwise (runtime weights, float64): a plain row-by-row dot product over the stored matrix.
Half-precision tensors compute in float and round once on store, like the reference.
A sequence length outside [0, seq_length] is clamped to it (the reference rejects it).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.ops.rnn import _DIRECTIONS, _KINDS, ActivationError, resolve_activations
from ..context import KernelContext
from ..ctypes_c import float_literal
from . import kernel

PANEL = 16
STACK_FLOATS_MAX = 1 << 16  # per-task stack scratch (gates, state) must stay well below a thread's stack

GEMV16_C = r"""#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
/* acc[p*16 + l] += sum_k x[k] * w[(p*K + k)*16 + l] for the P panels of 16 rows of a packed matrix. */
static void pdc_seq_gemv16(float *restrict acc, const float *restrict x, const float *restrict w,
                           int64_t K, int64_t P) {
    int64_t p = 0;
#if defined(__AVX512F__)
    for (; p + 4 <= P; p += 4) {
        const float *w0 = w + p * K * 16, *w1 = w0 + K * 16, *w2 = w1 + K * 16, *w3 = w2 + K * 16;
        __m512 a0 = _mm512_loadu_ps(acc + p * 16), a1 = _mm512_loadu_ps(acc + p * 16 + 16);
        __m512 a2 = _mm512_loadu_ps(acc + p * 16 + 32), a3 = _mm512_loadu_ps(acc + p * 16 + 48);
        for (int64_t k = 0; k < K; k++) {
            const __m512 xb = _mm512_set1_ps(x[k]);
            a0 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w0 + k * 16), a0);
            a1 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w1 + k * 16), a1);
            a2 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w2 + k * 16), a2);
            a3 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w3 + k * 16), a3);
        }
        _mm512_storeu_ps(acc + p * 16, a0); _mm512_storeu_ps(acc + p * 16 + 16, a1);
        _mm512_storeu_ps(acc + p * 16 + 32, a2); _mm512_storeu_ps(acc + p * 16 + 48, a3);
    }
    for (; p < P; p++) {
        const float *w0 = w + p * K * 16;
        __m512 a0 = _mm512_loadu_ps(acc + p * 16), a1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 2 <= K; k += 2) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_loadu_ps(w0 + k * 16), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 1]), _mm512_loadu_ps(w0 + k * 16 + 16), a1);
        }
        if (k < K) a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_loadu_ps(w0 + k * 16), a0);
        _mm512_storeu_ps(acc + p * 16, _mm512_add_ps(a0, a1));
    }
#elif defined(__AVX2__)
    for (; p + 2 <= P; p += 2) {
        const float *w0 = w + p * K * 16, *w1 = w0 + K * 16;
        __m256 a0 = _mm256_loadu_ps(acc + p * 16), a1 = _mm256_loadu_ps(acc + p * 16 + 8);
        __m256 a2 = _mm256_loadu_ps(acc + p * 16 + 16), a3 = _mm256_loadu_ps(acc + p * 16 + 24);
        for (int64_t k = 0; k < K; k++) {
            const __m256 xb = _mm256_set1_ps(x[k]);
            a0 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16), a0);
            a1 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16 + 8), a1);
            a2 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w1 + k * 16), a2);
            a3 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w1 + k * 16 + 8), a3);
        }
        _mm256_storeu_ps(acc + p * 16, a0); _mm256_storeu_ps(acc + p * 16 + 8, a1);
        _mm256_storeu_ps(acc + p * 16 + 16, a2); _mm256_storeu_ps(acc + p * 16 + 24, a3);
    }
    for (; p < P; p++) {
        const float *w0 = w + p * K * 16;
        __m256 a0 = _mm256_loadu_ps(acc + p * 16), a1 = _mm256_loadu_ps(acc + p * 16 + 8);
        for (int64_t k = 0; k < K; k++) {
            const __m256 xb = _mm256_set1_ps(x[k]);
            a0 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16), a0);
            a1 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16 + 8), a1);
        }
        _mm256_storeu_ps(acc + p * 16, a0); _mm256_storeu_ps(acc + p * 16 + 8, a1);
    }
#endif
    for (; p < P; p++)
        for (int64_t k = 0; k < K; k++)
            for (int l = 0; l < 16; l++) acc[p * 16 + l] += x[k] * w[(p * K + k) * 16 + l];
}
"""


def add_weight(ctx: KernelContext, array: np.ndarray, c_type: str = "float") -> str:
    """ctx.add_weight for a temporary array: the weight blob dedups by id(array), so a freed
    temporary's id could be taken by a later array; pinning it on the blob prevents that."""
    array = np.ascontiguousarray(array)
    blob = ctx._weights
    if not hasattr(blob, "_pdc_seq_pins"):
        blob._pdc_seq_pins = []
    blob._pdc_seq_pins.append(array)
    return ctx.add_weight(array, c_type)


# ---- activations ----------------------------------------------------------------------------
def activation_expr(name: str, alpha, beta, ct: str, v: str) -> str:
    """C expression of an RNN activation (names as in ONNX, any case) applied to the variable v."""
    f = "f" if ct == "float" else ""
    lit = lambda x: float_literal(x, ct)  # noqa: E731
    n = name.lower()
    if n == "relu":
        return f"({v} > 0 ? {v} : ({v} != {v} ? {v} : 0))"
    if n == "tanh":
        return f"tanh{f}({v})"
    if n == "sigmoid":
        return f"({v} >= 0 ? 1 / (1 + exp{f}(-{v})) : exp{f}({v}) / (1 + exp{f}({v})))"
    if n == "affine":
        return f"({lit(alpha)} * {v} + {lit(beta)})"
    if n == "leakyrelu":
        return f"({v} >= 0 ? {v} : {lit(alpha)} * {v})"
    if n == "thresholdedrelu":
        return f"({v} > {lit(alpha)} ? {v} : 0)"
    if n == "scaledtanh":
        return f"({lit(alpha)} * tanh{f}({lit(beta)} * {v}))"
    if n == "hardsigmoid":
        t = f"({lit(alpha)} * {v} + {lit(beta)})"
        return f"({t} < 0 ? 0 : ({t} > 1 ? 1 : {t}))"
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

    def act(self, d: int, slot: int, v: str) -> str:
        k = d * _KINDS[self.op][1] + slot
        _, alpha, beta = self.acts[k]
        return activation_expr(self.act_names[k], alpha, beta, self.ct, v)

    @staticmethod
    def padded(n: int) -> int:
        return -(-n // PANEL) * PANEL

    # -- matrix-vector products
    def matvec(self, acc: str, vec: str, idx: int, d: int, row0: int, rows: int) -> str:
        """acc[0:rows] += M[d][row0:row0+rows] @ vec, M = input idx (W: 1, R: 2)."""
        ctx = self.ctx
        K = ctx.inputs[idx].shape[2]
        data = ctx.const(idx)
        if data is not None and self.ct == "float":
            m = np.asarray(data[d, row0:row0 + rows], dtype=np.float32)  # (rows, K)
            P = -(-rows // PANEL)
            packed = np.zeros((P * PANEL, K), np.float32)
            packed[:rows] = m
            packed = packed.reshape(P, PANEL, K).transpose(0, 2, 1)  # [panel][k][16]
            ptr = add_weight(ctx, packed)
            ctx.helper("pdc_seq_gemv16", GEMV16_C)
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
            ptr = add_weight(ctx, total, self.ct)
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
    def cell(self, d: int) -> list[str]:
        H, ct = self.H, self.ct
        out = []
        if self.op == "rnn":
            out.append(self.bias_init("g", d, [0, H], H))
            out.append(self.matvec("g", "xv", 1, d, 0, H))
            out.append(self.matvec("g", "h", 2, d, 0, H))
            out.append(f"for (int64_t j = 0; j < {H}; j++) {{ const {ct} v = {self.clipped('g[j]')}; "
                       f"h[j] = {self.act(d, 0, 'v')}; }}")
            return out
        if self.op == "lstm":
            G = 4 * H
            out.append(self.bias_init("g", d, [0, G], G))
            out.append(self.matvec("g", "xv", 1, d, 0, G))
            out.append(self.matvec("g", "h", 2, d, 0, G))
            peep = self.ctx.has_input(7)
            pi = " + pi[j] * cp" if peep else ""
            pf = " + pf[j] * cp" if peep else ""
            po = " + po[j] * cn" if peep else ""
            forget = "1 - gi" if self.ctx.attrs.get("input_forget", 0) else \
                self.act(d, 0, f"vf")
            body = [f"const {ct} cp = c[j];",
                    f"const {ct} vi = {self.clipped(f'(g[j]{pi})')};",
                    f"const {ct} gi = {self.act(d, 0, 'vi')};"]
            if not self.ctx.attrs.get("input_forget", 0):
                body.append(f"const {ct} vf = {self.clipped(f'(g[{2 * H} + j]{pf})')};")
            body += [f"const {ct} gf = {forget};",
                     f"const {ct} vc = {self.clipped(f'g[{3 * H} + j]')};",
                     f"const {ct} cn = gf * cp + gi * {self.act(d, 1, 'vc')};",
                     f"const {ct} vo = {self.clipped(f'(g[{H} + j]{po})')};",
                     f"const {ct} go = {self.act(d, 0, 'vo')};",
                     f"c[j] = cn; h[j] = go * {self.act(d, 2, 'cn')};"]
            out.append(f"for (int64_t j = 0; j < {H}; j++) {{\n              " + "\n              ".join(body)
                       + "\n          }")
            return out
        # gru
        lbr = self.ctx.attrs.get("linear_before_reset", 0)
        G = 3 * H
        out.append(self.bias_init("g", d, [0], G))          # Wb: z, r, h
        out.append(self.matvec("g", "xv", 1, d, 0, G))
        out.append(self.bias_init("gr", d, [G], 2 * H))     # Rb: z, r
        out.append(self.matvec("gr", "h", 2, d, 0, 2 * H))
        out.append(f"for (int64_t j = 0; j < {2 * H}; j++) {{ const {ct} v = {self.clipped('(g[j] + gr[j])')}; "
                   f"gr[j] = {self.act(d, 0, 'v')}; }}")  # gr now holds z, r
        out.append(self.bias_init("gh", d, [G + 2 * H], H))  # Rb: h
        if lbr:
            out.append(self.matvec("gh", "h", 2, d, 2 * H, H))
            pre = f"(g[{2 * H} + j] + gr[{H} + j] * gh[j])"
        else:
            out.append(f"for (int64_t j = 0; j < {H}; j++) rh[j] = gr[{H} + j] * h[j];")
            out.append(self.matvec("gh", "rh", 2, d, 2 * H, H))
            pre = f"(g[{2 * H} + j] + gh[j])"
        out.append(f"for (int64_t j = 0; j < {H}; j++) {{ const {ct} v = {self.clipped(pre)}; "
                   f"const {ct} hh = {self.act(d, 1, 'v')}; const {ct} z = gr[j]; "
                   f"h[j] = (1 - z) * hh + z * h[j]; }}")
        return out

    def direction_fn(self, d: int) -> str:
        ctx, H, I, T, ct = self.ctx, self.H, self.I, self.T, self.ct
        reverse = self.direction == "reverse" or d == 1
        lstm = self.op == "lstm"
        G = self.G * H
        pad = self.padded
        bufs = [f"{ct} g[{pad(G)}] __attribute__((aligned(64)));",
                f"{ct} h[{pad(H)}] __attribute__((aligned(64)));"]
        if lstm:
            bufs.append(f"{ct} c[{pad(H)}];")
        if self.op == "gru":
            bufs += [f"{ct} gr[{pad(2 * H)}] __attribute__((aligned(64)));",
                     f"{ct} gh[{pad(H)}] __attribute__((aligned(64)));", f"{ct} rh[{pad(H)}];"]
        convert_x = not (self.T_c == ct)
        if convert_x:
            bufs.append(f"{ct} xv[{pad(I)}];")
        lines = [f"static void {self.fn}_d{d}(const {self.fn}_args *a, int64_t b) {{"]
        lines += ["    " + s for s in bufs]
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
        floats = self.padded(self.G * self.H) * 3 + self.padded(self.H) * 4 + self.padded(self.I)
        if floats > STACK_FLOATS_MAX:
            ctx.fail(f"hidden_size {self.H} / input_size {self.I} need {floats} floats of stack scratch; "
                     f"at most {STACK_FLOATS_MAX} are supported")
        fields = [f"const {ctx.ctype(t.dtype) if t is not None else 'void'} *in{i};" for i, t in enumerate(ctx.inputs)]
        fields += [f"{ctx.ctype(t.dtype)} *out{i};" for i, t in enumerate(ctx.outputs)]
        code = [f"typedef struct {{ {' '.join(fields)} }} {fn}_args;"]
        code += [self.direction_fn(d) for d in range(self.ndir)]
        calls = " else ".join(f"if (d == {d}) {fn}_d{d}(a, b);" for d in range(self.ndir))
        code.append(f"static void {fn}_task(void *arg, int64_t begin, int64_t end) {{\n"
                    f"    const {fn}_args *a = (const {fn}_args *)arg;\n"
                    f"    for (int64_t i = begin; i < end; i++) {{ const int64_t d = i / {self.N}, b = i % {self.N}; "
                    f"{calls} }}\n}}\n")
        ctx.helper(f"{fn}_impl", "\n".join(code))
        inits = ", ".join([f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))])
        items = self.ndir * self.N
        macs = self.T * (self.I + self.H) * self.G * self.H
        call = (f"pdc_parallel_for({items}, {fn}_task, (void *)&a);" if items > 1 and macs * items >= 20000
                else f"{fn}_task((void *)&a, 0, {items});")
        unused = " ".join(f"(void)in{i};" for i, t in enumerate(ctx.inputs) if t is None)
        return f"    {fn}_args a = {{ {inits} }};\n    {unused}\n    {call}" if items else "    (void)in0;"


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
