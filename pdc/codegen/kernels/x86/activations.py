"""x86 vector forms of the fused activations that call exp (sigmoid, swish) and of hard_swish,
for dense_core's pdc_act_rows: a tile of a conv / GEMM / depthwise kernel after its accumulation.
The scalar loop there takes the rest (gcc vectorizes the clamps itself; tanh and gelu stay scalar).

exp is needed only of x <= 0: sigmoid is 1 / (1 + e) for x >= 0 and e / (1 + e) below, with
e = exp(-|x|) <= 1, the scalar form's branches, so nothing overflows. exp(r + n ln 2) = 2^n exp(r)
with |r| <= ln(2) / 2 and exp(r) by the degree-7 polynomial of the Cephes library's expf
(relative error about 1e-7); below -87.3 (exp under FLT_MIN) it is 0, where expf gives a
subnormal. A NaN input gives NaN, as in the scalar form.
"""
from __future__ import annotations

from ..activations import ACT_CODES
from ..native import implement

_WIDTHS = {
    # guard, vector type, intrinsics prefix, lanes, mask declaration (n valid lanes), masked load, store,
    # NaN blend (keep x where x is NaN), sign blend (a where {x} < 0 else b), round to nearest, the
    # approximate reciprocal (relative error under 2^-14 / 1.5 * 2^-12), and
    # exp's result kept where its input t0 was not below -87.3 (0 there: -inf * sigmoid(-inf) is NaN)
    "avx512": dict(guard="defined(__AVX512F__)", V="__m512", I="__m512i", mm="_mm512", si="si512", lanes=16,
                   mask="const __mmask16 k = (__mmask16)pdc_m16((int)(nr - j));",
                   load="_mm512_maskz_loadu_ps(k, row + j)", store="_mm512_mask_storeu_ps(row + j, k, y);",
                   nan="y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);",
                   neg="_mm512_mask_blend_ps(_mm512_cmp_ps_mask({x}, z, _CMP_LT_OQ), {b}, {a})",
                   round="_mm512_roundscale_ps({v}, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)",
                   rcp="_mm512_rcp14_ps({v})",
                   keep="_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t0, _mm512_set1_ps(-87.3365478515625f), _CMP_GE_OQ), {e})"),
    "avx2": dict(guard="defined(__AVX2__) && defined(__FMA__)", V="__m256", I="__m256i", mm="_mm256", si="si256",
                 lanes=8, mask="const __m256i k = pdc_m8((int)(nr - j));",
                 load="_mm256_maskload_ps(row + j, k)",
                 # a whole vector stored plainly: AMD cores run a masked AVX2 store as dozens of micro-ops
                 store="if (nr - j >= 8) _mm256_storeu_ps(row + j, y); else _mm256_maskstore_ps(row + j, k, y);",
                 nan="y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));",
                 neg="_mm256_blendv_ps({b}, {a}, _mm256_cmp_ps({x}, z, _CMP_LT_OQ))",
                 round="_mm256_round_ps({v}, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)",
                 rcp="_mm256_rcp_ps({v})",
                 keep="_mm256_and_ps({e}, _mm256_cmp_ps(t0, _mm256_set1_ps(-87.3365478515625f), _CMP_GE_OQ))"),
}


