"""ARM Cortex-A targets: AArch64 and ARMv7-A hard-float, both with NEON.

A bundle is cross-compiled with Debian's GNU cross toolchains into a static library
lib<name>.a and a static command-line harness <name>_harness (pdc/harness.py), which `pdc run`
and Module.run execute under qemu-user: the inputs go to a file, the harness runs the model and
writes the outputs to another, Python reads them back. No binfmt is assumed: qemu is called
explicitly. The kernels come from pdc/codegen/kernels/neon*.py where they cover the node
(conv, gemm/matmul, pooling, elementwise), from the portable C generators elsewhere.

This module also holds what the Cortex-M targets (cortex_m.py) share: the Tool lookup that
names the Debian package of a missing program, the renderer, and instruction counting under
qemu (a small TCG plugin built on first use).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

from ..codegen.c_renderer import CRenderer
from ..codegen.kernels import PORTABLE
from ..ir.errors import PdcError
from .base import KernelConfig, Limits, Target


# ---- tools ---------------------------------------------------------------------------------------
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


def run_tool(cmd: list, cwd: str, what: str, timeout: Optional[float] = None) -> str:
    """Runs a toolchain command; a failure is a PdcError with the compiler's first error line."""
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        text = r.stderr or r.stdout
        first = next((ln for ln in text.splitlines() if "error" in ln.lower()), text.strip()[-400:])
        raise PdcError(f"{what} failed: {first.strip()}")
    return r.stdout


def cache_dir() -> str:
    return os.environ.get("PDC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pdc")


# ---- the renderer ----------------------------------------------------------------------------------
_X86_INCLUDE = re.compile(r"^#include <immintrin\.h>$", re.M)


class ArmRenderer(CRenderer):
    """The C renderer, with x86 headers fenced off in the portable kernels."""

    def render(self, graph, name, weights_mode, config):
        bundle = super().render(graph, name, weights_mode, config)
        for f in bundle.kernel_files:
            # x86 intrinsics are all under #if __AVX...__, but a header include may not be
            text = bundle.files[f].decode()
            text = _X86_INCLUDE.sub("#if defined(__x86_64__) || defined(__i386__)\n#include <immintrin.h>\n#endif",
                                    text)
            bundle.files[f] = text.encode()
        return bundle


# ---- Cortex-A ---------------------------------------------------------------------------------------
COMMON_CFLAGS = ("-O3", "-std=gnu11", "-fno-math-errno")


