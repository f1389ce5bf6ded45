"""qsoftmax (pdc/ir/ops/qint.py): ONNX Runtime's QLinearSoftmax rule in portable C, bit for bit the
reference's.

Per row along the axis (rows: the outer x inner index pairs; the axis walked at stride `inner`):
the row's largest code m; e = table[255 + x - m] from the 256-entry float32 table (computed at
compile time by the reference's own function); the row's sum of e in order, in float32 (no
-ffast-math: gcc keeps the order); each output min(rint((e * r) / sum) + y_zero, 255), r the
float32 floor(1 / y_scale), stored as the type's cast does (an int8 code past 127 wraps, as
ONNX Runtime's does). The rounding is quantize_linear's pdc_quantize_round over [-128, 255]: its
lower end never binds ((e * r) / sum >= 0, y_zero >= -128), its upper one is the min.
"""
from __future__ import annotations

import math

from ...ir.ops.qint import softmax_reciprocal, softmax_table
from ..context import KernelContext
from ..ctypes_c import float_literal
from . import kernel
from .quant import QUANTIZE_ROUND, add_weight

TASK = """static void @NAME@(const @T@ *x, @T@ *y, const float *table, int64_t outer, int64_t D, int64_t inner,
                     float r, int32_t yz) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const @T@ *xr = x + o * D * inner + i;
            @T@ *yr = y + o * D * inner + i;
            int32_t m = xr[0];
            for (int64_t d = 1; d < D; d++) m = xr[d * inner] > m ? xr[d * inner] : m;
            const float *t = table + 255 - m;
            float sum = 0.0f;
            for (int64_t d = 0; d < D; d++) sum += t[xr[d * inner]];
            for (int64_t d = 0; d < D; d++)
                yr[d * inner] = (@T@)(uint8_t)pdc_quantize_round((t[xr[d * inner]] * r) / sum, yz, -128, 255);
        }
}
"""


@kernel("qsoftmax")
def qsoftmax(ctx: KernelContext) -> str:
    shape = list(ctx.inputs[0].shape)
    dt = ctx.inputs[0].dtype
    if math.prod(shape) == 0:
        return "    (void)in0; (void)out0;"
    axis = ctx.attrs.get("axis", -1) % len(shape)
    D, outer, inner = shape[axis], math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    table = add_weight(ctx, softmax_table(ctx.attrs["x_scale"], D), "float")
    name = f"pdc_qsoftmax_{dt.short}"
    ctx.helper("pdc_quantize_round", QUANTIZE_ROUND)
    ctx.helper(name, TASK.replace("@NAME@", name).replace("@T@", ctx.ctype(dt)))
    r = float_literal(float(softmax_reciprocal(ctx.attrs["y_scale"])))
    return f"    {name}(in0, out0, {table}, {outer}, {D}, {inner}, {r}, {int(ctx.attrs.get('y_zero', 0))});"
