"""Normalizations (float32), OpenCL: BatchNormalization (inference), InstanceNormalization,
LayerNormalization (with Mean / InvStdDev), GroupNormalization, RMSNormalization,
LpNormalization and MeanVarianceNormalization.

The statistics of a row (a layer-norm row, an (n, c) plane, an (n, group) block, a set of
MeanVarianceNormalization elements) come from _rows.Rows: one work-item per short row, one
work-group per long one with __local tree reductions. Numerics as pdc/ir/ops/nn_norm.py: the
mean first, then the sum of squared deviations (no E[x^2] - mean^2, except where the op defines
it so: MeanVarianceNormalization), divisions kept as divisions where the reference divides,
statistics in float. stash_type float64 declines (Mali has no fp64); float16 / bfloat16 compute in
float as the reference does (its Mean / InvStdDev outputs, stored in that type, decline).
Parameters are read from their own buffers; a constant one that broadcasts over the normalized
dims (or is not float32) is uploaded as a float32 table, expanded. BatchNormalization with
constant parameters folds them into inv / shift tables at compile time, as the reference does.
Every float32 buffer (X, Y, the parameters, Mean / InvStdDev, the float32 tables) is read and
written through PDC_LD / PDC_ST: half in device memory under --precision fp16.

Paths: "opencl/norm-item", "opencl/norm-group", "opencl/batchnorm".
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ....ir import dtypes
from ....ir.ops.nn_norm import EPSILON
from ...context import KernelContext, strides
from .._axis import Groups
from .. import kernel
from . import OPENCL, DeviceKernel, Launch, round_up
from ._rows import F32S, ITEM_GROUP, Rows, kernel_source, ld, lit, prod, st


class _Params:
    """The buffers of one kernel: parameters, launch args and tables, gathered as they are used."""

    def __init__(self):
        self.params = [f"__global const {F32S} *in0", f"__global {F32S} *out0"]
        self.args = ["in0", "out0"]
        self.tables: dict = {}

    def add(self, decl: str, name: str):
        if name not in self.args:
            self.params.append(decl)
            self.args.append(name)

    def table(self, name: str, data) -> str:
        self.tables[name] = np.ascontiguousarray(data, dtype=np.float32)
        self.add(f"__global const {F32S} *{name}", name)
        return name


def _param(ctx: KernelContext, b: _Params, i: int, name: str, tail, j: str) -> Optional[str]:
    """A C expression of parameter i at position j of `tail` (the dims it broadcasts to,
    unidirectionally): the input buffer itself where it is float32 and needs no broadcast (or is
    one value), else a float32 table of it broadcast to `tail` when it is a constant; None when it
    is neither float32 nor a constant."""
    t = ctx.inputs[i]
    data = ctx.const(i)
    size = prod(t.shape)
    if t.dtype.short == "f32" and (size == prod(tail) or size == 1 or data is None):
        b.add(f"__global const {F32S} *in{i}", f"in{i}")
        if size == prod(tail):
            return ld(f"in{i}", j)
        if size == 1:
            return ld(f"in{i}", 0)
        pad = len(tail) - len(t.shape)
        pshape = (1,) * pad + tuple(t.shape)
        tst, pst = strides(tail), strides(pshape)
        terms = [f"(({j}) / {tst[d]} % {tail[d]}) * {pst[d]}" for d in range(len(tail)) if pshape[d] != 1]
        return ld(f"in{i}", " + ".join(terms) or "0")
    if data is None:
        return None
    full = np.broadcast_to(data.astype(np.float32).reshape(t.shape), tuple(tail)).reshape(-1)
    return ld(b.table(name, full), j)


def _stash_ok(ctx: KernelContext, with_stats: bool) -> bool:
    st = ctx.attrs.get("stash_type", dtypes.float32)
    if st.short == "f64":
        return False
    return st.short == "f32" or not with_stats


def _finish(ctx: KernelContext, b: _Params, rows: Rows, fn: str, body: str, tag: str) -> DeviceKernel:
    src = kernel_source(rows.attribute(), fn, b.params, "\n".join(x for x in body.split("\n") if x.strip()))
    return DeviceKernel(src, [rows.launch(fn, b.args)], tables=b.tables, path=f"opencl/{tag}-{rows.kind}")


def _stats(rows: Rows, load: str) -> list[str]:
    """mean and the sum of squared deviations (q) of the row's elements load(i)."""
    return ["float s = 0.0f;",
            f"{rows.loop()} s += {load};",
            rows.reduce("s", "sum"),
            f"const float mean = s / (float){rows.n};",
            "float q = 0.0f;",
            f"{rows.loop()} {{ const float d = {load} - mean; q += d * d; }}",
            rows.reduce("q", "sum")]


