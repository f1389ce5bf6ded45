"""Seeded draws of conv / Gemm / MatMul layers over their attribute space, as ONNX models with their
feeds, and ONNX Runtime's outputs for them: what the device kernel tests (tests/opencl,
tests/cuda) check every conv and matrix-product path against.

conv: 1-D / 2-D / 3-D, strides, asymmetric pads, auto_pad, dilations, groups (depthwise, grouped),
bias or none, batch, constant or run-time weights, followed by the activations and residual adds
that -O2 fuses (fused_conv); Gemm with transA / transB / alpha / beta and C absent, a scalar, a
row, a column or full; MatMul with 1-D operands and broadcast batch dims, + bias + activation +
residual.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

RTOL, ATOL = 1e-4, 1e-5
# fp16 storage: the inputs, weights, bias, Gemm's C and the residual are rounded to half on the
# device (relative error <= u = 2^-11 ~ 4.9e-4, half's unit roundoff), products and sums run in
# float (K * 2^-24: negligible), and the result is rounded to half (u again). A K-term dot product
# of rounded operands carries independent errors <= 2u on each term, so its error grows roughly
# like 2u * sqrt(K) * rms(term): with the draws' weights scaled by 1/sqrt(fan_in) (terms ~
# 1/sqrt(K)) that is ~2u ~ 1e-3 of an O(1) output in rms, a few 1e-3 at the worst of the outputs.
# Bounded by 1e-2 of the largest |reference| (the draws' worst: 1.7e-3, a tanh output near 1);
# the floor of 0.1 is the operands' scale (inputs ~ N(0, 1)) for outputs that all but vanish.
FP16_REL = 1e-2
# bf16 storage (the CUDA targets): the same analysis with bfloat16's unit roundoff u = 2^-8, 8 times
# half's: ~8e-3 of an O(1) output in rms, bounded by 8 times half's bound
BF16_REL = 8e-2
OPSET = 17
ACTIVATIONS = ["none", "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"]


# ---- models ---------------------------------------------------------------------------------------
class Net:
    """An ONNX graph under construction: inputs with their feeds, initializers, nodes."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.inputs, self.feeds, self.inits, self.nodes = [], {}, [], []

    def array(self, shape, scale=1.0):
        return np.asarray(self.rng.standard_normal(shape) * scale, np.float32)

    def feed(self, name, value):
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape))
        self.feeds[name] = value
        return name

    def const(self, name, value, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def tensor(self, name, value, constant: bool):
        return self.const(name, value) if constant else self.feed(name, value)

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def activation(self, kind: str, x: str) -> str:
        r = self.rng
        if kind == "Clip":
            lo, hi = [(0.0, 6.0), (-1.0, 1.0), (None, 0.5), (-0.5, None)][r.integers(4)]
            ins = [x, "" if lo is None else self.const("clip_lo", lo), "" if hi is None else self.const("clip_hi", hi)]
            while ins[-1] == "":
                ins.pop()
            return self.node("Clip", ins, "act")
        if kind == "LeakyRelu":
            return self.node("LeakyRelu", [x], "act", alpha=float(r.uniform(0.01, 0.5)))
        if kind == "HardSigmoid":
            return self.node("HardSigmoid", [x], "act", alpha=float(r.uniform(0.1, 0.4)),
                             beta=float(r.uniform(0.3, 0.7)))
        return self.node(kind, [x], "act")

    def epilogue(self, y: str, out_shape, act: str, residual: str) -> str:
        """y + residual before the activation, the activation, + residual after (what -O2 fuses)."""
        if residual != "none":
            res = self.feed("res", self.array(out_shape))
        if residual == "before":
            y = self.node("Add", [y, res], "pre")
        if act != "none":
            y = self.activation(act, y)
        if residual == "after":
            y = self.node("Add", [res, y], "post")
        return self.node("Identity", [y], "y")

    def model(self):
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        g = helper.make_graph(self.nodes, "g", self.inputs, [out], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])


