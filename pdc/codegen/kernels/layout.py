"""Channels-last (NHWC) kernels for the variants made by convert-layout (pdc/ir/ops/layout.py):
conv_nhwc, fused_conv_nhwc, max_pool_nhwc, average_pool_nhwc, global_average_pool_nhwc,
global_max_pool_nhwc and batch_normalization_nhwc.

With channels innermost every kernel keeps a row of per-channel accumulators for one output
pixel and runs its inner loops over contiguous channels (vectorized by the compiler):
- conv: acc[M] += x[pixel tap][c] * w[g][kh][kw][c][m] (weights packed so the m loop is
  contiguous; depthwise packs [kh][kw][M] and multiplies channel by channel);
- pools: acc[C] = max / sum over the window's valid taps (counts for the average follow
  count_include_pad, excluding ceil_mode's overhang, as the reference counts them).
Output rows (n, oh) are split over threads. Window geometry comes from the base ops' own
helpers (resolve_window), so padding, auto_pad, dilations and ceil_mode agree with them.
Half precision computes in float and rounds where the reference rounds.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.ops.fused_conv import ACTIVATIONS
from ...ir.ops.layout import TO_NCHW, permute_shape, weight_perm
from ...ir.ops.nn_common import resolve_window
from ..context import KernelContext, strides
from ..ctypes_c import float_literal
from . import kernel
from .elementwise import _float_unary
from ...ir.ops.nn_norm import EPSILON

PARALLEL_MIN_OPS = 1_000_000  # multiply-adds; below ~30 us of work a second thread costs more than it saves
ACC_MAX = 1 << 16  # per-pixel accumulators on the stack


def _rows_task(ctx: KernelContext, rows: int, body: list[str], work: int) -> str:
    """Runs `body` (a loop body over `row` = n * OH + oh) for every row, split over threads."""
    fn = ctx.fn_name
    fields = [f"const {ctx.ctype(t.dtype) if t is not None else 'void'} *in{i};" for i, t in enumerate(ctx.inputs)]
    fields += [f"{ctx.ctype(t.dtype)} *out{i};" for i, t in enumerate(ctx.outputs)]
    code = [f"typedef struct {{ {' '.join(fields)} }} {fn}_args;",
            f"static void {fn}_rows(void *arg, int64_t begin, int64_t end) {{",
            f"    const {fn}_args *A = (const {fn}_args *)arg;",
            "    for (int64_t row = begin; row < end; row++) {"]
    code += ["        " + line for line in body] + ["    }", "}"]
    ctx.helper(f"{fn}_impl", "\n".join(code))
    inits = ", ".join([f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))])
    unused = " ".join(f"(void)in{i};" for i, t in enumerate(ctx.inputs) if t is None)
    call = (f"pdc_parallel_for({rows}, {fn}_rows, (void *)&A);" if rows > 1 and ctx.split(work, PARALLEL_MIN_OPS)
            else f"{fn}_rows((void *)&A, 0, {rows});")
    return f"    {fn}_args A = {{ {inits} }};\n    {unused}\n    {call}"


def _rounder(ctx: KernelContext, dt):
    """Rounds a compute-type expression to dt and back (identity for float32 / float64)."""
    if dt.short in ("f16", "bf16"):
        return lambda e: ctx.load(dt, ctx.store(dt, e))
    return lambda e: e


def _geometry(ctx: KernelContext, kernel_hw, ceil_mode=0):
    x = ctx.inputs[0]
    nchw = permute_shape(x.shape, TO_NCHW)
    st, dil, begin, out, counted = resolve_window(nchw, list(kernel_hw), ctx.attrs, ceil_mode)
    return nchw, st, dil, begin, out, counted


def _tap_loops(H, W, st, dil, begin, KH, KW) -> list[str]:
    """Opens the loops over a window's taps inside the input (ih, iw); close with two braces."""
    return [f"for (int64_t kh = 0; kh < {KH}; kh++) {{",
            f"    const int64_t ih = oh * {st[0]} - {begin[0]} + kh * {dil[0]};",
            f"    if (ih < 0 || ih >= {H}) continue;",
            f"    for (int64_t kw = 0; kw < {KW}; kw++) {{",
            f"        const int64_t iw = ow * {st[1]} - {begin[1]} + kw * {dil[1]};",
            f"        if (iw < 0 || iw >= {W}) continue;"]


