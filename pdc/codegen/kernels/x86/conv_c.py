"""x86 C of the convolution kernels: the AVX-512 forms of the portable row helpers
(dense_conv_c.py), the AVX-512 and AVX2 forms of the depthwise kernels' inner loops
(dense_depthwise.py), and the C of the x86 convolution paths (conv.py): the padded-band driver,
the packers of the small-image (transposed) path and the in-place pointwise driver. They use the
types of dense_core.
"""
from __future__ import annotations

from ...context import KernelContext
from .. import native
from ..dense_conv_c import fill_row_helper

# ---- row helpers -----------------------------------------------------------------------------------
native.implement(
    "x86",
    copy_zero=r"""#if defined(__AVX512F__)
    for (; n >= 16; n -= 16, d += 16) _mm512_storeu_ps(d, _mm512_setzero_ps());
    if (n > 0) _mm512_mask_storeu_ps(d, (__mmask16)pdc_m16((int)n), _mm512_setzero_ps());
#else
@plain
#endif
""",
    copy_run=r"""#if defined(__AVX512F__)
    for (; n >= 16; n -= 16, d += 16, s += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(s));
    if (n > 0) {
        const __mmask16 m = (__mmask16)pdc_m16((int)n);
        _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
    }
#else
@plain
#endif
""",
    copy_step2=r"""#if defined(__AVX512F__)
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
#elif defined(__AVX2__)
    if (step == 2) { /* the even floats of 16: the 16th one is read only where it is one of the row's (n >= 9) */
        for (; n >= 8; n -= 8, d += 8, s += 16) {
            const __m256 hi = n >= 9 ? _mm256_loadu_ps(s + 8) : _mm256_maskload_ps(s + 8, pdc_m8(7));
            const __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(s), hi, _MM_SHUFFLE(2, 0, 2, 0));
            _mm256_storeu_ps(d, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
        }
    }
#endif
""",
    fill_row=r"""#if defined(__AVX512F__)
    if (sw == 1) {
        for (int64_t c = 0; c < n; c += 16) {
            const int64_t a = c + off, lo = a < 0 ? -a : 0, hi = W - a;
            const unsigned in = pdc_m16((int)(hi < 16 ? hi : 16)) & ~pdc_m16((int)(lo < 16 ? lo : 16));
            const __mmask16 m = (__mmask16)(hi <= lo ? 0u : in);
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
                m1 = (__mmask16)(pdc_m16((int)(hi - 16 < 16 ? hi - 16 : 16)) &
                                 ~pdc_m16((int)(lo - 16 < 16 ? lo - 16 : 16)));
            }
            const __m512 A = _mm512_maskz_loadu_ps(m0, xr + a), B = _mm512_maskz_loadu_ps(m1, xr + a + 16);
            const __mmask16 st = (__mmask16)pdc_m16((int)(n - c));
            _mm512_mask_storeu_ps(d + c, st, _mm512_permutex2var_ps(A, ev, B));
            _mm512_mask_storeu_ps(d + phase + c, st, _mm512_permutex2var_ps(A, od, B));
        }
        return;
    }
#elif defined(__AVX2__)
    if (sw == 1 || sw == 2) { /* 8 output columns a step: 8 (sw 1) or 16 (sw 2) input columns from a */
        for (int64_t c = 0; c < n; c += 8) {
            const int64_t a = sw * c + off, span = 8 * sw;
            __m256 A, B = _mm256_setzero_ps();
            if (a >= 0 && a + span <= W) {
                A = _mm256_loadu_ps(xr + a);
                if (sw == 2) B = _mm256_loadu_ps(xr + a + 8);
            } else { /* lanes inside [0, W) only: a masked-off lane is never read */
                A = _mm256_maskload_ps(xr + a, pdc_span8(-a, W - a));
                if (sw == 2) B = _mm256_maskload_ps(xr + a + 8, pdc_span8(-a - 8, W - a - 8));
            }
            const int whole = n - c >= 8;
            if (sw == 1) {
                if (whole) _mm256_storeu_ps(d + c, A); else _mm256_maskstore_ps(d + c, pdc_m8((int)(n - c)), A);
                continue;
            }
            const __m256 ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(A, B, 0x88)), 0xd8));
            const __m256 od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(A, B, 0xdd)), 0xd8));
            if (whole) {
                _mm256_storeu_ps(d + c, ev);
                _mm256_storeu_ps(d + phase + c, od);
            } else {
                _mm256_maskstore_ps(d + c, pdc_m8((int)(n - c)), ev);
                _mm256_maskstore_ps(d + phase + c, pdc_m8((int)(n - c)), od);
            }
        }
        return;
    }
#endif
""",
)


