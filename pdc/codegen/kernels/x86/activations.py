"""x86 vector forms of the fused activations that call exp (sigmoid, swish) and of hard_swish,
for dense_core's pdc_act_rows: a tile of a conv / GEMM / depthwise kernel after its accumulation.
The scalar loop there takes the rest (gcc vectorizes the clamps itself; tanh and gelu stay scalar).
Each activation has its own loop (a test of `act` per vector cost as much as a multiply).

sigmoid(x) = 1 / (1 + e), e = exp(-x) with -x clamped to [-87.3, 88.4] (e stays finite), and 0
below x = -87.3 (the scalar form's e / (1 + e) with exp(x) under FLT_MIN; -inf * sigmoid(-inf) is
then NaN, as there). exp(r + n ln 2) = 2^n exp(r) with |r| <= ln(2) / 2 and exp(r) by the degree-7
polynomial of the Cephes library's expf (relative error about 1e-7); 2^n by scalef under AVX-512.
A NaN input gives NaN, as in the scalar form (swish: x times a finite sigmoid).
"""
from __future__ import annotations

from ..activations import ACT_CODES
from ..native import implement

_WIDTHS = {
    # guard, vector type, intrinsics prefix, lanes, mask declaration (n valid lanes), masked load, store,
    # NaN blend (keep x where x is NaN), round to nearest, the approximate reciprocal (relative error
    # under 2^-14 / 1.5 * 2^-12), {q} * 2^{n} for whole floats n, and {v} where {x} is not below -87.3
    # (0 there)
    "avx512": dict(guard="defined(__AVX512F__)", V="__m512", mm="_mm512", lanes=16,
                   mask="const __mmask16 k = (__mmask16)pdc_m16((int)(nr - j));",
                   load="_mm512_maskz_loadu_ps(k, row + j)", store="_mm512_mask_storeu_ps(row + j, k, y);",
                   nan="y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);",
                   round="_mm512_roundscale_ps({v}, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)",
                   rcp="_mm512_rcp14_ps({v})", scale="_mm512_scalef_ps({q}, {n})",
                   keep="_mm512_maskz_mov_ps(_mm512_cmp_ps_mask({x}, _mm512_set1_ps(-87.3365478515625f), _CMP_GE_OQ), {v})"),
    "avx2": dict(guard="defined(__AVX2__) && defined(__FMA__)", V="__m256", mm="_mm256",
                 lanes=8, mask="const __m256i k = pdc_m8((int)(nr - j));",
                 load="_mm256_maskload_ps(row + j, k)",
                 # a whole vector stored plainly: AMD cores run a masked AVX2 store as dozens of micro-ops
                 store="if (nr - j >= 8) _mm256_storeu_ps(row + j, y); else _mm256_maskstore_ps(row + j, k, y);",
                 nan="y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));",
                 round="_mm256_round_ps({v}, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)",
                 rcp="_mm256_rcp_ps({v})",
                 scale="_mm256_mul_ps({q}, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32("
                       "_mm256_cvtps_epi32({n}), _mm256_set1_epi32(127)), 23)))",
                 keep="_mm256_and_ps({v}, _mm256_cmp_ps({x}, _mm256_set1_ps(-87.3365478515625f), _CMP_GE_OQ))"),
}


def _exp(w: dict) -> list[str]:
    """C lines defining `e` = exp(t) for the vector t in [-87.3, 88.4] (normal and finite)."""
    mm, V = w["mm"], w["V"]
    c = lambda v: f"{mm}_set1_ps({v}f)"  # noqa: E731
    return [
        f"            const {V} n = {w['round'].format(v=f'{mm}_mul_ps(t, {c(1.44269504088896341)})')};",
        f"            {V} r = {mm}_fnmadd_ps(n, {c('0.693359375')}, t);",
        f"            r = {mm}_fnmadd_ps(n, {c('-2.12194440e-4')}, r);",
        f"            {V} q = {c('1.9875691500e-4')};",
        *(f"            q = {mm}_fmadd_ps(q, r, {c(k)});" for k in
          ("1.3981999507e-3", "8.3334519073e-3", "4.1665795894e-2", "1.6666665459e-1", "5.0000001201e-1")),
        f"            q = {mm}_fmadd_ps(q, {mm}_mul_ps(r, r), {mm}_add_ps(r, {c('1.0')}));",
        f"            const {V} e = {w['scale'].format(q='q', n='n')};",
    ]


