"""Qualcomm Hexagon DSP presets: freestanding int8 bundles with HVX kernels, run under qemu-hexagon.

A bundle is C with no C library: the model, the runtime (single-threaded) and a static arena build
with clang-15 (`--target=hexagon-unknown-linux-musl -mvNN -mhvx -mhvx-length=128b -ffreestanding`;
v73, which clang-15 does not know, with the newer clang of the `ziglang` package) into lib<name>.a,
which a DSP application links with its SDK's compiler runtime. Next to it pdc
links a test harness, <name>_harness, that does its own I/O through raw Linux system calls
(runtime/hexagon/pdc_hexagon_sys.h) and the compiler runtime (compiler_rt: integer division,
memcpy, the float functions the scalar path calls), built once from the `ziglang` package; `pdc
run` and Module.run execute it under qemu-hexagon, which knows CPU versions up to v67: the v68,
v69 and v73 presets compile here and run only on their hardware.

The DSP computes in fixed point: a float model is refused with the way to quantize it, unless
--allow-scalar-float asks for the slow scalar float path. The HVX kernels (pdc/codegen/kernels/
hexagon/) keep their working tiles in VTCM, the on-chip memory whose size each preset declares
(--vtcm overrides it): each kernel asks for its region (KernelContext.vtcm), fits its bands of rows
to the preset's size and refuses a layer whose smallest band exceeds it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, ClassVar

from ..codegen.kernels import PORTABLE
from ..harness import spec_bytes
from ..ir.errors import PdcError
from .arm import compile_objects, run_tool
from .base import KernelConfig, Limits, Target, Tool
from .cortex_m import human, parse_size

CLANG = Tool("clang-15", "clang-15")
LLD = Tool("ld.lld-15", "lld-15")
AR = Tool("ar", "binutils")
QEMU = Tool("qemu-hexagon", "qemu-user")
QEMU_VERSIONS = ("v66", "v67")  # the CPU versions qemu-hexagon (7.2) emulates
CLANG_NEWEST = "v69"  # clang-15's newest Hexagon version: later ones compile with zig's newer clang
ZIG_CC = "python3 -m ziglang cc"  # the newer clang, as a bundle's Makefile spells it
TRIPLE = "hexagon-unknown-linux-musl"
RUNTIME_HEXAGON = ("pdc_hexagon_sys.h", "pdc_libm.c", "libc/math.h", "libc/string.h")
FLOAT_OPS_AT_THE_EDGES = frozenset({"quantize_linear", "dequantize_linear"})
# pdc's integer ops (pdc/ir/ops/qint.py): int8 in and out, a float scale or parameter inside at most
INTEGER_OPS = frozenset({"qconv", "qmatmul", "requantize", "qadd", "qmul", "lookup", "qsoftmax", "qlayer_norm"})
# ops that move or pick elements without arithmetic: float data through them costs no float math
MOVEMENT_OPS = frozenset({"reshape", "flatten", "transpose", "squeeze", "unsqueeze", "concat", "slice", "gather",
                          "identity", "copy", "expand", "tile", "split", "pad", "max_pool", "depth_to_space",
                          "space_to_depth"})


def zig_compiler_rt() -> str:
    """compiler_rt for Hexagon (the builtins clang's code calls: __hexagon_divsi3, memcpy, sqrtf...), built
    once from the `ziglang` package's sources for v66, which every later version runs (cached)."""
    try:
        import ziglang
    except ImportError:
        raise PdcError("missing the Hexagon compiler runtime: pdc builds it with the Python package ziglang "
                       "(pip install ziglang)") from None
    from ..build import cached_file
    src = os.path.join(os.path.dirname(ziglang.__file__), "lib", "compiler_rt.zig")
    key = hashlib.sha256(f"{_zig_version()}:{src}".encode()).hexdigest()[:16]

    def make(tmp: str) -> str:
        out = os.path.join(tmp, "compiler_rt.o")
        run_tool([sys.executable, "-m", "ziglang", "build-obj", "-target", "hexagon-freestanding-none", "-mcpu",
                  "hexagonv66", "-OReleaseFast", src, f"-femit-bin={out}", "--cache-dir", os.path.join(tmp, "zc"),
                  "--global-cache-dir", os.path.join(tmp, "zg")], tmp, "building compiler_rt for Hexagon")
        return out
    return cached_file("hexagon", f"compiler_rt-{key}.o", make)


def _zig_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("ziglang")
    except metadata.PackageNotFoundError:
        return "unknown"


def compiler_rt_available() -> bool:
    from importlib.util import find_spec
    return find_spec("ziglang") is not None


@dataclass(frozen=True)
class HexagonTarget(Target):
    """A Hexagon DSP version with 128-byte HVX vectors and `vtcm` bytes of VTCM; freestanding bundles."""
    name: str
    version: str  # v66, v67, ...
    vtcm: int  # bytes of VTCM the preset assumes (--vtcm overrides it); pdc's tiles must fit in it
    allow_float: bool = False  # --allow-scalar-float: float kernels run on the scalar core
    hvx: bool = True  # False: the scalar build (portable kernels, no -mhvx), to compare with

    runner_kind: ClassVar[str] = "qemu-hexagon"

    @property
    def description(self) -> str:
        run = "runs under qemu-hexagon" if self.version in QEMU_VERSIONS else \
            "compile-only here (qemu-hexagon emulates up to v67)"
        cc = "clang-15" if self.clang15 else "the clang of the ziglang package (clang-15 knows versions up to v69)"
        return f"Qualcomm Hexagon {self.version} DSP, HVX 128-byte vectors, int8; {human(self.vtcm)} VTCM; " \
               f"freestanding, built with {cc}; {run}"

    @property
    def kernel_families(self) -> tuple:
        return ("hexagon", PORTABLE) if self.hvx else (PORTABLE,)

    @property
    def clang15(self) -> bool:
        """Whether clang-15 knows this version (up to v69); later ones compile with zig's clang."""
        return int(self.version[1:]) <= int(CLANG_NEWEST[1:])

    @property
    def arch_flags(self) -> list[str]:
        if not self.clang15:  # zig's spelling: the CPU and its features
            hvx = f"+hvx{self.version}+hvx_length128b" if self.hvx else ""
            return ["-target", "hexagon-freestanding-none", f"-mcpu=hexagon{self.version}{hvx}"]
        hvx = ["-mhvx", "-mhvx-length=128b"] if self.hvx else []
        return [f"--target={TRIPLE}", f"-m{self.version}", *hvx]

    @property
    def link_flags(self) -> list[str]:
        """clang-15 drives ld.lld-15 for every version (the objects carry their own version)."""
        return [f"--target={TRIPLE}", f"-m{min(self.version, CLANG_NEWEST)}", "-nostdlib", "-static", "-fuse-ld=lld"]

    @property
    def compiler_program(self) -> str:
        """The compiler as the bundle's build files and manifest spell it."""
        return CLANG.program if self.clang15 else ZIG_CC

    def compiler(self) -> list[str]:
        """The compiler command: clang-15, or zig's clang for the versions clang-15 does not know."""
        if self.clang15:
            return [CLANG.path()]
        if not compiler_rt_available():
            raise PdcError(f"{self.name}: clang-15 knows Hexagon versions up to {CLANG_NEWEST}; {self.version} "
                           f"compiles with the clang of the Python package ziglang (pip install ziglang)")
        return [sys.executable, "-m", "ziglang", "cc"]

    @property
    def cflags(self) -> list[str]:
        return ["-O2", "-std=gnu11", "-fno-math-errno", *self.arch_flags, "-ffreestanding"]

    @property
    def limits(self) -> Limits:
        return Limits(max_threads=1)

    def kernel_config(self, threads: int) -> KernelConfig:
        return KernelConfig(threads=1, vector_bits=1024, simd="hvx" if self.hvx else "none", gemm_kc=128,
                            scratch_floats=4096, vtcm_bytes=self.vtcm)

    def check_options(self, weights: str, threads: int) -> None:
        if weights != "c":
            raise PdcError(f"{self.name}: the weights are compiled into the library (the DSP has no file system "
                           f"pdc can assume); --weights {weights} is not available, use --weights c")
        if threads != 1:
            raise PdcError(f"{self.name}: Hexagon bundles run on one hardware thread (--threads 1)")

    def with_memory(self, flash=None, ram=None, vtcm=None) -> "HexagonTarget":
        if flash is not None or ram is not None:
            raise PdcError(f"--flash / --ram apply to microcontroller targets (cortex-m*); {self.name} takes --vtcm")
        return self if vtcm is None else dataclasses.replace(self, vtcm=parse_size(vtcm, "vtcm"))

    def allowing_scalar_float(self) -> "HexagonTarget":
        return dataclasses.replace(self, allow_float=True)

    def check_graph(self, graph) -> None:
        """The DSP computes in fixed point: a node that does float arithmetic (other than pdc's integer ops,
        quantizing the inputs and dequantizing the outputs) is refused unless --allow-scalar-float."""
        if self.allow_float:
            return
        for node in graph.nodes:
            if node.op in INTEGER_OPS or node.op in FLOAT_OPS_AT_THE_EDGES or node.op in MOVEMENT_OPS:
                continue
            for v in node.inputs + node.outputs:
                if v is not None and v.type.dtype.is_float:
                    raise PdcError(f"{self.name}: {node.describe()} computes in float ({v.type.dtype} %{v.name}); "
                                   f"the DSP runs int8: quantize the model (--quantize int8 --calibration data.npz) "
                                   f"or pass --allow-scalar-float for the slow scalar float path")

    # ---- tools
    def build_tools(self) -> list[Tool]:
        return [CLANG, LLD, AR]

    def run_tools(self) -> list[Tool]:
        return [QEMU]

    def build_problems(self) -> list[str]:
        problems = super().build_problems()
        if not compiler_rt_available():
            problems.append("missing the Python package ziglang (pip install ziglang: pdc builds the Hexagon "
                            "compiler runtime with it)")
        return problems

    def run_problems(self) -> list[str]:
        if self.version not in QEMU_VERSIONS:
            return [f"qemu-hexagon emulates CPU versions up to v67: {self.name} bundles run on the DSP only"]
        return super().run_problems()

    def toolchain_cmake(self) -> str:
        from ..build import toolchain_cmake
        return toolchain_cmake("Generic", "hexagon", self.compiler_program, [*self.arch_flags, "-ffreestanding"],
                               [QEMU.program], cxx="clang++-15")

    # ---- the bundle's files
    def include_flags(self) -> list[str]:
        return ["-I.", "-Iruntime", "-Iruntime/hexagon", "-isystem", "runtime/hexagon/libc"]

    def bundle_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int,
                     manifest: dict) -> dict:
        from ..build import runtime_file, sources
        from .cortex_m import static_header, static_source
        files = {f"runtime/hexagon/{f}": runtime_file(f"hexagon/{f}") for f in RUNTIME_HEXAGON}
        files[f"{name}_static.c"] = static_source(name).encode()
        files[f"{name}_static.h"] = static_header(name).encode()
        files[f"{name}_harness.c"] = harness_source(name, manifest).encode()
        lib_srcs = [*sources(name, kernel_files), f"{name}_static.c"]
        files["Makefile"] = self.makefile(name, lib_srcs, cflags).encode()
        files["CMakeLists.txt"] = self.cmake_lists(name, lib_srcs, cflags).encode()
        return files

    def makefile(self, name: str, srcs: list[str], cflags: list[str]) -> str:
        objs = " ".join(s[:-2] + ".o" for s in srcs)
        return f"""# Generated by pdc for {self.name}: `make` builds lib{name}.a, the model for a DSP application
# (freestanding: link it with your SDK's compiler runtime). `make harness COMPILER_RT=compiler_rt.o`
# also links {name}_harness, which runs under qemu-hexagon: qemu-hexagon ./{name}_harness in.bin out.bin
CC = {self.compiler_program}
LD = {CLANG.program}
AR = ar
CFLAGS ?= {' '.join(cflags)}
CPPFLAGS += {' '.join(self.include_flags())}
OBJS = {objs}

all: lib{name}.a
lib{name}.a: $(OBJS)
\t$(AR) rcs $@ $^
harness: {name}_harness
{name}_harness: {name}_harness.o runtime/hexagon/pdc_libm.o lib{name}.a
\t$(LD) {' '.join(self.link_flags)} -o $@ $^ $(COMPILER_RT)
%.o: %.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
clean:
\trm -f $(OBJS) {name}_harness.o runtime/hexagon/pdc_libm.o lib{name}.a {name}_harness
.PHONY: all harness clean
"""

    def cmake_lists(self, name: str, srcs: list[str], cflags: list[str]) -> str:
        from ..build import DEFAULT_TOOLCHAIN
        return f"""# Generated by pdc for {self.name}: the model as a static library for a DSP application
# (toolchain.cmake: clang-15 for Hexagon {self.version}; freestanding, no C library).
cmake_minimum_required(VERSION 3.13)
{DEFAULT_TOOLCHAIN}project({name} C)
add_library({name} STATIC {' '.join(srcs)})
target_include_directories({name} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}} ${{CMAKE_CURRENT_SOURCE_DIR}}/runtime
                           ${{CMAKE_CURRENT_SOURCE_DIR}}/runtime/hexagon)
target_include_directories({name} SYSTEM PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}}/runtime/hexagon/libc)
target_compile_options({name} PRIVATE {' '.join(cflags)})
"""

    # ---- build
    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        from ..build import sources
        cc = self.compiler()
        LLD.path()
        rt = zig_compiler_rt()
        lib_srcs = [*sources(name, kernel_files), f"{name}_static.c"]
        say(f"compiling for {self.name} with {' '.join(os.path.basename(c) for c in cc)} ({len(lib_srcs) + 1} C files, "
            f"freestanding)")
        flags = [*cc[1:], *cflags, *self.include_flags()]
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            harness = [f"{name}_harness.c", "runtime/hexagon/pdc_libm.c"]
            objs = compile_objects(cc[0], flags, [*lib_srcs, *harness], folder, out_dir=tmp)
            lib = f"lib{name}.a"
            run_tool([AR.path(), "rcs", lib, *objs[:len(lib_srcs)]], folder, f"archiving {lib}")
            exe = f"{name}_harness"
            link = [CLANG.path(), *self.link_flags, "-Wl,--gc-sections", "-o", exe,
                    *objs[len(lib_srcs):], lib, rt]
            r = subprocess.run(link, cwd=folder, capture_output=True, text=True)
        if r.returncode != 0:
            missing = sorted(set(re.findall(r"undefined symbol: (\S+)", r.stderr)))
            if missing:
                raise PdcError(f"{self.name}: the kernels call {', '.join(missing)}, which the freestanding "
                               f"runtime does not provide")
            raise PdcError(f"linking {exe} failed: {r.stderr.strip()[-400:]}")
        return {"static_library": lib, "toolchain": self.compiler_program,
                "runner": {"kind": self.runner_kind, "emulator": QEMU.program, "package": QEMU.package,
                           "executable": exe, "cpu": self.version}}

    @staticmethod
    def run_bundle(folder: str, manifest: dict, feeds: dict) -> dict:
        return run_samples(folder, manifest, [feeds])[0]


