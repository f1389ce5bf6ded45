"""x86 C kernels of the sequence / fused family: LSTM, GRU, RNN, fused_elementwise, Attention,
fused_attention, Einsum and the NHWC layout ops, against the reference interpreter and an oracle that
is not pdc's (tests/oracles.py: ONNX Runtime, or ONNX's reference evaluator where ONNX Runtime lacks
the op, dtype or layout; fused graphs against ONNX Runtime on the ONNX model they were fused from).
Independent nodes are batched into one model so that one compile covers many attribute combinations;
the zoo's recurrent and transformer models run compiled at -O2 against ONNX Runtime. Element by
element, with tolerances from tests/tolerances.py."""
import json
import os
import re

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from oracles import check_against_oracles
from pdc.compiler import compile_bundle
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph
from pdc.module import Module
from pdc.passes import PassManager, parse_pipeline
from tolerances import ACCUMULATED, IDENTICAL, KERNEL, REDUCED, ROUNDED, Tolerance, assert_zoo_close
from zoo import make_feeds, run_onnxruntime

BF16 = np.dtype(ml_dtypes.bfloat16)
RNG = np.random.default_rng(7)


def randn(*shape, dtype=np.float32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


class Net:
    """Independent nodes over shared inputs; array operands become initializers (constants)."""

    def __init__(self, **inputs):
        self.inputs = dict(inputs)
        self.consts: dict = {}
        self.nodes: list = []
        self.outputs: list = []

    def add(self, op, ins, n_out=1, **attrs):
        names = []
        for a in ins:
            if isinstance(a, str):
                names.append(a)
            else:
                names.append(f"const{len(self.consts)}")
                self.consts[names[-1]] = np.asarray(a)
        outs = [f"y{len(self.outputs) + k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op, names, outs, **attrs))
        self.outputs += outs
        return outs

    def model(self, opset=22, out_type=0):
        vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in self.inputs.items()]
        inits = [numpy_helper.from_array(a, n) for n, a in self.consts.items()]
        outs = [helper.make_tensor_value_info(o, out_type, None) for o in self.outputs]
        g = helper.make_graph(self.nodes, "t", vis, outs, inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def run_both(model_or_graph, feeds, tmp_path, opt_level=0):
    """(compiled outputs, reference outputs, names); a Graph is compiled as given."""
    g = model_or_graph if hasattr(model_or_graph, "nodes") else import_onnx(model_or_graph)
    want = run_graph(g, feeds)
    folder = str(tmp_path / f"b{len(list(tmp_path.iterdir()))}")
    compile_bundle(model_or_graph, folder, opt_level=opt_level, c_opt="-O2")
    got = Module(folder).run(feeds)
    names = [v.name for v in g.outputs]
    return [got[n] for n in names], [np.asarray(want[n]) for n in names], names


def assert_close(got, want, names, tolerance: Tolerance = ACCUMULATED):
    for g, w, n in zip(got, want, names):
        assert g.dtype == w.dtype and g.shape == w.shape, (n, g.dtype, g.shape, w.dtype, w.shape)
        tolerance.check(g, w, n)


def check_oracles(model, feeds, got, names, tolerance: Tolerance = ACCUMULATED, **routing):
    """Compiled outputs (in `names` order) against the independent oracles on the ONNX model."""
    check_against_oracles(dict(zip(names, got)), model, feeds, tolerance, names, **routing)


# ---- recurrent layers ---------------------------------------------------------------------------
def rnn_params(op, D, I, H):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    return randn(D, G * H, I, scale=0.5), randn(D, G * H, H, scale=0.5), randn(D, 2 * G * H, scale=0.5)


def add_rnn(net, op, D, I, H, attrs, *, bias=True, seq="", init=False, peep=False, n_out=None):
    W, R, B = rnn_params(op, D, I, H)
    N = net.inputs["x"].shape[1]
    ins = ["x", W, R, B if bias else "", seq]
    if init:
        ins.append(randn(D, N, H))
        if op == "LSTM":
            ins.append(randn(D, N, H))
    if peep:
        ins += [""] * (7 - len(ins)) + [randn(D, 3 * H, scale=0.5)]
    while isinstance(ins[-1], str) and ins[-1] == "":
        ins.pop()
    n_out = n_out or (3 if op == "LSTM" else 2)
    return net.add(op, ins, n_out, hidden_size=H, **attrs)


def recurrent_net():
    """Layout 0, float32: every direction / option that ONNX Runtime also runs."""
    T, N, I = 6, 3, 5
    net = Net(x=randn(T, N, I), sl=np.array([6, 0, 4], np.int32))
    for op in ("LSTM", "GRU", "RNN"):
        for direction, D in (("forward", 1), ("reverse", 1), ("bidirectional", 2)):
            add_rnn(net, op, D, I, 7, {"direction": direction}, seq="sl", init=True)
        add_rnn(net, op, 1, I, 20, {"clip": 0.6}, bias=False)
    add_rnn(net, "LSTM", 2, I, 6, {"direction": "bidirectional", "input_forget": 1}, peep=True, seq="sl")
    add_rnn(net, "LSTM", 1, I, 33, {"activations": ["HardSigmoid", "Tanh", "Relu"]}, peep=True)
    add_rnn(net, "GRU", 2, I, 8, {"direction": "bidirectional", "linear_before_reset": 1}, seq="sl", init=True)
    add_rnn(net, "GRU", 1, I, 9, {"activations": ["Sigmoid", "LeakyRelu"], "activation_alpha": [0.2]})
    add_rnn(net, "RNN", 1, I, 4, {"activations": ["Relu"]}, n_out=1)
    return net


def test_recurrent_vs_onnxruntime(tmp_path):
    net = recurrent_net()
    model = net.model(out_type=TensorProto.FLOAT)
    feeds = dict(net.inputs)
    got, want, names = run_both(model, feeds, tmp_path, opt_level=2)
    assert_close(got, want, names)
    check_oracles(model, feeds, got, names)


def test_recurrent_runtime_weights_layout1_activations(tmp_path):
    """Weights as graph inputs (the plain matrix-vector path), batch-major layout, and the
    activations with alpha / beta (ONNX Runtime has no layout 1: ONNX's reference is the oracle)."""
    T, N, I, H = 5, 2, 4, 6
    W, R, B = rnn_params("LSTM", 2, I, H)
    gw, gr, gb = rnn_params("GRU", 1, I, H)
    net = Net(x=randn(N, T, I), W=W, R=R, B=B, gw=gw, gr=gr, gb=gb, sl=np.array([3, 5], np.int32),
              h0=randn(N, 2, H), c0=randn(N, 2, H), P=randn(2, 3 * H))
    net.add("LSTM", ["x", "W", "R", "B", "sl", "h0", "c0", "P"], 3, hidden_size=H, layout=1,
            direction="bidirectional", clip=1.5)
    # clip: with Elu as the forget gate the cell state grows geometrically, to where float32 overflows
    # in one evaluation order and not in another (1e24 against inf)
    net.add("LSTM", ["x", W, R, B, "sl", "h0", "c0", "P"], 3, hidden_size=H, layout=1, direction="bidirectional",
            activations=["ScaledTanh", "Affine", "Softsign", "Elu", "Softplus", "ThresholdedRelu"],
            activation_alpha=[0.7, 1.2, 0.9, 0.3], activation_beta=[1.1, 0.2], clip=3.0)
    net.add("GRU", ["x", "gw", "gr", "gb", "sl"], 2, hidden_size=H, layout=1, direction="reverse")
    net.add("GRU", ["x", gw, gr], 2, hidden_size=H, layout=1, linear_before_reset=1,
            activations=["HardSigmoid", "Tanh"], activation_alpha=[0.3], activation_beta=[0.6])
    net.add("RNN", ["x", W[:, :H], R[:, :H, :], B[:, :2 * H]], 2, hidden_size=H, layout=1,
            direction="bidirectional", activations=["Tanh", "Sigmoid"])
    model = net.model()
    got, want, names = run_both(model, dict(net.inputs), tmp_path)
    assert_close(got, want, names)
    expected = layout0_outputs(model, dict(net.inputs))
    for g, n in zip(got, names):
        ACCUMULATED.check(g, expected[n], f"{n} (vs its layout-0 form on ONNX Runtime)")


def layout0_outputs(model, feeds) -> dict:
    """The outputs of a model of batch-major (layout=1) recurrent nodes, each computed as the same
    node in layout 0 (the spec's definition: inputs and outputs with batch and time swapped) by the
    independent oracles: ONNX Runtime has no layout 1, and ONNX's reference lacks most activations."""
    from oracles import node_by_node
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values, out = {**consts, **feeds}, {}
    swap_first = (1, 0, 2)  # X (N, T, I) <-> (T, N, I); initial / final states (N, D, H) <-> (D, N, H)
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "layout"}
        ins = list(node.input)
        feeds0 = {}
        for pos, name in enumerate(ins):
            if name:
                a = values[name]
                feeds0[f"in{pos}"] = a.transpose(swap_first) if pos in (0, 5, 6) else a
        one = helper.make_node(node.op_type, [f"in{p}" if n else "" for p, n in enumerate(ins)],
                               [f"out{p}" if n else "" for p, n in enumerate(node.output)], **attrs)
        vis = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for k, v in feeds0.items()]
        outs = [helper.make_tensor_value_info(f"out{p}", 0, None) for p, n in enumerate(node.output) if n]
        m = helper.make_model(helper.make_graph([one], "layout0", vis, outs), opset_imports=model.opset_import,
                              ir_version=model.ir_version)
        expected = node_by_node(m, feeds0)
        for p, name in enumerate(node.output):
            if name:
                y = expected[f"out{p}"].value
                out[name] = y.transpose(2, 0, 1, 3) if p == 0 else y.transpose(swap_first)
    return out


