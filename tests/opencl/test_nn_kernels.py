"""OpenCL device kernels of the NN ops (pdc/codegen/kernels/opencl/: pool.py, softmax.py, norm.py,
attention.py) through a compiled opencl bundle, against ONNX Runtime.

One single-node model per configuration, seeded, over the attribute space of each op: MaxPool
(Indices, storage_order, dilations, ceil_mode, auto_pad, asymmetric pads, 1-D to 3-D, int8),
AveragePool (count_include_pad, ceil_mode, dilations), LpPool; Softmax / LogSoftmax / Hardmax on
every kind of axis, short rows (a work-item each) and long ones (a work-group each);
LayerNormalization (axis, epsilon, Mean / InvStdDev), BatchNormalization (constant parameters
folded, or graph inputs), InstanceNormalization, GroupNormalization (opset 21), RMSNormalization,
LpNormalization, MeanVarianceNormalization; Attention (opset 23: heads, grouped-query, masks,
causal, past / present, softcap, qk_matmul_output) and the unfused attention pattern pdc turns into
fused_attention. Tolerance: tolerances.ACCUMULATED (float32 rtol 1e-4, atol 1e-5).

The cases of FP16 (about half: every op, output and path) also run with precision="fp16" (every
float32 tensor half in device memory, the arithmetic in float), against ONNX Runtime's float32
outputs within tolerances.HALF_STORAGE (rtol 2e-3, atol 5e-3: half's unit roundoff 2^-11 ~ 4.9e-4
on the inputs, the weights and every stored output; see there), taking the same opencl/* kernel
paths as in fp32. MaxPool's Indices and Hardmax stay exact: their fp16 inputs are exactly
representable in half and have no ties the rounding would make (multiples of 1/64, or integers).
"""
from __future__ import annotations

import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from conftest import require_module
from pdc.compiler import compile_details
from tolerances import ACCUMULATED, HALF_STORAGE

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
TYPES = {np.dtype(np.float32): F32, np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
         np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.int64): I64}

pytestmark = pytest.mark.usefixtures("opencl_platform")


def _model(op, inputs: dict, attrs: dict, outputs, opset: int, consts=()) -> onnx.ModelProto:
    """One `op` node over `inputs` (name -> array; names in consts become initializers)."""
    ins = [helper.make_tensor_value_info(n, TYPES[a.dtype], list(a.shape))
           for n, a in inputs.items() if n not in consts]
    inits = [numpy_helper.from_array(a, n) for n, a in inputs.items() if n in consts]
    node = helper.make_node(op, list(inputs), list(outputs), **attrs)
    outs = [helper.make_tensor_value_info(o, F32 if dt is None else dt, None) for o, dt in outputs.items() if o]
    graph = helper.make_graph([node], op.lower(), ins, outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _x(rng, shape, dtype=np.float32):
    if dtype == np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)


def _distinct_halves(rng, shape) -> np.ndarray:
    """Distinct multiples of 1/64 in [-32, 32), exactly representable in half: no ties, before or
    after the rounding to half storage (at most 4096 elements)."""
    return (rng.choice(np.arange(-2048, 2048), size=int(np.prod(shape)), replace=False) / 64).astype(
        np.float32).reshape(shape)


# ---- configurations: (id, builder(rng, half) -> (model, feeds, opt_level)) ------------------------------
# half: the inputs are for a run with fp16 storage
def pool(op, shape, opset=19, indices=False, dtype=np.float32, **attrs):
    def build(rng, half=False):
        exact = half and indices and dtype == np.float32  # Indices: no ties after the rounding to half
        x = _distinct_halves(rng, shape) if exact else _x(rng, shape, dtype)
        outs = {"y": TYPES[np.dtype(dtype)]} | ({"idx": I64} if indices else {})
        return _model(op, {"x": x}, attrs, outs, opset), {"x": x}, 2
    return build


def softmax(op, shape, axis, ties=False):
    def build(rng, half=False):  # the ties are small integers, exact in half
        x = _x(rng, shape)
        if ties:
            x = np.round(x).astype(np.float32)
        return _model(op, {"x": x}, {"axis": axis}, {"y": None}, 13), {"x": x}, 2
    return build


