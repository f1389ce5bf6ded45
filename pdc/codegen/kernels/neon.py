"""ARM kernels: the registry, the C vector layer and the epilogue shared by the neon_* generators.

ARM targets (pdc/targets/arm.py, cortex_m.py) name the vector ISA their kernels use in their
KernelConfig (ctx.config.simd): "neon64" (AArch64), "neon32" (ARMv7-A), "mve" (Cortex-M55
Helium) or "none" (Cortex-M3/M4/M7: plain C). The generators in neon_*.py are the "arm" kernel
family (`@arm_kernel(op, ...)`), which ARM targets ask before the portable one; an ARM generator
returns None for the cases it does not cover (another dtype, a runtime weight, 3-D...), and the
portable generator takes over. x86 compiles never reach ARM code.

Every vector section in the generated C sits under `#if PDC_V` with a plain C fallback after it,
so a bundle compiled with -DPDC_PLAIN_C runs the same kernels (same packing, same tiles) without
intrinsics: that build is the baseline the NEON code is measured against.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

from ..context import KernelContext
from . import kernel

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
static inline float pdc_fclamp(float s, float lo, float hi) { s = s < lo ? lo : s; return s > hi ? hi : s; }
"""

# the activations of fused ops as scalar C over `a` (alpha, beta: the activation's parameters); each
# one becomes its own static function, so a bundle links only the math it uses (a Cortex-M image
# without GELU carries no erf)
ACTIVATION_C = {
    "relu": "a > 0 ? a : (a != a ? a : 0)",
    "leaky_relu": "a >= 0 ? a : a * alpha",
    "clip": "pdc_fclamp(a, alpha, beta)",
    "sigmoid": "a >= 0 ? 1 / (1 + expf(-a)) : expf(a) / (1 + expf(a))",
    "hard_sigmoid": "pdc_fclamp(alpha * a + beta, 0, 1)",
    "hard_swish": "a * pdc_fclamp(a / 6 + 0.5f, 0, 1)",
    "gelu": "(float)(0.5 * (double)a * (1 + erf((double)a * 0.70710678118654752440)))",
    "gelu_tanh": "0.5f * a * (1 + tanhf(0.7978845608028654f * (a + 0.044715f * a * a * a)))",
    "tanh": "tanhf(a)",
}
ACT_CODES = {"none": 0, **{name: i + 1 for i, name in enumerate(ACTIVATION_C)}}


def act_helper(ctx: KernelContext, activation: str) -> str:
    """`float pdc_act_<activation>(float a, float alpha, float beta)`, registered once."""
    base(ctx)
    name = f"pdc_act_{activation}"
    return ctx.helper(name, f"static float {name}(float a, float alpha, float beta) {{\n"
                            f"    (void)alpha; (void)beta;\n    return {ACTIVATION_C[activation]};\n}}\n")


def base(ctx: KernelContext) -> None:
    ctx.helper("pdc_arm_base", BASE_C)


def c_float(x: float) -> str:
    from ..ctypes_c import float_literal
    return float_literal(float(x), "float")


class Epilogue:
    """What follows the sum of a fused conv / gemm / matmul: residual, activation.

    `clamp` (lo, hi) when the activation is a clamp the vector code applies in registers
    (none, relu, clip); otherwise `act` is an ACT_CODES code for the scalar post-pass.
    """

    def __init__(self, ctx: KernelContext, residual_input: int = 3):
        attrs = ctx.attrs if ctx.node.op.startswith("fused_") else {}
        self.activation = attrs.get("activation", "none") or "none"
        self.alpha = attrs.get("activation_alpha")
        self.beta = attrs.get("activation_beta")
        self.residual = attrs.get("residual", "none") or "none"
        self.has_r = ctx.node.op.startswith("fused_") and ctx.has_input(residual_input)
        self.r = f"in{residual_input}"
        self.supported = self.activation in ACT_CODES and self.residual in (
            "none", "before_activation", "after_activation") and (self.residual == "none" or self.has_r)
        inf = float("inf")
        if self.activation == "none":
            self.clamp = (-inf, inf)
        elif self.activation == "relu":
            self.clamp = (0.0, inf)
        elif self.activation == "clip":
            self.clamp = (float(self.alpha if self.alpha is not None else -inf),
                          float(self.beta if self.beta is not None else inf))
        else:
            self.clamp = None
        self.act = 0 if self.clamp is not None else ACT_CODES.get(self.activation, 0)
        self._ctx = ctx

    def act_fn(self) -> str:
        """The C function of a post-pass activation ("0" when the activation is a clamp or none)."""
        return act_helper(self._ctx, self.activation) if self.act else "0"

    @property
    def res_before(self) -> Optional[str]:
        return self.r if self.has_r and self.residual == "before_activation" else None

    @property
    def res_after(self) -> Optional[str]:
        return self.r if self.has_r and self.residual == "after_activation" else None

    @property
    def needs_clamp(self) -> bool:
        return self.clamp is not None and self.activation != "none"

    def c_lo_hi(self) -> tuple[str, str]:
        lo, hi = self.clamp if self.clamp is not None else (float("-inf"), float("inf"))
        return c_float(lo), c_float(hi)

    def c_alpha_beta(self) -> tuple[str, str]:
        return c_float(self.alpha or 0.0), c_float(self.beta or 0.0)


def is_f32(*types) -> bool:
    return all(t is None or t.dtype.short == "f32" for t in types)
