"""ARM GEMM: register-tiled microkernels (NEON / MVE / plain C), the blocked driver, and the
gemm / matmul generators for ARM targets; also the NEON form of the portable dense GEMM's
microkernel (dense_core.py's ABI, for the products whose operands both come at run time).

C[M x N] = A[M x K] * B[K x N] for `problems` independent problems. The microkernel keeps an
MR x NR tile of C in vector registers (NR = 4 * NV): per k it loads NV vectors of B (on AArch64
one post-indexed ld1 of NV registers) and multiplies them by MR values of a packed A panel
([K][MR]) — on AArch64 with `fmla v.4s, v.4s, v.s[lane]` from A loaded as vectors, on ARMv7 with
`vmla.f32 q, q, d[lane]`, on Helium with `vfma.f32 q, q, r` (the scalar comes from a core
register). One call computes the tiles of several whole panels side by side. Accumulators start
from the bias per row; the rest of the epilogue (+ bias per column, + residual, clamp) runs on the
registers of the first mr rows when the tile has whole columns, else in scalar C on a copy; other
activations go through a pass on the finished tile (activations.py: AArch64 vector forms where
they have one).

On Cortex-A the weights are packed at compile time into the panel order of their side (conv
weights are "A", a matmul's constant B is "B"); the blob then holds the packed copy only. On
Cortex-M, where flash is scarce, they are read in place, which saves the panel padding: the
microkernel also takes A row-major (one scalar per row and k). B is read row-major (row stride
ldb) wherever it lies so: a runtime matmul operand, a 1x1 conv's input (the columns past the last
whole panel copied into one zero-padded panel). Other runtime operands are packed per K block by
a callback (im2col rows for convolutions: conv.py, a strided copy for a matmul's A) into buffers
in the kernel's scratch (the memory plan's, not the stack), sized for the job; a job split over
threads gives each thread its own slot. The register tile, K block and buffer sizes are chosen
per target (Cortex-M: about 1 KiB of packed B).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ....ir.ops.common import broadcast_shapes
from ...context import KernelContext
from ..dense_core import plain_ukr_body, ukr_head
from ..epilogue import Epilogue
from ..native import implements
from ..paths import declare, mark, take
from .activations import act_row
from .vector import arm_kernel, base, is_f32, simd_of

# the kernels below take B constant ("neon"); the portable generators (dense_gemm.py: "runtime",
# the general path, named first whichever module declares first; "packed-b", "packed-a", "loops")
# compute the rest
declare("gemm", "runtime", "neon")

# register tiles (MR, NV) per ISA, NR = 4 * NV; the accumulators must fit the register file:
# A64 has 32 vector registers, A32 NEON 16, Helium 8; plain C (Cortex-M FPU: 32 s-registers) 16 floats
TILES = {
    "neon64": [(8, 3), (8, 2), (4, 4), (4, 3), (4, 2), (2, 4), (1, 4), (1, 2)],
    "neon32": [(4, 3), (4, 2), (2, 3), (2, 2), (1, 3), (1, 2)],
    "mve": [(4, 1), (2, 2), (1, 2), (2, 1), (1, 1)],
    "none": [(4, 1), (2, 1), (1, 1)],
}
# the K block (ctx.config.gemm_kc) and the packed-B buffer (ctx.config.scratch_floats) are the
# target's: pdc/targets/arm.py, cortex_m.py
PARALLEL_MIN_MACS = 400_000


def tile_cost(mr: int, nv: int, m: int, n: int) -> float:
    """Padded work divided by the tile's arithmetic density (FMAs per load)."""
    nr = 4 * nv
    work = -(-m // mr) * mr * -(-n // nr) * nr
    density = (mr * nv) / (mr * nv + nv + mr / 4)
    return work / density


def choose_tile(simd: str, m: int, n: int) -> tuple[int, int]:
    return min(TILES[simd], key=lambda t: (tile_cost(t[0], t[1], m, n), -t[0] * t[1]))


def scratch_floats(ctx: KernelContext) -> int:
    return ctx.config.scratch_floats


def pack_weights(ctx: KernelContext) -> bool:
    """Whether weights are repacked into panel order (the blob holds the copy instead of the
    constant, plus its padding) or read in place (flash-bound targets)."""
    return ctx.config.pack_weights


# ---- compile-time packing -------------------------------------------------------------------------
def pack_a(a: np.ndarray, mr: int) -> np.ndarray:
    """(..., M, K) -> (..., ceil(M/MR), K, MR), rows zero-padded."""
    *lead, m, k = a.shape
    mb = -(-m // mr)
    out = np.zeros((*lead, mb * mr, k), np.float32)
    out[..., :m, :] = a
    return np.ascontiguousarray(np.swapaxes(out.reshape(*lead, mb, mr, k), -1, -2))


def pack_b(b: np.ndarray, nr: int) -> np.ndarray:
    """(..., K, N) -> (..., ceil(N/NR), K, NR), columns zero-padded."""
    *lead, k, n = b.shape
    nb = -(-n // nr)
    out = np.zeros((*lead, k, nb * nr), np.float32)
    out[..., :n] = b
    return np.ascontiguousarray(np.swapaxes(out.reshape(*lead, k, nb, nr), -2, -3))


def add_weight(ctx: KernelContext, array: np.ndarray) -> str:
    return ctx.add_weight(np.ascontiguousarray(array, np.float32))


# ---- C: the driver ---------------------------------------------------------------------------------
DRIVER_C = r"""
/* ---- pdc ARM kernels: the blocked GEMM driver ---- */
#define PDC_AACC 1   /* add the tile already in C (a later K block) */
#define PDC_ALAST 2  /* the last K block: apply the epilogue */
#define PDC_ACLAMP 4 /* clamp to [lo, hi] after the epilogue adds */
#define PDC_AWHOLE 8 /* B's rows are readable in whole vectors past nr (zero padding) */
typedef struct { const float *bias_m, *bias_n, *res; int64_t ldr; float lo, hi; } pdc_aepi;
/* A element (i, k) at a[i * ars + k * acs], B element (k, j) at b[k * bks + j] */
/* np tiles side by side: tile q reads B at b + q * bps and writes C (and the epilogue's columns) q * NR on */
typedef void (*pdc_aukr_fn)(int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b, int64_t bks,
                            float *c, int64_t ldc, int mr, int nr, int64_t np, int64_t bps, int flags,
                            const pdc_aepi *e);
typedef struct pdc_agemm pdc_agemm;
/* packs rows [r0, r0+rn) x K block [k0, k0+kc) of problem p's A into [kc][R] (R = MR), or
   columns [r0, r0+rn) of its B into kc rows of R floats (R: rn rounded up to NR), zero-padded */
typedef void (*pdc_apack_fn)(const pdc_agemm *g, int64_t p, float *dst, int64_t r0, int64_t rn, int64_t k0,
                             int64_t kc, int64_t R);
struct pdc_agemm {
    int64_t problems, M, N, K, MR, NR, KC, NC;
    pdc_aukr_fn ukr;
    const float *a; int64_t a_mod, a_bs, lda; /* A of problem p: a + (p % a_mod) * a_bs, packed, or
                                                 row-major with row stride lda when lda > 0 */
    const float *b; int64_t b_mod, b_bs, ldb; /* B likewise (row stride ldb when ldb > 0) */
    pdc_apack_fn pack_a, pack_b;           /* or packed at run time */
    const float *src; int64_t src_bs, rs, cs; const void *geom; /* what the packers read */
    float *c; int64_t ldc, c_bs;
    const float *bias_m; int64_t bm_mod, bm_bs;
    const float *bias_n;
    const float *res;                      /* added before the activation, laid out like C */
    float lo, hi; int clamp;
    float (*act)(float, float, float); float alpha, beta; /* other activations: a pass on tiles, */
    int act_code;                          /* in vectors where pdc_aact_row has the form */
    const float *res_after;                /* added after the activation, laid out like C */
    int parallel;
    float *scratch; int64_t slot_floats, abuf_off; int slots; /* thread slot s: B buffer at
                                              scratch + s * slot_floats, A buffer abuf_off floats on */
};
/* the epilogue in scalar C, from a tile t of the accumulators (row stride ldt) into c */
static void pdc_aepi_tile(const float *t, int ldt, float *c, int64_t ldc, int mr, int nr, int flags,
                          const pdc_aepi *e) {
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            float s = t[i * ldt + j];
            if (flags & PDC_AACC) s += c[i * ldc + j];
            if (flags & PDC_ALAST) {
                if (e->bias_m) s += e->bias_m[i];
                if (e->bias_n) s += e->bias_n[j];
                if (e->res) s += e->res[i * e->ldr + j];
                if (flags & PDC_ACLAMP) s = pdc_fclamp(s, e->lo, e->hi);
            }
            c[i * ldc + j] = s;
        }
    }
}
static void pdc_apost(const pdc_agemm *g, float *c, int64_t off, int mr, int nr) {
    for (int i = 0; i < mr; i++)
        pdc_aact_row(g->act_code, g->act, c + i * g->ldc, g->res_after ? g->res_after + off + i * g->ldc : 0, nr,
                     g->alpha, g->beta);
}
static void pdc_agemm_unit(const pdc_agemm *g, int64_t p, int64_t n0, int64_t nc, float *bbuf, float *abuf) {
    const int64_t MR = g->MR, NR = g->NR, M = g->M, K = g->K;
    const int64_t coff = p * g->c_bs;
    float *c = g->c + coff;
    const float *res = g->res ? g->res + coff : 0;
    const float *bias_m = g->bias_m ? g->bias_m + (p % g->bm_mod) * g->bm_bs : 0;
    const float *a0 = g->pack_a ? 0 : g->a + (p % g->a_mod) * g->a_bs;
    const float *b0 = g->pack_b ? 0 : g->b + (p % g->b_mod) * g->b_bs;
    for (int64_t k0 = 0; k0 < K; k0 += g->KC) {
        const int64_t kc = g->KC < K - k0 ? g->KC : K - k0;
        const int last = k0 + kc >= K;
        const int flags = (k0 > 0 ? PDC_AACC : 0) | (last ? PDC_ALAST : 0) | (g->clamp ? PDC_ACLAMP : 0);
        /* this K block's B: panel q at bk + q * bps, its rows bks apart */
        const float *bk;
        int64_t bks = NR, bps = NR, tail = 0;
        int whole = PDC_AWHOLE;
        if (g->pack_b) {
            bks = (nc + NR - 1) / NR * NR;
            g->pack_b(g, p, bbuf, n0, nc, k0, kc, bks);
            bk = bbuf;
        } else if (g->ldb) { /* in place */
            bk = b0 + k0 * g->ldb + n0;
            bks = g->ldb;
            whole = 0;
            tail = bbuf ? nc % NR : 0;
            if (tail) { /* the last panel's columns, copied into a zero-padded panel */
                const float *s = bk + nc - tail;
                for (int64_t kk = 0; kk < kc; kk++)
                    for (int64_t t = 0; t < NR; t++) bbuf[kk * NR + t] = t < tail ? s[kk * g->ldb + t] : 0.0f;
            }
        } else { /* packed at compile time: panels of [K][NR] */
            bk = b0 + (n0 / NR) * K * NR + k0 * NR;
            bps = K * NR;
        }
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            const int mr = (int)(M - m0 < MR ? M - m0 : MR);
            const float *ap;
            int64_t ars = 1, acs = MR;
            if (g->pack_a) {
                g->pack_a(g, p, abuf, m0, mr, k0, kc, MR);
                ap = abuf;
            } else if (g->lda) {
                ap = a0 + m0 * g->lda + k0;
                ars = g->lda;
                acs = 1;
            } else {
                ap = a0 + (m0 / MR) * K * MR + k0 * MR;
            }
            pdc_aepi e = {bias_m ? bias_m + m0 : 0, 0, 0, g->ldc, g->lo, g->hi};
            /* the whole panels in one call, then the partial one */
            for (int64_t q = 0; q * NR < nc;) {
                const int64_t j0 = n0 + q * NR;
                const int nr = (int)(nc - q * NR < NR ? nc - q * NR : NR);
                const int64_t np = nr < NR ? 1 : (nc - q * NR) / NR;
                const int tail_panel = tail && nr < NR;
                float *cp = c + m0 * g->ldc + j0;
                e.bias_n = g->bias_n ? g->bias_n + j0 : 0;
                e.res = res ? res + m0 * g->ldc + j0 : 0;
                g->ukr(kc, ap, ars, acs, tail_panel ? bbuf : bk + q * bps, tail_panel ? NR : bks, cp, g->ldc, mr, nr,
                       np, bps, flags | (tail_panel ? PDC_AWHOLE : whole), &e);
                if (last && (g->act || g->res_after)) pdc_apost(g, cp, coff + m0 * g->ldc + j0, mr, (int)(np * nr));
                q += np;
            }
        }
    }
}
/* units = problems x column chunks */
static void pdc_agemm_units(const pdc_agemm *g, int64_t u0, int64_t u1, float *bbuf, float *abuf) {
    const int64_t chunks = (g->N + g->NC - 1) / g->NC;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t p = u / chunks, n0 = (u % chunks) * g->NC;
        pdc_agemm_unit(g, p, n0, g->N - n0 < g->NC ? g->N - n0 : g->NC, bbuf, abuf);
    }
}
@RUN@/* A (M x K) of problem p: element (m, k) at src + p * src_bs + m * rs + k * cs */
static void pdc_apack_a_strided(const pdc_agemm *g, int64_t p, float *dst, int64_t m0, int64_t mr, int64_t k0,
                                int64_t kc, int64_t MR) {
    const float *s = g->src + p * g->src_bs;
    int64_t kd = 0; /* k's done */
#if PDC_V && defined(__aarch64__)
    if (g->cs == 1 && mr == MR && MR % 4 == 0) { /* 4 x 4 blocks, transposed in registers */
        for (; kd + 4 <= kc; kd += 4) {
            for (int64_t i = 0; i < MR; i += 4) {
                const float *r = s + (m0 + i) * g->rs + k0 + kd;
                const float32x4_t x0 = vld1q_f32(r), x1 = vld1q_f32(r + g->rs);
                const float32x4_t x2 = vld1q_f32(r + 2 * g->rs), x3 = vld1q_f32(r + 3 * g->rs);
                const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(x0, x1));
                const float64x2_t t1 = vreinterpretq_f64_f32(vtrn2q_f32(x0, x1));
                const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(x2, x3));
                const float64x2_t t3 = vreinterpretq_f64_f32(vtrn2q_f32(x2, x3));
                float *d = dst + kd * MR + i;
                vst1q_f32(d, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
                vst1q_f32(d + MR, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
                vst1q_f32(d + 2 * MR, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
                vst1q_f32(d + 3 * MR, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
            }
        }
    }
#endif
    for (int64_t i = 0; i < MR; i++) {
        if (i >= mr) {
            for (int64_t k = kd; k < kc; k++) dst[k * MR + i] = 0;
            continue;
        }
        const float *r = s + (m0 + i) * g->rs + k0 * g->cs;
        if (g->cs == 1) for (int64_t k = kd; k < kc; k++) dst[k * MR + i] = r[k];
        else for (int64_t k = kd; k < kc; k++) dst[k * MR + i] = r[k * g->cs];
    }
}
"""


# how a job runs: on the caller's thread, or split over the thread pool; each thread packs into its
# slot of the kernel's scratch (sized for the job, from the memory plan)
RUN_C = r"""static void pdc_agemm_task(void *vg, int64_t u0, int64_t u1, int slot) {
    const pdc_agemm *g = (const pdc_agemm *)vg;
    float *bbuf = g->scratch + slot * g->slot_floats;
    pdc_agemm_units(g, u0, u1, bbuf, bbuf + g->abuf_off);
}
static void pdc_agemm_run(const pdc_agemm *g) {
    const int64_t units = g->problems * ((g->N + g->NC - 1) / g->NC);
    pdc_parallel_slots(units, g->parallel ? g->slots : 1, pdc_agemm_task, (void *)g);
}
"""


def threaded(ctx: KernelContext) -> bool:
    return ctx.config.parallel


def driver(ctx: KernelContext) -> None:
    act_row(ctx)
    ctx.helper("pdc_agemm_driver", DRIVER_C.replace("@RUN@", RUN_C))


# ---- C: microkernels ---------------------------------------------------------------------------------
def ukernel(ctx: KernelContext, mr: int, nv: int) -> str:
    """The name of the MR x (4 NV) microkernel, registered once per kernel file."""
    driver(ctx)
    name, code = _ukernel_code(mr, nv)
    return ctx.helper(name, code)


def _b_vectors(nv: int) -> list[str]:
    """C lines loading B's NV vectors of a k and stepping b to the next row: on AArch64 one
    post-indexed ld1 of NV consecutive registers, in asm (gcc compiles vld1q_f32_xN and the step to
    loads and a separate add)."""
    plain = ["        " + " ".join(f"const pdc_v4 b{v} = pdc_vld(b + {4 * v});" for v in range(nv)), "        b += bks;"]
    if nv not in (2, 3, 4):
        return plain
    regs = f"%S0.4s - %{'STUV'[nv - 1]}0.4s"
    return ["#if defined(__aarch64__)",
            f"        float32x4x{nv}_t bv;",
            f'        __asm__("ld1 {{{regs}}}, [%1], %2" : "=w"(bv), "+r"(b) : "r"(bstep), '
            f'"m"(*(const float (*)[{4 * nv}])b));',
            "        " + " ".join(f"const pdc_v4 b{v} = bv.val[{v}];" for v in range(nv)),
            "#else", *plain, "#endif"]


def _tile_end(acc: list[list[str]], flag: str, bias_m: bool, bias_n: str, res: str, done: str) -> list[str]:
    """C lines ending a tile: with whole rows (nr == NR), the epilogue in registers for the first mr
    rows: + the tile in C (flag ACC: a later K block), then on the last K block + bias per row
    (bias_m) and per column (bias_n), + the residual (res), the clamp; stored, then `done`. Else the
    registers are copied to t[MR x NR] for a scalar epilogue after these lines. flag: the flags'
    prefix (PDC_A for the ARM driver's, PDC_ for dense_core's)."""
    mr, nv = len(acc), len(acc[0])
    L = [f"    if (nr == {4 * nv}) {{ /* whole rows (the first mr): the epilogue in registers */"]

    def rows(indent: str, stmt) -> None:  # rows past mr are neither read nor written
        for i in range(mr):
            body = " ".join(stmt(i, v) for v in range(nv))
            L.append(f"{indent}if (mr > {i}) {{ {body} }}" if i else f"{indent}{body}")

    L.append(f"        if (flags & {flag}ACC) {{")
    rows("            ", lambda i, v: f"{acc[i][v]} = pdc_vadd({acc[i][v]}, pdc_vld(c + {i} * ldc + {4 * v}));")
    L.append("        }")
    L.append(f"        if (flags & {flag}LAST) {{")
    if bias_m:
        L.append("            if (e->bias_m) {")
        rows("                ", lambda i, v: (f"const pdc_v4 t = pdc_vdup(e->bias_m[{i}]); " if v == 0 else "")
             + f"{acc[i][v]} = pdc_vadd({acc[i][v]}, t);")
        L.append("            }")
    L.append(f"            if ({bias_n}) {{")
    L.append("                " + " ".join(f"const pdc_v4 t{v} = pdc_vld({bias_n} + {4 * v});" for v in range(nv)))
    for i in range(mr):
        L.append("                " + " ".join(f"{acc[i][v]} = pdc_vadd({acc[i][v]}, t{v});" for v in range(nv)))
    L.append("            }")
    L.append(f"            if ({res}) {{")
    rows("                ", lambda i, v: f"{acc[i][v]} = pdc_vadd({acc[i][v]}, pdc_vld({res} + {i} * e->ldr + {4 * v}));")
    L.append("            }")
    L.append(f"            if (flags & {flag}CLAMP) {{ /* NaN passes: the vector max / min return it */")
    L.append("                const pdc_v4 lo = pdc_vdup(e->lo), hi = pdc_vdup(e->hi);")
    for i in range(mr):
        L.append("                " + " ".join(f"{acc[i][v]} = pdc_vclamp({acc[i][v]}, lo, hi);" for v in range(nv)))
    L.append("            }")
    L.append("        }")
    rows("        ", lambda i, v: f"pdc_vst(c + {i} * ldc + {4 * v}, {acc[i][v]});")
    L.append(f"        {done}")
    L.append("    }")
    L.append(f"    float t[{mr * 4 * nv}];")
    for i in range(mr):
        L.append("    " + " ".join(f"pdc_vst(t + {i * 4 * nv + 4 * v}, {acc[i][v]});" for v in range(nv)))
    return L


def _ukernel_code(mr: int, nv: int) -> tuple[str, str]:
    name = f"pdc_aukr_{mr}x{nv}"
    nr = 4 * nv
    acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]
    L = [f"static void {name}(int64_t kc, const float *restrict a_in, int64_t ars, int64_t acs, "
         "const float *restrict b_in, int64_t bks, float *restrict c_in, int64_t ldc, int mr, int nr, int64_t np, "
         "int64_t bps, int flags, const pdc_aepi *e) {",
         "    const int kn = (int)kc; /* a 32-bit count: cheaper loops on 32-bit cores */",
         "    /* rows past mr read row 0 (their results are dropped): a row-major A may end at row mr */",
         "    const int64_t " + ", ".join(f"r{i} = {'0' if i == 0 else f'(mr > {i} ? {i} : 0) * ars'}"
                                       for i in range(mr)) + ";",
         "    (void)ars; (void)" + "; (void)".join(f"r{i}" for i in range(mr)) + ";",
         f"    for (int64_t q = 0; q < np; q++) {{ /* tile q: B at b_in + q * bps, C and the epilogue's columns {nr} on */",
         "    const float *restrict a = a_in, *restrict b = b_in + q * bps;",
         f"    float *restrict c = c_in + q * {nr};",
         f"    const float *bn = e->bias_n ? e->bias_n + q * {nr} : 0, *rs = e->res ? e->res + q * {nr} : 0;",
         "    const pdc_aepi ep = {e->bias_m, bn, rs, e->ldr, e->lo, e->hi};",
         "#if PDC_V",
         f"    if (nr == {nr} || (flags & PDC_AWHOLE)) {{ /* whole B vectors are readable */",
         "    /* a tile of whole rows starts from its bias (in its first K block); a partial one adds it at the end */",
         f"    const int binit = nr == {nr} && !(flags & PDC_AACC) && e->bias_m;",
         "    " + " ".join(f"const pdc_v4 z{i} = pdc_vdup(binit{f' && mr > {i}' if i else ''} ? e->bias_m[{i}] : 0.0f);"
                          for i in range(mr)),
         "    pdc_v4 " + ", ".join(f"{acc[i][v]} = z{i}" for i in range(mr) for v in range(nv)) + ";",
         f"    if (ars == 1 && acs == {mr}) {{ /* packed A: MR values per k, side by side */",
         "    const int64_t bstep = bks * (int64_t)sizeof(float);",
         "    (void)bstep;",
         "    _Pragma(\"GCC unroll 8\")",
         f"    for (int k = 0; k < kn; k++, a += {mr}) {{",
         *_b_vectors(nv)]
    # how A's MR values meet the B vectors differs per ISA: A loaded as vectors of `w` and a lane of one
    # multiplied in (A64: fmla by element of a q register, A32: vmla by scalar of a d register), or
    # one scalar per row where MR is no multiple of w
    for guard, w, vt, load, by_lane, by_n in (
            ("#if defined(__aarch64__)", 4, "float32x4_t", "vld1q_f32", "vfmaq_laneq_f32", "vfmaq_n_f32"),
            ("#elif defined(__ARM_NEON)", 2, "float32x2_t", "vld1_f32", "vmlaq_lane_f32", "vmlaq_n_f32")):
        L.append(guard)
        if mr % w == 0:
            L.append("        " + " ".join(f"const {vt} a{q} = {load}(a + {w * q});" for q in range(mr // w)))
            for i in range(mr):
                L.append("        " + " ".join(f"{acc[i][v]} = {by_lane}({acc[i][v]}, b{v}, a{i // w}, {i % w});"
                                               for v in range(nv)))
        else:
            for i in range(mr):
                L.append("        " + " ".join(f"{acc[i][v]} = {by_n}({acc[i][v]}, b{v}, a[{i}]);" for v in range(nv)))
    L.append("#else /* Helium: the scalar operand comes from a core register */")
    for i in range(mr):
        L.append("        { const float t = a[" + str(i) + "]; "
                 + " ".join(f"{acc[i][v]} = vfmaq_n_f32({acc[i][v]}, b{v}, t);" for v in range(nv)) + " }")
    L.append("#endif")
    L.append("    }")
    L.append("    } else { /* A read in place (row-major weights): one scalar per row and k */")
    L.append("    for (int k = 0; k < kn; k++, a += acs, b += bks) {")
    L.append("        " + " ".join(f"const pdc_v4 b{v} = pdc_vld(b + {4 * v});" for v in range(nv)))
    for i in range(mr):
        L.append(f"        {{ const float t = a[r{i}]; "
                 + " ".join(f"{acc[i][v]} = pdc_vfma_n({acc[i][v]}, b{v}, t);" for v in range(nv)) + " }")
    L.append("    }")
    L.append("    }")
    L += _tile_end(acc, "PDC_A", False, "bn", "rs", "continue;")
    L.append(f"    pdc_aepi_tile(t, {nr}, c, ldc, mr, nr, flags, &ep);")
    L.append("    continue;")
    L.append("    }")
    L.append("#endif")
    L.append("    /* plain C: the same tile in scalar accumulators */")
    L.append(f"    const int64_t ro[{mr}] = {{" + ", ".join(f"r{i}" for i in range(mr)) + "};")
    L.append(f"    const int nj = nr == {nr} || (flags & PDC_AWHOLE) ? {nr} : nr; /* never read past a row-major B */")
    L.append(f"    float t[{mr * nr}];")
    L.append(f"    for (int i = 0; i < {mr * nr}; i++) t[i] = 0;")
    L.append(f"    if (nj == {nr}) {{")
    L.append("        for (int k = 0; k < kn; k++, a += acs, b += bks)")
    L.append(f"            for (int i = 0; i < {mr}; i++) {{")
    L.append("                const float s = a[ro[i]];")
    L.append(f"                for (int j = 0; j < {nr}; j++) t[i * {nr} + j] += s * b[j];")
    L.append("            }")
    L.append("    } else {")
    L.append("        for (int k = 0; k < kn; k++, a += acs, b += bks)")
    L.append(f"            for (int i = 0; i < {mr}; i++) {{")
    L.append("                const float s = a[ro[i]];")
    L.append(f"                for (int j = 0; j < nj; j++) t[i * {nr} + j] += s * b[j];")
    L.append("            }")
    L.append("    }")
    L.append(f"    pdc_aepi_tile(t, {nr}, c, ldc, mr, nr, flags, &ep);")
    L.append("    }")
    L.append("}")
    return name, "\n".join(L) + "\n"


# ---- the job ---------------------------------------------------------------------------------------
class ArmGemm:
    """One GEMM job: collects the fields of a pdc_agemm and renders the call."""

    def __init__(self, ctx: KernelContext, problems: int, m: int, n: int, k: int, epi: Epilogue,
                 tile: Optional[tuple[int, int]] = None):
        self.ctx = ctx
        simd = simd_of(ctx)
        self.mr, self.nv = tile or choose_tile(simd, m, n)
        self.nr = 4 * self.nv
        self.kc = ctx.config.k_block(k)
        self.problems, self.m, self.n, self.k = problems, m, n, k
        self.ukr = ukernel(ctx, self.mr, self.nv)
        self.fields: dict[str, object] = {
            "problems": problems, "M": m, "N": n, "K": k, "MR": self.mr, "NR": self.nr, "KC": self.kc,
            "ukr": self.ukr, "a_mod": 1, "b_mod": 1, "bm_mod": 1, "ldc": n, "c": "out0",
        }
        self.lines: list[str] = []
        self.b_packed_at_runtime = False
        lo, hi = epi.c_lo_hi()
        if epi.needs_clamp:
            self.fields.update(clamp=1, lo=lo, hi=hi)
        if epi.act:
            a, b = epi.c_alpha_beta()
            self.fields.update(act=epi.act_fn(), act_code=epi.act, alpha=a, beta=b)
        if epi.res_before:
            self.fields["res"] = epi.res_before
        if epi.res_after:
            self.fields["res_after"] = epi.res_after
        self.parallel = threaded(ctx) and problems * m * n * k >= PARALLEL_MIN_MACS

    def a_const(self, a: np.ndarray, in_place: Optional[str] = None) -> None:
        """A given per problem group: (G, M, K); problem p uses A[p % G]. `in_place`: a pointer to
        that data, row-major, which targets short of flash read as is instead of a packed copy."""
        if in_place and not pack_weights(self.ctx):
            self.fields.update(a=in_place, a_mod=a.shape[0], a_bs=a[0].size, lda=a.shape[2])
            return
        packed = pack_a(a, self.mr)
        self.fields.update(a=add_weight(self.ctx, packed), a_mod=a.shape[0], a_bs=packed[0].size)

    def a_runtime(self, src: str, rs: int, cs: int, src_bs: int = 0) -> None:
        self.fields.update(pack_a="pdc_apack_a_strided", src=src, rs=rs, cs=cs, src_bs=src_bs)

    def b_const(self, b: np.ndarray, in_place: Optional[str] = None) -> None:
        """B given per problem group: (G, K, N); problem p uses B[p % G] (`in_place`: see a_const)."""
        if in_place and not pack_weights(self.ctx):
            self.fields.update(b=in_place, b_mod=b.shape[0], b_bs=b[0].size, ldb=b.shape[2])
            return
        packed = pack_b(b, self.nr)
        self.fields.update(b=add_weight(self.ctx, packed), b_mod=b.shape[0], b_bs=packed[0].size)

    def b_runtime(self, pack_fn: str) -> None:
        self.fields["pack_b"] = pack_fn
        self.b_packed_at_runtime = True

    def render(self, run: bool = True) -> str:
        """The C lines declaring the job `g` and (run) running it."""
        nb = -(-self.n // self.nr)
        if self.b_packed_at_runtime:
            panels = max(1, scratch_floats(self.ctx) // (self.kc * self.nr))
            nc = min(panels, nb) * self.nr
        elif self.parallel:
            nc = -(-nb // 4) * self.nr
        else:
            nc = nb * self.nr
        self.fields["NC"] = nc
        self.fields["parallel"] = int(self.parallel)
        # each thread's packing buffers, as big as the job needs
        if self.b_packed_at_runtime:
            nbuf = self.kc * nc
        else:  # B read in place (row stride ldb): a panel for the columns past the last whole one
            nbuf = self.kc * self.nr if self.fields.get("ldb") and self.n % self.nr else 0
        abuf = self.kc * self.mr if "pack_a" in self.fields else 0
        if nbuf or abuf:
            slots = self.ctx.slots(self.parallel)
            abuf_off = -(-nbuf // 16) * 16
            scratch, stride = self.ctx.thread_scratch(abuf_off + abuf, slots)
            self.fields.update(scratch=scratch, slot_floats=stride, abuf_off=abuf_off, slots=slots)
        out = list(self.lines) + ["    pdc_agemm g;", "    memset(&g, 0, sizeof g);"]
        for key, value in self.fields.items():
            if value is None:
                continue
            if key in ("a", "b", "src", "res", "res_after", "bias_m", "bias_n") and isinstance(value, str) \
                    and value.startswith("in"):
                value = f"(const float *){value}"
            out.append(f"    g.{key} = {value};")
        if run:
            out.append("    pdc_agemm_run(&g);")
        return "\n".join(out)


# ---- generators -----------------------------------------------------------------------------------
@arm_kernel("matmul", "fused_matmul")
def matmul(ctx: KernelContext) -> Optional[str]:
    """A (..., M, K) at run time times a constant 2-D B (K, N): the batch folds into M."""
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    B = ctx.const(1)
    epi = Epilogue(ctx)
    if B is None or len(b_t.shape) != 2 or len(a_t.shape) < 2 or not is_f32(a_t, b_t, ctx.outputs[0]):
        return None
    if not epi.supported or (ctx.has_input(2) and (ctx.inputs[2].dtype.short != "f32" or ctx.inputs[2].numel != b_t.shape[1])):
        return None
    k, n = b_t.shape
    m = math.prod(a_t.shape[:-1])
    if m * n * k == 0 or not take("gemm", "neon"):
        return None
    job = ArmGemm(ctx, 1, m, n, k, epi)
    job.a_runtime("in0", k, 1)
    job.b_const(np.asarray(B, np.float32)[None], "in1")
    if ctx.node.op == "fused_matmul" and ctx.has_input(2):
        job.fields["bias_n"] = "in2"  # one value per column, contiguous
    return mark("gemm", "neon", job.render())


@arm_kernel("gemm", "fused_gemm")
def gemm(ctx: KernelContext) -> Optional[str]:
    """alpha * A' B' + beta * C with B and C constant (alpha folded into B at compile time)."""
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    ta, tb = int(ctx.attrs.get("transA") or 0), int(ctx.attrs.get("transB") or 0)
    alpha = 1.0 if ctx.attrs.get("alpha") is None else float(ctx.attrs["alpha"])
    beta = 1.0 if ctx.attrs.get("beta") is None else float(ctx.attrs["beta"])
    B = ctx.const(1)
    epi = Epilogue(ctx)
    if B is None or not is_f32(a_t, b_t, ctx.outputs[0]) or not epi.supported:
        return None
    m, k = a_t.shape[::-1] if ta else a_t.shape
    n = b_t.shape[0] if tb else b_t.shape[1]
    if m * n * k == 0 or not take("gemm", "neon"):
        return None
    job = ArmGemm(ctx, 1, m, n, k, epi)
    Bm = np.asarray(B, np.float32).T if tb else np.asarray(B, np.float32)
    job.b_const((Bm * np.float32(alpha) if alpha != 1 else Bm)[None], None if tb or alpha != 1 else "in1")
    job.a_runtime("in0", 1 if ta else k, m if ta else 1)
    if ctx.has_input(2) and beta != 0:
        C = ctx.const(2)
        if C is None or ctx.inputs[2].dtype.short != "f32":
            return None
        cs = tuple(np.shape(C))
        if tuple(broadcast_shapes([cs, (m, n)])) != (m, n):
            return None
        Cb = np.broadcast_to(np.asarray(C, np.float32) * np.float32(beta), (m, n))
        if len(cs) < 2 or cs[0] == 1:  # one value per column
            job.fields["bias_n"] = add_weight(ctx, Cb[0])
        elif cs[1] == 1:
            job.fields["bias_m"] = add_weight(ctx, Cb[:, 0])
        elif epi.res_before is None:
            job.fields["res"] = add_weight(ctx, Cb)
        else:
            return None
    return mark("gemm", "neon", job.render())


# ---- the portable dense GEMM's microkernel (dense_core.py's pdc_ukr_fn ABI), in NEON on AArch64 -----
@implements("dense_ukr", family="arm")
def dense_ukernel(ctx: KernelContext, mr: int, nv: int, indirect: bool) -> tuple[str, str]:
    """(name, C) of dense_core's MR x (8 NV) microkernel: the tile in AArch64 NEON registers (A's MR
    values per k loaded as vectors, a lane of one multiplied in), a partial tile's epilogue in scalar C
    from a copy of the registers; plain C on other cores and for the indirect form."""
    base(ctx)  # arm_neon.h
    nr = 8 * nv
    name = f"pdc_sukr_n{mr}x{nr}"
    if indirect:
        name += "i"
        return name, f"{ukr_head(name, True)}\n{plain_ukr_body(mr, nr, True)}\n}}\n"
    vecs = nr // 4
    acc = [[f"c{i}_{v}" for v in range(vecs)] for i in range(mr)]
    L = [ukr_head(name, False),
         "#if PDC_V && defined(__aarch64__)"]
    L += ["    pdc_v4 " + ", ".join(f"{x} = pdc_vdup(0.0f)" for x in row) + ";" for row in acc]
    L.append("    for (int64_t k = 0; k < kc; k++, a += %d, b += %d) {" % (mr, nr))
    L.append("        " + " ".join(f"const pdc_v4 b{v} = pdc_vld(b + {4 * v});" for v in range(vecs)))
    for q in range(0, mr - mr % 2, 4):  # A in vectors of 4 (and one of 2), a lane of one per row
        width = min(4, mr - mr % 2 - q)
        L.append(f"        const float32x{width}_t a{q} = vld1{'q' if width == 4 else ''}_f32(a + {q});")
        for i in range(q, q + width):
            fn = "vfmaq_laneq_f32" if width == 4 else "vfmaq_lane_f32"
            L.append("        " + " ".join(f"{acc[i][v]} = {fn}({acc[i][v]}, b{v}, a{q}, {i - q});" for v in range(vecs)))
    if mr % 2:
        i = mr - 1
        L.append("        " + " ".join(f"{acc[i][v]} = vfmaq_n_f32({acc[i][v]}, b{v}, a[{i}]);" for v in range(vecs)))
    L.append("    }")
    L += _tile_end(acc, "PDC_", True, "e->bias_n", "e->res", "return;")
    L += ["    for (int i = 0; i < mr; i++)",
          f"        for (int j = 0; j < nr; j++) c[i * ldc + j] = pdc_epi_elem(t[i * {nr} + j], c, ldc, i, j, flags, e);",
          "#else",
          plain_ukr_body(mr, nr, False),
          "#endif",
          "}"]
    return name, "\n".join(L) + "\n"
