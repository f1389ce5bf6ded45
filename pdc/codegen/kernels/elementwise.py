"""Elementwise kernels: unary, broadcasting n-ary, comparisons, casts, as one loop over the output.

Half-precision inputs are computed in float and rounded once on store, like the reference.
Integer add/sub/mul wrap (computed unsigned: no signed-overflow UB).

Each op's per-element computation is built by an expression builder (EXPR_BUILDERS[op](ctx) ->
ScalarExpr) that the kernel wraps in the loop; fused_elementwise (pdc/codegen/kernels/fused.py)
chains the same builders, one per step, inside a single loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ...ir.ops.elementwise import HARD_SWISH_ALPHA
from ..context import KernelContext
from ..ctypes_c import float_literal
from . import kernel
from .loops import broadcast_loop

SQRT1_2 = float_literal(1 / math.sqrt(2), "double")


def _f(ct: str) -> str:
    return "f" if ct == "float" else ""


def _lit(x: float, ct: str) -> str:
    return float_literal(x, ct)


# ---- expression tables: C expressions over operands a, b, c in the compute type ct ------------
def _float_unary(op: str, ct: str, attrs: dict) -> str:
    f = _f(ct)
    L = lambda name: _lit(attrs[name], ct)  # noqa: E731
    HSA = _lit(HARD_SWISH_ALPHA, ct)
    table = {
        "relu": "a > 0 ? a : (a != a ? a : 0)",
        "neg": "-a", "abs": f"fabs{f}(a)", "exp": f"exp{f}(a)", "log": f"log{f}(a)", "sqrt": f"sqrt{f}(a)",
        "reciprocal": "1 / a", "floor": f"floor{f}(a)", "ceil": f"ceil{f}(a)", "round": f"nearbyint{f}(a)",
        "sin": f"sin{f}(a)", "cos": f"cos{f}(a)", "tan": f"tan{f}(a)", "asin": f"asin{f}(a)",
        "acos": f"acos{f}(a)", "atan": f"atan{f}(a)", "sinh": f"sinh{f}(a)", "cosh": f"cosh{f}(a)",
        "asinh": f"asinh{f}(a)", "acosh": f"acosh{f}(a)", "atanh": f"atanh{f}(a)", "tanh": f"tanh{f}(a)",
        "erf": f"erf{f}(a)",
        "sigmoid": f"a >= 0 ? 1 / (1 + exp{f}(-a)) : exp{f}(a) / (1 + exp{f}(a))",
        "softplus": f"(a > 0 ? a : 0) + log1p{f}(exp{f}(-fabs{f}(a)))",
        "softsign": f"a / (1 + fabs{f}(a))",
        "mish": f"a * tanh{f}((a > 0 ? a : 0) + log1p{f}(exp{f}(-fabs{f}(a))))",
        "sign": "a > 0 ? 1 : (a < 0 ? -1 : a)",
        "leaky_relu": f"a >= 0 ? a : a * {L('alpha') if 'alpha' in attrs else 0}",
        "elu": f"a >= 0 ? a : {L('alpha') if 'alpha' in attrs else 0} * expm1{f}(a)",
        "thresholded_relu": f"a > {L('alpha') if 'alpha' in attrs else 0} ? a : 0",
        "hard_swish": f"a * (a * {HSA} + 0.5 < 0 ? 0 : (a * {HSA} + 0.5 > 1 ? 1 : a * {HSA} + 0.5))",
        "swish": f"a * (1 / (1 + exp{f}(-{L('alpha') if 'alpha' in attrs else 0} * a)))",
    }
    if op == "selu":
        return f"{L('gamma')} * (a > 0 ? a : {L('alpha')} * expm1{f}(a))"
    if op == "celu":
        al = L("alpha")
        return f"(a > 0 ? a : 0) + ({al} * expm1{f}(a / {al}) < 0 ? {al} * expm1{f}(a / {al}) : 0)"
    if op == "hard_sigmoid":
        t = f"({L('alpha')} * a + {L('beta')})"
        return f"{t} < 0 ? 0 : ({t} > 1 ? 1 : {t})"
    if op == "gelu":
        if attrs.get("approximate") == "tanh":
            c = _lit(math.sqrt(2 / math.pi), ct)
            return f"({ct})0.5 * a * (1 + tanh{f}({c} * (a + ({ct})0.044715 * a * a * a)))"
        return f"({ct})(0.5 * (double)a * (1 + erf((double)a * {SQRT1_2})))"
    if op == "shrink":
        lam, bias = L("lambd"), L("bias")
        return f"a < -{lam} ? a + {bias} : (a > {lam} ? a - {bias} : 0)"
    return table[op]


FLOAT_UNARY = ("relu", "neg", "abs", "exp", "log", "sqrt", "reciprocal", "floor", "ceil", "round", "sin", "cos",
               "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "tanh", "erf", "sigmoid",
               "softplus", "softsign", "mish", "sign", "leaky_relu", "elu", "thresholded_relu", "hard_swish",
               "swish", "selu", "celu", "hard_sigmoid", "gelu", "shrink")
INT_UNARY = {"relu": "a > 0 ? a : 0", "neg": "({t})(0u - (u)a)", "abs": "a < 0 ? ({t})(0u - (u)a) : a",
             "sign": "a > 0 ? 1 : (a < 0 ? -1 : 0)", "bitwise_not": "~a"}


@dataclass
class ScalarExpr:
    """One output element: node input `operands[j]` is loaded, converted to ct_of(operands[j]), into
    the variable named by letter j (a, b, c, ...); `expr` computes the element in those variables
    (the loop stores it in the output dtype); `prelude` statements run once, before the loop."""
    operands: list[int]
    expr: str
    ct_of: Callable[[int], str]
    prelude: list[str] = field(default_factory=list)


# op -> builder(ctx) -> ScalarExpr; ctx needs node.op, inputs, outputs, attrs, has_input, compute_ctype,
# ctype, load, fail (a KernelContext, or a stand-in for one step of a fused_elementwise node)
EXPR_BUILDERS: dict[str, Callable[[KernelContext], ScalarExpr]] = {}


def _expr(ctx: KernelContext, operands: list[int], expr: str, ct_of) -> ScalarExpr:
    return ScalarExpr(operands, expr, ct_of)


def _elementwise_kernel(*ops: str):
    """Registers `builder` as the expression builder of `ops` and a kernel looping it over the output."""
    def wrap(builder):
        for op in ops:
            EXPR_BUILDERS[op] = builder

        @kernel(*ops)
        def generate(ctx: KernelContext) -> str:
            e = builder(ctx)
            return "\n".join(e.prelude + [_loop(ctx, e.operands, e.expr, e.ct_of)])
        generate.__name__ = generate.__qualname__ = builder.__name__
        return builder
    return wrap


# Operand names in expressions: single letters, skipping `o` and `i`, which the loops use.
OPERAND_NAMES = "abcdefghjklmnpqrstuvwxyz"


def _loop(ctx: KernelContext, operands: list[int], expr: str, ct_of) -> str:
    """One loop over the output; operand k is loaded (converted to ct_of(k)) into a, b, c, ..."""
    names = OPERAND_NAMES
    loads = " ".join(f"const {ct_of(k)} {names[j]} = ({ct_of(k)}){ctx.load(ctx.inputs[k].dtype, f'in{k}[i{j}]')};"
                     for j, k in enumerate(operands))
    out = ctx.outputs[0]
    return broadcast_loop(out.shape, [ctx.inputs[k].shape for k in operands],
                          f"{loads} out0[o] = {ctx.store(out.dtype, expr)};")


@_elementwise_kernel(*FLOAT_UNARY, "bitwise_not", "is_nan", "is_inf", "not")
def unary(ctx: KernelContext) -> ScalarExpr:
    op, t = ctx.node.op, ctx.inputs[0]
    if op == "is_nan":
        return _expr(ctx, [0], "a != a", lambda k: ctx.compute_ctype(t.dtype))
    if op == "is_inf":
        pos, neg = ctx.attrs.get("detect_positive", 1), ctx.attrs.get("detect_negative", 1)
        expr = " || ".join(["0"] + (["(isinf(a) && a > 0)"] if pos else []) + (["(isinf(a) && a < 0)"] if neg else []))
        return _expr(ctx, [0], expr, lambda k: ctx.compute_ctype(t.dtype))
    if op == "not":
        return _expr(ctx, [0], "!a", lambda k: "uint8_t")
    if not t.dtype.is_float:
        if op not in INT_UNARY:
            ctx.fail(f"{t.dtype} input is not supported")
        ct = ctx.ctype(t.dtype)
        u = "uint64_t" if t.dtype.itemsize == 8 else "uint32_t"
        return _expr(ctx, [0], INT_UNARY[op].format(t=ct).replace("(u)", f"({u})").replace("0u", f"({u})0"),
                     lambda k: ct)
    ct = ctx.compute_ctype(t.dtype)
    return _expr(ctx, [0], _float_unary(op, ct, ctx.attrs), lambda k: ct)


def _int_div(ct):
    return f"b == 0 ? 0 : ({ct})(a / b)"


@_elementwise_kernel("add", "sub", "mul", "div", "mod", "pow", "prelu", "bitwise_and", "bitwise_or", "bitwise_xor",
                     "bit_shift")
def binary(ctx: KernelContext) -> ScalarExpr:
    op = ctx.node.op
    a_t, b_t = ctx.inputs[0], ctx.inputs[1]
    dt = a_t.dtype
    ct = ctx.compute_ctype(dt)
    f = _f(ct)
    if op == "pow":
        if dt.is_float:
            return _expr(ctx, [0, 1], f"pow{f}(a, b)", lambda k: ct)
        return _expr(ctx, [0, 1], f"({ct})pow((double)a, (double)b)", lambda k: "double")
    if dt.is_float:
        expr = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "prelu": "a < 0 ? b * a : a"}.get(op)
        if op == "mod":
            expr = (f"fmod{f}(a, b)" if ctx.attrs.get("fmod", 0) else
                    f"(fmod{f}(a, b) != 0 && ((fmod{f}(a, b) < 0) != (b < 0))) ? fmod{f}(a, b) + b : fmod{f}(a, b)")
        if expr is None:
            ctx.fail(f"{dt} inputs are not supported")
        return _expr(ctx, [0, 1], expr, lambda k: ct)
    signed = dt.short.startswith("i")
    u = "uint64_t" if dt.itemsize == 8 else "uint32_t"
    bits = dt.itemsize * 8
    if op in ("add", "sub", "mul"):
        sym = {"add": "+", "sub": "-", "mul": "*"}[op]
        return _expr(ctx, [0, 1], f"({ct})(({u})a {sym} ({u})b)", lambda k: ct)
    if op == "div":
        return _expr(ctx, [0, 1], _int_div(ct), lambda k: ct)
    if op == "mod":
        if ctx.attrs.get("fmod", 0) or not signed:
            return _expr(ctx, [0, 1], f"b == 0 ? 0 : ({ct})(a % b)", lambda k: ct)
        return _expr(ctx, [0, 1], f"b == 0 ? 0 : ((a % b != 0 && ((a % b < 0) != (b < 0))) ? ({ct})(a % b + b) : ({ct})(a % b))",
                     lambda k: ct)
    if op == "prelu":
        return _expr(ctx, [0, 1], "a < 0 ? b * a : a", lambda k: ct)
    if op.startswith("bitwise_"):
        sym = {"bitwise_and": "&", "bitwise_or": "|", "bitwise_xor": "^"}[op]
        return _expr(ctx, [0, 1], f"a {sym} b", lambda k: ct)
    # bit_shift: shifts outside [0, bits) give 0 (or -1 for a right shift of a negative value)
    if ctx.attrs["direction"] == "LEFT":
        return _expr(ctx, [0, 1], f"(b < 0 || b >= {bits}) ? 0 : ({ct})(({u})a << b)", lambda k: ct)
    fill = "(a < 0 ? -1 : 0)" if signed else "0"
    return _expr(ctx, [0, 1], f"(b < 0 || b >= {bits}) ? {fill} : ({ct})(a >> b)", lambda k: ct)


@_elementwise_kernel("and", "or", "xor")
def logical(ctx: KernelContext) -> ScalarExpr:
    sym = {"and": "&&", "or": "||", "xor": "!="}[ctx.node.op]
    return _expr(ctx, [0, 1], f"(a != 0) {sym} (b != 0)", lambda k: "uint8_t")


@_elementwise_kernel("equal", "less", "greater", "less_or_equal", "greater_or_equal")
def compare(ctx: KernelContext) -> ScalarExpr:
    sym = {"equal": "==", "less": "<", "greater": ">", "less_or_equal": "<=", "greater_or_equal": ">="}[ctx.node.op]
    ct = ctx.compute_ctype(ctx.inputs[0].dtype)
    return _expr(ctx, [0, 1], f"a {sym} b", lambda k: ct)


@_elementwise_kernel("max", "min", "sum", "mean")
def variadic(ctx: KernelContext) -> ScalarExpr:
    op = ctx.node.op
    dt = ctx.inputs[0].dtype
    ct = ctx.compute_ctype(dt)
    n = len(ctx.inputs)
    names = OPERAND_NAMES
    if n > len(names):
        ctx.fail(f"{n} inputs: at most {len(names)} are supported")
    expr = names[0]
    for j in range(1, n):
        x = names[j]
        if op == "max":
            expr = f"(({expr}) > {x} || ({expr}) != ({expr}) ? ({expr}) : {x})" if dt.is_float else \
                f"(({expr}) > {x} ? ({expr}) : {x})"
        elif op == "min":
            expr = f"(({expr}) < {x} || ({expr}) != ({expr}) ? ({expr}) : {x})" if dt.is_float else \
                f"(({expr}) < {x} ? ({expr}) : {x})"
        else:
            expr = f"{expr} + {x}"
    if op == "mean":
        expr = f"({expr}) / {n}"
    if op == "sum" and not dt.is_float:
        u = "uint64_t" if dt.itemsize == 8 else "uint32_t"
        expr = " + ".join(f"({u}){names[j]}" for j in range(n))
    return _expr(ctx, list(range(n)), expr, lambda k: ct)


@_elementwise_kernel("clip")
def clip(ctx: KernelContext) -> ScalarExpr:
    dt = ctx.inputs[0].dtype
    ct = ctx.compute_ctype(dt)
    lines, expr = [], "a"
    if ctx.has_input(1):
        lines.append(f"    const {ct} lo = {ctx.load(dt, 'in1[0]')};")
        expr = f"({expr} < lo ? lo : {expr})"
    if ctx.has_input(2):
        lines.append(f"    const {ct} hi = {ctx.load(dt, 'in2[0]')};")
        expr = f"({expr} > hi ? hi : {expr})"
    return ScalarExpr([0], expr, lambda k: ct, lines)


@_elementwise_kernel("where")
def where(ctx: KernelContext) -> ScalarExpr:
    ct = ctx.compute_ctype(ctx.inputs[1].dtype)
    return _expr(ctx, [0, 1, 2], "a ? b : c", lambda k: "uint8_t" if k == 0 else ct)


@_elementwise_kernel("cast", "cast_like")
def cast(ctx: KernelContext) -> ScalarExpr:
    src, dst = ctx.inputs[0].dtype, ctx.outputs[0].dtype
    if dst.short == "bool":
        return _expr(ctx, [0], "a != 0", lambda k: ctx.compute_ctype(src))
    if src.short in ("f16", "bf16") or dst.short in ("f16", "bf16"):
        # through float (exact for half types); int -> bf16 goes through double to round once
        mid = "double" if (dst.short == "bf16" and not src.is_float) else "float"
        return _expr(ctx, [0], f"({'float' if dst.is_float else ctx.ctype(dst)})a", lambda k: mid)
    return _expr(ctx, [0], "a", lambda k: ctx.ctype(src))
