"""AArch64 NEON int8 kernels for qconv, qmatmul and same-shape qadd (pdc/ir/ops/qint.py),
bit-exact with the NumPy references (KERNELS.md §5 "ARM int8").

Arithmetic. Activations enter as int8: int8 as they are, uint8 with the sign bit flipped (x ^ 0x80
= x - 128), so every product is int8 x int8 and the sums wrap modulo 2^32 in int32 lanes. With x'
the flipped code and xz' the flipped zero point, acc = sum((x - xz) * w) + bias = sum(x' * w) +
(bias - xz' * sum(w)): the second term is folded per output channel at compile time into the
accumulators' start value; padding taps hold xz', which the fold cancels (the reference's padding
contributes (xz - xz) * w = 0). The int32 result is exact whenever the true accumulator fits int32:
255 * sum|w| + |bias| < 2^31 is checked per channel at compile time (else the generator declines
and the portable kernel, which accumulates in int64 where needed, takes the layer, as it takes a
bias known only at run time); y_dtype i32 (the accumulators, cast to int32 by the reference, i.e.
modulo 2^32) needs no bound.
Two instruction sets compute the products, picked at run time (getauxval(AT_HWCAP) & ASIMDDP):
- "dot": SDOT (Armv8.2 dotprod, vdotq_laneq_s32): four int8 products added to each int32 lane;
  these functions are compiled with __attribute__((target("arch=armv8.2-a+dotprod"))), the rest
  of the bundle stays armv8-a.
- "mlal" (any armv8-a): SMULL + SMLAL (vmull_s8 / vmlal_s8) put two products in each int16 lane,
  SADALP (vpadalq_s16) adds lane pairs into int32. Two products fit int16 only while no weight is
  -128 (|-128 * 127| * 2 = 32512, but (-128) * (-128) * 2 = 32768): pdc's weights are symmetric
  [-127, 127]; a layer with a -128 weight gets the unpaired form (SMULL + SADALP per product).
  These functions are compiled without gcc's pre-allocation scheduling (PDC_QA_MLAL), which
  otherwise issues every SMULL of the loop first and spills the accumulators.
PDC_FORCE_PATH=int8-dot=emulated emits the mlal kernels only (the code a core without dotprod
runs). On ARMv7 (neon32) these generators decline: the portable kernels take the layers.
Requantization: the reference's float32 rule on int32 lanes: SCVTF, FMUL by the channel's scale
(by lane for a row's channel), FCVTNS (round half to even, saturating to int32); then a saturating
narrow to int16, + y_zero (saturating), the clamp's ends other than the output type's own (SMAX /
SMIN in int16) and a saturating narrow to bytes (SQXTN for int8, SQXTUN for uint8), which is the
clamp's other ends: every saturation lands outside [lo, hi], so the result is the reference's. A
kernel's name carries the output variant (its `tag`), so layers share kernels.

qconv, dense and grouped ("neon-gemm"): per (image, group) the input is packed once into `xq`:
per channel quad a padded plane [Hp][Wp] of dwords (4 channels' codes interleaved with ST4,
padding = xz'). An output pixel's reduction quad (kh, kw, channel quad) is then one dword at a
constant offset from the pixel's window origin in those planes, so a pixel block's im2col panel
[KQ][PB][4] is built by copying runs of dwords (stride 1: 16-byte copies; stride 2: LD2
de-interleaving), per thread, in its slot of the scratch. The microkernel keeps MR output channels
x NR pixels in int32x4 accumulators (4 pixels of one channel each, so results store straight
into NCHW rows): dot: per quad NR/4 activation vectors (4 pixels x 4 codes) and MR/4 weight
vectors (4 channels x 4 codes), one SDOT by lane per (channel, 4 pixels), MR x NR = 8 x 12, 12 x 8,
8 x 8, 4 x 16 or 4 x 8 by a cost model; mlal: 4 channels x 8 pixels at a time over pairs of quads,
the channel's weight quad broadcast, accumulators of pixel pairs (SADALP) added pairwise at the
end. Weights are packed at compile time [G][MB][KQ][MR][4], zero-padded (channels past mg, codes
past cg). 1x1 stride-1 unpadded convolutions ("neon-pointwise") skip the panel: the packed planes
are the GEMM's activation operand as they are.
Depthwise ("neon-depthwise": one input channel per group, any kernel, stride, dilation, pads,
channel multiplier): per (image, channel) the padded plane (codes flipped, padding xz') goes to
the thread's scratch; per output row, 16 (or 8) outputs at a time take the taps as vector loads
(stride 2-4: LD2-LD4 de-interleaving, larger: a gather), two taps per SMULL + SMLAL into int16
lanes (one where a weight is -128), widened into int32 (SADDW); the last vector of a row overlaps
the previous one instead of a scalar tail. The layer's geometry and taps are compiled into its
own task function.
qmatmul ("neon"): b [K, N] packed [N/NR][KQ][NR][4] (NR columns x one quad per vector); MR rows of
a read in place, 16 codes at a time, each quad broadcast by lane (SDOT by element) or by DUP
(mlal); per-column scales as vectors in the epilogue.
qadd ("neon", same-shape operands, e.g. residual adds; broadcasts take the portable kernel):
8 elements per step, the codes widened to float32, the reference's two fmas (FMLA), clamped to
[lo, hi] in float, FCVTNS, narrowed.
Work is split over the thread pool by output (image, group, pixel block, channel chunk) units.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...context import KernelContext
from ...ctypes_c import float_literal
from ....ir.ops.qint import qadd_constant
from .. import qint as _portable  # noqa: F401  (declares the portable paths first: the general ones)
from ..paths import declare, forced, mark, take
from ..qint import (PARALLEL_MIN_MACS, QconvGeometry, _clamp, job_lines, native_qconv_weights, native_qmatmul_operands,
                    scale_table, slots_call, wrap32)
from ..quant import add_weight
from .vector import arm_kernel

declare("qconv", "portable", "neon-gemm", "neon-pointwise", "neon-depthwise")
declare("qmatmul", "portable", "neon")
declare("qadd", "portable", "neon")
# the ISA of the int8 products: SDOT where the core has dotprod (checked at run time), else
# SMULL/SMLAL/SADALP; "emulated" emits the latter only (x86/qint.py names its VNNI choice alike)
declare("int8-dot", "dispatch", "emulated")

INT32_MAX = (1 << 31) - 1
PANEL_BYTES = 192 * 1024  # a pixel block's activation panel (KQ x PB dwords), within L2
XQ_SLACK = 1024          # bytes readable past a packed input (tile and copy over-reads)

COMMON = r"""#include <arm_neon.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
/* pdc's AArch64 int8 kernels (arm/qint.py). PDC_QA_DOT: the SDOT functions (a macro: the helper
   splitter finds a function's name at its first '(') */
#if defined(__clang__)
#define PDC_QA_DOT __attribute__((target("dotprod")))
#define PDC_QA_MLAL
#else
#define PDC_QA_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
/* the mlal kernels: gcc's pre-allocation scheduling would issue every SMULL before the SADALPs and
   spill the accumulators */
#define PDC_QA_MLAL __attribute__((optimize("no-schedule-insns")))
#endif
static inline int pdc_qa_has_dot(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return 1;
#elif defined(__linux__)
    return (int)((getauxval(AT_HWCAP) >> 20) & 1);  /* HWCAP_ASIMDDP */
#else
    return 0;
#endif
}
/* a channel block's (or column block's) epilogue: folded bias, scale (NULL for int32 outputs), y_zero
   and the clamp */
typedef struct { const int32_t *bias; const float *scale; int32_t yz, lo, hi; } pdc_qa_rq;
/* the microkernel of a dense conv: np pixels (whole tiles readable) x `rows` channels of a block */
typedef void (*pdc_qa_ukr_fn)(const int8_t *a, int64_t as, const int8_t *w, int64_t KQ, const pdc_qa_rq *q,
                              void *y, int64_t ys, int64_t np, int rows);
