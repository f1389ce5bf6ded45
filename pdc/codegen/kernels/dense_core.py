"""Shared machinery of the dense kernels (conv, gemm, matmul): fp32 GEMM microkernels, the
blocked GEMM driver, operand packers and the fused epilogue, emitted once per kernel file as
static helpers (ctx.helper), so a model's layers differ only in a small job description.

The GEMM computes C[M x N] = A[M x K] * B[K x N] for `batch` independent problems:

- The microkernel keeps an MR x NR tile of C in registers (NR = NV vectors): per k it loads NV
  vectors of a packed B panel and broadcasts MR values of a packed A panel (KERNELS.md §1).
  Packed A is [ceil(M/MR)][K][MR], packed B is [ceil(N/NR)][K][NR], both zero-padded, so tails
  only need masked loads/stores of C.
- Constant operands (conv weights, a matmul's weight matrix) are packed at compile time into
  that order (pack_a_panels / pack_b_panels); runtime operands are packed by a callback per
  (K block, N chunk) into a stack buffer: im2col for convolutions, a strided copy otherwise.
- The epilogue runs on the accumulators before the single store: + bias per row (bias_m),
  + bias per column (bias_n), + residual tile, clamp (relu / relu6 / clip). Anything else
  (other activations, Gemm's beta * C broadcast, residual after the activation) is a scalar
  post-pass over the finished tile while it is in L1.
- Threads split the output: N panels (early layers: both threads share the weights) or M blocks
  (late layers: each thread streams half the weights), chosen at compile time. The parts are
  pulled from an atomic counter (a few per thread), so a late or preempted thread does not
  stall the kernel with its static half.
- Microkernels exist per (MR, NV) shape as AVX-512 (target vector_bits 512) or AVX2 code, each
  with a scalar fallback; only the shapes a model uses are emitted. "Indirect" AVX-512 variants
  read B row k at b + koff[k] (unaligned, unpacked): the convolution paths use them to read
  padded input bands or the input itself instead of im2col copies.
- Scratch memory is the stack: no allocation at run time, reentrant. At most ~400 KiB per
  thread (BBUF/ABUF below, the conv paths' buffers), plus up to 512 KiB on the calling thread for
  the small-image conv path's result (TCONV_TMP_FLOATS): ~0.9 MiB there in the worst case.

For NCHW convolutions M = output channels (weights broadcast), N = output pixels (vectors of
pixels), K = C/group * kernel taps, one problem per (image, group).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.ops.fused_conv import ACTIVATIONS
from ..context import KernelContext
from ..ctypes_c import float_literal

# ---- blocking parameters ------------------------------------------------------------------------
BBUF_FLOATS = 65536  # per-thread stack buffer for packed B (256 KiB, lives in L2)
ABUF_FLOATS = 32768  # per-thread stack buffer for packed A: one KC x MR panel, or all (a_all) (128 KiB)
KC_MAX = 640  # no K blocking up to this K; above it, equal blocks of at most KC_SPLIT
KC_SPLIT = 512
PARALLEL_MIN_MACS = 400_000  # smaller problems run on the calling thread (dispatch ~ a few µs)

# activation codes of the post-pass (pdc_post.act)
ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2, "clip": 3, "sigmoid": 4, "hard_sigmoid": 5,
             "hard_swish": 6, "gelu": 7, "gelu_tanh": 8, "tanh": 9}


def isa_of(ctx: KernelContext) -> str:
    return "avx512" if ctx.config.vector_bits >= 512 else "avx2"


def lanes(isa: str) -> int:
    return 16 if isa == "avx512" else 8


def default_tile(isa: str) -> tuple[int, int]:
    """(MR, NV) of the main microkernel: 12 x 32 (24 zmm accumulators) or 6 x 16 (12 ymm)."""
    return (12, 2) if isa == "avx512" else (6, 2)


def choose_tile(isa: str, m: int, n: int) -> tuple[int, int]:
    """(MR, NV) minimizing the padded work ceil(M/MR)*MR x ceil(N/NR)*NR among the register tiles
    that keep 24 accumulators (KERNELS.md §1: 12x32, 8x48, 6x64 all run at ~98 % of peak)."""
    if isa != "avx512":
        return (pick_mr(isa, m), 2)
    if m < 6:
        return (pick_mr(isa, m), 2 if n > 16 else 1)
    best = None
    for mr, nv in ((8, 3), (12, 2), (6, 4)):
        nr = 16 * nv
        work = -(-m // mr) * mr * -(-n // nr) * nr
        if best is None or work < best[0]:
            best = (work, mr, nv)
    return best[1], best[2]


def pick_mr(isa: str, m: int) -> int:
    """MR for a problem with m rows: the main tile unless a smaller one wastes fewer rows."""
    mr_main, _ = default_tile(isa)
    if m >= mr_main:
        return mr_main
    for mr in (1, 2, 4, 6, 8, 12):
        if mr >= m and mr <= mr_main:
            return mr
    return mr_main


# ---- compile-time packing ---------------------------------------------------------------------------
def pack_a_panels(a: np.ndarray, mr: int) -> np.ndarray:
    """(..., M, K) -> (..., ceil(M/MR), K, MR) float32, rows zero-padded."""
    *lead, m, k = a.shape
    mb = -(-m // mr)
    out = np.zeros((*lead, mb * mr, k), np.float32)
    out[..., :m, :] = a
    out = out.reshape(*lead, mb, mr, k)
    return np.ascontiguousarray(np.swapaxes(out, -1, -2))


def pack_b_panels(b: np.ndarray, nr: int) -> np.ndarray:
    """(..., K, N) -> (..., ceil(N/NR), K, NR) float32, columns zero-padded."""
    *lead, k, n = b.shape
    nb = -(-n // nr)
    out = np.zeros((*lead, k, nb * nr), np.float32)
    out[..., :n] = b
    out = out.reshape(*lead, k, nb, nr)
    return np.ascontiguousarray(np.swapaxes(out, -2, -3))


def k_block(k: int) -> int:
    if k <= KC_MAX:
        return max(k, 1)
    return -(-k // -(-k // KC_SPLIT))


def n_chunk(kc: int, nr: int, n: int) -> int:
    """Columns per packed-B chunk: as many NR panels as fit the stack buffer."""
    panels = max(1, BBUF_FLOATS // (kc * nr))
    return min(panels, -(-n // nr)) * nr


def choose_split(batch: int, m: int, n: int, k: int, mr: int, nr: int, threads: int, a_bytes: int,
                 b_runtime: bool = False) -> tuple[int, int]:
    """(parallel, split_m): whether to use the thread pool and along which dimension. Splitting M
    makes every thread pack all of B: with B packed at run time that needs a reason (too few N
    panels to share)."""
    if threads <= 1 or batch * m * n * k < PARALLEL_MIN_MACS:
        return 0, 0
    mb, nb = -(-m // mr), -(-n // nr)
    per_n = -(-batch * nb // threads) * mb  # tiles of the busiest thread
    per_m = -(-batch * mb // threads) * nb
    if b_runtime and batch * nb >= 2 * threads:
        return 1, 0
    if per_m < per_n or (per_m == per_n and a_bytes > (1 << 20)):
        return 1, 1
    return 1, 0


# ---- C: types, epilogue, driver -----------------------------------------------------------------
TYPES_C = r"""
/* ---- pdc dense kernels: shared types ---- */
#include <immintrin.h>
#include <stdatomic.h>
#define PDC_ACC 1   /* add the tile already in C (a later K block) */
#define PDC_LAST 2  /* last K block: apply the epilogue */
#define PDC_CLAMP 4 /* clamp to [lo, hi] after the epilogue adds */
typedef struct { const float *bias_m, *bias_n, *res; int64_t ldr; float lo, hi; } pdc_epi;
typedef void (*pdc_ukr_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                           int flags, const pdc_epi *e);
/* packs rows [k0, k0+kc) x columns [n0, n0+nc) of problem `b`'s B into ceil(nc/NR) panels of kc x NR */
typedef void (*pdc_packb_fn)(const void *ctx, int64_t b, float *dst, int64_t k0, int64_t kc, int64_t n0,
                             int64_t nc, int64_t NR);
