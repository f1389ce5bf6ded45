"""Index-driven kernels: gather, gather_elements, gather_nd, scatter_elements, scatter_nd, one_hot,
reverse_sequence, compress, non_zero (unique: see misc.py).

Indices are read at run time and normalized like the references (a negative index counts from the
end of its axis). The references reject out-of-range indices; so do the kernels: the run function
returns PDC_ERR_INDEX (a kir Check). They stay memory-safe meanwhile: a gather from an out-of-range
index writes zeros, a scatter to one is skipped.
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes as D
from ...ir.ops.common import normalize_axis
from ...ir.ops.tensor_index import _reverse_sequence_axes
from .. import kir
from ..context import KernelContext, numel, strides
from ..kir import Var, cast, index_var
from . import kernel
from ._kir import io, prints_kir, render
from .loops import PAR, flat_index

EMPTY = kir.Comment("empty output")


def _prod(xs) -> int:
    return int(np.prod(list(xs), dtype=np.int64))


def _norm(var: Var, index: kir.Expr, dim: int) -> list:
    """Declares int64 `var` = the index mapped into [0, dim) when in range (else left out of it)."""
    return [kir.Declare(var, cast(kir.INDEX, index), const=False), kir.when(var < 0, kir.Assign(var, var + dim))]


def _in_range(var: kir.Expr, dim: int) -> kir.Expr:
    return cast(D.uint64, var) < cast(D.uint64, kir.as_expr(dim))


def _checked(var: Var, index: kir.Expr, dim: int) -> list:
    """_norm, and an out-of-range index reported (the run returns PDC_ERR_INDEX)."""
    return _norm(var, index, dim) + [kir.Check(_in_range(var, dim).lnot())]


def _nest(shape, st, body, parallel: bool) -> list:
    """Loops over `shape` (row-major; Parallel ones when told so); body(o, p) gives the statements
    for the flat index `o` and the offset p = sum i_d * st[d]."""
    o = index_var("o")
    p: kir.Expr = kir.idx(0)
    iv = [index_var(f"i{d}") for d in range(len(shape))]

    def level(d: int) -> list:
        nonlocal p
        if d == len(shape):
            pv = index_var("p")
            return [kir.Declare(pv, p), kir.Declare(o, flat_index(iv, shape))] + list(body(o, pv))
        pd = index_var(f"p{d}")
        decl = kir.Declare(pd, kir.iadd(p, kir.imul(iv[d], st[d])))
        p = pd
        return [kir.loop(iv[d], shape[d], decl, level(d + 1), annotation=PAR if parallel else None)]
    return level(0)


def _copy_input(ctx: KernelContext) -> list:
    ins, outs = io(ctx)
    n = numel(ctx.outputs[0])
    return [kir.Copy(outs[0], kir.idx(0), ins[0], kir.idx(0), kir.idx(n), in_place=True)] if n else []


def _combine(ctx: KernelContext, reduction: str, dst: kir.Buffer, at: kir.Expr, src: kir.Expr) -> kir.Stmt:
    """The statement dst[at] = reduction(dst[at], src) (or = src), as the reference's ufunc.at does it."""
    dt = ctx.outputs[0].dtype
    if reduction == "none":
        return kir.Store(dst, at, src)
    if dt.short == "bool":
        old = dst[at]
        both = {"add": old | src, "max": old | src, "mul": old & src, "min": old & src}[reduction]
        return kir.store(dst, at, both.ne(0))
    if dt.is_float:
        ct = D.float32 if dt.short in ("f16", "bf16") else dt
        a, b = Var("a", ct), Var("b", ct)
        expr = {"add": lambda: a + b, "mul": lambda: a * b,
                "max": lambda: kir.select(a.ne(a).lor(b.ne(b)), a + b, kir.select(a > b, a, b)),
                "min": lambda: kir.select(a.ne(a).lor(b.ne(b)), a + b, kir.select(a < b, a, b))}[reduction]()
        return kir.block(kir.Declare(a, cast(ct, dst[at])), kir.Declare(b, cast(ct, src)), kir.store(dst, at, expr),
                         scoped=True)
    u = D.uint64 if dt.itemsize == 8 else D.uint32  # wraps like NumPy, without signed overflow
    a, b = Var("a", dt), Var("b", dt)
    expr = {"add": lambda: cast(dt, cast(u, a) + cast(u, b)), "mul": lambda: cast(dt, cast(u, a) * cast(u, b)),
            "max": lambda: kir.select(a > b, a, b), "min": lambda: kir.select(a < b, a, b)}[reduction]()
    return kir.block(kir.Declare(a, dst[at]), kir.Declare(b, src), kir.store(dst, at, expr), scoped=True)


