"""Matrix products: gemm, fused_gemm, matmul, fused_matmul (fp32 through the shared GEMM driver of
dense_core; other dtypes as direct loops) and matmul_integer.

Row-major C[M x N] = A[M x K] B[K x N]: vectors run along N, A values are broadcast. A constant
operand is packed at compile time (Gemm's alpha folded in); a runtime operand is packed per
block from its strides (transposes cost nothing extra). matmul's batch dims broadcast through
per-problem offset tables; when B is a single matrix, A's batch dims fold into M.

Paths (family "gemm", shared by gemm and matmul; pdc/codegen/kernels/paths.py): fp32 runs the
blocked driver with B packed at compile time ("packed-b": B constant), else A packed at compile
time ("packed-a": A constant, B at run time), else both packed at run time ("runtime", which
computes every fp32 layer); other dtypes (and K = 0) run plain loops ("loops").
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.ops.common import broadcast_shapes
from ...ir.symbolic import RuntimeSizeError, is_runtime, same_shape, same_size, upper
from ..context import KernelContext, broadcast_strides
from ..ctypes_c import float_literal
from . import kernel
from .paths import declare, mark, take
from .dense_core import (PARALLEL_MIN_MACS, add_weight, c_float, choose_split, default_tile, isa_of, lanes, n_chunk,
                         pack_a_panels, pack_b_panels, panel_vectors, pick_mr, render_job, ukernel, uses_all)
from .epilogue import Epilogue


declare("gemm", "runtime", "loops", "packed-b", "packed-a")


def _tile(isa: str, m: int) -> tuple[int, int]:
    mr = pick_mr(isa, m)
    nv = default_tile(isa)[1]
    if m <= 2:
        nv = 4  # GEMV-like: more vectors per broadcast, 4 independent chains
    return mr, nv


def _plain_epilogue() -> Epilogue:
    return Epilogue.plain()


class _Problem:
    """A batched fp32 GEMM: operand sources, epilogue slots, and its rendering."""

    def __init__(self, ctx: KernelContext, batch: int, m: int, n: int, k: int, epi: Epilogue):
        self.ctx, self.batch, self.m, self.n, self.k, self.epi = ctx, batch, m, n, k, epi
        self.isa = isa_of(ctx)
        self.mr, self.nv = _tile(self.isa, upper(m))  # M known only at run time: tiled for its bound
        self.nr = self.nv * lanes(self.isa)
        self.lines: list[str] = []
        self.fields: dict = {}
        self.post_add = None  # (ptr, bs, rs, cs, scale)
        self.a_bytes = 0

    def _tab(self, offsets) -> str | None:
        offs = np.asarray(offsets, np.int64)
        if offs.size == 0 or (offs == 0).all():
            return None
        return add_weight(self.ctx, offs, "int64_t")

    def a_const(self, a: np.ndarray, offsets_by_problem):
        """a: (nmat, M, K) constant matrices; problem b uses matrix offsets_by_problem[b]."""
        mb = -(-self.m // self.mr)
        packed = pack_a_panels(np.asarray(a, np.float32), self.mr)
        self.fields.update(a=add_weight(self.ctx, packed),
                           a_tab=self._tab(np.asarray(offsets_by_problem) * mb * self.k * self.mr))
        self.a_bytes = a.size * 4

    def _strided(self, ptr: str, rs: int, cs: int, offsets, scale: float, bs) -> str:
        """A pdc_strided view of a run-time operand (declared in the kernel); returns its name.
        offsets: problem b's matrix offset by problem; or None: b * bs."""
        var = f"s{len(self.lines)}"
        tab = "0" if offsets is None else self._tab(offsets) or "0"
        self.lines.append(f"    const pdc_strided {var} = {{{ptr}, {tab}, 0, {bs}, {rs}, {cs}, {c_float(scale)}}};")
        return var

    def a_runtime(self, ptr: str, rs: int, cs: int, offsets, scale: float = 1.0, bs=0):
        self.fields.update(packa="pdc_packa_strided", packa_ctx=f"&{self._strided(ptr, rs, cs, offsets, scale, bs)}")

    def b_const(self, b: np.ndarray, offsets_by_problem):
        """b: (nmat, K, N) constant matrices."""
        self.nv = panel_vectors(self.n, self.nv, lanes(self.isa))
        self.nr = self.nv * lanes(self.isa)
        nb = -(-self.n // self.nr)
        packed = pack_b_panels(np.asarray(b, np.float32), self.nr)
        self.fields.update(b=add_weight(self.ctx, packed),
                           b_tab=self._tab(np.asarray(offsets_by_problem) * nb * self.k * self.nr))
        self.a_bytes = max(self.a_bytes, b.size * 4)

    def b_runtime(self, ptr: str, rs: int, cs: int, offsets, scale: float = 1.0, bs=0):
        self.fields.update(packb="pdc_packb_strided", packb_ctx=f"&{self._strided(ptr, rs, cs, offsets, scale, bs)}")

    def matmul_bias(self, bias_rows: bool) -> None:
        """fused_matmul's bias (input 2): one value per row of each problem with a 1-D B, else per
        column; every problem reads the same bias."""
        c = self.ctx.const(2)
        ptr = add_weight(self.ctx, np.asarray(c, np.float32).reshape(-1)) if c is not None else "in2"
        self.fields["bias_m" if bias_rows else "bias_n"] = ptr

    def render(self, res_ptr: str | None) -> str:
        ctx, epi = self.ctx, self.epi
        ukr = ukernel(ctx, self.mr, self.nv)
        kc = ctx.config.k_block(upper(self.k))  # the driver cuts K (and M, N) at run time
        parallel, split_m = choose_split(self.batch, self.m, self.n, self.k, self.mr, self.nr, ctx.config.threads,
                                         self.a_bytes)
        if parallel:  # sizes known only at run time: the pool only where this run's work pays for it
            parallel = ctx.split_at_run_time(self.batch * self.m * self.n * self.k, PARALLEL_MIN_MACS) or parallel
        use_post = not epi.fast or self.post_add is not None
        post = None
        if use_post:
            self.lines += epi.post_lines(res_ptr or "0", self.m * self.n, self.n, self.post_add)
            post = "&post"
        clamp = epi.clamp and not use_post
        self.fields.update(batch=self.batch, M=self.m, N=self.n, K=self.k, MR=self.mr, NR=self.nr, KC=kc,
                           NC=n_chunk(ctx, kc, self.nr, upper(self.n)), ukr=ukr, c="out0", ldc=self.n,
                           c_bs=self.m * self.n,
                           lo=c_float(epi.lo if clamp else -math.inf), hi=c_float(epi.hi if clamp else math.inf),
                           clamp=int(clamp), post=post, parallel=parallel, split_m=split_m)
        if epi.has_r and epi.residual == "before_activation":
            self.fields.update(res=res_ptr, ldr=self.n, r_bs=self.m * self.n)
        return "\n".join(self.lines + render_job(ctx, self.fields) + ["    pdc_sgemm_run(&job);"])


# ---- gemm ----------------------------------------------------------------------------------------------
@kernel("gemm", "fused_gemm")
def gemm(ctx: KernelContext) -> str:
    return uses_all(ctx, _gemm(ctx))


def _gemm(ctx: KernelContext) -> str:
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    ta, tb = ctx.attrs.get("transA", 0) or 0, ctx.attrs.get("transB", 0) or 0
    alpha = float(ctx.attrs.get("alpha", 1.0) if ctx.attrs.get("alpha") is not None else 1.0)
    beta = float(ctx.attrs.get("beta", 1.0) if ctx.attrs.get("beta") is not None else 1.0)
    m, k = a_t.shape[::-1] if ta else a_t.shape
    n = b_t.shape[0] if tb else b_t.shape[1]
    epi = Epilogue(ctx) if ctx.node.op == "fused_gemm" else _plain_epilogue()
    if m * n == 0:
        return "    (void)in0;"
    if a_t.dtype.short != "f32" or k == 0 or take("gemm", "loops", False):
        return mark("gemm", "loops", _gemm_generic(ctx, m, n, k, ta, tb, alpha, beta, epi))
    p = _Problem(ctx, 1, m, n, k, epi)
    a_rs, a_cs = (1, m) if ta else (k, 1)
    b_rs, b_cs = (1, k) if tb else (n, 1)
    A, B = ctx.const(0), ctx.const(1)
    path = _operand_path(A, B)
    if path == "packed-b":
        Bm = np.asarray(B, np.float32).T if tb else np.asarray(B, np.float32)
        p.b_const((Bm * np.float32(alpha))[None] if alpha != 1 else Bm[None], [0])
        p.a_runtime("in0", a_rs, a_cs, [0])
    elif path == "packed-a":
        Am = np.asarray(A, np.float32).T if ta else np.asarray(A, np.float32)
        p.a_const((Am * np.float32(alpha))[None] if alpha != 1 else Am[None], [0])
        p.b_runtime("in1", b_rs, b_cs, [0])
    else:
        p.a_runtime("in0", a_rs, a_cs, [0], alpha)
        p.b_runtime("in1", b_rs, b_cs, [0])
    res_taken = epi.has_r and epi.residual == "before_activation"
    if ctx.has_input(2) and beta != 0:
        c_t = ctx.inputs[2]
        cs = tuple(c_t.shape)
        C = ctx.const(2)
        if C is not None:
            Cb = np.broadcast_to(np.asarray(C, np.float32) * np.float32(beta), (m, n))
            if len(cs) < 2 or cs[0] == 1:  # one value per column
                p.fields["bias_n"] = add_weight(ctx, np.ascontiguousarray(Cb[0]))
            elif cs[1] == 1:
                p.fields["bias_m"] = add_weight(ctx, np.ascontiguousarray(Cb[:, 0]))
            elif not res_taken:
                p.fields.update(res=add_weight(ctx, np.ascontiguousarray(Cb)), ldr=n, r_bs=0)
            else:
                p.post_add = (add_weight(ctx, np.ascontiguousarray(Cb)), 0, n, 1, "1.0f")
        else:
            st = broadcast_strides(cs, (m, n))
            if beta == 1 and len(cs) >= 1 and cs[-1] == n and (len(cs) == 1 or cs[0] == 1) and n > 1:
                p.fields["bias_n"] = "in2"
            elif beta == 1 and len(cs) == 2 and cs == (m, 1) and m > 1:
                p.fields["bias_m"] = "in2"
            elif beta == 1 and cs == (m, n) and not res_taken and m > 1 and n > 1:
                p.fields.update(res="in2", ldr=n, r_bs=0)
            else:
                p.post_add = ("in2", 0, st[0], st[1], c_float(beta))
    return mark("gemm", path, p.render("in3"))


def _operand_path(A, B) -> str:
    """Which operand is packed at compile time: B if constant, else A if constant (A and B are the
    constants, None at run time); a forced path needs its operand constant."""
    if B is not None and take("gemm", "packed-b"):
        return "packed-b"
    if A is not None and take("gemm", "packed-a"):
        return "packed-a"
    return "runtime"


def _gemm_generic(ctx: KernelContext, m, n, k, ta, tb, alpha, beta, epi: Epilogue) -> str:
    dt = ctx.inputs[0].dtype
    is_int = not dt.is_float
    if is_int:
        if epi.activation != "none" or epi.residual != "none":
            ctx.fail("integer fused_gemm is not supported")
        acc = "uint64_t" if dt.itemsize == 8 else "uint32_t"  # wraps like numpy, no signed overflow
        ct = ctx.ctype(dt)
        al, be = f"({acc})({ct}){int(alpha)}", f"({acc})({ct}){int(beta)}"
    else:
        acc = ctx.compute_ctype(dt)
        al, be = (float_literal(alpha, acc), float_literal(beta, acc))
    ai = f"kk * {m} + i" if ta else f"i * {k} + kk"
    bi = f"j * {k} + kk" if tb else f"kk * {n} + j"
    stmts = []
    if alpha != 1:
        stmts.append(f"s = s * {al};")
    if ctx.has_input(2) and (beta != 0 or is_int):
        st = broadcast_strides(ctx.inputs[2].shape, (m, n))
        cv = f"({acc})({ctx.load(dt, f'in2[i * {st[0]} + j * {st[1]}]')})"
        stmts.append(f"s = s + {cv};" if beta == 1 else f"s = s + {be} * {cv};")
    if not is_int:
        stmts += epi.statements(ctx, "s", acc, f"i * {n} + j", lambda idx: ctx.load(dt, f"in3[{idx}]"))
    store = ctx.store(dt, "s") if not is_int else f"({ctx.ctype(dt)})s"
    return f"""    for (int64_t i = 0; i < {m}; i++)
    for (int64_t j = 0; j < {n}; j++) {{
        {acc} s = 0;
        for (int64_t kk = 0; kk < {k}; kk++) s += ({acc})({ctx.load(dt, f'in0[{ai}]')}) * ({acc})({ctx.load(dt, f'in1[{bi}]')});
        {' '.join(stmts)}
        out0[i * {n} + j] = {store};
    }}"""


# ---- matmul --------------------------------------------------------------------------------------------
def _matmul_dims(a_shape, b_shape):
    a2 = (1,) + tuple(a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b2 = tuple(b_shape) + (1,) if len(b_shape) == 1 else tuple(b_shape)
    batch = tuple(broadcast_shapes([a2[:-2], b2[:-2]]))
    m, k = a2[-2:]
    n = b2[-1]
    return a2, b2, batch, m, k, n


def _batch_offsets(batch, shape_lead) -> np.ndarray:
    """For every problem (row-major over `batch`), the index of its matrix among shape_lead's."""
    nb = math.prod(batch)
    if nb == 0:
        return np.zeros(0, np.int64)
    idx = np.arange(math.prod(shape_lead) if shape_lead else 1, dtype=np.int64).reshape(shape_lead or ())
    return np.broadcast_to(idx, batch).reshape(-1).copy() if batch else idx.reshape(-1).copy()


@kernel("matmul", "fused_matmul")
def matmul(ctx: KernelContext) -> str:
    return uses_all(ctx, _matmul(ctx))


def _matmul(ctx: KernelContext) -> str:
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    a2, b2, batch, m, k, n = _matmul_dims(a_t.shape, b_t.shape)
    epi = Epilogue(ctx) if ctx.node.op == "fused_matmul" else _plain_epilogue()
    nprob = math.prod(batch)
    if nprob * m * n == 0:
        return "    (void)in0;"
    bias = ctx.node.op == "fused_matmul" and ctx.has_input(2)
    # with a 1-D B the output's last axis is M: the bias (one value per last-axis index) is per row
    bias_rows = bias and len(b_t.shape) == 1
    loops = a_t.dtype.short != "f32" or k == 0 or take("gemm", "loops", False)
    if any(is_runtime(d) for d in batch):  # a batch known only at run time: no offset tables
        if loops:
            raise RuntimeSizeError("a matmul batch known only at run time on the loops path")
        if bias_rows or not all(same_size(d, 1) for d in b2[:-2]) or not same_shape(a2[:-2], batch):
            return _matmul_runtime_batch(ctx, a2, b2, batch, m, n, k, epi, bias_rows)
        fold = True  # B one matrix, A's problems back to back
    else:
        a_idx = _batch_offsets(batch, a2[:-2])
        b_idx = _batch_offsets(batch, b2[:-2])
        if loops:
            return mark("gemm", "loops", _matmul_generic(ctx, batch, m, n, k, a_idx, b_idx, epi, bias_rows))
        # B one matrix for every problem and A's problems back to back: fold the batch into M (not
        # with a bias per row, which repeats per problem)
        fold = (b_idx == 0).all() and (a_idx == np.arange(nprob)).all() and not bias_rows
        if not fold and any(is_runtime(d) for d in (m, k, n)):  # offsets known only at run time: no tables
            return _matmul_runtime_batch(ctx, a2, b2, batch, m, n, k, epi, bias_rows)
    if fold:
        m, nprob, a_idx, b_idx = m * nprob, 1, np.zeros(1, np.int64), np.zeros(1, np.int64)
    p = _Problem(ctx, nprob, m, n, k, epi)
    A, B = ctx.const(0), ctx.const(1)
    path = _operand_path(A, B)
    if path == "packed-b":
        p.b_const(np.asarray(B, np.float32).reshape(-1, k, n), b_idx)
    else:
        p.b_runtime("in1", n, 1, b_idx * k * n)
    if path == "packed-a":
        p.a_const(np.asarray(A, np.float32).reshape(-1, m, k), a_idx)
    else:
        p.a_runtime("in0", k, 1, a_idx * m * k)
    if bias:
        p.matmul_bias(bias_rows)
    return mark("gemm", path, p.render("in3"))


def _matmul_runtime_batch(ctx: KernelContext, a2, b2, batch, m, n, k, epi: Epilogue, bias_rows: bool) -> str:
    """A batch known only at run time: each operand is either the whole batch, its matrices back to
    back (problem b at b * its matrix size), or one matrix for all; other broadcasts are refused."""
    def stride(lead, size):
        if same_shape((1,) * (len(batch) - len(lead)) + tuple(lead), batch):
            return size
        if all(same_size(d, 1) for d in lead):
            return 0
        raise RuntimeSizeError(f"a matmul batch {list(lead)} broadcast to {list(batch)}")
    a_bs, b_bs = stride(a2[:-2], m * k), stride(b2[:-2], k * n)
    p = _Problem(ctx, math.prod(batch), m, n, k, epi)
    p.b_runtime("in1", n, 1, None, bs=b_bs)
    p.a_runtime("in0", k, 1, None, bs=a_bs)
    if ctx.node.op == "fused_matmul" and ctx.has_input(2):
        p.matmul_bias(bias_rows)
    return mark("gemm", "runtime", p.render("in3"))


def _matmul_generic(ctx: KernelContext, batch, m, n, k, a_idx, b_idx, epi: Epilogue, bias_rows: bool) -> str:
    dt = ctx.inputs[0].dtype
    is_int = not dt.is_float
    nprob = math.prod(batch)
    if is_int:
        if epi.activation != "none" or epi.residual != "none" or (ctx.node.op == "fused_matmul" and ctx.has_input(2)):
            ctx.fail("integer fused_matmul is not supported")
        acc = "uint64_t" if dt.itemsize == 8 else "uint32_t"
    else:
        acc = ctx.compute_ctype(dt)
    at = add_weight(ctx, (a_idx * m * k).astype(np.int64), "int64_t") if nprob > 1 else None
    bt = add_weight(ctx, (b_idx * k * n).astype(np.int64), "int64_t") if nprob > 1 else None
    ao = f"{at}[p]" if at else "0"
    bo = f"{bt}[p]" if bt else "0"
    bias = ""
    if ctx.node.op == "fused_matmul" and ctx.has_input(2):
        bias = f" s += ({acc})({ctx.load(dt, 'in2[i]' if bias_rows else 'in2[j]')});"
    r_load = lambda idx: ctx.load(dt, f"in3[{idx}]")  # noqa: E731
    post = " ".join(epi.statements(ctx, "s", acc, f"(p * {m} + i) * {n} + j", r_load)) if not is_int else ""
    store = ctx.store(dt, "s") if not is_int else f"({ctx.ctype(dt)})s"
    return f"""    for (int64_t p = 0; p < {nprob}; p++) {{
        const int64_t ao = {ao}, bo = {bo};
        for (int64_t i = 0; i < {m}; i++)
        for (int64_t j = 0; j < {n}; j++) {{
            {acc} s = 0;
            for (int64_t kk = 0; kk < {k}; kk++)
                s += ({acc})({ctx.load(dt, f'in0[ao + i * {k} + kk]')}) * ({acc})({ctx.load(dt, f'in1[bo + kk * {n} + j]')});
           {bias} {post}
            out0[(p * {m} + i) * {n} + j] = {store};
        }}
    }}"""


@kernel("matmul_integer")
def matmul_integer(ctx: KernelContext) -> str:
    return uses_all(ctx, _matmul_integer(ctx))


def _matmul_integer(ctx: KernelContext) -> str:
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    a2, b2, batch, m, k, n = _matmul_dims(a_t.shape, b_t.shape)
    nprob = math.prod(batch)
    if nprob * m * n == 0:
        return "    (void)in0;"
    a_idx = _batch_offsets(batch, a2[:-2])
    b_idx = _batch_offsets(batch, b2[:-2])
    at = add_weight(ctx, (a_idx * m * k).astype(np.int64), "int64_t") if nprob > 1 else None
    bt = add_weight(ctx, (b_idx * k * n).astype(np.int64), "int64_t") if nprob > 1 else None
    az = _zero_point(ctx, 2, "i", m, a2[:-2], a_idx, (m, 1), "a_zero_point")
    bz = _zero_point(ctx, 3, "j", n, b2[:-2], b_idx, (1, n), "b_zero_point")
    return f"""    for (int64_t p = 0; p < {nprob}; p++) {{
        const int64_t ao = {f'{at}[p]' if at else '0'}, bo = {f'{bt}[p]' if bt else '0'};
        for (int64_t i = 0; i < {m}; i++)
        for (int64_t j = 0; j < {n}; j++) {{
            uint32_t s = 0;
            for (int64_t kk = 0; kk < {k}; kk++)
                s += (uint32_t)(((int32_t)in0[ao + i * {k} + kk] - {az}) * ((int32_t)in1[bo + kk * {n} + j] - {bz}));
            out0[(p * {m} + i) * {n} + j] = (int32_t)s;
        }}
    }}"""


def _zero_point(ctx: KernelContext, i: int, var: str, count: int, lead, matrix_idx, tail, what: str) -> str:
    """The C expression of MatMulInteger's zero point in input i: one value, one per row of A /
    column of B (`var` indexes them, `count` of them), or that per matrix of the operand (shape
    lead + tail: [D1, D2, M, 1] / [D1, D2, 1, N]), problem p using matrix matrix_idx[p]."""
    if not ctx.has_input(i):
        return "0"
    shape = tuple(ctx.inputs[i].shape)
    size = math.prod(shape)
    if size == 1:
        return f"(int32_t)in{i}[0]"
    if size == count and shape in ((count,), tail):
        return f"(int32_t)in{i}[{var}]"
    if shape == tuple(lead) + tail and len(matrix_idx) > 0:
        tab = add_weight(ctx, (np.asarray(matrix_idx, np.int64) * count), "int64_t")
        return f"(int32_t)in{i}[{tab}[p] + {var}]"
    ctx.fail(f"{what} has shape {list(shape)}: expected one value, {count} values or {list(tuple(lead) + tail)}")
