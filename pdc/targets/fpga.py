"""FPGA targets: HLS C++ dataflow accelerators in fixed point, run here by C simulation.

A bundle is Vitis HLS C++ (pdc/codegen/hls): one DATAFLOW top function with a process per layer, each
layer's types an ap_fixed chosen by --precision or from --calibration data, weights as ROMs, plus a
testbench that pdc builds with g++ and the ap_types headers (the Apache-2.0 copy in the hls4ml
package) and runs for `pdc run` / Module.run, a Vitis HLS project script (build_prj.tcl) for
synthesis, and a resource and latency estimate checked against the board's part at compile time.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

from ..ir.errors import PdcError
from .base import Limits, Target, Tool

GXX = Tool("g++", "g++")
AP_TYPES_HINT = "the Python package hls4ml (pip install --no-deps hls4ml) ships them; or set PDC_AP_TYPES=DIR"
# -O0: optimizing makes g++ warn inside the ap_types headers (ap_private reads its own unset VAL)
CSIM_FLAGS = ["-std=c++14", "-O0", "-Wall", "-Wextra", "-Wno-unknown-pragmas"]
DEFAULT_PART = "xcvu13p-flga2577-2-e"  # hls4ml's default part


def ap_types_dir() -> Optional[str]:
    """The folder holding ap_fixed.h and hls_stream.h: PDC_AP_TYPES, else hls4ml's copy (not imported)."""
    env = os.environ.get("PDC_AP_TYPES")
    if env:
        return env if os.path.isfile(os.path.join(env, "ap_fixed.h")) else None
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "templates", "vivado", "ap_types")
    return folder if os.path.isfile(os.path.join(folder, "ap_fixed.h")) else None