# ---- padded, phase-split bands of input rows -------------------------------------------------------
ICONV_C = r"""
/* ---- pdc dense kernels: convolution over zero-padded, phase-split bands of input rows ----
 * A band holds, for every input channel of a group, the padded input rows that output rows
 * [oh0, oh1) read, split into sh x sw phases (row % sh, column % sw) so that every kernel tap
 * reads a contiguous run: output grid position q = row * Wq + column, tap t of channel c at
 * band + koff[c * taps + t] + q. Grid columns >= OW are computed and dropped on store. */
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
/* A thread slot's scratch: the register tile's store buffer (16 x 64), then the band. */
static void pdc_iconv_part(const void *vj, int64_t part, int64_t parts, float *tile) {
    const pdc_iconv_job *j = (const pdc_iconv_job *)vj;
    float *buf = tile + 16 * 64;
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
/* scratch: `slots` thread slots of slot_floats each */
static void pdc_iconv_run(const pdc_iconv_job *j, float *scratch, int64_t slot_floats, int slots) {
    const int64_t threads = j->parallel ? pdc_slot_threads(slots) : 1;
    const int64_t per = j->split_m ? (j->Mg + j->MR - 1) / j->MR : j->nbands;
    /* split M: every chunk fills every band, so one chunk per thread */
    const int64_t chunks = j->split_m ? (j->problems * per < threads ? j->problems * per : threads)
                                      : pdc_chunk_count(j->problems * per, threads);
    pdc_run_chunks(j, pdc_iconv_part, chunks, threads, slots, scratch, slot_floats);
}
"""
IC_BUF_FLOATS = 49152  # the most a band takes, per thread (192 KiB)
ICONV_TILE_FLOATS = 16 * 64  # and the register tile's store buffer


# ---- small images: pixels as GEMM rows ---------------------------------------------------------------
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


TCONV_S1X1_C = r"""
/* A rows of a strided 1x1 conv for the transposed path: channel k of output row oh is input row
   oh * sh read every sw-th column. */
static void pdc_tconv_packa_s1x1(const void *ctx, int64_t b, float *dst, int64_t m0, int64_t mr, int64_t k0,
                                 int64_t kc, int64_t MR, const float *scratch) {
    const pdc_iconv_job *j = (const pdc_iconv_job *)ctx;
    const float *x = j->x + b * j->Cg * j->H * j->W + (m0 / j->OW) * j->sh * j->W;
    (void)scratch;
    for (int64_t k = 0; k < kc; k++) {
        pdc_copy_step_f32(dst + k * MR, x + (k0 + k) * j->H * j->W, mr, j->sw);
        if (mr < MR) pdc_zero_f32(dst + k * MR + mr, MR - mr);
    }
}
"""


