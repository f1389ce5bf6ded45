"""Constant nodes become graph constants."""
import numpy as np

from ..onnx_import import NodeContext, converter


@converter("Constant")
def convert_constant(ctx: NodeContext) -> None:
    if len(ctx.attrs) != 1:
        ctx.fail(f"needs exactly one value attribute, got {sorted(ctx.attrs)}")
    (kind, value), = ctx.attrs.items()
    if kind == "value":
        data = value
    elif kind == "value_float":
        data = np.array(value, np.float32)
    elif kind == "value_floats":
        data = np.array(value, np.float32)
    elif kind == "value_int":
        data = np.array(value, np.int64)
    elif kind == "value_ints":
        data = np.array(value, np.int64)
    else:
        ctx.unsupported(f"attribute '{kind}' is not supported (string and sparse constants)")
    ctx.bind(ctx.output_names[0], ctx.constant(data, hint=ctx.output_names[0]))
