"""HVX int8 convolution (qconv, pdc/ir/ops/qint.py) for the Hexagon targets, bit-exact with the NumPy
reference.

Arithmetic. `Vx.w += vrmpy(Vu.ub, Rt.b)` adds to each of the 32 int32 lanes the four products of the
lane's four unsigned bytes with the four signed bytes of a scalar register (128 MACs; sums wrap
modulo 2^32). Activations enter as unsigned codes u = x + off (uint8 as they are, int8 with the sign
bit flipped: off = 128), so acc = sum(u * w) + bias - (x_zero + off) * sum(w), the second part folded
per output channel at compile time (qint.folded_bias); padding taps hold x_zero + off, which the fold
cancels. The result is exact whenever the true accumulator fits int32 (checked per channel at compile
time; else the portable kernel takes the layer). The requantization is the reference's float32 rule,
on the scalar core (HVX before v68 has no floating point): (float)acc * scale, clamped, rounded half
to even, + y_zero (qint.RQ).

Dense and grouped ("hvx-gemm"): an implicit GEMM over the flat phase grid (qint.QconvGrid): per
(image, group) and band of output rows, the input is packed into VTCM, 4 channels interleaved per
dword (the quad vrmpy reduces), zero-padded to whole quads, split into stride phases, so that output
(oh, ow) is the flat index q = oh * Wq + ow and tap (kh, kw) of channel quad cq reads the dword at
q + koff[k]: 32 consecutive q are one unaligned vector load, for any stride and dilation. The
microkernel keeps MB output channels x PB vectors of 32 flat outputs in HVX registers; per reduction
quad it loads PB vectors and the MB channels' weight words (packed [group][channel block][K/4][MB],
zero-padded), MB x PB vrmpy. The tile goes to VTCM and the scalar core requantizes it into the NCHW
rows (grid columns ow >= OW dropped). The band is as many output rows as fit the VTCM with the tile;
a layer whose one-row band does not fit is refused (the VTCM the preset or --vtcm gives is too small).
Depthwise ("hvx-depthwise", one input channel per group): per channel a byte plane (phases, padding)
in VTCM; the taps of one kernel row and column phase are consecutive plane bytes, so a tap quad is
read in place: the load at byte q0 + r holds in lane i the quad of output q0 + 4 i + r, and four loads
and four vrmpy per quad give 128 outputs (taps past the kernel row have weight 0).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...context import KernelContext
from ....ir.errors import PdcError
from .. import kernel
from .. import qint as _portable  # noqa: F401  (declares the portable paths first: the general ones)
from ..paths import declare, mark, take
from ..qint import QconvGrid, folded_bias, scale_table, unsigned_conv_setup, wrap32
from ..quant import add_weight

declare("qconv", "portable", "hvx-gemm", "hvx-depthwise")

LANES = 32  # int32 lanes of a 128-byte vector
HVX = """#include <hexagon_types.h>
#include <hexagon_protos.h>
/* an HVX vector at any address (vmemu) */
typedef long pdc_hx_uvec __attribute__((__vector_size__(128), __aligned__(1)));
#define PDC_HX_LOADU(p) (*(const pdc_hx_uvec *)(const void *)(p))
"""

PACK = r"""/* Copies n bytes (n >= 128) with unaligned vector loads and stores, the last one overlapping. */
static inline void pdc_hx_copy(uint8_t *d, const uint8_t *s, int32_t n) {
    for (int32_t j = 0;; j += 128) {
        if (j > n - 128) j = n - 128;
        *(pdc_hx_uvec *)(void *)(d + j) = PDC_HX_LOADU(s + j);
        if (j + 128 >= n) break;
    }
}
/* Stages rows [h0, h1) of `lanes` channels (1, or 4 interleaved per pixel: the quads the dense kernel
   reduces), codes x ^ flip, channels past nch = pad: a row of W pixels after the other, 128 pixels per
   step (the last step overlapping), scalar below 128 pixels. */
