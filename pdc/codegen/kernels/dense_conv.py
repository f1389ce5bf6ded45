"""Convolution kernels: conv and fused_conv (NCHW, 1-D/2-D/3-D, groups, dilations, strides, pads,
auto_pad), conv_transpose and conv_integer.

fp32 conv runs as a GEMM per (image, group) (dense_core): M = output channels of the group, N =
output pixels, K = C/group x kernel taps, with the weights packed at compile time. Depthwise
layers run dense_depthwise's kernels, anything else im2col into a per-thread panel buffer (C
helpers in dense_conv_c). A target family may add paths for the layers it has faster code for:
x86/conv.py (AVX-512: small outputs, in-place pointwise, padded input bands), arm/conv.py.
Other dtypes, ConvTranspose and ConvInteger use direct loops specialized to the layer's shape.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..context import KernelContext
from . import kernel
from .conv_geometry import ConvGeom
from .dense_conv_c import IM2COL_C, copy_helpers
from .dense_core import (PARALLEL_MIN_MACS, add_weight, bias_ptr, c_float, choose_split, choose_tile, isa_of, lanes,
                         n_chunk, pack_a_panels, render_job, ukernel, uses_all)
from .dense_depthwise import depthwise_f32
from .epilogue import Epilogue
from .paths import declare, mark, take

declare("conv", "im2col", "direct", "depthwise-flat", "depthwise-rows", "gemv")


# ---- fp32: the depthwise kernels, else im2col ----------------------------------------------------------
def depthwise(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> Optional[str]:
    """The depthwise kernels' body for a layer they take (fp32), else None: tried before any GEMM path."""
    if g.cg == 1 and g.mg == 1 and g.nsp <= 2:
        return depthwise_f32(ctx, g, epi, heuristic=g.group > 1 and g.taps <= 49)
    return None


def _conv_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    return depthwise(ctx, g, epi) or gemv(ctx, g, epi) or mark("conv", "im2col", _im2col_f32(ctx, g, epi))


# ---- one output pixel: a matrix-vector product per (image, group) ------------------------------------------
def layer_args(ctx: KernelContext) -> str:
    """Registers and names the argument struct of a one-pass layer kernel split over the thread pool
    (pdc_parallel_for): input, weights, bias, residual (each may be NULL but the input) and output."""
    ctx.helper("pdc_layer_args", "typedef struct { const float *x, *w, *b, *r; float *y; } pdc_layer_args;\n")
    return "pdc_layer_args"


GEMV_ROWS = 32  # output channels a block keeps in flight: 4 AVX2 vectors, 8 NEON ones
# A GEMV streams its weights (4 bytes a MAC) and reuses nothing: in a network they come from the outer
# caches or memory, so it pays for the threads' dispatch at a quarter of the other kernels' work
# (mobilenet_v3_large's squeeze-excitation FCs of 960 x 240: 21 us on one thread in the model)
GEMV_MIN_MACS = PARALLEL_MIN_MACS // 4