/* packs rows [m0, m0+mr) x columns [k0, k0+kc) of problem `b`'s A into kc x MR; `scratch` is what
   the job's prep hook prepared for problem b and this K block (in the B buffer, which is free when
   B is packed at compile time) */
typedef void (*pdc_packa_fn)(const void *ctx, int64_t b, float *dst, int64_t m0, int64_t mr, int64_t k0,
                             int64_t kc, int64_t MR, const float *scratch);
typedef void (*pdc_prep_fn)(const void *ctx, int64_t b, int64_t k0, int64_t kc, float *scratch);
/* The post-pass for what the register epilogue does not do, on a finished tile of problem b:
   y = act(y + add_scale * add[...]) + res_after[...]. With `tout` set, the tile holds pixels x
   channels of a convolution and is stored transposed: channel j, pixel i at
   tout[b * t_bs + (n0 + j) * tld + m0 + i], after + tbias, + tres (residual before the
   activation) and the clamp. */
typedef struct {
    int act; float alpha, beta;
    const float *add; int64_t add_bs, add_rs, add_cs; float add_scale;
    const float *res_after; int64_t ra_bs, ra_ld;
    float *tout; const float *tbias, *tres; int64_t t_bs, tld, tb_mod, tb_bs; float lo, hi; int clamp;
} pdc_post;
typedef struct {
    int64_t batch, M, N, K;
    int64_t MR, NR, KC, NC;
    pdc_ukr_fn ukr;
    const float *a; int64_t a_bmod, a_bs; const int64_t *a_tab; /* packed A of problem b */
    pdc_packa_fn packa; const void *packa_ctx;                   /* or A packed at run time */
    pdc_prep_fn prep; const void *prep_ctx;                      /* per problem and K block, before packa */
    const float *b; int64_t b_bmod, b_bs; const int64_t *b_tab; /* packed B of problem b */
    pdc_packb_fn packb; const void *packb_ctx;                   /* or B packed at run time */
    float *c; int64_t ldc, c_bs; const int64_t *c_tab;
    const float *bias_m; int64_t bm_bmod, bm_bs;
    const float *bias_n;
    const float *res; int64_t ldr, r_bs;
    float lo, hi; int clamp;
    const pdc_post *post;
    int parallel, split_m;
    int chunks_per_thread; /* dynamic chunks (0: 4); 1 where a chunk repeats costly packing */
    int a_all; /* pack every M block of a K block first, then loop N panels outside M blocks: each
                  prepacked B panel is read once per K block (small M, large prepacked N) */
} pdc_sgemm_job;
static inline int64_t pdc_boff(const int64_t *tab, int64_t mod, int64_t stride, int64_t b) {
    return tab ? tab[b] : (mod > 0 ? b % mod : b) * stride;
}
static inline unsigned pdc_m16(int n) { return n <= 0 ? 0u : n >= 16 ? 0xffffu : (1u << n) - 1u; }
#if defined(__AVX512F__)
/* acc += b * broadcast(*p), the broadcast folded into the FMA */
#define PDC_FMA_BCAST(acc, p, b) __asm__("vfmadd231ps %1%{1to16%}, %2, %0" : "+v"(acc) : "m"(*(p)), "v"(b))
#endif
#if defined(__AVX2__)
static inline __m256i pdc_m8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif
"""

POST_C = r"""
/* ---- pdc dense kernels: scalar activations and the tile post-pass ---- */
static float pdc_act_f32(int act, float a, float alpha, float beta) {
    switch (act) {
    case 1: return a > 0 ? a : (a != a ? a : 0);
    case 2: return a >= 0 ? a : a * alpha;
    case 3: { float t = a < alpha ? alpha : a; return t > beta ? beta : t; }
    case 4: return a >= 0 ? 1 / (1 + expf(-a)) : expf(a) / (1 + expf(a));
    case 5: { float t = alpha * a + beta; return t < 0 ? 0 : (t > 1 ? 1 : t); }
    case 6: { float t = a / 6 + 0.5f; return a * (t < 0 ? 0 : (t > 1 ? 1 : t)); }
    case 7: return (float)(0.5 * (double)a * (1 + erf((double)a * 0.70710678118654752440)));
    case 8: return 0.5f * a * (1 + tanhf(0.7978845608028654f * (a + 0.044715f * a * a * a)));
    case 9: return tanhf(a);
    default: return a;
    }
}
/* The transposed store of pdc_post (see there): tile (pixels x channels) -> out[channel][pixel]. */
static void pdc_post_trans(const pdc_post *p, int64_t b, int64_t m0, int64_t n0, int mr, int nr, const float *c,
                           int64_t ldc) {
    const float *bias = p->tbias ? p->tbias + (b % p->tb_mod) * p->tb_bs + n0 : 0;
    const int64_t o0 = b * p->t_bs + n0 * p->tld + m0;
#if defined(__AVX512F__)
    if (mr <= 16) {
        const __mmask16 mm = (__mmask16)pdc_m16(mr);
        const __m512 vlo = _mm512_set1_ps(p->lo), vhi = _mm512_set1_ps(p->hi);
        for (int j0 = 0; j0 < nr; j0 += 16) {
            /* transpose the 16 x 16 block at columns j0.. (rows >= mr read as 0) */
            __m512 r[16], t[16];
            const __mmask16 mc = (__mmask16)pdc_m16(nr - j0);
            for (int i = 0; i < 16; i++)
                r[i] = i < mr ? _mm512_maskz_loadu_ps(mc, c + i * ldc + j0) : _mm512_setzero_ps();
            for (int i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int a = 0; a < 16; a += 4) {
                r[a] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[a]), _mm512_castps_pd(t[a + 2])));
                r[a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[a]), _mm512_castps_pd(t[a + 2])));
                r[a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[a + 1]), _mm512_castps_pd(t[a + 3])));
                r[a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[a + 1]), _mm512_castps_pd(t[a + 3])));
            }
            /* r[4a + q] holds rows 4a..4a+3 at columns 4L + q in 128-bit lane L */
            for (int q = 0; q < 4; q++) {
                const __m512 v0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x88);
                const __m512 w0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xDD);
                const __m512 v1 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x88);
                const __m512 w1 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xDD);
                t[q] = _mm512_shuffle_f32x4(v0, v1, 0x88);
                t[8 + q] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
                t[4 + q] = _mm512_shuffle_f32x4(w0, w1, 0x88);
                t[12 + q] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
            }
            const int jn = nr - j0 < 16 ? nr - j0 : 16;
            for (int jj = 0; jj < jn; jj++) {
                const int64_t o = o0 + (j0 + jj) * p->tld;
                __m512 y = t[jj];
                if (bias) y = _mm512_add_ps(y, _mm512_set1_ps(bias[j0 + jj]));
                if (p->tres) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mm, p->tres + o));
                if (p->clamp) y = _mm512_min_ps(vhi, _mm512_max_ps(vlo, y));
                if (p->act || p->res_after) {
                    float tmp[16];
                    _mm512_storeu_ps(tmp, y);
                    for (int i = 0; i < mr; i++) {
                        float v = pdc_act_f32(p->act, tmp[i], p->alpha, p->beta);
                        if (p->res_after) v += p->res_after[o + i];
                        p->tout[o + i] = v;
                    }
                } else {
                    _mm512_mask_storeu_ps(p->tout + o, mm, y);
                }
            }
        }
        return;
    }