static void pdc_hx_stage(uint8_t *st, const uint8_t *x, int32_t nch, int32_t lanes, int32_t H, int32_t W, int32_t h0,
                         int32_t h1, uint8_t pad, uint8_t flip) {
    const int32_t n = (h1 - h0) * W;
    const uint8_t *s[4] = {0, 0, 0, 0};
    for (int32_t l = 0; l < lanes && l < nch; l++) s[l] = x + ((int64_t)l * H + h0) * W;
    if (n < 128) {
        for (int32_t j = 0; j < n; j++)
            for (int32_t l = 0; l < lanes; l++) st[j * lanes + l] = s[l] ? (uint8_t)(s[l][j] ^ flip) : pad;
        return;
    }
    const HVX_Vector fl = Q6_V_vsplat_R(0x01010101 * flip), pv = Q6_V_vsplat_R(0x01010101 * pad);
    for (int32_t j = 0;; j += 128) {
        if (j > n - 128) j = n - 128;
        HVX_Vector v[4];
        for (int32_t l = 0; l < lanes; l++) v[l] = s[l] ? Q6_V_vxor_VV(PDC_HX_LOADU(s[l] + j), fl) : pv;
        if (lanes == 1) {
            *(pdc_hx_uvec *)(void *)(st + j) = v[0];
        } else {  /* bytes of channel pairs, then halfwords of the pairs: 4 codes per pixel */
            const HVX_VectorPair a = Q6_W_vshuff_VVR(v[1], v[0], -1), b = Q6_W_vshuff_VVR(v[3], v[2], -1);
            const HVX_VectorPair lo = Q6_W_vshuff_VVR(Q6_V_lo_W(b), Q6_V_lo_W(a), -2);
            const HVX_VectorPair hi = Q6_W_vshuff_VVR(Q6_V_hi_W(b), Q6_V_hi_W(a), -2);
            uint8_t *d = st + 4 * j;
            *(pdc_hx_uvec *)(void *)d = Q6_V_lo_W(lo);
            *(pdc_hx_uvec *)(void *)(d + 128) = Q6_V_hi_W(lo);
            *(pdc_hx_uvec *)(void *)(d + 256) = Q6_V_lo_W(hi);
            *(pdc_hx_uvec *)(void *)(d + 384) = Q6_V_hi_W(hi);
        }
        if (j + 128 >= n) break;
    }
}
/* The packed input of a band: per group of `lanes` channels (4: the quads of the dense kernel, 1: a
   depthwise plane), per stride phase (ph[2 p], ph[2 p + 1]), Hq rows x Wq pixels of `lanes` bytes: the
   codes (x ^ flip) of input row r0 + i * sh + ph[2 p], column c0 + j * sw + ph[2 p + 1], pad outside
   the input and for channels past nch; each group `stride` bytes apart, its slack after the phases = pad.
   The band's input rows are staged first (st: their pixels' codes, interleaved), then each grid row is
   copied out of them: a run of pixels (column stride 1), every other one (stride 2: a vector deal), else
   one at a time. */
static void pdc_hx_pack(uint8_t *xq, uint8_t *st, const uint8_t *x, int32_t nch, int32_t lanes, int32_t H, int32_t W,
                        int32_t r0, int32_t c0, int32_t sh, int32_t sw, const int32_t *ph, int32_t NPH, int32_t Hq,
                        int32_t Wq, int32_t stride, uint8_t pad, uint8_t flip) {
    const int32_t groups = (nch + lanes - 1) / lanes, row_bytes = Wq * lanes, used = NPH * Hq * row_bytes;
    int32_t amax = 0;
    for (int32_t p = 0; p < NPH; p++) amax = ph[2 * p] > amax ? ph[2 * p] : amax;
    const int32_t h0 = r0 > 0 ? r0 : 0, h1 = r0 + (Hq - 1) * sh + amax + 1 < H ? r0 + (Hq - 1) * sh + amax + 1 : H;
    for (int32_t cq = 0; cq < groups; cq++) {
        uint8_t *d0 = xq + cq * stride;
        if (h1 > h0) pdc_hx_stage(st, x + (int64_t)cq * lanes * H * W, nch - cq * lanes, lanes, H, W, h0, h1, pad, flip);
        for (int32_t p = 0; p < NPH; p++) {
            const int32_t a = ph[2 * p], b = ph[2 * p + 1];
            /* the columns j that read inside the input: j0 <= j < j1 */
            int32_t j0 = 0, j1 = Wq;
            while (j0 < Wq && c0 + j0 * sw + b < 0) j0++;
            while (j1 > j0 && c0 + (j1 - 1) * sw + b >= W) j1--;
            const int32_t m = (j1 - j0) * lanes;  /* bytes of a row from the input */
            for (int32_t i = 0; i < Hq; i++) {
                const int32_t ih = r0 + i * sh + a;
                uint8_t *d = d0 + (p * Hq + i) * row_bytes;
                if (ih < 0 || ih >= H) {
                    memset(d, pad, (size_t)row_bytes);
                    continue;
                }
                if (j0 > 0) memset(d, pad, (size_t)(j0 * lanes));
                if (j1 < Wq) memset(d + j1 * lanes, pad, (size_t)((Wq - j1) * lanes));
                const uint8_t *s = st + ((ih - h0) * W + c0 + j0 * sw + b) * lanes;
                uint8_t *dj = d + j0 * lanes;
                if (sw == 1 && m >= 128) {
                    pdc_hx_copy(dj, s, m);
                } else if (sw == 2 && m >= 128) {  /* the even pixels of 256 bytes: one deal per 128 */
                    for (int32_t t = 0;; t += 128) {
                        if (t > m - 128) t = m - 128;
                        const HVX_VectorPair e = Q6_W_vdeal_VVR(PDC_HX_LOADU(s + 2 * t + 128), PDC_HX_LOADU(s + 2 * t),
                                                                -lanes);
                        *(pdc_hx_uvec *)(void *)(dj + t) = Q6_V_lo_W(e);
                        if (t + 128 >= m) break;
                    }
                } else if (sw == 1) {
                    memcpy(dj, s, (size_t)m);
                } else if (lanes == 4) {
                    for (int32_t j = 0; j < j1 - j0; j++) memcpy(dj + 4 * j, s + 4 * j * sw, 4);
                } else {
                    for (int32_t j = 0; j < j1 - j0; j++) dj[j] = s[j * sw];
                }
            }
        }
        memset(d0 + used, pad, (size_t)(stride - used));
    }
}
"""


RQ = """/* the reference's requantization, clamp(rint((float)acc * sc) + yz, lo, hi) with lo_ = lo - yz, hi_ =
   hi - yz: convert_sf2w rounds half to even (the default rounding mode of USR) and saturates, a monotone
   map, so the clamp may follow it in integers; (float)acc * sc is never NaN */
