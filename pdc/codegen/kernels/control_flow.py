"""If, Loop and Scan as C control flow around their bodies' kernels.

Each body is rendered like a small bundle of its own (CRenderer.render_subgraph): static kernel
functions and a static `..._run(A, inputs, outputs)` that calls them over an arena A, which is
part of this kernel's scratch (so it lives in the model's one static arena). (The compiler has
made captured constants the body's own, compiler.lower_bodies, so its kernels pack them at
compile time as they would outside a loop.) Loop-carried values and Scan states alternate between two
scratch buffers (an iteration reads one and writes the other); each iteration's scanned values
go straight into their slice of the output when the slice is contiguous, through a scratch
buffer otherwise. Shapes are static: a Loop with scanned outputs needs its trip count at compile
time (a constant M and no condition input).
"""
from __future__ import annotations

import math
import re

from ...ir.graph import Graph
from ..context import KernelContext
from . import kernel

def _array(kind: str, name: str, items: list[str]) -> str:
    """A C array of pointers (kind `const void *` or `void *`), or a null pointer when empty."""
    if not items:
        return f"{kind} const *{name} = 0;"
    return f"{kind} {name}[{len(items)}] = {{{', '.join(items)}}};"


def _run_call(run: str, arena: str) -> list[str]:
    return [f"pdc_status e = {run}({arena}, ins, outs);",
            "if (e != PDC_OK) { *pdc_err = e; break; }"]


@kernel("if")
def if_(ctx: KernelContext) -> str:
    ctx.reports_status = True
    runs, arena = [], 0
    for key in ("then_branch", "else_branch"):
        text, nbytes = ctx.render_subgraph(ctx.attrs[key], f"{ctx.fn_name}_{key[:4]}")
        ctx.helper(f"{ctx.fn_name}_{key}", text)
        runs.append(f"{ctx.fn_name}_{key[:4]}_run")
        arena = max(arena, nbytes)
    a = _arena(ctx, arena)
    outs = _array("void *", "outs", [f"out{i}" for i in range(len(ctx.outputs))])
    lines = []
    ins = _array("const void *", "ins", [f"in{i}" for i in range(1, len(ctx.inputs))])
    for run, word in zip(runs, ("if (in0[0]) {", "} else {")):
        lines += [f"    {word}", f"        {ins}",
                  f"        {outs}", f"        pdc_status e = {run}({a}, ins, outs);",
                  "        if (e != PDC_OK) *pdc_err = e;"]
    return _void_unused(ctx, "\n".join(lines + ["    }"]))


def _carried_buffers(ctx: KernelContext, types) -> list[list[str]]:
    """Two scratch buffers per carried value (the iterations alternate between them)."""
    return [[ctx.scratch(t.nbytes, "uint8_t", 1) for t in types] for _ in range(2)]


def _carry_lines(first_input: int, types) -> tuple[list, list]:
    """C declarations of the current carried pointers (the initial values first), and the final
    copy of the current ones to the first outputs."""
    decl = [f"const uint8_t *cur{j} = (const uint8_t *)in{first_input + j};" for j in range(len(types))]
    final = [f"memcpy(out{j}, cur{j}, {t.nbytes});" for j, t in enumerate(types)]
    return decl, final


def _void_unused(ctx: KernelContext, body: str) -> str:
    """The body, with `(void)inK;` for each input it does not name (an absent one)."""
    named = set(re.findall(r"\bin\d+\b", body))
    unused = [f"(void)in{i};" for i in range(len(ctx.inputs)) if f"in{i}" not in named]
    return ("    " + " ".join(unused) + "\n" if unused else "") + body


def _next(bufs) -> list[str]:
    """The buffers iteration t writes (buffer t % 2 of each carried value)."""
    return [f"(t % 2 ? {b1} : {b0})" for b0, b1 in zip(*bufs)]


def _swap(bufs) -> list[str]:
    """After iteration t: the values just written are the current ones."""
    return [f"cur{j} = {b};" for j, b in enumerate(_next(bufs))]


def _arena(ctx: KernelContext, nbytes: int) -> str:
    """The body's arena in this kernel's scratch (a null pointer when the body needs none)."""
    return ctx.scratch(nbytes, "uint8_t", 1) if nbytes else "0"