# ---- LayerNormalization / RMSNormalization ------------------------------------------------------
@kernel("layer_normalization", "rms_normalization", family=OPENCL)
def row_norm(ctx: KernelContext):
    x = ctx.inputs[0]
    rms = ctx.node.op == "rms_normalization"
    stats = 0 if rms else len(ctx.outputs) - 1
    if x.dtype.short != "f32" or not _stash_ok(ctx, stats > 0):
        return None
    axis = ctx.attrs.get("axis", -1) % len(x.shape)
    tail = tuple(x.shape[axis:])
    outer, D = prod(x.shape[:axis]), prod(tail)
    rows = Rows(outer, D)
    if outer == 0:
        return DeviceKernel("", [], path=f"opencl/norm-{rows.kind}")
    b = _Params()
    scale = _param(ctx, b, 1, "scale", tail, "i")
    bias = _param(ctx, b, 2, "bias", tail, "i") if ctx.has_input(2) else None
    if scale is None or (ctx.has_input(2) and bias is None):
        return None
    for k in range(1, stats + 1):
        b.add(f"__global {F32S} *out{k}", f"out{k}")
    eps = lit(ctx.attrs.get("epsilon", EPSILON))
    xi = ld("x", "i")
    lines = [rows.prologue(),
             f"__global const {F32S} *x = in0 + r * {D};",
             f"__global {F32S} *y = out0 + r * {D};"]
    if rms:
        lines += ["float q = 0.0f;",
                  f"{rows.loop()} {{ const float v = {xi}; q += v * v; }}",
                  rows.reduce("q", "sum"),
                  f"const float sd = sqrt(q / (float){D} + {eps});",
                  f"{rows.loop()} {st('y', 'i', f'({xi} / sd) * {scale}')}"]
    else:
        lines += _stats(rows, xi)
        plus = f" + {bias}" if bias else ""
        lines += [f"const float inv = 1.0f / sqrt(q / (float){D} + {eps});",
                  f"{rows.loop()} {st('y', 'i', f'(({xi} - mean) * inv) * {scale}{plus}')}"]
        if stats:
            lines.append(f"if (lid == 0) {{ {st('out1', 'r', 'mean')}"
                         + (f" {st('out2', 'r', 'inv')}" if stats > 1 else "") + " }")
    return _finish(ctx, b, rows, f"{ctx.fn_name}_{ctx.node.op}", "\n".join(lines), "norm")


# ---- InstanceNormalization / GroupNormalization -------------------------------------------------
@kernel("instance_normalization", "group_normalization", family=OPENCL)
def plane_norm(ctx: KernelContext):
    """Rows of contiguous channels: one (n, c) plane (instance) or one (n, group) block (group),
    normalized by (x - mean) / sqrt(var + eps), then the channel's scale and bias."""
    x = ctx.inputs[0]
    group = ctx.node.op == "group_normalization"
    if x.dtype.short != "f32" or (group and not _stash_ok(ctx, False)):
        return None
    N, C = x.shape[0], x.shape[1]
    S = prod(x.shape[2:])
    G = ctx.attrs["num_groups"] if group else C
    Cg = C // G
    rows = Rows(N * G, Cg * S)
    if N * C * S == 0:
        return DeviceKernel("", [], path=f"opencl/norm-{rows.kind}")
    b = _Params()
    c = f"(r % {G}) * {Cg} + i / {S}" if group else f"r % {C}"
    scale = _param(ctx, b, 1, "scale", (C,), c)
    bias = _param(ctx, b, 2, "bias", (C,), c)
    if scale is None or bias is None:
        return None
    eps = lit(ctx.attrs.get("epsilon", EPSILON))
    xi = ld("x", "i")
    lines = [rows.prologue(),
             f"__global const {F32S} *x = in0 + r * {rows.n};",
             f"__global {F32S} *y = out0 + r * {rows.n};"]
    lines += _stats(rows, xi)
    lines += [f"const float sd = sqrt(q / (float){rows.n} + {eps});",
              f"{rows.loop()} {st('y', 'i', f'(({xi} - mean) / sd) * {scale} + {bias}')}"]
    return _finish(ctx, b, rows, f"{ctx.fn_name}_{ctx.node.op}", "\n".join(lines), "norm")


# ---- LpNormalization / MeanVarianceNormalization ------------------------------------------------
def _offset(var: str, dims) -> str:
    """The element offset of row-major index `var` over dims [(size, stride), ...]."""
    terms, inner = [], 1
    for size, stride in reversed(dims):
        q = var if inner == 1 else f"({var} / {inner})"
        terms.append(f"({q} % {size}) * {stride}" if inner * size != prod(s for s, _ in dims) else f"{q} * {stride}")
        inner *= size
    return " + ".join(reversed(terms)) or "0"