def test_recurrent_half_and_double(tmp_path):
    T, N, I, H = 4, 2, 3, 5
    x = randn(T, N, I)
    net = Net(x16=x.astype(np.float16), x64=x.astype(np.float64))
    W, R, B = rnn_params("LSTM", 1, I, H)
    net.add("LSTM", ["x16", W.astype(np.float16), R.astype(np.float16), B.astype(np.float16)], 3, hidden_size=H)
    net.add("GRU", ["x64", *(a.astype(np.float64) for a in rnn_params("GRU", 1, I, H))], 2, hidden_size=H, clip=0.5)
    model = net.model()
    got, want, names = run_both(model, dict(net.inputs), tmp_path)
    assert_close(got, want, names)  # float16 within 4 units of its rounding, float64 within 1e-10
    # ONNX's reference ignores GRU's clip (and ONNX Runtime has no float64 GRU): float64 NumPy
    gru = gru_f64(x.astype(np.float64), *(consts_of(net, model.graph.node[1])), clip=0.5)
    check_oracles(model, dict(net.inputs), got, names, numpy=dict(zip(names[3:], gru)))


def consts_of(net, node):
    return [net.consts[i] for i in node.input[1:]]


def gru_f64(x, w, r, b, clip):
    """A forward GRU (gates z, r, h; sigmoid / tanh; linear_before_reset=0) in float64, with the
    spec's clip of every activation's input; returns (Y, Y_h)."""
    hidden = r.shape[-1]
    wz, wr, wh = np.split(w[0], 3)
    rz, rr, rh = np.split(r[0], 3)
    wbz, wbr, wbh, rbz, rbr, rbh = np.split(b[0], 6)
    sigmoid = lambda v: 1 / (1 + np.exp(-np.clip(v, -clip, clip)))  # noqa: E731
    h = np.zeros((x.shape[1], hidden))
    ys = []
    for xt in x:
        z = sigmoid(xt @ wz.T + h @ rz.T + wbz + rbz)
        rt = sigmoid(xt @ wr.T + h @ rr.T + wbr + rbr)
        cand = np.tanh(np.clip(xt @ wh.T + (rt * h) @ rh.T + rbh + wbh, -clip, clip))
        h = (1 - z) * cand + z * h
        ys.append(h)
    return np.stack(ys)[:, None], h[None]


