"""AArch64 vector forms of the fused activations that are not clamps, for the ARM kernels' post-pass
over a finished tile or row (the GEMM driver's pdc_apost, the depthwise kernel's rows).

`pdc_aact_row(act, fn, row, res_after, n, alpha, beta)` applies activation ACT_CODES[act] (fn: its
scalar function, 0 for none) to the n floats of row, then adds res_after (when given). Its vector
part, pdc_aact_vec, takes 4 floats at a time and returns how many it did: a multiple of 4, or 0 for
an activation without a vector form here (tanh, gelu) or on other cores (ARMv7, Helium, plain C).
A scalar loop through fn does the rest, so the scalar numerics stand wherever the vector form does
not.

The forms follow the scalar ones (activations.py): hard_swish multiplies by float32(1/6) as the reference does;
sigmoid is 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|) <= 1, so nothing overflows.
exp(r + n ln 2) = 2^n exp(r) with |r| <= ln(2) / 2 and exp(r) by the degree-7 polynomial of the
Cephes library's expf (relative error about 1e-7), 0 below -87.3 where expf gives a subnormal: the
same steps as the x86 forms (x86/activations.py). NaN stays NaN.
"""
from __future__ import annotations

from ...context import KernelContext
from ..activations import ACT_CODES
from .vector import base

_C = {k: ACT_CODES[k] for k in ("leaky_relu", "sigmoid", "hard_sigmoid", "hard_swish", "swish")}

ACT_VEC_C = r"""
/* ---- pdc ARM kernels: vector activations (AArch64) ---- */
#if PDC_V && defined(__aarch64__)
/* exp(t) for t <= 0 */
static inline float32x4_t pdc_aexp_neg(float32x4_t t) {
    const float32x4_t t0 = t;
    t = vmaxq_f32(t, vdupq_n_f32(-87.3365478515625f));
    const float32x4_t n = vrndnq_f32(vmulq_f32(t, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(t, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t q = vdupq_n_f32(1.9875691500e-4f);
    q = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), q, r);
    q = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), q, r);
    q = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), q, r);
    q = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), q, r);
    q = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), q, r);
    q = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), q, vmulq_f32(r, r));
    const int32x4_t p2 = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    const float32x4_t e = vmulq_f32(q, vreinterpretq_f32_s32(p2));
    const uint32x4_t keep = vcgeq_f32(t0, vdupq_n_f32(-87.3365478515625f));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), keep));
}
static inline float32x4_t pdc_asigmoid(float32x4_t x) {
    const float32x4_t e = pdc_aexp_neg(vnegq_f32(vabsq_f32(x)));
    const float32x4_t d = vaddq_f32(vdupq_n_f32(1.0f), e);
    const float32x4_t s = vbslq_f32(vcltzq_f32(x), vdivq_f32(e, d), vdivq_f32(vdupq_n_f32(1.0f), d));
    return vbslq_f32(vceqq_f32(x, x), s, x); /* NaN stays NaN */
}
#endif
static int64_t pdc_aact_vec(int act, float *row, const float *ra, int64_t n, float alpha, float beta) {
#if PDC_V && defined(__aarch64__)
    const float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta), sixth = vdupq_n_f32(0x1.555556p-3f);
    const float32x4_t zero = vdupq_n_f32(0.0f), half = vdupq_n_f32(0.5f), one = vdupq_n_f32(1.0f);
    (void)vb; (void)sixth; (void)half;
    int64_t j = 0;
    /* one loop per activation: y from x, plus res_after */
#define PDC_AACT_LOOP(Y) for (; j + 4 <= n; j += 4) { \
        const float32x4_t x = vld1q_f32(row + j); \
        float32x4_t y = Y; \
        if (ra) y = vaddq_f32(y, vld1q_f32(ra + j)); \
        vst1q_f32(row + j, y); \
    }
    switch (act) {
    case @leaky_relu@: PDC_AACT_LOOP(vbslq_f32(vcgezq_f32(x), x, vmulq_f32(x, va))) break;
    case @sigmoid@: PDC_AACT_LOOP(pdc_asigmoid(x)) break;
    case @hard_sigmoid@: PDC_AACT_LOOP(vminq_f32(one, vmaxq_f32(zero, vfmaq_f32(vb, va, x)))) break;
    /* x * clamp(x * float32(1/6) + 0.5, 0, 1), as the scalar form */
    case @hard_swish@: PDC_AACT_LOOP(vmulq_f32(x, vminq_f32(one, vmaxq_f32(zero, vaddq_f32(vmulq_f32(x, sixth), half)))))
        break;
    case @swish@: PDC_AACT_LOOP(vmulq_f32(x, pdc_asigmoid(vmulq_f32(va, x)))) break;
    default: break;
    }
#undef PDC_AACT_LOOP
    return j;
#else
    (void)act; (void)row; (void)ra; (void)n; (void)alpha; (void)beta;
    return 0;
#endif
}
static void pdc_aact_row(int act, float (*fn)(float, float, float), float *row, const float *ra, int64_t n,
                         float alpha, float beta) {
    int64_t j = fn ? pdc_aact_vec(act, row, ra, n, alpha, beta) : 0;
    for (; j < n; j++) {
        float y = row[j];
        if (fn) y = fn(y, alpha, beta);
        if (ra) y += ra[j];
        row[j] = y;
    }
}
"""


def act_row(ctx: KernelContext) -> str:
    """Registers pdc_aact_row (see the module's docstring) and returns its name."""
    base(ctx)
    text = ACT_VEC_C
    for name, code in _C.items():
        text = text.replace(f"@{name}@", str(code))
    ctx.helper("pdc_aact_row", text)
    return "pdc_aact_row"
