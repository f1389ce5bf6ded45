"""x86 max pooling, path "avx-band" (float32, AVX2 and AVX-512 machines) and "avx512-band" (int8 /
uint8 on AVX-512BW, the stem pool of an int8 ResNet) of the pool family: 1-D and 2-D windows of any
kernel, dilation and padding, ceil mode, column strides 1 and 2, without the Indices output.

Per (plane, output row) the band: column t of it is the max over the window's rows of input column
t - left pad, one vector load per row (the lowest value where the column or the row lies in the
padding, which the max then ignores, as the reference's padding does). Stride 2 splits the band
into its even and odd columns, so that every tap of a vector of consecutive outputs is one
unaligned load; the outputs are the max of the KW tap loads. The integer comparison is the element
type's (vpmaxsb / vpmaxub); the float one counts a NaN as the largest value, as the reference does.
No arithmetic, so the result is the reference's exactly (a NaN as the default NaN). The 2x2 and
3x3 windows have row tasks of their own, the loops unrolled. Other dtypes, strides and the Indices
output take the portable kernel.
"""
from __future__ import annotations

from typing import Optional

from ...context import KernelContext
from .. import kernel
from ..pool import Window2D, window_2d  # (importing pool declares the portable paths first)
from ..paths import declare, mark, take
from ..dense_core import core
from .qint import PARALLEL_MIN_MACS, _common

declare("pool", "avx-band", "avx512-band")

MAX_TAPS = 256  # the taps' offsets are a table on the stack
PARALLEL_MIN_TAPS_F32 = PARALLEL_MIN_MACS >> 3

BAND_JOB = r"""/* int8 / uint8 max pool rows over a band (x86/pool.py) */
typedef struct {
    const uint8_t *x;
    uint8_t *y;
    uint8_t *band;          /* per slot: the band, then its odd columns (stride 2) */
    const int32_t *tap;     /* per horizontal tap: its byte offset in the band (phase folded in) */
    int64_t H, W, OH, OW, KH, KW, sh, dh, bh, bw, nb, half, slot_stride;
    int lowest;
} pdc_qp_job;
"""

BAND_TASK = r"""
static void pdc_qp_rows_@SIGN@(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_qp_job *j = (const pdc_qp_job *)vj;
    uint8_t *band = j->band + slot * j->slot_stride, *odd = band + j->half;
    const __m512i low = _mm512_set1_epi8((char)j->lowest);
    const __m512i sh = _mm512_set4_epi32(0x0f0d0b09, 0x07050301, 0x0e0c0a08, 0x06040200);
    const __m512i perm = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    for (int64_t u = u0; u < u1; u++) {
        const int64_t oh = u % j->OH, p = u / j->OH;
        const uint8_t *xp = j->x + p * j->H * j->W;
        uint8_t *yr = j->y + p * j->OH * j->OW + oh * j->OW;
        for (int64_t t = 0; t < j->nb; t += 64) {
            const int64_t a = t - j->bw;  /* the input column of lane 0 */
            const __mmask64 m = pdc_qx_lanes(-a, j->W - a);
            const uintptr_t base = (uintptr_t)xp + (uintptr_t)a;  /* left of the row: never dereferenced */
            __m512i v = low;
            for (int64_t kh = 0; kh < j->KH; kh++) {
                const int64_t ih = oh * j->sh - j->bh + kh * j->dh;
                if (ih >= 0 && ih < j->H)
                    v = @MAX@(v, _mm512_mask_loadu_epi8(low, m, (const void *)(base + (uintptr_t)(ih * j->W))));
            }
            if (j->half) {  /* even columns to band[t / 2 ..], odd ones to odd[t / 2 ..] */
                const __m512i e = _mm512_permutexvar_epi64(perm, _mm512_shuffle_epi8(v, sh));
                _mm256_storeu_si256((__m256i *)(band + t / 2), _mm512_castsi512_si256(e));
                _mm256_storeu_si256((__m256i *)(odd + t / 2), _mm512_extracti64x4_epi64(e, 1));
            } else {
                _mm512_storeu_si512((void *)(band + t), v);
            }
        }
        for (int64_t o = 0; o < j->OW; o += 64) {
            __m512i v = _mm512_loadu_si512((const void *)(band + j->tap[0] + o));
            for (int64_t kw = 1; kw < j->KW; kw++)
                v = @MAX@(v, _mm512_loadu_si512((const void *)(band + j->tap[kw] + o)));
            _mm512_mask_storeu_epi8(yr + o, pdc_qx_m64(j->OW - o), v);
        }
    }
}
"""