static inline int32_t pdc_hx_rq(int32_t acc, float sc, int32_t lo_, int32_t hi_, int32_t yz) {
    const int32_t r = __builtin_HEXAGON_F2_conv_sf2w((float)acc * sc);
    return (r < lo_ ? lo_ : (r > hi_ ? hi_ : r)) + yz;
}
"""


RQV = """/* the reference's float32 requantization of the 32 accumulators of one channel (|acc| < 2^24), exactly,
   in integers: sc = m * 2^-e (m: 24-bit mantissa, 25 <= e <= 55, sh = e - 24), m = mh * 2^12 + ml;
   mlh / mhh: ml / mh in both halfwords. P = |acc| * m (48 bits, as hi * 2^24 + lo); (float)acc * sc
   rounds P to 24 significant bits (k = bitlen(hi) bits dropped), the conversion then to an integer
   (e bits dropped): rint of the exact product A + (B > half), ties to even, except where the first
   rounding lands on the midpoint (|B - half| <= 2^(k-1)): a tie, to even. */
static inline HVX_Vector pdc_hx_rqv(HVX_Vector acc, int32_t mlh, int32_t mhh, int32_t sh, int32_t lo_, int32_t hi_,
                                    int32_t yz) {
    const HVX_Vector one = Q6_V_vsplat_R(1), zero = Q6_V_vzero();
    const HVX_Vector m12 = Q6_V_vsplat_R(0xfff), m24 = Q6_V_vsplat_R(0xffffff);
    const HVX_Vector a = Q6_Vw_vabs_Vw(acc);
    const HVX_Vector al = Q6_V_vand_VV(a, m12), ah = Q6_Vuw_vlsr_VuwR(a, 12);
    const HVX_Vector t0 = Q6_Vw_vmpyi_VwRh(al, mlh);
    const HVX_Vector t1 = Q6_Vw_vadd_VwVw(Q6_Vw_vmpyi_VwRh(ah, mlh), Q6_Vw_vmpyi_VwRh(al, mhh));
    const HVX_Vector t2 = Q6_Vw_vmpyi_VwRh(ah, mhh);
    HVX_Vector lo = Q6_Vw_vadd_VwVw(t0, Q6_Vw_vasl_VwR(Q6_V_vand_VV(t1, m12), 12));
    const HVX_Vector hi = Q6_Vw_vadd_VwVw(Q6_Vw_vadd_VwVw(t2, Q6_Vuw_vlsr_VuwR(t1, 12)), Q6_Vuw_vlsr_VuwR(lo, 24));
    lo = Q6_V_vand_VV(lo, m24);
    const HVX_Vector A = Q6_Vuw_vlsr_VuwR(hi, sh);
    const HVX_Vector hb = Q6_V_vand_VV(hi, Q6_V_vsplat_R((int32_t)((1u << sh) - 1u)));
    const HVX_Vector half = Q6_V_vsplat_R(1 << (sh - 1));
    const HVX_VectorPred hb_eq = Q6_Q_vcmp_eq_VwVw(hb, half), lo_pos = Q6_Q_vcmp_gt_VwVw(lo, zero);
    const HVX_VectorPred above = Q6_Q_or_QQ(Q6_Q_vcmp_gt_VwVw(hb, half), Q6_Q_and_QQ(hb_eq, lo_pos));
    const HVX_VectorPred tie = Q6_Q_and_QQ(hb_eq, Q6_Q_vcmp_eq_VwVw(lo, zero));
    const HVX_Vector odd = Q6_V_vand_VV(A, one);
    HVX_Vector R = Q6_Vw_vadd_VwVw(A, Q6_V_vmux_QVV(above, one, Q6_V_vmux_QVV(tie, odd, zero)));
    /* the first rounding's reach: 2^(bitlen(hi) - 1), 0 where hi = 0 (no rounding) */
    const HVX_Vector reach = Q6_V_vmux_QVV(Q6_Q_vcmp_gt_VwVw(hi, zero),
                                           Q6_Vw_vasl_VwVw(one, Q6_Vw_vsub_VwVw(Q6_V_vsplat_R(31),
                                                                                Q6_Vuw_vcl0_Vuw(hi))), zero);
    const HVX_Vector dh = Q6_Vw_vsub_VwVw(hb, half), two24 = Q6_V_vsplat_R(1 << 24);
    /* |B - half| <= reach, by dh = hb - half in {-1, 0, 1} (else too far) */
    const HVX_VectorPred near0 = Q6_Q_and_QQ(hb_eq, Q6_Q_vcmp_gt_VwVw(Q6_Vw_vadd_VwVw(reach, one), lo));
    const HVX_VectorPred nearm = Q6_Q_and_QQ(Q6_Q_vcmp_eq_VwVw(dh, Q6_V_vsplat_R(-1)),
                                             Q6_Q_vcmp_gt_VwVw(Q6_Vw_vadd_VwVw(reach, one), Q6_Vw_vsub_VwVw(two24, lo)));
    const HVX_VectorPred nearp = Q6_Q_and_QQ(Q6_Q_vcmp_eq_VwVw(dh, one),
                                             Q6_Q_vcmp_gt_VwVw(Q6_Vw_vadd_VwVw(reach, one), Q6_Vw_vadd_VwVw(two24, lo)));
    const HVX_VectorPred snap = Q6_Q_and_QQ(Q6_Q_or_QQ(near0, Q6_Q_or_QQ(nearm, nearp)), Q6_Q_vcmp_gt_VwVw(hi, zero));
    R = Q6_V_vmux_QVV(snap, Q6_Vw_vadd_VwVw(A, odd), R);
    R = Q6_V_vmux_QVV(Q6_Q_vcmp_gt_VwVw(zero, acc), Q6_Vw_vsub_VwVw(zero, R), R);
    R = Q6_Vw_vmin_VwVw(Q6_Vw_vmax_VwVw(R, Q6_V_vsplat_R(lo_)), Q6_V_vsplat_R(hi_));
    return Q6_Vw_vadd_VwVw(R, Q6_V_vsplat_R(yz));
}
"""


def vector_params(scale: np.ndarray):
    """Per channel (ml | ml << 16, mh | mh << 16, e - 24, 0) of scale = m * 2^-e (m: its 24-bit mantissa
    = mh * 2^12 + ml), for pdc_hx_rqv; None where a scale is outside 2^-31 .. 1/2 (25 <= e <= 55) or not
    positive: the scalar requantization takes the layer."""
    frac, exp = np.frexp(scale.astype(np.float64))
    mant = np.round(frac * 2.0 ** 24).astype(np.int64)
    e = 24 - exp.astype(np.int64)
    if not (np.all(scale > 0) and np.all(np.isfinite(scale)) and np.all((e >= 25) & (e <= 55))):
        return None
    ml, mh = mant & 0xFFF, mant >> 12
    return np.stack([ml | ml << 16, mh | mh << 16, e - 24, np.zeros_like(e)], axis=1).astype(np.int32)


def _requant_block(out: "_Output", acc_index: str) -> list[str]:
    """C lines: the outputs of one channel of a tile (`cnt` flat outputs from q0 = oh * Wq + ow0, the
    accumulator of the l-th at ct[acc_index]) requantized (or, y_dtype i32, stored) into its NCHW rows
    yc, run by run of one grid row, grid columns ow >= OW dropped. Four outputs at a time, loaded before
    any is stored: clang then overlaps their scalar conversions (one at a time, each waits for the last).
    Where the tile was requantized in HVX (out.vector), the outputs are copied."""
    ty = "int32_t" if out.y32 else "uint8_t"

    def value(k: str) -> str:
        acc = f"cr[{acc_index.replace('l', f'({k})')}]"
        return acc if out.y32 or out.vector is not None else f"pdc_hx_rq({acc}, sc, lo_, hi_, {out.yz})"
    four = ", ".join(f"r{e} = {value(f'l + {e}')}" for e in range(4))
    return ["const int32_t *restrict cr = ct;",
            f"{ty} *restrict yr = yc + oh * OW;",
            "for (int32_t l0 = 0, ow = ow0; l0 < cnt;) {",
            "    const int32_t run = Wq - ow < cnt - l0 ? Wq - ow : cnt - l0, valid = OW - ow < run ? OW - ow : run;",
            f"    {ty} *restrict yo = yr + ow;",
            "    int32_t t = 0, l = l0;",
            "    for (; t + 4 <= valid; t += 4, l += 4) {",
            f"        const int32_t {four};",
            f"        yo[t] = ({ty})r0; yo[t + 1] = ({ty})r1; yo[t + 2] = ({ty})r2; yo[t + 3] = ({ty})r3;",
            "    }",
            f"    for (; t < valid; t++, l++) yo[t] = ({ty}){value('l')};",
            "    l0 += run;",
            "    ow += run;",
            "    if (ow == Wq) {",
            "        ow = 0;",
            "        yr += OW;",
            "    }",
            "}"]


class _Output:
    """A layer's output side: the folded bias, and the requantization or (y_dtype i32) the accumulators."""

    def __init__(self, ctx: KernelContext, w2d: np.ndarray, xz: int, off: int, vector: bool = False):
        """vector: a tile vector holds one channel (the convolutions), so the HVX requantization may take it."""
        folded = folded_bias(ctx, w2d, xz, off)
        self.ok = folded is not None
        if not self.ok:
            return
        self.bias = folded[0]
        self.y32 = ctx.outputs[0].dtype.short == "i32"
        self.yz = self.lo = self.hi = 0
        self.vector = None  # per-channel pdc_hx_rqv parameters, where the tile requantizes in HVX
        if not self.y32:
            from ..qint import _clamp
            self.scale = scale_table(ctx, w2d.shape[0])
            self.yz = int(ctx.attrs.get("y_zero", 0))
            self.lo, self.hi = _clamp(ctx)
            if vector and folded[1].max(initial=0) < 2 ** 24:  # (float)acc is exact: pdc_hx_rqv's premise
                self.vector = vector_params(self.scale)
            if self.vector is None:
                ctx.helper("pdc_hx_rq", RQ)

    def clamp_lines(self) -> list[str]:
        if self.y32:
            return []
        return [f"    const int32_t lo_ = {self.lo - self.yz}, hi_ = {self.hi - self.yz};"]

    def tables(self, ctx: KernelContext, padded: np.ndarray) -> tuple[str, str]:
        """C pointers to the bias and scale tables of the channels `padded` (-1: a padding channel)."""
        keep = padded >= 0
        bias = np.where(keep, self.bias[np.maximum(padded, 0)], 0)
        if self.y32:
            scale = "0"
        elif self.vector is None:
            scale = add_weight(ctx, np.where(keep, self.scale[np.maximum(padded, 0)], 0).astype(np.float32), "float")
        else:  # the HVX requantization's parameters in the scale table's place (padding channels: m = 0)
            params = np.where(keep[:, None], self.vector[np.maximum(padded, 0)], np.array([0, 0, 1, 0], np.int32))
            scale = f"(const float *){add_weight(ctx, params.astype(np.int32), 'int32_t')}"
            ctx.helper("pdc_hx_rqv", RQV)
        return add_weight(ctx, wrap32(bias), "int32_t"), scale

    def vector_lines(self, tiles: list[str], channel: str) -> list[str]:
        """C lines requantizing the tile vectors `tiles` of one channel in HVX (none for the scalar way)."""
        if self.vector is None:
            return []
        return [f"const int32_t *rp = (const int32_t *)scale + 4 * ({channel});"] + [
            f"{t} = pdc_hx_rqv({t}, rp[0], rp[1], rp[2], lo_, hi_, {self.yz});" for t in tiles]


