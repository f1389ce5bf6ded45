"""Kernels of the stateful sequence ops: causal_conv_with_state and linear_attention.

- causal_conv_with_state: per (batch, channel) row, each output sums k taps of the row prefixed
  with past_state (or zeros); SiLU, when fused, runs on the result rounded to the element type,
  like the reference; present_state copies the last k - 1 positions of the prefixed row.
- linear_attention: the recurrence is independent per (batch, KV head): its d_k x d_v float32
  state lives in present_state itself when that is float32 (else in a stack buffer), and is
  decayed, delta-corrected, written and read by every query head of the group, token by token.
Half precision computes in float and rounds once on store.
"""
from __future__ import annotations

from ...ir.ops.extra_recurrent import linear_attention_geometry
from ..context import KernelContext, numel
from ..ctypes_c import float_literal
from . import kernel
from ._axis import Num

MAX_STACK_STATE = 1 << 16  # floats of one head's state on the stack (non-float32 states)


@kernel("causal_conv_with_state")
def causal_conv_with_state(ctx: KernelContext) -> str:
    x, w = ctx.inputs[0], ctx.inputs[1]
    num = Num(x.dtype)
    batch, chans, length = x.shape
    k = w.shape[2]
    has_b, has_p = ctx.has_input(2), ctx.has_input(3)
    silu = ctx.attrs.get("activation", "none") in ("silu", "swish")
    if batch * chans == 0:
        return "    (void)in0; (void)in1; (void)out0; (void)out1;" + (" (void)in2;" if has_b else "") \
            + (" (void)in3;" if has_p else "")
    past = num.load("p[i]") if has_p else "0.0f"
    elem = f"(i < {k - 1} ? {past} : {num.load(f'x[i - {k - 1}]')})" if k > 1 else num.load("x[i]")
    bias = f" + {num.load('in2[c]')}" if has_b else ""
    act = ""
    if silu:
        rounded = num.load(num.store("acc")) if num.c != "float" else "acc"
        act = f"acc = {rounded}; acc = acc / (1.0f + expf(-acc));"
    p_decl = f"const {num.c} *p = in3 + (b * {chans} + c) * {k - 1};" if has_p else ""
    state = "" if k == 1 else f"""            {num.c} *st = out1 + (b * {chans} + c) * {k - 1};
            for (int64_t s = 0; s < {k - 1}; s++) {{
                const int64_t i = {length} + s;
                st[s] = {num.store(elem)};
            }}"""
    if k == 1:
        p_decl = "(void)out1;" + (" (void)in3;" if has_p else "")
    return f"""    for (int64_t b = 0; b < {batch}; b++)
        for (int64_t c = 0; c < {chans}; c++) {{
            const {num.c} *x = in0 + (b * {chans} + c) * {length};
            const {num.c} *wc = in1 + c * {k};
            {p_decl}
            {num.c} *y = out0 + (b * {chans} + c) * {length};
            for (int64_t t = 0; t < {length}; t++) {{
                float acc = 0;
                for (int64_t j = 0; j < {k}; j++) {{
                    const int64_t i = t + j;
                    acc += {elem} * {num.load('wc[j]')};
                }}
                acc = acc{bias};
                {act}
                y[t] = {num.store('acc')};
            }}
{state}
        }}"""


