"""x86 loops of the portable fp32 row helpers: exp over a row (_axis.py), the row reductions, and
the vector math of the recurrent and attention kernels (sequence.py, attention.py), in AVX-512
and AVX2, each followed by the portable scalar loop for the tail.
"""
from __future__ import annotations

import re

from .. import native

# ---- vector math written once, spelled per ISA (vector type, intrinsic prefix, lanes, and the few
# lines where AVX-512 masks and AVX2 blends differ): exp over a row (_axis.vexp_helper: Cephes' expf
# range reduction and degree-6 polynomial), and the recurrent kernels' exp / sigmoid / tanh
_VEXP = r"""static inline ${V} pdc_exp${N}(${V} x) {
${CLAMP_NOTE}    x = ${p}_min_ps(${p}_set1_ps(89.0f), ${p}_max_ps(${p}_set1_ps(-104.0f), x));
    const ${V} n = ${ROUND}(${p}_mul_ps(x, ${p}_set1_ps(1.44269504088896341f)),
${ROUND_PAD}_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    ${V} r = ${p}_fnmadd_ps(n, ${p}_set1_ps(0.693359375f), x);
    r = ${p}_fnmadd_ps(n, ${p}_set1_ps(-2.12194440e-4f), r);
    ${V} p = ${p}_set1_ps(1.9875691500e-4f);
    p = ${p}_fmadd_ps(p, r, ${p}_set1_ps(1.3981999507e-3f));
    p = ${p}_fmadd_ps(p, r, ${p}_set1_ps(8.3334519073e-3f));
    p = ${p}_fmadd_ps(p, r, ${p}_set1_ps(4.1665795894e-2f));
    p = ${p}_fmadd_ps(p, r, ${p}_set1_ps(1.6666665459e-1f));
    p = ${p}_fmadd_ps(p, r, ${p}_set1_ps(5.0000001201e-1f));
    p = ${p}_fmadd_ps(p, ${p}_mul_ps(r, r), ${p}_add_ps(r, ${p}_set1_ps(1.0f)));
${SCALE}}
"""
_VEXP_ISA = {
    "avx512": dict(V="__m512", N="16", p="_mm512", ROUND="_mm512_roundscale_ps", ROUND_PAD=" " * 42,
                   CLAMP_NOTE="    /* clamp (NaN passes: max/min return their second operand when one is NaN) */\n",
                   SCALE="    return _mm512_scalef_ps(p, n); /* p * 2^n: overflows to inf, underflows through denormals */\n"),
    "avx2": dict(V="__m256", N="8", p="_mm256", ROUND="_mm256_round_ps", ROUND_PAD=" " * 37, CLAMP_NOTE="",
                 SCALE="""    /* 2^n as two in-range powers, so n in [-150, 129] neither wraps nor saturates early */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
"""),
}

