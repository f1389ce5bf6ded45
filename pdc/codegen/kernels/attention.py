"""Scaled dot-product attention kernels: ONNX `attention` (opset 23-25) and `fused_attention`.

One task per query row (batch, head, query position), split over threads. A row computes its
scores against every key (Q K^T with the op's scaling), adds the op's bias (mask, causal
frontier, sliding window, key padding), runs a max-subtracted softmax in a stack buffer, and
accumulates the probability-weighted V rows. Keys and values are read where they are (past
cache, then the new K / V, 3-D or 4-D), so nothing is materialized but the requested outputs.

Rounding follows the references (pdc/ir/ops/nn_attention.py, fused_attention.py) step by step:
half-precision tensors compute in float and are rounded back to their type wherever the
reference rounds (after scaling, the matmul, softcap, the bias and the softmax), and
`attention` runs the softmax in softmax_precision when given (float16 rounds each step).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes
from ..context import KernelContext, strides
from ..ctypes_c import float_literal
from . import kernel
from .sequence import VMATH_C

ROW_BLOCK = 32  # query rows per task
KT_FLOATS_MAX = 1 << 15  # float32: keys of one head transposed into a stack block up to this size
PARALLEL_MIN_MACS = 1_000_000  # below ~30 us of work a second thread costs more than it saves
STACK_SCORES_MAX = 1 << 16  # keys per row held on the stack


DOT_C = r"""#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
static inline float pdc_attn_dot(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    float s = 0;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (; d + 32 <= n; d += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d + 16), _mm512_loadu_ps(b + d + 16), s1);
    }
    if (d + 16 <= n) { s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), s0); d += 16; }
    if (d < n) {
        const __mmask16 m = (__mmask16)((1u << (n - d)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d), s1);
        d = n;
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#elif defined(__AVX2__)
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; d + 16 <= n; d += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), s1);
    }
    if (d + 8 <= n) { s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0); d += 8; }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    s = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
