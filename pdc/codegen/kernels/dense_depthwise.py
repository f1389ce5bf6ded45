"""Depthwise convolution kernels (conv / fused_conv with one input and one output channel per
group), fp32, NCHW, in blocks of 16 output pixels: each kernel tap reads the lanes of a 16-bit
mask (computed at compile time) whose input lies inside the plane, so padding costs nothing.
Stride-1 "same-width" convs run on the plane as one flat array; stride-2 ones first split each
plane into its four parity phases, which makes them flat too; other strides and widths run row by
row. The loop over a plane is a native piece (native.py): x86/conv_c.py's AVX-512 form makes each
tap one masked load (two and a permute for stride 2 in the row kernel), its AVX2 form takes a block
as two vectors of 8 with the mask's bytes (plain loads where every tap keeps every lane); elsewhere
plain C.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..context import KernelContext
from . import native
from .dense_conv_c import fill_row_helper
from .dense_core import add_weight, bias_ptr, c_float, core
from .epilogue import Epilogue
from .paths import mark, take

if TYPE_CHECKING:
    from .conv_geometry import ConvGeom

DW_C = r"""
/* ---- pdc dense kernels: depthwise convolution (one input and output channel per group) ----
 * Vectors of 16 output columns; each kernel tap is one masked load straight from the input row
 * (two loads and a permute for stride 2). masks[blk * KW + kw] holds the lanes whose input column
 * lies inside the row, so padding costs nothing and masked-off lanes are never read. */
typedef struct {
    const float *x, *w, *bias, *res; float *y; const pdc_post *post;
    const uint32_t *masks;
    void (*fn)(void *job, int64_t p0, int64_t p1, float *buf); int64_t planes; /* buf: a thread slot's */
    int64_t C, H, W, OH, OW, sh, ph, dh, dw, pw, nblk;
    int64_t Wq, HWq; /* stride 2, flat: each plane is split into 4 parity phases of HWq floats, rows of Wq */
    float lo, hi; int clamp;
} pdc_dw_job;
static void pdc_dw_part(const void *vj, int64_t part, int64_t parts, float *buf) {
    const pdc_dw_job *j = (const pdc_dw_job *)vj;
    j->fn((void *)j, j->planes * part / parts, j->planes * (part + 1) / parts, buf);
}
/* scratch: `slots` thread slots of slot_floats each (none for kernels without a buffer) */
static void pdc_dw_run(const pdc_dw_job *j, float *scratch, int64_t slot_floats, int slots) {
    const int64_t threads = pdc_slot_threads(slots);
    pdc_run_chunks(j, pdc_dw_part, j->planes < 8 * threads ? j->planes : 8 * threads, threads, slots, scratch,
                   slot_floats);
}
"""


DW_BUF_FLOATS = 16384  # the most a thread's buffer takes: a stride-2 plane in 4 parity phases (64 KiB)


def _dw_rows(ctx: KernelContext, taps_h: int, taps_w: int, sw: int) -> tuple[str, str]:
    """The depthwise kernel for one shape class (KH x KW taps, column stride sw), over planes [p0, p1);
    a plane's loop is a native piece (x86: vectors of 16 output columns)."""
    name = f"pdc_dw_{taps_h}x{taps_w}_s{sw}"
    taps = taps_h * taps_w
    L = [f"static void {name}(void *vj, int64_t p0, int64_t p1, float *buf) {{",
         "    const pdc_dw_job *j = (const pdc_dw_job *)vj;",
         "    (void)buf;",
         "    /* the job's fields in locals: the output stores could otherwise alias them */",
         "    const int64_t H = j->H, W = j->W, OH = j->OH, OW = j->OW, sh = j->sh, ph = j->ph, dh = j->dh;",
         "    const int64_t dw = j->dw, pw = j->pw, nblk = j->nblk, C = j->C, P = OH * OW;",
         "    const uint32_t *masks = j->masks;",
         "    const int clamp = j->clamp;",
         "    const float lo = j->lo, hi = j->hi;",
         "    (void)dw; (void)lo; (void)hi; (void)nblk; (void)masks;",
         "    for (int64_t pl = p0; pl < p1; pl++) {",
         "        const int64_t ch = pl % C;",
         "        const float *x = j->x + pl * H * W, *w = j->w + ch * " + str(taps) + ";",
         "        float *y = j->y + pl * P;",
         "        const float *res = j->res ? j->res + pl * P : 0;",
         "        const float bias = j->bias ? j->bias[ch] : 0.0f;",
         "@native dense_dw_rows"]
    L.append("        for (int64_t oh = 0; oh < OH; oh++)")
    L.append("        for (int64_t ow = 0; ow < OW; ow++) {")
    L.append("            float a0 = bias, a1 = 0;")
    L.append(f"            for (int kh = 0; kh < {taps_h}; kh++) {{")
    L.append("                const int64_t ih = oh * sh - ph + kh * dh;")
    L.append("                if (ih < 0 || ih >= H) continue;")
    L.append(f"                for (int kw = 0; kw < {taps_w}; kw++) {{")
    L.append(f"                    const int64_t iw = ow * {sw} - pw + kw * dw;")
    L.append(f"                    const float v = iw >= 0 && iw < W ? w[kh * {taps_w} + kw] * x[ih * W + iw] : 0.0f;")
    L.append(f"                    if ((kh * {taps_w} + kw) % 2) a1 += v; else a0 += v;")
    L.append("                }")
    L.append("            }")
    L.append("            float v = a0 + a1;")
    L.append("            if (res) v += res[oh * OW + ow];")
    L.append("            if (clamp) { v = v < lo ? lo : v; v = v > hi ? hi : v; }")
    L.append("            y[oh * OW + ow] = v;")
    L.append("        }")
    L.append("@end")
    L.append("        if (j->post) pdc_post_tile(j->post, 0, pl, 0, 1, (int)P, y, 0);")
    L.append("    }")
    L.append("}")
    return name, native.fill(ctx, "\n".join(L) + "\n", taps_h=taps_h, taps_w=taps_w, sw=sw)