# ---- pointwise convolution reading the input in place -------------------------------------------------
PWCONV_C = r"""
/* ---- pdc dense kernels: pointwise convolution reading the NCHW input in place ----
 * For a 1x1, stride 1, unpadded conv B[k][p] = x[k * HW + p]: the indirect microkernel reads
 * full pixel panels straight from the input (koff[k] = k * HW); only the tail panel is copied
 * into a zero-padded buffer (tkoff[k] = k * NR). The microkernel stores with the epilogue. */
typedef struct {
    const float *x, *w, *bias, *res; float *y; const int32_t *koff, *tkoff; const pdc_post *post;
    int64_t G, Cg, Mg, P, K, MR, NR, mchunk, problems;
    int64_t cols;  /* the pixels computed, from the first (P: the row stride) */
    float lo, hi; int clamp, split_m, parallel;
    pdc_ukri_fn ukr;
} pdc_pwconv_job;
static void pdc_pwconv_part(const void *vj, int64_t part, int64_t parts, float *tail) {
    const pdc_pwconv_job *j = (const pdc_pwconv_job *)vj;
    const int64_t cols = j->cols;
    const int64_t mbs = (j->Mg + j->MR - 1) / j->MR, nbs = (cols + j->NR - 1) / j->NR;
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
            /* the post-pass follows every few panels, while their tiles are still in the cache
               (after a whole image of 112 x 112 pixels it would read them back from memory) */
            const int64_t qb = j->post ? pdc_post_panels((mce - mc) * j->MR, j->NR) : q1 - q0;
            for (int64_t qs = q0; qs < q1; qs += qb) {
                const int64_t qe = qs + qb < q1 ? qs + qb : q1;
                for (int64_t q = qs; q < qe; q++) {
                    const int64_t c0 = q * j->NR;
                    const int nr = (int)(cols - c0 < j->NR ? cols - c0 : j->NR);
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
                    }
                }
                const int64_t cb = qs * j->NR, ce = qe * j->NR < cols ? qe * j->NR : cols;
                pdc_post_rows(j->post, b, j->Mg, j->MR, mc, mce, cb, ce - cb, y, j->P);
            }
        }
    }
}
/* scratch: `slots` thread slots of slot_floats each, for the tail panel (K x NR) */
static void pdc_pwconv_run(const pdc_pwconv_job *j, float *scratch, int64_t slot_floats, int slots) {
    const int64_t threads = j->parallel ? pdc_slot_threads(slots) : 1;
    const int64_t per = j->split_m ? (j->Mg + j->MR - 1) / j->MR : (j->cols + j->NR - 1) / j->NR;
    pdc_run_chunks(j, pdc_pwconv_part, pdc_chunk_count(j->problems * per, threads), threads, slots, scratch,
                   slot_floats);
}
"""


def iconv_helpers(ctx: KernelContext) -> None:
    """Registers the padded-band driver (and the row fill it uses)."""
    fill_row_helper(ctx)
    ctx.helper("pdc_dense_iconv", ICONV_C)


# ---- the depthwise kernels' vector loops (dense_depthwise.py) -----------------------------------------
@native.implements("dense_dw_rows", family="x86")
def dw_rows(taps_h: int, taps_w: int, sw: int) -> str:
    """One plane of the row kernel in vectors of 16 output columns: each tap one masked load from the
    input row (stride 2: two loads and a permute)."""
    taps = taps_h * taps_w
    L = ["#if defined(__AVX512F__)"]
    L.append("        " + " ".join(f"const __m512 w{t} = _mm512_set1_ps(w[{t}]);" for t in range(taps)))
    L.append("        const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);")
    if sw == 2:
        L.append("        const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, "
                 "28, 30);")
    L.append("        for (int64_t oh = 0; oh < OH; oh++) {")
    L.append("            for (int64_t blk = 0; blk < nblk; blk++) {")
    L.append(f"                const uint32_t *mk = masks + blk * {taps_w};")
    L.append(f"                const int64_t base = blk * {16 * sw} - pw;")
    L.append("                __m512 a0 = vb, a1 = _mm512_setzero_ps();")
    def load(kw: int) -> str:
        if sw == 1:
            return f"_mm512_maskz_loadu_ps((__mmask16)mk[{kw}], r + {kw} * dw)"
        return (f"_mm512_permutex2var_ps(_mm512_maskz_loadu_ps((__mmask16)mk[{kw}], r + {kw} * dw), ev, "
                f"_mm512_maskz_loadu_ps((__mmask16)(mk[{kw}] >> 16), r + {kw} * dw + 16))")
    L += _tap_rows(taps_h, taps_w, "_mm512", load, " " * 16)
    L.append("                const int64_t o = oh * OW + blk * 16;")
    L += _finish("_mm512", " " * 16, "o", "OW - blk * 16")
    L.append("            }")
    L.append("        }")
    L += _dw_rows_avx2(taps_h, taps_w, sw)
    L += ["#else", "@plain", "#endif"]
    return "\n".join(L) + "\n"