F32_JOB = r"""/* float32 max pool rows over a band (x86/pool.py) */
typedef struct {
    const float *x;
    float *y;
    float *band;            /* per slot: the band, then its odd columns (stride 2) */
    const int32_t *tap;     /* per horizontal tap: its offset in the band (phase folded in) */
    int64_t H, W, OH, OW, KH, KW, sh, dh, bh, bw, nb, half, slot_stride;
} pdc_fp_job;
#define PDC_FP_INLINE static inline __attribute__((always_inline))
/* the max of the n vectors at r + off[k] (off NULL: r + k * step), lanes outside m (edge) -inf, NaN
   where any is (the reference's max: NaN is the largest value; max_ps alone drops a NaN in its first
   operand, and one unordered compare covers two vectors) */
PDC_FP_INLINE __m256 pdc_fp_max(const float *r, int64_t n, int64_t step, const int32_t *off, int edge, __m256i m) {
    const __m256 low = _mm256_set1_ps(-INFINITY);
    __m256 v = low, nan = _mm256_setzero_ps(), x[2];
    for (int64_t k = 0; k < n; k++) {
        const float *q = off ? r + off[k] : r + k * step;
        x[k & 1] = edge ? _mm256_blendv_ps(low, _mm256_maskload_ps(q, m), _mm256_castsi256_ps(m)) : _mm256_loadu_ps(q);
        v = _mm256_max_ps(v, x[k & 1]);
        if (k & 1) nan = _mm256_or_ps(nan, _mm256_cmp_ps(x[0], x[1], _CMP_UNORD_Q));
    }
    if (n & 1) nan = _mm256_or_ps(nan, _mm256_cmp_ps(x[0], x[0], _CMP_UNORD_Q));
    return _mm256_blendv_ps(v, _mm256_set1_ps(NAN), nan);
}
/* band columns [t, t + 8): the max over the n window rows from r (step apart) of input columns
   t - bw ..., -inf outside the input */
PDC_FP_INLINE __m256 pdc_fp_column(const pdc_fp_job *j, const float *r, int64_t n, int64_t step, int64_t t) {
    const int64_t a = t - j->bw;  /* the input column of lane 0 */
    if (a >= 0 && a + 8 <= j->W) return pdc_fp_max(r + a, n, step, 0, 0, _mm256_setzero_si256());
    if (a >= j->W || a + 8 <= 0) return _mm256_set1_ps(-INFINITY);
    /* left of the row where a < 0: never read */
    return pdc_fp_max(r + a, n, step, 0, 1, pdc_span8(-a, j->W - a));
}
/* the rows of window KH x KW (constants where the caller passes them: the loops unroll) */
PDC_FP_INLINE void pdc_fp_rows_of(const pdc_fp_job *j, int64_t u0, int64_t u1, int slot, int64_t KH, int64_t KW) {
    float *band = j->band + slot * j->slot_stride, *odd = band + j->half;
    const int64_t step = j->dh * j->W;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t oh = u % j->OH, p = u / j->OH;
        float *yr = j->y + p * j->OH * j->OW + oh * j->OW;
        /* the window's rows inside the input: [k0, k1) */
        const int64_t top = oh * j->sh - j->bh, k0 = top >= 0 ? 0 : (-top + j->dh - 1) / j->dh;
        const int64_t k1 = j->H > top ? ((j->H - 1 - top) / j->dh + 1 < KH ? (j->H - 1 - top) / j->dh + 1 : KH) : 0;
        const float *r = j->x + p * j->H * j->W + (top + k0 * j->dh) * j->W;
        const int64_t n = k1 > k0 ? k1 - k0 : 0;
#define PDC_FP_COLUMN(t) (n == KH ? pdc_fp_column(j, r, KH, step, t) : pdc_fp_column(j, r, n, step, t))
        if (j->half) {  /* even columns to band[t / 2 ..], odd ones to odd[t / 2 ..] */
            for (int64_t t = 0; t < j->nb; t += 16) {
                const __m256 a = PDC_FP_COLUMN(t), b = PDC_FP_COLUMN(t + 8);
                const __m256 e = _mm256_shuffle_ps(a, b, 0x88), o = _mm256_shuffle_ps(a, b, 0xdd);
                _mm256_storeu_ps(band + t / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
                _mm256_storeu_ps(odd + t / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xd8)));
            }
        } else {
            for (int64_t t = 0; t < j->nb; t += 8) _mm256_storeu_ps(band + t, PDC_FP_COLUMN(t));
        }
#undef PDC_FP_COLUMN
        for (int64_t o = 0; o < j->OW; o += 8) {
            const __m256 v = pdc_fp_max(band + o, KW, 0, j->tap, 0, _mm256_setzero_si256());
            if (j->OW - o >= 8) _mm256_storeu_ps(yr + o, v);
            else _mm256_maskstore_ps(yr + o, pdc_m8((int)(j->OW - o)), v);
        }
    }
}
"""
# a row task: any window (KH, KW read from the job), or one of the common ones as constants (its loops unrolled)
F32_ROWS = r"""
static void @NAME@(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_fp_job *j = (const pdc_fp_job *)vj;
    pdc_fp_rows_of(j, u0, u1, slot, @KH@, @KW@);
}
"""
UNROLLED = ((2, 2), (3, 3))

MAX_BAND = 1 << 16  # floats of a thread's band