@dataclass(frozen=True)
class CortexATarget(Target):
    """Cross-built with GNU tools into a static library and harness, run under qemu-user."""
    name: str
    description: str
    cc: Tool
    emulator: Tool
    arch_flags: tuple
    simd: str  # the ARM kernels' vector ISA (pdc/codegen/kernels/neon.py)
    aliases: tuple = field(default=())

    kernel_families: ClassVar[tuple] = ("arm", PORTABLE)
    runner_kind: ClassVar[str] = "qemu-user"

    @property
    def cflags(self) -> list[str]:
        return [*COMMON_CFLAGS, *self.arch_flags]

    @property
    def limits(self) -> Limits:
        return Limits(max_threads=64)

    def kernel_config(self, threads: int) -> KernelConfig:
        return KernelConfig(threads=threads, vector_bits=128, simd=self.simd)

    def renderer(self):
        return ArmRenderer(self)

    @staticmethod
    def run_bundle(folder: str, manifest: dict, feeds: dict) -> dict:
        return run_qemu_user(folder, manifest, feeds)

    @property
    def tool_prefix(self) -> str:
        return self.cc.program[:-len("gcc")]

    def tools(self) -> list[Tool]:
        return [self.cc, self.emulator]

    # -- the bundle's own build files: a Makefile that cross-builds the library and the harness
    def bundle_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int,
                     manifest: dict) -> dict:
        from ..build import sources
        from ..harness import harness_source
        objs = " ".join(s[:-2] + ".o" for s in sources(name, kernel_files))
        mk = f"""# Generated by pdc for {self.name}: `make` cross-builds lib{name}.a and the harness {name}_harness
# (run it as `{self.emulator.program} ./{name}_harness in.bin out.bin` on a PC).
CC = {self.cc.program}
AR = {self.tool_prefix}ar
CFLAGS ?= {' '.join(cflags)}
CPPFLAGS += -I. -Iruntime -DPDC_THREADS=1 -DPDC_DEFAULT_THREADS={threads}
OBJS = {objs}

all: lib{name}.a {name}_harness
lib{name}.a: $(OBJS)
\t$(AR) rcs $@ $^
{name}_harness: {name}_harness.o lib{name}.a
\t$(CC) -static -o $@ $^ -lpthread -lm
%.o: %.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -Wa,-I. -c $< -o $@
clean:
\trm -f $(OBJS) {name}_harness.o lib{name}.a {name}_harness
.PHONY: all clean
"""
        return {"Makefile": mk.encode(), f"{name}_harness.c": harness_source(name).encode()}

    # -- build
    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        """Cross-compiles lib<name>.a and <name>_harness in `folder`; returns manifest fields."""
        from ..build import runtime_object, sources
        cc = self.cc.path()
        ar = shutil.which(self.tool_prefix + "ar") or Tool(self.tool_prefix + "ar", self.cc.package).path()
        defs = ["-I.", "-Iruntime", "-DPDC_THREADS=1", f"-DPDC_DEFAULT_THREADS={threads}", "-Wa,-I."]
        say(f"cross-compiling for {self.name} with {self.cc.program} ({len(kernel_files) + 3} C files)")
        rt = runtime_object(cc, cflags, defs)
        srcs = sources(name, kernel_files)[:-1]
        objs = compile_objects(cc, [*cflags, *defs], srcs, folder)
        shutil.copyfile(rt, os.path.join(folder, "pdc_runtime.o"))
        lib = f"lib{name}.a"
        run_tool([ar, "rcs", lib, *objs, "pdc_runtime.o"], folder, f"{ar} {lib}")
        exe = link_harness(cc, cflags, defs, folder, name, lib)
        for o in [*objs, "pdc_runtime.o"]:
            os.unlink(os.path.join(folder, o))
        return {"static_library": lib, "toolchain": self.cc.program,
                "runner": {"kind": "qemu-user", "emulator": self.emulator.program,
                           "package": self.emulator.package, "executable": exe}}

    def build_variant(self, folder: str, out: str, extra_flags: list[str]) -> str:
        """Rebuilds the bundle's harness with extra compiler flags (e.g. -DPDC_PLAIN_C) as `out`."""
        import json
        with open(os.path.join(folder, "manifest.json")) as f:
            m = json.load(f)
        name = m["name"]
        cc = self.cc.path()
        kernel_files = sorted(f for f in os.listdir(folder) if f.startswith(f"{name}_kernels_") and f.endswith(".c"))
        from ..build import sources
        flags = [*self.cflags, *extra_flags, "-I.", "-Iruntime", "-DPDC_THREADS=1",
                 f"-DPDC_DEFAULT_THREADS={m.get('threads', 1)}", "-Wa,-I."]
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            srcs = [*sources(name, kernel_files), f"{name}_harness.c"]
            objs = compile_objects(cc, flags, srcs, folder, out_dir=tmp)
            run_tool([cc, "-static", "-o", out, *objs, "-lpthread", "-lm"], folder, f"linking {out}")
        return os.path.join(folder, out)


def compile_objects(cc: str, flags: list[str], srcs: list[str], folder: str, out_dir: Optional[str] = None) -> list[str]:
    """Compiles sources (relative to folder) into objects, in parallel; returns their paths."""
    def one(src: str) -> str:
        obj = os.path.join(out_dir, os.path.basename(src)[:-2] + ".o") if out_dir else src[:-2] + ".o"
        run_tool([cc, *flags, "-c", src, "-o", obj], folder, f"compiling {src}")
        return obj
    jobs = max(1, min(len(srcs), os.cpu_count() or 1))
    with ThreadPoolExecutor(jobs) as ex:
        return list(ex.map(one, srcs))


def link_harness(cc: str, cflags: list[str], defs: list[str], folder: str, name: str, lib: str) -> str:
    exe = f"{name}_harness"
    src = f"{name}_harness.c"
    run_tool([cc, *cflags, *defs, "-c", src, "-o", exe + ".o"], folder, f"compiling {src}")
    run_tool([cc, "-static", "-o", exe, exe + ".o", lib, "-lpthread", "-lm"], folder, f"linking {exe}")
    os.unlink(os.path.join(folder, exe + ".o"))
    return exe


AARCH64 = CortexATarget(
    "arm64", "ARM Cortex-A, AArch64 with NEON (armv8-a); cross-built with aarch64-linux-gnu-gcc, runs under "
             "qemu-aarch64",
    Tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"), Tool("qemu-aarch64", "qemu-user"),
    ("-march=armv8-a",), "neon64", ("arm", "aarch64"))
