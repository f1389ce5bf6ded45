"""Build-system integration: a CMake project with find_package(pdc) and pdc_add_model (x86, and
arm64 cross-built with `pdc toolchain`'s file, run under qemu), a plain Makefile including pdc.mk,
cross bundles built by their own CMakeLists.txt with a plain `cmake`, and `pdc toolchain`.

The application (APP below) fills the model's input with a fixed pattern and writes the output's
bytes to out.bin, which must equal what pdc.Module (x86) or the reference interpreter (arm64,
within float tolerance) computes. pdc runs at build time, and again only when the model or the
call's arguments change: the bundle's manifest.json is rewritten exactly then.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.cli import cmake_dir
from pdc.ir.interpreter import run_graph
from pdc.frontend import load_model
from test_arm import require_tools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (1, 4, 6, 6)

APP = r"""
#include <stdio.h>
#include <stdlib.h>
#include "net.h"

int main(void) {
    static float x[1 * 4 * 6 * 6], y[NET_OUTPUT0_BYTES / sizeof(float)];
    for (int i = 0; i < (int)(sizeof x / sizeof x[0]); i++) x[i] = (float)(i % 7 - 3) * 0.25f;
    void *arena = aligned_alloc(64, (NET_ARENA_BYTES + 63) / 64 * 64);
    const void *in[1] = {x};
    void *out[1] = {y};
    if (!arena || net_init(NULL, 0) != PDC_OK || net_run(arena, in, out) != PDC_OK) return 1;
    FILE *f = fopen("out.bin", "wb");
    fwrite(y, 1, sizeof y, f);
    fclose(f);
    net_shutdown();
    return 0;
}
"""

PROJECT = """cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(pdc REQUIRED)
pdc_add_model(net MODEL ${CMAKE_CURRENT_SOURCE_DIR}/net.onnx TARGET ${MODEL_TARGET} OPTIONS ${MODEL_OPTIONS})
add_executable(app main.c)
target_link_libraries(app PRIVATE net)
"""


def net_model(seed: int = 0) -> onnx.ModelProto:
    """Conv(4 -> 8, 3x3) -> Relu -> global average pool -> flatten -> Gemm(8 -> 5)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal((8, 5)) * 0.5).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def app_input() -> np.ndarray:
    return ((np.arange(np.prod(SHAPE)) % 7 - 3) * 0.25).astype(np.float32).reshape(SHAPE)


def pdc_command(folder) -> str:
    """A `pdc` that runs this checkout's pdc with this interpreter (the one on the PATH may be another)."""
    os.makedirs(os.path.join(folder, "bin"), exist_ok=True)
    path = os.path.join(folder, "bin", "pdc")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m pdc "$@"\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


def run(cmd, cwd, env=None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def make_project(tmp_path, target: str, options: str = "") -> tuple:
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(PROJECT)
    (src / "main.c").write_text(APP)
    onnx.save(net_model(), str(src / "net.onnx"))
    return src, tmp_path / "build"


def configure(src, build, target: str, options: str, extra=()) -> subprocess.CompletedProcess:
    return run(["cmake", "-S", str(src), "-B", str(build), f"-Dpdc_DIR={cmake_dir()}",
                f"-DPDC_EXECUTABLE={pdc_command(src.parent)}", f"-DMODEL_TARGET={target}",
                f"-DMODEL_OPTIONS={options}", *extra], src.parent)


def require_cmake() -> None:
    if shutil.which("cmake") is None:
        msg = "missing: cmake (Debian package cmake; see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def test_pdc_add_model_builds_links_and_rebuilds_only_on_change(tmp_path):
    require_cmake()
    src, build = make_project(tmp_path, "x86")
    configure(src, build, "x86", "--threads;1")
    run(["cmake", "--build", str(build)], tmp_path)
    manifest = build / "pdc" / "net" / "manifest.json"
    run([str(build / "app")], build)
    want = pdc.compile(net_model(), target="x86", out_dir=str(tmp_path / "ref"), threads=1).run({"x": app_input()})["y"]
    np.testing.assert_array_equal(np.fromfile(build / "out.bin", np.float32).reshape(1, 5), want)
    assert '"threads": 1' in manifest.read_text()

    # nothing changed: pdc does not run again
    stamp = manifest.stat().st_mtime_ns
    out = run(["cmake", "--build", str(build)], tmp_path).stdout
    assert "pdc: compiling" not in out and manifest.stat().st_mtime_ns == stamp

    # a new model: compiled again, and the application computes with it
    onnx.save(net_model(seed=1), str(src / "net.onnx"))
    out = run(["cmake", "--build", str(build)], tmp_path).stdout
    assert "pdc: compiling" in out and manifest.stat().st_mtime_ns != stamp
    run([str(build / "app")], build)
    want = pdc.compile(net_model(1), target="x86", out_dir=str(tmp_path / "ref1"), threads=1).run({"x": app_input()})["y"]
    np.testing.assert_array_equal(np.fromfile(build / "out.bin", np.float32).reshape(1, 5), want)

    # other options: compiled again
    configure(src, build, "x86", "--threads;2")
    out = run(["cmake", "--build", str(build)], tmp_path).stdout
    assert "pdc: compiling" in out and '"threads": 2' in manifest.read_text()


def test_pdc_add_model_cross_builds_for_arm64(tmp_path):
    require_cmake()
    require_tools("arm64")
    src, build = make_project(tmp_path, "arm64")
    toolchain = tmp_path / "arm64.cmake"
    run([pdc_command(tmp_path), "toolchain", "arm64", "-o", str(toolchain)], tmp_path)
    configure(src, build, "arm64", "", [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}"])
    run(["cmake", "--build", str(build)], tmp_path)
    assert (build / "pdc" / "net" / "libnet.a").is_file()
    # the toolchain file's emulator runs the cross-built application
    run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(build / "app")], build)
    want = run_graph(load_model(str(src / "net.onnx")), {"x": app_input()})["y"]
    np.testing.assert_allclose(np.fromfile(build / "out.bin", np.float32).reshape(1, 5), want, rtol=1e-5, atol=1e-6)
    assert "qemu-aarch64;-L;/usr/aarch64-linux-gnu" in toolchain.read_text()


