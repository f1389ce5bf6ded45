"""`pip install .` (not editable) works: a wheel built from the sources, installed into a fresh virtual
environment, compiles and runs a model from an empty folder outside the checkout. Everything pdc
reads at run time (the C runtime, the Cortex-M startup file and linker script, the IR grammar)
must ship in the wheel as package data.

No network: the wheel is built without build isolation (setuptools and wheel from this
environment) and the venv sees this environment's packages (--system-site-packages) for pdc's
dependencies; pdc itself comes from the wheel, which the test checks.
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_DATA = ["pdc/ir/ir.lark", "pdc/runtime/pdc_runtime.c", "pdc/runtime/pdc_runtime.h",
                "pdc/runtime/cortex_m/startup.c", "pdc/runtime/cortex_m/pdc_semihost.h",
                "pdc/runtime/cortex_m/link.ld.in"]


def dense_model(path):
    """y = relu(x @ w + b): x f32[2,8] -> y f32[2,4]; returns (w, b) for the NumPy expectation."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    g = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w, b


def clean_env() -> dict:
    """This environment without anything that would import pdc from the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PDC_DEBUG", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(cmd, cwd, check=True):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                       timeout=300)
    if check:
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The bin/ folder of a fresh venv with pdc installed from a wheel built from a copy of the sources
    (the copy keeps build/ and *.egg-info out of the checkout)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, f), src / f)
    shutil.copytree(os.path.join(ROOT, "pdc"), src / "pdc",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.o"))
    wheels = tmp / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", wheels, src], cwd=tmp)
    wheel, = wheels.glob("pdc-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert set(RUNTIME_DATA) <= names, sorted(set(RUNTIME_DATA) - names)
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=tmp)
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
         "-q", wheel], cwd=tmp)
    return venv / "bin"


@pytest.fixture
def empty(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert not str(folder).startswith(ROOT)
    return folder


def test_installed_pdc_is_the_wheel_not_the_checkout(installed, empty):
    r = run([installed / "python", "-c", "import pdc, pdc.build; print(pdc.__file__); "
                                         "print(len(pdc.build.runtime_sources()))"], empty)
    where, count = r.stdout.split()
    assert where == str(installed.parent / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
                        / "site-packages" / "pdc" / "__init__.py")
    assert count == "2"
    r = run([installed / "pdc", "--version"], empty)
    first = r.stdout.splitlines()[0]
    assert first.startswith("pdc 0.1.0 (Python ") and first.endswith(f"{os.path.dirname(where)})"), first
    # the CMake package and the Make include ship with it
    cmake = run([installed / "pdc", "--cmake-dir"], empty).stdout.strip()
    assert cmake == os.path.join(os.path.dirname(where), "cmake")
    assert {"pdcConfig.cmake", "pdc_headers.cmake", "pdc.mk"} <= set(os.listdir(cmake))


def test_installed_pdc_compiles_and_runs_x86_from_an_empty_folder(installed, empty):
    w, b = dense_model(empty / "dense.onnx")
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    np.save(empty / "x.npy", x)
    r = run([installed / "pdc", "compile", "dense.onnx", "-o", "bundle", "-q"], empty)
    assert r.stdout.startswith("dense: ") and r.stdout.rstrip().endswith(str(empty / "bundle")), r.stdout
    manifest = json.loads((empty / "bundle" / "manifest.json").read_text())
    assert manifest["library"] == "libdense.so" and (empty / "bundle" / "libdense.so").exists()
    assert (empty / "bundle" / "runtime" / "pdc_runtime.c").read_bytes() == \
        open(os.path.join(ROOT, "pdc", "runtime", "pdc_runtime.c"), "rb").read()
    r = run([installed / "pdc", "run", "bundle", "--inputs", "x.npy", "--save", "out.npz"], empty)
    assert r.stdout.startswith("y: float32[2, 4] min "), r.stdout
    got = np.load(empty / "out.npz")["y"]
    np.testing.assert_allclose(got, np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)
    r = run([installed / "python", "-c", "import pdc, numpy as np; m = pdc.compile('dense.onnx'); "
                                         "print(m.run({'x': np.load('x.npy')})['y'].shape)"], empty)
    assert r.stdout.strip() == "(2, 4)"
    assert sorted(os.listdir(empty)) == ["bundle", "dense.onnx", "out.npz", "x.npy"]
    # pdc report: the same arena and weights as the bundle, nothing left behind
    rep = json.loads(run([installed / "pdc", "report", "dense.onnx", "--json", "-"], empty).stdout)
    assert (rep["arena_bytes"], rep["weight_bytes"]) == (manifest["arena_bytes"], manifest["weight_bytes"])
    assert sorted(os.listdir(empty)) == ["bundle", "dense.onnx", "out.npz", "x.npy"]


@pytest.mark.parametrize("target, programs", [
    ("arm64", ["aarch64-linux-gnu-gcc", "qemu-aarch64"]),
    ("cortex-m4", ["arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"]),
])
def test_installed_pdc_builds_and_runs_cross_bundles(installed, empty, target, programs):
    """The cross targets read the runtime too, and Cortex-M its startup file and linker script."""
    missing = [p for p in programs if not shutil.which(p)]
    if missing:  # CI installs the toolchains (make toolchains): there a missing one fails
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"missing {', '.join(missing)}")
    w, b = dense_model(empty / "dense.onnx")
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    np.save(empty / "x.npy", x)
    run([installed / "pdc", "compile", "dense.onnx", "-o", "bundle", "--target", target, "-q"], empty)
    manifest = json.loads((empty / "bundle" / "manifest.json").read_text())
    assert manifest["target"] == target and manifest["threads"] == 1
    if target == "cortex-m4":
        assert (empty / "bundle" / "link.ld").exists() and (empty / "bundle" / "runtime" / "startup.c").exists()
    run([installed / "pdc", "run", "bundle", "--inputs", "x.npy", "--save", "out.npz"], empty)
    np.testing.assert_allclose(np.load(empty / "out.npz")["y"], np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-5)


def test_installed_cmake_package_builds_an_application(installed, empty):
    """find_package(pdc) from the installed package's --cmake-dir; pdc_add_model runs the installed pdc."""
    if shutil.which("cmake") is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("missing cmake")
    w, b = dense_model(empty / "dense.onnx")
    (empty / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(app C)\nfind_package(pdc REQUIRED)\n"
        "pdc_add_model(dense MODEL dense.onnx OPTIONS --threads 1)\n"
        "add_executable(app main.c)\ntarget_link_libraries(app PRIVATE dense)\n")
    (empty / "main.c").write_text(
        '#include <stdio.h>\n#include <stdlib.h>\n#include "dense.h"\n'
        "int main(void) {\n    float x[16], y[8];\n    for (int i = 0; i < 16; i++) x[i] = (float)(i % 5) - 2.0f;\n"
        "    const void *in[1] = {x}; void *out[1] = {y};\n"
        "    void *arena = aligned_alloc(64, (DENSE_ARENA_BYTES + 63) / 64 * 64 + 64);\n"
        "    if (dense_init(NULL, 0) != PDC_OK || dense_run(arena, in, out) != PDC_OK) return 1;\n"
        '    for (int i = 0; i < 8; i++) printf("%.6f\\n", y[i]);\n    return 0;\n}\n')
    cmake = run([installed / "pdc", "--cmake-dir"], empty).stdout.strip()
    env_path = f"{installed}:{os.environ.get('PATH', '')}"  # pdc_add_model finds the installed pdc on the PATH
    for cmd in (["cmake", "-S", ".", "-B", "build", f"-Dpdc_DIR={cmake}"], ["cmake", "--build", "build"]):
        r = subprocess.run(cmd, cwd=empty, capture_output=True, text=True, env=dict(clean_env(), PATH=env_path))
        assert r.returncode == 0, r.stdout + r.stderr
    assert f"PDC_EXECUTABLE:FILEPATH={installed / 'pdc'}" in (empty / "build" / "CMakeCache.txt").read_text()
    got = np.array(run([empty / "build" / "app"], empty).stdout.split(), np.float32).reshape(2, 4)
    x = ((np.arange(16) % 5) - 2).astype(np.float32).reshape(2, 8)
    np.testing.assert_allclose(got, np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)
