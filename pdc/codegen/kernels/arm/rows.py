"""AArch64 NEON loops of the portable fp32 row helpers of the attention kernel (attention.py: the
score and P V products, the row max and the division) and of exp over a row (sequence.py's
pdc_seq_exp_sum, the softmax's), each followed by the portable scalar loop for the tail.

The products and exp compute lane by lane what the scalar loops compute (the same fused
multiply-adds in the same order, Cephes' expf steps of pdc_seq_exp1), so only the sums across a row
(the dot product, exp's total) add in another order. ARMv7 and Helium keep the scalar loops.
"""
from __future__ import annotations

from .. import native

native.implement(
    "arm",
    vector_include=r"""#if !defined(PDC_PLAIN_C) && defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#define PDC_A64 1
#else
#define PDC_A64 0
#endif
""",
    attn_dot=r"""#if PDC_A64
    float32x4_t s4 = vdupq_n_f32(0.0f);
    for (; d + 4 <= n; d += 4) s4 = vfmaq_f32(s4, vld1q_f32(a + d), vld1q_f32(b + d));
    s = vaddvq_f32(s4);
#endif
""",
    attn_axpys=r"""#if PDC_A64
    for (; j + 4 <= n; j += 4) {
        const int two = j + 8 <= n; /* 8 columns at a time where they are there */
        float32x4_t a0 = acc ? vld1q_f32(y + j) : vdupq_n_f32(0.0f);
        float32x4_t a1 = two && acc ? vld1q_f32(y + j + 4) : vdupq_n_f32(0.0f);
        if (two) {
            for (int64_t k = 0; k < K; k++) {
                const float32x4_t xk = vdupq_n_f32(x[k]);
                a0 = vfmaq_f32(a0, xk, vld1q_f32(m + k * ld + j));
                a1 = vfmaq_f32(a1, xk, vld1q_f32(m + k * ld + j + 4));
            }
            vst1q_f32(y + j + 4, a1);
        } else {
            for (int64_t k = 0; k < K; k++) a0 = vfmaq_f32(a0, vdupq_n_f32(x[k]), vld1q_f32(m + k * ld + j));
        }
        vst1q_f32(y + j, a0);
        j += two ? 4 : 0;
    }
#endif
@plain
""",
    attn_max=r"""#if PDC_A64
    if (n >= 4) {
        float32x4_t m4 = vdupq_n_f32(-INFINITY);
        uint32x4_t odd = vdupq_n_u32(0);
        for (; j + 4 <= n; j += 4) {
            const float32x4_t x = vld1q_f32(v + j);
            m4 = vmaxq_f32(m4, x);
            odd = vorrq_u32(odd, vmvnq_u32(vceqq_f32(x, x)));
        }
        top = vmaxvq_f32(m4);
        nan = vmaxvq_u32(odd) != 0;
    }
#endif
""",
    attn_div=r"""#if PDC_A64
    for (; j + 4 <= n; j += 4) vst1q_f32(v + j, vdivq_f32(vld1q_f32(v + j), vdupq_n_f32(total)));
#endif
""",
    seq_exp_sum=r"""#if PDC_A64
    if (n >= 4) {
        float32x4_t t4 = vdupq_n_f32(0.0f);
        for (; j + 4 <= n; j += 4) {
            const float32x4_t x = vsubq_f32(vld1q_f32(v + j), vdupq_n_f32(shift));
            const float32x4_t xc = vminq_f32(vdupq_n_f32(88.0f), vmaxq_f32(vdupq_n_f32(-87.0f), x));
            const float32x4_t nn = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(1.44269504088896341f)));
            float32x4_t r = vfmsq_f32(xc, nn, vdupq_n_f32(0.693359375f));
            r = vfmsq_f32(r, nn, vdupq_n_f32(-2.12194440e-4f));
            float32x4_t p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), vdupq_n_f32(1.9875691500e-4f), r);
            p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
            p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
            p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
            p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
            const float32x4_t yv = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
            const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(nn), vdupq_n_s32(127)), 23);
            float32x4_t out = vmulq_f32(yv, vreinterpretq_f32_s32(e));
            out = vbslq_f32(vcltq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(0.0f), out); /* flushed; NaN stays */
            vst1q_f32(v + j, out);
            t4 = vaddq_f32(t4, out);
        }
        total = vaddvq_f32(t4);
    }
#endif
""",
)

# ---- row reductions (_axis.row_f32_helper): a transform of each loaded v, summed ----------------------
_ROW_OPS = {"sum": "v", "sumsq": "vmulq_f32(v, v)", "sqdev": "vmulq_f32(vsubq_f32(v, vc), vsubq_f32(v, vc))",
            "abs": "vabsq_f32(v)"}


@native.implements("row_sum_f32", family="arm")
def row_sum(op: str) -> str:
    """The sum with 4 accumulators of 4 lanes, then across them; the scalar loop takes the tail."""
    t = _ROW_OPS[op]
    return f"""#if PDC_A64
    if (n >= 16) {{
        const float32x4_t vc = vdupq_n_f32(c);
        (void)vc;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0, v;
        for (; i + 16 <= n; i += 16) {{
            v = vld1q_f32(p + i);
            a0 = vaddq_f32(a0, {t});
            v = vld1q_f32(p + i + 4);
            a1 = vaddq_f32(a1, {t});
            v = vld1q_f32(p + i + 8);
            a2 = vaddq_f32(a2, {t});
            v = vld1q_f32(p + i + 12);
            a3 = vaddq_f32(a3, {t});
        }}
        s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    }}
#endif
"""
