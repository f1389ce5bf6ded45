"""Elementwise kernels: unary, broadcasting n-ary, comparisons, casts, as one loop over the output.

Half-precision inputs are computed in float and rounded once on store, like the reference.
Integer add/sub/mul wrap (computed unsigned: no signed-overflow UB).

Each op's per-element computation is built by an expression builder (EXPR_BUILDERS[op](ctx) ->
ScalarExpr, a kernel-IR expression) that the kernel wraps in the loop; fused_elementwise
(pdc/codegen/kernels/fused.py) chains the same builders, one per step, inside a single loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ...ir import dtypes as D
from ...ir.dtypes import DType
from ...ir.ops.elementwise import HARD_SWISH_ALPHA
from .. import kir, narrow_c
from ..context import KernelContext
from ..kir import Var, cast, lit, select
from . import kernel
from ._kir import io, prints_kir, render
from .loops import broadcast_nest

SQRT1_2 = 1 / math.sqrt(2)


def compute_dtype(dt: DType) -> DType:
    """The type arithmetic runs in: half precision computes in float, like the reference."""
    return D.float32 if dt.short in ("f16", "bf16") else dt


def _m(fn: str, *args) -> kir.Expr:
    return kir.math(fn, *args)


# ---- per-element expressions over operands a, b, c in the compute type -------------------------
MATH_UNARY = {"abs": "fabs", "exp": "exp", "log": "log", "sqrt": "sqrt", "floor": "floor", "ceil": "ceil",
              "round": "nearbyint", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos",
              "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh", "acosh": "acosh",
              "atanh": "atanh", "tanh": "tanh", "erf": "erf"}


def float_unary(op: str, a: kir.Expr, attrs: dict) -> kir.Expr:
    """The float unary op on a (a float or double expression), as the reference computes it."""
    ct = a.dtype

    def L(name):
        return lit(attrs[name], ct)

    def L0(name):  # an attribute left unset reads as 0
        return L(name) if name in attrs else kir.as_expr(0)

    def pos(x):
        return select(x > 0, x, 0)

    if op in MATH_UNARY:
        return _m(MATH_UNARY[op], a)
    if op == "relu":
        return select(a > 0, a, select(a.ne(a), a, 0))
    if op == "neg":
        return -a
    if op == "reciprocal":
        return 1 / a
    if op == "sigmoid":
        return select(a >= 0, 1 / (1 + _m("exp", -a)), _m("exp", a) / (1 + _m("exp", a)))
    if op == "softplus":
        return pos(a) + _m("log1p", _m("exp", -_m("fabs", a)))
    if op == "softsign":
        return a / (1 + _m("fabs", a))
    if op == "mish":
        return a * _m("tanh", pos(a) + _m("log1p", _m("exp", -_m("fabs", a))))
    if op == "sign":
        return select(a > 0, 1, select(a < 0, -1, a))
    if op == "leaky_relu":
        return select(a >= 0, a, a * L0("alpha"))
    if op == "elu":
        return select(a >= 0, a, L0("alpha") * _m("expm1", a))
    if op == "thresholded_relu":
        return select(a > L0("alpha"), a, 0)
    if op == "hard_swish":
        t = a * lit(HARD_SWISH_ALPHA, ct) + 0.5  # a double literal: computed in double, as before
        return a * select(t < 0, 0, select(t > 1, 1, t))
    if op == "swish":
        return a * (1 / (1 + _m("exp", -L0("alpha") * a)))
    if op == "selu":
        return L("gamma") * select(a > 0, a, L("alpha") * _m("expm1", a))
    if op == "celu":
        al = L("alpha")
        neg = al * _m("expm1", a / al)
        return pos(a) + select(neg < 0, neg, 0)
    if op == "hard_sigmoid":
        t = L("alpha") * a + L("beta")
        return select(t < 0, 0, select(t > 1, 1, t))
    if op == "gelu":
        if attrs.get("approximate") == "tanh":
            c = lit(math.sqrt(2 / math.pi), ct)
            return lit(0.5, ct) * a * (1 + _m("tanh", c * (a + lit(0.044715, ct) * a * a * a)))
        x = cast(D.float64, a)
        return cast(ct, 0.5 * x * (1 + _m("erf", x * SQRT1_2)))
    if op == "shrink":
        lam, bias = L("lambd"), L("bias")
        return select(a < -lam, a + bias, select(a > lam, a - bias, 0))
    raise KeyError(op)


FLOAT_UNARY = ("relu", "neg", "abs", "exp", "log", "sqrt", "reciprocal", "floor", "ceil", "round", "sin", "cos",
               "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "tanh", "erf", "sigmoid",
               "softplus", "softsign", "mish", "sign", "leaky_relu", "elu", "thresholded_relu", "hard_swish",
               "swish", "selu", "celu", "hard_sigmoid", "gelu", "shrink")


def _wide_unsigned(dt: DType) -> DType:
    """The unsigned type integer arithmetic of dt wraps in (no signed-overflow UB)."""
    return D.uint64 if dt.itemsize == 8 else D.uint32


def int_unary(op: str, a: kir.Expr) -> kir.Expr:
    t = a.dtype
    u = _wide_unsigned(t)
    if op == "relu":
        return select(a > 0, a, 0)
    if op == "neg":
        return cast(t, cast(u, 0) - cast(u, a))
    if op == "abs":
        return select(a < 0, cast(t, cast(u, 0) - cast(u, a)), a)
    if op == "sign":
        return select(a > 0, 1, select(a < 0, -1, 0))
    if op == "bitwise_not":
        return ~a
    raise KeyError(op)


INT_UNARY = ("relu", "neg", "abs", "sign", "bitwise_not")


def _float_unary(op: str, ct: str, attrs: dict) -> str:
    """C text of float_unary over the variable `a` of C type ct ('float' or 'double'), for
    generators that still print text."""
    dt = {"float": D.float32, "double": D.float64}[ct]
    return kir.CPrinter().expr(float_unary(op, Var("a", dt), attrs))


# Operand names in expressions: single letters, skipping `o` and `i`, which the loops use.
OPERAND_NAMES = "abcdefghjklmnpqrstuvwxyz"


def operand(j: int, dt: DType) -> Var:
    """The variable holding operand j (a, b, c, ...)."""
    return Var(OPERAND_NAMES[j], dt)


@dataclass
class ScalarExpr:
    """One output element: node input `operands[j]` is loaded, converted to ct_of(operands[j]), into
    the variable operand(j) (a, b, c, ...); `expr` computes the element from those variables (the
    loop stores it in the output dtype); `scalars` are variables read once, before the loop, from
    element 0 of a node input (clip's bounds)."""
    operands: list[int]
    expr: kir.Expr
    ct_of: Callable[[int], DType]
    scalars: list[tuple[Var, int]] = field(default_factory=list)


# op -> builder(ctx) -> ScalarExpr; ctx needs node.op, inputs, outputs, attrs, has_input, fail
# (a KernelContext, or a stand-in for one step of a fused_elementwise node)
EXPR_BUILDERS: dict[str, Callable[[KernelContext], ScalarExpr]] = {}


def _expr(operands: list[int], expr: kir.Expr, ct: DType) -> ScalarExpr:
    return ScalarExpr(operands, expr, lambda k: ct)


def _elementwise_kernel(*ops: str):
    """Registers `builder` as the expression builder of `ops` and a kernel looping it over the output."""
    def wrap(builder):
        for op in ops:
            EXPR_BUILDERS[op] = builder

        @kernel(*ops)
        @prints_kir
        def generate(ctx: KernelContext) -> str:
            return render(ctx, _loop(ctx, builder(ctx)))
        generate.__name__ = generate.__qualname__ = builder.__name__
        return builder
    return wrap


def _loop(ctx: KernelContext, e: ScalarExpr) -> list:
    """One loop over the output; operand k is loaded (converted to ct_of(k)) into a, b, c, ..."""
    ins, outs = io(ctx)
    scalars = [kir.Declare(v, cast(v.dtype, ins[k][0])) for v, k in e.scalars]

    def body(at, o):
        loads = [kir.Declare(operand(j, e.ct_of(k)), cast(e.ct_of(k), ins[k][at[j]])) for j, k in enumerate(e.operands)]
        return loads + [kir.store(outs[0], o, e.expr)]
    return scalars + broadcast_nest(ctx.outputs[0].shape, [ctx.inputs[k].shape for k in e.operands], body)


@_elementwise_kernel(*FLOAT_UNARY, "bitwise_not", "is_nan", "is_inf", "not")
def unary(ctx: KernelContext) -> ScalarExpr:
    op, t = ctx.node.op, ctx.inputs[0]
    ct = compute_dtype(t.dtype)
    a = operand(0, ct)
    if op == "is_nan":
        return _expr([0], a.ne(a), ct)
    if op == "is_inf":
        pos, neg = ctx.attrs.get("detect_positive", 1), ctx.attrs.get("detect_negative", 1)
        inf = _m("isinf", a)
        return _expr([0], kir.any_of(([inf.land(a > 0)] if pos else []) + ([inf.land(a < 0)] if neg else [])), ct)
    if op == "not":
        b = operand(0, D.bool_)
        return _expr([0], b.lnot(), D.bool_)
    if not t.dtype.is_float:
        if op not in INT_UNARY:
            ctx.fail(f"{t.dtype} input is not supported")
        return _expr([0], int_unary(op, a), ct)
    return _expr([0], float_unary(op, a, ctx.attrs), ct)


@_elementwise_kernel("add", "sub", "mul", "div", "mod", "pow", "prelu", "bitwise_and", "bitwise_or", "bitwise_xor",
                     "bit_shift")
def binary(ctx: KernelContext) -> ScalarExpr:
    op = ctx.node.op
    dt = ctx.inputs[0].dtype
    ct = compute_dtype(dt)
    a, b = operand(0, ct), operand(1, ct)
    if op == "pow":
        if dt.is_float:
            return _expr([0, 1], _m("pow", a, b), ct)
        x, y = operand(0, D.float64), operand(1, D.float64)
        return _expr([0, 1], cast(ct, _m("pow", x, y)), D.float64)
    if dt.is_float:
        if op == "mod":
            r = _m("fmod", a, b)
            expr = r if ctx.attrs.get("fmod", 0) else select(r.ne(0).land((r < 0).ne(b < 0)), r + b, r)
        else:
            expr = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b,
                    "prelu": lambda: select(a < 0, b * a, a)}.get(op, lambda: None)()
        if expr is None:
            ctx.fail(f"{dt} inputs are not supported")
        return _expr([0, 1], expr, ct)
    signed = dt.short.startswith("i")
    u = _wide_unsigned(dt)
    bits = dt.itemsize * 8
    if op in ("add", "sub", "mul"):
        x, y = cast(u, a), cast(u, b)
        return _expr([0, 1], cast(ct, {"add": x + y, "sub": x - y, "mul": x * y}[op]), ct)
    if op == "div":
        return _expr([0, 1], select(b.eq(0), 0, cast(ct, a / b)), ct)
    if op == "mod":
        if ctx.attrs.get("fmod", 0) or not signed:
            return _expr([0, 1], select(b.eq(0), 0, cast(ct, a % b)), ct)
        r = a % b
        return _expr([0, 1], select(b.eq(0), 0, select(r.ne(0).land((r < 0).ne(b < 0)), cast(ct, r + b), cast(ct, r))),
                     ct)
    if op == "prelu":
        return _expr([0, 1], select(a < 0, b * a, a), ct)
    if op.startswith("bitwise_"):
        return _expr([0, 1], {"bitwise_and": a & b, "bitwise_or": a | b, "bitwise_xor": a ^ b}[op], ct)
    # bit_shift: shifts outside [0, bits) give 0 (or -1 for a right shift of a negative value)
    out_of_range = (b < 0).lor(b >= bits)
    if ctx.attrs["direction"] == "LEFT":
        return _expr([0, 1], select(out_of_range, 0, cast(ct, cast(u, a) << b)), ct)
    fill = select(a < 0, -1, 0) if signed else kir.as_expr(0)
    return _expr([0, 1], select(out_of_range, fill, cast(ct, a >> b)), ct)


