"""The layers of an FPGA dataflow design, planned from an optimized graph.

Every tensor between layers is a stream of pixels: an image [1, C, H, W] flows as its H * W pixels
in row-major order, each pixel its C channels; a vector [1, N] is one pixel of N channels. A
flattened image keeps its pixel stream (the dense layer reading it takes its weight rows in pixel
order), so no layer ever reorders data. A tensor read by several layers goes through a `clone`
layer first (a stream has one reader).

Layers: conv (2-D, any stride, dilation, padding and groups, through line buffers), dense, max_pool /
avg_pool (2-D windows, global pooling included), add, concat (channels), activation (relu, clip and
leaky_relu computed; every other pointwise function through a lookup table), softmax (over each
pixel's channels: exp from two tables and one exact reciprocal) and clone.
Anything else is refused naming the node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ...ir.errors import PdcError
from ...ir.graph import Graph, Value

COMPUTED_ACTIVATIONS = ("none", "relu", "clip", "leaky_relu")
TABLE_ACTIVATIONS = {  # fused-epilogue / op name -> float64 function
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "hard_sigmoid": None,  # takes alpha, beta (see _table_function)
    "hard_swish": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "elu": None,
    "selu": None,
}
PASS_THROUGH = ("identity", "dropout")
FLATTENING = ("reshape", "flatten", "squeeze", "unsqueeze")


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


@dataclass(eq=False)
class Stream:
    """A tensor between layers: `pixels` pixels of `channels` channels (an image's C, H, W in `image`)."""
    name: str
    image: tuple  # (C, H, W) of the pixel stream
    value: Value  # the graph value it carries (its logical shape may be flat)
    type: object = None  # its Fixed type (pdc/codegen/hls/precision.py)

    @property
    def channels(self) -> int:
        return self.image[0]

    @property
    def pixels(self) -> int:
        return self.image[1] * self.image[2]

    @property
    def size(self) -> int:
        return math.prod(self.image)


@dataclass(eq=False)
class Layer:
    kind: str  # conv, dense, max_pool, avg_pool, add, concat, activation, clone
    name: str  # the source node's name (what a per-layer precision names)
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    weights: Optional[np.ndarray] = None  # conv: [F, C/G, KH, KW]; dense: [K, N], rows in pixel order
    bias: Optional[np.ndarray] = None
    activation: str = "none"  # conv / dense / activation layers: one of COMPUTED_ACTIVATIONS, or "table"
    alpha: float = 0.0  # leaky_relu slope; clip's lower bound
    beta: float = 0.0  # clip's upper bound
    table: Optional[Callable] = None  # a table activation's function
    table_name: str = ""
    # fixed-point types (precision.py): weights, bias, the exact accumulator; `aux` the constant of an
    # avg_pool's reciprocals or a leaky_relu's slope
    weight_t: object = None
    bias_t: object = None
    acc_t: object = None
    aux_t: object = None
    reuse: int = 1
    reuse_asked: Optional[int] = None  # a per-layer file's reuse factor for this layer (over --reuse-factor)

    @property
    def macs(self) -> int:
        """Multiplications per inference."""
        if self.kind == "conv":
            _, oh, ow = self.outputs[0].image
            return int(np.prod(self.weights.shape)) * oh * ow
        if self.kind == "dense":
            return int(self.weights.size)
        return 0

    @property
    def mults_per_step(self) -> int:
        """Multiplications of one output pixel (what the reuse factor divides)."""
        if self.kind == "conv":
            return int(np.prod(self.weights.shape))
        return self.macs


@dataclass
class Design:
    layers: list
    inputs: list  # the graph inputs' streams
    outputs: list  # the graph outputs' streams
    output_values: list  # the graph outputs (a flattened output's stream carries the image before it)

    def streams(self) -> list:
        seen = dict.fromkeys(s for layer in self.layers for s in layer.inputs + layer.outputs)
        for s in self.inputs + self.outputs:
            seen.setdefault(s)
        return list(seen)


def plan(graph: Graph, target_name: str) -> Design:
    """The layer list of an optimized graph (batch 1), or a one-line error naming what cannot be mapped."""
    return _Planner(graph, target_name).run()


class _Planner:
    def __init__(self, graph: Graph, target_name: str):
        self.graph, self.target = graph, target_name
        self.streams: dict[Value, Stream] = {}
        self.layers: list[Layer] = []

    def fail(self, node, why: str):
        raise PdcError(f"{self.target}: {node.describe()}: {why}")

    def run(self) -> Design:
        g = self.graph
        for v in g.inputs:
            self.streams[v] = Stream(_c_name(v.name), self.image_of(v, None), v)
        for node in g.nodes:
            self.node(node)
        self.fan_out()
        outs = [self.streams[v] for v in g.outputs]
        return Design(self.layers, [self.streams[v] for v in g.inputs], outs, list(g.outputs))

    def image_of(self, v: Value, node) -> tuple:
        shape = v.type.shape
        if not v.type.is_static or len(shape) < 2 or shape[0] != 1:
            what = node.describe() if node is not None else f"input '{v.name}'"
            raise PdcError(f"{self.target}: {what}: the dataflow takes one sample of shape [1, C, H, W] or "
                           f"[1, N] (got {list(shape)}; bind the batch with --shape N=1)")
        if len(shape) == 2:
            return (shape[1], 1, 1)
        if len(shape) == 4:
            return tuple(shape[1:])
        if len(shape) == 3:
            return (shape[1], 1, shape[2])
        raise PdcError(f"{self.target}: '{v.name}' has rank {len(shape)}; the dataflow streams ranks 2 to 4")

    def stream_in(self, node, i: int) -> Stream:
        v = node.inputs[i]
        if v is None or v.is_const or v not in self.streams:
            self.fail(node, f"input {i} must be a tensor computed by the model (a constant operand is only "
                            f"supported as conv / dense weights and bias)")
        return self.streams[v]

    def new_stream(self, v: Value, image: tuple) -> Stream:
        s = Stream(_c_name(v.name), image, v)
        self.streams[v] = s
        return s

    def add(self, kind, node, inputs, out_value, image, **kw) -> Layer:
        out = self.new_stream(out_value, image)
        layer = Layer(kind, node.name or out_value.name, inputs, [out], **kw)
        self.layers.append(layer)
        return layer

    # ---- one node --------------------------------------------------------------------------------
    def node(self, node):
        op = node.op
        if any(v is not None and v.type.dtype.name not in ("float32",) for v in node.outputs):
            self.fail(node, "the FPGA dataflow computes a float32 model in fixed point (an integer or "
                            "pre-quantized model is not taken: give the float model with --calibration)")
        if op in PASS_THROUGH:
            self.streams[node.outputs[0]] = self.stream_in(node, 0)
        elif op in FLATTENING:
            self.flatten(node)
        elif op in ("conv", "fused_conv"):
            self.conv(node)
        elif op in ("matmul", "fused_matmul", "gemm", "fused_gemm"):
            self.dense(node)
        elif op in ("max_pool", "average_pool", "global_max_pool", "global_average_pool"):
            self.pool(node)
        elif op == "add":
            self.add_node(node)
        elif op == "concat":
            self.concat(node)
        elif op == "softmax":
            src = self.stream_in(node, 0)
            rank = len(src.value.type.shape)
            if node.attrs.get("axis", -1) % rank != (1 if rank == 4 else rank - 1):
                self.fail(node, "softmax runs over the channels of each pixel (axis 1 of [1, C, H, W], or the "
                                "last axis of [1, N])")
            self.add("softmax", node, [src], node.outputs[0], src.image)
        elif op in ("relu", "clip", "leaky_relu") or op in TABLE_ACTIVATIONS:
            src = self.stream_in(node, 0)
            layer = self.add("activation", node, [src], node.outputs[0], src.image)
            name = "gelu_tanh" if op == "gelu" and node.attrs.get("approximate") == "tanh" else op
            self.set_activation(layer, node, name, node.attrs, standalone=True)
        else:
            self.fail(node, f"op '{op}' has no FPGA layer (the dataflow maps conv, gemm / matmul with constant "
                            f"weights, pooling, add, concat, softmax, reshape / flatten and pointwise activations)")

    def flatten(self, node):
        src = self.stream_in(node, 0)
        out = node.outputs[0]
        shape = out.type.shape
        same_image = len(shape) == 4 and tuple(shape[1:]) == src.image
        flat = len(shape) == 2 and shape[0] == 1 and shape[1] == src.size
        if not (same_image or flat or src.pixels == 1 and self.image_of(out, node)[0] == src.size):
            self.fail(node, f"reshaping {list(src.value.type.shape)} to {list(shape)}: the dataflow keeps pixels "
                            f"in order, so it takes only flattening to [1, N] (or a no-op)")
        self.streams[out] = src  # the same pixels: only the logical shape changes

    def set_activation(self, layer: Layer, node, name: str, attrs: dict, standalone: bool):
        alpha = attrs.get("alpha" if standalone else "activation_alpha")
        beta = attrs.get(("gamma" if name == "selu" else "beta") if standalone else "activation_beta")
        if name == "clip":
            if standalone:
                lo, hi = (node.inputs[i] if len(node.inputs) > i else None for i in (1, 2))
                if any(b is not None and not b.is_const for b in (lo, hi)):
                    self.fail(node, "clip bounds must be constants")
                alpha = float(lo.data) if lo is not None else -math.inf
                beta = float(hi.data) if hi is not None else math.inf
            layer.activation, layer.alpha, layer.beta = "clip", float(alpha), float(beta)
        elif name == "leaky_relu":
            layer.activation, layer.alpha = "leaky_relu", float(0.01 if alpha is None else alpha)
        elif name in ("none", "relu"):
            layer.activation = name
        elif name in TABLE_ACTIVATIONS:
            layer.activation, layer.table, layer.table_name = "table", _table_function(name, alpha, beta), name
        else:
            self.fail(node, f"activation '{name}' has no FPGA layer")

    def epilogue(self, node, layer: Layer):
        """A fused node's residual add and activation: computed in the layer (relu, clip, leaky_relu and no
        residual) or as an add / activation layer after it."""
        act = node.attrs.get("activation", "none")
        residual = node.attrs.get("residual", "none")
        if residual == "none" and act in COMPUTED_ACTIVATIONS:
            self.set_activation(layer, node, act, node.attrs, standalone=False)
            return
        out = node.outputs[0]
        cur = layer.outputs[0]

        def retarget(value_name):  # the layer's result becomes an intermediate stream
            v = Value(f"{out.name}_{value_name}", out.type)
            del self.streams[out]
            cur.value, cur.name = v, _c_name(v.name)
            self.streams[v] = cur
            return cur
        res = self.stream_in(node, 3) if residual != "none" else None
        if residual == "before_activation":
            cur = retarget("linear")
            if act == "none":
                self.add("add", node, [cur, res], out, cur.image)
                return
            added = self.add("add", node, [cur, res], Value(f"{out.name}_sum", out.type), cur.image)
            cur = added.outputs[0]
            act_layer = self.add("activation", node, [cur], out, cur.image)
            self.set_activation(act_layer, node, act, node.attrs, standalone=False)
            return
        cur = retarget("linear")
        if residual == "none":
            act_layer = self.add("activation", node, [cur], out, cur.image)
            self.set_activation(act_layer, node, act, node.attrs, standalone=False)
            return
        mid = self.add("activation", node, [cur], Value(f"{out.name}_act", out.type), cur.image)
        self.set_activation(mid, node, act, node.attrs, standalone=False)
        self.add("add", node, [mid.outputs[0], res], out, cur.image)

    # ---- layers ------------------------------------------------------------------------------------
    def conv(self, node):
        a = node.attrs
        w, b = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
        if not w.is_const or (b is not None and not b.is_const):
            self.fail(node, "conv weights and bias must be constants")
        src = self.stream_in(node, 0)
        if len(src.value.type.shape) != 4 or w.data.ndim != 4:
            self.fail(node, f"a {w.data.ndim - 2}-D convolution: the dataflow's line buffers take images "
                            f"[1, C, H, W]")
        _, f, oh, ow = node.outputs[0].type.shape
        attrs = dict(self.window(node, src, list(w.data.shape[2:])), group=int(a.get("group", 1)))
        bias = b.data.astype(np.float64) if b is not None else np.zeros(f)
        layer = self.add("conv", node, [src], node.outputs[0], (f, oh, ow), attrs=attrs,
                         weights=w.data.astype(np.float64), bias=bias)
        self.epilogue(node, layer)

    def dense(self, node):
        a = node.attrs
        src = self.stream_in(node, 0)
        w = node.inputs[1]
        if not w.is_const:
            self.fail(node, "the weights (second operand) must be constants")
        x_shape = node.inputs[0].type.shape
        if len(x_shape) != 2 or x_shape[0] != 1:
            self.fail(node, f"the dense layer takes a vector [1, K] (got {list(x_shape)})")
        wt = w.data.astype(np.float64)
        if node.op in ("gemm", "fused_gemm"):
            if a.get("transA", 0):
                self.fail(node, "transA=1 on a single sample is not taken")
            wt = wt.T if a.get("transB", 0) else wt
            wt = wt * float(a.get("alpha", 1.0))
            c = node.inputs[2] if len(node.inputs) > 2 else None
            if c is not None and not c.is_const:
                self.fail(node, "the bias (C) must be a constant")
            n = wt.shape[1]
            bias = (np.broadcast_to(c.data.astype(np.float64), (1, n))[0] * float(a.get("beta", 1.0))
                    if c is not None else np.zeros(n))
        else:
            if wt.ndim != 2:
                self.fail(node, f"the weights must be a matrix [K, N] (got {list(wt.shape)})")
            b = node.inputs[2] if len(node.inputs) > 2 else None
            if b is not None and not b.is_const:
                self.fail(node, "the bias must be a constant")
            bias = b.data.astype(np.float64) if b is not None else np.zeros(wt.shape[1])
        # rows in the stream's order: pixel (h, w) channel c is NCHW element c * H * W + h * W + w
        c_, h_, w_ = src.image
        order = np.arange(src.size).reshape(c_, h_, w_).transpose(1, 2, 0).reshape(-1)
        layer = self.add("dense", node, [src], node.outputs[0], (wt.shape[1], 1, 1), weights=wt[order], bias=bias)
        self.epilogue(node, layer)

    def pool(self, node):
        a = node.attrs
        src = self.stream_in(node, 0)
        if len(src.value.type.shape) != 4:
            self.fail(node, "pooling takes an image [1, C, H, W]")
        c, h, w = src.image
        kind = "max_pool" if "max" in node.op else "avg_pool"
        if node.op.startswith("global"):
            attrs = dict(kernel=[h, w], strides=[1, 1], dilations=[1, 1], pads=[0, 0, 0, 0], count_pad=0)
        else:
            if len(node.outputs) > 1 and node.outputs[1] is not None:
                self.fail(node, "max_pool's Indices output is not taken")
            if a.get("ceil_mode", 0):
                self.fail(node, "ceil_mode=1 is not taken (pad the model instead)")
            attrs = dict(self.window(node, src, list(a["kernel_shape"])), count_pad=int(a.get("count_include_pad", 0)))
        _, _, oh, ow = node.outputs[0].type.shape
        self.add(kind, node, [src], node.outputs[0], (c, oh, ow), attrs=attrs)

    def window(self, node, src: Stream, kernel: list) -> dict:
        """kernel, strides, dilations and pads [top, left, bottom, right] of a 2-D window (auto_pad resolved;
        the bottom / right padding only as far as the last window reaches)."""
        from ...ir.ops.nn_common import spatial_attrs, window_geometry
        if len(kernel) != 2:
            self.fail(node, f"a {len(kernel)}-D window: the dataflow's line buffers are 2-D")
        strides, dilations, pads = spatial_attrs(node.attrs, 2)
        size = list(src.image[1:])
        out, begin = window_geometry(size, kernel, strides, dilations, pads, node.attrs.get("auto_pad", "NOTSET"))
        end = [max(0, (o - 1) * s + (k - 1) * d + 1 - n - b)
               for o, s, k, d, n, b in zip(out, strides, kernel, dilations, size, begin)]
        return dict(kernel=kernel, strides=strides, dilations=dilations, pads=list(begin) + end)

    def add_node(self, node):
        x, y = node.inputs
        if x.type.shape != y.type.shape or x.type.shape != node.outputs[0].type.shape:
            self.fail(node, "add takes two tensors of the same shape (no broadcasting in the dataflow)")
        a, b = self.stream_in(node, 0), self.stream_in(node, 1)
        if a.image != b.image:
            self.fail(node, "the two operands stream in different pixel layouts")
        self.add("add", node, [a, b], node.outputs[0], a.image)

    def concat(self, node):
        srcs = [self.stream_in(node, i) for i in range(len(node.inputs))]
        rank = len(node.outputs[0].type.shape)
        axis = node.attrs["axis"] % rank
        if axis != 1 or len({s.image[1:] for s in srcs}) != 1:
            self.fail(node, "concat joins channels (axis 1) of tensors with the same spatial size")
        c = sum(s.channels for s in srcs)
        self.add("concat", node, srcs, node.outputs[0], (c,) + srcs[0].image[1:])

    def fan_out(self):
        """A clone layer for each stream read by several layers (or read and also a graph output)."""
        readers: dict[int, list] = {}
        for layer in self.layers:
            for i, s in enumerate(layer.inputs):
                readers.setdefault(id(s), []).append((layer, i))
        outputs = {id(self.streams[v]) for v in self.graph.outputs}
        for s in dict.fromkeys(s for layer in self.layers for s in layer.inputs):
            uses = readers[id(s)] + ([None] if id(s) in outputs else [])
            if len(uses) < 2:
                continue
            copies = [Stream(f"{s.name}_c{k}", s.image, s.value) for k in range(len(uses))]
            producer = [i for i, layer in enumerate(self.layers) if s in layer.outputs]
            self.layers.insert(producer[0] + 1 if producer else 0, Layer("clone", f"{s.name}_clone", [s], copies))
            for use, copy in zip(uses, copies):
                if use is not None:
                    use[0].inputs[use[1]] = copy
                    continue
                for v in self.graph.outputs:
                    if self.streams[v] is s:
                        self.streams[v] = copy


LAYER_OPS = ("conv", "fused_conv", "matmul", "fused_matmul", "gemm", "fused_gemm", "max_pool", "average_pool",
             "global_max_pool", "global_average_pool", "add", "concat", "relu", "clip", "leaky_relu", "softmax")


def layer_ops() -> list[str]:
    """The IR ops the planner maps to layers (pdc targets --coverage)."""
    return sorted({*LAYER_OPS, *TABLE_ACTIVATIONS, *PASS_THROUGH, *FLATTENING} - {"gelu_tanh"})


def split_values(node, args: list) -> dict:
    """The float values of the streams `epilogue` adds inside a fused node (named as it names them), from
    the node's inputs: what calibration needs to type them."""
    act, residual = node.attrs.get("activation", "none"), node.attrs.get("residual", "none")
    if node.op not in ("fused_conv", "fused_gemm", "fused_matmul") or (
            residual == "none" and act in COMPUTED_ACTIVATIONS):
        return {}
    from ...ir.interpreter import run_node
    from ...ir.ops.fused_conv import apply_activation
    from ...ir.graph import Node
    attrs = {k: v for k, v in node.attrs.items() if not k.startswith("activation")}
    attrs.update(activation="none", residual="none")
    linear = run_node(Node(node.op, node.inputs[:3], node.outputs, attrs), args[:3])[0]
    name = node.outputs[0].name
    out = {f"{name}_linear": linear}
    if residual == "before_activation" and act != "none":
        out[f"{name}_sum"] = linear + args[3]
    elif residual == "after_activation":
        out[f"{name}_act"] = apply_activation(linear, node.attrs)
    return out


def _table_function(name: str, alpha, beta) -> Callable:
    if name == "hard_sigmoid":
        a, b = (0.2 if alpha is None else alpha), (0.5 if beta is None else beta)
        return lambda x: np.clip(a * x + b, 0.0, 1.0)
    if name == "elu":
        a = 1.0 if alpha is None else alpha
        return lambda x: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
    if name == "selu":
        a = 1.67326319217681884765625 if alpha is None else alpha
        g = 1.05070102214813232421875 if beta is None else beta
        return lambda x: g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
    return TABLE_ACTIVATIONS[name]


def _c_name(name: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in name)
    return "t_" + out
