"""ARM Cortex-M presets: bare-metal bundles (no OS, no malloc) for microcontrollers.

The weights are compiled into flash (the blob is `.incbin`'d into .rodata, which the linker
script places in FLASH); the model's scratch is one static arena sized at compile time; the
runtime is built single-threaded. Next to the model the bundle holds a startup file, a linker
script with the preset's flash and RAM, `<name>_static.c` (the static arena and
`<name>_invoke()`) and a semihosting harness, and pdc links them into `<name>.elf`, which
`pdc run` / Module.run execute under qemu-system-arm on the preset's board: the harness reads
the inputs from a host file (one or more samples back to back) and writes the outputs to another.

`pdc compile` reports the flash bytes (code + weights, from arm-none-eabi-size), the RAM bytes
(the arena + a stack estimate from GCC's call-graph stack usage; the image's .data/.bss with the
harness's I/O buffers are listed too) and refuses a model that does not fit the preset.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

from ..codegen.kernels import PORTABLE
from ..harness import spec_bytes
from ..ir.errors import PdcError
from .arm import Tool, compile_objects, run_tool
from .base import KernelConfig, Limits, Target

RUNTIME_MCU = ("startup.c", "pdc_semihost.h", "link.ld.in")
GCC = Tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
SIZE = Tool("arm-none-eabi-size", "binutils-arm-none-eabi")
AR = Tool("arm-none-eabi-ar", "binutils-arm-none-eabi")
QEMU = Tool("qemu-system-arm", "qemu-system-arm")
NEWLIB_PACKAGE = "libnewlib-arm-none-eabi"
LIBC_FRAME_BYTES = 256  # stack allowed for a C library call (expf, memcpy...) the call graph cannot see
STACK_MARGIN = 256  # startup, exception frame


def parse_size(value, what: str) -> int:
    """Bytes from an int or a string such as '1M', '256K', '65536' (K = 1024)."""
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)(i?[bB])?\s*", str(value))
    if not m or int(m.group(1)) == 0:
        raise PdcError(f"--{what} '{value}': expected a size such as 512K, 1M or 65536")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def human(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % (size // 16) == 0:
            return f"{n / size:g} {unit}"
    return f"{n:,} B"


@dataclass(frozen=True)
class Board:
    """A qemu-system-arm machine: where it has memory for code and for data."""
    machine: str
    flash_origin: int
    flash_max: int
    ram_origin: int
    ram_max: int


MPS2 = lambda m: Board(m, 0x00000000, 4 << 20, 0x20000000, 4 << 20)  # noqa: E731  ZBT SSRAM1 / SSRAM2+3
MPS3_AN547 = Board("mps3-an547", 0x00000000, 512 << 10, 0x20000000, 512 << 10)  # ITCM / DTCM


@dataclass(frozen=True)
class CortexMTarget(Target):
    """Bare metal: cross-built with arm-none-eabi-gcc, weights in flash, one static arena; run under
    qemu-system-arm with semihosting."""
    name: str
    summary: str
    cpu_flags: tuple
    board: Board
    flash: int  # the preset's bytes (pdc compile --flash / --ram override them)
    ram: int
    simd: str  # "mve" (Helium) or "none" (plain C)
    aliases: tuple = field(default=())

    kernel_families: ClassVar[tuple] = ("arm", PORTABLE)
    runner_kind: ClassVar[str] = "qemu-system-arm"

    @property
    def limits(self) -> Limits:
        return Limits(max_threads=1, flash=self.flash, ram=self.ram)  # no OS: one thread

    def kernel_config(self, threads: int) -> KernelConfig:
        # small K blocks and a 1 KiB packed-B buffer (a few KiB of stack); flash is scarce, so the
        # kernels read the weights in place
        return KernelConfig(threads=1, vector_bits=128 if self.simd == "mve" else 32, simd=self.simd,
                            gemm_kc=64, scratch_floats=256, pack_weights=False)

    @staticmethod
    def run_bundle(folder: str, manifest: dict, feeds: dict) -> dict:
        return run_semihosted(folder, manifest, feeds)

    @property
    def description(self) -> str:
        return f"{self.summary}; defaults: {human(self.flash)} flash, {human(self.ram)} RAM; runs under " \
               f"qemu-system-arm -M {self.board.machine}"

    @property
    def cflags(self) -> list[str]:
        return ["-O2", "-std=gnu11", "-fno-math-errno", *self.cpu_flags, "-ffunction-sections", "-fdata-sections"]

    def with_memory(self, flash=None, ram=None, vtcm=None) -> "CortexMTarget":
        if vtcm is not None:
            raise PdcError(f"--vtcm applies to the Hexagon targets (hexagon-*), not to {self.name}")
        return dataclasses.replace(self, flash=self.flash if flash is None else parse_size(flash, "flash"),
                                   ram=self.ram if ram is None else parse_size(ram, "ram"))

    def check_options(self, weights: str, threads: int) -> None:
        if weights != "c":
            raise PdcError(f"{self.name}: the weights go into flash; --weights {weights} needs a file system "
                           f"(use --weights c)")
        if threads != 1:
            raise PdcError(f"{self.name}: microcontroller bundles are single-threaded (--threads 1)")

    def build_tools(self) -> list[Tool]:
        return [GCC, SIZE, AR]

    def run_tools(self) -> list[Tool]:
        return [QEMU]

    def build_problems(self) -> list[str]:
        problems = super().build_problems()
        if GCC.available() and not _has_newlib(GCC.path(), self.cflags):  # a library, not a program
            problems.append(f"missing newlib for arm-none-eabi (Debian package {NEWLIB_PACKAGE})")
        return problems

    # -- the bundle's files
    def bundle_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int,
                     manifest: dict) -> dict:
        from ..build import runtime_file, sources
        files = {}
        for f in RUNTIME_MCU:
            data = runtime_file(f"cortex_m/{f}")
            if f == "link.ld.in":
                files["link.ld"] = self.link_script(name, data.decode()).encode()
            else:
                files[f"runtime/{f}"] = data
        files[f"{name}_static.c"] = static_source(name).encode()
        files[f"{name}_static.h"] = static_header(name).encode()
        files[f"{name}_harness.c"] = harness_source(name, manifest).encode()
        srcs = [*sources(name, kernel_files), f"{name}_static.c", f"{name}_harness.c", "runtime/startup.c"]
        files["Makefile"] = self.makefile(name, srcs, cflags).encode()
        files["CMakeLists.txt"] = self.cmake_lists(name, sources(name, kernel_files) + [f"{name}_static.c"],
                                                   cflags).encode()
        return files

    def link_script(self, name: str, template: str, flash: Optional[int] = None, ram: Optional[int] = None) -> str:
        subs = {"@NAME@": name, "@TARGET@": self.name, "@FLASH_ORIGIN@": hex(self.board.flash_origin),
                "@FLASH_BYTES@": str(flash or self.flash), "@RAM_ORIGIN@": hex(self.board.ram_origin),
                "@RAM_BYTES@": str(ram or self.ram)}
        for k, v in subs.items():
            template = template.replace(k, v)
        return template

    def link_flags(self) -> list[str]:
        return ["-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections"]

    def makefile(self, name: str, srcs: list[str], cflags: list[str]) -> str:
        objs = " ".join(s[:-2] + ".o" for s in srcs)
        return f"""# Generated by pdc for {self.name}: `make` builds {name}.elf (the model, the startup code and a
