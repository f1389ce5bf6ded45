"""Softmax, LogSoftmax and Hardmax along any axis (float32), OpenCL.

The input is seen as (outer, n, inner) around the axis: outer * inner rows of n elements, element
i of row r at (r / inner) * n * inner + r % inner + i * inner. Short rows take one work-item each
(neighbouring work-items read neighbouring columns when inner > 1); long rows one work-group each
with __local tree reductions (_rows.Rows). Numerics as pdc/ir/ops/nn.py: the row's max first
(NaN-sticky), a row whose max is not finite is all NaN (as ONNX Runtime gives), then exp(x - max)
summed; Hardmax puts its 1 at the first maximum, NaN counting as the maximum. Softmax stores
exp(x - max) and divides it in place with float storage; with half storage (--precision fp16) it
computes exp(x - max) again instead, so that the output is rounded to half once.

Paths: "opencl/softmax-item", "opencl/softmax-group".
"""
from __future__ import annotations

from ...context import KernelContext
from .. import kernel
from . import OPENCL, DeviceKernel
from ._rows import F32S, LONG_ROW, Rows, kernel_source, ld, prod, st

MANY_ROWS = 4096  # strided rows (inner > 1) this many keep one item each even when long: enough parallelism


def _rows(x_shape, axis: int) -> tuple[int, int, int, Rows]:
    outer, n, inner = prod(x_shape[:axis]), x_shape[axis], prod(x_shape[axis + 1:])
    count = outer * inner
    group = n >= LONG_ROW and (inner == 1 or count < MANY_ROWS)
    return outer, n, inner, Rows(count, n, group=group)


def _hardmax_tree(rows: Rows) -> str:
    """Combines (bv, bi) over the group: the first maximum, NaN counting as the maximum."""
    n, wg = rows.n, rows.wg
    return "\n".join([
        "redv[lid] = bv; redi[lid] = bi;",
        "barrier(CLK_LOCAL_MEM_FENCE);",
        f"for (int off = {wg // 2}; off > 0; off >>= 1) {{",
        "    if (lid < off) {",
        "        const float ra = redv[lid], rb = redv[lid + off];",
        f"        const {rows.it} ia = redi[lid], ib = redi[lid + off];",
        "        const int better = (rb > ra) || (rb != rb && ra == ra), same = (rb == ra) || (rb != rb && ra != ra);",
        f"        if (ib != {n} && (ia == {n} || better || (same && ib < ia))) {{ redv[lid] = rb; redi[lid] = ib; }}",
        "    }",
        "    barrier(CLK_LOCAL_MEM_FENCE);",
        "}",
        "bi = redi[0];"])


@kernel("softmax", "log_softmax", "hardmax", family=OPENCL)
def softmax(ctx: KernelContext):
    x = ctx.inputs[0]
    if x.dtype.short != "f32":
        return None
    op = ctx.node.op
    axis = ctx.attrs.get("axis", -1) % len(x.shape)
    outer, n, inner, rows = _rows(x.shape, axis)
    path = f"opencl/softmax-{rows.kind}"
    if outer * n * inner == 0:
        return DeviceKernel("", [], path=path)
    it = rows.it
    fn = f"{ctx.fn_name}_{op}"
    base = f"r * {n}" if inner == 1 else f"(r / {inner}) * {n * inner} + r % {inner}"
    at = "i" if inner == 1 else f"i * {inner}"
    local = (f"__local float redv[{rows.wg}];", f"__local {it} redi[{rows.wg}];") if op == "hardmax" else ()
    lines = [rows.prologue(local),
             f"const {it} base = {base};",
             f"__global const {F32S} *x = in0 + base;",
             f"__global {F32S} *y = out0 + base;"]
    if op == "hardmax":
        lines += [f"float bv = -INFINITY; {it} bi = {n};",
                  f"{rows.loop()} {{",
                  f"    const float v = {ld('x', at)};",
                  f"    if (bi == {n} || v > bv || (v != v && bv == bv)) {{ bv = v; bi = i; }}",
                  "}"]
        if rows.group:
            lines.append(_hardmax_tree(rows))
        lines.append(f"{rows.loop()} {st('y', at, 'i == bi ? 1.0f : 0.0f')}")
    else:
        lines += ["float m = -INFINITY;",
                  f"{rows.loop()} {{ const float v = {ld('x', at)}; m = (v > m || v != v) ? v : m; }}",
                  rows.reduce("m", "max"),
                  # a max of +inf or NaN, or a row of -inf: all NaN, as the reference (the row goes
                  # on to the end: no work-item leaves a group before its barriers)
                  "const int bad = !isfinite(m);",
                  "float s = 0.0f;"]
        xv, yv = ld("x", at), ld("y", at)
        e = f"exp({xv} - m)"
        if op == "softmax" and ctx.config.float_storage == "f32":  # y holds e until divided
            lines += [f"{rows.loop()} {{ const float e = {e}; {st('y', at, 'e')} s += e; }}",
                      rows.reduce("s", "sum"),
                      f"{rows.loop()} {st('y', at, f'bad ? NAN : {yv} / s')}"]
        elif op == "softmax":  # half storage: e again, not e rounded to half
            lines += [f"{rows.loop()} s += {e};",
                      rows.reduce("s", "sum"),
                      f"{rows.loop()} {st('y', at, f'bad ? NAN : {e} / s')}"]
        else:
            lines += [f"{rows.loop()} s += {e};",
                      rows.reduce("s", "sum"),
                      "const float lse = log(s);",
                      f"{rows.loop()} {st('y', at, f'bad ? NAN : ({xv} - m) - lse')}"]
    body = "\n".join(line for line in lines if line)
    src = kernel_source(rows.attribute(), fn, [f"__global const {F32S} *in0", f"__global {F32S} *out0"], body)
    return DeviceKernel(src, [rows.launch(fn, ("in0", "out0"))], path=path)