_SEQ_VMATH = r"""static inline ${V} pdc_seq_fma${N}(${V} a, ${V} b, float c) { return ${p}_fmadd_ps(a, b, ${p}_set1_ps(c)); }
static inline ${V} pdc_seq_exp${N}(${V} x) {
    const ${KEEP} keep = ${KEEP_CMP}(x, ${p}_set1_ps(-87.0f), _CMP_NLT_UQ); /* else flushed to 0 */
    x = ${p}_min_ps(${p}_set1_ps(88.0f), x);
    x = ${p}_max_ps(${p}_set1_ps(-87.0f), x);
    const ${V} n = ${ROUND}(${p}_mul_ps(x, ${p}_set1_ps(1.44269504088896341f)),
${ROUND_PAD}_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    ${V} r = ${p}_fnmadd_ps(n, ${p}_set1_ps(0.693359375f), x);
    r = ${p}_fnmadd_ps(n, ${p}_set1_ps(-2.12194440e-4f), r);
    ${V} p = pdc_seq_fma${N}(${p}_set1_ps(1.9875691500e-4f), r, 1.3981999507e-3f);
    p = pdc_seq_fma${N}(p, r, 8.3334519073e-3f);
    p = pdc_seq_fma${N}(p, r, 4.1665795894e-2f);
    p = pdc_seq_fma${N}(p, r, 1.6666665459e-1f);
    p = pdc_seq_fma${N}(p, r, 5.0000001201e-1f);
    const ${V} y = ${p}_fmadd_ps(p, ${p}_mul_ps(r, r), ${p}_add_ps(r, ${p}_set1_ps(1.0f)));
    const ${Vi} e = ${p}_slli_epi32(${p}_add_epi32(${p}_cvtps_epi32(n), ${p}_set1_epi32(127)), 23);
    return ${KEEP_MUL};
}
static inline ${V} pdc_seq_sigmoid${N}(${V} x) {
${SIGMOID}}
static inline ${V} pdc_seq_tanh${N}(${V} x) {
    const ${V} ax = ${ABS}, z = ${p}_mul_ps(x, x);
    ${V} p = pdc_seq_fma${N}(${p}_set1_ps(-5.70498872745e-3f), z, 2.06390887954e-2f);
    p = pdc_seq_fma${N}(p, z, -5.37397155531e-2f);
    p = pdc_seq_fma${N}(p, z, 1.33314422036e-1f);
    p = pdc_seq_fma${N}(p, z, -3.33332819422e-1f);
    const ${V} small = ${p}_fmadd_ps(${p}_mul_ps(p, z), x, x);
    const ${V} e = pdc_seq_exp${N}(${p}_add_ps(ax, ax));
    ${V} big = ${p}_sub_ps(${p}_set1_ps(1.0f), ${p}_div_ps(${p}_set1_ps(2.0f), ${p}_add_ps(e, ${p}_set1_ps(1.0f))));
    big = ${p}_or_ps(big, ${p}_and_ps(x, ${p}_set1_ps(-0.0f)));
    return ${TANH_SELECT};
}
"""
_SEQ_VMATH_ISA = {
    "avx512": dict(V="__m512", Vi="__m512i", N="16", p="_mm512", KEEP="__mmask16", KEEP_CMP="_mm512_cmp_ps_mask",
                   ROUND="_mm512_roundscale_ps", ROUND_PAD=" " * 42,
                   KEEP_MUL="_mm512_maskz_mul_ps(keep, y, _mm512_castsi512_ps(e))",
                   ABS="_mm512_abs_ps(x)",
                   SIGMOID="""    const __m512 e = pdc_seq_exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
    const __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_mul_ps(s, neg, e, s);
""",
                   TANH_SELECT="_mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), big, small)"),
    "avx2": dict(V="__m256", Vi="__m256i", N="8", p="_mm256", KEEP="__m256", KEEP_CMP="_mm256_cmp_ps",
                 ROUND="_mm256_round_ps", ROUND_PAD=" " * 37,
                 KEEP_MUL="_mm256_and_ps(keep, _mm256_mul_ps(y, _mm256_castsi256_ps(e)))",
                 ABS="_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)",
                 SIGMOID="""    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 e = pdc_seq_exp8(_mm256_sub_ps(_mm256_setzero_ps(), ax));
    const __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    return _mm256_blendv_ps(s, _mm256_mul_ps(e, s), _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
""",
                 TANH_SELECT="_mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ))"),
}

def _per_isa(template: str, spellings: dict) -> str:
    """The template spelled for AVX-512, then for AVX2, each under its preprocessor test."""
    def spell(isa: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: spellings[isa][m.group(1)], template)
    return f"#if defined(__AVX512F__)\n{spell('avx512')}#elif defined(__AVX2__)\n{spell('avx2')}#endif\n"


