"""Converter for DFT, whose `axis` became an input in opset 20.

DFT-17 carries `axis` as an attribute (default 1); it becomes the constant int64 axis input the
IR op takes (opset-20 form, default -2).
"""
import numpy as np

from ...ir.registry import all_ops, with_defaults
from ..onnx_import import NodeContext, converter


@converter("DFT")
def convert_dft(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    inputs = list(ctx.inputs)
    if ctx.opset < 20:
        if len(inputs) > 2:
            ctx.fail(f"takes at most 2 inputs in opset {ctx.opset} (axis is an attribute there)")
        axis = attrs.pop("axis", 1)
        inputs += [None] * (2 - len(inputs))
        inputs.append(ctx.constant(np.array(axis, np.int64), hint="axis"))
    opdef = all_ops()["dft"]
    for k in attrs:
        if k not in opdef.attrs:
            ctx.unsupported(f"attribute '{k}' is not supported")
    ctx.emit_node_outputs("dft", inputs, with_defaults(opdef, attrs))
