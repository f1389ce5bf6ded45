"""Loop nests that move elements unchanged, shared by the data-movement kernels (tensor family).

A copy is described per output dim as `(size, src, dst)`: `dst` is the element stride of the
destination, `src` either the element stride of the source or a table (a NumPy int array, one
source element offset per index along the dim). Strided dims cover transpose, slice, expand, tile
and concat/split; tables cover reflect/edge/wrap padding and nearest resizing. `copy_nest`
simplifies the dims (drops size-1 dims, turns affine tables into strides, merges dims that are
contiguous on both sides) and emits the loops as kernel-IR statements (pdc/codegen/kir): copies
(memcpy in C) for contiguous runs, 2-D tiles when the source's contiguous dim is not the
destination's (a transpose).

`gather_axes` builds the dims from per-axis index maps (source index per output index, -1 for a
fill value) over row-major tensors.
"""
from __future__ import annotations

import functools
import weakref
from typing import Optional, Sequence

import numpy as np

from ...ir.symbolic import same_size, upper

from ...ir import dtypes as D
from .. import kir
from ..context import KernelContext, strides
from . import unnamed
from .loops import PAR

TILE = 16            # transpose tile edge (elements)
MEMCPY_MIN = 8       # contiguous runs at least this long are copied with memcpy
INLINE_TABLE_MAX = 64  # tables up to this many entries are written into the C source
MAX_AXIS_TABLE = 1 << 22  # entries of one axis' index table: built in Python, so a longer axis is refused


def check_axis_table(ctx: KernelContext, axis: int, length: int) -> None:
    """Refuses an index table (one entry per output position along `axis`) too long to build."""
    if length > MAX_AXIS_TABLE:
        ctx.fail(f"axis {axis} has {length} outputs: its index table would be over pdc's limit of "
                 f"{MAX_AXIS_TABLE} entries")


def _affine(t: np.ndarray) -> Optional[tuple[int, int]]:
    """(first, step) when the table is an arithmetic progression."""
    if len(t) == 1:
        return int(t[0]), 0
    d = np.diff(t)
    return (int(t[0]), int(d[0])) if (d == d[0]).all() else None


