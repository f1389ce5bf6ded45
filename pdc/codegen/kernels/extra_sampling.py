"""Kernels of the spatial sampling ops: grid_sample, affine_grid, col2im, deform_conv; and
non_max_suppression (with a bound on its rows: passes/bound_outputs.py).

- grid_sample: per output position, the pixel coordinates are computed in the grid's precision
  (float for float32 and half grids, as the reference and ONNX Runtime do: rounding decides the
  nearest pixel), with the products kept apart from the sums (`PDC_ROUNDED`: no fused multiply-add
  that would round differently). The taps of each dim (1, 2 or 4) get their padded indices and
  weights once; every channel then sums its weighted taps in double.
- affine_grid: the base grid is a compile-time table; theta is read at run time.
- col2im: zeroes the image, then adds every column value at its pixel (a static loop nest over
  kernel and block positions; the padding is skipped).
- deform_conv: for each output position, the interpolated input of every (channel, tap) goes to a
  stack buffer (im2col of one column), then each output channel is a dot product with its weights.
Image shapes, block shapes and sizes come from the static shapes or compile-time constants.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.ops.extra_sampling import COORD_LIMIT, base_grid, col2im_geometry, deform_geometry
from ..context import KernelContext, numel, strides
from ..ctypes_c import float_literal
from . import kernel
from ._axis import Num, indent, stable_sort

MAX_DEFORM_COLUMN = 1 << 16  # C * prod(kernel) values of one im2col column on the stack

_ROUNDED = """#ifndef PDC_ROUNDED
/* forces a value to be rounded to its type here, so no multiply-add fuses across it */
#define PDC_ROUNDED(v) __asm__("" : "+x"(v))
#endif
"""


def _reflect_helper(ctx: KernelContext, ct: str) -> str:
    f = "f" if ct == "float" else ""
    name = f"pdc_gs_reflect_{ct}"
    return ctx.helper(name, f"""static inline {ct} {name}({ct} x, {ct} lo, {ct} hi) {{
    /* reflects x at lo and hi until inside, like the reference (each step rounded in {ct}) */
    const {ct} rng = hi - lo;
    if (rng <= 0) return lo;
    if (x >= lo && x <= hi) return x;
    const int below = x < lo;
    const {ct} dx = below ? lo - x : x - hi;
    const {ct} n = floor{f}(dx / rng);
    {ct} m = n * rng;
    PDC_ROUNDED(m);
    const {ct} r = dx - m;
    const int even = fmod{f}(n, 2) == 0;
    return below ? (even ? lo + r : hi - r) : (even ? hi - r : lo + r);
}}
""")


def _int_store(dt) -> str:
    """C expression converting double `acc` to integer dtype dt: truncated, clamped, NaN -> 0."""
    info = np.iinfo(dt.np)
    lo, hi = float(info.min), float(info.max)
    c = KernelContext.ctype(dt)
    hi_lit = f"{c.upper().replace('_T', '')}_MAX" if dt.short != "bool" else "1"
    lo_lit = f"{c.upper().replace('_T', '')}_MIN" if dt.short.startswith("i") else "0"
    return (f"(acc != acc ? ({c})0 : acc <= {float_literal(lo, 'double')} ? ({c}){lo_lit} : "
            f"acc >= {float_literal(hi, 'double')} ? ({c}){hi_lit} : ({c})acc)")


# ---- grid_sample ---------------------------------------------------------------------------------
@kernel("grid_sample")
def grid_sample(ctx: KernelContext) -> str:
    x, grid, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    mode, pad = ctx.attrs.get("mode", "linear"), ctx.attrs.get("padding_mode", "zeros")
    align = bool(ctx.attrs.get("align_corners", 0))
    n_batch, chans, *sizes = x.shape
    r = len(sizes)
    out_sp = y.shape[2:]
    positions = math.prod(out_sp)
    xnum = Num(x.dtype)
    if numel(y) == 0:
        return "    (void)in0; (void)in1; (void)out0;"
    if math.prod(sizes) == 0:
        if pad != "zeros":
            ctx.fail(f"padding_mode={pad} cannot sample an empty image")
        return f"    (void)in0; (void)in1;\n    memset(out0, 0, {numel(y) * y.dtype.itemsize});"
    gt = "double" if grid.dtype.short == "f64" else "float"
    f = "f" if gt == "float" else ""
    ctx.helper("PDC_ROUNDED", _ROUNDED)
    refl = _reflect_helper(ctx, gt)
    refl_d = _reflect_helper(ctx, "double")
    lit = lambda v: float_literal(v, gt)  # noqa: E731
    xst = strides(x.shape)
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    lines = [f"const {ctx.ctype(grid.dtype)} *g = in1 + (n * {positions} + p) * {r};",
             "int lost = 0;"]
    for d, size in enumerate(sizes):
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        gv = f"({gt}){ctx.load(grid.dtype, f'g[{r - 1 - d}]')}"
        if align:
            denorm = [f"{gt} v{d} = ({gv} + 1) / 2;", f"PDC_ROUNDED(v{d});", f"v{d} = v{d} * {lit(size - 1)};"]
        else:
            denorm = [f"{gt} v{d} = ({gv} + 1) * {lit(size)};", f"PDC_ROUNDED(v{d});", f"v{d} = (v{d} - 1) / 2;"]
        lines += [f"/* spatial dim {d} (size {size}) */", f"if (!isfinite({gv})) lost = 1;"] + denorm
        lim = lit(COORD_LIMIT)
        lines.append(f"if (!(v{d} == v{d})) v{d} = 0;\n"
                     f"else if (v{d} < -{lim}) v{d} = -{lim}; else if (v{d} > {lim}) v{d} = {lim};")
        if mode == "nearest":
            lines.append(f"v{d} = nearbyint{f}(v{d});")
        if mode != "cubic" and pad == "border":
            top = lit(size - 1)
            lines.append(f"if (v{d} < {lit(lo)} || v{d} > {lit(hi)})\n"
                         f"    v{d} = v{d} < 0 ? 0 : (v{d} > {top} ? {top} : v{d});")
        elif mode != "cubic" and pad == "reflection":
            lines.append(f"v{d} = {refl}(v{d}, {lit(lo)}, {lit(hi)});")
        # the taps of this dim: integer index -> (offset, weight) under the padding mode
        if mode == "nearest":
            lines.append(f"const int64_t t{d}_0 = (int64_t)v{d};")
            lines.append(f"double w{d}[1] = {{1.0}};")
        else:
            lines.append(f"const {gt} b{d} = floor{f}(v{d}), fr{d} = v{d} - b{d};")
            if mode == "linear":
                lines.append(f"double w{d}[2] = {{(double)(1 - fr{d}), (double)fr{d}}};")
            else:
                a = lit(-0.75)
                near = lambda s: f"((({a} + 2) * ({s}) - ({a} + 3)) * ({s}) * ({s}) + 1)"  # noqa: E731
                far = lambda s: f"(((({a}) * ({s}) - 5 * ({a})) * ({s}) + 8 * ({a})) * ({s}) - 4 * ({a}))"  # noqa: E731
                lines.append(f"double w{d}[4] = {{(double){far(f'fr{d} + 1')}, (double){near(f'fr{d}')}, "
                             f"(double){near(f'1 - fr{d}')}, (double){far(f'2 - fr{d}')}}};")
            first = "- 1" if mode == "cubic" else ""
            for k in range(taps):
                lines.append(f"const int64_t t{d}_{k} = (int64_t)b{d} {first} + {k};")
        lines.append(f"int64_t o{d}[{taps}];")
        for k in range(taps):
            t = f"t{d}_{k}"
            if pad == "zeros":
                lines.append(f"if ({t} < 0 || {t} >= {size}) {{ o{d}[{k}] = 0; w{d}[{k}] = 0; }} "
                             f"else o{d}[{k}] = {t} * {xst[2 + d]};")
            elif pad == "border":
                lines.append(f"o{d}[{k}] = ({t} < 0 ? 0 : ({t} >= {size} ? {size - 1} : {t})) * {xst[2 + d]};")
            else:
                lo_d, hi_d = float_literal(lo, "double"), float_literal(hi, "double")
                lines.append(f"{{ int64_t j = (int64_t){refl_d}((double){t}, {lo_d}, {hi_d});\n"
                             f"  o{d}[{k}] = (j < 0 ? 0 : (j >= {size} ? {size - 1} : j)) * {xst[2 + d]}; }}")
    # every channel: the weighted sum over the tap combinations
    loops, close = [], []
    weight, offset = [], []
    for d in range(r):
        loops.append("    " * d + f"for (int k{d} = 0; k{d} < {taps}; k{d}++) {{")
        close.append("    " * d + "}")
        weight.append(f"w{d}[k{d}]")
        offset.append(f"o{d}[k{d}]")
    tap = xnum.load("xc[" + " + ".join(offset) + "]")
    body = "    " * r + f"acc += {' * '.join(weight)} * (double){tap};"
    if y.dtype.is_float:
        store = f"oc[c * {positions}] = lost ? {ctx.store(y.dtype, 'NAN')} : {ctx.store(y.dtype, 'acc')};"
    else:
        store = f"oc[c * {positions}] = lost ? 0 : {_int_store(y.dtype)};"
    chan = [f"const {xnum.c} *xc = in0 + (n * {chans} + c) * {xst[1]};", "double acc = 0;"] + loops + [body] \
        + close[::-1] + [store]
    lines += [f"{ctx.ctype(y.dtype)} *oc = out0 + n * {chans * positions} + p;",
              f"for (int64_t c = 0; c < {chans}; c++) {{", indent("\n".join(chan)), "}"]
    return (f"    for (int64_t n = 0; n < {n_batch}; n++)\n"
            f"        for (int64_t p = 0; p < {positions}; p++) {{\n{indent(chr(10).join(lines), 3)}\n        }}")


# ---- affine_grid ---------------------------------------------------------------------------------
@kernel("affine_grid")
def affine_grid(ctx: KernelContext) -> str:
    theta, y = ctx.inputs[0], ctx.outputs[0]
    n_batch, *sizes, r = y.shape
    align = bool(ctx.attrs.get("align_corners", 0))
    if align and 1 in sizes:
        ctx.fail("align_corners=1 with a spatial size of 1 has no agreed grid position")
    positions = math.prod(sizes)
    if n_batch * positions == 0:
        return "    (void)in0; (void)in1; (void)out0;"
    base = ctx.add_weight(base_grid(sizes, align).reshape(-1), "double")
    num = Num(theta.dtype)
    terms = " + ".join(f"(double){num.load(f't[i * {r + 1} + {k}]')} * b[{k}]" for k in range(r + 1))
    return f"""    (void)in1;
    for (int64_t n = 0; n < {n_batch}; n++) {{
        const {num.c} *t = in0 + n * {r * (r + 1)};
        for (int64_t p = 0; p < {positions}; p++) {{
            const double *b = {base} + p * {r + 1};
            for (int64_t i = 0; i < {r}; i++) out0[(n * {positions} + p) * {r} + i] = {num.store(terms)};
        }}
    }}"""


# ---- col2im --------------------------------------------------------------------------------------
def _const_ints(ctx: KernelContext, i: int, what: str) -> list[int]:
    data = ctx.const(i)
    if data is None:
        ctx.fail(f"{what} (input {i}) must be a compile-time constant")
    return [int(v) for v in np.asarray(data).reshape(-1)]


@kernel("col2im")
def col2im(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    image, block = _const_ints(ctx, 1, "image_shape"), _const_ints(ctx, 2, "block_shape")
    strides_, dilations, pads, counts = col2im_geometry(image, block, ctx.attrs, ctx.fail)
    nsp = len(image)
    n, c = y.shape[:2]
    num = Num(x.dtype)
    if numel(y) == 0:
        return "    (void)in0; (void)in1; (void)in2; (void)out0;"
    lines = ["    (void)in1; (void)in2;", f"    memset(out0, 0, {numel(y) * y.dtype.itemsize});"]
    if numel(x) == 0:
        return "\n".join(lines + ["    (void)in0;"])
    ist = strides(image)
    k_total, l_total = math.prod(block), math.prod(counts)
    kst, lst = strides(block), strides(counts)
    if x.dtype.is_float:
        add = f"dst[o] = {num.store(num.load('dst[o]') + ' + ' + num.load('src[l]'))};"
    else:  # integers wrap, as NumPy's sum in the type does (unsigned: no signed-overflow UB)
        u = f"uint{x.dtype.itemsize * 8}_t" if x.dtype.short != "bool" else "uint8_t"
        add = f"dst[o] = ({num.c})(({u})dst[o] + ({u})src[l]);"
    body = []
    for d in range(nsp):  # kernel position dims
        body.append("    " * d + f"for (int64_t k{d} = 0; k{d} < {block[d]}; k{d}++)")
    pad_in = "    " * nsp
    kidx = " + ".join(f"k{d} * {kst[d]}" for d in range(nsp))
    body.append(pad_in + "{")
    body.append(pad_in + f"    const {num.c} *src = x + ({kidx}) * {l_total};")
    for d in range(nsp):  # block position dims
        ind = pad_in + "    " * (d + 1)
        body.append(ind + f"for (int64_t l{d} = 0; l{d} < {counts[d]}; l{d}++) {{")
        body.append(ind + f"    const int64_t i{d} = l{d} * {strides_[d]} - {pads[d]} + k{d} * {dilations[d]};")
        body.append(ind + f"    if (i{d} < 0 || i{d} >= {image[d]}) continue;")
    ind = pad_in + "    " * (nsp + 1)
    lidx = " + ".join(f"l{d} * {lst[d]}" for d in range(nsp))
    oidx = " + ".join(f"i{d} * {ist[d]}" for d in range(nsp))
    body.append(ind + f"const int64_t l = {lidx}, o = {oidx};")
    body.append(ind + add)
    for d in reversed(range(nsp)):
        body.append(pad_in + "    " * (d + 1) + "}")
    body.append(pad_in + "}")
    lines.append(f"""    for (int64_t nc = 0; nc < {n * c}; nc++) {{
        const {num.c} *x = in0 + nc * {k_total * l_total};
        {num.c} *dst = out0 + nc * {math.prod(image)};
{indent(chr(10).join(body), 2)}
    }}""")
    return "\n".join(lines)


# ---- deform_conv ---------------------------------------------------------------------------------
@kernel("deform_conv")
def deform_conv(ctx: KernelContext) -> str:
    x, w, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    kernel_, strides_, dilations, pads, out = deform_geometry(x.shape, w.shape, ctx.attrs, ctx.fail)
    group, og = ctx.attrs.get("group", 1), ctx.attrs.get("offset_group", 1)
    n_batch, chans, *sizes = x.shape
    oc = w.shape[0]
    nsp, k_total, positions = len(kernel_), math.prod(kernel_), math.prod(out)
    num = Num(x.dtype)
    has_b, has_m = ctx.has_input(3), ctx.has_input(4)
    if numel(y) == 0:
        return "    (void)in0; (void)in1; (void)in2; (void)out0;" + (" (void)in3;" if has_b else "") \
            + (" (void)in4;" if has_m else "")
    column = chans * k_total
    if column > MAX_DEFORM_COLUMN:
        ctx.fail(f"C * prod(kernel) = {column} exceeds the x86 kernel's column buffer ({MAX_DEFORM_COLUMN})")
    xst = strides(x.shape)
    ost, kst = strides(out), strides(kernel_)
    cg, cog, ocg = chans // group, chans // og, oc // group
    ld = lambda e: f"(double){num.load(e)}"  # noqa: E731
    # the output position o as spatial indices q0.. and every kernel tap's position
    q = [f"const int64_t q{d} = (o / {ost[d]}) % {out[d]};" for d in range(nsp)]
    kpos = [f"const int64_t kk{d} = (k / {kst[d]}) % {kernel_[d]};" for d in range(nsp)]
    pos = [f"const double p{d} = (double)(q{d} * {strides_[d]} - {pads[d]} + kk{d} * {dilations[d]}) + "
           f"{ld(f'in2[(n * {og * k_total * nsp} + (g * {k_total} + k) * {nsp} + {d}) * {positions} + o]')};"
           for d in range(nsp)]
    floor_ = [f"const double f{d} = floor(p{d}), fr{d} = p{d} - f{d};\n"
              f"const int64_t b{d} = (f{d} > -2 && f{d} < {sizes[d] + 1}) ? (int64_t)f{d} : -2;" for d in range(nsp)]
    # the 2^nsp corners: weight and validity per dim, then one read each
    corner = []
    for bits in range(1 << nsp):
        wterms, conds, offs = [], [], []
        for d in range(nsp):
            hi = bits >> (nsp - 1 - d) & 1
            t = f"(b{d} + {hi})"
            wterms.append(f"fr{d}" if hi else f"(1 - fr{d})")
            conds.append(f"{t} >= 0 && {t} < {sizes[d]}")
            offs.append(f"{t} * {xst[2 + d]}")
        tap = ld("xc[" + " + ".join(offs) + "]")
        corner.append(f"if ({' && '.join(conds)}) v += {' * '.join(wterms)} * {tap};")
    mask = f" * {ld(f'in4[(n * {og * k_total} + g * {k_total} + k) * {positions} + o]')}" if has_m else ""
    sample = "\n".join(kpos + pos + floor_ + ["double v = 0;"] + corner + [f"col[c * {k_total} + k] = v{mask};"])
    bias = ld("in3[m]") if has_b else "0.0"
    return f"""    double col[{column}];
    for (int64_t n = 0; n < {n_batch}; n++)
        for (int64_t o = 0; o < {positions}; o++) {{
{indent(chr(10).join(q), 3)}
            for (int64_t c = 0; c < {chans}; c++) {{
                const int64_t g = c / {cog};
                const {num.c} *xc = in0 + (n * {chans} + c) * {xst[1]};
                for (int64_t k = 0; k < {k_total}; k++) {{
{indent(sample, 5)}
                }}
            }}
            for (int64_t m = 0; m < {oc}; m++) {{
                const {ctx.ctype(w.dtype)} *wm = in1 + m * {cg * k_total};
                const double *cm = col + (m / {ocg}) * {cg * k_total};
                double acc = {bias};
                for (int64_t i = 0; i < {cg * k_total}; i++) acc += {ld('wm[i]')} * cm[i];
                out0[(n * {oc} + m) * {positions} + o] = {num.store('acc')};
            }}
        }}"""


# ---- non_max_suppression -------------------------------------------------------------------------
@kernel("non_max_suppression")
def non_max_suppression(ctx: KernelContext) -> str:
    """Per batch item and class, the candidates (score above the threshold, when there is one) by
    a stable merge sort (score down, index up, NaN last), each kept unless its IoU with a kept box
    of the class is above iou_threshold (outside [0, 1]: the run returns PDC_ERR_VALUE), until
    max_output_boxes_per_class. The geometry rounds
    every step in float32 as the reference does (PDC_ROUNDED: no multiply-add). Rows past the count
    are zeros; the count goes to the length output."""
    if ctx.attrs.get("bound") is None:
        ctx.fail("NonMaxSuppression's output length depends on the data (how many boxes survive); compiled "
                 "code needs a bound for it (compiler.bound_outputs)")
    nb, n, _ = ctx.inputs[0].shape
    nc = ctx.inputs[1].shape[1]
    rows = ctx.outputs[0].shape[0]
    if rows == 0 or n == 0:
        return f"    memset(out0, 0, {max(rows * 3, 1)} * sizeof *out0);\n    *out1 = 0;"
    ctx.helper("PDC_ROUNDED", _ROUNDED)
    fn = _nms_helper(ctx)
    limit = "*in2" if ctx.has_input(2) else "0"
    iou = "*in3" if ctx.has_input(3) else "0.0f"
    score = "*in4" if ctx.has_input(4) else "0.0f"
    scratch = [ctx.scratch(n * 4), ctx.scratch(n, "int64_t", 8), ctx.scratch(n, "int64_t", 8),
               ctx.scratch(n, "int64_t", 8)]
    check = f"    {ctx.check(f'!({iou} >= 0.0f && {iou} <= 1.0f)', 'PDC_ERR_VALUE')}\n" if ctx.has_input(3) else ""
    return check + (f"    *out1 = {fn}(in0, in1, out0, {nb}, {nc}, {n}, {rows}, {limit}, {iou}, {score}, "
            f"{int(ctx.has_input(4))}, {int(ctx.attrs.get('center_point_box', 0))}, {', '.join(scratch)});")


def _nms_helper(ctx: KernelContext) -> str:
    stable_sort(ctx)
    return ctx.helper("pdc_nms", r"""/* box a before box b: a higher score (a NaN after every number) */
