"""x86 pieces of the dense GEMM (dense_core.py): the AVX-512 / AVX2 microkernels of its ABI
(pdc_ukr_fn, pdc_ukri_fn) and the vector parts of its types, tile post-pass and packers.

Every microkernel keeps the MR x NR tile of C in registers (KERNELS.md §1) and falls back to the
plain C microkernel's body where the compiler does not target its ISA.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..dense_core import plain_ukr_body, ukr_head
from ..native import implement, implements

implement(
    "x86",
    dense_include="#include <immintrin.h>\n",
    dense_types=r"""static inline unsigned pdc_m16(int n) { return n <= 0 ? 0u : n >= 16 ? 0xffffu : (1u << n) - 1u; }
#if defined(__AVX512F__)
/* acc += b * broadcast(*p), the broadcast folded into the FMA */
#define PDC_FMA_BCAST(acc, p, b) __asm__("vfmadd231ps %1%{1to16%}, %2, %0" : "+v"(acc) : "m"(*(p)), "v"(b))
/* t[j] = column j of the 16 x 16 block whose rows are r[0..15] (r is overwritten) */
static inline void pdc_transpose16(__m512 *r, __m512 *t) {
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
}
#endif
#if defined(__AVX2__)
static inline __m256i pdc_m8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* lane l's sign set where bit (first + l) of m is: the mask a masked load reads (a shift, not a compare) */
static inline __m256i pdc_bits8(uint32_t m, int first) {
    return _mm256_sllv_epi32(_mm256_set1_epi32((int)m), _mm256_sub_epi32(_mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24),
                                                                       _mm256_set1_epi32(first)));
}
/* lane l set where lo <= l < hi */
static inline __m256i pdc_span8(int64_t lo, int64_t hi) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int l = (int)(lo < -1 ? -1 : lo > 8 ? 8 : lo), h = (int)(hi < -1 ? -1 : hi > 8 ? 8 : hi);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(l), lane),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(h), lane));
}
#endif
""",
    dense_post_trans=r"""#if defined(__AVX512F__)
    if (mr <= 16) {
        const __mmask16 mm = (__mmask16)pdc_m16(mr);
        const __m512 vlo = _mm512_set1_ps(p->lo), vhi = _mm512_set1_ps(p->hi);
        /* An activation with no residual before it runs first, on the tile's rows (channels along
           whole vectors): a transposed column of mr pixels fills 7 of 16 lanes at 7 x 7. The tile is
           the kernel's own scratch. */
        const int act_first = p->act && !p->tres;
        if (act_first) {
            float *cw = (float *)c;
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j += 16) {
                    const __mmask16 k = (__mmask16)pdc_m16(nr - j);
                    __m512 y = _mm512_maskz_loadu_ps(k, cw + i * ldc + j);
                    if (bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(k, bias + j));
                    if (p->clamp) y = _mm512_min_ps(vhi, _mm512_max_ps(vlo, y));
                    _mm512_mask_storeu_ps(cw + i * ldc + j, k, y);
                }
            pdc_act_rows(p->act, p->alpha, p->beta, cw, ldc, mr, nr);
        }
        for (int j0 = 0; j0 < nr; j0 += 16) {
            /* transpose the 16 x 16 block at columns j0.. (rows >= mr read as 0) */
            __m512 r[16], t[16];
            const __mmask16 mc = (__mmask16)pdc_m16(nr - j0);
            for (int i = 0; i < 16; i++)
                r[i] = i < mr ? _mm512_maskz_loadu_ps(mc, c + i * ldc + j0) : _mm512_setzero_ps();
            pdc_transpose16(r, t);
            const int jn = nr - j0 < 16 ? nr - j0 : 16;
            for (int jj = 0; jj < jn; jj++) {
                const int64_t o = o0 + (j0 + jj) * p->tld;
                __m512 y = t[jj];
                if (!act_first) {
                    if (bias) y = _mm512_add_ps(y, _mm512_set1_ps(bias[j0 + jj]));
                    if (p->tres) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mm, p->tres + o));
                    if (p->clamp) y = _mm512_min_ps(vhi, _mm512_max_ps(vlo, y));
                }
                _mm512_mask_storeu_ps(p->tout + o, mm, y);
                if (p->act && !act_first) pdc_act_rows(p->act, p->alpha, p->beta, p->tout + o, 0, 1, mr);
                if (p->res_after)
                    for (int i = 0; i < mr; i++) p->tout[o + i] += p->res_after[o + i];
            }
        }
        return;
    }
