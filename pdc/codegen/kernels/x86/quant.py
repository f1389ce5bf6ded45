"""x86 form of the quantized kernels' int16 multiply-add tile (quant.py): vpmaddwd on AVX-512BW
(16 x 16 tiles, zmm accumulators) or AVX2 (6 x 8, ymm), the plain C loop where the compiler does
not target that ISA."""
from __future__ import annotations

from .. import native

native.implement("x86", qg_include="#include <immintrin.h>\n")


@native.implements("qg_kernel", family="x86")
def qg_kernel(mr: int, nr: int) -> str:
    """c[MR][NR] (+)= A panel x B panel: per k pair, NR int16 pairs of B against each row's A pair."""
    if nr == 16:
        isa, v, load, store, zero = ("__AVX512BW__", "__m512i", "_mm512_loadu_si512((const void *)({p}))",
                                     "_mm512_storeu_si512((void *)({p}), {v})", "_mm512_setzero_si512()")
        madd, add, bc = "_mm512_madd_epi16", "_mm512_add_epi32", "_mm512_set1_epi32"
    else:
        isa, v, load, store, zero = ("__AVX2__", "__m256i", "_mm256_loadu_si256((const __m256i *)({p}))",
                                     "_mm256_storeu_si256((__m256i *)({p}), {v})", "_mm256_setzero_si256()")
        madd, add, bc = "_mm256_madd_epi16", "_mm256_add_epi32", "_mm256_set1_epi32"
    rows = range(mr)
    init = "\n".join(f"    {v} c{r} = acc ? {load.format(p=f'c + {r * nr}')} : {zero};" for r in rows)
    body = "\n".join(f"        c{r} = {add}(c{r}, {madd}({bc}(a[{r}]), b));" for r in rows)
    fin = "\n".join(f"    {store.format(p=f'c + {r * nr}', v=f'c{r}')};" for r in rows)
    return f"""#if defined({isa})
{init}
    for (int64_t k = 0; k < k2; k++) {{
        const {v} b = {load.format(p='bp + k * ldb')};
        const int32_t *a = ap + k * {mr};
{body}
    }}
{fin}
#else
@plain
#endif
"""


@native.implements("quantize_row", family="x86")
def quantize_row(lo: int, hi: int, bits: int) -> str:
    """quantize_linear's row on AVX-512: 16 floats divided by s, NaN made -z (0 after + z), clamped to
    [lo - z, hi - z], converted rounding half to even (the plain helper's rounding), + z, narrowed
    (the values are in the type's range: truncating keeps them); the plain loop takes the tail."""
    narrow, store = ("_mm512_cvtepi32_epi8", "_mm_storeu_si128((__m128i *)(y + i), {v})") if bits == 8 else \
        ("_mm512_cvtepi32_epi16", "_mm256_storeu_si256((__m256i *)(y + i), {v})")
    return f"""#if defined(__AVX512F__)
    {{
        const __m512 vs = _mm512_set1_ps(s), nz = _mm512_set1_ps((float)(-z));
        const __m512 flo = _mm512_set1_ps((float)({lo} - z)), fhi = _mm512_set1_ps((float)({hi} - z));
        const __m512i vz = _mm512_set1_epi32(z);
        for (; i + 16 <= n; i += 16) {{
            __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + i), vs);
            v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v, nz);
            v = _mm512_min_ps(_mm512_max_ps(v, flo), fhi);
            const __m512i r = _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
            {store.format(v=f"{narrow}(r)")};
        }}
    }}
#endif
"""