ARMV7 = CortexATarget(
    "armv7", "ARM Cortex-A, ARMv7-A hard-float with NEON (-mfpu=neon); cross-built with arm-linux-gnueabihf-gcc, "
             "runs under qemu-arm",
    Tool("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"), Tool("qemu-arm", "qemu-user"),
    ("-march=armv7-a", "-mfpu=neon", "-mfloat-abi=hard", "-mfp16-format=ieee"), "neon32")

CORTEX_A = (AARCH64, ARMV7)


# ---- running ------------------------------------------------------------------------------------------
def run_qemu_user(folder: str, manifest: dict, feeds: dict, timeout: float = 3600) -> dict:
    from ..harness import run_harness
    runner = manifest["runner"]
    qemu = Tool(runner["emulator"], runner.get("package", "qemu-user")).path()
    exe = os.path.join(folder, runner["executable"])
    if not os.path.exists(exe):
        raise PdcError(f"{folder}: {runner['executable']} is missing (rebuild with pdc compile)")
    return run_harness([qemu, exe], folder, manifest, feeds, timeout=timeout)


# ---- instruction counts under qemu -------------------------------------------------------------------
# A TCG plugin that adds each translated block's instruction count to a counter every time the
# block runs (inline, no callback), and prints the total at exit. Written against QEMU's plugin
# C API (version 1 as in QEMU 7.2); the few declarations it needs are spelled out here.
ICOUNT_PLUGIN_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *), void *userdata);
void qemu_plugin_outs(const char *s);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
static uint64_t count;
static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &count, qemu_plugin_tb_n_insns(tb));
}
static void on_exit(qemu_plugin_id_t id, void *u) {
    char line[64];
    (void)id; (void)u;
    snprintf(line, sizeof line, "pdc-icount %llu\n", (unsigned long long)count);
    qemu_plugin_outs(line);
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
    (void)info; (void)argc; (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, 0);
    return 0;
}
"""


def icount_plugin() -> str:
    """The instruction-count plugin, built with the host C compiler on first use (cached)."""
    key = hashlib.sha256(ICOUNT_PLUGIN_C.encode()).hexdigest()[:16]
    folder = os.path.join(cache_dir(), "qemu-plugins")
    lib = os.path.join(folder, f"libpdc_icount-{key}.so")
    if os.path.exists(lib):
        return lib
    os.makedirs(folder, exist_ok=True)
    cc = shutil.which("gcc") or shutil.which("cc") or Tool("gcc", "gcc").path()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        with open(os.path.join(tmp, "icount.c"), "w") as f:
            f.write(ICOUNT_PLUGIN_C)
        run_tool([cc, "-shared", "-fPIC", "-O2", "icount.c", "-o", "icount.so"], tmp, "building the qemu plugin")
        os.replace(os.path.join(tmp, "icount.so"), lib)
    return lib


def parse_icount(log: str) -> int:
    m = re.search(r"pdc-icount (\d+)", log)
    if not m:
        raise PdcError("the qemu instruction-count plugin printed nothing (is qemu built with plugin support?)")
    return int(m.group(1))


def run_counting(folder: str, feeds: dict, executable: Optional[str] = None,
                 timeout: float = 3600) -> tuple[dict, int]:
    """Runs a Cortex-A bundle's harness (or another build of it, e.g. -DPDC_PLAIN_C) once under
    qemu-user with the instruction-count plugin: (outputs, guest instructions executed by the
    whole process: reading the inputs, the model, writing the outputs)."""
    import json
    with open(os.path.join(folder, "manifest.json")) as f:
        m = json.load(f)
    runner = m.get("runner") or {}
    if runner.get("kind") != "qemu-user":
        raise PdcError(f"{folder}: instruction counts need a Cortex-A bundle (qemu-user), not {m['target']}")
    from ..harness import run_harness
    qemu = Tool(runner["emulator"], runner.get("package", "qemu-user")).path()
    exe = os.path.join(folder, executable or runner["executable"])
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "icount.log")
        outputs = run_harness([qemu, "-plugin", icount_plugin(), "-d", "plugin", "-D", log, exe], folder, m, feeds,
                              timeout=timeout)
        with open(log) as f:
            return outputs, parse_icount(f.read())


def count_instructions(folder: str, feeds: dict, executable: Optional[str] = None, timeout: float = 3600) -> int:
    return run_counting(folder, feeds, executable, timeout)[1]
