"""x86 int8 kernels for qconv and qmatmul (pdc/ir/ops/qint.py) on AVX-512 with VNNI (vpdpbusd), and
qadd, bit-exact with the NumPy references (KERNELS.md §5).

Arithmetic. `vpdpbusd acc, u, w` adds four u8 x s8 products to each int32 lane, without
saturation (sums wrap modulo 2^32). Activations enter as u8: uint8 as they are, int8 with the
sign bit flipped (x ^ 0x80 = x + 128). So acc_hw = sum(u * w) = sum((x - x_zero) * w) + (x_zero +
off) * sum(w) (off = 128 for int8, 0 for uint8), and bias - (x_zero + off) * sum(w) per output
channel is folded into the accumulator's start value at compile time. Padding taps hold the byte
x_zero + off, so they contribute (x_zero + off) * w, which the fold removes, as the reference's
padding contributes 0; padded reduction slots have zero weights. Everything wraps modulo 2^32, so
the int32 result is exact whenever the true accumulator fits int32: 255 * sum|w| + |bias| <
2^31 is checked per channel at compile time (else the generator declines and the portable kernel,
which accumulates in int64 where needed, takes the layer). y_dtype i32 outputs (the accumulators,
which the reference casts to int32, i.e. modulo 2^32 too) need no bound.
The requantization is the reference's float32 rule: the int32 lanes converted to float, times the
channel's scale, clamped to [lo - y_zero, hi - y_zero], converted back rounding half to even,
+ y_zero, truncated to bytes (_mm512_cvtepi32_epi8; [lo, hi] lies in the output type's range):
6 vector instructions per 16 outputs, which matters for small-K layers (depthwise, narrow 1x1).
Tiles of 4k vectors (and the depthwise and tap-quad tiles) pack instead: 4 vectors of int32 to
64 bytes with saturating packs, y_zero added in 16-bit lanes, one dword permutation into output
order, the clamp on the bytes where every |acc * scale| < 2^30 is proven (else in float32 before
the packs): about a third of the per-vector instructions (mobilenet_v2's 16 -> 96 channel 1x1
at 112x112: 176 -> 133 us).

qconv, dense and grouped ("vnni"): an implicit GEMM over a packed copy of the input. Per (image,
group) the input is copied once into `xq`: 4 channels interleaved per dword (the quad vpdpbusd
reduces), zero-padded to whole quads, padding taps = x_zero + off, the columns (and rows)
split into stride phases, only the phases some tap reads. With Wq columns per packed row, the
output pixel (oh, ow) is the flat index q = oh * Wq + ow, and every tap (kh, kw) of every channel
quad reads q + koff[k], a constant offset: 16 consecutive q are one 64-byte load. Columns ow >= OW
of the flat grid are computed and dropped. The microkernel keeps MR output channels x NV vectors
of 16 pixels in zmm accumulators; per reduction quad it loads NV activation vectors and
broadcasts MR weight dwords (packed [group][channel block][K/4][MR][4], zero-padded). Its tile
is one output channel's 16 consecutive pixels, so the int8 results store straight into NCHW rows
(a vector crossing grid rows, or reaching the dropped columns, is stored row by row with byte
masks). The microkernel is its own (noinline) function writing the tile to the stack: inlined
into the task, gcc spilled accumulators inside the reduction loop (150 vs 250 GMAC/s). Work units (image, group,
channel block, pixel block) are split over the threads (pixel blocks innermost: a thread keeps
its weight panel in L1 while the packed input streams from L2); the pack runs first as its own
parallel loop. Where the columns the phases read lie in the first 64 of a padded row and the
column stride is 1 or 2 (resnet's layers), the pack works per (channel quad, row phase) and input
row: 4 masked loads, the bytes interleaved to 64 dwords in registers, each column phase's Wq
dwords picked by one dword permute per 16 (3-4x faster than per phase, row by row through
scratch: it was 10-25 % of the stride-2 layers). Few input channels (fewer quads over taps than
over channels: the 3-channel stem, 25 % of its products padding): the quads run over taps
instead, the packed input one byte per pixel and channel ([channel][phase][Hq][Wq]). The taps of
one kernel row and column phase are consecutive bytes of a phase row (column stride a multiple of
the dilation, else zero-weight gaps), so a quad is read in place as in the depthwise "s1" mode:
the load at byte r of a group of 64 outputs holds outputs 4 i + r, and the task packs each
group's requantized bytes and puts them in order as the depthwise tiles do (an int32 transpose
was 20 shuffles per group). The 7x7 stride-2 stem: 42 quads instead of 49.
1x1 stride-1 unpadded convolutions ("vnni-pointwise") are the same GEMM over channel planes
taken as one long row (no grid columns to drop): a plain [M x C] x [C x HW] GEMM.
Depthwise ("vnni-depthwise", one input channel per group): per (image, channel) a padded u8
plane goes to the thread's scratch (L1-sized; rows split only by the row stride; one masked load
per 64 bytes of a row, the masks computed once per plane), and a tile of 64 flat outputs
q = oh * Wq + ow is 4 accumulators of 16. With column stride 1 and no column dilation the taps
kw = 4 t .. 4 t + 3 of a kernel row are 4 consecutive plane bytes, so a load at offset q + r
holds in lane i the quad of output q + 4 i + r: per tap quad 4 plain loads and 4 vpdpbusd, no
byte interleaving (taps past KW have weight 0; the tap loop has a constant trip count). Column
stride 2 reads the same in-place quads at offsets 0 / 2 (even / odd outputs) and 64 / 66, 2 plane
bytes per output; other column strides and dilations lay the quads out per output (the dense
pack's quads over taps instead of channels). The accumulators are requantized and packed to
bytes (packs 32 -> 16 -> 8, y_zero added to the words), then put in output order by one byte
shuffle and one dword permute. Where every |acc * scale| < 2^30 (checked at compile time) the
clamp moves after the saturating packs, to the bytes (exact: the saturations are monotone and
the identity on [lo, hi]). Dropped grid columns (Wq > OW): a grid of up to 4 vectors is cut into
its NCHW rows in registers (two word permutes and blends per vector, a table per layer), a larger
one goes to the thread's scratch and its rows are copied out (reloading bytes just stored waits
for the store to retire). The per-thread scratches sit a 128-byte line pair apart: the adjacent
line prefetcher made two cores' neighbouring small scratches bounce (2x on the 7x7 layers).
qmatmul ("vnni"): b packed [N/(16 NV)][K/4][NV][16][4] (16 columns x 4 k per zmm, zero-padded);
MR rows of a read in place, each dword of 4 activations broadcast (sign-flipped for int8; a K
tail of 1-3 loaded bytewise), MR x NV accumulators of 16 columns, the per-column multiplier and
shift as vectors in the epilogue, units (column block, row block) over the threads.

qadd ("avx512", same-shape operands: the residual adds of ResNet / MobileNet): the reference's two
float32 fmas per 16 lanes (broadcast operands: the portable kernel).

ISA: the kernels need AVX-512 F/BW/VL (the x86-avx512 target's -march=x86-64-v4). vpdpbusd
(AVX512-VNNI) is not part of x86-64-v4, so every task is emitted twice, with
__attribute__((target("avx512vnni"))) and with vpdpbusd emulated by two vpmaddwd (exact: the
u8 / s8 halves widened to int16), and picked at run time with __builtin_cpu_supports.
PDC_FORCE_PATH=int8-dot=emulated emits the emulation only (to test it on a VNNI machine).
Other x86 targets (AVX2) get None: the portable generators take the layer.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import numpy as np

from ...context import KernelContext
from ...ctypes_c import float_literal
from ....ir.ops.qint import qadd_constant
from .. import kernel
from ..paths import declare, forced, mark, take
from ..qint import (QconvGrid, _clamp, folded_bias, job_lines, native_qmatmul_operands, scale_table, slots_call,
                    unsigned_conv_setup, wrap32)
from ..quant import add_weight

declare("qconv", "portable", "vnni", "vnni-pointwise", "vnni-depthwise", "vnni-window")
declare("qmatmul", "portable", "vnni")
# the ISA of the int8 dot products: vpdpbusd where the CPU has it (checked at run time), else
# its AVX-512BW emulation; "emulated" emits the emulation only
declare("int8-dot", "dispatch", "emulated")

# below these, one thread: a parallel region costs microseconds (more on a busy machine, where a
# worker that fell asleep waits for its core), vpdpbusd does ~250 MMAC per millisecond and core
PARALLEL_MIN_MACS = 1 << 20
PACK_PARALLEL_MIN_BYTES = 1 << 14  # the dense conv's input pack: 0.25 (rows) to 1 ns per input byte
VNNI_ATTR = "PDC_QX_VNNI"  # a macro: c_helpers.py finds a function's name at its first '('

COMMON = r"""#include <immintrin.h>
#include <string.h>
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "pdc's x86 int8 kernels need AVX-512 F/BW/VL (compile with -march=x86-64-v4 or newer)"
#endif
#define PDC_QX_VNNI __attribute__((target("avx512vnni")))
#define PDC_QX_NOINLINE __attribute__((noinline))
/* acc + four u8 x s8 products per int32 lane, wrapping: vpdpbusd (AVX512-VNNI) ... */
static inline PDC_QX_VNNI __m512i pdc_qx_dp_vnni(__m512i acc, __m512i u, __m512i w) {
    return _mm512_dpbusd_epi32(acc, u, w);
}
/* ... or its exact AVX-512BW form: the even and odd bytes widened to int16, two vpmaddwd */
static inline __m512i pdc_qx_dp_bw(__m512i acc, __m512i u, __m512i w) {
    const __m512i ue = _mm512_and_si512(u, _mm512_set1_epi16(0x00ff)), uo = _mm512_srli_epi16(u, 8);
    const __m512i we = _mm512_srai_epi16(_mm512_slli_epi16(w, 8), 8), wo = _mm512_srai_epi16(w, 8);
    return _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_madd_epi16(ue, we), _mm512_madd_epi16(uo, wo)));
}
static inline int pdc_qx_has_vnni(void) { return __builtin_cpu_supports("avx512vnni"); }

/* clamp(rint(f32(acc) * sc), lo - y_zero, hi - y_zero) of 16 int32 lanes: the float32 product
   clamped to [lo - y_zero, hi - y_zero] (flo, fhi), rounded half to even */
static inline __m512i pdc_qx_rq32(__m512i acc, __m512 sc, __m512 flo, __m512 fhi) {
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), sc), flo), fhi);
    return _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* rint(f32(acc) * sc) of 16 int32 lanes, unclamped (where the caller knows it fits int32) */
static inline __m512i pdc_qx_rnd32(__m512i acc, __m512 sc) {
    return _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), sc), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* clamp(y_zero + rint(f32(acc) * sc), lo, hi) of 16 int32 lanes, as 16 bytes (yz: y_zero) */
static inline __m128i pdc_qx_rq(__m512i acc, __m512 sc, __m512 flo, __m512 fhi, __m512i yz) {
    return _mm512_cvtepi32_epi8(_mm512_add_epi32(pdc_qx_rq32(acc, sc, flo, fhi), yz));
}
static inline __mmask64 pdc_qx_m64(int64_t n) { return n <= 0 ? 0 : n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }
/* lanes [lo, hi) of 64 */
static inline __mmask64 pdc_qx_lanes(int64_t lo, int64_t hi) { return pdc_qx_m64(hi) & ~pdc_qx_m64(lo); }

