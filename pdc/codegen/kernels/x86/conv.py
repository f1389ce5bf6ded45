"""x86 convolution paths: fp32 convs with constant weights on AVX-512 and AVX2, where the GEMM
reads the input without an im2col copy. The path is chosen per layer from its static shape (C helpers in
conv_c.py; the shared GEMM driver and microkernels: dense_core.py, gemm.py):

- depthwise layers: the portable depthwise kernels first (dense_depthwise.py), as everywhere;
- small outputs (at most 16 columns, the 7x7 / 14x14 late layers), AVX-512: the GEMM runs transposed,
  one output row of pixels broadcast against vectors of output channels, stored transposed;
- pointwise, stride 1: the indirect microkernel reads the NCHW input in place (koff = k * HW);
- 1-D / 2-D: zero-padded, phase-split bands of input rows, so that every tap is a contiguous run
  read by the indirect microkernel (no im2col).
Register tiles are the ISA's: 24 zmm accumulators on AVX-512, 12 ymm on AVX2 (16 registers in all).
A layer none of them takes (3-D, runtime weights, the paths' own limits) is left to the portable
generator (dense_conv.py: im2col).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...context import KernelContext
from .. import kernel
from ..conv_geometry import ConvGeom
from ..dense_conv import conv_setup, depthwise, gemv
from ..dense_conv_c import copy_helpers
from ..dense_core import (PARALLEL_MIN_MACS, add_weight, bias_ptr, c_float, choose_split, choose_tile, core,
                          isa_of, lanes, pack_a_panels, pack_b_panels, panel_vectors, render_job, ukernel, uses_all)
from ..epilogue import Epilogue, render_post
from ..paths import declare, forced, mark, take
from .conv_c import IC_BUF_FLOATS, ICONV_TILE_FLOATS, PWCONV_C, TCONV_C, TCONV_S1X1_C, iconv_helpers
from .winograd import winograd

declare("conv", "transposed", "pointwise", "band")

# The register tiles (MR, NV) a band may take: the accumulators the ISA's registers hold beside one
# broadcast and NV loaded vectors (KERNELS.md §1 for AVX-512's; AVX2 has 16 ymm registers)
TILES = {"avx512": ((8, 3), (12, 2), (6, 4)), "avx2": ((6, 2), (4, 3), (3, 4))}


@kernel("conv", "fused_conv", family="x86")
def conv(ctx: KernelContext) -> Optional[str]:
    if ctx.config.simd not in TILES or ctx.outputs[0].dtype.short != "f32" or ctx.const(1) is None:
        return None
    setup = conv_setup(ctx)
    if setup is None:
        return None
    g, epi = setup
    body = (depthwise(ctx, g, epi) or gemv(ctx, g, epi) or winograd(ctx, g, epi) or mark("conv", "transposed", _tconv_f32(ctx, g, epi))
            or mark("conv", "pointwise", _pwconv_f32(ctx, g, epi)))
    if body is None:
        plan = _iconv_plan(ctx, g) if take("conv", "band", _avx2_takes(ctx, g, "band")) else None
        if plan is not None and forced("conv") != "band" and _starved(g, plan):
            plan = None
        if plan is not None:
            body = mark("conv", "band", _iconv_f32(ctx, g, epi, plan))
    return uses_all(ctx, body) if body is not None else None


# Where AVX2's thinner tiles beat im2col, from per-kernel profiles of lenet, squeezenet1_1,
# mobilenet_v2 and resnet18 on one thread (an AMD EPYC without AVX-512): the band path wins on
# outputs from 10x10 to 28x28 (lenet's 10x10: 2x, resnet18's 28x28 and 14x14: 25%) and loses on 55x55
# (by 40%: its unaligned tap rows cross cache lines) and on 7x7 (by 40%); reading a 1x1 conv in place
# wins up to 56x56 with reductions up to 128 and loses from 256 on (256 -> 256 at 28x28 by 15%,
# 512 -> 1000 at 13x13 by 25%). The transposed path
# stays AVX-512's: with 16 registers its OW x 8 tile ran 2-3x slower than im2col.
AVX2_LIMITS = {"band": dict(pixels=(64, 1024), reduction=1 << 30), "pointwise": dict(pixels=(1, 4096), reduction=128)}


def _avx2_takes(ctx: KernelContext, g: ConvGeom, path: str) -> bool:
    if isa_of(ctx) == "avx512":
        return True
    if path == "band" and g.taps >= 25 and g.k <= 256:
        # a large-kernel stem on a few channels at any size: im2col copies K = C x taps rows per pixel
        # for few output channels (resnet's 7x7 stride-2 stem on 3 channels: band 0.68 of its time)
        return True
    limit = AVX2_LIMITS[path]
    low, high = limit["pixels"]
    return low <= g.p_out <= high and g.k <= limit["reduction"]


def _starved(g: ConvGeom, plan: dict) -> bool:
    """Whether a band plan streams its weights for too few columns: bands shorter than two 32-wide
    panels (many input channels leave room for one or two rows) re-read weights beyond the L2 share
    for each band, when the threads split the bands rather than the weights (3x3 stride 2, 128 ->
    128 channels at 28x28: bands of 2 rows, 2x the time of im2col on AVX2)."""
    split_m = g.n * g.group * plan["nbands"] < 2 or g.m * g.k * 4 > (1 << 20)
    return plan["nq"] < 64 and g.m * g.k * 4 > (256 << 10) and not split_m


def _iconv_plan(ctx: KernelContext, g: ConvGeom, whole: bool = False, cg: int = 0) -> dict | None:
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
        if size(OH)[2] > ctx.config.scratch_floats:
            return None
        band, nbands = OH, 1
    else:
        fits = [b for b in range(1, OH + 1) if size(b)[2] <= cap]
        if not fits:
            return None
        # band height and register tile together: least padded work (grid columns >= OW and
        # tile tails) on the busiest thread, the threads pulling bands in turn
        threads = ctx.config.threads if ctx.config.parallel else 1
        best = None
        for b in fits:
            nb = -(-OH // b)
            last = OH - (nb - 1) * b
            for mr, nv in TILES[isa_of(ctx)]:
                nr = lanes(isa_of(ctx)) * nv
                cols = lambda rows: -(-((rows - 1) * wq + OW) // nr) * nr  # noqa: E731
                bands = ([cols(b)] * (nb - 1) + [cols(last)]) * g.n * g.group
                cost = -(-g.mg // mr) * mr * _busiest(bands, threads)
                key = (cost, -b)
                if best is None or key < best[0]:
                    best = (key, b, nb, (mr, nv))
        _, band, nbands, tile = best
    rows_q, bs, floats = size(band)
    koff = []
    for ci in range(cg):
        for kh in range(KH):
            for kw in range(KW):
                rr, cc = kh * dh, kw * dw
                koff.append(ci * bs + ((rr % sh) * sw + cc % sw) * rows_q * wq + (rr // sh) * wq + cc // sw)
    return dict(band=band, nbands=nbands, wq=wq, rows_q=rows_q, bs=bs, khd=khd, koff=np.array(koff, np.int32),
                tile=tile, nq=(band - 1) * wq + OW, floats=floats)


def _busiest(units: list[int], threads: int) -> int:
    """The work of the busiest thread when each unit in turn goes to the thread that frees up first
    (the pool's chunks claimed in order); many units: they end nearly together."""
    if len(units) > 16 * threads:
        return -(-sum(units) // threads)
    loads = [0] * threads
    for u in units:
        loads[loads.index(min(loads))] += u
    return max(loads)


def _koff(g: ConvGeom, plan: dict) -> np.ndarray:
    """koff of every input channel of the group from a per-channel plan (cg=1)."""
    one = plan["koff"][:g.taps].astype(np.int64)
    full = (np.arange(g.cg, dtype=np.int64)[:, None] * plan["bs"] + one[None, :]).reshape(-1)
    return full.astype(np.int32)


def _iconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue, plan: dict) -> str:
    mr, nv = plan["tile"]
    nr = lanes(isa_of(ctx)) * nv
    ukr = ukernel(ctx, mr, nv, indirect=True)
    copy_helpers(ctx)
    iconv_helpers(ctx)
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
    # row blocks of output channels per pass over a band's panels: where a B panel stays in L1 (a
    # network's first layers: K = 27, 147) one at a time, so that the tile stores run along MR planes'
    # rows rather than all of them (squeezenet1_1's 3 -> 64 stride-2 stem: 492 -> 440 us on one thread)
    mchunk = 1 if g.k * nr <= 8192 else max(1, (256 << 10) // (g.k * mr * 4))
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
    slots = ctx.slots(parallel)
    scratch, stride = ctx.thread_scratch(ICONV_TILE_FLOATS + plan["floats"], slots)
    lines.append(f"    pdc_iconv_run(&job, {scratch}, {stride}, {slots});")
    return "\n".join(lines)


TCONV_TMP_FLOATS = 131072  # the pixels x channels result, in the kernel's scratch (512 KiB)


def _tconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue):
    """The transposed GEMM for small outputs (OW <= 16) on AVX-512, or None where it does not apply."""
    _, OH, OW = g.out_sp
    w = ctx.const(1)
    if (w is None or isa_of(ctx) != "avx512" or g.in_sp[0] != 1 or g.kernel[0] != 1 or g.out_sp[0] != 1 or OW > 16
            or g.n * g.group * g.p_out * g.mg > TCONV_TMP_FLOATS or ctx.config.a_scratch_floats // g.p_out < g.taps):
        return None
    if not take("conv", "transposed", OW >= 4 and g.mg >= 32):
        return None
    plan = None
    _, H, W = g.in_sp
    _, sh, sw = g.strides
    # every output pixel a strided copy of one input pixel: no padding at either end
    strided_1x1 = (g.taps == 1 and not any(g.begin) and not g.pointwise
                   and (OH - 1) * sh < H and (OW - 1) * sw < W)
    if not g.pointwise and not strided_1x1:
        plan = _iconv_plan(ctx, g, whole=True, cg=1)  # per-channel geometry; the band holds a K block
        if plan is None:
            return None
    core(ctx)
    copy_helpers(ctx)
    mr = OW
    nv = panel_vectors(g.mg, max(1, min(4, 28 // mr)), 16)
    nr = 16 * nv
    ukr = ukernel(ctx, mr, nv)
    problems = g.n * g.group
    wt = np.asarray(w, np.float32).reshape(g.group, g.mg, g.k).transpose(0, 2, 1)  # (G, K, Mg)
    nb = -(-g.mg // nr)
    # K blocks whose weights for one thread's channels stay in L2 across the pixel rows
    kc = min(g.k, max(64, (131072 // max(1, -(-g.mg // 2))) // 8 * 8), ctx.config.a_scratch_floats // g.p_out)
    if plan is not None:  # whole input channels per K block, their band in the B buffer
        per_ch = plan["bs"]
        chans = max(1, min(g.cg, kc // g.taps, (ctx.config.scratch_floats - plan["wq"] - 64) // per_ch))
        if chans * per_ch + plan["wq"] + 64 > ctx.config.scratch_floats:
            return None
        kc = chans * g.taps
    nc = nb * nr
    lines = []
    if g.pointwise:
        lines.append(f"    const pdc_strided xa = {{in0, 0, 0, {g.cg * g.p_in}, 1, {g.p_in}, 1.0f}};")
        a_fields = dict(packa="pdc_packa_strided", packa_ctx="&xa")
    elif strided_1x1:  # rows of every sh-th input row, every sw-th column: no band needed
        iconv_helpers(ctx)
        ctx.helper("pdc_dense_tconv_s1x1", TCONV_S1X1_C)
        _, H, W = g.in_sp
        _, sh, sw = g.strides
        lines.append("    pdc_iconv_job geo;\n    memset(&geo, 0, sizeof geo);")
        for k, v in dict(x="in0", Cg=g.cg, H=H, W=W, OH=OH, OW=OW, sh=sh, sw=sw).items():
            lines.append(f"    geo.{k} = {v};")
        a_fields = dict(packa="pdc_tconv_packa_s1x1", packa_ctx="&geo")
    else:
        iconv_helpers(ctx)
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
    lines.append(f"    float *tmp = {ctx.scratch(problems * g.p_out * g.mg)};")
    # splitting the channels (N), every thread packs all the pixels (A); splitting the pixel rows, every
    # thread reads all the weights (B, packed at compile time): the few output channels of a
    # projection (384 -> 64 at 14x14) split the rows
    parallel, split_m = choose_split(problems, g.p_out, g.mg, g.k, mr, nr, ctx.config.threads, g.p_out * g.k * 4)
    fields = dict(batch=problems, M=g.p_out, N=g.mg, K=g.k, MR=mr, NR=nr, KC=kc, NC=nc, ukr=ukr, **a_fields,
                  b=add_weight(ctx, pack_b_panels(wt, nr)), b_bmod=g.group, b_bs=nb * g.k * nr,
                  c="tmp", ldc=g.mg, c_bs=g.p_out * g.mg, lo=c_float(-math.inf), hi=c_float(math.inf),
                  post="&post", parallel=parallel, split_m=split_m, chunks_per_thread=1, a_all=1)
    lines += render_job(ctx, fields)
    lines.append("    pdc_sgemm_run(&job);")
    return "\n".join(lines)


def _feeds_depthwise(ctx: KernelContext) -> bool:
    """Whether every reader of the output is a depthwise conv (one input channel per group)."""
    def depthwise(n) -> bool:
        w = n.inputs[1] if len(n.inputs) > 1 else None
        shape = w.type.shape if w is not None else None
        return (n.op in ("conv", "fused_conv") and n.attrs.get("group", 1) > 1 and shape is not None
                and len(shape) > 1 and shape[1] == 1)
    return bool(ctx.readers) and all(depthwise(n) for n in ctx.readers)


def _pwconv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue):
    """Pointwise conv reading the input in place (see PWCONV_C), or None."""
    w = ctx.const(1)
    if w is None or not g.pointwise or not take("conv", "pointwise", g.k <= 640 and g.p_out >= 16
                                                                 and _avx2_takes(ctx, g, "pointwise")):
        return None
    mr, nv = choose_tile(isa_of(ctx), g.mg, g.p_out)
    nr = lanes(isa_of(ctx)) * nv
    if g.k * nr > 640 * 64 or g.k * g.p_in >= 2 ** 31:  # the tail buffer; int32 offsets
        return None
    ukr = ukernel(ctx, mr, nv, indirect=True)
    copy_helpers(ctx)
    iconv_helpers(ctx)  # pdc_ukri_fn
    ctx.helper("pdc_dense_pwconv", PWCONV_C)
    wp = pack_a_panels(np.asarray(w, np.float32).reshape(g.group, g.mg, g.k), mr)
    koff = add_weight(ctx, np.arange(g.k, dtype=np.int32) * np.int32(g.p_in), "int32_t")
    tkoff = add_weight(ctx, np.arange(g.k, dtype=np.int32) * np.int32(nr), "int32_t")
    problems = g.n * g.group
    parallel, split_m = choose_split(problems, g.mg, g.p_out, g.k, mr, nr, ctx.config.threads, g.m * g.k * 4)
    if parallel and not split_m and -(-g.mg // mr) >= 2 * ctx.config.threads and _feeds_depthwise(ctx):
        # the depthwise kernels split their planes among the threads: writing whole channels here,
        # each thread then reads what it wrote from its own cache (mobilenet_v2's expansions: the
        # model 4.07-4.14 -> 3.89-4.01 ms on 2 threads)
        split_m = 1
    lines = []
    post = "0"
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    res = "in3" if epi.has_r and epi.residual == "before_activation" else "0"
    mchunk = max(1, (256 << 10) // (g.k * mr * 4))
    lines.append("    pdc_pwconv_job job;\n    memset(&job, 0, sizeof job);")
    for k, v in dict(x="in0", w=add_weight(ctx, wp), bias=bias_ptr(ctx, 2, g.m), res=res, y="out0", koff=koff,
                     tkoff=tkoff, post=post, G=g.group, Cg=g.cg, Mg=g.mg, P=g.p_out, cols=g.p_out, K=g.k, MR=mr,
                     NR=nr, mchunk=mchunk, problems=problems, lo=c_float(epi.lo), hi=c_float(epi.hi),
                     clamp=int(epi.clamp), split_m=split_m, parallel=parallel, ukr=ukr).items():
        lines.append(f"    job.{k} = {v};")
    slots = ctx.slots(parallel)
    tail = ctx.thread_scratch(g.k * nr, slots)
    lines.append(f"    pdc_pwconv_run(&job, {tail[0]}, {tail[1]}, {slots});")
    return "\n".join(lines)