# ---- convolution --------------------------------------------------------------------------------
def _activation(ctx: KernelContext, ct: str, v: str) -> str:
    a = ctx.attrs
    name = a.get("activation", "none")
    if name not in ACTIVATIONS:
        ctx.fail(f"activation '{name}' is not supported")
    if name == "none":
        return v
    if name == "clip":
        dt = ctx.outputs[0].dtype
        lo, hi = (float(np.array(a[k], dt.np)) for k in ("activation_alpha", "activation_beta"))
        lo, hi = float_literal(lo, ct), float_literal(hi, ct)
        e = f"({v} < {lo} ? {lo} : {v})"
        return f"({e} > {hi} ? {hi} : {e})"
    op = ACTIVATIONS[name][0]
    attrs = {}
    if name == "leaky_relu":
        attrs = {"alpha": a["activation_alpha"]}
    elif name == "hard_sigmoid":
        attrs = {"alpha": a["activation_alpha"], "beta": a["activation_beta"]}
    elif name in ("gelu", "gelu_tanh"):
        attrs = {"approximate": "tanh" if name == "gelu_tanh" else "none"}
    return _apply(_float_unary(op, ct, attrs), v)


def _apply(expr: str, v: str) -> str:
    """expr (in the variable a) applied to the C expression v, through a statement expression."""
    return f"({{ const __typeof__({v}) a = {v}; ({expr}); }})"


@kernel("conv_nhwc", "fused_conv_nhwc")
def conv_nhwc(ctx: KernelContext) -> str:
    a = ctx.attrs
    x, w = ctx.inputs[0], ctx.inputs[1]
    dt = x.dtype
    if not dt.is_float:
        ctx.fail(f"X must be a float tensor, got {dt}")
    layout = a.get("weight_layout", "OHWI")
    perm = weight_perm(layout)
    wshape = permute_shape(w.shape, perm)  # OIHW
    M, Cg, KH, KW = wshape
    group = a.get("group", 1)
    nchw, st, dil, begin, out, _ = _geometry(ctx, (KH, KW))
    N, C, H, W = nchw
    OH, OW = out
    Mg = M // group
    ct = ctx.compute_ctype(dt)
    rnd = _rounder(ctx, dt)
    y = ctx.outputs[0]
    if math.prod(y.shape) == 0:
        return "    (void)in0;"
    if M > ACC_MAX:
        ctx.fail(f"{M} output channels: at most {ACC_MAX} are supported")
    depthwise = Cg == 1 and Mg == 1
    wdata = ctx.const(1)
    T = ctx.ctype(dt)
    body = [f"const int64_t n = row / {OH}, oh = row % {OH};",
            f"{ct} acc[{M}];",
            f"for (int64_t ow = 0; ow < {OW}; ow++) {{"]
    if ctx.has_input(2):
        body.append(f"    for (int64_t m = 0; m < {M}; m++) acc[m] = ({ct}){ctx.load(ctx.inputs[2].dtype, 'A->in2[m]')};")
    else:
        body.append(f"    for (int64_t m = 0; m < {M}; m++) acc[m] = 0;")
    taps = _tap_loops(H, W, st, dil, begin, KH, KW)
    body += ["    " + t for t in taps]
    ind = "            "
    body.append(f"{ind}const {T} *xp = A->in0 + ((n * {H} + ih) * {W} + iw) * {C};")
    if wdata is not None:
        wo = np.asarray(wdata).transpose(perm).astype(np.float64 if ct == "double" else np.float32)
        if depthwise:
            packed = wo.reshape(M, KH, KW).transpose(1, 2, 0)  # [kh][kw][M]
            wp = ctx.add_weight(packed, ct)
            body.append(f"{ind}const {ct} *wr = {wp} + (kh * {KW} + kw) * {M};")
            body.append(f"{ind}for (int64_t m = 0; m < {M}; m++) acc[m] += ({ct}){ctx.load(dt, 'xp[m]')} * wr[m];")
        else:
            packed = wo.reshape(group, Mg, Cg, KH, KW).transpose(0, 3, 4, 2, 1)  # [g][kh][kw][c][mg]
            wp = ctx.add_weight(packed, ct)
            body += [f"{ind}for (int64_t g = 0; g < {group}; g++) {{",
                     f"{ind}    const {ct} *wr = {wp} + ((g * {KH} + kh) * {KW} + kw) * {Cg * Mg};",
                     f"{ind}    {ct} *ag = acc + g * {Mg};",
                     f"{ind}    for (int64_t c = 0; c < {Cg}; c++) {{",
                     f"{ind}        const {ct} xv = ({ct}){ctx.load(dt, f'xp[g * {Cg} + c]')};",
                     f"{ind}        for (int64_t m = 0; m < {Mg}; m++) ag[m] += xv * wr[c * {Mg} + m];",
                     f"{ind}    }}", f"{ind}}}"]
    else:
        s = dict(zip(layout, strides(w.shape)))  # element stride of each weight letter
        body += [f"{ind}for (int64_t m = 0; m < {M}; m++) {{",
                 f"{ind}    const {T} *wr = A->in1 + m * {s['O']} + kh * {s['H']} + kw * {s['W']};",
                 f"{ind}    const {T} *xg = xp + (m / {Mg}) * {Cg};",
                 f"{ind}    {ct} sum = 0;",
                 f"{ind}    for (int64_t c = 0; c < {Cg}; c++) sum += ({ct}){ctx.load(dt, 'xg[c]')} * "
                 f"({ct}){ctx.load(dt, 'wr[c * ' + str(s['I']) + ']')};",
                 f"{ind}    acc[m] += sum;",
                 f"{ind}}}"]
    body += ["        }", "    }"]
    # epilogue: round to Y's type, then the fused residual / activation, each rounded like its op
    residual = a.get("residual", "none") if ctx.node.op == "fused_conv_nhwc" else "none"
    v = rnd("acc[m]")
    if residual == "before_activation":
        v = rnd(f"{v} + ({ct}){ctx.load(dt, 'rr[m]')}")
    if ctx.node.op == "fused_conv_nhwc":
        v = rnd(_activation(ctx, ct, v))
    if residual == "after_activation":
        v = rnd(f"{v} + ({ct}){ctx.load(dt, 'rr[m]')}")
    body.append(f"    {T} *yr = A->out0 + ((n * {OH} + oh) * {OW} + ow) * {M};")
    if residual != "none":
        body.append(f"    const {T} *rr = A->in3 + ((n * {OH} + oh) * {OW} + ow) * {M};")
    body.append(f"    for (int64_t m = 0; m < {M}; m++) yr[m] = {ctx.store(dt, v)};")
    body.append("}")
    return _rows_task(ctx, N * OH, body, N * OH * OW * M * Cg * KH * KW)