def _reduction(ctx: KernelContext) -> str:
    r = ctx.attrs.get("reduction", "none")
    if r not in ("none", "add", "mul", "max", "min"):
        ctx.fail(f"reduction '{r}' is not supported")
    return r


# ---- gathers -------------------------------------------------------------------------------
@kernel("gather")
@prints_kir
def gather(ctx: KernelContext) -> str:
    x, idx, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(x.shape))
    outer, n, inner = _prod(x.shape[:axis]), x.shape[axis], _prod(x.shape[axis + 1:])
    m = numel(idx)
    if numel(y) == 0:
        return render(ctx, EMPTY)
    ins, outs = io(ctx)
    o, j, k = index_var("o"), index_var("j"), index_var("k")
    ok = _in_range(k, n)
    if inner == 1:
        body = kir.store(outs[0], o * m + j, kir.select(ok, ins[0][o * n + k], kir.zero(y.dtype)))
    else:
        dst = (o * m + j) * inner
        body = kir.If(ok, kir.block(kir.Copy(outs[0], dst, ins[0], (o * n + k) * inner, kir.idx(inner))),
                      kir.block(kir.Fill(outs[0], dst, kir.idx(inner), kir.zero(y.dtype), zero=True)))
    return render(ctx, kir.loop(o, outer, kir.loop(j, m, _checked(k, ins[1][j], n), body, annotation=PAR),
                                annotation=PAR))


def _elements_setup(ctx: KernelContext):
    x, idx = ctx.inputs[0], ctx.inputs[1]
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(x.shape))
    if len(idx.shape) != len(x.shape):
        ctx.fail(f"indices {idx} must have the rank of data {x}")
    st = strides(x.shape)
    walk = [0 if d == axis else st[d] for d in range(len(x.shape))]  # the index replaces coordinate `axis`
    return axis, st, walk


@kernel("gather_elements")
@prints_kir
def gather_elements(ctx: KernelContext) -> str:
    x, idx, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    axis, st, walk = _elements_setup(ctx)
    if numel(idx) == 0:
        return render(ctx, EMPTY)
    n = x.shape[axis]
    ins, outs = io(ctx)
    k = index_var("k")

    def body(o, p):
        return _checked(k, ins[1][o], n) + [
            kir.store(outs[0], o, kir.select(_in_range(k, n), ins[0][p + k * st[axis]], kir.zero(y.dtype)))]
    return render(ctx, _nest(idx.shape, walk, body, parallel=True))


@kernel("scatter_elements")
@prints_kir
def scatter_elements(ctx: KernelContext) -> str:
    x, idx, upd = ctx.inputs
    if tuple(idx.shape) != tuple(upd.shape):
        ctx.fail(f"indices {idx} and updates {upd} must have one shape")
    axis, st, walk = _elements_setup(ctx)
    red = _reduction(ctx)
    code = _copy_input(ctx)
    if numel(idx):
        n = x.shape[axis]
        ins, outs = io(ctx)
        k = index_var("k")

        def body(o, p):
            return _checked(k, ins[1][o], n) + [
                kir.when(_in_range(k, n), _combine(ctx, red, outs[0], p + k * st[axis], ins[2][o]))]
        code += _nest(idx.shape, walk, body, parallel=False)  # indices may repeat: serial
    return render(ctx, code or EMPTY)


