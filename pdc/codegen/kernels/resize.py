"""Resize (every mode of the IR op) as static tables computed with the reference's own formulas.

Per resized axis the compiler evaluates the source coordinate of every output index exactly, then
rounds it to float64 (pdc.ir.ops.resize.source_coords), and turns it into
- nearest: a source index table (-1 outside a tf_crop_and_resize box: the extrapolation value);
  the kernel is then a table-driven copy (`_movement.gather_axes`);
- linear / cubic: per output index, the first source index `lo` of a window of K taps and the K
  weights (the reference's interpolation matrix, row by row). The kernel loops over the output and
  sums the product of every resized axis' taps (N-linear: 2^N taps; antialias widens the window).
Axes the reference leaves alone (same length, scale 1, full box) read straight through. Floats
accumulate in float (double for float64 and integer inputs, which truncate toward zero and
saturate like the reference).

Paths (pdc/codegen/kernels/paths.py, family "resize"): "gather" (nearest), "unrolled" (the
weighted sum written out term by term: up to UNROLL_TAPS taps per output, hard limit
UNROLLED_TAPS_MAX) and "loops" (one loop per resized axis; any window, the general path).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.errors import PdcError
from ...ir.ops.resize import (_cubic_kernel, _linear_kernel, _present, _resize_axes, interpolation_matrix,
                              nearest_index, plan_sizes, source_coords)
from ...ir import dtypes as D
from .. import kir
from ..context import KernelContext, numel, strides
from . import kernel
from ._kir import io, render
from ._axis import Num, indent
from ._movement import check_axis_table, gather_axes, table, uses_all_params
from .paths import declare, mark, take

declare("resize", "loops", "unrolled", "gather")


def _operand(ctx: KernelContext, i: int, what: str):
    """Constant input i, None when absent or empty; fails when present, non-empty and not constant."""
    if not ctx.has_input(i) or numel(ctx.inputs[i]) == 0:
        return None
    data = ctx.const(i)
    if data is None:
        ctx.fail(f"{what} (input {i}) must be a compile-time constant")
    return data


def _extrapolation_value(ctx: KernelContext, num: Num) -> kir.Expr:
    """The extrapolation value as the reference casts it into the output dtype."""
    v = float(ctx.attrs.get("extrapolation_value", 0.0))
    if num.is_float:
        return kir.cast(num.dt, kir.lit(v, num.dt if num.ct != "float" else D.float32))
    if num.dt.short == "bool":
        return kir.as_expr(1 if v != 0 else 0)
    info = np.iinfo(num.dt.np)  # saturated like interpolated values (a C cast of it is undefined)
    return kir.cast(num.dt, kir.as_expr(int(min(max(math.trunc(v), info.min), info.max))))


def _extrapolation(ctx: KernelContext, num: Num) -> str:
    return kir.CPrinter().expr(_extrapolation_value(ctx, num))


def _window(m: np.ndarray):
    """The smallest K such that every row's non-zero weights lie in [lo, lo + K): (lo, weights[out, K])."""
    out_len, in_len = m.shape
    nz = m != 0
    any_nz = nz.any(axis=1)
    first = np.where(any_nz, nz.argmax(axis=1), 0)
    last = np.where(any_nz, in_len - 1 - nz[:, ::-1].argmax(axis=1), 0)
    k = int(max((last - first + 1).max(initial=1), 1))
    lo = np.minimum(first, in_len - k)
    w = m[np.arange(out_len)[:, None], lo[:, None] + np.arange(k)[None, :]]
    return lo, w