native.implement(
    "x86",
    vector_include="#if defined(__AVX512F__) || defined(__AVX2__)\n#include <immintrin.h>\n#endif\n",
    vexp="#if defined(__AVX512F__) || defined(__AVX2__)\n#include <immintrin.h>\n#endif\n" + _per_isa(_VEXP, _VEXP_ISA),
    exp_sum_f32=r"""#if defined(__AVX512F__)
    const __m512 vm = _mm512_set1_ps(m);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        const __m512 e0 = pdc_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        const __m512 e1 = pdc_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
        if (y) { _mm512_storeu_ps(y + i, e0); _mm512_storeu_ps(y + i + 16, e1); }
        a0 = _mm512_add_ps(a0, e0);
        a1 = _mm512_add_ps(a1, e1);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = pdc_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
        if (y) _mm512_mask_storeu_ps(y + i, k, e);
        a0 = _mm512_mask_add_ps(a0, k, a0, e);
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#elif defined(__AVX2__)
    const __m256 vm = _mm256_set1_ps(m);
    __m256 a0 = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256 e = pdc_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        if (y) _mm256_storeu_ps(y + i, e);
        a0 = _mm256_add_ps(a0, e);
    }
    if (i < n) { /* the last 1..7 elements through a padded vector */
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0}, e[8];
        const int r = (int)(n - i);
        for (int j = 0; j < r && j < 8; j++) t[j] = x[i + j] - m;
        _mm256_storeu_ps(e, pdc_exp8(_mm256_loadu_ps(t)));
        for (int j = 0; j < r && j < 8; j++) { if (y) y[i + j] = e[j]; s += e[j]; }
        i = n;
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s += _mm_cvtss_f32(h);
#endif
""",
    exp_sub_f32=r"""#if defined(__AVX512F__)
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, pdc_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i),
                                                                _mm512_maskz_loadu_ps(k, m + i))));
    }
#elif defined(__AVX2__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, pdc_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(m + i))));
    if (i < n) {
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0}, e[8];
        const int r = (int)(n - i);
        for (int j = 0; j < r && j < 8; j++) t[j] = x[i + j] - m[i + j];
        _mm256_storeu_ps(e, pdc_exp8(_mm256_loadu_ps(t)));
        for (int j = 0; j < r && j < 8; j++) y[i + j] = e[j];
        i = n;
    }
#endif
""",
    # ---- the recurrent kernels (sequence.py): packed matrix-vector products, sigmoid / tanh / exp rows
    seq_gemv16=r"""#if defined(__AVX512F__)
    for (; p + 4 <= P; p += 4) {
        const float *w0 = w + p * K * 16, *w1 = w0 + K * 16, *w2 = w1 + K * 16, *w3 = w2 + K * 16;
        __m512 a0 = _mm512_loadu_ps(acc + p * 16), a1 = _mm512_loadu_ps(acc + p * 16 + 16);
        __m512 a2 = _mm512_loadu_ps(acc + p * 16 + 32), a3 = _mm512_loadu_ps(acc + p * 16 + 48);
        for (int64_t k = 0; k < K; k++) {
            const __m512 xb = _mm512_set1_ps(x[k]);
            a0 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w0 + k * 16), a0);
            a1 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w1 + k * 16), a1);
            a2 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w2 + k * 16), a2);
            a3 = _mm512_fmadd_ps(xb, _mm512_loadu_ps(w3 + k * 16), a3);
        }
        _mm512_storeu_ps(acc + p * 16, a0); _mm512_storeu_ps(acc + p * 16 + 16, a1);
        _mm512_storeu_ps(acc + p * 16 + 32, a2); _mm512_storeu_ps(acc + p * 16 + 48, a3);
    }
    for (; p < P; p++) {
        const float *w0 = w + p * K * 16;
        __m512 a0 = _mm512_loadu_ps(acc + p * 16), a1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 2 <= K; k += 2) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_loadu_ps(w0 + k * 16), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 1]), _mm512_loadu_ps(w0 + k * 16 + 16), a1);
        }
        if (k < K) a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_loadu_ps(w0 + k * 16), a0);
        _mm512_storeu_ps(acc + p * 16, _mm512_add_ps(a0, a1));
    }
#elif defined(__AVX2__)
    for (; p + 2 <= P; p += 2) {
        const float *w0 = w + p * K * 16, *w1 = w0 + K * 16;
        __m256 a0 = _mm256_loadu_ps(acc + p * 16), a1 = _mm256_loadu_ps(acc + p * 16 + 8);
        __m256 a2 = _mm256_loadu_ps(acc + p * 16 + 16), a3 = _mm256_loadu_ps(acc + p * 16 + 24);
        for (int64_t k = 0; k < K; k++) {
            const __m256 xb = _mm256_set1_ps(x[k]);
            a0 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16), a0);
            a1 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16 + 8), a1);
            a2 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w1 + k * 16), a2);
            a3 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w1 + k * 16 + 8), a3);
        }
        _mm256_storeu_ps(acc + p * 16, a0); _mm256_storeu_ps(acc + p * 16 + 8, a1);
        _mm256_storeu_ps(acc + p * 16 + 16, a2); _mm256_storeu_ps(acc + p * 16 + 24, a3);
    }
    for (; p < P; p++) {
        const float *w0 = w + p * K * 16;
        __m256 a0 = _mm256_loadu_ps(acc + p * 16), a1 = _mm256_loadu_ps(acc + p * 16 + 8);
        for (int64_t k = 0; k < K; k++) {
            const __m256 xb = _mm256_set1_ps(x[k]);
            a0 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16), a0);
            a1 = _mm256_fmadd_ps(xb, _mm256_loadu_ps(w0 + k * 16 + 8), a1);
        }
        _mm256_storeu_ps(acc + p * 16, a0); _mm256_storeu_ps(acc + p * 16 + 8, a1);
    }
#endif
""",
    seq_vmath=_per_isa(_SEQ_VMATH, _SEQ_VMATH_ISA),
    seq_sigmoid=r"""#if defined(__AVX512F__)
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(v + j, pdc_seq_sigmoid16(_mm512_loadu_ps(v + j)));
#elif defined(__AVX2__)
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, pdc_seq_sigmoid8(_mm256_loadu_ps(v + j)));
#endif
""",
    seq_exp_sum=r"""#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) {
        const __m512 e = pdc_seq_exp16(_mm512_sub_ps(_mm512_loadu_ps(v + j), _mm512_set1_ps(shift)));
        _mm512_storeu_ps(v + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    total = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__)
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        const __m256 e = pdc_seq_exp8(_mm256_sub_ps(_mm256_loadu_ps(v + j), _mm256_set1_ps(shift)));
        _mm256_storeu_ps(v + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    total = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
#endif
""",
    seq_tanh=r"""#if defined(__AVX512F__)
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(v + j, pdc_seq_tanh16(_mm512_loadu_ps(v + j)));
#elif defined(__AVX2__)
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, pdc_seq_tanh8(_mm256_loadu_ps(v + j)));
#endif
""",
    # ---- the attention kernels' rows (attention.py)
    attn_dot=r"""#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (; d + 32 <= n; d += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d + 16), _mm512_loadu_ps(b + d + 16), s1);
    }
    if (d + 16 <= n) { s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), s0); d += 16; }
    if (d < n) {
        const __mmask16 m = (__mmask16)((1u << (n - d)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d), s1);
        d = n;
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#elif defined(__AVX2__)
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; d + 16 <= n; d += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d + 8), _mm256_loadu_ps(b + d + 8), s1);
    }
    if (d + 8 <= n) { s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), s0); d += 8; }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    s = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
#endif
""",
    attn_axpys=r"""#if defined(__AVX512F__)
    for (; j < n; j += 16) {
        const __mmask16 t = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 a0 = acc ? _mm512_maskz_loadu_ps(t, y + j) : _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 2 <= K; k += 2) {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_maskz_loadu_ps(t, m + k * ld + j), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 1]), _mm512_maskz_loadu_ps(t, m + (k + 1) * ld + j), a1);
        }
        if (k < K) a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_maskz_loadu_ps(t, m + k * ld + j), a0);
        _mm512_mask_storeu_ps(y + j, t, _mm512_add_ps(a0, a1));
    }
#else
#if defined(__AVX2__)
    for (; j + 8 <= n; j += 8) {
        __m256 a0 = acc ? _mm256_loadu_ps(y + j) : _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 2 <= K; k += 2) {
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(x[k]), _mm256_loadu_ps(m + k * ld + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(x[k + 1]), _mm256_loadu_ps(m + (k + 1) * ld + j), a1);
        }
        if (k < K) a0 = _mm256_fmadd_ps(_mm256_set1_ps(x[k]), _mm256_loadu_ps(m + k * ld + j), a0);
        _mm256_storeu_ps(y + j, _mm256_add_ps(a0, a1));
    }
#endif
@plain
#endif
""",
    attn_max=r"""#if defined(__AVX512F__)
    __m512 m = _mm512_set1_ps(-INFINITY);
    __mmask16 u = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 x = _mm512_loadu_ps(v + j);
        m = _mm512_max_ps(m, x);
        u |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    }
    top = _mm512_reduce_max_ps(m);
    nan = u != 0;
#endif
""",
    attn_div=r"""#if defined(__AVX512F__)
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(v + j, _mm512_div_ps(_mm512_loadu_ps(v + j), _mm512_set1_ps(total)));
#elif defined(__AVX2__)
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, _mm256_div_ps(_mm256_loadu_ps(v + j), _mm256_set1_ps(total)));
#endif
""",
)

