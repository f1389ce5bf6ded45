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
from .. import native
from .. import winograd as wino
from ..conv_geometry import ConvGeom
from ..dense_core import (PARALLEL_MIN_MACS, add_weight, choose_split, isa_of, lanes, pack_a_panels, padded_work,
                          tile_options, ukernel)
from ..dense_conv_c import copy_helpers
from ..epilogue import Epilogue, c_float
from ..paths import mark
from .conv_c import PWCONV_C, iconv_helpers

BLOCK_FLOATS = 1 << 20  # V and M of one block of tile rows together, at most (unless one row needs more)
# Where the direct paths win, timed in the models (2 threads): more than MAX_TILE_BYTES of transformed
# weights per tile of an image, which come from memory in a network, a^2 / 9 times the direct
# weights' bytes, for too few GEMM columns. On an AMD EPYC (L2 1 MB a core, L3 32 MB), with the
# output tiles stored in rows: resnet18 7.56 -> 7.07 ms, resnet50 19.0 -> 18.2 ms raising the limit
# from 256 KB to 768 KB (its 256-channel 14x14 layers by F(4x4), 590 KB a tile; alone 256 us against
# 353 by F(2x2)), 6.95 ms at 1.5 MB (the 512-channel 7x7 ones by F(2x2), 1 MB a tile; alone 417 us
# against 588 direct). On a Xeon with the earlier scatter of the output tiles, 256 KB had been best.
# Fewer channels than MIN_CHANNELS: the transforms outweigh the saving (squeezenet1_1's 16 -> 64 at
# 55x55: 94 us by F(4x4) against 133 direct).
MAX_TILE_BYTES = 1 << 20
MIN_CHANNELS = 16

GLUE_C = r"""
/* ---- pdc Winograd on x86: the GEMM step as an in-place pointwise job, the dense post-pass ---- */
typedef struct { pdc_pwconv_job job; float *s; int64_t stride; int slots; } pdc_wino_pw;
static void pdc_wino_pwconv(const void *p, int64_t cols) {
    const pdc_wino_pw *w = (const pdc_wino_pw *)p;
    pdc_pwconv_job job = w->job;
    job.cols = cols;
    pdc_pwconv_run(&job, w->s, w->stride, w->slots);
}
static void pdc_wino_post_tile(const pdc_wino_job *j, int64_t u, int64_t p0, int64_t np, float *y) {
    const int64_t K = j->G * j->Mg, n = u / K, k = u % K;
    pdc_post_tile((const pdc_post *)j->post_ctx, n * j->G + k / j->Mg, k % j->Mg, p0, 1, (int)np, y, j->OH * j->OW);
}
"""


# The transforms' tiles in vectors of 16 (AVX-512): their first rows and columns (vy, vx) in lanes; the
# input transform gathers each tile element at the tiles' offsets, the mask the tiles in the block and
# inside the plane (zeros for the padding). Written as scalar copies, the gather and the output's
# scatter took two thirds of the transforms' time.
TILE_LANES_C = r"""
            const int cnt = n - i0 < 16 ? n - i0 : 16;
            /* tile t's row and column, t / TW by a float reciprocal and one correction (exact below
               2^22 tiles); stored lane by lane and loaded whole, they stalled the loads */
            const __m512i vt = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(t0 + g0 + i0)),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
            const __m512i vtw = _mm512_set1_epi32((int32_t)TW), one = _mm512_set1_epi32(1);
            __m512i ty = _mm512_cvttps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(vt), _mm512_set1_ps(1.0f / (float)TW)));
            __m512i tx = _mm512_sub_epi32(vt, _mm512_mullo_epi32(ty, vtw));
            const __mmask16 under = _mm512_cmplt_epi32_mask(tx, _mm512_setzero_si512());
            ty = _mm512_mask_sub_epi32(ty, under, ty, one);
            tx = _mm512_mask_add_epi32(tx, under, tx, vtw);
            const __mmask16 over = _mm512_cmpge_epi32_mask(tx, vtw);
            ty = _mm512_mask_add_epi32(ty, over, ty, one);
            tx = _mm512_mask_sub_epi32(tx, over, tx, vtw);
            const __m512i vy = _mm512_sub_epi32(_mm512_mullo_epi32(ty, _mm512_set1_epi32(@M@)), _mm512_set1_epi32((int32_t)@PH@));
            const __m512i vx = _mm512_sub_epi32(_mm512_mullo_epi32(tx, _mm512_set1_epi32(@M@)), _mm512_set1_epi32((int32_t)@PW@));"""


