"""ARM convolutions: conv / fused_conv (NCHW, 1-D and 2-D, any strides, pads, dilations, groups).

A 1x1 conv of one pixel (squeeze-excitation) takes the portable matrix-vector kernel
(dense_conv.gemv). Depthwise convs (one input and one output channel per group) run a kernel
vectorized along the output columns: per block of 4 output rows, the input rows the windows touch
are copied with their zero padding into a small band on the stack (each input row about
(3 + KH) / 4 times), and each group of 4 outputs of a row is KH x KW vector FMAs with the tap
weights broadcast, the rows of a block sharing their loads (stride 2 reads every other column
with a de-interleaving load); a row's last columns are one more group ending at its end.
3x3 stride-1 convs take Winograd (winograd.py) where its heuristic says so, with the GEMM step
here. Every other conv is a GEMM per (image, group) (gemm.py): M = output channels of the group
(weights packed at compile time), N = output pixels, K = C/group x taps, with B the input itself
for a 1x1 stride-1 conv, else its im2col rows per K block and pixel chunk.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...context import KernelContext
from .. import dense_conv as _portable  # declares the portable paths first ("im2col" is the general one)
from .. import winograd as wino
from ..conv_geometry import ConvGeom
from ..epilogue import Epilogue
from ..paths import declare, mark, take
from .activations import act_row
from .gemm import PARALLEL_MIN_MACS, ArmGemm
from .vector import arm_kernel, band_rows, base, is_f32

declare("conv", "neon-gemm", "neon-depthwise")

IM2COL_C = r"""
/* ---- pdc ARM kernels: im2col of an NCHW image into GEMM B rows ---- */
typedef struct { int64_t H, W, OW, KH, KW, sh, sw, dh, dw, ph, pw; } pdc_ageom;
/* rows k0 .. k0 + kc - 1 of B (one per input channel and tap), columns n0 .. n0 + nc - 1 (output
   pixels), into dst as rows of ld floats, zero-padded; each output row's part is one run: the
   window's columns inside the input copied, the rest zero */
