"""Kernels of the ops no family owns: Det, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss,
RoiAlign, MaxRoiPool, Dropout (inference: a copy and an all-true mask) and Unique (rejected: its
output size depends on the values).

Numerics follow the NumPy references: half precision computes in float, float64 stays double.
Sums that numpy computes pairwise (loss reductions, softmax denominators) are accumulated in
double here, which lands within an ulp of numpy's result. Runtime checks the reference raises
(a loss target outside [0, C), a ROI batch index outside [-N, N)) give NaN outputs instead: the
generated code has no error path.
RoiAlign's sample positions are computed in double with the reference's roundings (the helper
is compiled with fp-contract=off so gcc does not fuse them into FMAs).
"""
from __future__ import annotations

import math

from .. import kir
from ..context import KernelContext, numel
from ..ctypes_c import float_literal, int_literal
from . import kernel
from ._axis import Num, outer_n_inner, stable_sort
from ._kir import io, prints_kir, render

DET_MAX_BYTES = 256 * 1024  # one matrix copy on the stack
SCE_BLOCK = 64  # positions (trailing dims) whose softmax runs together
ROI_CHANNELS = 64  # channels of one ROI bin accumulated together


def _wt(dt) -> str:
    """The C type the reference computes in: double for float64, float otherwise."""
    return "double" if dt.short == "f64" else "float"


def _f(ct: str) -> str:
    return "" if ct == "double" else "f"