#endif
    for (int j = 0; j < nr; j++) {
        const int64_t o = o0 + j * p->tld;
        const float bj = bias ? bias[j] : 0.0f;
        for (int i = 0; i < mr; i++) {
            float y = c[i * ldc + j] + bj;
            if (p->tres) y += p->tres[o + i];
            if (p->clamp) { y = y < p->lo ? p->lo : y; y = y > p->hi ? p->hi : y; }
            y = pdc_act_f32(p->act, y, p->alpha, p->beta);
            if (p->res_after) y += p->res_after[o + i];
            p->tout[o + i] = y;
        }
    }
}
static void pdc_post_tile(const pdc_post *p, int64_t b, int64_t m0, int64_t n0, int mr, int nr, float *c,
                          int64_t ldc) {
    if (p->tout) {
        pdc_post_trans(p, b, m0, n0, mr, nr, c, ldc);
        return;
    }
    for (int i = 0; i < mr; i++) {
        float *row = c + i * ldc;
        for (int j = 0; j < nr; j++) {
            float y = row[j];
            if (p->add)
                y += p->add_scale * p->add[b * p->add_bs + (m0 + i) * p->add_rs + (n0 + j) * p->add_cs];
            y = pdc_act_f32(p->act, y, p->alpha, p->beta);
            if (p->res_after) y += p->res_after[b * p->ra_bs + (m0 + i) * p->ra_ld + n0 + j];
            row[j] = y;
        }
    }
}
/* The register epilogue in scalar C (the microkernels' fallback without vector ISA). */
static void pdc_sukr_scalar(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                            int flags, const pdc_epi *e, int MR, int NR) {
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            float s = 0;
            for (int64_t k = 0; k < kc; k++) s += a[k * MR + i] * b[k * NR + j];
            if (flags & PDC_ACC) s += c[i * ldc + j];
            if (flags & PDC_LAST) {
                if (e->bias_m) s += e->bias_m[i];
                if (e->bias_n) s += e->bias_n[j];
                if (e->res) s += e->res[i * e->ldr + j];
                if (flags & PDC_CLAMP) { s = s < e->lo ? e->lo : s; s = s > e->hi ? e->hi : s; }
            }
            c[i * ldc + j] = s;
        }
    }
}
static void pdc_sukr_scalar_i(int64_t kc, const float *a, const float *b, const int32_t *koff, float *c,
                              int64_t ldc, int mr, int nr, int flags, const pdc_epi *e, int MR, int NR) {
    (void)NR;
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            float s = 0;
            for (int64_t k = 0; k < kc; k++) s += a[k * MR + i] * b[koff[k] + j];
            if (flags & PDC_ACC) s += c[i * ldc + j];
            if (flags & PDC_LAST) {
                if (e->bias_m) s += e->bias_m[i];
                if (e->bias_n) s += e->bias_n[j];
                if (e->res) s += e->res[i * e->ldr + j];
                if (flags & PDC_CLAMP) { s = s < e->lo ? e->lo : s; s = s > e->hi ? e->hi : s; }
            }
            c[i * ldc + j] = s;
        }
    }
}
"""

DRIVER_C = r"""
/* ---- pdc dense kernels: the blocked GEMM driver ---- */
#define PDC_BBUF @BBUF@
#define PDC_ABUF @ABUF@
static void pdc_sgemm_block(const pdc_sgemm_job *j, int64_t b, int64_t mb0, int64_t mb1, int64_t nb0, int64_t nb1,
                            float *bbuf, float *abuf) {
    const int64_t MR = j->MR, NR = j->NR, K = j->K, M = j->M, N = j->N;
    const int64_t ncp = j->NC / NR;
    float *c = j->c + pdc_boff(j->c_tab, 0, j->c_bs, b);
    const float *res = j->res ? j->res + b * j->r_bs : 0;
    const float *bias_m = j->bias_m ? j->bias_m + pdc_boff(0, j->bm_bmod, j->bm_bs, b) : 0;
    const float *ab = j->packa ? 0 : j->a + pdc_boff(j->a_tab, j->a_bmod, j->a_bs, b);
    const float *bb = j->packb ? 0 : j->b + pdc_boff(j->b_tab, j->b_bmod, j->b_bs, b);
    for (int64_t nb = nb0; nb < nb1; nb += ncp) {
        const int64_t nbe = nb + ncp < nb1 ? nb + ncp : nb1;
        const int64_t n0 = nb * NR, nc = (nbe * NR < N ? nbe * NR : N) - n0;
        for (int64_t k0 = 0; k0 < K; k0 += j->KC) {
            const int64_t kc = j->KC < K - k0 ? j->KC : K - k0;
            const int last = k0 + kc >= K;
            const int flags = (k0 > 0 ? PDC_ACC : 0) | (last ? PDC_LAST : 0) | (j->clamp ? PDC_CLAMP : 0);
            if (j->packb) j->packb(j->packb_ctx, b, bbuf, k0, kc, n0, nc, NR);
            else if (j->prep) j->prep(j->prep_ctx, b, k0, kc, bbuf);
            if (j->a_all) {
                for (int64_t mb = mb0; mb < mb1; mb++) {
                    const int64_t m0 = mb * MR;
                    j->packa(j->packa_ctx, b, abuf + (mb - mb0) * kc * MR, m0, M - m0 < MR ? M - m0 : MR, k0, kc, MR,
                             bbuf);
                }
                for (int64_t q = nb; q < nbe; q++) {
                    const int64_t c0 = q * NR;
                    const int nr = (int)(N - c0 < NR ? N - c0 : NR);
                    const float *bp = bb + q * K * NR + k0 * NR;
                    for (int64_t mb = mb0; mb < mb1; mb++) {
                        const int64_t m0 = mb * MR;
                        const int mr = (int)(M - m0 < MR ? M - m0 : MR);
                        float *cp = c + m0 * j->ldc + c0;
                        pdc_epi e = {bias_m ? bias_m + m0 : 0, j->bias_n ? j->bias_n + c0 : 0,
                                     res ? res + m0 * j->ldr + c0 : 0, j->ldr, j->lo, j->hi};
                        j->ukr(kc, abuf + (mb - mb0) * kc * MR, bp, cp, j->ldc, mr, nr, flags, &e);
                        if (last && j->post) pdc_post_tile(j->post, b, m0, c0, mr, nr, cp, j->ldc);
                    }
                }
                continue;
            }
            for (int64_t mb = mb0; mb < mb1; mb++) {
                const int64_t m0 = mb * MR;
                const int mr = (int)(M - m0 < MR ? M - m0 : MR);
                const float *ap;
                if (j->packa) {
                    j->packa(j->packa_ctx, b, abuf, m0, mr, k0, kc, MR, bbuf);
                    ap = abuf;
                } else {
                    ap = ab + mb * K * MR + k0 * MR;
                }
                pdc_epi e = {bias_m ? bias_m + m0 : 0, 0, 0, j->ldr, j->lo, j->hi};
                for (int64_t q = nb; q < nbe; q++) {
                    const int64_t c0 = q * NR;
                    const int nr = (int)(N - c0 < NR ? N - c0 : NR);
                    const float *bp = j->packb ? bbuf + (q - nb) * kc * NR : bb + q * K * NR + k0 * NR;
                    float *cp = c + m0 * j->ldc + c0;
                    e.bias_n = j->bias_n ? j->bias_n + c0 : 0;
                    e.res = res ? res + m0 * j->ldr + c0 : 0;
                    j->ukr(kc, ap, bp, cp, j->ldc, mr, nr, flags, &e);
                    if (last && j->post) pdc_post_tile(j->post, b, m0, c0, mr, nr, cp, j->ldc);
                }
            }
        }
    }
}
static void pdc_sgemm_part(const pdc_sgemm_job *j, int64_t part, int64_t parts) {
    float bbuf[PDC_BBUF] __attribute__((aligned(64)));
    float abuf[PDC_ABUF] __attribute__((aligned(64)));
    const int64_t mbs = (j->M + j->MR - 1) / j->MR, nbs = (j->N + j->NR - 1) / j->NR;
    const int64_t per = j->split_m ? mbs : nbs, units = j->batch * per;
    const int64_t u0 = units * part / parts, u1 = units * (part + 1) / parts;
    for (int64_t u = u0; u < u1;) {
        const int64_t b = u / per, r0 = u % per;
        const int64_t r1 = (b + 1) * per <= u1 ? per : u1 - b * per;
        if (j->split_m) pdc_sgemm_block(j, b, r0, r1, 0, nbs, bbuf, abuf);
        else pdc_sgemm_block(j, b, 0, mbs, r0, r1, bbuf, abuf);
        u = b * per + r1;
    }
}
/* Threads pull chunks of the output from a shared counter, so a thread that starts late (or is
   preempted) leaves its share to the others instead of stalling the kernel. */