# semihosting harness) and lib{name}.a (the model alone, for your firmware: see {name}_static.h).
# Run: qemu-system-arm -M {self.board.machine} -nographic -semihosting-config enable=on,target=native \\
#      -kernel {name}.elf   (in a folder holding in.bin; it writes out.bin)
CC = {GCC.program}
AR = arm-none-eabi-ar
CFLAGS ?= {' '.join(cflags)}
CPPFLAGS += -I. -Iruntime
LDFLAGS = {' '.join(self.link_flags())} -T link.ld
OBJS = {objs}
LIB_OBJS = $(filter-out {name}_harness.o runtime/startup.o,$(OBJS))

all: {name}.elf lib{name}.a
{name}.elf: $(OBJS)
\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm
lib{name}.a: $(LIB_OBJS)
\t$(AR) rcs $@ $^
%.o: %.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -Wa,-I. -c $< -o $@
clean:
\trm -f $(OBJS) {name}.elf lib{name}.a
.PHONY: all clean
"""

    def toolchain_cmake(self) -> str:
        from ..build import toolchain_cmake
        return toolchain_cmake("Generic", "arm", GCC.program, list(self.cpu_flags), [])

    def cmake_lists(self, name: str, srcs: list[str], cflags: list[str]) -> str:
        from ..build import DEFAULT_TOOLCHAIN
        return f"""# Generated by pdc for {self.name}: the model as a static library for a firmware build
