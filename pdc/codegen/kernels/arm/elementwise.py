"""ARM elementwise kernels (fp32): add, sub, mul, max, min (div on AArch64), relu, clip, leaky_relu,
hard_sigmoid, neg, abs.

The output is walked as `outer` runs of `inner` contiguous elements, `inner` being the longest
trailing block over which every operand is either contiguous (same shape as the output there) or
one broadcast value; the runs are 4-wide vector loops with a scalar tail. Shapes where that
block is shorter than a vector are left to the portable kernel. An output may alias an input
(in-place ops): each element is read before it is written.
"""
from __future__ import annotations

import math
from typing import Optional

from ...context import KernelContext, broadcast_strides, strides
from ..activations import act_expr
from ..epilogue import c_float
from .vector import arm_kernel, base, is_f32, simd_of

BINARY_V = {"add": "pdc_vadd(a, b)", "sub": "pdc_vsub(a, b)", "mul": "pdc_vmul(a, b)",
            "max": "pdc_vmax(a, b)", "min": "pdc_vmin(a, b)", "div": "vdivq_f32(a, b)"}
BINARY_S = {"add": "a + b", "sub": "a - b", "mul": "a * b", "max": "pdc_fmaxn(a, b)", "min": "pdc_fminn(a, b)",
            "div": "a / b"}


def _runs(out_shape, in_shapes) -> tuple[int, list[list[int]], list[bool]]:
    """(inner, per-operand strides over the outer dims, per-operand 'one value over the run')."""
    out_st = strides(out_shape)
    sts = [broadcast_strides(s, out_shape) for s in in_shapes]
    kinds: list[Optional[bool]] = [None] * len(in_shapes)  # True: broadcast, False: contiguous
    split = len(out_shape)
    while split > 0:
        d = split - 1
        new = list(kinds)
        for i, st in enumerate(sts):
            if out_shape[d] == 1:
                continue
            kind = True if st[d] == 0 else (False if st[d] == out_st[d] else None)
            if kind is None or (new[i] is not None and new[i] != kind):
                break
            new[i] = kind
        else:
            kinds, split = new, d
            continue
        break
    return math.prod(out_shape[split:]), [st[:split] for st in sts], [k is True for k in kinds]


def _loop(ctx: KernelContext, operands: list[int], vexpr: str, sexpr: str, prelude: list[str]) -> Optional[str]:
    out = ctx.outputs[0].shape
    shapes = [ctx.inputs[i].shape for i in operands]
    inner, outer_st, bcast = _runs(out, shapes)
    total = math.prod(out)
    if total == 0 or inner < 4:
        return None
    base(ctx)
    outer = total // inner
    names = "ab"
    split = len(outer_st[0])
    L = list(prelude)
    L.append(f"for (int64_t u = 0; u < {outer}; u++) {{")
    # operand offsets of run u from its outer coordinates (static divisors)
    L.append("    int64_t r = u;" + "".join(f" int64_t o{names[i]} = 0;" for i in range(len(operands))))
    for d in reversed(range(split)):
        if out[d] == 1:
            continue
        L.append(f"    {{ const int64_t q = r % {out[d]}; r /= {out[d]};"
                 + "".join(f" o{names[i]} += q * {outer_st[i][d]};" for i in range(len(operands))) + " }")
    L.append("    (void)r;")
    for i, idx in enumerate(operands):
        L.append(f"    const float *p{names[i]} = in{idx} + o{names[i]};")
    L.append(f"    float *py = out0 + u * {inner};")
    L.append("    int64_t i = 0;")
    L.append("#if PDC_V")
    for i in range(len(operands)):
        if bcast[i]:
            L.append(f"    const pdc_v4 v{names[i]} = pdc_vdup(p{names[i]}[0]);")
    L.append(f"    for (; i + 4 <= {inner}; i += 4) {{")
    for i in range(len(operands)):
        src = f"v{names[i]}" if bcast[i] else f"pdc_vld(p{names[i]} + i)"
        L.append(f"        const pdc_v4 {names[i]} = {src};")
    L.append(f"        pdc_vst(py + i, {vexpr});")
    L.append("    }")
    L.append("#endif")
    L.append(f"    for (; i < {inner}; i++) {{")
    for i in range(len(operands)):
        L.append(f"        const float {names[i]} = p{names[i]}[{'0' if bcast[i] else 'i'}];")
    L.append(f"        py[i] = {sexpr};")
    L.append("    }")
    L.append("}")
    return "\n".join("    " + ln if not ln.startswith("#") else ln for ln in L)


@arm_kernel("add", "sub", "mul", "div", "max", "min")
def binary(ctx: KernelContext) -> Optional[str]:
    op = ctx.node.op
    if len(ctx.inputs) != 2 or not is_f32(*ctx.inputs, ctx.outputs[0]) or None in ctx.inputs:
        return None
    if op == "div" and simd_of(ctx) != "neon64":  # A32 NEON and Helium have no vector divide
        return None
    code = _loop(ctx, [0, 1], BINARY_V[op], BINARY_S[op], [])
    if code is not None and op == "div":  # vdivq_f32 is A64 only
        code = code.replace("#if PDC_V", "#if PDC_V && defined(__aarch64__)")
    return code


@arm_kernel("relu", "neg", "abs", "leaky_relu", "hard_sigmoid", "clip")
def unary(ctx: KernelContext) -> Optional[str]:
    op = ctx.node.op
    if not ctx.inputs or ctx.inputs[0] is None or not is_f32(ctx.inputs[0], ctx.outputs[0]):
        return None
    prelude: list[str] = []
    if op == "relu":
        vexpr, sexpr = "pdc_vmax(a, pdc_vdup(0.0f))", act_expr(ctx, "relu")
    elif op == "neg":
        vexpr, sexpr = "pdc_vneg(a)", "-a"
    elif op == "abs":
        vexpr, sexpr = "pdc_vabs(a)", "fabsf(a)"
    elif op == "leaky_relu":
        al = c_float(ctx.attrs.get("alpha", 0.01))
        vexpr, sexpr = f"pdc_vsel(pdc_vge0(a), a, pdc_vmul(a, pdc_vdup({al})))", act_expr(ctx, "leaky_relu", alpha=al)
    elif op == "hard_sigmoid":
        al, be = c_float(ctx.attrs.get("alpha", 0.2)), c_float(ctx.attrs.get("beta", 0.5))
        vexpr = f"pdc_vclamp(pdc_vadd(pdc_vmul(a, pdc_vdup({al})), pdc_vdup({be})), pdc_vdup(0.0f), pdc_vdup(1.0f))"
        sexpr = act_expr(ctx, "hard_sigmoid", alpha=al, beta=be)
    else:  # clip: bounds are optional scalar inputs, read once
        for i in (1, 2):
            if ctx.has_input(i) and (ctx.inputs[i].dtype.short != "f32" or ctx.inputs[i].numel != 1):
                return None
        lo = "in1[0]" if ctx.has_input(1) else "-INFINITY"
        hi = "in2[0]" if ctx.has_input(2) else "INFINITY"
        prelude = [f"const float lo = {lo}, hi = {hi};",
                   "#if PDC_V", "const pdc_v4 vlo = pdc_vdup(lo), vhi = pdc_vdup(hi);", "#endif"]
        vexpr, sexpr = "pdc_vmin(pdc_vmax(a, vlo), vhi)", "pdc_fminn(pdc_fmaxn(a, lo), hi)"
    return _loop(ctx, [0], vexpr, sexpr, prelude)
