"""Index-driven kernels: gather, gather_elements, gather_nd, scatter_elements, scatter_nd, one_hot,
reverse_sequence, compress, non_zero (unique: see misc.py).

Indices are read at run time and normalized like the references (a negative index counts from the
end of its axis). The references reject out-of-range indices; so do the kernels: the run function
returns PDC_ERR_INDEX (ctx.check). They stay memory-safe meanwhile: a gather from an out-of-range
index writes zeros, a scatter to one is skipped.
"""
from __future__ import annotations

import numpy as np

from ...ir.ops.common import normalize_axis
from ...ir.ops.tensor_index import _reverse_sequence_axes
from ..context import KernelContext, numel, strides
from . import kernel
from ._axis import Num, indent
from ._movement import uses_all_params


def _prod(xs) -> int:
    return int(np.prod(list(xs), dtype=np.int64))


def _norm(var: str, expr: str, dim: int) -> str:
    """Declares int64 `var` = the index expr mapped into [0, dim) when in range (else left out of it)."""
    return f"int64_t {var} = (int64_t){expr}; if ({var} < 0) {var} += {dim};"


def _in_range(var: str, dim: int) -> str:
    return f"((uint64_t){var} < (uint64_t){dim})"


def _nest(shape, st, body: str, var: str = "p") -> str:
    """Loops over `shape` (row-major) with `o` the flat index and `var` = sum i_d * st[d]."""
    lines = ["int64_t o = 0;"]
    prev = "0"
    for d, n in enumerate(shape):
        pad = "    " * d
        lines.append(f"{pad}for (int64_t i{d} = 0; i{d} < {n}; i{d}++) {{")
        lines.append(f"{pad}    const int64_t {var}{d} = {prev} + i{d} * {st[d]};")
        prev = f"{var}{d}"
    pad = "    " * len(shape)
    lines.append(f"{pad}const int64_t {var} = {prev};")
    lines.append(indent(body, len(shape)))
    lines.append(f"{pad}o++;")
    for d in reversed(range(len(shape))):
        lines.append("    " * d + "}")
    return indent("\n".join(lines))


def _copy_input(ctx: KernelContext) -> str:
    n = ctx.outputs[0].nbytes
    return f"    if (out0 != in0) memcpy(out0, in0, {n});" if n else ""


def _combine(ctx: KernelContext, reduction: str, dst: str, src: str) -> str:
    """The statement dst = reduction(dst, src) (or dst = src), as the reference's ufunc.at does it."""
    num = Num(ctx.outputs[0].dtype)
    if reduction == "none":
        return f"{dst} = {src};"
    if num.dt.short == "bool":
        op = {"add": "|", "max": "|", "mul": "&", "min": "&"}[reduction]
        return f"{dst} = (uint8_t)(({dst} {op} {src}) != 0);"
    if num.is_float:
        a, b = num.load(dst), num.load(src)
        expr = {"add": "a + b", "mul": "a * b",
                "max": "(a != a || b != b) ? a + b : (a > b ? a : b)",
                "min": "(a != a || b != b) ? a + b : (a < b ? a : b)"}[reduction]
        return f"{{ const {num.ct} a = {a}, b = {b}; {dst} = {num.store(expr)}; }}"
    u = "uint64_t" if num.dt.itemsize == 8 else "uint32_t"  # wraps like NumPy, without signed overflow
    expr = {"add": f"({num.c})(({u})a + ({u})b)", "mul": f"({num.c})(({u})a * ({u})b)",
            "max": "a > b ? a : b", "min": "a < b ? a : b"}[reduction]
    return f"{{ const {num.c} a = {dst}, b = {src}; {dst} = {expr}; }}"


def _reduction(ctx: KernelContext) -> str:
    r = ctx.attrs.get("reduction", "none")
    if r not in ("none", "add", "mul", "max", "min"):
        ctx.fail(f"reduction '{r}' is not supported")
    return r


# ---- gathers -------------------------------------------------------------------------------
@kernel("gather")
@uses_all_params
def gather(ctx: KernelContext) -> str:
    x, idx, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(x.shape))
    outer, n, inner = _prod(x.shape[:axis]), x.shape[axis], _prod(x.shape[axis + 1:])
    m = numel(idx)
    if numel(y) == 0:
        return "    /* empty output */"
    if inner == 1:
        body = f"out0[o * {m} + j] = {_in_range('k', n)} ? in0[o * {n} + k] : 0;"
    else:
        body = (f"{ctx.ctype(y.dtype)} *dst = out0 + (o * {m} + j) * {inner};\n"
                f"        if ({_in_range('k', n)})\n"
                f"            memcpy(dst, in0 + (o * {n} + k) * {inner}, {inner} * sizeof(*dst));\n"
                f"        else memset(dst, 0, {inner} * sizeof(*dst));")
    return (f"    for (int64_t o = 0; o < {outer}; o++)\n"
            f"    for (int64_t j = 0; j < {m}; j++) {{\n"
            f"        {_norm('k', 'in1[j]', n)} {ctx.check('!' + _in_range('k', n))}\n"
            f"        {body}\n"
            f"    }}")