def norm(op, shape, params, opset, outputs=("y",), consts=True, opt_level=2, positive=(), x_scale=1.0, **attrs):
    """params: name -> shape of the parameter inputs after X (in order)."""
    def build(rng, half=False):
        x = (_x(rng, shape) * x_scale + 0.5).astype(np.float32)
        ins = {"x": x}
        for name, pshape in params.items():
            a = _x(rng, pshape)
            ins[name] = (np.abs(a) + 0.1).astype(np.float32) if name in positive else a
        model = _model(op, ins, attrs, {o: None for o in outputs}, opset, consts=tuple(params) if consts else ())
        feeds = {"x": x} if consts else ins
        return model, feeds, opt_level
    return build


def attention(b, hq, hkv, sq, skv, d, dv=None, rank3=True, past=0, mask=None, n_out=1, **attrs):
    dv = dv or d

    def build(rng, half=False):
        def seq(h, s, w):
            t = _x(rng, (b, h, s, w))
            return t.transpose(0, 2, 1, 3).reshape(b, s, h * w).copy() if rank3 else t
        ins = {"q": seq(hq, sq, d), "k": seq(hkv, skv, d), "v": seq(hkv, skv, dv)}
        a = dict(attrs)
        if rank3:
            a.update(q_num_heads=hq, kv_num_heads=hkv)
        names = ["q", "k", "v", "", "", ""]
        if mask is not None:
            kind, mshape = mask
            m = rng.random(mshape) < 0.75 if kind == "bool" else _x(rng, mshape)
            ins["mask"] = m
            names[3] = "mask"
        if past:
            ins["past_k"], ins["past_v"] = _x(rng, (b, hkv, past, d)), _x(rng, (b, hkv, past, dv))
            names[4:6] = ["past_k", "past_v"]
        while not names[-1]:
            names.pop()
        vi = [helper.make_tensor_value_info(n, TYPES[ins[n].dtype], list(ins[n].shape)) for n in names if n]
        outs = ["y", "present_k", "present_v", "qk"][:n_out]
        node = helper.make_node("Attention", names, outs, **a)
        graph = helper.make_graph([node], "attention", vi, [helper.make_tensor_value_info(o, F32, None) for o in outs])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
        return model, {n: ins[n] for n in names if n}, 2
    return build


def unfused_attention(b, h, s, d, mask_shape, nan_guard=False):
    """MatMul(Q, K^T) * scale + mask (broadcast over the keys) -> Softmax -> MatMul(., V): pdc fuses it
    into fused_attention (a mask that is not one value per key keeps it from the Attention op).
    nan_guard: PyTorch's Where(IsNaN(P), 0, P) after the softmax, and query 2 sees no key (-inf)."""
    def build(rng, half=False):
        q, k, v = (_x(rng, (b, h, s, d)) for _ in range(3))
        mask = _x(rng, mask_shape)
        if nan_guard:
            mask[..., 2, :] = -np.inf
        scale = numpy_helper.from_array(np.array(1 / np.sqrt(d), np.float32), "scale")
        zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
        nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
                 helper.make_node("MatMul", ["q", "kt"], ["s"]),
                 helper.make_node("Mul", ["s", "scale"], ["ss"]),
                 helper.make_node("Add", ["ss", "mask"], ["sm"]),
                 helper.make_node("Softmax", ["sm"], ["p"], axis=-1)]
        if nan_guard:
            nodes += [helper.make_node("IsNaN", ["p"], ["nan"]), helper.make_node("Where", ["nan", "zero", "p"], ["pz"])]
        nodes.append(helper.make_node("MatMul", ["pz" if nan_guard else "p", "v"], ["y"]))
        ins = {"q": q, "k": k, "v": v, "mask": mask}
        vi = [helper.make_tensor_value_info(n, F32, list(a.shape)) for n, a in ins.items()]
        graph = helper.make_graph(nodes, "sdpa", vi, [helper.make_tensor_value_info("y", F32, None)],
                                  initializer=[scale, zero])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), ins, 2
    return build