# ---- Det ----------------------------------------------------------------------------------------
@kernel("det")
def det(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    n = x.shape[-1]
    batch = math.prod(x.shape[:-2])
    wt = _wt(x.dtype)
    f = _f(wt)
    if batch == 0:
        return "    (void)in0; (void)out0;"
    if n == 0:
        return f"    for (int64_t b = 0; b < {batch}; b++) out0[b] = {ctx.store(x.dtype, '1')};"
    size = 8 if wt == "double" else 4
    if n * n * size > DET_MAX_BYTES:
        ctx.fail(f"{n}x{n} matrices: at most {int(math.sqrt(DET_MAX_BYTES // size))}x"
                 f"{int(math.sqrt(DET_MAX_BYTES // size))} are supported")
    # LU with partial pivoting (the first largest pivot, as LAPACK's getrf picks it)
    return f"""    for (int64_t b = 0; b < {batch}; b++) {{
        {wt} a[{n * n}];
        for (int64_t i = 0; i < {n * n}; i++) a[i] = ({wt}){ctx.load(x.dtype, f'in0[b * {n * n} + i]')};
        {wt} det = 1;
        for (int64_t k = 0; k < {n}; k++) {{
            int64_t p = k;
            {wt} best = fabs{f}(a[k * {n} + k]);
            for (int64_t i = k + 1; i < {n}; i++) {{
                const {wt} v = fabs{f}(a[i * {n} + k]);
                if (v > best) {{ best = v; p = i; }}
            }}
            if (best == 0) {{ det = 0; break; }}
            if (p != k) {{
                for (int64_t j = 0; j < {n}; j++) {{
                    const {wt} t = a[k * {n} + j]; a[k * {n} + j] = a[p * {n} + j]; a[p * {n} + j] = t;
                }}
                det = -det;
            }}
            const {wt} piv = a[k * {n} + k];
            det *= piv;
            for (int64_t i = k + 1; i < {n}; i++) {{
                const {wt} m = a[i * {n} + k] / piv;
                for (int64_t j = k + 1; j < {n}; j++) a[i * {n} + j] -= m * a[k * {n} + j];
            }}
        }}
        out0[b] = {ctx.store(x.dtype, 'det')};
    }}"""


# ---- NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss --------------------------------------------
def _loss_dims(ctx: KernelContext) -> tuple[int, int, int]:
    s = ctx.inputs[0].shape
    N, C, D = s[0], s[1], math.prod(s[2:])
    if C == 0 and N * D:
        ctx.fail("input has 0 classes")
    return N, C, D


def _pick_and_reduce(ctx: KernelContext, C: int, D: int, picked: str, pre: str = "") -> tuple[str, str, str]:
    """(declarations, per-position statement, final statement) of the loss over positions (n, d).

    `picked` is a C expression of the log-probability of class s at (n, d)."""
    x = ctx.inputs[0]
    wt = _wt(x.dtype)
    ign = ctx.attrs.get("ignore_index")
    red = ctx.attrs.get("reduction", "mean")
    valid = f"t != {int_literal(ign)}" if ign is not None else "1"
    weight = f"({wt}){ctx.load(ctx.inputs[2].dtype, 'in2[s]')}" if ctx.has_input(2) else f"({wt})1"
    stmt = f"""{pre}const int64_t t = (int64_t)in1[n * {D} + d];
            const int valid = {valid};
            const int64_t s = valid ? t : 0;
            {wt} loss, w;
            if (s < 0 || s >= {C}) {{ loss = ({wt})NAN; w = ({wt})NAN; }}  /* the reference raises */
            else {{ w = valid ? {weight} : ({wt})0; loss = -({picked}) * w; }}
            """
    if red == "none":
        stmt += f"out0[n * {D} + d] = {ctx.store(x.dtype, 'loss')};"
        return "", stmt, ""
    stmt += "lsum += loss; wsum += w;"
    decl = "    double lsum = 0.0, wsum = 0.0;"
    res = f"({wt})lsum" if red == "sum" else f"({wt})lsum / ({wt})wsum"
    return decl, stmt, f"    out0[0] = {ctx.store(x.dtype, res)};"


@kernel("negative_log_likelihood_loss")
def nll_loss(ctx: KernelContext) -> str:
    N, C, D = _loss_dims(ctx)
    x = ctx.inputs[0]
    wt = _wt(x.dtype)
    picked = f"({wt}){ctx.load(x.dtype, f'in0[(n * {C} + s) * {D} + d]')}"
    decl, stmt, final = _pick_and_reduce(ctx, C, D, picked)
    return f"""{decl}
    for (int64_t n = 0; n < {N}; n++) {{
        for (int64_t d = 0; d < {D}; d++) {{
            {stmt}
        }}
    }}
{final}"""


@kernel("softmax_cross_entropy_loss")
def sce_loss(ctx: KernelContext) -> str:
    N, C, D = _loss_dims(ctx)
    x = ctx.inputs[0]
    wt = _wt(x.dtype)
    f = _f(wt)
    B = min(D, SCE_BLOCK) or 1
    X = lambda c: f"({wt}){ctx.load(x.dtype, f'in0[(n * {C} + {c}) * {D} + d]')}"  # noqa: E731
    picked = f"({X('s')} - mx[dd]) - ls[dd]"
    decl, stmt, final = _pick_and_reduce(ctx, C, D, picked, pre="const int64_t d = d0 + dd; ")
    write_lp = ""
    if len(ctx.outputs) > 1:
        write_lp = f"""            for (int64_t c = 0; c < {C}; c++)
                for (int64_t dd = 0; dd < db; dd++) {{
                    const int64_t d = d0 + dd;
                    out1[(n * {C} + c) * {D} + d] = {ctx.store(x.dtype, f"({X('c')} - mx[dd]) - ls[dd]")};
                }}
"""
    if N * D == 0:
        return f"{decl}\n{final}" if final else "    (void)in0; (void)out0;"
    # log_softmax over classes for a block of positions: max, sum of exp, log; then pick the target
    return f"""{decl}
    for (int64_t n = 0; n < {N}; n++) {{
        for (int64_t d0 = 0; d0 < {D}; d0 += {B}) {{
            const int64_t db = {D} - d0 < {B} ? {D} - d0 : {B};
            {wt} mx[{B}], ls[{B}];
            double se[{B}];
            for (int64_t dd = 0; dd < db; dd++) {{ const int64_t d = d0 + dd; mx[dd] = {X(0)}; se[dd] = 0.0; }}
            for (int64_t c = 1; c < {C}; c++)
                for (int64_t dd = 0; dd < db; dd++) {{  /* NaN wins, as in np.max */
                    const int64_t d = d0 + dd;
                    const {wt} v = {X('c')};
                    mx[dd] = (v > mx[dd] || v != v) ? v : mx[dd];
                }}
            for (int64_t c = 0; c < {C}; c++)
                for (int64_t dd = 0; dd < db; dd++) {{
                    const int64_t d = d0 + dd;
                    se[dd] += (double)exp{f}({X('c')} - mx[dd]);
                }}
            for (int64_t dd = 0; dd < db; dd++) ls[dd] = log{f}(({wt})se[dd]);
{write_lp}            for (int64_t dd = 0; dd < db; dd++) {{
                {stmt}
            }}
        }}
    }}
{final}"""


# ---- RoiAlign -----------------------------------------------------------------------------------------
ROI_JOB = """typedef struct {
    const void *x, *rois;
    const int64_t *batch;
    void *y;
    int64_t N, C, H, W, R, oh, ow, ratio, half_pixel, use_max;
    double scale;
} pdc_roi_align_job;
"""

ROI_TAPS = """#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
/* Bilinear taps of sample i of bin p along one axis (the reference's _axis_samples). */
static void pdc_roi_taps(double start, double bin, int64_t p, int64_t i, int64_t grid, int64_t size,
                         int64_t *lo, int64_t *hi, double *wl, double *wh) {
    double a = (double)p * bin;
    double b = ((double)i + 0.5) * bin;
    double pos = start + a;
    pos = pos + b / (double)grid;
    if (pos != pos) { *lo = *hi = 0; *wl = *wh = 0.0; return; }
    const int outside = pos < -1.0 || pos > (double)size;
    if (pos < 0.0) pos = 0.0;
    int64_t l = pos >= (double)size ? size : (int64_t)floor(pos);
    double frac;
    if (l >= size - 1) { l = size - 1; *hi = l; frac = 0.0; }
    else { *hi = l + 1; frac = pos - (double)l; }
    *lo = l;
    *wl = outside ? 0.0 : 1.0 - frac;
    *wh = outside ? 0.0 : frac;
}
/* The ROI's corners in input pixels and its sample grid; 0 samples leave the bins at 0. */
static int pdc_roi_box(double x1, double y1, double x2, double y2, const pdc_roi_align_job *j,
                       double *bx, double *by, double *bw, double *bh, int64_t *gw, int64_t *gh) {
    const double off = j->half_pixel ? 0.5 : 0.0;
    double a = x1 * j->scale, b = y1 * j->scale, c = x2 * j->scale, d = y2 * j->scale;
    a = a - off; b = b - off; c = c - off; d = d - off;
    double rw = c - a, rh = d - b;
    if (!j->half_pixel) { rw = rw > 1.0 ? rw : 1.0; rh = rh > 1.0 ? rh : 1.0; }
    *bx = a; *by = b; *bw = rw / (double)j->ow; *bh = rh / (double)j->oh;
    if (j->ratio > 0) { *gw = *gh = j->ratio; return 1; }
    const double cw = ceil(rw / (double)j->ow), ch = ceil(rh / (double)j->oh);
    if (!(cw > 0.0) || !(ch > 0.0) || cw > 1e9 || ch > 1e9) return 0;  /* NaN / empty / absurd */
    *gw = (int64_t)cw; *gh = (int64_t)ch;
    return 1;
}
#pragma GCC pop_options
"""

ROI_TASK = """#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
static void @NAME@(const pdc_roi_align_job *j) {
    const @TX@ *X = (const @TX@ *)j->x;
    const @TR@ *RO = (const @TR@ *)j->rois;
    @TX@ *Y = (@TX@ *)j->y;
    const int64_t C = j->C, H = j->H, W = j->W, oh = j->oh, ow = j->ow, plane = H * W;
    @ACC@ acc[@CB@];
    for (int64_t r = 0; r < j->R; r++) {
        @TX@ *yr = Y + r * C * oh * ow;
        int64_t b = j->batch[r];
        if (b < 0) b += j->N;
        double bx, by, bw, bh;
        int64_t gw = 0, gh = 0;
        const int ok = pdc_roi_box((double)@LR@(RO[r * 4]), (double)@LR@(RO[r * 4 + 1]), (double)@LR@(RO[r * 4 + 2]),
                                   (double)@LR@(RO[r * 4 + 3]), j, &bx, &by, &bw, &bh, &gw, &gh);
        if (b < 0 || b >= j->N) {  /* the reference raises */
            for (int64_t i = 0; i < C * oh * ow; i++) yr[i] = @ST@((@ACC@)NAN);
            continue;
        }
        const @TX@ *img = X + b * C * plane;
        for (int64_t ph = 0; ph < oh; ph++)
        for (int64_t pw = 0; pw < ow; pw++)
        for (int64_t c0 = 0; c0 < C; c0 += @CB@) {
            const int64_t cn = C - c0 < @CB@ ? C - c0 : @CB@;
            for (int64_t c = 0; c < cn; c++) acc[c] = j->use_max ? -(@ACC@)INFINITY : (@ACC@)0;
            if (ok) {
                for (int64_t iy = 0; iy < gh; iy++) {
                    int64_t yl, yh;
                    double wyl, wyh;
                    pdc_roi_taps(by, bh, ph, iy, gh, H, &yl, &yh, &wyl, &wyh);
                    for (int64_t ix = 0; ix < gw; ix++) {
                        int64_t xl, xh;
                        double wxl, wxh;
                        pdc_roi_taps(bx, bw, pw, ix, gw, W, &xl, &xh, &wxl, &wxh);
                        const @ACC@ w00 = (@ACC@)(wyl * wxl), w01 = (@ACC@)(wyl * wxh);
                        const @ACC@ w10 = (@ACC@)(wyh * wxl), w11 = (@ACC@)(wyh * wxh);
                        const int64_t o00 = yl * W + xl, o01 = yl * W + xh, o10 = yh * W + xl, o11 = yh * W + xh;
                        for (int64_t c = 0; c < cn; c++) {
                            const @TX@ *p = img + (c0 + c) * plane;
                            const @ACC@ v00 = (@ACC@)@LX@(p[o00]) * w00, v01 = (@ACC@)@LX@(p[o01]) * w01;
                            const @ACC@ v10 = (@ACC@)@LX@(p[o10]) * w10, v11 = (@ACC@)@LX@(p[o11]) * w11;
                            if (j->use_max) {  /* NaN wins, as in np.maximum */
                                @ACC@ m = v00;
                                m = (v01 > m || v01 != v01) ? v01 : m;
                                m = (v10 > m || v10 != v10) ? v10 : m;
                                m = (v11 > m || v11 != v11) ? v11 : m;
                                acc[c] = acc[c] != acc[c] ? acc[c] : ((m > acc[c] || m != m) ? m : acc[c]);
                            } else {
                                @ACC@ s = v00;
                                s = s + v01;
                                s = s + v10;
                                s = s + v11;
                                acc[c] = acc[c] + s;
                            }
                        }
                    }
                }
            }
            const @ACC@ cnt = (@ACC@)(gh * gw);
            for (int64_t c = 0; c < cn; c++) {
                @ACC@ v = !ok ? (@ACC@)0 : (j->use_max ? acc[c] : acc[c] / cnt);
                yr[((c0 + c) * oh + ph) * ow + pw] = @ST@(v);
            }
        }
    }
}
#pragma GCC pop_options
"""


def _fill(template: str, **subs) -> str:
    for k, v in subs.items():
        template = template.replace(f"@{k}@", str(v))
    return template


def _load_fn(ctx: KernelContext, dt) -> str:
    """A function-like spelling of ctx.load for templates: `@LX@(expr)`."""
    if dt.short == "bf16":
        return "pdc_bf16_to_f32"
    return ""


@kernel("roi_align")
def roi_align(ctx: KernelContext) -> str:
    x, rois = ctx.inputs[0], ctx.inputs[1]
    N, C, H, W = x.shape
    R = rois.shape[0]
    a = ctx.attrs
    oh, ow = a.get("output_height", 1), a.get("output_width", 1)
    if R * C * oh * ow == 0:
        return "    (void)in0; (void)out0;"
    if H == 0 or W == 0:
        ctx.fail("X has an empty spatial dim")
    acc = _wt(x.dtype)
    name = f"pdc_roi_align_{x.dtype.short}_{rois.dtype.short}"
    store = {"bf16": "pdc_f32_to_bf16", "f16": "(_Float16)"}.get(x.dtype.short, f"({ctx.ctype(x.dtype)})")
    ctx.helper("pdc_roi_align_job", ROI_JOB)
    ctx.helper("pdc_roi_taps", ROI_TAPS)
    ctx.helper(name, _fill(ROI_TASK, NAME=name, TX=ctx.ctype(x.dtype), TR=ctx.ctype(rois.dtype), ACC=acc,
                           CB=ROI_CHANNELS, LX=_load_fn(ctx, x.dtype), LR=_load_fn(ctx, rois.dtype), ST=store))
    half = int(a.get("coordinate_transformation_mode", "half_pixel") == "half_pixel")
    return f"""    pdc_roi_align_job j;
    j.x = in0; j.rois = in1; j.batch = in2; j.y = (void *)out0;
    j.N = {N}; j.C = {C}; j.H = {H}; j.W = {W}; j.R = {R}; j.oh = {oh}; j.ow = {ow};
    j.ratio = {a.get('sampling_ratio', 0)}; j.half_pixel = {half}; j.use_max = {int(a.get('mode', 'avg') == 'max')};
    j.scale = {float_literal(a.get('spatial_scale', 1.0), 'double')};
    {name}(&j);"""


# ---- MaxRoiPool ---------------------------------------------------------------------------------------
@kernel("max_roi_pool")
def max_roi_pool(ctx: KernelContext) -> str:
    x, rois = ctx.inputs[0], ctx.inputs[1]
    N, C, H, W = x.shape
    R = rois.shape[0]
    ph, pw = ctx.attrs["pooled_shape"]
    scale = float_literal(ctx.attrs.get("spatial_scale", 1.0), "double")
    if R * C * ph * pw == 0:
        return "    (void)in0; (void)out0;"
    ct = ctx.compute_ctype(x.dtype)
    rv = lambda k: f"(double){ctx.load(rois.dtype, f'in1[r * 5 + {k}]')}"  # noqa: E731
    zero, nan = ctx.store(x.dtype, "0"), ctx.store(x.dtype, "NAN")
    # ROI corners rounded half away from zero (Caffe); bins of roi_size / pooled_size, clipped to the image
    return f"""    for (int64_t r = 0; r < {R}; r++) {{
        double v[5];
        int64_t q[5], good = 1;
        for (int k = 0; k < 5; k++) {{
            v[k] = {rv('k')};
            if (!isfinite(v[k])) good = 0;
        }}
        if (good) {{
            for (int k = 1; k < 5; k++) {{
                double s = v[k] * {scale};
                s = s > 1e15 ? 1e15 : (s < -1e15 ? -1e15 : s);
                q[k] = (int64_t)(s >= 0 ? floor(s + 0.5) : -floor(-s + 0.5));
            }}
            q[0] = (int64_t)(v[0] > 1e15 ? 1e15 : (v[0] < -1e15 ? -1e15 : v[0]));  /* int(): toward zero */
            if (q[0] < 0) q[0] += {N};
            if (q[0] < 0 || q[0] >= {N}) good = 0;  /* the reference raises */
        }}
        {ctx.ctype(x.dtype)} *yr = out0 + r * {C * ph * pw};
        if (!good) {{
            for (int64_t i = 0; i < {C * ph * pw}; i++) yr[i] = {nan};
            continue;
        }}
        const int64_t x1 = q[1], y1 = q[2], x2 = q[3], y2 = q[4];
        const double bh = (double)(y2 - y1 + 1 > 1 ? y2 - y1 + 1 : 1) / {ph}.0;
        const double bw = (double)(x2 - x1 + 1 > 1 ? x2 - x1 + 1 : 1) / {pw}.0;
        for (int64_t i = 0; i < {ph}; i++) {{
            int64_t hs = (int64_t)floor((double)i * bh) + y1, he = (int64_t)ceil((double)(i + 1) * bh) + y1;
            hs = hs < 0 ? 0 : (hs > {H} ? {H} : hs);
            he = he < 0 ? 0 : (he > {H} ? {H} : he);
            for (int64_t jj = 0; jj < {pw}; jj++) {{
                int64_t ws = (int64_t)floor((double)jj * bw) + x1, we = (int64_t)ceil((double)(jj + 1) * bw) + x1;
                ws = ws < 0 ? 0 : (ws > {W} ? {W} : ws);
                we = we < 0 ? 0 : (we > {W} ? {W} : we);
                for (int64_t c = 0; c < {C}; c++) {{
                    if (he <= hs || we <= ws) {{ yr[(c * {ph} + i) * {pw} + jj] = {zero}; continue; }}
                    const {ctx.ctype(x.dtype)} *p = in0 + (q[0] * {C} + c) * {H * W};
                    {ct} m = {ctx.load(x.dtype, f'p[hs * {W} + ws]')};
                    for (int64_t h = hs; h < he; h++)
                        for (int64_t w = ws; w < we; w++) {{  /* NaN wins, as in ndarray.max */
                            const {ct} e = {ctx.load(x.dtype, f'p[h * {W} + w]')};
                            m = (e > m || e != e) && m == m ? e : m;
                        }}
                    yr[(c * {ph} + i) * {pw} + jj] = {ctx.store(x.dtype, 'm')};
                }}
            }}
        }}
    }}"""


# ---- Dropout / Unique -----------------------------------------------------------------------------------
@kernel("dropout")
@prints_kir
def dropout(ctx: KernelContext) -> str:
    ins, outs = io(ctx)
    n = numel(ctx.outputs[0])
    lines = [kir.Copy(outs[0], kir.idx(0), ins[0], kir.idx(0), kir.idx(n), in_place=True)] if n else []
    if len(ctx.outputs) > 1 and numel(ctx.outputs[1]):  # inference: nothing is dropped
        lines.append(kir.Fill(outs[1], kir.idx(0), kir.idx(numel(ctx.outputs[1])), kir.as_expr(1)))
    return render(ctx, lines)


@kernel("unique")
def unique(ctx: KernelContext) -> str:
    """Unique with a bound (passes/bound_outputs.py): the slices along the axis (single elements
    without one) sorted by a stable merge sort (lexicographic; NaN after every number and equal to
    NaN), grouped, put in order of first occurrence where sorted=0; Y, indices and counts zeroed
    past the length."""
    if ctx.attrs.get("bound") is None:
        ctx.fail("the number of unique values depends on the input data; compiled code needs a bound "
                 "for it (compiler.bound_outputs)")
    x = ctx.inputs[0]
    num = Num(x.dtype)
    axis = ctx.attrs.get("axis")
    shape = list(x.shape)
    if axis is None:
        outer, n, inner = 1, numel(x), 1
    else:
        outer, n, inner = outer_n_inner(shape, axis % len(shape))
    if n == 0:
        return "    *out4 = 0;"
    fn = _unique_helper(ctx, num)
    ints = [ctx.scratch(n, "int64_t", 8) for _ in range(7)]
    outs = ", ".join(f"out{i}" for i in range(4))
    return f"    *out4 = {fn}(in0, {outs}, {outer}, {n}, {inner}, {int(bool(ctx.attrs.get('sorted', 1)))}, " \
           f"{', '.join(ints)});"


def _unique_helper(ctx: KernelContext, num: Num) -> str:
    name = f"pdc_unique_{num.dt.short}"
    el = lambda k: num.load(f"x[(o * n + {k}) * inner + i]")  # noqa: E731
    if num.is_float:  # NaN after every number, equal to NaN
        differ = ("if (va != va || vb != vb) { if (va == va) return -1; if (vb == vb) return 1; continue; }\n"
                  "            if (va < vb) return -1;\n            if (va > vb) return 1;")
    else:
        differ = "if (va < vb) return -1;\n            if (va > vb) return 1;"
    sort = stable_sort(ctx)
    ctx.helper(name, f"""/* the slices of x along the unique axis: outer x n x inner */
typedef struct {{ const {num.c} *x; int64_t outer, n, inner; }} {name}_slices;
/* slice a vs slice b: -1, 0 or 1, lexicographic */
static int {name}_cmp(const {name}_slices *s, int64_t a, int64_t b) {{
    const {num.c} *x = s->x;
    const int64_t n = s->n, inner = s->inner;
    for (int64_t o = 0; o < s->outer; o++)
        for (int64_t i = 0; i < inner; i++) {{
            const {num.ct} va = {el('a')}, vb = {el('b')};
            {differ}
        }}
    return 0;
}}
static int {name}_before(const void *s, int64_t a, int64_t b) {{
    return {name}_cmp((const {name}_slices *)s, a, b) < 0;
}}
/* Unique over the n slices of x: y (slices), first indices, inverse, counts; returns how many.
   perm .. newid: n int64 each of scratch. */
static int64_t {name}(const {num.c} *x, {num.c} *y, int64_t *first_out, int64_t *inverse, int64_t *counts,
                      int64_t outer, int64_t n, int64_t inner, int sorted, int64_t *perm, int64_t *tmp,
                      int64_t *first, int64_t *count, int64_t *group, int64_t *order, int64_t *newid) {{
    const {name}_slices slices = {{x, outer, n, inner}};
    for (int64_t k = 0; k < n; k++) perm[k] = k;
    {sort}(perm, tmp, n, {name}_before, &slices);
    int64_t u = 0;
    for (int64_t s = 0; s < n; s++) {{
        if (s == 0 || {name}_cmp(&slices, perm[s - 1], perm[s]) != 0) {{
            first[u] = perm[s];  /* the stable sort puts a group's first occurrence first */
            count[u++] = 0;
        }}
        count[u - 1]++;
        group[perm[s]] = u - 1;
    }}
    if (sorted) {{
        for (int64_t t = 0; t < u; t++) order[t] = t;
    }} else {{  /* by first occurrence: walk the positions, tmp[k] = the group first seen at k */
        for (int64_t k = 0; k < n; k++) tmp[k] = -1;
        for (int64_t g = 0; g < u; g++) tmp[first[g]] = g;
        int64_t t = 0;
        for (int64_t k = 0; k < n; k++)
            if (tmp[k] >= 0) order[t++] = tmp[k];
    }}
    for (int64_t t = 0; t < u; t++) newid[order[t]] = t;
    memset(y, 0, (size_t)(outer * n * inner) * sizeof *y);
    for (int64_t t = 0; t < n; t++) first_out[t] = counts[t] = 0;
    for (int64_t t = 0; t < u; t++) {{
        const int64_t g = order[t];
        first_out[t] = first[g];
        counts[t] = count[g];
        for (int64_t o = 0; o < outer; o++)
            memcpy(y + (o * n + t) * inner, x + (o * n + first[g]) * inner, (size_t)inner * sizeof *y);
    }}
    for (int64_t k = 0; k < n; k++) inverse[k] = newid[group[k]];
    return u;
}}
""")
    return name
