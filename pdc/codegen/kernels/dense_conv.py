"""Convolution kernels: conv and fused_conv (NCHW, 1-D/2-D/3-D, groups, dilations, strides, pads,
auto_pad), conv_transpose and conv_integer.

fp32 conv is a GEMM per (image, group) (see dense_core): M = output channels of the group
(weights packed at compile time, broadcast), N = output pixels (vectors), K = C/group * taps.
B is packed per K block and pixel chunk by `pdc_im2col_pack` (a row copy for pointwise convs,
a windowed copy with zero padding otherwise) into a per-thread stack buffer. Depthwise 2-D
convs (one input and one output channel per group) have their own kernel vectorized along
output columns over a zero-padded band of input rows. Other dtypes, ConvTranspose and
ConvInteger use direct loops specialized to the layer's shape.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.ops.fused_conv import ACTIVATIONS
from ...ir.ops.nn_common import resolve_window
from ...ir.ops.nn_conv import conv_transpose_geometry
from ..context import KernelContext
from ..ctypes_c import float_literal
from . import kernel
from .dense_core import (ABUF_FLOATS, ACT_CODES, BBUF_FLOATS, add_weight, c_float, choose_split, choose_tile, clamp_for, core, isa_of, k_block,
                         lanes, n_chunk, pack_a_panels, pack_b_panels, render_job, ukernel)

# ---- geometry ---------------------------------------------------------------------------------------


class ConvGeom:
    """Static geometry of a convolution, spatial dims padded to 3 (D, H, W) with leading 1s."""

    def __init__(self, x_shape, w_shape, attrs, transpose: bool = False):
        self.n, self.c = x_shape[0], x_shape[1]
        self.nsp = len(x_shape) - 2
        kernel = list(w_shape[2:])
        self.group = attrs.get("group", 1) or 1
        if transpose:
            strides = list(attrs.get("strides") or [1] * self.nsp)
            dilations = list(attrs.get("dilations") or [1] * self.nsp)
            out, begin = conv_transpose_geometry(list(x_shape[2:]), kernel, attrs)
            self.m = w_shape[1] * self.group
        else:
            strides, dilations, begin, out, _ = resolve_window(x_shape, kernel, attrs)
            self.m = w_shape[0]
        pad = 3 - self.nsp
        self.in_sp = [1] * pad + list(x_shape[2:])
        self.out_sp = [1] * pad + list(out)
        self.kernel = [1] * pad + kernel
        self.strides = [1] * pad + list(strides)
        self.dilations = [1] * pad + list(dilations)
        self.begin = [0] * pad + list(begin)
        self.cg, self.mg = self.c // self.group, self.m // self.group
        self.taps = math.prod(self.kernel)
        self.k = self.cg * self.taps
        self.p_in = math.prod(self.in_sp)
        self.p_out = math.prod(self.out_sp)

    @property
    def pointwise(self) -> bool:
        return (self.taps == 1 and all(s == 1 for s in self.strides) and not any(self.begin)
                and self.in_sp == self.out_sp)

    def c_fields(self) -> str:
        """The initializer of a pdc_im2col after its first two fields."""
        (D, H, W), (OD, OH, OW), (KD, KH, KW) = self.in_sp, self.out_sp, self.kernel
        (sd, sh, sw), (dd, dh, dw), (pd, ph, pw) = self.strides, self.dilations, self.begin
        return (f"{self.cg}, {D}, {H}, {W}, {OD}, {OH}, {OW}, {KD}, {KH}, {KW}, {sd}, {sh}, {sw}, "
                f"{dd}, {dh}, {dw}, {pd}, {ph}, {pw}, {int(self.pointwise)}")


# ---- C helpers -----------------------------------------------------------------------------------------
COPY_C = r"""
/* ---- pdc dense kernels: row copies for packing ---- */
static inline void pdc_zero_f32(float *d, int64_t n) {
#if defined(__AVX512F__)
    for (; n >= 16; n -= 16, d += 16) _mm512_storeu_ps(d, _mm512_setzero_ps());
    if (n > 0) _mm512_mask_storeu_ps(d, (__mmask16)pdc_m16((int)n), _mm512_setzero_ps());
#else
    for (int64_t i = 0; i < n; i++) d[i] = 0;
#endif
}
static inline void pdc_copy_f32(float *d, const float *s, int64_t n) {
#if defined(__AVX512F__)
    for (; n >= 16; n -= 16, d += 16, s += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(s));
    if (n > 0) {
        const __mmask16 m = (__mmask16)pdc_m16((int)n);
        _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
    }
#else
    for (int64_t i = 0; i < n; i++) d[i] = s[i];
#endif
}
/* d[i] = s[i * step] for i < n (reads s[0 .. (n-1)*step] only) */
static inline void pdc_copy_step_f32(float *d, const float *s, int64_t n, int64_t step) {
    if (step == 1) { pdc_copy_f32(d, s, n); return; }
#if defined(__AVX512F__)
    if (step == 2) {
        const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (; n >= 16; n -= 16, d += 16, s += 32)
            _mm512_storeu_ps(d, _mm512_permutex2var_ps(_mm512_loadu_ps(s), idx,
                                                       _mm512_maskz_loadu_ps((__mmask16)0x7fff, s + 16)));
        if (n > 0) {
            const int need = 2 * (int)n - 1;
            const __m512 lo = _mm512_maskz_loadu_ps((__mmask16)pdc_m16(need), s);
            const __m512 hi = _mm512_maskz_loadu_ps((__mmask16)pdc_m16(need - 16), s + 16);
            _mm512_mask_storeu_ps(d, (__mmask16)pdc_m16((int)n), _mm512_permutex2var_ps(lo, idx, hi));
        }
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) d[i] = s[i * step];
}
"""

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
                    const int64_t a = ow, e = ow + seg;
                    const int64_t va = a < lo ? lo : (a > hi ? hi : a), ve = e > hi ? hi : (e < va ? va : e);
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

ICONV_C = r"""
/* ---- pdc dense kernels: convolution over zero-padded, phase-split bands of input rows ----
 * A band holds, for every input channel of a group, the padded input rows that output rows
 * [oh0, oh1) read, split into sh x sw phases (row % sh, column % sw) so that every kernel tap
 * reads a contiguous run: output grid position q = row * Wq + column, tap t of channel c at
 * band + koff[c * taps + t] + q. Grid columns >= OW are computed and dropped on store. */
#define PDC_IC_BUF @BUF@
typedef void (*pdc_ukri_fn)(int64_t kc, const float *a, const float *b, const int32_t *koff, float *c, int64_t ldc,
                            int mr, int nr, int flags, const pdc_epi *e);
typedef struct {
    const float *x, *w, *bias, *res; float *y; const int32_t *koff; const pdc_post *post;
    int64_t G, Cg, Mg, H, W, OH, OW, sh, sw, ph, pw, khd; /* khd: dilated kernel height */
    int64_t K, MR, NR, mchunk, problems;
    int64_t band, nbands, Wq, rows_q, BS;
    float lo, hi; int clamp, split_m, parallel;
    pdc_ukri_fn ukr;
} pdc_iconv_job;
/* One padded input row into its sw column phases: d[cp * phase + c] = xr[c * sw + cp + off] for
   c < n, zero where that column is outside [0, W). Masked-off lanes are never read. */
