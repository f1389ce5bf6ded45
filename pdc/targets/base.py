"""The Target interface: everything the compiler asks of a target, as explicit hooks.

compile_bundle (pdc/compiler.py) drives a target only through these methods: it never probes for
attributes. A new target subclasses Target in its own module, fills in the hooks, and adds its
presets to pdc/targets/__init__.py (see docs/ARCHITECTURE.md, "Adding a target").
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

from ..ir.errors import PdcError

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

    @property
    def parallel(self) -> bool:
        return self.threads > 1

    def k_block(self, k: int) -> int:
        """The K block for a reduction of length k: none up to 1.25 gemm_kc, else equal blocks of
        at most gemm_kc."""
        if k <= self.gemm_kc + self.gemm_kc // 4:
            return max(k, 1)
        return -(-k // -(-k // self.gemm_kc))


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
    # how `pdc run` / pdc.Module execute a bundle: "in-process" (ctypes) or the name of a runner
    runner_kind: ClassVar[str] = "in-process"
    # the memory spaces its kernels use, "host" first (pdc/codegen/placement.py): a device target
    # adds "device" (and "on-chip" for its kernels' scratch)
    memory_spaces: ClassVar[tuple] = ("host",)

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
        """Refuses a graph the target cannot compute (an element type outside limits.dtypes),
        naming the first value that has it."""
        allowed = self.limits.dtypes
        if allowed is None:
            return
        for node in graph.nodes:
            for v in node.inputs + node.outputs:
                if v is not None and v.type.dtype.short not in allowed:
                    raise PdcError(f"{self.name} does not compute {v.type.dtype} (%{v.name} of {node.describe()}); "
                                   f"it computes {', '.join(sorted(allowed))}")

    def with_memory(self, flash=None, ram=None) -> "Target":
        """The target with another part's flash / RAM sizes (--flash / --ram)."""
        raise PdcError(f"--flash / --ram apply to microcontroller targets (cortex-m*), not to {self.name}")

    # ---- building and running ------------------------------------------------------------------
    def bundle_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int,
                     manifest: dict) -> dict[str, bytes]:
        """Files the target adds to the bundle (its own Makefile, harness, startup code)."""
        return {}

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
