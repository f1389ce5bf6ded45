"""Channels-last (NHWC) variants of the 2-D layout-sensitive ops, made by convert-layout.

    %y = conv_nhwc(%x, %w, %b) {group=1, pads=[1,1,1,1], weight_layout="OHWI"} : f32[1,32,32,16]

Each variant has its base op's attributes and semantics, with X and Y in (N, H, W, C) instead of
(N, C, H, W):
- conv_nhwc: W in `weight_layout` (any order of the letters O, I, H, W; default OHWI), B is (M,);
- fused_conv_nhwc (when fuse-conv-bias-activation's fused_conv exists): likewise, R in NHWC;
- max_pool_nhwc (no Indices output), average_pool_nhwc, global_average_pool_nhwc,
  global_max_pool_nhwc;
- batch_normalization_nhwc (inference mode; the parameters are (C,)).
Their infer, verify and reference view the tensors in the base op's layout and run the base
op's own functions, so a variant computes exactly what its base op computes.
"""
from __future__ import annotations

import numpy as np

from ..registry import REGISTRY, Attr, InferContext, register_op, with_defaults
from . import nn_conv, nn_norm, nn_pool  # noqa: F401  (the base ops must be registered first)
try:
    from . import fused_conv  # noqa: F401  (made by fuse-conv-bias-activation)
except ImportError:  # pragma: no cover
    fused_conv = None
from .fused_elementwise import component_infer

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
OIHW = "OIHW"


def permute_shape(shape, perm):
    return None if shape is None else tuple(shape[p] for p in perm)


def weight_perm(layout: str) -> tuple:
    """The transpose that takes a weight stored in `layout` to OIHW."""
    return tuple(layout.index(c) for c in OIHW)


def _valid_layout(layout) -> bool:
    return isinstance(layout, str) and sorted(layout) == sorted(OIHW)


# per base op: what each input is ("x": an activation in NHWC, "w": a weight in weight_layout, None: as is)
_INPUT_KINDS = {"conv": ("x", "w", None), "fused_conv": ("x", "w", None, "x")}


def _perms(base: str, attrs: dict, n: int) -> list:
    """Per input: the transpose from the variant's layout to the base op's (None: unchanged)."""
    kinds = _INPUT_KINDS.get(base, ("x",))
    w = weight_perm(attrs.get("weight_layout", "OHWI")) if _valid_layout(attrs.get("weight_layout", "OHWI")) else None
    return [{"x": TO_NCHW, "w": w}.get(kinds[i] if i < len(kinds) else None) for i in range(n)]


def _variant(name: str, base: str, inputs: list, extra_attrs: dict | None = None, check=None, doc: str = ""):
    attrs = dict(REGISTRY[base].attrs)
    attrs.update(extra_attrs or {})
    own = set(extra_attrs or ())

    def base_attrs(a: dict) -> dict:
        return {k: v for k, v in a.items() if k not in own}

    def verify(ctx: InferContext):
        if check is not None:
            check(ctx)

    def infer(ctx: InferContext):
        verify(ctx)
        x = ctx.types[0]
        if x.shape is not None and len(x.shape) != 4:
            ctx.fail(f"X must have rank 4 (N, H, W, C), got {x}")
        perms = _perms(base, ctx.attrs, len(ctx.types))
        types = [t if t is None or p is None or t.shape is None else t.with_shape(permute_shape(t.shape, p))
                 for t, p in zip(ctx.types, perms)]
        out = component_infer(ctx, base, types, base_attrs(ctx.attrs), f"{base} in NCHW",
                              [ctx.const(i) if p is None else None for i, p in enumerate(perms)])[0]
        return [out if out.shape is None else out.with_shape(permute_shape(out.shape, TO_NHWC))]

    def reference(args, a):
        perms = _perms(base, a, len(args))
        viewed = [x if x is None or p is None else x.transpose(p) for x, p in zip(args, perms)]
        out = REGISTRY[base].reference(viewed, with_defaults(REGISTRY[base], base_attrs(a)))
        out = out[0] if isinstance(out, (list, tuple)) else out
        return np.ascontiguousarray(np.asarray(out).transpose(TO_NHWC))

    register_op(name, inputs, ["Y"], infer=infer, reference=reference, verify=verify, attrs=attrs,
                doc=doc or f"{base} on (N, H, W, C) tensors.")


def _check_conv(ctx: InferContext):
    layout = ctx.attrs.get("weight_layout", "OHWI")
    if not _valid_layout(layout):
        ctx.fail(f"weight_layout must order the letters O, I, H, W, got {layout!r}")


def _check_bn(ctx: InferContext):
    if ctx.attrs.get("training_mode", 0) != 0:
        ctx.fail(f"training_mode must be 0, got {ctx.attrs['training_mode']}")


_variant("conv_nhwc", "conv", ["X", "W", "B?"], {"weight_layout": Attr("string", "OHWI")}, _check_conv,
         "conv on (N, H, W, C) tensors; W is stored in `weight_layout` (default OHWI), B is (M,).")
if "fused_conv" in REGISTRY:
    _variant("fused_conv_nhwc", "fused_conv", ["X", "W", "B?", "R?"], {"weight_layout": Attr("string", "OHWI")},
             _check_conv, "fused_conv on (N, H, W, C) tensors: W in `weight_layout`, R (if any) in NHWC.")
_variant("max_pool_nhwc", "max_pool", ["X"], doc="max_pool on (N, H, W, C) tensors (no Indices output).")
_variant("average_pool_nhwc", "average_pool", ["X"])
_variant("global_average_pool_nhwc", "global_average_pool", ["X"])
_variant("global_max_pool_nhwc", "global_max_pool", ["X"])
_variant("batch_normalization_nhwc", "batch_normalization", ["X", "scale", "B", "input_mean", "input_var"],
         check=_check_bn, doc="batch_normalization (inference mode) on (N, H, W, C) tensors; parameters are (C,).")

# base op -> its NHWC variant, for passes and code generators
NHWC_VARIANTS = {"conv": "conv_nhwc", **({"fused_conv": "fused_conv_nhwc"} if "fused_conv" in REGISTRY else {}),
                 "max_pool": "max_pool_nhwc", "average_pool": "average_pool_nhwc",
                 "global_average_pool": "global_average_pool_nhwc", "global_max_pool": "global_max_pool_nhwc",
                 "batch_normalization": "batch_normalization_nhwc"}
