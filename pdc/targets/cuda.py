"""CUDA targets: NVIDIA GPUs by compute capability (cuda-sm75 ... cuda-sm90) and `cuda`, the GPU of
this machine when it has one (else sm_80).

The bundle is a C host library (the x86 bundle's API: NAME_init, NAME_run, contexts, plus
NAME_run_device on device pointers) on the CUDA runtime, linked statically, with its kernels in one
CUDA file compiled by nvcc for the preset's architecture (pdc/codegen/cuda_renderer.py). It builds
on any machine with nvcc, GPU or not; it runs where an NVIDIA GPU and driver exist, and says so at
init where they do not.

Presets: Turing (sm_75: fp16 tensor cores), Ampere (sm_80 A100, sm_86 consumer: fp16 and bf16),
Ada (sm_89) and Hopper (sm_90); the kernels use the warp-level tensor-core API (wmma) every one of
them has, so one code path serves all.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

from ..codegen.kernels import PORTABLE
from ..ir.errors import PdcError
from .base import KernelConfig, Limits, Target, Tool
from .x86 import c_compiler, c_compiler_tool

DEFAULT_ARCH = 80


def cuda_home() -> str:
    """The CUDA toolkit's folder: $CUDA_HOME, else $CUDA_PATH, else the one nvcc belongs to."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    if os.path.isdir("/usr/local/cuda"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else "/usr/local/cuda"


def find_nvcc() -> Optional[str]:
    """nvcc on PATH, else in the toolkit's bin/, else None."""
    return shutil.which("nvcc") or shutil.which(os.path.join(cuda_home(), "bin", "nvcc"))


def nvcc_path() -> str:
    found = find_nvcc()
    if not found:
        raise PdcError("nvcc not found: the cuda targets build with the CUDA toolkit's nvcc (put it on PATH or "
                       "set CUDA_HOME)")
    return found


