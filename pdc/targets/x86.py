"""x86-64 targets: C with AVX2 or AVX-512 code paths, built with the host C compiler."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from ..codegen.kernels import PORTABLE
from ..ir.errors import PdcError
from .base import KernelConfig, Limits, Target, Tool, host_cores


def host_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@dataclass(frozen=True)
class X86Target(Target):
    name: str
    description: str
    march: str  # -march for gcc/clang
    vector_bits: int
    isa: tuple = field(default=())

    kernel_families: ClassVar[tuple] = ("x86", PORTABLE)
    runtime_sizes: ClassVar[bool] = True

    @property
    def cflags(self) -> list[str]:
        # -fno-trapping-math: no kernel reads the floating-point exception flags, and without it gcc
        # keeps a conditional expression (a clamp, erf's two ranges) as a branch instead of vectorizing
        return ["-O3", f"-march={self.march}", "-fPIC", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math"]

    @property
    def limits(self) -> Limits:
        return Limits(max_threads=1024)

    def pipeline(self, opt_level: int) -> str:
        # a conv here reads weights made at run time at the speed of constant ones where they are
        # small: squeeze-excitation gates go onto them (fold-channel-scale)
        return super().pipeline(opt_level).replace("fuse-conv-bias-activation",
                                                   "fold-channel-scale,fuse-conv-bias-activation")

    def kernel_config(self, threads: int) -> KernelConfig:
        # K blocks of 512 and a 256 KiB packed-B buffer per thread: both stay in a core's L2
        return KernelConfig(threads=threads, vector_bits=self.vector_bits,
                            simd="avx512" if self.vector_bits >= 512 else "avx2", gemm_kc=512, scratch_floats=65536)

    def default_threads(self) -> int:
        return min(host_cores(), self.limits.max_threads)

    @property
    def needed_isa(self) -> set[str]:
        return {"avx512f"} if self.vector_bits == 512 else {"avx2", "fma"}

    def lacking_isa(self) -> list[str]:
        """The instruction sets this target needs and this CPU lacks (none when /proc/cpuinfo is unreadable)."""
        flags = host_flags()
        return sorted(self.needed_isa - flags) if flags else []

    def check_host(self) -> None:
        if self.lacking_isa():
            raise PdcError(f"target {self.name} needs {', '.join(sorted(self.needed_isa))}, which this CPU lacks "
                           f"(use --target x86 to pick what the host supports)")

    def build_tools(self) -> list[Tool]:
        return [c_compiler_tool()]

    def build_problems(self) -> list[str]:
        # the build refuses a CPU without the ISA (check_host): the library could not be loaded here
        lacking = [f"this CPU lacks {', '.join(self.lacking_isa())}"] if self.lacking_isa() else []
        return super().build_problems() + lacking

    def run_problems(self) -> list[str]:
        return self.build_problems()  # runs in-process: what builds here runs here

    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        """Builds lib<name>.so in `folder` with the host C compiler; pdc.Module loads it in-process."""
        from ..build import build_shared
        self.check_host()
        say(f"building lib{name}.so ({len(kernel_files) + 3} C files)")
        build_shared(folder, name, kernel_files, c_compiler(), cflags, threads)
        return {"library": f"lib{name}.so"}


X86_AVX2 = X86Target("x86-avx2", "x86-64 with AVX2 + FMA (x86-64-v3)", "x86-64-v3", 256, ("avx2", "fma"))
X86_AVX512 = X86Target("x86-avx512", "x86-64 with AVX-512 (x86-64-v4)", "x86-64-v4", 512, ("avx512f", "avx2", "fma"))


def detect_host() -> X86Target:
    flags = host_flags()
    return X86_AVX512 if {"avx512f", "avx512bw", "avx512vl"} <= flags else X86_AVX2


def c_compiler_tool() -> Tool:
    """The host C compiler pdc uses ($CC, gcc, cc or clang), as a Tool (gcc when none is found)."""
    for program in (os.environ.get("CC"), "gcc", "cc", "clang"):
        if program and shutil.which(program):
            return Tool(program, "gcc")
    return Tool("gcc", "gcc")


def c_compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if not cc:
        raise PdcError("no C compiler found: install gcc (Debian package 'gcc') or set CC")
    return cc