def _elements_setup(ctx: KernelContext):
    x, idx = ctx.inputs[0], ctx.inputs[1]
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(x.shape))
    if len(idx.shape) != len(x.shape):
        ctx.fail(f"indices {idx} must have the rank of data {x}")
    st = strides(x.shape)
    walk = [0 if d == axis else st[d] for d in range(len(x.shape))]  # the index replaces coordinate `axis`
    return axis, st, walk


@kernel("gather_elements")
@uses_all_params
def gather_elements(ctx: KernelContext) -> str:
    x, idx = ctx.inputs[0], ctx.inputs[1]
    axis, st, walk = _elements_setup(ctx)
    if numel(idx) == 0:
        return "    /* empty output */"
    n = x.shape[axis]
    body = (f"{_norm('k', 'in1[o]', n)} {ctx.check('!' + _in_range('k', n))}\n"
            f"out0[o] = {_in_range('k', n)} ? in0[p + k * {st[axis]}] : 0;")
    return _nest(idx.shape, walk, body)


@kernel("scatter_elements")
@uses_all_params
def scatter_elements(ctx: KernelContext) -> str:
    x, idx, upd = ctx.inputs
    if tuple(idx.shape) != tuple(upd.shape):
        ctx.fail(f"indices {idx} and updates {upd} must have one shape")
    axis, st, walk = _elements_setup(ctx)
    red = _reduction(ctx)
    code = [_copy_input(ctx)]
    if numel(idx):
        n = x.shape[axis]
        body = (f"{_norm('k', 'in1[o]', n)} {ctx.check('!' + _in_range('k', n))}\n"
                f"if ({_in_range('k', n)}) {_combine(ctx, red, f'out0[p + k * {st[axis]}]', 'in2[o]')}")
        code.append(_nest(idx.shape, walk, body))
    return "\n".join(c for c in code if c) or "    /* empty output */"


def _nd_offset(data_shape, first: int, k: int, idx: str) -> list[str]:
    """Statements computing `off` (element offset of the addressed slice) from k indices at idx[0..k),
    the axes starting at `first`; `ok` says whether every index was in range."""
    st = strides(data_shape)
    lines = ["int64_t off = 0; int ok = 1;"]
    for j in range(k):
        dim = data_shape[first + j]
        lines.append(f"{{ {_norm('v', f'{idx}[{j}]', dim)} ok &= {_in_range('v', dim)}; off += v * {st[first + j]}; }}")
    return lines


@kernel("gather_nd")
@uses_all_params
def gather_nd(ctx: KernelContext) -> str:
    x, idx, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    b = ctx.attrs.get("batch_dims", 0)
    k = idx.shape[-1]
    nb = _prod(x.shape[:b])
    P = _prod(idx.shape[b:-1])
    S = _prod(x.shape[b + k:])
    if numel(y) == 0:
        return "    /* empty output */"
    inner = x.shape[b:]
    lines = [f"for (int64_t bi = 0; bi < {nb}; bi++)",
             f"for (int64_t p = 0; p < {P}; p++) {{",
             f"    const int64_t *ix = in1 + (bi * {P} + p) * {k};",
             *("    " + s for s in _nd_offset(inner, 0, k, "ix")),
             f"    {ctx.check('!ok')}",
             f"    {ctx.ctype(y.dtype)} *dst = out0 + (bi * {P} + p) * {S};",
             f"    if (ok) memcpy(dst, in0 + bi * {_prod(inner)} + off, {S} * sizeof(*dst));",
             f"    else memset(dst, 0, {S} * sizeof(*dst));",
             "}"]
    return indent("\n".join(lines))


@kernel("scatter_nd")
@uses_all_params
def scatter_nd(ctx: KernelContext) -> str:
    x, idx, upd = ctx.inputs
    red = _reduction(ctx)
    k = idx.shape[-1]
    P = _prod(idx.shape[:-1])
    S = _prod(x.shape[k:])
    if numel(upd) != P * S:
        ctx.fail(f"updates {upd} must have shape {list(idx.shape[:-1]) + list(x.shape[k:])}")
    code = [_copy_input(ctx)]
    if P * S:
        if red == "none":
            apply = f"memcpy(out0 + off, in2 + p * {S}, {S} * sizeof(*out0));"
        else:
            apply = (f"for (int64_t s = 0; s < {S}; s++) "
                     f"{_combine(ctx, red, 'out0[off + s]', f'in2[p * {S} + s]')}")
        lines = [f"for (int64_t p = 0; p < {P}; p++) {{",
                 f"    const int64_t *ix = in1 + p * {k};",
                 *("    " + s for s in _nd_offset(x.shape, 0, k, "ix")),
                 f"    {ctx.check('!ok')}",
                 f"    if (ok) {apply}",
                 "}"]
        code.append(indent("\n".join(lines)))
    return "\n".join(c for c in code if c) or "    /* empty output */"


