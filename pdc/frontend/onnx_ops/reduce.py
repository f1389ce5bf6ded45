"""Converters for reductions whose ONNX form changed across opsets.

- Reduce*: before opset 13 (ReduceSum) or 18 (the others) `axes` is an attribute; it becomes a
  constant int64 input, which is what the IR op takes.
- TopK: before opset 10 `k` is an attribute; it becomes a constant [k] input.
"""
import numpy as np

from ...ir.registry import all_ops, with_defaults
from ...ir.ops.reduce import REDUCE_OPS
from ..onnx_import import NodeContext, converter

# The opset from which `axes` is an input rather than an attribute.
_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _ir_attrs(ctx: NodeContext, ir_op: str, attrs: dict) -> dict:
    opdef = all_ops()[ir_op]
    for k in attrs:
        if k not in opdef.attrs:
            ctx.unsupported(f"attribute '{k}' is not supported")
    return with_defaults(opdef, attrs)


@converter(*[onnx for _, onnx, _, _ in REDUCE_OPS])
def convert_reduce(ctx: NodeContext) -> None:
    ir_op = next(name for name, onnx, _, _ in REDUCE_OPS if onnx == ctx.op_type)
    attrs = dict(ctx.attrs)
    inputs = list(ctx.inputs)
    if ctx.opset < _AXES_INPUT_SINCE.get(ctx.op_type, 18):
        if len(inputs) > 1:
            ctx.fail(f"takes one input in opset {ctx.opset} (axes is an attribute there)")
        if "noop_with_empty_axes" in attrs:
            ctx.unsupported(f"attribute 'noop_with_empty_axes' does not exist in opset {ctx.opset}")
        axes = attrs.pop("axes", None)
        if axes is not None:
            inputs.append(ctx.constant(np.array(axes, np.int64), hint="axes"))
    ctx.emit_node_outputs(ir_op, inputs, _ir_attrs(ctx, ir_op, attrs))


@converter("TopK")
def convert_topk(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    inputs = list(ctx.inputs)
    if ctx.opset < 10:
        if "k" not in attrs:
            ctx.fail("attribute 'k' is required in opset < 10")
        inputs.append(ctx.constant(np.array([attrs.pop("k")], np.int64), hint="k"))
    ctx.emit_node_outputs("top_k", inputs, _ir_attrs(ctx, "top_k", attrs))