CASES = [
    # pooling
    ("maxpool2d-resnet", pool("MaxPool", (1, 3, 16, 16), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("maxpool2d-ceil", pool("MaxPool", (2, 4, 13, 13), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("maxpool2d-indices", pool("MaxPool", (2, 3, 9, 11), indices=True, kernel_shape=[3, 2], strides=[2, 1],
                               pads=[1, 0, 1, 1])),
    ("maxpool1d-dilated-indices", pool("MaxPool", (1, 2, 20), indices=True, kernel_shape=[3], dilations=[2],
                                       pads=[1, 0])),
    ("maxpool3d-colmajor", pool("MaxPool", (1, 2, 5, 6, 7), indices=True, kernel_shape=[2, 2, 3],
                                strides=[1, 2, 1], storage_order=1)),
    ("maxpool2d-same-upper", pool("MaxPool", (1, 2, 10, 7), kernel_shape=[3, 3], strides=[2, 2],
                                  auto_pad="SAME_UPPER")),
    ("maxpool2d-same-lower-colmajor", pool("MaxPool", (1, 2, 11, 9), indices=True, kernel_shape=[2, 3],
                                          strides=[2, 1], auto_pad="SAME_LOWER", storage_order=1)),
    ("maxpool2d-ceil-dilated", pool("MaxPool", (1, 3, 12, 12), indices=True, kernel_shape=[2, 2], strides=[3, 3],
                                    dilations=[2, 2], ceil_mode=1)),
    ("maxpool2d-uint8", pool("MaxPool", (1, 3, 8, 8), dtype=np.uint8, kernel_shape=[2, 2], strides=[2, 2],
                             pads=[1, 1, 0, 0])),
    ("avgpool2d-exclude-pad", pool("AveragePool", (2, 3, 10, 10), kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("avgpool2d-include-pad-ceil", pool("AveragePool", (1, 4, 11, 9), kernel_shape=[3, 3], strides=[2, 2],
                                        pads=[1, 0, 0, 1], count_include_pad=1, ceil_mode=1)),
    ("avgpool1d-dilated-ceil", pool("AveragePool", (2, 2, 17), kernel_shape=[3], strides=[2], dilations=[2],
                                    ceil_mode=1)),
    ("avgpool3d-asym", pool("AveragePool", (1, 2, 6, 7, 8), kernel_shape=[2, 3, 2], strides=[2, 2, 2],
                            pads=[1, 0, 1, 0, 1, 0])),
    ("avgpool2d-same-include-pad", pool("AveragePool", (1, 2, 9, 10), kernel_shape=[4, 3], strides=[2, 2],
                                        auto_pad="SAME_UPPER", count_include_pad=1)),
    ("lppool2d-p2", pool("LpPool", (1, 3, 10, 10), opset=18, kernel_shape=[2, 2], strides=[2, 2])),
    ("lppool1d-p1-pads", pool("LpPool", (2, 2, 15), opset=18, kernel_shape=[3], pads=[1, 1], p=1)),
    # softmax family
    ("softmax-last", softmax("Softmax", (4, 7, 33), -1)),
    ("softmax-axis1-strided", softmax("Softmax", (2, 9, 5, 6), 1)),
    ("softmax-long-row", softmax("Softmax", (3, 1500), 1)),
    ("softmax-rank1", softmax("Softmax", (50,), 0)),
    ("logsoftmax-axis0", softmax("LogSoftmax", (6, 4, 5), 0)),
    ("logsoftmax-long-row", softmax("LogSoftmax", (2, 3, 700), -1)),
    ("hardmax-axis1-ties", softmax("Hardmax", (3, 8, 4), 1, ties=True)),
    ("hardmax-long-row-ties", softmax("Hardmax", (4, 1000), -1, ties=True)),
    # normalizations
    ("layernorm-stats", norm("LayerNormalization", (2, 5, 32), {"scale": (32,), "b": (32,)}, 17,
                             outputs=("y", "mean", "inv_std"))),
    ("layernorm-axis1", norm("LayerNormalization", (3, 4, 6), {"scale": (4, 6)}, 17, axis=1, epsilon=1e-3,
                             consts=False)),
    ("layernorm-long-row", norm("LayerNormalization", (4, 1024), {"scale": (1024,), "b": (1024,)}, 17,
                                outputs=("y", "mean", "inv_std"), x_scale=3.0)),
    ("batchnorm-folded", norm("BatchNormalization", (2, 6, 5, 5), {"scale": (6,), "b": (6,), "mean": (6,), "var": (6,)},
                              15, positive=("var",), opt_level=0)),
    ("batchnorm-inputs", norm("BatchNormalization", (2, 4, 7), {"scale": (4,), "b": (4,), "mean": (4,), "var": (4,)},
                              15, positive=("var",), consts=False, epsilon=1e-3)),
    ("instancenorm", norm("InstanceNormalization", (2, 3, 6, 7), {"scale": (3,), "b": (3,)}, 13)),
    ("instancenorm-large-plane", norm("InstanceNormalization", (1, 2, 40, 40), {"scale": (2,), "b": (2,)}, 13,
                                      consts=False, epsilon=1e-3)),
    ("groupnorm", norm("GroupNormalization", (2, 6, 5, 5), {"scale": (6,), "b": (6,)}, 21, num_groups=3)),
    ("rmsnorm", norm("RMSNormalization", (3, 4, 64), {"scale": (64,)}, 23)),
    ("lpnorm-p1-axis0", norm("LpNormalization", (5, 4, 3), {}, 13, axis=0, p=1)),
    ("lpnorm-p2-long", norm("LpNormalization", (3, 600), {}, 13, axis=-1, p=2)),
    ("mvn-default-axes", norm("MeanVarianceNormalization", (2, 3, 5, 6), {}, 13)),
    ("mvn-last-axis", norm("MeanVarianceNormalization", (4, 300), {}, 13, axes=[1])),
    # attention
    ("attention-3d-causal", attention(1, 4, 4, 16, 16, 16, scale=0.25, is_causal=1)),
    ("attention-4d-gqa-bool-mask", attention(2, 4, 2, 5, 9, 8, rank3=False, mask=("bool", (2, 1, 5, 9)))),
    ("attention-past-present", attention(1, 2, 2, 3, 4, 8, dv=6, rank3=False, past=5, n_out=3,
                                         mask=("float", (3, 9)))),
    ("attention-softcap-qk", attention(2, 2, 1, 6, 7, 4, n_out=4, softcap=5.0, qk_matmul_output_mode=1)),
    ("attention-long-keys", attention(1, 2, 2, 4, 600, 32, rank3=False, mask=("float", (4, 600)))),
    ("attention-many-short-rows", attention(2, 2, 2, 300, 16, 16, is_causal=1)),
    ("attention-3d-gqa-float-mask", attention(2, 6, 2, 7, 10, 8, dv=4, mask=("float", (6, 7, 10)), scale=0.5)),
    ("fused-attention-key-broadcast-mask", unfused_attention(1, 2, 6, 8, (1, 1, 6, 1))),
    ("fused-attention-nan-to-zero", unfused_attention(1, 2, 6, 8, (1, 1, 6, 6), nan_guard=True)),
]


# also run with fp16 storage: every kind of op, output (Indices, Mean / InvStdDev, present, qk) and
# path (item / group rows, constant tables, runtime parameters, uint8), about half of CASES
FP16 = {
    "maxpool2d-resnet", "maxpool2d-indices", "maxpool3d-colmajor", "maxpool2d-same-lower-colmajor",
    "maxpool2d-uint8", "avgpool2d-include-pad-ceil", "avgpool3d-asym", "lppool1d-p1-pads",
    "softmax-axis1-strided", "softmax-long-row", "logsoftmax-axis0", "logsoftmax-long-row",
    "hardmax-axis1-ties", "hardmax-long-row-ties",
    "layernorm-stats", "layernorm-long-row", "batchnorm-folded", "batchnorm-inputs", "instancenorm-large-plane",
    "groupnorm", "rmsnorm", "lpnorm-p2-long", "mvn-last-axis",
    "attention-4d-gqa-bool-mask", "attention-past-present", "attention-softcap-qk", "attention-many-short-rows",
    "fused-attention-key-broadcast-mask",
}
assert FP16 <= {c[0] for c in CASES}
RUNS = [pytest.param(case, build, "fp32", id=case) for case, build in CASES] + \
    [pytest.param(case, build, "fp16", id=f"{case}-fp16") for case, build in CASES if case in FP16]


def kernel_paths(manifest: dict) -> list:
    """(op, path) of each of the bundle's kernels but the copies."""
    return [(k["op"], k.get("path")) for k in manifest["kernels"] if k["op"] != "copy"]


@pytest.mark.parametrize("case,build,precision", RUNS)
def test_nn_kernel(case, build, precision, tmp_path):
    require_module("onnxruntime")
    import onnxruntime as ort
    half = precision == "fp16"
    model, feeds, opt_level = build(np.random.default_rng(zlib.crc32(case.encode())), half)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    expected = dict(zip(names, sess.run(None, feeds)))
    module = pdc.compile(model, target="opencl", out_dir=str(tmp_path / "b"), opt_level=opt_level,
                         precision=precision)
    assert module.manifest["precision"] == precision
    got = module.run(feeds)
    tolerance = HALF_STORAGE if half else ACCUMULATED
    for name in names:
        tolerance.check(got[name], expected[name], what=name)
    paths = kernel_paths(module.manifest)
    assert paths and all((p or "").startswith("opencl/") for _, p in paths), paths
    if half:  # the same device kernels as with float storage
        fp32 = compile_details(model, str(tmp_path / "fp32"), target="opencl", opt_level=opt_level, build=False)
        assert paths == kernel_paths(fp32.manifest)
