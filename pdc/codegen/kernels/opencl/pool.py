"""MaxPool (with Indices and storage_order), AveragePool and LpPool, N-d, OpenCL.

One work-item per output element. The window geometry (strides, dilations, pads, auto_pad,
ceil_mode) is resolved at compile time by the reference's own helper (nn_common.resolve_window);
each work-item computes, per spatial dim, the run of its window's taps inside the input and loops
over those taps only, in window order (row-major over the kernel dims). A dim whose windows all
lie inside gets constant bounds. Semantics as pdc/ir/ops/nn_pool.py:

- MaxPool: padding never wins. Indices: the first maximum in window order among the taps inside
  the input, NaN counting as the maximum (the first NaN); a window with no tap inside the input
  reports its first tap (wherever it lies) and the type's lowest value. Flat positions in the
  unpadded input, row-major (storage_order=0) or with the spatial dims column-major (1), plus
  (n * C + c) * prod(spatial).
- AveragePool: the sum over the taps inside, divided by the taps inside the input
  (count_include_pad=0) or inside input plus the explicit / SAME pads (1); taps only ceil_mode
  reaches are never counted. A window that counts no tap gives 0 / 0 = NaN, as the reference.
- LpPool: (sum |x|^p)^(1/p) over the taps inside (padding adds nothing).

MaxPool takes float32, int8 and uint8; the others float32 (read and written through PDC_LD /
PDC_ST: half in device memory under --precision fp16, where MaxPool stays exact). Path:
"opencl/pool-direct".
"""
from __future__ import annotations

from ...context import KernelContext, strides
from .. import kernel
from ..pool import PoolWindow
from . import OPENCL, DeviceKernel, Launch, round_up
from ._rows import F32S, ITEM_GROUP, itype, kernel_source, ld, lit, prod, st, storage_type

LOWEST = {"f32": "-INFINITY", "i8": "((char)-128)", "u8": "((uchar)0)"}


class _Geometry(PoolWindow):
    def __init__(self, ctx: KernelContext):
        super().__init__(ctx)
        self.total = self.NC * prod(self.out)
        self.it = itype(self.total, self.NC * prod(self.in_sp))

    def inside_always(self, i: int, lo: int, hi: int) -> bool:
        """Whether every window of dim i has all its taps in [lo, hi)."""
        ext = (self.kernel[i] - 1) * self.dil[i]
        first = -self.begin[i]
        last = (self.out[i] - 1) * self.strides[i] - self.begin[i]
        return first >= lo and last + ext < hi

    def tap_range(self, i: int, lo: int, hi: int) -> tuple[list[str], str, str]:
        """C lines and the [first, end) taps of dim i whose position s{i} + k * d lies in [lo, hi)."""
        K, d = self.kernel[i], self.dil[i]
        if self.inside_always(i, lo, hi):
            return [], "0", str(K)
        tag = f"{i}" if (lo, hi) == (0, self.in_sp[i]) else f"{i}p"
        first = f"(s{i} < {lo} ? ({lo} - s{i} + {d - 1}) / {d} : 0)"
        reach = f"(({hi} - 1 - s{i}) / {d} + 1)"
        end = f"(s{i} >= {hi} ? 0 : {reach} < {K} ? {reach} : {K})"
        return [f"const int lo{tag} = {first}, hi{tag} = {end};"], f"lo{tag}", f"hi{tag}"


