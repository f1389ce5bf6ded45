"""examples/ built and run as a user would: the C application with pdc.mk on x86 and on arm64
(qemu-aarch64), the same application with CMake's pdc_add_model, and the Cortex-M4 firmware
(qemu-system-arm). Each prints tiny_cnn's class probabilities for a fixed test pattern, which
must be the reference interpreter's."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pdc.cli import cmake_dir
from pdc.frontend import load_model
from pdc.ir.interpreter import run_graph
from pdc.ir.shapes import bind_shapes
from test_arm import require_tools
from test_cmake import pdc_command, require_cmake, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def examples(tmp_path):
    """A copy of examples/ (builds stay out of the checkout) with tiny_cnn.onnx written by tiny_cnn.py."""
    folder = tmp_path / "examples"
    def built(parent, names):  # what a build in the checkout left there
        return [n for n in names if n.endswith(".onnx") or n == "build" or (n == "app" and os.path.isfile(
            os.path.join(parent, n)))]
    shutil.copytree(os.path.join(ROOT, "examples"), folder, ignore=built)
    run([sys.executable, "tiny_cnn.py", "tiny_cnn.onnx"], folder)
    return folder


def reference(examples) -> np.ndarray:
    graph = bind_shapes(load_model(str(examples / "tiny_cnn.onnx")), {"N": 1})
    pixels = int(np.prod(graph.inputs[0].type.shape))
    x = (((np.arange(pixels) * 37) % 101).astype(np.float32) / np.float32(101) - np.float32(0.5))
    out = run_graph(graph, {graph.inputs[0].name: x.reshape(graph.inputs[0].type.shape)})
    return next(iter(out.values())).reshape(-1)


def printed(out: str) -> tuple[np.ndarray, int]:
    probs = [float(v) for v in re.findall(r"^class \d+: ([\d.]+)$", out, re.M)]
    return np.array(probs), int(re.search(r"^top class: (\d+)$", out, re.M).group(1))


def check(out: str, want: np.ndarray) -> None:
    got, top = printed(out)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert top == int(np.argmax(want))


def test_c_app_with_pdc_mk_on_x86(examples):
    app = examples / "app"
    run(["make", f"PDC={pdc_command(examples)}"], app)
    check(run([str(app / "app")], app).stdout, reference(examples))


def test_c_app_with_pdc_mk_on_arm64(examples):
    require_tools("arm64")
    app = examples / "app"
    run(["make", f"PDC={pdc_command(examples)}", "PDC_TARGET=arm64", "CC=aarch64-linux-gnu-gcc"], app)
    out = run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(app / "app")], app).stdout
    check(out, reference(examples))


def test_cmake_project_with_pdc_add_model(examples):
    require_cmake()
    src, build = examples / "cmake", examples / "cmake" / "build"
    run(["cmake", "-S", str(src), "-B", str(build), f"-Dpdc_DIR={cmake_dir()}",
         f"-DPDC_EXECUTABLE={pdc_command(examples)}"], src)
    run(["cmake", "--build", str(build)], src)
    check(run([str(build / "app")], build).stdout, reference(examples))


def test_cortex_m4_firmware(examples):
    require_cmake()
    require_tools("cortex-m4")
    src, build = examples / "firmware", examples / "firmware" / "build"
    toolchain = examples / "cortex-m4.cmake"
    run([pdc_command(examples), "toolchain", "cortex-m4", "-o", str(toolchain)], examples)
    run(["cmake", "-S", str(src), "-B", str(build), f"-Dpdc_DIR={cmake_dir()}",
         f"-DPDC_EXECUTABLE={pdc_command(examples)}", f"-DCMAKE_TOOLCHAIN_FILE={toolchain}"], src)
    run(["cmake", "--build", str(build)], src)
    r = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting-config",
                        "enable=on,target=native", "-kernel", str(build / "firmware.elf")],
                       capture_output=True, text=True, timeout=120, cwd=build)
    assert r.returncode == 0, r.stdout + r.stderr
    out = (r.stdout + r.stderr).replace("\r\n", "\n")  # semihosting output, its lines ending CR LF
    millionths = [int(v) for v in re.findall(r"^class \(millionths\): (\d+)$", out, re.M)]
    want = reference(examples)
    np.testing.assert_allclose(np.array(millionths) / 1e6, want, atol=2e-6)
    assert int(re.search(r"^top class: (\d+)$", out, re.M).group(1)) == int(np.argmax(want))
