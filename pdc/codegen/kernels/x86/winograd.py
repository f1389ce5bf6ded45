"""x86's Winograd paths (winograd4: F(4x4,3x3), winograd2: F(2x2,3x3)) for 2-D 3x3 stride-1 convs
with constant weights: the transforms and the driver are winograd.py's; the GEMM step here is one
in-place pointwise job (conv_c.py's pdc_pwconv: the indirect microkernel reads V's rows, U is
packed at compile time, one problem per image, xi and group), and an activation or a residual after
it runs as the dense post-pass (pdc_post_tile) over the rows the output transform wrote.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...context import KernelContext
from .. import winograd as wino
from ..conv_geometry import ConvGeom
from ..dense_core import PARALLEL_MIN_MACS, add_weight, choose_split, choose_tile, isa_of, lanes, pack_a_panels, ukernel
from ..dense_conv_c import copy_helpers
from ..epilogue import Epilogue, c_float
from ..paths import mark
from .conv_c import PWCONV_C, iconv_helpers

BLOCK_FLOATS = 1 << 20  # V and M of one block of tile rows together, at most (unless one row needs more)
# Where the direct paths win, timed in the models (a Xeon, 2 threads; timings of single layers, their
# weights and transforms in the cache, hid this). Fewer tiles per image than MIN_TILES: a network's
# weights come from memory, and the transformed ones (a^2 / 9 of their bytes) serve too few GEMM
# columns (resnet18's 512-channel 7x7 layers 1.9 ms by F(2x2) against 1.35 ms direct, its 256-channel
# 14x14 ones 1.25 ms by F(4x4) against 0.8 ms by F(2x2)). Fewer channels than MIN_CHANNELS: the
# transforms outweigh the saving (resnet18's 64-channel 56x56 layers 1.15-1.22 ms by F(4x4) against
# 0.97-1.07 ms direct; squeezenet1_1's eight 3x3 layers, 16 to 64 input channels, 1.0-1.25x slower)
MIN_TILES = 32
MIN_CHANNELS = 128

GLUE_C = r"""
/* ---- pdc Winograd on x86: the GEMM step as an in-place pointwise job, the dense post-pass ---- */
typedef struct { pdc_pwconv_job job; float *s; int64_t stride; int slots; } pdc_wino_pw;
static void pdc_wino_pwconv(const void *p) {
    const pdc_wino_pw *w = (const pdc_wino_pw *)p;
    pdc_pwconv_run(&w->job, w->s, w->stride, w->slots);
}
static void pdc_wino_post_tile(const pdc_wino_job *j, int64_t u, int64_t p0, int64_t np, float *y) {
    const int64_t K = j->G * j->Mg, n = u / K, k = u % K;
    pdc_post_tile((const pdc_post *)j->post_ctx, n * j->G + k / j->Mg, k % j->Mg, p0, 1, (int)np, y, j->OH * j->OW);
}
"""


def winograd(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> Optional[str]:
    """The Winograd body for a layer (marked with its path), or None where no Winograd path is taken."""
    m = wino.choose(ctx, g, MIN_TILES, MIN_CHANNELS)
    return mark("conv", f"winograd{m}", _body(ctx, g, epi, m)) if m else None


def _body(ctx: KernelContext, g: ConvGeom, epi: Epilogue, m: int) -> str:
    a2 = wino.tile(m) ** 2
    th, tw = -(-g.OH // m), -(-g.OW // m)
    isa = isa_of(ctx)
    mr, nv = choose_tile(isa, g.mg, th * tw)
    nr = lanes(isa) * nv
    problems = g.n * a2 * g.group
    rows, p = wino.block_rows(th, tw, problems * (g.cg + g.mg), nr, BLOCK_FLOATS)
    if g.cg * p >= 2 ** 31:
        return None
    ukr = ukernel(ctx, mr, nv, indirect=True)
    copy_helpers(ctx)
    iconv_helpers(ctx)  # pdc_ukri_fn
    ctx.helper("pdc_dense_pwconv", PWCONV_C)
    u = wino.transform_weights(np.asarray(ctx.const(1), np.float32), m).reshape(a2 * g.group, g.mg, g.cg)
    parallel = int(ctx.split(problems * g.mg * g.cg * p, PARALLEL_MIN_MACS))
    _, split_m = choose_split(problems, g.mg, p, g.cg, mr, nr, ctx.config.threads, u.size * 4)
    slots = ctx.slots(parallel)
    v = ctx.scratch(problems * g.cg * p)
    mm = ctx.scratch(problems * g.mg * p)
    tail, tail_stride = ctx.thread_scratch(g.cg * nr, slots)  # never used: P is whole panels
    koff = add_weight(ctx, np.arange(g.cg, dtype=np.int32) * np.int32(p), "int32_t")
    lines = ["    pdc_wino_pw gemm;", "    memset(&gemm, 0, sizeof gemm);"]
    for k, val in dict(x=v, w=add_weight(ctx, pack_a_panels(u, mr)), y=mm, koff=koff, tkoff=koff, G=a2 * g.group,
                       Cg=g.cg, Mg=g.mg, P=p, K=g.cg, MR=mr, NR=nr, mchunk=max(1, (256 << 10) // (g.cg * mr * 4)),
                       problems=problems, lo=c_float(-np.inf), hi=c_float(np.inf), split_m=split_m,
                       parallel=parallel, ukr=ukr).items():
        lines.append(f"    gemm.job.{k} = {val};")
    lines.append(f"    gemm.s = {tail};\n    gemm.stride = {tail_stride};\n    gemm.slots = {slots};")
    post = {}
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = dict(post="pdc_wino_post_tile", post_ctx="&post")
    body = wino.job_lines(ctx, g, epi, m, v=v, mm=mm, p=p, gemm="pdc_wino_pwconv", gemm_job="&gemm", slots=slots,
                          **post)
    ctx.helper("pdc_wino_x86", GLUE_C)
    return "\n".join(lines + body + [f"    pdc_wino_run(&wj, {rows});"])
