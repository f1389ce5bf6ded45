"""Scaled dot-product attention (float32), OpenCL: ONNX `attention` (opset 23-25) and pdc's
`fused_attention`.

A query row (b, h, i) is a row of L = past + new keys: its scores, a softmax over them, then the
probability-weighted sum of the V rows. Long rows (or few of them) take one work-group each: the
work-items stride over the keys (scores, max and sum through __local tree reductions), the
probabilities stay in __local memory (in the kernel's device scratch past LOCAL_SCORES keys),
then the work-items stride over the output's head dims. Many short rows take one work-item each,
with the query, scores and accumulators in private arrays. Keys and values are read where they
are (past cache, then the new rows, 3-D or 4-D, grouped-query heads sharing a KV head);
present_key / present_value are copied by one extra launch each.

Numerics follow the references step by step (pdc/ir/ops/nn_attention.py, fused_attention.py):
- attention: Q and K each scaled by sqrt(scale) (in float32, rounded as the reference does), the
  dot product, softcap, the bias (mask, -inf for keys past the causal frontier / outside the
  window / past nonpad_kv_seqlen), a softmax whose max is taken as 0 when it is -inf, a total of 0
  read as 1, and a zero row where the bias leaves no key attended; qk_matmul_output modes 0-3.
  softmax_precision float64 runs in float (Mali has no fp64; the float32 result differs from the
  double one by float32 rounding), float16 declines.
- fused_attention: Q K^T, times the scale, plus the float mask (a bool mask: -inf where false),
  the softmax reference's (a row whose max is not finite is all NaN, so is its output).
Other dtypes decline (None), as does an empty key sequence. The float32 tensors (Q, K, V, the float
mask, the past cache, the outputs) are read and written through PDC_LD / PDC_ST (half in device
memory under --precision fp16); the scores and probabilities stay float (private, __local, or the
kernel's float scratch).

Paths: "opencl/attention-item", "opencl/attention-group".
"""
from __future__ import annotations

import math

import numpy as np

from ...context import KernelContext, strides
from .. import kernel
from . import OPENCL, DeviceKernel, Launch, round_up
from ..attention import AttentionGeometry
from ._rows import F32S, ITEM_GROUP, Rows, kernel_source, ld, lit, prod, st

LOCAL_SCORES = 2048  # a group row's probabilities in __local memory up to this many keys (8 KiB)
LOCAL_QUERY = 1024  # a group row's scaled query in __local memory up to this head size
ITEM_KEYS, ITEM_DIMS, ITEM_ROWS = 32, 64, 1024  # one item per row: keys, head dims, and rows enough to fill a GPU


class _Geo(AttentionGeometry):
    """The geometry of one attention node, its rows numbered for the launch."""

    def __init__(self, ctx: KernelContext, fused: bool):
        super().__init__(ctx, fused)
        self.group = self.hq // self.hkv
        self.R = self.B * self.hq * self.Sq  # query rows, r = (b * hq + h) * Sq + i
        self.it = "int"  # the C type of row / key indices (set by the generator)


def _supported(ctx: KernelContext, fused: bool) -> bool:
    for i, t in enumerate(ctx.inputs):
        if t is None:
            continue
        want = {3: ("f32", "bool"), 6: ("i64",)}.get(i, ("f32",))
        if t.dtype.short not in want:
            return False
    if any(t.dtype.short != "f32" for t in ctx.outputs):
        return False
    if not fused:
        sp = ctx.attrs.get("softmax_precision")
        if sp is not None and sp.short == "f16":
            return False
        if ctx.has_input(3) and len(ctx.inputs[3].shape) == 0:
            return False
    return True


def _mask_row(ctx: KernelContext, fused: bool) -> tuple[str, str, int]:
    """(C offset of the mask row of b, h, i; the index of key j in it; its last dim), for a mask
    broadcast right-aligned to the scores (B, Hq, Sq, keys)."""
    ms = tuple(ctx.inputs[3].shape)
    full = (1,) * (4 - len(ms)) + ms
    st = [0] * (4 - len(ms)) + strides(ms)
    terms = [f"{var} * {s}" for var, n, s in zip(("b", "h", "i"), full[:3], st[:3]) if n != 1 and s]
    jm = "0" if full[3] == 1 and fused else "j"
    return " + ".join(terms) or "0", jm, full[3]


