"""conv and fused_conv on the device: NCHW float32, 1-D / 2-D / 3-D, strides, asymmetric pads,
dilations, groups, optional bias, batch, weights constant or not (auto_pad, which the importer
keeps, is resolved here by ConvGeom).

Every float32 buffer (input, weights, bias, residual, output) is in the storage type pdc_f32s,
read through PDC_LD and written through PDC_ST (half under --precision fp16, _matrix.py); the
registers, the __local slabs and the arithmetic are float.

Paths, chosen from the layer's shape (PDC_FORCE_PATH="opencl-conv=<path>" forces one where it
can compute the layer; "direct" computes every layer):

- "opencl/conv-direct": a work-item computes MT output channels x PT adjacent pixels of an output
  row; per input row the (PT - 1) * stride + span values it reads sit in registers, reused by
  every kernel tap along the row and every channel.
- "opencl/conv-depthwise" (one input channel per group): the direct kernel specialized to it
  (no channel loop, 8 pixels x up to 4 channels of the group's multiplier per work-item).
- "opencl/conv-1x1-gemm" (1x1, stride 1, unpadded): per image and group, the weights (Mg x Cg)
  times the input planes (Cg x pixels), the tiled matrix product of _matrix.py.
- "opencl/conv-tiled": the same tiled product reading the input through an implicit im2col (the
  element of tap k and pixel p gathered into __local).

The matrix-product paths take layers whose tile is deep (K = Cg x taps >= 32) and tall (Mg >= 16)
over a small image (16..1024 output pixels): there they ran up to 2-3x faster than the direct
kernel on PoCL, which won on the first layers (K = 27, 147) and on the large images of
mobilenet_v2's pointwise and resnet18's 56x56 layers. Every path ends in the node's epilogue:
bias, + R before the activation, the activation, + R after.
"""
from __future__ import annotations

import math
from typing import Optional

from ...context import KernelContext
from .. import kernel
from ..conv_geometry import ConvGeom
from ..epilogue import Epilogue
from ..paths import declare, take
from . import OPENCL, DeviceKernel, Launch, round_up
from ._matrix import MatrixProduct, choose_tile, epilogue_lines, f32_pointer, indent, kernel_params, ld, st, tiled

FAMILY = "opencl-conv"
declare(FAMILY, "direct", "depthwise", "1x1-gemm", "tiled")


class Layer:
    """The conv's geometry with the C spellings every path shares."""

    def __init__(self, ctx: KernelContext, g: ConvGeom, epi: Epilogue):
        self.ctx, self.g, self.epi = ctx, g, epi
        self.has_bias = len(ctx.inputs) > 2 and ctx.inputs[2] is not None

    def prologue(self, bt: str) -> list[str]:
        """`img` and `g` (the group) of the flat index bt = img * group + g."""
        G = self.g.group
        if G == 1:
            return [f"const int img = {bt}, g = 0;"]
        return [f"const int img = {bt} / {G}, g = {bt} % {G};"]

    def store(self, v: str, m: str, p: str) -> list[str]:
        """Statements storing v, the sum of output channel m of group g at output pixel p of img."""
        g = self.g
        ch = f"g * {g.mg} + {m}" if g.group > 1 else m
        idx = f"(img * {g.m} + {ch}) * {g.p_out} + {p}"
        lines = [f"{v} += {ld('in2', ch)};"] if self.has_bias else []
        return lines + epilogue_lines(self.ctx, self.epi, v, idx) + [st("out0", idx, v)]

    def needs_check(self, axis: int, out_extent: Optional[int] = None) -> tuple[bool, bool]:
        """Whether the input index along spatial axis (0..2 of D, H, W) can fall below 0 / past
        the end, for output indices up to out_extent - 1."""
        g = self.g
        o = g.out_sp[axis] if out_extent is None else out_extent
        last = (o - 1) * g.strides[axis] - g.begin[axis] + (g.kernel[axis] - 1) * g.dilations[axis]
        return g.begin[axis] > 0, last >= g.in_sp[axis]


def range_check(var: str, size: int, lo_hi: tuple[bool, bool]) -> str:
    """The C condition that `var` is out of [0, size), as far as it can be (empty: never)."""
    lo, hi = lo_hi
    c = ([f"{var} < 0"] if lo else []) + ([f"{var} >= {size}"] if hi else [])
    return " || ".join(c)


