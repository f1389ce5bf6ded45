"""The Target interface: everything the compiler asks of a target, as explicit hooks.

compile_bundle (pdc/compiler.py) drives a target only through these methods: it never probes for
attributes. A new target subclasses Target in its own module, fills in the hooks, and adds its
presets to pdc/targets/__init__.py (see docs/ARCHITECTURE.md, "Adding a target").
"""
from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

from ..ir.dtypes import DType
from ..ir.errors import PdcError
from ..ir.ops.fused_elementwise import decode_program

@dataclass(frozen=True)
class Tool:
    """A program a target needs and the Debian package that provides it."""
    program: str
    package: str

    def path(self) -> str:
        found = shutil.which(self.program)
        if not found:
            raise PdcError(f"{self.program} not found: it comes with the Debian package '{self.package}' "
                           f"(apt-get install {self.package})")
        return found

    def available(self) -> bool:
        return shutil.which(self.program) is not None

    def missing(self) -> str:
        return f"missing {self.program} (Debian package {self.package})"


def host_cores() -> int:
    """The cores this process may run on: its CPU affinity (which containers and taskset narrow),
    else os.cpu_count()."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class KernelConfig:
    """What a kernel generator may assume about where its code runs and how to split it.

    Filled by Target.kernel_config from the target's presets and the compile options; the one
    place tiles and thread counts come from (a tuning database can later return another one)."""
    threads: int  # threads the bundle is compiled for (--threads): how work is split
    vector_bits: int  # widest vector register the kernels may use
    simd: str  # the kernels' vector ISA: avx512, avx2, neon64, neon32, mve, none
    gemm_kc: int = 256  # K block of the packed GEMM kernels (see k_block)
    scratch_floats: int = 16384  # per-thread packed-B buffer of the GEMM kernels, in floats (64 KiB)
    a_scratch_floats: int = 32768  # per-thread packed-A buffer bound of the dense conv paths (128 KiB)
    pack_weights: bool = True  # repack constant weights at compile time (costs weight bytes)
    # how a device stores float32 tensors: "f32", or "f16" (--precision fp16: half in memory, float
    # arithmetic; OpenCL kernels read and write them through PDC_LD / PDC_ST)
    float_storage: str = "f32"
    vtcm_bytes: int = 0  # a DSP's on-chip memory for the kernels' tiles (Hexagon VTCM; 0: none)
    # dims known only at run time (--shape batch=1..8): (symbol, lo, hi) each, pdc_dims' order
    dim_bounds: tuple = ()

    @property
    def parallel(self) -> bool:
        return self.threads > 1

    @property
    def bounds(self) -> dict:
        """symbol -> (lo, hi) of the dims known only at run time."""
        return {sym: (lo, hi) for sym, lo, hi in self.dim_bounds}

    def k_block(self, k: int) -> int:
        """The K block for a reduction of length k: none up to 1.25 gemm_kc, else equal blocks of
        at most gemm_kc."""
        if k <= self.gemm_kc + self.gemm_kc // 4:
            return max(k, 1)
        return -(-k // -(-k // self.gemm_kc))


def _narrow_type(node):
    """A narrow dtype (float8, 4-bit, 2-bit) the node reads, writes or, fused, converts to; or None."""
    types = [v.type.dtype for v in node.inputs + node.outputs if v is not None]
    if node.op == "fused_elementwise":  # a cast to a narrow type inside the chain
        types += [a for step in decode_program(node.attrs) for a in step.attrs.values() if isinstance(a, DType)]
    return next((t for t in types if t.is_narrow), None)


@dataclass(frozen=True)
class Limits:
    """What a part can hold and run: None where the target sets no limit."""
    max_threads: int = 64
    flash: Optional[int] = None
    ram: Optional[int] = None
    dtypes: Optional[frozenset] = None  # the element types its kernels compute (short names: f32, i8...)


class Target(ABC):
    """One code target (a preset such as x86-avx512, arm64 or cortex-m4)."""
    name: str
    description: str
    aliases: tuple = ()
    # kernel families in the order the registry asks them (pdc/codegen/kernels/__init__.py); a
    # family's generator may decline a node (return None) and the next one takes it
    kernel_families: ClassVar[tuple] = ("portable",)
    # whether its kernels take float8, 4-bit and 2-bit tensors (the C helpers of codegen/narrow_c.py)
    narrow_types: ClassVar[bool] = True
    # how `pdc run` / pdc.Module execute a bundle: "in-process" (ctypes) or the name of a runner
    runner_kind: ClassVar[str] = "in-process"
    # the memory spaces its kernels use, "host" first (pdc/codegen/placement.py): a device target
    # adds "device" (and "on-chip" for its kernels' scratch)
    memory_spaces: ClassVar[tuple] = ("host",)
    # system libraries the bundle links besides pthread and libm (OpenCL for a GPU target)
    link_libs: ClassVar[tuple] = ()
    # computes in fixed point with types it chooses itself (an FPGA): --precision names a type,
    # --calibration feeds its choice, --reuse-factor applies (with_fixed_point)
    fixed_point: ClassVar[bool] = False
    runtime_sizes: ClassVar[bool] = False  # compiles dims known only at run time (--shape N=1..8)

    # ---- compiling -----------------------------------------------------------------------------
    @property
    @abstractmethod
    def cflags(self) -> list[str]:
        """C compiler flags of the bundle's kernels and runtime."""

    @property
    @abstractmethod
    def limits(self) -> Limits:
        ...

    def pipeline(self, opt_level: int) -> str:
        """The graph passes for -O<opt_level>, as a pipeline string (layout passes included)."""
        from ..passes.manager import pipeline_for_level
        return pipeline_for_level(opt_level)

    def kernel_config(self, threads: int) -> KernelConfig:
        return KernelConfig(threads=threads, vector_bits=128, simd="none")

    def precision(self, asked: Optional[str]) -> str:
        """The float precision of the bundle's tensors for --precision `asked` (None: the target's
        default): fp32 everywhere except where a target stores fp16."""
        if asked not in (None, "fp32"):
            raise PdcError(f"--precision {asked}: {self.name} computes fp32 (fp16 storage is for the GPU "
                           f"targets: opencl, mali-*, cuda-*)")
        return "fp32"

    def default_threads(self) -> int:
        """The thread count of a bundle compiled without --threads: one, unless the target is this
        machine (x86), whose bundles get every core as ONNX Runtime does."""
        return 1

    def space_of(self, node) -> str:
        """The memory space a node's kernel runs in: a device target answers "device" for the nodes
        it has device kernels for and "host" for the rest (placement copies values between them)."""
        return "host"

    def renderer(self):
        """The printer of the bundle's source files (the C renderer unless a target needs another)."""
        from ..codegen.c_renderer import CRenderer
        return CRenderer(self)

    def check_options(self, weights: str, threads: int) -> None:
        """Refuses compile options this target cannot honour, before any work."""
        if threads > self.limits.max_threads:
            raise PdcError(f"{self.name}: --threads {threads} exceeds the target's {self.limits.max_threads}")

    def check_graph(self, graph) -> None:
        """Refuses a graph the target cannot compute (an element type outside limits.dtypes, or a
        narrow one where narrow_types is off), naming the first value that has it."""
        allowed = self.limits.dtypes
        for node in graph.nodes:
            narrow = None if self.narrow_types else _narrow_type(node)
            if narrow is not None:
                raise PdcError(f"{self.name} has no kernels for {narrow} ({node.describe()}); float8, 4-bit and "
                               f"2-bit tensors compile for the C targets (x86, ARM, Cortex-M, Hexagon)")
            for v in node.inputs + node.outputs:
                if allowed is not None and v is not None and v.type.dtype.short not in allowed:
                    raise PdcError(f"{self.name} does not compute {v.type.dtype} (%{v.name} of {node.describe()}); "
                                   f"it computes {', '.join(sorted(allowed))}")

    def with_memory(self, flash=None, ram=None, vtcm=None) -> "Target":
        """The target with another part's flash / RAM sizes (--flash / --ram) or VTCM (--vtcm)."""
        if vtcm is not None:
            raise PdcError(f"--vtcm applies to the Hexagon targets (hexagon-*), not to {self.name}")
        raise PdcError(f"--flash / --ram apply to microcontroller targets (cortex-m*), not to {self.name}")

    def allowing_scalar_float(self) -> "Target":
        """The target with --allow-scalar-float (a fixed-point target that otherwise refuses float models)."""
        raise PdcError(f"--allow-scalar-float applies to the Hexagon targets (hexagon-*); {self.name} computes float")

    def with_fixed_point(self, precision, calibration, reuse: Optional[int]) -> "Target":
        """The target with a fixed-point compile's options (targets whose `fixed_point` is set)."""
        raise PdcError(f"{self.name} does not compute in fixed point")

    def library_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int) -> dict[str, bytes]:
        """The C runtime and the build files of the bundle's library (CMake and make)."""
        from ..build import cmake_lists, makefile, runtime_sources
        files = dict(runtime_sources())
        files["CMakeLists.txt"] = cmake_lists(name, kernel_files, cflags, threads, self.link_libs).encode()
        files["Makefile"] = makefile(name, kernel_files, cflags, threads, self.link_libs).encode()
        return files

    # ---- building and running ------------------------------------------------------------------
    def build_tools(self) -> list[Tool]:
        """The programs that build this target's bundles."""
        return []

    def run_tools(self) -> list[Tool]:
        """The programs that run a built bundle (an emulator); none for in-process targets."""
        return []

    def tools(self) -> list[Tool]:
        return [*self.build_tools(), *self.run_tools()]

    def build_problems(self) -> list[str]:
        """Why this machine cannot build the target's bundles ([] when it can): each missing tool
        with the Debian package that provides it (pdc doctor prints them)."""
        return [t.missing() for t in self.build_tools() if not t.available()]

    def run_problems(self) -> list[str]:
        """Why this machine cannot run the target's bundles ([] when it can)."""
        return [t.missing() for t in self.run_tools() if not t.available()]

    def bundle_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int,
                     manifest: dict) -> dict[str, bytes]:
        """Files the target adds to the bundle (its own Makefile, harness, startup code)."""
        return {}

    def toolchain_cmake(self) -> Optional[str]:
        """A CMake toolchain file for this target's cross compiler (None for the host): written into
        cross bundles (their CMakeLists.txt takes it when none is given) and by `pdc toolchain`."""
        return None

    @abstractmethod
    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        """Builds the bundle written in `folder`; returns the manifest fields it adds (the
        library or executable it made, and for emulated targets the runner)."""

    @staticmethod
    def run_bundle(folder: str, manifest: dict, feeds: dict) -> dict:
        """Runs a built bundle on inputs (emulated targets); in-process targets load it with pdc.Module."""
        raise PdcError(f"{folder}: this bundle runs in-process (pdc.Module)")

    def __str__(self) -> str:
        return self.name
