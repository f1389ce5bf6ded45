"""OpenCL device kernels of the recurrent layers (ONNX LSTM, GRU, RNN), float32.

Semantics are those of pdc/ir/ops/rnn.py, numerics those of the C kernel (sequence.py): float
accumulation, the same activation expressions (sequence.activation_expr: the fused-op activations
of activations.py, the other ONNX RNN activations written from the spec), clip with NaN passing
through, sequence lengths clamped to [0, seq_length].

Two launches, in order on the in-order queue:
1. `<fn>_xproj` (when its result fits XPROJ_MAX_BYTES): the input projection of every time step at
   once, a GEMM over (direction, step, batch row) x (gate row): scratch[d][t][b][g] =
   x_t . W[d][g] + Wb[d][g] (+ Rb[d][g] where the recurrence bias simply adds: every gate but
   GRU's h with linear_before_reset). One work-item per output element, the work-items of a group
   on consecutive gate rows (the transposed weight table keeps their reads contiguous).
2. `<fn>_rec`: the sequential time loop, one work-group per (direction, batch row) (groups never
   depend on each other). Work-item l owns hidden units l, l + LS, ... (units per work-item
   U = ceil(H / MAX_GROUP), LS the smallest multiple of 32 that covers H / U). Per step each
   work-item computes all the gates of its units (h_{t-1} R^T from the group's copy of h, in
   __local memory, or in scratch when h is too big for it), keeps c (LSTM) and its last h in
   private memory, then after a barrier publishes its new h and writes Y. GRU without
   linear_before_reset needs (r * h) of every unit before its h gate: one more barrier per step,
   r * h shared like h. Without the first launch (a projection too big for scratch) the step adds
   x_t W^T itself. The loop runs the constant seq_length steps, those past the row's length doing
   nothing but the barriers: PoCL 3.1 miscompiles private values kept across barriers in a loop of
   a runtime trip count (final states came back as garbage).
Constant W / R go to the device transposed ([d][k][gate row], tables "wt" / "rt") so that the
work-items of a group read consecutive addresses; runtime ones are read as they are.
The float32 tensors (X, W, R, B, the initial states, P, the outputs, the weight tables) are read
and written through PDC_LD / PDC_ST: half in device memory under --precision fp16. The state (h, c)
stays float, in private / __local memory or the float scratch with the input projection, so that
half storage rounds h and c only where they are output.
Declines (returns None): dtypes other than float32 (half and double run elsewhere), empty tensors.
"""
from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ....ir.ops.rnn import _DIRECTIONS, _KINDS, ActivationError, resolve_activations
from ...context import KernelContext
from ...ctypes_c import float_literal
from .. import kernel
from ..sequence import activation_expr
from . import OPENCL, DeviceKernel, Launch, round_up
from ._rows import F32S, ld, st

MAX_GROUP = 128                # work-items of one recurrence group at most (Mali halves its 384 for
                               # register-heavy kernels: 128 leaves room)
GROUP_QUANTUM = 32             # its size is a multiple of this
XPROJ_GROUP = 64               # work-items of a projection group (along the gate rows)
XPROJ_MAX_BYTES = 64 << 20     # precomputed input projections up to this much scratch
LOCAL_MAX_BYTES = 16 << 10     # h (and GRU's r * h) in __local memory up to this much