# ---- direct: MT channels x PT pixels of a row per work-item --------------------------------------------
def direct(L: Layer, fn: str, MT: int, PT: int) -> tuple[str, Launch]:
    g = L.g
    D, H, W = g.in_sp
    OD, OH, OW = g.out_sp
    KD, KH, KW = g.kernel
    sd, sh, sw = g.strides
    dd, dh, dw = g.dilations
    pd, ph, pw = g.begin
    MT, PT = min(MT, g.mg), min(PT, OW)
    nowb, nmb = -(-OW // PT), -(-g.mg // MT)
    npb = OD * OH * nowb
    K = g.k
    seg = (PT - 1) * sw + (KW - 1) * dw + 1
    unroll = seg <= 64 and KW * MT * PT <= 512  # the row segment in registers, the taps along it unrolled
    names, params = kernel_params(L.ctx)
    b = ["const int pb = get_global_id(0);",
         f"if (pb >= {npb}) return;",
         "const int img = get_global_id(2), g = get_global_id(1)" + (f" / {nmb};" if nmb > 1 else ";"),
         f"const int m0 = (get_global_id(1) % {nmb}) * {MT};" if nmb > 1 else "const int m0 = 0;",
         f"const int ow0 = (pb % {nowb}) * {PT}, row = pb / {nowb};",
         f"const int oh = row % {OH}, od = row / {OH};",
         f"const int id0 = od * {sd} - {pd}, ih0 = oh * {sh} - {ph}, iw0 = ow0 * {sw} - {pw};",
         f"{f32_pointer(True)}xg = in0 + (img * {g.c} + g * {g.cg}) * {g.p_in};",
         f"{f32_pointer(True)}wg = in1 + g * {g.mg * K};"]
    # weight rows past the group's channels read the last one (their sums are never stored)
    for i in range(MT):
        row = f"m0 + {i}" if g.mg % MT == 0 else f"min(m0 + {i}, {g.mg - 1})"
        b.append(f"const int wo{i} = ({row}) * {K};")
    b += [f"float s{i}_{j} = 0.0f;" for i in range(MT) for j in range(PT)]
    cd = range_check("id", D, L.needs_check(0))
    chh = range_check("ih", H, L.needs_check(1))
    cw_lo, cw_hi = L.needs_check(2, nowb * PT)
    loop = [f"for (int ci = 0; ci < {g.cg}; ci++)", f"for (int kd = 0; kd < {KD}; kd++) {{",
            f"    const int id = id0 + kd * {dd};"]
    if cd:
        loop.append(f"    if ({cd}) continue;")
    loop += [f"    for (int kh = 0; kh < {KH}; kh++) {{", f"        const int ih = ih0 + kh * {dh};"]
    if chh:
        loop.append(f"        if ({chh}) continue;")
    loop += [f"        {f32_pointer(True)}xr = xg + ((ci * {D} + id) * {H} + ih) * {W} + iw0;",
             f"        const int wt = ((ci * {KD} + kd) * {KH} + kh) * {KW};"]
    inner = []

    def xload(off: str, iw: str) -> str:
        c = range_check(iw, W, (cw_lo, cw_hi))
        return f"({c}) ? 0.0f : {ld('xr', off)}" if c else ld("xr", off)

    if unroll:
        inner += [f"const float x{s} = {xload(str(s), f'iw0 + {s}')};" for s in range(seg)]
        for kw in range(KW):
            inner += [f"{{ const float w{i} = {ld('wg', f'wo{i} + wt + {kw}')};" for i in range(MT)]
            inner += [f"  s{i}_{j} += w{i} * x{j * sw + kw * dw};" for i in range(MT) for j in range(PT)]
            inner += ["}" * MT]
    else:
        inner.append(f"for (int kw = 0; kw < {KW}; kw++) {{")
        inner += [f"    const float w{i} = {ld('wg', f'wo{i} + wt + kw')};" for i in range(MT)]
        for j in range(PT):
            off = f"{j * sw} + kw * {dw}"
            inner.append(f"    {{ const float x = {xload(off, f'(iw0 + {off})')};")
            inner += [f"      s{i}_{j} += w{i} * x;" for i in range(MT)]
            inner.append("    }")
        inner.append("}")
    loop += ["        " + x for x in inner] + ["    }", "}"]
    b += loop
    for i in range(MT):
        for j in range(PT):
            cond = [c for c in (f"m0 + {i} < {g.mg}" if g.mg % MT else "",
                                f"ow0 + {j} < {OW}" if OW % PT else "") if c]
            st = [f"float v = s{i}_{j};"] + L.store("v", f"(m0 + {i})", f"row * {OW} + ow0 + {j}")
            if cond:
                b += [f"if ({' && '.join(cond)}) {{"] + ["    " + x for x in st] + ["}"]
            else:
                b += ["{"] + ["    " + x for x in st] + ["}"]
    lx = min(64, 1 << max(0, math.ceil(math.log2(npb))))
    src = f"__kernel void {fn}({params})\n{{\n{indent(b, 4)}}}\n"
    return src, Launch(fn, tuple(names), (round_up(npb, lx), g.group * nmb, g.n), (lx, 1, 1))


# ---- the matrix-product paths ------------------------------------------------------------------------
def pointwise_product(L: Layer) -> MatrixProduct:
    g = L.g
    pro = L.prologue("bt") + [f"{f32_pointer(True)}xg = in0 + (img * {g.c} + g * {g.cg}) * {g.p_in};",
                              f"{f32_pointer(True)}wg = in1 + g * {g.mg * g.cg};"]
    return MatrixProduct(g.mg, g.p_out, g.cg, g.n * g.group,
                         a_elem=lambda m, k: ld("wg", f"{m} * {g.cg} + {k}"),
                         b_elem=lambda k, p: ld("xg", f"{k} * {g.p_in} + {p}"),
                         store=L.store, prologue=pro)


def im2col_product(L: Layer, fn: str) -> tuple[MatrixProduct, str]:
    """The product of the weights and the implicit im2col of the input (B[k][p]: input channel
    and tap k, output pixel p), and the helper that gathers one element of it."""
    g = L.g
    D, H, W = g.in_sp
    OD, OH, OW = g.out_sp
    KD, KH, KW = g.kernel
    pro = L.prologue("bt") + [f"{f32_pointer(True)}xg = in0 + (img * {g.c} + g * {g.cg}) * {g.p_in};",
                              f"{f32_pointer(True)}wg = in1 + g * {g.mg * g.k};"]
    # a padded column (p >= the pixels) computes indices that the load's guard never uses
    checks = [range_check(v, n, L.needs_check(a)) for a, (v, n) in enumerate((("id", D), ("ih", H), ("iw", W)))]
    checks = " || ".join(c for c in checks if c)
    helper = (f"static inline float {fn}_x({f32_pointer(True)}restrict x, int k, int id0, int ih0, int iw0)\n{{\n"
              f"    const int ci = k / {g.taps}, t = k % {g.taps};\n"
              f"    const int id = id0 + t / {KH * KW} * {g.dilations[0]},"
              f" ih = ih0 + t / {KW} % {KH} * {g.dilations[1]}, iw = iw0 + t % {KW} * {g.dilations[2]};\n"
              + (f"    if ({checks}) return 0.0f;\n" if checks else "")
              + f"    return {ld('x', f'((ci * {D} + id) * {H} + ih) * {W} + iw')};\n}}\n")

    def column(p: str) -> list[str]:
        return [f"const int ow_ = {p} % {OW}, oh_ = {p} / {OW} % {OH}, od_ = {p} / {OW * OH};",
                f"const int id0_ = od_ * {g.strides[0]} - {g.begin[0]}, ih0_ = oh_ * {g.strides[1]} - {g.begin[1]}, "
                f"iw0_ = ow_ * {g.strides[2]} - {g.begin[2]};"]

    mp = MatrixProduct(g.mg, g.p_out, g.k, g.n * g.group,
                       a_elem=lambda m, k: ld("wg", f"{m} * {g.k} + {k}"),
                       b_elem=lambda k, p: f"{fn}_x(xg, {k}, id0_, ih0_, iw0_)",
                       store=L.store, prologue=pro, b_column=column)
    return mp, helper


def device_kernel(src: str, launch: Launch, path: str) -> DeviceKernel:
    """The node's kernel, its path named on its first line as the C kernels do (paths.mark)."""
    return DeviceKernel(f"/* path: {FAMILY}/{path} */\n{src}", [launch], path=f"opencl/conv-{path}")


# ---- the generator ---------------------------------------------------------------------------------------
def device_layer(ctx: KernelContext) -> Optional[Layer]:
    """The conv a device kernel can compute (float32, 1-3 spatial dims, an epilogue it fuses), or None."""
    if any(t is not None and t.dtype.short != "f32" for t in ctx.inputs + ctx.outputs):
        return None
    x, w = ctx.inputs[0], ctx.inputs[1]
    if not 1 <= len(x.shape) - 2 <= 3:
        return None
    epi = Epilogue(ctx)
    if not epi.supported:
        return None
    return Layer(ctx, ConvGeom(x.shape, w.shape, ctx.attrs), epi)


@kernel("conv", "fused_conv", family=OPENCL)
def conv(ctx: KernelContext) -> Optional[DeviceKernel]:
    L = device_layer(ctx)
    if L is None:
        return None
    g, fn = L.g, ctx.fn_name
    if math.prod(ctx.outputs[0].shape) == 0:
        return DeviceKernel("", [], path="opencl/conv-direct")  # nothing to compute
    # the matrix-product paths pay for staging slabs in __local memory: they win (on PoCL) where a
    # work-group's tile is deep (K) and tall (Mg) and the image small; the direct kernel elsewhere
    fills = g.mg >= 16 and g.k >= 32 and 16 <= g.p_out <= 1024
    if g.cg == 1 and g.group > 1 and take(FAMILY, "depthwise"):
        src, launch = direct(L, f"{fn}_dw", MT=4, PT=8)
        return device_kernel(src, launch, "depthwise")
    if g.pointwise and take(FAMILY, "1x1-gemm", fills):
        mp = pointwise_product(L)
        src, launch = tiled(ctx, f"{fn}_pw", mp, choose_tile(mp.M, mp.N, mp.K))
        return device_kernel(src, launch, "1x1-gemm")
    if take(FAMILY, "tiled", fills):
        mp, helper = im2col_product(L, fn)
        src, launch = tiled(ctx, f"{fn}_tiled", mp, choose_tile(mp.M, mp.N, mp.K))
        return device_kernel(helper + src, launch, "tiled")
    src, launch = direct(L, f"{fn}_direct", MT=8, PT=8 if g.OW >= 14 else 4)
    return device_kernel(src, launch, "direct")
