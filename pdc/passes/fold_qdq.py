"""fold-qdq: turns ONNX QDQ-form quantization into pdc's integer ops.

A QDQ model (ONNX Runtime's quantize_static, QAT exports) computes in float between
DequantizeLinear and QuantizeLinear nodes; every QuantizeLinear marks where the result is
rounded to integers. For each QuantizeLinear Q with constant per-tensor int8/uint8 parameters
whose float input is computed from dequantized integers, this pass puts the integer op that
gives Q's output directly, at the same rounding point:

    Q(conv(DQ(x), DQ(w), DQ(b)?))        -> qconv(x, w, b)
    Q(matmul(DQ(a), DQ(w)))              -> qmatmul(a, w)          (constant 2-D w)
    Q(gemm(DQ(a), DQ(w), DQ(c)?))        -> qmatmul(a, w', c)      (alpha = beta = 1, A not transposed)
    Q(add(DQ(a), DQ(b)))                 -> qadd(a, b)
    Q(softmax(DQ(x)))                    -> qsoftmax(x)            (ONNX Runtime's QLinearSoftmax rule)
    Q(relu / clip(...))                  -> the integer op's clamp (or a requantize of DQ(x))
    Q(max_pool / reshape / ...(DQ(x)))   -> the op on the integers (+ requantize if Q's scale differs)

Weights must be int8 with zero point 0 (per tensor, or per output channel); a bias must be int32
with zero point 0 and scale x_scale * w_scale (or float, then rounded onto that scale). The
integer ops requantize as ONNX's QLinear ops and ONNX Runtime do (pdc/ir/ops/qint.py: the
accumulator times the float32 scale s_x * s_w / s_y, rounded half to even). The float nodes left without users are removed. A
Quantize/DequantizeLinear with a zero scale is an error.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..ir import dtypes
from ..ir.errors import PdcError
from ..ir.graph import Graph, Node, Value
from ..ir.ops.qint import ACTIVATION_TYPES, activation_bounds, clamp_codes, requant_scale
from ..ir.types import Quant
from .eliminate_dead_code import EliminateDeadCode
from .manager import Pass, register_pass

PASS_THROUGH = ("max_pool", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "identity")
ACTIVATIONS = ("relu", "clip")


class _QParams:
    """A Q / DQ node's constant parameters: scales and zero points (one, or per `axis`)."""

    def __init__(self, node: Node, int_value: Value):
        scale, zero = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
        self.ok = scale.is_const and (zero is None or zero.is_const) and scale.type.dtype is dtypes.float32
        if not self.ok:
            return
        s = scale.data.astype(np.float64).reshape(-1)
        if not np.all(s > 0) or not np.all(np.isfinite(s)):
            raise PdcError(f"{node.describe()}: the scale must be positive and finite, got "
                           f"{s[:4].tolist()}{'...' if s.size > 4 else ''}")
        self.dtype = int_value.type.dtype
        z = np.zeros(s.size, np.int64) if zero is None else zero.data.astype(np.int64).reshape(-1)
        self.scales, self.zeros = s, np.broadcast_to(z, s.shape)
        self.axis = None if s.size == 1 else node.attrs.get("axis", 1)
        self.ok = node.attrs.get("block_size", 0) == 0 and z.size in (1, s.size)

    @property
    def per_tensor(self) -> bool:
        return self.ok and self.axis is None

    @property
    def scale(self) -> float:
        return float(self.scales[0])

    @property
    def zero(self) -> int:
        return int(self.zeros[0])

    def quant(self, rank: Optional[int]) -> Quant:
        axis = None if self.axis is None else self.axis % rank
        return Quant(tuple(self.scales), tuple(int(z) for z in self.zeros), axis)