def _setup(ctx: KernelContext):
    def output(*args):
        out = _Output(*args, vector=True)
        return out if out.ok else None
    return unsigned_conv_setup(ctx, QconvGrid, output) if ctx.config.simd == "hvx" else None


def _fit_rows(ctx: KernelContext, g: QconvGrid, need, what: str) -> int:
    """The most output rows per band whose VTCM need(rows) fits the target's, bands of equal size;
    refuses the layer where even one row does not fit."""
    budget = ctx.config.vtcm_bytes
    if need(1) > budget:
        raise PdcError(f"{ctx.node.describe()}: the {what} needs {need(1):,} bytes of VTCM for one output row, more "
                       f"than the target's {budget:,} (pick a part with more VTCM: --vtcm SIZE)")
    rows = g.OH
    if need(rows) > budget:  # a first guess in proportion, then down to the first that fits
        rows = max(1, rows * budget // need(rows))
        while rows > 1 and need(rows) > budget:
            rows -= 1
    bands = -(-g.OH // rows)
    return -(-g.OH // bands)


def _staging(g: QconvGrid, Hq: int, lanes: int) -> int:
    """Bytes of the staged input rows of a band of Hq grid rows (pdc_hx_stage), with the slack the
    stride-2 deal reads past a row's last pixel."""
    return lanes * min(g.H, Hq * g.sh) * g.W + 256


def _vtcm_sum(*regions: int) -> int:
    """The VTCM of regions placed one after the other, each 128-byte aligned (as ctx.vtcm does)."""
    return sum(-(-r // 128) * 128 for r in regions)


def _phase_table(ctx: KernelContext, phases) -> str:
    return add_weight(ctx, np.array([v for p in phases for v in p], np.int32), "int32_t")


def _prologue(ctx: KernelContext, g: QconvGrid, out: _Output, plane: tuple, tile: str, bias: str, scale: str,
              phases, Wq: int) -> list[str]:
    """The first lines of both convolutions: the operands, the clamp, the packed input `plane` (its C
    name, its VTCM pointer), the accumulator tile, the per-channel tables, the phase table, Wq."""
    ctx.helper("pdc_hx_hvx", HVX)
    ctx.helper("pdc_hx_pack", PACK)
    ty = "int32_t" if out.y32 else "uint8_t"
    return ["    const uint8_t *x = (const uint8_t *)in0;",
            f"    {ty} *y = ({ty} *)out0;",
            "    (void)in1;" + (" (void)in2;" if ctx.has_input(2) else ""),
            f"    const int32_t OW = {g.OW}, Wq = {Wq};",
            *out.clamp_lines(),
            f"    uint8_t *{plane[0]} = {plane[1]};",
            f"    HVX_Vector *tile = (HVX_Vector *){tile};",
            "    const int32_t *ct = (const int32_t *)tile;",
            f"    const int32_t *bias = {bias}, *ph = {_phase_table(ctx, phases)};",
            f"    const float *scale = {scale};",
            "    (void)scale;"]


# ---- dense and grouped: the implicit GEMM ------------------------------------------------------------
TILES = ((4, 4), (6, 4), (8, 3), (12, 2), (16, 1))  # (MB channels, PB vectors): MB * PB + PB <= 28 registers


def tile_kernel(name: str, doc: str, params: str, rows: int, cols: int, init: list, start, step: str, loads: list,
                operand, mac: str) -> tuple[str, str]:
    """An HVX microkernel (name, C): rows x cols accumulator vectors c<i>_<v> in registers, each started
    at start(i, v) (a vector `init`'s C lines declare), then per reduction step k (`step` advances the
    pointers) the `loads` and, per row, `operand(i)` (a C declaration of its `s`) and c<i>_<v> =
    mac (a format of c and v) for every column; the tile stored to c[rows * cols]."""
    acc = [[f"c{i}_{v}" for v in range(cols)] for i in range(rows)]
    L = [f"/* {doc} */", f"static void {name}({params}, HVX_Vector *c) {{", *init]
    for i in range(rows):
        L.append("    HVX_Vector " + ", ".join(f"{acc[i][v]} = {start(i, v)}" for v in range(cols)) + ";")
    L += [f"    for (int32_t k = 0; k < KQ; k++, {step}) {{", *loads]
    for i in range(rows):
        L.append(f"        {{ {operand(i)} " + " ".join(f"{acc[i][v]} = {mac.format(c=acc[i][v], v=v)};"
                                                   for v in range(cols)) + " }")
    L.append("    }")
    for i in range(rows):
        L.append("    " + " ".join(f"c[{i * cols + v}] = {acc[i][v]};" for v in range(cols)))
    L.append("}")
    return name, "\n".join(L) + "\n"


def _ukr(mb: int, pb: int) -> tuple[str, str]:
    return tile_kernel(
        f"pdc_hx_ukr_{mb}x{pb}",
        f"c[{mb}][{pb}] vectors = bias + the {mb} channels' weight words x {pb} vectors of 32 flat outputs",
        "const uint8_t *xq, const int32_t *koff, int32_t KQ, const int32_t *wp, const int32_t *bias", mb, pb,
        [f"    const HVX_Vector b{i} = Q6_V_vsplat_R(bias[{i}]);" for i in range(mb)], lambda i, v: f"b{i}",
        f"wp += {mb}",
        ["        const uint8_t *xk = xq + koff[k];",
         *(f"        const HVX_Vector a{v} = PDC_HX_LOADU(xk + {128 * v});" for v in range(pb))],
        lambda i: f"const int32_t s = wp[{i}];", "Q6_Vw_vrmpyacc_VwVubRb({c}, a{v}, s)")


def _tile_cost(channels: int, outputs: int, mb: int, pb: int) -> float:
    return -(-channels // mb) * mb * -(-outputs // (LANES * pb)) * pb * (1 + 0.5 * (mb + pb) / (mb * pb))


def _gemm(ctx: KernelContext, g: QconvGrid, w: np.ndarray, out: _Output, xz: int, off: int) -> str:
    CQ = -(-g.cg // 4)
    T = g.KH * g.KW
    KQ = CQ * T
    nq_all = g.grid(LANES).get("NQ")
    mb, pb = min(TILES, key=lambda t: _tile_cost(g.mg, nq_all, *t))
    tile_bytes = mb * pb * 128

    def layout(rows: int) -> tuple[dict, int]:
        grid = g.grid(LANES * pb, rows)
        plane = len(grid["phases"]) * grid["Hq"] * grid["Wq"]
        cqs = -(-max(plane, max(grid["tap_off"]) + grid["nq_pad"]) // 32) * 32  # dwords per channel quad
        return grid, cqs

    def need(rows: int) -> int:
        grid, cqs = layout(rows)
        return _vtcm_sum(CQ * cqs * 4, tile_bytes, _staging(g, grid["Hq"], 4))

    R = _fit_rows(ctx, g, need, f"HVX convolution's {mb}x{pb} tile")
    grid, cqs = layout(R)
    Wq, Hq = grid["Wq"], grid["Hq"]
    koff = np.array([(cq * cqs + grid["tap_off"][t]) * 4 for cq in range(CQ) for t in range(T)], np.int32)
    # weights [G][MBn][KQ][MB] words: channels 4 cq..4 cq + 3 of tap t, zero-padded
    mbn = -(-g.mg // mb)
    w5 = np.zeros((g.G, mbn * mb, CQ * 4, g.KH, g.KW), np.int8)
    w5[:, :g.mg, :g.cg] = w.reshape(g.G, g.mg, g.cg, g.KH, g.KW)
    words = w5.reshape(g.G, mbn, mb, CQ, 4, T).transpose(0, 1, 3, 5, 2, 4)  # [G][MBn][CQ][T][MB][4]
    packed = np.ascontiguousarray(words).view(np.int32).reshape(-1)
    channels = np.array([[gi * g.mg + m if m < g.mg else -1 for m in range(mbn * mb)] for gi in range(g.G)]).reshape(-1)
    bias, scale = out.tables(ctx, channels)
    ukr, code = _ukr(mb, pb)
    ctx.helper(ukr, code)
    xq = ctx.vtcm(CQ * cqs * 4)
    tile = ctx.vtcm(tile_bytes)
    st = ctx.vtcm(_staging(g, Hq, 4))
    L = _prologue(ctx, g, out, ("xq", xq), tile, bias, scale, grid["phases"], Wq)
    L += [f"    const int32_t *koff = {add_weight(ctx, koff, 'int32_t')}, *wp = {add_weight(ctx, packed, 'int32_t')};",
          f"    for (int32_t n = 0; n < {g.N}; n++) {{",
          f"        for (int32_t gi = 0; gi < {g.G}; gi++) {{",
          f"            const uint8_t *xg = x + ((int64_t)n * {g.C} + gi * {g.cg}) * {g.H * g.W};",
          f"            for (int32_t oh0 = 0; oh0 < {g.OH}; oh0 += {R}) {{",
          f"                const int32_t rows = {g.OH} - oh0 < {R} ? {g.OH} - oh0 : {R}, nq = (rows - 1) * Wq + OW;",
          f"                pdc_hx_pack(xq, {st}, xg, {g.cg}, 4, {g.H}, {g.W}, oh0 * {g.sh} - {g.pt}, -{g.pl}, {g.sh}, "
          f"{g.sw}, "
          f"ph, {len(grid['phases'])}, {Hq}, Wq, {cqs * 4}, {xz + off}, {off});",
          f"                for (int32_t q0 = 0; q0 < nq; q0 += {LANES * pb}) {{",
          f"                    const int32_t cnt = nq - q0 < {LANES * pb} ? nq - q0 : {LANES * pb};",
          "                    const int32_t oh = q0 / Wq, ow0 = q0 % Wq;",
          f"                    for (int32_t b = 0; b < {mbn}; b++) {{",
          f"                        const int32_t t0 = (gi * {mbn} + b) * {mb};",
          f"                        {ukr}(xq + q0 * 4, koff, {KQ}, wp + t0 * {KQ}, bias + t0, tile);",
          f"                        const int32_t m0 = gi * {g.mg} + b * {mb}, mrows = {g.mg} - b * {mb} < {mb} ? "
          f"{g.mg} - b * {mb} : {mb};",
          "                        for (int32_t i = 0; i < mrows; i++) {",
          f"                            {'int32_t' if out.y32 else 'uint8_t'} *yc = y + (((int64_t)n * {g.M} + m0 + i) * "
          f"{g.OH} + oh0) * OW;",
          "                            const float sc = scale[t0 + i];" if not out.y32 and out.vector is None else "",
          *("                            " + x for x in out.vector_lines([f"tile[i * {pb} + {v}]" for v in range(pb)],
                                                                          "t0 + i"))]
    L += ["                            " + s for s in _requant_block(out, f"i * {LANES * pb} + l")]
    L += ["                        }", "                    }", "                }", "            }", "        }", "    }"]
    return "\n".join(x for x in L if x)


# ---- depthwise ---------------------------------------------------------------------------------------
def _depthwise(ctx: KernelContext, g: QconvGrid, w: np.ndarray, out: _Output, xz: int, off: int) -> str:
    wk = w.reshape(g.M, g.KH, g.KW)

    def layout(rows: int):
        grid = g.grid(4 * LANES, rows)
        index = {p: i for i, p in enumerate(grid["phases"])}
        quads = []  # (byte offset from the output's flat index, [(kh, kw) or None] x 4)
        for kh in range(g.KH):
            for b in sorted({(kw * g.dw) % g.sw for kw in range(g.KW)}):
                cols = {(kw * g.dw) // g.sw: kw for kw in range(g.KW) if (kw * g.dw) % g.sw == b}
                base = (index[(kh * g.dh) % g.sh, b] * grid["Hq"] + (kh * g.dh) // g.sh) * grid["Wq"]
                lo, hi = min(cols), max(cols)
                for c0 in range(lo, hi + 1, 4):
                    quads.append((base + c0, [(kh, cols[c]) if c in cols else None for c in range(c0, c0 + 4)]))
        plane = len(grid["phases"]) * grid["Hq"] * grid["Wq"]
        size = -(-max(plane, max(q[0] for q in quads) + grid["nq_pad"] + 3) // 128) * 128
        return grid, quads, size

    def need(rows: int) -> int:
        grid, _, size = layout(rows)
        return _vtcm_sum(size, 4 * 128, _staging(g, grid["Hq"], 1))

    R = _fit_rows(ctx, g, need, "HVX depthwise convolution's plane")
    grid, quads, size = layout(R)
    QJ = len(quads)
    words = np.zeros((g.M, QJ, 4), np.int8)
    for j, (_, taps) in enumerate(quads):
        for t, tap in enumerate(taps):
            if tap is not None:
                words[:, j, t] = wk[:, tap[0], tap[1]]
    offs = np.array([q[0] for q in quads], np.int32)
    bias, scale = out.tables(ctx, np.arange(g.M))
    plane = ctx.vtcm(size)
    tile = ctx.vtcm(4 * 128)
    st = ctx.vtcm(_staging(g, grid["Hq"], 1))
    L = _prologue(ctx, g, out, ("xp", plane), tile, bias, scale, grid["phases"], grid["Wq"])
    L += [f"    const int32_t *offs = {add_weight(ctx, offs, 'int32_t')};",
          f"    const int32_t *wq = {add_weight(ctx, np.ascontiguousarray(words).view(np.int32).reshape(-1), 'int32_t')};",
          f"    for (int32_t n = 0; n < {g.N}; n++) {{",
          f"        for (int32_t c = 0; c < {g.C}; c++) {{",
          f"            const uint8_t *xc = x + ((int64_t)n * {g.C} + c) * {g.H * g.W};",
          f"            for (int32_t oh0 = 0; oh0 < {g.OH}; oh0 += {R}) {{",
          f"                const int32_t rows = {g.OH} - oh0 < {R} ? {g.OH} - oh0 : {R}, nq = (rows - 1) * Wq + OW;",
          f"                pdc_hx_pack(xp, {st}, xc, 1, 1, {g.H}, {g.W}, oh0 * {g.sh} - {g.pt}, -{g.pl}, {g.sh}, {g.sw}, ph, "
          f"{len(grid['phases'])}, {grid['Hq']}, Wq, {size}, {xz + off}, {off});",
          f"                for (int32_t mi = 0; mi < {g.mg}; mi++) {{",
          f"                    const int32_t m = c * {g.mg} + mi;",
          f"                    const int32_t *wm = wq + m * {QJ};",
          "                    const HVX_Vector b0 = Q6_V_vsplat_R(bias[m]);",
          f"                    {'int32_t' if out.y32 else 'uint8_t'} *yc = y + (((int64_t)n * {g.M} + m) * {g.OH} + oh0) * OW;",
          "                    const float sc = scale[m];" if not out.y32 and out.vector is None else "",
          f"                    for (int32_t q0 = 0; q0 < nq; q0 += {4 * LANES}) {{",
          "                        HVX_Vector c0 = b0, c1 = b0, c2 = b0, c3 = b0;",
          f"                        for (int32_t j = 0; j < {QJ}; j++) {{",
          "                            const uint8_t *s = xp + offs[j] + q0;",
          "                            const int32_t wj = wm[j];",
          "                            c0 = Q6_Vw_vrmpyacc_VwVubRb(c0, PDC_HX_LOADU(s), wj);",
          "                            c1 = Q6_Vw_vrmpyacc_VwVubRb(c1, PDC_HX_LOADU(s + 1), wj);",
          "                            c2 = Q6_Vw_vrmpyacc_VwVubRb(c2, PDC_HX_LOADU(s + 2), wj);",
          "                            c3 = Q6_Vw_vrmpyacc_VwVubRb(c3, PDC_HX_LOADU(s + 3), wj);",
          "                        }",
          "                        tile[0] = c0; tile[1] = c1; tile[2] = c2; tile[3] = c3;",
          *("                        " + x for x in out.vector_lines([f"tile[{v}]" for v in range(4)], "m")),
          f"                        const int32_t cnt = nq - q0 < {4 * LANES} ? nq - q0 : {4 * LANES};",
          "                        const int32_t oh = q0 / Wq, ow0 = q0 % Wq;",
          "                        {"]
    L += ["                            " + s for s in _requant_block(out, "(l & 3) * 32 + (l >> 2)")]
    L += ["                        }", "                    }", "                }", "            }", "        }", "    }"]
    return "\n".join(x for x in L if x)


@kernel("qconv", family="hexagon")
def qconv(ctx: KernelContext) -> Optional[str]:
    setup = _setup(ctx)
    if setup is None:
        return None
    g, w, out, xz, off = setup
    if math.prod(ctx.outputs[0].shape) == 0:
        return None
    ctx.helper("pdc_hx_hvx", HVX)  # first: the microkernels use its types
    if g.cg == 1 and take("qconv", "hvx-depthwise", g.mg <= 4):
        return mark("qconv", "hvx-depthwise", _depthwise(ctx, g, w, out, xz, off))
    if take("qconv", "hvx-gemm"):
        return mark("qconv", "hvx-gemm", _gemm(ctx, g, w, out, xz, off))
    return None