def _tiles_open(m: int, a: int, h: str, w: str, ph: str, pw: str, setup: tuple = ()) -> list[str]:
    """The vector path's head (under AVX-512, for planes and tile counts its int32 lanes hold): the
    loop over groups of 16 tiles, their lanes, and (a > 0, for a gather) the tiles' offsets `base`
    and the masks of the tiles whose row r (r0..) and column c (c0..) of the a x a elements lie
    inside the plane; _TILES_CLOSE ends it, the plain C being the other branch."""
    lanes = TILE_LANES_C.replace("@M@", str(m)).replace("@PH@", ph).replace("@PW@", pw)
    lines = ["#if defined(__AVX512F__)",
             f"        if ({h} * {w} < ((int64_t)1 << 31) && t0 + nt < ((int64_t)1 << 22)) {{", *setup,
             "            for (int i0 = 0; i0 < n; i0 += 16) {" + lanes]
    if a:
        lines += ["            const __mmask16 live = (__mmask16)(cnt >= 16 ? 0xffffu : (1u << cnt) - 1u);",
                  f"            const __m512i base = _mm512_add_epi32(_mm512_mullo_epi32(vy, "
                  f"_mm512_set1_epi32((int32_t){w})), vx);",
                  f"            const __m512i vh = _mm512_set1_epi32((int32_t){h}), "
                  f"vw = _mm512_set1_epi32((int32_t){w});"]
    for r in range(a):
        lines.append(f"            const __mmask16 r{r} = _mm512_mask_cmplt_epu32_mask(live, "
                     f"_mm512_add_epi32(vy, _mm512_set1_epi32({r})), vh);")
    for c in range(a):
        lines.append(f"            const __mmask16 c{c} = _mm512_cmplt_epu32_mask("
                     f"_mm512_add_epi32(vx, _mm512_set1_epi32({c})), vw);")
    return lines


_TILES_CLOSE = ["            }", "        } else", "#endif", "        {", "@plain", "        }"]


@native.implements("wino_gather", family="x86")
def wino_gather(m: int) -> str:
    a = m + 2
    lines = _tiles_open(m, a, "H", "W", "ph", "pw",
                        ("            nv = (n + 15) & ~15;  /* V's row stride P is whole vectors */",))
    for r in range(a):
        for c in range(a):
            lines.append(f"            _mm512_storeu_ps(d + {r * a + c} * GN + i0, _mm512_mask_i32gather_ps("
                         f"_mm512_setzero_ps(), r{r} & c{c}, _mm512_add_epi32(base, "
                         f"_mm512_set1_epi32((int32_t)({r} * W + {c}))), x, 4));")
    return "\n".join(lines + _TILES_CLOSE)


# the output transform's loops run over whole vectors (M's row stride P is a multiple of 16 floats)
native.implement("x86", wino_lanes="#if defined(__AVX512F__)\n        nv = (n + 15) & ~15;\n#endif\n")