def _taps(KW: int, dw: int, sw: int, half: int) -> list[int]:
    """Each horizontal tap's offset in the band: stride 2 reads its even or odd columns (odd ones at half)."""
    return [((kw * dw) % 2) * half + (kw * dw) // 2 if sw == 2 else kw * dw for kw in range(KW)]


def _f32_band(ctx: KernelContext, g: Window2D, slots: int) -> Optional[tuple[str, str, list[int]]]:
    """(job initializer, row task, taps) of the float32 kernel, or None where its band is too wide: every
    tap's vector of 8 outputs stays inside the band, whose columns are filled 16 at a time."""
    width = (-(-g.OW // 8) * 8 - 1) * g.sw + (g.KW - 1) * g.dw + 1
    nb = -(-width // 16) * 16
    if nb > MAX_BAND:
        return None
    half = nb // 2 if g.sw == 2 else 0
    band, stride = ctx.thread_scratch(nb, slots)
    core(ctx)  # pdc_span8, pdc_m8
    ctx.helper("pdc_fp_job", F32_JOB)
    job = (f"pdc_fp_job j = {{in0, out0, {band}, tap, {g.H}, {g.W}, {g.OH}, {g.OW}, {g.KH}, {g.KW}, {g.sh}, {g.dh}, "
           f"{g.ph}, {g.pw}, {nb}, {half}, {stride}}}")
    if (g.KH, g.KW) in UNROLLED:
        name, kh, kw = f"pdc_fp_rows_{g.KH}x{g.KW}", str(g.KH), str(g.KW)
    else:
        name, kh, kw = "pdc_fp_rows", "j->KH", "j->KW"
    ctx.helper(name, F32_ROWS.replace("@NAME@", name).replace("@KH@", kh).replace("@KW@", kw))
    return job, name, _taps(g.KW, g.dw, g.sw, half)


def _int8_band(ctx: KernelContext, g: Window2D, slots: int, signed: bool) -> tuple[str, str, list[int]]:
    """(job initializer, row task, taps) of the int8 / uint8 kernel (AVX-512BW)."""
    width = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1  # the band's columns
    nb = -(-width // 64) * 64
    # stride 2: the odd columns after the even ones; every tap's 64-byte load stays inside the slot
    half = nb // 2 + 64 if g.sw == 2 else 0
    band, stride = ctx.thread_scratch((2 * half if g.sw == 2 else nb) + 64 + 64, slots, "uint8_t", 1)
    _common(ctx)
    ctx.helper("pdc_qp_job", BAND_JOB)
    sign = "i8" if signed else "u8"
    ctx.helper(f"pdc_qp_rows_{sign}", BAND_TASK.replace("@SIGN@", sign)
               .replace("@MAX@", "_mm512_max_epi8" if signed else "_mm512_max_epu8"))
    job = (f"pdc_qp_job j = {{(const uint8_t *)in0, (uint8_t *)out0, {band}, tap, {g.H}, {g.W}, {g.OH}, {g.OW}, "
           f"{g.KH}, {g.KW}, {g.sh}, {g.dh}, {g.ph}, {g.pw}, {nb}, {half}, {stride}, {-128 if signed else 0}}}")
    return job, f"pdc_qp_rows_{sign}", _taps(g.KW, g.dw, g.sw, half)


@kernel("max_pool", family="x86")
def max_pool(ctx: KernelContext) -> Optional[str]:
    x_t, y_t = ctx.inputs[0], ctx.outputs[0]
    if ctx.config.simd not in ("avx2", "avx512") or len(ctx.attrs["kernel_shape"]) not in (1, 2) or len(ctx.outputs) > 1:
        return None
    f32 = x_t.dtype.short == "f32" and y_t.dtype.short == "f32"
    if not f32 and (ctx.config.simd != "avx512" or x_t.dtype.short not in ("i8", "u8")):
        return None
    path = "avx-band" if f32 else "avx512-band"
    g = window_2d(ctx)
    if g.sw > 2 or g.KH * g.KW > MAX_TAPS or g.planes * g.OH * g.OW == 0 or not take("pool", path):
        return None
    units = g.planes * g.OH  # (plane, output row) pairs
    taps = g.planes * g.OH * g.OW * g.KH * g.KW  # a float tap costs 8x an int8 one (8 lanes, not 64)
    slots = ctx.slots(ctx.split(taps, PARALLEL_MIN_TAPS_F32 if f32 else PARALLEL_MIN_MACS) and units > 1)
    band = _f32_band(ctx, g, slots) if f32 else _int8_band(ctx, g, slots, x_t.dtype.short == "i8")
    if band is None:
        return None
    job, task, taps = band
    lines = [f"    static const int32_t tap[{g.KW}] = {{{', '.join(map(str, taps))}}};",
             f"    const {job};",
             f"    pdc_parallel_slots({units}, {slots}, {task}, (void *)&j);"]
    return mark("pool", path, "\n".join(lines))