static int pdc_nms_before(const void *scores, int64_t a, int64_t b) {
    const float *s = (const float *)scores;
    return s[a] == s[a] && (s[b] != s[b] || s[a] > s[b]);
}
/* the corners (y_min, x_min, y_max, x_max) of box b */
static void pdc_nms_corners(const float *b, int center, float *c) {
    if (center) {
        const float hw = b[2] / 2.0f, hh = b[3] / 2.0f;
        c[0] = b[1] - hh; c[1] = b[0] - hw; c[2] = b[1] + hh; c[3] = b[0] + hw;
    } else {
        c[0] = b[0] < b[2] ? b[0] : b[2]; c[1] = b[1] < b[3] ? b[1] : b[3];
        c[2] = b[0] < b[2] ? b[2] : b[0]; c[3] = b[1] < b[3] ? b[3] : b[1];
    }
}
/* whether box a suppresses box b: IoU above the threshold, each step rounded in float */
static int pdc_nms_suppresses(const float *a, const float *b, float threshold) {
    const float iw = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
    const float ih = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
    if (iw <= 0.0f || ih <= 0.0f) return 0;
    float inter = iw * ih, area_a = (a[3] - a[1]) * (a[2] - a[0]), area_b = (b[3] - b[1]) * (b[2] - b[0]);
    PDC_ROUNDED(inter);
    PDC_ROUNDED(area_a);
    PDC_ROUNDED(area_b);
    const float uni = area_a + area_b - inter;
    if (area_a <= 0.0f || area_b <= 0.0f || uni <= 0.0f) return 0;
    return inter / uni > threshold;
}
/* NonMaxSuppression of boxes (nb x n x 4) by scores (nb x nc x n) into rows [batch, class, box] of
   out (at most `rows`, zeros after the count); returns the count. corners: n x 4 floats; order,
   tmp, kept: n int64 each. */