def _interleave(m: int) -> tuple[list[list[int]], list[list[int]]]:
    """permutex2var indices that turn a row's m vectors o_c (lane t: column c of tile t) into m vectors
    of 16 / m tiles' rows each (vector k, lane m * j + c: column c of tile (16 / m) * k + j): pairs
    (o_2i, o_2i+1) -> [tile][2 columns] for tiles 0-7 and 8-15; for m = 4, quads: those of columns
    0-1 and 2-3 -> [tile][4 columns] for tiles 4k .. 4k + 3."""
    assert m in (2, 4)
    pairs = [[t + 16 * c for t in range(h * 8, h * 8 + 8) for c in range(2)] for h in range(2)]
    quads = [[2 * ((4 * k + j) % 8) + c % 2 + 16 * (c // 2) for j in range(4) for c in range(4)] for k in range(4)]
    return pairs, quads if m == 4 else []


def _store_lanes(z: str, pad: str) -> list[str]:
    """The output vector z's lanes k at y + at: plus the residual there, clamped."""
    return [f"{pad}__m512 val = {z};",
            f"{pad}if (res) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(k, res + at));",
            f"{pad}if (clamp) val = _mm512_min_ps(vhi, _mm512_max_ps(vlo, val));  /* NaN stays NaN */",
            f"{pad}_mm512_mask_storeu_ps(y + at, k, val);"]


@native.implements("wino_scatter", family="x86")
def wino_scatter(m: int) -> str:
    """The output tiles in whole rows: per row r of the tiles, their m vectors of columns interleaved
    (permutes) into vectors of 16 / m tiles' rows; a vector whose tiles share a tile row is one masked
    store (the columns inside the plane), else one masked store per tile (its lanes at its place).
    A scatter per element ran 16 stores through one instruction (on AMD's cores, one per cycle)."""
    tpv = 16 // m  # tiles per vector
    pairs, quads = _interleave(m)
    setup = ["            const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);"]
    for name, vecs in (("pp", pairs), ("pq", quads)):
        for k, ix in enumerate(vecs):
            setup.append(f"            const __m512i {name}{k} = _mm512_setr_epi32({', '.join(map(str, ix))});")
    lines = _tiles_open(m, 0, "OH", "OW", "0", "0", tuple(setup))
    lines += ["            int32_t sy[16], sx[16];  /* the tiles' first output row and column */",
              "            _mm512_storeu_si512(sy, vy);",
              "            _mm512_storeu_si512(sx, vx);"]
    for r in range(m):
        lines.append("            {")
        lines += [f"                const __m512 s{c} = _mm512_loadu_ps(o + {r * m + c} * GN + i0);" for c in range(m)]
        names = []
        for i in range(m // 2):  # columns 2i, 2i + 1 of tiles 0-7 (h = 0) and 8-15 (h = 1)
            for h in range(2):
                lines.append(f"                const __m512 a{i}{h} = _mm512_permutex2var_ps(s{2 * i}, pp{h}, s{2 * i + 1});")
                names.append(f"a{i}{h}")
        if m == 4:
            for k in range(4):
                lines.append(f"                const __m512 z{k} = _mm512_permutex2var_ps(a0{k // 2}, pq{k}, a1{k // 2});")
            names = [f"z{k}" for k in range(4)]
        for k, z in enumerate(names):
            f, last = k * tpv, k * tpv + tpv - 1
            lines += [f"                if ({last} < cnt && sy[{f}] == sy[{last}]) {{  /* one tile row */",
                      f"                    if (sy[{f}] + {r} < OH) {{",
                      f"                        const int64_t at = (int64_t)(sy[{f}] + {r}) * OW + sx[{f}];",
                      f"                        const int64_t left = OW - sx[{f}];",
                      "                        const __mmask16 k = (__mmask16)pdc_m16((int)(left < 16 ? left : 16));",
                      *_store_lanes(z, " " * 24),
                      "                    }",
                      "                } else {",
                      f"                    for (int j = 0; j < {tpv} && {f} + j < cnt; j++) {{",
                      f"                        const int l = {f} + j;",
                      f"                        if (sy[l] + {r} >= OH) continue;",
                      f"                        const int64_t at = (int64_t)(sy[l] + {r}) * OW + sx[l] - {m} * j;",
                      "                        const int64_t left = OW - sx[l];",
                      f"                        const __mmask16 k = (__mmask16)(pdc_m16((int)(left < {m} ? left : {m})) << ({m} * j));",
                      *_store_lanes(z, " " * 24),
                      "                    }",
                      "                }"]
        lines.append("            }")
    return "\n".join(lines + _TILES_CLOSE)


def winograd(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> Optional[str]:
    """The Winograd body for a layer (marked with its path), or None where no Winograd path is taken."""
    m = wino.choose(ctx, g, MAX_TILE_BYTES, MIN_CHANNELS)
    return mark("conv", f"winograd{m}", _body(ctx, g, epi, m)) if m else None


def _blocks(isa: str, mg: int, th: int, tw: int, per_col: int) -> tuple[int, int, int, int]:
    """(tile rows per block, P: V's and M's row stride, MR, NV): the even blocks of tile rows and the
    register tile whose padded GEMM work over all blocks, plus a block's cost of reading U again
    (per column of work, about 13 output channels' worth: U from the outer caches at ~10 bytes a
    cycle against the FMAs' 64 flops), is least, among the blocks whose V and M fit BLOCK_FLOATS.
    resnet18's 64-channel 56x56 layers: one block of 196 columns as 12 x 32 tiles (224 columns; 8 x 48
    would need 240, over the budget), where two blocks of 98 took 6 x 64 tiles (128 columns each)."""
    best = None
    for blocks in range(1, th + 1):
        rows = -(-th // blocks)
        if -(-th // rows) != blocks:
            continue  # the same blocks as fewer
        last = th - rows * (blocks - 1)
        for mr, nv in tile_options(isa, mg, rows * tw):
            nr = lanes(isa) * nv
            assert nr % 16 == 0  # P then is whole vectors of 16, as the AVX-512 transforms need
            p = -(-rows * tw // nr) * nr
            if per_col * p > BLOCK_FLOATS and rows > 1:
                continue
            cost = ((blocks - 1) * padded_work(mg, rows * tw, mr, nr) + padded_work(mg, last * tw, mr, nr)
                    + 13 * mg * blocks)
            if best is None or cost < best[0]:
                best = (cost, rows, p, mr, nv)
    return best[1:]


def _body(ctx: KernelContext, g: ConvGeom, epi: Epilogue, m: int) -> str:
    a2 = wino.tile(m) ** 2
    th, tw = -(-g.OH // m), -(-g.OW // m)
    isa = isa_of(ctx)
    problems = g.n * a2 * g.group
    rows, p, mr, nv = _blocks(isa, g.mg, th, tw, problems * (g.cg + g.mg))
    nr = lanes(isa) * nv
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
    tail, tail_stride = ctx.thread_scratch(g.cg * nr, slots)  # a block's partial panel
    koff = add_weight(ctx, np.arange(g.cg, dtype=np.int32) * np.int32(p), "int32_t")
    tkoff = add_weight(ctx, np.arange(g.cg, dtype=np.int32) * np.int32(nr), "int32_t")
    lines = ["    pdc_wino_pw gemm;", "    memset(&gemm, 0, sizeof gemm);"]
    for k, val in dict(x=v, w=add_weight(ctx, pack_a_panels(u, mr)), y=mm, koff=koff, tkoff=tkoff, G=a2 * g.group,
                       Cg=g.cg, Mg=g.mg, P=p, cols=p, K=g.cg, MR=mr, NR=nr,
                       mchunk=max(1, (256 << 10) // (g.cg * mr * 4)),
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