def test_recurrent_buffers_are_planned_scratch(tmp_path):
    """A wide LSTM's gate and state buffers (hidden 40000: 280,000 floats, which the stack could
    not hold) are the kernel's scratch in the arena, not locals."""
    H = 40000
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 1])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 4 * H, 1])
    r = helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4 * H, H])
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=H)
    g = helper.make_graph([node], "big", [x, w, r], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 22)])
    # r is 25.6 GB as a graph input (only generated, never allocated here): past the default limit
    out = compile_bundle(model, str(tmp_path / "b"), build=False, max_tensor_bytes=1 << 36)
    with open(os.path.join(out, "manifest.json")) as f:
        arena = json.load(f)["arena_bytes"]
    assert arena >= (4 * H + 3 * H) * 4  # gates, h, c and the cell's tanh(c)
    src = "".join(open(os.path.join(out, n)).read() for n in os.listdir(out) if "_kernels_" in n)
    assert "float *restrict g = buf + 0;" in src and not re.search(r"float \w+\[\d{4,}\]", src)


# ---- fused_elementwise ----------------------------------------------------------------------------
def test_fused_elementwise(tmp_path):
    x, y = randn(2, 3, 4), randn(3, 1)
    xh = (np.abs(randn(5, 7)) + 0.5).astype(np.float16)
    net = Net(x=x, y=y, lo=np.float32(-0.5), hi=np.float32(0.8), xh=xh, yh=randn(7, dtype=np.float16),
              k=RNG.integers(-3, 3, (2, 3, 1)).astype(np.int32), xb=randn(3, 4).astype(BF16),
              yb=randn(4).astype(BF16), lb=np.array(-0.2, BF16))
    chain = [("Add", ["x", "y"]), ("Mul", [0, "x"]), ("Clip", [1, "lo", "hi"]), ("Sigmoid", [2]),
             ("LeakyRelu", [3], {"alpha": 0.3}), ("Sub", [4, "y"]), ("Gelu", [5], {"approximate": "tanh"})]
    chains = [chain,
              [("Mul", ["xh", "yh"]), ("Exp", [0]), ("Div", [1, "xh"]), ("Sqrt", [2])],
              [("Greater", ["x", "y"]), ("Cast", ["x"], {"to": TensorProto.INT32}), ("Mul", [1, "k"]),
               ("Cast", [2], {"to": TensorProto.FLOAT}), ("Where", [0, 3, "y"]), ("Abs", [4])],
              [("Clip", ["xb", "lb"]), ("Max", [0, "yb", "xb"]), ("Tanh", [1])]]
    for c, steps in enumerate(chains):
        outs = []
        for k, step in enumerate(steps):
            op, ins, attrs = (step + ({},))[:3]
            ins = [a if isinstance(a, str) else outs[a] for a in ins]
            name = f"y{c}" if k == len(steps) - 1 else f"t{c}_{k}"
            net.nodes.append(helper.make_node(op, ins, [name], **attrs))
            outs.append(name)
        net.outputs.append(f"y{c}")
    model = net.model(opset=20)
    from pdc.compiler import optimize
    fused = [n for n in optimize(import_onnx(model), 2).nodes]
    assert [n.op for n in fused] == ["fused_elementwise"] * len(chains)
    got, want, names = run_both(model, dict(net.inputs), tmp_path, opt_level=2)
    assert_close(got[:1], want[:1], names[:1], ROUNDED)
    assert_close(got[1:], want[1:], names[1:], IDENTICAL)  # same expressions, same rounding: bit-identical
    # ONNX Runtime on the unfused chains: each op rounds to the half types, where the fused kernel keeps
    # float32 between ops
    check_oracles(model, dict(net.inputs), got, names, REDUCED)


