"""CUDA bundles built for the CPU emulator in tests/cuda/emu: the bundle's CUDA file compiled as C++
(the emulator's cuda_fp16.h / cuda_bf16.h / mma.h stand in for the toolkit's), its host C against the
emulator's cuda_runtime_api.h, linked with the emulator's runtime. The bundle's code is unchanged:
what a GPU would run is what runs here, kernel by kernel and CUDA graph by CUDA graph."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pdc
import pdc.onnx_backend
from pdc.build import build_shared
from pdc.compiler import compile_details
from pdc.targets.x86 import c_compiler

EMU = Path(__file__).resolve().parent / "emu"
CXX = ["g++", "-std=c++20", "-O1", "-fPIC", "-ffp-contract=off", f"-I{EMU}", "-I.", "-Iruntime"]


def _cxx(args: list[str], folder: Path) -> None:
    r = subprocess.run([*CXX, *args], cwd=folder, capture_output=True, text=True)
    if r.returncode:
        raise AssertionError(f"emulated build failed: {r.stderr[-3000:]}")


def runtime_object() -> str:
    """The emulator's runtime compiled once per version of its sources (shared by the tests)."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(EMU.iterdir()))).hexdigest()[:16]
    obj = Path(tempfile.gettempdir()) / f"pdc-cuda-emu-{digest}.o"
    if not obj.exists():
        with tempfile.TemporaryDirectory() as tmp:
            _cxx(["-c", str(EMU / "cuda_emu.cpp"), "-o", "emu.o"], Path(tmp))
            os.replace(Path(tmp) / "emu.o", obj)
    return str(obj)


def build_emulated(folder: Path, name: str) -> None:
    """Builds lib<name>.so of a CUDA bundle written with build=False, for the emulator."""
    manifest = json.loads((folder / "manifest.json").read_text())
    kernel_files = sorted(f for f in os.listdir(folder) if f.startswith(f"{name}_kernels") and f.endswith(".c"))
    kernel_files.append("runtime/pdc_cuda.c")
    _cxx(["-x", "c++", "-c", f"{name}_kernels.cu", "-o", "device.o"], folder)
    shutil.copy(runtime_object(), folder / "emu.o")
    cflags = ["-O1", "-fPIC", "-std=gnu11", f"-I{EMU}"]
    build_shared(str(folder), name, kernel_files, c_compiler(), cflags, manifest["threads"],
                 libs=("stdc++",), objects=("device.o", "emu.o"))
    manifest["library"] = f"lib{name}.so"
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def compile_emulated(model, folder: Path, name: str = "model", target: str = "cuda-sm80", **options) -> pdc.Module:
    """`model` compiled for a cuda target and loaded on the emulator (PDC_CUDA_EMU_* set its GPU)."""
    compile_details(model, str(folder), target=target, name=name, build=False, **options)
    build_emulated(folder, name)
    return pdc.load(str(folder))


class EmulatedRep(pdc.onnx_backend.PdcRep):
    """The ONNX backend's compiled model, built for cuda-sm80 and run on the emulator."""

    def build(self, graph, folder: str):
        compile_details(graph, folder, target="cuda-sm80", name="model", opt_level=self.opt_level, threads=1,
                        build=False)
        build_emulated(Path(folder), "model")
        return pdc.Module(folder)


class EmulatedCudaBackend(pdc.onnx_backend.PdcBackend):
    """pdc.onnx_backend on the cuda-sm80 target, run on the CPU emulator."""
    engine = "cuda-sm80"
    rep = EmulatedRep