def gemv(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> Optional[str]:
    """conv/gemv, tried before the GEMM paths: a 1x1 conv of one pixel (squeeze-excitation's two
    FCs, a classifier written as a conv). A GEMM of one column pads it to a panel of 8 to 32; here
    the weights, packed at compile time as [K][32] per block of 32 output channels, stream once
    against the input vector, 32 sums in flight (vectorized by the compiler)."""
    w = ctx.const(1)
    if w is None or not g.pointwise or g.p_out != 1 or not take("conv", "gemv"):
        return None
    R, mb = GEMV_ROWS, -(-g.mg // GEMV_ROWS)
    packed = np.zeros((g.group, mb * R, g.k), np.float32)
    packed[:, :g.mg] = np.asarray(w, np.float32).reshape(g.group, g.mg, g.k)
    packed = np.ascontiguousarray(packed.reshape(g.group, mb, R, g.k).transpose(0, 1, 3, 2))
    args_t = layer_args(ctx)
    task = f"{ctx.fn_name}_gemv"
    post = epi.statements(ctx, "s", "float", "yi", lambda i: f"A->r[{i}]")
    ctx.helper(task, f"""static void {task}(void *vargs, int64_t i0, int64_t i1) {{
    const {args_t} *A = (const {args_t} *)vargs;
    for (int64_t it = i0; it < i1; it++) {{ /* one block of {R} output channels of one (image, group) */
        const int64_t n = it / {g.group * mb}, gi = it / {mb} % {g.group}, m0 = it % {mb} * {R};
        const float *x = A->x + n * {g.c} + gi * {g.cg};
        const float *w = A->w + (gi * {mb} + m0 / {R}) * {g.k * R};
        float acc[{R}];
        for (int j = 0; j < {R}; j++) acc[j] = 0;
        for (int64_t k = 0; k < {g.k}; k++) {{
            const float xk = x[k];
            for (int j = 0; j < {R}; j++) acc[j] += w[k * {R} + j] * xk;
        }}
        const int rows = {g.mg} - m0 < {R} ? (int)({g.mg} - m0) : {R};
        for (int j = 0; j < rows; j++) {{
            const int64_t yi = n * {g.m} + gi * {g.mg} + m0 + j;
            float s = acc[j] + (A->b ? A->b[gi * {g.mg} + m0 + j] : 0.0f);
            {" ".join(post)}
            A->y[yi] = s;
        }}
    }}
}}
""")
    items = g.n * g.group * mb
    args = f"{{in0, {add_weight(ctx, packed)}, {'in2' if ctx.has_input(2) else '0'}, {epi.r if epi.has_r else '0'}, out0}}"
    run = (f"pdc_parallel_for({items}, {task}, &args);" if ctx.split(g.n * g.m * g.k, GEMV_MIN_MACS)
           else f"{task}(&args, 0, {items});")
    return mark("conv", "gemv", f"    const {args_t} args = {args};\n    {run}")


def _im2col_f32(ctx: KernelContext, g: ConvGeom, epi: Epilogue) -> str:
    """The general path: any fp32 conv (1-D/2-D/3-D, runtime weights, every ISA)."""
    isa = isa_of(ctx)
    mr, nv = choose_tile(isa, g.mg, g.p_out)
    nr = nv * lanes(isa)
    ukr = ukernel(ctx, mr, nv)
    copy_helpers(ctx)
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
    kc = ctx.config.k_block(g.k)
    batch = g.n * g.group
    parallel, split_m = choose_split(batch, g.mg, g.p_out, g.k, mr, nr, ctx.config.threads, g.m * g.k * 4,
                                     b_runtime=True)
    post = None
    if not epi.fast:
        lines += epi.post_lines("in3", g.mg * g.p_out, g.p_out)
        post = "&post"
    fields = dict(batch=batch, M=g.mg, N=g.p_out, K=g.k, MR=mr, NR=nr, KC=kc, NC=n_chunk(ctx, kc, nr, g.p_out), ukr=ukr,
                  **a_fields, packb="pdc_im2col_pack", packb_ctx="&geo", c="out0", ldc=g.p_out, c_bs=g.mg * g.p_out,
                  bias_m=bias_ptr(ctx, 2, g.m), bm_bmod=g.group, bm_bs=g.mg,
                  res="in3" if epi.has_r and epi.residual == "before_activation" else None,
                  ldr=g.p_out, r_bs=g.mg * g.p_out, lo=c_float(epi.lo), hi=c_float(epi.hi), clamp=int(epi.clamp),
                  post=post, parallel=parallel, split_m=split_m)
    lines += render_job(ctx, fields)
    lines.append("    pdc_sgemm_run(&job);")
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
        stmts = epi.statements(ctx, s, ct, yi, r_load)
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


def conv_setup(ctx: KernelContext) -> Optional[tuple[ConvGeom, Epilogue]]:
    """The geometry and epilogue of a conv / fused_conv node; None when a dim is 0 (no work)."""
    if not _check_static(ctx):
        return None
    g = ConvGeom(ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.attrs)
    return g, Epilogue(ctx) if ctx.node.op == "fused_conv" else Epilogue.plain()


def _conv(ctx: KernelContext) -> str:
    setup = conv_setup(ctx)
    if setup is None:
        return "    (void)in0;"
    g, epi = setup
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