def _exp_neg(w: dict) -> list[str]:
    """C lines defining `e` = exp(t) for the vector t <= 0."""
    mm, V = w["mm"], w["V"]
    c = lambda v: f"{mm}_set1_ps({v}f)"  # noqa: E731
    scaled = f"{mm}_mul_ps(q, {mm}_cast{w['si']}_ps(p2))"  # exp(r) * 2^n
    return [
        f"            const {V} t0 = t;",
        f"            t = {mm}_max_ps(t, {c('-87.3365478515625')});",
        f"            const {V} n = {w['round'].format(v=f'{mm}_mul_ps(t, {c(1.44269504088896341)})')};",
        f"            {V} r = {mm}_fnmadd_ps(n, {c('0.693359375')}, t);",
        f"            r = {mm}_fnmadd_ps(n, {c('-2.12194440e-4')}, r);",
        f"            {V} q = {c('1.9875691500e-4')};",
        *(f"            q = {mm}_fmadd_ps(q, r, {c(k)});" for k in
          ("1.3981999507e-3", "8.3334519073e-3", "4.1665795894e-2", "1.6666665459e-1", "5.0000001201e-1")),
        f"            q = {mm}_fmadd_ps(q, {mm}_mul_ps(r, r), {mm}_add_ps(r, {c('1.0')}));",
        f"            const {w['I']} p2 = {mm}_slli_epi32({mm}_add_epi32({mm}_cvtps_epi32(n), {mm}_set1_epi32(127)), 23);",
        f"            const {V} e = {w['keep'].format(e=scaled)};",
    ]


def _sigmoid_of(w: dict, x: str) -> list[str]:
    """C lines defining `s` = sigmoid(x) (x: a vector expression without side effects)."""
    mm = w["mm"]
    sign = f"{mm}_cast{w['si']}_ps({mm}_set1_epi32((int)0x80000000u))"
    lines = [f"            {w['V']} t = {mm}_or_ps({x}, {sign});  /* -|x| */"]
    lines += _exp_neg(w)
    one = f"{mm}_set1_ps(1.0f)"
    # e / (1 + e) where x < 0, else 1 / (1 + e), with 1 / (1 + e) (in [1/2, 1]) as the approximate
    # reciprocal and one Newton step (error about 2^-23): a vector division takes a dozen FMAs' time
    V = w["V"]
    lines.append(f"            const {V} d = {mm}_add_ps({one}, e);")
    lines.append(f"            {V} rd = {w['rcp'].format(v='d')};")
    lines.append(f"            rd = {mm}_fmadd_ps({mm}_fnmadd_ps(d, rd, {one}), rd, rd);")
    lines.append(f"            const {V} s = {mm}_mul_ps({w['neg'].format(x=x, a='e', b=one)}, rd);")
    return lines


def _vector(w: dict) -> str:
    mm, V = w["mm"], w["V"]
    L = [f"#if {w['guard']}",
         f"    if (act == {ACT_CODES['sigmoid']} || act == {ACT_CODES['swish']} || act == {ACT_CODES['hard_swish']}) {{",
         f"        const {V} z = {mm}_setzero_ps(), va = {mm}_set1_ps(alpha);",
         "        (void)beta; (void)va;",
         "        for (int i = 0; i < mr; i++) {",
         "        float *row = c + i * ldc;",
         f"        for (int64_t j = 0; j < nr; j += {w['lanes']}) {{",
         f"            {w['mask']}",
         f"            const {V} x = {w['load']};",
         f"            {V} y;",
         f"            if (act == {ACT_CODES['hard_swish']}) {{  /* x * clamp(x * float32(1/6) + 0.5, 0, 1), as the scalar form */",
         f"                const {V} h = {mm}_add_ps({mm}_mul_ps(x, {mm}_set1_ps(0x1.555556p-3f)), {mm}_set1_ps(0.5f));",
         f"                y = {mm}_mul_ps(x, {mm}_min_ps({mm}_set1_ps(1.0f), {mm}_max_ps(z, h)));",
         "            } else {",
         f"            const {V} ax = act == {ACT_CODES['swish']} ? {mm}_mul_ps(va, x) : x;"]
    L += ["    " + ln for ln in _sigmoid_of(w, "ax")]
    L += [f"                y = act == {ACT_CODES['swish']} ? {mm}_mul_ps(x, s) : s;",
          "            }",
          f"            {w['nan']}",
          f"            {w['store']}",
          "        }",
          "        }",
          "        return;",
          "    }"]
    return "\n".join(L)


implement("x86", dense_act_rows="\n".join([
    _vector(_WIDTHS["avx512"]),
    "#elif" + _vector(_WIDTHS["avx2"])[3:],
    "#endif",
]) + "\n")
