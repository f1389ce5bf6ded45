"""Converter for GridSample, whose mode names changed in opset 20.

GridSample-16 spells the modes bilinear / nearest / bicubic (4-D inputs only); opset 20 renamed
them linear / nearest / cubic (and allowed N-D inputs), which is the form the IR op takes.
"""
from ...ir.registry import all_ops, with_defaults
from ..onnx_import import NodeContext, converter

_OLD_MODES = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}


@converter("GridSample")
def convert_grid_sample(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    if ctx.opset < 20:
        mode = attrs.get("mode", "bilinear")
        if mode not in _OLD_MODES:
            ctx.unsupported(f"mode '{mode}' is not one of {', '.join(_OLD_MODES)} (GridSample-16)")
        attrs["mode"] = _OLD_MODES[mode]
    opdef = all_ops()["grid_sample"]
    for k in attrs:
        if k not in opdef.attrs:
            ctx.unsupported(f"attribute '{k}' is not supported")
    ctx.emit_node_outputs("grid_sample", ctx.inputs, with_defaults(opdef, attrs))
