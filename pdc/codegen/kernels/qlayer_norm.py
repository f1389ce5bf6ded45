"""qlayer_norm (pdc/ir/ops/qint.py) in portable C, bit for bit the reference's
(`qlayer_norm_rows`).

Per row of D codes d (x's, or the residual sum's on one grid): S1 and S2 summed in integers (S2 in
int32 where D * max|d|^2 fits, else int64), V = D * S2 - S1^2 and n = D * d - S1 exact; then the
float32 steps in the reference's order: (float)V (one rounding, from int32 or int64 alike),
+ var_epsilon, sqrtf, 1.0f / that (no -ffast-math: gcc neither forms a reciprocal square root nor
reassociates), u = (float)n * inv ((float)n rounds once too), y = fmaf(u, gamma, beta).
The fma is explicit: under gcc's default -ffp-contract=fast a written `u * g + b` may or may not be
fused, depending on the target and the vectorizer; fmaf is one rounding everywhere (an instruction
on x86-64-v3+, AArch64, Cortex-M4F; libm elsewhere). No multiply feeds an add anywhere else, so
nothing else can be contracted. An integer output is rounded as quantize_linear's
(pdc_quantize_round: clamp, then half to even).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes
from ..context import KernelContext
from ..ctypes_c import float_literal
from ...ir.ops.qint import norm_code_bound
from . import kernel
from .quant import QUANTIZE_ROUND, add_weight

TASK = """static void @NAME@(const @TX@ *x, const @TR@ *res, @TY@ *y, const float *g, const float *b, int64_t rows,
                     int32_t D, int32_t xz, int32_t xm, int32_t rz, int32_t rm, float eps, int32_t yz, int32_t lo,
                     int32_t hi) {
    (void)res; (void)rz; (void)rm; (void)yz; (void)lo; (void)hi;
    for (int64_t r = 0; r < rows; r++) {
        const @TX@ *xr = x + r * D;
        const @TR@ *rr = res + r * D;
        @TY@ *yr = y + r * D;
        int32_t s1 = 0;
        @S2@ s2 = 0;
        (void)rr;
        for (int32_t i = 0; i < D; i++) {
            const int32_t d = @D@;
            s1 += d;
            s2 += (@S2@)d * d;
        }
        const @V@ v = (@V@)D * s2 - (@V@)s1 * s1;
        const float inv = 1.0f / sqrtf((float)v + eps);
        for (int32_t i = 0; i < D; i++) {
            const float u = (float)(D * (@D@) - s1) * inv;
            const float w = fmaf(u, g[i], b[i]);
            yr[i] = @STORE@;
        }
    }
}
"""


def _int_type(bound: int) -> str:
    return "int32_t" if bound < 2 ** 31 else "int64_t"


@kernel("qlayer_norm")
def qlayer_norm(ctx: KernelContext) -> str:
    shape = list(ctx.inputs[0].shape)
    n_in = len(ctx.inputs)
    if math.prod(shape) == 0:
        return "    " + " ".join(f"(void)in{i};" for i in range(n_in)) + " (void)out0;"
    axis = ctx.attrs.get("axis", -1) % len(shape)
    D, rows = math.prod(shape[axis:]), math.prod(shape[:axis])
    x_dt, y_dt = ctx.inputs[0].dtype, ctx.outputs[0].dtype
    residual = ctx.has_input(3)
    r_dt = ctx.inputs[3].dtype if residual else x_dt
    if y_dt is dtypes.float32:
        store, (yz, lo, hi) = "w", (0, 0, 0)
    else:
        ctx.helper("pdc_quantize_round", QUANTIZE_ROUND)
        info = np.iinfo(y_dt.np)
        lo, hi = ctx.attrs.get("clamp") or (int(info.min), int(info.max))
        store, yz = f"({ctx.ctype(y_dt)})pdc_quantize_round(w, yz, lo, hi)", int(ctx.attrs.get("y_zero", 0))
    # |d| <= bound; |S1| and |D * d - S1| <= 2 D bound < 2^27 (the verifier's limit): int32
    bound = norm_code_bound(ctx.attrs, x_dt, r_dt if residual else None)
    s2_type, v_type = _int_type(D * bound * bound), _int_type(D * D * bound * bound)
    code = "((int32_t)xr[i] - xz) * xm" + (" + ((int32_t)rr[i] - rz) * rm" if residual else "")
    name = (f"pdc_qlayer_norm_{x_dt.short}{f'_{r_dt.short}' if residual else ''}_{y_dt.short}"
            f"_{s2_type[:5]}_{v_type[:5]}")
    ctx.helper(name, TASK.replace("@NAME@", name).replace("@TX@", ctx.ctype(x_dt)).replace("@TR@", ctx.ctype(r_dt))
               .replace("@TY@", ctx.ctype(y_dt)).replace("@S2@", s2_type).replace("@V@", v_type)
               .replace("@D@", code).replace("@STORE@", store))
    beta = "in2" if ctx.has_input(2) else add_weight(ctx, np.zeros(D, np.float32), "float")
    a = ctx.attrs
    args = ["in0", "in3" if residual else "in0", "out0", "in1", beta, rows, D, int(a.get("x_zero", 0)),
            int(a.get("x_mult", 1)), int(a.get("r_zero", 0)), int(a.get("r_mult", 1)), float_literal(a["var_epsilon"]),
            yz, int(lo), int(hi)]
    unused = "".join(f"(void)in{i}; " for i in range(n_in) if i == 2 and not ctx.has_input(2))
    return f"    {unused}{name}({', '.join(str(v) for v in args)});"