def _nd_offset(data_shape, k: int, ix: kir.Buffer, at: kir.Expr) -> tuple[list, Var, Var]:
    """(statements, off, ok): `off` the element offset of the slice addressed by the k indices at
    ix[at..at + k), `ok` whether every index was in range."""
    st = strides(data_shape)
    off, ok = index_var("off"), Var("ok", kir.C_INT)
    lines = [kir.Declare(off, kir.idx(0), const=False), kir.Declare(ok, kir.idx(1), const=False)]
    v = index_var("v")
    for j in range(k):
        dim = data_shape[j]
        lines.append(kir.block(_norm(v, ix[kir.iadd(at, j)], dim), kir.Assign(ok, ok & _in_range(v, dim)),
                               kir.Assign(off, off + v * st[j]), scoped=True))
    return lines, off, ok


@kernel("gather_nd")
@prints_kir
def gather_nd(ctx: KernelContext) -> str:
    x, idx, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    b = ctx.attrs.get("batch_dims", 0)
    k = idx.shape[-1]
    nb = _prod(x.shape[:b])
    P = _prod(idx.shape[b:-1])
    S = _prod(x.shape[b + k:])
    if numel(y) == 0:
        return render(ctx, EMPTY)
    inner = x.shape[b:]
    ins, outs = io(ctx)
    bi, p, ix = index_var("bi"), index_var("p"), index_var("ix")
    find, off, ok = _nd_offset(inner, k, ins[1], ix)
    dst = (bi * P + p) * S
    body = [kir.Declare(ix, (bi * P + p) * k), find, kir.Check(ok.lnot()),
            kir.If(ok, kir.block(kir.Copy(outs[0], dst, ins[0], bi * _prod(inner) + off, kir.idx(S))),
                   kir.block(kir.Fill(outs[0], dst, kir.idx(S), kir.zero(y.dtype), zero=True)))]
    return render(ctx, kir.loop(bi, nb, kir.loop(p, P, body, annotation=PAR), annotation=PAR))


@kernel("scatter_nd")
@prints_kir
def scatter_nd(ctx: KernelContext) -> str:
    x, idx, upd = ctx.inputs
    red = _reduction(ctx)
    k = idx.shape[-1]
    P = _prod(idx.shape[:-1])
    S = _prod(x.shape[k:])
    if numel(upd) != P * S:
        ctx.fail(f"updates {upd} must have shape {list(idx.shape[:-1]) + list(x.shape[k:])}")
    code = _copy_input(ctx)
    if P * S:
        ins, outs = io(ctx)
        p, s = index_var("p"), index_var("s")
        find, off, ok = _nd_offset(x.shape, k, ins[1], p * k)
        if red == "none":
            apply = kir.Copy(outs[0], off, ins[2], p * S, kir.idx(S))
        else:
            apply = kir.loop(s, S, _combine(ctx, red, outs[0], off + s, ins[2][p * S + s]))
        code.append(kir.loop(p, P, find, kir.Check(ok.lnot()), kir.when(ok, apply)))
    return render(ctx, code or EMPTY)


# ---- one_hot / reverse_sequence / compress / non_zero ------------------------------
@kernel("one_hot")
@prints_kir
def one_hot(ctx: KernelContext) -> str:
    idx, y = ctx.inputs[0], ctx.outputs[0]
    axis = normalize_axis(ctx.attrs.get("axis", -1), len(idx.shape) + 1)
    depth = y.shape[axis]
    outer, inner = _prod(idx.shape[:axis]), _prod(idx.shape[axis:])
    if numel(y) == 0:
        return render(ctx, EMPTY)
    ins, outs = io(ctx)
    o, j, k, i = index_var("o"), index_var("j"), index_var("k"), index_var("i")
    at = ins[0][o * inner + j]
    if idx.dtype.is_float:  # truncated toward zero like astype(int64); NaN and huge values match nothing
        v = Var("v", D.float64)
        conv = [kir.Declare(v, cast(D.float64, at)),
                kir.Declare(k, kir.select((v > -9.2e18).land(v < 9.2e18), cast(kir.INDEX, v), -1 - depth), const=False),
                kir.when(k < 0, kir.Assign(k, k + depth))]
    else:
        conv = _norm(k, at, depth)
    off, on = Var("off", y.dtype), Var("on", y.dtype)
    return render(ctx, kir.Declare(off, ins[2][0]), kir.Declare(on, ins[2][1]),
                  kir.loop(i, numel(y), kir.Store(outs[0], i, off)),
                  kir.loop(o, outer, kir.loop(j, inner, conv, kir.when(_in_range(k, depth),
                                                                       kir.Store(outs[0], (o * depth + k) * inner + j, on)))))


