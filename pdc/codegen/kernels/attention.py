"""Scaled dot-product attention kernels: ONNX `attention` (opset 23-25) and `fused_attention`.

One task per (batch, head, block of query rows), split over threads. A query row computes its
scores against every key (Q K^T with the op's scaling), adds the op's bias (mask, causal
frontier, sliding window, key padding), runs a max-subtracted softmax in its thread's slot of
the kernel's scratch (from the memory plan, not the stack), and accumulates the
probability-weighted V rows. Keys and values are read where they are (past cache, then the new
K / V, 3-D or 4-D), so nothing is materialized but the requested outputs.

float32 (the common case) runs on vectorized helpers: the task transposes its head's keys into
a scratch block once, so a row's scores are axpys over contiguous keys ("keys-transposed"), or,
when the keys do not fit that block, one dot product per key ("keys-direct"); exp, the
normalization and P V are AVX-512 / AVX2 loops. Other types run plain loops ("scalar"), which
compute every layer (paths: pdc/codegen/kernels/paths.py, family "attention").

Rounding follows the references (pdc/ir/ops/nn_attention.py, fused_attention.py) step by step:
half-precision tensors compute in float and are rounded back to their type wherever the
reference rounds (after scaling, the matmul, softcap, the bias and the softmax), and
`attention` runs the softmax in softmax_precision when given (float16 rounds each step).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes
from ...ir.symbolic import upper
from ..context import KernelContext, strides
from ..ctypes_c import float_literal
from . import kernel, native
from .paths import declare, mark, take
from .sequence import vmath_helper

declare("attention", "scalar", "keys-transposed", "keys-direct")

ROW_BLOCK = 32  # query rows per task
KT_FLOATS_MAX = 1 << 15  # float32: a head's keys transposed into a scratch block up to this size (L2)
PARALLEL_MIN_MACS = 1_000_000  # below ~30 us of work a second thread costs more than it saves

VEC_C = r"""@native vector_include @end
/* a . b over n floats */
static inline float pdc_attn_dot(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    float s = 0;
@native attn_dot @end
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}
/* y[0:n] (=, or += when acc) sum_k x[k] * m[k * ld + 0:n]: scores against transposed keys
   (x = q, m = kt) or P V (x = p, m = V rows) */