# ---- attention ------------------------------------------------------------------------------------
def attention_net():
    B, Sq, Skv, P = 2, 3, 4, 2
    n = Net(q=randn(B, 4, Sq, 8), k=randn(B, 2, Skv, 8), v=randn(B, 2, Skv, 6),
            q3=randn(B, Sq, 32), k3=randn(B, Skv, 16), v3=randn(B, Skv, 12), q3b=randn(B, Sq, 16),
            pk=randn(B, 2, P, 8), pv=randn(B, 2, P, 6),
            bm=RNG.random((Sq, Skv)) < 0.7, fm=randn(B, 1, Sq, Skv + P),
            npad=np.array([3, 4], np.int64), h16=randn(B, 2, Sq, 8, dtype=np.float16))
    n.add("Attention", ["q", "k", "v"])
    n.add("Attention", ["q", "k", "v", "bm"], is_causal=1, scale=0.3)
    n.add("Attention", ["q", "k", "v", "", "pk", "pv"], 4, is_causal=1, softcap=2.0, qk_matmul_output_mode=1)
    n.add("Attention", ["q", "k", "v", "fm", "pk", "pv"], 4, qk_matmul_output_mode=3)
    n.add("Attention", ["q", "k", "v", "fm", "pk", "pv"], 4, qk_matmul_output_mode=2,
          softmax_precision=TensorProto.DOUBLE)
    n.add("Attention", ["q3", "k3", "v3"], q_num_heads=4, kv_num_heads=2, is_causal=1)
    n.add("Attention", ["q3b", "k3", "v3", "bm"], q_num_heads=2, kv_num_heads=2)
    n.add("Attention", ["q", "k", "v", "", "", "", "npad"], is_causal=1)
    n.add("Attention", ["h16", "h16", "h16"], 4, is_causal=1, qk_matmul_output_mode=0)
    return n


