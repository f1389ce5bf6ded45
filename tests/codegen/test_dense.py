"""x86 kernels of the dense ops: conv / fused_conv (every path: padded-band GEMM, small-image
transposed GEMM, im2col GEMM, depthwise, generic loops), conv_transpose, conv_integer, gemm /
fused_gemm, matmul / fused_matmul and matmul_integer.

Cases are batched into multi-node models (one compile each): every node reads its own graph
inputs and every output is a graph output. Every output is compared element by element
(tolerances.KERNEL; integers exactly) with the reference interpreter and with an oracle that is not
pdc's (tests/oracles.py): ONNX Runtime, or ONNX's reference evaluator where ONNX Runtime has no
kernel (float64 / float16 convolutions, some integer products). The fused ops, which ONNX lacks,
are also checked against their ONNX spelling (the base op, Add, the activation) on ONNX Runtime.
Also: the AVX2 target, AddressSanitizer + UBSan, and -Wall -Wextra on the generated code.
"""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from oracles import check_outputs, node_by_node, onnxruntime_run
from pdc.compiler import compile_bundle
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import Graph, Node, TensorType, Value, dtypes, run_graph
from pdc.ir.errors import UnsupportedError
from tolerances import KERNEL, assert_zoo_close

rng = np.random.default_rng(11)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def weights(*shape, fan_in: int):
    """Weights scaled by 1 / sqrt(fan-in), so that products stay O(1): tolerances.KERNEL's atol is
    for outputs of that size."""
    return randn(*shape) * np.float32(1 / np.sqrt(fan_in))