@kernel("reverse_sequence")
@prints_kir
def reverse_sequence(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    b_ax, t_ax = _reverse_sequence_axes(ctx.attrs, len(x.shape))
    B, T = x.shape[b_ax], x.shape[t_ax]
    inner = _prod(x.shape[2:])
    if numel(x) == 0:
        return render(ctx, EMPTY)
    ins, outs = io(ctx)
    b, t, n, src = index_var("b"), index_var("t"), index_var("len"), index_var("src")
    at = (lambda b, t: b * T + t) if b_ax == 0 else (lambda b, t: t * B + b)
    raw = index_var("n")
    # every (b, t) copies its own output row
    return render(ctx, kir.loop(b, B, kir.Declare(raw, cast(kir.INDEX, ins[1][b])),
                                kir.Declare(n, kir.select(raw < 0, 0, kir.select(raw > T, T, raw))),
                                kir.loop(t, T, kir.Declare(src, kir.select(t < n, n - 1 - t, t)),
                                         kir.Copy(outs[0], at(b, t) * inner, ins[0], at(b, src) * inner,
                                                  kir.idx(inner)), annotation=PAR), annotation=PAR))


@kernel("compress")
@prints_kir
def compress(ctx: KernelContext) -> str:
    x, cond, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    axis = ctx.attrs.get("axis")
    if axis is None:
        outer, n, inner, m = 1, numel(x), 1, numel(y)
    else:
        axis = normalize_axis(axis, len(x.shape))
        outer, n, inner, m = _prod(x.shape[:axis]), x.shape[axis], _prod(x.shape[axis + 1:]), y.shape[axis]
    c = min(numel(cond), n)
    if numel(y) == 0:
        return render(ctx, EMPTY)
    # the output length is static: it came from a constant condition (or the same values at run time)
    ins, outs = io(ctx)
    i, j, o = index_var("i"), index_var("j"), index_var("o")
    return render(ctx, kir.Declare(j, kir.idx(0), const=False),
                  kir.loop(i, c, kir.when(j >= m, kir.Break()), kir.when(ins[1][i].lnot(), kir.Continue()),
                           kir.loop(o, outer, kir.Copy(outs[0], (o * m + j) * inner, ins[0], (o * n + i) * inner,
                                                       kir.idx(inner))),
                           kir.Assign(j, j + 1)))


@kernel("non_zero")
@prints_kir
def non_zero(ctx: KernelContext) -> str:
    """The coordinates, column by column. With a bound (passes/bound_outputs.py) the columns past
    the count are zeros and the count goes to the length output; else the count is static (the
    input was a constant, or the same values come at run time) and the loop stops there."""
    x, y = ctx.inputs[0], ctx.outputs[0]
    shape = list(x.shape) or [1]
    nnz = y.shape[1]
    bounded = ctx.attrs.get("bound") is not None
    ins, outs = io(ctx)
    if nnz == 0:
        return render(ctx, kir.store(outs[1], kir.idx(0), kir.idx(0))) if bounded else render(ctx, EMPTY)
    st = strides(shape)
    f, j = index_var("f"), index_var("j")
    v = ins[0][f]
    test = (kir.bitcast(D.uint16, v) & 0x7fff).ne(0) if x.dtype.short == "bf16" else v.ne(kir.zero(x.dtype))
    coords = [kir.store(outs[0], d * nnz + j, f / st[d] % n) for d, n in enumerate(shape)]
    body = [kir.Declare(j, kir.idx(0), const=False),
            kir.loop(f, numel(x), kir.when(j >= nnz, kir.Break()), kir.when(test.lnot(), kir.Continue()),
                     coords, kir.Assign(j, j + 1))]
    if bounded:
        body = [kir.Fill(outs[0], kir.idx(0), kir.idx(numel(y)), kir.as_expr(0)), *body,
                kir.store(outs[1], kir.idx(0), j)]
    return render(ctx, *body)
