"""HVX int8 max pooling (max_pool of int8 / uint8 NCHW without Indices) for the Hexagon targets ("hvx"):
exact, as max is.

Per (image, channel) and band of output rows, the plane goes to VTCM as the convolutions' flat phase
grid (hexagon/qconv.py: stride phases, so that output (oh, ow) is q = oh * Wq + ow and tap (kh, kw) reads
q + a constant offset), the padding (and a ceil_mode window's part past the input) holding the type's
lowest value, which a max ignores and an all-padding window returns, as the reference does. 128 outputs
are the max over the taps of one unaligned vector load each (vmax.b / vmax.ub); the valid grid columns
are copied into the NCHW rows.
"""
from __future__ import annotations

from typing import Optional

from ...context import KernelContext
from .. import kernel
from .. import pool as _portable  # noqa: F401  (declares the portable paths first)
from ..paths import declare, mark, take
from ..pool import PoolWindow
from ..qint import QconvGrid
from .qconv import HVX, PACK, _fit_rows, _phase_table, _staging, _vtcm_sum


declare("pool", "hvx")
MIN_OUTPUTS = 256  # outputs per plane from which the HVX kernel pays


@kernel("max_pool", family="hexagon")
def max_pool(ctx: KernelContext) -> Optional[str]:
    x = ctx.inputs[0]
    if ctx.config.simd != "hvx" or len(ctx.outputs) > 1 or x.dtype.short not in ("i8", "u8") or len(x.shape) != 4:
        return None
    w = PoolWindow(ctx)
    # small planes: packing costs more than the scalar loops it saves
    if w.NC * w.out[0] * w.out[1] == 0 or not take("pool", "hvx", w.out[0] * w.out[1] >= MIN_OUTPUTS):
        return None
    H, W = w.in_sp
    g = QconvGrid.window(H, W, w.kernel, w.strides, w.dil, w.begin, w.out)
    signed = x.dtype.short == "i8"
    lowest = 0x80 if signed else 0

    def layout(rows: int):
        grid = g.grid(128, rows)
        plane = len(grid["phases"]) * grid["Hq"] * grid["Wq"]
        return grid, -(-max(plane, max(grid["tap_off"]) + grid["nq_pad"]) // 128) * 128

    def need(rows: int) -> int:
        grid, size = layout(rows)
        return _vtcm_sum(size, 128, _staging(g, grid["Hq"], 1))

    R = _fit_rows(ctx, g, need, "HVX max pooling's plane")
    grid, size = layout(R)
    ctx.helper("pdc_hx_hvx", HVX)
    ctx.helper("pdc_hx_pack", PACK)
    plane, tile, st = ctx.vtcm(size), ctx.vtcm(128), ctx.vtcm(_staging(g, grid["Hq"], 1))
    vmax = "Q6_Vb_vmax_VbVb" if signed else "Q6_Vub_vmax_VubVub"
    taps = grid["tap_off"]
    OH, OW, Wq = g.OH, g.OW, grid["Wq"]
    L = ["    const uint8_t *x = (const uint8_t *)in0;",
         "    uint8_t *y = (uint8_t *)out0;",
         f"    uint8_t *xp = {plane};",
         f"    uint8_t *tile = {tile};",
         f"    const int32_t *ph = {_phase_table(ctx, grid['phases'])};",
         f"    const int32_t OW = {OW}, Wq = {Wq};",
         f"    for (int32_t c = 0; c < {w.NC}; c++) {{",
         f"        const uint8_t *xc = x + (int64_t)c * {H * W};",
         f"        for (int32_t oh0 = 0; oh0 < {OH}; oh0 += {R}) {{",
         f"            const int32_t rows = {OH} - oh0 < {R} ? {OH} - oh0 : {R}, nq = (rows - 1) * Wq + OW;",
         f"            pdc_hx_pack(xp, {st}, xc, 1, 1, {H}, {W}, oh0 * {g.sh} - {g.pt}, -{g.pl}, {g.sh}, {g.sw}, ph, "
         f"{len(grid['phases'])}, {grid['Hq']}, Wq, {size}, {lowest}, 0);",
         f"            uint8_t *yr = y + ((int64_t)c * {OH} + oh0) * OW;",
         "            for (int32_t q0 = 0; q0 < nq; q0 += 128) {",
         "                const uint8_t *s = xp + q0;",
         f"                HVX_Vector m = PDC_HX_LOADU(s + {taps[0]});",
         *(f"                m = {vmax}(m, PDC_HX_LOADU(s + {t}));" for t in taps[1:]),
         "                *(HVX_Vector *)(void *)tile = m;",
         "                const int32_t cnt = nq - q0 < 128 ? nq - q0 : 128;",
         "                int32_t oh = q0 / Wq, ow = q0 % Wq;",
         "                for (int32_t l = 0; l < cnt;) {  /* the valid columns of each grid row */",
         "                    const int32_t run = Wq - ow < cnt - l ? Wq - ow : cnt - l, valid = OW - ow < run ? OW - ow : run;",
         "                    if (valid > 0) memcpy(yr + oh * OW + ow, tile + l, (size_t)valid);",
         "                    l += run;",
         "                    ow += run;",
         "                    if (ow == Wq) {",
         "                        ow = 0;",
         "                        oh++;",
         "                    }",
         "                }",
         "            }",
         "        }",
         "    }"]
    return mark("pool", "hvx", "\n".join(L))