@kernel("linear_attention")
def linear_attention(ctx: KernelContext) -> str:
    q, k, v = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]
    y, st = ctx.outputs
    num, snum = Num(q.dtype), Num(st.dtype)
    b, t, hq, hkv, d_k, d_v, scale = linear_attention_geometry(q.shape, k.shape, v.shape, ctx.attrs, ctx.fail)
    rule = ctx.attrs.get("update_rule", "gated_delta")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    has_p = ctx.has_input(3)
    group = hq // hkv
    size = d_k * d_v
    unused = "".join(f" (void)in{i};" for i in (3, 4, 5) if ctx.has_input(i))
    if numel(st) == 0:
        return f"   {unused} (void)in0; (void)in1; (void)in2; (void)out0; (void)out1;"
    in_place = st.dtype.short == "f32"
    if not in_place and size > MAX_STACK_STATE:
        ctx.fail(f"a {d_k} x {d_v} {st.dtype} state exceeds the x86 kernel's stack buffer ({MAX_STACK_STATE} floats)")
    state = f"float *S = out1 + (bb * {hkv} + h) * {size};" if in_place else f"float S[{size}];"
    past = Num(ctx.inputs[3].dtype).load(f"in3[(bb * {hkv} + h) * {size} + i]") if has_p else "0"
    init = f"for (int64_t i = 0; i < {size}; i++) S[i] = {past};"
    save = "" if in_place else \
        f"for (int64_t i = 0; i < {size}; i++) out1[(bb * {hkv} + h) * {size} + i] = {snum.store('S[i]')};"
    lines = []
    if gated:
        dl = ctx.inputs[4].shape[2]
        if dl == hkv:
            lines.append(f"{{ const float g = expf({num.load(f'in4[tok * {hkv} + h]')});\n"
                         f"  for (int64_t i = 0; i < {size}; i++) S[i] *= g; }}")
        else:
            lines.append(f"for (int64_t d = 0; d < {d_k}; d++) {{\n"
                         f"    const float g = expf({num.load(f'in4[tok * {hkv * d_k} + h * {d_k} + d]')});\n"
                         f"    for (int64_t m = 0; m < {d_v}; m++) S[d * {d_v} + m] *= g;\n}}")
    if delta:
        bl = ctx.inputs[5].shape[2]
        bidx = f"tok * {bl}" + (" + h" if bl != 1 else "")
        lines.append(f"{{ const float beta = {num.load(f'in5[{bidx}]')};\n"
                     f"  for (int64_t m = 0; m < {d_v}; m++) {{\n"
                     f"      float r = 0;\n"
                     f"      for (int64_t d = 0; d < {d_k}; d++) r += S[d * {d_v} + m] * kf[d];\n"
                     f"      u[m] = beta * (u[m] - r);\n  }} }}")
    update = "\n".join(lines)
    sc = float_literal(scale, "float")
    return f"""   {unused}
    for (int64_t bb = 0; bb < {b}; bb++)
        for (int64_t h = 0; h < {hkv}; h++) {{
            {state}
            {init}
            for (int64_t s = 0; s < {t}; s++) {{
                const int64_t tok = bb * {t} + s;
                float kf[{d_k}], u[{d_v}];
                for (int64_t d = 0; d < {d_k}; d++) kf[d] = {num.load(f'in1[tok * {hkv * d_k} + h * {d_k} + d]')};
                for (int64_t m = 0; m < {d_v}; m++) u[m] = {num.load(f'in2[tok * {hkv * d_v} + h * {d_v} + m]')};
{_indent(update, 4)}
                for (int64_t d = 0; d < {d_k}; d++)
                    for (int64_t m = 0; m < {d_v}; m++) S[d * {d_v} + m] += kf[d] * u[m];
                for (int64_t g = 0; g < {group}; g++) {{
                    const int64_t qh = h * {group} + g;
                    const {num.c} *qv = in0 + tok * {hq * d_k} + qh * {d_k};
                    {num.c} *o = out0 + tok * {hq * d_v} + qh * {d_v};
                    for (int64_t m = 0; m < {d_v}; m++) {{
                        float acc = 0;
                        for (int64_t d = 0; d < {d_k}; d++) acc += {num.load('qv[d]')} * S[d * {d_v} + m];
                        o[m] = {num.store(f'{sc} * acc')};
                    }}
                }}
            }}
            {save}
        }}"""


def _indent(code: str, n: int) -> str:
    pad = "    " * n
    return "\n".join(pad + line if line else line for line in code.splitlines())
