"""Converters for the quantization ops whose attributes need translating.

QuantizeLinear / DequantizeLinear: `output_dtype` and `precision` use 0 for "not given"; element
types pdc has no dtype for (float8, int4, int2, float4) are rejected with a message naming the op.
"""
from onnx import TensorProto

from ...ir import dtypes
from ...ir.errors import UnsupportedError
from ...ir.registry import all_ops, with_defaults
from ..onnx_import import NodeContext, converter


def _dtype_attr(ctx: NodeContext, name: str, code: int):
    try:
        return dtypes.from_onnx(code)
    except UnsupportedError:
        type_name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
        ctx.unsupported(f"{name}={type_name} is not supported (int8, uint8, int16, uint16, the 4- and 2-bit "
                        f"integers, float8 and float4e2m1)")


@converter("QuantizeLinear", "DequantizeLinear")
def convert_quantize(ctx: NodeContext) -> None:
    ir_op = "quantize_linear" if ctx.op_type == "QuantizeLinear" else "dequantize_linear"
    opdef = all_ops()[ir_op]
    attrs = {}
    for k, v in ctx.attrs.items():
        if k not in opdef.attrs:
            ctx.unsupported(f"attribute '{k}' is not supported")
        if k in ("output_dtype", "precision"):
            if v == 0:
                continue  # 0 (UNDEFINED) means "not given"
            v = _dtype_attr(ctx, k, v)
        attrs[k] = v
    ctx.emit_node_outputs(ir_op, ctx.inputs, with_defaults(opdef, attrs))