# ---- pools ------------------------------------------------------------------------------------------
@kernel("max_pool_nhwc", "average_pool_nhwc")
def pool_nhwc(ctx: KernelContext) -> str:
    a = ctx.attrs
    x = ctx.inputs[0]
    dt = x.dtype
    kernel_hw = list(a["kernel_shape"])
    if len(kernel_hw) != 2:
        ctx.fail(f"kernel_shape {kernel_hw}: NHWC pools are 2-D")
    nchw, st, dil, begin, out, counted = _geometry(ctx, kernel_hw, a.get("ceil_mode", 0))
    N, C, H, W = nchw
    OH, OW = out
    KH, KW = kernel_hw
    if math.prod(ctx.outputs[0].shape) == 0:
        return "    (void)in0;"
    if C > ACC_MAX:
        ctx.fail(f"{C} channels: at most {ACC_MAX} are supported")
    is_max = ctx.node.op == "max_pool_nhwc"
    T = ctx.ctype(dt)
    ct = ctx.compute_ctype(dt) if dt.is_float else T
    body = [f"const int64_t n = row / {OH}, oh = row % {OH};",
            f"{ct} acc[{C}];"]
    if not is_max:
        # taps counted per output position and axis (the reference's window_counts)
        if a.get("count_include_pad", 0):
            valid = [(-pb, (H, W)[i] + pe) for i, (pb, pe) in enumerate(counted)]
        else:
            valid = [(0, H), (0, W)]
        cnt = []
        for i, (o, k) in enumerate(zip(out, kernel_hw)):
            starts = np.arange(o) * st[i] - begin[i]
            tapsi = starts[:, None] + np.arange(k)[None, :] * dil[i]
            cnt.append(((tapsi >= valid[i][0]) & (tapsi < valid[i][1])).sum(axis=1))
        body.append(f"static const int32_t cnt_h[{OH}] = {{{', '.join(map(str, cnt[0]))}}};")
        body.append(f"static const int32_t cnt_w[{OW}] = {{{', '.join(map(str, cnt[1]))}}};")
    body.append(f"for (int64_t ow = 0; ow < {OW}; ow++) {{")
    if is_max:
        lowest = "-INFINITY" if dt.is_float else ("INT8_MIN" if dt.short == "i8" else "0")
        body.append(f"    for (int64_t c = 0; c < {C}; c++) acc[c] = {lowest};")
    else:
        body.append(f"    for (int64_t c = 0; c < {C}; c++) acc[c] = 0;")
    body += ["    " + t for t in _tap_loops(H, W, st, dil, begin, KH, KW)]
    ind = "            "
    body.append(f"{ind}const {T} *xp = A->in0 + ((n * {H} + ih) * {W} + iw) * {C};")
    if is_max:
        nan = " || v != v" if dt.is_float else ""
        body.append(f"{ind}for (int64_t c = 0; c < {C}; c++) {{ const {ct} v = {ctx.load(dt, 'xp[c]')}; "
                    f"if (v > acc[c]{nan}) acc[c] = acc[c] != acc[c] ? acc[c] : v; }}")
    else:
        body.append(f"{ind}for (int64_t c = 0; c < {C}; c++) acc[c] += {ctx.load(dt, 'xp[c]')};")
    body += ["        }", "    }"]
    body.append(f"    {T} *yr = A->out0 + ((n * {OH} + oh) * {OW} + ow) * {C};")
    if is_max:
        body.append(f"    for (int64_t c = 0; c < {C}; c++) yr[c] = {ctx.store(dt, 'acc[c]')};")
    else:
        body.append(f"    const {ct} count = ({ct})(cnt_h[oh] * cnt_w[ow]);")
        body.append(f"    for (int64_t c = 0; c < {C}; c++) yr[c] = {ctx.store(dt, 'acc[c] / count')};")
    body.append("}")
    return _rows_task(ctx, N * OH, body, N * OH * OW * C * KH * KW)


