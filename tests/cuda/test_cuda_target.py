"""The cuda targets on a machine with nvcc and no GPU (CI): every zoo model's kernels compile with nvcc
for sm_80 and sm_90 without a warning and without a register spill (ptxas -v), in fp32 and with the
tensor-core kernels of fp16 / bf16 storage; a built bundle refuses to run without a GPU in one line;
its own Makefile and CMakeLists.txt build it; the option errors. Running on a GPU:
tests/cuda/test_cuda_gpu.py (marked gpu)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import onnx

import pdc
from device_models import relu_model
from pdc.compiler import compile_details, load_graph, unbound_dims
from pdc.targets.cuda import cuda_home, nvcc_path
from zoo import ZOO_MODELS

ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")

pytestmark = pytest.mark.usefixtures("cuda_toolkit")


def pdc_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pdc", *args], capture_output=True, text=True, env=env, cwd=cwd)


def ptxas_report(folder: Path, name: str, arch: int) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """nvcc's warnings on NAME_kernels.cu and, per kernel, its spill stores and loads (ptxas -v)."""
    r = subprocess.run([nvcc_path(), "-O3", f"-arch=sm_{arch}", "-std=c++17", "-Xptxas", "-v", "-I.", "-Iruntime",
                        "-c", f"{name}_kernels.cu", "-o", "k.o"], cwd=folder, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln.lower()]
    spills, current = {}, None
    for line in r.stderr.splitlines():
        m = ENTRY.search(line)
        if m:
            current = m.group(1)
            assert int(m.group(2)) == arch
        m = SPILLS.search(line)
        if m and current:
            spills[current] = (int(m.group(1)), int(m.group(2)))
    return warnings, spills


def static_shapes(path: str) -> dict:
    """Every symbolic dim of the model bound to 1 (the zoo's dynamic-batch variants)."""
    return {dim: 1 for _, dim in unbound_dims(load_graph(path))}


# every model in fp32 on sm80 and in fp16 on sm90; the other two on the models whose kernels differ
# most (the conv paths, attention, a recurrent cell): the kernels are the same templates
CONFIGS = [(80, "fp32"), (90, "fp16")]
SOME_CONFIGS = [(90, "fp32"), (80, "bf16")]
SOME_MODELS = ["resnet50", "transformer_encoder", "lstm"]
ZOO_CASES = ([(n, a, p) for n in ZOO_MODELS for a, p in CONFIGS]
             + [(n, a, p) for n in SOME_MODELS for a, p in SOME_CONFIGS])


@pytest.mark.zoo
@pytest.mark.parametrize("name,arch,precision", ZOO_CASES, ids=[f"{n}-sm{a}-{p}" for n, a, p in ZOO_CASES])
def test_zoo_compiles_warning_free_without_spills(name, arch, precision, zoo, tmp_path):
    path = zoo(name)
    c = compile_details(path, str(tmp_path / "b"), target=f"cuda-sm{arch}", precision=precision, build=False,
                        shapes=static_shapes(path) or None)
    host = [k["op"] for k in c.manifest["kernels"] if k["op"] != "copy" and not k.get("path", "").startswith(
        ("cuda/", "opencl/"))]
    assert host == [], f"{name}: host fallback for {host}"
    warnings, spills = ptxas_report(tmp_path / "b", "model", arch)
    assert warnings == []
    assert spills and all(s == (0, 0) for s in spills.values()), {k: s for k, s in spills.items() if s != (0, 0)}


def test_kernel_paths_follow_the_precision(zoo, tmp_path):
    """resnet18 (3x3 and strided 1x1 convolutions): implicit GEMMs on CUDA cores in fp32, on tensor
    cores in fp16."""
    paths = {}
    for precision in ("fp32", "fp16"):
        c = compile_details(zoo("resnet18"), str(tmp_path / precision), target="cuda-sm90", precision=precision,
                            build=False)
        paths[precision] = {k["path"] for k in c.manifest["kernels"] if k["op"] == "fused_conv"}
    assert paths == {"fp32": {"cuda/conv-implicit-tiled"}, "fp16": {"cuda/conv-implicit-wmma"}}


def tiny_model(path: Path) -> str:
    onnx.save(relu_model(), str(path))
    return str(path)