static inline void pdc_qa_st4(void *p, int8x8_t v) {
    const int32_t t = vget_lane_s32(vreinterpret_s32_s8(v), 0);
    memcpy(p, &t, 4);
}
/* int16 lanes + y_zero, clamped (8 and 4 lanes) */
static inline int16x8_t pdc_qa_clamp8(int16x8_t v, int16x8_t yz, int16x8_t lo, int16x8_t hi) {
    return vminq_s16(vmaxq_s16(vqaddq_s16(v, yz), lo), hi);
}
static inline int16x4_t pdc_qa_clamp4(int16x4_t v, int16x8_t yz, int16x8_t lo, int16x8_t hi) {
    return vmin_s16(vmax_s16(vqadd_s16(v, vget_low_s16(yz)), vget_low_s16(lo)), vget_low_s16(hi));
}
/* rint(f32(acc) * sc), ties to even, saturated to int32 */
static inline int32x4_t pdc_qa_requant(int32x4_t acc, float32x4_t sc) {
    return vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(acc), sc));
}
"""


def _common(ctx: KernelContext) -> None:
    ctx.helper("pdc_qa_common", COMMON)


def _dot_only_emulated() -> bool:
    return forced("int8-dot") == "emulated"


# ---- the output side ---------------------------------------------------------------------------------
class _Out:
    """A layer's output side: y_dtype i32 (the accumulators), or the requantization, with its
    per-channel tables and its C spellings. The clamp's ends
    that are the output type's own come free with the saturating narrow to bytes (SQXTN for int8,
    SQXTUN for uint8): `tag` names the variant (kernels are shared by the layers of one tag)."""

    def __init__(self, ctx: KernelContext, w2d: np.ndarray, xzp: int):
        """w2d [channels, K] int8 weights; xzp the zero point as a flipped (int8) code."""
        channels = w2d.shape[0]
        w64 = w2d.astype(np.int64)
        bias = np.zeros(channels, np.int64)
        self.ok = True
        if ctx.has_input(2):
            b = ctx.const(2)
            if b is None:  # a bias known only at run time: the portable kernel adds it in int64
                self.ok = False
                return
            bias = np.asarray(b, np.int64).reshape(-1)
        self.y32 = ctx.outputs[0].dtype.short == "i32"
        self.bias = bias - xzp * w64.sum(axis=1)
        self.pair = bool(w2d.size == 0 or int(w2d.min()) > -128)
        if self.y32:
            self.kind = self.tag = "i32"
            return
        amax = 255 * np.abs(w64).sum(axis=1) + np.abs(bias)
        if amax.max(initial=0) > INT32_MAX:
            self.ok = False
            return
        self.scale = scale_table(ctx, channels)
        self.kind = "f"
        self.yz = int(ctx.attrs.get("y_zero", 0))
        self.lo, self.hi = _clamp(ctx)
        self.u8 = ctx.outputs[0].dtype.short == "u8"
        tmin, tmax = (0, 255) if self.u8 else (-128, 127)
        self.need_lo, self.need_hi = self.lo > tmin, self.hi < tmax
        self.tag = (self.kind + ("u" if self.u8 else "s") + ("l" if self.need_lo else "")
                    + ("h" if self.need_hi else ""))

    def tables(self, ctx: KernelContext, pad) -> dict:
        """C pointers to the per-channel tables laid out by pad(values, fill) (padded channels)."""
        t = dict(bias=add_weight(ctx, wrap32(pad(self.bias, 0)), "int32_t"))
        if not self.y32:
            t["scale"] = add_weight(ctx, pad(self.scale, np.float32(0)), "float")
        return t

    def fields(self) -> dict:
        return {} if self.y32 else dict(yz=self.yz, lo=self.lo, hi=self.hi)

    # -- C
    def setup(self, q: str = "q") -> str:
        if self.y32:
            return ""
        v = [f"yz = vdupq_n_s16((int16_t){q}->yz)"]
        if self.need_lo:
            v.append(f"lo = vdupq_n_s16((int16_t){q}->lo)")
        if self.need_hi:
            v.append(f"hi = vdupq_n_s16((int16_t){q}->hi)")
        return "    const int16x8_t " + ", ".join(v) + ";"

    def bcast_params(self, idx: str, q: str = "q") -> str:
        """One channel's scale broadcast over the lanes (as `sq_`)."""
        return f"const float32x4_t sq_ = vld1q_dup_f32({q}->scale + {idx});"

    def vec_params(self, g: int, off: str, q: str = "q") -> str:
        """Four channels' scales as the vector sv{g} (rows 4g..4g+3 from table offset off)."""
        return f"const float32x4_t sv{g} = vld1q_f32({q}->scale + {off});"

    def _rq(self, acc: str, params) -> str:
        kind, *p = params
        if kind == "bcast":
            return f"pdc_qa_requant({acc}, sq_)"
        if kind == "lane":  # (g, lane): the row's scale by element
            g, lane = p
            return f"vcvtnq_s32_f32(vmulq_laneq_f32(vcvtq_f32_s32({acc}), sv{g}, {lane}))"
        off, q = p  # per-lane scales (columns) from the table
        return f"pdc_qa_requant({acc}, vld1q_f32({q}->scale + {off}))"

    def _narrow8(self, h: str) -> str:
        return _narrow_s16(h, self.need_lo, self.need_hi, self.u8)

    def store_lines(self, ind: str, accs: list, dst: str, mode: str, cnt: str = "", params=("bcast",)) -> list:
        """C lines storing the 4 * len(accs) outputs of one row (acc v: outputs 4v..4v+3) at dst
        (a uint8_t * / int32_t * expression); mode "full": all of them, "part": the first `cnt`, else
        a C condition choosing between the two at run time. params: ("bcast",) (mq_, sq_ declared),
        ("lane", g, lane) (sv{g} declared) or ("cols", off, q)."""
        nr = 4 * len(accs)
        if self.y32:
            def st(base):
                return [f"vst1q_s32({base} + {4 * v}, {a});" for v, a in enumerate(accs)]
            pre = []
        else:
            pre = []
            rs = []
            for v, a in enumerate(accs):
                prm = params if params[0] != "cols" else ("cols", f"{params[1]} + {4 * v}", params[2])
                pre.append(f"const int32x4_t r{v}_ = {self._rq(a, prm)};")
                rs.append(f"r{v}_")
            chunks = []  # (int8x16 or int8x8 value, vectors, byte offset)
            for c0 in range(0, len(rs), 4):
                grp = rs[c0:c0 + 4]
                b = f"b{c0 // 4}_"
                h0 = f"vqmovn_high_s32(vqmovn_s32({grp[0]}), {grp[1 if len(grp) > 1 else 0]})"
                if len(grp) <= 2:
                    pre.append(f"const int8x8_t {b} = {self._narrow8(h0)};")
                else:
                    h1 = f"vqmovn_high_s32(vqmovn_s32({grp[2]}), {grp[3 if len(grp) > 3 else 2]})"
                    pre.append(f"const int8x16_t {b} = vcombine_s8({self._narrow8(h0)}, {self._narrow8(h1)});")
                chunks.append((b, len(grp), 16 * (c0 // 4)))

            def st(base):
                o = []
                for b, n, off in chunks:
                    p = f"{base} + {off}" if off else base
                    if n == 1:
                        o.append(f"pdc_qa_st4({p}, {b});")
                    elif n == 2:
                        o.append(f"vst1_s8((int8_t *)({p}), {b});")
                    elif n == 3:
                        o.append(f"vst1_s8((int8_t *)({p}), vget_low_s8({b})); pdc_qa_st4({p} + 8, vget_high_s8({b}));")
                    else:
                        o.append(f"vst1q_s8((int8_t *)({p}), {b});")
                return o
        L = [ind + x for x in pre]
        tmp = [f"int32_t t_[{nr}];" if self.y32 else f"uint8_t t_[{nr + 16}];"] + st("t_") + \
              [f"memcpy({dst}, t_, (size_t)({cnt}){' * 4' if self.y32 else ''});"]
        if mode == "full":
            L += [ind + x for x in st(dst)]
        elif mode == "part":
            L += [ind + "{ " + " ".join(tmp) + " }"]
        else:
            L += [f"{ind}if ({mode}) {{"] + [f"{ind}    {x}" for x in st(dst)] + [f"{ind}}} else {{"]
            L += [f"{ind}    {x}" for x in tmp] + [f"{ind}}}"]
        return L


# ---- qconv: dense / grouped / pointwise ----------------------------------------------------------------
CONV_JOB = """/* An int8 2-D convolution on AArch64 NEON (arm/qint.py): x [N][C][H][W] -> y [N][M][OH][OW]. */
typedef struct {
    const int8_t *x;
    void *y;
    int8_t *xq;             /* packed input: per (image, group) xq_bs bytes: cq planes [Hp][Wp] of dwords */
    int8_t *panel;          /* per-slot im2col panels [KQ][PS] dwords (slot stride panel_bs bytes); NULL: pointwise */
    const int8_t *w;        /* packed weights [G][MB][KQ][MR][4] */
    const int32_t *koff;    /* byte offset of reduction quad k (tap, channel quad) from a pixel's window origin */
    const int32_t *bias;    /* per padded channel [G][MB * MR] */
    const float *scale;
    pdc_qa_ukr_fn ukr;
    int64_t N, C, H, W, M, G, cg, mg, cq, OW, P, sh, sw, Hp, Wp, pt, pl, xq_bs, panel_bs, PS;
    int64_t KQ, MB, MR, PB, npb, nmc, mbc;
    int32_t pad, flip, yz, lo, hi, y32;
} pdc_qa_conv_job;
"""

PACK = r"""/* n codes of four rows (x ^ flip) interleaved into n dwords at d: 16 (or 8) at a time, the last
   chunk overlapping the previous one, scalar only below 8 */
static inline void pdc_qa_quads(int8_t *d, const int8_t *r0, const int8_t *r1, const int8_t *r2, const int8_t *r3,
                                int64_t n, int8x16_t fl) {
    if (n >= 16) {
        for (int64_t t = 0;; t += 16) {
            if (t > n - 16) t = n - 16;
            int8x16x4_t v;
            v.val[0] = veorq_s8(vld1q_s8(r0 + t), fl);
            v.val[1] = veorq_s8(vld1q_s8(r1 + t), fl);
            v.val[2] = veorq_s8(vld1q_s8(r2 + t), fl);
            v.val[3] = veorq_s8(vld1q_s8(r3 + t), fl);
            vst4q_s8(d + 4 * t, v);
            if (t + 16 >= n) break;
        }
    } else if (n >= 8) {
        for (int64_t t = 0;; t = n - 8) {
            int8x8x4_t v;
            v.val[0] = veor_s8(vld1_s8(r0 + t), vget_low_s8(fl));
            v.val[1] = veor_s8(vld1_s8(r1 + t), vget_low_s8(fl));
            v.val[2] = veor_s8(vld1_s8(r2 + t), vget_low_s8(fl));
            v.val[3] = veor_s8(vld1_s8(r3 + t), vget_low_s8(fl));
            vst4_s8(d + 4 * t, v);
            if (t + 8 >= n) break;
        }
    } else {
        const int8_t f = vgetq_lane_s8(fl, 0);
        for (int64_t t = 0; t < n; t++) {
            d[4 * t] = (int8_t)(r0[t] ^ f);
            d[4 * t + 1] = (int8_t)(r1[t] ^ f);
            d[4 * t + 2] = (int8_t)(r2[t] ^ f);
            d[4 * t + 3] = (int8_t)(r3[t] ^ f);
        }
    }
}
/* The packed input: unit = (image, group, channel quad); the quad's padded plane, the channels'
   codes (x ^ flip) interleaved per pixel, padding = pad, channels past the group's any codes */
static void pdc_qa_pack(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_qa_conv_job *j = (const pdc_qa_conv_job *)vj;
    const int64_t H = j->H, W = j->W, Hp = j->Hp, Wp = j->Wp, pt = j->pt, pl = j->pl, cq = j->cq, G = j->G;
    const int64_t pr = Wp - pl - W, HW = H * W;
    const int8x16_t fl = vdupq_n_s8((int8_t)j->flip);
    (void)slot;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t c4 = u % cq, ng = u / cq, g = ng % G, n = ng / G;
        const int64_t nch = j->cg - 4 * c4 < 4 ? j->cg - 4 * c4 : 4;
        const int8_t *x0 = j->x + (n * j->C + g * j->cg + 4 * c4) * HW;
        const int8_t *r0 = x0, *r1 = x0 + (nch > 1) * HW, *r2 = x0 + (nch > 2) * 2 * HW, *r3 = x0 + (nch > 3) * 3 * HW;
        int8_t *d = j->xq + ng * j->xq_bs + c4 * Hp * Wp * 4;
        if (Hp == H && Wp == W) {  /* no padding: the plane as one row */
            pdc_qa_quads(d, r0, r1, r2, r3, HW, fl);
            continue;
        }
        for (int64_t i = 0; i < Hp; i++, d += Wp * 4) {
            const int64_t ih = i - pt;
            if (ih < 0 || ih >= H) {
                memset(d, j->pad, (size_t)(Wp * 4));
                continue;
            }
            if (pl) memset(d, j->pad, (size_t)(pl * 4));
            if (pr) memset(d + (pl + W) * 4, j->pad, (size_t)(pr * 4));
            pdc_qa_quads(d + pl * 4, r0 + ih * W, r1 + ih * W, r2 + ih * W, r3 + ih * W, W, fl);
        }
    }
}
"""

IM2COL = r"""/* A pixel block's panel [KQ][PS] dwords: pixel p0 + t's quad k = the dword koff[k] bytes from its
   window origin in the packed planes (runs of one output row copied at once, a few dwords past
   each run: the panel rows have slack, the planes readable slack) */
static void pdc_qa_im2col(const pdc_qa_conv_job *j, const int8_t *xg, int8_t *panel, int64_t p0, int64_t np) {
    const int64_t OW = j->OW, Wp = j->Wp, sh = j->sh, sw = j->sw, KQ = j->KQ, PS4 = j->PS * 4;
    const int32_t *koff = j->koff;
    int64_t oh = p0 / OW, ow = p0 % OW;
    for (int64_t jx = 0; jx < np; ow = 0, oh++) {
        const int64_t n = OW - ow < np - jx ? OW - ow : np - jx;
        const int8_t *s0 = xg + (oh * sh * Wp + ow * sw) * 4;
        int8_t *d0 = panel + jx * 4;
        if (sw == 1) {
            for (int64_t k = 0; k < KQ; k++) {
                const int8_t *s = s0 + koff[k];
                int8_t *d = d0 + k * PS4;
                for (int64_t t = 0; t < n; t += 4) vst1q_s8(d + 4 * t, vld1q_s8(s + 4 * t));
            }
        } else if (sw == 2) {
            for (int64_t k = 0; k < KQ; k++) {
                const int32_t *s = (const int32_t *)(s0 + koff[k]);
                int8_t *d = d0 + k * PS4;
                for (int64_t t = 0; t < n; t += 4) vst1q_s8(d + 4 * t, vreinterpretq_s8_s32(vld2q_s32(s + 2 * t).val[0]));
            }
        } else {
            for (int64_t k = 0; k < KQ; k++) {
                const int8_t *s = s0 + koff[k];
                int8_t *d = d0 + k * PS4;
                for (int64_t t = 0; t < n; t++) memcpy(d + 4 * t, s + 4 * t * sw, 4);
            }
        }
        jx += n;
    }
}
"""

CONV_TASK = r"""/* unit = (image, group, pixel block, channel-block chunk) */
static void pdc_qa_conv_task(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_qa_conv_job *j = (const pdc_qa_conv_job *)vj;
    int8_t *panel = j->panel ? j->panel + slot * j->panel_bs : 0;
    const int64_t P = j->P, PB = j->PB, MB = j->MB, MR = j->MR, KQ = j->KQ, mg = j->mg;
    int64_t packed = -1;
    pdc_qa_rq q;
    q.yz = j->yz; q.lo = j->lo; q.hi = j->hi;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t mc = u % j->nmc, r = u / j->nmc, pb = r % j->npb, ng = r / j->npb, g = ng % j->G, n = ng / j->G;
        const int64_t p0 = pb * PB, np = P - p0 < PB ? P - p0 : PB;
        const int8_t *xg = j->xq + ng * j->xq_bs, *a;
        int64_t as;
        if (panel) {
            if (r != packed) {
                pdc_qa_im2col(j, xg, panel, p0, np);
                packed = r;
            }
            a = panel;
            as = j->PS * 4;
        } else {
            a = xg + p0 * 4;
            as = j->Hp * j->Wp * 4;
        }
        const int64_t mb1 = (mc + 1) * j->mbc < MB ? (mc + 1) * j->mbc : MB;
        for (int64_t mb = mc * j->mbc; mb < mb1; mb++) {
            const int64_t t = g * MB * MR + mb * MR, m0 = g * mg + mb * MR;
            q.bias = j->bias + t;
            q.scale = j->scale ? j->scale + t : 0;
            const int rows = (int)(mg - mb * MR < MR ? mg - mb * MR : MR);
            const int64_t yo = (n * j->M + m0) * P + p0;
            void *y = j->y32 ? (void *)((int32_t *)j->y + yo) : (void *)((uint8_t *)j->y + yo);
            j->ukr(a, as, j->w + (g * MB + mb) * KQ * MR * 4, KQ, &q, y, P, np, rows);
        }
    }
}
"""


def _ukr_head(name: str, attr: str) -> str:
    return (f"static {attr}void {name}(const int8_t *a, int64_t as, const int8_t *w, int64_t KQ, const pdc_qa_rq *q, "
            "void *yv, int64_t ys, int64_t np, int rows) {")


def _ydecl(out: _Out) -> str:
    return "    int32_t *y = (int32_t *)yv;" if out.y32 else "    uint8_t *y = (uint8_t *)yv;"


def _ukr_dot(mr: int, nv: int, out: _Out) -> tuple[str, str]:
    """SDOT microkernel: MR channels (weight vectors of 4) x 4 NV pixels per tile, tiles over np."""
    nr = 4 * nv
    name = f"pdc_qa_cuk_d{mr}x{nr}_{out.tag}"
    acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]
    L = [f"/* dot: {mr} channels x {nr} pixels per tile */", _ukr_head(name, "PDC_QA_DOT "), _ydecl(out), out.setup(),
         f"    for (int64_t p = 0; p < np; p += {nr}) {{",
         "        const int8_t *ap = a + p * 4, *wp = w;"]
    for g in range(mr // 4):
        L.append(f"        const int32x4_t bv{g} = vld1q_s32(q->bias + {4 * g});")
    for i in range(mr):
        L.append(f"        int32x4_t {acc[i][0]} = vdupq_laneq_s32(bv{i // 4}, {i % 4})"
                 + "".join(f", {acc[i][v]} = {acc[i][0]}" for v in range(1, nv)) + ";")
    L.append("#pragma GCC unroll 4")
    L.append(f"        for (int64_t k = 0; k < KQ; k++, ap += as, wp += {mr * 4}) {{")
    L.append("            " + " ".join(f"const int8x16_t x{v} = vld1q_s8(ap + {16 * v});" for v in range(nv)))
    L.append("            " + " ".join(f"const int8x16_t w{g} = vld1q_s8(wp + {16 * g});" for g in range(mr // 4)))
    for i in range(mr):
        L.append("            " + " ".join(f"{acc[i][v]} = vdotq_laneq_s32({acc[i][v]}, x{v}, w{i // 4}, {i % 4});"
                                           for v in range(nv)))
    L.append("        }")
    if not out.y32:
        L += [f"        {out.vec_params(g, str(4 * g))}" for g in range(mr // 4)]
    for fast in (True, False):
        if fast:  # a whole tile: no row guards, stores in place
            L.append(f"        if (rows == {mr} && np - p >= {nr}) {{")
        else:
            L.append("        } else {")
            L.append(f"            const int full_ = np - p >= {nr};")
        for i in range(mr):
            L.append(f"            if (rows > {i}) {{" if i and not fast else "            {")
            L += out.store_lines("                ", acc[i], f"y + {i} * ys + p", "full" if fast else "full_", "np - p",
                                 ("lane", i // 4, i % 4))
            L.append("            }")
    L += ["        }", "    }", "}"]
    return name, "\n".join(x for x in L if x) + "\n"


def _ukr_mlal(mr: int, pair: bool, out: _Out) -> tuple[str, str]:
    """SMULL/SMLAL/SADALP microkernel: 4 channels x 8 pixels at a time over pairs of quads."""
    name = f"pdc_qa_cuk_m{mr}{'p' if pair else 'n'}_{out.tag}"
    L = [f"/* mlal: the {mr} channels in groups of 4 x 8 pixels{'' if pair else ', one product per int16 lane'} */",
         _ukr_head(name, "PDC_QA_MLAL "), _ydecl(out), out.setup(),
         "    for (int64_t p = 0; p < np; p += 8) {",
         "        const int full_ = np - p >= 8;"]
    for i0 in range(0, mr, 4):
        L.append(f"        if (rows > {i0}) {{" if i0 else "        {")
        L.append("            const int8_t *ap = a + p * 4, *wp = w + " + str(i0 * 4) + ";")
        for i in range(4):
            L.append(f"            int32x4_t l{i}_0 = vdupq_n_s32(0), l{i}_1 = l{i}_0, h{i}_0 = l{i}_0, h{i}_1 = l{i}_0;")
        L.append("            int64_t k = 0;")
        L.append(f"            for (; k + 2 <= KQ; k += 2, ap += 2 * as, wp += {2 * mr * 4}) {{")
        L.append("                const int8x16_t xa0 = vld1q_s8(ap), xa1 = vld1q_s8(ap + 16), "
                 "xb0 = vld1q_s8(ap + as), xb1 = vld1q_s8(ap + as + 16);")
        L.append(f"                const int32x4_t wva = vreinterpretq_s32_s8(vld1q_s8(wp)), "
                 f"wvb = vreinterpretq_s32_s8(vld1q_s8(wp + {mr * 4}));")
        for i in range(4):
            L.append(f"                {{ const int8x16_t wa = vreinterpretq_s8_s32(vdupq_laneq_s32(wva, {i})), "
                     f"wb = vreinterpretq_s8_s32(vdupq_laneq_s32(wvb, {i}));")
            for v in range(2):
                if pair:
                    L.append(f"                  l{i}_{v} = vpadalq_s16(l{i}_{v}, vmlal_s8(vmull_s8(vget_low_s8(xa{v}), vget_low_s8(wa)), "
                             f"vget_low_s8(xb{v}), vget_low_s8(wb)));")
                    L.append(f"                  h{i}_{v} = vpadalq_s16(h{i}_{v}, vmlal_high_s8(vmull_high_s8(xa{v}, wa), xb{v}, wb));")
                else:
                    L.append(f"                  l{i}_{v} = vpadalq_s16(vpadalq_s16(l{i}_{v}, "
                             f"vmull_s8(vget_low_s8(xa{v}), vget_low_s8(wa))), vmull_s8(vget_low_s8(xb{v}), vget_low_s8(wb)));")
                    L.append(f"                  h{i}_{v} = vpadalq_s16(vpadalq_s16(h{i}_{v}, vmull_high_s8(xa{v}, wa)), "
                             f"vmull_high_s8(xb{v}, wb));")
            L.append("                }")
        L.append("            }")
        L.append("            if (k < KQ) {")
        L.append("                const int8x16_t xa0 = vld1q_s8(ap), xa1 = vld1q_s8(ap + 16);")
        L.append("                const int32x4_t wva = vreinterpretq_s32_s8(vld1q_s8(wp));")
        for i in range(4):
            L.append(f"                {{ const int8x16_t wa = vreinterpretq_s8_s32(vdupq_laneq_s32(wva, {i}));")
            for v in range(2):
                L.append(f"                  l{i}_{v} = vpadalq_s16(l{i}_{v}, vmull_s8(vget_low_s8(xa{v}), vget_low_s8(wa)));")
                L.append(f"                  h{i}_{v} = vpadalq_s16(h{i}_{v}, vmull_high_s8(xa{v}, wa));")
            L.append("                }")
        L.append("            }")
        L.append("            const int32x4_t bv = vld1q_s32(q->bias + " + str(i0) + ");")
        if not out.y32:
            L.append("            " + out.vec_params(0, str(i0)))
        for i in range(4):
            L.append(f"            if (rows > {i0 + i}) {{" if i0 + i else "            {")
            L.append(f"                const int32x4_t b = vdupq_laneq_s32(bv, {i});")
            L.append(f"                const int32x4_t c0 = vaddq_s32(vpaddq_s32(l{i}_0, h{i}_0), b), "
                     f"c1 = vaddq_s32(vpaddq_s32(l{i}_1, h{i}_1), b);")
            L += out.store_lines("                ", ["c0", "c1"], f"y + {i0 + i} * ys + p", "full_", "np - p",
                                 ("lane", 0, i))
            L.append("            }")
        L.append("        }")
    L += ["    }", "}"]
    return name, "\n".join(x for x in L if x) + "\n"


def _narrow_s16(h: str, need_lo: bool, need_hi: bool, u8: bool) -> str:
    """int16x8 h + y_zero (yz), clamped to lo / hi where the type's own ends do not, as bytes (int8x8)."""
    v = f"vqaddq_s16({h}, yz)"
    if need_lo:
        v = f"vmaxq_s16({v}, lo)"
    if need_hi:
        v = f"vminq_s16({v}, hi)"
    return f"vreinterpret_s8_u8(vqmovun_s16({v}))" if u8 else f"vqmovn_s16({v})"


class _Geo(QconvGeometry):
    def __init__(self, ctx: KernelContext):
        super().__init__(ctx)
        self.P = self.OH * self.OW
        self.Hp, self.Wp = self.H + self.pt + self.pb, self.W + self.pl + self.pr

    @property
    def macs(self) -> int:
        return self.N * self.M * self.P * self.cg * self.KH * self.KW


def _conv_setup(ctx: KernelContext):
    w = native_qconv_weights(ctx) if ctx.config.simd == "neon64" else None
    if w is None:
        return None
    g = _Geo(ctx)
    flip = 128 if ctx.inputs[0].dtype.short == "u8" else 0
    xzp = int(ctx.attrs.get("x_zero", 0)) - flip  # the zero point as a flipped code
    out = _Out(ctx, w.reshape(g.M, -1), xzp)
    if not out.ok:
        return None
    return g, w, out, xzp, flip


# dot tiles (MR channels, NV vectors of 4 pixels): 4 * MR * NV / 4 accumulators + operands <= 32 registers
DOT_TILES = ((8, 3), (12, 2), (8, 2), (4, 4), (4, 2))


def _tile_cost(rows: int, cols: int, mr: int, nr: int, units_other: int, threads: int) -> float:
    """Relative instructions of an MR x NR tiling: padded work / (SDOTs per SDOT + loads)."""
    nb, npb = -(-rows // mr), -(-cols // nr)
    units = units_other * nb * npb
    sdots = mr * nr / 4
    work = nb * mr * npb * nr * (sdots + mr / 4 + nr / 4 + 1.5) / sdots
    if threads > 1 and units > 1:
        work *= -(-units // threads) * threads / units
    return work


def _variant(ctx: KernelContext, dot: tuple, mlal: tuple) -> str:
    """The C expression of the microkernel to run: dot (name, code) where the core has dotprod,
    else mlal (name, code); registers the helpers it names."""
    ctx.helper(mlal[0], mlal[1])
    if _dot_only_emulated():
        return mlal[0]
    ctx.helper(dot[0], dot[1])
    return f"(pdc_qa_has_dot() ? {dot[0]} : {mlal[0]})"


def _qconv_gemm(ctx: KernelContext, g: _Geo, w: np.ndarray, out: _Out, xzp: int, flip: int,
                pointwise: bool) -> Optional[str]:
    threads = ctx.config.threads if ctx.config.parallel else 1
    mr, nv = min(DOT_TILES, key=lambda t: _tile_cost(g.mg, g.P, t[0], 4 * t[1], g.N * g.G, threads))
    nr = 4 * nv
    cq = -(-g.cg // 4)
    taps = [(kh, kw) for kh in range(g.KH) for kw in range(g.KW)]
    KQ = len(taps) * cq
    MB = -(-g.mg // mr)
    plane = g.Hp * g.Wp * 4
    xq_bs = -(-(cq * plane + XQ_SLACK) // 64) * 64
    if g.N * g.G * xq_bs >= 2 ** 31:
        return None
    # pixel blocks: a multiple of both tiles' widths (dot NR, mlal 8), the panel about PANEL_BYTES
    unit = nr * 8 // math.gcd(nr, 8)
    whole = -(-g.P // unit) * unit
    PB = min(whole, max(unit, PANEL_BYTES // (KQ * 4) // unit * unit))
    npb = -(-g.P // PB)
    parallel = ctx.split(g.macs, PARALLEL_MIN_MACS)
    nmc = 1
    if parallel and g.N * g.G * npb < 2 * threads:
        nmc = min(MB, -(-2 * threads // (g.N * g.G * npb)))
    mbc = -(-MB // nmc)
    nmc = -(-MB // mbc)
    units = g.N * g.G * npb * nmc
    # weights [G][MB][KH][KW][cq][MR][4] (quad k = (kh, kw, channel quad)), zero-padded
    wp = np.zeros((g.G, MB * mr, cq * 4, g.KH, g.KW), np.int8)
    wp[:, :g.mg, :g.cg] = w.reshape(g.G, g.mg, g.cg, g.KH, g.KW)
    wp = wp.reshape(g.G, MB, mr, cq, 4, g.KH, g.KW).transpose(0, 1, 5, 6, 3, 2, 4)
    koff = np.array([c4 * plane + (kh * g.dh * g.Wp + kw * g.dw) * 4 for kh, kw in taps for c4 in range(cq)],
                    np.int64)
    if koff.max(initial=0) >= 2 ** 31:
        return None

    def padded(v, fill):
        v = np.asarray(v)
        t = np.full((g.G, MB * mr), fill, v.dtype)
        t[:, :g.mg] = v.reshape(g.G, g.mg)
        return t.reshape(-1)

    slots = ctx.slots(parallel and units > 1)
    pack_units = g.N * g.G * cq
    PS = PB + 4
    _common(ctx)
    ctx.helper("pdc_qa_conv_job", CONV_JOB)
    ctx.helper("pdc_qa_pack", PACK)
    ctx.helper("pdc_qa_im2col", IM2COL)
    ctx.helper("pdc_qa_conv_task", CONV_TASK)
    ukr = _variant(ctx, _ukr_dot(mr, nv, out), _ukr_mlal(mr, out.pair, out))
    fields = dict(x="(const int8_t *)in0", y="(void *)out0", xq=ctx.scratch(g.N * g.G * xq_bs, "int8_t", 1),
                  w=add_weight(ctx, np.ascontiguousarray(wp).reshape(-1), "int8_t"), **out.tables(ctx, padded),
                  ukr=ukr, N=g.N, C=g.C, H=g.H, W=g.W, M=g.M, G=g.G, cg=g.cg, mg=g.mg, cq=cq, OW=g.OW, P=g.P,
                  sh=g.sh, sw=g.sw, Hp=g.Hp, Wp=g.Wp, pt=g.pt, pl=g.pl, xq_bs=xq_bs, KQ=KQ, MB=MB, MR=mr, PB=PB,
                  npb=npb, nmc=nmc, mbc=mbc, pad=xzp, flip=flip, y32=int(out.y32), **out.fields())
    if not pointwise:
        panel, stride = ctx.thread_scratch(KQ * PS * 4, slots, "int8_t", 1)
        fields.update(panel=panel, panel_bs=stride, PS=PS,
                      koff=add_weight(ctx, koff.astype(np.int32), "int32_t"))
    lines = job_lines("pdc_qa_conv_job", fields)
    lines.append(slots_call("pdc_qa_pack", pack_units, slots if pack_units > 1 else 1))
    lines.append(slots_call("pdc_qa_conv_task", units, slots))
    return "\n".join(lines)


# ---- qconv: depthwise ---------------------------------------------------------------------------------
DW_JOB = """/* An int8 depthwise convolution on AArch64 NEON (arm/qint.py): one input channel per group. */
typedef struct {
    const int8_t *x;
    void *y;
    int8_t *plane;          /* per-slot padded plane (slot stride plane_bs bytes) */
    const int8_t *w;        /* [M][KH * KW] */
    const int32_t *bias;
    const float *scale;
    int64_t plane_bs;
    int32_t flip, pad, yz, lo, hi;
} pdc_qa_dw_job;
"""


def _tap_load(vw: int, sw: int, ptr: str) -> str:
    """vw (16 or 8) codes at ptr, ptr + sw, ..."""
    q = "q" if vw == 16 else ""
    if sw == 1:
        return f"vld1{q}_s8({ptr})"
    if sw <= 4:
        return f"vld{sw}{q}_s8({ptr}).val[0]"
    return f"pdc_qa_gather{vw}({ptr}, {sw})"


GATHER = r"""static inline int8x16_t pdc_qa_gather16(const int8_t *p, int64_t s) {
    int8_t t[16];
    for (int i = 0; i < 16; i++) t[i] = p[i * s];
    return vld1q_s8(t);
}
static inline int8x8_t pdc_qa_gather8(const int8_t *p, int64_t s) {
    int8_t t[8];
    for (int i = 0; i < 8; i++) t[i] = p[i * s];
    return vld1_s8(t);
}
"""


def _row_copy(ind: str, W: int, left: int, flip: int) -> list:
    """C lines copying input row s[0..W) to d + left, codes x ^ flip: vectors, the last one
    overlapping the previous, never reading past the row."""
    def x(v: str, q: str) -> str:
        return f"veor{q}_s8({v}, fl{'' if q else '8'})" if flip else v
    if W >= 16:
        return [f"{ind}for (int64_t t = 0;; t += 16) {{",
                f"{ind}    if (t > {W - 16}) t = {W - 16};",
                f"{ind}    vst1q_s8(d + {left} + t, {x('vld1q_s8(s + t)', 'q')});",
                f"{ind}    if (t + 16 >= {W}) break;",
                f"{ind}}}"]
    if W >= 8:
        return [f"{ind}vst1_s8(d + {left}, {x('vld1_s8(s)', '')}); "
                f"vst1_s8(d + {left + W - 8}, {x(f'vld1_s8(s + {W - 8})', '')});"]
    return [f"{ind}for (int64_t t = 0; t < {W}; t++) d[{left} + t] = (int8_t)(s[t] ^ {np.int8(flip - 256) if flip else 0});"]


def _qconv_depthwise(ctx: KernelContext, g: _Geo, w: np.ndarray, out: _Out, xzp: int, flip: int) -> Optional[str]:
    taps = [(kh, kw) for kh in range(g.KH) for kw in range(g.KW)]
    T = len(taps)
    vw = 16 if g.OW >= 16 or g.OW > 8 else 8
    nvec = vw // 4
    Hp, Wp = g.Hp, g.Wp
    # readable past the plane: the last vector's loads (LD2-4 read sw vectors) and the row stores
    slack = vw * max(g.sw, 1) * 2 + (g.KW - 1) * g.dw + 64
    plane = Hp * Wp + slack
    if plane >= 2 ** 31:
        return None
    units = g.N * g.C
    parallel = ctx.split(g.macs, PARALLEL_MIN_MACS // 4) and units > 1
    slots = ctx.slots(parallel)
    _common(ctx)
    ctx.helper("pdc_qa_dw_job", DW_JOB)
    if g.sw > 4:
        ctx.helper("pdc_qa_gather", GATHER)
    name = f"{ctx.fn_name}_dw"
    y32 = out.y32
    ty = "int32_t" if y32 else "uint8_t"
    L = [f"/* depthwise {g.KH}x{g.KW}, stride {g.sh}x{g.sw}, dilation {g.dh}x{g.dw}: unit = (image, channel) */",
         f"static PDC_QA_MLAL void {name}(void *vj, int64_t u0, int64_t u1, int slot) {{",
         "    const pdc_qa_dw_job *j = (const pdc_qa_dw_job *)vj;",
         "    int8_t *pl = j->plane + slot * j->plane_bs;",
         "    const int8x16_t fl = vdupq_n_s8((int8_t)j->flip), pv = vdupq_n_s8((int8_t)j->pad);",
         "    const int8x8_t fl8 = vget_low_s8(fl);",
         "    pdc_qa_rq qq, *q = &qq;",
         "    qq.yz = j->yz; qq.lo = j->lo; qq.hi = j->hi;",
         out.setup(),
         "    (void)fl; (void)fl8; (void)pv; (void)q;",
         "    for (int64_t u = u0; u < u1; u++) {",
         f"        const int64_t c = u % {g.C}, n = u / {g.C};",
         f"        const int8_t *xc = j->x + u * {g.H * g.W};",
         "        /* the padded plane: codes flipped, padding = pad */",
         f"        for (int64_t i = 0; i < {Hp}; i++) {{",
         f"            int8_t *d = pl + i * {Wp};",
         f"            const int64_t ih = i - {g.pt};",
         f"            if (ih < 0 || ih >= {g.H}) {{ memset(d, j->pad, {Wp}); continue; }}",
         f"            const int8_t *s = xc + ih * {g.W};"]
    # left padding (then the row overwrites what spills over), the row, the right padding (spilling
    # into the next row, written after it, or the slack)
    for t0 in range(0, g.pl, 16):
        L.append(f"            vst1q_s8(d + {t0}, pv);")
    L += _row_copy("            ", g.W, g.pl, flip)
    for t0 in range(0, g.pr, 16):
        L.append(f"            vst1q_s8(d + {g.pl + g.W + t0}, pv);")
    L += ["        }",
          f"        for (int64_t jm = 0; jm < {g.mg}; jm++) {{",
          f"            const int64_t m = c * {g.mg} + jm;",
          f"            const int8_t *wm = j->w + m * {T};",
          f"            {ty} *ym = ({ty} *)j->y + (n * {g.M} + m) * {g.P};",
          "            const int32x4_t bv = vdupq_n_s32(j->bias[m]);"]
    if not y32:
        L.append("            qq.scale = j->scale + m;")
        L.append("            " + out.bcast_params("0"))
    wt = "int8x16_t" if vw == 16 else "int8x8_t"
    dup = "vdupq_n_s8" if vw == 16 else "vdup_n_s8"
    for t in range(T):
        L.append(f"            const {wt} w{t} = {dup}(wm[{t}]);")
    L += [f"            for (int64_t oh = 0; oh < {g.OH}; oh++) {{",
          f"                const int8_t *r = pl + oh * {g.sh * Wp};",
          f"                {ty} *yr = ym + oh * {g.OW};",
          "                for (int64_t ow = 0;; ow += " + str(vw) + ") {"]
    if g.OW >= vw:
        L.append(f"                    if (ow > {g.OW - vw}) ow = {g.OW - vw};")
    L.append(f"                    const int8_t *rp = r + ow * {g.sw};")
    accs = [f"a{v}" for v in range(nvec)]
    L.append("                    int32x4_t " + ", ".join(f"{a} = bv" for a in accs) + ";")
    step = 2 if out.pair else 1
    for t0 in range(0, T, step):
        grp = list(range(t0, min(T, t0 + step)))
        for t in grp:
            kh, kw = taps[t]
            L.append(f"                    const {wt} x{t} = {_tap_load(vw, g.sw, f'rp + {kh * g.dh * Wp + kw * g.dw}')};")
        if vw == 16:
            lo = f"vmull_s8(vget_low_s8(x{grp[0]}), vget_low_s8(w{grp[0]}))"
            hi = f"vmull_high_s8(x{grp[0]}, w{grp[0]})"
            if len(grp) == 2:
                lo = f"vmlal_s8({lo}, vget_low_s8(x{grp[1]}), vget_low_s8(w{grp[1]}))"
                hi = f"vmlal_high_s8({hi}, x{grp[1]}, w{grp[1]})"
            L.append(f"                    {{ const int16x8_t lo_ = {lo}, hi_ = {hi};")
            L.append("                      a0 = vaddw_s16(a0, vget_low_s16(lo_)); a1 = vaddw_high_s16(a1, lo_); "
                     "a2 = vaddw_s16(a2, vget_low_s16(hi_)); a3 = vaddw_high_s16(a3, hi_); }")
        else:
            lo = f"vmull_s8(x{grp[0]}, w{grp[0]})"
            if len(grp) == 2:
                lo = f"vmlal_s8({lo}, x{grp[1]}, w{grp[1]})"
            L.append(f"                    {{ const int16x8_t lo_ = {lo};")
            L.append("                      a0 = vaddw_s16(a0, vget_low_s16(lo_)); a1 = vaddw_high_s16(a1, lo_); }")
    L += out.store_lines("                    ", accs, "yr + ow", "full" if g.OW >= vw else "part", str(g.OW))
    L += [f"                    if (ow + {vw} >= {g.OW}) break;", "                }", "            }", "        }", "    }", "}"]
    ctx.helper(name, "\n".join(x for x in L if x) + "\n")
    pl, stride = ctx.thread_scratch(plane, slots, "int8_t", 1)

    def flat(v, fill):
        return np.asarray(v)

    fields = dict(x="(const int8_t *)in0", y="(void *)out0", plane=pl, plane_bs=stride,
                  w=add_weight(ctx, np.ascontiguousarray(w.reshape(g.M, T)), "int8_t"), **out.tables(ctx, flat),
                  flip=flip, pad=int(np.int8(xzp)), **out.fields())
    lines = job_lines("pdc_qa_dw_job", fields)
    lines.append(slots_call(name, units, slots))
    return "\n".join(lines)


@arm_kernel("qconv")
def qconv(ctx: KernelContext) -> Optional[str]:
    setup = _conv_setup(ctx)
    if setup is None:
        return None
    g, w, out, xzp, flip = setup
    if g.cg == 1 and take("qconv", "neon-depthwise", g.mg <= 4):
        return mark("qconv", "neon-depthwise", _qconv_depthwise(ctx, g, w, out, xzp, flip))
    if g.pointwise and take("qconv", "neon-pointwise"):
        return mark("qconv", "neon-pointwise", _qconv_gemm(ctx, g, w, out, xzp, flip, True))
    if take("qconv", "neon-gemm"):
        return mark("qconv", "neon-gemm", _qconv_gemm(ctx, g, w, out, xzp, flip, False))
    return None


# ---- qmatmul ------------------------------------------------------------------------------------------
MM_JOB = """/* y [R][N] = requant(a [R][K] x b [K][N]) on AArch64 NEON (arm/qint.py); b packed [N/NR][KQ][NR][4]. */
typedef struct {
    const int8_t *a;
    void *y;
    const int8_t *b;
    pdc_qa_rq q;            /* per padded column */
    int64_t R, K, N, KQ, NRB;
    int32_t flip;
} pdc_qa_mm_job;
"""

MM_TILES = ((1, 6), (2, 5), (4, 4), (6, 3), (8, 2))


def _mm_task(mr: int, nv: int, flip: bool, out: _Out, dot: bool) -> tuple[str, str]:
    nr = 4 * nv
    name = f"pdc_qa_mm_{'d' if dot else 'm'}{mr}x{nv}{'s' if flip else ''}{'' if dot or out.pair else 'n'}_{out.tag}"
    ty = "int32_t" if out.y32 else "uint8_t"

    def arow(i: str, off: str) -> str:
        v = f"vld1q_s8(a{i} + {off})"
        return f"veorq_s8({v}, fl)" if flip else v

    L = [f"/* {mr} rows x {nv} vectors of 4 columns, {'SDOT' if dot else 'SMULL/SMLAL/SADALP'} */",
         f"static {'PDC_QA_DOT ' if dot else ''}void {name}(void *vj, int64_t u0, int64_t u1) {{",
         "    const pdc_qa_mm_job *j = (const pdc_qa_mm_job *)vj;",
         "    const pdc_qa_rq *q = &j->q;",
         "    const int64_t R = j->R, K = j->K, N = j->N, KQ = j->KQ, NRB = j->NRB, KF = K / 16, KT = K - 16 * KF;",
         "    const int QT = (int)((KT + 3) / 4);",
         out.setup(),
         "    const int8x16_t fl = vdupq_n_s8((int8_t)j->flip);",
         "    (void)fl; (void)QT;",
         "    for (int64_t u = u0; u < u1; u++) {",
         f"        const int64_t rb = u % NRB, cb = u / NRB, r0 = rb * {mr}, rows = R - r0, n0 = cb * {nr};",
         f"        const int8_t *bp0 = j->b + cb * KQ * {nr * 4};",
         f"        {ty} *y0 = ({ty} *)j->y + r0 * N + n0;",
         f"        const int full_ = N - n0 >= {nr};",
         "        (void)rows;",
         f"        const int64_t cols = N - n0 < {nr} ? N - n0 : {nr};"]
    for i in range(mr if dot else 1):  # rows past R read row r0 (results dropped)
        L.append(f"        const int8_t *a{i} = j->a + (r0 + {f'(rows > {i} ? {i} : 0)' if i else '0'}) * K;")
    L.append("        " + " ".join(f"const int32x4_t bias{v} = vld1q_s32(q->bias + n0 + {4 * v});" for v in range(nv)))
    if dot:
        acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]
        for i in range(mr):
            L.append("        int32x4_t " + ", ".join(f"{acc[i][v]} = bias{v}" for v in range(nv)) + ";")

        def quads(src_of, guard: bool) -> list:
            o = ["            " + " ".join(f"const int8x16_t av{i} = {src_of(i)};" for i in range(mr))]
            for qd in range(4):
                ind = "            "
                o.append(f"{ind}if (QT > {qd}) {{" if guard else f"{ind}{{")
                ind += "    "
                o.append(ind + " ".join(f"const int8x16_t b{v} = vld1q_s8(bp + {(qd * nr + 4 * v) * 4});" for v in range(nv)))
                for i in range(mr):
                    o.append(ind + " ".join(f"{acc[i][v]} = vdotq_laneq_s32({acc[i][v]}, b{v}, av{i}, {qd});"
                                            for v in range(nv)))
                o.append("            }")
            return o
        L.append("        const int8_t *bp = bp0;")
        L.append(f"        for (int64_t k = 0; k < KF; k++, bp += {4 * nr * 4}) {{")
        L += quads(lambda i: arow(str(i), "16 * k"), False)
        L.append("        }")
        L.append("        if (KT) {")
        src = {}
        for i in range(mr):
            L.append(f"            int8_t ta{i}[16] = {{0}}; memcpy(ta{i}, a{i} + 16 * KF, (size_t)KT);")
            src[i] = f"vld1q_s8(ta{i})"
        L += quads(lambda i: f"veorq_s8({src[i]}, fl)" if flip else src[i], True)
        L.append("        }")
        for i in range(mr):
            L.append(f"        if (rows > {i}) {{" if i else "        {")
            L += out.store_lines("            ", acc[i], f"y0 + {i} * N", "full_", "cols", ("cols", "n0", "q"))
            L.append("        }")
    else:
        L.append(f"        for (int64_t i = 0; i < (rows < {mr} ? rows : {mr}); i++) {{")
        L.append("            const int8_t *ar = a0 + i * K;")
        for v in range(nv):
            L.append(f"            int32x4_t l{v} = vdupq_n_s32(0), h{v} = l{v};")
        L.append("            const int8_t *bp = bp0;")

        def step(av: str, qa: int, qb: Optional[int], ind: str) -> list:
            o = [f"{ind}{{ const int8x16_t wa = vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8({av}), {qa}));"]
            if qb is not None:
                o.append(f"{ind}  const int8x16_t wb = vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8({av}), {qb}));")
            for v in range(nv):
                o.append(f"{ind}  {{ const int8x16_t x0 = vld1q_s8(bp + {(qa * nr + 4 * v) * 4});")
                if qb is None:
                    o.append(f"{ind}    l{v} = vpadalq_s16(l{v}, vmull_s8(vget_low_s8(x0), vget_low_s8(wa))); "
                             f"h{v} = vpadalq_s16(h{v}, vmull_high_s8(x0, wa)); }}")
                elif out.pair:
                    o.append(f"{ind}    const int8x16_t x1 = vld1q_s8(bp + {(qb * nr + 4 * v) * 4});")
                    o.append(f"{ind}    l{v} = vpadalq_s16(l{v}, vmlal_s8(vmull_s8(vget_low_s8(x0), vget_low_s8(wa)), "
                             f"vget_low_s8(x1), vget_low_s8(wb)));")
                    o.append(f"{ind}    h{v} = vpadalq_s16(h{v}, vmlal_high_s8(vmull_high_s8(x0, wa), x1, wb)); }}")
                else:
                    o.append(f"{ind}    const int8x16_t x1 = vld1q_s8(bp + {(qb * nr + 4 * v) * 4});")
                    o.append(f"{ind}    l{v} = vpadalq_s16(vpadalq_s16(l{v}, vmull_s8(vget_low_s8(x0), vget_low_s8(wa))), "
                             f"vmull_s8(vget_low_s8(x1), vget_low_s8(wb)));")
                    o.append(f"{ind}    h{v} = vpadalq_s16(vpadalq_s16(h{v}, vmull_high_s8(x0, wa)), vmull_high_s8(x1, wb)); }}")
            o.append(f"{ind}}}")
            return o
        L.append(f"            for (int64_t k = 0; k < KF; k++, bp += {4 * nr * 4}) {{")
        L.append(f"                const int8x16_t av = {'veorq_s8(vld1q_s8(ar + 16 * k), fl)' if flip else 'vld1q_s8(ar + 16 * k)'};")
        L += step("av", 0, 1, "                ")
        L += step("av", 2, 3, "                ")
        L.append("            }")
        L.append("            if (KT) {")
        L.append("                int8_t ta[16] = {0}; memcpy(ta, ar + 16 * KF, (size_t)KT);")
        L.append(f"                const int8x16_t av = {'veorq_s8(vld1q_s8(ta), fl)' if flip else 'vld1q_s8(ta)'};")
        L.append("                if (QT >= 2) {")
        L += step("av", 0, 1, "                    ")
        L.append("                } else {")
        L += step("av", 0, None, "                    ")
        L.append("                }")
        L.append("                if (QT == 4) {")
        L += step("av", 2, 3, "                    ")
        L.append("                } else if (QT == 3) {")
        L += step("av", 2, None, "                    ")
        L.append("                }")
        L.append("            }")
        accs = [f"c{v}" for v in range(nv)]
        L.append("            " + " ".join(f"const int32x4_t c{v} = vaddq_s32(vpaddq_s32(l{v}, h{v}), bias{v});"
                                         for v in range(nv)))
        L += out.store_lines("            ", accs, "y0 + i * N", "full_", "cols", ("cols", "n0", "q"))
        L.append("        }")
    L += ["    }", "}"]
    return name, "\n".join(x for x in L if x) + "\n"


@arm_kernel("qmatmul")
def qmatmul(ctx: KernelContext) -> Optional[str]:
    if ctx.config.simd != "neon64" or not take("qmatmul", "neon"):
        return None
    operands = native_qmatmul_operands(ctx)
    if operands is None:
        return None
    b, K, N, R = operands
    flip = 128 if ctx.inputs[0].dtype.short == "u8" else 0
    bt = np.asarray(b, np.int8).T
    out = _Out(ctx, bt, int(ctx.attrs.get("a_zero", 0)) - flip)
    if not out.ok:
        return None
    threads = ctx.config.threads if ctx.config.parallel else 1
    mr, nv = min(MM_TILES, key=lambda t: _tile_cost(R, N, t[0], 4 * t[1], 1, threads))
    nr = 4 * nv
    NCB, NRB, KQ = -(-N // nr), -(-R // mr), -(-K // 4)
    bp = np.zeros((KQ * 4, NCB * nr), np.int8)
    bp[:K, :N] = b
    bp = np.ascontiguousarray(bp.reshape(KQ, 4, NCB, nr).transpose(2, 0, 3, 1)).reshape(-1)

    def padded(v, fill):
        t = np.full(NCB * nr, fill, np.asarray(v).dtype)
        t[:N] = v
        return t

    _common(ctx)
    ctx.helper("pdc_qa_mm_job", MM_JOB)
    task = _variant(ctx, _mm_task(mr, nv, bool(flip), out, True), _mm_task(mr, nv, bool(flip), out, False))
    tabs = out.tables(ctx, padded)
    fields = dict(a="(const int8_t *)in0", y="(void *)out0", b=add_weight(ctx, bp, "int8_t"),
                  **{f"q.{k}": v for k, v in tabs.items()}, **{f"q.{k}": v for k, v in out.fields().items()},
                  R=R, K=K, N=N, KQ=KQ, NRB=NRB, flip=flip)
    lines = job_lines("pdc_qa_mm_job", fields)
    lines.append(f"    const pdc_task_fn fn = {task};")
    units = NCB * NRB
    if ctx.split(R * N * K, PARALLEL_MIN_MACS) and units > 1:
        lines.append(f"    pdc_parallel_for({units}, fn, (void *)&j);")
    else:
        lines.append(f"    fn((void *)&j, 0, {units});")
    return mark("qmatmul", "neon", "\n".join(lines))


# ---- qadd (same-shape operands: residual adds) ---------------------------------------------------------
ADD_JOB = """/* y = clamp(rint(fma(a, ra, fma(b, rb, c))), lo, hi) over n elements of same-shape a, b (arm/qint.py) */
typedef struct {
    const void *a, *b;
    void *y;
    int64_t n;
    float ra, rb, c;
    int32_t lo, hi;
} pdc_qa_add_job;
"""
ADD_CHUNK = 4096


def _add_task(a_u8: bool, b_u8: bool, out: "_AddOut") -> tuple[str, str]:
    name = f"pdc_qa_add_{'u' if a_u8 else 's'}{'u' if b_u8 else 's'}_{out.tag}"

    def codes(src: str, u8: bool) -> str:  # 8 codes widened to int16
        if u8:
            return f"vreinterpretq_s16_u16(vmovl_u8(vld1_u8((const uint8_t *)({src}))))"
        return f"vmovl_s8(vld1_s8((const int8_t *)({src})))"

    def fma(a: str, b: str) -> str:  # fma(a, ra, fma(b, rb, c)) of 4 lanes, clamped, rounded
        return (f"vcvtnq_s32_f32(vminq_f32(vmaxq_f32(vfmaq_f32(vfmaq_f32(kc, vcvtq_f32_s32({b}), kb), "
                f"vcvtq_f32_s32({a}), ka), lo), hi))")

    L = [f"static void {name}(void *vj, int64_t u0, int64_t u1) {{",
         "    const pdc_qa_add_job *j = (const pdc_qa_add_job *)vj;",
         "    const int8_t *A = (const int8_t *)j->a, *B = (const int8_t *)j->b;",
         "    uint8_t *Y = (uint8_t *)j->y;",
         "    const float32x4_t ka = vdupq_n_f32(j->ra), kb = vdupq_n_f32(j->rb), kc = vdupq_n_f32(j->c);",
         "    const float32x4_t lo = vdupq_n_f32((float)j->lo), hi = vdupq_n_f32((float)j->hi);",
         f"    const int64_t i0 = u0 * {ADD_CHUNK}, i1 = u1 * {ADD_CHUNK} < j->n ? u1 * {ADD_CHUNK} : j->n;",
         "    for (int64_t i = i0; i < i1; i += 8) {",
         "        int8_t ta[8], tb[8];",
         "        const int8_t *pa = A + i, *pb = B + i;",
         "        const int64_t cnt = i1 - i < 8 ? i1 - i : 8;",
         "        if (cnt < 8) { memcpy(ta, pa, (size_t)cnt); memcpy(tb, pb, (size_t)cnt); pa = ta; pb = tb; }",
         f"        const int16x8_t da = {codes('pa', a_u8)}, db = {codes('pb', b_u8)};",
         "        const int32x4_t a0 = vmovl_s16(vget_low_s16(da)), a1 = vmovl_high_s16(da);",
         "        const int32x4_t b0 = vmovl_s16(vget_low_s16(db)), b1 = vmovl_high_s16(db);",
         f"        const int32x4_t r0 = {fma('a0', 'b0')};",
         f"        const int32x4_t r1 = {fma('a1', 'b1')};",
         "        /* within [lo, hi], inside the output type: the narrows keep the bits */",
         "        const int8x8_t v = vmovn_s16(vmovn_high_s32(vmovn_s32(r0), r1));",
         "        if (cnt == 8) vst1_s8((int8_t *)(Y + i), v);",
         "        else { int8_t t[8]; vst1_s8(t, v); memcpy(Y + i, t, (size_t)cnt); }",
         "    }",
         "}"]
    return name, "\n".join(x for x in L if x) + "\n"


class _AddOut:
    """qadd's output side: the clamp (in float, before the rounding) and the output's signedness."""

    def __init__(self, ctx: KernelContext):
        self.lo, self.hi = _clamp(ctx)
        self.tag = "u" if ctx.outputs[0].dtype.short == "u8" else "s"


@arm_kernel("qadd")
def qadd(ctx: KernelContext) -> Optional[str]:
    """Same-shape qadd (a residual add): 8 elements per step in float32 lanes, the reference's two
    fmas; other shapes (broadcasts) take the portable kernel."""
    if ctx.config.simd != "neon64" or ctx.node.op != "qadd" or not take("qadd", "neon"):
        return None
    a, b, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if tuple(a.shape) != tuple(y.shape) or tuple(b.shape) != tuple(y.shape) or math.prod(y.shape) == 0:
        return None
    if y.dtype.short not in ("i8", "u8") or {a.dtype.short, b.dtype.short} - {"i8", "u8"}:
        return None
    n = math.prod(y.shape)
    out = _AddOut(ctx)
    _common(ctx)
    ctx.helper("pdc_qa_add_job", ADD_JOB)
    name, code = _add_task(a.dtype.short == "u8", b.dtype.short == "u8", out)
    ctx.helper(name, code)
    az, bz, yz = (int(ctx.attrs.get(k, 0)) for k in ("a_zero", "b_zero", "y_zero"))
    ra, rb = ctx.attrs["a_scale"], ctx.attrs["b_scale"]
    fields = dict(a="in0", b="in1", y="(void *)out0", n=n, ra=float_literal(ra), rb=float_literal(rb),
                  c=float_literal(qadd_constant(ra, az, rb, bz, yz)), lo=out.lo, hi=out.hi)
    lines = job_lines("pdc_qa_add_job", fields)
    units = -(-n // ADD_CHUNK)
    if ctx.split(n, 65_536) and units > 1:
        lines.append(f"    pdc_parallel_for({units}, {name}, (void *)&j);")
    else:
        lines.append(f"    {name}((void *)&j, 0, {units});")
    return mark("qadd", "neon", "\n".join(lines))