@kernel("global_average_pool_nhwc", "global_max_pool_nhwc")
def global_pool_nhwc(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    dt = x.dtype
    N, H, W, C = x.shape
    T, ct = ctx.ctype(dt), ctx.compute_ctype(dt)
    if math.prod(ctx.outputs[0].shape) == 0:
        return "    (void)in0;"
    if C > ACC_MAX:
        ctx.fail(f"{C} channels: at most {ACC_MAX} are supported")
    is_max = ctx.node.op == "global_max_pool_nhwc"
    body = ["const int64_t n = row;", f"{ct} acc[{C}];",
            f"for (int64_t c = 0; c < {C}; c++) acc[c] = {'-INFINITY' if is_max else '0'};",
            f"for (int64_t p = 0; p < {H * W}; p++) {{",
            f"    const {T} *xp = A->in0 + (n * {H * W} + p) * {C};"]
    if is_max:
        body.append(f"    for (int64_t c = 0; c < {C}; c++) {{ const {ct} v = {ctx.load(dt, 'xp[c]')}; "
                    f"if (v > acc[c] || v != v) acc[c] = acc[c] != acc[c] ? acc[c] : v; }}")
    else:
        body.append(f"    for (int64_t c = 0; c < {C}; c++) acc[c] += {ctx.load(dt, 'xp[c]')};")
    body.append("}")
    res = "acc[c]" if is_max else f"acc[c] / ({ct}){H * W}"
    body.append(f"for (int64_t c = 0; c < {C}; c++) A->out0[n * {C} + c] = {ctx.store(dt, res)};")
    return _rows_task(ctx, N, body, N * H * W * C)


# ---- batch normalization ------------------------------------------------------------------------
@kernel("batch_normalization_nhwc")
def batch_normalization_nhwc(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    dt = x.dtype
    ct = ctx.compute_ctype(dt)
    C = x.shape[3]
    total = math.prod(x.shape)
    if total == 0:
        return "    (void)in0;"
    if C > ACC_MAX:
        ctx.fail(f"{C} channels: at most {ACC_MAX} are supported")
    eps = float(np.float64(ctx.attrs.get("epsilon", EPSILON)) if ct == "double" else np.float32(ctx.attrs.get("epsilon", EPSILON)))
    eps = float_literal(eps, ct)
    sqrt = "sqrtf" if ct == "float" else "sqrt"
    ld = lambda i, e: f"({ct}){ctx.load(ctx.inputs[i].dtype, e)}"  # noqa: E731
    yv = ld(0, f"in0[p * {C} + c]") + " * inv[c] + shift[c]"
    lines = [f"    {ct} inv[{C}], shift[{C}];",
             f"    for (int64_t c = 0; c < {C}; c++) {{",
             f"        inv[c] = {ld(1, 'in1[c]')} / {sqrt}({ld(4, 'in4[c]')} + {eps});",
             f"        shift[c] = {ld(2, 'in2[c]')} - {ld(3, 'in3[c]')} * inv[c];",
             "    }",
             f"    for (int64_t p = 0; p < {total // C}; p++)",
             f"        for (int64_t c = 0; c < {C}; c++) out0[p * {C} + c] = {ctx.store(dt, yv)};"]
    return "\n".join(lines)
