"""OpenCL targets: a generic OpenCL 1.2 device and Mali GPU presets.

The bundle is a C host library (the API of the x86 bundle: NAME_init, NAME_run, contexts) linked
with -lOpenCL, whose kernels are one OpenCL C program built at init on the device it finds
(pdc/codegen/opencl_renderer.py). Here it runs in-process on PoCL, the CPU OpenCL implementation;
on a phone the same bundle, cross-compiled with the board's OpenCL library, drives the Mali GPU.

The Mali presets' figures are the vendor's optimisation guides' (Arm Mali GPU OpenCL developer
guides; Bifrost: G52, G76; Valhall: G78, G710): the work-group size kernels aim for, the vector
width that fills the arithmetic units, fp16 arithmetic, the local memory a work-group may use,
and whether weights are better read through image2d (texture cache).
"""
from __future__ import annotations

import ctypes.util
import os
from dataclasses import dataclass
from typing import Callable, ClassVar

from ..codegen.kernels import PORTABLE
from .base import KernelConfig, Limits, Target, Tool
from .x86 import c_compiler, c_compiler_tool

HEADER = "/usr/include/CL/cl.h"


@dataclass(frozen=True)
class OpenCLTarget(Target):
    name: str
    description: str
    work_group: int = 64  # work-items per group the kernels aim for
    vector_width: int = 4  # float lanes per vector load (float4)
    fp16: bool = False  # the device computes half precision at twice the rate
    local_memory: int = 32768  # bytes of __local memory a work-group may use
    image_weights: bool = False  # weights through image2d (the texture cache) pays on this GPU
    fp64: bool = True  # the device has cl_khr_fp64 (Mali GPUs do not: a kernel in double runs on the host)

    kernel_families: ClassVar[tuple] = (PORTABLE,)  # the host side's C kernels (fallbacks)
    memory_spaces: ClassVar[tuple] = ("host", "device")
    link_libs: ClassVar[tuple] = ("OpenCL",)

    @property
    def cflags(self) -> list[str]:
        return ["-O2", "-fPIC", "-std=gnu11", "-fno-math-errno"]

    @property
    def limits(self) -> Limits:
        return Limits(max_threads=64)

    def kernel_config(self, threads: int) -> KernelConfig:
        return KernelConfig(threads=threads, vector_bits=32 * self.vector_width, simd="none")

    def precision(self, asked):
        """fp16 storage by default where the GPU computes half at twice the rate (the Mali presets),
        fp32 on a generic device; either when asked."""
        from ..ir.errors import PdcError
        if asked is None:
            return "fp16" if self.fp16 else "fp32"
        if asked not in ("fp32", "fp16"):
            raise PdcError(f"--precision {asked}: {self.name} takes fp32 or fp16")
        return asked

    def renderer(self):
        from ..codegen.opencl_renderer import OpenCLRenderer
        return OpenCLRenderer(self)

    def device_coverage(self) -> dict[str, list[str]]:
        """Which ops have a device kernel (hand-written, or printed from the kernel IR) and which
        run on the host (pdc targets --coverage)."""
        from ..codegen.kernels import coverage, generators
        from ..codegen.kernels._kir import kir_generated_ops
        from ..codegen.kernels.opencl import OPENCL as FAMILY
        native = sorted(generators(FAMILY))
        printed = sorted(set(kir_generated_ops()) - set(native))
        host = sorted(set(coverage((PORTABLE,))[PORTABLE]) - set(native) - set(printed))
        return {"device, OpenCL kernels": native, "device, kernel IR printed as OpenCL C": printed,
                "host fallback (portable C)": host}

    def build_tools(self) -> list[Tool]:
        return [c_compiler_tool()]

    def build_problems(self) -> list[str]:
        problems = super().build_problems()
        if not os.path.exists(HEADER):
            problems.append("missing the OpenCL headers and loader (Debian package ocl-icd-opencl-dev)")
        return problems

    def run_problems(self) -> list[str]:
        if ctypes.util.find_library("OpenCL") is None:
            return ["missing the OpenCL loader libOpenCL (Debian package ocl-icd-libopencl1)"]
        if not any(f.endswith(".icd") for f in _listdir("/etc/OpenCL/vendors")):
            return ["no OpenCL platform installed (Debian package pocl-opencl-icd)"]
        return []

    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        """Builds lib<name>.so with the host C compiler, linked with the OpenCL loader."""
        from ..build import build_shared
        from ..ir.errors import PdcError
        problems = self.build_problems()
        if problems:
            raise PdcError(f"cannot build for {self.name}: {'; '.join(problems)}")
        say(f"building lib{name}.so (host C and the OpenCL loader; the kernels build at init)")
        build_shared(folder, name, kernel_files, c_compiler(), cflags, threads, libs=self.link_libs)
        return {"library": f"lib{name}.so"}


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


OPENCL = OpenCLTarget("opencl", "any OpenCL 1.2 device (fp32), run here on PoCL")
MALI = (
    OpenCLTarget("mali-g52", "Arm Mali-G52 (Bifrost) through OpenCL", work_group=64, vector_width=4, fp16=True,
                 local_memory=32768, image_weights=True, fp64=False),
    OpenCLTarget("mali-g76", "Arm Mali-G76 (Bifrost) through OpenCL", work_group=64, vector_width=4, fp16=True,
                 local_memory=32768, image_weights=True, fp64=False),
    OpenCLTarget("mali-g78", "Arm Mali-G78 (Valhall) through OpenCL", work_group=64, vector_width=4, fp16=True,
                 local_memory=32768, image_weights=False, fp64=False),
    OpenCLTarget("mali-g710", "Arm Mali-G710 (Valhall) through OpenCL", work_group=128, vector_width=4, fp16=True,
                 local_memory=32768, image_weights=False, fp64=False),
)
OPENCL_TARGETS = (OPENCL, *MALI)
