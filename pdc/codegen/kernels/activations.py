"""The activations of fused ops in C: one definition for every kernel that applies them.

A fused conv / gemm / matmul ends in one of the activations of pdc/ir/ops/fused_conv.py
(ACTIVATIONS); a recurrent layer's gates use some of the same ones. Each is written here once, as
a C expression of a variable in float or double, and every form a kernel needs is printed from
that: the dense post-pass's switch over ACT_CODES (pdc_act_f32 / pdc_act_f64), the ARM GEMM's
per-activation function (pdc_act_<name>), the expressions the recurrent and elementwise kernels
inline. The numerics are the references' (gelu in double, hard_swish's 1/6 rounded to float32 in
float and double code, NaN through relu and the clamps).
"""
from __future__ import annotations

from ...ir.ops.fused_conv import ACTIVATIONS
from ..context import KernelContext

# the activation codes of the post-passes (a C int): "none" is 0, then ACTIVATIONS' order
ACT_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}

# {x}: the variable; {alpha}, {beta}: the activation's parameters; {f}: libm / literal suffix of the
# compute type; {clamp}: the clamp function of the compute type (NaN passes through it)
_EXPR = {
    "relu": "{x} > 0 ? {x} : ({x} != {x} ? {x} : 0)",
    "leaky_relu": "{x} >= 0 ? {x} : {x} * {alpha}",
    "clip": "{clamp}({x}, {alpha}, {beta})",
    "sigmoid": "{x} >= 0 ? 1 / (1 + exp{f}(-{x})) : exp{f}({x}) / (1 + exp{f}({x}))",
    "hard_sigmoid": "{clamp}({alpha} * {x} + {beta}, 0, 1)",
    "hard_swish": "{x} * {clamp}({x} {sixth} + 0.5{f}, 0, 1)",
    "swish": "{x} / (1 + exp{f}(-{alpha} * {x}))",
    "gelu": "{narrow}(0.5 * {wide} * (1 + erf({wide} * 0.70710678118654752440)))",
    "gelu_tanh": "0.5{f} * {x} * (1 + tanh{f}(0.7978845608028654{f} * ({x} + 0.044715{f} * {x} * {x} * {x})))",
    "tanh": "tanh{f}({x})",
}
assert set(_EXPR) == set(ACTIVATIONS) - {"none"}

CLAMP_FN = {"float": "pdc_fclamp", "double": "pdc_dclamp"}


def clamp_helper(ctx: KernelContext, ct: str = "float") -> str:
    """`ct pdc_fclamp / pdc_dclamp(ct s, ct lo, ct hi)`: s clamped to [lo, hi]; NaN stays NaN."""
    name = CLAMP_FN[ct]
    return ctx.helper(name, f"static inline {ct} {name}({ct} s, {ct} lo, {ct} hi) {{ s = s < lo ? lo : s; "
                            f"return s > hi ? hi : s; }}\n")


def act_expr(ctx: KernelContext, name: str, x: str = "a", ct: str = "float", alpha: str = "alpha",
             beta: str = "beta") -> str:
    """The C expression of activation `name` (not "none") of the variable x, computed in ct (float or
    double); alpha, beta: C expressions of its parameters. Registers the helpers it calls."""
    f = "f" if ct == "float" else ""
    expr = _EXPR[name]
    if "{clamp}" in expr:
        clamp_helper(ctx, ct)
    return expr.format(x=x, alpha=alpha, beta=beta, f=f, clamp=CLAMP_FN[ct],
                       sixth="* 0x1.555556p-3f" if ct == "float" else "* 0.1666666716337204",  # float32(1/6)
                       narrow="(float)" if ct == "float" else "", wide=f"(double){x}" if ct == "float" else x)


def act_switch(ctx: KernelContext, ct: str = "float") -> str:
    """`ct pdc_act_f32 / pdc_act_f64(int act, ct a, ct alpha, ct beta)`: activation ACT_CODES[act] of a."""
    name = "pdc_act_f32" if ct == "float" else "pdc_act_f64"
    cases = "".join(f"    case {code}: return {act_expr(ctx, act, 'a', ct)};\n"
                    for act, code in ACT_CODES.items() if act != "none")
    return ctx.helper(name, f"static {ct} {name}(int act, {ct} a, {ct} alpha, {ct} beta) {{\n"
                            f"    switch (act) {{\n{cases}    default: return a;\n    }}\n}}\n")


def act_function(ctx: KernelContext, name: str) -> str:
    """`float pdc_act_<name>(float a, float alpha, float beta)`, registered once: a bundle links only
    the math of the activations it uses (a Cortex-M image without GELU carries no erf)."""
    fn = f"pdc_act_{name}"
    expr = act_expr(ctx, name)
    return ctx.helper(fn, f"static float {fn}(float a, float alpha, float beta) {{\n"
                          f"    (void)alpha; (void)beta;\n    return {expr};\n}}\n")