def _scores(ctx: KernelContext, g: _Geo, fused: bool, qv: str) -> list[str]:
    """The statements computing `s`, key j's score with its bias, and `live` (the key is attended)
    for the per-key loop; qv(d) spells the scaled query's element d."""
    a = ctx.attrs
    debug = len(ctx.outputs) > 3
    mode = a.get("qk_matmul_output_mode", 0)
    lines = [f"__global const {F32S} *kr = {g.kv_row(1, g.D)};", "float s = 0.0f;"]
    if fused:
        scale = a.get("scale")
        scale = 1 / math.sqrt(g.D) if scale is None else scale
        lines += [f"for (int d = 0; d < {g.D}; d++) s += {qv} * {ld('kr', 'd')};",
                  f"s = s * {lit(scale)};"]
        if ctx.has_input(3):
            jm = _mask_row(ctx, fused)[1]
            bool_mask = ctx.inputs[3].dtype.short == "bool"
            lines.append(f"if (!mr[{jm}]) s = -INFINITY;" if bool_mask else f"s = s + {ld('mr', jm)};")
        return lines
    root = lit(_root(a.get("scale"), g.D))
    lines.append(f"for (int d = 0; d < {g.D}; d++) s += {qv} * ({ld('kr', 'd')} * {root});")
    store = st("qk", "j", "s")
    if debug and mode == 0:
        lines.append(store)
    softcap = a.get("softcap", 0.0) or 0.0
    if softcap > 0:
        cap = lit(softcap)
        lines.append(f"s = {cap} * tanh(s / {cap});")
    if debug and mode == 1:
        lines.append(store)
    lw, rw = a.get("left_window_size", -1), a.get("right_window_size", -1)
    if ctx.has_input(3):
        M = ctx.inputs[3].shape[-1]
        mval = "(mr[j] ? 0.0f : -INFINITY)" if ctx.inputs[3].dtype.short == "bool" else ld("mr", "j")
        lines.append(f"float bias = j < {M} ? {mval} : -INFINITY;")
    else:
        lines.append("float bias = 0.0f;")
    if a.get("is_causal", 0):
        lines.append("if (j > pos) bias += -INFINITY;")
    if lw >= 0 or rw >= 0:
        conds = ([f"j < pos - {lw}"] if lw >= 0 else []) + ([f"j > pos + {rw}"] if rw >= 0 else [])
        lines.append(f"if ({' || '.join(conds)}) bias += -INFINITY;")
    if ctx.has_input(6):
        lines.append("if (j >= valid) bias += -INFINITY;")
    lines += ["if (bias != -INFINITY) live = 1.0f;", "s = s + bias;"]
    if debug and mode == 2:
        lines.append(store)
    return lines


def _root(scale, head: int) -> float:
    """The reference's sqrt(scale), rounded to float32."""
    return float(np.float32(np.sqrt(1.0 / np.sqrt(head) if scale is None else scale)))


def _row_setup(ctx: KernelContext, g: _Geo, fused: bool) -> list[str]:
    lines = [f"const {g.it} i = r % {g.Sq}, h = (r / {g.Sq}) % {g.hq}, b = r / {g.Sq * g.hq};",
             f"const {g.it} kh = h / {g.group}; (void)kh;",
             f"__global const {F32S} *qr = {g.q_row()};",
             f"__global {F32S} *yr = {g.y_row()};"]
    if ctx.has_input(6):
        lines.append("const long valid = in6[b];")
    a = ctx.attrs
    if not fused and (a.get("is_causal", 0) or a.get("left_window_size", -1) >= 0
                      or a.get("right_window_size", -1) >= 0):
        lines.append(f"const long pos = (long)i + {f'valid - {g.Sq}' if ctx.has_input(6) else g.P};")
    if ctx.has_input(3):
        off, _, _ = _mask_row(ctx, fused)
        mt = "uchar" if ctx.inputs[3].dtype.short == "bool" else F32S
        lines.append(f"__global const {mt} *mr = in3 + {off};")
    if len(ctx.outputs) > 3:
        lines.append(f"__global {F32S} *qk = out3 + r * {g.L};")
    return lines


def _softmax(ctx: KernelContext, g: _Geo, rows: Rows, fused: bool, sc: str) -> list[str]:
    """From the scores in sc[j] (top and live reduced): sc[j] becomes the probabilities."""
    loop = rows.loop("j", g.L)
    lines = []
    if not fused:
        lines += ["if (top == -INFINITY) top = 0.0f;"]
    lines += ["float total = 0.0f;",
              f"{loop} {{ const float e = exp({sc}[j] - top); {sc}[j] = e; total += e; }}",
              rows.reduce("total", "sum")]
    if fused:  # a row whose max is not finite is all NaN, as the softmax reference
        lines.append(f"{loop} {sc}[j] = isfinite(top) ? {sc}[j] / total : NAN;")
        if ctx.attrs.get("nan_to_zero", 0):
            lines.append(f"{loop} if (isnan({sc}[j])) {sc}[j] = 0.0f;")
    else:
        lines += ["if (total == 0.0f) total = 1.0f;",
                  f"{loop} {sc}[j] = live == 0.0f ? 0.0f : {sc}[j] / total;"]
        if len(ctx.outputs) > 3 and ctx.attrs.get("qk_matmul_output_mode", 0) == 3:
            lines.append(f"{loop} {st('qk', 'j', f'{sc}[j]')}")
    return lines