@_elementwise_kernel("and", "or", "xor")
def logical(ctx: KernelContext) -> ScalarExpr:
    a, b = operand(0, D.bool_).ne(0), operand(1, D.bool_).ne(0)
    expr = {"and": lambda: a.land(b), "or": lambda: a.lor(b), "xor": lambda: a.ne(b)}[ctx.node.op]()
    return _expr([0, 1], expr, D.bool_)


@_elementwise_kernel("equal", "less", "greater", "less_or_equal", "greater_or_equal")
def compare(ctx: KernelContext) -> ScalarExpr:
    ct = compute_dtype(ctx.inputs[0].dtype)
    a, b = operand(0, ct), operand(1, ct)
    expr = {"equal": lambda: a.eq(b), "less": lambda: a < b, "greater": lambda: a > b,
            "less_or_equal": lambda: a <= b, "greater_or_equal": lambda: a >= b}[ctx.node.op]()
    return _expr([0, 1], expr, ct)


@_elementwise_kernel("max", "min", "sum", "mean")
def variadic(ctx: KernelContext) -> ScalarExpr:
    op = ctx.node.op
    dt = ctx.inputs[0].dtype
    ct = compute_dtype(dt)
    n = len(ctx.inputs)
    if n > len(OPERAND_NAMES):
        ctx.fail(f"{n} inputs: at most {len(OPERAND_NAMES)} are supported")
    xs = [operand(j, ct) for j in range(n)]
    expr = xs[0]
    for x in xs[1:]:
        if op in ("max", "min"):
            better = expr > x if op == "max" else expr < x
            expr = select(better.lor(expr.ne(expr)) if dt.is_float else better, expr, x)  # NaN wins
        else:
            expr = expr + x
    if op == "mean":
        expr = expr / n
    if op == "sum" and not dt.is_float:  # wraps, without signed overflow
        u = _wide_unsigned(dt)
        expr = cast(u, xs[0])
        for x in xs[1:]:
            expr = expr + cast(u, x)
    return _expr(list(range(n)), expr, ct)


