"""Paddle's quantized inference models: quantize_linear / dequantize_linear -> pdc's QDQ ops.

What Paddle writes (paddle.quantization PTQ, `convert`, then paddle.jit.save; Paddle 3.3.1, both
formats; QAT's `convert` builds the same layers, but in 3.3.1 it fails on FakeQuanterWithAbsMaxObserver,
whose zero_points() is None): a `quantize_linear` + `dequantize_linear` pair on the input of every
quantized layer (conv2d, matmul of Linear), and a lone `dequantize_linear` on each quantized weight. Operands
x, scale, zero_point, in_accum, in_state (legacy slots X, Scale, ZeroPoint, InAccum, InState);
results y, out_state, out_accum, out_scale; attributes quant_axis (-1: per tensor, else the axis
of a 1-D scale), bit_length, qmin, qmax, round_type, is_test, only_observer.

Numerics of Paddle's CPU kernels (phi quantize_linear / dequantize_linear), checked against Paddle
Inference on ties, saturation and per-axis scales (tests/test_paddle_quant.py):
- `scale` is the absolute-max range, not the step: with b = qmax (2^(bit_length-1) - 1),
  quantize: q = clamp(round(x * b / scale), -b - 1, b), as a float tensor holding the integers;
  round_type 0 rounds half to even; round_type 1 clips x to [-scale, scale] first and rounds half
  away from zero (so q is in [-b, b]);
  dequantize: y = q * scale / b.
- the zero point is never read (Paddle's symmetric scheme; it is stored, as 0);
- a quantized weight is stored as float32 parameters holding its integer codes (`convert` has run
  the quantizer on it), read by a `dequantize_linear`.

pdc's ONNX-style ops take the step, so each maps with y_scale = scale / b and a zero point 0 of the
integer type (int8 for bit_length <= 8, int16 up to 16): Paddle's quantize_linear becomes pdc
quantize_linear (int8) followed by a cast to float32 (Paddle's result type: the codes as floats),
and a dequantize_linear of such a value reads the integers directly, so the graph holds the
DequantizeLinear(QuantizeLinear(x)) pairs fold-qdq looks for. A weight's float codes become an int8
constant behind a pdc dequantize_linear (kept as a node at import, see Lowering.fold). Anything
else dequantize_linear reads (a float computed by other ops) is multiplied by the step in float.
round_type 1 gets a clip to [-scale, scale] before the quantize_linear (exact saturation); its
rounding of exact ties (x * b / scale = k + 1/2) is half to even in pdc, so such a value can differ
by one step (Paddle's PTQ / QAT write round_type 0). pdc divides by the step where Paddle multiplies
by b * (1 / scale): values within an ulp of a rounding tie may round the other way (one step).

Paddle keeps a layer's bias as a separate add (conv2d + add of a [1, C, 1, 1] constant; matmul +
add of a [N] constant). fold-qdq wants the bias inside the op it folds, so after lowering
`fuse_dequantized_bias` moves such a constant into conv's bias input, and turns matmul + bias into
gemm when A is 2-D, for the convs and matmuls whose inputs are both dequantized (others are left
as they are, so unquantized models import as before).
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from ...ir.graph import Graph, Node, Value
from .lower import OpContext, converter


def _params(cx: OpContext):
    """(b = qmax, integer dtype, per-axis axis or None, scale data) after the checks both ops share."""
    if cx.attr("only_observer", False):
        return None
    if not cx.attr("is_test", True):
        cx.unsupported("quantize_linear / dequantize_linear in training mode (is_test=false) is not supported")
    bits = int(cx.attr("bit_length", 8))
    if not 2 <= bits <= 16:
        cx.unsupported(f"bit_length {bits} is not supported (2 to 16)")
    b = int(cx.attr("qmax", (1 << (bits - 1)) - 1))
    if not 0 < b < (1 << 15):
        cx.unsupported(f"qmax {b} is not supported")
    if int(cx.attr("round_type", 0)) not in (0, 1):
        cx.unsupported(f"round_type {cx.attr('round_type')} is not supported (0: half to even, 1: half away)")
    scale = cx.const(1)
    if scale is None:
        cx.unsupported("the scale must be a constant (a parameter of the model)")
    scale = np.asarray(scale, np.float64).reshape(-1)
    axis = int(cx.attr("quant_axis", -1))
    if axis < 0:
        if scale.size != 1:
            cx.fail(f"per-tensor quantization (quant_axis {axis}) with {scale.size} scale values")
        axis = None
    if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        cx.fail(f"the scale must be positive and finite, got {scale[:4].tolist()}")
    dt = dtypes.int8 if bits <= 8 else dtypes.int16
    return b, dt, axis, scale


def _step_and_zero(cx: OpContext, b: int, dt, axis, scale):
    step = cx.constant((scale / b).astype(np.float32).reshape(() if axis is None else (-1,)))
    zero = cx.constant(np.zeros(() if axis is None else scale.shape, dt.np), dt)
    return step, zero


def _axis_attr(cx: OpContext, x: Value, axis):
    if axis is None:
        return {}
    rank = cx.rank(x)
    if not 0 <= axis < rank:
        cx.fail(f"quant_axis {axis} is out of range for rank {rank}")
    return {"axis": axis}


@converter("quantize_linear")
def quantize_linear(cx: OpContext):
    x = cx.value(0)
    p = _params(cx)
    if p is None:  # only_observer: the kernel copies x
        return [x, None, None, None]
    b, dt, axis, scale = p
    if x.type.dtype is not dtypes.float32:
        cx.unsupported(f"quantizing {x.type.dtype} is not supported (float32)")
    if int(cx.attr("round_type", 0)) == 1:  # clip to [-scale, scale] first: codes within [-b, b]
        if axis is not None:
            cx.unsupported("round_type 1 with a per-axis scale is not supported")
        x = cx.emit("clip", [x, cx.constant(np.float32(-scale[0])), cx.constant(np.float32(scale[0]))])
    elif b + 1 != -int(np.iinfo(dt.np).min) or b != int(np.iinfo(dt.np).max):
        cx.unsupported(f"qmax {b} with bit_length {cx.attr('bit_length', 8)}: the codes do not fill {dt}")
    step, zero = _step_and_zero(cx, b, dt, axis, scale)
    q = cx.emit("quantize_linear", [x, step, zero], _axis_attr(cx, x, axis))
    codes = cx.emit("cast", [q], {"to": dtypes.float32})  # Paddle's result: the integers as floats
    cx.lowering.quant_codes[codes.name] = q
    return [codes, None, None, None]


@converter("dequantize_linear")
def dequantize_linear(cx: OpContext):
    x = cx.value(0)
    p = _params(cx)
    if p is None:
        return [x, None, None, None]
    b, dt, axis, scale = p
    attrs = _axis_attr(cx, x, axis)
    q = cx.lowering.quant_codes.get(x.name)
    if q is None and x.data is not None and x.type.dtype.is_float:
        codes = x.data.astype(np.float64)
        lo, hi = -b - 1, b
        if np.all(codes == np.rint(codes)) and codes.min(initial=0) >= lo and codes.max(initial=0) <= hi:
            q = cx.constant(codes.astype(dt.np), dt)  # a weight stored as its integer codes
    if q is not None and q.type.dtype is dt:
        step, zero = _step_and_zero(cx, b, dt, axis, scale)
        return [cx.emit("dequantize_linear", [q, step, zero], attrs), None, None, None]
    # a float value that is not a quantize_linear's codes: y = x * scale / b, in float
    if not x.type.dtype.is_float:
        cx.unsupported(f"dequantizing {x.type.dtype} is not supported")
    step = (scale / b).astype(x.type.dtype.np)
    if axis is not None:
        shape = [1] * cx.rank(x)
        shape[axis] = step.size
        step = step.reshape(shape)
    else:
        step = step.reshape(())
    return [cx.emit("mul", [x, cx.constant(step)]), None, None, None]


# ---------------------------------------------------------------------------------------------
# after lowering
def finish(graph: Graph) -> None:
    """Drops the unused casts of quantize_linear codes and moves bias adds into dequantized
    conv / matmul nodes (see the module docstring). No-op for a graph without quantize ops."""
    if not any(n.op in ("quantize_linear", "dequantize_linear") for n in graph.nodes):
        return
    _drop_unused_code_casts(graph)
    fuse_dequantized_bias(graph)


def _drop_unused_code_casts(graph: Graph) -> None:
    users = graph.users()
    producers = graph.producers()

    def unused_cast(n: Node) -> bool:
        if n.op != "cast" or users.get(n.outputs[0]) or n.outputs[0] in graph.outputs:
            return False
        p = producers.get(n.inputs[0])
        return p is not None and p.op == "quantize_linear"

    graph.nodes = [n for n in graph.nodes if not unused_cast(n)]


def _dequantized(producers: dict, v: Value) -> bool:
    p = producers.get(v)
    return p is not None and p.op == "dequantize_linear"


def _sole_user(graph: Graph, users: dict, v: Value):
    readers = users.get(v, [])
    if len(readers) != 1 or v in graph.outputs or sum(1 for x in readers[0].inputs if x is v) != 1:
        return None
    return readers[0]


def _bias_vector(add: Node, out: Value, axis: int):
    """The add's other operand as a 1-D float32 vector along `axis` of `out`, when it is a constant
    that only varies along that axis and does not grow the output's shape."""
    other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
    if other is None or other.data is None or other.type.dtype is not dtypes.float32:
        return None
    shape = out.type.shape
    if shape is None or not isinstance(shape[axis], int) or add.outputs[0].type.shape != shape:
        return None
    c = other.data
    if c.ndim > len(shape):
        return None
    lead = len(shape) - c.ndim
    for i, d in enumerate(c.shape):
        if d != 1 and (i + lead != axis % len(shape) or d != shape[axis]):
            return None
    n = shape[axis]
    return np.broadcast_to(c.reshape(-1), (n,)).astype(np.float32) if c.size in (1, n) else None