#endif
""",
    dense_packa_cols=r"""#if defined(__AVX512F__)
        if (MR <= 16) { /* 16 x 16 blocks of rows m0.. and columns k0 + k.., transposed */
            const __mmask16 all = (__mmask16)pdc_m16((int)MR);
            for (int64_t k = 0; k < kc; k += 16) {
                const int n = (int)(kc - k < 16 ? kc - k : 16);
                const __mmask16 mk = (__mmask16)pdc_m16(n);
                __m512 r[16], t[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < mr ? _mm512_maskz_loadu_ps(mk, src + (m0 + i) * s->rs + k0 + k) : _mm512_setzero_ps();
                pdc_transpose16(r, t);
                for (int q = 0; q < n; q++) _mm512_mask_storeu_ps(dst + (k + q) * MR, all, t[q]);
            }
            return;
        }
#endif
""",
    dense_packa_rows=r"""#if defined(__AVX512F__)
        if (MR <= 16) {
            const __mmask16 m = (__mmask16)pdc_m16((int)mr), all = (__mmask16)pdc_m16((int)MR);
            for (int64_t k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(dst + k * MR, all, _mm512_maskz_loadu_ps(m, src + m0 + (k0 + k) * s->cs));
            return;
        }
#endif
""",
)


@dataclass(frozen=True)
class _Width:
    """How the microkernel spells one x86 vector width."""
    name: str  # the kernel name's letter: pdc_sukr_<name><MR>x<NV>
    guard: str  # the preprocessor test of the ISA
    reg: str  # the vector type
    mm: str  # the intrinsics' prefix
    lanes: int
    mask: str  # the mask of vector v (columns from `off` on): format(v, off)
    mload: str  # a masked load: format(p, k)
    mstore: str  # a masked store: format(p, k, x)


AVX512 = _Width("z", "defined(__AVX512F__)", "__m512", "_mm512", 16,
                "const __mmask16 k{v} = (__mmask16)pdc_m16(nr - {off});", "_mm512_maskz_loadu_ps({k}, {p})",
                "_mm512_mask_storeu_ps({p}, {k}, {x});")
AVX2 = _Width("y", "defined(__AVX2__) && defined(__FMA__)", "__m256", "_mm256", 8,
              "const __m256i k{v} = pdc_m8(nr - {off});", "_mm256_maskload_ps({p}, {k})",
              "_mm256_maskstore_ps({p}, {k}, {x});")


@implements("dense_ukr", family="x86")
def ukernel(ctx, mr: int, nv: int, indirect: bool) -> tuple[str, str]:
    """(name, C) of the MR x NV-vector microkernel: AVX-512 on a 512-bit target, else AVX2. An
    indirect kernel reads B row k at b + koff[k], unaligned (the convolutions of x86/conv.py)."""
    return _ukr(AVX512 if ctx.config.simd == "avx512" else AVX2, mr, nv, indirect)


def _ukr(V: _Width, mr: int, nv: int, indirect: bool) -> tuple[str, str]:
    name = f"pdc_sukr_{V.name}{mr}x{nv}" + ("i" if indirect else "")
    nr, mm = V.lanes * nv, V.mm
    acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]
    L = [ukr_head(name, indirect),
         "    (void)mr;",
         f"#if {V.guard}"]
    for i in range(mr):
        L.append(f"    {V.reg} " + ", ".join(f"{x} = {mm}_setzero_ps()" for x in acc[i]) + ";")

    def k_loop(u: int, pad: str) -> list[str]:
        """The loop over k updating the first u vectors of each row (the tile's columns past them are
        beyond nr: a narrow last panel does not pay for the full width)."""
        K = [f"{pad}for (int64_t k = 0; k < kc; k++) {{"]
        if indirect:
            K.append(f"{pad}    const float *bk = b + koff[k];")
            K.append(f"{pad}    " + " ".join(f"const {V.reg} b{v} = {mm}_loadu_ps(bk + {V.lanes * v});" for v in range(u)))
            # B read in place: its rows lie far apart (a plane each), more streams than the hardware
            # prefetcher follows; fetch the row's part four panels ahead
            K.append(f"{pad}    _mm_prefetch((const char *)(bk + {4 * nr}), _MM_HINT_T0);")
        else:
            K.append(f"{pad}    " + " ".join(f"const {V.reg} b{v} = {mm}_load_ps(b + {V.lanes * v});" for v in range(u)))
        if V is AVX2:
            for i in range(mr):
                K.append(f"{pad}    {{ const __m256 t = _mm256_broadcast_ss(a + {i}); "
                         + " ".join(f"{acc[i][v]} = _mm256_fmadd_ps(t, b{v}, {acc[i][v]});" for v in range(u)) + " }")
        elif mr * nv + nv + 1 <= 32:
            for i in range(mr):
                K.append(f"{pad}    {{ const __m512 t = _mm512_set1_ps(a[{i}]); "
                         + " ".join(f"{acc[i][v]} = _mm512_fmadd_ps(t, b{v}, {acc[i][v]});" for v in range(u)) + " }")
        else:  # too few registers to keep a broadcast: broadcast inside each FMA ({1to16} memory operand;
            # gcc would merge plain _mm512_set1_ps broadcasts into registers and spill accumulators)
            for v in range(u):
                K.append(f"{pad}    " + " ".join(f"PDC_FMA_BCAST({acc[i][v]}, a + {i}, b{v});" for i in range(mr)))
        K.append(f"{pad}    a += {mr};" + ("" if indirect else f" b += {nr};"))
        K.append(f"{pad}}}")
        return K

    for u in range(nv, 0, -1):  # the vectors the columns [0, nr) need
        if nv > 1:
            L.append(f"    if (nr > {V.lanes * (u - 1)}) {{" if u == nv else
                     f"    }} else if (nr > {V.lanes * (u - 1)}) {{" if u > 1 else "    } else {")
        L += k_loop(u, "        " if nv > 1 else "    ")
    if nv > 1:
        L.append("    }")
    L.append("    " + " ".join(V.mask.format(v=v, off=V.lanes * v) for v in range(nv)))

    def rows(stmt_fn, indent="        "):
        for i in range(mr):
            body = " ".join(stmt_fn(i, v) for v in range(nv))
            L.append(f"{indent}if (mr > {i}) {{ {body} }}" if i > 0 else f"{indent}{{ {body} }}")

    def add_tile(p: str):  # acc += the masked tile at p + row * ld...
        return lambda i, v: f"{acc[i][v]} = {mm}_add_ps({acc[i][v]}, {V.mload.format(k=f'k{v}', p=p.format(i=i, o=V.lanes * v))});"

    L.append("    if (flags & PDC_ACC) {")
    rows(add_tile("c + {i} * ldc + {o}"))
    L.append("    }")
    L.append("    if (flags & PDC_LAST) {")
    L.append("        if (e->bias_m) {")
    rows(lambda i, v: (f"const {V.reg} t = {mm}_set1_ps(e->bias_m[{i}]); " if v == 0 else "")
         + f"{acc[i][v]} = {mm}_add_ps({acc[i][v]}, t);", "            ")
    L.append("        }")
    L.append("        if (e->bias_n) {")
    L.append("            " + " ".join(f"const {V.reg} t{v} = {V.mload.format(k=f'k{v}', p=f'e->bias_n + {V.lanes * v}')};"
                                       for v in range(nv)))
    for i in range(mr):
        L.append("            " + " ".join(f"{acc[i][v]} = {mm}_add_ps({acc[i][v]}, t{v});" for v in range(nv)))
    L.append("        }")
    L.append("        if (e->res) {")
    L.append("            const float *r = e->res; const int64_t ld = e->ldr;")
    rows(add_tile("r + {i} * ld + {o}"))
    L.append("        }")
    L.append("        if (flags & PDC_CLAMP) {")
    L.append(f"            const {V.reg} lo = {mm}_set1_ps(e->lo), hi = {mm}_set1_ps(e->hi);")
    for i in range(mr):  # max/min(bound, x) return x when x is NaN: NaN propagates like the reference
        L.append("            " + " ".join(f"{acc[i][v]} = {mm}_min_ps(hi, {mm}_max_ps(lo, {acc[i][v]}));"
                                           for v in range(nv)))
    L.append("        }")
    L.append("    }")
    # a whole tile's rows as plain stores: AMD cores run a masked AVX2 store as dozens of micro-ops
    L.append(f"    if (nr == {nr}) {{")
    rows(lambda i, v: f"{mm}_storeu_ps(c + {i} * ldc + {V.lanes * v}, {acc[i][v]});")
    L.append("    } else {")
    rows(lambda i, v: V.mstore.format(p=f"c + {i} * ldc + {V.lanes * v}", k=f"k{v}", x=acc[i][v]))
    L.append("    }")
    L.append("#else")
    L.append(plain_ukr_body(mr, nr, indirect))
    L.append("#endif")
    L.append("}")
    return name, "\n".join(L) + "\n"