# ---- row reductions (_axis.row_f32_helper) ----------------------------------------------------------
_ROW_OPS = {  # op: (512-bit transform, 256-bit transform) of a loaded v (the scalar one: _axis._ROW_SCALAR)
    "sum": ("v", "v"),
    "sumsq": ("_mm512_mul_ps(v, v)", "_mm256_mul_ps(v, v)"),
    "sqdev": ("_mm512_mul_ps(_mm512_sub_ps(v, vc), _mm512_sub_ps(v, vc))",
              "_mm256_mul_ps(_mm256_sub_ps(v, vc), _mm256_sub_ps(v, vc))"),
    "abs": ("_mm512_abs_ps(v)", "_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v)"),
}


@native.implements("row_minmax_f32", family="x86")
def row_minmax(op: str, init: str) -> str:
    """max / min over the row with 4 accumulators; `nan` set when any element is NaN."""
    return f"""#if defined(__AVX512F__)
    const __m512 fill = _mm512_set1_ps({init});
    __m512 a0 = fill, a1 = fill, a2 = fill, a3 = fill;
    __mmask16 u = 0;
    for (; i + 64 <= n; i += 64) {{
        const __m512 v0 = _mm512_loadu_ps(p + i), v1 = _mm512_loadu_ps(p + i + 16);
        const __m512 v2 = _mm512_loadu_ps(p + i + 32), v3 = _mm512_loadu_ps(p + i + 48);
        a0 = _mm512_{op}_ps(a0, v0); a1 = _mm512_{op}_ps(a1, v1);
        a2 = _mm512_{op}_ps(a2, v2); a3 = _mm512_{op}_ps(a3, v3);
        u |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q);
    }}
    for (; i < n; i += 16) {{
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_mask_loadu_ps(fill, k, p + i);
        a0 = _mm512_{op}_ps(a0, v);
        u |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }}
    s = _mm512_reduce_{op}_ps(_mm512_{op}_ps(_mm512_{op}_ps(a0, a1), _mm512_{op}_ps(a2, a3)));
    nan = u != 0;
#elif defined(__AVX2__)
    const __m256 fill = _mm256_set1_ps({init});
    __m256 a0 = fill, a1 = fill, a2 = fill, a3 = fill, u = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {{
        const __m256 v0 = _mm256_loadu_ps(p + i), v1 = _mm256_loadu_ps(p + i + 8);
        const __m256 v2 = _mm256_loadu_ps(p + i + 16), v3 = _mm256_loadu_ps(p + i + 24);
        a0 = _mm256_{op}_ps(a0, v0); a1 = _mm256_{op}_ps(a1, v1);
        a2 = _mm256_{op}_ps(a2, v2); a3 = _mm256_{op}_ps(a3, v3);
        u = _mm256_or_ps(u, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
    }}
    for (; i + 8 <= n; i += 8) {{
        const __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_{op}_ps(a0, v);
        u = _mm256_or_ps(u, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }}
    const __m256 a = _mm256_{op}_ps(_mm256_{op}_ps(a0, a1), _mm256_{op}_ps(a2, a3));
    __m128 h = _mm_{op}_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_{op}_ps(h, _mm_movehl_ps(h, h));
    h = _mm_{op}_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
    nan = _mm256_movemask_ps(u) != 0;
#endif
"""


