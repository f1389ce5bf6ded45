"""ARM pooling: max_pool / average_pool (1-D and 2-D, fp32) and the global pools.

Windowed pools use the depthwise conv's scheme: per output row, the KH input rows the windows
touch are copied into a band on the stack with their padding (-inf for max, 0 for average), and
4 outputs at a time take the max / sum of KH x KW vector loads (stride 2: a de-interleaving load).
AveragePool then divides each output by its window's count (count_include_pad or not), a product
of per-row and per-column counts tabulated at compile time. Global pools reduce each plane with
four vector accumulators. Kernel paths (paths.py): "neon-band" and "neon-global" of the pool family;
what they do not cover takes the portable generators (pool.py, reduce.py).
"""
from __future__ import annotations

from typing import Optional

from ...context import KernelContext
from ..pool import tap_range, window_2d  # (importing pool declares the portable paths first: "generic" is the general one)
from ..paths import declare, mark, take
from .vector import arm_kernel, band_rows, base, is_f32

declare("pool", "neon-band", "neon-global")


# the band kernel's limits: its taps are unrolled, its rows live on the stack and its counts are tables
MAX_TAPS = 256
MAX_BAND_FLOATS = 1 << 16
MAX_TABLE = 4096


def _counts(in_sp: int, k: int, s: int, d: int, begin: int, out: int, valid: tuple[int, int]) -> list[int]:
    lo, hi = valid
    return [(lambda r: r[1] - r[0])(tap_range(o * s - begin, k, d, lo, hi)) for o in range(out)]


def _table(name: str, values: list[int]) -> str:
    return f"static const int32_t {name}[{len(values)}] = {{{', '.join(map(str, values))}}};"


@arm_kernel("max_pool", "average_pool")
def pool(ctx: KernelContext) -> Optional[str]:
    x_t = ctx.inputs[0]
    if len(ctx.attrs["kernel_shape"]) not in (1, 2) or len(ctx.outputs) > 1 or not is_f32(x_t, ctx.outputs[0]):
        return None
    is_max = ctx.node.op == "max_pool"
    H, W, OH, OW, KH, KW, sh, sw, dh, dw, bh, bwb, cnt, planes = window_2d(ctx)
    if planes * OH * OW == 0 or not take("pool", "neon-band"):
        return None
    bw = (OW - 1) * sw + (KW - 1) * dw + 1
    if KH * KW > MAX_TAPS or KH * bw > MAX_BAND_FLOATS or max(OH, OW) > MAX_TABLE:
        return None  # a huge window or row: the portable kernel computes it without tables
    base(ctx)
    lo_b = min(bwb, bw)
    hi_b = max(lo_b, min(bw, W + bwb))
    fill = "-INFINITY" if is_max else "0.0f"
    comb_v = "pdc_vmax" if is_max else "pdc_vadd"
    load = "pdc_vld" if sw == 1 else "pdc_vld2e"
    L = []
    if not is_max:
        include = bool(ctx.attrs.get("count_include_pad", 0))
        valid_h = (-cnt[0][0], H + cnt[0][1]) if include else (0, H)
        valid_w = (-cnt[1][0], W + cnt[1][1]) if include else (0, W)
        L.append(_table("ch", _counts(H, KH, sh, dh, bh, OH, valid_h)))
        L.append(_table("cw", _counts(W, KW, sw, dw, bwb, OW, valid_w)))
    L += [f"float band[{KH * bw + 8}];",
          f"for (int64_t pl = 0; pl < {planes}; pl++) {{",
          f"    const float *x = in0 + pl * {H * W};",
          f"    float *y = out0 + pl * {OH * OW};",
          f"    for (int64_t oy = 0; oy < {OH}; oy++) {{"]
    L += band_rows(" " * 8, KH, bw, f"oy * {sh} - {bh} + kh * {dh}", H, W, lo_b, hi_b, bwb, fill)
    L += [f"        float *yr = y + oy * {OW};",
          "        int64_t ox = 0;"]
    if sw in (1, 2):
        L += ["#if PDC_V",
              f"        for (; ox + 4 <= {OW}; ox += 4) {{",
              f"            pdc_v4 acc = {load}(band + ox * {sw});"]
        for kh in range(KH):
            for kw in range(KW):
                if kh or kw:
                    L.append(f"            acc = {comb_v}(acc, {load}(band + {kh * bw} + ox * {sw} + {kw * dw}));")
        L += ["            pdc_vst(yr + ox, acc);", "        }", "#endif"]
    L += [f"        for (; ox < {OW}; ox++) {{",
          f"            float s = band[ox * {sw}];"]
    for kh in range(KH):
        for kw in range(KW):
            if kh or kw:
                v = f"band[{kh * bw} + ox * {sw} + {kw * dw}]"
                L.append(f"            s = pdc_fmaxn(s, {v});" if is_max else f"            s += {v};")
    L += ["            yr[ox] = s;", "        }"]
    if not is_max:
        L.append(f"        for (int64_t i = 0; i < {OW}; i++) yr[i] = yr[i] / (float)(ch[oy] * cw[i]);")
    L += ["    }", "}"]
    return mark("pool", "neon-band", "\n".join("    " + ln if not ln.startswith("#") else ln for ln in L))


@arm_kernel("global_average_pool", "global_max_pool")
def global_pool(ctx: KernelContext) -> Optional[str]:
    x_t = ctx.inputs[0]
    if len(x_t.shape) < 3 or not is_f32(x_t, ctx.outputs[0]):
        return None
    planes = x_t.shape[0] * x_t.shape[1]
    hw = 1
    for d in x_t.shape[2:]:
        hw *= d
    if planes == 0 or hw == 0 or not take("pool", "neon-global"):
        return None
    base(ctx)
    is_max = ctx.node.op == "global_max_pool"
    comb_v, init = ("pdc_vmax", "-INFINITY") if is_max else ("pdc_vadd", "0.0f")
    L = [f"for (int64_t pl = 0; pl < {planes}; pl++) {{",
         f"    const float *x = in0 + pl * {hw};",
         f"    float s = {init};",
         "    int64_t i = 0;",
         "#if PDC_V",
         f"    if ({hw} >= 16) {{",
         f"        pdc_v4 a0 = pdc_vdup({init}), a1 = a0, a2 = a0, a3 = a0;",
         f"        for (; i + 16 <= {hw}; i += 16) {{",
         f"            a0 = {comb_v}(a0, pdc_vld(x + i)); a1 = {comb_v}(a1, pdc_vld(x + i + 4));",
         f"            a2 = {comb_v}(a2, pdc_vld(x + i + 8)); a3 = {comb_v}(a3, pdc_vld(x + i + 12));",
         "        }",
         f"        a0 = {comb_v}({comb_v}(a0, a1), {comb_v}(a2, a3));"]
    if is_max:
        L += ["        float t[4];", "        pdc_vst(t, a0);",
              "        s = pdc_fmaxn(pdc_fmaxn(t[0], t[1]), pdc_fmaxn(t[2], t[3]));"]
    else:
        L.append("        s = pdc_vhsum(a0);")
    L += ["    }", "#endif",
          f"    for (; i < {hw}; i++) s = {'pdc_fmaxn(s, x[i])' if is_max else 's + x[i]'};",
          f"    out0[pl] = {'s' if is_max else f's / {hw}.0f'};",
          "}"]
    return mark("pool", "neon-global", "\n".join("    " + ln if not ln.startswith("#") else ln for ln in L))
