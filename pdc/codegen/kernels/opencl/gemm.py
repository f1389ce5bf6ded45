"""gemm, fused_gemm, matmul and fused_matmul on the device (float32, stored as pdc_f32s: half
under --precision fp16, read and written through PDC_LD / PDC_ST, computed in float).

gemm: alpha * A' B' + beta * C (transA / transB, C absent, a scalar, a row, a column or full);
matmul: numpy.matmul (1-D operands, broadcast batch dims). The fused forms add the epilogue
(pdc/ir/ops/fused_conv.py): + R before the activation, the activation, + R after it; fused_matmul
first adds its Bias, one value per index of the output's last axis.

Paths (_matrix.py): "opencl/gemm-tiled" (__local slabs, a register block per work-item) for
products with some size in both M and N; "opencl/gemm-simple" (a work-item per output) for
tiny ones and single rows or columns, where a tile would be mostly padding.
"""
from __future__ import annotations

import math
from typing import Optional

from ...context import KernelContext, broadcast_strides
from .. import kernel
from ..epilogue import Epilogue
from ..paths import declare, take
from . import OPENCL, DeviceKernel
from ._matrix import MatrixProduct, choose_tile, epilogue_lines, flt, ld, simple, st, tiled

FAMILY = "opencl-gemm"
declare(FAMILY, "tiled", "simple")


def _f32(ctx: KernelContext) -> bool:
    return all(t is None or t.dtype.short == "f32" for t in ctx.inputs + ctx.outputs)


def batch_offset(bt: str, batch: tuple, strides: list) -> str:
    """The C expression of an operand's element offset for the flat batch index bt (its batch
    strides, 0 on broadcast dims)."""
    if not batch or not any(strides):
        return "0"
    terms, inner = [], 1
    full = math.prod(batch)
    for d, stride in zip(reversed(batch), reversed(strides)):
        if stride:
            idx = bt if inner == 1 else f"({bt} / {inner})"
            if inner * d < full:
                idx = f"({idx} % {d})"
            terms.append(f"{idx} * {stride}")
        inner *= d
    return " + ".join(reversed(terms))


def product_kernel(ctx: KernelContext, mp: MatrixProduct) -> Optional[DeviceKernel]:
    """The device kernel of a product: tiled where both M and N fill a tile, simple otherwise."""
    if any(math.prod(t.shape) == 0 for t in ctx.outputs):
        return DeviceKernel("", [], path="opencl/gemm-simple")  # nothing to compute
    big = mp.M >= 8 and mp.N >= 8 and mp.M * mp.N * mp.batch >= 1024 and mp.K >= 4
    if take(FAMILY, "tiled", big):
        path = "tiled"
        src, launch = tiled(ctx, f"{ctx.fn_name}_tiled", mp, choose_tile(mp.M, mp.N, mp.K))
    else:
        path = "simple"
        src, launch = simple(ctx, f"{ctx.fn_name}_simple", mp)
    return DeviceKernel(f"/* path: {FAMILY}/{path} */\n{src}", [launch], path=f"opencl/gemm-{path}")


@kernel("gemm", "fused_gemm", family=OPENCL)
def gemm(ctx: KernelContext) -> Optional[DeviceKernel]:
    mp = gemm_product(ctx)
    return None if mp is None else product_kernel(ctx, mp)


@kernel("matmul", "fused_matmul", family=OPENCL)
def matmul(ctx: KernelContext) -> Optional[DeviceKernel]:
    mp = matmul_product(ctx)
    return None if mp is None else product_kernel(ctx, mp)


def gemm_product(ctx: KernelContext) -> Optional[MatrixProduct]:
    """A gemm / fused_gemm as a MatrixProduct (None: not float32, or an epilogue none fuses)."""
    if not _f32(ctx):
        return None
    epi = Epilogue(ctx)
    if not epi.supported:
        return None
    ta, tb = int(ctx.attrs.get("transA", 0) or 0), int(ctx.attrs.get("transB", 0) or 0)
    alpha, beta = float(ctx.attrs.get("alpha", 1.0)), float(ctx.attrs.get("beta", 1.0))
    M, K = ctx.inputs[0].shape[::-1] if ta else ctx.inputs[0].shape
    N = ctx.inputs[1].shape[0] if tb else ctx.inputs[1].shape[1]
    c = ctx.inputs[2] if len(ctx.inputs) > 2 and beta != 0 else None
    rs, cs = broadcast_strides(c.shape, (M, N)) if c is not None else (0, 0)

    def put(v, m, n):
        e = v if alpha == 1 else f"{v} * {flt(alpha)}"
        if c is not None:
            cidx = " + ".join(x for x in (f"{m} * {rs}" if rs else "", f"{n} * {cs}" if cs else "") if x) or "0"
            e = f"{e} + " + (ld("in2", cidx) if beta == 1 else f"{flt(beta)} * {ld('in2', cidx)}")
        lines = [f"{v} = {e};"] if e != v else []
        return lines + epilogue_lines(ctx, epi, v, f"{m} * {N} + {n}") + [st("out0", f"{m} * {N} + {n}", v)]

    return MatrixProduct(
        M, N, K, 1,
        a_elem=lambda m, k: ld("in0", f"{k} * {M} + {m}" if ta else f"{m} * {K} + {k}"),
        b_elem=lambda k, n: ld("in1", f"{n} * {K} + {k}" if tb else f"{k} * {N} + {n}"),
        store=put, a_kmajor=bool(ta), b_kmajor=bool(tb))


def matmul_product(ctx: KernelContext) -> Optional[MatrixProduct]:
    """A matmul / fused_matmul as a MatrixProduct (None: not float32, or an epilogue none fuses)."""
    if not _f32(ctx):
        return None
    epi = Epilogue(ctx)
    if not epi.supported:
        return None
    a_shape, b_shape = tuple(ctx.inputs[0].shape), tuple(ctx.inputs[1].shape)
    a2 = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b2 = b_shape + (1,) if len(b_shape) == 1 else b_shape
    M, K, N = a2[-2], a2[-1], b2[-1]
    out = tuple(ctx.outputs[0].shape)
    nb = len(out) - (len(a_shape) > 1) - (len(b_shape) > 1)
    batch = out[:nb]
    a_st = [s * M * K for s in broadcast_strides(a2[:-2], batch)] if batch else []
    b_st = [s * K * N for s in broadcast_strides(b2[:-2], batch)] if batch else []
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    last = "n" if len(b_shape) > 1 else "m"  # the output's last axis: the columns, or A's rows
    prologue = [f"const int ao = {batch_offset('bt', batch, a_st)}, bo = {batch_offset('bt', batch, b_st)};",
                f"const int co = bt * {M * N};"]

    def put(v, m, n):
        lines = []
        if bias is not None:
            lines.append(f"{v} += {ld('in2', m if last == 'm' else n)};")
        idx = f"co + {m} * {N} + {n}"
        return lines + epilogue_lines(ctx, epi, v, idx) + [st("out0", idx, v)]

    return MatrixProduct(
        M, N, K, max(1, math.prod(batch)),
        a_elem=lambda m, k: ld("in0", f"ao + {m} * {K} + {k}"),
        b_elem=lambda k, n: ld("in1", f"bo + {k} * {N} + {n}"),
        store=put, prologue=prologue)