@register_pass
class FoldQdq(Pass):
    """QuantizeLinear(op(DequantizeLinear(...))) -> pdc's integer op (qconv, qmatmul, qadd...)."""

    name = "fold-qdq"

    def run(self, graph: Graph) -> None:
        self.graph, self.made = graph, set()
        self.producers = graph.producers()
        for node in graph.nodes:  # a zero scale is an error wherever it is
            if node.op in ("quantize_linear", "dequantize_linear"):
                _QParams(node, node.outputs[0] if node.op == "quantize_linear" else node.inputs[0])
        nodes = []
        changed = False
        for node in graph.nodes:
            folded = self.fold(node) if node.op == "quantize_linear" else None
            nodes.extend(folded or [node])
            changed |= bool(folded)
        if changed:
            graph.nodes = nodes
            EliminateDeadCode().run(graph)

    def fresh(self, base: str) -> str:
        """An unused name (values made by earlier folds are not in the graph's nodes yet)."""
        taken = self.graph.value_names() | self.made
        name = base if base not in taken else self.graph.fresh_name(base + ".", taken)
        self.made.add(name)
        return name

    # ---- matching ------------------------------------------------------------------------------
    def dequantized(self, v: Optional[Value]) -> Optional[tuple[Value, _QParams]]:
        """(integer value, its parameters) when v = DequantizeLinear(integer value) with constant parameters."""
        p = self.producers.get(v) if v is not None else None
        if p is None or p.op != "dequantize_linear":
            return None
        params = _QParams(p, p.inputs[0])
        return (p.inputs[0], params) if params.ok else None

    def walk_back(self, x: Value) -> tuple[Value, list, list]:
        """From Q's input back through ReLU / Clip and data movement to the node that computes: (its
        output, the movement ops in order, the activations' [lo, hi] in real units). Both commute with
        a monotonic requantization, so they can run on the integers after it: max_pool(relu(v)) is
        relu(max_pool(v)), and a clamp applies as well after pooling as before."""
        moves, bounds = [], [-math.inf, math.inf]
        while True:
            p = self.producers.get(x)
            if p is None or len(p.outputs) != 1 or any(v is not None and not v.is_const for v in p.inputs[1:]):
                return x, moves[::-1], bounds
            if p.op in ACTIVATIONS:
                lo, hi = activation_bounds(p)
                bounds = [max(bounds[0], lo), min(bounds[1], hi)]
            elif p.op in PASS_THROUGH:
                moves.append(p)
            else:
                return x, moves[::-1], bounds
            x = p.inputs[0]

    def fold(self, q: Node) -> Optional[list[Node]]:
        folded = self.match(q)
        if folded:  # Q's output keeps its value; its type now says what the integers mean
            out = q.outputs[0]
            out.type = out.type.with_quant(_QParams(q, out).quant(out.type.rank))
        return folded

    def match(self, q: Node) -> Optional[list[Node]]:
        out = q.outputs[0]
        qp = _QParams(q, out)
        if not qp.per_tensor or out.type.dtype not in ACTIVATION_TYPES or q.inputs[0].type.dtype is not dtypes.float32:
            return None
        x, moves, bounds = self.walk_back(q.inputs[0])
        p = self.producers.get(x)
        if p is None:
            return None
        common = {"y_zero": qp.zero, "y_dtype": out.type.dtype}
        if bounds != [-math.inf, math.inf]:
            common["clamp"] = clamp_codes(bounds[0], bounds[1], qp.scale, qp.zero, qp.dtype)
        # the computing node gives Q's output, or (with movement after it) a value on Q's scale
        target = out if not moves else Value(self.fresh(out.name + ".int"),
                                             x.type.with_dtype(out.type.dtype).with_quant(qp.quant(None)))
        if p.op == "dequantize_linear":
            src = self.dequantized(x)
            if src is None:
                return None
            if (src[1].scale, src[1].zero, src[0].type.dtype) == (qp.scale, qp.zero, qp.dtype) and "clamp" not in common:
                computed, target = [], src[0]  # nothing to requantize: move the integers themselves
            else:
                computed = self.requantize(src, common, qp, target, q.name)
        elif p.op in ("conv", "matmul", "gemm"):
            computed = self.dense(p, common, qp, target, q.name)
        elif p.op == "add":
            computed = self.add(p, common, qp, target, q.name)
        elif p.op == "softmax" and "clamp" not in common:
            computed = self.softmax(p, qp, target, q.name)
        else:
            return None
        if computed is None or (not computed and not moves):
            return None
        return computed + self.moved(moves, target, out)

    def add(self, p: Node, common: dict, qp: _QParams, out: Value, name: str) -> Optional[list[Node]]:
        srcs = [self.dequantized(v) for v in p.inputs]
        if any(s is None or not s[1].per_tensor or s[0].type.dtype not in ACTIVATION_TYPES for s in srcs):
            return None
        (a, ap), (b, bp) = srcs
        try:
            ra, rb = requant_scale(ap.scale, divisor=qp.scale), requant_scale(bp.scale, divisor=qp.scale)
        except ValueError:
            return None
        attrs = dict(common, a_zero=ap.zero, b_zero=bp.zero, a_scale=ra, b_scale=rb)
        return [Node("qadd", [a, b], [out], attrs, p.name or name)]

    def softmax(self, p: Node, qp: _QParams, out: Value, name: str) -> Optional[list[Node]]:
        """ONNX Runtime's QLinearSoftmax, which it runs for this pattern (same type in and out)."""
        src = self.dequantized(p.inputs[0])
        if src is None or not src[1].per_tensor or src[0].type.dtype is not qp.dtype:
            return None
        x, xp = src
        attrs = {"axis": p.attrs.get("axis", -1), "x_scale": float(np.float32(xp.scale)),
                 "y_scale": float(np.float32(qp.scale)), "y_zero": qp.zero}
        return [Node("qsoftmax", [x], [out], attrs, p.name or name)]

    def moved(self, moves: list, x: Value, out: Value) -> list[Node]:
        """The movement ops applied to the integers x, the last one giving out."""
        nodes = []
        for k, m in enumerate(moves):
            y = out if k == len(moves) - 1 else Value(self.fresh(m.outputs[0].name + ".int"),
                                                      m.outputs[0].type.with_dtype(x.type.dtype).with_quant(x.type.quant))
            nodes.append(Node(m.op, [x] + m.inputs[1:], [y], dict(m.attrs), m.name))
            x = y
        return nodes

    # ---- rewrites ------------------------------------------------------------------------------
    def requantize(self, src, common: dict, qp: _QParams, out: Value, name: str) -> Optional[list[Node]]:
        x, xp = src
        if not xp.per_tensor or x.type.dtype not in ACTIVATION_TYPES:
            return None
        try:
            scale = requant_scale(xp.scale, divisor=qp.scale)
        except ValueError:
            return None
        return [Node("requantize", [x], [out], dict(common, x_zero=xp.zero, scale=[scale]), name)]

    def dense(self, p: Node, common: dict, qp: _QParams, out: Value, name: str) -> Optional[list[Node]]:
        xs, ws = self.dequantized(p.inputs[0]), self.dequantized(p.inputs[1])
        if xs is None or ws is None or not xs[1].per_tensor or xs[0].type.dtype not in ACTIVATION_TYPES:
            return None
        (x, xp), (w, wp) = xs, ws
        if not w.is_const or w.type.dtype is not dtypes.int8 or np.any(wp.zeros != 0):
            return None
        wdata = w.data
        if p.op == "conv":
            if x.type.rank != 4 or wp.axis not in (None, 0):
                return None
            channels, op, zero_key, attrs = wdata.shape[0], "qconv", "x_zero", dict(p.attrs)
        else:
            if p.op == "gemm":
                a = p.attrs
                if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                    return None
                trans = a.get("transB", 0)
                if wp.axis is not None and wp.axis != (0 if trans else 1):
                    return None
                wdata = wdata.T if trans else wdata
            elif wdata.ndim != 2 or wp.axis not in (None, 1) or x.type.rank is None or x.type.rank < 2:
                return None
            channels, op, zero_key, attrs = wdata.shape[1], "qmatmul", "a_zero", {}
        sw = np.broadcast_to(wp.scales, (channels,))
        bias = self.bias(p, xp.scale, sw) if len(p.inputs) > 2 and p.inputs[2] is not None else None
        if bias is False:
            return None
        try:
            scale = [requant_scale(xp.scale, s, divisor=qp.scale) for s in (wp.scales if wp.axis is not None else sw[:1])]
        except ValueError:
            return None
        wq = w if wdata is w.data else self.graph.add_constant(self.fresh(w.name + ".t"), np.ascontiguousarray(wdata))
        attrs.update(common, scale=scale)
        attrs[zero_key] = xp.zero
        return [Node(op, [x, wq, bias], [out], attrs, p.name or name)]

    def bias(self, p: Node, sx: float, sw: np.ndarray):
        """The int32 bias constant on the scale sx * sw (None without one, False when it cannot be had)."""
        b = p.inputs[2]
        src = self.dequantized(b)
        info = np.iinfo(np.int32)
        if src is not None:
            v, bp = src
            if not v.is_const or v.type.dtype is not dtypes.int32 or np.any(bp.zeros != 0):
                return False
            want = sx * sw
            if not np.allclose(np.broadcast_to(bp.scales, want.shape), want, rtol=1e-6, atol=0):
                return False
            if v.type.shape == sw.shape:
                return v
            data = v.data.reshape(-1)
        elif b.is_const and b.type.dtype is dtypes.float32:
            data = np.clip(np.rint(b.data.astype(np.float64).reshape(-1) / (sx * sw)), info.min, info.max)
        else:
            return False
        if data.size not in (1, sw.size):
            return False
        data = np.broadcast_to(data, sw.shape).astype(np.int32)
        return self.graph.add_constant(self.fresh(b.name + ".i32"), data)