/* d[t] = s[i0 + t * st] ^ flip where 0 <= i0 + t * st < W, else pad, for t in [0, n): per 64 input
   bytes one masked load (pad where masked: the masked-off lanes, outside the row, are not read) */
static inline void pdc_qx_fetch(uint8_t *d, const uint8_t *s, int64_t W, int64_t i0, int64_t st, int64_t n, int pad, int flip) {
    const __m512i fv = _mm512_set1_epi8((char)flip), pv = _mm512_set1_epi8((char)(pad ^ flip));
    const uintptr_t base = (uintptr_t)s;  /* addresses left of the row: integer arithmetic, never dereferenced */
    if (st == 1) {
        for (int64_t t = 0; t < n; t += 64) {
            const int64_t a = i0 + t;  /* the input column of lane 0 */
            const __m512i v = _mm512_mask_loadu_epi8(pv, pdc_qx_lanes(-a, W - a), (const void *)(base + (uintptr_t)a));
            _mm512_mask_storeu_epi8(d + t, pdc_qx_m64(n - t), _mm512_xor_si512(v, fv));
        }
    } else if (st == 2) {  /* even bytes: per 128-bit lane to its low qword, then the qwords gathered */
        const __m512i sh = _mm512_set4_epi32(0x0f0d0b09, 0x07050301, 0x0e0c0a08, 0x06040200);
        const __m512i perm = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
        for (int64_t t = 0; t < n; t += 32) {
            const int64_t a = i0 + 2 * t;
            const __m512i v = _mm512_mask_loadu_epi8(pv, pdc_qx_lanes(-a, W - a), (const void *)(base + (uintptr_t)a));
            const __m512i e = _mm512_permutexvar_epi64(perm, _mm512_shuffle_epi8(v, sh));
            _mm256_mask_storeu_epi8(d + t, (__mmask32)pdc_qx_m64(n - t),
                                    _mm256_xor_si256(_mm512_castsi512_si256(e), _mm512_castsi512_si256(fv)));
        }
    } else {
        for (int64_t t = 0; t < n; t++) {
            const int64_t c = i0 + t * st;
            d[t] = c >= 0 && c < W ? (uint8_t)(s[c] ^ flip) : (uint8_t)pad;
        }
    }
}

/* d[4 t + b] = r_b[t] for t < n: four rows of bytes to dwords (rows readable up to n + 15) */
static inline void pdc_qx_quads(uint8_t *d, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3, int64_t n) {
    for (int64_t t = 0; t < n; t += 16) {
        const __m128i a0 = _mm_loadu_si128((const __m128i *)(r0 + t)), a1 = _mm_loadu_si128((const __m128i *)(r1 + t));
        const __m128i a2 = _mm_loadu_si128((const __m128i *)(r2 + t)), a3 = _mm_loadu_si128((const __m128i *)(r3 + t));
        const __m128i l01 = _mm_unpacklo_epi8(a0, a1), h01 = _mm_unpackhi_epi8(a0, a1);
        const __m128i l23 = _mm_unpacklo_epi8(a2, a3), h23 = _mm_unpackhi_epi8(a2, a3);
        __m512i v = _mm512_castsi128_si512(_mm_unpacklo_epi16(l01, l23));
        v = _mm512_inserti32x4(v, _mm_unpackhi_epi16(l01, l23), 1);
        v = _mm512_inserti32x4(v, _mm_unpacklo_epi16(h01, h23), 2);
        v = _mm512_inserti32x4(v, _mm_unpackhi_epi16(h01, h23), 3);
        const int64_t c = n - t;
        _mm512_mask_storeu_epi32(d + 4 * t, c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << c) - 1), v);
    }
}

static inline __mmask16 pdc_qx_m16(int64_t n) { return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* the 4 x 4 transpose of 128-bit lanes: lane k of v[L] to lane L of v[k] */
static inline void pdc_qx_lanes4(__m512i *v) {
    const __m512i t0 = _mm512_shuffle_i32x4(v[0], v[1], 0x44), t1 = _mm512_shuffle_i32x4(v[2], v[3], 0x44);
    const __m512i t2 = _mm512_shuffle_i32x4(v[0], v[1], 0xee), t3 = _mm512_shuffle_i32x4(v[2], v[3], 0xee);
    v[0] = _mm512_shuffle_i32x4(t0, t1, 0x88);
    v[1] = _mm512_shuffle_i32x4(t0, t1, 0xdd);
    v[2] = _mm512_shuffle_i32x4(t2, t3, 0x88);
    v[3] = _mm512_shuffle_i32x4(t2, t3, 0xdd);
}

/* c[0..64) in place from four vectors whose lane i holds output 4 i + r (r: the vector) to the
   64 outputs in order: c[16 m + j] = a[j % 4][4 m + j / 4] (a dword transpose in each 128-bit
   lane, then one of the lanes) */
static inline void pdc_qx_order4(int32_t *c) {
    const __m512i a0 = _mm512_load_si512((const void *)c), a1 = _mm512_load_si512((const void *)(c + 16));
    const __m512i a2 = _mm512_load_si512((const void *)(c + 32)), a3 = _mm512_load_si512((const void *)(c + 48));
    const __m512i t0 = _mm512_unpacklo_epi32(a0, a1), t1 = _mm512_unpackhi_epi32(a0, a1);
    const __m512i t2 = _mm512_unpacklo_epi32(a2, a3), t3 = _mm512_unpackhi_epi32(a2, a3);
    __m512i v[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                    _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
    pdc_qx_lanes4(v);
    for (int m = 0; m < 4; m++) _mm512_store_si512((void *)(c + 16 * m), v[m]);
}

/* (oh[v], ow[v]) of the flat grid indices q0 + 16 v, v < n */
static inline void pdc_qx_cursor(int64_t q0, int64_t Wq, int n, int64_t *oh, int64_t *ow) {
    int64_t h = q0 / Wq, w = q0 - h * Wq;
    for (int v = 0; v < n; v++) {
        oh[v] = h;
        ow[v] = w;
        for (w += 16; w >= Wq; w -= Wq) h++;
    }
}

/* The int32 form (y_dtype i32: the accumulators themselves) */
static inline void pdc_qx_store16_i32(int32_t *yp, int64_t q, int64_t oh, int64_t ow, __m512i v, int64_t NQ, int64_t Wq, int64_t OW) {
    if (Wq == OW) {
        const int64_t n = NQ - q;
        if (n > 0) _mm512_mask_storeu_epi32(yp + q, n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1), v);
        return;
    }
    for (int64_t t = 0; t < 16 && q + t < NQ; oh++, ow = 0) {
        int64_t cnt = OW - ow;
        if (cnt > 0) {
            if (cnt > 16 - t) cnt = 16 - t;
            const __m512i s = t ? _mm512_permutexvar_epi32(_mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                                            _mm512_set1_epi32((int)t)), v) : v;
            _mm512_mask_storeu_epi32(yp + oh * OW + ow, (__mmask16)((1u << cnt) - 1), s);
        }
        t += Wq - ow;
    }
}

/* Stores 16 output bytes of flat grid indices q.. (q = oh * Wq + ow, the caller's division) into
   an NCHW plane: the columns ow < OW of each grid row they cover, nothing at or past
   NQ = (OH - 1) * Wq + OW. */
static inline void pdc_qx_store16(uint8_t *yp, int64_t q, int64_t oh, int64_t ow, __m128i v, int64_t NQ, int64_t Wq, int64_t OW) {
    if (Wq == OW) {
        const int64_t n = NQ - q;
        if (n >= 16) _mm_storeu_si128((__m128i *)(yp + q), v);
        else if (n > 0) _mm_mask_storeu_epi8(yp + q, (__mmask16)((1u << n) - 1), v);
        return;
    }
    if (ow + 16 <= OW && q + 16 <= NQ) {  /* inside one output row */
        _mm_storeu_si128((__m128i *)(yp + oh * OW + ow), v);
        return;
    }
    for (int64_t t = 0; t < 16 && q + t < NQ; oh++, ow = 0) {
        int64_t cnt = OW - ow;
        if (cnt > 0) {
            if (cnt > 16 - t) cnt = 16 - t;
            const __m128i s = t ? _mm_shuffle_epi8(v, _mm_add_epi8(_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                                   _mm_set1_epi8((char)t))) : v;
            _mm_mask_storeu_epi8(yp + oh * OW + ow, (__mmask16)((1u << cnt) - 1), s);
        }
        t += Wq - ow;
    }
}

/* pdc_qx_store16 of 64 output bytes (oh, ow: of q): one store where they lie in one output row */
static inline void pdc_qx_store64(uint8_t *yp, int64_t q, int64_t oh, int64_t ow, __m512i v, int64_t NQ, int64_t Wq, int64_t OW) {
    if (Wq == OW) {
        _mm512_mask_storeu_epi8(yp + q, pdc_qx_m64(NQ - q), v);
        return;
    }
    if (ow + 64 <= OW && q + 64 <= NQ) {
        _mm512_storeu_si512((void *)(yp + oh * OW + ow), v);
        return;
    }
    int64_t vh[4], vw[4];
    pdc_qx_cursor(q, Wq, 4, vh, vw);
    pdc_qx_store16(yp, q, vh[0], vw[0], _mm512_castsi512_si128(v), NQ, Wq, OW);
    pdc_qx_store16(yp, q + 16, vh[1], vw[1], _mm512_extracti32x4_epi32(v, 1), NQ, Wq, OW);
    pdc_qx_store16(yp, q + 32, vh[2], vw[2], _mm512_extracti32x4_epi32(v, 2), NQ, Wq, OW);
    pdc_qx_store16(yp, q + 48, vh[3], vw[3], _mm512_extracti32x4_epi32(v, 3), NQ, Wq, OW);
}
"""

ROWS_COPY = r"""/* y[oh][0..OW) = stage[oh * Wq + 0..OW) for oh < OH: a flat grid's output rows into NCHW */
static inline void pdc_qx_copy_rows(uint8_t *y, const uint8_t *stage, int64_t OH, int64_t OW, int64_t Wq) {
    if (OW <= 64) {
        const __mmask64 m = pdc_qx_m64(OW);
        for (int64_t oh = 0; oh < OH; oh++)
            _mm512_mask_storeu_epi8(y + oh * OW, m, _mm512_maskz_loadu_epi8(m, stage + oh * Wq));
        return;
    }
    const int64_t tl = (OW - 1) / 64 * 64;  /* the last, masked, chunk */
    const __mmask64 m = pdc_qx_m64(OW - tl);
    for (int64_t oh = 0; oh < OH; oh++) {
        for (int64_t t = 0; t < tl; t += 64)
            _mm512_storeu_si512((void *)(y + oh * OW + t), _mm512_loadu_si512((const void *)(stage + oh * Wq + t)));
        _mm512_mask_storeu_epi8(y + oh * OW + tl, m, _mm512_maskz_loadu_epi8(m, stage + oh * Wq + tl));
    }
}
"""

GRID_ROWS = r"""/* The output bytes of one 64-byte vector of a depthwise channel's flat grid (small grids), cut
   into NCHW rows in registers, as reloading bytes just stored waits for the store: y[k0 + k] = r[s]
   for the grid bytes s of the vector's ow < OW columns, in order. AVX-512BW has no byte permute:
   two word permutes (the words holding each output word's low, then high, byte), each wanted byte
   moved to its half where it sits in the other (masks codd, ceven), one byte blend. t: the
   vector's table, int16 [64 word indices][codd, ceven as uint32][k0][count] */