def attention_windows_net():
    B, S = 1, 6
    n = Net(q=randn(B, 2, S, 4), k=randn(B, 2, S, 4), v=randn(B, 2, S, 4), m=RNG.random((S, S)) < 0.8)
    n.add("Attention", ["q", "k", "v"], left_window_size=2, right_window_size=1)
    n.add("Attention", ["q", "k", "v", "m"], is_causal=1, left_window_size=1)
    n.add("Attention", ["q", "k", "v", np.zeros((S, S), bool)])  # every key masked: zero rows
    return n


@pytest.mark.parametrize("make, opset", [(attention_net, 24), (attention_windows_net, 25)])
def test_attention(make, opset, tmp_path):
    net = make()
    model = net.model(opset=opset)
    got, want, names = run_both(model, dict(net.inputs), tmp_path)
    assert_close(got, want, names, REDUCED)
    check_oracles(model, dict(net.inputs), got, names)


def test_fused_attention(tmp_path):
    """Q K^T * scale + mask -> softmax -> V, fused by fuse-attention{op=fused_attention}."""
    B, H, S, D = 2, 2, 5, 4
    q, k, v = randn(B, H, S, D), randn(B, H, S, D), randn(B, H, S, D)
    n = Net(q=q, k=k, v=v, m=randn(1, 1, S, S), bm=RNG.random((B, 1, 1, S)) < 0.8)
    finals = []
    for mask in ("m", None):
        kt = n.add("Transpose", ["k"], perm=[0, 1, 3, 2])[0]
        s = n.add("MatMul", ["q", kt])[0]
        s = n.add("Mul", [s, np.array(0.5, np.float32)])[0]
        if mask:
            s = n.add("Add", [s, mask])[0]
        p = n.add("Softmax", [s], axis=-1)[0]
        finals += n.add("MatMul", [p, "v"])
    n.outputs = finals
    model = n.model(opset=18)
    g = PassManager(parse_pipeline("fuse-attention{op=fused_attention}")).run(import_onnx(model))
    assert sorted(x.op for x in g.nodes) == ["fused_attention"] * 2
    got, want, names = run_both(g, dict(n.inputs), tmp_path)
    assert_close(got, want, names, REDUCED)
    check_oracles(model, dict(n.inputs), got, names)  # the unfused ONNX model on ONNX Runtime


