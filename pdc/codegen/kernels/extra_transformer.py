"""Kernels of the opset 23-28 transformer ops: swiglu and rotary_embedding.

Half precision computes in float and rounds once on store, like the references. rotary_embedding
reads position_ids at run time; the reference rejects an id outside the cache, the kernel cannot
report errors and copies such a row unrotated instead (memory-safe).
"""
from __future__ import annotations

from ...ir.ops.extra_transformer import rope_geometry
from ..context import KernelContext, numel
from ..ctypes_c import float_literal
from . import kernel
from ._axis import Num


@kernel("swiglu")
def swiglu(ctx: KernelContext) -> str:
    num = Num(ctx.inputs[0].dtype)
    ct, f = num.ct, num.f
    alpha = float_literal(ctx.attrs.get("alpha", 1.0), ct)
    n = numel(ctx.outputs[0])
    return (f"    for (int64_t i = 0; i < {n}; i++) {{\n"
            f"        const {ct} a = {num.load('in0[i]')}, b = {num.load('in1[i]')};\n"
            f"        const {ct} z = {alpha} * a, e = exp{f}(-fabs{f}(z));\n"
            f"        const {ct} sig = z >= 0 ? 1 / (1 + e) : e / (1 + e);\n"
            f"        out0[i] = {num.store('a * sig * b')};\n"
            f"    }}")


@kernel("rotary_embedding")
def rotary_embedding(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    num = Num(x.dtype)
    ct = num.ct
    batch, heads, seq, head, rot = rope_geometry(x.shape, ctx.attrs, ctx.fail)
    half = rot // 2
    if numel(x) == 0:
        return "    (void)in0; (void)in1; (void)in2; (void)out0;" + (" (void)in3;" if ctx.has_input(3) else "")
    # the element offset of row (b, h, s) of X and Y in either layout
    row = f"((b * {heads} + h) * {seq} + s) * {head}" if len(x.shape) == 4 else \
        f"((b * {seq} + s) * {heads} + h) * {head}"
    if ctx.has_input(3):
        max_pos = ctx.inputs[1].shape[0]
        cache = (f"const int64_t p = in3[b * {seq} + s];\n"
                 f"                if (p < 0 || p >= {max_pos}) {{ for (int64_t i = 0; i < {head}; i++) y[i] = x[i]; "
                 f"continue; }} /* out of range: unrotated */\n"
                 f"                const int64_t c0 = p * {half};")
    else:
        cache = f"const int64_t c0 = (b * {seq} + s) * {half};"
    if ctx.attrs.get("interleaved", 0):
        i1, i2 = "2 * i", "2 * i + 1"
    else:
        i1, i2 = "i", f"i + {half}"
    return f"""    for (int64_t b = 0; b < {batch}; b++)
        for (int64_t h = 0; h < {heads}; h++)
            for (int64_t s = 0; s < {seq}; s++) {{
                const {num.c} *x = in0 + {row};
                {num.c} *y = out0 + {row};
                {cache}
                for (int64_t i = 0; i < {half}; i++) {{
                    const {ct} c = {num.load('in1[c0 + i]')}, sn = {num.load('in2[c0 + i]')};
                    const {ct} x1 = {num.load(f'x[{i1}]')}, x2 = {num.load(f'x[{i2}]')};
                    y[{i1}] = {num.store('c * x1 - sn * x2')};
                    y[{i2}] = {num.store('sn * x1 + c * x2')};
                }}
                for (int64_t i = {rot}; i < {head}; i++) y[i] = x[i];
            }}"""
