"""HVX int8 matrix product (qmatmul with constant int8 weights b [K, N], pdc/ir/ops/qint.py) for the
Hexagon targets ("hvx"), bit-exact with the NumPy reference.

`Vx.w += vrmpy(Vu.ub, Vv.b)` adds to each of 32 int32 lanes the four products of the lanes' bytes: with
Vv holding 32 columns' weights for four consecutive k (b packed at compile time [N/(32 NV)][K/4][NV][32]
[4], zero-padded) and Vu a row's four activation codes broadcast (vsplat), one instruction is 128 MACs
of one row. A tile is MR rows x NV vectors of 32 columns; the rows of a are copied per tile into VTCM as
unsigned codes (x ^ 0x80 for int8, the K tail padded), so each broadcast word is one aligned load. The
fold of the zero points, the exactness bound and the scalar requantization are the convolution's
(hexagon/qconv.py, qint.folded_bias).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...context import KernelContext
from ....ir.errors import PdcError
from .. import kernel
from .. import qint as _portable  # noqa: F401  (declares the portable path first: the general one)
from ..paths import declare, mark, take
from ..qint import native_qmatmul_operands
from ..quant import add_weight
from .qconv import HVX, LANES, _Output, tile_kernel

declare("qmatmul", "portable", "hvx")

TILES = ((1, 12), (2, 8), (4, 5), (8, 3))  # (MR rows, NV column vectors): MR * NV + NV + 1 <= 32 registers


def _ukr(mr: int, nv: int) -> tuple[str, str]:
    return tile_kernel(
        f"pdc_hx_mm_{mr}x{nv}",
        f"c[{mr}][{nv}] vectors = bias + {mr} rows' codes (ap: [row][KQ] words) x {nv} vectors of 32 columns",
        "const int32_t *ap, int32_t KQ, const uint8_t *wp, const int32_t *bias", mr, nv,
        [f"    const HVX_Vector b{v} = PDC_HX_LOADU(bias + {LANES * v});" for v in range(nv)], lambda i, v: f"b{v}",
        f"wp += {128 * nv}",
        [f"        const HVX_Vector w{v} = PDC_HX_LOADU(wp + {128 * v});" for v in range(nv)],
        lambda i: f"const HVX_Vector s = Q6_V_vsplat_R(ap[{i} * KQ + k]);", "Q6_Vw_vrmpyacc_VwVubVb({c}, s, w{v})")


def _cost(rows: int, cols: int, mr: int, nv: int) -> float:
    return -(-rows // mr) * mr * -(-cols // (LANES * nv)) * nv * (1 + (mr + nv) / (mr * nv))


@kernel("qmatmul", family="hexagon")
def qmatmul(ctx: KernelContext) -> Optional[str]:
    if ctx.config.simd != "hvx":
        return None
    operands = native_qmatmul_operands(ctx)
    if operands is None or not take("qmatmul", "hvx"):
        return None
    b, K, N, R = operands
    off = 128 if ctx.inputs[0].dtype.short == "i8" else 0
    az = int(ctx.attrs.get("a_zero", 0))
    bt = np.ascontiguousarray(np.asarray(b, np.int8).T)  # [N][K]
    out = _Output(ctx, bt, az, off)
    if not out.ok:
        return None
    KQ = -(-K // 4)
    fits = [t for t in TILES if t[0] * KQ * 4 + t[0] * t[1] * 128 <= ctx.config.vtcm_bytes]
    if not fits:
        raise PdcError(f"{ctx.node.describe()}: the HVX matrix product needs {KQ * 4 + 12 * 128:,} bytes of VTCM for "
                       f"one row, more than the target's {ctx.config.vtcm_bytes:,} (pick a part with more VTCM: "
                       f"--vtcm SIZE)")
    mr, nv = min(fits, key=lambda t: _cost(R, N, *t))
    nblk = -(-N // (LANES * nv))
    cols = nblk * nv * LANES
    w = np.zeros((cols, KQ * 4), np.int8)
    w[:N, :K] = bt
    packed = w.reshape(nblk, nv, LANES, KQ, 4).transpose(0, 3, 1, 2, 4)  # [NBLK][KQ][NV][32][4]
    bias, scale = out.tables(ctx, np.array([n if n < N else -1 for n in range(cols)]))
    ctx.helper("pdc_hx_hvx", HVX)
    ukr, code = _ukr(mr, nv)
    ctx.helper(ukr, code)
    ap = ctx.vtcm(mr * KQ * 4)
    tile = ctx.vtcm(mr * nv * 128)
    ty = "int32_t" if out.y32 else "uint8_t"
    value = "cr[i * {0} + l]".format(nv * LANES)
    if not out.y32:
        value = f"pdc_hx_rq({value}, scale[c0 + l], lo_, hi_, {out.yz})"
    L = ["    const uint8_t *a = (const uint8_t *)in0;",
         f"    {ty} *y = ({ty} *)out0;",
         "    (void)in1;" + (" (void)in2;" if ctx.has_input(2) else ""),
         f"    uint8_t *ap = {ap};",
         f"    HVX_Vector *tile = (HVX_Vector *){tile};",
         "    const int32_t *ct = (const int32_t *)tile;",
         f"    const uint8_t *wp = (const uint8_t *){add_weight(ctx, np.ascontiguousarray(packed).reshape(-1), 'int8_t')};",
         f"    const int32_t *bias = {bias};",
         f"    const float *scale = {scale};",
         "    (void)scale;",
         *out.clamp_lines(),
         f"    for (int32_t r0 = 0; r0 < {R}; r0 += {mr}) {{",
         f"        const int32_t rows = {R} - r0 < {mr} ? {R} - r0 : {mr};",
         f"        memset(ap, 0, {mr * KQ * 4});",
         "        for (int32_t i = 0; i < rows; i++)",
         f"            for (int32_t k = 0; k < {K}; k++) ap[i * {KQ * 4} + k] = a[(int64_t)(r0 + i) * {K} + k] ^ {off};",
         f"        for (int32_t nb = 0; nb < {nblk}; nb++) {{",
         f"            const int32_t c0 = nb * {nv * LANES}, ncol = {N} - c0 < {nv * LANES} ? {N} - c0 : {nv * LANES};",
         f"            {ukr}((const int32_t *)ap, {KQ}, wp + (int64_t)nb * {KQ * nv * 128}, bias + c0, tile);",
         "            for (int32_t i = 0; i < rows; i++) {",
         "                const int32_t *restrict cr = ct;",
         f"                {ty} *restrict yr = y + (int64_t)(r0 + i) * {N} + c0;",
         "                int32_t l = 0;",
         "                for (; l + 4 <= ncol; l += 4) {  /* loaded before stored: the conversions overlap */",
         "                    const int32_t " + ", ".join(f"r{e} = " + value.replace("+ l", f"+ l + {e}") for e in range(4)) + ";",
         f"                    yr[l] = ({ty})r0; yr[l + 1] = ({ty})r1; yr[l + 2] = ({ty})r2; yr[l + 3] = ({ty})r3;",
         "                }",
         f"                for (; l < ncol; l++) yr[l] = ({ty}){value};",
         "            }",
         "        }",
         "    }"]
    return mark("qmatmul", "hvx", "\n".join(L))
