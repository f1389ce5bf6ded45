"""Fused ops made by the fuse-conv-bias-activation pass: fused_conv, fused_gemm, fused_matmul.

Each is its base op followed by an optional residual add and an optional activation, computed
as one kernel by the code generators:

    fused_conv(X, W, B?, R?)     conv attributes          + activation / residual
    fused_gemm(A, B, C?, R?)     gemm attributes          + activation / residual
    fused_matmul(A, B, Bias?, R?)                           + activation / residual

    y = base(...)                       # conv / gemm with their own bias; matmul, then + Bias
    y = y + R    if residual == "before_activation"
    y = act(y)
    y = y + R    if residual == "after_activation"

fused_matmul's Bias is 1-D with one value per column (the last axis of the output). R has the
output's exact shape (no broadcasting). `activation` is one of ACTIVATIONS; its parameters are
`activation_alpha` / `activation_beta`, present exactly when the activation takes them:

    none, relu, sigmoid, tanh, hard_swish, gelu (erf form), gelu_tanh : no parameters
    leaky_relu   alpha = slope for x < 0
    hard_sigmoid alpha, beta: max(0, min(1, alpha * x + beta))
    swish        alpha: x * sigmoid(alpha * x) (SiLU where alpha = 1)
    clip         alpha = min, beta = max (-inf / inf where the Clip had no bound)

The references compose the component ops' references, so an unfused graph and its fused form
compute the same numbers (up to the rounding of folded constants).
"""
from __future__ import annotations

import math

import numpy as np

from ..registry import REGISTRY, Attr, InferContext, get_op, register_op
from ..types import TensorType, types_compatible
from . import elementwise, nn, nn_conv  # noqa: F401  (the base ops must be registered first)

# activation name -> (IR op, parameter names the fused op carries)
ACTIVATIONS = {
    "none": (None, ()),
    "relu": ("relu", ()),
    "leaky_relu": ("leaky_relu", ("alpha",)),
    "clip": ("clip", ("alpha", "beta")),
    "sigmoid": ("sigmoid", ()),
    "hard_sigmoid": ("hard_sigmoid", ("alpha", "beta")),
    "hard_swish": ("hard_swish", ()),
    "swish": ("swish", ("alpha",)),
    "gelu": ("gelu", ()),
    "gelu_tanh": ("gelu", ()),
    "tanh": ("tanh", ()),
}
RESIDUALS = ("none", "before_activation", "after_activation")

_EPILOGUE_ATTRS = {
    "activation": Attr("string", "none"),
    "activation_alpha": Attr("float", None),
    "activation_beta": Attr("float", None),
    "residual": Attr("string", "none"),
}


def apply_activation(y: np.ndarray, attrs: dict) -> np.ndarray:
    """The activation of a fused op, computed by the reference of the op it stands for."""
    name = attrs.get("activation", "none")
    op, _ = ACTIVATIONS[name]
    if op is None:
        return y
    ref = get_op(op).reference
    if name in ("leaky_relu", "swish"):
        return ref([y], {"alpha": attrs["activation_alpha"]})
    if name == "hard_sigmoid":
        return ref([y], {"alpha": attrs["activation_alpha"], "beta": attrs["activation_beta"]})
    if name == "clip":
        lo, hi = (np.array(attrs[k], y.dtype) for k in ("activation_alpha", "activation_beta"))
        return ref([y, lo, hi], {})
    if name in ("gelu", "gelu_tanh"):
        return ref([y], {"approximate": "tanh" if name == "gelu_tanh" else "none"})
    return ref([y], {})


def _epilogue(y: np.ndarray, r, attrs: dict) -> np.ndarray:
    add = get_op("add").reference
    residual = attrs.get("residual", "none")
    if residual == "before_activation":
        y = add([y, r], {})
    y = apply_activation(y, attrs)
    if residual == "after_activation":
        y = add([y, r], {})
    return y