# ---- einsum -------------------------------------------------------------------------------------------
def test_einsum(tmp_path):
    n = Net(a=randn(2, 3, 4), b=randn(2, 4, 5), s=randn(4, 4), v=randn(4), e=randn(3, 1, 2, 4),
            i=RNG.integers(-5, 5, (3, 4)).astype(np.int32), j=RNG.integers(-5, 5, (4, 2)).astype(np.int32),
            h=randn(3, 4, dtype=np.float16))
    for eq, ins in (("bij,bjk->bik", "ab"), ("ii->i", "s"), ("ii", "s"), ("ij,j->i", "sv"), ("bij->", "a"),
                    ("...ij,...jk->...ik", "ab"), ("...j,j->...", "ev"), ("bij,bjk", "ab"), ("i,i", "vv"),
                    ("ij,jk->ki", "ij"), ("ij->ji", "h")):
        n.add("Einsum", list(ins), equation=eq)
    model = n.model(opset=18)
    got, want, names = run_both(model, dict(n.inputs), tmp_path)
    assert_close(got, want, names, REDUCED)
    check_oracles(model, dict(n.inputs), got, names)


# ---- NHWC layout ops ------------------------------------------------------------------------------------
def test_layout_ops(tmp_path):
    """conv / pool / batch-norm regions converted to NHWC by convert-layout, compiled as such."""
    x = randn(2, 8, 9, 7)
    n = Net(x=x)
    w1, b1 = randn(16, 8, 3, 3, scale=0.3), randn(16)
    y = n.add("Conv", ["x", w1, b1], pads=[1, 1, 1, 1])[0]
    y = n.add("Relu", [y])[0]
    y = n.add("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)[0]
    finals = n.add("Conv", [y, randn(16, 4, 3, 3, scale=0.3)], group=4, strides=[2, 1], dilations=[1, 2],
                   pads=[1, 2, 0, 1])
    r = n.add("Conv", ["x", randn(8, 8, 1, 1)])[0]
    r2 = n.add("Conv", ["x", randn(8, 8, 3, 3, scale=0.3)], pads=[1, 1, 1, 1])[0]
    finals += n.add("Sigmoid", [n.add("Add", [r2, r])[0]])  # residual before the activation
    z = n.add("Conv", ["x", randn(8, 1, 5, 5, scale=0.3), randn(8)], group=8, auto_pad="SAME_UPPER")[0]
    z = n.add("BatchNormalization", [z, randn(8), randn(8), randn(8), np.abs(randn(8)) + 0.5], epsilon=1e-3)[0]
    finals += n.add("AveragePool", [z], kernel_shape=[3, 2], pads=[1, 0, 2, 1], strides=[2, 2], ceil_mode=1)
    finals += n.add("AveragePool", [z], kernel_shape=[3, 3], auto_pad="SAME_LOWER", count_include_pad=1)
    finals += n.add("GlobalAveragePool", [z])
    finals += n.add("GlobalMaxPool", [z])
    n.outputs = finals
    model = n.model(opset=18)
    g = PassManager(parse_pipeline("fuse-conv-bias-activation,convert-layout")).run(import_onnx(model))
    ops = {x.op for x in g.nodes}
    assert {"conv_nhwc", "fused_conv_nhwc", "max_pool_nhwc", "average_pool_nhwc", "batch_normalization_nhwc",
            "global_average_pool_nhwc", "global_max_pool_nhwc"} <= ops, ops
    got, want, names = run_both(g, dict(n.inputs), tmp_path)
    assert_close(got, want, names, KERNEL)
    check_oracles(model, dict(n.inputs), got, names, KERNEL)  # the NCHW ONNX model on ONNX Runtime


# ---- zoo models, -O2, against ONNX Runtime --------------------------------------------------------------
@pytest.mark.zoo
@pytest.mark.parametrize("name", ["lstm", "gru", "transformer_encoder"])
def test_zoo_model(name, zoo, tmp_path):
    path = zoo(name)
    feeds = make_feeds(path)
    mod = pdc.compile(path, out_dir=str(tmp_path / "b"), opt_level=2, threads=2)
    got = mod.run(feeds)
    for out, want in run_onnxruntime(path, feeds):
        assert_zoo_close(got[out], want, out)
