"""What a bundle's weights blob holds: the constants kernels read in place, the kernels' packed
copies, and nothing else, within a stated bound of the model's parameter bytes.

The bound (`weight_bound`) sums, over the parameters of a model (ONNX initializers and Constants):
- each parameter's bytes, once: a kernel reads it in place or reads a packed copy, never both;
- the padding of packed copies, per matrix a kernel packs (the consumer decides which: Conv's W, one
  matrix per group, rows = output channels; Gemm's and MatMul's constant operands; a recurrent W / R,
  in up to two row ranges per direction): at most max(1/8 of its padded dimension, PAD_LINES[target])
  rows or columns of K elements (K: the reduction length). x86 B panels are 16 to 64 floats wide
  (dense_core.panel_vectors: a wider one only while it pads under 1/8) and A panels at most 12 rows
  tall; ARM NEON panels are at most 16 wide and 8 tall; Cortex-M reads weights in place and packs (a transposed B) in panels of
  4; recurrent weights are packed in panels of RNN_PANEL rows on every target;
- index tables of convolutions: 8 bytes per K (int32 offsets), and for a depthwise conv 4 bytes per
  tap per 16 output pixels (lane masks);
- a 2-D 3x3 stride-1 conv on x86 and arm64 may hold its Winograd transform instead
  (kernels/winograd.py): (m+2)^2 / 9 of its bytes, 4x for F(4x4), padded as 36 matrices per group;
- 64 bytes of alignment per parameter, and 6 x 64 bytes per node for what kernels add besides (bias
  copies, per-problem offsets, their alignment).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
import zoo as zoo_lib
from pdc.compiler import compile_bundle, load_graph
from pdc.ir.shapes import unbound_dims
from tolerances import assert_close

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["x86", "arm64", "cortex-m4"]
PAD_LINES = {"x86": 15, "arm64": 15, "cortex-m4": 3, "cortex-m3": 3}
PAD_SHARE = 8
RNN_PANEL = 16


def parameters(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The model's parameters by name: initializers and Constant nodes' values."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            out.update({node.output[0]: numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"})
    return out


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _padding(lines: int, padded: int, k: int, itemsize: int, matrices: int = 1) -> int:
    """Bytes a packed copy may add: per matrix, max(padded / 8, lines) lines of k elements."""
    return matrices * max(padded // PAD_SHARE, lines) * k * itemsize


def _spatial(shapes: dict, name: str) -> int:
    """Output pixels per image and channel of a conv output (1 when shape inference left it open)."""
    dims = shapes.get(name)
    return math.prod(d if d > 0 else 1 for d in dims[2:]) if dims else 1


def winograd_shaped(node: onnx.NodeProto, w: np.ndarray) -> bool:
    """A 2-D 3x3 conv with unit strides and dilations: what the Winograd paths take."""
    return (w.ndim == 4 and w.shape[2:] == (3, 3) and all(s == 1 for s in _attr(node, "strides", [1, 1]))
            and all(d == 1 for d in _attr(node, "dilations", [1, 1])))


def weight_bound(model: onnx.ModelProto, target: str) -> int:
    """The most bytes the weights blob of `model` may take on target (see the module docstring)."""
    params = parameters(model)
    typed = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(typed.graph.value_info) + list(typed.graph.output)}
    lines = PAD_LINES[target]
    total = sum(w.nbytes + 64 for w in params.values()) + 6 * 64 * len(model.graph.node)
    for node in model.graph.node:
        ins = list(node.input)
        const = {i: params[n] for i, n in enumerate(ins) if n in params and params[n].size}
        if node.op_type == "Conv" and 1 in const:
            w = const[1]
            group = _attr(node, "group", 1)
            k = w.size // w.shape[0]
            taps = math.prod(w.shape[2:])
            total += _padding(lines, w.shape[0] // group, k, w.itemsize, group) + 8 * k
            if winograd_shaped(node, w) and not target.startswith("cortex-m"):
                total += 3 * w.nbytes + _padding(lines, w.shape[0] // group, w.shape[1], w.itemsize, 36 * group)
            if group > 1 and w.shape[1] == 1:
                total += 4 * taps * (-(-_spatial(shapes, node.output[0]) // 16) + 1)
        elif node.op_type == "Gemm":
            ta, tb = _attr(node, "transA", 0), _attr(node, "transB", 0)
            if 1 in const:
                k, n = const[1].shape[::-1] if tb else const[1].shape
                total += _padding(lines, n, k, const[1].itemsize)
            if 0 in const:
                m, k = const[0].shape[::-1] if ta else const[0].shape
                total += _padding(lines, m, k, const[0].itemsize)
        elif node.op_type == "MatMul":
            if 1 in const and const[1].ndim >= 2:
                *lead, k, n = const[1].shape
                total += _padding(lines, n, k, const[1].itemsize, math.prod(lead))
            if 0 in const and const[0].ndim >= 2:
                *lead, m, k = const[0].shape
                total += _padding(lines, m, k, const[0].itemsize, math.prod(lead))
        elif node.op_type in ("LSTM", "GRU", "RNN"):
            for i in (1, 2):
                if i in const:
                    d, rows, k = const[i].shape
                    total += 2 * d * (RNN_PANEL - 1) * k * const[i].itemsize
            if 3 in const:
                total += const[3].shape[0] * RNN_PANEL * const[3].itemsize
    return total


def parameter_bytes(model: onnx.ModelProto) -> int:
    return sum(w.nbytes for w in parameters(model).values())


def weight_bytes(model, target: str, tmp_path, **options) -> int:
    """The manifest's weight_bytes of the bundle (rendered, not built)."""
    shapes = {dim: 1 for _, dim in unbound_dims(load_graph(model))} or None
    out = tmp_path / f"b-{target}"
    compile_bundle(model, str(out), target=target, build=False, shapes=shapes, **options)
    return json.loads((out / "manifest.json").read_text())["weight_bytes"]