def _dw_flat(ctx: KernelContext, offs: list[int]) -> tuple[str, str]:
    """Depthwise for stride 1 and OW == W: output pixel p reads input p + off[t] for tap t, so a
    plane is a flat run of 16-pixel vectors; masks[vec * (taps + 1) + t] drop the lanes that fall
    off the plane or wrap around a row (the last word of a vector: the lanes every tap keeps). The
    offsets are constants of the function (one per layer geometry), so every tap's load takes its
    offset as a displacement."""
    taps = len(offs)
    name = f"pdc_dw_flat{taps}_" + "_".join(str(o).replace("-", "m") for o in offs)  # unique per offsets
    L = [f"static void {name}(void *vj, int64_t p0, int64_t p1, float *buf) {{",
         "    const pdc_dw_job *j = (const pdc_dw_job *)vj;",
         "    const int64_t HW = j->H * j->W, P = j->OH * j->OW;",
         "    const uint32_t *masks = j->masks;",
         "    const int clamp = j->clamp;",
         "    const float lo = j->lo, hi = j->hi;",
         f"    static const int64_t off[{taps}] = {{{', '.join(map(str, offs))}}};",
         "    for (int64_t pl = p0; pl < p1; pl++) {",
         "        const int64_t ch = pl % j->C;",
         f"        const float *x = j->x + pl * HW, *w = j->w + ch * {taps};",
         "        if (j->HWq) { /* stride 2: input row ih -> phases (ih % 2, 0 / 1), row ih / 2 */",
         "            for (int64_t ih = 0; ih < j->H; ih++)",
         "                pdc_fill_row(buf + (ih % 2) * 2 * j->HWq + (ih / 2) * j->Wq, j->HWq, x + ih * j->W, j->W,",
         "                             j->Wq, 2, 0);",
         "            x = buf;",
         "        }",
         "        float *y = j->y + pl * P;",
         "        const float *res = j->res ? j->res + pl * P : 0;",
         "        const float bias = j->bias ? j->bias[ch] : 0.0f;",
         "@native dense_dw_flat",
         "        for (int64_t p = 0; p < P; p++) {",
         "            const uint32_t *mk = masks + (p / 16) * " + str(taps + 1) + ";",
         "            float a0 = bias, a1 = 0;",
         f"            for (int t = 0; t < {taps}; t++)",
         "                if ((mk[t] >> (p % 16)) & 1) {",
         "                    if (t % 2) a1 += w[t] * x[p + off[t]]; else a0 += w[t] * x[p + off[t]];",
         "                }",
         "            float v = a0 + a1;",
         "            if (res) v += res[p];",
         "            if (clamp) { v = v < lo ? lo : v; v = v > hi ? hi : v; }",
         "            y[p] = v;",
         "        }",
         "@end",
         "        if (j->post) pdc_post_tile(j->post, 0, pl, 0, 1, (int)P, y, 0);",
         "    }",
         "}"]
    return name, native.fill(ctx, "\n".join(L) + "\n", taps=taps)


MAX_MASKS = 1 << 18  # mask words (flat) or lanes (rows) of one layer's tables


