"""C helpers of the convolution kernels (dense_conv, dense_depthwise), emitted once per kernel file
through ctx.helper: row copies, im2col packing, one padded row split into column phases. They use
the types of dense_core (register them with dense_core.core(ctx) first). The row copies and the
row split are native pieces (native.py; x86/conv_c.py has their AVX-512 forms): register them
with copy_helpers / fill_row_helper.
"""
from __future__ import annotations

from ..context import KernelContext
from . import native

# ---- row copies --------------------------------------------------------------------------------------
COPY_C = r"""
/* ---- pdc dense kernels: row copies for packing ---- */
static inline void pdc_zero_f32(float *d, int64_t n) {
@native copy_zero
    for (int64_t i = 0; i < n; i++) d[i] = 0;
@end
}
static inline void pdc_copy_f32(float *d, const float *s, int64_t n) {
@native copy_run
    for (int64_t i = 0; i < n; i++) d[i] = s[i];
@end
}
/* d[i] = s[i * step] for i < n (reads s[0 .. (n-1)*step] only) */
static inline void pdc_copy_step_f32(float *d, const float *s, int64_t n, int64_t step) {
    if (step == 1) { pdc_copy_f32(d, s, n); return; }
@native copy_step2 @end
    for (int64_t i = 0; i < n; i++) d[i] = s[i * step];
}
"""


# ---- im2col (the generic GEMM path) ----------------------------------------------------------------
IM2COL_C = r"""
/* ---- pdc dense kernels: im2col packing of NCHW input into GEMM B panels ---- */
typedef struct {
    const float *x; int64_t x_bs; /* problem b = image * group + g reads channels at x + b * x_bs */
    int64_t C, D, H, W, OD, OH, OW, KD, KH, KW, sd, sh, sw, dd, dh, dw, pd, ph, pw;
    int pointwise;
} pdc_im2col;
static void pdc_im2col_pack(const void *vctx, int64_t b, float *dst, int64_t k0, int64_t kc, int64_t n0,
                            int64_t nc, int64_t NR) {
    const pdc_im2col *g = (const pdc_im2col *)vctx;
    const float *x = g->x + b * g->x_bs;
    const int64_t HW = g->H * g->W, DHW = g->D * HW, OHW = g->OH * g->OW;
    const int64_t panel = kc * NR, tail = nc % NR;
    float *lastp = dst + (nc / NR) * panel;
    const int64_t KHW = g->KH * g->KW, KDHW = g->KD * KHW;
    int64_t ci = k0 / KDHW, r = k0 % KDHW;
    int64_t kd = r / KHW;
    r %= KHW;
    int64_t kh = r / g->KW, kw = r % g->KW;
    const int64_t od0 = n0 / OHW, oh0 = (n0 / g->OW) % g->OH, ow0 = n0 % g->OW;
    for (int64_t kk = 0; kk < kc; kk++) {
        float *d = dst + kk * NR;
        const float *xc = x + ci * DHW;
        if (g->pointwise) {
            int64_t q = 0;
            for (; (q + 1) * NR <= nc; q++) pdc_copy_f32(d + q * panel, xc + n0 + q * NR, NR);
            if (tail) pdc_copy_f32(d + q * panel, xc + n0 + q * NR, tail);
        } else {
            const int64_t offw = kw * g->dw - g->pw, offh = kh * g->dh - g->ph, offd = kd * g->dd - g->pd;
            /* output columns whose input column lies inside [0, W) */
            int64_t lo = offw >= 0 ? 0 : (-offw + g->sw - 1) / g->sw;
            int64_t hi = g->W - 1 - offw < 0 ? 0 : (g->W - 1 - offw) / g->sw + 1;
            if (hi > g->OW) hi = g->OW;
            if (lo > hi) lo = hi;
            int64_t od = od0, oh = oh0, ow = ow0, done = 0;
            while (done < nc) {
                int64_t seg = g->OW - ow;
                if (seg > nc - done) seg = nc - done;
                const int64_t lane = done % NR;
                if (seg > NR - lane) seg = NR - lane;
                float *o = d + (done / NR) * panel + lane;
                const int64_t id = od * g->sd + offd, ih = oh * g->sh + offh;
                if (id < 0 || id >= g->D || ih < 0 || ih >= g->H) {
                    pdc_zero_f32(o, seg);
                } else {
                    /* [a, va) and [ve, e) read padding, [va, ve) the row; a segment can lie wholly in either pad */
                    const int64_t a = ow, e = ow + seg;
                    int64_t va = a < lo ? lo : a, ve = e > hi ? hi : e;
                    if (va > e) va = e;
                    if (ve < va) ve = va;
                    if (va > a) pdc_zero_f32(o, va - a);
                    if (ve > va) pdc_copy_step_f32(o + (va - a), xc + id * HW + ih * g->W + va * g->sw + offw,
                                                   ve - va, g->sw);
                    if (e > ve) pdc_zero_f32(o + (ve - a), e - ve);
                }
                done += seg;
                ow += seg;
                if (ow == g->OW) {
                    ow = 0;
                    if (++oh == g->OH) { oh = 0; od++; }
                }
            }
        }
        if (tail) pdc_zero_f32(lastp + kk * NR + tail, NR - tail);
        if (++kw == g->KW) {
            kw = 0;
            if (++kh == g->KH) {
                kh = 0;
                if (++kd == g->KD) { kd = 0; ci++; }
            }
        }
    }
}
"""


# ---- one padded input row into its column phases (the depthwise and band kernels) --------------------
FILL_ROW_C = r"""
/* One padded input row into its sw column phases: d[cp * phase + c] = xr[c * sw + cp + off] for
   c < n, zero where that column is outside [0, W) (and never read). */
static void pdc_fill_row(float *d, int64_t phase, const float *xr, int64_t W, int64_t n, int64_t sw, int64_t off) {
@native fill_row @end
    for (int64_t cp = 0; cp < sw; cp++)
        for (int64_t c = 0; c < n; c++) {
            const int64_t col = c * sw + cp + off;
            d[cp * phase + c] = col >= 0 && col < W ? xr[col] : 0.0f;
        }
}
"""


def copy_helpers(ctx: KernelContext) -> None:
    """Registers pdc_zero_f32, pdc_copy_f32 and pdc_copy_step_f32."""
    ctx.helper("pdc_dense_copy", native.fill(ctx, COPY_C))


def fill_row_helper(ctx: KernelContext) -> None:
    """Registers pdc_fill_row."""
    ctx.helper("pdc_dense_fill_row", native.fill(ctx, FILL_ROW_C))