def _present(g: _Geo, fn: str, k: int) -> tuple[str, Launch]:
    """present_key (k=1) / present_value (k=2): the past cache then the new rows, (B, Hkv, L, W)."""
    width = g.D if k == 1 else g.Dv
    total = g.B * g.hkv * g.L * width
    it = "int" if total < 2 ** 31 - 1 else "long"
    params = [f"__global const {F32S} *in{k}", f"__global {F32S} *out{k}"]
    args = [f"in{k}", f"out{k}"]
    if g.P:
        params.insert(1, f"__global const {F32S} *in{k + 3}")
        args.insert(1, f"in{k + 3}")
    body = "\n".join([
        f"const {it} e = ({it})get_global_id(0);",
        f"if (e >= {total}) return;",
        f"const {it} d = e % {width}, j = e / {width} % {g.L}, kh = e / {width * g.L} % {g.hkv}, "
        f"b = e / {width * g.L * g.hkv};",
        st(f"out{k}", "e", ld(f"({g.kv_row(k, width)})", "d"))])
    name = f"{fn}_present{k}"
    return kernel_source("", name, params, body), Launch(name, tuple(args), (round_up(total, ITEM_GROUP),),
                                                         (ITEM_GROUP,))


def _group_size(n: int) -> int:
    w = 16
    while w < n and w < 64:
        w *= 2
    return 128 if n >= 4096 else w


@kernel("attention", "fused_attention", family=OPENCL)
def attention(ctx: KernelContext):
    fused = ctx.node.op == "fused_attention"
    if not _supported(ctx, fused):
        return None
    g = _Geo(ctx, fused)
    if g.L == 0 or g.hq % g.hkv:
        return None
    item = g.L <= ITEM_KEYS and g.D <= ITEM_DIMS and g.Dv <= ITEM_DIMS and g.R >= ITEM_ROWS
    rows = Rows(g.R, g.L, group=not item, wg=None if item else _group_size(max(g.L, g.Dv)))
    g.it = rows.it if rows.it == "long" else ("long" if g.R * max(g.D, g.Dv, g.L) >= 2 ** 31 - 1 else "int")
    fn = ctx.fn_name
    path = f"opencl/attention-{rows.kind}"
    sources, launches = [], []
    for k in (1, 2):
        if k < len(ctx.outputs) and not fused:
            src, launch = _present(g, fn, k)
            sources.append(src)
            launches.append(launch)
    if prod(ctx.outputs[0].shape) == 0:
        return DeviceKernel("\n".join(sources), launches, path=path)

    params, args = [], []
    for i, t in enumerate(ctx.inputs):
        if t is not None:
            ct = {"f32": F32S, "bool": "uchar", "i64": "long"}[t.dtype.short]
            params.append(f"__global const {ct} *in{i}")
            args.append(f"in{i}")
    params.append(f"__global {F32S} *out0")
    args.append("out0")
    if len(ctx.outputs) > 3:
        params.append(f"__global {F32S} *out3")
        args.append("out3")
    scratch = 0
    root = "" if fused else f" * {lit(_root(ctx.attrs.get('scale'), g.D))}"
    local = []
    if rows.group:
        local += [f"__local float qv[{max(g.D, 1)}];"] if g.D <= LOCAL_QUERY else []
        local += [f"__local float sc[{g.L}];"] if g.L <= LOCAL_SCORES else []
    lines = [rows.prologue(tuple(local))] + _row_setup(ctx, g, fused)
    if rows.group:
        if g.D <= LOCAL_QUERY:
            lines += [f"{rows.loop('d', g.D)} qv[d] = {ld('qr', 'd')}{root};",
                      "barrier(CLK_LOCAL_MEM_FENCE);"]
            qv = "qv[d]"
        else:
            qv = f"({ld('qr', 'd')}{root})"
        if g.L > LOCAL_SCORES:
            scratch = g.R * g.L * 4
            params.append("__global float *scratch")
            args.append("scratch")
            lines.append(f"__global float *sc = scratch + ({'long' if scratch >= 2 ** 31 else 'int'})r * {g.L};")
    else:
        lines += [f"float qv[{max(g.D, 1)}];", f"for (int d = 0; d < {g.D}; d++) qv[d] = {ld('qr', 'd')}{root};",
                  f"float sc[{g.L}];"]
        qv = "qv[d]"
    lines += ["float top = -INFINITY, live = 0.0f;",
              f"{rows.loop('j', g.L)} {{"]
    lines += ["    " + x for x in _scores(ctx, g, fused, qv)]
    lines += ["    sc[j] = s;",
              "    top = (s > top || s != s) ? s : top;",
              "}",
              rows.reduce("top", "max"),
              "" if fused else rows.reduce("live", "or")]
    lines += _softmax(ctx, g, rows, fused, "sc")
    lines.append(rows.sync())
    lines += [f"{rows.loop('d', g.Dv)} {{",
              "    float acc = 0.0f;",
              f"    for ({g.it} j = 0; j < {g.L}; j++) acc += sc[j] * {ld(f'({g.kv_row(2, g.Dv)})', 'd')};",
              f"    {st('yr', 'd', 'acc')}",
              "}"]
    body = "\n".join(x for x in lines if x)
    name = f"{fn}_rows"
    sources.append(kernel_source(rows.attribute(), name, params, body))
    launches.insert(0, rows.launch(name, args))
    return DeviceKernel("\n".join(sources), launches, scratch_bytes=scratch, path=path)