def _dw_flat_masks(H, W, OH, OW, KH, KW, s, dh, dw, ph, pw) -> tuple[np.ndarray, list[int]]:
    """Masks [vector][tap], then the AND of a vector's masks, and the tap offsets of the flat
    depthwise kernel. Stride 1 (OW == W): the plane itself. Stride 2 (OW == ceil(W / 2)): 4 parity
    phases of hq x OW floats each, phase (a, b) holding input rows a, a+2, ... and columns b, b+2, ..."""
    P = OH * OW
    nvec = -(-P // 16)
    p = np.arange(nvec * 16)
    oh, ow = p // OW, p % OW
    hq = -(-H // 2)
    out = np.zeros((nvec, KH * KW + 1), np.uint32)
    offs = []
    for kh in range(KH):
        for kw in range(KW):
            if s == 1:
                ih, iw = oh + kh * dh - ph, ow + kw * dw - pw
                ok = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                offs.append((kh * dh - ph) * W + kw * dw - pw)
            else:
                (dr, a), (dc, b) = divmod(kh * dh - ph, 2), divmod(kw * dw - pw, 2)
                i, jj = oh + dr, ow + dc
                ok = (i >= 0) & (i < (H - a + 1) // 2) & (jj >= 0) & (jj < (W - b + 1) // 2)
                offs.append((a * 2 + b) * hq * OW + dr * OW + dc)
            ok &= p < P
            out[:, kh * KW + kw] = (ok.reshape(nvec, 16) * (1 << np.arange(16))).sum(axis=1)
    out[:, -1] = np.bitwise_and.reduce(out[:, :-1], axis=1)
    return out, offs


def _dw_masks(OW: int, W: int, KW: int, sw: int, dw: int, pw: int) -> np.ndarray:
    """Lane masks of the depthwise loads: [block][kw], bit l of the (low) load of 16 (or 32)
    input columns starting at blk*16*sw - pw + kw*dw set where that column lies inside [0, W)."""
    nblk = -(-OW // 16)
    out = np.zeros((nblk, KW), np.uint32)
    span = 16 * sw
    for blk in range(nblk):
        for kw in range(KW):
            start = blk * 16 * sw - pw + kw * dw
            m = 0
            for lane in range(span):
                col = start + lane
                # only lanes feeding a used output column (lane % sw == 0, column < OW) are read
                if lane % sw == 0 and blk * 16 + lane // sw < OW and 0 <= col < W:
                    m |= 1 << lane
            out[blk, kw] = m
    return out




# ---- epilogue attributes --------------------------------------------------------------------------------


def depthwise_f32(ctx: KernelContext, g: "ConvGeom", epi: Epilogue, heuristic: bool = True):
    """Depthwise 1-D/2-D conv (one input and one output channel per group), or None. heuristic:
    whether the depthwise kernels are the better choice (few taps, real groups)."""
    _, H, W = g.in_sp
    _, OH, OW = g.out_sp
    _, KH, KW = g.kernel
    _, sh, sw = g.strides
    _, dh, dw = g.dilations
    _, ph, pw = g.begin
    if g.in_sp[0] != 1 or g.kernel[0] != 1 or sw not in (1, 2):
        return None
    flat = (sh == 1 and sw == 1 and OW == W) or (sh == 2 and sw == 2 and OW == -(-W // 2)
                                                 and 4 * -(-H // 2) * OW <= DW_BUF_FLOATS)
    # the lane masks are tables built in Python: per 16 outputs and tap, so a huge plane takes the GEMM paths
    flat = flat and -(-OH * OW // 16) * KH * KW <= MAX_MASKS and take("conv", "depthwise-flat", heuristic)
    if not flat and (-(-OW // 16) * KW * 16 * sw > MAX_MASKS or not take("conv", "depthwise-rows", heuristic)):
        return None
    core(ctx)
    ctx.helper("pdc_dense_dw", DW_C)
    if flat:
        fill_row_helper(ctx)
        mk, offs = _dw_flat_masks(H, W, OH, OW, KH, KW, sh, dh, dw, ph, pw)
        fn, code = _dw_flat(ctx, offs)
        nblk = mk.shape[0]
    else:
        fn, code = _dw_rows(ctx, KH, KW, sw)
        mk, offs, nblk = _dw_masks(OW, W, KW, sw, dw, pw), None, -(-OW // 16)
    ctx.helper(fn, code)
    w = ctx.const(1)
    wptr = add_weight(ctx, np.asarray(w, np.float32).reshape(-1)) if w is not None else "in1"
    masks = add_weight(ctx, mk, "uint32_t")
    lines = []
    post = "0"
    if not epi.fast:
        lines += epi.post_lines("in3", 0, g.p_out)  # rows = planes
        post = "&post"
    res = "in3" if epi.has_r and epi.residual == "before_activation" else "0"
    planes = g.n * g.c
    lines.append("    pdc_dw_job j;\n    memset(&j, 0, sizeof j);")
    for k, v in dict(x="in0", w=wptr, bias=bias_ptr(ctx, 2, g.m), res=res, y="out0", post=post, masks=masks,
                     C=g.c, H=H, W=W, OH=OH, OW=OW, sh=sh, ph=ph, dh=dh, dw=dw, pw=pw, nblk=nblk,
                     Wq=OW if flat and sh == 2 else 0, HWq=-(-H // 2) * OW if flat and sh == 2 else 0,
                     lo=c_float(epi.lo), hi=c_float(epi.hi), clamp=int(epi.clamp), fn=fn, planes=planes).items():
        lines.append(f"    j.{k} = {v};")
    macs = planes * g.p_out * g.taps
    slots = ctx.slots(ctx.split(macs, 200_000) and planes > 1)
    hwq = -(-H // 2) * OW if flat and sh == 2 else 0
    scratch, stride = ctx.thread_scratch(4 * hwq, slots) if hwq else ("0", 0)
    lines.append(f"    pdc_dw_run(&j, {scratch}, {stride}, {slots});")
    return mark("conv", "depthwise-flat" if flat else "depthwise-rows", "\n".join(lines))
