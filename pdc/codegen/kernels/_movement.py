"""Loop nests that move elements unchanged, shared by the data-movement kernels (tensor family).

A copy is described per output dim as `(size, src, dst)`: `dst` is the element stride of the
destination, `src` either the element stride of the source or a table (a NumPy int array, one
source element offset per index along the dim). Strided dims cover transpose, slice, expand, tile
and concat/split; tables cover reflect/edge/wrap padding and nearest resizing. `copy_nest`
simplifies the dims (drops size-1 dims, turns affine tables into strides, merges dims that are
contiguous on both sides) and emits the loops: memcpy for contiguous runs, 2-D tiles when the
source's contiguous dim is not the destination's (a transpose).

`gather_axes` builds the dims from per-axis index maps (source index per output index, -1 for a
fill value) over row-major tensors.
"""
from __future__ import annotations

import functools
import re
import weakref
from typing import Optional, Sequence

import numpy as np

from ..context import KernelContext, strides
from ..ctypes_c import float_literal, int_literal

TILE = 16            # transpose tile edge (elements)
MEMCPY_MIN = 8       # contiguous runs at least this long are copied with memcpy
INLINE_TABLE_MAX = 64  # tables up to this many entries are written into the C source


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
        if size == 0:
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
        if size == 1:
            if isinstance(src, np.ndarray):
                src_base += int(src[0])
            continue
        out.append((size, src, dst))
    out = [d for d in out if d[0] != 1]
    merged: list = []
    for size, src, dst in out:
        if merged:
            n0, s0, d0 = merged[-1]
            if not isinstance(s0, np.ndarray) and not isinstance(src, np.ndarray) \
                    and s0 == src * size and d0 == dst * size:
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
        unused = [n for n in names if not re.search(rf"\b{n}\b", body)]
        return ("    " + " ".join(f"(void){n};" for n in unused) + "\n" if unused else "") + body
    return wrapped


_KEEP: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def pack(ctx: KernelContext, array: np.ndarray, c_type: str) -> str:
    """ctx.add_weight for an array made here. The weight blob recognizes arrays by id(), so the
    array is kept alive as long as the blob (else a later temporary could reuse its id)."""
    array = np.ascontiguousarray(array)
    _KEEP.setdefault(ctx._weights, []).append(array)
    return ctx.add_weight(array, c_type)


def table(ctx: KernelContext, t: np.ndarray, name: str, c_type: Optional[str] = None) -> tuple[str, str]:
    """(declaration, C expression) of a constant table: a static array written into the source when
    small (the declaration), else packed constant data (no declaration). Integer tables are int32
    when their values fit; float tables take c_type ('float' or 'double')."""
    t = np.asarray(t).reshape(-1)
    if c_type in ("float", "double"):
        dt = np.float32 if c_type == "float" else np.float64
        text = lambda v: float_literal(float(v), c_type)  # noqa: E731
    else:
        wide = t.size and (t.max() > 2 ** 31 - 1 or t.min() < -2 ** 31)
        c_type, dt = ("int64_t", np.int64) if wide else ("int32_t", np.int32)
        text = lambda v: int_literal(int(v))  # noqa: E731
    t = t.astype(dt)
    if t.size <= INLINE_TABLE_MAX:
        return f"static const {c_type} {name}[{t.size}] = {{{', '.join(text(v) for v in t)}}};", name
    return "", pack(ctx, t, c_type)


