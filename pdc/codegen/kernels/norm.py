"""Normalization kernels: BatchNormalization (inference), InstanceNormalization, LayerNormalization,
GroupNormalization, RMSNormalization, LRN, MeanVarianceNormalization and LpNormalization.

Numerics mirror pdc/ir/ops/nn_norm.py: statistics in float (double for float64 inputs, or
`stash_type` where the op has one), normalized values rounded to the input type before the
scale / bias where the ONNX function bodies do that, divisions kept as divisions. Contiguous
statistics use _axis.row_sum_helper (vector intrinsics for fp32, LANES partial sums otherwise).
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from ...ir.ops.nn_norm import EPSILON, LRN_ALPHA
from ..context import KernelContext, strides
from ..ctypes_c import float_literal
from ._axis import Groups, Num, axis_kernel, indent, nest, outer_n_inner, prod, row_sum_helper


def _acc(num: Num) -> str:
    """compute_dtype: double for float64 inputs, float otherwise."""
    return "double" if num.dt.short == "f64" else "float"


def _lit(x: float, c: str) -> str:
    return float_literal(float(np.dtype(np.float64 if c == "double" else np.float32).type(x)), c)


def _stash(ctx: KernelContext) -> tuple[str, Num]:
    """(C type the statistics are computed in, the dtype Mean / InvStdDev are stored in)."""
    st = ctx.attrs.get("stash_type", dtypes.float32)
    return ("double" if st.short == "f64" else "float"), Num(st)


def _param(ctx: KernelContext, i: int, tail) -> tuple[str, Num]:
    """A C expression of parameter i (Scale / B) at position j of the normalized tail (layer / rms
    norm: broadcast unidirectionally to `tail`); constants are expanded at compile time."""
    t = ctx.inputs[i]
    num = Num(t.dtype)
    n = prod(tail)
    if prod(t.shape) == n:
        return num.load(f"in{i}[j]"), num
    if prod(t.shape) == 1:
        return num.load(f"in{i}[0]"), num
    data = ctx.const(i)
    if data is not None:
        full = np.ascontiguousarray(np.broadcast_to(data.reshape(t.shape), tail))
        return num.load(f"{ctx.add_weight(full, num.c)}[j]"), num
    # general broadcast at run time: the index from the tail coordinates
    pad = len(tail) - len(t.shape)
    pshape = (1,) * pad + tuple(t.shape)
    tst, pst = strides(tail), strides(pshape)
    terms = [f"((j / {tst[d]}) % {tail[d]}) * {pst[d]}" for d in range(len(tail)) if pshape[d] != 1]
    return num.load(f"in{i}[{' + '.join(terms) or '0'}]"), num


# ---- BatchNormalization ------------------------------------------------------------------------
@axis_kernel("batch_normalization")
def batch_normalization(ctx: KernelContext) -> str:
    """y = x * inv[c] + shift[c], inv = scale / sqrt(var + eps), shift = B - mean * inv; folded at
    compile time when the parameters are constants."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    acc = _acc(num)
    N, C = x.shape[0], x.shape[1]
    S = prod(x.shape[2:])
    if N * C * S == 0:
        return "    /* empty */"
    eps = ctx.attrs.get("epsilon", EPSILON)
    params = [ctx.const(i) for i in range(1, 5)]
    lines = []
    if all(p is not None for p in params):
        npa = np.dtype(np.float64 if acc == "double" else np.float32)
        scale, b, mean, var = (p.astype(npa) for p in params)
        inv = scale / np.sqrt(var + npa.type(eps))
        shift = b - mean * inv
        lines.append(f"    const {acc} *inv = {ctx.add_weight(inv.astype(npa), acc)};")
        lines.append(f"    const {acc} *shift = {ctx.add_weight(shift.astype(npa), acc)};")
        per_c = ""
        i_c, s_c = "inv[c]", "shift[c]"
    else:
        ld = lambda i: Num(ctx.inputs[i].dtype).load(f"in{i}[c]")  # noqa: E731
        per_c = (f"const {acc} ic = ({acc}){ld(1)} / sqrt{'f' if acc == 'float' else ''}(({acc}){ld(4)} + {_lit(eps, acc)});\n"
                 f"const {acc} sc = ({acc}){ld(2)} - ({acc}){ld(3)} * ic;\n")
        i_c, s_c = "ic", "sc"
    xs = num.load("p[s]")
    y = num.store(f"({acc}){xs} * {i_c} + {s_c}")
    body = (f"{per_c}const {num.c} *p = in0 + (n * {C} + c) * {S};\n"
            f"{num.c} *q = out0 + (n * {C} + c) * {S};\n"
            f"for (int64_t s = 0; s < {S}; s++) q[s] = {y};")
    lines.append(f"    for (int64_t n = 0; n < {N}; n++) for (int64_t c = 0; c < {C}; c++) {{\n{indent(body, 2)}\n    }}")
    return "\n".join(lines)