static inline void pdc_qx_grid_rows(uint8_t *y, __m512i r, const int16_t *t) {
    uint32_t codd, ceven;
    memcpy(&codd, t + 64, 4);
    memcpy(&ceven, t + 66, 4);
    const __m512i a = _mm512_permutexvar_epi16(_mm512_loadu_si512((const void *)t), r);
    const __m512i b = _mm512_permutexvar_epi16(_mm512_loadu_si512((const void *)(t + 32)), r);
    const __m512i lo = _mm512_mask_mov_epi16(a, (__mmask32)codd, _mm512_srli_epi16(a, 8));
    const __m512i hi = _mm512_mask_mov_epi16(b, (__mmask32)ceven, _mm512_slli_epi16(b, 8));
    _mm512_mask_storeu_epi8(y + t[68], pdc_qx_m64(t[69]), _mm512_mask_blend_epi8((__mmask64)0xaaaaaaaaaaaaaaaaull, lo, hi));
}
"""

CONV_JOB = """/* An int8 2-D convolution on AVX-512 (x86/qint.py): x [N][C][H][W] -> y [N][M][OH][OW]. */
typedef struct {
    const uint8_t *x;
    uint8_t *y;
    uint8_t *xq;            /* packed input: per (image, group) xq_bs bytes */
    uint8_t *rows;          /* per-slot scratch (rows_stride bytes): fetched rows / a depthwise plane */
    const int32_t *w;       /* weight dwords (4 int8) in the order the task reads them */
    const int32_t *koff;    /* byte offset of each reduction quad (dense) or tap (depthwise) */
    const int32_t *bias;    /* bias - (x_zero + off) * sum(w), per (padded) output channel */
    const float *scale;     /* the requantization scale per (padded) output channel */
    const int32_t *phr, *phw;   /* row / column stride phase of each packed phase plane */
    const int16_t *cidx;    /* depthwise, small grids: pdc_qx_grid_rows' table per vector */
    int64_t N, C, H, W, M, G, cg, mg, cq, OH, OW, sh, sw, ph, pw, NPH, Hq, Wq, xq_bs, rows_stride, rs;
    int64_t NQ, KQ, NB, nqb, Wp, dw, stage_off, NRP;
    const int32_t *rph;     /* the row stride phases of the packed phase planes (units of the rows / taps packs) */
    int32_t pad, flip, yz, lo, hi;
} pdc_qx_conv_job;
"""

DW_PLANE = r"""/* One channel's padded plane [NPH][Hq][Wp] of u8 (the depthwise kernel, column stride 1 or 2,
   reads its tap quads in place): row i of phase p is input row i * sh + phr[p] - ph, byte c its
   column c - pw, the pad byte outside. Per 64 bytes of a row one masked load, the masks (the
   same for every row) computed once; rows over 512 bytes chunk by chunk */
static inline void pdc_qx_dw_plane(uint8_t *pl, const uint8_t *xc, const pdc_qx_conv_job *j) {
    const int64_t H = j->H, W = j->W, Hq = j->Hq, Wp = j->Wp, i0 = -j->pw, nk = (Wp + 63) / 64;
    const __m512i fv = _mm512_set1_epi8((char)j->flip), pv = _mm512_set1_epi8((char)(j->pad ^ j->flip));
    __mmask64 lm[8], sm[8];
    for (int64_t k = 0; k < nk && k < 8; k++) {
        lm[k] = pdc_qx_lanes(-(i0 + 64 * k), W - (i0 + 64 * k));
        sm[k] = pdc_qx_m64(Wp - 64 * k);
    }
    const uintptr_t base = (uintptr_t)xc + (uintptr_t)i0;  /* left of the row: never dereferenced */
    for (int64_t p = 0; p < j->NPH; p++) {
        const int64_t r0 = j->phr[p] - j->ph;
        uint8_t *d = pl + p * Hq * Wp;
        for (int64_t i = 0; i < Hq; i++, d += Wp) {
            const int64_t ih = i * j->sh + r0;
            if (nk > 8 && (ih < 0 || ih >= H)) memset(d, j->pad, (size_t)Wp);
            else if (ih < 0 || ih >= H)  /* a padding row: vector stores, not a libc call per row */
                for (int64_t k = 0; k < nk; k++) _mm512_mask_storeu_epi8(d + 64 * k, sm[k], _mm512_xor_si512(fv, pv));
            else if (nk <= 8)
                for (int64_t k = 0; k < nk; k++)
                    _mm512_mask_storeu_epi8(d + 64 * k, sm[k], _mm512_xor_si512(fv, _mm512_mask_loadu_epi8(pv, lm[k], (const void *)(base + (uintptr_t)(ih * W + 64 * k)))));
            else pdc_qx_fetch(d, xc + ih * W, W, i0, 1, Wp, j->pad, j->flip);
        }
    }
}
"""

DW_QUADS = r"""/* One channel's tap quads [NPH][NKQ][Hq][Wq][4] of u8 (the depthwise kernel, other column strides
   and dilations): dword ow of row i in quad kq holds the input columns ow * sw + (4 kq + b) * dw - pw,
   b < 4, of input row i * sh + phr[p] - ph (taps past KW: any bytes, their weights are zero) */
static inline void pdc_qx_dw_quads(uint8_t *pl, uint8_t *rows, const uint8_t *xc, const pdc_qx_conv_job *j) {
    const int64_t H = j->H, W = j->W, Hq = j->Hq, Wq = j->Wq, rs = j->rs;
    uint8_t *d = pl;
    for (int64_t p = 0; p < j->NPH; p++)
        for (int64_t kq = 0; kq < j->cq; kq++)
            for (int64_t i = 0; i < Hq; i++, d += 4 * Wq) {
                const int64_t ih = i * j->sh + j->phr[p] - j->ph;
                if (ih < 0 || ih >= H) {
                    memset(d, j->pad, (size_t)(4 * Wq));
                    continue;
                }
                for (int64_t b = 0; b < 4; b++)
                    pdc_qx_fetch(rows + b * rs, xc + ih * W, W, (4 * kq + b) * j->dw - j->pw, j->sw, Wq, j->pad, j->flip);
                pdc_qx_quads(d, rows, rows + rs, rows + 2 * rs, rows + 3 * rs, Wq);
            }
}
"""

PACK_QUADS = """/* The dense conv's packed input: unit = (image, group, channel quad, phase plane) */
static void pdc_qx_pack_quads(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_qx_conv_job *j = (const pdc_qx_conv_job *)vj;
    uint8_t *rows = j->rows + slot * j->rows_stride;
    const int64_t NPH = j->NPH, cq = j->cq, G = j->G, H = j->H, W = j->W, Hq = j->Hq, Wq = j->Wq, rs = j->rs;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t p = u % NPH, r = u / NPH, c4 = r % cq, ng = r / cq, g = ng % G, n = ng / G;
        const uint8_t *xc = j->x + (n * j->C + g * j->cg + 4 * c4) * H * W;
        const int64_t nch = j->cg - 4 * c4 < 4 ? j->cg - 4 * c4 : 4;
        uint8_t *d = j->xq + ng * j->xq_bs + (c4 * NPH + p) * Hq * Wq * 4;
        const int64_t rh = j->phr[p], i0 = j->phw[p] - j->pw;
        for (int64_t i = 0; i < Hq; i++, d += Wq * 4) {
            const int64_t ih = i * j->sh + rh - j->ph;
            if (ih < 0 || ih >= H) {
                memset(d, j->pad, (size_t)(Wq * 4));
                continue;
            }
            for (int64_t b = 0; b < nch; b++)
                pdc_qx_fetch(rows + b * rs, xc + (b * H + ih) * W, W, i0, j->sw, Wq, j->pad, j->flip);
            /* channels past the group's: any bytes (their weights are zero) */
            pdc_qx_quads(d, rows, rows + (nch > 1) * rs, rows + (nch > 2) * 2 * rs, rows + (nch > 3) * 3 * rs, Wq);
        }
    }
}
"""

PACK_ROWS = r"""/* The dense conv's packed input where the column stride is 1 or 2 and the columns the phases
   read lie in the first 64 of the padded row: unit = (image, group, channel quad, row phase). Per
   input row the 4 channel rows are loaded once (one masked load each, pad bytes outside the row),
   interleaved to the dwords of padded columns 0..63 (v[L]: columns 16 L..), and each column phase
   of the row phase takes its Wq dwords (stride 2: one dword permute per 16) */
static void pdc_qx_pack_rows(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_qx_conv_job *j = (const pdc_qx_conv_job *)vj;
    (void)slot;
    const int64_t NPH = j->NPH, NRP = j->NRP, cq = j->cq, G = j->G, H = j->H, W = j->W, Hq = j->Hq, Wq = j->Wq;
    const __m512i fv = _mm512_set1_epi8((char)j->flip), pv = _mm512_set1_epi8((char)(j->pad ^ j->flip));
    const __m512i padv = _mm512_set1_epi8((char)j->pad);
    const __mmask64 lm = pdc_qx_lanes(j->pw, j->pw + W);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t u = u0; u < u1; u++) {
        const int64_t rp = u % NRP, r = u / NRP, c4 = r % cq, ng = r / cq, g = ng % G, n = ng / G, rh = j->rph[rp];
        const int64_t nch = j->cg - 4 * c4 < 4 ? j->cg - 4 * c4 : 4;
        /* column -pw of channel 4 c4's plane: left of the row, never dereferenced */
        const uintptr_t xc = (uintptr_t)(j->x + (n * j->C + g * j->cg + 4 * c4) * H * W) - (uintptr_t)j->pw;
        uint8_t *xg = j->xq + ng * j->xq_bs + c4 * NPH * Hq * Wq * 4;
        for (int64_t i = 0; i < Hq; i++) {
            const int64_t ih = i * j->sh + rh - j->ph;
            __m512i v[4] = {padv, padv, padv, padv};
            if (ih >= 0 && ih < H) {
                __m512i a[4];
                for (int64_t b = 0; b < 4; b++)  /* channels past the group's: any bytes (zero weights) */
                    a[b] = b < nch ? _mm512_xor_si512(fv, _mm512_mask_loadu_epi8(pv, lm, (const void *)(xc + (uintptr_t)((b * H + ih) * W))))
                                   : padv;
                const __m512i l01 = _mm512_unpacklo_epi8(a[0], a[1]), h01 = _mm512_unpackhi_epi8(a[0], a[1]);
                const __m512i l23 = _mm512_unpacklo_epi8(a[2], a[3]), h23 = _mm512_unpackhi_epi8(a[2], a[3]);
                v[0] = _mm512_unpacklo_epi16(l01, l23);  /* lane L: columns 16 L + 0..3 */
                v[1] = _mm512_unpackhi_epi16(l01, l23);  /* 16 L + 4..7 */
                v[2] = _mm512_unpacklo_epi16(h01, h23);
                v[3] = _mm512_unpackhi_epi16(h01, h23);
                pdc_qx_lanes4(v);
            }
            for (int64_t p = 0; p < NPH; p++) {
                if (j->phr[p] != rh) continue;
                int32_t *d = (int32_t *)(xg + (p * Hq + i) * Wq * 4);
                if (j->sw == 1) {
                    for (int64_t k = 0; k < 4; k++) _mm512_mask_storeu_epi32(d + 16 * k, pdc_qx_m16(Wq - 16 * k), v[k]);
                } else {
                    const __m512i idx = _mm512_add_epi32(even, _mm512_set1_epi32(j->phw[p]));
                    _mm512_mask_storeu_epi32(d, pdc_qx_m16(Wq), _mm512_permutex2var_epi32(v[0], idx, v[1]));
                    _mm512_mask_storeu_epi32(d + 16, pdc_qx_m16(Wq - 16), _mm512_permutex2var_epi32(v[2], idx, v[3]));
                }
            }
        }
    }
}
"""

PACK_TAPS = r"""/* The dense conv's packed input reduced over tap quads (few channels): unit = (image, group,
   channel, row phase), each phase plane's rows as bytes [Hq][Wq] (the taps of a kernel row in one
   column phase are consecutive bytes). Column stride 2: the even and odd column phases of a row
   from the same loads */