#endif
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}
"""


def _round_fn(dt, ct: str):
    """C rounding of a compute-type value to dt and back (identity for float32 / float64)."""
    if dt.short == "f16":
        return lambda e: f"(({ct})(_Float16)({e}))"
    if dt.short == "bf16":
        return lambda e: f"(({ct})pdc_bf16_to_f32(pdc_f32_to_bf16((float)({e}))))"
    return lambda e: f"({e})"


class _Attn:
    """The geometry of one attention node and the C spellings shared by both ops."""

    def __init__(self, ctx: KernelContext, fused: bool):
        self.ctx, self.fused = ctx, fused
        q, k, v = ctx.inputs[:3]
        a = ctx.attrs
        self.qdt, self.kdt, self.vdt = q.dtype, k.dtype, v.dtype
        for t, what in ((q, "Q"), (k, "K"), (v, "V")):
            if not t.dtype.is_float:
                ctx.fail(f"{what} must be a float tensor, got {t.dtype}")
        self.at = "double" if dtypes.float64 in (q.dtype, k.dtype, v.dtype) else "float"
        if fused:
            h = a.get("num_heads", 0)
            self.rank3 = h > 0
            self.hq = self.hkv = h if h else q.shape[1]
        else:
            self.rank3 = q.rank == 3
            self.hq = a.get("q_num_heads") if self.rank3 else q.shape[1]
            self.hkv = a.get("kv_num_heads") if self.rank3 else k.shape[1]
        if self.rank3:
            self.B, self.Sq, self.D = q.shape[0], q.shape[1], q.shape[2] // self.hq
            self.Skv, self.Dv = k.shape[1], v.shape[2] // self.hkv
        else:
            self.B, _, self.Sq, self.D = q.shape
            self.Skv, self.Dv = k.shape[2], v.shape[3]
        self.P = 0
        if not fused and ctx.has_input(4):
            self.P = ctx.inputs[4].shape[2]
            if ctx.inputs[4].dtype != k.dtype or ctx.inputs[5].dtype != v.dtype:
                ctx.fail("past_key / past_value must have the dtypes of K / V")
        self.L = self.P + self.Skv
        if self.hq % self.hkv:
            ctx.fail(f"q_num_heads={self.hq} is not a multiple of kv_num_heads={self.hkv}")
        self.group = self.hq // self.hkv

    # ---- row addresses (C expressions of b, h / kh, i / j) -----------------------------------
    def q_row(self) -> str:
        B, H, S, D = self.B, self.hq, self.Sq, self.D
        return (f"a->in0 + ((b * {S} + i) * {H} + h) * {D}" if self.rank3 else
                f"a->in0 + ((b * {H} + h) * {S} + i) * {D}")

    def y_row(self) -> str:
        H, S, Dv = self.hq, self.Sq, self.Dv
        return (f"a->out0 + ((b * {S} + i) * {H} + h) * {Dv}" if self.rank3 else
                f"a->out0 + ((b * {H} + h) * {S} + i) * {Dv}")

    def new_row(self, idx: int, width: int, j: str) -> str:
        """Row j (of the new keys / values) of kv head kh in input idx (1: K, 2: V)."""
        S, H = self.Skv, self.hkv
        return (f"a->in{idx} + ((b * {S} + ({j})) * {H} + kh) * {width}" if self.rank3 else
                f"a->in{idx} + ((b * {H} + kh) * {S} + ({j})) * {width}")

    def kv_row(self, idx: int, width: int, j: str = "j") -> str:
        """Row j of the whole key / value sequence (past cache first)."""
        if not self.P:
            return self.new_row(idx, width, j)
        past = f"a->in{idx + 3} + ((b * {self.hkv} + kh) * {self.P} + ({j})) * {width}"
        return f"(({j}) < {self.P} ? {past} : {self.new_row(idx, width, f'({j}) - {self.P}')})"

    def present_copy(self) -> list[str]:
        """present_key / present_value: the past cache followed by the new rows, per (b, kv head)."""
        ctx, out = self.ctx, []
        for k, (idx, width) in ((1, (1, self.D)), (2, (2, self.Dv))):
            if k >= len(ctx.outputs):
                continue
            T = ctx.ctype(ctx.outputs[k].dtype)
            size = f"sizeof({T}) * {width}"
            lines = [f"    for (int64_t b = 0; b < {self.B}; b++) for (int64_t kh = 0; kh < {self.hkv}; kh++) {{",
                     f"        {T} *dst = out{k} + (b * {self.hkv} + kh) * {self.L * width};"]
            if self.P:
                lines.append(f"        memcpy(dst, in{idx + 3} + (b * {self.hkv} + kh) * {self.P * width}, "
                             f"{size} * {self.P});")
            lines.append(f"        for (int64_t j = 0; j < {self.Skv}; j++) "
                         f"memcpy(dst + ({self.P} + j) * {width}, {self.new_row(idx, width, 'j').replace('a->', '')}, {size});")
            lines.append("    }")
            out += lines
        return out

    # ---- mask -------------------------------------------------------------------------------
    def mask_terms(self, shape4: tuple) -> tuple[str, int]:
        """(C offset of the mask row for b, h, i; its last dim) for a mask broadcast to shape4's
        leading dims (b, h, i) right-aligned, its last dim indexed by j."""
        ms = self.ctx.inputs[3].shape
        if len(ms) == 0:
            self.ctx.fail("attn_mask must have rank >= 1")
        lead = (1,) * (3 - (len(ms) - 1)) + tuple(ms[:-1])
        st = strides(tuple(ms))
        st = [0] * (3 - (len(ms) - 1)) + st[:-1]
        terms = [f"{var} * {s}" for var, n, s, full in zip(("b", "h", "i"), lead, st, shape4[:3]) if n != 1 and s]
        return " + ".join(terms) or "0", ms[-1]


def _struct(ctx: KernelContext, fn: str) -> str:
    fields = [f"const {ctx.ctype(t.dtype) if t is not None else 'void'} *in{i};" for i, t in enumerate(ctx.inputs)]
    fields += [f"{ctx.ctype(t.dtype)} *out{i};" for i, t in enumerate(ctx.outputs)]
    return f"typedef struct {{ {' '.join(fields)} }} {fn}_args;"


def _dispatch(ctx: KernelContext, g: _Attn, pre: list[str]) -> str:
    fn = ctx.fn_name
    items = g.B * g.hq * -(-g.Sq // ROW_BLOCK)
    inits = ", ".join([f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))])
    macs = g.B * g.hq * g.Sq * g.L * (g.D + g.Dv)
    call = (f"pdc_parallel_for({items}, {fn}_rows, (void *)&a);" if items > 1 and macs >= PARALLEL_MIN_MACS
            else f"{fn}_rows((void *)&a, 0, {items});")
    unused = [f"(void)in{i};" for i, t in enumerate(ctx.inputs) if t is None]
    return "\n".join(pre + [f"    {fn}_args a = {{ {inits} }};", "    " + " ".join(unused), f"    {call}"])


def _use_kt(g: _Attn) -> bool:
    return g.qdt.short == g.kdt.short == "f32" and g.at == "float" and g.D * g.L <= KT_FLOATS_MAX


def _row_prologue(g: _Attn, sct: str, kt: bool) -> list[str]:
    """Opens the task loop (b, h, a block of query rows; with kt, the head's keys transposed into
    kt[D][L]) and the row loop: i, r, the row buffers (scores in sct) and the query row."""
    nb = -(-g.Sq // ROW_BLOCK)
    lines = [f"static void {g.ctx.fn_name}_rows(void *arg, int64_t begin, int64_t end) {{",
             f"    const {g.ctx.fn_name}_args *a = (const {g.ctx.fn_name}_args *)arg;",
             "    for (int64_t it = begin; it < end; it++) {",
             f"      const int64_t ib = it % {nb}, h = it / {nb} % {g.hq}, b = it / {nb * g.hq};",
             f"      const int64_t kh = h / {g.group}; (void)kh;"]
    if kt:
        lines += [f"      float kt[{g.D * g.L}] __attribute__((aligned(64)));",
                  f"      for (int64_t j = 0; j < {g.L}; j++) {{ const float *kr = {g.kv_row(1, g.D)}; "
                  f"for (int64_t d = 0; d < {g.D}; d++) kt[d * {g.L} + j] = kr[d]; }}"]
    lines += [f"      for (int64_t i = ib * {ROW_BLOCK}; i < {g.Sq} && i < (ib + 1) * {ROW_BLOCK}; i++) {{",
              f"        const int64_t r = (b * {g.hq} + h) * {g.Sq} + i; (void)r;",
              f"        {sct} sc[{max(g.L, 1)}] __attribute__((aligned(64)));",
              f"        {g.at} qv[{max(g.D, 1)}], yacc[{max(g.Dv, 1)}];",
              f"        {{ const {g.ctx.ctype(g.qdt)} *qr = {g.q_row()};"]
    return lines


def _kt_scores(g: _Attn) -> list[str]:
    """sc[0:L] = qv . K rows, as axpys over the transposed keys (contiguous, vectorized)."""
    return [f"        for (int64_t j = 0; j < {g.L}; j++) sc[j] = 0;",
            f"        for (int64_t d = 0; d < {g.D}; d++) {{ const float qd = qv[d], *kd = kt + d * {g.L}; "
            f"for (int64_t j = 0; j < {g.L}; j++) sc[j] += qd * kd[j]; }}"]


def _pv_epilogue(g: _Attn, prob_round) -> list[str]:
    """Y row = sum_j p_j V_j (sc holds the probabilities)."""
    ctx, at = g.ctx, g.at
    Tv = ctx.ctype(g.vdt)
    vload = ctx.load(g.vdt, "vr[d]")
    return [f"        for (int64_t d = 0; d < {g.Dv}; d++) yacc[d] = 0;",
            f"        for (int64_t j = 0; j < {g.L}; j++) {{",
            f"            const {at} p = {prob_round('sc[j]')};",
            f"            const {Tv} *vr = {g.kv_row(2, g.Dv)};",
            f"            for (int64_t d = 0; d < {g.Dv}; d++) yacc[d] += p * ({at}){vload};",
            "        }",
            f"        {{ {ctx.ctype(ctx.outputs[0].dtype)} *yr = {g.y_row()};",
            f"          for (int64_t d = 0; d < {g.Dv}; d++) yr[d] = {ctx.store(ctx.outputs[0].dtype, 'yacc[d]')}; }}",
            "      }", "    }", "}"]


# ---- ONNX Attention ---------------------------------------------------------------------------
@kernel("attention")
def attention(ctx: KernelContext) -> str:
    g = _Attn(ctx, fused=False)
    a = ctx.attrs
    at, T = g.at, g.qdt
    rnd = _round_fn(T, at)
    if not ctx.outputs[0].shape or math.prod(ctx.outputs[0].shape) == 0 or g.L == 0:
        if g.L == 0 and math.prod(ctx.outputs[0].shape):
            ctx.fail("attention over an empty key sequence is not supported")
        return "\n".join(g.present_copy() + ["    (void)in0;"])
    if g.L > STACK_SCORES_MAX:
        ctx.fail(f"{g.L} keys: at most {STACK_SCORES_MAX} are supported")
    scale = a.get("scale")
    root = float(T.np.type(np.sqrt(1.0 / np.sqrt(g.D) if scale is None else scale)))
    root_c = float_literal(root, at)
    softcap = a.get("softcap", 0.0) or 0.0
    mode = a.get("qk_matmul_output_mode", 0)
    debug = len(ctx.outputs) > 3
    sp = a.get("softmax_precision") or T
    if sp is dtypes.bfloat16:
        sp = dtypes.float32 if at == "float" else dtypes.float64
    spc = "double" if sp is dtypes.float64 else "float"
    rsp = _round_fn(sp, spc) if sp.short == "f16" else (lambda e: f"({e})")
    nonpad = ctx.has_input(6)
    lw, rw = a.get("left_window_size", -1), a.get("right_window_size", -1)
    causal = a.get("is_causal", 0)

    sct = "double" if "double" in (at, spc) else "float"  # holds scores, then softmax values
    kt = _use_kt(g) and sct == "float"
    lines = [_struct(ctx, ctx.fn_name)] + _row_prologue(g, sct, kt)
    # float32: sqrt(scale) is applied to Q twice instead of to Q and K (a rounding apart), so each
    # score is one vectorized dot product with the stored K row
    fast = T.short == "f32" and g.kdt.short == "f32" and at == "float"
    if fast:
        ctx.helper("pdc_attn_dot", DOT_C)
        qval = f"(qr[d] * {root_c}) * {root_c}"
    else:
        qval = rnd(f"({at}){ctx.load(T, 'qr[d]')} * {root_c}")
    kval = rnd(f"({at}){ctx.load(g.kdt, 'kr[d]')} * {root_c}")
    lines.append(f"          for (int64_t d = 0; d < {g.D}; d++) qv[d] = {qval}; }}")
    if nonpad:
        lines.append("        const int64_t valid = a->in6[b];")
    if causal or lw >= 0 or rw >= 0:
        offset = f"valid - {g.Sq}" if nonpad else str(g.P)
        lines.append(f"        const int64_t pos = i + {offset};")
    if ctx.has_input(3):
        moff, M = g.mask_terms((g.B, g.hq, g.Sq))
        lines.append(f"        const {ctx.ctype(ctx.inputs[3].dtype)} *mr = a->in3 + {moff};")
    if debug:
        lines.append(f"        {ctx.ctype(ctx.outputs[3].dtype)} *qk = a->out3 + r * {g.L};")
    if kt:
        lines += _kt_scores(g)
    lines.append("        int dead = 1;")
    lines.append(f"        for (int64_t j = 0; j < {g.L}; j++) {{")
    if not kt:
        lines.append(f"            const {ctx.ctype(g.kdt)} *kr = {g.kv_row(1, g.D)};")
    if kt:
        lines.append("            float s = sc[j];")
    elif fast:
        lines.append(f"            {at} s = pdc_attn_dot(qv, kr, {g.D});")
    else:
        lines.append(f"            {at} s = 0;")
        lines.append(f"            for (int64_t d = 0; d < {g.D}; d++) s += qv[d] * {kval};")
        lines.append(f"            s = {rnd('s')};")
    store_dbg = lambda e: f"            qk[j] = {ctx.store(ctx.outputs[3].dtype, e)};"  # noqa: E731
    if debug and mode == 0:
        lines.append(store_dbg("s"))
    if softcap > 0:
        cap = float_literal(softcap, at)
        tanh = "tanhf" if at == "float" else "tanh"
        lines.append(f"            s = {rnd(f'{cap} * {tanh}(s / {cap})')};")
    if debug and mode == 1:
        lines.append(store_dbg("s"))
    # the bias: mask, then -inf terms for the causal frontier, the window and key padding
    if ctx.has_input(3):
        mt = ctx.inputs[3].dtype
        mval = "(mr[j] ? 0 : -INFINITY)" if mt is dtypes.bool_ else f"({at}){ctx.load(mt, 'mr[j]')}"
        lines.append(f"            {at} bias = j < {M} ? {mval} : -INFINITY;")
    else:
        lines.append(f"            {at} bias = 0;")
    if causal:
        lines.append("            if (j > pos) bias += -INFINITY;")
    if lw >= 0 or rw >= 0:
        conds = ([f"j < pos - {lw}"] if lw >= 0 else []) + ([f"j > pos + {rw}"] if rw >= 0 else [])
        lines.append(f"            if ({' || '.join(conds)}) bias += -INFINITY;")
    if nonpad:
        lines.append("            if (j >= valid) bias += -INFINITY;")
    lines.append("            dead &= isinf(bias) && bias < 0;")
    lines.append(f"            s = {rnd('s + bias')};")
    if debug and mode == 2:
        lines.append(store_dbg("s"))
    lines.append("            sc[j] = s;")
    lines.append("        }")
    # softmax in the softmax precision
    s_sp = rsp(f"({spc})sc[j]")  # a score in the softmax precision
    exp = "expf" if spc == "float" else "exp"
    e_sp = rsp(f"{exp}({rsp(f'{s_sp} - top')})")
    lines += [f"        {spc} top = -INFINITY; int nan = 0;",
              f"        for (int64_t j = 0; j < {g.L}; j++) {{ const {spc} v = {s_sp}; "
              "top = v > top ? v : top; nan |= v != v; }",
              "        if (nan) top = NAN; else if (isinf(top) && top < 0) top = 0;",
              f"        {spc} total = 0;"]
    if sct == "float" and sp.short != "f16":
        ctx.helper("pdc_seq_vmath", VMATH_C)
        lines.append(f"        total = pdc_seq_exp_sum(sc, {g.L}, top);")
    else:
        lines.append(f"        for (int64_t j = 0; j < {g.L}; j++) {{ const {spc} e = {e_sp}; sc[j] = e; total += e; }}")
    lines += [
              f"        total = {rsp('total')}; if (total == 0) total = 1;",
              f"        for (int64_t j = 0; j < {g.L}; j++) sc[j] = dead ? 0 : {rsp(f'({spc})sc[j] / total')};"]
    if debug and mode == 3:
        lines.append(f"        for (int64_t j = 0; j < {g.L}; j++) qk[j] = {ctx.store(ctx.outputs[3].dtype, 'sc[j]')};")
    lines += _pv_epilogue(g, lambda e: rnd(f"({at}){e}"))
    ctx.helper(f"{ctx.fn_name}_impl", "\n".join(lines))
    return _dispatch(ctx, g, g.present_copy())


# ---- fused_attention --------------------------------------------------------------------------
@kernel("fused_attention")
def fused_attention(ctx: KernelContext) -> str:
    g = _Attn(ctx, fused=True)
    at, T = g.at, g.qdt
    if g.at == "double" and not (g.qdt == g.kdt == g.vdt):
        ctx.fail("Q, K and V must share one dtype")
    rnd = _round_fn(T, at)
    if math.prod(ctx.outputs[0].shape) == 0:
        return "    (void)in0;"
    if g.L == 0:
        ctx.fail("attention over an empty key sequence is not supported")
    if g.L > STACK_SCORES_MAX:
        ctx.fail(f"{g.L} keys: at most {STACK_SCORES_MAX} are supported")
    scale = ctx.attrs.get("scale")
    scale = 1 / math.sqrt(g.D) if scale is None else scale
    scale_c = float_literal(float(T.np.type(scale)), at)  # the reference multiplies by the scale in Q's type
    kt = _use_kt(g)
    lines = [_struct(ctx, ctx.fn_name)] + _row_prologue(g, at, kt)
    lines.append(f"          for (int64_t d = 0; d < {g.D}; d++) qv[d] = ({at}){ctx.load(T, 'qr[d]')}; }}")
    if ctx.has_input(3):
        ms = ctx.inputs[3].shape
        shape4 = (g.B, g.hq, g.Sq, g.Skv)
        full = (1,) * (4 - len(ms)) + tuple(ms)
        st = [0] * (4 - len(ms)) + strides(tuple(ms))
        terms = [f"{var} * {s}" for var, n, s in zip(("b", "h", "i"), full[:3], st[:3]) if n != 1 and s]
        lines.append(f"        const {ctx.ctype(ctx.inputs[3].dtype)} *mr = a->in3 + {' + '.join(terms) or '0'};")
        jm = "j" if full[3] != 1 or shape4[3] == 1 else "0"
    if kt:
        lines += _kt_scores(g)
    lines.append(f"        for (int64_t j = 0; j < {g.L}; j++) {{")
    if not kt:
        lines.append(f"            const {ctx.ctype(g.kdt)} *kr = {g.kv_row(1, g.D)};")
    if kt:
        lines.append("            float s = sc[j];")
    elif T.short == "f32" and at == "float":
        ctx.helper("pdc_attn_dot", DOT_C)
        lines.append(f"            {at} s = pdc_attn_dot(qv, kr, {g.D});")
    else:
        lines.append(f"            {at} s = 0;")
        lines.append(f"            for (int64_t d = 0; d < {g.D}; d++) s += qv[d] * ({at}){ctx.load(g.kdt, 'kr[d]')};")
    lines.append(f"            s = {rnd(rnd('s') + ' * ' + scale_c)};")
    if ctx.has_input(3):
        mt = ctx.inputs[3].dtype
        if mt is dtypes.bool_:
            lines.append(f"            if (!mr[{jm}]) s = -INFINITY;")
        else:
            mval = ctx.load(mt, f"mr[{jm}]")
            lines.append(f"            s = {rnd(f's + ({at}){mval}')};")
    lines.append("            sc[j] = s;")
    lines.append("        }")
    f = "f" if at == "float" else ""
    lines += [f"        {at} top = -INFINITY; int nan = 0;",
              f"        for (int64_t j = 0; j < {g.L}; j++) {{ top = sc[j] > top ? sc[j] : top; nan |= sc[j] != sc[j]; }}",
              "        if (nan || isinf(top)) top = 0;",
              f"        {at} total = 0;"]
    if at == "float":
        ctx.helper("pdc_seq_vmath", VMATH_C)
        lines.append(f"        total = pdc_seq_exp_sum(sc, {g.L}, top);")
    else:
        lines.append(f"        for (int64_t j = 0; j < {g.L}; j++) {{ sc[j] = exp{f}(sc[j] - top); total += sc[j]; }}")
    lines += [
              f"        for (int64_t j = 0; j < {g.L}; j++) sc[j] = {rnd('sc[j] / total')};"]
    lines += _pv_epilogue(g, lambda e: f"({at}){e}")
    ctx.helper(f"{ctx.fn_name}_impl", "\n".join(lines))
    return _dispatch(ctx, g, [])