static void pdc_fill_row(float *d, int64_t phase, const float *xr, int64_t W, int64_t n, int64_t sw, int64_t off) {
#if defined(__AVX512F__)
    if (sw == 1) {
        for (int64_t c = 0; c < n; c += 16) {
            const int64_t a = c + off, lo = a < 0 ? -a : 0, hi = W - a;
            const __mmask16 m = (__mmask16)(hi <= lo ? 0u : pdc_m16((int)(hi < 16 ? hi : 16)) & ~pdc_m16((int)(lo < 16 ? lo : 16)));
            _mm512_mask_storeu_ps(d + c, (__mmask16)pdc_m16((int)(n - c)), _mm512_maskz_loadu_ps(m, xr + a));
        }
        return;
    }
    if (sw == 2) {
        const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for (int64_t c = 0; c < n; c += 16) {
            const int64_t a = 2 * c + off, lo = a < 0 ? -a : 0, hi = W - a; /* valid lanes [lo, hi) of 32 */
            __mmask16 m0 = 0, m1 = 0;
            if (hi > lo) {
                m0 = (__mmask16)(pdc_m16((int)(hi < 16 ? hi : 16)) & ~pdc_m16((int)(lo < 16 ? lo : 16)));
                m1 = (__mmask16)(pdc_m16((int)(hi - 16 < 16 ? hi - 16 : 16)) & ~pdc_m16((int)(lo - 16 < 16 ? lo - 16 : 16)));
            }
            const __m512 A = _mm512_maskz_loadu_ps(m0, xr + a), B = _mm512_maskz_loadu_ps(m1, xr + a + 16);
            const __mmask16 st = (__mmask16)pdc_m16((int)(n - c));
            _mm512_mask_storeu_ps(d + c, st, _mm512_permutex2var_ps(A, ev, B));
            _mm512_mask_storeu_ps(d + phase + c, st, _mm512_permutex2var_ps(A, od, B));
        }
        return;
    }
#endif
    for (int64_t cp = 0; cp < sw; cp++)
        for (int64_t c = 0; c < n; c++) {
            const int64_t col = c * sw + cp + off;
            d[cp * phase + c] = col >= 0 && col < W ? xr[col] : 0.0f;
        }
}
static void pdc_iconv_fill(const pdc_iconv_job *j, const float *x, int64_t nch, int64_t oh0, int64_t oh1, float *buf) {
    const int64_t R = (oh1 - oh0 - 1) * j->sh + j->khd, r0 = oh0 * j->sh - j->ph;
    const int64_t phase = j->rows_q * j->Wq, Wq = j->Wq, sh = j->sh, sw = j->sw;
    for (int64_t ci = 0; ci < nch; ci++) {
        const float *xc = x + ci * j->H * j->W;
        float *bc = buf + ci * j->BS;
        for (int64_t rq = 0; rq < j->rows_q; rq++)
        for (int64_t rp = 0; rp < sh; rp++) { /* padded row pr = rq * sh + rp, phase (rp, 0) */
            float *d = bc + rp * sw * phase + rq * Wq;
            const int64_t pr = rq * sh + rp, ih = r0 + pr;
            if (pr >= R || ih < 0 || ih >= j->H) {
                for (int64_t cp = 0; cp < sw; cp++) pdc_zero_f32(d + cp * phase, Wq);
                continue;
            }
            pdc_fill_row(d, phase, xc + ih * j->W, j->W, Wq, sw, -j->pw);
        }
    }
    pdc_zero_f32(buf + nch * j->BS, Wq + 64); /* slack read by the last tiles */
}
/* Stores tile columns [0, nq) (grid positions q0 ...) of mr output channels with the epilogue. */
static void pdc_iconv_store(const pdc_iconv_job *j, const float *tile, int mr, int64_t q0, int64_t nq, int64_t oh0,
                            int64_t b, int64_t m0) {
    const int64_t P = j->OH * j->OW, g = b % j->G;
    float *y = j->y + (b * j->Mg + m0) * P;
    const float *res = j->res ? j->res + (b * j->Mg + m0) * P : 0;
    const float *bias = j->bias ? j->bias + g * j->Mg + m0 : 0;
    for (int64_t q = q0; q < q0 + nq;) {
        const int64_t r = q / j->Wq, ow = q % j->Wq;
        int64_t seg = j->Wq - ow;
        if (seg > q0 + nq - q) seg = q0 + nq - q;
        if (ow < j->OW) {
            const int64_t n = seg < j->OW - ow ? seg : j->OW - ow, o = (oh0 + r) * j->OW + ow, t = q - q0;
            for (int i = 0; i < mr; i++) {
                const float *src = tile + i * j->NR + t;
                float *dst = y + i * P + o;
                const float bv = bias ? bias[i] : 0.0f;
#if defined(__AVX512F__)
                const __m512 vb = _mm512_set1_ps(bv), vlo = _mm512_set1_ps(j->lo), vhi = _mm512_set1_ps(j->hi);
                for (int64_t x = 0; x < n; x += 16) {
                    const __mmask16 m = (__mmask16)pdc_m16((int)(n - x));
                    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + x), vb);
                    if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res + i * P + o + x));
                    if (j->clamp) v = _mm512_min_ps(vhi, _mm512_max_ps(vlo, v));
                    _mm512_mask_storeu_ps(dst + x, m, v);
                }
#else
                for (int64_t x = 0; x < n; x++) {
                    float v = src[x] + bv;
                    if (res) v += res[i * P + o + x];
                    if (j->clamp) { v = v < j->lo ? j->lo : v; v = v > j->hi ? j->hi : v; }
                    dst[x] = v;
                }