def harness_source(name: str, manifest: dict) -> str:
    N = name.upper()
    io = max([spec_bytes(t) for t in manifest["inputs"] + manifest["outputs"]] + [1])
    return f"""/* Generated by pdc: a freestanding driver for {name} (no C library: raw system calls), run as
 *   qemu-hexagon ./{name}_harness in.bin out.bin
 * in.bin holds one or more samples (the inputs back to back, repeated); each sample's outputs go to
 * out.bin likewise. Exit code 0 on success. */
#include "{name}_static.h"
#include "pdc_hexagon_sys.h"

#define PDC_HARNESS_MAX_IO {-(-io // 128) * 128}
static uint8_t pdc_inputs[{N}_NUM_INPUTS ? {N}_NUM_INPUTS : 1][PDC_HARNESS_MAX_IO] __attribute__((aligned(128)));
static uint8_t pdc_outputs[{N}_NUM_OUTPUTS][PDC_HARNESS_MAX_IO] __attribute__((aligned(128)));

static int fail(const char *what) {{
    pdc_puts(2, "{name} harness: ");
    pdc_puts(2, what);
    pdc_puts(2, "\\n");
    return 2;
}}

static int harness(int argc, char **argv) {{
    const void *inputs[{N}_NUM_INPUTS + 1];
    void *outputs[{N}_NUM_OUTPUTS + 1];
    if (argc < 3) return fail("usage: {name}_harness in.bin out.bin");
    for (int i = 0; i < {N}_NUM_INPUTS; i++) inputs[i] = pdc_inputs[i];
    for (int i = 0; i < {N}_NUM_OUTPUTS; i++) outputs[i] = pdc_outputs[i];
    const int fin = pdc_open(argv[1], 0);
    if (fin < 0) return fail("cannot open the input file");
    const int fout = pdc_open(argv[2], 1);
    if (fout < 0) return fail("cannot create the output file");
    pdc_status s = {name}_init(0, 0);
    for (long sample = 0; s == PDC_OK; sample++) {{
        for (int i = 0; i < {N}_NUM_INPUTS; i++) {{
            const long got = pdc_read_all(fin, pdc_inputs[i], {name}_inputs[i].bytes);
            if (got == 0 && i == 0 && sample > 0) goto done;
            if (got != (long){name}_inputs[i].bytes) return fail("short input");
        }}
        s = {name}_invoke(inputs, outputs);
        for (int i = 0; s == PDC_OK && i < {N}_NUM_OUTPUTS; i++)
            if (pdc_write_all(fout, outputs[i], {name}_outputs[i].bytes)) return fail("cannot write the outputs");
        if ({N}_NUM_INPUTS == 0) break;
    }}
done:
    pdc_close(fin);
    pdc_close(fout);
    if (s != PDC_OK) {{
        pdc_puts(2, "{name}: ");
        pdc_puts(2, pdc_status_string(s));
        pdc_puts(2, "\\n");
        return 1;
    }}
    return 0;
}}

/* Linux starts a process with argc, argv[] at the stack pointer */
void pdc_harness_start(long *sp) {{ pdc_exit(harness((int)sp[0], (char **)(sp + 1))); }}
__asm__(".text\\n.globl _start\\n.type _start, @function\\n_start:\\n  r0 = r29\\n  jump pdc_harness_start\\n");
"""