def _conv_out(size, k, s, d, pb, pe, auto_pad):
    ext = (k - 1) * d + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // s)
    if auto_pad == "VALID":
        return (size - ext) // s + 1
    return (size + pb + pe - ext) // s + 1


def conv_case(seed: int) -> dict:
    """One random conv layer (shapes, attributes, epilogue) and the paths that can compute it."""
    r = np.random.default_rng(seed)
    nsp = int(r.choice([1, 2, 2, 2, 3]))
    kind = str(r.choice(["dense", "dense", "depthwise", "grouped", "pointwise", "big"]))
    n = int(r.integers(1, 3))
    if kind == "depthwise":
        group, cg, mg = int(r.integers(2, 12)), 1, int(r.choice([1, 1, 2]))
    elif kind == "grouped":
        group, cg, mg = int(r.integers(2, 4)), int(r.integers(1, 5)), int(r.integers(1, 6))
    elif kind == "big":  # deep and tall enough for the matrix-product paths' heuristic
        group, cg, mg = 1, int(r.integers(16, 48)), int(r.integers(16, 40))
    else:
        group, cg, mg = 1, int(r.integers(1, 9)), int(r.integers(1, 10))
    if kind == "pointwise":
        ks, strides, dil, pads, auto_pad = [1] * nsp, [1] * nsp, [1] * nsp, [0] * (2 * nsp), "NOTSET"
    else:
        ks = [int(r.integers(1, 5 if nsp < 3 else 4)) for _ in range(nsp)]
        strides = [int(r.choice([1, 1, 2, 3])) for _ in range(nsp)]
        dil = [int(r.choice([1, 1, 2])) for _ in range(nsp)]
        pads = [int(r.integers(0, 3)) for _ in range(2 * nsp)]
        auto_pad = str(r.choice(["NOTSET"] * 4 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
        if auto_pad != "NOTSET":
            pads = [0] * (2 * nsp)
        if auto_pad.startswith("SAME"):  # ONNX Runtime has no dilated SAME convs
            dil = [1] * nsp
    top = 9 if nsp == 3 else 20
    spatial = [int(r.integers(max(1, (ks[i] - 1) * dil[i] + 1), top + 1)) for i in range(nsp)]
    out_sp = [_conv_out(spatial[i], ks[i], strides[i], dil[i], pads[i], pads[i + nsp], auto_pad) for i in range(nsp)]
    act = str(r.choice(ACTIVATIONS))
    residual = str(r.choice(["none", "none", "before", "after"]))
    if residual == "after" and act == "none":
        residual = "before"
    attrs = dict(kernel_shape=ks, strides=strides, dilations=dil, group=group)
    if auto_pad != "NOTSET":
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = pads
    paths = ["direct", "tiled"]
    if cg == 1 and group > 1:
        paths.append("depthwise")
    if all(k == 1 for k in ks) and all(s == 1 for s in strides) and not any(pads) and auto_pad == "NOTSET":
        paths.append("1x1-gemm")
    return dict(seed=seed, x=(n, group * cg, *spatial), w=(group * mg, cg, *ks), out=(n, group * mg, *out_sp),
                attrs=attrs, bias=bool(r.random() < 0.7), w_const=bool(r.random() < 0.85), act=act,
                residual=residual, paths=paths)


def conv_model(case: dict):
    net = Net(case["seed"])
    fan_in = int(np.prod(case["w"][1:]))
    ins = [net.feed("x", net.array(case["x"])),
           net.tensor("W", net.array(case["w"], 1 / np.sqrt(fan_in)), case["w_const"])]
    if case["bias"]:
        ins.append(net.const("B", net.array(case["w"][0])))
    y = net.node("Conv", ins, "conv", **case["attrs"])
    net.epilogue(y, case["out"], case["act"], case["residual"])
    return net.model(), net.feeds


def gemm_case(seed: int) -> dict:
    r = np.random.default_rng(seed)
    top = int(r.choice([24, 24, 100]))
    m, n, k = (int(r.integers(1, top)) for _ in range(3))
    ta, tb = int(r.integers(2)), int(r.integers(2))
    attrs = dict(transA=ta, transB=tb, alpha=float(r.choice([1.0, 0.5, -1.25])), beta=float(r.choice([1.0, 0.0, 2.0])))
    c = [None, (), (1,), (n,), (m, 1), (1, n), (m, n), (1, 1)][r.integers(8)]
    act = str(r.choice(ACTIVATIONS))
    residual = str(r.choice(["none", "none", "before", "after"]))
    if residual == "after" and act == "none":
        residual = "before"
    return dict(seed=seed, kind="gemm", a=(k, m) if ta else (m, k), b=(n, k) if tb else (k, n), c=c,
                c_const=bool(r.random() < 0.5), attrs=attrs, out=(m, n), act=act, residual=residual)


def matmul_case(seed: int) -> dict:
    r = np.random.default_rng(seed)
    top = int(r.choice([24, 24, 100]))
    m, n, k = (int(r.integers(1, top)) for _ in range(3))
    ra, rb = int(r.choice([1, 2, 2, 3, 4])), int(r.choice([1, 2, 2, 3, 4]))
    batch = [int(r.integers(1, 4)) for _ in range(max(ra, rb) - 2)]

    def batch_of(rank):
        dims = batch[len(batch) - (rank - 2):] if rank > 2 else []
        return tuple(1 if r.random() < 0.3 else d for d in dims)
    a = (k,) if ra == 1 else batch_of(ra) + (m, k)
    b = (k,) if rb == 1 else batch_of(rb) + (k, n)
    out = np.matmul(np.zeros(a, np.float32), np.zeros(b, np.float32)).shape
    act = str(r.choice(ACTIVATIONS))
    residual = str(r.choice(["none", "none", "before", "after"]))
    if residual == "after" and act == "none":
        residual = "before"
    return dict(seed=seed, kind="matmul", a=a, b=b, b_const=bool(r.random() < 0.5), out=out,
                bias=len(out) >= 2 and bool(r.random() < 0.5), act=act, residual=residual)


def product_model(case: dict):
    net = Net(case["seed"])
    a = net.feed("A", net.array(case["a"]))
    if case["kind"] == "gemm":
        k = case["a"][0] if case["attrs"]["transA"] else case["a"][1]
        ins = [a, net.const("B", net.array(case["b"], 1 / np.sqrt(k)))]
        if case["c"] is not None:
            ins.append(net.tensor("C", net.array(case["c"]), case["c_const"]))
        y = net.node("Gemm", ins, "prod", **case["attrs"])
    else:
        k = case["a"][-1]
        y = net.node("MatMul", [a, net.tensor("B", net.array(case["b"], 1 / np.sqrt(k)), case["b_const"])], "prod")
        if case["bias"]:
            y = net.node("Add", [y, net.const("bias", net.array(case["out"][-1:]))], "biased")
    net.epilogue(y, case["out"], case["act"], case["residual"])
    return net.model(), net.feeds


# ---- running ------------------------------------------------------------------------------------------
def onnxruntime_outputs(model, feeds):
    import onnxruntime
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["y"], feeds)[0]


def assert_matches(got, want, precision: str) -> None:
    """A device output against ONNX Runtime's: RTOL / ATOL in fp32; with 16-bit storage within
    FP16_REL / BF16_REL of the largest |reference| (floor 0.1), every value representable in the
    storage type (the output came back from it)."""
    if precision == "fp32":
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        return
    assert got.shape == want.shape and got.dtype == np.float32
    bound = FP16_REL if precision == "fp16" else BF16_REL
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
    scale = max(float(np.abs(want).max(initial=0.0)), 0.1)
    assert err <= bound * scale, f"{precision}: max abs error {err:.3g} > {bound} * {scale:.3g}"
    if precision == "fp16":
        assert np.array_equal(got, got.astype(np.float16).astype(np.float32)), "fp16: the output is not half"
    else:
        assert not (got.view(np.uint32) & 0xFFFF).any(), "bf16: the output is not bfloat16"