#endif
            }
            if (j->post) pdc_post_tile(j->post, b, m0, o, mr, (int)n, y + o, P);
        }
        q += seg;
    }
}
static void pdc_iconv_part(const pdc_iconv_job *j, int64_t part, int64_t parts) {
    float buf[PDC_IC_BUF] __attribute__((aligned(64)));
    float tile[16 * 64] __attribute__((aligned(64)));
    const int64_t mbs = (j->Mg + j->MR - 1) / j->MR, per = j->split_m ? mbs : j->nbands;
    const int64_t units = j->problems * per, u0 = units * part / parts, u1 = units * (part + 1) / parts;
    for (int64_t u = u0; u < u1;) {
        const int64_t b = u / per, r0 = u % per, r1 = (b + 1) * per <= u1 ? per : u1 - b * per;
        u = b * per + r1;
        const int64_t mb0 = j->split_m ? r0 : 0, mb1 = j->split_m ? r1 : mbs;
        const int64_t bd0 = j->split_m ? 0 : r0, bd1 = j->split_m ? j->nbands : r1;
        const float *w = j->w + (b % j->G) * mbs * j->K * j->MR;
        for (int64_t bd = bd0; bd < bd1; bd++) {
            const int64_t oh0 = bd * j->band, oh1 = oh0 + j->band < j->OH ? oh0 + j->band : j->OH;
            pdc_iconv_fill(j, j->x + b * j->Cg * j->H * j->W, j->Cg, oh0, oh1, buf);
            const int64_t nq = (oh1 - oh0 - 1) * j->Wq + j->OW;
            for (int64_t mc = mb0; mc < mb1; mc += j->mchunk) {
                const int64_t mce = mc + j->mchunk < mb1 ? mc + j->mchunk : mb1;
                for (int64_t q0 = 0; q0 < nq; q0 += j->NR) {
                    const int64_t n = nq - q0 < j->NR ? nq - q0 : j->NR;
                    for (int64_t mb = mc; mb < mce; mb++) {
                        const int64_t m0 = mb * j->MR;
                        const int mr = (int)(j->Mg - m0 < j->MR ? j->Mg - m0 : j->MR);
                        j->ukr(j->K, w + mb * j->K * j->MR, buf + q0, j->koff, tile, j->NR, mr, (int)j->NR, 0, 0);
                        pdc_iconv_store(j, tile, mr, q0, n, oh0, b, m0);
                    }
                }
            }
        }
    }
}
static void pdc_iconv_task(void *p, int64_t t0, int64_t t1) {
    pdc_chunks *c = (pdc_chunks *)p;
    int64_t i;
    (void)t0; (void)t1;
    while ((i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->chunks)
        pdc_iconv_part((const pdc_iconv_job *)c->job, i, c->chunks);
}
static void pdc_iconv_run(const pdc_iconv_job *j) {
    const int64_t threads = j->parallel ? pdc_threads_count() : 1;
    if (threads <= 1) { pdc_iconv_part(j, 0, 1); return; }
    const int64_t per = j->split_m ? (j->Mg + j->MR - 1) / j->MR : j->nbands;
    pdc_chunks c;
    c.job = j;
    c.chunks = pdc_chunk_count(j->problems * per, threads);
    atomic_init(&c.next, 0);
    pdc_parallel_for(threads, pdc_iconv_task, &c);
}
"""
IC_BUF_FLOATS = 49152  # 192 KiB per thread

TCONV_C = r"""
/* ---- pdc dense kernels: small-image convolution with pixels as GEMM rows ----
 * For outputs of at most 16 columns (7x7, 14x14 late layers) the GEMM runs transposed: one
 * output row of pixels is broadcast (MR = OW), output channels run along the vectors, and the
 * tile is stored transposed by the post-pass. A rows come from the padded band (pdc_iconv_fill)
 * of the whole image, prepared once per problem in the B buffer. */
/* The band of the channels of K block [k0, k0 + kc) (K blocks hold whole channels: K = channels x taps). */
static void pdc_tconv_prep(const void *ctx, int64_t b, int64_t k0, int64_t kc, float *band) {
    const pdc_iconv_job *j = (const pdc_iconv_job *)ctx;
    const int64_t taps = j->K / j->Cg, c0 = k0 / taps;
    pdc_iconv_fill(j, j->x + (b * j->Cg + c0) * j->H * j->W, kc / taps, 0, j->OH, band);
}
static void pdc_tconv_packa(const void *ctx, int64_t b, float *dst, int64_t m0, int64_t mr, int64_t k0, int64_t kc,
                            int64_t MR, const float *band) {
    const pdc_iconv_job *j = (const pdc_iconv_job *)ctx;
    const int64_t taps = j->K / j->Cg;
    const float *row = band + (m0 / j->OW) * j->Wq - (k0 / taps) * j->BS; /* koff counts from channel 0 */
    (void)b;
    for (int64_t k = 0; k < kc; k++) {
        pdc_copy_f32(dst + k * MR, row + j->koff[k0 + k], mr);
        if (mr < MR) pdc_zero_f32(dst + k * MR + mr, MR - mr);
    }
}
"""


PWCONV_C = r"""
/* ---- pdc dense kernels: pointwise convolution reading the NCHW input in place ----
 * For a 1x1, stride 1, unpadded conv B[k][p] = x[k * HW + p]: the indirect microkernel reads
 * full pixel panels straight from the input (koff[k] = k * HW); only the tail panel is copied
 * into a zero-padded buffer (tkoff[k] = k * NR). The microkernel stores with the epilogue. */
typedef struct {
    const float *x, *w, *bias, *res; float *y; const int32_t *koff, *tkoff; const pdc_post *post;
    int64_t G, Cg, Mg, P, K, MR, NR, mchunk, problems;
    float lo, hi; int clamp, split_m, parallel;
    pdc_ukri_fn ukr;
} pdc_pwconv_job;
static void pdc_pwconv_part(const pdc_pwconv_job *j, int64_t part, int64_t parts) {
    float tail[640 * 64] __attribute__((aligned(64)));
    const int64_t mbs = (j->Mg + j->MR - 1) / j->MR, nbs = (j->P + j->NR - 1) / j->NR;
    const int64_t per = j->split_m ? mbs : nbs;
    const int64_t units = j->problems * per, u0 = units * part / parts, u1 = units * (part + 1) / parts;
    const int flags = PDC_LAST | (j->clamp && !j->post ? PDC_CLAMP : 0);
    for (int64_t u = u0; u < u1;) {
        const int64_t b = u / per, r0 = u % per, r1 = (b + 1) * per <= u1 ? per : u1 - b * per;
        u = b * per + r1;
        const int64_t mb0 = j->split_m ? r0 : 0, mb1 = j->split_m ? r1 : mbs;
        const int64_t q0 = j->split_m ? 0 : r0, q1 = j->split_m ? nbs : r1;
        const int64_t g = b % j->G;
        const float *x = j->x + b * j->Cg * j->P, *w = j->w + g * mbs * j->K * j->MR;
        float *y = j->y + b * j->Mg * j->P;
        const float *res = j->res ? j->res + b * j->Mg * j->P : 0;
        const float *bias = j->bias ? j->bias + g * j->Mg : 0;
        int have_tail = 0;
        for (int64_t mc = mb0; mc < mb1; mc += j->mchunk) {
            const int64_t mce = mc + j->mchunk < mb1 ? mc + j->mchunk : mb1;
            for (int64_t q = q0; q < q1; q++) {
                const int64_t c0 = q * j->NR;
                const int nr = (int)(j->P - c0 < j->NR ? j->P - c0 : j->NR);
                const float *bp = x + c0;
                const int32_t *koff = j->koff;
                if (nr < j->NR) { /* the tail panel: reading in place would run past the input */
                    if (!have_tail) {
                        for (int64_t k = 0; k < j->K; k++) {
                            pdc_copy_f32(tail + k * j->NR, x + k * j->P + c0, nr);
                            pdc_zero_f32(tail + k * j->NR + nr, j->NR - nr);
                        }
                        have_tail = 1;
                    }
                    bp = tail;
                    koff = j->tkoff;
                }
                for (int64_t mb = mc; mb < mce; mb++) {
                    const int64_t m0 = mb * j->MR;
                    const int mr = (int)(j->Mg - m0 < j->MR ? j->Mg - m0 : j->MR);
                    pdc_epi e = {bias ? bias + m0 : 0, 0, res ? res + m0 * j->P + c0 : 0, j->P, j->lo, j->hi};
                    float *cp = y + m0 * j->P + c0;
                    j->ukr(j->K, w + mb * j->K * j->MR, bp, koff, cp, j->P, mr, nr, flags, &e);
                    if (j->post) pdc_post_tile(j->post, b, m0, c0, mr, nr, cp, j->P);
                }
            }
        }
    }
}
static void pdc_pwconv_task(void *p, int64_t t0, int64_t t1) {
    pdc_chunks *c = (pdc_chunks *)p;
    int64_t i;
    (void)t0; (void)t1;
    while ((i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->chunks)
        pdc_pwconv_part((const pdc_pwconv_job *)c->job, i, c->chunks);
}
static void pdc_pwconv_run(const pdc_pwconv_job *j) {
    const int64_t threads = j->parallel ? pdc_threads_count() : 1;
    if (threads <= 1) { pdc_pwconv_part(j, 0, 1); return; }
    const int64_t per = j->split_m ? (j->Mg + j->MR - 1) / j->MR : (j->P + j->NR - 1) / j->NR;
    pdc_chunks c;
    c.job = j;
    c.chunks = pdc_chunk_count(j->problems * per, threads);
    atomic_init(&c.next, 0);
    pdc_parallel_for(threads, pdc_pwconv_task, &c);
}
"""


DW_C = r"""
/* ---- pdc dense kernels: depthwise convolution (one input and output channel per group) ----
 * Vectors of 16 output columns; each kernel tap is one masked load straight from the input row
 * (two loads and a permute for stride 2). masks[blk * KW + kw] holds the lanes whose input column
 * lies inside the row, so padding costs nothing and masked-off lanes are never read. */
typedef struct {
    const float *x, *w, *bias, *res; float *y; const pdc_post *post;
    const uint32_t *masks; const int32_t *off; /* off: the flat kernel's tap offsets */
    void (*fn)(void *job, int64_t p0, int64_t p1); int64_t planes;
    int64_t C, H, W, OH, OW, sh, ph, dh, dw, pw, nblk;
    int64_t Wq, HWq; /* stride 2, flat: each plane is split into 4 parity phases of HWq floats, rows of Wq */
    float lo, hi; int clamp;
} pdc_dw_job;
static void pdc_dw_task(void *p, int64_t t0, int64_t t1) {
    pdc_chunks *c = (pdc_chunks *)p;
    const pdc_dw_job *j = (const pdc_dw_job *)c->job;
    int64_t i;
    (void)t0; (void)t1;
    while ((i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->chunks)
        j->fn((void *)j, j->planes * i / c->chunks, j->planes * (i + 1) / c->chunks);
}
static void pdc_dw_run(const pdc_dw_job *j, int parallel) {
    const int64_t threads = parallel ? pdc_threads_count() : 1;
    if (threads <= 1) { j->fn((void *)j, 0, j->planes); return; }
    pdc_chunks c;
    c.job = j;
    c.chunks = j->planes < 8 * threads ? j->planes : 8 * threads;
    atomic_init(&c.next, 0);
    pdc_parallel_for(threads, pdc_dw_task, &c);
}
"""


DW_BUF_FLOATS = 16384  # per thread: a stride-2 plane split into its 4 parity phases (64 KiB)


def _dw_rows(taps_h: int, taps_w: int, sw: int) -> tuple[str, str]:
    """The depthwise kernel for one shape class (KH x KW taps, column stride sw), over planes [p0, p1)."""
    name = f"pdc_dw_{taps_h}x{taps_w}_s{sw}"
    taps = taps_h * taps_w
    L = [f"static void {name}(void *vj, int64_t p0, int64_t p1) {{",
         "    const pdc_dw_job *j = (const pdc_dw_job *)vj;",
         "    /* the job's fields in locals: the output stores could otherwise alias them */",
         "    const int64_t H = j->H, W = j->W, OH = j->OH, OW = j->OW, sh = j->sh, ph = j->ph, dh = j->dh;",
         "    const int64_t dw = j->dw, pw = j->pw, nblk = j->nblk, C = j->C, P = OH * OW;",
         "    const uint32_t *masks = j->masks;",
         "    const int clamp = j->clamp;",
         "    const float lo = j->lo, hi = j->hi;",
         "    (void)dw; (void)lo; (void)hi; (void)nblk; (void)masks;",
         "    for (int64_t pl = p0; pl < p1; pl++) {",
         "        const int64_t ch = pl % C;",
         "        const float *x = j->x + pl * H * W, *w = j->w + ch * " + str(taps) + ";",
         "        float *y = j->y + pl * P;",
         "        const float *res = j->res ? j->res + pl * P : 0;",
         "        const float bias = j->bias ? j->bias[ch] : 0.0f;",
         "#if defined(__AVX512F__)"]
    L.append("        " + " ".join(f"const __m512 w{t} = _mm512_set1_ps(w[{t}]);" for t in range(taps)))
    L.append("        const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);")
    if sw == 2:
        L.append("        const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);")
    L.append("        for (int64_t oh = 0; oh < OH; oh++) {")
    L.append("            for (int64_t blk = 0; blk < nblk; blk++) {")
    L.append(f"                const uint32_t *mk = masks + blk * {taps_w};")
    L.append(f"                const int64_t base = blk * {16 * sw} - pw;")
    L.append("                __m512 a0 = vb, a1 = _mm512_setzero_ps();")
    for kh in range(taps_h):
        L.append(f"                {{ const int64_t ih = oh * sh - ph + {kh} * dh;")
        L.append("                  if (ih >= 0 && ih < H) { const float *r = x + ih * W + base;")
        for kw in range(taps_w):
            t = kh * taps_w + kw
            if sw == 1:
                v = f"_mm512_maskz_loadu_ps((__mmask16)mk[{kw}], r + {kw} * dw)"
            else:
                v = (f"_mm512_permutex2var_ps(_mm512_maskz_loadu_ps((__mmask16)mk[{kw}], r + {kw} * dw), ev, "
                     f"_mm512_maskz_loadu_ps((__mmask16)(mk[{kw}] >> 16), r + {kw} * dw + 16))")
            L.append(f"                    a{t % 2} = _mm512_fmadd_ps(w{t}, {v}, a{t % 2});")
        L.append("                  } }")
    L.append("                const int64_t o = oh * OW + blk * 16;")
    L.append("                const __mmask16 m = (__mmask16)pdc_m16((int)(OW - blk * 16));")
    L.append("                a0 = _mm512_add_ps(a0, a1);")
    L.append("                if (res) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m, res + o));")
    L.append("                if (clamp) a0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0));")
    L.append("                _mm512_mask_storeu_ps(y + o, m, a0);")
    L.append("            }")
    L.append("        }")
    L.append("#else")
    L.append("        for (int64_t oh = 0; oh < OH; oh++)")
    L.append("        for (int64_t ow = 0; ow < OW; ow++) {")
    L.append("            float a0 = bias, a1 = 0;")
    L.append(f"            for (int kh = 0; kh < {taps_h}; kh++) {{")
    L.append("                const int64_t ih = oh * sh - ph + kh * dh;")
    L.append("                if (ih < 0 || ih >= H) continue;")
    L.append(f"                for (int kw = 0; kw < {taps_w}; kw++) {{")
    L.append(f"                    const int64_t iw = ow * {sw} - pw + kw * dw;")
    L.append(f"                    if (iw >= 0 && iw < W) {{ if ((kh * {taps_w} + kw) % 2) a1 += w[kh * {taps_w} + kw] * x[ih * W + iw]; "
             f"else a0 += w[kh * {taps_w} + kw] * x[ih * W + iw]; }}")
    L.append("                }")
    L.append("            }")
    L.append("            float v = a0 + a1;")
    L.append("            if (res) v += res[oh * OW + ow];")
    L.append("            if (clamp) { v = v < lo ? lo : v; v = v > hi ? hi : v; }")
    L.append("            y[oh * OW + ow] = v;")
    L.append("        }")
    L.append("#endif")
    L.append("        if (j->post) pdc_post_tile(j->post, 0, pl, 0, 1, (int)P, y, 0);")
    L.append("    }")
    L.append("}")
    return name, "\n".join(L) + "\n"


def _dw_flat(taps: int) -> tuple[str, str]:
    """Depthwise for stride 1 and OW == W: output pixel p reads input p + off[t] for tap t, so a
    plane is a flat run of 16-pixel vectors; masks[vec * taps + t] drop the lanes that fall off
    the plane or wrap around a row."""
    name = f"pdc_dw_flat{taps}"
    L = [f"static void {name}(void *vj, int64_t p0, int64_t p1) {{",
         "    const pdc_dw_job *j = (const pdc_dw_job *)vj;",
         "    const int64_t HW = j->H * j->W, P = j->OH * j->OW, nvec = j->nblk;",
         "    const uint32_t *masks = j->masks;",
         "    const int clamp = j->clamp;",
         "    const float lo = j->lo, hi = j->hi;",
         f"    int64_t off[{taps}];",
         f"    for (int t = 0; t < {taps}; t++) off[t] = j->off[t];",
         "    float buf[PDC_DW_BUF] __attribute__((aligned(64)));",
         "    for (int64_t pl = p0; pl < p1; pl++) {",
         "        const int64_t ch = pl % j->C;",
         f"        const float *x = j->x + pl * HW, *w = j->w + ch * {taps};",
         "        if (j->HWq) { /* stride 2: input row ih -> phases (ih % 2, 0 / 1), row ih / 2 */",
         "            for (int64_t ih = 0; ih < j->H; ih++)",
         "                pdc_fill_row(buf + (ih % 2) * 2 * j->HWq + (ih / 2) * j->Wq, j->HWq, x + ih * j->W, j->W, j->Wq, 2, 0);",
         "            x = buf;",
         "        }",
         "        float *y = j->y + pl * P;",
         "        const float *res = j->res ? j->res + pl * P : 0;",
         "        const float bias = j->bias ? j->bias[ch] : 0.0f;",
         "#if defined(__AVX512F__)",
         "        " + " ".join(f"const __m512 w{t} = _mm512_set1_ps(w[{t}]);" for t in range(taps)),
         "        const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);",
         "        for (int64_t v = 0; v < nvec; v++) {",
         f"            const uint32_t *mk = masks + v * {taps};",
         "            const float *r = x + v * 16;",
         "            __m512 a0 = vb, a1 = _mm512_setzero_ps();"]
    for t in range(taps):
        L.append(f"            a{t % 2} = _mm512_fmadd_ps(w{t}, _mm512_maskz_loadu_ps((__mmask16)mk[{t}], r + off[{t}]), a{t % 2});")
    L += ["            const __mmask16 m = (__mmask16)pdc_m16((int)(P - v * 16));",
          "            a0 = _mm512_add_ps(a0, a1);",
          "            if (res) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m, res + v * 16));",
          "            if (clamp) a0 = _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0));",
          "            _mm512_mask_storeu_ps(y + v * 16, m, a0);",
          "        }",
          "#else",
          "        for (int64_t p = 0; p < P; p++) {",
          "            const uint32_t *mk = masks + (p / 16) * " + str(taps) + ";",
          "            float a0 = bias, a1 = 0;",
          f"            for (int t = 0; t < {taps}; t++)",
          "                if ((mk[t] >> (p % 16)) & 1) { if (t % 2) a1 += w[t] * x[p + off[t]]; else a0 += w[t] * x[p + off[t]]; }",
          "            float v = a0 + a1;",
          "            if (res) v += res[p];",
          "            if (clamp) { v = v < lo ? lo : v; v = v > hi ? hi : v; }",
          "            y[p] = v;",
          "        }",
          "#endif",
          "        if (j->post) pdc_post_tile(j->post, 0, pl, 0, 1, (int)P, y, 0);",
          "    }",
          "}"]
    return name, "\n".join(L) + "\n"


def _dw_flat_masks(H, W, OH, OW, KH, KW, s, dh, dw, ph, pw) -> tuple[np.ndarray, list[int]]:
    """Masks [vector][tap] and tap offsets of the flat depthwise kernel. Stride 1 (OW == W): the
    plane itself. Stride 2 (OW == ceil(W / 2)): 4 parity phases of hq x OW floats each, phase
    (a, b) holding input rows a, a+2, ... and columns b, b+2, ..."""
    P = OH * OW
    nvec = -(-P // 16)
    p = np.arange(nvec * 16)
    oh, ow = p // OW, p % OW
    hq = -(-H // 2)
    out = np.zeros((nvec, KH * KW), np.uint32)
    offs = []
    for kh in range(KH):
        for kw in range(KW):
            if s == 1:
                ih, iw = oh + kh * dh - ph, ow + kw * dw - pw
                ok = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                offs.append((kh * dh - ph) * W + kw * dw - pw)
            else:
                (dr, a), (dc, b) = divmod(kh * dh - ph, 2), divmod(kw * dw - pw, 2)
                i, jj = oh + dr, ow + dc
                ok = (i >= 0) & (i < (H - a + 1) // 2) & (jj >= 0) & (jj < (W - b + 1) // 2)
                offs.append((a * 2 + b) * hq * OW + dr * OW + dc)
            ok &= p < P
            out[:, kh * KW + kw] = (ok.reshape(nvec, 16) * (1 << np.arange(16))).sum(axis=1)
    return out, offs


def _dw_masks(OW: int, W: int, KW: int, sw: int, dw: int, pw: int) -> np.ndarray:
    """Lane masks of the depthwise loads: [block][kw], bit l of the (low) load of 16 (or 32)
    input columns starting at blk*16*sw - pw + kw*dw set where that column lies inside [0, W)."""
    nblk = -(-OW // 16)
    out = np.zeros((nblk, KW), np.uint32)
    span = 16 * sw
    for blk in range(nblk):
        for kw in range(KW):
            start = blk * 16 * sw - pw + kw * dw
            m = 0
            for lane in range(span):
                col = start + lane
                # only lanes feeding a used output column (lane % sw == 0, column < OW) are read
                if lane % sw == 0 and blk * 16 + lane // sw < OW and 0 <= col < W:
                    m |= 1 << lane
            out[blk, kw] = m
    return out




# ---- epilogue attributes --------------------------------------------------------------------------------
class Epilogue:
    """The fused epilogue of a node: activation, residual placement, and how the kernel does it."""

    def __init__(self, ctx: KernelContext, r_index: int = 3):
        a = ctx.attrs
        self.activation = a.get("activation", "none") or "none"
        self.alpha, self.beta = a.get("activation_alpha"), a.get("activation_beta")
        self.residual = a.get("residual", "none") or "none"
        self.has_r = ctx.has_input(r_index) if self.residual != "none" else False
        if self.activation not in ACTIVATIONS:
            ctx.fail(f"activation '{self.activation}' is not supported")
        c = clamp_for(self.activation, self.alpha, self.beta)
        # the register epilogue: residual before the activation, then a clamp
        self.fast = c is not None and self.residual != "after_activation"
        self.clamp, self.lo, self.hi = c if self.fast else (False, -math.inf, math.inf)

    @classmethod
    def plain(cls) -> "Epilogue":
        """No activation, no residual (conv, gemm, matmul)."""
        e = cls.__new__(cls)
        e.activation, e.alpha, e.beta, e.residual, e.has_r = "none", None, None, "none", False
        e.fast, e.clamp, e.lo, e.hi = True, False, -math.inf, math.inf
        return e

    @property
    def act_code(self) -> int:
        return ACT_CODES[self.activation]

    def post_fields(self, res_after: str, ra_bs, ra_ld, add: tuple | None = None) -> dict:
        """The pdc_post fields of the slow path: activation, Gemm's C, residual after."""
        f = dict(act=self.act_code)
        if self.alpha is not None:
            f["alpha"] = c_float(self.alpha)
        if self.beta is not None:
            f["beta"] = c_float(self.beta)
        if add is not None:
            f.update(add=add[0], add_bs=add[1], add_rs=add[2], add_cs=add[3], add_scale=add[4])
        if self.residual == "after_activation":
            f.update(res_after=res_after, ra_bs=ra_bs, ra_ld=ra_ld)
        return f

    def post_lines(self, res_after: str, ra_bs, ra_ld, add: tuple | None = None) -> list[str]:
        """Declares `pdc_post post` for the slow path (act + residual after)."""
        return [render_post(self.post_fields(res_after, ra_bs, ra_ld, add))]


def render_post(fields: dict, var: str = "post") -> str:
    return f"    const pdc_post {var} = {{" + ", ".join(f".{k} = {v}" for k, v in fields.items()) + "};"


# ---- fp32 conv -------------------------------------------------------------------------------------------
def _bias_ptr(ctx: KernelContext, i: int, n: int) -> str:
    if not ctx.has_input(i):
        return "0"
    b = ctx.const(i)
    if b is not None:
        return add_weight(ctx, np.asarray(b, np.float32).reshape(n))
    return f"in{i}"


def _conv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    if g.cg == 1 and g.mg == 1 and g.group > 1 and g.nsp <= 2 and g.taps <= 49:
        body = _depthwise_f32(ctx, g, epi)
        if body is not None:
            return body
    isa = isa_of(ctx)
    if isa == "avx512" and ctx.const(1) is not None:
        body = _tconv_f32(ctx, g, epi) or _pwconv_f32(ctx, g, epi)
        if body is not None:
            return body
        plan = _iconv_plan(g)
        if plan is not None:
            return _iconv_f32(ctx, g, epi, plan)
    mr, nv = choose_tile(isa, g.mg, g.p_out)
    nr = nv * lanes(isa)
    ukr = ukernel(ctx, mr, nv)
    ctx.helper("pdc_dense_copy", COPY_C)
    ctx.helper("pdc_dense_im2col", IM2COL_C)
    lines = []
    w = ctx.const(1)
    mb = -(-g.mg // mr)
    if w is not None:
        wp = pack_a_panels(np.asarray(w, np.float32).reshape(g.group, g.mg, g.k), mr)
        a_fields = dict(a=add_weight(ctx, wp), a_bmod=g.group, a_bs=mb * g.k * mr)
    else:  # weights at run time (node tests): pack A per panel like a strided matrix
        lines.append(f"    const pdc_strided wa = {{in1, 0, {g.group}, {g.mg * g.k}, {g.k}, 1, 1.0f}};")
        a_fields = dict(packa="pdc_packa_strided", packa_ctx="&wa")
    lines.append(f"    const pdc_im2col geo = {{in0, {g.cg * g.p_in}, {g.c_fields()}}};")
    kc = k_block(g.k)
    batch = g.n * g.group
    parallel, split_m = choose_split(batch, g.mg, g.p_out, g.k, mr, nr, 2, g.m * g.k * 4)
    post = None
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    fields = dict(batch=batch, M=g.mg, N=g.p_out, K=g.k, MR=mr, NR=nr, KC=kc, NC=n_chunk(kc, nr, g.p_out), ukr=ukr,
                  **a_fields, packb="pdc_im2col_pack", packb_ctx="&geo", c="out0", ldc=g.p_out, c_bs=g.mg * g.p_out,
                  bias_m=_bias_ptr(ctx, 2, g.m), bm_bmod=g.group, bm_bs=g.mg,
                  res="in3" if epi.has_r and epi.residual == "before_activation" else None,
                  ldr=g.p_out, r_bs=g.mg * g.p_out, lo=c_float(epi.lo), hi=c_float(epi.hi), clamp=int(epi.clamp),
                  post=post, parallel=parallel, split_m=split_m)
    lines += render_job(fields)
    lines.append("    pdc_sgemm_run(&job);")
    return "\n".join(lines)


def _iconv_plan(g: ConvGeom, whole: bool = False, cg: int = 0) -> dict | None:
    """Band geometry of the padded-band path for a 1-D/2-D conv, or None when it does not fit.
    whole: one band of all output rows, in the B buffer (the transposed path); cg: channels per
    band (default: the group's)."""
    cap = IC_BUF_FLOATS
    cg = cg or g.cg
    if g.in_sp[0] != 1 or g.kernel[0] != 1 or g.out_sp[0] != 1 or (g.taps == 1 and not whole):
        return None
    _, H, W = g.in_sp
    _, OH, OW = g.out_sp
    _, KH, KW = g.kernel
    _, sh, sw = g.strides
    _, dh, dw = g.dilations
    wp = (OW - 1) * sw + (KW - 1) * dw + 1
    wq = -(-wp // sw)
    khd = (KH - 1) * dh + 1
    if OW / wq < 0.7:
        return None

    def size(b):
        rows_q = -(-((b - 1) * sh + khd) // sh)
        bs = sh * sw * rows_q * wq
        return rows_q, bs, cg * bs + wq + 64

    tile = None
    if whole:
        if size(OH)[2] > BBUF_FLOATS:
            return None
        band, nbands = OH, 1
    else:
        fits = [b for b in range(1, OH + 1) if size(b)[2] <= cap]
        if not fits:
            return None
        # band height and register tile together: least padded work (grid columns >= OW and
        # tile tails), with the idle share of 2 threads pulling bands counted in
        best = None
        for b in fits:
            nb = -(-OH // b)
            last = OH - (nb - 1) * b
            for mr, nv in ((8, 3), (12, 2), (6, 4)):
                nr = 16 * nv
                cols = lambda rows: -(-((rows - 1) * wq + OW) // nr) * nr  # noqa: E731
                work = -(-g.mg // mr) * mr * ((nb - 1) * cols(b) + cols(last))
                cost = work * (-(-nb // 2) * 2 / nb if nb > 1 else 1.0)
                key = (cost, -b)
                if best is None or key < best[0]:
                    best = (key, b, nb, (mr, nv))
        _, band, nbands, tile = best
    rows_q, bs, _ = size(band)
    koff = []
    for ci in range(cg):
        for kh in range(KH):
            for kw in range(KW):
                rr, cc = kh * dh, kw * dw
                koff.append(ci * bs + ((rr % sh) * sw + cc % sw) * rows_q * wq + (rr // sh) * wq + cc // sw)
    return dict(band=band, nbands=nbands, wq=wq, rows_q=rows_q, bs=bs, khd=khd, koff=np.array(koff, np.int32), tile=tile,
                nq=(band - 1) * wq + OW)


def _koff(g: ConvGeom, plan: dict) -> np.ndarray:
    """koff of every input channel of the group from a per-channel plan (cg=1)."""
    one = plan["koff"][:g.taps].astype(np.int64)
    full = (np.arange(g.cg, dtype=np.int64)[:, None] * plan["bs"] + one[None, :]).reshape(-1)
    return full.astype(np.int32)


def _iconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue, plan: dict) -> str:
    mr, nv = plan["tile"]
    nr = 16 * nv
    ukr = ukernel(ctx, mr, nv, indirect=True)
    ctx.helper("pdc_dense_copy", COPY_C)
    ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))
    mb = -(-g.mg // mr)
    lines = []
    w = ctx.const(1)
    if w is None:
        return None
    wp = pack_a_panels(np.asarray(w, np.float32).reshape(g.group, g.mg, g.k), mr)
    koff = add_weight(ctx, plan["koff"], "int32_t")
    problems = g.n * g.group
    w_bytes = g.m * g.k * 4
    parallel = int(problems * g.mg * g.p_out * g.k >= 400_000)
    units_b = problems * plan["nbands"]
    split_m = int(units_b < 2 or (w_bytes > (1 << 20) and mb >= 2))
    mchunk = max(1, (256 << 10) // (g.k * mr * 4))
    post = "0"
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    res = "in3" if epi.has_r and epi.residual == "before_activation" else "0"
    _, H, W = g.in_sp
    _, OH, OW = g.out_sp
    _, sh, sw = g.strides
    _, ph, pw = g.begin
    lines.append(f"    const pdc_iconv_job job = {{in0, {add_weight(ctx, wp)}, {_bias_ptr(ctx, 2, g.m)}, {res}, out0, "
                 f"{koff}, {post}, {g.group}, {g.cg}, {g.mg}, {H}, {W}, {OH}, {OW}, {sh}, {sw}, {ph}, {pw}, "
                 f"{plan['khd']}, {g.k}, {mr}, {nr}, {mchunk}, {problems}, {plan['band']}, {plan['nbands']}, "
                 f"{plan['wq']}, {plan['rows_q']}, {plan['bs']}, {c_float(epi.lo)}, {c_float(epi.hi)}, "
                 f"{int(epi.clamp)}, {split_m}, {parallel}, {ukr}}};")
    lines.append("    pdc_iconv_run(&job);")
    return "\n".join(lines)


TCONV_TMP_FLOATS = 131072  # the caller's stack buffer for the pixels x channels result (512 KiB)


def _tconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue):
    """The transposed GEMM for small outputs (OW <= 16), or None when it does not apply."""
    _, OH, OW = g.out_sp
    w = ctx.const(1)
    if (w is None or g.in_sp[0] != 1 or g.kernel[0] != 1 or g.out_sp[0] != 1 or not 4 <= OW <= 16
            or g.mg < 32 or g.n * g.group * g.p_out * g.mg > TCONV_TMP_FLOATS or ABUF_FLOATS // g.p_out < g.taps):
        return None
    plan = None
    if not g.pointwise:
        plan = _iconv_plan(g, whole=True, cg=1)  # per-channel geometry; the band holds a K block
        if plan is None:
            return None
    core(ctx)
    ctx.helper("pdc_dense_copy", COPY_C)
    mr = OW
    nv = max(1, min(4, 28 // mr))
    nr = 16 * nv
    ukr = ukernel(ctx, mr, nv)
    problems = g.n * g.group
    wt = np.asarray(w, np.float32).reshape(g.group, g.mg, g.k).transpose(0, 2, 1)  # (G, K, Mg)
    nb = -(-g.mg // nr)
    # K blocks whose weights for one thread's channels stay in L2 across the pixel rows
    kc = min(g.k, max(64, (131072 // max(1, -(-g.mg // 2))) // 8 * 8), ABUF_FLOATS // g.p_out)
    if plan is not None:  # whole input channels per K block, their band in the B buffer
        per_ch = plan["bs"]
        chans = max(1, min(g.cg, kc // g.taps, (BBUF_FLOATS - plan["wq"] - 64) // per_ch))
        if chans * per_ch + plan["wq"] + 64 > BBUF_FLOATS:
            return None
        kc = chans * g.taps
    nc = nb * nr
    lines = []
    if plan is None:
        lines.append(f"    const pdc_strided xa = {{in0, 0, 0, {g.cg * g.p_in}, 1, {g.p_in}, 1.0f}};")
        a_fields = dict(packa="pdc_packa_strided", packa_ctx="&xa")
    else:
        ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))
        ctx.helper("pdc_dense_tconv", TCONV_C)
        _, H, W = g.in_sp
        _, sh, sw = g.strides
        _, ph, pw = g.begin
        lines.append(f"    pdc_iconv_job geo;\n    memset(&geo, 0, sizeof geo);")
        koff = add_weight(ctx, _koff(g, plan), "int32_t")
        for k, v in dict(x="in0", koff=koff, G=g.group, Cg=g.cg, K=g.k, H=H, W=W, OH=OH, OW=OW, sh=sh, sw=sw, ph=ph,
                         pw=pw, khd=plan["khd"], Wq=plan["wq"], rows_q=plan["rows_q"], BS=plan["bs"]).items():
            lines.append(f"    geo.{k} = {v};")
        a_fields = dict(packa="pdc_tconv_packa", packa_ctx="&geo", prep="pdc_tconv_prep", prep_ctx="&geo")
    clamp = epi.clamp
    pf = epi.post_fields("in3", g.mg * g.p_out, g.p_out) if not epi.fast else dict(act=0)
    pf.update(tout="out0", tbias=_bias_ptr(ctx, 2, g.m), t_bs=g.mg * g.p_out, tld=g.p_out, tb_mod=g.group,
              tb_bs=g.mg, lo=c_float(epi.lo), hi=c_float(epi.hi), clamp=int(clamp))
    if epi.has_r and epi.residual == "before_activation":
        pf["tres"] = "in3"
    lines.append(render_post(pf))
    lines.append(f"    float tmp[{problems * g.p_out * g.mg}] __attribute__((aligned(64)));")
    parallel = int(problems * g.p_out * g.mg * g.k >= 400_000)
    fields = dict(batch=problems, M=g.p_out, N=g.mg, K=g.k, MR=mr, NR=nr, KC=kc, NC=nc, ukr=ukr, **a_fields,
                  b=add_weight(ctx, pack_b_panels(wt, nr)), b_bmod=g.group, b_bs=nb * g.k * nr,
                  c="tmp", ldc=g.mg, c_bs=g.p_out * g.mg, lo=c_float(-math.inf), hi=c_float(math.inf),
                  post="&post", parallel=parallel, split_m=0, chunks_per_thread=1, a_all=1)
    lines += render_job(fields)
    lines.append("    pdc_sgemm_run(&job);")
    return "\n".join(lines)


def _pwconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue):
    """Pointwise conv reading the input in place (see PWCONV_C), or None."""
    w = ctx.const(1)
    if w is None or not g.pointwise or g.k > 640 or g.p_out < 16:
        return None
    mr, nv = choose_tile("avx512", g.mg, g.p_out)
    nr = 16 * nv
    if g.k * nr > 640 * 64 or g.k * g.p_in >= 2 ** 31:
        return None
    ukr = ukernel(ctx, mr, nv, indirect=True)
    ctx.helper("pdc_dense_copy", COPY_C)
    ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))  # pdc_ukri_fn
    ctx.helper("pdc_dense_pwconv", PWCONV_C)
    mb = -(-g.mg // mr)
    wp = pack_a_panels(np.asarray(w, np.float32).reshape(g.group, g.mg, g.k), mr)
    koff = add_weight(ctx, np.arange(g.k, dtype=np.int32) * np.int32(g.p_in), "int32_t")
    tkoff = add_weight(ctx, np.arange(g.k, dtype=np.int32) * np.int32(nr), "int32_t")
    problems = g.n * g.group
    parallel, split_m = choose_split(problems, g.mg, g.p_out, g.k, mr, nr, 2, g.m * g.k * 4)
    lines = []
    post = "0"
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    res = "in3" if epi.has_r and epi.residual == "before_activation" else "0"
    mchunk = max(1, (256 << 10) // (g.k * mr * 4))
    lines.append("    pdc_pwconv_job job;\n    memset(&job, 0, sizeof job);")
    for k, v in dict(x="in0", w=add_weight(ctx, wp), bias=_bias_ptr(ctx, 2, g.m), res=res, y="out0", koff=koff,
                     tkoff=tkoff, post=post, G=g.group, Cg=g.cg, Mg=g.mg, P=g.p_out, K=g.k, MR=mr, NR=nr,
                     mchunk=mchunk, problems=problems, lo=c_float(epi.lo), hi=c_float(epi.hi),
                     clamp=int(epi.clamp), split_m=split_m, parallel=parallel, ukr=ukr).items():
        lines.append(f"    job.{k} = {v};")
    lines.append("    pdc_pwconv_run(&job);")
    return "\n".join(lines)


def _depthwise_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue):
    """Depthwise 1-D/2-D conv (one input and one output channel per group), or None."""
    _, H, W = g.in_sp
    _, OH, OW = g.out_sp
    _, KH, KW = g.kernel
    _, sh, sw = g.strides
    _, dh, dw = g.dilations
    _, ph, pw = g.begin
    if g.in_sp[0] != 1 or g.kernel[0] != 1 or sw not in (1, 2) or KH * KW > 49:
        return None
    core(ctx)
    ctx.helper("pdc_dense_dw", f"#define PDC_DW_BUF {DW_BUF_FLOATS}\n" + DW_C)
    flat = (sh == 1 and sw == 1 and OW == W) or (sh == 2 and sw == 2 and OW == -(-W // 2)
                                                 and 4 * -(-H // 2) * OW <= DW_BUF_FLOATS)
    if flat:
        ctx.helper("pdc_dense_copy", COPY_C)
        ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))
        fn, code = _dw_flat(KH * KW)
        mk, offs = _dw_flat_masks(H, W, OH, OW, KH, KW, sh, dh, dw, ph, pw)
        nblk = mk.shape[0]
    else:
        fn, code = _dw_rows(KH, KW, sw)
        mk, offs, nblk = _dw_masks(OW, W, KW, sw, dw, pw), None, -(-OW // 16)
    ctx.helper(fn, code)
    w = ctx.const(1)
    wptr = add_weight(ctx, np.asarray(w, np.float32).reshape(-1)) if w is not None else "in1"
    masks = add_weight(ctx, mk, "uint32_t")
    offp = add_weight(ctx, np.array(offs, np.int32), "int32_t") if flat else "0"
    lines = []
    post = "0"
    if not epi.fast:
        lines += epi.post_lines("in3", 0, g.p_out)  # rows = planes
        post = "&post"
    res = "in3" if epi.has_r and epi.residual == "before_activation" else "0"
    planes = g.n * g.c
    lines.append("    pdc_dw_job j;\n    memset(&j, 0, sizeof j);")
    for k, v in dict(x="in0", w=wptr, bias=_bias_ptr(ctx, 2, g.m), res=res, y="out0", post=post, masks=masks,
                     off=offp, C=g.c, H=H, W=W, OH=OH, OW=OW, sh=sh, ph=ph, dh=dh, dw=dw, pw=pw, nblk=nblk,
                     Wq=OW if flat and sh == 2 else 0, HWq=-(-H // 2) * OW if flat and sh == 2 else 0,
                     lo=c_float(epi.lo), hi=c_float(epi.hi), clamp=int(epi.clamp), fn=fn, planes=planes).items():
        lines.append(f"    j.{k} = {v};")
    macs = planes * g.p_out * g.taps
    lines.append(f"    pdc_dw_run(&j, {int(macs >= 200_000 and planes > 1)});")
    return "\n".join(lines)


# ---- direct loops (other dtypes, conv_integer) ----------------------------------------------------------
def _direct_conv(ctx: KernelContext, g: ConvGeom, acc_t: str, load_x, load_w, init: str, finish) -> str:
    """A direct convolution loop nest; `finish(s, yi)` returns the statement storing the sum s."""
    (D, H, W), (OD, OH, OW), (KD, KH, KW) = g.in_sp, g.out_sp, g.kernel
    (sd, sh, sw), (dd, dh, dw), (pd, ph, pw) = g.strides, g.dilations, g.begin
    return f"""    for (int64_t n = 0; n < {g.n}; n++)
    for (int64_t m = 0; m < {g.m}; m++) {{
        const int64_t gi = m / {g.mg};
        for (int64_t od = 0; od < {OD}; od++)
        for (int64_t oh = 0; oh < {OH}; oh++)
        for (int64_t ow = 0; ow < {OW}; ow++) {{
            {acc_t} s = {init};
            for (int64_t c = 0; c < {g.cg}; c++)
            for (int64_t kd = 0; kd < {KD}; kd++) {{
                const int64_t id = od * {sd} - {pd} + kd * {dd};
                if (id < 0 || id >= {D}) continue;
                for (int64_t kh = 0; kh < {KH}; kh++) {{
                    const int64_t ih = oh * {sh} - {ph} + kh * {dh};
                    if (ih < 0 || ih >= {H}) continue;
                    for (int64_t kw = 0; kw < {KW}; kw++) {{
                        const int64_t iw = ow * {sw} - {pw} + kw * {dw};
                        if (iw < 0 || iw >= {W}) continue;
                        const int64_t xi = (((n * {g.c} + gi * {g.cg} + c) * {D} + id) * {H} + ih) * {W} + iw;
                        const int64_t wi = (((m * {g.cg} + c) * {KD} + kd) * {KH} + kh) * {KW} + kw;
                        s += ({acc_t})({load_x('xi')}) * ({acc_t})({load_w('wi')});
                    }}
                }}
            }}
            const int64_t yi = ((n * {g.m} + m) * {OD} + od) * {OH * OW} + oh * {OW} + ow;
            {finish('s', 'yi')}
        }}
    }}"""


ACT_DOUBLE_C = r"""
static double pdc_act_f64(int act, double a, double alpha, double beta) {
    switch (act) {
    case 1: return a > 0 ? a : (a != a ? a : 0);
    case 2: return a >= 0 ? a : a * alpha;
    case 3: { double t = a < alpha ? alpha : a; return t > beta ? beta : t; }
    case 4: return a >= 0 ? 1 / (1 + exp(-a)) : exp(a) / (1 + exp(a));
    case 5: { double t = alpha * a + beta; return t < 0 ? 0 : (t > 1 ? 1 : t); }
    case 6: { double t = a / 6 + 0.5; return a * (t < 0 ? 0 : (t > 1 ? 1 : t)); }
    case 7: return 0.5 * a * (1 + erf(a * 0.70710678118654752440));
    case 8: return 0.5 * a * (1 + tanh(0.7978845608028654 * (a + 0.044715 * a * a * a)));
    case 9: return tanh(a);
    default: return a;
    }
}
"""


def epilogue_expr(ctx: KernelContext, epi: Epilogue, s: str, ct: str, r_index: str, r_load) -> list[str]:
    """Statements turning the sum `s` (type ct, bias added) into the fused output value, in place."""
    out = []
    if epi.residual == "before_activation":
        out.append(f"{s} += ({ct})({r_load(r_index)});")
    if epi.activation != "none":
        fn = "pdc_act_f64" if ct == "double" else "pdc_act_f32"
        if ct == "double":
            ctx.helper("pdc_dense_act_f64", ACT_DOUBLE_C)
        else:
            core(ctx)
        al = float_literal(epi.alpha if epi.alpha is not None else 0.0, ct)
        be = float_literal(epi.beta if epi.beta is not None else 0.0, ct)
        out.append(f"{s} = {fn}({epi.act_code}, {s}, {al}, {be});")
    if epi.residual == "after_activation":
        out.append(f"{s} += ({ct})({r_load(r_index)});")
    return out


def _conv_generic(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    dt = ctx.inputs[0].dtype
    ct = ctx.compute_ctype(dt)
    bias = f"({ct})({ctx.load(dt, f'in2[m]')})" if ctx.has_input(2) else "0"
    r_load = lambda i: ctx.load(dt, f"in3[{i}]")  # noqa: E731

    def finish(s, yi):
        stmts = epilogue_expr(ctx, epi, s, ct, yi, r_load)
        return " ".join(stmts + [f"out0[{yi}] = {ctx.store(dt, s)};"])

    return _direct_conv(ctx, g, ct, lambda i: ctx.load(dt, f"in0[{i}]"), lambda i: ctx.load(dt, f"in1[{i}]"),
                        bias, finish)


# ---- generators ------------------------------------------------------------------------------------------
def _check_static(ctx: KernelContext):
    x, w = ctx.inputs[0], ctx.inputs[1]
    if len(x.shape) < 3 or len(x.shape) > 5:
        ctx.fail(f"{len(x.shape) - 2}-D convolution: only 1-D, 2-D and 3-D are supported")
    if any(d == 0 for d in x.shape) or any(d == 0 for d in w.shape):
        return False
    return True


def uses_all(ctx: KernelContext, body: str) -> str:
    """Marks every parameter used (weights packed at compile time leave their pointer unread)."""
    n_in = len(ctx.inputs)
    names = [f"in{i}" for i in range(n_in)] + [f"out{i}" for i in range(len(ctx.outputs))]
    return "    " + " ".join(f"(void){n};" for n in names) + "\n" + body


@kernel("conv", "fused_conv")
def conv(ctx: KernelContext) -> str:
    return uses_all(ctx, _conv(ctx))


def _conv(ctx: KernelContext) -> str:
    if not _check_static(ctx):
        return "    (void)in0;"
    g = ConvGeom(ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.attrs)
    epi = Epilogue(ctx) if ctx.node.op == "fused_conv" else Epilogue.plain()
    if ctx.outputs[0].dtype.short == "f32":
        return _conv_f32(ctx, g, epi)
    return _conv_generic(ctx, g, epi)


@kernel("conv_integer")
def conv_integer(ctx: KernelContext) -> str:
    return uses_all(ctx, _conv_integer(ctx))


def _conv_integer(ctx: KernelContext) -> str:
    if not _check_static(ctx):
        return "    (void)in0;"
    g = ConvGeom(ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.attrs)
    lines = []
    xz = "0"
    if ctx.has_input(2):
        xz = "(int32_t)in2[0]"
    wz = "0"
    if ctx.has_input(3):
        n = math.prod(ctx.inputs[3].shape)
        if n not in (1, g.m):
            ctx.fail(f"w_zero_point has {n} values, expected 1 or {g.m}")
        wz = "(int32_t)in3[m]" if n > 1 else "(int32_t)in3[0]"
    lines.append(_direct_conv(ctx, g, "int32_t", lambda i: f"(int32_t)in0[{i}] - {xz}",
                              lambda i: f"(int32_t)in1[{i}] - {wz}", "0", lambda s, yi: f"out0[{yi}] = {s};"))
    return "\n".join(lines)


@kernel("conv_transpose")
def conv_transpose(ctx: KernelContext) -> str:
    return uses_all(ctx, _conv_transpose(ctx))


def _conv_transpose(ctx: KernelContext) -> str:
    x, w = ctx.inputs[0], ctx.inputs[1]
    if len(x.shape) < 3 or len(x.shape) > 5:
        ctx.fail(f"{len(x.shape) - 2}-D transposed convolution: only 1-D, 2-D and 3-D are supported")
    g = ConvGeom(x.shape, w.shape, ctx.attrs, transpose=True)
    dt = x.dtype
    ct = ctx.compute_ctype(dt)
    (D, H, W), (OD, OH, OW), (KD, KH, KW) = g.in_sp, g.out_sp, g.kernel
    (sd, sh, sw), (dd, dh, dw), (pd, ph, pw) = g.strides, g.dilations, g.begin
    total = g.n * g.m * g.p_out
    bias = f"({ct})({ctx.load(dt, 'in2[m]')})" if ctx.has_input(2) else "0"
    if dt.short not in ("f32", "f64"):
        ctx.fail(f"{dt} ConvTranspose is not supported by the x86 kernels (float32 and float64 are)")
    lines = []
    lines.append(f"""    {ct} *y = out0;
    for (int64_t n = 0; n < {g.n}; n++)
    for (int64_t m = 0; m < {g.m}; m++) {{
        const {ct} b = {bias};
        for (int64_t i = 0; i < {g.p_out}; i++) y[(n * {g.m} + m) * {g.p_out} + i] = b;
    }}
    if ({total} == 0) return;
    for (int64_t n = 0; n < {g.n}; n++)
    for (int64_t c = 0; c < {g.c}; c++) {{
        const int64_t gi = c / {g.cg};
        for (int64_t mm = 0; mm < {g.mg}; mm++) {{
            const int64_t m = gi * {g.mg} + mm;
            {ct} *ym = y + (n * {g.m} + m) * {g.p_out};
            const {ct} *xc = in0 + (n * {g.c} + c) * {g.p_in};
            const {ct} *wc = in1 + (c * {g.mg} + mm) * {g.taps};
            for (int64_t kd = 0; kd < {KD}; kd++)
            for (int64_t kh = 0; kh < {KH}; kh++)
            for (int64_t kw = 0; kw < {KW}; kw++) {{
                const {ct} wv = wc[(kd * {KH} + kh) * {KW} + kw];
                for (int64_t id = 0; id < {D}; id++) {{
                    const int64_t od = id * {sd} - {pd} + kd * {dd};
                    if (od < 0 || od >= {OD}) continue;
                    for (int64_t ih = 0; ih < {H}; ih++) {{
                        const int64_t oh = ih * {sh} - {ph} + kh * {dh};
                        if (oh < 0 || oh >= {OH}) continue;
                        const {ct} *xr = xc + (id * {H} + ih) * {W};
                        {ct} *yr = ym + (od * {OH} + oh) * {OW};
                        for (int64_t iw = 0; iw < {W}; iw++) {{
                            const int64_t ow = iw * {sw} - {pw} + kw * {dw};
                            if (ow >= 0 && ow < {OW}) yr[ow] += xr[iw] * wv;
                        }}
                    }}
                }}
            }}
        }}
    }}""")
    return "\n".join(lines)