def test_bundle_builds_here_and_refuses_to_run_without_a_gpu(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver: the no-GPU error cannot be seen here")
    model = tiny_model(tmp_path / "m.onnx")
    r = pdc_cli("compile", model, "--target", "cuda-sm90", "-o", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    files = os.listdir(tmp_path / "b")
    assert {"libm.so", "m_kernels.cu", "m.c", "m.h", "CMakeLists.txt", "Makefile"} <= set(files)
    header = (tmp_path / "b" / "m.h").read_text()
    assert "pdc_status m_run_device(void *arena, const void *const *inputs, void *const *outputs);" in header
    r = pdc_cli("run", str(tmp_path / "b"))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"pdc: error: {tmp_path / 'b'}: no usable NVIDIA driver on this machine "
                                     "(cuda-sm90): install the GPU driver (libcuda)"]
    with pytest.raises(pdc.PdcError, match=r"no usable NVIDIA driver on this machine \(cuda-sm90\)"):
        pdc.load(str(tmp_path / "b"))


def test_bundle_makefile_and_cmake_build_it(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    folder = tmp_path / "b"
    assert pdc_cli("compile", model, "--target", "cuda-sm80", "-q", "-o", str(folder)).returncode == 0
    (folder / "libm.so").unlink()
    env = {**os.environ, "CUDA": cuda_home()}
    r = subprocess.run(["make", "-s"], cwd=folder, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (folder / "libm.so").exists() and (folder / "libm.a").exists()
    subprocess.run(["make", "-s", "clean"], cwd=folder, check=True)
    if not shutil.which("cmake"):
        pytest.fail("cmake missing (make test-deps installs it)")
    build = tmp_path / "cmake"
    env = {**os.environ, "CUDACXX": nvcc_path(), "PATH": f"{cuda_home()}/bin:{os.environ['PATH']}"}
    for cmd in (["cmake", "-S", str(folder), "-B", str(build)], ["cmake", "--build", str(build)]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (build / "libm.so").exists() and (build / "libm.a").exists()


@pytest.mark.parametrize("args,message", [
    (["--target", "cuda-sm75", "--precision", "bf16"],
     "pdc: error: --precision bf16: cuda-sm75 (sm_75) has no bfloat16 tensor cores; use fp16, or a cuda-sm80 or "
     "newer target"),
    (["--target", "x86", "--precision", "bf16"],
     "pdc: error: --precision bf16: x86-avx512 computes fp32 (fp16 storage is for the GPU targets: opencl, mali-*, "
     "cuda-*)"),
])
def test_precision_errors(args, message, tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    r = pdc_cli("compile", model, *args, "-o", str(tmp_path / "b"))
    assert r.returncode == 2 or r.returncode == 1
    assert r.stderr.splitlines() == [message.replace("x86-avx512", _host_x86())]
    assert not (tmp_path / "b").exists()


def _host_x86() -> str:
    from pdc.targets import get_target
    return get_target("x86").name


def test_targets_lists_the_presets_and_their_coverage():
    r = pdc_cli("targets")
    for preset in ("cuda-sm75", "cuda-sm80", "cuda-sm86", "cuda-sm89", "cuda-sm90"):
        assert re.search(rf"^\s*{preset}\s+NVIDIA", r.stdout, re.M), r.stdout
    r = pdc_cli("targets", "--coverage")
    assert r.returncode == 0
    block = r.stdout.split("cuda-sm90")[1]
    assert "device, CUDA kernels" in block and "conv" in block


def test_a_launch_larger_than_its_kernel_declares_is_an_internal_error():
    """A GPU refuses a block larger than __launch_bounds__ (or other than OpenCL's fixed group): the
    renderer checks every launch against what its kernel declares."""
    from pdc.codegen.cuda_renderer import check_launch_bounds
    from pdc.codegen.kernels.opencl import Launch
    sources = ['extern "C" __global__ __launch_bounds__(128)\nvoid k_wmma(float *in0) {}',
               "__kernel PDC_WORK_GROUP(64, 1, 1) void k_rows(float *in0) {}"]
    ok = [(0, Launch("k_wmma", ("in0",), (256,), (128,))), (0, Launch("k_rows", ("in0",), (128,), (64,))),
          (0, Launch("k_wmma", ("in0",), (64,), (64,)))]
    check_launch_bounds(sources, ok)
    with pytest.raises(pdc.PdcError, match="k_wmma launched with 256 threads per block, declared for at most 128"):
        check_launch_bounds(sources, [(0, Launch("k_wmma", ("in0",), (256,), (256,)))])
    with pytest.raises(pdc.PdcError, match="k_rows launched with 32 threads per block, declared for exactly 64"):
        check_launch_bounds(sources, [(0, Launch("k_rows", ("in0",), (64,), (32,)))])


def test_no_nvcc_is_a_one_line_error_and_writes_nothing(tmp_path):
    """A machine without the CUDA toolkit: CUDA_HOME names an empty folder, PATH holds no nvcc."""
    model = tiny_model(tmp_path / "m.onnx")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("gcc", "cc", "ld", "as"):  # the host compiler stays
        if shutil.which(program):
            os.symlink(shutil.which(program), bin_dir / program)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": str(bin_dir), "CUDA_HOME": str(tmp_path / "none")}
    r = subprocess.run([sys.executable, "-m", "pdc", "compile", model, "--target", "cuda-sm80", "-o",
                        str(tmp_path / "b")], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("pdc: error: cannot build for cuda-sm80: missing nvcc (the CUDA toolkit: put "
                                         "its bin/ on PATH or set CUDA_HOME)")
    assert not (tmp_path / "b").exists()
