"""cuda bundles run, unchanged, on the CPU emulator (tests/cuda/emu, emulator.py): CI has no GPU, and
this is where the CUDA kernels, the host program (device arena, weights, CUDA graphs, copies, the
16-bit conversions, host fallbacks, the status word) and the bundle's errors are checked against
ONNX Runtime.

- the zoo in fp32 (1e-4 relative, no host fallback) and the classifiers in fp16 and bf16 storage
  (within FP16_REL / BF16_REL, top-1 agreeing on seeds 0-3 up to near-ties);
- every conv and matrix-product path over seeded draws of the attribute space
  (tests/kernel_draws.py): the heuristic's choice and every path forced that can compute the draw,
  in fp32, and every third draw in fp16 and bf16 with the tensor-core kernels forced too;
- NAME_run_device, a host fallback between device kernels, an index check on the device, and the
  one-line errors: no GPU, a GPU of another architecture, out of device memory.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_module
from device_models import (check_gather_index_error, check_run_device, check_topk_between, gather_model, relu_model,
                           topk_between_model)
from emulator import build_emulated, compile_emulated
from kernel_draws import assert_matches, conv_case, conv_model, gemm_case, matmul_case, onnxruntime_outputs, product_model
from pdc.compiler import compile_details
from pdc.inputs import random_inputs
from tolerances import max_rel_error, top1_near_tie

ROOT = Path(__file__).resolve().parents[2]
ZOO = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "squeezenet1_1", "transformer_encoder", "lstm", "gru",
       "lenet", "mlp", "digits_cnn", "tiny_cnn")
CONV_PATHS = {"direct": "direct", "tiled": "implicit", "depthwise": "depthwise", "1x1-gemm": "1x1"}


def host_nodes(manifest: dict) -> list[str]:
    return [k["op"] for k in manifest["kernels"]
            if k["op"] != "copy" and not k.get("path", "").startswith(("cuda/", "opencl/"))]


@pytest.fixture(autouse=True)
def _onnxruntime():
    require_module("onnxruntime")


# ---- the zoo ------------------------------------------------------------------------------------------
@pytest.mark.zoo
@pytest.mark.parametrize("name", ZOO)
def test_zoo_matches_onnxruntime_in_fp32(name, zoo, tmp_path):
    import onnxruntime as ort
    path = zoo(name)
    module = compile_emulated(path, tmp_path / "b")
    feeds = random_inputs(module.signature(), 0)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    for (out, g), r in zip(module.run(feeds).items(), ref):
        assert max_rel_error(g, r) <= 1e-4, f"{name} {out}: max rel error {max_rel_error(g, r):.3g}"
    assert host_nodes(module.manifest) == []


# every classifier in fp16; bf16 (the same kernels with another storage type) on two of them
# classifiers in 16-bit storage (squeezenet's layers are in the path draws below; it runs whole in fp32)
STORAGE_CASES = [(n, "fp16") for n in ("mobilenet_v2", "mobilenet_v3_small", "digits_cnn")] + \
    [(n, "bf16") for n in ("mobilenet_v3_small", "digits_cnn")]


@pytest.mark.zoo
@pytest.mark.parametrize("name,precision", STORAGE_CASES, ids=[f"{n}-{p}" for n, p in STORAGE_CASES])
def test_zoo_classifiers_in_16_bit_storage(name, precision, zoo, tmp_path):
    import onnxruntime as ort
    path = zoo(name)
    module = compile_emulated(path, tmp_path / "b", precision=precision)
    assert module.manifest["precision"] == precision
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    bound = 1e-2 if precision == "fp16" else 5e-2
    ties = []
    for seed in range(2):  # the CPU emulator takes seconds per CNN run
        feeds = random_inputs(module.signature(), seed)
        got, ref = list(module.run(feeds).values()), session.run(None, feeds)
        assert max_rel_error(got[0], ref[0]) <= bound, f"{name} seed {seed}: {max_rel_error(got[0], ref[0]):.3g}"
        if top1_near_tie(got[0], ref[0], f"{name} {precision} seed {seed}"):
            ties.append(seed)
    assert len(ties) <= 1
    paths = {k.get("path") for k in module.manifest["kernels"]}
    if name != "digits_cnn":  # its convolutions are too small for tensor-core tiles
        assert any(p and p.endswith("-wmma") for p in paths), paths


# ---- every conv and product path over seeded draws ---------------------------------------------------
def check(model, feeds, folder, monkeypatch, force=None, precision="fp32", expect=None):
    if force:
        monkeypatch.setenv("PDC_FORCE_PATH", force)
    else:
        monkeypatch.delenv("PDC_FORCE_PATH", raising=False)
    module = compile_emulated(model, folder, precision=precision)
    assert_matches(module.run(feeds)["y"], onnxruntime_outputs(model, feeds), precision)
    taken = [k.get("path") for k in module.manifest["kernels"]]
    if expect is not None:
        assert expect in taken, f"expected {expect}, the kernels took {taken}"
    return taken


CONV_SEEDS = list(range(1000, 1010))  # CI's share; tools/fuzz_kernels.py draws more
PRODUCT_SEEDS = list(range(2000, 2010))


def conv_paths(case: dict, precision: str) -> list[tuple[str, str]]:
    """(PDC_FORCE_PATH, the path the manifest must name) for every path that can compute the draw."""
    out = []
    for opencl_name in case["paths"]:
        path = CONV_PATHS[opencl_name]
        if path in ("implicit", "1x1"):
            kernels = ["tiled", "simple"] + (["wmma"] if precision != "fp32" else [])
            out += [(f"cuda-conv={path},cuda-gemm={k}", f"cuda/conv-{path}-{k}") for k in kernels]
        else:
            out.append((f"cuda-conv={path}", f"cuda/conv-{path}"))
    return out


def runs(seeds: list) -> list:
    """Every draw in fp32, every third in fp16 and bf16."""
    return [(s, "fp32") for s in seeds] + [(s, p) for s in seeds[::3] for p in ("fp16", "bf16")]


@pytest.mark.parametrize("seed,precision", runs(CONV_SEEDS))
def test_conv_paths_match_onnxruntime(seed, precision, tmp_path, monkeypatch):
    case = conv_case(seed)
    model, feeds = conv_model(case)
    taken = check(model, feeds, tmp_path / "auto", monkeypatch, precision=precision)
    assert any(p and p.startswith("cuda/conv-") for p in taken), taken
    for force, expect in conv_paths(case, precision):
        check(model, feeds, tmp_path / force.replace(",", "_").replace("=", "-"), monkeypatch, force=force,
              precision=precision, expect=expect)


@pytest.mark.parametrize("seed,precision", runs(PRODUCT_SEEDS))
def test_gemm_matmul_paths_match_onnxruntime(seed, precision, tmp_path, monkeypatch):
    case = gemm_case(seed) if seed % 2 == 0 else matmul_case(seed)
    model, feeds = product_model(case)
    taken = check(model, feeds, tmp_path / "auto", monkeypatch, precision=precision)
    assert any(p and p.startswith("cuda/gemm-") for p in taken), taken
    for kernel in ["tiled", "simple"] + (["wmma"] if precision != "fp32" else []):
        check(model, feeds, tmp_path / kernel, monkeypatch, force=f"cuda-gemm={kernel}", precision=precision,
              expect=f"cuda/gemm-{kernel}")


# ---- the host program and the errors ------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_run_device_takes_device_pointers(precision, tmp_path):
    compile_details(relu_model(), str(tmp_path / "b"), target="cuda-sm80", name="m", precision=precision,
                    build=False)
    build_emulated(tmp_path / "b", "m")  # not loaded by a Module: check_run_device initializes it
    check_run_device(str(tmp_path / "b" / "libm.so"), "m")


def test_host_fallback_between_device_kernels(tmp_path):
    """TopK has no device kernel: the run replays the graph of Exp, copies e out, runs TopK on the
    host, copies its values in and replays the graph of Neg."""
    module = compile_emulated(topk_between_model(), tmp_path / "b")
    assert host_nodes(module.manifest) == ["top_k"]
    assert (tmp_path / "b" / "model.c").read_text().count("pdc_cu_replay(&cu, graphs[") == 2
    check_topk_between(module)


def test_an_index_out_of_range_on_the_device_is_reported(tmp_path):
    module = compile_emulated(gather_model(), tmp_path / "b")
    assert host_nodes(module.manifest) == []
    check_gather_index_error(module)


def pdc_run(folder: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "pdc", "run", str(folder)], capture_output=True, text=True, env=full)


@pytest.fixture(scope="module")
def relu_bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("relu") / "b"
    compile_details(relu_model(), str(folder), target="cuda-sm80", build=False)
    build_emulated(folder, "model")
    return folder


def test_runs_on_the_emulator_from_the_command_line(relu_bundle):
    r = pdc_run(relu_bundle)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("env,message", [
    ({"PDC_CUDA_EMU_DEVICES": "0"}, "no CUDA GPU on this machine (cuda-sm80 bundles run on an NVIDIA GPU)"),
    ({"PDC_CUDA_EMU_ARCH": "75"},
     "cuda-sm80 was compiled for sm_80; GPU 0 (pdc CUDA emulator) is sm_75: compile with --target cuda-sm75"),
    ({"PDC_CUDA_EMU_ARCH": "90"},
     "cuda-sm80 was compiled for sm_80; GPU 0 (pdc CUDA emulator) is sm_90: compile with --target cuda-sm90"),
    ({"PDC_CUDA_EMU_MEMORY": "100"},
     r"out of device memory: the device arena needs (\d+) bytes, the GPU has 100 of 100 free"),
    ({"PDC_CUDA_DEVICE": "3"}, "PDC_CUDA_DEVICE=3: this machine has 1 CUDA GPU(s)"),
])
def test_device_errors_are_one_line(relu_bundle, env, message):
    r = pdc_run(relu_bundle, **env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    m = re.fullmatch(re.escape(f"pdc: error: {relu_bundle}: ") + (message if "(\\d+)" in message else re.escape(message)),
                     r.stderr.strip())
    assert m, r.stderr
    if m.groups():  # x (48 floats), which Relu overwrites with y in place, padded to the device alignment
        assert int(m.group(1)) == 256


def test_a_newer_minor_version_runs(relu_bundle):
    """sm_86 runs cubins built for sm_80 (same major version)."""
    assert pdc_run(relu_bundle, PDC_CUDA_EMU_ARCH="86").returncode == 0