static void pdc_qx_pack_taps(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_qx_conv_job *j = (const pdc_qx_conv_job *)vj;
    (void)slot;
    const int64_t NPH = j->NPH, NRP = j->NRP, cg = j->cg, G = j->G, H = j->H, W = j->W, Hq = j->Hq, Wq = j->Wq;
    const __m512i sh = _mm512_set4_epi32(0x0f0d0b09, 0x07050301, 0x0e0c0a08, 0x06040200);
    const __m512i perm = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    const __m512i fv = _mm512_set1_epi8((char)j->flip), pv = _mm512_set1_epi8((char)(j->pad ^ j->flip));
    for (int64_t u = u0; u < u1; u++) {
        const int64_t rp = u % NRP, r = u / NRP, c = r % cg, ng = r / cg, g = ng % G, n = ng / G, rh = j->rph[rp];
        const uint8_t *xc = j->x + (n * j->C + g * cg + c) * H * W;
        uint8_t *xg = j->xq + ng * j->xq_bs + c * NPH * Hq * Wq;
        for (int64_t p = 0; p < NPH; p++) {
            if (j->phr[p] != rh) continue;
            /* column stride 2, phases (rh, 0) and (rh, 1): the odd one with the even one */
            const int pair = j->sw == 2 && j->phw[p] == 0 && p + 1 < NPH && j->phr[p + 1] == rh && j->phw[p + 1] == 1;
            uint8_t *d = xg + p * Hq * Wq, *d1 = d + Hq * Wq;
            for (int64_t i = 0; i < Hq; i++, d += Wq, d1 += Wq) {
                const int64_t ih = i * j->sh + rh - j->ph;
                if (ih < 0 || ih >= H) {
                    memset(d, j->pad, (size_t)Wq);
                    if (pair) memset(d1, j->pad, (size_t)Wq);
                } else if (!pair) {
                    pdc_qx_fetch(d, xc + ih * W, W, j->phw[p] - j->pw, j->sw, Wq, j->pad, j->flip);
                } else {  /* pdc_qx_fetch's stride 2, both halves stored */
                    const uintptr_t base = (uintptr_t)(xc + ih * W);  /* left of the row: never dereferenced */
                    for (int64_t t = 0; t < Wq; t += 32) {
                        const int64_t a = 2 * t - j->pw;
                        const __m512i v = _mm512_mask_loadu_epi8(pv, pdc_qx_lanes(-a, W - a), (const void *)(base + (uintptr_t)a));
                        const __m512i e = _mm512_xor_si512(_mm512_permutexvar_epi64(perm, _mm512_shuffle_epi8(v, sh)), fv);
                        _mm256_mask_storeu_epi8(d + t, (__mmask32)pdc_qx_m64(Wq - t), _mm512_castsi512_si256(e));
                        _mm256_mask_storeu_epi8(d1 + t, (__mmask32)pdc_qx_m64(Wq - t), _mm512_extracti64x4_epi64(e, 1));
                    }
                }
            }
            p += pair;
        }
    }
}
"""


def _fill(template: str, **subs) -> str:
    for k, v in subs.items():
        template = template.replace(f"@{k}@", str(v))
    return template


def _common(ctx: KernelContext) -> None:
    ctx.helper("pdc_qx_common", COMMON)


def _variants(ctx: KernelContext, base: str, gen, fn_type: str) -> list[str]:
    """Registers task `base` for vpdpbusd and for its emulation (gen(name, dp, attr) -> [(helper
    name, C)], the task last); returns the C line declaring `fn` (of fn_type), the variant this CPU
    runs."""
    def add(suffix, dp, attr):
        for name, code in gen(base + suffix, dp, attr):
            ctx.helper(name, code)
    if forced("int8-dot") == "emulated":
        add("_bw", "pdc_qx_dp_bw", "")
        return [f"    const {fn_type} fn = {base}_bw;"]
    add("_vnni", "pdc_qx_dp_vnni", VNNI_ATTR + " ")
    add("_bw", "pdc_qx_dp_bw", "")
    return [f"    const {fn_type} fn = pdc_qx_has_vnni() ? {base}_vnni : {base}_bw;"]


class _Out:
    """A layer's output side: y_dtype i32 (the accumulators) or the requantization in float32 lanes
    (the reference's rule: 6 vector instructions per 16 outputs), and the C spellings of its epilogue."""

    def __init__(self, ctx: KernelContext, bias: np.ndarray, channels: int, amax: np.ndarray):
        self.y32 = ctx.outputs[0].dtype.short == "i32"
        self.bias = bias  # folded, int64 [channels]
        self.kind = "i32" if self.y32 else "f"
        self.yz, self.lo, self.hi = 0, 0, 0
        if not self.y32:
            self.scale = scale_table(ctx, channels)
            self.yz = int(ctx.attrs.get("y_zero", 0))
            self.lo, self.hi = _clamp(ctx)
        # every |f32(acc) * scale| < 2^30 (amax: the accumulators' bound): rounding never leaves
        # int32, so the clamp may follow saturating packs (saturations are monotone and the
        # identity on [lo, hi], so clamping their result is exact)
        self.late_clamp = not self.y32 and bool(np.all(amax * np.abs(self.scale.astype(np.float64)) < 2.0 ** 30))

    def fields(self, ctx: KernelContext, pad, total: int) -> dict:
        """Job fields of the per-channel tables, laid out by pad(values, fill) (total entries)."""
        f = dict(bias=add_weight(ctx, wrap32(pad(self.bias, 0)), "int32_t"), yz=self.yz, lo=self.lo, hi=self.hi)
        if not self.y32:
            f["scale"] = add_weight(ctx, pad(self.scale, np.float32(0)), "float")
        return f

    # C spellings: setup (function start), one channel's scale, 16 columns', the epilogue of acc
    def setup(self, yz16: bool = False) -> str:
        """yz16: y_zero in 16-bit lanes (added to packed words)."""
        if self.y32:
            return ""
        yz = "_mm512_set1_epi16((short)j->yz)" if yz16 else "_mm512_set1_epi32(j->yz)"
        return ("    const __m512 flo = _mm512_set1_ps((float)(j->lo - j->yz)), fhi = _mm512_set1_ps((float)(j->hi - j->yz));\n"
                f"    const __m512i yz = {yz};")

    def channel(self, idx: str) -> str:
        return f"const __m512 sc = _mm512_set1_ps(j->scale[{idx}]);"

    def columns(self, off: str) -> str:
        return f"const __m512 sc = _mm512_loadu_ps(j->scale + {off});"

    def apply(self, acc: str) -> str:
        """The 16 output bytes of acc (not for i32)."""
        return f"pdc_qx_rq({acc}, sc, flo, fhi, yz)"


def _setup_out(ctx: KernelContext, w2d: np.ndarray, zero: int, off: int) -> Optional[_Out]:
    """The output side for weights w2d [channels, K] and activations with this zero point and
    offset (128 for int8 made unsigned); None where the portable kernel takes the layer (folded_bias)."""
    folded = folded_bias(ctx, w2d, zero, off)
    return None if folded is None else _Out(ctx, folded[0], w2d.shape[0], folded[1])


# ---- qconv ----------------------------------------------------------------------------------------
class _Geo(QconvGrid):
    """The 2-D geometry, input taken as given (NCHW); ph / pw: the top and left pads."""

    def __init__(self, ctx: KernelContext):
        super().__init__(ctx)
        self.ph, self.pw = self.pt, self.pl

    def fields(self, xz: int, off: int) -> dict:
        return dict(x="(const uint8_t *)in0", y="(uint8_t *)out0", N=self.N, C=self.C, H=self.H, W=self.W, M=self.M,
                    G=self.G, cg=self.cg, mg=self.mg, OH=self.OH, OW=self.OW, sh=self.sh, sw=self.sw, ph=self.ph,
                    pw=self.pw, pad=xz + off, flip=off)


def _phase_fields(ctx: KernelContext, phases) -> dict:
    return dict(phr=add_weight(ctx, np.array([p[0] for p in phases], np.int32), "int32_t"),
                phw=add_weight(ctx, np.array([p[1] for p in phases], np.int32), "int32_t"), NPH=len(phases))


def _conv_setup(ctx: KernelContext):
    return unsigned_conv_setup(ctx, _Geo, _setup_out) if ctx.config.simd == "avx512" else None


def _tile_cost(rows: int, cols: int, mr: int, qv: int, nv: int, units_other: int, threads: int) -> float:
    """Relative time of an MR x NV tiling: padded work, memory operands per vpdpbusd, imbalance."""
    nb, nqb = -(-rows // mr), -(-cols // (qv * nv))
    units = units_other * nb * nqb
    work = nb * mr * nqb * qv * nv * (1 + 0.5 * (mr + nv) / (mr * nv))
    if threads > 1 and units > 1:
        work *= -(-units // threads) * threads / units
    return work


DENSE_TILES = ((4, 6), (6, 4), (8, 3), (12, 2), (16, 1))
TAP_TILES = ((4, 4), (6, 4), (3, 8))  # tap quads: whole groups of 4 vectors (64 outputs)


def _pack64(acc: list, out: _Out, unsigned: bool) -> str:
    """The 64 requantized bytes of 4 int32 vectors (C expressions), packed as they come: lane l,
    byte j holds accumulator j // 4's lane 4 l + j % 4. y_zero is added to the 16-bit words; the
    clamp runs on the bytes where every |acc * scale| < 2^30 (late_clamp), else in float32 before
    the packs, which are then exact."""
    late = out.late_clamp
    rq = [f"pdc_qx_rnd32({a}, sc)" if late else f"pdc_qx_rq32({a}, sc, flo, fhi)" for a in acc]
    add = "_mm512_adds_epi16" if late else "_mm512_add_epi16"
    r = (f"{'_mm512_packus_epi16' if unsigned else '_mm512_packs_epi16'}({add}(_mm512_packs_epi32({rq[0]}, {rq[1]}), yz), "
         f"{add}(_mm512_packs_epi32({rq[2]}, {rq[3]}), yz))")
    if late:
        t = "epu8" if unsigned else "epi8"
        r = f"_mm512_min_{t}(_mm512_max_{t}({r}, lo8), hi8)"
    return r


def _ordered(r: str, shuf, perm, perm_name: str = "perm") -> str:
    """r's bytes put in output order by a byte shuffle and a dword permutation (None: identity)."""
    if shuf:
        r = f"_mm512_shuffle_epi8({r}, shuf)"
    return f"_mm512_permutexvar_epi32({perm_name}, {r})" if perm else r


def _tile_vectors(tile: str) -> list:
    """The C expressions of the 4 tile vectors v .. v + 3 (tile: C of vector v)."""
    return [tile.replace("+ v)", f"+ v + {e})") for e in range(4)]


def _packed_s1(tile: str, out: _Out, unsigned: bool) -> str:
    """The 64 output bytes, in order, of 4 tile vectors whose lane i holds output 4 i + e (vector
    v + e): ordered as the depthwise "s1" tiles."""
    return _ordered(_pack64(_tile_vectors(tile), out, unsigned), *_dw_order(DW_MODES["s1"]))


def _packed_rows(tile: str, out: _Out, unsigned: bool) -> str:
    """The 64 output bytes, in order, of 4 tile vectors in pixel order (vector v + e, lane i: output
    16 e + i): the packs leave lane l's dword t holding outputs 16 t + 4 l..+3, one dword
    permutation (perm_rows) puts them in order."""
    return _ordered(_pack64(_tile_vectors(tile), out, unsigned), None, PERM_ROWS, "perm_rows")


PERM_ROWS = [4 * (d % 4) + d // 4 for d in range(16)]  # output dword d <- packed dword


def _dense_task(mr: int, nv: int, out: _Out, taps: bool, unsigned: bool = False):
    """The microkernel, its own function (the tile's accumulators stay in registers only when no
    epilogue competes for them: gcc spilled them in the loop otherwise), and the task: per unit,
    the tile to a stack buffer, then the epilogue from there. taps: the packed input is bytes and a
    quad is 4 consecutive of them, so the load at byte r of a group of 64 outputs holds outputs
    4 i + r; the task puts each group in order, the requantized bytes (int32 outputs: the lanes; in
    the microkernel, gcc spilled around the shuffles)."""
    sfx = "t" if taps else ""
    packed = not out.y32 and (taps or nv % 4 == 0)  # the epilogue packs 4 vectors at a time

    def gen(name: str, dp: str, attr: str) -> list:
        ukr = f"pdc_qx_ukr_{mr}x{nv}{sfx}" + name[name.rindex("_"):]
        acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]
        load = [64 * (v // 4) + v % 4 if taps else 64 * v for v in range(nv)]
        L = [f"/* c[{mr}][{16 * nv}] = bias + the {mr} channels' weight dwords x {nv} vectors of 16 flat pixels */",
             f"static PDC_QX_NOINLINE {attr}void {ukr}(const uint8_t *xg, const int32_t *koff, const int32_t *wp, int64_t KQ,",
             "                                   const int32_t *bias, int32_t *c) {"]
        for i in range(mr):
            L.append(f"    const __m512i b{i} = _mm512_set1_epi32(bias[{i}]); __m512i "
                     + ", ".join(f"{acc[i][v]} = b{i}" for v in range(nv)) + ";")
        L.append(f"    for (int64_t k = 0; k < KQ; k++, wp += {mr}) {{")
        L.append("        const uint8_t *xk = xg + koff[k];")
        L.append("        " + " ".join(f"const __m512i a{v} = _mm512_loadu_si512((const void *)(xk + {load[v]}));"
                                     for v in range(nv)))
        for i in range(mr):
            L.append(f"        {{ const __m512i w = _mm512_set1_epi32(wp[{i}]); "
                     + " ".join(f"{acc[i][v]} = {dp}({acc[i][v]}, a{v}, w);" for v in range(nv)) + " }")
        L.append("    }")
        for i in range(mr):
            L.append("    " + " ".join(f"_mm512_store_si512((void *)(c + {(i * nv + v) * 16}), {acc[i][v]});"
                                       for v in range(nv)))
        L.append("}")
        ukr_code = "\n".join(L) + "\n"
        y32 = out.y32
        L = [f"/* MR = {mr} output channels x {nv} vectors of 16 flat output pixels */",
             f"static {attr}void {name}(void *vj, int64_t u0, int64_t u1) {{",
             "    const pdc_qx_conv_job *j = (const pdc_qx_conv_job *)vj;",
             "    const int64_t KQ = j->KQ, NB = j->NB, nqb = j->nqb, G = j->G, OHW = j->OH * j->OW;",
             "    const int64_t NQ = j->NQ, Wq = j->Wq, OW = j->OW;",
             f"    int32_t c[{mr * nv * 16}] __attribute__((aligned(64)));",
             out.setup(yz16=packed)]
        if taps and not y32:
            shuf, perm = _dw_order(DW_MODES["s1"])
            L += [f"    const __m512i {n} = {_epi32(c, f)};" for n, c, f in (("shuf", shuf, "#010x"), ("perm", perm, "d")) if c]
        elif packed:
            L.append(f"    const __m512i perm_rows = {_epi32(PERM_ROWS)};")
        if packed and out.late_clamp:
            L.append("    const __m512i lo8 = _mm512_set1_epi8((char)j->lo), hi8 = _mm512_set1_epi8((char)j->hi);")
        L += ["    for (int64_t u = u0; u < u1; u++) {",
             "        const int64_t qb = u % nqb, r = u / nqb, b = r % NB, ng = r / NB, g = ng % G, n = ng / G;",
             f"        const int64_t t0 = (g * NB + b) * {mr}, q0 = qb * {16 * nv};",
             f"        {ukr}(j->xq + ng * j->xq_bs + q0{'' if taps else ' * 4'}, j->koff, j->w + t0 * KQ, KQ, j->bias + t0, c);",
             f"        for (int t = 0; t < {mr * nv // 4}; t++) pdc_qx_order4(c + 64 * t);" if taps and out.y32 else "",
             f"        const int64_t rows = j->mg - b * {mr} < {mr} ? j->mg - b * {mr} : {mr};",
             f"        {'int32_t' if y32 else 'uint8_t'} *yb = {'(int32_t *)' if y32 else ''}j->y + (n * j->M + g * j->mg + b * {mr}) * OHW;",
             f"        int64_t vh[{nv}] = {{0}}, vw[{nv}] = {{0}};",
             f"        if (Wq != OW) pdc_qx_cursor(q0, Wq, {nv}, vh, vw);",
             "        for (int64_t i = 0; i < rows; i++) {"]
        tile = f"_mm512_load_si512((const void *)(c + (i * {nv} + v) * 16))"
        if y32:
            L.append(f"            for (int v = 0; v < {nv}; v++) pdc_qx_store16_i32(yb + i * OHW, q0 + 16 * v, vh[v], vw[v], "
                     f"{tile}, NQ, Wq, OW);")
        elif taps:  # 4 vectors packed to 64 bytes and put in order as the depthwise "s1" tiles
            L += ["            " + out.channel("t0 + i"),
                  f"            for (int v = 0; v < {nv}; v += 4) {{",
                  f"                const __m512i r = {_packed_s1(tile, out, unsigned)};",
                  "                pdc_qx_store64(yb + i * OHW, q0 + 16 * v, vh[v], vw[v], r, NQ, Wq, OW);",
                  "            }"]
        elif packed:  # 4 vectors packed to 64 bytes: a third of the per-vector epilogue's instructions
            L += ["            " + out.channel("t0 + i"),
                  f"            for (int v = 0; v < {nv}; v += 4) {{",
                  f"                const __m512i r = {_packed_rows(tile, out, unsigned)};",
                  "                pdc_qx_store64(yb + i * OHW, q0 + 16 * v, vh[v], vw[v], r, NQ, Wq, OW);",
                  "            }"]
        else:
            L.append("            " + out.channel("t0 + i"))
            L.append(f"            for (int v = 0; v < {nv}; v++) pdc_qx_store16(yb + i * OHW, q0 + 16 * v, vh[v], vw[v], "
                     f"{out.apply(tile)}, NQ, Wq, OW);")
        L += ["        }", "    }", "}"]
        return [(ukr, ukr_code), (name, "\n".join(x for x in L if x) + "\n")]
    return gen


def _tap_quads(g: _Geo, grid: dict) -> list:
    """The tap quads of one input channel: (byte offset in its phase planes, the (kh, kw) of each
    of the 4 slots or None). Taps of one kernel row and column phase read consecutive plane bytes
    (column stride a multiple of the dilation), else a gap of zero-weight slots."""
    runs = {}
    for (kh, kw), off in zip([(kh, kw) for kh in range(g.KH) for kw in range(g.KW)], grid["tap_off"]):
        col = (kw * g.dw) // g.sw
        runs.setdefault(off - col, []).append((col, kh, kw))
    quads = []
    for base, taps in runs.items():
        taps.sort()
        while taps:
            start = taps[0][0]
            slots = [None] * 4
            while taps and taps[0][0] < start + 4:
                col, kh, kw = taps.pop(0)
                slots[col - start] = (kh, kw)
            quads.append((base + start, slots))
    return quads


class _DensePack(NamedTuple):
    """The dense conv's packed input: the reduction quads' byte offsets koff, the weights in the
    order the microkernel reads them ([G][NB][KQ][MR][4], zero-padded), the bytes of packed data
    per (image, group)."""
    koff: np.ndarray
    wp: np.ndarray
    data: int


def _pack_channels(g: _Geo, grid: dict, w: np.ndarray, mr: int, nb: int) -> _DensePack:
    """4 channels interleaved per dword, [channel quad][phase][Hq][Wq][4]."""
    cq = -(-g.cg // 4)
    plane = len(grid["phases"]) * grid["Hq"] * grid["Wq"]  # dwords per channel quad
    koff = (np.arange(cq, dtype=np.int64)[:, None] * plane + np.asarray(grid["tap_off"], np.int64)[None, :]) * 4
    wp = np.zeros((g.G, nb * mr, cq * 4, g.KH, g.KW), np.int8)
    wp[:, :g.mg, :g.cg] = w.reshape(g.G, g.mg, g.cg, g.KH, g.KW)
    wp = wp.reshape(g.G, nb, mr, cq, 4, g.KH, g.KW).transpose(0, 1, 3, 5, 6, 2, 4)
    return _DensePack(koff.reshape(-1), np.ascontiguousarray(wp).view(np.int32).reshape(-1), cq * plane * 4)


def _pack_taps(g: _Geo, grid: dict, w: np.ndarray, mr: int, nb: int, quads: list) -> _DensePack:
    """One byte per channel, [channel][phase][Hq][Wq]; quads over taps (_tap_quads)."""
    plane = len(grid["phases"]) * grid["Hq"] * grid["Wq"]  # bytes per channel
    koff = np.arange(g.cg, dtype=np.int64)[:, None] * plane + np.array([q[0] for q in quads], np.int64)[None, :]
    w5 = w.reshape(g.G, g.mg, g.cg, g.KH, g.KW)
    wq = np.zeros((g.G, nb * mr, g.cg, len(quads), 4), np.int8)
    for k, (_, slots) in enumerate(quads):
        for b, tap in enumerate(slots):
            if tap is not None:
                wq[:, :g.mg, :, k, b] = w5[:, :, :, tap[0], tap[1]]
    wq = wq.reshape(g.G, nb, mr, g.cg * len(quads), 4).transpose(0, 1, 3, 2, 4)
    return _DensePack(koff.reshape(-1), np.ascontiguousarray(wq).view(np.int32).reshape(-1), g.cg * plane)


def _rows_pack(g: _Geo, grid: dict) -> bool:
    """Whether pdc_qx_pack_rows packs the channel quads: column stride 1 or 2 and the columns the
    phases read within the first 64 of the padded row."""
    return (g.sw == 1 and grid["Wq"] <= 64) or (g.sw == 2 and grid["Wq"] <= 32)


def _qconv_dense(ctx: KernelContext, g: _Geo, w: np.ndarray, out: _Out, xz: int, off: int) -> Optional[str]:
    threads = ctx.config.threads if ctx.config.parallel else 1
    # quads over taps where they are fewer than over channels (few input channels)
    quads = _tap_quads(g, g.grid(16))
    taps = g.cg * len(quads) < -(-g.cg // 4) * g.KH * g.KW
    # the tile first: it sets the flat grid's padding (NQ rounded up to whole tiles)
    mr, nv = min(TAP_TILES if taps else DENSE_TILES,
                 key=lambda t: _tile_cost(g.mg, g.flat_outputs(), t[0], 16, t[1], g.N * g.G, threads))
    grid = g.grid(16 * nv)
    Hq, Wq, NQ, phases = grid["Hq"], grid["Wq"], grid["NQ"], grid["phases"]
    NB = -(-g.mg // mr)
    nqb = grid["nq_pad"] // (16 * nv)
    pk = _pack_taps(g, grid, w, mr, NB, quads) if taps else _pack_channels(g, grid, w, mr, NB)
    # loads past the grid: the padded tiles, a vector, a quad's last bytes
    slack = (grid["nq_pad"] - NQ) * (1 if taps else 4) + 64 + 4
    xq_bs = -(-(pk.data + slack) // 64) * 64
    if xq_bs >= 2 ** 31:
        return None
    cq = -(-g.cg // 4)

    def padded(v, fill):
        t = np.full((g.G, NB * mr), fill, np.asarray(v).dtype)
        t[:, :g.mg] = np.asarray(v).reshape(g.G, g.mg)
        return t.reshape(-1)

    macs = g.N * g.M * g.OH * g.OW * g.cg * g.KH * g.KW
    units = g.N * g.G * NB * nqb
    parallel = ctx.split(macs, PARALLEL_MIN_MACS)
    row_phases = sorted({p[0] for p in phases})
    if taps:
        pack, pack_units = "pdc_qx_pack_taps", g.N * g.G * g.cg * len(row_phases)
    elif _rows_pack(g, grid):
        pack, pack_units = "pdc_qx_pack_rows", g.N * g.G * cq * len(row_phases)
    else:
        pack, pack_units = "pdc_qx_pack_quads", g.N * g.G * cq * len(phases)
    slots = ctx.slots(parallel and pack_units > 1 and g.N * g.C * g.H * g.W >= PACK_PARALLEL_MIN_BYTES)
    rs = -(-(Wq + 64) // 64) * 64
    rows, rows_stride = ctx.thread_scratch(4 * rs, slots, "uint8_t", 1) if pack == "pdc_qx_pack_quads" else ("NULL", 0)
    xq = ctx.scratch(g.N * g.G * xq_bs, "uint8_t", 1)
    _common(ctx)
    ctx.helper("pdc_qx_conv_job", CONV_JOB)
    ctx.helper(pack, {"pdc_qx_pack_taps": PACK_TAPS, "pdc_qx_pack_rows": PACK_ROWS}.get(pack, PACK_QUADS))
    fields = g.fields(xz, off)
    fields.update(xq=xq, rows=rows, w=add_weight(ctx, pk.wp, "int32_t"),
                  koff=add_weight(ctx, pk.koff.astype(np.int32), "int32_t"), **out.fields(ctx, padded, NB * mr),
                  **_phase_fields(ctx, phases), cq=cq, Hq=Hq, Wq=Wq, xq_bs=xq_bs, rows_stride=rows_stride, rs=rs,
                  NQ=NQ, KQ=len(pk.koff), NB=NB, nqb=nqb)
    if pack != "pdc_qx_pack_quads":
        fields.update(rph=add_weight(ctx, np.array(row_phases, np.int32), "int32_t"), NRP=len(row_phases))
    lines = job_lines("pdc_qx_conv_job", fields)
    lines.append(f"    for (int64_t t = 0; t < {g.N * g.G}; t++) memset(j.xq + t * {xq_bs} + {pk.data}, 0, {xq_bs - pk.data});")
    lines.append(slots_call(pack, pack_units, slots))
    unsigned = ctx.outputs[0].dtype.short == "u8"
    packed = not out.y32 and (taps or nv % 4 == 0)  # _dense_task's packed epilogue: its code depends on both
    kind = ("u8" if unsigned else "i8") + ("_lc" if out.late_clamp else "") if packed else out.kind
    lines += _variants(ctx, f"pdc_qx_conv_{mr}x{nv}{'t' if taps else ''}_{kind}", _dense_task(mr, nv, out, taps, unsigned),
                       "pdc_task_fn")
    if parallel and units > 1:
        lines.append(f"    pdc_parallel_for({units}, fn, (void *)&j);")
    else:
        lines.append(f"    fn((void *)&j, 0, {units});")
    return "\n".join(lines)


class _DwMode(NamedTuple):
    """How a depthwise tile of 64 flat outputs reads the plane: `step` plane bytes per flat output
    (the tile starts at step * q0 + the tap's offset), the load offsets of its four accumulators,
    and pos(k, i): the output (0..63) that lane i of accumulator k computes."""
    name: str
    step: int
    deltas: tuple
    pos: Callable[[int, int], int]


DW_MODES = {  # column stride 1: tap quads at 4 consecutive offsets; 2: even / odd outputs; else quads laid out
    "s1": _DwMode("s1", 1, (0, 1, 2, 3), lambda k, i: 4 * i + k),
    "s2": _DwMode("s2", 2, (0, 2, 64, 66), lambda k, i: 32 * (k // 2) + 2 * i + k % 2),
    "q": _DwMode("q", 4, (0, 64, 128, 192), lambda k, i: 16 * k + i),
}


def _dw_mode(g: _Geo) -> _DwMode:
    return DW_MODES[f"s{g.sw}"] if g.dw == 1 and g.sw <= 2 else DW_MODES["q"]


def _epi32(values, fmt: str = "d") -> str:
    return "_mm512_setr_epi32(" + ", ".join(format(int(v), fmt) for v in values) + ")"


def _dw_order(mode: _DwMode) -> tuple:
    """The byte shuffle (within 128-bit lanes) and the dword permutation that put a tile's 64
    requantized bytes in output order (None: identity). They come packed (packs 0, 1 | 2, 3):
    lane l, byte j holds accumulator j // 4's lane 4 l + j % 4. Every mode's lane holds 4 whole
    output dwords."""
    shuf, perm = [0] * 16, [0] * 16
    for lane in range(4):
        at = {mode.pos(j // 4, 4 * lane + j % 4): j for j in range(16)}
        dwords = sorted({p // 4 for p in at})
        assert len(dwords) == 4
        for t, d in enumerate(dwords):
            perm[d] = 4 * lane + t
            shuf[4 * lane + t] = sum(at[4 * d + b] << (8 * b) for b in range(4))
    identity = [0x03020100 + 0x04040404 * t for t in range(4)] * 4
    return (None if shuf == identity else shuf), (None if perm == list(range(16)) else perm)


def _dw_epilogue(mode: _DwMode, v: int, out: _Out, unsigned: bool, grid: bool) -> list:
    """Tile v's outputs to y (grid: cut into rows in registers, else through the stage)."""
    acc = [f"c{v}_{k}" for k in range(4)]
    L = [f"                {{ const int64_t q = q0 + {64 * v};"]
    if out.y32:  # the accumulators through the stack, gathered in output order
        L += ["                  " + " ".join(f"_mm512_store_si512((void *)(cb + {16 * k}), {a});" for k, a in enumerate(acc)),
              "                  int64_t vh[4] = {0}, vw[4] = {0};",
              "                  if (Wq != OW) pdc_qx_cursor(q, Wq, 4, vh, vw);",
              "                  for (int e = 0; e < 4; e++)",
              "                      pdc_qx_store16_i32(yp, q + 16 * e, vh[e], vw[e], _mm512_i32gather_epi32(gi[e], cb, 4), NQ, Wq, OW); }"]
        return L
    r = _ordered(_pack64(acc, out, unsigned), *_dw_order(mode))
    L += [f"                  const __m512i r = {r};",
          "                  if (Wq == OW) _mm512_mask_storeu_epi8(yp + q, pdc_qx_m64(NQ - q), r);"]
    if grid:
        L.append(f"                  else pdc_qx_grid_rows(yp, r, j->cidx + (q >> 6) * {GRID_TABLE}); }}")
    else:
        L.append("                  else _mm512_storeu_si512((void *)(st + q), r); }  /* the stage: rows copied out below */")
    return L


def _dw_task(mode: _DwMode, nvd: int, taps: int, out: _Out, unsigned: bool, grid: bool):
    """taps: tap quads per output channel, a constant (gcc unrolls the loop, keeps the weights in
    registers across tiles); grid: the outputs cut into rows in registers (pdc_qx_grid_rows)."""
    def gen(name: str, dp: str, attr: str) -> list:
        y32, step = out.y32, mode.step
        shuf, perm = _dw_order(mode)
        gidx = [0] * 64
        for k in range(4):
            for i in range(16):
                gidx[mode.pos(k, i)] = 16 * k + i
        xc = "j->x + u * j->H * j->W"  # unit u = n * C + c
        plane = (f"pdc_qx_dw_quads(pl, st, {xc}, j);  /* q mode: no stage, the fetched rows there */"
                 if mode.name == "q" else f"pdc_qx_dw_plane(pl, {xc}, j);")
        L = [f"/* depthwise ({mode.name}): one channel's plane, {nvd} x 64 flat outputs per tile, 4 accumulators of 16 each */",
             f"static {attr}void {name}(void *vj, int64_t u0, int64_t u1, int slot) {{",
             "    const pdc_qx_conv_job *j = (const pdc_qx_conv_job *)vj;",
             "    uint8_t *pl = j->rows + slot * j->rows_stride, *st = pl + j->stage_off;",
             f"    const int64_t C = j->C, T = {taps}, NQ = j->NQ, Wq = j->Wq, OW = j->OW, mg = j->mg, OHW = j->OH * j->OW;",
             out.setup(yz16=True)]
        if y32:
            L += ["    int32_t cb[64] __attribute__((aligned(64)));",
                  "    const __m512i gi[4] = {" + ", ".join(_epi32(gidx[16 * e:16 * e + 16]) for e in range(4)) + "};"]
        else:
            L += [f"    const __m512i {n} = {_epi32(c, f)};" for n, c, f in (("shuf", shuf, "#010x"), ("perm", perm, "d")) if c]
            if out.late_clamp:
                L.append("    const __m512i lo8 = _mm512_set1_epi8((char)j->lo), hi8 = _mm512_set1_epi8((char)j->hi);")
        L += ["    memset(pl + j->xq_bs, 0, (size_t)(j->stage_off - j->xq_bs));  /* past the plane: read for dropped outputs */",
              "    for (int64_t u = u0; u < u1; u++) {",
              "        const int64_t c = u % C, n = u / C;",
              f"        {plane}",
              "        for (int64_t jm = 0; jm < mg; jm++) {",
              "            const int64_t m = c * mg + jm;",
              "            const int32_t *wm = j->w + m * T;",
              "" if y32 else "            " + out.channel("m"),
              "            const __m512i bv = _mm512_set1_epi32(j->bias[m]);",
              f"            {'int32_t' if y32 else 'uint8_t'} *yp = {'(int32_t *)' if y32 else ''}j->y + (n * j->M + m) * OHW;",
              f"            for (int64_t q0 = 0; q0 < NQ; q0 += {64 * nvd}) {{",
              f"                const uint8_t *b = pl + {step} * q0;"]
        for v in range(nvd):
            L.append("                __m512i " + ", ".join(f"c{v}_{k} = bv" for k in range(4)) + ";")
        L += ["                for (int64_t t = 0; t < T; t++) {",
              "                    const __m512i w = _mm512_set1_epi32(wm[t]);",
              "                    const uint8_t *s = b + j->koff[t];"]
        for v in range(nvd):
            L += [f"                    c{v}_{k} = {dp}(c{v}_{k}, _mm512_loadu_si512((const void *)(s + {64 * step * v + d})), w);"
                  for k, d in enumerate(mode.deltas)]
        L.append("                }")
        for v in range(nvd):
            L += _dw_epilogue(mode, v, out, unsigned, grid)
        L.append("            }")
        if not y32 and not grid:
            L.append("            if (Wq != OW) pdc_qx_copy_rows(yp, st, j->OH, OW, Wq);")
        L += ["        }", "    }", "}"]
        return [(name, "\n".join(x for x in L if x) + "\n")]
    return gen


GRID_TABLE = 72  # int16 per vector in pdc_qx_grid_rows' table
GRID_MAX = 256  # flat grids up to this many bytes are cut into rows in registers


def _grid_rows_table(OH: int, OW: int, Wq: int, nq_pad: int) -> np.ndarray:
    """pdc_qx_grid_rows' table for each 64-byte vector of a flat grid (Wq > OW)."""
    t = np.zeros((nq_pad // 64, GRID_TABLE), np.int16)
    for v in range(nq_pad // 64):
        qs = [q for q in range(64 * v, 64 * v + 64) if q < OH * Wq and q % Wq < OW]  # its output bytes
        src = [q - 64 * v for q in qs] + [0] * (64 - len(qs))
        t[v, :32] = [s // 2 for s in src[0::2]]
        t[v, 32:64] = [s // 2 for s in src[1::2]]
        masks = [sum(1 << i for i, s in enumerate(src[0::2]) if s % 2),
                 sum(1 << i for i, s in enumerate(src[1::2]) if s % 2 == 0)]
        t[v, 64:68] = np.array(masks, np.uint32).view(np.int16)
        t[v, 68] = (qs[0] // Wq) * OW + qs[0] % Wq if qs else 0
        t[v, 69] = len(qs)
    return t


def _qconv_depthwise(ctx: KernelContext, g: _Geo, w: np.ndarray, out: _Out, xz: int, off: int) -> Optional[str]:
    mode = _dw_mode(g)
    nkq = -(-g.KW // 4)  # tap quads per kernel row (taps past KW: weight 0)
    Hq = g.OH + ((g.KH - 1) * g.dh) // g.sh
    Wq = g.OW if mode.name == "q" else g.OW + (g.KW - 1) // g.sw  # flat grid columns
    NQ = (g.OH - 1) * Wq + g.OW
    nvd = 1 if NQ <= 64 else 2
    nq_pad = -(-NQ // (64 * nvd)) * 64 * nvd
    phases = sorted({(kh * g.dh) % g.sh for kh in range(g.KH)})  # the row stride phases some tap reads
    Wp = mode.step * Wq  # plane bytes per row

    def tap(kh, kq):
        p, row = phases.index((kh * g.dh) % g.sh), (kh * g.dh) // g.sh
        if mode.name == "q":
            return ((p * nkq + kq) * Hq + row) * Wp
        return (p * Hq + row) * Wp + 4 * kq
    koff = np.array([tap(kh, kq) for kh in range(g.KH) for kq in range(nkq)], np.int64)
    body = len(phases) * (nkq if mode.name == "q" else 1) * Hq * Wp
    reads = mode.step * (nq_pad - 64) + int(koff.max()) + max(mode.deltas) + 64  # the last tile's loads end here
    stage_off = -(-max(body, reads) // 64) * 64
    rs = -(-(Wq + 64) // 64) * 64  # q mode: 4 fetched rows at the stage's place
    staged = not out.y32 and Wq != g.OW  # dropped grid columns: cut in registers (small grids) or staged
    grid = staged and nq_pad <= GRID_MAX
    scratch = stage_off + (nq_pad if staged and not grid else 4 * rs if mode.name == "q" else 0)
    if scratch >= 2 ** 31:
        return None
    # the slots at least a 128-byte line pair apart: the adjacent-line prefetcher pulls a line's
    # pair, so two threads' small scratches sharing one bounce between the cores (2x on 7x7 layers)
    scratch = -(-scratch // 128) * 128 + 128
    wq = np.zeros((g.M, g.KH, nkq * 4), np.int8)
    wq[:, :, :g.KW] = w.reshape(g.M, g.KH, g.KW)
    units = g.N * g.C
    parallel = ctx.split(g.N * g.M * g.OH * g.OW * g.KH * g.KW, PARALLEL_MIN_MACS // 4) and units > 1
    slots = ctx.slots(parallel)
    pl, stride = ctx.thread_scratch(scratch, slots, "uint8_t", 1)
    _common(ctx)
    ctx.helper("pdc_qx_copy_rows", ROWS_COPY)
    ctx.helper("pdc_qx_conv_job", CONV_JOB)
    ctx.helper("pdc_qx_grid_rows", GRID_ROWS)
    ctx.helper("pdc_qx_dw_quads" if mode.name == "q" else "pdc_qx_dw_plane", DW_QUADS if mode.name == "q" else DW_PLANE)
    fields = g.fields(xz, off)
    fields.update(rows=pl, rows_stride=stride, rs=rs, stage_off=stage_off, xq_bs=body, Wp=Wp, dw=g.dw, cq=nkq,
                  w=add_weight(ctx, wq.view(np.int32).reshape(-1), "int32_t"),
                  koff=add_weight(ctx, koff.astype(np.int32), "int32_t"), **out.fields(ctx, lambda v, f: v, g.M),
                  phr=add_weight(ctx, np.array(phases, np.int32), "int32_t"), NPH=len(phases), Hq=Hq, Wq=Wq, NQ=NQ,
                  KQ=g.KH * nkq)
    if grid:
        fields["cidx"] = add_weight(ctx, _grid_rows_table(g.OH, g.OW, Wq, nq_pad).reshape(-1), "int16_t")
    unsigned = ctx.outputs[0].dtype.short == "u8"
    kind = out.kind if out.y32 else "u8" if unsigned else "i8"
    kind += ("_lc" if out.late_clamp else "") + ("_g" if grid else "")
    lines = job_lines("pdc_qx_conv_job", fields)
    task = _dw_task(mode, nvd, g.KH * nkq, out, unsigned, grid)
    lines += _variants(ctx, f"pdc_qx_dwconv_{mode.name}_{nvd}_t{g.KH * nkq}_{kind}", task, "pdc_slot_task_fn")
    lines.append(slots_call("fn", units, slots))
    return "\n".join(lines)


def _window_task(out: _Out):
    def gen(name: str, dp: str, attr: str) -> list:
        L = ["/* one output pixel per channel, the window its whole plane: 16 channels' dot products per unit */",
             f"static {attr}void {name}(void *vj, int64_t u0, int64_t u1) {{",
             "    const pdc_qx_conv_job *j = (const pdc_qx_conv_job *)vj;",
             "    const int64_t T = j->H * j->W, TP = 4 * j->KQ, C = j->C, M = j->M, NB = j->NB;",
             "    const __m512i fv = _mm512_set1_epi8((char)j->flip);",
             out.setup(),
             "    for (int64_t u = u0; u < u1; u++) {",
             "        const int64_t mb = u % NB, n = u / NB, m0 = 16 * mb;",
             "        int32_t s[16];",
             "        for (int64_t l = 0; l < 16; l++) {",
             "            const int64_t m = m0 + l < M ? m0 + l : M - 1;  /* lanes past M: computed, not stored */",
             "            const uint8_t *xc = j->x + (n * C + m / j->mg) * T, *wm = (const uint8_t *)j->w + m * TP;",
             "            __m512i acc = _mm512_setzero_si512();",
             "            for (int64_t t = 0; t < T; t += 64)  /* bytes past T: flip ^ 0 times a zero weight */",
             "                acc = " + dp + "(acc, _mm512_xor_si512(_mm512_maskz_loadu_epi8(pdc_qx_m64(T - t), xc + t), fv), "
             "_mm512_loadu_si512((const void *)(wm + t)));",
             "            s[l] = _mm512_reduce_add_epi32(acc);",
             "        }",
             "        const __m512i a = _mm512_add_epi32(_mm512_loadu_si512((const void *)s), _mm512_loadu_si512((const void *)(j->bias + m0)));",
             "        const __mmask16 km = M - m0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (M - m0)) - 1);"]
        if out.y32:
            L.append("        _mm512_mask_storeu_epi32((int32_t *)j->y + n * M + m0, km, a);")
        else:
            L += ["        " + out.columns("m0"),
                  "        _mm_mask_storeu_epi8(j->y + n * M + m0, km, " + out.apply("a") + ");"]
        L += ["    }", "}"]
        return [(name, "\n".join(x for x in L if x) + "\n")]
    return gen


def _qconv_window(ctx: KernelContext, g: _Geo, w: np.ndarray, out: _Out, xz: int, off: int) -> Optional[str]:
    """Depthwise, one output pixel, the window the whole unpadded plane (global average pooling
    made integer): per channel a contiguous dot product read in place, no plane copy."""
    taps = g.H * g.W
    tp = -(-taps // 64) * 64
    nb = -(-g.M // 16)
    wq = np.zeros((g.M, tp), np.int8)
    wq[:, :taps] = w.reshape(g.M, taps)

    def padded(v, fill):
        t = np.full(nb * 16, fill, np.asarray(v).dtype)
        t[:g.M] = np.asarray(v).reshape(-1)
        return t

    units = g.N * nb
    parallel = ctx.split(g.N * g.M * taps, PARALLEL_MIN_MACS) and units > 1
    _common(ctx)
    ctx.helper("pdc_qx_conv_job", CONV_JOB)
    fields = g.fields(xz, off)
    fields.update(w=add_weight(ctx, wq.view(np.int32).reshape(-1), "int32_t"), **out.fields(ctx, padded, nb * 16),
                  KQ=tp // 4, NB=nb)
    lines = job_lines("pdc_qx_conv_job", fields)
    lines += _variants(ctx, f"pdc_qx_window_{out.kind}", _window_task(out), "pdc_task_fn")
    lines.append(f"    pdc_parallel_for({units}, fn, (void *)&j);" if parallel else f"    fn((void *)&j, 0, {units});")
    return "\n".join(lines)


@kernel("qconv", family="x86")
def qconv(ctx: KernelContext) -> Optional[str]:
    setup = _conv_setup(ctx)
    if setup is None:
        return None
    g, w, out, xz, off = setup
    window = (g.OH, g.OW, g.KH, g.KW, g.pt, g.pl, g.pb, g.pr, g.dh, g.dw) == (1, 1, g.H, g.W, 0, 0, 0, 0, 1, 1)
    if g.cg == 1 and window and take("qconv", "vnni-window"):
        return mark("qconv", "vnni-window", _qconv_window(ctx, g, w, out, xz, off))
    if g.cg == 1 and take("qconv", "vnni-depthwise", g.mg <= 2):
        return mark("qconv", "vnni-depthwise", _qconv_depthwise(ctx, g, w, out, xz, off))
    if g.pointwise and take("qconv", "vnni-pointwise"):
        g.flatten_planes()
        return mark("qconv", "vnni-pointwise", _qconv_dense(ctx, g, w, out, xz, off))
    if take("qconv", "vnni"):
        return mark("qconv", "vnni", _qconv_dense(ctx, g, w, out, xz, off))
    return None


# ---- qmatmul --------------------------------------------------------------------------------------
MM_JOB = """/* y [R][N] = requant(a [R][K] x b [K][N]) on AVX-512 (x86/qint.py); b packed [N/NR][K/4][NR][4]. */
typedef struct {
    const uint8_t *a;
    uint8_t *y;
    const int8_t *b;
    const int32_t *bias;    /* bias - (a_zero + off) * sum over k of b, per (padded) column */
    const float *scale;     /* the requantization scale per (padded) column */
    int64_t R, K, N, KQ, NRB;
    int32_t flip, yz, lo, hi;
} pdc_qx_mm_job;
"""

MM_TILES = ((1, 4), (2, 4), (4, 4), (6, 4), (8, 3), (12, 2))


def _mm_task(mr: int, nv: int, flip: bool, out: _Out):
    nr = 16 * nv

    def gen(name: str, dp: str, attr: str) -> list:
        acc = [[f"c{i}_{v}" for v in range(nv)] for i in range(mr)]

        def quad(src: str) -> str:
            return f"_mm512_xor_si512(_mm512_set1_epi32({src}), fl)" if flip else f"_mm512_set1_epi32({src})"

        L = [f"/* MR = {mr} rows x {nv} vectors of 16 columns{', int8 a (sign bit flipped)' if flip else ''} */",
             f"static {attr}void {name}(void *vj, int64_t u0, int64_t u1) {{",
             "    const pdc_qx_mm_job *j = (const pdc_qx_mm_job *)vj;",
             "    const int64_t R = j->R, K = j->K, N = j->N, KQ = j->KQ, NRB = j->NRB, KF = K / 4, KT = K - 4 * KF;",
             out.setup(),
             "    const __m512i fl = _mm512_set1_epi32(j->flip * 0x01010101);" if flip else "",
             "    for (int64_t u = u0; u < u1; u++) {",
             f"        const int64_t rb = u % NRB, cb = u / NRB, r0 = rb * {mr}, n0 = cb * {nr};",
             "        const int64_t rows = R - r0; (void)rows;  /* rows past R: row r0 again, dropped */" if mr == 1 else
             "        const int64_t rows = R - r0;",
             f"        const int8_t *bp = j->b + cb * KQ * {nr * 4};"]
        for i in range(mr):  # rows past R read row r0 (results dropped)
            L.append(f"        const uint8_t *a{i} = j->a + (r0 + {f'(rows > {i} ? {i} : 0)' if i else '0'}) * K;")
        for v in range(nv):
            L.append(f"        const __m512i bias{v} = _mm512_loadu_si512((const void *)(j->bias + n0 + {16 * v}));")
        for i in range(mr):
            L.append("        __m512i " + ", ".join(f"{acc[i][v]} = bias{v}" for v in range(nv)) + ";")

        def body(src_of):
            o = ["            " + " ".join(f"const __m512i w{v} = _mm512_loadu_si512((const void *)(bp + {64 * v}));"
                                           for v in range(nv))]
            for i in range(mr):
                o.append(f"            {{ {src_of(i)} const __m512i x = {quad('t')}; "
                         + " ".join(f"{acc[i][v]} = {dp}({acc[i][v]}, x, w{v});" for v in range(nv)) + " }")
            return o
        L.append(f"        for (int64_t k = 0; k < KF; k++, bp += {nr * 4}) {{")
        L += body(lambda i: f"int32_t t; memcpy(&t, a{i} + 4 * k, 4);")
        L.append("        }")
        L.append("        if (KT) {")
        L += body(lambda i: f"int32_t t = 0; memcpy(&t, a{i} + 4 * KF, (size_t)KT);")
        L.append("        }")
        for v in range(nv):
            L.append(f"        if (N - n0 > {16 * v}) {{")
            L.append(f"            const int64_t cols = N - n0 - {16 * v};")
            L.append("            const __mmask16 km = cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);")
            if not out.y32:
                L.append("            " + out.columns(f"n0 + {16 * v}"))
            for i in range(mr):
                cond = f"if (rows > {i}) " if i else ""
                if out.y32:
                    L.append(f"            {cond}_mm512_mask_storeu_epi32((int32_t *)j->y + (r0 + {i}) * N + n0 + {16 * v}, km, {acc[i][v]});")
                else:
                    L.append(f"            {cond}_mm_mask_storeu_epi8(j->y + (r0 + {i}) * N + n0 + {16 * v}, km, {out.apply(acc[i][v])});")
            L.append("        }")
        L += ["    }", "}"]
        return [(name, "\n".join(x for x in L if x) + "\n")]
    return gen


@kernel("qmatmul", family="x86")
def qmatmul(ctx: KernelContext) -> Optional[str]:
    if ctx.config.simd != "avx512" or not take("qmatmul", "vnni"):
        return None
    operands = native_qmatmul_operands(ctx)
    if operands is None:
        return None
    b, K, N, R = operands
    off = 128 if ctx.inputs[0].dtype.short == "i8" else 0
    out = _setup_out(ctx, np.asarray(b, np.int8).T, int(ctx.attrs.get("a_zero", 0)), off)
    if out is None:
        return None
    threads = ctx.config.threads if ctx.config.parallel else 1
    mr, nv = min(MM_TILES, key=lambda t: _tile_cost(R, N, t[0], 16, t[1], 1, threads))
    nr = 16 * nv
    NCB, NRB, KQ = -(-N // nr), -(-R // mr), -(-K // 4)
    bp = np.zeros((KQ * 4, NCB * nr), np.int8)
    bp[:K, :N] = b
    bp = np.ascontiguousarray(bp.reshape(KQ, 4, NCB, nv, 16).transpose(2, 0, 3, 4, 1)).reshape(-1)

    def padded(v, fill):
        t = np.full(NCB * nr, fill, np.asarray(v).dtype)
        t[:N] = v
        return t

    _common(ctx)
    ctx.helper("pdc_qx_mm_job", MM_JOB)
    fields = dict(a="(const uint8_t *)in0", y="(uint8_t *)out0", b=add_weight(ctx, bp, "int8_t"),
                  **out.fields(ctx, padded, NCB * nr), R=R, K=K, N=N, KQ=KQ, NRB=NRB, flip=off)
    lines = job_lines("pdc_qx_mm_job", fields)
    lines += _variants(ctx, f"pdc_qx_mm_{mr}x{nv}{'s' if off else 'u'}_{out.kind}", _mm_task(mr, nv, bool(off), out),
                       "pdc_task_fn")
    units = NCB * NRB
    if ctx.split(R * N * K, PARALLEL_MIN_MACS) and units > 1:
        lines.append(f"    pdc_parallel_for({units}, fn, (void *)&j);")
    else:
        lines.append(f"    fn((void *)&j, 0, {units});")
    return mark("qmatmul", "vnni", "\n".join(lines))


# ---- qadd -----------------------------------------------------------------------------------------
declare("qadd", "portable", "avx512")

QADD_CHUNK = 16384  # elements per work unit
QADD_PARALLEL_MIN = 1 << 16  # elements: below, one thread (the work is ~0.2 ns per element)

ADD_JOB = """/* y = qadd(a, b) of same-shape tensors in float32 lanes (x86/qint.py): k = {a_scale, b_scale, c}. */
typedef struct {
    const uint8_t *a, *b;
    uint8_t *y;
    float ka, kb, kc;
    int64_t n;
    int32_t lo, hi;
} pdc_qx_add_job;
"""


def _add_task(name: str, a_signed: bool, b_signed: bool) -> str:
    cvt = {True: "_mm512_cvtepi8_epi32", False: "_mm512_cvtepu8_epi32"}
    return f"""/* clamp(rint(fma(a, a_scale, fma(b, b_scale, c))), lo, hi): the reference's rule, 16 lanes at a time */
static void {name}(void *vj, int64_t u0, int64_t u1) {{
    const pdc_qx_add_job *j = (const pdc_qx_add_job *)vj;
    const __m512 ka = _mm512_set1_ps(j->ka), kb = _mm512_set1_ps(j->kb), kc = _mm512_set1_ps(j->kc);
    const __m512 lo = _mm512_set1_ps((float)j->lo), hi = _mm512_set1_ps((float)j->hi);
    const int64_t i1 = u1 * {QADD_CHUNK} < j->n ? u1 * {QADD_CHUNK} : j->n;
    for (int64_t i = u0 * {QADD_CHUNK}; i < i1; i += 16) {{
        const __mmask16 m = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        const __m512 a = _mm512_cvtepi32_ps({cvt[a_signed]}(_mm_maskz_loadu_epi8(m, j->a + i)));
        const __m512 b = _mm512_cvtepi32_ps({cvt[b_signed]}(_mm_maskz_loadu_epi8(m, j->b + i)));
        const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(a, ka, _mm512_fmadd_ps(b, kb, kc)), lo), hi);
        const __m512i r = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_mask_storeu_epi8(j->y + i, m, _mm512_cvtepi32_epi8(r));
    }}
}}
"""


@kernel("qadd", family="x86")
def qadd(ctx: KernelContext) -> Optional[str]:
    """qadd of two same-shape tensors (a residual add) in float32 lanes."""
    if ctx.config.simd != "avx512" or not take("qadd", "avx512"):
        return None
    a_t, b_t, y_t = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if not (tuple(a_t.shape) == tuple(b_t.shape) == tuple(y_t.shape)) or math.prod(y_t.shape) == 0:
        return None
    if {a_t.dtype.short, b_t.dtype.short, y_t.dtype.short} - {"i8", "u8"}:
        return None

    az, bz, yz = (int(ctx.attrs.get(k, 0)) for k in ("a_zero", "b_zero", "y_zero"))
    ra, rb = ctx.attrs["a_scale"], ctx.attrs["b_scale"]
    k = (ra, rb, qadd_constant(ra, az, rb, bz, yz))
    n = math.prod(y_t.shape)
    lo, hi = _clamp(ctx)
    name = f"pdc_qx_add_{a_t.dtype.short}_{b_t.dtype.short}"
    _common(ctx)
    ctx.helper("pdc_qx_add_job", ADD_JOB)
    ctx.helper(name, _add_task(name, a_t.dtype.short == "i8", b_t.dtype.short == "i8"))
    fields = dict(a="(const uint8_t *)in0", b="(const uint8_t *)in1", y="(uint8_t *)out0",
                  ka=float_literal(k[0]), kb=float_literal(k[1]), kc=float_literal(k[2]), n=n, lo=lo, hi=hi)
    lines = job_lines("pdc_qx_add_job", fields)
    units = -(-n // QADD_CHUNK)
    if ctx.split(n, QADD_PARALLEL_MIN) and units > 1:
        lines.append(f"    pdc_parallel_for({units}, {name}, (void *)&j);")
    else:
        lines.append(f"    {name}((void *)&j, 0, {units});")
    return mark("qadd", "avx512", "\n".join(lines))