@dataclass(frozen=True)
class FpgaTarget(Target):
    name: str
    board: str
    part_name: str
    clock_mhz: float
    # the compile's fixed-point options (with_fixed_point): a type or per-layer file, calibration data,
    # the reuse factor (1: fully parallel), the agreement the chosen types must reach
    precision_spec: Optional[str] = None
    calibration: object = field(default=None, compare=False, hash=False)
    reuse: Optional[int] = None
    agreement: float = 0.99

    runner_kind: ClassVar[str] = "csim"
    kernel_families: ClassVar[tuple] = ()
    fixed_point: ClassVar[bool] = True
    narrow_types: ClassVar[bool] = False  # the HLS C++ kernels take float and ap_fixed types

    @property
    def description(self) -> str:
        return f"{self.board}: HLS C++ dataflow in ap_fixed for {self.part_name} at {self.clock_mhz:g} MHz; " \
               f"C simulation here"

    @property
    def part(self):
        from ..codegen.hls.estimate import PARTS
        return PARTS[self.part_name]

    @property
    def cflags(self) -> list[str]:
        return list(CSIM_FLAGS)

    @property
    def limits(self) -> Limits:
        return Limits(max_threads=1)

    def check_options(self, weights: str, threads: int) -> None:
        if weights != "c":
            raise PdcError(f"{self.name}: weights are ROMs in the design (--weights bin does not apply)")
        if threads != 1:
            raise PdcError(f"{self.name}: --threads does not apply (the design's parallelism is the reuse factor: "
                           f"--reuse-factor N)")

    def precision(self, asked: Optional[str]) -> str:
        return "fixed-point"

    def with_fixed_point(self, precision: Optional[str], calibration, reuse: Optional[int],
                         agreement: Optional[float] = None) -> "FpgaTarget":
        if reuse is not None and reuse < 1:
            raise PdcError(f"--reuse-factor {reuse}: must be at least 1")
        if precision is not None and precision.startswith("auto"):  # auto[:AGREEMENT]: chosen from calibration
            m = re.fullmatch(r"auto(?::(0?\.\d+|1(?:\.0*)?))?", precision)
            if m is None:
                raise PdcError(f"--precision {precision}: expected auto or auto:AGREEMENT, e.g. auto:0.995 (the share "
                               f"of calibration samples on which the fixed-point model must agree with the float one)")
            if calibration is None:
                raise PdcError(f"--precision {precision} chooses the types from data: add --calibration DATA")
            precision, agreement = None, float(m.group(1)) if m.group(1) else agreement
        elif precision is not None and not os.path.isfile(precision):
            from ..quantize.fixed import Fixed
            Fixed.parse(precision)  # a bad type fails before any work
        return dataclasses.replace(self, precision_spec=precision, calibration=calibration, reuse=reuse,
                                   agreement=self.agreement if agreement is None else agreement)

    def with_part(self, part: Optional[str], clock_mhz: Optional[float]) -> "FpgaTarget":
        from ..codegen.hls.estimate import PARTS
        if part is not None and part not in PARTS:
            raise PdcError(f"--part {part}: unknown part (known: {', '.join(sorted(PARTS))})")
        if clock_mhz is not None and not 1 <= clock_mhz <= 1000:
            raise PdcError(f"--clock {clock_mhz:g}: expected MHz between 1 and 1000")
        return dataclasses.replace(self, part_name=part or self.part_name, clock_mhz=clock_mhz or self.clock_mhz)

    def renderer(self):
        from ..codegen.hls.renderer import HlsRenderer
        return HlsRenderer(self)

    def library_files(self, name: str, kernel_files: list[str], cflags: list[str], threads: int) -> dict:
        return {}  # the design is its own C++ (no C runtime, no library)

    # ---- building and running --------------------------------------------------------------------
    def build_tools(self) -> list[Tool]:
        return [GXX]

    def build_problems(self) -> list[str]:
        missing = [] if ap_types_dir() else [f"missing the ap_types headers ({AP_TYPES_HINT})"]
        return super().build_problems() + missing

    def build(self, folder: str, name: str, kernel_files: list[str], cflags: list[str], threads: int,
              say: Callable[[str], None]) -> dict:
        ap = ap_types_dir()
        if ap is None:
            raise PdcError(f"the ap_types headers (ap_fixed.h, hls_stream.h) were not found: {AP_TYPES_HINT}")
        exe = f"{name}_csim"
        say(f"building the C simulation {exe} (g++)")
        cmd = [GXX.path(), *cflags, "-isystem", ap, "-I.", "-o", exe, f"{name}.cpp", f"{name}_tb.cpp"]
        r = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        if r.returncode != 0:
            raise PdcError(f"g++ failed on the HLS C++ of {name}: {r.stderr.strip()[-600:]}")
        return {"runner": {"kind": self.runner_kind, "executable": exe, "ap_types": ap}}

    @staticmethod
    def run_bundle(folder: str, manifest: dict, feeds: dict) -> dict:
        return run_samples(folder, manifest, [feeds])[0]


def run_samples(folder: str, manifest: dict, samples: list[dict], timeout: float = 3600) -> list[dict]:
    """Runs the bundle's C simulation once over several samples; the outputs of each."""
    from ..harness import run_harness_samples
    exe = os.path.join(folder, manifest["runner"]["executable"])
    if not os.path.exists(exe):
        raise PdcError(f"{folder}: {manifest['runner']['executable']} is missing (rebuild with pdc compile)")
    try:
        return run_harness_samples([exe], folder, manifest, samples, timeout=timeout, what="the C simulation")
    except subprocess.TimeoutExpired:
        raise PdcError(f"{exe} did not finish within {timeout:.0f} s") from None


FPGA = (
    FpgaTarget("fpga-hls", "any part (--part PART --clock MHZ)", DEFAULT_PART, 200.0),
    FpgaTarget("fpga-pynq-z2", "PYNQ-Z2 board (Zynq-7020)", "xc7z020clg400-1", 100.0),
    FpgaTarget("fpga-zcu104", "ZCU104 board (Zynq UltraScale+ ZU7EV)", "xczu7ev-ffvc1156-2-e", 200.0),
    FpgaTarget("fpga-u250", "Alveo U250 card", "xcu250-figd2104-2L-e", 300.0),
)
