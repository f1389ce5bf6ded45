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
- Microkernels exist per (MR, NV) shape; only the shapes a model uses are emitted. They are
  native pieces (native.py): the target family's (x86/gemm.py: AVX-512 or AVX2) where it has
  them, else the plain C one below. "Indirect" variants read B row k at b + koff[k] (unaligned,
  unpacked): x86's AVX-512 convolution paths (x86/conv.py) use them to read padded input bands
  or the input itself instead of im2col copies.
- Scratch memory is the arena's (ctx.thread_scratch): each thread slot has its packed-B and
  packed-A buffers (sized per job, bounded by the target's KernelConfig: scratch_floats,
  a_scratch_floats), planned like a tensor that lives while the node runs; the stack holds no
  buffers (microcontrollers have little), and nothing is allocated at run time.

For NCHW convolutions M = output channels (weights broadcast), N = output pixels (vectors of
pixels), K = C/group * kernel taps, one problem per (image, group).

The microkernel ABI (pdc_ukr_fn; every implementation keeps it):

    void ukr(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
             int flags, const pdc_epi *e)

computes the MR x NR tile c[i * ldc + j] (i < mr <= MR, j < nr <= NR; nothing outside is read or
written) as the sum over k < kc of a[k * MR + i] * b[k * NR + j] (A and B panels packed and
zero-padded to MR / NR, 64-byte aligned), plus the tile already in c with PDC_ACC (a later K block).
With PDC_LAST it then adds e->bias_m[i], e->bias_n[j] and e->res[i * e->ldr + j] (each where not
NULL) and, with PDC_CLAMP, clamps to [e->lo, e->hi], NaN passing through. The indirect ABI
(pdc_ukri_fn) takes `const int32_t *koff` after b and reads B row k at b + koff[k] instead, with
no alignment. Implementations: pdc_sukr_c<MR>x<NR> here (plain C, any target), x86/gemm.py
(pdc_sukr_z<MR>x<NV>[i]: AVX-512, pdc_sukr_y<MR>x<NV>: AVX2). The ARM GEMM (arm/gemm.py) is a
driver of its own, whose pdc_aukr_fn adds strides that read constant operands in place.
"""
from __future__ import annotations

import numpy as np

from ...ir.symbolic import upper
from ..context import KernelContext
from ..ctypes_c import float_literal
from . import native
from .activations import act_switch

# ---- blocking parameters ------------------------------------------------------------------------
# K blocks and the packing buffers' sizes are the target's (ctx.config: gemm_kc, scratch_floats,
# a_scratch_floats)
PARALLEL_MIN_MACS = 400_000  # smaller problems run on the calling thread (dispatch ~ a few µs)



def isa_of(ctx: KernelContext) -> str:
    """The vector ISA the tiles are chosen for (ctx.config.simd). Anything but avx512 takes the
    AVX2 tiles: 8 columns a vector, which the plain C microkernel keeps as its blocking."""
    return ctx.config.simd


def lanes(isa: str) -> int:
    return 16 if isa == "avx512" else 8


def default_tile(isa: str) -> tuple[int, int]:
    """(MR, NV) of the main microkernel: 12 x 32 (24 zmm accumulators) or 6 x 16 (12 ymm)."""
    return (12, 2) if isa == "avx512" else (6, 2)


def tile_options(isa: str, m: int, n: int) -> list[tuple[int, int]]:
    """The (MR, NV) register tiles worth trying for an M x N problem: on AVX-512 those that keep 24
    accumulators (KERNELS.md §1: 12x32, 8x48, 6x64 all run at ~98 % of peak), else one."""
    if isa != "avx512":
        return [(pick_mr(isa, m), 2)]
    if m < 6:
        return [(pick_mr(isa, m), 2 if n > 16 else 1)]
    return [(8, 3), (12, 2), (6, 4)]


def padded_work(m: int, n: int, mr: int, nr: int) -> int:
    return -(-m // mr) * mr * -(-n // nr) * nr


def choose_tile(isa: str, m: int, n: int) -> tuple[int, int]:
    """(MR, NV) minimizing the padded work ceil(M/MR)*MR x ceil(N/NR)*NR among tile_options."""
    return min(tile_options(isa, m, n), key=lambda t: padded_work(m, n, t[0], lanes(isa) * t[1]))


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


PAD_SHARE = 8  # packed B panels may pad a matrix by up to 1/PAD_SHARE of its columns


def panel_vectors(n: int, nv: int, lanes: int) -> int:
    """Vectors per packed B panel for a constant of n columns: nv unless padding n to a multiple of
    nv * lanes adds more than n / PAD_SHARE columns (a small N in a wide panel: 10 columns in 64);
    then the width with the least padding (the widest among equals), under one vector of it.
    So a packed copy outgrows its matrix by at most max(n / 8, lanes - 1) columns."""
    def pad(v: int) -> int:
        return -(-n // (v * lanes)) * v * lanes - n
    if pad(nv) * PAD_SHARE <= n:
        return nv
    return min(range(nv, 0, -1), key=pad)


def n_chunk(ctx: KernelContext, kc: int, nr: int, n: int) -> int:
    """Columns per packed-B chunk: as many NR panels as fit the target's packed-B buffer."""
    panels = max(1, ctx.config.scratch_floats // (kc * nr))
    return min(panels, -(-n // nr)) * nr


def choose_split(batch: int, m: int, n: int, k: int, mr: int, nr: int, threads: int, a_bytes: int,
                 b_runtime: bool = False) -> tuple[int, int]:
    """(parallel, split_m): whether to use the thread pool and along which dimension. Splitting M
    makes every thread read all of B, splitting N all of A: the busiest thread's time counts its
    tiles' multiply-adds (32 a cycle: two AVX-512 FMAs) and the operand it reads whole, mostly from
    another core's cache or from memory (about 8 bytes a cycle). mobilenet_v2's 192 -> 32 at 28x28
    split M for 6% fewer tiles and every thread read the whole 600 KB input: 96 us on 2 threads, 70
    on one; squeezenet1_1's 512 -> 1000 at 13x13 splits M for its 2 MB of weights. With B packed at
    run time splitting M needs a reason (too few N panels to share). Sizes known only at run time
    count at their upper bounds."""
    batch, m, n, k = (upper(d) for d in (batch, m, n, k))
    if threads <= 1 or batch * m * n * k < PARALLEL_MIN_MACS:
        return 0, 0
    mb, nb = -(-m // mr), -(-n // nr)
    per_n = -(-batch * nb // threads) * mb  # tiles of the busiest thread
    per_m = -(-batch * mb // threads) * nb
    if b_runtime and batch * nb >= 2 * threads:
        return 1, 0
    tile = mr * nr * k / 32
    cost_n = per_n * tile + a_bytes / 8
    cost_m = per_m * tile + batch * k * n * 4 / 8
    return (1, 1) if cost_m < cost_n else (1, 0)


# ---- C: types, epilogue, driver -----------------------------------------------------------------
TYPES_C = r"""
/* ---- pdc dense kernels: shared types ---- */
@native dense_include @end
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
    float *scratch; int64_t slot_floats, abuf_off; int slots; /* thread slot s: B buffer at
                  scratch + s * slot_floats, A buffer abuf_off floats after it */
} pdc_sgemm_job;
static inline int64_t pdc_boff(const int64_t *tab, int64_t mod, int64_t stride, int64_t b) {
    return tab ? tab[b] : (mod > 0 ? b % mod : b) * stride;
}
@native dense_types @end
"""

POST_C = r"""
/* ---- pdc dense kernels: the tile post-pass ---- */
/* act over a tile of mr rows of nr floats, ldc apart, in place (the native piece: vector forms) */
static void pdc_act_rows(int act, float alpha, float beta, float *c, int64_t ldc, int mr, int64_t nr) {
@native dense_act_rows @end
    for (int i = 0; i < mr; i++) {
        float *row = c + i * ldc;
        for (int64_t j = 0; j < nr; j++) row[j] = pdc_act_f32(act, row[j], alpha, beta);
    }
}
/* The transposed store of pdc_post (see there): tile (pixels x channels) -> out[channel][pixel]. */
static void pdc_post_trans(const pdc_post *p, int64_t b, int64_t m0, int64_t n0, int mr, int nr, const float *c,
                           int64_t ldc) {
    const float *bias = p->tbias ? p->tbias + (b % p->tb_mod) * p->tb_bs + n0 : 0;
    const int64_t o0 = b * p->t_bs + n0 * p->tld + m0;
@native dense_post_trans @end
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
    if (!p->add && !p->res_after) {
        pdc_act_rows(p->act, p->alpha, p->beta, c, ldc, mr, nr);
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
/* How many panels of nr columns the post-pass of `rows` rows takes at once: 128 KiB of tiles, which the
   GEMM has just written and a core's L2 still holds */
static inline int64_t pdc_post_panels(int64_t rows, int64_t nr) {
    const int64_t q = 32768 / (rows * nr);
    return q > 0 ? q : 1;
}
/* The post-pass over the row blocks [mb0, mb1) of MR rows (of M) and columns [n0, n0 + nc) of c: once per
   block of columns rather than per register tile, so its per-call cost is not paid per tile */
static void pdc_post_rows(const pdc_post *p, int64_t b, int64_t M, int64_t MR, int64_t mb0, int64_t mb1, int64_t n0,
                          int64_t nc, float *c, int64_t ldc) {
    if (!p) return;
    for (int64_t mb = mb0; mb < mb1; mb++) {
        const int64_t m0 = mb * MR;
        pdc_post_tile(p, b, m0, n0, (int)(M - m0 < MR ? M - m0 : MR), (int)nc, c + m0 * ldc + n0, ldc);
    }
}
/* The register epilogue of element (i, j) of a tile whose sum is s, in scalar C (see the ABI). */
static inline float pdc_epi_elem(float s, const float *c, int64_t ldc, int i, int j, int flags, const pdc_epi *e) {
    if (flags & PDC_ACC) s += c[i * ldc + j];
    if (flags & PDC_LAST) {
        if (e->bias_m) s += e->bias_m[i];
        if (e->bias_n) s += e->bias_n[j];
        if (e->res) s += e->res[i * e->ldr + j];
        if (flags & PDC_CLAMP) { s = s < e->lo ? e->lo : s; s = s > e->hi ? e->hi : s; }
    }
    return s;
}
/* The microkernels in scalar C (the fallback without vector ISA). */
static void pdc_sukr_scalar(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                            int flags, const pdc_epi *e, int MR, int NR) {
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            float s = 0;
            for (int64_t k = 0; k < kc; k++) s += a[k * MR + i] * b[k * NR + j];
            c[i * ldc + j] = pdc_epi_elem(s, c, ldc, i, j, flags, e);
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
            c[i * ldc + j] = pdc_epi_elem(s, c, ldc, i, j, flags, e);
        }
    }
}
"""

DRIVER_C = r"""
/* ---- pdc dense kernels: the blocked GEMM driver ---- */
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
                    }
                }
                if (last) pdc_post_rows(j->post, b, M, MR, mb0, mb1, n0, nc, c, j->ldc);
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
                }
                if (last) pdc_post_rows(j->post, b, M, MR, mb, mb + 1, n0, nc, c, j->ldc);
            }
        }
    }
}
/* Each thread first runs the chunks of its own share of the job (thread t the t-th of `threads`
   contiguous shares: the same data on the same core from run to run and, where two kernels split
   alike, from kernel to kernel, so it stays in that core's cache), then takes what is left of the
   others' shares, so a thread that starts late (or is preempted) leaves its share to the others
   instead of stalling the kernel. A chunk runs part(job, chunk, chunks, its thread's slot of the
   kernel's scratch). */
typedef void (*pdc_part_fn)(const void *job, int64_t part, int64_t parts, float *scratch);
#define PDC_CHUNK_SHARES 64
typedef struct { atomic_long next; char pad[64 - sizeof(atomic_long)]; } pdc_chunk_share; /* a line each */
typedef struct {
    const void *job; pdc_part_fn part; float *scratch; int64_t slot_floats, chunks, shares;
    pdc_chunk_share share[PDC_CHUNK_SHARES]; /* long: 32-bit ARM has no 64-bit atomics */
} pdc_chunks;
static int64_t pdc_chunk_count(int64_t units, int64_t threads) {
    const int64_t c = 4 * threads;
    return units < c ? units : c;
}
static void pdc_chunks_task(void *p, int64_t t0, int64_t t1, int slot) {
    pdc_chunks *c = (pdc_chunks *)p;
    (void)t0; (void)t1;
    for (int64_t k = 0; k < c->shares; k++) {
        const int64_t s = (slot + k) % c->shares, end = c->chunks * (s + 1) / c->shares;
        int64_t i;
        while ((i = atomic_fetch_add_explicit(&c->share[s].next, 1, memory_order_relaxed)) < end)
            c->part(c->job, i, c->chunks, c->scratch + slot * c->slot_floats);
    }
}
/* `chunks` parts of a job on `threads` threads (at most `slots`: the scratch's thread slots) */
static void pdc_run_chunks(const void *job, pdc_part_fn part, int64_t chunks, int64_t threads, int slots,
                           float *scratch, int64_t slot_floats) {
    if (threads <= 1) {
        part(job, 0, 1, scratch);
        return;
    }
    pdc_chunks c;
    c.job = job;
    c.part = part;
    c.scratch = scratch;
    c.slot_floats = slot_floats;
    c.chunks = chunks;
    c.shares = threads < PDC_CHUNK_SHARES ? threads : PDC_CHUNK_SHARES;
    for (int64_t s = 0; s < c.shares; s++) atomic_init(&c.share[s].next, (long)(chunks * s / c.shares));
    pdc_parallel_slots(threads, slots, pdc_chunks_task, &c);
}
static void pdc_sgemm_part(const void *vj, int64_t part, int64_t parts, float *bbuf) {
    const pdc_sgemm_job *j = (const pdc_sgemm_job *)vj;
    float *abuf = bbuf + j->abuf_off;
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
static void pdc_sgemm_run(const pdc_sgemm_job *j) {
    const int64_t threads = j->parallel ? pdc_slot_threads(j->slots) : 1;
    const int64_t per = j->split_m ? (j->M + j->MR - 1) / j->MR : (j->N + j->NR - 1) / j->NR;
    /* split M with B packed at run time: every chunk packs all of B, so one chunk per thread */
    const int cpt = j->chunks_per_thread ? j->chunks_per_thread : (j->split_m && j->packb ? 1 : 4);
    const int64_t units = j->batch * per, most = cpt * threads;
    pdc_run_chunks(j, pdc_sgemm_part, units < most ? units : most, threads, j->slots, j->scratch, j->slot_floats);
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
@native dense_packa_rows @end
        for (int64_t k = 0; k < kc; k++) {
            const float *r = src + m0 + (k0 + k) * s->cs;
            float *d = dst + k * MR;
            for (int64_t i = 0; i < mr; i++) d[i] = r[i];
            for (int64_t i = mr; i < MR; i++) d[i] = 0;
        }
        return;
    }
    if (s->cs == 1 && s->scale == 1.0f) { /* the row-major A of a matmul: transposed in blocks */
@native dense_packa_cols @end
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


def core(ctx: KernelContext) -> None:
    """Registers the shared types, post-pass and driver (once per kernel file)."""
    ctx.helper("pdc_dense_types", native.fill(ctx, TYPES_C))
    act_switch(ctx)  # pdc_act_f32, which the post-pass applies
    ctx.helper("pdc_dense_post", native.fill(ctx, POST_C))
    ctx.helper("pdc_dense_driver", native.fill(ctx, DRIVER_C))


def ukernel(ctx: KernelContext, mr: int, nv: int, indirect: bool = False) -> str:
    """The name of the (MR x NV vectors) microkernel for the target, registering it once: the
    target family's native one (x86: AVX-512 or AVX2), else the plain C one."""
    core(ctx)
    emit = native.emitter(ctx, "dense_ukr")
    name, code = emit(ctx, mr, nv, indirect) if emit else _plain_ukr(mr, nv * lanes(isa_of(ctx)), indirect)
    return ctx.helper(name, code)


def ukr_head(name: str, indirect: bool) -> str:
    """The first line of a microkernel of the ABI (the indirect one takes koff)."""
    koff = "const int32_t *restrict koff, " if indirect else ""
    return (f"static void {name}(int64_t kc, const float *restrict a, const float *restrict b, {koff}float *restrict c, "
            f"int64_t ldc, int mr, int nr, int flags, const pdc_epi *e) {{")


def plain_ukr_body(mr: int, nr: int, indirect: bool) -> str:
    """The plain C microkernel's body: the tile in scalar C (every native microkernel's fallback)."""
    if indirect:
        return f"    pdc_sukr_scalar_i(kc, a, b, koff, c, ldc, mr, nr, flags, e, {mr}, {nr});"
    return f"    pdc_sukr_scalar(kc, a, b, c, ldc, mr, nr, flags, e, {mr}, {nr});"


def _plain_ukr(mr: int, nr: int, indirect: bool) -> tuple[str, str]:
    name = f"pdc_sukr_c{mr}x{nr}" + ("i" if indirect else "")
    return name, f"{ukr_head(name, indirect)}\n{plain_ukr_body(mr, nr, indirect)}\n}}\n"


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


def render_job(ctx: KernelContext, fields: dict, var: str = "job") -> list[str]:
    """`pdc_sgemm_job var = {.field = value, ...};` as lines (unset fields are zero), with the
    job's per-thread scratch."""
    kc, nr = int(fields["KC"]), int(fields["NR"])
    afloats = bfloats = 0
    if fields.get("packa") is not None:  # the per-thread A buffer holds one KC x MR panel (a_all: all)
        rows = -(-int(fields["M"]) // int(fields["MR"])) * int(fields["MR"]) if fields.get("a_all") else int(fields["MR"])
        afloats = kc * rows
    if fields.get("prep") is not None:  # the prep hook's data (a conv path's band) fills the B buffer
        bfloats = ctx.config.scratch_floats
    elif fields.get("packb") is not None:  # and the B buffer one KC x NC block
        bfloats = kc * -(-int(fields["NC"]) // nr) * nr
    if afloats or bfloats:
        par = fields.get("parallel")  # 0, 1, or a C condition decided at run time
        slots = ctx.slots(1 if isinstance(par, str) else int(par or 0))
        abuf_off = -(-bfloats // 16) * 16
        base, stride = ctx.thread_scratch(abuf_off + afloats, slots)
        fields = dict(fields, scratch=base, slot_floats=stride, abuf_off=abuf_off, slots=slots)
    lines = [f"    pdc_sgemm_job {var};", f"    memset(&{var}, 0, sizeof {var});"]
    for k, v in fields.items():
        if v is None:
            continue
        lines.append(f"    {var}.{k} = {v};")
    return lines


# ---- fp32 conv -------------------------------------------------------------------------------------------
def bias_ptr(ctx: KernelContext, i: int, n: int) -> str:
    if not ctx.has_input(i):
        return "0"
    b = ctx.const(i)
    if b is not None:
        return add_weight(ctx, np.asarray(b, np.float32).reshape(n))
    return f"in{i}"


def uses_all(ctx: KernelContext, body: str) -> str:
    """Marks every parameter used (weights packed at compile time leave their pointer unread)."""
    n_in = len(ctx.inputs)
    names = [f"in{i}" for i in range(n_in)] + [f"out{i}" for i in range(len(ctx.outputs))]
    return "    " + " ".join(f"(void){n};" for n in names) + "\n" + body