@native.implements("row_sum_f32", family="x86")
def row_sum(op: str) -> str:
    """The sum of a transform of each element, with 4 accumulators."""
    t512, t256 = _ROW_OPS[op]
    return f"""#if defined(__AVX512F__)
    const __m512 vc = _mm512_set1_ps(c);
    (void)vc;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 64 <= n; i += 64) {{
        __m512 v = _mm512_loadu_ps(p + i);
        a0 = _mm512_add_ps(a0, {t512});
        v = _mm512_loadu_ps(p + i + 16);
        a1 = _mm512_add_ps(a1, {t512});
        v = _mm512_loadu_ps(p + i + 32);
        a2 = _mm512_add_ps(a2, {t512});
        v = _mm512_loadu_ps(p + i + 48);
        a3 = _mm512_add_ps(a3, {t512});
    }}
    for (; i < n; i += 16) {{
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, p + i);
        a0 = _mm512_mask_add_ps(a0, k, a0, {t512});
    }}
    s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(__AVX2__)
    const __m256 vc = _mm256_set1_ps(c);
    (void)vc;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= n; i += 32) {{
        __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_add_ps(a0, {t256});
        v = _mm256_loadu_ps(p + i + 8);
        a1 = _mm256_add_ps(a1, {t256});
        v = _mm256_loadu_ps(p + i + 16);
        a2 = _mm256_add_ps(a2, {t256});
        v = _mm256_loadu_ps(p + i + 24);
        a3 = _mm256_add_ps(a3, {t256});
    }}
    for (; i + 8 <= n; i += 8) {{
        const __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_add_ps(a0, {t256});
    }}
    const __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
"""