class Net:
    """A multi-node ONNX model: every node gets fresh inputs; all outputs are graph outputs."""

    def __init__(self):
        self.nodes, self.feeds, self.inits, self.outputs = [], {}, [], []

    def inp(self, a) -> str:
        name = f"i{len(self.feeds) + len(self.inits)}"
        self.feeds[name] = np.asarray(a)
        return name

    def const(self, a) -> str:
        name = f"i{len(self.feeds) + len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def add(self, op, ins, **attrs) -> str:
        out = f"o{len(self.outputs)}"
        self.outputs.append(out)
        names = ["" if i is None else i if isinstance(i, str) else self.inp(i) for i in ins]
        self.nodes.append(helper.make_node(op, names, [out], **attrs))
        return out

    def model(self, opset=21) -> onnx.ModelProto:
        ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for k, v in self.feeds.items()]
        outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in self.outputs]
        g = helper.make_graph(self.nodes, "dense", ins, outs, self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _compare(got: dict, want: dict, names, what: str):
    for k in names:
        g, w = got[k], np.asarray(want[k])
        assert g.dtype == w.dtype, f"{k} ({what}): dtype {g.dtype} vs {w.dtype}"
        KERNEL.check(g, w, f"{k} ({what})")


def check(net: Net, tmp_path, target="x86", threads=2, opset=21, opt_level=0, numpy=None):
    """Compiles the net; every output against the reference interpreter and the independent oracle
    (`numpy`: outputs computed by NumPy in the test, where neither ONNX oracle runs the node)."""
    model = net.model(opset)
    folder = str(tmp_path / f"bundle_{target}_{threads}_{opt_level}")
    mod = pdc.compile(model, target=target, out_dir=folder, threads=threads, opt_level=opt_level)
    got = mod.run(net.feeds)
    ref = run_graph(import_onnx(model, "dense"), net.feeds)
    _compare(got, ref, net.outputs, "vs reference")
    numpy = numpy or {}
    others = [o for o in net.outputs if o not in numpy]
    check_outputs(got, node_by_node(model, net.feeds, skip=numpy), KERNEL, others, target)
    _compare(got, numpy, list(numpy), "vs NumPy")
    return got


# ---- conv ----------------------------------------------------------------------------------------------
def conv_cases(net: Net, const_w=True):
    def conv(xs, ws, bias=True, **attrs):
        w = randn(*ws) * np.float32(1 / np.sqrt(np.prod(ws[1:])))
        ins = [randn(*xs), net.const(w) if const_w else w]
        if bias:
            b = randn(ws[0])
            ins.append(net.const(b) if const_w else b)
        net.add("Conv", ins, **attrs)

    conv((1, 8, 10, 10), (16, 8, 3, 3), pads=[1, 1, 1, 1])  # padded band
    conv((1, 16, 30, 30), (24, 16, 3, 3), bias=False)  # no padding, no bias
    conv((2, 6, 9, 11), (4, 3, 3, 2), group=2, strides=[2, 1], dilations=[1, 2], pads=[1, 0, 2, 1])
    conv((1, 3, 40, 40), (8, 3, 7, 7), strides=[2, 2], pads=[3, 3, 3, 3])  # first-layer shape
    conv((1, 8, 17, 19), (10, 8, 3, 3), strides=[3, 2], pads=[0, 1, 2, 0])
    conv((1, 5, 12, 12), (7, 5, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2])
    conv((1, 5, 12, 13), (7, 5, 4, 4), auto_pad="SAME_LOWER")
    conv((1, 5, 12, 13), (7, 5, 2, 3), auto_pad="VALID", dilations=[2, 3])
    conv((1, 64, 7, 7), (96, 64, 3, 3), pads=[1, 1, 1, 1])  # small image: transposed GEMM
    conv((2, 32, 14, 14), (64, 16, 3, 3), pads=[1, 1, 1, 1], group=2)  # transposed, groups, batch
    conv((1, 96, 14, 14), (64, 96, 3, 3), pads=[1, 1, 1, 1])  # transposed, K blocks of whole channels
    conv((1, 64, 14, 14), (48, 64, 3, 3), pads=[1, 1, 1, 1], strides=[2, 2])  # transposed, stride 2
    conv((1, 48, 7, 7), (80, 48, 1, 1))  # pointwise, small image
    conv((1, 24, 16, 16), (40, 24, 1, 1))  # pointwise, read in place (tail panel copied)
    conv((2, 16, 10, 10), (24, 4, 1, 1), group=4)  # pointwise, groups, batch
    conv((1, 24, 16, 16), (40, 24, 1, 1), strides=[2, 2])  # strided pointwise
    conv((1, 80, 9, 9), (20, 80, 3, 3), pads=[1, 1, 1, 1])  # K = 720: K blocks in the GEMM paths
    conv((1, 16, 20, 20), (16, 1, 3, 3), group=16, pads=[1, 1, 1, 1])  # depthwise, flat
    conv((1, 16, 20, 21), (16, 1, 3, 3), group=16, pads=[1, 1, 1, 1], strides=[2, 2])  # depthwise s2
    conv((1, 16, 7, 7), (16, 1, 3, 3), group=16, pads=[1, 1, 1, 1])
    conv((1, 16, 14, 14), (16, 1, 3, 3), group=16, pads=[1, 1, 1, 1], strides=[2, 2])  # s2, phases
    conv((2, 12, 15, 17), (12, 1, 5, 5), group=12, pads=[2, 1, 2, 3], strides=[2, 1], dilations=[1, 2])
    conv((1, 8, 40, 9), (8, 1, 3, 3), group=8, strides=[3, 3])  # depthwise, generic rows
    conv((1, 8, 9, 9), (16, 1, 3, 3), group=8, pads=[1, 1, 1, 1])  # depthwise multiplier 2
    conv((1, 4, 37), (6, 4, 5), pads=[2, 1], strides=[2])  # 1-D
    conv((1, 8, 50), (8, 1, 3), group=8, pads=[1, 1])  # 1-D depthwise
    conv((1, 3, 5, 6, 7), (4, 3, 3, 2, 3), pads=[1, 0, 1, 1, 1, 0], strides=[1, 2, 1])  # 3-D
    conv((1, 4, 4, 5, 6), (4, 2, 2, 2, 2), group=2, dilations=[2, 1, 2])  # 3-D, groups


def test_conv_const_weights(tmp_path):
    net = Net()
    conv_cases(net)
    check(net, tmp_path)


def test_conv_runtime_weights(tmp_path):
    net = Net()
    conv_cases(net, const_w=False)
    check(net, tmp_path)


def test_conv_single_thread_and_avx2(tmp_path):
    net = Net()
    conv_cases(net)
    net.add("Gemm", [randn(7, 5), net.const(randn(33, 5)), net.const(randn(33))], transB=1, alpha=0.5)
    net.add("Gemm", [randn(1, 300), net.const(weights(300, 70, fan_in=300)), net.const(randn(70))])
    net.add("MatMul", [randn(2, 1, 3, 4), randn(5, 4, 6)])
    net.add("MatMul", [randn(2, 9, 40), net.const(weights(40, 20, fan_in=40))])
    check(net, tmp_path, threads=1)
    check(net, tmp_path, target="x86-avx2")


def test_conv_large_layers(tmp_path):
    """Layer shapes of the ResNets and MobileNetV2, big enough to be split over threads."""
    net = Net()
    for xs, ws, attrs in [((1, 64, 56, 56), (64, 64, 3, 3), dict(pads=[1, 1, 1, 1])),
                          ((1, 256, 14, 14), (256, 256, 3, 3), dict(pads=[1, 1, 1, 1])),
                          ((1, 512, 7, 7), (512, 512, 3, 3), dict(pads=[1, 1, 1, 1])),
                          ((1, 512, 7, 7), (1024, 512, 1, 1), {}),
                          ((1, 256, 28, 28), (512, 256, 1, 1), dict(strides=[2, 2])),
                          ((1, 96, 56, 56), (96, 1, 3, 3), dict(group=96, pads=[1, 1, 1, 1], strides=[2, 2])),
                          ((1, 3, 112, 112), (32, 3, 3, 3), dict(pads=[1, 1, 1, 1], strides=[2, 2]))]:
        net.add("Conv", [randn(*xs), net.const(weights(*ws, fan_in=int(np.prod(ws[1:])))), net.const(randn(ws[0]))],
                **attrs)
    check(net, tmp_path)


def test_conv_other_dtypes(tmp_path):
    """float64 within 1e-10 and float16 within a few units of its rounding, against ONNX's reference
    evaluator (ONNX Runtime has no float64 Conv; float16 is checked against a float64 convolution)."""
    net = Net()
    for dt in (np.float64, np.float16):
        net.add("Conv", [randn(1, 4, 6, 7, dtype=dt), randn(6, 2, 3, 3, dtype=dt), randn(6, dtype=dt)],
                group=2, pads=[1, 0, 1, 2], strides=[1, 2])
    check(net, tmp_path)


# ---- conv_transpose / conv_integer --------------------------------------------------------------------
def test_conv_transpose(tmp_path):
    net = Net()

    def ct(xs, ws, bias=True, **attrs):
        ins = [randn(*xs), randn(*ws)]
        if bias:
            ins.append(randn(ws[1] * attrs.get("group", 1)))
        net.add("ConvTranspose", ins, **attrs)

    ct((1, 3, 5, 6), (3, 4, 3, 3))
    ct((2, 4, 5, 5), (4, 3, 3, 2), strides=[2, 3], pads=[1, 0, 1, 1], output_padding=[1, 2], bias=False)
    ct((1, 4, 4, 4), (4, 2, 3, 3), group=2, dilations=[2, 1], strides=[2, 2])
    ct((1, 2, 5, 5), (2, 3, 3, 3), strides=[2, 2], output_shape=[10, 11])
    ct((1, 2, 5, 5), (2, 3, 4, 4), strides=[2, 2], auto_pad="SAME_UPPER")
    ct((1, 2, 5, 5), (2, 3, 4, 4), strides=[2, 2], auto_pad="SAME_LOWER")
    ct((1, 3, 7), (3, 2, 3), strides=[3], pads=[1, 2])  # 1-D
    ct((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), strides=[2, 1, 2])  # 3-D
    check(net, tmp_path)


def test_conv_integer(tmp_path):
    net = Net()
    u8 = lambda *s: rng.integers(0, 256, s).astype(np.uint8)  # noqa: E731
    i8 = lambda *s: rng.integers(-128, 128, s).astype(np.int8)  # noqa: E731
    net.add("ConvInteger", [u8(1, 3, 6, 7), u8(4, 3, 3, 3), np.array(17, np.uint8), np.array(5, np.uint8)],
            pads=[1, 1, 1, 1])
    net.add("ConvInteger", [i8(2, 4, 5, 5), i8(6, 2, 2, 3), np.array(-3, np.int8), i8(6)], group=2, strides=[2, 1])
    net.add("ConvInteger", [u8(1, 2, 8), u8(3, 2, 3)], dilations=[2])
    check(net, tmp_path, opset=10)


# ---- gemm / matmul -------------------------------------------------------------------------------------
def test_gemm(tmp_path):
    net = Net()
    for ta, tb in ((0, 0), (1, 0), (0, 1), (1, 1)):
        a = randn(7, 5) if not ta else randn(5, 7)
        b = randn(5, 33) if not tb else randn(33, 5)
        net.add("Gemm", [a, b, randn(33)], transA=ta, transB=tb)  # runtime B
        net.add("Gemm", [a, net.const(b), net.const(randn(1, 33))], transA=ta, transB=tb, alpha=0.5)  # packed B
    net.add("Gemm", [randn(6, 9), randn(9, 20), randn(6, 1)], alpha=1.5, beta=-2.0)  # C per row
    net.add("Gemm", [randn(6, 9), randn(9, 20), randn(6, 20)], beta=0.25)  # full C
    net.add("Gemm", [randn(6, 9), randn(9, 20), np.array(3.0, np.float32)])  # scalar C
    net.add("Gemm", [randn(6, 9), randn(9, 20), randn(6, 20)])  # full C, beta 1: the residual slot
    net.add("Gemm", [randn(6, 9), randn(9, 20), randn(6, 20)], beta=0.0)
    net.add("Gemm", [randn(6, 9), randn(9, 20)])
    net.add("Gemm", [randn(6, 9), net.const(randn(9, 20)), net.const(randn(6, 20))], beta=0.5)  # const C
    net.add("Gemm", [net.const(randn(6, 9)), randn(9, 20), net.const(randn(6, 1))], alpha=2.0)  # const A
    net.add("Gemm", [randn(1, 700), net.const(weights(1000, 700, fan_in=700)), net.const(randn(1000))],
            transB=1)  # GEMV
    net.add("Gemm", [randn(40, 300), weights(300, 70, fan_in=300), randn(70)])  # blocks, threads
    check(net, tmp_path)


def test_matmul(tmp_path):
    net = Net()
    net.add("MatMul", [randn(5, 7), randn(7, 9)])
    net.add("MatMul", [randn(7), randn(7, 9)])  # 1-D x 2-D
    net.add("MatMul", [randn(5, 7), randn(7)])  # 2-D x 1-D
    net.add("MatMul", [randn(7), randn(7)])  # 1-D x 1-D
    net.add("MatMul", [randn(2, 1, 3, 4), randn(5, 4, 6)])  # broadcast batch
    net.add("MatMul", [randn(3, 4), randn(2, 4, 6)])
    net.add("MatMul", [randn(2, 3, 5, 8), net.const(randn(8, 20))])  # batch folded into M
    net.add("MatMul", [randn(2, 3, 5, 8), net.const(randn(3, 8, 20))])  # packed, batched B
    net.add("MatMul", [net.const(randn(4, 6)), randn(3, 6, 17)])  # packed A
    net.add("MatMul", [randn(1, 2048), net.const(weights(2048, 100, fan_in=2048))])  # GEMV, K blocks
    net.add("MatMul", [randn(64, 200), weights(200, 96, fan_in=200)])
    for dt in (np.float64, np.int32, np.int64):
        a = randn(2, 3, 4).astype(dt) if dt == np.float64 else rng.integers(-9, 9, (2, 3, 4)).astype(dt)
        b = randn(4, 5).astype(dt) if dt == np.float64 else rng.integers(-9, 9, (4, 5)).astype(dt)
        net.add("MatMul", [a, b])
    check(net, tmp_path)


def test_matmul_integer(tmp_path):
    net = Net()
    u8 = lambda *s: rng.integers(0, 256, s).astype(np.uint8)  # noqa: E731
    i8 = lambda *s: rng.integers(-128, 128, s).astype(np.int8)  # noqa: E731
    net.add("MatMulInteger", [u8(4, 6), u8(6, 5), np.array(12, np.uint8), np.array(200, np.uint8)])
    a, b, za, zb = u8(4, 6), i8(6, 5), u8(4), i8(5)
    per_row = net.add("MatMulInteger", [a, b, za, zb])  # per-row / per-column zero points
    net.add("MatMulInteger", [i8(2, 3, 6), i8(6, 5)])
    net.add("MatMulInteger", [u8(6), u8(2, 6, 3), None, np.array(1, np.uint8)])
    # per-row zero points: ONNX Runtime refuses them, ONNX's reference does not broadcast them
    exact = (a.astype(np.int32) - za.astype(np.int32)[:, None]) @ (b.astype(np.int32) - zb.astype(np.int32))
    check(net, tmp_path, opset=10, numpy={per_row: exact})


# ---- fused ops (pdc graphs vs the reference interpreter) ------------------------------------------------
ACTS = [("relu", None, None), ("clip", 0.0, 6.0), ("clip", -np.inf, 0.5), ("leaky_relu", 0.1, None),
        ("sigmoid", None, None), ("hard_sigmoid", 0.2, 0.5), ("hard_swish", None, None), ("gelu", None, None),
        ("gelu_tanh", None, None), ("tanh", None, None), ("none", None, None)]


def _fused(op, ins: list, attrs: dict, out_shape, graph: Graph, feeds: dict):
    """Adds one fused node to `graph`: numpy arrays become graph inputs, (array,) tuples constants."""
    vals = []
    for a in ins:
        if a is None:
            vals.append(None)
            continue
        is_const = isinstance(a, tuple)
        arr = a[0] if is_const else a
        v = Value(f"v{len(graph.inputs) + len(graph.constants) + len(vals)}_{len(graph.nodes)}",
                  TensorType(dtypes.from_numpy(arr.dtype), arr.shape), arr if is_const else None)
        (graph.constants if is_const else graph.inputs).append(v)
        if not is_const:
            feeds[v.name] = arr
        vals.append(v)
    y = Value(f"y{len(graph.nodes)}", TensorType(dtypes.float32, tuple(out_shape)))
    graph.nodes.append(Node(op, vals, [y], attrs, f"n{len(graph.nodes)}"))
    graph.outputs.append(y)


def _epilogues():
    for i, (act, al, be) in enumerate(ACTS):
        attrs = {"activation": act}
        if al is not None:
            attrs["activation_alpha"] = float(al)
        if be is not None:
            attrs["activation_beta"] = float(be)
        if act == "clip" and be is None:
            attrs["activation_beta"] = float("inf")
        residual = ("none", "before_activation", "after_activation")[i % 3]
        attrs["residual"] = residual
        yield attrs


def _run_fused(g: Graph, feeds: dict, tmp_path, threads=2, target="x86"):
    folder = str(tmp_path / f"fused_{target}")
    compile_bundle(g, folder, target=target, threads=threads, opt_level=0)
    got = pdc.load(folder).run(feeds)
    want = run_graph(g, feeds)
    _compare(got, want, [v.name for v in g.outputs], "vs reference")
    _compare(got, onnx_spelling_outputs(g, feeds), [v.name for v in g.outputs], "vs ONNX Runtime")


# the fused ops' activations as ONNX nodes: (op, attributes or bound inputs from alpha / beta)
ONNX_ACTIVATIONS = {
    "relu": lambda a, b: ("Relu", {}, ()), "sigmoid": lambda a, b: ("Sigmoid", {}, ()),
    "tanh": lambda a, b: ("Tanh", {}, ()), "hard_swish": lambda a, b: ("HardSwish", {}, ()),
    "gelu": lambda a, b: ("Gelu", {}, ()), "gelu_tanh": lambda a, b: ("Gelu", {"approximate": "tanh"}, ()),
    "leaky_relu": lambda a, b: ("LeakyRelu", {"alpha": a}, ()),
    "hard_sigmoid": lambda a, b: ("HardSigmoid", {"alpha": a, "beta": b}, ()),
    "clip": lambda a, b: ("Clip", {}, (np.float32(a), np.float32(b))),
}


def onnx_spelling(node: Node) -> tuple[onnx.ModelProto, dict]:
    """A fused node written as ONNX ops (the base op, + bias, + residual, activation): a model whose
    inputs are the node's operands (constants as initializers)."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]
    inputs, inits, feeds_of = [], [], {}
    for name, v in zip(names, node.inputs):
        if v is None:
            continue
        if v.data is not None:
            inits.append(numpy_helper.from_array(np.asarray(v.data), name))
        else:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(v.type.shape)))
            feeds_of[name] = v.name
    a = node.attrs
    base = {"fused_conv": "Conv", "fused_gemm": "Gemm", "fused_matmul": "MatMul"}[node.op]
    keep = {"fused_conv": ("strides", "pads", "dilations", "group", "auto_pad", "kernel_shape"),
            "fused_gemm": ("alpha", "beta", "transA", "transB"), "fused_matmul": ()}[node.op]
    three = [n for n in names[:3] if n] if node.op != "fused_matmul" else names[:2]
    nodes = [helper.make_node(base, three, ["y0"], **{k: a[k] for k in keep if a.get(k) is not None})]
    y = "y0"
    if node.op == "fused_matmul" and names[2]:
        nodes.append(helper.make_node("Add", [y, names[2]], ["y1"]))
        y = "y1"
    residual = names[3] if len(names) > 3 else ""
    if residual and a["residual"] == "before_activation":
        nodes.append(helper.make_node("Add", [y, residual], ["y2"]))
        y = "y2"
    if a["activation"] != "none":
        op, attrs, bounds = ONNX_ACTIVATIONS[a["activation"]](a.get("activation_alpha"), a.get("activation_beta"))
        ins = [y]
        for k, bound in enumerate(bounds):
            inits.append(numpy_helper.from_array(np.asarray(bound), f"bound{k}"))
            ins.append(f"bound{k}")
        nodes.append(helper.make_node(op, ins, ["y3"], **attrs))
        y = "y3"
    if residual and a["residual"] == "after_activation":
        nodes.append(helper.make_node("Add", [y, residual], ["y4"]))
        y = "y4"
    graph = helper.make_graph(nodes, "fused", inputs, [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), feeds_of


def onnx_spelling_outputs(g: Graph, feeds: dict) -> dict:
    """Every fused node's output by ONNX Runtime, on the node's ONNX spelling."""
    out = {}
    for node in g.nodes:
        model, feeds_of = onnx_spelling(node)
        (out[node.outputs[0].name],) = onnxruntime_run(model, {k: feeds[v] for k, v in feeds_of.items()})
    return out


CONV_SHAPES = [((1, 16, 12, 12), (24, 16, 3, 3), dict(pads=[1, 1, 1, 1])),  # padded band
               ((1, 64, 7, 7), (64, 64, 3, 3), dict(pads=[1, 1, 1, 1])),  # transposed
               ((1, 16, 9, 9), (16, 1, 3, 3), dict(group=16, pads=[1, 1, 1, 1])),  # depthwise flat
               ((1, 16, 9, 10), (16, 1, 3, 3), dict(group=16, strides=[3, 2])),  # depthwise rows
               ((1, 16, 10, 10), (16, 1, 3, 3), dict(group=16, pads=[1, 1, 1, 1], strides=[2, 2])),
               ((1, 12, 6, 6), (20, 12, 1, 1), {}),  # pointwise GEMM
               ((1, 3, 3, 5, 6), (4, 3, 3, 2, 3), dict(pads=[1, 0, 1, 1, 1, 0]))]  # 3-D: im2col GEMM


def test_fused_conv(tmp_path):
    g, feeds = Graph("fused"), {}
    for i, attrs in enumerate(_epilogues()):
        for j, (xs, ws, conv_attrs) in enumerate(CONV_SHAPES):
            if (i + j) % 2:  # every path sees every epilogue across the two parities of i
                continue
            ref = run_graph_conv_shape(xs, ws, conv_attrs)
            ins = [randn(*xs), (randn(*ws) * np.float32(0.3),), (randn(ws[0]),) if j % 3 else None]
            ins.append(randn(*ref) if attrs["residual"] != "none" else None)
            _fused("fused_conv", ins, {**conv_attrs, **attrs}, ref, g, feeds)
    _run_fused(g, feeds, tmp_path)


def run_graph_conv_shape(xs, ws, attrs):
    from pdc.ir.ops.nn_common import resolve_window
    _, _, _, out, _ = resolve_window(xs, list(ws[2:]), attrs)
    return (xs[0], ws[0], *out)


def test_fused_gemm_matmul(tmp_path):
    g, feeds = Graph("fused"), {}
    for i, attrs in enumerate(_epilogues()):
        r = randn(6, 40) if attrs["residual"] != "none" else None
        const_b = i % 2 == 0
        b = randn(9, 40)
        _fused("fused_gemm", [randn(6, 9), (b,) if const_b else b, (randn(40),), r],
               {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, **attrs}, (6, 40), g, feeds)
        r = randn(2, 5, 24) if attrs["residual"] != "none" else None
        bm = randn(11, 24)
        _fused("fused_matmul", [randn(2, 5, 11), (bm,) if const_b else bm, (randn(24),) if i % 3 else None, r],
               attrs, (2, 5, 24), g, feeds)
    _run_fused(g, feeds, tmp_path)
    _run_fused(g, feeds, tmp_path, target="x86-avx2")


def test_unsupported_transpose_dtype(tmp_path):
    net = Net()
    net.add("ConvTranspose", [randn(1, 2, 3, 3, dtype=np.float16), randn(2, 2, 2, 2, dtype=np.float16)])
    with pytest.raises(UnsupportedError, match="ConvTranspose"):
        pdc.compile(net.model(), target="x86", out_dir=str(tmp_path / "b"), opt_level=0)


# ---- whole models, sanitizers, warnings ------------------------------------------------------------------
@pytest.mark.zoo
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_zoo_models(name, zoo, tmp_path):
    from zoo import make_feeds, run_onnxruntime
    path = zoo(name)
    feeds = make_feeds(path)
    mod = pdc.compile(path, target="x86", out_dir=str(tmp_path / "b"), threads=2, opt_level=2)
    got = mod.run(feeds)
    for k, w in run_onnxruntime(path, feeds):
        assert_zoo_close(got[k], w, k)


def test_sanitizers(tmp_path):
    """Every conv path and the matrix products under AddressSanitizer and UBSan (2 threads)."""
    from pdc.harness import build_harness, run_harness
    from pdc.targets.x86 import c_compiler
    net = Net()
    conv_cases(net)
    net.add("Gemm", [randn(7, 5), net.const(randn(5, 33)), net.const(randn(33))])
    net.add("MatMul", [randn(2, 1, 3, 4), randn(5, 4, 6)])
    net.add("ConvTranspose", [randn(1, 2, 5, 5), randn(2, 3, 3, 3)], strides=[2, 2])
    model = net.model()
    folder = str(tmp_path / "asan")
    compile_bundle(model, folder, target="x86", threads=2, opt_level=0, build=False)
    flags = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")
    exe = build_harness(folder, c_compiler(), ["-O1", "-march=native", "-std=gnu11"], extra=flags)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    got = run_harness([exe], folder, manifest, net.feeds, env=env)
    ref = run_graph(import_onnx(model, "dense"), net.feeds)
    _compare(got, ref, net.outputs, "sanitized vs reference")


def test_no_warnings(tmp_path):
    net = Net()
    conv_cases(net)
    net.add("Gemm", [randn(7, 5), net.const(randn(5, 33)), net.const(randn(33))])
    net.add("MatMul", [randn(2, 1, 3, 4), randn(5, 4, 6)])
    folder = str(tmp_path / "w")
    compile_bundle(net.model(), folder, target="x86", opt_level=0, build=False)
    for f in sorted(os.listdir(folder)):
        if f.startswith("model_kernels_") and f.endswith(".c"):
            r = subprocess.run(["gcc", "-O2", "-march=native", "-std=gnu11", "-Wall", "-Wextra", "-I.", "-Iruntime",
                                "-fsyntax-only", f], cwd=folder, capture_output=True, text=True)
            assert r.returncode == 0 and "warning" not in r.stderr, r.stderr[:3000]