@functools.lru_cache(maxsize=None)
def host_arch() -> int:
    """This machine's GPU compute capability (e.g. 90) from nvidia-smi, or 0 when it has none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.match(r"\s*(\d+)\.(\d+)", out)
    return int(m.group(1)) * 10 + int(m.group(2)) if m else 0


@dataclass(frozen=True)
class CudaTarget(Target):
    name: str
    description: str
    arch: int  # compute capability, e.g. 90 for sm_90
    bf16: bool = True  # bfloat16 tensor cores (sm_80 and newer)
    fp64: bool = True  # double precision in device code (kernels that compute in double stay on the GPU)

    kernel_families: ClassVar[tuple] = (PORTABLE,)  # the host side's C kernels (fallbacks)
    memory_spaces: ClassVar[tuple] = ("host", "device")
    link_libs: ClassVar[tuple] = ("cudart_static", "dl", "rt", "stdc++")

    @property
    def cflags(self) -> list[str]:
        return ["-O2", "-fPIC", "-std=gnu11", "-fno-math-errno", f"-I{cuda_home()}/include"]

    @property
    def nvcc_flags(self) -> list[str]:
        """nvcc's flags for NAME_kernels.cu: the preset's architecture, position-independent host code."""
        return ["-O3", f"-arch=sm_{self.arch}", "-Xcompiler", "-fPIC", "-std=c++17"]

    @property
    def limits(self) -> Limits:
        return Limits(max_threads=64)

    def kernel_config(self, threads: int) -> KernelConfig:
        return KernelConfig(threads=threads, vector_bits=32, simd="none")

    def precision(self, asked):
        """fp32 by default; fp16 (sm_75+) or bf16 (sm_80+) storage with tensor-core products when asked."""
        if asked is None or asked == "fp32":
            return "fp32"
        if asked == "fp16" or (asked == "bf16" and self.bf16):
            return asked
        if asked == "bf16":
            raise PdcError(f"--precision bf16: {self.name} (sm_{self.arch}) has no bfloat16 tensor cores; "
                           f"use fp16, or a cuda-sm80 or newer target")
        raise PdcError(f"--precision {asked}: {self.name} takes fp32, fp16 or bf16")

    def renderer(self):
        from ..codegen.cuda_renderer import CudaRenderer
        return CudaRenderer(self)

    def device_coverage(self) -> dict[str, list[str]]:
        """Which ops have a device kernel (hand-written, or printed from the kernel IR) and which
        run on the host (pdc targets --coverage)."""
        from ..codegen.kernels import coverage, generators
        from ..codegen.kernels._kir import kir_generated_ops
        from ..codegen.kernels.cuda import CUDA
        from ..codegen.kernels.opencl import OPENCL
        native = sorted(generators(CUDA))
        shared = sorted(set(generators(OPENCL)) - set(native))
        printed = sorted(set(kir_generated_ops()) - set(native) - set(shared))
        host = sorted(set(coverage((PORTABLE,))[PORTABLE]) - set(native) - set(shared) - set(printed))
        return {"device, CUDA kernels": native, "device, OpenCL family kernels compiled as CUDA": shared,
                "device, kernel IR printed as CUDA C": printed, "host fallback (portable C)": host}

    def build_tools(self) -> list[Tool]:
        return [c_compiler_tool()]

    def build_problems(self) -> list[str]:
        problems = super().build_problems()
        if not find_nvcc():
            problems.append("missing nvcc (the CUDA toolkit: put its bin/ on PATH or set CUDA_HOME)")
        elif not os.path.exists(os.path.join(cuda_home(), "lib64", "libcudart_static.a")):
            problems.append(f"missing libcudart_static.a in {cuda_home()}/lib64 (the CUDA toolkit's runtime)")
        return problems

    def run_problems(self) -> list[str]:
        import ctypes.util
        if ctypes.util.find_library("cuda") is None:
            return ["no NVIDIA driver (libcuda) on this machine: cuda bundles build here but run on a GPU machine"]
        return []

    def bundle_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int,
                     manifest: dict) -> dict[str, bytes]:
        """CMakeLists.txt and Makefile that compile NAME_kernels.cu with nvcc."""
        from ..build import cuda_cmake_lists, cuda_makefile
        return {"CMakeLists.txt": cuda_cmake_lists(name, kernel_files, cflags, threads, self.arch).encode(),
                "Makefile": cuda_makefile(name, kernel_files, cflags, threads, self.nvcc_flags, cuda_home()).encode()}

    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        """nvcc compiles NAME_kernels.cu, the host C compiler the rest; linked with the static CUDA runtime."""
        from ..build import build_shared, nvcc_object
        problems = self.build_problems()
        if problems:
            raise PdcError(f"cannot build for {self.name}: {'; '.join(problems)}")
        say(f"building lib{name}.so (nvcc for sm_{self.arch}, host C)")
        obj = nvcc_object(nvcc_path(), self.nvcc_flags, f"{name}_kernels.cu", folder)
        build_shared(folder, name, kernel_files, c_compiler(), cflags, threads, libs=self.link_libs,
                     objects=(obj,), lib_dirs=(f"{cuda_home()}/lib64",))
        return {"library": f"lib{name}.so", "cuda_arch": f"sm_{self.arch}"}


CUDA_PRESETS = (
    CudaTarget("cuda-sm75", "NVIDIA Turing GPUs (sm_75: T4, RTX 20xx) through CUDA", 75, bf16=False),
    CudaTarget("cuda-sm80", "NVIDIA Ampere data-center GPUs (sm_80: A100, A30) through CUDA", 80),
    CudaTarget("cuda-sm86", "NVIDIA Ampere GPUs (sm_86: A10, A40, RTX 30xx) through CUDA", 86),
    CudaTarget("cuda-sm89", "NVIDIA Ada GPUs (sm_89: L4, L40, RTX 40xx) through CUDA", 89),
    CudaTarget("cuda-sm90", "NVIDIA Hopper GPUs (sm_90: H100, H200) through CUDA", 90),
)


def detect_cuda() -> CudaTarget:
    """`cuda`: this machine's GPU architecture when it has a GPU, else sm_80."""
    arch = host_arch() or DEFAULT_ARCH
    found = f"this machine's GPU (sm_{arch})" if host_arch() else f"no GPU here: sm_{DEFAULT_ARCH}"
    return CudaTarget("cuda", f"NVIDIA GPU through CUDA ({found})", arch, bf16=arch >= 80)