@kernel("resize")
@uses_all_params
def resize(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    attrs = ctx.attrs
    rank = len(x.shape)
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    # the roi changes the result only in these modes (elsewhere a same-length axis maps onto itself)
    roi = _operand(ctx, 1, "roi") if coord in ("tf_crop_and_resize", "tf_half_pixel_for_nn") else None
    scales, sizes = _operand(ctx, 2, "scales"), _operand(ctx, 3, "sizes")
    if _present(scales) == _present(sizes):
        ctx.fail("needs exactly one of scales and sizes")
    axes = _resize_axes(attrs, rank)
    mode = attrs.get("mode", "nearest")
    try:
        plan = plan_sizes(x.shape, axes, scales, sizes, attrs.get("keep_aspect_ratio_policy", "stretch"))
    except PdcError as e:
        ctx.fail(str(e))
    roi = np.asarray(roi, np.float64).reshape(-1) if roi is not None else None
    if coord == "tf_crop_and_resize" and (roi is None or roi.size != 2 * len(axes)):
        ctx.fail(f"tf_crop_and_resize needs a constant roi of {2 * len(axes)} values")
    out_shape = list(x.shape)
    for a, (n, _) in zip(axes, plan):
        out_shape[a] = n
    if out_shape != list(y.shape):
        ctx.fail(f"resizing {list(x.shape)} gives {out_shape}, the output is {list(y.shape)}")
    num = Num(y.dtype)
    if numel(y) == 0:
        return "    /* empty output */"
    # per axis: None (read straight through) or (x_ori, outside) along it
    coords: list = [None] * rank
    for j, (a, (out_len, scale)) in enumerate(zip(axes, plan)):
        in_len = x.shape[a]
        box = (0.0, 1.0) if roi is None else (float(roi[j]), float(roi[j + len(axes)]))
        if out_len == in_len and scale == 1 and box == (0.0, 1.0):
            continue
        if in_len == 0:
            ctx.fail(f"cannot resize empty axis {a} to {out_len}")
        check_axis_table(ctx, a, out_len)
        x_ori = source_coords(coord, out_len, in_len, scale, box)
        outside = ((x_ori < 0) | (x_ori > in_len - 1)) if coord == "tf_crop_and_resize" else np.zeros(out_len, bool)
        coords[a] = (x_ori, outside)
    if mode == "nearest":
        maps = []
        for a, c in enumerate(coords):
            if c is None:
                maps.append(None)
                continue
            idx = nearest_index(c[0], attrs.get("nearest_mode", "round_prefer_floor"), x.shape[a])
            maps.append(np.where(c[1], -1, idx))
        ins, outs = io(ctx)
        return mark("resize", "gather", render(ctx, gather_axes(ctx, x.shape, y.shape, maps, ins[0], outs[0],
                                                                _extrapolation_value(ctx, num), False)))
    antialias = attrs.get("antialias", 0)
    if mode == "linear":
        kern, support = _linear_kernel, 1
    else:
        kern, support = _cubic_kernel(attrs.get("cubic_coeff_a", -0.75)), 2
    taps = {}
    for a, c in enumerate(coords):
        if c is None:
            continue
        if len(c[0]) * x.shape[a] > MAX_INTERPOLATION_MATRIX:  # built dense, then cut to its band
            ctx.fail(f"resizing axis {a} from {x.shape[a]} to {len(c[0])} needs a weight matrix over pdc's "
                     f"limit of {MAX_INTERPOLATION_MATRIX} entries")
        scale = dict(zip(axes, (s for _, s in plan)))[a]
        stretch = min(float(scale), 1.0) if antialias else 1.0
        m = interpolation_matrix(c[0], x.shape[a], kern, support, stretch, attrs.get("exclude_outside", 0),
                                 normalize=bool(antialias))
        taps[a] = _window(m) + (c[1],)
    if not taps:  # no axis changes: the values pass through
        return f"    memcpy(out0, in0, {y.nbytes});"
    order = [a for a in axes if a in taps]  # the order the reference resizes them in
    return _weighted(ctx, x.shape, y.shape, taps, order, num)


MAX_INTERPOLATION_MATRIX = 1 << 26  # out x in weights of one axis (512 MiB of float64)
UNROLL_TAPS = 64  # up to this many taps per output the weighted sum is written out in full
UNROLLED_TAPS_MAX = 1024  # beyond, one output's expression is too long to compile


def _weighted(ctx: KernelContext, in_shape, out_shape, taps: dict, order: list, num: Num) -> str:
    """out[o] = the weighted sum over the taps of every resized axis, nested in the order the
    reference resizes the axes (the first resized axis' sum innermost)."""
    acc_t = "double" if num.dt.short == "f64" or not num.is_float else "float"
    ist, ost = strides(in_shape), strides(out_shape)
    extrap = _extrapolation(ctx, num)
    decls = [f"const {num.c} *restrict X = in0;", f"{num.c} *restrict Y = out0;"]
    names = {}
    for a, (lo, w, outside) in taps.items():
        d1, lo_e = table(ctx, lo * ist[a], f"lo{a}_t")
        d2, w_e = table(ctx, w, f"w{a}_t", acc_t)
        decls += [d for d in (d1, d2) if d]
        decls += [f"const int32_t *restrict lo{a} = {lo_e};", f"const {acc_t} *restrict w{a} = {w_e};"]
        ok = None
        if outside.any():
            d3, ok_e = table(ctx, (~outside).astype(np.int32), f"ok{a}")
            decls += [d3] if d3 else []
            ok = ok_e
        names[a] = (w.shape[1], ok)
    rank = len(out_shape)
    lines, prev_s = [], "0"
    for d in range(rank):
        pad = "    " * d
        lines.append(f"{pad}for (int64_t i{d} = 0; i{d} < {out_shape[d]}; i{d}++) {{")
        lines.append(f"{pad}    const int64_t o{d} = {'0' if d == 0 else f'o{d - 1}'} + i{d} * {ost[d]};")
        if d in names:
            K, ok = names[d]
            if ok:  # outside the crop box: the extrapolation value for the whole sub-block
                block = int(np.prod(out_shape[d + 1:], dtype=np.int64))
                lines.append(f"{pad}    if (!{ok}[i{d}]) {{ for (int64_t e = 0; e < {block}; e++) "
                             f"Y[o{d} + e] = {extrap}; continue; }}")
            lines.append(f"{pad}    const int64_t s{d} = {prev_s} + lo{d}[i{d}];")
            lines.append(f"{pad}    const {acc_t} *restrict w{d}p = w{d} + i{d} * {K};")
        else:
            lines.append(f"{pad}    const int64_t s{d} = {prev_s} + i{d} * {ist[d]};")
        prev_s = f"s{d}"
    nest = order[::-1]  # the axis resized last is the outermost sum
    load = lambda off: f"({acc_t}){num.load(f'X[s{rank - 1}{off}]')}"  # noqa: E731
    n_taps = int(np.prod([names[a][0] for a in nest]))
    unrolled = n_taps <= UNROLLED_TAPS_MAX and take("resize", "unrolled", n_taps <= UNROLL_TAPS)
    if unrolled:
        def term(level: int, off: str) -> str:
            if level == len(nest):
                return load(off)
            a = nest[level]
            parts = [f"w{a}p[{t}] * {term(level + 1, off + (f' + {t * ist[a]}' if t else ''))}"
                     for t in range(names[a][0])]
            return parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"
        body = [f"const {acc_t} acc = {term(0, '')};"]
    else:  # wide windows (antialiased downsampling): loops, each level summing its partial result
        def loops(level: int, off: str, target: str) -> list[str]:
            a = nest[level]
            off += f" + t{a} * {ist[a]}"
            out = [f"for (int64_t t{a} = 0; t{a} < {names[a][0]}; t{a}++) {{"]
            if level == len(nest) - 1:
                out.append(f"    {target} += w{a}p[t{a}] * {load(off)};")
            else:
                out.append(f"    {acc_t} p{a} = 0;")
                out += ["    " + x for x in loops(level + 1, off, f"p{a}")]
                out.append(f"    {target} += w{a}p[t{a}] * p{a};")
            return out + ["}"]
        body = [f"{acc_t} acc = 0;"] + loops(0, "", "acc")
    if num.is_float:
        body.append(f"Y[o{rank - 1}] = {num.store('acc')};")
    elif num.dt.short == "bool":
        body.append(f"Y[o{rank - 1}] = acc != 0;")
    else:
        lo, hi = num.lowest(), num.highest()
        body.append(f"{{ const double v = trunc(acc); Y[o{rank - 1}] = v <= (double){lo} ? {lo} : "
                    f"(v >= (double){hi} ? {hi} : ({num.c})v); }}")
    lines.append(indent("\n".join(body), rank + 1))
    for d in reversed(range(rank)):
        lines.append("    " * d + "}")
    code = "\n".join(["    " + d for d in decls] + [indent("\n".join(lines))])
    return mark("resize", "unrolled" if unrolled else "loops", code)
