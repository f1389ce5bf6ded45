"""Kernels over sizes known only at run time (--shape N=LO..HI): random layers whose inputs have one or
two symbolic dims, each compiled ONCE for random ranges (-O0 or -O2, so both the unfused and the
fused kernels see the run-time sizes) and run at the ranges' low ends, high ends and a size between,
against ONNX Runtime: matmuls (a constant weight after a batch and sequence folded into M, or a
batched product whose operands both carry the run-time sizes, with bias and activations),
softmax and reductions over run-time and fixed axes, transposes, broadcasting binary ops, layer
norm, slices and concats along fixed axes, and the attention block exporters write (Q K^T, scale,
softmax, times V: fused into one attention kernel at -O2). On x86 (AVX2 and AVX-512 kernels) and on
arm64 under qemu (fewer draws)."""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import pdc
from harness import fuzz_examples
from targets import examples, require
from tolerances import mismatches

EXAMPLES = 24


def _w(rng, *shape):
    return (rng.standard_normal(shape) / np.sqrt(shape[0] if shape else 1)).astype(np.float32)


@st.composite
def layers(draw):
    """(an ONNX model over input x with dims 'N' / 'S', the ranges, a description)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
    kind = draw(st.sampled_from(["matmul", "batched", "softmax", "reduce", "transpose", "binary", "layernorm",
                                 "slice_concat", "attention"]))
    n_range = (draw(st.integers(1, 3)), draw(st.integers(3, 6)))
    s_range = (draw(st.integers(1, 4)), draw(st.integers(4, 40)))
    C = draw(st.sampled_from([1, 3, 8, 16, 24]))
    x_shape, nodes, inits = ["N", "S", C], [], {}
    if kind == "matmul":  # x @ W (+ bias) (+ activation): -O2 folds N * S into the GEMM's M
        N = draw(st.sampled_from([1, 5, 16, 33]))
        inits["w"] = _w(rng, C, N)
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["m"]))
        last = "m"
        if draw(st.booleans()):
            inits["b"] = rng.standard_normal(N).astype(np.float32)
            nodes.append(helper.make_node("Add", [last, "b"], ["a"]))
            last = "a"
        act = draw(st.sampled_from(["none", "Relu", "Sigmoid", "Tanh"]))
        if act != "none":
            nodes.append(helper.make_node(act, [last], ["y"]))
        else:
            nodes[-1].output[0] = "y"
    elif kind == "batched":  # x [N, S, C] -> heads [N, H, S, D] -> scores [N, H, S, S] -> [N, H, S, D]
        H = draw(st.sampled_from([1, 2, 4]))
        x_shape[2] = C = H * draw(st.sampled_from([1, 4, 8]))
        inits["shape"] = np.array([0, 0, H, C // H], np.int64)
        nodes += [helper.make_node("Reshape", ["x", "shape"], ["r"]),
                  helper.make_node("Transpose", ["r"], ["q"], perm=[0, 2, 1, 3]),
                  helper.make_node("Transpose", ["r"], ["kt"], perm=[0, 2, 3, 1]),
                  helper.make_node("MatMul", ["q", "kt"], ["sc"]),
                  helper.make_node("MatMul", ["sc", "q"], ["y"])]
    elif kind == "softmax":
        nodes.append(helper.make_node("Softmax", ["x"], ["y"], axis=draw(st.integers(-3, 2))))
    elif kind == "reduce":
        op = draw(st.sampled_from(["ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2"]))
        axes = sorted(draw(st.sets(st.integers(0, 2), min_size=1, max_size=3)))
        inits["axes"] = np.array(axes, np.int64)
        nodes.append(helper.make_node(op, ["x", "axes"], ["y"], keepdims=draw(st.integers(0, 1))))
    elif kind == "transpose":
        nodes.append(helper.make_node("Transpose", ["x"], ["y"], perm=draw(st.permutations([0, 1, 2]))))
    elif kind == "binary":
        op = draw(st.sampled_from(["Add", "Sub", "Mul", "Div", "Max", "Pow"]))
        c = rng.uniform(0.5, 1.5, draw(st.sampled_from([(C,), (1,), (1, C), (1, 1, C)]))).astype(np.float32)
        inits["c"] = c
        args = ["x", "c"] if draw(st.booleans()) or op == "Pow" else ["c", "x"]
        if op == "Pow":
            nodes.append(helper.make_node("Abs", ["x"], ["ax"]))
            args = ["ax", "c"]
        nodes.append(helper.make_node(op, args, ["y"]))
    elif kind == "layernorm":
        inits["g"] = rng.uniform(0.5, 1.5, C).astype(np.float32)
        inits["b"] = rng.standard_normal(C).astype(np.float32)
        nodes.append(helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1,
                                      epsilon=draw(st.sampled_from([1e-5, 1e-3]))))
    elif kind == "slice_concat":
        x_shape[2] = C = max(C, 3)
        inits.update(st_=np.array([1], np.int64), en=np.array([C], np.int64), ax=np.array([2], np.int64))
        nodes += [helper.make_node("Slice", ["x", "st_", "en", "ax"], ["sl"]),
                  helper.make_node("Concat", ["x", "sl"], ["y"], axis=2)]
    else:  # attention as exported: Q K^T * scale, softmax, times V, heads split and merged
        H = draw(st.sampled_from([1, 2, 4]))
        D = draw(st.sampled_from([4, 8, 16]))
        x_shape[2] = C = H * D
        inits.update(wq=_w(rng, C, C), wk=_w(rng, C, C), wv=_w(rng, C, C), split=np.array([0, 0, H, D], np.int64),
                     merge=np.array([0, 0, C], np.int64), scale=np.array(1 / np.sqrt(D), np.float32))
        for t in "qkv":
            nodes += [helper.make_node("MatMul", ["x", f"w{t}"], [f"{t}0"]),
                      helper.make_node("Reshape", [f"{t}0", "split"], [f"{t}1"])]
        nodes += [helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
                  helper.make_node("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1]),
                  helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
                  helper.make_node("MatMul", ["q", "kt"], ["s0"]),
                  helper.make_node("Mul", ["s0", "scale"], ["s1"]),
                  helper.make_node("Softmax", ["s1"], ["p"], axis=-1),
                  helper.make_node("MatMul", ["p", "v"], ["o"]),
                  helper.make_node("Transpose", ["o"], ["o1"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", ["o1", "merge"], ["y"])]
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    return model, {"N": n_range, "S": s_range}, f"{kind} x{x_shape} N={n_range} S={s_range}"


TARGETS = ("x86-avx2", "x86-avx512", "arm64")


@pytest.mark.parametrize("target", TARGETS)
def test_kernels_take_sizes_known_only_at_run_time(target):
    require(target)

    @settings(max_examples=fuzz_examples(examples(target, EXAMPLES)), deadline=None, database=None,
              derandomize=os.environ.get("PDC_FUZZ_SEED", "0") == "0", suppress_health_check=list(HealthCheck))
    @given(layers(), st.sampled_from([0, 2]), st.randoms(use_true_random=False))
    def prop(draw, level, random):
        check(draw, level, random, target)
    prop()


def check(draw, level, random, target):
    model, ranges, what = draw
    module = pdc.compile(model, target=target, shapes={k: f"{lo}..{hi}" for k, (lo, hi) in ranges.items()},
                         opt_level=level, threads=2 if target.startswith("x86") else 1)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    C = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    (n_lo, n_hi), (s_lo, s_hi) = ranges["N"], ranges["S"]
    rng = np.random.default_rng(random.randint(0, 2 ** 31))
    for n, s in [(n_lo, s_lo), (n_hi, s_hi), (random.randint(n_lo, n_hi), random.randint(s_lo, s_hi))]:
        x = rng.standard_normal((n, s, C)).astype(np.float32)
        got, want = module.run({"x": x})["y"], sess.run(None, {"x": x})[0]
        problem = mismatches(got, want, rtol=1e-4, atol=1e-5)
        assert not problem, f"{what} on {target} at -O{level}, N={n}, S={s}: {problem}"