def copy_nest(ctx: KernelContext, dims, src: str = "in0", dst: str = "out0", src_base: int = 0,
              dst_base: int = 0, itemsize: Optional[int] = None) -> str:
    """C statements copying dst[dst_base + sum i_k*dst_k] = src[src_base + sum src_k(i_k)]."""
    s = simplify(dims, src_base, dst_base)
    if s is None:
        return "    /* nothing to copy */"
    sb, db, dims = s
    esize = f"sizeof(*{dst})" if itemsize is None else str(itemsize)
    if not dims:
        return f"    {dst}[{db}] = {src}[{sb}];"
    decls, srcs = [], []
    for k, (n, sk, dk) in enumerate(dims):
        if isinstance(sk, np.ndarray):
            if k == len(dims) - 1 and all(seg[0] == "run" for seg in _segments(sk)):
                srcs.append(None)  # the innermost dim is all runs: no table needed
                continue
            decl, expr = table(ctx, sk, f"t{k}")
            if decl:
                decls.append("    " + decl)
            srcs.append(lambda v, e=expr: f"{e}[{v}]")
        else:
            srcs.append(lambda v, st=sk: f"{v} * {st}" if st != 1 else v)
    r = len(dims)
    inner_n, inner_s, inner_d = dims[-1]
    # transpose tiles: the destination's contiguous dim is strided in the source and another dim
    # is the source's contiguous one
    tile = None
    if inner_d == 1 and not isinstance(inner_s, np.ndarray) and inner_s not in (0, 1) and inner_n >= TILE // 2:
        for k in range(r - 1):
            if not isinstance(dims[k][1], np.ndarray) and dims[k][1] == 1 and dims[k][0] >= TILE // 2:
                tile = k
    lines = list(decls)
    order = [k for k in range(r) if k != tile and k != r - 1] if tile is not None else list(range(r - 1))
    prev_s, prev_d = str(sb), str(db)
    depth = 1
    for k in order:
        n, _, dk = dims[k]
        pad = "    " * depth
        lines.append(f"{pad}for (int64_t i{k} = 0; i{k} < {n}; i{k}++) {{")
        lines.append(f"{pad}    const int64_t s{k} = {prev_s} + {srcs[k](f'i{k}')};")
        lines.append(f"{pad}    const int64_t d{k} = {prev_d} + i{k} * {dk};")
        prev_s, prev_d = f"s{k}", f"d{k}"
        depth += 1
    pad = "    " * depth
    j = r - 1
    if tile is not None:
        a = tile
        na, _, da = dims[a]
        lines += [f"{pad}for (int64_t a0 = 0; a0 < {na}; a0 += {TILE}) {{",
                  f"{pad}    const int64_t ae = a0 + {TILE} < {na} ? a0 + {TILE} : {na};",
                  f"{pad}    for (int64_t b0 = 0; b0 < {inner_n}; b0 += {TILE}) {{",
                  f"{pad}        const int64_t be = b0 + {TILE} < {inner_n} ? b0 + {TILE} : {inner_n};",
                  f"{pad}        for (int64_t i{a} = a0; i{a} < ae; i{a}++) {{",
                  f"{pad}            const {_elem(src)} *sp = {src} + {prev_s} + i{a};",
                  f"{pad}            {_elem(dst, const=False)}*dp = {dst} + {prev_d} + i{a} * {da};",
                  f"{pad}            for (int64_t i{j} = b0; i{j} < be; i{j}++) dp[i{j}] = sp[i{j} * {inner_s}];",
                  f"{pad}        }}", f"{pad}    }}", f"{pad}}}"]
    else:
        segs = _segments(inner_s) if isinstance(inner_s, np.ndarray) else [("run", 0, inner_n, 0, inner_s)]
        d_expr = f"i{j}" if inner_d == 1 else f"i{j} * {inner_d}"
        for seg in segs:
            start, n = seg[1], seg[2]
            if seg[0] == "tab":
                lines.append(f"{pad}for (int64_t i{j} = {start}; i{j} < {start + n}; i{j}++) "
                             f"{dst}[{prev_d} + {d_expr}] = {src}[{prev_s} + {srcs[j](f'i{j}')}];")
                continue
            first, step = seg[3], seg[4]
            d0, s0 = f"{prev_d} + {start * inner_d}", f"{prev_s} + {first}"
            if step == 1 and inner_d == 1 and n >= MEMCPY_MIN:
                lines.append(f"{pad}memcpy({dst} + {d0}, {src} + {s0}, {n} * {esize});")
            else:
                lines.append(f"{pad}for (int64_t i{j} = 0; i{j} < {n}; i{j}++) "
                             f"{dst}[{d0} + {d_expr}] = {src}[{s0} + i{j} * {step}];")
    for k in reversed(range(len(order))):
        lines.append("    " * (k + 1) + "}")
    return "\n".join(lines)


def _elem(ptr: str, const: bool = True) -> str:
    """The element type of a kernel pointer parameter, as __typeof__ (works for every dtype)."""
    return f"__typeof__(*{ptr})" if const else f"__typeof__(*{ptr}) "


def fill(dst: str, n: int, value: str, zero: bool, base: int = 0) -> str:
    """Sets n elements of dst to value (memset when the value is all-zero bits)."""
    if n == 0:
        return ""
    if zero:
        return f"    memset({dst} + {base}, 0, {n} * sizeof(*{dst}));"
    return f"    for (int64_t o = 0; o < {n}; o++) {dst}[{base} + o] = {value};"


def gather_axes(ctx: KernelContext, in_shape: Sequence[int], out_shape: Sequence[int],
                maps: Sequence[Optional[np.ndarray]], fill_value: Optional[str] = None, fill_zero: bool = True,
                src: str = "in0", dst: str = "out0") -> str:
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
        dims.append((len(m), m * ist[d], ost[d]))
    n_out = int(np.prod(out_shape, dtype=np.int64))
    if int(np.prod([n for n, _, _ in dims], dtype=np.int64)) < n_out:
        if fill_value is None:
            ctx.fail("internal: positions without a source and no fill value")
        code.append(fill(dst, n_out, fill_value, fill_zero))
    code.append(copy_nest(ctx, dims, src, dst, 0, base))
    return "\n".join(c for c in code if c)


__all__ = ["copy_nest", "gather_axes", "fill", "pack", "simplify", "table", "uses_all_params"]