@_elementwise_kernel("clip")
def clip(ctx: KernelContext) -> ScalarExpr:
    ct = compute_dtype(ctx.inputs[0].dtype)
    expr = a = operand(0, ct)
    scalars = []
    if ctx.has_input(1):
        lo = Var("lo", ct)
        scalars.append((lo, 1))
        expr = select(expr < lo, lo, expr)
    if ctx.has_input(2):
        hi = Var("hi", ct)
        scalars.append((hi, 2))
        expr = select(expr > hi, hi, expr)
    return ScalarExpr([0], expr if scalars else a, lambda k: ct, scalars)


@_elementwise_kernel("where")
def where(ctx: KernelContext) -> ScalarExpr:
    ct = compute_dtype(ctx.inputs[1].dtype)
    return ScalarExpr([0, 1, 2], select(operand(0, D.bool_), operand(1, ct), operand(2, ct)),
                      lambda k: D.bool_ if k == 0 else ct)


def _narrow_cast(ctx: KernelContext, src: DType, dst: DType) -> ScalarExpr:
    """A cast from or to a narrow type through its helpers (narrow_c.py): a narrow input widens to
    float32 or int32 first; a narrow output is encoded from double (float8e8m0: from float32)."""
    ct = src if src.is_narrow else compute_dtype(src)
    x = operand(0, ct)
    if src.is_narrow:
        x = kir.call(narrow_c.decode_fn(src), narrow_c.wide_type(src), x)
    if not dst.is_narrow:
        if dst.short == "bool":
            return _expr([0], x.ne(0), ct)
        return _expr([0], cast(compute_dtype(dst), x), ct)
    sat = ctx.attrs.get("saturate", 1)
    if dst is D.float8e8m0:
        mode = narrow_c.ROUND_MODES[ctx.attrs.get("round_mode", "up")]
        return _expr([0], kir.call("pdc_to_f8e8m0", dst, cast(D.float32, x), sat, mode), ct)
    if dst.short in narrow_c.MINIFLOATS:
        return _expr([0], kir.call(f"pdc_to_{dst.short}", dst, cast(D.float64, x), sat), ct)
    if x.dtype.is_float:  # to a 4- or 2-bit integer
        return _expr([0], kir.call(f"pdc_to_{dst.short}", dst, cast(D.float64, x)), ct)
    return _expr([0], cast(dst, x & narrow_c.int_mask(dst)), ct)


@_elementwise_kernel("cast", "cast_like")
def cast_(ctx: KernelContext) -> ScalarExpr:
    src, dst = ctx.inputs[0].dtype, ctx.outputs[0].dtype
    if src.is_narrow or dst.is_narrow:
        return _narrow_cast(ctx, src, dst)
    if dst.short == "bool":
        ct = compute_dtype(src)
        return _expr([0], operand(0, ct).ne(0), ct)
    if src.short in ("f16", "bf16") or dst.short in ("f16", "bf16"):
        # through float (exact for half types); int -> bf16 goes through double to round once
        mid = D.float64 if (dst.short == "bf16" and not src.is_float) else D.float32
        return _expr([0], cast(D.float32 if dst.is_float else dst, operand(0, mid)), mid)
    return _expr([0], operand(0, src), src)