static void pdc_attn_axpys(float *restrict y, const float *restrict x, const float *restrict m, int64_t K,
                           int64_t ld, int64_t n, int acc) {
    int64_t j = 0;
@native attn_axpys
    for (; j < n; j++) {
        float s = acc ? y[j] : 0;
        for (int64_t k = 0; k < K; k++) s += x[k] * m[k * ld + j];
        y[j] = s;
    }
@end
}
/* the largest of v[0:n]; NaN when any is NaN */
static inline float pdc_attn_max(const float *v, int64_t n) {
    int64_t j = 0;
    float top = -INFINITY;
    int nan = 0;
@native attn_max @end
    for (; j < n; j++) { top = v[j] > top ? v[j] : top; nan |= v[j] != v[j]; }
    return nan ? NAN : top;
}
/* v[0:n] /= total */
static inline void pdc_attn_div(float *v, int64_t n, float total) {
    int64_t j = 0;
@native attn_div @end
    for (; j < n; j++) v[j] /= total;
}
"""


def vec_helper(ctx: KernelContext) -> str:
    """Registers pdc_attn_dot / pdc_attn_axpys / pdc_attn_max / pdc_attn_div (fp32 rows)."""
    return ctx.helper("pdc_attn_vec", native.fill(ctx, VEC_C))


def _round_fn(dt, ct: str):
    """C rounding of a compute-type value to dt and back (identity for float32 / float64)."""
    if dt.short == "f16":
        return lambda e: f"(({ct})(_Float16)({e}))"
    if dt.short == "bf16":
        return lambda e: f"(({ct})pdc_bf16_to_f32(pdc_f32_to_bf16((float)({e}))))"
    return lambda e: f"({e})"


class AttentionGeometry:
    """Heads, sequence lengths and head sizes of an attention node (`attention`, or `fused_attention`
    when fused), and its row addresses as C expressions of b, h / kh, i / j, the buffers named
    `prefix`in0.. (the CPU kernel's argument struct, an OpenCL kernel's parameters)."""
    prefix = ""

    def __init__(self, ctx: KernelContext, fused: bool):
        q, k, v = ctx.inputs[:3]
        a = ctx.attrs
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
        self.P = ctx.inputs[4].shape[2] if not fused and ctx.has_input(4) else 0
        self.L = self.P + self.Skv

    def q_row(self) -> str:
        H, S, D, q = self.hq, self.Sq, self.D, f"{self.prefix}in0"
        return f"{q} + ((b * {S} + i) * {H} + h) * {D}" if self.rank3 else f"{q} + ((b * {H} + h) * {S} + i) * {D}"

    def y_row(self) -> str:
        H, S, Dv, y = self.hq, self.Sq, self.Dv, f"{self.prefix}out0"
        return f"{y} + ((b * {S} + i) * {H} + h) * {Dv}" if self.rank3 else f"{y} + ((b * {H} + h) * {S} + i) * {Dv}"

    def new_row(self, idx: int, width: int, j: str) -> str:
        """Row j (of the new keys / values) of kv head kh in input idx (1: K, 2: V)."""
        S, H, x = self.Skv, self.hkv, f"{self.prefix}in{idx}"
        return (f"{x} + ((b * {S} + ({j})) * {H} + kh) * {width}" if self.rank3 else
                f"{x} + ((b * {H} + kh) * {S} + ({j})) * {width}")

    def kv_row(self, idx: int, width: int, j: str = "j") -> str:
        """Row j of the whole key (idx 1) / value (idx 2) sequence, the past cache first."""
        if not self.P:
            return self.new_row(idx, width, j)
        past = f"{self.prefix}in{idx + 3} + ((b * {self.hkv} + kh) * {self.P} + ({j})) * {width}"
        return f"(({j}) < {self.P} ? {past} : {self.new_row(idx, width, f'({j}) - {self.P}')})"


class _Attn(AttentionGeometry):
    """The geometry of one attention node and the C spellings shared by both ops."""
    prefix = "a->"

    def __init__(self, ctx: KernelContext, fused: bool):
        self.ctx, self.fused = ctx, fused
        q, k, v = ctx.inputs[:3]
        self.qdt, self.kdt, self.vdt = q.dtype, k.dtype, v.dtype
        for t, what in ((q, "Q"), (k, "K"), (v, "V")):
            if not t.dtype.is_float:
                ctx.fail(f"{what} must be a float tensor, got {t.dtype}")
        self.at = "double" if dtypes.float64 in (q.dtype, k.dtype, v.dtype) else "float"
        super().__init__(ctx, fused)
        if self.P and (ctx.inputs[4].dtype != k.dtype or ctx.inputs[5].dtype != v.dtype):
            ctx.fail("past_key / past_value must have the dtypes of K / V")
        if self.hq % self.hkv:
            ctx.fail(f"q_num_heads={self.hq} is not a multiple of kv_num_heads={self.hkv}")
        self.group = self.hq // self.hkv

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
    fields.append("uint8_t *scratch; int64_t slot_bytes;")  # a thread slot's keys block and scores
    return f"typedef struct {{ {' '.join(fields)} }} {fn}_args;"


def _dispatch(ctx: KernelContext, g: _Attn, row: "_Row", pre: list[str]) -> str:
    fn = ctx.fn_name
    items = g.B * g.hq * -(-g.Sq // ROW_BLOCK)
    macs = g.B * g.hq * g.Sq * g.L * (g.D + g.Dv)
    parallel = upper(items) > 1 and ctx.split(macs, PARALLEL_MIN_MACS)  # (the pool takes any count)
    slots = ctx.slots(parallel)
    scratch, stride = ctx.thread_scratch(row.slot_bytes, slots, "uint8_t", 1)
    inits = ", ".join([f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))]
                      + [scratch, str(stride)])
    call = (f"pdc_parallel_slots({items}, {slots}, {fn}_rows, (void *)&a);" if parallel
            else f"{fn}_rows((void *)&a, 0, {items}, 0);")
    when = ctx.split_at_run_time(macs, PARALLEL_MIN_MACS) if parallel else None
    if when:  # sizes known only at run time: the pool only where this run's work pays for it
        call = f"if ({when}) {call} else {fn}_rows((void *)&a, 0, {items}, 0);"
    unused = [f"(void)in{i};" for i, t in enumerate(ctx.inputs) if t is None]
    return "\n".join(pre + [f"    {fn}_args a = {{ {inits} }};", "    " + " ".join(unused), f"    {call}"])


class _Row:
    """The C of one node's task function, built as a list of lines."""

    def __init__(self, g: _Attn, sct: str, fast: bool):
        self.g, self.sct, self.fast = g, sct, fast
        self.kt = fast and sct == "float" and g.D * upper(g.L) <= KT_FLOATS_MAX and take("attention", "keys-transposed")
        self.path = "keys-transposed" if self.kt else "keys-direct" if fast else "scalar"
        if fast:
            vec_helper(g.ctx)
        nb = -(-g.Sq // ROW_BLOCK)
        fn = g.ctx.fn_name
        # a thread slot of the kernel's scratch: the transposed keys block, then a row's scores
        kt_bytes = -(-g.D * g.L * 4 // 64) * 64 if self.kt else 0
        self.slot_bytes = kt_bytes + max(g.L, 1) * (8 if sct == "double" else 4)
        self.lines = [_struct(g.ctx, fn),
                      f"static void {fn}_rows(void *arg, int64_t begin, int64_t end, int slot) {{",
                      f"    const {fn}_args *a = (const {fn}_args *)arg;",
                      "    uint8_t *mine = a->scratch + slot * a->slot_bytes;",
                      f"    {sct} *restrict sc = ({sct} *)(mine + {kt_bytes});",
                      "    for (int64_t it = begin; it < end; it++) {",
                      f"      const int64_t ib = it % {nb}, h = it / {nb} % {g.hq}, b = it / {nb * g.hq};",
                      f"      const int64_t kh = h / {g.group}; (void)kh;"]
        if self.kt:  # the head's keys, transposed: kt[d][j]
            self.lines += ["      float *restrict kt = (float *)mine;",
                           f"      for (int64_t j = 0; j < {g.L}; j++) {{ const float *kr = {g.kv_row(1, g.D)}; "
                           f"for (int64_t d = 0; d < {g.D}; d++) kt[d * {g.L} + j] = kr[d]; }}"]
        self.lines += [f"      for (int64_t i = ib * {ROW_BLOCK}; i < {g.Sq} && i < (ib + 1) * {ROW_BLOCK}; i++) {{",
                       f"        const int64_t r = (b * {g.hq} + h) * {g.Sq} + i; (void)r;",
                       f"        {g.at} qv[{max(g.D, 1)}];"]

    def add(self, *lines: str):
        self.lines += ["        " + x for x in lines]

    def query(self, expr: str):
        """qv[d] = expr (of qr[d], the query row)."""
        g = self.g
        self.add(f"{{ const {g.ctx.ctype(g.qdt)} *qr = {g.q_row()};",
                 f"  for (int64_t d = 0; d < {g.D}; d++) qv[d] = {expr}; }}")

    def scores(self, slow_dot: str) -> str:
        """Emits what the per-key loop needs and returns its first statement (s = the raw score);
        slow_dot computes s from qv and the key row kr for non-float32 types."""
        g = self.g
        if self.kt:
            self.add(f"pdc_attn_axpys(sc, qv, kt, {g.D}, {g.L}, {g.L}, 0);")
            return "float s = sc[j];"
        row = f"const {g.ctx.ctype(g.kdt)} *kr = {g.kv_row(1, g.D)}; "
        if self.fast:
            return row + f"float s = pdc_attn_dot(qv, kr, {g.D});"
        return row + slow_dot

    def pv(self, prob_round):
        """Y row = sum_j p_j V_j (sc holds the probabilities)."""
        g, ctx = self.g, self.g.ctx
        if self.fast and self.sct == "float" and g.vdt.short == "f32" and ctx.outputs[0].dtype.short == "f32":
            ld = g.hkv * g.Dv if g.rank3 else g.Dv
            y = f"{g.y_row()}"
            if g.P:  # the past rows, then the new ones
                past = f"a->in5 + (b * {g.hkv} + kh) * {g.P * g.Dv}"
                self.add(f"pdc_attn_axpys({y}, sc, {past}, {g.P}, {g.Dv}, {g.Dv}, 0);",
                         f"pdc_attn_axpys({y}, sc + {g.P}, {g.new_row(2, g.Dv, '0')}, {g.Skv}, {ld}, {g.Dv}, 1);")
            else:
                self.add(f"pdc_attn_axpys({y}, sc, {g.new_row(2, g.Dv, '0')}, {g.L}, {ld}, {g.Dv}, 0);")
            return
        at, Tv = g.at, ctx.ctype(g.vdt)
        self.add(f"{at} yacc[{max(g.Dv, 1)}];",
                 f"for (int64_t d = 0; d < {g.Dv}; d++) yacc[d] = 0;",
                 f"for (int64_t j = 0; j < {g.L}; j++) {{",
                 f"    const {at} p = {prob_round('sc[j]')};",
                 f"    const {Tv} *vr = {g.kv_row(2, g.Dv)};",
                 f"    for (int64_t d = 0; d < {g.Dv}; d++) yacc[d] += p * ({at}){ctx.load(g.vdt, 'vr[d]')};",
                 "}",
                 f"{{ {ctx.ctype(ctx.outputs[0].dtype)} *yr = {g.y_row()};",
                 f"  for (int64_t d = 0; d < {g.Dv}; d++) yr[d] = {ctx.store(ctx.outputs[0].dtype, 'yacc[d]')}; }}")

    def finish(self) -> None:
        self.lines += ["      }", "    }", "}"]
        self.g.ctx.helper(f"{self.g.ctx.fn_name}_impl", "\n".join(self.lines))


def _fast(g: _Attn) -> bool:
    """Whether the vectorized float32 helpers apply (forcing "scalar" runs float32 on the loops)."""
    return g.qdt.short == "f32" and g.kdt.short == "f32" and g.at == "float" and not take("attention", "scalar", False)


def _check_sizes(ctx: KernelContext, g: _Attn) -> bool:
    """False when there is nothing to compute; fails on what the kernels do not take."""
    if math.prod(ctx.outputs[0].shape) == 0:
        return False
    if g.L == 0:
        ctx.fail("attention over an empty key sequence is not supported")
    return True


# ---- ONNX Attention ---------------------------------------------------------------------------
@kernel("attention")
def attention(ctx: KernelContext) -> str:
    g = _Attn(ctx, fused=False)
    a = ctx.attrs
    at, T = g.at, g.qdt
    if not _check_sizes(ctx, g):
        return "\n".join(g.present_copy() + ["    (void)in0;"])
    rnd = _round_fn(T, at)
    scale = a.get("scale")
    root = float(T.np.type(sqrt_scale(scale, g.D)))
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
    has_bias = ctx.has_input(3) or causal or lw >= 0 or rw >= 0 or nonpad

    sct = "double" if "double" in (at, spc) else "float"  # holds scores, then softmax values
    fast = _fast(g)
    row = _Row(g, sct, fast)
    if fast:  # sqrt(scale) applied to Q twice instead of to Q and K: a rounding apart
        row.query(f"(qr[d] * {root_c}) * {root_c}")
    else:
        row.query(rnd(f"({at}){ctx.load(T, 'qr[d]')} * {root_c}"))
    if nonpad:
        row.add("const int64_t valid = a->in6[b];")
    if causal or lw >= 0 or rw >= 0:
        row.add(f"const int64_t pos = i + {f'valid - {g.Sq}' if nonpad else g.P};")
    if ctx.has_input(3):
        moff, M = g.mask_terms((g.B, g.hq, g.Sq))
        row.add(f"const {ctx.ctype(ctx.inputs[3].dtype)} *mr = a->in3 + {moff};")
    if debug:
        row.add(f"{ctx.ctype(ctx.outputs[3].dtype)} *qk = a->out3 + r * {g.L};")
    kval = rnd(f"({at}){ctx.load(g.kdt, 'kr[d]')} * {root_c}")
    first = row.scores(f"{at} s = 0; for (int64_t d = 0; d < {g.D}; d++) s += qv[d] * {kval}; s = {rnd('s')};")
    row.add("int dead = 0;")
    per_key = [first]
    store_dbg = lambda e: f"qk[j] = {ctx.store(ctx.outputs[3].dtype, e)};"  # noqa: E731
    if debug and mode == 0:
        per_key.append(store_dbg("s"))
    if softcap > 0:
        cap = float_literal(softcap, at)
        per_key.append(f"s = {rnd(f'{cap} * {tanh_of(at)}(s / {cap})')};")
    if debug and mode == 1:
        per_key.append(store_dbg("s"))
    if has_bias:  # mask, then -inf terms for the causal frontier, the window and key padding
        if ctx.has_input(3):
            mt = ctx.inputs[3].dtype
            mval = "(mr[j] ? 0 : -INFINITY)" if mt is dtypes.bool_ else f"({at}){ctx.load(mt, 'mr[j]')}"
            per_key.append(f"{at} bias = j < {M} ? {mval} : -INFINITY;")
        else:
            per_key.append(f"{at} bias = 0;")
        if causal:
            per_key.append("if (j > pos) bias += -INFINITY;")
        if lw >= 0 or rw >= 0:
            conds = ([f"j < pos - {lw}"] if lw >= 0 else []) + ([f"j > pos + {rw}"] if rw >= 0 else [])
            per_key.append(f"if ({' || '.join(conds)}) bias += -INFINITY;")
        if nonpad:
            per_key.append("if (j >= valid) bias += -INFINITY;")
        per_key.append("live += !(isinf(bias) && bias < 0);")
        per_key.append(f"s = {rnd('s + bias')};")
    if debug and mode == 2:
        per_key.append(store_dbg("s"))
    if per_key != ["float s = sc[j];"]:
        row.add("int64_t live = 0; (void)live;",
                f"for (int64_t j = 0; j < {g.L}; j++) {{", *["    " + x for x in per_key], "    sc[j] = s;", "}")
        if has_bias:
            row.add("dead = live == 0;")
    # softmax in the softmax precision
    if sct == "float" and sp.short != "f16":
        vec_helper(ctx)
        vmath_helper(ctx)
        row.add(f"float top = pdc_attn_max(sc, {g.L});",
                "if (isinf(top) && top < 0) top = 0;",
                f"float total = pdc_seq_exp_sum(sc, {g.L}, top);",
                "if (total == 0) total = 1;",
                f"if (dead) memset(sc, 0, sizeof(*sc) * {g.L}); else pdc_attn_div(sc, {g.L}, total);")
    else:
        s_sp = rsp(f"({spc})sc[j]")  # a score in the softmax precision
        e_sp = rsp(f"{'expf' if spc == 'float' else 'exp'}({rsp(f'{s_sp} - top')})")
        row.add(f"{spc} top = -INFINITY; int nan = 0;",
                f"for (int64_t j = 0; j < {g.L}; j++) {{ const {spc} v = {s_sp}; top = v > top ? v : top; "
                "nan |= v != v; }",
                "if (nan) top = NAN; else if (isinf(top) && top < 0) top = 0;",
                f"{spc} total = 0;",
                f"for (int64_t j = 0; j < {g.L}; j++) {{ const {spc} e = {e_sp}; sc[j] = e; total += e; }}",
                f"total = {rsp('total')}; if (total == 0) total = 1;",
                f"for (int64_t j = 0; j < {g.L}; j++) sc[j] = dead ? 0 : {rsp(f'({spc})sc[j] / total')};")
    if debug and mode == 3:
        row.add(f"for (int64_t j = 0; j < {g.L}; j++) qk[j] = {ctx.store(ctx.outputs[3].dtype, 'sc[j]')};")
    row.pv(lambda e: rnd(f"({at}){e}"))
    row.finish()
    return mark("attention", row.path, _dispatch(ctx, g, row, g.present_copy()))


def sqrt_scale(scale, head_size: int) -> np.float32:
    """sqrt(scale) as the op's function body computes it: in float32 (the scale attribute's type;
    the default 1 / sqrt(head_size) too), then cast to the inputs' type."""
    s = np.float32(1) / np.sqrt(np.float32(head_size)) if scale is None else np.float32(scale)
    return np.sqrt(s)


def tanh_of(ct: str) -> str:
    return "tanhf" if ct == "float" else "tanh"


# ---- fused_attention --------------------------------------------------------------------------
@kernel("fused_attention")
def fused_attention(ctx: KernelContext) -> str:
    g = _Attn(ctx, fused=True)
    at, T = g.at, g.qdt
    if not _check_sizes(ctx, g):
        return "    (void)in0;"
    rnd = _round_fn(T, at)
    scale = ctx.attrs.get("scale")
    scale = 1 / math.sqrt(g.D) if scale is None else scale
    scale_c = float_literal(float(T.np.type(scale)), at)  # the reference multiplies by the scale in Q's type
    fast = _fast(g)
    row = _Row(g, at, fast)
    row.query(f"({at}){ctx.load(T, 'qr[d]')}")
    per_key = [row.scores(f"{at} s = 0; for (int64_t d = 0; d < {g.D}; d++) s += qv[d] * "
                          f"({at}){ctx.load(g.kdt, 'kr[d]')};"),
               f"s = {rnd(rnd('s') + ' * ' + scale_c)};"]
    if ctx.has_input(3):
        ms = ctx.inputs[3].shape
        full = (1,) * (4 - len(ms)) + tuple(ms)
        st = [0] * (4 - len(ms)) + strides(tuple(ms))
        terms = [f"{var} * {s}" for var, n, s in zip(("b", "h", "i"), full[:3], st[:3]) if n != 1 and s]
        row.add(f"const {ctx.ctype(ctx.inputs[3].dtype)} *mr = a->in3 + {' + '.join(terms) or '0'};")
        jm = "j" if full[3] != 1 else "0"
        mt = ctx.inputs[3].dtype
        if mt is dtypes.bool_:
            per_key.append(f"if (!mr[{jm}]) s = -INFINITY;")
        else:
            mval = ctx.load(mt, f"mr[{jm}]")
            per_key.append(f"s = {rnd(f's + ({at}){mval}')};")
    row.add(f"for (int64_t j = 0; j < {g.L}; j++) {{", *["    " + x for x in per_key], "    sc[j] = s;", "}")
    # softmax (the reference's: a non-finite max is not subtracted)
    if at == "float":
        vec_helper(ctx)
        vmath_helper(ctx)
        row.add(f"float top = pdc_attn_max(sc, {g.L});",
                "if (isinf(top) || top != top) top = 0;",
                f"const float total = pdc_seq_exp_sum(sc, {g.L}, top);",
                f"pdc_attn_div(sc, {g.L}, total);")
        if T.short != "f32":
            row.add(f"for (int64_t j = 0; j < {g.L}; j++) sc[j] = {rnd('sc[j]')};")
    else:
        row.add("double top = -INFINITY; int nan = 0;",
                f"for (int64_t j = 0; j < {g.L}; j++) {{ top = sc[j] > top ? sc[j] : top; nan |= sc[j] != sc[j]; }}",
                "if (nan || isinf(top)) top = 0;",
                "double total = 0;",
                f"for (int64_t j = 0; j < {g.L}; j++) {{ sc[j] = exp(sc[j] - top); total += sc[j]; }}",
                f"for (int64_t j = 0; j < {g.L}; j++) sc[j] /= total;")
    if ctx.attrs.get("nan_to_zero", 0):
        row.add(f"for (int64_t j = 0; j < {g.L}; j++) if (sc[j] != sc[j]) sc[j] = 0;")
    row.pv(lambda e: f"({at}){e}")
    row.finish()
    return mark("attention", row.path, _dispatch(ctx, g, row, []))