def _sigmoid_of(w: dict, x: str) -> list[str]:
    """C lines defining `s` = sigmoid(x) (x: a vector variable)."""
    mm, V = w["mm"], w["V"]
    one = f"{mm}_set1_ps(1.0f)"
    lines = [f"            {V} t = {mm}_sub_ps({mm}_setzero_ps(), {x});",
             f"            t = {mm}_max_ps({mm}_set1_ps(-87.3365478515625f), {mm}_min_ps({mm}_set1_ps(88.3762626647949f), t));"]
    lines += _exp(w)
    # 1 / (1 + e) as the approximate reciprocal and one Newton step (error about 2^-23): a vector
    # division takes a dozen FMAs' time
    lines.append(f"            const {V} d = {mm}_add_ps({one}, e);")
    lines.append(f"            {V} rd = {w['rcp'].format(v='d')};")
    lines.append(f"            rd = {mm}_fmadd_ps({mm}_fnmadd_ps(d, rd, {one}), rd, rd);")
    lines.append(f"            const {V} s = {w['keep'].format(x=x, v='rd')};")
    return lines


def _loop(w: dict, act: str, body: list[str]) -> list[str]:
    """The loop over the tile for one activation (body turns the vector x into y): four whole vectors
    a step, with plain loads and stores, then the rest one (masked) vector at a time."""
    L = w["lanes"]
    return [f"    if (act == {ACT_CODES[act]}) {{",
            "        for (int i = 0; i < mr; i++) {",
            "        float *row = c + i * ldc;",
            "        int64_t j = 0;",
            f"        for (; j + {4 * L} <= nr; j += {4 * L}) {{",
            "#pragma GCC unroll 4",
            "        for (int u = 0; u < 4; u++) {",
            f"            const {w['V']} x = {w['mm']}_loadu_ps(row + j + u * {L});",
            *body,
            f"            {w['mm']}_storeu_ps(row + j + u * {L}, y);",
            "        }",
            "        }",
            f"        for (; j < nr; j += {L}) {{",
            f"            {w['mask']}",
            f"            const {w['V']} x = {w['load']};",
            *body,
            f"            {w['store']}",
            "        }",
            "        }",
            "        return;",
            "    }"]


def _vector(w: dict) -> str:
    mm, V = w["mm"], w["V"]
    hard_swish = [  # x * clamp(x * float32(1/6) + 0.5, 0, 1), as the scalar form
        f"            const {V} h = {mm}_add_ps({mm}_mul_ps(x, {mm}_set1_ps(0x1.555556p-3f)), {mm}_set1_ps(0.5f));",
        f"            const {V} y = {mm}_mul_ps(x, {mm}_min_ps({mm}_set1_ps(1.0f), {mm}_max_ps({mm}_setzero_ps(), h)));"]
    sigmoid = [*_sigmoid_of(w, "x"), f"            {V} y = s;", f"            {w['nan']}"]
    swish = [f"            const {V} ax = {mm}_mul_ps({mm}_set1_ps(alpha), x);", *_sigmoid_of(w, "ax"),
             f"            const {V} y = {mm}_mul_ps(x, s);"]
    return "\n".join([f"#if {w['guard']}", *_loop(w, "swish", swish), *_loop(w, "sigmoid", sigmoid),
                      *_loop(w, "hard_swish", hard_swish)])


implement("x86", dense_act_rows="\n".join([
    _vector(_WIDTHS["avx512"]),
    "#elif" + _vector(_WIDTHS["avx2"])[3:],
    "#endif",
]) + "\n")