def fuse_dequantized_bias(graph: Graph) -> None:
    """conv(DQ, DQ) + bias -> conv(DQ, DQ, bias); matmul(DQ, DQ) + bias -> gemm(DQ, DQ, bias) (2-D)."""
    producers, users = graph.producers(), graph.users()
    drop = set()
    for node in graph.nodes:
        if node.op not in ("conv", "matmul") or len(node.outputs) != 1:
            continue
        if not (_dequantized(producers, node.inputs[0]) and _dequantized(producers, node.inputs[1])):
            continue
        if node.op == "conv" and len(node.inputs) > 2 and node.inputs[2] is not None:
            continue
        out = node.outputs[0]
        add = _sole_user(graph, users, out)
        if add is None or add.op != "add" or out.type.shape is None:
            continue
        if node.op == "matmul" and (len(out.type.shape) != 2 or node.inputs[0].type.rank != 2
                                    or node.inputs[1].type.rank != 2):
            continue
        bias = _bias_vector(add, out, 1 if node.op == "conv" else -1)
        if bias is None:
            continue
        b = graph.add_constant(graph.fresh_name(f"{node.name or 'dense'}.bias_"), bias, dtypes.float32)
        if node.op == "conv":
            node.inputs = list(node.inputs[:2]) + [b]
        else:
            node.op = "gemm"
            node.inputs = list(node.inputs[:2]) + [b]
            node.attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
        node.outputs = [add.outputs[0]]  # the add's output (and name) is now the fused node's
        drop.add(id(add))
    if drop:
        graph.nodes = [n for n in graph.nodes if id(n) not in drop]