# How the depthwise loops spell their last steps per width: the mask of n valid lanes, a masked load
# of `at`, a masked store of a0 at `at`
_STORE = {"_mm512": ("const __mmask16 m = (__mmask16)pdc_m16((int)({n}));", "_mm512_maskz_loadu_ps(m, {at})",
                     "_mm512_mask_storeu_ps({at}, m, a0);"),
          "_mm256": ("const __m256i m = pdc_m8((int)({n}));", "_mm256_maskload_ps({at}, m)",
                     # a whole vector as a plain store: AMD cores run a masked AVX2 store as dozens of micro-ops
                     "if (({n}) >= 8) _mm256_storeu_ps({at}, a0); else _mm256_maskstore_ps({at}, m, a0);")}


def _finish(mm: str, pad: str, o: str, n: str) -> list[str]:
    """A depthwise vector's end: both accumulators summed, + the residual, the clamp, the store of
    the n valid lanes at output offset o."""
    mask, load, store = _STORE[mm]
    return [f"{pad}{mask.format(n=n)}",
            f"{pad}a0 = {mm}_add_ps(a0, a1);",
            f"{pad}if (res) a0 = {mm}_add_ps(a0, {load.format(at=f'res + {o}')});",
            f"{pad}if (clamp) a0 = {mm}_min_ps(vhi, {mm}_max_ps(vlo, a0));",
            f"{pad}{store.format(at=f'y + {o}', n=n)}"]


def _tap_rows(taps_h: int, taps_w: int, mm: str, load, pad: str) -> list[str]:
    """The row kernel's taps: per kernel row inside the plane, each tap's vector (load(kw), read
    from r) times its weight, into two accumulators by turns."""
    L = []
    for kh in range(taps_h):
        L.append(f"{pad}{{ const int64_t ih = oh * sh - ph + {kh} * dh;")
        L.append(f"{pad}  if (ih >= 0 && ih < H) {{ const float *r = x + ih * W + base;")
        for kw in range(taps_w):
            t = kh * taps_w + kw
            L.append(f"{pad}    a{t % 2} = {mm}_fmadd_ps(w{t}, {load(kw)}, a{t % 2});")
        L.append(f"{pad}  }} }}")
    return L


def _dw_rows_avx2(taps_h: int, taps_w: int, sw: int) -> list[str]:
    """The row kernel's AVX2 form: each 16-column block as two vectors of 8, a tap's load masked by
    its byte of the block's mask (stride 2: two loads of 8 columns, their even lanes kept)."""
    taps = taps_h * taps_w
    L = ["#elif defined(__AVX2__) && defined(__FMA__)",
         "        " + " ".join(f"const __m256 w{t} = _mm256_set1_ps(w[{t}]);" for t in range(taps)),
         "        const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);",
         "        for (int64_t oh = 0; oh < OH; oh++) {",
         "            for (int64_t blk = 0; blk < nblk; blk++) {",
         f"                const uint32_t *mk = masks + blk * {taps_w};",
         "                for (int half = 0; half < 2; half++) {",
         "                    const int64_t c0 = blk * 16 + half * 8;",
         "                    if (c0 >= OW) break;",
         f"                    const int64_t base = c0 * {sw} - pw;",
         "                    __m256 a0 = vb, a1 = _mm256_setzero_ps();"]
    def load(kw: int) -> str:
        if sw == 1:
            return f"_mm256_maskload_ps(r + {kw} * dw, pdc_bits8(mk[{kw}], 8 * half))"
        # 16 input columns: lanes 16*half.. of the 32-lane mask, the even ones kept
        lo_ = f"_mm256_maskload_ps(r + {kw} * dw, pdc_bits8(mk[{kw}], 16 * half))"
        hi_ = f"_mm256_maskload_ps(r + {kw} * dw + 8, pdc_bits8(mk[{kw}], 16 * half + 8))"
        return (f"_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps({lo_}, {hi_}, 0x88)), "
                "0xd8))")
    L += _tap_rows(taps_h, taps_w, "_mm256", load, " " * 20)
    L.append("                    const int64_t o = oh * OW + c0;")
    L += _finish("_mm256", " " * 20, "o", "OW - c0")
    L += ["                }",
          "            }",
          "        }"]
    return L