# ---- InstanceNormalization ---------------------------------------------------------------------
@axis_kernel("instance_normalization")
def instance_normalization(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    acc = _acc(num)
    f = "f" if acc == "float" else ""
    N, C = x.shape[0], x.shape[1]
    S = prod(x.shape[2:])
    if N * C * S == 0:
        return "    /* empty */"
    rsum = row_sum_helper(ctx, num, acc, "sum")
    rdev = row_sum_helper(ctx, num, acc, "sqdev")
    sc, bc = Num(ctx.inputs[1].dtype), Num(ctx.inputs[2].dtype)
    eps = _lit(ctx.attrs.get("epsilon", EPSILON), acc)
    val = f"(({acc}){num.load('p[s]')} - mean) / sd * g + b"
    return f"""    for (int64_t n = 0; n < {N}; n++) for (int64_t c = 0; c < {C}; c++) {{
        const {num.c} *p = in0 + (n * {C} + c) * {S};
        {num.c} *q = out0 + (n * {C} + c) * {S};
        const {acc} mean = {rsum}(p, {S}, 0) / ({acc}){S};
        const {acc} var = {rdev}(p, {S}, mean) / ({acc}){S};
        const {acc} sd = sqrt{f}(var + {eps});
        const {acc} g = ({acc}){sc.load('in1[c]')}, b = ({acc}){bc.load('in2[c]')};
        for (int64_t s = 0; s < {S}; s++) q[s] = {num.store(val)};
    }}"""


# ---- LayerNormalization / RMSNormalization -----------------------------------------------------
def _row_norm(ctx: KernelContext, rms: bool) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    rank = len(x.shape)
    axis = ctx.attrs.get("axis", -1) % rank
    tail = tuple(x.shape[axis:])
    outer, D = prod(x.shape[:axis]), prod(tail)
    if outer == 0:
        return "    /* empty */"
    st, st_num = _stash(ctx)
    f = "f" if st == "float" else ""
    acc = _acc(num)
    eps = _lit(ctx.attrs.get("epsilon", EPSILON), st)
    scale, _ = _param(ctx, 1, tail)
    lines = [f"const {num.c} *p = in0 + o * {D};", f"{num.c} *q = out0 + o * {D};"]
    if D == 0:  # the statistics of nothing: mean and var are NaN
        lines += [] if rms else [f"const {st} mean = ({st})NAN, inv = ({st})NAN;"]
    elif rms:
        ssq = row_sum_helper(ctx, num, st, "sumsq")
        lines += [f"const {st} sd = sqrt{f}({ssq}(p, {D}, 0) / ({st}){D} + {eps});"]
    else:
        rsum = row_sum_helper(ctx, num, st, "sum")
        rdev = row_sum_helper(ctx, num, st, "sqdev")
        lines += [f"const {st} mean = {rsum}(p, {D}, 0) / ({st}){D};",
                  f"const {st} inv = 1 / sqrt{f}({rdev}(p, {D}, mean) / ({st}){D} + {eps});"]
    xv = f"({st}){num.load('p[j]')}"
    if rms:
        normalized = num.load(num.store(f"{xv} / sd")) if D else f"({acc})NAN"
        y = f"({acc}){normalized} * ({acc}){scale}"
    else:
        normalized = num.load(num.store(f"({xv} - mean) * inv"))
        y = f"({acc}){normalized} * ({acc}){scale}"
        if ctx.has_input(2):
            bias, _ = _param(ctx, 2, tail)
            y += f" + ({acc}){bias}"
    if D:
        lines.append(f"for (int64_t j = 0; j < {D}; j++) q[j] = {num.store(y)};")
    if not rms:
        if len(ctx.outputs) > 1:
            lines.append(f"out1[o] = {st_num.store('mean')};")
        if len(ctx.outputs) > 2:
            lines.append(f"out2[o] = {st_num.store('inv')};")
    return f"    for (int64_t o = 0; o < {outer}; o++) {{\n{indent(chr(10).join(lines), 2)}\n    }}"


@axis_kernel("layer_normalization")
def layer_normalization(ctx: KernelContext) -> str:
    return _row_norm(ctx, rms=False)


@axis_kernel("rms_normalization")
def rms_normalization(ctx: KernelContext) -> str:
    return _row_norm(ctx, rms=True)


# ---- GroupNormalization ------------------------------------------------------------------------
@axis_kernel("group_normalization")
def group_normalization(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    acc = _acc(num)
    st, _ = _stash(ctx)
    f = "f" if st == "float" else ""
    G = ctx.attrs["num_groups"]
    N, C = x.shape[0], x.shape[1]
    S = prod(x.shape[2:])
    if N * C * S == 0:
        return "    /* empty */"
    Cg = C // G
    D = Cg * S
    rsum = row_sum_helper(ctx, num, st, "sum")
    rdev = row_sum_helper(ctx, num, st, "sqdev")
    sc, bc = Num(ctx.inputs[1].dtype), Num(ctx.inputs[2].dtype)
    eps = _lit(ctx.attrs.get("epsilon", EPSILON), st)
    normalized = num.load(num.store(f"(({st}){num.load('p[k * ' + str(S) + ' + s]')} - mean) / sd"))
    return f"""    for (int64_t n = 0; n < {N}; n++) for (int64_t g = 0; g < {G}; g++) {{
        const {num.c} *p = in0 + (n * {G} + g) * {D};
        {num.c} *q = out0 + (n * {G} + g) * {D};
        const {st} mean = {rsum}(p, {D}, 0) / ({st}){D};
        const {st} sd = sqrt{f}({rdev}(p, {D}, mean) / ({st}){D} + {eps});
        for (int64_t k = 0; k < {Cg}; k++) {{
            const int64_t c = g * {Cg} + k;
            const {acc} w = ({acc}){sc.load('in1[c]')}, b = ({acc}){bc.load('in2[c]')};
            for (int64_t s = 0; s < {S}; s++) q[k * {S} + s] = {num.store(f'({acc}){normalized} * w + b')};
        }}
    }}"""


# ---- LRN ---------------------------------------------------------------------------------------
@axis_kernel("lrn")
def lrn(ctx: KernelContext) -> str:
    """y = x / (bias + alpha / size * sum of x^2 over the neighbouring channels)^beta, over blocks of
    up to 256 spatial positions so the channel window sums stay in a small array."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    acc = _acc(num)
    f = "f" if acc == "float" else ""
    N, C = x.shape[0], x.shape[1]
    S = prod(x.shape[2:])
    if N * C * S == 0:
        return "    /* empty */"
    size = ctx.attrs["size"]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    npa = np.float64 if acc == "double" else np.float32
    a = float(npa(ctx.attrs.get("alpha", LRN_ALPHA)) / npa(size))
    bias, beta = ctx.attrs.get("bias", 1.0), ctx.attrs.get("beta", 0.75)
    bw = min(S, 256)
    full = S - S % bw

    def block(w):
        xv = lambda e: f"({acc}){num.load(e)}"  # noqa: E731
        y = num.store(f"{xv('p[j]')} / pow{f}({_lit(bias, acc)} + {_lit(a, acc)} * sq[j], {_lit(beta, acc)})")
        return (f"for (int64_t c = 0; c < {C}; c++) {{\n"
                f"    {acc} sq[{w}];\n"
                f"    for (int j = 0; j < {w}; j++) sq[j] = 0;\n"
                f"    const int64_t c0 = c - {lo} < 0 ? 0 : c - {lo}, c1 = c + {hi} + 1 > {C} ? {C} : c + {hi} + 1;\n"
                f"    for (int64_t k = c0; k < c1; k++) {{\n"
                f"        const {num.c} *p = in0 + (n * {C} + k) * {S} + s0;\n"
                f"        for (int j = 0; j < {w}; j++) {{ const {acc} v = {xv('p[j]')}; sq[j] += v * v; }}\n"
                f"    }}\n"
                f"    const {num.c} *p = in0 + (n * {C} + c) * {S} + s0;\n"
                f"    {num.c} *q = out0 + (n * {C} + c) * {S} + s0;\n"
                f"    for (int j = 0; j < {w}; j++) q[j] = {y};\n"
                f"}}")
    parts = []
    if full:
        parts.append(f"for (int64_t s0 = 0; s0 < {full}; s0 += {bw}) {{\n{indent(block(bw))}\n}}")
    if full < S:
        parts.append(f"{{\n    const int64_t s0 = {full};\n{indent(block(S - full))}\n}}")
    return f"    for (int64_t n = 0; n < {N}; n++) {{\n{indent(chr(10).join(parts), 2)}\n    }}"


# ---- MeanVarianceNormalization -----------------------------------------------------------------
@axis_kernel("mean_variance_normalization")
def mean_variance_normalization(ctx: KernelContext) -> str:
    """Per group over `axes`: mean, var = E[x^2] - mean^2, y = (x - mean) / (sqrt(max(var, 0)) + 1e-9).
    The statistics are summed in double: E[x^2] - mean^2 cancels badly where the variance is small
    next to the mean, and double keeps that error far below the output's precision."""
    x = ctx.inputs[0]
    num = Num(x.dtype)
    acc = _acc(num)
    f = "f" if acc == "float" else ""
    rank = len(x.shape)
    axes = sorted({a % rank for a in ctx.attrs.get("axes", [0, 2, 3])})
    g = Groups(x.shape, axes)
    if g.numel == 0:
        return "    /* empty */"
    red = g.red or [(1, 1)]
    n = g.n_red if g.red else 1
    xv = f"({acc}){num.load('in0[q]')}"
    stats = nest(red, f"const double v = (double){num.load('in0[q]')}; s1 += v; s2 += v * v;", "b", "r", "q")
    write = nest(red, f"out0[q] = {num.store(f'({xv} - mean) / den')};", "b", "r", "q")
    body = (f"double s1 = 0, s2 = 0;\n{stats}\n"
            f"const double dmean = s1 / {n}, var = s2 / {n} - dmean * dmean;\n"
            f"const {acc} mean = ({acc})dmean;\n"
            f"const {acc} den = sqrt{f}(({acc})(var > 0 ? var : 0)) + {_lit(1e-9, acc)};\n"
            f"{write}")
    return indent(nest(g.kept, body, "0", "k", "b"))


# ---- LpNormalization ---------------------------------------------------------------------------
@axis_kernel("lp_normalization")
def lp_normalization(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    acc = _acc(num)
    f = "f" if acc == "float" else ""
    rank = len(x.shape)
    axis = ctx.attrs.get("axis", -1) % rank
    p = ctx.attrs.get("p", 2)
    outer, n, inner = outer_n_inner(x.shape, axis)
    if outer * n * inner == 0:
        return "    /* empty */"
    xv = f"({acc}){num.load(f'x[i * {inner}]')}"
    term = f"fabs{f}(v)" if p == 1 else "v * v"
    norm = "s" if p == 1 else f"sqrt{f}(s)"
    return f"""    for (int64_t o = 0; o < {outer}; o++) for (int64_t j = 0; j < {inner}; j++) {{
        const {num.c} *x = in0 + o * {n * inner} + j;
        {num.c} *y = out0 + o * {n * inner} + j;
        {acc} s = 0;
        for (int64_t i = 0; i < {n}; i++) {{ const {acc} v = {xv}; s += {term}; }}
        const {acc} norm = {norm};
        for (int64_t i = 0; i < {n}; i++) y[i * {inner}] = {num.store(f'norm == 0 ? ({acc})0 : {xv} / norm')};
    }}"""
