"""Converters for elementwise ONNX ops whose form changed across opsets or needs a clear error.

- Clip before opset 11 takes `min`/`max` as float attributes (defaults -/+FLT_MAX); they become
  constant inputs of the input's dtype, which is the opset-11+ form the IR op follows.
- Cast names the node and the type when `to` is a type pdc has no counterpart for (string,
  float8, 4-bit and 2-bit types).
Every other elementwise op maps one-to-one through the default converter.
"""
import numpy as np
from onnx import TensorProto

from ...ir import dtypes
from ...ir.errors import UnsupportedError
from ...ir.registry import get_op, with_defaults
from ..onnx_import import NodeContext, converter

_FLT_MAX = float(np.finfo(np.float32).max)


@converter("Clip")
def convert_clip(ctx: NodeContext) -> None:
    if ctx.opset >= 11:
        unknown = sorted(set(ctx.attrs))
        if unknown:
            ctx.unsupported(f"attribute '{unknown[0]}' is not supported (Clip-11+ takes min/max as inputs)")
        ctx.emit_node_outputs("clip", ctx.inputs, {})
        return
    unknown = sorted(set(ctx.attrs) - {"min", "max"})
    if unknown:
        ctx.unsupported(f"attribute '{unknown[0]}' is not supported")
    x = ctx.input(0)
    dt = x.type.dtype
    if not dt.is_float:
        ctx.fail(f"Clip-{ctx.opset} takes float inputs, got {dt}")
    with np.errstate(over="ignore"):  # FLT_MAX in float16 is inf, which clips nothing, as intended
        lo = ctx.constant(np.array(ctx.attrs.get("min", -_FLT_MAX), dtype=np.float64).astype(dt.np), dt, "clip_min")
        hi = ctx.constant(np.array(ctx.attrs.get("max", _FLT_MAX), dtype=np.float64).astype(dt.np), dt, "clip_max")
    ctx.emit_node_outputs("clip", [x, lo, hi], {})


def _onnx_type_name(code) -> str:
    return TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)


@converter("Cast")
def convert_cast(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    to = attrs.get("to")
    if to is None:
        ctx.fail("attribute 'to' is required")
    if isinstance(to, str):  # Cast-1 spelled the type as a string; not reachable from opset 7, but clear
        ctx.unsupported(f"attribute 'to' as a string ('{to}') is not supported")
    try:
        attrs["to"] = dtypes.from_onnx(int(to))
    except UnsupportedError:
        supported = ", ".join(_onnx_type_name(d.onnx) for d in dtypes.ALL + dtypes.NARROW)
        ctx.unsupported(f"casting to {_onnx_type_name(to)} is not supported (pdc supports {supported})")
    opdef = get_op("cast")
    for k in attrs:
        if k not in opdef.attrs:
            ctx.unsupported(f"attribute '{k}' is not supported")
    ctx.emit_node_outputs("cast", ctx.inputs, with_defaults(opdef, attrs))
