"""Matrix products on the device, shared by the conv and gemm / matmul kernels.

A MatrixProduct describes `batch` products C[bt] (M x N) = A[bt] (M x K) . B[bt] (K x N) by C
expressions of one element of A and of B and by the statements that store one result: a Gemm
reads A and B from its inputs, a 1x1 conv reads its weights and its input planes, any other
conv reads the input through an implicit im2col (B's element computed from the kernel tap and the
output pixel). Two kernels compute one:

- `tiled`: a work-group of TX x TY work-items computes a TM x TN block of C; each step of the K
  loop stages a TK-deep slab of A and of B in __local memory, and each work-item accumulates a
  register block of RM rows x RN adjacent columns from it, a row in one floatRN (vloadRN of the
  slab of B, the RM values of A broadcast).
- `simple`: one work-item per element of C (tiny products, a single row or column).

The work-items of a kernel are padded up to whole work-groups and guarded.

Storage: float32 tensors in global memory are `pdc_f32s` (half under --precision fp16, program.py
STORAGE), read and written only through PDC_LD / PDC_ST (`ld`, `st`); the element expressions
of A and B convert as they load, so the __local slabs, the registers and the arithmetic are float.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from ...ctypes_c import float_literal
from ..activations import act_expr
from ..epilogue import Epilogue
from . import Launch, round_up


def flt(x: float) -> str:
    return float_literal(float(x), "float")


def ld(p: str, i: str) -> str:
    """The C expression of element i of the float32 buffer p in global memory, as a float."""
    return f"PDC_LD({p}, {i})"


def st(p: str, i: str, v: str) -> str:
    """The statement storing the float v as element i of the float32 buffer p in global memory."""
    return f"PDC_ST({p}, {i}, {v});"


def f32_pointer(const: bool) -> str:
    """The type of a pointer parameter or variable into a float32 tensor in global memory."""
    return f"__global {'const ' if const else ''}pdc_f32s *"


def epilogue_lines(ctx, epi: Epilogue, v: str, idx: str) -> list[str]:
    """Statements turning the value `v` (bias added) into the fused output: + residual before the
    activation, the activation, + residual after it (the residual has the output's layout: `idx`)."""
    out = []
    if epi.res_before:
        out.append(f"{v} += {ld(epi.r, idx)};")
    if epi.activation != "none":
        al, be = epi.c_alpha_beta()
        out.append(f"{v} = {act_expr(ctx, epi.activation, v, 'float', al, be)};")
    if epi.res_after:
        out.append(f"{v} += {ld(epi.r, idx)};")
    return out


def kernel_params(ctx) -> tuple[list[str], str]:
    """The buffers a kernel of the node takes (its present inputs, its outputs; all float32, in
    their storage type) and the parameter list of the __kernel function."""
    names, params = [], []
    for i, t in enumerate(ctx.inputs):
        if t is not None:
            names.append(f"in{i}")
            params.append(f"{f32_pointer(True)}restrict in{i}")
    for i in range(len(ctx.outputs)):
        names.append(f"out{i}")
        params.append(f"{f32_pointer(False)}restrict out{i}")
    return names, ", ".join(params)


def indent(lines, n: int) -> str:
    pad = " " * n
    return "".join(f"{pad}{ln}\n" for ln in lines)


@dataclass
class MatrixProduct:
    M: int
    N: int
    K: int
    batch: int
    a_elem: Callable[[str, str], str]  # (m, k) -> C expression of A[bt][m][k] as a float (both in range)
    b_elem: Callable[[str, str], str]  # (k, n) -> C expression of B[bt][k][n] as a float
    store: Callable[[str, str, str], list]  # (v, m, n) -> statements storing v as C[bt][m][n]
    prologue: list = field(default_factory=list)  # statements from `bt` (batch offsets), run first
    b_column: Optional[Callable[[str], list]] = None  # (n) -> statements B's elements of column n share
    a_kmajor: bool = False  # A's consecutive elements run along k (transposed A): how a slab is read
    b_kmajor: bool = False  # B's consecutive elements run along k (transposed B)


@dataclass(frozen=True)
class Tile:
    TX: int  # work-items along N (dimension 0)
    TY: int  # work-items along M (dimension 1)
    RM: int  # rows of C per work-item
    RN: int  # columns of C per work-item (4: float4 arithmetic)
    TK: int  # depth of a slab

    @property
    def TM(self) -> int:
        return self.TY * self.RM

    @property
    def TN(self) -> int:
        return self.TX * self.RN


# (TX, TY, RM, RN, TK), the largest first: 4 float16 rows of C per work-item (64 x 64 per group of
# 64) ran 2-4x faster on PoCL (AVX-512) than float4 blocks in 16 x 16 groups; retune on a Mali
# (register pressure: 64 accumulators per work-item)
TILES = (Tile(4, 16, 4, 16, 16), Tile(2, 16, 4, 16, 16), Tile(4, 8, 4, 16, 16), Tile(2, 8, 4, 16, 16),
         Tile(4, 4, 4, 16, 16), Tile(1, 16, 4, 16, 16), Tile(4, 4, 4, 4, 16))


def choose_tile(M: int, N: int, K: int) -> Tile:
    """The largest tile that does not waste much of C on padding (a block of C computed by padded
    work-items); more, smaller work-groups where big ones would pad a small product."""
    best, best_cost = None, None
    for t in TILES:
        pm, pn = round_up(M, t.TM), round_up(N, t.TN)
        # padded work, plus what a smaller tile pays for reading A and B more often
        cost = pm * pn * (1 + 0.5 / t.TM + 0.5 / t.TN)
        if best_cost is None or cost < best_cost * 0.97:
            best, best_cost = t, cost
    tk = min(best.TK, round_up(max(K, 1), 4))
    return Tile(best.TX, best.TY, best.RM, best.RN, tk)


def slab_load(dst: str, rows: int, cols: int, L: int, row0: str, col0: str, lim_r: Optional[int],
              lim_c: Optional[int], elem: Callable[[str, str], str], rows_fast: bool, fixed_col: bool = False,
              col_setup: Optional[Callable[[str], list]] = None, stride: Optional[int] = None,
              wrap: Callable[[str], str] = lambda v: v) -> list[str]:
    """Statements loading a rows x cols slab into dst[row * stride + col] (stride: cols unless
    given; zero past the limits; each value through `wrap`, a conversion to the slab's type) by
    the L work-items of a group, consecutive work-items along cols (rows_fast: along rows).
    fixed_col (L % cols == 0, along cols): each work-item loads column `cl` (= lid % cols) only,
    whose setup ran once before the loop; otherwise col_setup(col) runs for each element."""
    def store(r: str, c: str) -> list[str]:
        conds = []
        if lim_r is not None:
            conds.append(f"{row0} + {r} < {lim_r}")
        if lim_c is not None:
            conds.append(f"{col0} + {c} < {lim_c}")
        v = elem(f"({row0} + {r})", f"({col0} + {c})")
        if conds:
            v = f"({' && '.join(conds)}) ? {v} : 0.0f"
        return [f"{dst}[{r} * {stride or cols} + {c}] = {wrap(v)};"]

    if fixed_col:
        step = L // cols
        lines = [f"for (int s = 0; s < {-(-rows // step)}; s++) {{",
                 f"    const int r = lid / {cols} + s * {step};"]
        if rows % step:
            return lines + [f"    if (r < {rows}) {{"] + ["        " + x for x in store("r", "cl")] + ["    }", "}"]
        return lines + ["    " + x for x in store("r", "cl")] + ["}"]
    total = rows * cols
    # a constant trip count, the partial last round guarded
    lines = [f"for (int s = 0; s < {-(-total // L)}; s++) {{", f"    const int i = lid + s * {L};"]
    inner = []
    if rows_fast:
        inner.append(f"const int r = i % {rows}, c = i / {rows};")
    else:
        inner.append(f"const int r = i / {cols}, c = i % {cols};")
    if col_setup is not None:
        inner += col_setup(f"({col0} + c)")
    inner += store("r", "c")
    if total % L:
        return lines + [f"    if (i < {total}) {{"] + ["        " + x for x in inner] + ["    }", "}"]
    return lines + ["    " + x for x in inner] + ["}"]


def tiled(ctx, fn: str, mp: MatrixProduct, t: Tile) -> tuple[str, Launch]:
    """The tiled kernel of a product (source, launch)."""
    M, N, K = mp.M, mp.N, mp.K
    TM, TN, TK, L = t.TM, t.TN, t.TK, t.TX * t.TY
    names, params = kernel_params(ctx)
    lim_m = None if M % TM == 0 else M
    lim_n = None if N % TN == 0 else N
    lim_k = None if K % TK == 0 else K
    body = [
        f"__local float As[{TK * TM}];  /* As[k][m] */",
        f"__local float Bs[{TK * TN}];  /* Bs[k][n] */",
        "const int tx = get_local_id(0), ty = get_local_id(1);",
        f"const int lid = ty * {t.TX} + tx;",
        f"const int m0 = get_group_id(1) * {TM}, n0 = get_group_id(0) * {TN};",
        "const int bt = get_global_id(2);",
        *mp.prologue,
    ]
    # A slab (TK x TM, stored k-major): element (k, m) of the slab is A[m0 + m][k0 + k]
    a_load = slab_load("As", TK, TM, L, "k0", "m0", lim_k, lim_m, lambda k, m: mp.a_elem(m, k),
                        rows_fast=not mp.a_kmajor)
    fixed = not mp.b_kmajor and L % TN == 0
    if fixed:
        body.append(f"const int cl = lid % {TN};")
        if mp.b_column is not None:  # padded columns (n >= N) compute a setup they never use
            body += mp.b_column("(n0 + cl)")
    b_load = slab_load("Bs", TK, TN, L, "k0", "n0", lim_k, lim_n, mp.b_elem, rows_fast=mp.b_kmajor,
                        fixed_col=fixed, col_setup=None if fixed else mp.b_column)
    vec = t.RN in (2, 4, 8, 16)  # a row of C's block in one floatRN
    vt = f"float{t.RN}"
    if vec:
        body += [f"{vt} c{i} = 0.0f;" for i in range(t.RM)]
    else:
        body += [f"float c{i}_{j} = 0.0f;" for i in range(t.RM) for j in range(t.RN)]
    body += [f"for (int k0 = 0; k0 < {K}; k0 += {TK}) {{"]
    body += ["    " + x for x in a_load + b_load]
    body += ["    barrier(CLK_LOCAL_MEM_FENCE);", f"    for (int kk = 0; kk < {TK}; kk++) {{"]
    if vec:
        body.append(f"        const {vt} b = vload{t.RN}(0, Bs + kk * {TN} + tx * {t.RN});")
    else:
        body += [f"        const float b{j} = Bs[kk * {TN} + tx * {t.RN} + {j}];" for j in range(t.RN)]
    if t.RM == 4:
        body.append(f"        const float4 a = vload4(0, As + kk * {TM} + ty * 4);")
        avals = ["a.s0", "a.s1", "a.s2", "a.s3"]
    else:
        body += [f"        const float a{i} = As[kk * {TM} + ty * {t.RM} + {i}];" for i in range(t.RM)]
        avals = [f"a{i}" for i in range(t.RM)]
    for i in range(t.RM):
        if vec:
            body.append(f"        c{i} += {avals[i]} * b;")
        else:
            body += [f"        c{i}_{j} += {avals[i]} * b{j};" for j in range(t.RN)]
    body += ["    }", "    barrier(CLK_LOCAL_MEM_FENCE);", "}"]
    # stores
    for i in range(t.RM):
        body.append("{")
        body.append(f"    const int m = m0 + ty * {t.RM} + {i};")
        for j in range(t.RN):
            v = f"c{i}.s{'0123456789abcdef'[j]}" if vec else f"c{i}_{j}"
            body.append(f"    {{ const int n = n0 + tx * {t.RN} + {j};")
            cond = [c for c in (f"m < {M}" if lim_m else "", f"n < {N}" if lim_n else "") if c]
            store = [f"float v = {v};"] + mp.store("v", "m", "n")
            if cond:
                body.append(f"      if ({' && '.join(cond)}) {{")
                body += ["        " + x for x in store] + ["      }"]
            else:
                body += ["      " + x for x in store]
            body.append("    }")
        body.append("}")
    src = (f"__kernel PDC_WORK_GROUP({t.TX}, {t.TY}, 1)\n"
           f"void {fn}({params})\n{{\n{indent(body, 4)}}}\n")
    gs = (round_up(N, TN) // t.RN, round_up(M, TM) // t.RM, mp.batch)
    return src, Launch(fn, tuple(names), gs, (t.TX, t.TY, 1))


def simple(ctx, fn: str, mp: MatrixProduct, lx: int = 64) -> tuple[str, Launch]:
    """One work-item per element of C: dimension 0 runs along N, 1 along M, 2 over the batch."""
    names, params = kernel_params(ctx)
    lx = min(lx, 1 << max(0, math.ceil(math.log2(max(mp.N, 1)))))
    body = [
        "const int n = get_global_id(0), m = get_global_id(1), bt = get_global_id(2);",
        "(void)bt;  /* read by the batched products' prologue only */",
        f"if (n >= {mp.N}) return;",
        *mp.prologue,
        *(mp.b_column("n") if mp.b_column is not None else []),
        "float s = 0.0f;",
        f"for (int k = 0; k < {mp.K}; k++)",
        f"    s += {mp.a_elem('m', 'k')} * {mp.b_elem('k', 'n')};",
        "float v = s;",
        *mp.store("v", "m", "n"),
    ]
    src = f"__kernel void {fn}({params})\n{{\n{indent(body, 4)}}}\n"
    return src, Launch(fn, tuple(names), (round_up(mp.N, lx), mp.M, mp.batch), (lx, 1, 1))