def test_pdc_add_model_errors_name_what_is_wrong(tmp_path):
    require_cmake()
    src, build = make_project(tmp_path, "x86")
    (src / "CMakeLists.txt").write_text(PROJECT.replace("MODEL ${CMAKE_CURRENT_SOURCE_DIR}/net.onnx",
                                                        "MODEL ${CMAKE_CURRENT_SOURCE_DIR}/missing.onnx"))
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(build), f"-Dpdc_DIR={cmake_dir()}",
                        f"-DPDC_EXECUTABLE={pdc_command(tmp_path)}", "-DMODEL_TARGET=x86"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and f"pdc_add_model(net): no model at {src}/missing.onnx" in " ".join(r.stderr.split())
    (src / "CMakeLists.txt").write_text(PROJECT.replace(" OPTIONS ${", " QUANTIZE int8 OPTIONS ${"))
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(tmp_path / "b2"), f"-Dpdc_DIR={cmake_dir()}",
                        f"-DPDC_EXECUTABLE={pdc_command(tmp_path)}", "-DMODEL_TARGET=x86"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "pdc_add_model(net): QUANTIZE int8 needs CALIBRATION <data.npz>" in " ".join(
        r.stderr.split())


def test_pdc_mk_builds_and_rebuilds_only_on_change(tmp_path):
    (tmp_path / "main.c").write_text(APP)
    onnx.save(net_model(), str(tmp_path / "net.onnx"))
    (tmp_path / "Makefile").write_text(
        f"PDC = {pdc_command(tmp_path)}\nPDC_MODEL = net.onnx\nPDC_FLAGS = --threads 1\n"
        f"include {cmake_dir()}/pdc.mk\n\n"
        "app: main.o $(PDC_LIB)\n\t$(CC) -o $@ main.o $(PDC_LIB) $(PDC_LDLIBS)\n"
        "main.o: main.c $(PDC_HEADER)\n\t$(CC) $(PDC_CFLAGS) -c main.c -o $@\n")
    run(["make", "app"], tmp_path)
    run([str(tmp_path / "app")], tmp_path)
    want = pdc.compile(net_model(), target="x86", out_dir=str(tmp_path / "ref"), threads=1).run({"x": app_input()})["y"]
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.bin", np.float32).reshape(1, 5), want)
    manifest = tmp_path / "pdc" / "net" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert "compile" not in run(["make", "app"], tmp_path).stdout and manifest.stat().st_mtime_ns == stamp
    run(["make", "app", "PDC_FLAGS=--threads 2"], tmp_path)
    assert manifest.stat().st_mtime_ns != stamp and '"threads": 2' in manifest.read_text()


@pytest.mark.parametrize("target", ["arm64", "armv7", "cortex-m4"])
def test_cross_bundles_build_with_a_plain_cmake(tmp_path, target):
    """A cross bundle's CMakeLists.txt takes its toolchain.cmake when the build names none."""
    require_cmake()
    require_tools(target)
    bundle = tmp_path / "bundle"
    pdc.compile(net_model(), target=target, out_dir=str(bundle), name="net")
    assert (bundle / "toolchain.cmake").read_text() == run([pdc_command(tmp_path), "toolchain", target], tmp_path).stdout
    run(["cmake", "-S", str(bundle), "-B", str(tmp_path / "build")], tmp_path)
    run(["cmake", "--build", str(tmp_path / "build")], tmp_path)
    lib = next((tmp_path / "build").glob("libnet.a"))
    machine = {"arm64": "AArch64", "armv7": "ARM", "cortex-m4": "ARM"}[target]
    objs = run(["ar", "t", str(lib)], tmp_path).stdout.split()
    run(["ar", "x", str(lib), objs[0]], tmp_path)
    assert f"Machine:                           {machine}" in run(["readelf", "-h", objs[0]], tmp_path).stdout


def test_toolchain_command_refuses_host_targets(tmp_path):
    r = subprocess.run([pdc_command(tmp_path), "toolchain", "x86"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == "pdc: error: x86: builds with this machine's own compiler; it needs no toolchain file\n"
    r = subprocess.run([pdc_command(tmp_path), "--cmake-dir"], capture_output=True, text=True)
    assert r.returncode == 0 and os.path.isfile(os.path.join(r.stdout.strip(), "pdcConfig.cmake"))
    assert os.path.isfile(os.path.join(r.stdout.strip(), "pdc.mk"))