@kernel("loop")
def loop(ctx: KernelContext) -> str:
    ctx.reports_status = True
    body: Graph = ctx.attrs["body"]
    c = ctx.attrs.get("captures", 0)
    n = len(ctx.inputs) - 2 - c
    k = len(ctx.outputs) - n
    text, arena = ctx.render_subgraph(body, f"{ctx.fn_name}_body")
    ctx.helper(f"{ctx.fn_name}_body", text)
    A = _arena(ctx, arena)
    carried = [ctx.inputs[2 + j] for j in range(n)]
    bufs = _carried_buffers(ctx, carried)
    it, cond_in, cond_out = (ctx.scratch(size, "uint8_t", 1) for size in (8, 1, 1))
    decl, final = _carry_lines(2, carried)
    slices = [math.prod(t.shape[1:]) * t.dtype.itemsize for t in ctx.outputs[n:]]
    trips = "in0[0]" if ctx.has_input(0) else "INT64_MAX"
    cond = "in1[0]" if ctx.has_input(1) else "1"
    ins = [it, cond_in] + [f"cur{j}" for j in range(n)] + [f"in{i}" for i in range(2 + n, len(ctx.inputs))]
    outs = [cond_out] + _next(bufs) + [f"(uint8_t *)out{n + j} + t * {slices[j]}" for j in range(k)]
    lines = [*decl, f"const int64_t trips = {trips};", f"uint8_t cond = {cond};",
             "for (int64_t t = 0; t < trips && cond; t++) {",
             f"    *(int64_t *){it} = t;", f"    {cond_in}[0] = cond;",
             f"    {_array('const void *', 'ins', ins)}", f"    {_array('void *', 'outs', outs)}",
             *("    " + x for x in _run_call(f"{ctx.fn_name}_body_run", A)),
             *("    " + x for x in _swap(bufs)),
             *([f"    cond = {cond_out}[0];"] if ctx.has_input(1) else []),
             "}", *final]
    return _void_unused(ctx, "\n".join("    " + x for x in lines))


def _slice(t, axis: int, reverse: int, base: str, buf, gather: bool) -> tuple[list, str]:
    """Step t's slice of tensor `base` (type t) along axis (backwards when reverse): (copy lines, the
    slice's pointer). A slice along axis 0 is contiguous: a pointer into the tensor. Any other goes
    through scratch buffer `buf`, which a copy fills before the body runs (gather) or empties after."""
    step = "(L - 1 - t)" if reverse else "t"
    outer, inner = math.prod(t.shape[:axis]), math.prod(t.shape[axis + 1:]) * t.dtype.itemsize
    if buf is None:
        return [], f"{base} + {step} * {inner}"
    strided, local = f"{base} + (o * L + {step}) * {inner}", f"{buf} + o * {inner}"
    dst, src = (local, strided) if gather else (strided, local)
    return [f"for (int64_t o = 0; o < {outer}; o++) memcpy({dst}, {src}, {inner});"], buf


@kernel("scan")
def scan(ctx: KernelContext) -> str:
    ctx.reports_status = True
    a = ctx.attrs
    body: Graph = a["body"]
    m, c = a["num_scan_inputs"], a.get("captures", 0)
    n = len(ctx.inputs) - m - c
    k = len(ctx.outputs) - n
    in_axes = [x % len(ctx.inputs[n + j].shape) for j, x in enumerate(a.get("scan_input_axes") or [0] * m)]
    in_dirs = a.get("scan_input_directions") or [0] * m
    out_axes = [x % len(ctx.outputs[n + j].shape) for j, x in enumerate(a.get("scan_output_axes") or [0] * k)]
    out_dirs = a.get("scan_output_directions") or [0] * k
    length = ctx.inputs[n].shape[in_axes[0]]
    text, arena = ctx.render_subgraph(body, f"{ctx.fn_name}_body")
    ctx.helper(f"{ctx.fn_name}_body", text)
    A = _arena(ctx, arena)
    states = [ctx.inputs[j] for j in range(n)]
    bufs = _carried_buffers(ctx, states)
    gather = {j: ctx.scratch(ctx.inputs[n + j].nbytes // max(length, 1), "uint8_t", 1)
              for j in range(m) if in_axes[j] != 0}
    scatter = {j: ctx.scratch(ctx.outputs[n + j].nbytes // max(length, 1), "uint8_t", 1)
               for j in range(k) if out_axes[j] != 0}
    decl, final = _carry_lines(0, states)
    pre, post, ins_x, outs_y = [], [], [], []
    for j in range(m):
        lines, ptr = _slice(ctx.inputs[n + j], in_axes[j], in_dirs[j], f"(const uint8_t *)in{n + j}",
                            gather.get(j), True)
        pre += lines
        ins_x.append(ptr)
    for j in range(k):
        lines, ptr = _slice(ctx.outputs[n + j], out_axes[j], out_dirs[j], f"(uint8_t *)out{n + j}",
                            scatter.get(j), False)
        post += lines
        outs_y.append(ptr)
    ins = [f"cur{j}" for j in range(n)] + ins_x + [f"in{i}" for i in range(n + m, len(ctx.inputs))]
    outs = _next(bufs) + outs_y
    lines = [*decl, f"const int64_t L = {length};",
             "for (int64_t t = 0; t < L; t++) {",
             *("    " + x for x in pre),
             f"    {_array('const void *', 'ins', ins)}", f"    {_array('void *', 'outs', outs)}",
             *("    " + x for x in _run_call(f"{ctx.fn_name}_body_run", A)),
             *("    " + x for x in post),
             *("    " + x for x in _swap(bufs)),
             "}", *final]
    return _void_unused(ctx, "\n".join("    " + x for x in lines))
