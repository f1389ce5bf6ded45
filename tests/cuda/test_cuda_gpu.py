"""The cuda target on an NVIDIA GPU (marked gpu: skipped where the machine has none, CI included):
the zoo against ONNX Runtime in fp32 (1e-4 relative) and in fp16 / bf16 storage (top-1 agreement),
the device-pointer entry point, and the bundle's one-line errors for a GPU of another
architecture and for a model larger than the GPU's memory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import pdc
from pdc.compiler import compile_details
from conftest import require_module
from device_models import check_run_device, relu_model
from pdc.inputs import random_inputs
from tolerances import max_rel_error, top1_near_tie

ROOT = Path(__file__).resolve().parents[2]
ZOO = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "resnet50", "squeezenet1_1", "transformer_encoder",
       "lstm", "gru", "lenet", "mlp", "digits_cnn", "tiny_cnn")
CLASSIFIERS = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "resnet50", "squeezenet1_1")

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("cuda_gpu")]


def device_nodes(manifest: dict) -> list[str]:
    return [k["op"] for k in manifest["kernels"]
            if k["op"] != "copy" and not k.get("path", "").startswith(("cuda/", "opencl/"))]


@pytest.mark.zoo
@pytest.mark.parametrize("name", ZOO)
def test_zoo_matches_onnxruntime_in_fp32(name, zoo, tmp_path):
    require_module("onnxruntime")
    import onnxruntime as ort
    path = zoo(name)
    module = pdc.compile(path, target="cuda", out_dir=str(tmp_path / "b"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for seed in range(2):
        feeds = random_inputs(module.signature(), seed)
        for (out, g), r in zip(module.run(feeds).items(), session.run(None, feeds)):
            assert max_rel_error(g, r) <= 1e-4, f"{name} {out} seed {seed}: max rel error {max_rel_error(g, r):.3g}"
    assert device_nodes(module.manifest) == []


@pytest.mark.zoo
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_zoo_top1_agrees_in_16_bit_storage(name, precision, zoo, cuda_gpu, tmp_path):
    require_module("onnxruntime")
    import onnxruntime as ort
    if precision == "bf16" and cuda_gpu < 80:
        pytest.skip("bf16 tensor cores need sm_80")
    path = zoo(name)
    module = pdc.compile(path, target="cuda", precision=precision, out_dir=str(tmp_path / "b"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ties = []
    for seed in range(32):
        feeds = random_inputs(module.signature(), seed)
        got, ref = list(module.run(feeds).values()), session.run(None, feeds)
        if top1_near_tie(got[0], ref[0], f"{name} {precision} seed {seed}"):
            ties.append(seed)
    assert len(ties) <= 1, f"{name}: top-1 differs on near-ties of seeds {ties}"


def tiny(path: Path) -> str:
    onnx.save(relu_model(), str(path))
    return str(path)


def test_run_device_takes_device_pointers(tmp_path):
    compile_details(relu_model(), str(tmp_path / "b"), target="cuda", name="m")  # built, not loaded
    check_run_device(str(tmp_path / "b" / "libm.so"), "m")


def pdc_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pdc", *args], capture_output=True, text=True, env=env)


def test_another_architecture_is_a_one_line_error(cuda_gpu, tmp_path):
    other = 80 if cuda_gpu // 10 != 8 else 90
    folder = tmp_path / "b"
    assert pdc_cli("compile", tiny(tmp_path / "m.onnx"), "--target", f"cuda-sm{other}", "-o", str(folder)).returncode == 0
    r = pdc_cli("run", str(folder))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    assert f"cuda-sm{other} was compiled for sm_{other}; GPU 0 (" in r.stderr
    assert f") is sm_{cuda_gpu}: compile with --target cuda-sm{cuda_gpu}" in r.stderr


def test_model_larger_than_the_gpu_is_a_one_line_error(tmp_path):
    """An intermediate of 1.2 TB: the device arena cannot be allocated."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    shape = onnx.numpy_helper.from_array(np.array([300000, 1000000], np.int64), "s")
    nodes = [helper.make_node("Expand", ["x", "s"], ["e"]), helper.make_node("ReduceSum", ["e"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "huge", [x], [y], [shape]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    folder = tmp_path / "b"
    r = pdc_cli("compile", str(tmp_path / "m.onnx"), "--target", "cuda", "--max-tensor-bytes", "2T", "-o", str(folder))
    assert r.returncode == 0, r.stderr
    r = pdc_cli("run", str(folder))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    assert "out of device memory: the device arena needs" in r.stderr