# ---- running -------------------------------------------------------------------------------------------
def run_samples(folder: str, manifest: dict, samples: list[dict], timeout: float = 3600,
                counting: bool = False) -> list[dict]:
    """Runs a Hexagon bundle's harness once under qemu-hexagon over several input samples; the outputs
    of each. counting: also the guest instructions executed (qemu's TCG plugin), as the last item."""
    from ..harness import run_harness_samples
    runner = manifest["runner"]
    if runner.get("cpu") not in QEMU_VERSIONS:
        raise PdcError(f"{folder}: built for Hexagon {runner.get('cpu')}; qemu-hexagon emulates CPU versions up to "
                       f"v67, so this bundle runs on the DSP only (compile for hexagon-v66 or hexagon-v67 to run it "
                       f"here)")
    qemu = Tool(runner["emulator"], runner.get("package", QEMU.package)).path()
    exe = os.path.join(folder, runner["executable"])
    if not os.path.exists(exe):
        raise PdcError(f"{folder}: {runner['executable']} is missing (rebuild with pdc compile)")
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "icount.log")
        prefix = [qemu]
        if counting:
            from .arm import icount_plugin
            prefix = [qemu, "-plugin", icount_plugin(), "-d", "plugin", "-D", log]
        try:
            results = run_harness_samples([*prefix, exe], folder, manifest, samples, timeout=timeout,
                                          what=f"{runner['executable']} under qemu-hexagon")
        except subprocess.TimeoutExpired:
            raise PdcError(f"{runner['executable']} did not finish within {timeout:.0f} s under qemu-hexagon") from None
        if counting:
            from .arm import parse_icount
            with open(log) as f:
                results.append(parse_icount(f.read()))
    return results


# ---- presets --------------------------------------------------------------------------------------------
# VTCM per version: a typical part's (a chip may have less or more: --vtcm SIZE)
HEXAGON = tuple(HexagonTarget(f"hexagon-{v}", v, kib << 10) for v, kib in (
    ("v66", 256), ("v67", 256), ("v68", 4096), ("v69", 8192), ("v73", 8192)))