class _Gen:
    def __init__(self, ctx: KernelContext, op: str):
        self.ctx, self.op = ctx, op
        a = ctx.attrs
        x = ctx.inputs[0]
        self.layout = a.get("layout", 0)
        self.direction = a.get("direction", "forward")
        self.D = _DIRECTIONS[self.direction]
        self.G = _KINDS[op][0]
        self.H = ctx.inputs[2].shape[2]
        self.I = ctx.inputs[1].shape[2]
        self.GH = self.G * self.H
        self.T, self.N = (x.shape[0], x.shape[1]) if self.layout == 0 else (x.shape[1], x.shape[0])
        try:
            acts = resolve_activations(op, a)
        except ActivationError as e:
            ctx.fail(str(e))
        names = list(a.get("activations") or _KINDS[op][2] * self.D)
        self.acts = [(n, al, be) for n, (_, al, be) in zip(names, acts)]
        self.per_dir = _KINDS[op][1]
        self.clip = a.get("clip")
        self.lbr = op == "gru" and a.get("linear_before_reset", 0) == 1
        self.input_forget = op == "lstm" and a.get("input_forget", 0) == 1
        self.fn = ctx.fn_name
        self.nout = len(ctx.outputs)
        self.has = {i: ctx.has_input(i) for i in range(8)}
        # the recurrence bias of GRU's h gate sits inside the reset product with linear_before_reset
        self.rb_rows = 2 * self.H if self.lbr else self.GH
        # layout of the device scratch (in floats)
        self.pre = self.D * self.T * self.N * self.GH * 4 <= XPROJ_MAX_BYTES
        self.shared = 2 if op == "gru" and not self.lbr else 1  # h, and GRU's r * h
        self.local = self.shared * self.H * 4 <= LOCAL_MAX_BYTES
        self.scratch_floats = 0
        self.xp_off = self._reserve(self.D * self.T * self.N * self.GH) if self.pre else None
        self.h_off = None if self.local else self._reserve(self.shared * self.D * self.N * self.H)
        # work-items per group and hidden units per work-item
        self.U = -(-self.H // MAX_GROUP)
        self.LS = min(MAX_GROUP, round_up(-(-self.H // self.U), GROUP_QUANTUM))
        # transposed constant weights
        self.tables = {}
        self.wt = self._table("wt", 1)
        self.rt = self._table("rt", 2)

    def _reserve(self, floats: int) -> int:
        off = round_up(self.scratch_floats, 16)  # 64-byte aligned regions
        self.scratch_floats = off + floats
        return off

    def _table(self, name: str, idx: int) -> bool:
        data = self.ctx.const(idx)
        if data is None:
            return False
        # [d][rows][k] -> [d][k][rows]
        self.tables[name] = np.ascontiguousarray(np.asarray(data, np.float32).transpose(0, 2, 1))
        return True

    # ---- small spellings ---------------------------------------------------------------------
    def lit(self, v: float) -> str:
        return float_literal(v, "float")

    def clipped(self, v: str) -> str:
        return v if self.clip is None else f"{self.fn}_clip({v})"

    def act(self, slot: int, v: str) -> str:
        """Activation `slot` (0.. of one direction) of the group's direction d applied to v."""
        if self.D == 1:
            return f"{self.fn}_act{slot}({v})"
        return f"(d == 0 ? {self.fn}_act{slot}({v}) : {self.fn}_act{self.per_dir + slot}({v}))"

    def helpers(self) -> list[str]:
        out = []
        for k, (name, al, be) in enumerate(self.acts):
            expr = activation_expr(self.ctx, name, al, be, "float", "x")
            out.append(f"static inline float {self.fn}_act{k}(float x) {{ return {expr}; }}")
        if self.clip is not None:
            c = self.lit(self.clip)
            out.append(f"static inline float {self.fn}_clip(float x) {{ "
                       f"return x < -{c} ? -{c} : (x > {c} ? {c} : x); }}")
        return out

    def x_row(self, t: str, b: str) -> str:
        T, N, I = self.T, self.N, self.I
        return f"(({t}) * {N} + ({b})) * {I}" if self.layout == 0 else f"(({b}) * {T} + ({t})) * {I}"

    def y_index(self, t: str) -> str:
        T, N, D = self.T, self.N, self.D
        return (f"((({t}) * {D} + d) * {N} + b) * {self.H} + j" if self.layout == 0
                else f"((b * {T} + ({t})) * {D} + d) * {self.H} + j")

    def state_row(self) -> str:
        return f"(d * {self.N} + b) * {self.H}" if self.layout == 0 else f"(b * {self.D} + d) * {self.H}"

    def w_at(self, row: str, k: str) -> str:
        return ld("Wd", f"({k}) * {self.GH} + {row}" if self.wt else f"({row}) * {self.I} + ({k})")

    def r_at(self, row: str, k: str) -> str:
        return ld("Rd", f"({k}) * {self.GH} + {row}" if self.rt else f"({row}) * {self.H} + ({k})")

    def w_base(self) -> str:
        return f"__global const {F32S} *Wd = {'wt' if self.wt else 'in1'} + d * {self.GH * self.I};"

    def r_base(self) -> str:
        return f"__global const {F32S} *Rd = {'rt' if self.rt else 'in2'} + d * {self.GH * self.H};"

    def bias(self, row: str, gate_rows_rb: str) -> str:
        """The bias of a gate row (C expr of the row in 0..GH): Wb plus Rb where it adds
        (gate_rows_rb: a C condition on the row, '1' or '' for always)."""
        if not self.has[3]:
            return "0.0f"
        wb = ld("Bd", row)
        rb = ld("Bd", f"{self.GH} + {row}")
        if gate_rows_rb == "1":
            return f"({wb} + {rb})"
        return f"({wb} + ({gate_rows_rb} ? {rb} : 0.0f))"

    def b_base(self) -> str:
        return f"__global const {F32S} *Bd = in3 + d * {2 * self.GH};" if self.has[3] else ""

    # ---- launch 1: the input projection ------------------------------------------------------
    def xproj(self) -> tuple[str, Launch]:
        fn, GH, I = f"{self.fn}_xproj", self.GH, self.I
        params = [("in0", f"__global const {F32S} *in0"),
                  ("wt" if self.wt else "in1", f"__global const {F32S} *{'wt' if self.wt else 'in1'}")]
        if self.has[3]:
            params.append(("in3", f"__global const {F32S} *in3"))
        params.append(("scratch", "__global float *scratch"))
        rb_cond = "1" if self.rb_rows == GH else f"col < {self.rb_rows}"
        src = f"""__kernel void {fn}({', '.join(p for _, p in params)}) {{
    const int col = get_global_id(0);
    if (col >= {GH}) return;
    const int row = get_global_id(1);
    const int d = get_global_id(2);
    const int t = row / {self.N}, b = row % {self.N};
    __global const {F32S} *x = in0 + {self.x_row('t', 'b')};
    {self.w_base()}
    {self.b_base()}
    float acc = 0.0f;
    for (int k = 0; k < {I}; k++) acc += {ld('x', 'k')} * {self.w_at('col', 'k')};
    scratch[{self.xp_off} + (d * {self.T * self.N} + row) * {GH} + col] = acc + {self.bias('col', rb_cond)};
}}"""
        g0 = min(XPROJ_GROUP, round_up(GH, GROUP_QUANTUM))
        launch = Launch(fn, tuple(n for n, _ in params), (round_up(GH, g0), self.T * self.N, self.D), (g0, 1, 1))
        return src, launch

    # ---- launch 2: the recurrence ------------------------------------------------------------
    def x_parts(self) -> list[str]:
        """Statements declaring a0..a{G-1}: the input part (and biases) of each gate of unit j."""
        G, H = self.G, self.H
        if self.pre:
            return [f"float {', '.join(f'a{g} = xr[{g * H} + j]' for g in range(G))};"]
        rb_gates = self.rb_rows // H  # gates whose Rb adds (all but GRU's h with lbr)
        inits = ", ".join(f"a{g} = {self.bias(f'{g * H} + j', '1' if g < rb_gates else '0')}" for g in range(G))
        body = " ".join(f"a{g} += xk * {self.w_at(f'{g * H} + j', 'k')};" for g in range(G))
        return [f"float {inits};",
                f"for (int k = 0; k < {self.I}; k++) {{ const float xk = {ld('xv', 'k')}; {body} }}"]

    def rec_loop(self, vec: str, acc: list[tuple[str, int]]) -> str:
        """for k: acc_name += vec[k] * R[gate row of (gate, j)][k] for each (acc_name, gate)."""
        H = self.H
        body = " ".join(f"{a} += v * {self.r_at(f'{g * H} + j', 'k')};" for a, g in acc)
        return f"for (int k = 0; k < {H}; k++) {{ const float v = {vec}[k]; {body} }}"

    def step_phases(self) -> list[list[str]]:
        """The per-unit statements of each phase of one step (a barrier between phases); the last
        phase leaves the unit's new h in hn[u]."""
        H = self.H
        a = self.x_parts()
        if self.op == "rnn":
            return [a + [self.rec_loop("hs", [("a0", 0)]),
                         f"hn[u] = {self.act(0, self.clipped('a0'))};"]]
        if self.op == "lstm":
            peep = self.has[7]
            s = a + [self.rec_loop("hs", [("a0", 0), ("a1", 1), ("a2", 2), ("a3", 3)])]
            if peep:
                s.append("a0 += pi[u] * c[u];")
            s.append(f"const float gi = {self.act(0, self.clipped('a0'))};")
            if self.input_forget:
                s.append("const float gf = 1 - gi;")
            else:
                if peep:
                    s.append("a2 += pf[u] * c[u];")
                s.append(f"const float gf = {self.act(0, self.clipped('a2'))};")
            s.append(f"const float gc = {self.act(1, self.clipped('a3'))};")
            s.append("c[u] = gf * c[u] + gi * gc;")
            if peep:
                s.append("a1 += po[u] * c[u];")
            s.append(f"const float go = {self.act(0, self.clipped('a1'))};")
            s.append(f"hn[u] = go * {self.act(2, 'c[u]')};")
            return [s]
        # gru: gates z, r, h
        if self.lbr:
            rbh = ld("Bd", f"{self.GH + 2 * H} + j") if self.has[3] else "0.0f"
            s = a + [f"float ah = {rbh};",
                     self.rec_loop("hs", [("a0", 0), ("a1", 1), ("ah", 2)]),
                     f"const float z = {self.act(0, self.clipped('a0'))};",
                     f"const float r = {self.act(0, self.clipped('a1'))};",
                     f"const float hh = {self.act(1, self.clipped('a2 + r * ah'))};",
                     "hn[u] = (1 - z) * hh + z * hs[j];"]
            return [s]
        first = a + [self.rec_loop("hs", [("a0", 0), ("a1", 1)]),
                     f"zz[u] = {self.act(0, self.clipped('a0'))};",
                     f"rh[j] = {self.act(0, self.clipped('a1'))} * hs[j];",
                     "xh[u] = a2;"]
        second = ["float ah = xh[u];",
                  self.rec_loop("rh", [("ah", 2)]),
                  f"const float hh = {self.act(1, self.clipped('ah'))};",
                  "hn[u] = (1 - zz[u]) * hh + zz[u] * hs[j];"]
        return [first, second]

    def rec(self) -> tuple[str, Launch]:
        fn, H, T, N, D, U, LS = f"{self.fn}_rec", self.H, self.T, self.N, self.D, self.U, self.LS
        lstm = self.op == "lstm"
        params = []
        if not self.pre:
            params.append(("in0", f"__global const {F32S} *in0"))
            params.append(("wt" if self.wt else "in1", f"__global const {F32S} *{'wt' if self.wt else 'in1'}"))
        params.append(("rt" if self.rt else "in2", f"__global const {F32S} *{'rt' if self.rt else 'in2'}"))
        need_b = self.has[3] and (not self.pre or self.lbr)
        if need_b:
            params.append(("in3", f"__global const {F32S} *in3"))
        for i in (4, 5) + ((6, 7) if lstm else ()):
            if self.has[i]:
                ty = self.ctx.ctype(self.ctx.inputs[i].dtype) if i == 4 else F32S
                params.append((f"in{i}", f"__global const {ty} *in{i}"))
        for i in range(self.nout):
            params.append((f"out{i}", f"__global {F32S} *out{i}"))
        if self.scratch_floats:
            params.append(("scratch", "__global float *scratch"))
        fence = "CLK_LOCAL_MEM_FENCE" if self.local else "CLK_GLOBAL_MEM_FENCE"
        barrier = f"barrier({fence});"
        rev = {"forward": "0", "reverse": "1", "bidirectional": "d == 1"}[self.direction]

        lines = [f"__kernel PDC_WORK_GROUP({LS}, 1, 1)",
                 f"void {fn}({', '.join(p for _, p in params)}) {{",
                 "    const int lid = get_local_id(0);",
                 "    const int grp = get_group_id(0);",
                 f"    const int d = grp / {N}, b = grp % {N};",
                 f"    const int rev = {rev};"]
        if self.has[4]:
            lines.append(f"    int len = (int)in4[b]; len = len < 0 ? 0 : (len > {T} ? {T} : len);")
        else:
            lines.append(f"    const int len = {T};")
        if self.local:
            lines.append(f"    __local float hs[{H}];")
            if self.shared == 2:
                lines.append(f"    __local float rh[{H}];")
        else:
            lines.append(f"    __global float *hs = scratch + {self.h_off} + grp * {self.shared * H};")
            if self.shared == 2:
                lines.append(f"    __global float *rh = hs + {H};")
        lines.append(f"    {self.r_base()}")
        if need_b:
            lines.append(f"    {self.b_base()}")
        if not self.pre:
            lines.append(f"    {self.w_base()}")
        priv = ["hn", "hp"] + (["c"] if lstm else []) + (["pi", "po", "pf"] if lstm and self.has[7] else []) \
            + (["zz", "xh"] if self.shared == 2 else [])
        lines.append(f"    float {', '.join(f'{p}[{U}]' for p in priv)};")
        srow = self.state_row()

        def per_unit(stmts: list[str], indent: str = "    ", cond: str = "") -> list[str]:
            out = [f"{indent}for (int u = 0; u < {U}; u++) {{",
                   f"{indent}    const int j = lid + u * {LS};",
                   f"{indent}    if ({cond}j < {H}) {{"]
            out += [f"{indent}        {s}" for s in stmts]
            return out + [f"{indent}    }}", f"{indent}}}"]

        init = [f"hs[j] = {ld('in5', f'{srow} + j') if self.has[5] else '0.0f'};", "hp[u] = 0.0f;"]
        if lstm:
            init.append(f"c[u] = {ld('in6', f'{srow} + j') if self.has[6] else '0.0f'};")
            if self.has[7]:
                init.append(f"pi[u] = {ld('in7', f'd * {3 * H} + j')}; po[u] = {ld('in7', f'd * {3 * H} + {H} + j')}; "
                            f"pf[u] = {ld('in7', f'd * {3 * H} + {2 * H} + j')};")
        lines += per_unit(init)
        lines.append(f"    {barrier}")
        # the trip count is the constant T (the steps past len do nothing), so that every barrier
        # sits in a loop of a fixed count: PoCL 3.1 miscompiles private state kept across a barrier
        # loop of a runtime count
        lines.append(f"    for (int s = 0; s < {T}; s++) {{")
        lines.append("        const int live = s < len;")
        lines.append("        const int t = live ? (rev ? len - 1 - s : s) : 0;")
        if self.pre:
            lines.append(f"        __global const float *xr = scratch + {self.xp_off} + "
                         f"((d * {T} + t) * {N} + b) * {self.GH};")
        else:
            lines.append(f"        __global const {F32S} *xv = in0 + {self.x_row('t', 'b')};")
        for k, phase in enumerate(self.step_phases()):
            if k:
                lines.append(f"        {barrier}")
            lines += per_unit(phase, "        ", "live && ")
        lines.append(f"        {barrier}")  # every work-item has read h
        publish = ["hs[j] = hn[u]; hp[u] = hn[u];"]
        if self.nout > 0:
            publish.append(st("out0", self.y_index("t"), "hn[u]"))
        lines += per_unit(publish, "        ", "live && ")
        lines.append(f"        {barrier}")  # the new h is visible
        lines.append("    }")
        tail = []
        if self.nout > 0:
            tail.append(f"for (int t = len; t < {T}; t++) {st('out0', self.y_index('t'), '0.0f')}")
        if self.nout > 1:
            tail.append(st("out1", f"{srow} + j", "hp[u]"))
        if self.nout > 2 and lstm:
            tail.append(st("out2", f"{srow} + j", "len > 0 ? c[u] : 0.0f"))
        lines += per_unit(tail)
        lines.append("}")
        launch = Launch(fn, tuple(n for n, _ in params), (LS * D * N,), (LS,))
        return "\n".join(lines), launch

    def render(self) -> DeviceKernel:
        sources, launches = self.helpers(), []
        if self.pre:
            src, launch = self.xproj()
            sources.append(src)
            launches.append(launch)
        src, launch = self.rec()
        sources.append(src)
        launches.append(launch)
        return DeviceKernel("\n".join(sources) + "\n", launches, self.scratch_floats * 4, self.tables,
                            f"opencl/{self.op}")


@kernel("lstm", "gru", "rnn", family=OPENCL)
def recurrent(ctx: KernelContext):
    for i, t in enumerate(ctx.inputs):
        if t is not None and i != 4 and t.dtype is not dtypes.float32:
            return None  # half precision and double: not on the device
    if ctx.has_input(4) and not ctx.inputs[4].dtype.is_int:
        return None
    if any(t.dtype is not dtypes.float32 for t in ctx.outputs):
        return None
    g = _Gen(ctx, ctx.node.op)
    if min(g.T, g.N, g.H, g.I, g.D) == 0:
        return None  # empty tensors: nothing to launch
    return g.render()