def _repeats(t: np.ndarray):
    """A table that is affine in (i // b, i % b) for a small b (nearest upsampling by an integer
    factor): (a, first, outer step, b, inner step); else None."""
    n = len(t)
    for b in range(2, min(n, 16) + 1):
        if n % b:
            continue
        m = t.reshape(n // b, b)
        inner = np.diff(m, axis=1)
        if not (inner == inner[0, 0]).all():
            continue
        outer = _affine(m[:, 0])
        if outer is not None:
            return n // b, outer[0], outer[1], b, int(inner[0, 0])
    return None


def simplify(dims, src_base: int = 0, dst_base: int = 0):
    """(src_base, dst_base, dims) with the same meaning and fewer, merged dims; None when empty."""
    out = []
    for size, src, dst in dims:
        if same_size(size, 0):
            return None
        if isinstance(src, np.ndarray):
            aff = _affine(src)
            rep = None if aff is not None else _repeats(src)
            if aff is not None:
                src_base += aff[0]
                src = aff[1]
            elif rep is not None:  # one table dim as two strided ones
                a, first, sa, b, sb = rep
                src_base += first
                out += [(a, sa, dst * b), (b, sb, dst)]
                continue
        if same_size(size, 1):
            if isinstance(src, np.ndarray):
                src_base += int(src[0])
            continue
        out.append((size, src, dst))
    out = [d for d in out if not same_size(d[0], 1)]
    merged: list = []
    for size, src, dst in out:
        if merged:
            n0, s0, d0 = merged[-1]
            if not isinstance(s0, np.ndarray) and not isinstance(src, np.ndarray) \
                    and same_size(s0, src * size) and same_size(d0, dst * size):
                merged[-1] = (n0 * size, src, dst)
                continue
        merged.append((size, src, dst))
    return src_base, dst_base, merged


def _segments(t: np.ndarray) -> list:
    """A table cut into arithmetic runs of at least MEMCPY_MIN entries ('run', start, length, first,
    step) and what lies between them ('tab', start, length): the interior of a reflect/edge pad
    becomes one contiguous run."""
    segs: list = []
    n, i = len(t), 0
    while i < n:
        j, step = i + 1, 0  # t[i:j] is arithmetic
        if j < n:
            step = int(t[j] - t[i])
            while j < n and t[j] - t[j - 1] == step:
                j += 1
        if j - i >= MEMCPY_MIN:
            segs.append(("run", i, j - i, int(t[i]), step))
            i = j
            continue
        if segs and segs[-1][0] == "tab":
            segs[-1] = ("tab", segs[-1][1], segs[-1][2] + 1)
        else:
            segs.append(("tab", i, 1))
        i += 1
    return segs


def uses_all_params(gen):
    """Wraps a generator: parameters its body never names are marked used ((void)p;), so the
    kernels compile without unused-parameter warnings (optional inputs, shape operands)."""
    @functools.wraps(gen)
    def wrapped(ctx: KernelContext) -> str:
        body = gen(ctx)
        names = [f"in{i}" for i in range(len(ctx.inputs))] + [f"out{i}" for i in range(len(ctx.outputs))]
        unused = unnamed(body, names)
        return ("    " + " ".join(f"(void){n};" for n in unused) + "\n" if unused else "") + body
    return wrapped


_KEEP: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def pack(ctx: KernelContext, array: np.ndarray, c_type: str) -> str:
    """ctx.add_weight for an array made here. The weight blob recognizes arrays by id(), so the
    array is kept alive as long as the blob (else a later temporary could reuse its id)."""
    array = np.ascontiguousarray(array)
    _KEEP.setdefault(ctx._weights, []).append(array)
    return ctx.add_weight(array, c_type)


def _table_values(t: np.ndarray, c_type: Optional[str]):
    """(array, kir dtype, C type): int32 when the values fit, else int64; floats as c_type."""
    t = np.asarray(t).reshape(-1)
    if c_type in ("float", "double"):
        single = c_type == "float"
        return t.astype(np.float32 if single else np.float64), (D.float32 if single else D.float64), c_type
    wide = t.size and (t.max() > 2 ** 31 - 1 or t.min() < -2 ** 31)
    return (t.astype(np.int64), D.int64, "int64_t") if wide else (t.astype(np.int32), D.int32, "int32_t")


def table(ctx: KernelContext, t: np.ndarray, name: str, c_type: Optional[str] = None) -> tuple[str, str]:
    """(declaration, C expression) of a constant table: a static array written into the source when
    small (the declaration), else packed constant data (no declaration). Integer tables are int32
    when their values fit; float tables take c_type ('float' or 'double')."""
    stmt, buf = table_ir(ctx, t, name, c_type)
    if isinstance(stmt, kir.ConstArray):
        return kir.CPrinter().simple(stmt), name
    t, _, ct = _table_values(t, c_type)
    return "", pack(ctx, t, ct)


def table_ir(ctx: KernelContext, t: np.ndarray, name: str, c_type: Optional[str] = None):
    """(declaring statement, buffer) of a constant table: its values in the source when small, else
    a view of packed constant data."""
    t, dt, ct = _table_values(t, c_type)
    buf = kir.Buffer(name, dt, "constant")
    if t.size <= INLINE_TABLE_MAX:
        return kir.ConstArray(buf, tuple(v.item() for v in t)), buf
    t = np.ascontiguousarray(t)
    _KEEP.setdefault(ctx._weights, []).append(t)
    return kir.WeightsView(buf, ctx._weights.add(t)), buf


def copy_nest(ctx: KernelContext, dims, src: kir.Buffer, dst: kir.Buffer, src_base: int = 0,
              dst_base: int = 0) -> list:
    """Statements copying dst[dst_base + sum i_k*dst_k] = src[src_base + sum src_k(i_k)]."""
    s = simplify(dims, src_base, dst_base)
    if s is None:
        return [kir.Comment("nothing to copy")]
    sb, db, dims = s
    if not dims:
        return [kir.Store(dst, kir.idx(db), src[sb])]
    decls, srcs = [], []
    for k, (n, sk, dk) in enumerate(dims):
        if isinstance(sk, np.ndarray):
            if k == len(dims) - 1 and all(seg[0] == "run" for seg in _segments(sk)):
                srcs.append(None)  # the innermost dim is all runs: no table needed
                continue
            decl, tab = table_ir(ctx, sk, f"t{k}")
            decls.append(decl)
            srcs.append(lambda v, tab=tab: tab[v])
        else:
            srcs.append(lambda v, st=sk: kir.imul(v, st))
    r = len(dims)
    inner_n, inner_s, inner_d = dims[-1]
    # transpose tiles: the destination's contiguous dim is strided in the source and another dim
    # is the source's contiguous one
    tile = None
    # (sizes known only at run time: by their upper bounds; the tiles take any size)
    if (same_size(inner_d, 1) and not isinstance(inner_s, np.ndarray) and not same_size(inner_s, 0)
            and not same_size(inner_s, 1) and upper(inner_n) >= TILE // 2):
        for k in range(r - 1):
            if not isinstance(dims[k][1], np.ndarray) and same_size(dims[k][1], 1) and upper(dims[k][0]) >= TILE // 2:
                tile = k
    order = [k for k in range(r) if k != tile and k != r - 1] if tile is not None else list(range(r - 1))
    iv = [kir.index_var(f"i{k}") for k in range(r)]
    j = r - 1

    def innermost(prev_s: kir.Expr, prev_d: kir.Expr) -> list:
        if tile is not None:
            a = tile
            na, _, da = dims[a]
            a0, ae, b0, be = (kir.index_var(n) for n in ("a0", "ae", "b0", "be"))
            sp, dp = kir.index_var("sp"), kir.index_var("dp")
            row = kir.loop(iv[a], ae,
                           kir.Declare(sp, kir.iadd(prev_s, iv[a])),
                           kir.Declare(dp, kir.iadd(prev_d, kir.imul(iv[a], da))),
                           kir.loop(iv[j], be, kir.Store(dst, dp + iv[j], src[sp + iv[j] * inner_s]), start=b0),
                           start=a0)
            cols = kir.loop(b0, inner_n, kir.Declare(be, kir.select(b0 + TILE < inner_n, b0 + TILE, inner_n)), row,
                            step=TILE, annotation=PAR)
            return [kir.loop(a0, na, kir.Declare(ae, kir.select(a0 + TILE < na, a0 + TILE, na)), cols, step=TILE,
                             annotation=PAR)]
        out = []
        segs = _segments(inner_s) if isinstance(inner_s, np.ndarray) else [("run", 0, inner_n, 0, inner_s)]
        d_at = kir.imul(iv[j], inner_d)
        for seg in segs:
            start, n = seg[1], seg[2]
            if seg[0] == "tab":
                out.append(kir.loop(iv[j], start + n, kir.Store(dst, kir.iadd(prev_d, d_at),
                                                               src[kir.iadd(prev_s, srcs[j](iv[j]))]), start=start,
                                    annotation=PAR))
                continue
            first, step = seg[3], seg[4]
            d0, s0 = kir.iadd(prev_d, start * inner_d), kir.iadd(prev_s, first)
            if same_size(step, 1) and same_size(inner_d, 1) and upper(n) >= MEMCPY_MIN:
                out.append(kir.Copy(dst, d0, src, s0, kir.idx(n)))
            else:
                out.append(kir.loop(iv[j], n, kir.Store(dst, kir.iadd(d0, d_at),
                                                        src[kir.iadd(s0, kir.imul(iv[j], step))]), annotation=PAR))
        return out

    def level(pos: int, prev_s: kir.Expr, prev_d: kir.Expr) -> list:
        if pos == len(order):
            return innermost(prev_s, prev_d)
        k = order[pos]
        n, _, dk = dims[k]
        sv, dv = kir.index_var(f"s{k}"), kir.index_var(f"d{k}")
        return [kir.loop(iv[k], n, kir.Declare(sv, kir.iadd(prev_s, srcs[k](iv[k]))),
                         kir.Declare(dv, kir.iadd(prev_d, kir.imul(iv[k], dk))), level(pos + 1, sv, dv),
                         annotation=PAR)]

    return decls + level(0, kir.idx(sb), kir.idx(db))


def fill(dst: kir.Buffer, n: int, value: kir.Expr, zero: bool, base: int = 0) -> list:
    """Sets n elements of dst to value (memset when the value is all-zero bits)."""
    if n == 0:
        return []
    return [kir.Fill(dst, kir.idx(base), kir.idx(n), value, zero)]


def gather_axes(ctx: KernelContext, in_shape: Sequence[int], out_shape: Sequence[int],
                maps: Sequence[Optional[np.ndarray]], src: kir.Buffer, dst: kir.Buffer,
                fill_value: Optional[kir.Expr] = None, fill_zero: bool = True) -> list:
    """out[o_0, ..., o_r] = in[maps_0[o_0], ..., maps_r[o_r]] over row-major tensors; a map is None
    for the identity, and a -1 entry (the valid entries must form one run per axis) selects the
    fill value: the output is filled first, then the valid box is copied."""
    ist, ost = strides(in_shape), strides(out_shape)
    code, dims, base = [], [], 0
    for d, m in enumerate(maps):
        if m is None:
            dims.append((out_shape[d], ist[d], ost[d]))
            continue
        m = np.asarray(m, np.int64)
        valid = np.nonzero(m >= 0)[0]
        if len(valid) < len(m):
            if len(valid) and valid[-1] - valid[0] + 1 != len(valid):
                ctx.fail("internal: the copied positions along an axis are not one run")
            lo = int(valid[0]) if len(valid) else 0
            m = m[lo:lo + len(valid)]
            base += lo * ost[d]
        if len(m) > MAX_AXIS_TABLE and len(m) and _affine(m) is None:  # a strided run needs no table
            check_axis_table(ctx, d, len(m))
        dims.append((len(m), m * ist[d], ost[d]))
    n_out = int(np.prod(out_shape, dtype=np.int64))
    if int(np.prod([n for n, _, _ in dims], dtype=np.int64)) < n_out:
        if fill_value is None:
            ctx.fail("internal: positions without a source and no fill value")
        code += fill(dst, n_out, fill_value, fill_zero)
    return code + copy_nest(ctx, dims, src, dst, 0, base)


__all__ = ["check_axis_table", "copy_nest", "gather_axes", "fill", "pack", "simplify", "table", "table_ir", "uses_all_params"]