def _body(ctx: KernelContext, g: _Geometry, ct: str, op: str) -> str:
    """ct: the element type of the input's buffer (pdc_f32s for float32, read as float)."""
    it, n = g.it, g.nsp
    vt = "float" if ct == F32S else ct  # the type of a value in the kernel
    lines = [f"const {it} gid = ({it})get_global_id(0);",
             f"if (gid >= {g.total}) return;",
             f"{it} rem = gid;"]
    for i in reversed(range(n)):
        lines.append(f"const int o{i} = (int)(rem % {g.out[i]}); rem /= {g.out[i]};")
    lines.append(f"const {it} nc = rem;")
    lines.append(f"__global const {ct} *x = in0 + nc * {prod(g.in_sp)};")
    ranges = []
    for i in range(n):
        lines.append(f"const int s{i} = o{i} * {g.strides[i]} - {g.begin[i]};")
        pre, lo, hi = g.tap_range(i, 0, g.in_sp[i])
        lines += pre
        ranges.append((lo, hi))
    with_index = op == "max_pool" and len(ctx.outputs) > 1
    if op == "max_pool":
        weights = g.in_st if not ctx.attrs.get("storage_order", 0) else strides(g.in_sp[::-1])[::-1]
        lines.append(f"{vt} best = {LOWEST[ctx.inputs[0].dtype.short]};")
        if with_index:
            lines.append("long at = 0; int found = 0;")
            pos = " + ".join(f"(long)c{i} * {weights[i]}" for i in range(n))
            better = "v > best || (v != v && best == best)" if vt == "float" else "v > best"
            update = f"if (!found || {better}) {{ best = v; at = {pos}; found = 1; }}"
        else:
            update = "best = (v > best || v != v) ? v : best;" if vt == "float" else "best = v > best ? v : best;"
    else:
        lines.append("float acc = 0.0f;")
        p = ctx.attrs.get("p", 2)
        update = {"average_pool": "acc += v;"}.get(op) or (
            "acc += fabs(v);" if p == 1 else "acc += v * v;" if p == 2 else f"acc += pow(fabs(v), {lit(p)});")
    loops = []
    for i in range(n):
        lo, hi = ranges[i]
        prev = f"t{i - 1} + " if i else ""
        loops.append("    " * i + f"for (int k{i} = {lo}; k{i} < {hi}; k{i}++) {{")
        loops.append("    " * i + f"    const int c{i} = s{i} + k{i} * {g.dil[i]};")
        loops.append("    " * i + f"    const {it} t{i} = {prev}({it})c{i} * {g.in_st[i]};")
    loops.append("    " * n + f"const {vt} v = {ld('x', f't{n - 1}', ct)};")
    loops.append("    " * n + update)
    loops += ["    " * i + "}" for i in reversed(range(n))]
    lines += loops
    if op == "max_pool":
        lines.append(st("out0", "gid", "best", ct))
        if with_index:
            first = " + ".join(f"(long)s{i} * {weights[i]}" for i in range(n))
            lines.append(f"if (!found) at = {first};  /* no tap inside: the window's first tap */")
            lines.append(f"out1[gid] = nc * {prod(g.in_sp)} + at;")
    elif op == "average_pool":
        include = bool(ctx.attrs.get("count_include_pad", 0))
        terms = []
        for i in range(n):
            pb, pe = g.counted[i]
            lo_v, hi_v = (-pb, g.in_sp[i] + pe) if include else (0, g.in_sp[i])
            pre, lo, hi = g.tap_range(i, lo_v, hi_v)
            if pre and (lo_v, hi_v) != (0, g.in_sp[i]):
                lines += pre
            if lo == "0" and hi == str(g.kernel[i]):
                terms.append(str(g.kernel[i]))
            else:
                terms.append(f"({hi} > {lo} ? {hi} - {lo} : 0)")
        lines.append(st("out0", "gid", f"acc / (float)({' * '.join(terms)})"))
    else:
        p = ctx.attrs.get("p", 2)
        res = "acc" if p == 1 else "sqrt(acc)" if p == 2 else f"pow(acc, {lit(1.0 / p)})"
        lines.append(st("out0", "gid", res))
    return "\n".join(lines)


@kernel("max_pool", "average_pool", "lp_pool", family=OPENCL)
def pool(ctx: KernelContext):
    x = ctx.inputs[0]
    op = ctx.node.op
    allowed = ("f32", "i8", "u8") if op == "max_pool" else ("f32",)
    if x.dtype.short not in allowed:
        return None
    g = _Geometry(ctx)
    path = "opencl/pool-direct"
    if g.total == 0:
        return DeviceKernel("", [], path=path)
    ct = storage_type(x.dtype)
    fn = f"{ctx.fn_name}_{op}"
    params = [f"__global const {ct} *in0", f"__global {ct} *out0"]
    args = ["in0", "out0"]
    if op == "max_pool" and len(ctx.outputs) > 1:
        params.append("__global long *out1")
        args.append("out1")
    src = kernel_source("", fn, params, _body(ctx, g, ct, op))
    launch = Launch(fn, tuple(args), (round_up(g.total, ITEM_GROUP),), (ITEM_GROUP,))
    return DeviceKernel(src, [launch], path=path)