static void pdc_apack_im2col(const pdc_agemm *g, int64_t p, float *dst, int64_t n0, int64_t nc, int64_t k0,
                             int64_t kc, int64_t ld) {
    const pdc_ageom *q = (const pdc_ageom *)g->geom;
    const float *x = g->src + p * g->src_bs;
    const int64_t HW = q->H * q->W, KHW = q->KH * q->KW;
    for (int64_t kk = 0; kk < kc; kk++) {
        const int64_t k = k0 + kk, ci = k / KHW, r = k % KHW, kh = r / q->KW, kw = r % q->KW;
        const float *xc = x + ci * HW;
        float *d = dst + kk * ld;
        int64_t oy = n0 / q->OW, ox = n0 % q->OW, j = 0;
        while (j < nc) { /* one output row (or its part in this chunk) per pass */
            const int64_t run = q->OW - ox < nc - j ? q->OW - ox : nc - j;
            const int64_t iy = oy * q->sh - q->ph + kh * q->dh;
            const int64_t ix0 = ox * q->sw - q->pw + kw * q->dw;
            int64_t tlo = run, thi = run; /* [tlo, thi): the taps inside the input */
            if (iy >= 0 && iy < q->H) {
                tlo = ix0 >= 0 ? 0 : (-ix0 + q->sw - 1) / q->sw;
                thi = ix0 >= q->W ? 0 : (q->W - ix0 + q->sw - 1) / q->sw;
                tlo = tlo < run ? tlo : run;
                thi = thi < run ? (thi > tlo ? thi : tlo) : run;
            }
            float *dr = d + j;
            for (int64_t t = 0; t < tlo; t++) dr[t] = 0.0f;
            if (thi > tlo) {
                const float *s = xc + iy * q->W + ix0;
                int64_t t = tlo;
                if (q->sw == 1) {
                    memcpy(dr + tlo, s + tlo, (size_t)(thi - tlo) * sizeof(float));
                    t = thi;
                }
#if PDC_V
                /* every other float, 4 from 8 (the 8th read is the row's while t + 4 < thi) */
                if (q->sw == 2) for (; t + 4 < thi; t += 4) pdc_vst(dr + t, pdc_vld2e(s + 2 * t));
#endif
                for (; t < thi; t++) dr[t] = s[t * q->sw];
            }
            for (int64_t t = thi; t < run; t++) dr[t] = 0.0f;
            j += run;
            ox = 0;
            oy++;
        }
        for (; j < ld; j++) d[j] = 0.0f;
    }
}
"""

@arm_kernel("conv", "fused_conv")
def conv(ctx: KernelContext) -> Optional[str]:
    x_t, w_t = ctx.inputs[0], ctx.inputs[1]
    W = ctx.const(1)
    epi = Epilogue(ctx)
    if (W is None or len(x_t.shape) not in (3, 4) or not is_f32(x_t, w_t, ctx.outputs[0])
            or not epi.supported or (ctx.has_input(2) and ctx.inputs[2].dtype.short != "f32")):
        return None
    g = ConvGeom(x_t.shape, w_t.shape, ctx.attrs)
    if g.n * g.m * g.p_out == 0 or g.k == 0:
        return None
    one_pixel = _portable.gemv(ctx, g, epi)
    if one_pixel:
        return one_pixel
    band = g.KH * ((g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1)  # floats of its stack band
    # the depthwise kernel unrolls its taps and keeps a band of rows on the stack: small windows only
    if g.cg == 1 and g.mg == 1 and g.KH * g.KW <= 256 and band <= 1 << 16 and take("conv", "neon-depthwise"):
        return mark("conv", "neon-depthwise", _depthwise(ctx, g, epi))
    m = wino.choose(ctx, g)
    if m:
        return mark("conv", f"winograd{m}", _winograd(ctx, g, epi, m))
    if take("conv", "neon-gemm"):
        return mark("conv", "neon-gemm", _gemm_conv(ctx, g, epi, np.asarray(W, np.float32)))
    return None


WINO_BLOCK_FLOATS = 1 << 18  # V and M of a block of tile rows, at most (smaller caches than x86's)
# the block's columns of V and M in whole panels (P is whole panels): a partial one, read in place
# without a padded copy, runs the microkernel's narrow path (resnet18 on arm64 took 3.5x the
# instructions); the columns past the block's tiles are never read back
WINO_AGEMM_C = r"""static void pdc_wino_agemm(const void *p, int64_t cols) {
    pdc_agemm g = *(const pdc_agemm *)p;
    g.N = (cols + g.NR - 1) / g.NR * g.NR;
    pdc_agemm_run(&g);
}
"""


def _winograd(ctx: KernelContext, g: ConvGeom, epi: Epilogue, m: int) -> str:
    """The GEMM step of Winograd: per (image, xi, group) U (Mg x Cg, packed) times V's rows in place."""
    a2 = wino.tile(m) ** 2
    th, tw = -(-g.OH // m), -(-g.OW // m)
    problems = g.n * a2 * g.group
    job = ArmGemm(ctx, problems, g.mg, th * tw, g.cg, Epilogue.plain())
    rows, p = wino.block_rows(th, tw, problems * (g.cg + g.mg), job.nr, WINO_BLOCK_FLOATS)
    v, mm = ctx.scratch(problems * g.cg * p), ctx.scratch(problems * g.mg * p)
    job.n = p
    job.fields.update(N=p, b=v, b_mod=problems, b_bs=g.cg * p, ldb=p, c=mm, ldc=p, c_bs=g.mg * p)
    u = wino.transform_weights(np.asarray(ctx.const(1), np.float32), m).reshape(a2 * g.group, g.mg, g.cg)
    job.a_const(u)
    ctx.helper("pdc_wino_agemm", WINO_AGEMM_C)
    slots = ctx.slots(job.parallel)
    lines = [job.render(run=False)]
    lines += wino.job_lines(ctx, g, epi, m, v=v, mm=mm, p=p, gemm="pdc_wino_agemm", gemm_job="&g", slots=slots)
    return "\n".join(lines + [f"    pdc_wino_run(&wj, {rows});"])


def _gemm_conv(ctx: KernelContext, g: ConvGeom, epi: Epilogue, W: np.ndarray) -> str:
    job = ArmGemm(ctx, g.n * g.group, g.mg, g.p_out, g.k, epi)
    job.a_const(W.reshape(g.group, g.mg, g.k), "in1")
    job.fields.update(ldc=g.p_out, c_bs=g.mg * g.p_out)
    if ctx.has_input(2):
        job.fields.update(bias_m="in2", bm_mod=g.group, bm_bs=g.mg)
    if g.pointwise:
        # B is the input as it lies: row k of problem p is channel k of its group's image, HW floats
        # (no copy but the columns past the last whole panel, which the driver pads into one)
        job.fields.update(b="in0", b_mod=g.n * g.group, b_bs=g.cg * g.p_out, ldb=g.p_out)
        return job.render()
    ctx.helper("pdc_apack_im2col", IM2COL_C)
    job.b_runtime("pdc_apack_im2col")
    job.fields.update(src="in0", src_bs=g.cg * g.H * g.W, geom="&geom")
    job.lines.append(f"    static const pdc_ageom geom = {{{g.H}, {g.W}, {g.OW}, {g.KH}, {g.KW}, {g.sh}, {g.sw}, "
                     f"{g.dh}, {g.dw}, {g.ph}, {g.pw}}};")
    return job.render()


DW_ROWS = 4  # output rows per band: each input row is copied about (R - 1 + KH) / R times, not KH


def _depthwise(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    base(ctx)
    args_t = _portable.layer_args(ctx)
    bw = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1  # band width: every column a window reaches
    rows = DW_ROWS if g.OH >= DW_ROWS and _band_rows(g, DW_ROWS) * bw <= 1 << 16 else 1
    task = f"{ctx.fn_name}_planes"
    L = [f"static void {task}(void *vargs, int64_t p0, int64_t p1) {{",
         f"    const {args_t} *A = (const {args_t} *)vargs;",
         f"    float band[{_band_rows(g, rows) * bw + 8}];",
         "    for (int64_t pl = p0; pl < p1; pl++) {",
         f"        const int64_t ch = pl % {g.c};",
         f"        const float *x = A->x + pl * {g.H * g.W};",
         f"        const float *w = A->w + ch * {g.taps};",
         f"        float *y = A->y + pl * {g.p_out};",
         "        const float bias = A->b ? A->b[ch] : 0.0f;",
         f"        const float *r = A->r ? A->r + pl * {g.p_out} : 0;",
         "        (void)r;"]
    if g.sw in (1, 2):
        L += ["#if PDC_V",
              "        " + " ".join(f"const pdc_v4 w{t} = pdc_vdup(w[{t}]);" for t in range(g.taps)),
              f"        const pdc_v4 vbias = pdc_vdup(bias), vlo = pdc_vdup({epi.c_lo_hi()[0]}), "
              f"vhi = pdc_vdup({epi.c_lo_hi()[1]});",
              "        (void)vlo; (void)vhi;",
              "#endif"]
    L.append("        int64_t oy = 0;")
    if rows > 1:  # blocks of `rows` output rows, then the rest one by one
        L += [f"        for (; oy + {rows} <= {g.OH}; oy += {rows}) {{"] + _dw_block(ctx, g, epi, bw, rows) + ["        }"]
    L += [f"        for (; oy < {g.OH}; oy++) {{"] + _dw_block(ctx, g, epi, bw, 1) + ["        }", "    }", "}"]
    ctx.helper(task, "\n".join(L) + "\n")
    planes = g.n * g.c
    bias = "in2" if ctx.has_input(2) else "0"
    r = epi.r if epi.has_r else "0"
    parallel = ctx.split(planes * g.p_out * g.taps, PARALLEL_MIN_MACS)
    body = [f"    {args_t} args = {{in0, in1, {bias}, {r}, out0}};"]
    body.append(f"    pdc_parallel_for({planes}, {task}, &args);" if parallel else f"    {task}(&args, 0, {planes});")
    return "\n".join(body)


def _band_rows(g: ConvGeom, rows: int) -> int:
    """Input rows that `rows` consecutive output rows read."""
    return (rows - 1) * g.sh + (g.KH - 1) * g.dh + 1


def _dw_block(ctx: KernelContext, g: ConvGeom, epi: Epilogue, bw: int, rows: int) -> list[str]:
    """C lines computing output rows oy .. oy + rows - 1 of a plane: their input rows copied into
    `band` with the padding, then each group of 4 columns of every row from the band (the rows of a
    block share their loads: the compiler keeps one load per band row and tap column)."""
    lo_b = min(g.pw, bw)  # band columns [lo_b, hi_b) hold input columns [lo_b - pw, hi_b - pw)
    hi_b = max(lo_b, min(bw, g.W + g.pw))
    taps = [(kh, kw) for kh in range(g.KH) for kw in range(g.KW)]
    res_b, res_a = epi.res_before is not None, epi.res_after is not None
    lo, hi = epi.c_lo_hi()
    al, be = epi.c_alpha_beta()
    pad = " " * 12
    L = band_rows(pad, _band_rows(g, rows), bw, f"oy * {g.sh} - {g.ph} + kh", g.H, g.W, lo_b, hi_b, g.pw, "0.0f")
    L.append(pad + "int64_t ox = 0;")
    band_of = lambda i, kh, kw, col: f"band + {(i * g.sh + kh * g.dh) * bw + kw * g.dw} + {col} * {g.sw}"  # noqa: E731
    if g.sw in (1, 2):
        load = "pdc_vld" if g.sw == 1 else "pdc_vld2e"
        body = [pad + f"    pdc_v4 acc{i} = vbias;" for i in range(rows)]
        for kh, kw in taps:
            t = kh * g.KW + kw
            body.append(pad + "    " + " ".join(f"acc{i} = pdc_vfma(acc{i}, w{t}, {load}({band_of(i, kh, kw, 'ox')}));"
                                                for i in range(rows)))
        for i in range(rows):
            out = f"(oy + {i}) * {g.OW} + ox"
            if res_b:
                body.append(pad + f"    acc{i} = pdc_vadd(acc{i}, pdc_vld(r + {out}));")
            if epi.needs_clamp:
                body.append(pad + f"    acc{i} = pdc_vclamp(acc{i}, vlo, vhi);")
            body.append(pad + f"    pdc_vst(y + {out}, acc{i});")
        L += ["#if PDC_V", pad + f"for (; ox + 4 <= {g.OW}; ox += 4) {{", *body, pad + "}"]
        if g.OW > 4 and g.OW % 4 and not res_b:
            # the last columns: one more group ending at the row's end, which writes some outputs
            # again with the same values (not with a residual, which may share y's memory)
            L += [pad + f"ox = {g.OW - 4};", pad + "{", *body, pad + "}", pad + f"ox = {g.OW};"]
        L.append("#endif")
    L += [pad + f"for (; ox < {g.OW}; ox++) {{"]
    for i in range(rows):
        L.append(pad + "    {")
        L.append(pad + "        float s = bias;")
        for kh, kw in taps:
            L.append(pad + f"        s += w[{kh * g.KW + kw}] * *({band_of(i, kh, kw, 'ox')});")
        if res_b:
            L.append(pad + f"        s += r[(oy + {i}) * {g.OW} + ox];")
        if epi.needs_clamp:
            L.append(pad + f"        s = pdc_fclamp(s, {lo}, {hi});")
        L += [pad + f"        y[(oy + {i}) * {g.OW} + ox] = s;", pad + "    }"]
    L.append(pad + "}")
    if epi.act or res_a:
        rr = f"r + (oy + i) * {g.OW}" if res_a else "0"
        L += [pad + f"for (int64_t i = 0; i < {rows}; i++)",
              pad + f"    {act_row(ctx)}({epi.act}, {epi.act_fn()}, y + (oy + i) * {g.OW}, {rr}, {g.OW}, {al}, {be});"]
    return L
