"""ARM kernels: the family's decorator and the C vector layer its generators share.

ARM targets (pdc/targets/arm.py, cortex_m.py) name the vector ISA their kernels use in their
KernelConfig (ctx.config.simd): "neon64" (AArch64), "neon32" (ARMv7-A), "mve" (Cortex-M55
Helium) or "none" (Cortex-M3/M4/M7: plain C). The generators in this folder are the "arm" kernel
family (`@arm_kernel(op, ...)`), which ARM targets ask before the portable one; an ARM generator
returns None for the cases it does not cover (another dtype, a runtime weight, 3-D...), and the
portable generator takes over. x86 compiles never reach ARM code.

Every vector section in the generated C sits under `#if PDC_V` with a plain C fallback after it,
so a bundle compiled with -DPDC_PLAIN_C runs the same kernels (same packing, same tiles) without
intrinsics: that build is the baseline the NEON code is measured against.
"""
from __future__ import annotations

from ...context import KernelContext
from .. import kernel
from ..activations import clamp_helper

SIMDS = ("neon64", "neon32", "mve", "none")


def arm_kernel(*ops: str):
    """Registers an ARM generator for IR ops; it returns the C body, or None to defer to the
    portable generator."""
    return kernel(*ops, family="arm")


def simd_of(ctx: KernelContext) -> str:
    """The vector ISA the ARM kernels print for."""
    return ctx.config.simd


# ---- C: the vector layer --------------------------------------------------------------------------
# One text for every ARM flavour: the preprocessor picks NEON (A64 or A32), MVE or plain C.
BASE_C = r"""
/* ---- pdc ARM kernels: the vector layer (NEON, Helium/MVE, or plain C with -DPDC_PLAIN_C) ---- */
#if !defined(PDC_PLAIN_C) && defined(__ARM_NEON)
#include <arm_neon.h>
#define PDC_V 1
#define pdc_vmax(a, b) vmaxq_f32(a, b)  /* NaN in, NaN out: like the reference */
#define pdc_vmin(a, b) vminq_f32(a, b)
#define pdc_vsel(m, a, b) vbslq_f32(m, a, b)
#define pdc_vge0(a) vcgeq_f32(a, vdupq_n_f32(0.0f))
#if defined(__aarch64__)
#define pdc_vfma(acc, x, y) vfmaq_f32(acc, x, y)
#define pdc_vfma_n(acc, x, s) vfmaq_n_f32(acc, x, s)
#else
#define pdc_vfma(acc, x, y) vmlaq_f32(acc, x, y)
#define pdc_vfma_n(acc, x, s) vmlaq_n_f32(acc, x, s)
#endif
#elif !defined(PDC_PLAIN_C) && defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2)
#include <arm_mve.h>
#define PDC_V 1
#define pdc_vfma(acc, x, y) vfmaq_f32(acc, x, y)
#define pdc_vfma_n(acc, x, s) vfmaq_n_f32(acc, x, s)
#define pdc_vsel(m, a, b) vpselq_f32(a, b, m)
#define pdc_vge0(a) vcmpgeq_n_f32(a, 0.0f)
/* MVE only has IEEE maxNum/minNum (a NaN loses); put the NaNs back so they propagate */
static inline float32x4_t pdc_vmax(float32x4_t a, float32x4_t b) {
    float32x4_t r = vmaxnmq_f32(a, b);
    r = vpselq_f32(a, r, vcmpneq_f32(a, a));
    return vpselq_f32(b, r, vcmpneq_f32(b, b));
}
static inline float32x4_t pdc_vmin(float32x4_t a, float32x4_t b) {
    float32x4_t r = vminnmq_f32(a, b);
    r = vpselq_f32(a, r, vcmpneq_f32(a, a));
    return vpselq_f32(b, r, vcmpneq_f32(b, b));
}
#else
#define PDC_V 0
#endif
#if PDC_V
typedef float32x4_t pdc_v4;
#define pdc_vld(p) vld1q_f32(p)
#define pdc_vst(p, v) vst1q_f32(p, v)
#define pdc_vdup(x) vdupq_n_f32(x)
#define pdc_vadd(a, b) vaddq_f32(a, b)
#define pdc_vsub(a, b) vsubq_f32(a, b)
#define pdc_vmul(a, b) vmulq_f32(a, b)
#define pdc_vneg(a) vnegq_f32(a)
#define pdc_vabs(a) vabsq_f32(a)
#define pdc_vld2e(p) (vld2q_f32(p).val[0]) /* p[0], p[2], p[4], p[6] */
static inline pdc_v4 pdc_vclamp(pdc_v4 v, pdc_v4 lo, pdc_v4 hi) { return pdc_vmin(hi, pdc_vmax(lo, v)); }
static inline float pdc_vhsum(pdc_v4 v) {
    float t[4];
    pdc_vst(t, v);
    return (t[0] + t[1]) + (t[2] + t[3]);
}
#endif
/* scalar forms with the reference's NaN behaviour */
static inline float pdc_fmaxn(float a, float b) { return (a != a || a > b) ? a : b; }
static inline float pdc_fminn(float a, float b) { return (a != a || a < b) ? a : b; }
"""


def base(ctx: KernelContext) -> None:
    ctx.helper("pdc_arm_base", BASE_C)
    clamp_helper(ctx)  # pdc_fclamp, the scalar clamp with the reference's NaN behaviour


def is_f32(*types) -> bool:
    return all(t is None or t.dtype.short == "f32" for t in types)


def band_rows(pad: str, rows: int, width: int, iy: str, H: int, W: int, lo: int, hi: int, left: int,
              fill: str) -> list[str]:
    """C lines that fill `band` with the `rows` input rows an output row reads (row kh: input row
    `iy`, a C expression of kh), each `width` floats: columns [lo, hi) copied from the input row
    (band column c is input column c - left), the rest and rows outside the input set to `fill`."""
    lines = [f"{pad}for (int64_t kh = 0; kh < {rows}; kh++) {{",
             f"{pad}    float *b = band + kh * {width};",
             f"{pad}    const int64_t iy = {iy};",
             f"{pad}    if (iy < 0 || iy >= {H}) {{ for (int64_t i = 0; i < {width}; i++) b[i] = {fill}; continue; }}",
             f"{pad}    for (int64_t i = 0; i < {lo}; i++) b[i] = {fill};"]
    if hi > lo:
        lines.append(f"{pad}    memcpy(b + {lo}, x + iy * {W} + {lo - left}, {hi - lo} * sizeof(float));")
    return lines + [f"{pad}    for (int64_t i = {max(hi, lo)}; i < {width}; i++) b[i] = {fill};", f"{pad}}}"]