static int64_t pdc_nms(const float *boxes, const float *scores, int64_t *out, int64_t nb, int64_t nc,
                       int64_t n, int64_t rows, int64_t limit, float iou, float score_min, int has_min,
                       int center, float *corners, int64_t *order, int64_t *tmp, int64_t *kept) {
    int64_t count = 0;
    if (limit < 0) limit = 0;
    memset(out, 0, (size_t)(rows * 3) * sizeof *out);
    for (int64_t b = 0; b < nb; b++) {
        for (int64_t i = 0; i < n; i++) pdc_nms_corners(boxes + (b * n + i) * 4, center, corners + i * 4);
        for (int64_t c = 0; c < nc; c++) {
            const float *s = scores + (b * nc + c) * n;
            int64_t m = 0;
            for (int64_t i = 0; i < n; i++)
                if (!has_min || s[i] > score_min) order[m++] = i;
            pdc_sort_stable(order, tmp, m, pdc_nms_before, s);  /* score down, NaN last */
            int64_t nk = 0;
            for (int64_t t = 0; t < m && nk < limit; t++) {
                const int64_t i = order[t];
                int keep = 1;
                for (int64_t q = 0; q < nk && keep; q++)
                    keep = !pdc_nms_suppresses(corners + i * 4, corners + kept[q] * 4, iou);
                if (keep) kept[nk++] = i;
            }
            for (int64_t q = 0; q < nk && count < rows; q++, count++) {
                out[count * 3] = b; out[count * 3 + 1] = c; out[count * 3 + 2] = kept[q];
            }
        }
    }
    return count;
}
""")
