"""Converters for NN ops whose ONNX form changed across opsets (the rest map one-to-one).

- Softmax / LogSoftmax / Hardmax before opset 13 coerce the input to 2-D at `axis` (default 1)
  and normalize each row. With axis the last dim this equals the opset-13 op; otherwise it
  becomes flatten -> op(axis=1) -> reshape back.
- BatchNormalization before opset 14 is in training mode when it has more than one output
  (rejected); `spatial=0` with per-activation statistics is rejected; `momentum` is kept
  (inference ignores it).
- Dropout before opset 12 carries `ratio` as an attribute (irrelevant in inference); before
  opset 10 its mask has the data's type, so it becomes a constant of ones.
- GroupNormalization before opset 21 has one scale / bias value per group; constant ones are
  repeated per channel to the opset-21 form.
- RoiAlign before opset 16 has no coordinate_transformation_mode and behaves as
  output_half_pixel.
"""
import numpy as np

from ...ir.registry import all_ops, with_defaults
from ..onnx_import import NodeContext, converter, default_convert, ir_attrs

_SOFTMAX_OPS = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Hardmax": "hardmax"}


def _emit_op(ctx: NodeContext, op: str, inputs: list, attrs: dict, outputs=None):
    return ctx.emit(op, inputs, with_defaults(all_ops()[op], attrs), outputs)


@converter(*_SOFTMAX_OPS)
def convert_softmax(ctx: NodeContext) -> None:
    ir_op = _SOFTMAX_OPS[ctx.op_type]
    if ctx.opset >= 13:
        default_convert(ctx)
        return
    attrs = dict(ctx.attrs)
    axis = attrs.pop("axis", 1)
    if attrs:
        ctx.unsupported(f"attribute '{next(iter(attrs))}' is not supported")
    x = ctx.inputs[0]
    rank = x.type.rank
    if rank is not None:
        if not -rank <= axis < rank:
            ctx.fail(f"axis {axis} is out of range for rank {rank}")
        axis = axis + rank if axis < 0 else axis
        if axis == rank - 1 or all(d == 1 for d in x.type.shape[axis + 1:]):
            # one row per leading index either way: the 2-D coercion changes nothing
            ctx.emit_node_outputs(ir_op, [x], {"axis": axis})
            return
    missing = [op for op in ("reshape",) + (() if x.type.is_static else ("shape",)) if op not in all_ops()]
    if missing:
        ctx.unsupported(f"axis={axis} before opset 13 needs the '{missing[0]}' op, which is not available")
    (flat,) = _emit_op(ctx, "flatten", [x], {"axis": axis})
    (y,) = _emit_op(ctx, ir_op, [flat], {"axis": 1})
    if x.type.is_static:
        shape = ctx.constant(np.array(x.type.shape, np.int64), hint="shape")
    else:
        (shape,) = _emit_op(ctx, "shape", [x], {})
    _emit_op(ctx, "reshape", [y, shape], {}, ctx.output_names)


@converter("BatchNormalization")
def convert_batch_norm(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    if ctx.opset < 14:
        if sum(1 for o in ctx.output_names[1:] if o):
            ctx.unsupported(f"more than one output means training mode in opset {ctx.opset}; "
                            "pdc compiles inference graphs")
        spatial = attrs.pop("spatial", 1)
        rank = ctx.inputs[0].type.rank
        if spatial == 0 and rank != 2:
            ctx.unsupported("spatial=0 (per-activation statistics) is not supported")
        attrs.pop("is_test", None)
        attrs.pop("consumed_inputs", None)
    outputs = [o for o in ctx.output_names]
    while len(outputs) > 1 and not outputs[-1]:
        outputs.pop()
    ctx.emit("batch_normalization", ctx.inputs, ir_attrs(ctx, "batch_normalization", attrs), outputs)


@converter("Dropout")
def convert_dropout(ctx: NodeContext) -> None:
    if ctx.opset >= 12:
        default_convert(ctx)
        return
    attrs = dict(ctx.attrs)
    attrs.pop("ratio", None)  # inference: the ratio does not matter
    if attrs.pop("is_test", 1) == 0:
        ctx.unsupported("is_test=0 (training mode) is not supported")
    if attrs:
        ctx.unsupported(f"attribute '{next(iter(attrs))}' is not supported")
    x = ctx.inputs[0]
    out_name = ctx.output_names[0]
    mask_name = ctx.output_names[1] if len(ctx.output_names) > 1 else ""
    if ctx.opset >= 10 or not mask_name:
        outputs = [out_name, mask_name] if mask_name else [out_name]
        ctx.emit("dropout", [x], {}, outputs)
        return
    # opset 7-9: the mask has the data's type
    if not x.type.is_static:
        ctx.unsupported("the mask output of Dropout before opset 10 needs a static input shape")
    ctx.emit("dropout", [x], {}, [out_name])
    ctx.bind(mask_name, ctx.constant(np.ones(x.type.shape, x.type.dtype.np), x.type.dtype, hint=mask_name))


@converter("GroupNormalization")
def convert_group_norm(ctx: NodeContext) -> None:
    if ctx.opset >= 21:
        default_convert(ctx)
        return
    attrs = ir_attrs(ctx, "group_normalization", dict(ctx.attrs))
    groups = attrs.get("num_groups")
    if groups is None:
        ctx.fail("attribute 'num_groups' is required")
    x, scale, bias = ctx.inputs[:3]
    c = x.type.shape[1] if x.type.shape is not None and len(x.type.shape) > 1 else None
    if not isinstance(c, int):
        ctx.unsupported(f"opset {ctx.opset} GroupNormalization needs a static channel count")
    if c % groups:
        ctx.fail(f"X has {c} channels, not divisible by num_groups={groups}")
    per_channel = []
    for v, what in ((scale, "scale"), (bias, "bias")):
        data = v.data
        if data is None:
            ctx.unsupported(f"opset {ctx.opset} GroupNormalization needs a constant {what} "
                            "(one value per group, repeated per channel)")
        if data.reshape(-1).size != groups:
            ctx.fail(f"{what} has {data.size} values, expected num_groups={groups}")
        per_channel.append(ctx.constant(np.repeat(data.reshape(-1), c // groups), v.type.dtype, hint=what))
    ctx.emit_node_outputs("group_normalization", [x] + per_channel, attrs)


@converter("RoiAlign")
def convert_roi_align(ctx: NodeContext) -> None:
    attrs = dict(ctx.attrs)
    if ctx.opset < 16:
        if "coordinate_transformation_mode" in attrs:
            ctx.unsupported(f"attribute 'coordinate_transformation_mode' does not exist in opset {ctx.opset}")
        attrs["coordinate_transformation_mode"] = "output_half_pixel"  # RoiAlign-10's only behaviour
    ctx.emit_node_outputs("roi_align", ctx.inputs, ir_attrs(ctx, "roi_align", attrs))
