"""Converters for shape/data-movement ops whose ONNX form changed across opsets.

The IR ops take shape-like operands as inputs (the latest opset's form); older attribute forms
become constant inputs here:
- Split: `split` attribute before opset 13; before opset 18 no num_outputs, the outputs count.
- Slice: starts/ends/axes attributes before opset 10.
- Squeeze/Unsqueeze: `axes` attribute before opset 13.
- Pad: `pads` and `value` attributes before opset 11.
- Resize: opset 10 (X, scales) samples at x / scale, nearest rounding down (what ONNX's version
  converter writes for 10 -> 11); from opset 11 empty roi/scales/sizes tensors mean "absent".
- Upsample (opsets 7-9) is Resize-10; Scatter (opsets 9-10) is ScatterElements.
"""
import numpy as np

from ...ir.registry import all_ops, with_defaults
from ..onnx_import import NodeContext, converter


def _emit(ctx: NodeContext, ir_op: str, inputs: list, attrs: dict) -> None:
    opdef = all_ops()[ir_op]
    out = {}
    for k, v in attrs.items():
        spec = opdef.attrs.get(k)
        if spec is None:
            ctx.unsupported(f"attribute '{k}' is not supported")
        out[k] = float(v) if spec.kind == "float" and isinstance(v, int) else v
    while inputs and inputs[-1] is None:
        inputs = inputs[:-1]
    ctx.emit_node_outputs(ir_op, inputs, with_defaults(opdef, out))


def _ints(ctx: NodeContext, values, hint: str):
    return ctx.constant(np.array(values, np.int64).reshape(-1), hint=hint)


def _attr_to_input(ctx: NodeContext, attrs: dict, name: str, since: int, required: bool = False):
    """Pops attribute `name` (an ints attribute before opset `since`) as a constant int64 input."""
    if ctx.opset >= since:
        if name in attrs:
            ctx.unsupported(f"attribute '{name}' does not exist in opset {ctx.opset} (it is an input)")
        return None
    if name not in attrs:
        if required:
            ctx.fail(f"attribute '{name}' is required in opset {ctx.opset}")
        return None
    return _ints(ctx, attrs.pop(name), name)


@converter("Split")
def convert_split(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    inputs = list(ctx.inputs[:2])
    split = _attr_to_input(ctx, attrs, "split", 13)
    if split is not None:
        inputs = [inputs[0], split]
    if len(inputs) < 2 or inputs[1] is None:
        n = len(ctx.output_names)
        if attrs.setdefault("num_outputs", n) != n:
            ctx.fail(f"num_outputs={attrs['num_outputs']} but the node has {n} outputs")
    _emit(ctx, "split", inputs, attrs)


@converter("Slice")
def convert_slice(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    inputs = list(ctx.inputs)
    if ctx.opset < 10:
        starts = _attr_to_input(ctx, attrs, "starts", 10, required=True)
        ends = _attr_to_input(ctx, attrs, "ends", 10, required=True)
        axes = _attr_to_input(ctx, attrs, "axes", 10)
        inputs = [inputs[0], starts, ends, axes]
    _emit(ctx, "slice", inputs, attrs)


@converter("Squeeze", "Unsqueeze")
def convert_squeeze(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    inputs = list(ctx.inputs)
    axes = _attr_to_input(ctx, attrs, "axes", 13, required=ctx.op_type == "Unsqueeze")
    if ctx.opset < 13:
        inputs = [inputs[0], axes]
    _emit(ctx, ctx.op_type.lower(), inputs, attrs)


@converter("Pad")
def convert_pad(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    inputs = list(ctx.inputs)
    if ctx.opset < 11:
        pads = _attr_to_input(ctx, attrs, "pads", 11, required=True)
        value = attrs.pop("value", 0.0)
        x = inputs[0]
        inputs = [x, pads, ctx.constant(np.array(value).astype(x.type.dtype.np), x.type.dtype, hint="pad_value")]
    _emit(ctx, "pad", inputs, attrs)


def _drop_empty(ctx: NodeContext, i: int):
    v = ctx.input(i)
    if v is not None and v.data is not None and v.data.size == 0:
        return None
    return v


def _resize_10(ctx: NodeContext, scales, mode: str) -> None:
    modes = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "trilinear": "linear"}
    if mode not in modes:
        ctx.unsupported(f"mode '{mode}' is not supported (expected nearest or linear)")
    _emit(ctx, "resize", [ctx.input(0), None, scales, None],
          {"mode": modes[mode], "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})


@converter("Resize")
def convert_resize(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    if ctx.opset < 11:
        extra = set(attrs) - {"mode"}
        if extra:
            ctx.unsupported(f"attribute '{sorted(extra)[0]}' does not exist in opset {ctx.opset}")
        _resize_10(ctx, ctx.input(1), attrs.get("mode", "nearest"))
        return
    _emit(ctx, "resize", [ctx.input(0), _drop_empty(ctx, 1), _drop_empty(ctx, 2), _drop_empty(ctx, 3)], attrs)


@converter("Upsample")
def convert_upsample(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    if ctx.opset < 9:
        if "scales" not in attrs:
            ctx.fail(f"attribute 'scales' is required in opset {ctx.opset}")
        scales = ctx.constant(np.array(attrs.pop("scales"), np.float32), hint="scales")
    else:
        scales = ctx.input(1)
    extra = set(attrs) - {"mode"}
    if extra:
        ctx.unsupported(f"attribute '{sorted(extra)[0]}' is not supported")
    _resize_10(ctx, scales, attrs.get("mode", "nearest"))


@converter("Scatter")
def convert_scatter(ctx: NodeContext) -> None:
    _emit(ctx, "scatter_elements", list(ctx.inputs), dict(ctx.attrs))