@kernel("lp_normalization", "mean_variance_normalization", family=OPENCL)
def axes_norm(ctx: KernelContext):
    x = ctx.inputs[0]
    if x.dtype.short != "f32":
        return None
    rank = len(x.shape)
    op = ctx.node.op
    if op == "lp_normalization":
        axes = [ctx.attrs.get("axis", -1) % rank]
        p = ctx.attrs.get("p", 2)
        if p not in (1, 2):
            return None
    else:
        axes = sorted({a % rank for a in ctx.attrs.get("axes", [0, 2, 3])})
    g = Groups(x.shape, axes)
    n = g.n_red if g.red else 1
    # strided rows with many of them keep one work-item each (neighbours read neighbouring columns)
    contiguous = bool(g.red) and g.red[-1][1] == 1
    rows = Rows(g.n_out, n, group=n >= 256 and (contiguous or g.n_out < 4096))
    if g.numel == 0:
        return DeviceKernel("", [], path=f"opencl/norm-{rows.kind}")
    b = _Params()
    base = _offset("r", g.kept) if g.kept else "0"
    at = _offset("i", g.red) if g.red else "0"
    lines = [rows.prologue(),
             f"const {rows.it} base = {base};",
             f"__global const {F32S} *x = in0 + base;",
             f"__global {F32S} *y = out0 + base;"]
    xa = ld("x", at)
    if op == "lp_normalization":
        term = "fabs(v)" if p == 1 else "v * v"
        lines += ["float s = 0.0f;",
                  f"{rows.loop()} {{ const float v = {xa}; s += {term}; }}",
                  rows.reduce("s", "sum"),
                  f"const float norm = {'s' if p == 1 else 'sqrt(s)'};",
                  f"{rows.loop()} {st('y', at, f'norm == 0.0f ? 0.0f : {xa} / norm')}"]
    else:  # E[x^2] - E[x]^2, as ONNX defines it: it cancels where the variance is small next to the
        # mean, so every product is rounded as the reference rounds it (no fused multiply-adds)
        lines.insert(0, "#pragma OPENCL FP_CONTRACT OFF")
        lines += ["float s = 0.0f, s2 = 0.0f;",
                  f"{rows.loop()} {{ const float v = {xa}; s += v; s2 += PDC_MUL_RN(v, v); }}",
                  rows.reduce("s", "sum"),
                  rows.reduce("s2", "sum"),
                  f"const float mean = s / (float){n};",
                  f"const float var = s2 / (float){n} - PDC_MUL_RN(mean, mean);",
                  f"const float den = sqrt(var > 0.0f ? var : 0.0f) + {lit(1e-9)};",
                  f"{rows.loop()} {st('y', at, f'({xa} - mean) / den')}"]
    return _finish(ctx, b, rows, f"{ctx.fn_name}_{op}", "\n".join(lines), "norm")


# ---- BatchNormalization -------------------------------------------------------------------------
@kernel("batch_normalization", family=OPENCL)
def batch_normalization(ctx: KernelContext):
    """y = x * inv[c] + shift[c], inv = scale / sqrt(var + eps), shift = B - mean * inv: tables
    folded at compile time when the four parameters are constants, else computed per element."""
    x = ctx.inputs[0]
    if x.dtype.short != "f32" or len(ctx.outputs) > 1:
        return None
    N, C = x.shape[0], x.shape[1]
    S = prod(x.shape[2:])
    total = N * C * S
    path = "opencl/batchnorm"
    if total == 0:
        return DeviceKernel("", [], path=path)
    eps = ctx.attrs.get("epsilon", EPSILON)
    b = _Params()
    consts = [ctx.const(i) for i in range(1, 5)]
    it = "int" if total < 2 ** 31 - 1 else "long"
    lines = [f"const {it} g = ({it})get_global_id(0);",
             f"if (g >= {total}) return;",
             f"const {it} c = {f'(g / {S})' if S > 1 else 'g'} % {C};"]
    if all(p is not None for p in consts):
        scale, bias, mean, var = (p.astype(np.float32) for p in consts)
        inv = scale / np.sqrt(var + np.float32(eps))
        shift = bias - mean * inv
        val = f"{ld('in0', 'g')} * {ld(b.table('inv', inv), 'c')} + {ld(b.table('shift', shift), 'c')}"
        lines.append(st("out0", "g", val))
    else:
        vals = [_param(ctx, b, i, name, (C,), "c") for i, name in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var"))]
        if any(v is None for v in vals):
            return None
        sc, bi, mu, var = vals
        lines += [f"const float inv = {sc} / sqrt({var} + {lit(eps)});",
                  f"const float shift = {bi} - {mu} * inv;",
                  st("out0", "g", f"{ld('in0', 'g')} * inv + shift")]
    fn = f"{ctx.fn_name}_batch_normalization"
    src = kernel_source("", fn, b.params, "\n".join(lines))
    launch = Launch(fn, tuple(b.args), (round_up(total, ITEM_GROUP),), (ITEM_GROUP,))
    return DeviceKernel(src, [launch], tables=b.tables, path=path)