# (toolchain.cmake: arm-none-eabi-gcc for this core; link.ld and runtime/startup.c are a start).
cmake_minimum_required(VERSION 3.13)
{DEFAULT_TOOLCHAIN}project({name} C)
add_library({name} STATIC {' '.join(srcs)})
target_include_directories({name} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}} ${{CMAKE_CURRENT_SOURCE_DIR}}/runtime)
target_compile_options({name} PRIVATE {' '.join(cflags)} -Wa,-I${{CMAKE_CURRENT_SOURCE_DIR}})
target_link_libraries({name} PUBLIC m)
"""

    # -- build
    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        from ..build import sources
        cc = GCC.path()
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        arena, weights = manifest["arena_bytes"], manifest["weight_bytes"]
        io_bytes = sum(spec_bytes(t) for t in manifest["inputs"] + manifest["outputs"])
        if weights > self.flash:
            raise PdcError(self.misfit(name, f"its weights alone take {weights:,} bytes of flash", "flash"))
        if arena + io_bytes > self.ram:
            raise PdcError(self.misfit(name, f"its arena ({arena:,} bytes) and inputs/outputs ({io_bytes:,} bytes) "
                                             f"take more RAM than the preset has", "ram"))
        say(f"cross-compiling for {self.name} with {GCC.program} ({len(kernel_files) + 6} C files)")
        model_srcs = sources(name, kernel_files)
        srcs = [*model_srcs, f"{name}_static.c", f"{name}_harness.c", "runtime/startup.c"]
        flags = [*cflags, "-I.", "-Iruntime", "-Wa,-I.", "-fcallgraph-info=su"]
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            objs = compile_objects(cc, flags, srcs, folder, out_dir=tmp)
            _check_newlib(cc, cflags, folder)
            elf = f"{name}.elf"
            link = [cc, *cflags, *self.link_flags(), "-T", "link.ld", "-o", elf, *objs, "-lm"]
            r = subprocess.run(link, cwd=folder, capture_output=True, text=True)
            if r.returncode != 0:
                if "overflowed" in r.stderr or "do not fit RAM" in r.stderr:
                    why, which = self.measure_misfit(folder, tmp, link)
                    raise PdcError(self.misfit(name, why, which))
                lines = [ln for ln in r.stderr.splitlines() if "collect2" not in ln]  # collect2 only says ld failed
                first = next((ln for ln in lines if "error" in ln.lower() or "undefined reference" in ln),
                             r.stderr.strip()[-400:])
                raise PdcError(f"linking {elf} failed: {first}")
            sizes = {os.path.basename(o): _size(o) for o in objs}
            stack = stack_estimate(tmp)
            lib = f"lib{name}.a"
            lib_objs = [o for o in objs if not os.path.basename(o).startswith((f"{name}_harness.", "startup."))]
            run_tool([AR.path(), "rcs", lib, *lib_objs], folder, f"archiving {lib}")
        text, data, bss = _size(os.path.join(folder, elf))
        flash_bytes = text + data
        # the model's objects hold the weights (.rodata of <name>_weights.o) and the code
        model_code = sum(sizes[os.path.basename(s)[:-2] + ".o"][0] for s in model_srcs[:-1]) - weights
        runtime_code = sizes["pdc_runtime.o"][0]
        ram_bytes = arena + stack
        image_ram = data + bss + stack
        info = {
            "flash_bytes": flash_bytes, "ram_bytes": ram_bytes,
            "flash_limit": self.flash, "ram_limit": self.ram,
            "memory": {"weights": weights, "model_code": model_code, "runtime_code": runtime_code,
                       "startup_harness_libc": flash_bytes - weights - model_code - runtime_code,
                       "arena": arena, "stack_estimate": stack, "io_buffers": io_bytes,
                       "image_data_bss": data + bss, "image_ram": image_ram},
            "static_library": lib, "toolchain": GCC.program,
            "runner": {"kind": "qemu-system-arm", "emulator": QEMU.program, "package": QEMU.package,
                       "machine": self.board.machine, "executable": elf,
                       "board_flash": self.board.flash_max, "board_ram": self.board.ram_max},
        }
        say(f"{self.name}: flash {flash_bytes:,} bytes (weights {weights:,}, model code {model_code:,}, "
            f"runtime {runtime_code:,}) of {human(self.flash)}; RAM {ram_bytes:,} bytes (arena {arena:,} + stack "
            f"~{stack:,}; with the harness's buffers {image_ram:,}) of {human(self.ram)}")
        if flash_bytes > self.flash or image_ram > self.ram:
            over = []
            if flash_bytes > self.flash:
                over.append(f"{flash_bytes:,} bytes of flash (weights {weights:,})")
            if image_ram > self.ram:
                over.append(f"{image_ram:,} bytes of RAM (arena {arena:,}, stack ~{stack:,}, I/O {io_bytes:,})")
            raise PdcError(self.misfit(name, f"it needs {' and '.join(over)}",
                                       "flash" if len(over) == 1 and flash_bytes > self.flash else
                                       "ram" if len(over) == 1 else None))
        return info

    def misfit(self, name: str, why: str, which: Optional[str]) -> str:
        hint = "--flash SIZE" if which == "flash" else "--ram SIZE" if which == "ram" else "--flash / --ram"
        return (f"model '{name}' does not fit {self.name} ({human(self.flash)} flash, {human(self.ram)} RAM): "
                f"{why}; pick a bigger part with {hint} or a smaller model")

    def measure_misfit(self, folder: str, tmp: str, link: list) -> tuple[str, Optional[str]]:
        """Links once more with room to spare, to say by how much the image is too big."""
        with open(os.path.join(folder, "link.ld")) as f:
            text = f.read()
        big = re.sub(r"LENGTH = \d+", "LENGTH = 0x10000000", text)
        with open(os.path.join(tmp, "big.ld"), "w") as f:
            f.write(big)
        elf = os.path.join(tmp, "measure.elf")
        cmd = [c if c != "link.ld" else os.path.join(tmp, "big.ld") for c in link]
        cmd[cmd.index("-o") + 1] = elf
        r = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        if r.returncode != 0:
            return "the linker reports a memory region overflow", None
        text_b, data, bss = _size(elf)
        over = [(what, f"{need:,} bytes of {what}") for what, need, have in
                (("flash", text_b + data, self.flash), ("ram", data + bss, self.ram)) if need > have]
        why = "it needs " + " and ".join(o[1] for o in over) if over else "the linker reports an overflow"
        return why.replace("of ram", "of RAM before the stack"), over[0][0] if len(over) == 1 else None


def _size(path: str) -> tuple[int, int, int]:
    """(text, data, bss) from arm-none-eabi-size (Berkeley format: text includes .rodata)."""
    out = subprocess.run([SIZE.path(), "-B", path], capture_output=True, text=True, check=True).stdout
    line = out.strip().splitlines()[1].split()
    return int(line[0]), int(line[1]), int(line[2])


def _has_newlib(cc: str, cflags: list[str], folder: Optional[str] = None) -> bool:
    r = subprocess.run([cc, *cflags, "-print-file-name=libc_nano.a"], capture_output=True, text=True, cwd=folder)
    return r.returncode == 0 and os.path.isabs(r.stdout.strip())


def _check_newlib(cc: str, cflags: list[str], folder: str) -> None:
    if not _has_newlib(cc, cflags, folder):
        raise PdcError(f"newlib for arm-none-eabi not found: install the Debian package '{NEWLIB_PACKAGE}'")


# ---- stack estimate ----------------------------------------------------------------------------------
_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


def stack_estimate(obj_dir: str, root: str = "main") -> int:
    """Worst-case stack from `root`, from GCC's -fcallgraph-info=su files (one .ci per object).

    Each function's frame comes from GCC; a call to a function outside the bundle (the C library)
    counts LIBC_FRAME_BYTES; an indirect call (the GEMM's microkernel and packers) counts the
    deepest function that makes no indirect call itself. Recursion is an error."""
    frames: dict[str, int] = {}
    edges: dict[str, list[str]] = {}
    for f in os.listdir(obj_dir):
        if not f.endswith(".ci"):
            continue
        with open(os.path.join(obj_dir, f)) as fh:
            text = fh.read()
        for title, label in _NODE.findall(text):
            m = re.search(r"(\d+) bytes \((static|dynamic|dynamic,bounded)\)", label.replace("\\n", "\n"))
            if m:
                frames[title] = int(m.group(1)) + (1024 if m.group(2) == "dynamic" else 0)
        for src, dst in _EDGE.findall(text):
            edges.setdefault(src, []).append(dst)
    memo: dict[str, int] = {}

    def has_indirect(fn: str, seen: frozenset = frozenset()) -> bool:
        if fn in seen:
            return False
        return any(d == "__indirect_call" or has_indirect(d, seen | {fn}) for d in edges.get(fn, ()))

    leaves = [f for f in frames if not has_indirect(f)]

    def worst(fn: str, path: tuple = ()) -> int:
        if fn in path:
            raise PdcError(f"stack estimate: {fn} is recursive")
        if fn in memo:
            return memo[fn]
        if fn == "__indirect_call":
            w = max((worst(f, path + (fn,)) for f in leaves), default=LIBC_FRAME_BYTES)
        elif fn not in frames:
            w = LIBC_FRAME_BYTES
        else:
            w = frames[fn] + max((worst(d, path + (fn,)) for d in edges.get(fn, ())), default=0)
        memo[fn] = w
        return w

    return worst(root) + STACK_MARGIN if root in frames else STACK_MARGIN


# ---- generated C -------------------------------------------------------------------------------------
def static_header(name: str) -> str:
    N = name.upper()
    return f"""/* {name}_static.h: generated by pdc. {name} on a microcontroller: a static arena, no heap.
 *   {name}_init(0, 0);  ...  {name}_invoke(inputs, outputs);
 * ({name}.h describes the inputs and outputs; the arena is {N}_ARENA_BYTES bytes of .bss.) */
#ifndef {N}_STATIC_H
#define {N}_STATIC_H
#include "{name}.h"
#ifdef __cplusplus
extern "C" {{
#endif
/* Runs the model on the static arena (not reentrant: one run at a time). */
pdc_status {name}_invoke(const void *const *inputs, void *const *outputs);
#ifdef __cplusplus
}}
#endif
#endif
"""


def static_source(name: str) -> str:
    N = name.upper()
    return f"""/* {name}_static.c: generated by pdc. The static arena of {name}. */
#include "{name}_static.h"
static uint8_t {name}_arena[{N}_ARENA_BYTES + 1] __attribute__((aligned(64)));
pdc_status {name}_invoke(const void *const *inputs, void *const *outputs) {{
    return {name}_run({name}_arena, inputs, outputs);
}}
"""


def harness_source(name: str, manifest: dict) -> str:
    N = name.upper()
    io = sum(-(-spec_bytes(t) // 64) * 64 for t in manifest["inputs"] + manifest["outputs"])
    return f"""/* Generated by pdc: a semihosting driver for {name} on a Cortex-M board (or qemu-system-arm).
 * Reads in.bin (one or more samples: the inputs back to back, repeated), runs the model on each
 * sample and writes the outputs to out.bin likewise. Exit code 0 on success. */
#include "{name}_static.h"
#include "pdc_semihost.h"

unsigned long pdc_stack_used(void);

int main(void) {{
    static uint8_t buffers[{max(io, 1)}] __attribute__((aligned(64)));
    const void *inputs[{N}_NUM_INPUTS + 1];
    void *outputs[{N}_NUM_OUTPUTS + 1];
    size_t in_bytes = 0, at = 0;
    for (int i = 0; i < {N}_NUM_INPUTS; i++) {{
        inputs[i] = buffers + at;
        at += ({name}_inputs[i].bytes + 63) / 64 * 64;
        in_bytes += {name}_inputs[i].bytes;
    }}
    for (int i = 0; i < {N}_NUM_OUTPUTS; i++) {{
        outputs[i] = buffers + at;
        at += ({name}_outputs[i].bytes + 63) / 64 * 64;
    }}
    const int fin = pdc_sh_open("in.bin", 1), fout = pdc_sh_open("out.bin", 5);
    if (fin < 0 || fout < 0) {{
        pdc_sh_puts("{name} harness: cannot open in.bin / out.bin\\n");
        return 2;
    }}
    const long total = pdc_sh_flen(fin);
    const long samples = in_bytes ? total / (long)in_bytes : 1;
    pdc_status s = {name}_init(0, 0);
    for (long k = 0; k < samples && s == PDC_OK; k++) {{
        for (int i = 0; i < {N}_NUM_INPUTS; i++)
            if (pdc_sh_read(fin, (void *)inputs[i], {name}_inputs[i].bytes) != 0) {{
                pdc_sh_puts("{name} harness: short input\\n");
                return 2;
            }}
        s = {name}_invoke(inputs, outputs);
        for (int i = 0; s == PDC_OK && i < {N}_NUM_OUTPUTS; i++)
            if (pdc_sh_write(fout, outputs[i], {name}_outputs[i].bytes) != 0) {{
                pdc_sh_puts("{name} harness: cannot write out.bin\\n");
                return 2;
            }}
    }}
    pdc_sh_close(fin);
    pdc_sh_close(fout);
    if (s != PDC_OK) {{
        pdc_sh_puts("{name}: ");
        pdc_sh_puts(pdc_status_string(s));
        pdc_sh_puts("\\n");
        return 1;
    }}
    pdc_sh_putu("pdc-stack-used ", pdc_stack_used());
    return 0;
}}
"""


# ---- running -------------------------------------------------------------------------------------------
def run_samples(folder: str, manifest: dict, samples: list[dict], timeout: float = 600) -> tuple[list[dict], dict]:
    """Runs a Cortex-M bundle's harness once under qemu-system-arm over several input samples.
    Returns the outputs of each sample and run statistics ({"stack_used": bytes})."""
    from ..harness import read_outputs, write_inputs
    runner = manifest["runner"]
    qemu = Tool(runner["emulator"], runner.get("package", QEMU.package)).path()
    elf = os.path.join(folder, runner["executable"])
    if not os.path.exists(elf):
        raise PdcError(f"{folder}: {runner['executable']} is missing (rebuild with pdc compile)")
    for what, need, have in (("flash", manifest.get("flash_bytes", 0), runner.get("board_flash")),
                             ("RAM", manifest.get("ram_limit", 0), runner.get("board_ram"))):
        if have and need > have:  # the part is bigger than the board qemu emulates
            raise PdcError(f"{folder}: built for {need:,} bytes of {what}, but qemu's {runner['machine']} has "
                           f"{human(have)}: the bundle is for the real part, qemu cannot run it")
    with tempfile.TemporaryDirectory() as tmp:
        write_inputs(os.path.join(tmp, "in.bin"), manifest, samples)
        cmd = [qemu, "-M", runner["machine"], "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", "enable=on,target=native", "-kernel", elf]
        try:
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PdcError(f"{runner['executable']} did not finish within {timeout:.0f} s under "
                           f"qemu-system-arm -M {runner['machine']}") from None
        log = (r.stdout + r.stderr).strip()
        if r.returncode != 0:
            raise PdcError(f"{runner['executable']} failed under qemu-system-arm -M {runner['machine']} "
                           f"(exit {r.returncode}): {log[-1000:]}")
        data = open(os.path.join(tmp, "out.bin"), "rb").read()
    results = read_outputs(data, manifest, len(samples), runner["executable"])
    m = re.search(r"pdc-stack-used (\d+)", log)
    return results, {"stack_used": int(m.group(1)) if m else None}


def run_semihosted(folder: str, manifest: dict, feeds: dict) -> dict:
    return run_samples(folder, manifest, [feeds])[0][0]


def load_manifest(folder: str) -> dict:
    with open(os.path.join(folder, "manifest.json")) as f:
        return json.load(f)


# ---- presets --------------------------------------------------------------------------------------------
FP16 = "-mfp16-format=ieee"  # _Float16 (float16 tensors) on cores without Armv8.1-M
CORTEX_M3 = CortexMTarget("cortex-m3", "ARM Cortex-M3 (ARMv7-M, no FPU: soft float)",
                          ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft", FP16), MPS2("mps2-an385"),
                          256 << 10, 64 << 10, "none")
CORTEX_M4 = CortexMTarget("cortex-m4", "ARM Cortex-M4F (ARMv7E-M, single-precision FPU)",
                          ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", FP16),
                          MPS2("mps2-an386"), 512 << 10, 128 << 10, "none")
CORTEX_M7 = CortexMTarget("cortex-m7", "ARM Cortex-M7 (ARMv7E-M, double-precision FPU)",
                          ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard", FP16),
                          MPS2("mps2-an500"), 2 << 20, 512 << 10, "none")
CORTEX_M55 = CortexMTarget("cortex-m55", "ARM Cortex-M55 (ARMv8.1-M, Helium/MVE vector extension + FPU)",
                           ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"), MPS3_AN547,
                           512 << 10, 256 << 10, "mve")
CORTEX_M = (CORTEX_M3, CORTEX_M4, CORTEX_M7, CORTEX_M55)