# ---- one_hot / reverse_sequence / compress / non_zero ------------------------------
@kernel("one_hot")
@uses_all_params
def one_hot(ctx: KernelContext) -> str:
    idx, y = ctx.inputs[0], ctx.outputs[0]
    axis = normalize_axis(ctx.attrs.get("axis", -1), len(idx.shape) + 1)
    depth = y.shape[axis]
    outer, inner = _prod(idx.shape[:axis]), _prod(idx.shape[axis:])
    if numel(y) == 0:
        return "    /* empty output */"
    if idx.dtype.is_float:  # truncated toward zero like astype(int64); NaN and huge values match nothing
        v = ctx.load(idx.dtype, "in0[o * " + str(inner) + " + j]")
        conv = (f"const double v = (double){v};\n"
                f"        int64_t k = (v > -9.2e18 && v < 9.2e18) ? (int64_t)v : -1 - {depth};\n"
                f"        if (k < 0) k += {depth};")
    else:
        conv = _norm("k", f"in0[o * {inner} + j]", depth)
    return (f"    const {ctx.ctype(y.dtype)} off = in2[0], on = in2[1];\n"
            f"    for (int64_t i = 0; i < {numel(y)}; i++) out0[i] = off;\n"
            f"    for (int64_t o = 0; o < {outer}; o++)\n"
            f"    for (int64_t j = 0; j < {inner}; j++) {{\n"
            f"        {conv}\n"
            f"        if ({_in_range('k', depth)}) out0[(o * {depth} + k) * {inner} + j] = on;\n"
            f"    }}")


@kernel("reverse_sequence")
@uses_all_params
def reverse_sequence(ctx: KernelContext) -> str:

    x = ctx.inputs[0]
    b_ax, t_ax = _reverse_sequence_axes(ctx.attrs, len(x.shape))
    B, T = x.shape[b_ax], x.shape[t_ax]
    inner = _prod(x.shape[2:])
    if numel(x) == 0:
        return "    /* empty output */"
    at = (lambda b, t: f"({b} * {T} + {t})") if b_ax == 0 else (lambda b, t: f"({t} * {B} + {b})")
    return (f"    for (int64_t b = 0; b < {B}; b++) {{\n"
            f"        int64_t len = (int64_t)in1[b];\n"
            f"        len = len < 0 ? 0 : (len > {T} ? {T} : len);\n"
            f"        for (int64_t t = 0; t < {T}; t++) {{\n"
            f"            const int64_t src = t < len ? len - 1 - t : t;\n"
            f"            memcpy(out0 + {at('b', 't')} * {inner}, in0 + {at('b', 'src')} * {inner}, "
            f"{inner} * sizeof(*out0));\n"
            f"        }}\n"
            f"    }}")


@kernel("compress")
@uses_all_params
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
        return "    /* empty output */"
    # the output length is static: it came from a constant condition (or the same values at run time)
    return (f"    int64_t j = 0;\n"
            f"    for (int64_t i = 0; i < {c} && j < {m}; i++) {{\n"
            f"        if (!in1[i]) continue;\n"
            f"        for (int64_t o = 0; o < {outer}; o++)\n"
            f"            memcpy(out0 + (o * {m} + j) * {inner}, in0 + (o * {n} + i) * {inner},\n"
            f"                   {inner} * sizeof(*out0));\n"
            f"        j++;\n"
            f"    }}")


@kernel("non_zero")
@uses_all_params
def non_zero(ctx: KernelContext) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    shape = list(x.shape) or [1]
    nnz = y.shape[1]
    if nnz == 0:
        return "    /* empty output */"
    st = strides(shape)
    test = "(in0[f] & 0x7fff) != 0" if x.dtype.short == "bf16" else "in0[f] != 0"
    coords = " ".join(f"out0[{d} * {nnz} + j] = (f / {st[d]}) % {n};" for d, n in enumerate(shape))
    # the output length is static: it came from a constant input (or the same values at run time)
    return (f"    int64_t j = 0;\n"
            f"    for (int64_t f = 0; f < {numel(x)} && j < {nnz}; f++) {{\n"
            f"        if (!({test})) continue;\n"
            f"        {coords}\n"
            f"        j++;\n"
            f"    }}")