@native.implements("dense_dw_flat", family="x86")
def dw_flat(taps: int) -> str:
    """One plane of the flat kernel in vectors of 16 output pixels: where every tap keeps all 16 lanes
    (the table's last word per vector), plain loads, else each tap one masked load (a mask word to a
    mask register per tap: a third of the layer's time where it was every vector's)."""
    def taps_fma(load) -> list[str]:
        return [f"                a{t % 2} = _mm512_fmadd_ps(w{t}, {load(t)}, a{t % 2});" for t in range(taps)]
    L = ["#if defined(__AVX512F__)",
         "        " + " ".join(f"const __m512 w{t} = _mm512_set1_ps(w[{t}]);" for t in range(taps)),
         "        const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);",
         "        for (int64_t v = 0; v < j->nblk; v++) {",
         f"            const uint32_t *mk = masks + v * {taps + 1};",
         "            const float *r = x + v * 16;",
         "            __m512 a0 = vb, a1 = _mm512_setzero_ps();",
         f"            if (mk[{taps}] == 0xffffu) {{"]
    L += taps_fma(lambda t: f"_mm512_loadu_ps(r + off[{t}])")
    L.append("            } else {")
    L += taps_fma(lambda t: f"_mm512_maskz_loadu_ps((__mmask16)mk[{t}], r + off[{t}])")
    L.append("            }")
    L += _finish("_mm512", " " * 12, "v * 16", "P - v * 16")
    L.append("        }")
    L += _dw_flat_avx2(taps)
    L += ["#else", "@plain", "#endif"]
    return "\n".join(L) + "\n"


def _dw_flat_avx2(taps: int) -> list[str]:
    """The flat kernel's AVX2 form: each 16-pixel block as two vectors of 8; where every tap keeps
    all 8 lanes (inside the plane: the table's last word), plain loads, else each tap's load masked
    by its byte."""
    L = ["#elif defined(__AVX2__) && defined(__FMA__)",
         "        " + " ".join(f"const __m256 w{t} = _mm256_set1_ps(w[{t}]);" for t in range(taps)),
         "        const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);",
         "        for (int64_t v = 0; v < j->nblk; v++) {",
         f"            const uint32_t *mk = masks + v * {taps + 1}, every = mk[{taps}];",
         "            for (int half = 0; half < 2; half++) {",
         "                const int64_t p = v * 16 + half * 8;",
         "                if (p >= P) break;",
         "                const float *r = x + p;",
         "                __m256 a0 = vb, a1 = _mm256_setzero_ps();",
         "                if (((every >> (8 * half)) & 0xffu) == 0xffu) {"]
    for t in range(taps):
        L.append(f"                    a{t % 2} = _mm256_fmadd_ps(w{t}, _mm256_loadu_ps(r + off[{t}]), a{t % 2});")
    L.append("                } else {")
    for t in range(taps):
        L.append(f"                    a{t % 2} = _mm256_fmadd_ps(w{t}, _mm256_maskload_ps(r + off[{t}], "
                 f"pdc_bits8(mk[{t}], 8 * half)), a{t % 2});")
    L.append("                }")
    L += _finish("_mm256", " " * 16, "p", "P - p")
    L += ["            }", "        }"]
    return L
