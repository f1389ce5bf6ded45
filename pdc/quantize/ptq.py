"""Post-training quantization: a float graph and calibration samples -> a graph of integer ops.

1. prepare: fold constants, pads and batch norms, so that each convolution is one node, and fuse
   LayerNorms written out as reductions into one layer_normalization;
2. calibrate: run the reference interpreter over the samples and observe the range of every float
   activation (calibrate.RangeObserver; a softmax's input keeps its largest value);
3. rewrite: convolutions, dense layers (Gemm, MatMul with constant weights), matmuls of two
   activations (attention's q @ k^T, p @ v), adds and multiplies of activations become qconv,
   qmatmul, qadd and qmul (pdc/ir/ops/qint.py), a following ReLU / Clip folded into their output
   clamp (an add or multiply whose result is only read as float stays float: its int8 rounding
   would buy nothing); a multiply / divide of a quantized tensor by a positive scalar constant
   (q / sqrt(d)) is the same codes on another scale, a view with no node; a softmax whose input and
   readers are quantized becomes qsoftmax (onto [0, 1] in 255 steps); a LayerNorm of a quantized
   tensor becomes qlayer_norm, of an add of two activations that only it reads (a post-LN
   residual) one qlayer_norm of the exact sum, its output float itself where only read as float
   (the model's output); average pooling becomes an integer depthwise qconv; sigmoid, hard-swish
   and other functions of one tensor become 256-entry lookup tables; max pooling and pure data
   movement run on the integers unchanged; every other op stays float, behind a dequantize_linear,
   and the model's inputs and outputs stay float.

Weights are symmetric int8 with one scale per output channel (per tensor with per_channel off),
the scale whose grid has the least squared error over the channel's weights (`weight_bounds`);
activations are per tensor, asymmetric (or symmetric) int8 or uint8. Biases become int32 at the
scale s_x * s_w. Every integer tensor's type carries its quantization.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..ir import dtypes
from ..ir.errors import PdcError
from ..ir.graph import Graph, Node, Value
from ..ir.interpreter import check_feeds, run_node
from ..ir.ops.nn_norm import EPSILON
from ..ir.ops.qint import (NORM_BOUND, activation_bounds, clamp_codes, layer_norm_epsilon, norm_code_bound,
                           requant_scale, residual_multipliers, softmax_reciprocal)
from ..ir.types import Quant, TensorType
from ..ir.verify import verify_graph
from .calibrate import RangeObserver

# fuse-layer-norm: a LayerNorm written out as reductions becomes one node, which qlayer_norm replaces
PREPARE = ("fold-qdq,simplify-algebra,fold-constants,eliminate-common-subexpressions,fold-pad,fold-batchnorm,"
           "fuse-layer-norm,eliminate-dead-code")
# ops that move int8 values without arithmetic: their output keeps the input's quantization
PASS_THROUGH = ("max_pool", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "identity")
ACTIVATIONS = ("relu", "clip")
# functions of one tensor, tabulated over the 256 codes of a quantized input (the lookup op)
TABULATED = ("sigmoid", "hard_sigmoid", "hard_swish", "tanh", "leaky_relu", "gelu", "elu", "selu", "celu",
             "softplus", "softsign", "mish", "swish", "relu", "clip", "erf", "abs", "neg", "exp", "thresholded_relu")
MAX_REDUCTION = (1 << 31) // (255 * 127)  # products summed in int32 without overflow
MAX_ACT_REDUCTION = (1 << 31) // (255 * 255)  # the same for products of two activations
RESIDUAL_BITS = (4, 10)  # the fewest and most bits of the finer grid a residual sum's LayerNorm takes
# ops that read integers whenever their input is quantized (softmax: where its output is, see float_only)
QUANTIZING = PASS_THROUGH + TABULATED + ("conv", "gemm", "matmul", "add", "mul", "average_pool", "global_average_pool",
                                         "layer_normalization")


@dataclass
class Options:
    method: str = "mse"  # calibrate.METHODS
    per_channel: bool = True
    activations: str = "int8"  # or "uint8"
    symmetric: bool = False  # symmetric activations (zero point 0 / 128)
    keep_float: tuple = ()  # op names or node names left in float
    bias_correction: bool = True  # the bias takes back the mean shift of the weights' rounding


@dataclass
class Report:
    quantized: list = field(default_factory=list)  # (node name, op)
    kept_float: list = field(default_factory=list)  # (node name, op, why)

    def lines(self) -> list[str]:
        ops = {}
        for _, op in self.quantized:
            ops[op] = ops.get(op, 0) + 1
        out = [f"quantized {len(self.quantized)} nodes to int8 ("
               + ", ".join(f"{n} {op}" for op, n in sorted(ops.items())) + ")"]
        out += [f"kept float: {name or '?'} ({op}): {why}" for name, op, why in self.kept_float]
        return out


def quantize(graph: Graph, samples: list, options: Options = Options(),
             progress: Optional[Callable[[str], None]] = None) -> tuple[Graph, Report]:
    """The quantized graph and what was (not) quantized. samples: feeds, as load_calibration gives."""
    from ..passes import PassManager, parse_pipeline
    if options.activations not in ("int8", "uint8"):
        raise PdcError(f"activations '{options.activations}': expected int8 or uint8")
    graph = PassManager(parse_pipeline(PREPARE)).run(graph.copy())
    ranges, means = calibrate(graph, samples, options.method, progress)
    q = _Quantizer(graph, ranges, means, options)
    out = q.rewrite()
    if not q.report.quantized:
        raise PdcError("the model has no quantizable op (Conv, Gemm, MatMul with constant weights, Add, Mul)")
    verify_graph(out)
    return out, q.report


def calibrate(graph: Graph, samples: list, method: str,
              progress: Optional[Callable[[str], None]] = None) -> tuple[dict, dict]:
    """({float value: (lo, hi)} for the graph's inputs and every float node output, {value a layer
    reads: the mean of each of its input channels}) over the samples. A softmax's input keeps its
    largest value seen: the largest logits decide a row's softmax, and clipping them (as mse may
    to refine the rest) skews every row that has them."""
    observers, sums = {}, {}
    channel_axis = _weighted_inputs(graph)
    say = progress or (lambda msg: None)
    for i, feeds in enumerate(samples):
        env = check_feeds(graph, feeds)
        env.update((c, c.data) for c in graph.constants)
        for v in graph.inputs:
            _observe(observers, v, env[v], method)
        for node in graph.nodes:
            results = run_node(node, [None if v is None else env[v] for v in node.inputs])
            for v, r in zip(node.outputs, results):
                env[v] = r
                _observe(observers, v, r, method)
        for v, axis in channel_axis.items():
            x = np.moveaxis(np.asarray(env[v], np.float64), axis, -1)
            sums[v] = sums.get(v, 0.0) + x.reshape(-1, x.shape[-1]).mean(axis=0)
        if (i + 1) % max(1, len(samples) // 10) == 0 or i + 1 == len(samples):  # about ten lines in all
            say(f"calibrating: {i + 1}/{len(samples)} samples")
    logits = {n.inputs[0] for n in graph.nodes if n.op == "softmax"}
    ranges = {v: (obs.range()[0], obs.extent()[1]) if v in logits else obs.range() for v, obs in observers.items()}
    return ranges, {v: s / len(samples) for v, s in sums.items()}


def _weighted_inputs(graph: Graph) -> dict:
    """{float input of a conv / gemm / matmul with constant weights: its channel axis}."""
    out = {}
    for node in graph.nodes:
        x = node.inputs[0] if node.inputs else None
        if x is None or x.type.dtype is not dtypes.float32 or len(node.inputs) < 2 or not node.inputs[1].is_const:
            continue
        if node.op == "conv" and x.type.rank == 4:
            out[x] = 1
        elif node.op in ("gemm", "matmul") and x.type.rank and not node.attrs.get("transA", 0):
            out[x] = x.type.rank - 1
    return out


def _observe(observers: dict, v: Value, array: np.ndarray, method: str) -> None:
    if v.type.dtype is dtypes.float32:
        observers.setdefault(v, RangeObserver(method)).update(array)


# the fractions of a channel's largest |w| that weight_bounds tries as the int8 grid's end
_WEIGHT_CLIPS = np.linspace(1.0, 0.6, 41)


def weight_bounds(rows: np.ndarray) -> np.ndarray:
    """Per row of rows [channels, K], the end of the symmetric int8 grid (code 127) with the smallest
    squared error over the row's weights: the largest |w|, or less where clipping a few outliers
    buys finer steps for the rest."""
    top = np.abs(rows).max(axis=1)
    best, best_err = top.copy(), np.full(top.shape, np.inf)
    for f in _WEIGHT_CLIPS:
        step = np.where(top > 0, f * top / 127, 1.0)[:, None]
        err = ((rows - np.clip(np.rint(rows / step), -127, 127) * step) ** 2).sum(axis=1)
        better = err < best_err
        best[better], best_err[better] = f * top[better], err[better]
    return best


class _Quantizer:
    def __init__(self, graph: Graph, ranges: dict, means: dict, options: Options):
        self.g, self.ranges, self.means, self.opt = graph, ranges, means, options
        self.dt = dtypes.from_name(options.activations)
        self.users = graph.users()
        self.report = Report()
        self.nodes: list[Node] = []
        self.constants: list[Value] = list(graph.constants)
        self.taken = graph.value_names()
        self.qval: dict[Value, Value] = {}  # float value -> its integer version
        self.defined: set = set(graph.inputs) | set(graph.constants)  # float values computed so far
        self.views: dict[Value, Value] = {}  # a view of codes on another scale -> the value holding them

    # ---- names and constants --------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name = base if base not in self.taken else self.g.fresh_name(base + ".", self.taken)
        self.taken.add(name)
        return name

    def const(self, base: str, data: np.ndarray, quant: Optional[Quant] = None) -> Value:
        data = np.array(data, order="C")
        v = Value(self.fresh(base), dtypes_type(data, quant), data)
        self.constants.append(v)
        return v

    # ---- activation quantization ----------------------------------------------------------
    def act_quant(self, v: Value) -> Quant:
        lo, hi = self.ranges[v]
        qmin, qmax = self.dt_range()
        if self.opt.symmetric:
            bound = max(-lo, hi)
            scale = bound / (qmax if self.dt is dtypes.int8 else 127) if bound > 0 else 1.0
            zero = 0 if self.dt is dtypes.int8 else 128
        else:
            scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
            zero = int(np.clip(round(qmin - lo / scale), qmin, qmax))
        scale = float(np.float32(scale))  # the scale the float32 quantize / dequantize kernels use
        return Quant((scale if scale > 0 else 1.0,), (zero,))

    def integer(self, v: Value) -> Value:
        """v's integer version, quantizing it (quantize_linear) the first time a float value is asked."""
        if v not in self.qval:
            q = self.act_quant(v)
            out = Value(self.fresh(v.name + ".q"), v.type.with_dtype(self.dt).with_quant(q))
            s = self.const(v.name + ".scale", np.float32(q.scale[0]))
            z = self.const(v.name + ".zero", np.array(q.zero[0], self.dt.np))
            self.nodes.append(Node("quantize_linear", [self.float(v), s, z], [out], {}, v.name + ".quantize"))
            self.qval[v] = out
        return self.qval[v]

    def float(self, v: Optional[Value]) -> Optional[Value]:
        """v as a float value, dequantizing its integer version where only that one was computed."""
        if v is None or v in self.defined:
            return v
        qv = self.qval[v]
        s = self.const(v.name + ".scale", np.float32(qv.type.quant.scale[0]))
        z = self.const(v.name + ".zero", np.array(qv.type.quant.zero[0], qv.type.dtype.np))
        self.nodes.append(Node("dequantize_linear", [qv, s, z], [v], {}, v.name + ".dequantize"))
        self.defined.add(v)
        return v

    # ---- the rewrite ------------------------------------------------------------------------
    def rewrite(self) -> Graph:
        absorbed: set = set()
        for node in self.g.nodes:
            if node in absorbed:
                continue
            if self.rescaled(node):
                self.report.quantized.append((node.name, node.op))
                continue
            ln = self.residual_layer_norm(node)
            if ln is not None:  # add + LayerNorm: the sum stays exact
                absorbed.add(ln)
                self.qlayer_norm(ln, node)
                self.report.quantized += [(node.name, node.op), (ln.name, ln.op)]
                continue
            candidate = self.as_depthwise_conv(node) or node
            why = self.skip_reason(candidate)
            if why is None:
                bias_add = self.bias_add_after(candidate)
                act = self.activation_after(bias_add or candidate)
                absorbed.update(n for n in (bias_add, act) if n is not None)
                self.quantize_node(candidate, bias_add, act)
                self.report.quantized.append((node.name, node.op))
                continue
            if self.tabulable(node):
                self.tabulate(node)
                self.report.quantized.append((node.name, node.op))
                continue
            if self.softmax_quantizable(node):
                self.qsoftmax(node)
                self.report.quantized.append((node.name, node.op))
                continue
            if self.layer_norm_quantizable(node):
                self.qlayer_norm(node)
                self.report.quantized.append((node.name, node.op))
                continue
            if node.op in PASS_THROUGH and node.inputs[0] in self.qval and len(node.outputs) == 1:
                self.pass_through(node)
                continue
            if why and (node.op in ("conv", "gemm", "matmul") or why == "--keep-float"):  # layers, not every add
                self.report.kept_float.append((node.name, node.op, why))
            node.inputs = [self.float(v) for v in node.inputs]
            self.nodes.append(node)
            self.defined.update(node.outputs)
        outputs = [self.float(v) for v in self.g.outputs]
        for n in self.nodes:  # views read the codes they stand for
            n.inputs = [self.views.get(v, v) for v in n.inputs]
        g = Graph(self.g.name, self.g.inputs, outputs, self.nodes, self.constants)
        g.remove_unused_constants()
        return g

    def as_depthwise_conv(self, node: Node) -> Optional[Node]:
        """An average pooling of quantized values as the depthwise convolution it is (weights 1/k), so
        it runs on the integers: global pooling, and windows whose padding counts (zero padding)."""
        x = node.inputs[0]
        if node.op not in ("global_average_pool", "average_pool") or x not in self.qval or x.type.rank != 4:
            return None
        channels, spatial = x.type.shape[1], list(x.type.shape[2:])
        if node.op == "global_average_pool":
            kernel, attrs = spatial, {}
        else:
            a = node.attrs
            if a.get("ceil_mode", 0) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or (
                    any(a.get("pads") or []) and not a.get("count_include_pad", 0)):
                return None
            kernel = list(a["kernel_shape"])
            attrs = {k: a[k] for k in ("strides", "pads", "dilations") if a.get(k) is not None}
        w = np.full([channels, 1] + kernel, 1.0 / math.prod(kernel), np.float32)
        weights = Value(node.name + ".window", dtypes_type(w, None), w)
        return Node("conv", [x, weights], node.outputs, dict(attrs, group=channels, kernel_shape=kernel), node.name)

    def skip_reason(self, node: Node) -> Optional[str]:
        """Why node stays float ("" for ops pdc does not quantize at all); None to quantize it."""
        if node.op not in ("conv", "gemm", "matmul", "add", "mul"):
            return ""
        if self.kept(node):
            return "--keep-float"
        x = node.inputs[0]
        if any(v is not None and v.type.dtype is not dtypes.float32 for v in node.inputs):
            return "not float32"
        if node.op in ("add", "mul"):
            a, b = node.inputs
            if a.is_const or b.is_const or not (a in self.qval or b in self.qval):
                return f"an {node.op} of activations that are not quantized"
            act = self.activation_after(node)
            if self.float_only((act or node).outputs[0]):  # read as float: an int8 result would only lose
                return ""
            return None
        w = node.inputs[1]
        if node.op == "matmul" and not w.is_const and not x.is_const:
            return self.activation_matmul_reason(node)
        if not w.is_const or (len(node.inputs) > 2 and node.inputs[2] is not None and not node.inputs[2].is_const):
            return "weights or bias are not constant"
        if node.op == "conv":
            if x.type.rank != 4:
                return "only 2-D convolutions are quantized"
            k = math.prod(w.type.shape[1:])
        elif node.op == "gemm":
            if node.attrs.get("transA", 0) or x.type.rank != 2:
                return "Gemm with a transposed A"
            c = node.inputs[2] if len(node.inputs) > 2 else None
            n = w.type.shape[0 if node.attrs.get("transB", 0) else 1]
            if c is not None and c.type.numel not in (1, n):
                return "Gemm's C is not a per-column bias"
            k = w.type.shape[1 if node.attrs.get("transB", 0) else 0]
        else:
            if w.type.rank != 2 or x.type.rank is None or x.type.rank < 2:
                return "MatMul whose constant operand is not 2-D"
            k = w.type.shape[0]
        if k > MAX_REDUCTION:
            return f"a reduction over {k} products could overflow int32"
        return None

    def kept(self, node: Node) -> bool:
        """Whether --keep-float names node's op or node."""
        return node.op in self.opt.keep_float or bool(node.name and node.name in self.opt.keep_float)

    def activation_matmul_reason(self, node: Node) -> Optional[str]:
        """Why a matmul of two activations (attention's q @ k^T, p @ v) stays float; None to quantize it."""
        a, b = node.inputs
        if not (a in self.qval or b in self.qval):
            return "a matmul of activations that are not quantized"
        if a.type.rank is None or b.type.rank is None or min(a.type.rank, b.type.rank) < 2:
            return "a matmul of activations of rank < 2"
        k = b.type.shape[-2]
        if not isinstance(k, int) or k > MAX_ACT_REDUCTION:
            return f"a reduction over {k} products could overflow int32"
        return None

    def sole_user(self, node: Node, ops) -> Optional[Node]:
        """The one node (of one of `ops`) that consumes node's output, when the output is not a model output."""
        y = node.outputs[0]
        users = self.users.get(y, [])
        if len(users) != 1 or y in self.g.outputs or users[0].op not in ops:
            return None
        return users[0]

    def activation_after(self, node: Node) -> Optional[Node]:
        """The ReLU / Clip (constant bounds) that alone consumes node's output, to fold into its clamp."""
        act = self.sole_user(node, ACTIVATIONS)
        if act is None or any(v is not None and not v.is_const for v in act.inputs[1:]):
            return None
        return act

    def bias_add_after(self, node: Node) -> Optional[Node]:
        """An add of a constant per-output-channel bias (as exporters write a separate bias) to fold in."""
        add = self.sole_user(node, ("add",)) if node.op in ("conv", "gemm", "matmul") and node.inputs[1].is_const else None
        if add is None:
            return None
        c = add.inputs[1] if add.inputs[0] is node.outputs[0] else add.inputs[0]
        y = node.outputs[0].type
        channel_axis = 1 if node.op == "conv" else y.rank - 1
        if not c.is_const or c.type.dtype is not dtypes.float32 or c.type.rank > y.rank:
            return None
        shape = (1,) * (y.rank - c.type.rank) + c.type.shape  # aligned to y's dims
        if any(d != 1 for i, d in enumerate(shape) if i != channel_axis):
            return None
        return add

    def clamp(self, act: Optional[Node], q: Quant) -> Optional[list]:
        """The output clamp in codes for a folded ReLU / Clip (None without one)."""
        if act is None:
            return None
        return clamp_codes(*activation_bounds(act), q.scale[0], q.zero[0], self.dt)

    def float_only(self, y: Value) -> bool:
        """Whether y is only read as float (a model output, float ops): then a dense layer gives its
        int32 accumulators, dequantized per channel, and skips a needless int8 rounding. A softmax
        reads integers where its own output is read so (then it is a qsoftmax)."""
        return all(u.op not in QUANTIZING and not (u.op == "softmax" and not self.float_only(u.outputs[0]))
                   for u in self.users.get(y, []))

    def quantize_node(self, node: Node, bias_add: Optional[Node], act: Optional[Node]) -> None:
        y = (act or bias_add or node).outputs[0]
        if node.op not in ("add", "mul") and act is None and self.float_only(y):
            return self.accumulate(node, bias_add, y)
        qy = self.act_quant(y)
        out = Value(self.fresh(y.name + ".q"), y.type.with_dtype(self.dt).with_quant(qy))
        common = {"y_zero": qy.zero[0], "y_dtype": self.dt}
        clamp = self.clamp(act, qy)
        if clamp is not None:
            common["clamp"] = clamp
        if node.op == "matmul" and not node.inputs[1].is_const:  # two activations
            a, b = (self.integer(v) for v in node.inputs)
            scale = requant_scale(a.type.quant.scale[0], b.type.quant.scale[0], divisor=qy.scale[0])
            attrs = dict(common, a_zero=a.type.quant.zero[0], b_zero=b.type.quant.zero[0], scale=[scale])
            self.nodes.append(Node("qmatmul", [a, b], [out], attrs, node.name))
        elif node.op == "add":
            a, b = (self.integer(v) for v in node.inputs)
            attrs = dict(common, a_zero=a.type.quant.zero[0], b_zero=b.type.quant.zero[0],
                         a_scale=requant_scale(a.type.quant.scale[0], divisor=qy.scale[0]),
                         b_scale=requant_scale(b.type.quant.scale[0], divisor=qy.scale[0]))
            self.nodes.append(Node("qadd", [a, b], [out], attrs, node.name))
        elif node.op == "mul":
            a, b = (self.integer(v) for v in node.inputs)
            scale = requant_scale(a.type.quant.scale[0], b.type.quant.scale[0], divisor=qy.scale[0])
            attrs = dict(common, a_zero=a.type.quant.zero[0], b_zero=b.type.quant.zero[0], scale=[scale])
            self.nodes.append(Node("qmul", [a, b], [out], attrs, node.name))
        else:
            x = self.integer(node.inputs[0])
            w, bias, op, attrs = self.weights(node, bias_add, x.type.quant.scale[0], qy.scale[0])
            zero_key = "x_zero" if op == "qconv" else "a_zero"
            self.nodes.append(Node(op, [x, w, bias], [out], dict(common, **attrs, **{zero_key: x.type.quant.zero[0]}),
                                   node.name))
        self.qval[y] = out

    def accumulate(self, node: Node, bias_add: Optional[Node], y: Value) -> None:
        """y = dequantize_linear(the layer's int32 accumulators, s_x * s_w per channel)."""
        if not node.inputs[1].is_const:
            return self.accumulate_activations(node, y)
        x = self.integer(node.inputs[0])
        sx = x.type.quant.scale[0]
        w, bias, op, attrs = self.weights(node, bias_add, sx, None)
        zero_key = "x_zero" if op == "qconv" else "a_zero"
        acc = Value(self.fresh(y.name + ".acc"), y.type.with_dtype(dtypes.int32))
        self.nodes.append(Node(op, [x, w, bias], [acc], {**attrs, zero_key: x.type.quant.zero[0],
                                                         "y_dtype": dtypes.int32}, node.name))
        scales = np.float32(sx) * np.asarray(w.type.quant.scale, np.float32)
        axis = 1 if op == "qconv" else y.type.rank - 1
        s = self.const(y.name + ".scale", scales if scales.size > 1 else scales[0])
        self.nodes.append(Node("dequantize_linear", [acc, s], [y], {"axis": axis}, y.name + ".dequantize"))
        self.defined.add(y)

    def accumulate_activations(self, node: Node, y: Value) -> None:
        """y = dequantize_linear(a matmul of two activations' int32 accumulators, s_a * s_b)."""
        a, b = (self.integer(v) for v in node.inputs)
        acc = Value(self.fresh(y.name + ".acc"), y.type.with_dtype(dtypes.int32))
        self.nodes.append(Node("qmatmul", [a, b], [acc], {"a_zero": a.type.quant.zero[0], "b_zero": b.type.quant.zero[0],
                                                          "y_dtype": dtypes.int32}, node.name))
        s = self.const(y.name + ".scale", np.float32(requant_scale(a.type.quant.scale[0], b.type.quant.scale[0])))
        self.nodes.append(Node("dequantize_linear", [acc, s], [y], {}, y.name + ".dequantize"))
        self.defined.add(y)

    def weights(self, node: Node, bias_add: Optional[Node], sx: float, sy: Optional[float]):
        """(int8 weights, int32 bias or None, integer op, its attributes) for a conv / gemm / matmul."""
        w = node.inputs[1].data.astype(np.float64)
        b = node.inputs[2] if len(node.inputs) > 2 else None
        bias = None if b is None else b.data.astype(np.float64).reshape(-1)
        if node.op == "conv":
            axis, op = 0, "qconv"
            attrs = {k: v for k, v in node.attrs.items()}
        else:
            op, attrs, axis = "qmatmul", {}, 1
            if node.op == "gemm":
                if node.attrs.get("transB", 0):
                    w = w.T
                w = w * node.attrs.get("alpha", 1.0)
                if bias is not None:
                    bias = bias * node.attrs.get("beta", 1.0)
        channels = w.shape[axis]
        if bias is not None:
            bias = np.broadcast_to(bias, (channels,))
        if bias_add is not None:  # the constant side of the add, one value per channel
            c = next(v for v in bias_add.inputs if v.is_const).data.astype(np.float64).reshape(-1)
            bias = (0.0 if bias is None else bias) + np.broadcast_to(c, (channels,))
        rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        bound = weight_bounds(rows) if self.opt.per_channel else np.full(w.shape[axis], weight_bounds(rows.reshape(1, -1))[0])
        sw = np.where(bound > 0, bound / 127, 1.0).astype(np.float32).astype(np.float64)
        shape = [1] * w.ndim
        shape[axis] = -1
        wq = np.clip(np.rint(w / sw.reshape(shape)), -127, 127).astype(np.int8)
        wquant = Quant(tuple(sw), (0,) * len(sw), axis) if self.opt.per_channel else Quant((sw[0],), (0,))
        wv = self.const(node.inputs[1].name + ".q", wq, wquant)
        correction = self.bias_correction(node, w, wq.astype(np.float64) * sw.reshape(shape), axis)
        if correction is not None:
            bias = correction if bias is None else bias + correction
        bv = None
        if bias is not None:
            info = np.iinfo(np.int32)
            bq = np.clip(np.rint(bias / (sx * sw)), info.min, info.max).astype(np.int32)
            bv = self.const(node.name + ".bias.q", bq)
        if sy is not None:  # requantized onto the output's scale (None: the accumulators are the output)
            attrs["scale"] = [requant_scale(sx, s, divisor=sy) for s in (sw if self.opt.per_channel else sw[:1])]
        return wv, bv, op, attrs

    def bias_correction(self, node: Node, w: np.ndarray, wq: np.ndarray, axis: int) -> Optional[np.ndarray]:
        """Per output channel, the mean shift the weights' rounding gives the layer's outputs over the
        calibration samples, (w - wq) . mean(x) (padding taps counted as the channel's mean), which the
        bias takes back (bias correction); None where the input's means were not observed."""
        mean = self.means.get(node.inputs[0])
        if mean is None or not self.opt.bias_correction:
            return None
        err = w - wq
        if node.op == "conv":  # [M, C / group, kh, kw]: each group reads its own input channels
            m, cg = err.shape[0], err.shape[1]
            groups = mean.size // cg
            per_group = mean.reshape(groups, cg)[np.arange(m) // (m // groups)]  # [M, cg]
            return np.einsum("mckl,mc->m", err, per_group)
        return mean @ err if axis == 1 else err @ mean

    def tabulable(self, node: Node) -> bool:
        x = node.inputs[0] if node.inputs else None
        return (node.op in TABULATED and x in self.qval and len(node.outputs) == 1
                and node.outputs[0].type.dtype is dtypes.float32 and node.op not in self.opt.keep_float
                and node.name not in self.opt.keep_float
                and all(v is None or v.is_const for v in node.inputs[1:]))

    def tabulate(self, node: Node) -> None:
        """y = lookup(x, f over x's 256 codes): quantized onto y's scale, or float when only read as float."""
        from ..ir.interpreter import run_node
        x, y = self.qval[node.inputs[0]], node.outputs[0]
        info = np.iinfo(x.type.dtype.np)
        codes = np.arange(info.min, info.max + 1)
        real = ((codes - x.type.quant.zero[0]) * np.float32(x.type.quant.scale[0])).astype(np.float32)
        # the op's own reference on a 1-D tensor of every representable value
        probe = Node(node.op, [Value("codes", dtypes_type(real, None))] + node.inputs[1:],
                     [Value("f", y.type.with_shape(real.shape))], dict(node.attrs), node.name)
        values = run_node(probe, [real] + [None if v is None else v.data for v in node.inputs[1:]])[0]
        if self.float_only(y):
            table, out = values.astype(np.float32), y
            self.defined.add(y)
        else:
            q = self.act_quant(y)
            table = np.clip(np.rint(values / np.float32(q.scale[0])) + q.zero[0], *self.dt_range()).astype(self.dt.np)
            out = Value(self.fresh(y.name + ".q"), y.type.with_dtype(self.dt).with_quant(q))
            self.qval[y] = out
        t = self.const(node.name + ".table" if node.name else y.name + ".table", table)
        self.nodes.append(Node("lookup", [x, t], [out], {}, node.name))

    def dt_range(self) -> tuple[int, int]:
        info = np.iinfo(self.dt.np)
        return int(info.min), int(info.max)

    def pass_through(self, node: Node) -> None:
        x = self.qval[node.inputs[0]]
        y = node.outputs[0]
        root = self.views.get(x, x)  # the codes move; a view's scale goes with them
        out = Value(self.fresh(y.name + ".q"), y.type.with_dtype(x.type.dtype).with_quant(root.type.quant))
        inputs = [root] + [self.float(v) for v in node.inputs[1:]]
        self.nodes.append(Node(node.op, inputs, [out], dict(node.attrs), node.name))
        self.qval[y] = out if root is x else self.view(out, y, x.type.quant)

    # ---- scales, softmax, LayerNorm ------------------------------------------------------------
    def view(self, x: Value, y: Value, quant: Quant) -> Value:
        """y's integer version: x's codes read on `quant`. No node computes it: the rewrite's end
        puts the value holding the codes in its place (the ops that read it took the scale already)."""
        v = Value(self.fresh(y.name + ".q"), y.type.with_dtype(x.type.dtype).with_quant(quant))
        self.views[v] = self.views.get(x, x)
        return v

    def rescaled(self, node: Node) -> bool:
        """x * c or x / c, c a positive scalar constant, x quantized per tensor (attention's q / sqrt(d)):
        y is x's codes on the scale s_x * c (s_x / c), a view, no arithmetic. False for other nodes."""
        if node.op not in ("mul", "div") or self.kept(node) or len(node.outputs) != 1:
            return False
        x, c = node.inputs
        if node.op == "mul" and x.is_const:
            x, c = c, x
        y = node.outputs[0]
        if x not in self.qval or not c.is_const or c.type.dtype is not dtypes.float32 or c.data.size != 1:
            return False
        q = self.qval[x].type.quant
        factor = float(c.data.reshape(-1)[0])
        if q.axis is not None or not (math.isfinite(factor) and factor > 0) or y.type.shape != x.type.shape:
            return False
        try:
            scale = requant_scale(q.scale[0], factor) if node.op == "mul" else requant_scale(q.scale[0], divisor=factor)
        except ValueError:
            return False
        if not (0 < scale < math.inf):
            return False
        self.qval[y] = self.view(self.qval[x], y, Quant((scale,), q.zero))
        return True

    def softmax_quantizable(self, node: Node) -> bool:
        x = node.inputs[0] if node.inputs else None
        return (node.op == "softmax" and x in self.qval and self.qval[x].type.quant.axis is None
                and not self.kept(node) and not self.float_only(node.outputs[0]))

    def qsoftmax(self, node: Node) -> None:
        """y = qsoftmax(x) onto the scale s with floor(1 / s) = 255, the codes from the type's least
        (zero point): [0, 1] in 255 steps, the largest float32 s that qsoftmax's rule maps so (it
        scales by floor(1 / s): 1/255 itself gives 254)."""
        x, y = self.qval[node.inputs[0]], node.outputs[0]
        s = np.float32(1 / 255)
        while softmax_reciprocal(float(s)) < 255:
            s = np.nextafter(s, np.float32(0))
        zero = self.dt_range()[0]
        out = Value(self.fresh(y.name + ".q"), y.type.with_dtype(x.type.dtype).with_quant(Quant((float(s),), (zero,))))
        attrs = {"axis": node.attrs.get("axis", -1), "x_scale": x.type.quant.scale[0], "y_scale": float(s),
                 "y_zero": zero}
        self.nodes.append(Node("qsoftmax", [x], [out], attrs, node.name))
        self.qval[y] = out

    def layer_norm_quantizable(self, node: Node, quantized: bool = False) -> bool:
        """Whether node is a LayerNorm qlayer_norm computes (its input quantized, or `quantized`)."""
        if node.op != "layer_normalization" or self.kept(node) or len(node.outputs) != 1:
            return False
        x, params = node.inputs[0], node.inputs[1:]
        if not (quantized or (x in self.qval and self.qval[x].type.quant.axis is None)) or not x.type.is_static:
            return False
        if node.attrs.get("stash_type", dtypes.float32) is not dtypes.float32 or node.outputs[0].type.dtype is not dtypes.float32:
            return False
        return all(v is None or (v.is_const and v.type.dtype is dtypes.float32) for v in params)

    def residual_layer_norm(self, node: Node) -> Optional[Node]:
        """The LayerNorm that alone reads node, an add of two activations of its shape (a post-LN
        transformer's residual), to compute as one qlayer_norm of the exact sum; None otherwise."""
        if node.op != "add" or self.kept(node) or any(v.is_const or v.type.dtype is not dtypes.float32 for v in node.inputs):
            return None
        if not any(v in self.qval for v in node.inputs) or any(v.type.shape != node.outputs[0].type.shape
                                                               for v in node.inputs):
            return None
        ln = self.sole_user(node, ("layer_normalization",))
        if ln is None or ln.inputs[0] is not node.outputs[0] or not self.layer_norm_quantizable(ln, quantized=True):
            return None
        if any(v in self.qval and self.qval[v].type.quant.axis is not None for v in node.inputs):
            return None
        return ln if self.residual_grid(ln, *node.inputs) is not None else None

    def residual_grid(self, ln: Node, a: Value, b: Value) -> Optional[dict]:
        """qlayer_norm's attributes for the sum a + b on one integer grid (the most bits that keep
        D * max|d| in bounds): x_mult, r_mult, their zero points, the grid's step (unit); None when
        even RESIDUAL_BITS[0] bits do not fit."""
        qa, qb = (self.act_quant(v) if v not in self.qval else self.qval[v].type.quant for v in (a, b))
        size = math.prod(a.type.shape[ln.attrs.get("axis", -1) % a.type.rank:])
        for bits in range(RESIDUAL_BITS[1], RESIDUAL_BITS[0] - 1, -1):
            xm, rm, unit = residual_multipliers(qa.scale[0], qb.scale[0], bits)
            attrs = {"x_zero": qa.zero[0], "x_mult": xm, "r_zero": qb.zero[0], "r_mult": rm}
            if size * norm_code_bound(attrs, self.dt, self.dt) < NORM_BOUND:
                return dict(attrs, unit=unit)
        return None

    def qlayer_norm(self, node: Node, residual: Optional[Node] = None) -> None:
        """y = qlayer_norm(x) (or of the residual sum a + b): gamma and beta divided by y's scale (an
        integer y), or y itself in float where it is only read so (the model's output)."""
        if residual is None:
            x = self.qval[node.inputs[0]]
            inputs, attrs = [x], {"x_zero": x.type.quant.zero[0]}
            unit = x.type.quant.scale[0]
        else:
            a, b = residual.inputs
            attrs = self.residual_grid(node, a, b)
            unit = attrs.pop("unit")
            inputs = [self.integer(a), self.integer(b)]
        y = node.outputs[0]
        axis = node.attrs.get("axis", -1) % y.type.rank
        tail = tuple(y.type.shape[axis:])
        gamma, beta = (np.zeros(tail) if v is None else np.broadcast_to(v.data.astype(np.float64), tail)
                       for v in (node.inputs[1:] + [None])[:2])
        attrs.update(axis=axis, var_epsilon=layer_norm_epsilon(node.attrs.get("epsilon", EPSILON), math.prod(tail), unit))
        if self.float_only(y):
            out, sy = y, 1.0
            attrs["y_dtype"] = dtypes.float32
            self.defined.add(y)
        else:
            q = self.act_quant(y)
            out, sy = Value(self.fresh(y.name + ".q"), y.type.with_dtype(self.dt).with_quant(q)), q.scale[0]
            attrs.update(y_dtype=self.dt, y_zero=q.zero[0])
            self.qval[y] = out
        name = node.name or y.name
        params = [self.const(f"{name}.gamma", (gamma / sy).astype(np.float32)),
                  self.const(f"{name}.beta", (beta / sy).astype(np.float32))]
        self.nodes.append(Node("qlayer_norm", inputs[:1] + params + inputs[1:], [out], attrs, node.name))


def dtypes_type(data: np.ndarray, quant: Optional[Quant]) -> TensorType:
    return TensorType(dtypes.from_numpy(data.dtype), data.shape, quant)