def _verify_epilogue(ctx: InferContext, r_index: int):
    a = ctx.attrs
    act = a.get("activation", "none")
    if act not in ACTIVATIONS:
        ctx.fail(f"activation '{act}' is not one of {', '.join(ACTIVATIONS)}")
    params = ACTIVATIONS[act][1]
    for p in ("alpha", "beta"):
        given = a.get(f"activation_{p}") is not None
        if given != (p in params):
            ctx.fail(f"activation '{act}' {'needs' if p in params else 'takes no'} activation_{p}")
    if any(isinstance(a.get(f"activation_{p}"), float) and math.isnan(a[f"activation_{p}"]) for p in params):
        ctx.fail("activation parameters must not be NaN")
    residual = a.get("residual", "none")
    if residual not in RESIDUALS:
        ctx.fail(f"residual '{residual}' is not one of {', '.join(RESIDUALS)}")
    if (residual != "none") != ctx.has_input(r_index):
        ctx.fail(f"residual={residual!r} {'needs' if residual != 'none' else 'takes no'} input R")


def _check_residual(ctx: InferContext, r_index: int, out: TensorType):
    if ctx.has_input(r_index):
        r = ctx.types[r_index]
        if not types_compatible(out, r):
            ctx.fail(f"R must have the output's type {out}, got {r}")


def _verify(ctx: InferContext):
    _verify_epilogue(ctx, 3)


def _fused_infer(base: str, r_index: int, extra_check=None):
    def infer(ctx: InferContext):
        _verify_epilogue(ctx, r_index)
        if ctx.types[0].dtype.is_int and ctx.attrs.get("activation", "none") != "none":
            ctx.fail("activations need a float output")
        out = get_op(base).infer(ctx)[0]  # the base op reads only its own inputs and attributes
        if extra_check is not None:
            extra_check(ctx, out)
        _check_residual(ctx, r_index, out)
        return [out]
    return infer


def _base_attrs(base: str, attrs: dict) -> dict:
    names = get_op(base).attrs
    return {k: v for k, v in attrs.items() if k in names}


# ---- fused_conv ---------------------------------------------------------------------------------
def _fused_conv_reference(inputs, attrs):
    x, w, b, r = (list(inputs) + [None] * 4)[:4]
    y = get_op("conv").reference([x, w, b], _base_attrs("conv", attrs))
    return _epilogue(y, r, attrs)


register_op("fused_conv", ["X", "W", "B?", "R?"], ["Y"],
            attrs={**REGISTRY["conv"].attrs, **_EPILOGUE_ATTRS},
            infer=_fused_infer("conv", 3), reference=_fused_conv_reference, verify=_verify,
            doc="conv (with bias B) + optional residual R + activation, as one kernel.")


# ---- fused_gemm ---------------------------------------------------------------------------------
def _fused_gemm_reference(inputs, attrs):
    a, b, c, r = (list(inputs) + [None] * 4)[:4]
    y = get_op("gemm").reference([a, b, c], _base_attrs("gemm", attrs))
    return _epilogue(y, r, attrs)


register_op("fused_gemm", ["A", "B", "C?", "R?"], ["Y"], attrs={**REGISTRY["gemm"].attrs, **_EPILOGUE_ATTRS},
            infer=_fused_infer("gemm", 3), reference=_fused_gemm_reference, verify=_verify,
            doc="gemm (alpha * A' B' + beta * C) + optional residual R + activation, as one kernel.")


# ---- fused_matmul -------------------------------------------------------------------------------
def _check_bias(ctx: InferContext, out: TensorType):
    if not ctx.has_input(2):
        return
    t = ctx.types[2]
    if t.dtype != ctx.types[0].dtype:
        ctx.fail(f"Bias has dtype {t.dtype}, A has {ctx.types[0].dtype}")
    if out.shape is not None and len(out.shape) < 2:
        ctx.fail("Bias needs an output of rank >= 2 (one value per column)")
    if t.shape is not None:
        n = None if out.shape is None else out.shape[-1]
        if len(t.shape) != 1 or (isinstance(n, int) and isinstance(t.shape[0], int) and t.shape[0] != n):
            ctx.fail(f"Bias must have shape [{n if n is not None else '?'}], got {list(t.shape)}")


def _fused_matmul_reference(inputs, attrs):
    a, b, bias, r = (list(inputs) + [None] * 4)[:4]
    y = get_op("matmul").reference([a, b], {})
    if bias is not None:
        y = get_op("add").reference([y, bias], {})
    return _epilogue(y, r, attrs)


register_op("fused_matmul", ["A", "B", "Bias?", "R?"], ["Y"], attrs=dict(_EPILOGUE_ATTRS),
            infer=_fused_infer("matmul", 3, _check_bias), reference=_fused_matmul_reference, verify=_verify,
            doc="matmul + Bias (one value per column) + optional residual R + activation, as one kernel.")