typedef struct { const void *job; int64_t chunks; atomic_long next; } pdc_chunks; /* long: 32-bit ARM has no 64-bit atomics */
static int64_t pdc_chunk_count(int64_t units, int64_t threads) {
    const int64_t c = 4 * threads;
    return units < c ? units : c;
}
static void pdc_sgemm_task(void *p, int64_t t0, int64_t t1) {
    pdc_chunks *c = (pdc_chunks *)p;
    int64_t i;
    (void)t0; (void)t1;
    while ((i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->chunks)
        pdc_sgemm_part((const pdc_sgemm_job *)c->job, i, c->chunks);
}
static void pdc_sgemm_run(const pdc_sgemm_job *j) {
    const int64_t threads = j->parallel ? pdc_threads_count() : 1;
    if (threads <= 1) {
        pdc_sgemm_part(j, 0, 1);
        return;
    }
    const int64_t per = j->split_m ? (j->M + j->MR - 1) / j->MR : (j->N + j->NR - 1) / j->NR;
    pdc_chunks c;
    c.job = j;
    /* split M with B packed at run time: every chunk packs all of B, so one chunk per thread */
    const int cpt = j->chunks_per_thread ? j->chunks_per_thread : (j->split_m && j->packb ? 1 : 4);
    const int64_t units = j->batch * per, most = cpt * threads;
    c.chunks = units < most ? units : most;
    atomic_init(&c.next, 0);
    pdc_parallel_for(threads, pdc_sgemm_task, &c);
}

/* ---- runtime packers: strided matrices ---- */
typedef struct {
    const float *p; const int64_t *tab; int64_t bmod, bs; /* problem b's matrix at p + off(b) */
    int64_t rs, cs; /* element (r, c) at r * rs + c * cs */
    float scale;
} pdc_strided;
/* B (K x N): element (k, n) */
static void pdc_packb_strided(const void *vctx, int64_t b, float *dst, int64_t k0, int64_t kc, int64_t n0,
                              int64_t nc, int64_t NR) {
    const pdc_strided *s = (const pdc_strided *)vctx;
    const float *src = s->p + pdc_boff(s->tab, s->bmod, s->bs, b);
    for (int64_t q = 0; q * NR < nc; q++) {
        const int64_t w = nc - q * NR < NR ? nc - q * NR : NR;
        float *d = dst + q * kc * NR;
        for (int64_t k = 0; k < kc; k++) {
            const float *r = src + (k0 + k) * s->rs + (n0 + q * NR) * s->cs;
            float *o = d + k * NR;
            if (s->cs == 1) for (int64_t x = 0; x < w; x++) o[x] = r[x] * s->scale;
            else for (int64_t x = 0; x < w; x++) o[x] = r[x * s->cs] * s->scale;
            for (int64_t x = w; x < NR; x++) o[x] = 0;
        }
    }
}
/* A (M x K): element (m, k) */
static void pdc_packa_strided(const void *vctx, int64_t b, float *dst, int64_t m0, int64_t mr, int64_t k0,
                              int64_t kc, int64_t MR, const float *scratch) {
    const pdc_strided *s = (const pdc_strided *)vctx;
    (void)scratch;
    const float *src = s->p + pdc_boff(s->tab, s->bmod, s->bs, b);
    if (s->rs == 1 && s->scale == 1.0f) { /* the rows of a k are contiguous: one short copy per k */
#if defined(__AVX512F__)
        if (MR <= 16) {
            const __mmask16 m = (__mmask16)pdc_m16((int)mr), all = (__mmask16)pdc_m16((int)MR);
            for (int64_t k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(dst + k * MR, all, _mm512_maskz_loadu_ps(m, src + m0 + (k0 + k) * s->cs));
            return;
        }
#endif
        for (int64_t k = 0; k < kc; k++) {
            const float *r = src + m0 + (k0 + k) * s->cs;
            float *d = dst + k * MR;
            for (int64_t i = 0; i < mr; i++) d[i] = r[i];
            for (int64_t i = mr; i < MR; i++) d[i] = 0;
        }
        return;
    }
    for (int64_t i = 0; i < MR; i++) {
        if (i >= mr) {
            for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = 0;
            continue;
        }
        const float *r = src + (m0 + i) * s->rs + k0 * s->cs;
        if (s->cs == 1) for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = r[k] * s->scale;
        else for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = r[k * s->cs] * s->scale;
    }
}
"""


def _ukr_avx512(mr: int, nv: int, indirect: bool = False) -> tuple[str, str]:
    """The AVX-512 microkernel. `indirect`: B row k is read at b + koff[k] (unaligned) instead of
    from a packed panel (the padded-band convolution)."""
    name = f"pdc_sukr_z{mr}x{nv}" + ("i" if indirect else "")
    nr = 16 * nv
    acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]
    koff = "const int32_t *restrict koff, " if indirect else ""
    L = [f"static void {name}(int64_t kc, const float *restrict a, const float *restrict b, {koff}float *restrict c, "
         f"int64_t ldc, int mr, int nr, int flags, const pdc_epi *e) {{",
         "    (void)mr;",
         "#if defined(__AVX512F__)"]
    for i in range(mr):
        L.append("    __m512 " + ", ".join(f"{x} = _mm512_setzero_ps()" for x in acc[i]) + ";")
    L.append("    for (int64_t k = 0; k < kc; k++) {")
    if indirect:
        L.append("        const float *bk = b + koff[k];")
        L.append("        " + " ".join(f"const __m512 b{v} = _mm512_loadu_ps(bk + {16 * v});" for v in range(nv)))
    else:
        L.append("        " + " ".join(f"const __m512 b{v} = _mm512_load_ps(b + {16 * v});" for v in range(nv)))
    if mr * nv + nv + 1 <= 32:
        for i in range(mr):
            L.append(f"        {{ const __m512 t = _mm512_set1_ps(a[{i}]); "
                     + " ".join(f"{acc[i][v]} = _mm512_fmadd_ps(t, b{v}, {acc[i][v]});" for v in range(nv)) + " }")
    else:  # too few registers to keep a broadcast: broadcast inside each FMA ({1to16} memory operand;
        # gcc would merge plain _mm512_set1_ps broadcasts into registers and spill accumulators)
        for v in range(nv):
            L.append("        " + " ".join(f"PDC_FMA_BCAST({acc[i][v]}, a + {i}, b{v});" for i in range(mr)))
    L.append(f"        a += {mr};" + ("" if indirect else f" b += {nr};"))
    L.append("    }")
    L.append("    " + " ".join(f"const __mmask16 k{v} = (__mmask16)pdc_m16(nr - {16 * v});" for v in range(nv)))

    def rows(stmt_fn, guard=True):
        for i in range(mr):
            body = " ".join(stmt_fn(i, v) for v in range(nv))
            L.append(f"        if (mr > {i}) {{ {body} }}" if guard and i > 0 else f"        {{ {body} }}")

    L.append("    if (flags & PDC_ACC) {")
    rows(lambda i, v: f"{acc[i][v]} = _mm512_add_ps({acc[i][v]}, _mm512_maskz_loadu_ps(k{v}, c + {i} * ldc + {16 * v}));")
    L.append("    }")
    L.append("    if (flags & PDC_LAST) {")
    L.append("        if (e->bias_m) {")
    for i in range(mr):
        g = f"if (mr > {i}) " if i > 0 else ""
        L.append(f"            {g}{{ const __m512 t = _mm512_set1_ps(e->bias_m[{i}]); "
                 + " ".join(f"{acc[i][v]} = _mm512_add_ps({acc[i][v]}, t);" for v in range(nv)) + " }")
    L.append("        }")
    L.append("        if (e->bias_n) {")
    L.append("            " + " ".join(f"const __m512 t{v} = _mm512_maskz_loadu_ps(k{v}, e->bias_n + {16 * v});"
                                       for v in range(nv)))
    for i in range(mr):
        L.append("            " + " ".join(f"{acc[i][v]} = _mm512_add_ps({acc[i][v]}, t{v});" for v in range(nv)))
    L.append("        }")
    L.append("        if (e->res) {")
    L.append("            const float *r = e->res; const int64_t ld = e->ldr;")
    rows(lambda i, v: f"{acc[i][v]} = _mm512_add_ps({acc[i][v]}, _mm512_maskz_loadu_ps(k{v}, r + {i} * ld + {16 * v}));")
    L.append("        }")
    L.append("        if (flags & PDC_CLAMP) {")
    L.append("            const __m512 lo = _mm512_set1_ps(e->lo), hi = _mm512_set1_ps(e->hi);")
    for i in range(mr):  # max/min(bound, x) return x when x is NaN: NaN propagates like the reference
        L.append("            " + " ".join(f"{acc[i][v]} = _mm512_min_ps(hi, _mm512_max_ps(lo, {acc[i][v]}));"
                                           for v in range(nv)))
    L.append("        }")
    L.append("    }")
    rows(lambda i, v: f"_mm512_mask_storeu_ps(c + {i} * ldc + {16 * v}, k{v}, {acc[i][v]});")
    L.append("#else")
    if indirect:
        L.append(f"    pdc_sukr_scalar_i(kc, a, b, koff, c, ldc, mr, nr, flags, e, {mr}, {nr});")
    else:
        L.append(f"    pdc_sukr_scalar(kc, a, b, c, ldc, mr, nr, flags, e, {mr}, {nr});")
    L.append("#endif")
    L.append("}")
    return name, "\n".join(L) + "\n"


def _ukr_avx2(mr: int, nv: int) -> tuple[str, str]:
    name = f"pdc_sukr_y{mr}x{nv}"
    nr = 8 * nv
    acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]
    L = [f"static void {name}(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c, "
         f"int64_t ldc, int mr, int nr, int flags, const pdc_epi *e) {{",
         "    (void)mr;",
         "#if defined(__AVX2__) && defined(__FMA__)"]
    for i in range(mr):
        L.append("    __m256 " + ", ".join(f"{x} = _mm256_setzero_ps()" for x in acc[i]) + ";")
    L.append("    for (int64_t k = 0; k < kc; k++) {")
    L.append("        " + " ".join(f"const __m256 b{v} = _mm256_load_ps(b + {8 * v});" for v in range(nv)))
    for i in range(mr):
        L.append(f"        {{ const __m256 t = _mm256_broadcast_ss(a + {i}); "
                 + " ".join(f"{acc[i][v]} = _mm256_fmadd_ps(t, b{v}, {acc[i][v]});" for v in range(nv)) + " }")
    L.append(f"        a += {mr}; b += {nr};")
    L.append("    }")
    L.append("    " + " ".join(f"const __m256i k{v} = pdc_m8(nr - {8 * v});" for v in range(nv)))

    def rows(stmt_fn):
        for i in range(mr):
            body = " ".join(stmt_fn(i, v) for v in range(nv))
            L.append(f"        if (mr > {i}) {{ {body} }}" if i > 0 else f"        {{ {body} }}")

    L.append("    if (flags & PDC_ACC) {")
    rows(lambda i, v: f"{acc[i][v]} = _mm256_add_ps({acc[i][v]}, _mm256_maskload_ps(c + {i} * ldc + {8 * v}, k{v}));")
    L.append("    }")
    L.append("    if (flags & PDC_LAST) {")
    L.append("        if (e->bias_m) {")
    for i in range(mr):
        g = f"if (mr > {i}) " if i > 0 else ""
        L.append(f"            {g}{{ const __m256 t = _mm256_set1_ps(e->bias_m[{i}]); "
                 + " ".join(f"{acc[i][v]} = _mm256_add_ps({acc[i][v]}, t);" for v in range(nv)) + " }")
    L.append("        }")
    L.append("        if (e->bias_n) {")
    L.append("            " + " ".join(f"const __m256 t{v} = _mm256_maskload_ps(e->bias_n + {8 * v}, k{v});"
                                       for v in range(nv)))
    for i in range(mr):
        L.append("            " + " ".join(f"{acc[i][v]} = _mm256_add_ps({acc[i][v]}, t{v});" for v in range(nv)))
    L.append("        }")
    L.append("        if (e->res) {")
    L.append("            const float *r = e->res; const int64_t ld = e->ldr;")
    rows(lambda i, v: f"{acc[i][v]} = _mm256_add_ps({acc[i][v]}, _mm256_maskload_ps(r + {i} * ld + {8 * v}, k{v}));")
    L.append("        }")
    L.append("        if (flags & PDC_CLAMP) {")
    L.append("            const __m256 lo = _mm256_set1_ps(e->lo), hi = _mm256_set1_ps(e->hi);")
    for i in range(mr):
        L.append("            " + " ".join(f"{acc[i][v]} = _mm256_min_ps(hi, _mm256_max_ps(lo, {acc[i][v]}));"
                                           for v in range(nv)))
    L.append("        }")
    L.append("    }")
    rows(lambda i, v: f"_mm256_maskstore_ps(c + {i} * ldc + {8 * v}, k{v}, {acc[i][v]});")
    L.append("#else")
    L.append(f"    pdc_sukr_scalar(kc, a, b, c, ldc, mr, nr, flags, e, {mr}, {nr});")
    L.append("#endif")
    L.append("}")
    return name, "\n".join(L) + "\n"


def core(ctx: KernelContext) -> None:
    """Registers the shared types, post-pass and driver (once per kernel file)."""
    ctx.helper("pdc_dense_types", TYPES_C)
    ctx.helper("pdc_dense_post", POST_C)
    ctx.helper("pdc_dense_driver", DRIVER_C.replace("@BBUF@", str(BBUF_FLOATS)).replace("@ABUF@", str(ABUF_FLOATS)))


def ukernel(ctx: KernelContext, mr: int, nv: int, indirect: bool = False) -> str:
    """The name of the (MR x NV vectors) microkernel for the target, registering it once.
    Indirect microkernels (B rows at b + koff[k]) exist for AVX-512 only."""
    core(ctx)
    isa = isa_of(ctx)
    if indirect:
        assert isa == "avx512"
        name, code = _ukr_avx512(mr, nv, True)
    else:
        name, code = (_ukr_avx512 if isa == "avx512" else _ukr_avx2)(mr, nv)
    return ctx.helper(name, code)


def add_weight(ctx: KernelContext, array: np.ndarray, c_type: str = "float") -> str:
    """ctx.add_weight for a temporary array. The weight blob dedups by id(array), so a freed
    temporary's id could be reused by a later one; pinning the array on the blob prevents that."""
    array = np.ascontiguousarray(array)
    blob = ctx._weights
    pins = getattr(blob, "_pdc_dense_pins", None)
    if pins is None:
        pins = []
        setattr(blob, "_pdc_dense_pins", pins)
    pins.append(array)
    return ctx.add_weight(array, c_type)


# ---- job rendering -----------------------------------------------------------------------------------
def c_float(x: float) -> str:
    return float_literal(x, "float")


def render_job(fields: dict, var: str = "job") -> list[str]:
    """`pdc_sgemm_job var = {.field = value, ...};` as lines (unset fields are zero)."""
    if fields.get("packa") is not None:  # the per-thread A buffer holds one KC x MR panel (a_all: all)
        rows = -(-int(fields["M"]) // int(fields["MR"])) * int(fields["MR"]) if fields.get("a_all") else int(fields["MR"])
        assert int(fields["KC"]) * rows <= ABUF_FLOATS, (fields["KC"], rows)
    if fields.get("packb") is not None:  # and the B buffer one KC x NC block
        assert int(fields["KC"]) * int(fields["NC"]) <= BBUF_FLOATS, (fields["KC"], fields["NC"])
    lines = [f"    pdc_sgemm_job {var};", f"    memset(&{var}, 0, sizeof {var});"]
    for k, v in fields.items():
        if v is None:
            continue
        lines.append(f"    {var}.{k} = {v};")
    return lines


def clamp_for(activation: str, alpha, beta) -> tuple[bool, float, float] | None:
    """(clamp, lo, hi) when the activation is a clamp the register epilogue can do, else None."""
    if activation == "none":
        return False, -math.inf, math.inf
    if activation == "relu":
        return True, 0.0, math.inf
    if activation == "clip":
        return True, float(alpha), float(beta)
    return None


# ---- the fused epilogue of a node -------------------------------------------------------------------
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
def bias_ptr(ctx: KernelContext, i: int, n: int) -> str:
    if not ctx.has_input(i):
        return "0"
    b = ctx.const(i)
    if b is not None:
        return add_weight(ctx, np.asarray(b, np.float32).reshape(n))
    return f"in{i}"


ACT_DOUBLE_C = r"""
static double pdc_act_f64(int act, double a, double alpha, double beta) {
    switch (act) {
    case 1: return a > 0 ? a : (a != a ? a : 0);
    case 2: return a >= 0 ? a : a * alpha;
    case 3: { double t = a < alpha ? alpha : a; return t > beta ? beta : t; }
    case 4: return a >= 0 ? 1 / (1 + exp(-a)) : exp(a) / (1 + exp(a));
    case 5: { double t = alpha * a + beta; return t < 0 ? 0 : (t > 1 ? 1 : t); }
    case 6: { double t = a * 0.1666666716337204 + 0.5; return a * (t < 0 ? 0 : (t > 1 ? 1 : t)); } /* float32(1/6) */
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


def uses_all(ctx: KernelContext, body: str) -> str:
    """Marks every parameter used (weights packed at compile time leave their pointer unread)."""
    n_in = len(ctx.inputs)
    names = [f"in{i}" for i in range(n_in)] + [f"out{i}" for i in range(len(ctx.outputs))]
    return "    " + " ".join(f"(void){n};" for n in names) + "\n" + body
