"""Convolution kernels: conv and fused_conv (NCHW, 1-D/2-D/3-D, groups, dilations, strides, pads,
auto_pad), conv_transpose and conv_integer.

fp32 conv runs as a GEMM per (image, group) (dense_core): M = output channels of the group, N =
output pixels, K = C/group x kernel taps, with the weights packed at compile time. The path is
chosen per layer from its static shape (C helpers in dense_conv_c):
- small outputs (at most 16 columns, the 7x7 / 14x14 late layers): the GEMM runs transposed,
  one output row of pixels broadcast against vectors of output channels, stored transposed;
- pointwise, stride 1: the indirect microkernel reads the NCHW input in place (koff = k * HW);
- 1-D / 2-D with constant weights: zero-padded, phase-split bands of input rows, so that every
  tap is a contiguous run read by the indirect microkernel (no im2col);
- depthwise: dense_depthwise;
- anything else (3-D, runtime weights, AVX2 targets): im2col into a per-thread panel buffer.
Other dtypes, ConvTranspose and ConvInteger use direct loops specialized to the layer's shape.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.ops.nn_common import resolve_window
from ...ir.ops.nn_conv import conv_transpose_geometry
from ..context import KernelContext
from . import kernel
from .dense_conv_c import COPY_C, IC_BUF_FLOATS, ICONV_C, IM2COL_C, PWCONV_C, TCONV_C, TCONV_S1X1_C
from .dense_core import (ABUF_FLOATS, BBUF_FLOATS, add_weight, bias_ptr, c_float, choose_split, choose_tile, core,
                         Epilogue, epilogue_expr, isa_of, k_block, lanes, n_chunk, pack_a_panels, pack_b_panels,
                         PARALLEL_MIN_MACS, render_job, render_post, ukernel, uses_all)
from .dense_depthwise import depthwise_f32
from .paths import declare, forced, mark, take

declare("conv", "im2col", "direct", "depthwise-flat", "depthwise-rows", "transposed", "pointwise", "band")

# ---- geometry ---------------------------------------------------------------------------------------


class ConvGeom:
    """Static geometry of a convolution, spatial dims padded to 3 (D, H, W) with leading 1s."""

    def __init__(self, x_shape, w_shape, attrs, transpose: bool = False):
        self.n, self.c = x_shape[0], x_shape[1]
        self.nsp = len(x_shape) - 2
        kernel = list(w_shape[2:])
        self.group = attrs.get("group", 1) or 1
        if transpose:
            strides = list(attrs.get("strides") or [1] * self.nsp)
            dilations = list(attrs.get("dilations") or [1] * self.nsp)
            out, begin = conv_transpose_geometry(list(x_shape[2:]), kernel, attrs)
            self.m = w_shape[1] * self.group
        else:
            strides, dilations, begin, out, _ = resolve_window(x_shape, kernel, attrs)
            self.m = w_shape[0]
        pad = 3 - self.nsp
        self.in_sp = [1] * pad + list(x_shape[2:])
        self.out_sp = [1] * pad + list(out)
        self.kernel = [1] * pad + kernel
        self.strides = [1] * pad + list(strides)
        self.dilations = [1] * pad + list(dilations)
        self.begin = [0] * pad + list(begin)
        self.cg, self.mg = self.c // self.group, self.m // self.group
        self.taps = math.prod(self.kernel)
        self.k = self.cg * self.taps
        self.p_in = math.prod(self.in_sp)
        self.p_out = math.prod(self.out_sp)

    @property
    def pointwise(self) -> bool:
        return (self.taps == 1 and all(s == 1 for s in self.strides) and not any(self.begin)
                and self.in_sp == self.out_sp)

    def c_fields(self) -> str:
        """The initializer of a pdc_im2col after its first two fields."""
        (D, H, W), (OD, OH, OW), (KD, KH, KW) = self.in_sp, self.out_sp, self.kernel
        (sd, sh, sw), (dd, dh, dw), (pd, ph, pw) = self.strides, self.dilations, self.begin
        return (f"{self.cg}, {D}, {H}, {W}, {OD}, {OH}, {OW}, {KD}, {KH}, {KW}, {sd}, {sh}, {sw}, "
                f"{dd}, {dh}, {dw}, {pd}, {ph}, {pw}, {int(self.pointwise)}")


# ---- C helpers -----------------------------------------------------------------------------------------


def _conv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    if g.cg == 1 and g.mg == 1 and g.nsp <= 2:
        body = depthwise_f32(ctx, g, epi, heuristic=g.group > 1 and g.taps <= 49)
        if body is not None:
            return body
    if isa_of(ctx) == "avx512" and ctx.const(1) is not None:
        body = (mark("conv", "transposed", _tconv_f32(ctx, g, epi))
                or mark("conv", "pointwise", _pwconv_f32(ctx, g, epi)))
        if body is not None:
            return body
        plan = _iconv_plan(g) if take("conv", "band") else None
        if plan is not None:
            return mark("conv", "band", _iconv_f32(ctx, g, epi, plan))
    return mark("conv", "im2col", _im2col_f32(ctx, g, epi))


def _im2col_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    """The general path: any fp32 conv (1-D/2-D/3-D, runtime weights, every ISA)."""
    isa = isa_of(ctx)
    mr, nv = choose_tile(isa, g.mg, g.p_out)
    nr = nv * lanes(isa)
    ukr = ukernel(ctx, mr, nv)
    ctx.helper("pdc_dense_copy", COPY_C)
    ctx.helper("pdc_dense_im2col", IM2COL_C)
    lines = []
    w = ctx.const(1)
    mb = -(-g.mg // mr)
    if w is not None:
        wp = pack_a_panels(np.asarray(w, np.float32).reshape(g.group, g.mg, g.k), mr)
        a_fields = dict(a=add_weight(ctx, wp), a_bmod=g.group, a_bs=mb * g.k * mr)
    else:  # weights at run time (node tests): pack A per panel like a strided matrix
        lines.append(f"    const pdc_strided wa = {{in1, 0, {g.group}, {g.mg * g.k}, {g.k}, 1, 1.0f}};")
        a_fields = dict(packa="pdc_packa_strided", packa_ctx="&wa")
    lines.append(f"    const pdc_im2col geo = {{in0, {g.cg * g.p_in}, {g.c_fields()}}};")
    kc = k_block(g.k)
    batch = g.n * g.group
    parallel, split_m = choose_split(batch, g.mg, g.p_out, g.k, mr, nr, ctx.config.threads, g.m * g.k * 4,
                                     b_runtime=True)
    post = None
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    fields = dict(batch=batch, M=g.mg, N=g.p_out, K=g.k, MR=mr, NR=nr, KC=kc, NC=n_chunk(kc, nr, g.p_out), ukr=ukr,
                  **a_fields, packb="pdc_im2col_pack", packb_ctx="&geo", c="out0", ldc=g.p_out, c_bs=g.mg * g.p_out,
                  bias_m=bias_ptr(ctx, 2, g.m), bm_bmod=g.group, bm_bs=g.mg,
                  res="in3" if epi.has_r and epi.residual == "before_activation" else None,
                  ldr=g.p_out, r_bs=g.mg * g.p_out, lo=c_float(epi.lo), hi=c_float(epi.hi), clamp=int(epi.clamp),
                  post=post, parallel=parallel, split_m=split_m)
    lines += render_job(fields)
    lines.append("    pdc_sgemm_run(&job);")
    return "\n".join(lines)


def _iconv_plan(g: ConvGeom, whole: bool = False, cg: int = 0) -> dict | None:
    """Band geometry of the padded-band path for a 1-D/2-D conv, or None when it does not fit.
    whole: one band of all output rows, in the B buffer (the transposed path); cg: channels per
    band (default: the group's)."""
    cap = IC_BUF_FLOATS
    cg = cg or g.cg
    if g.in_sp[0] != 1 or g.kernel[0] != 1 or g.out_sp[0] != 1:
        return None
    if g.taps == 1 and not whole and forced("conv") != "band":  # 1x1 has cheaper paths
        return None
    _, H, W = g.in_sp
    _, OH, OW = g.out_sp
    _, KH, KW = g.kernel
    _, sh, sw = g.strides
    _, dh, dw = g.dilations
    wp = (OW - 1) * sw + (KW - 1) * dw + 1
    wq = -(-wp // sw)
    khd = (KH - 1) * dh + 1
    if OW / wq < 0.7 and forced("conv") != "band":  # most grid columns wasted (large strides)
        return None

    def size(b):
        rows_q = -(-((b - 1) * sh + khd) // sh)
        bs = sh * sw * rows_q * wq
        return rows_q, bs, cg * bs + wq + 64

    tile = None
    if whole:
        if size(OH)[2] > BBUF_FLOATS:
            return None
        band, nbands = OH, 1
    else:
        fits = [b for b in range(1, OH + 1) if size(b)[2] <= cap]
        if not fits:
            return None
        # band height and register tile together: least padded work (grid columns >= OW and
        # tile tails), with the idle share of 2 threads pulling bands counted in
        best = None
        for b in fits:
            nb = -(-OH // b)
            last = OH - (nb - 1) * b
            for mr, nv in ((8, 3), (12, 2), (6, 4)):
                nr = 16 * nv
                cols = lambda rows: -(-((rows - 1) * wq + OW) // nr) * nr  # noqa: E731
                work = -(-g.mg // mr) * mr * ((nb - 1) * cols(b) + cols(last))
                cost = work * (-(-nb // 2) * 2 / nb if nb > 1 else 1.0)
                key = (cost, -b)
                if best is None or key < best[0]:
                    best = (key, b, nb, (mr, nv))
        _, band, nbands, tile = best
    rows_q, bs, _ = size(band)
    koff = []
    for ci in range(cg):
        for kh in range(KH):
            for kw in range(KW):
                rr, cc = kh * dh, kw * dw
                koff.append(ci * bs + ((rr % sh) * sw + cc % sw) * rows_q * wq + (rr // sh) * wq + cc // sw)
    return dict(band=band, nbands=nbands, wq=wq, rows_q=rows_q, bs=bs, khd=khd, koff=np.array(koff, np.int32),
                tile=tile, nq=(band - 1) * wq + OW)


def _koff(g: ConvGeom, plan: dict) -> np.ndarray:
    """koff of every input channel of the group from a per-channel plan (cg=1)."""
    one = plan["koff"][:g.taps].astype(np.int64)
    full = (np.arange(g.cg, dtype=np.int64)[:, None] * plan["bs"] + one[None, :]).reshape(-1)
    return full.astype(np.int32)


def _iconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue, plan: dict) -> str:
    mr, nv = plan["tile"]
    nr = 16 * nv
    ukr = ukernel(ctx, mr, nv, indirect=True)
    ctx.helper("pdc_dense_copy", COPY_C)
    ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))
    mb = -(-g.mg // mr)
    lines = []
    w = ctx.const(1)
    if w is None:
        return None
    wp = pack_a_panels(np.asarray(w, np.float32).reshape(g.group, g.mg, g.k), mr)
    koff = add_weight(ctx, plan["koff"], "int32_t")
    problems = g.n * g.group
    w_bytes = g.m * g.k * 4
    parallel = int(ctx.split(problems * g.mg * g.p_out * g.k, PARALLEL_MIN_MACS))
    units_b = problems * plan["nbands"]
    split_m = int(units_b < 2 or (w_bytes > (1 << 20) and mb >= 2))
    mchunk = max(1, (256 << 10) // (g.k * mr * 4))
    post = "0"
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    res = "in3" if epi.has_r and epi.residual == "before_activation" else "0"
    _, H, W = g.in_sp
    _, OH, OW = g.out_sp
    _, sh, sw = g.strides
    _, ph, pw = g.begin
    lines.append(f"    const pdc_iconv_job job = {{in0, {add_weight(ctx, wp)}, {bias_ptr(ctx, 2, g.m)}, {res}, out0, "
                 f"{koff}, {post}, {g.group}, {g.cg}, {g.mg}, {H}, {W}, {OH}, {OW}, {sh}, {sw}, {ph}, {pw}, "
                 f"{plan['khd']}, {g.k}, {mr}, {nr}, {mchunk}, {problems}, {plan['band']}, {plan['nbands']}, "
                 f"{plan['wq']}, {plan['rows_q']}, {plan['bs']}, {c_float(epi.lo)}, {c_float(epi.hi)}, "
                 f"{int(epi.clamp)}, {split_m}, {parallel}, {ukr}}};")
    lines.append("    pdc_iconv_run(&job);")
    return "\n".join(lines)


TCONV_TMP_FLOATS = 131072  # the caller's stack buffer for the pixels x channels result (512 KiB)


def _tconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue):
    """The transposed GEMM for small outputs (OW <= 16), or None when it does not apply."""
    _, OH, OW = g.out_sp
    w = ctx.const(1)
    if (w is None or g.in_sp[0] != 1 or g.kernel[0] != 1 or g.out_sp[0] != 1 or OW > 16
            or g.n * g.group * g.p_out * g.mg > TCONV_TMP_FLOATS or ABUF_FLOATS // g.p_out < g.taps):
        return None
    if not take("conv", "transposed", OW >= 4 and g.mg >= 32):
        return None
    plan = None
    strided_1x1 = g.taps == 1 and not any(g.begin) and not g.pointwise
    if not g.pointwise and not strided_1x1:
        plan = _iconv_plan(g, whole=True, cg=1)  # per-channel geometry; the band holds a K block
        if plan is None:
            return None
    core(ctx)
    ctx.helper("pdc_dense_copy", COPY_C)
    mr = OW
    nv = max(1, min(4, 28 // mr))
    nr = 16 * nv
    ukr = ukernel(ctx, mr, nv)
    problems = g.n * g.group
    wt = np.asarray(w, np.float32).reshape(g.group, g.mg, g.k).transpose(0, 2, 1)  # (G, K, Mg)
    nb = -(-g.mg // nr)
    # K blocks whose weights for one thread's channels stay in L2 across the pixel rows
    kc = min(g.k, max(64, (131072 // max(1, -(-g.mg // 2))) // 8 * 8), ABUF_FLOATS // g.p_out)
    if plan is not None:  # whole input channels per K block, their band in the B buffer
        per_ch = plan["bs"]
        chans = max(1, min(g.cg, kc // g.taps, (BBUF_FLOATS - plan["wq"] - 64) // per_ch))
        if chans * per_ch + plan["wq"] + 64 > BBUF_FLOATS:
            return None
        kc = chans * g.taps
    nc = nb * nr
    lines = []
    if g.pointwise:
        lines.append(f"    const pdc_strided xa = {{in0, 0, 0, {g.cg * g.p_in}, 1, {g.p_in}, 1.0f}};")
        a_fields = dict(packa="pdc_packa_strided", packa_ctx="&xa")
    elif strided_1x1:  # rows of every sh-th input row, every sw-th column: no band needed
        ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))
        ctx.helper("pdc_dense_tconv_s1x1", TCONV_S1X1_C)
        _, H, W = g.in_sp
        _, sh, sw = g.strides
        lines.append("    pdc_iconv_job geo;\n    memset(&geo, 0, sizeof geo);")
        for k, v in dict(x="in0", Cg=g.cg, H=H, W=W, OH=OH, OW=OW, sh=sh, sw=sw).items():
            lines.append(f"    geo.{k} = {v};")
        a_fields = dict(packa="pdc_tconv_packa_s1x1", packa_ctx="&geo")
    else:
        ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))
        ctx.helper("pdc_dense_tconv", TCONV_C)
        _, H, W = g.in_sp
        _, sh, sw = g.strides
        _, ph, pw = g.begin
        lines.append("    pdc_iconv_job geo;\n    memset(&geo, 0, sizeof geo);")
        koff = add_weight(ctx, _koff(g, plan), "int32_t")
        for k, v in dict(x="in0", koff=koff, G=g.group, Cg=g.cg, K=g.k, H=H, W=W, OH=OH, OW=OW, sh=sh, sw=sw, ph=ph,
                         pw=pw, khd=plan["khd"], Wq=plan["wq"], rows_q=plan["rows_q"], BS=plan["bs"]).items():
            lines.append(f"    geo.{k} = {v};")
        a_fields = dict(packa="pdc_tconv_packa", packa_ctx="&geo", prep="pdc_tconv_prep", prep_ctx="&geo")
    clamp = epi.clamp
    pf = epi.post_fields("in3", g.mg * g.p_out, g.p_out) if not epi.fast else dict(act=0)
    pf.update(tout="out0", tbias=bias_ptr(ctx, 2, g.m), t_bs=g.mg * g.p_out, tld=g.p_out, tb_mod=g.group,
              tb_bs=g.mg, lo=c_float(epi.lo), hi=c_float(epi.hi), clamp=int(clamp))
    if epi.has_r and epi.residual == "before_activation":
        pf["tres"] = "in3"
    lines.append(render_post(pf))
    lines.append(f"    float tmp[{problems * g.p_out * g.mg}] __attribute__((aligned(64)));")
    parallel = int(ctx.split(problems * g.p_out * g.mg * g.k, PARALLEL_MIN_MACS))
    fields = dict(batch=problems, M=g.p_out, N=g.mg, K=g.k, MR=mr, NR=nr, KC=kc, NC=nc, ukr=ukr, **a_fields,
                  b=add_weight(ctx, pack_b_panels(wt, nr)), b_bmod=g.group, b_bs=nb * g.k * nr,
                  c="tmp", ldc=g.mg, c_bs=g.p_out * g.mg, lo=c_float(-math.inf), hi=c_float(math.inf),
                  post="&post", parallel=parallel, split_m=0, chunks_per_thread=1, a_all=1)
    lines += render_job(fields)
    lines.append("    pdc_sgemm_run(&job);")
    return "\n".join(lines)


def _pwconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue):
    """Pointwise conv reading the input in place (see PWCONV_C), or None."""
    w = ctx.const(1)
    if w is None or not g.pointwise or not take("conv", "pointwise", g.k <= 640 and g.p_out >= 16):
        return None
    mr, nv = choose_tile("avx512", g.mg, g.p_out)
    nr = 16 * nv
    if g.k * nr > 640 * 64 or g.k * g.p_in >= 2 ** 31:  # the tail buffer; int32 offsets
        return None
    ukr = ukernel(ctx, mr, nv, indirect=True)
    ctx.helper("pdc_dense_copy", COPY_C)
    ctx.helper("pdc_dense_iconv", ICONV_C.replace("@BUF@", str(IC_BUF_FLOATS)))  # pdc_ukri_fn
    ctx.helper("pdc_dense_pwconv", PWCONV_C)
    wp = pack_a_panels(np.asarray(w, np.float32).reshape(g.group, g.mg, g.k), mr)
    koff = add_weight(ctx, np.arange(g.k, dtype=np.int32) * np.int32(g.p_in), "int32_t")
    tkoff = add_weight(ctx, np.arange(g.k, dtype=np.int32) * np.int32(nr), "int32_t")
    problems = g.n * g.group
    parallel, split_m = choose_split(problems, g.mg, g.p_out, g.k, mr, nr, ctx.config.threads, g.m * g.k * 4)
    lines = []
    post = "0"
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    res = "in3" if epi.has_r and epi.residual == "before_activation" else "0"
    mchunk = max(1, (256 << 10) // (g.k * mr * 4))
    lines.append("    pdc_pwconv_job job;\n    memset(&job, 0, sizeof job);")
    for k, v in dict(x="in0", w=add_weight(ctx, wp), bias=bias_ptr(ctx, 2, g.m), res=res, y="out0", koff=koff,
                     tkoff=tkoff, post=post, G=g.group, Cg=g.cg, Mg=g.mg, P=g.p_out, K=g.k, MR=mr, NR=nr,
                     mchunk=mchunk, problems=problems, lo=c_float(epi.lo), hi=c_float(epi.hi),
                     clamp=int(epi.clamp), split_m=split_m, parallel=parallel, ukr=ukr).items():
        lines.append(f"    job.{k} = {v};")
    lines.append("    pdc_pwconv_run(&job);")
    return "\n".join(lines)


# ---- direct loops (other dtypes, conv_integer) ----------------------------------------------------------
def _direct_conv(ctx: KernelContext, g: ConvGeom, acc_t: str, load_x, load_w, init: str, finish) -> str:
    """A direct convolution loop nest; `finish(s, yi)` returns the statement storing the sum s."""
    (D, H, W), (OD, OH, OW), (KD, KH, KW) = g.in_sp, g.out_sp, g.kernel
    (sd, sh, sw), (dd, dh, dw), (pd, ph, pw) = g.strides, g.dilations, g.begin
    return f"""    for (int64_t n = 0; n < {g.n}; n++)
    for (int64_t m = 0; m < {g.m}; m++) {{
        const int64_t gi = m / {g.mg};
        for (int64_t od = 0; od < {OD}; od++)
        for (int64_t oh = 0; oh < {OH}; oh++)
        for (int64_t ow = 0; ow < {OW}; ow++) {{
            {acc_t} s = {init};
            for (int64_t c = 0; c < {g.cg}; c++)
            for (int64_t kd = 0; kd < {KD}; kd++) {{
                const int64_t id = od * {sd} - {pd} + kd * {dd};
                if (id < 0 || id >= {D}) continue;
                for (int64_t kh = 0; kh < {KH}; kh++) {{
                    const int64_t ih = oh * {sh} - {ph} + kh * {dh};
                    if (ih < 0 || ih >= {H}) continue;
                    for (int64_t kw = 0; kw < {KW}; kw++) {{
                        const int64_t iw = ow * {sw} - {pw} + kw * {dw};
                        if (iw < 0 || iw >= {W}) continue;
                        const int64_t xi = (((n * {g.c} + gi * {g.cg} + c) * {D} + id) * {H} + ih) * {W} + iw;
                        const int64_t wi = (((m * {g.cg} + c) * {KD} + kd) * {KH} + kh) * {KW} + kw;
                        s += ({acc_t})({load_x('xi')}) * ({acc_t})({load_w('wi')});
                    }}
                }}
            }}
            const int64_t yi = ((n * {g.m} + m) * {OD} + od) * {OH * OW} + oh * {OW} + ow;
            {finish('s', 'yi')}
        }}
    }}"""


def _conv_generic(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    dt = ctx.inputs[0].dtype
    ct = ctx.compute_ctype(dt)
    bias = f"({ct})({ctx.load(dt, f'in2[m]')})" if ctx.has_input(2) else "0"
    r_load = lambda i: ctx.load(dt, f"in3[{i}]")  # noqa: E731

    def finish(s, yi):
        stmts = epilogue_expr(ctx, epi, s, ct, yi, r_load)
        return " ".join(stmts + [f"out0[{yi}] = {ctx.store(dt, s)};"])

    return _direct_conv(ctx, g, ct, lambda i: ctx.load(dt, f"in0[{i}]"), lambda i: ctx.load(dt, f"in1[{i}]"),
                        bias, finish)


# ---- generators ------------------------------------------------------------------------------------------
def _check_static(ctx: KernelContext):
    x, w = ctx.inputs[0], ctx.inputs[1]
    if len(x.shape) < 3 or len(x.shape) > 5:
        ctx.fail(f"{len(x.shape) - 2}-D convolution: only 1-D, 2-D and 3-D are supported")
    if any(d == 0 for d in x.shape) or any(d == 0 for d in w.shape):
        return False
    return True


@kernel("conv", "fused_conv")
def conv(ctx: KernelContext) -> str:
    return uses_all(ctx, _conv(ctx))


def _conv(ctx: KernelContext) -> str:
    if not _check_static(ctx):
        return "    (void)in0;"
    g = ConvGeom(ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.attrs)
    epi = Epilogue(ctx) if ctx.node.op == "fused_conv" else Epilogue.plain()
    if ctx.outputs[0].dtype.short == "f32":
        return _conv_f32(ctx, g, epi)
    return mark("conv", "direct", _conv_generic(ctx, g, epi))


@kernel("conv_integer")
def conv_integer(ctx: KernelContext) -> str:
    return uses_all(ctx, _conv_integer(ctx))


def _conv_integer(ctx: KernelContext) -> str:
    if not _check_static(ctx):
        return "    (void)in0;"
    g = ConvGeom(ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.attrs)
    lines = []
    xz = "0"
    if ctx.has_input(2):
        xz = "(int32_t)in2[0]"
    wz = "0"
    if ctx.has_input(3):
        n = math.prod(ctx.inputs[3].shape)
        if n not in (1, g.m):
            ctx.fail(f"w_zero_point has {n} values, expected 1 or {g.m}")
        wz = "(int32_t)in3[m]" if n > 1 else "(int32_t)in3[0]"
    lines.append(_direct_conv(ctx, g, "int32_t", lambda i: f"(int32_t)in0[{i}] - {xz}",
                              lambda i: f"(int32_t)in1[{i}] - {wz}", "0", lambda s, yi: f"out0[{yi}] = {s};"))
    return "\n".join(lines)


declare("conv_transpose", "direct")


@kernel("conv_transpose")
def conv_transpose(ctx: KernelContext) -> str:
    return uses_all(ctx, mark("conv_transpose", "direct", _conv_transpose(ctx)))


def _conv_transpose(ctx: KernelContext) -> str:
    x, w = ctx.inputs[0], ctx.inputs[1]
    if len(x.shape) < 3 or len(x.shape) > 5:
        ctx.fail(f"{len(x.shape) - 2}-D transposed convolution: only 1-D, 2-D and 3-D are supported")
    g = ConvGeom(x.shape, w.shape, ctx.attrs, transpose=True)
    dt = x.dtype
    ct = ctx.compute_ctype(dt)
    (D, H, W), (OD, OH, OW), (KD, KH, KW) = g.in_sp, g.out_sp, g.kernel
    (sd, sh, sw), (dd, dh, dw), (pd, ph, pw) = g.strides, g.dilations, g.begin
    total = g.n * g.m * g.p_out
    bias = f"({ct})({ctx.load(dt, 'in2[m]')})" if ctx.has_input(2) else "0"
    if dt.short not in ("f32", "f64"):
        ctx.fail(f"{dt} ConvTranspose is not supported by the x86 kernels (float32 and float64 are)")
    lines = []
    lines.append(f"""    {ct} *y = out0;
    for (int64_t n = 0; n < {g.n}; n++)
    for (int64_t m = 0; m < {g.m}; m++) {{
        const {ct} b = {bias};
        for (int64_t i = 0; i < {g.p_out}; i++) y[(n * {g.m} + m) * {g.p_out} + i] = b;
    }}
    if ({total} == 0) return;
    for (int64_t n = 0; n < {g.n}; n++)
    for (int64_t c = 0; c < {g.c}; c++) {{
        const int64_t gi = c / {g.cg};
        for (int64_t mm = 0; mm < {g.mg}; mm++) {{
            const int64_t m = gi * {g.mg} + mm;
            {ct} *ym = y + (n * {g.m} + m) * {g.p_out};
            const {ct} *xc = in0 + (n * {g.c} + c) * {g.p_in};
            const {ct} *wc = in1 + (c * {g.mg} + mm) * {g.taps};
            for (int64_t kd = 0; kd < {KD}; kd++)
            for (int64_t kh = 0; kh < {KH}; kh++)
            for (int64_t kw = 0; kw < {KW}; kw++) {{
                const {ct} wv = wc[(kd * {KH} + kh) * {KW} + kw];
                for (int64_t id = 0; id < {D}; id++) {{
                    const int64_t od = id * {sd} - {pd} + kd * {dd};
                    if (od < 0 || od >= {OD}) continue;
                    for (int64_t ih = 0; ih < {H}; ih++) {{
                        const int64_t oh = ih * {sh} - {ph} + kh * {dh};
                        if (oh < 0 || oh >= {OH}) continue;
                        const {ct} *xr = xc + (id * {H} + ih) * {W};
                        {ct} *yr = ym + (od * {OH} + oh) * {OW};
                        for (int64_t iw = 0; iw < {W}; iw++) {{
                            const int64_t ow = iw * {sw} - {pw} + kw * {dw};
                            if (ow >= 0 && ow < {OW}) yr[ow] += xr[iw] * wv;
                        }}
                    }}
                }}
            }}
        }}
    }}""")
    return "\n".join(lines)