# ---- every zoo model, every target family --------------------------------------------------------------
CASES = [pytest.param(name, target, marks=[pytest.mark.zoo] if name in zoo_lib.PADDLE_MODELS else [],
                      id=f"{name}-{target}") for name in zoo_lib.ZOO_MODELS for target in TARGETS]


@pytest.mark.parametrize("name,target", CASES)
def test_zoo_weights_within_the_bound(name, target, zoo, tmp_path):
    path = zoo(name)
    model = onnx.load(path)
    got = weight_bytes(path, target, tmp_path)
    bound = weight_bound(model, target)
    assert got <= bound, (f"{name} on {target}: {got:,} weight bytes, bound {bound:,} "
                          f"(parameters {parameter_bytes(model):,})")


# ---- Gemm: packed weights replace the original --------------------------------------------------------
def gemm_model(m: int, k: int, n: int, trans_b: int, alpha: float = 1.0, seed: int = 0,
               shared_add: bool = False) -> tuple[onnx.ModelProto, dict, np.ndarray, np.ndarray]:
    """y = alpha * x @ W' + b (x: [m, k], W' = W or W^T); shared_add: a second output W + z reads
    the same initializer in place."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n, k) if trans_b else (k, n)) / math.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=trans_b, alpha=alpha)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])]
    feeds = {"x": x}
    if shared_add:
        feeds["z"] = rng.standard_normal(w.shape).astype(np.float32)
        nodes.append(helper.make_node("Add", ["w", "z"], ["s"]))
        inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, list(w.shape)))
        outputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, list(w.shape)))
    graph = helper.make_graph(nodes, "gemm", inputs, outputs,
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, feeds, w, b


def onnxruntime_outputs(model: onnx.ModelProto, feeds: dict) -> dict:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return dict(zip(names, sess.run(names, feeds)))


def check_numbers(model, feeds, target: str, tmp_path, **options) -> dict:
    mod = pdc.compile(model, target=target, out_dir=str(tmp_path / f"run-{target}"), **options)
    got = mod.run(feeds)
    want = onnxruntime_outputs(model, feeds)
    for name, value in want.items():
        assert_close(got[name], value)
    return json.loads((Path(mod.folder) / "manifest.json").read_text())


def x86_panel_bytes(k: int, n: int) -> int:
    """A K x N matrix packed into the narrowest x86 panels (16 floats)."""
    return k * -(-n // 16) * 16 * 4


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_stores_its_weights_once_on_x86(trans_b, tmp_path):
    model, feeds, w, b = gemm_model(3, 96, 40, trans_b)
    manifest = check_numbers(model, feeds, "x86", tmp_path)
    # the packed panels (40 columns padded to at most 48) and the bias
    assert manifest["weight_bytes"] <= 96 * 48 * 4 + 64 + b.nbytes + 64


def test_gemm_4096x10_packs_into_a_narrow_panel(tmp_path):
    """A GEMV of 4096 x 10: 16-float panels (was 64: 6.4x the weights, plus the original)."""
    model, feeds, w, b = gemm_model(1, 4096, 10, 1, alpha=0.5)
    manifest = check_numbers(model, feeds, "x86", tmp_path)
    assert manifest["weight_bytes"] <= x86_panel_bytes(4096, 10) + 64 + b.nbytes + 64
    assert manifest["weight_bytes"] <= weight_bound(model, "x86")


def test_matmul_4096x10_on_x86(tmp_path):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((4096, 10)) / 64).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4096])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    manifest = check_numbers(model, {"x": rng.standard_normal((2, 4096)).astype(np.float32)}, "x86", tmp_path)
    assert manifest["weight_bytes"] <= x86_panel_bytes(4096, 10) + 64


def test_a_constant_one_kernel_packs_and_another_reads_stays(tmp_path):
    """W packed by the Gemm and read in place by an Add: the blob holds both, the Add gets W."""
    model, feeds, w, b = gemm_model(2, 64, 24, 1, shared_add=True)
    manifest = check_numbers(model, feeds, "x86", tmp_path)
    assert manifest["weight_bytes"] >= 2 * w.nbytes  # the original and a packed copy at least as big


def test_a_constant_output_is_copied_from_the_blob(tmp_path):
    c = np.arange(12, dtype=np.float32).reshape(3, 4)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "k",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
                               helper.make_tensor_value_info("c", TensorProto.FLOAT, [3, 4])],
                              [numpy_helper.from_array(c, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    manifest = check_numbers(model, {"x": np.array([-1, 0, 2], np.float32)}, "x86", tmp_path)
    assert manifest["weight_bytes"] == 64


# ---- microcontrollers --------------------------------------------------------------------------------
def require_mcu_tools() -> None:
    missing = [p for p in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if shutil.which(p) is None]
    if missing:
        msg = f"missing: {', '.join(missing)} (Debian: gcc-arm-none-eabi, binutils-arm-none-eabi, qemu-system-arm)"
        if os.environ.get("CI") or os.environ.get("PDC_ARM_REQUIRED"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def test_gemm_trans_b_stores_its_weights_once_on_cortex_m(tmp_path):
    """Cortex-M reads weights in place; a transposed B is packed instead (panels of 4): not both."""
    model, feeds, w, b = gemm_model(1, 64, 10, 1)
    got = weight_bytes(model, "cortex-m4", tmp_path)
    assert got <= 64 * 12 * 4 + 64 + b.nbytes + 64  # 10 columns in panels of 4, the bias
    require_mcu_tools()
    check_numbers(model, feeds, "cortex-m4", tmp_path)


def test_tiny_cnn_example_compiles_for_cortex_m3(tmp_path):
    require_mcu_tools()
    model_path = tmp_path / "tiny_cnn.onnx"
    subprocess.run([sys.executable, str(ROOT / "examples" / "tiny_cnn.py"), str(model_path)], check=True,
                   capture_output=True)
    out = tmp_path / "m3"
    r = subprocess.run([sys.executable, "-m", "pdc.cli", "compile", str(model_path), "--target", "cortex-m3",
                        "-o", str(out), "--shape", "N=1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weight_bytes"] <= weight_bound(onnx.load(str(model_path)), "cortex-m3")
    assert manifest["flash_bytes"] <= manifest["flash_limit"]
