"""The x86 bundle: files, manifest, C API, build files, atomic writes, hostile names, Module errors."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.compiler import compile_bundle
from pdc.ir.errors import PdcError
from tolerances import ROUNDED

HOSTILE = ["x */ #include <stdio.h> /*", 'q"uote\\', "new\nline", "caf\u00e9 \u2603", "??=trigraph", "a"]


def chain_model(names=("x", "a", "b", "y")):
    """x -> Relu -> Sigmoid -> Add(w) -> y, with the given value names."""
    x, a, b, y = names
    w = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "w")
    nodes = [helper.make_node("Relu", [x], [a], name=a), helper.make_node("Sigmoid", [a], [b], name=b + "*/"),
             helper.make_node("Add", [b, "w"], [y], name="#define y 1")]
    g = helper.make_graph(nodes, "g\"*/", [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 3, 4])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 3, 4])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def expected(x):
    return 1 / (1 + np.exp(-np.maximum(x, 0))) + np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)


def test_bundle_files_and_manifest(tmp_path):
    out = tmp_path / "b"
    compile_bundle(chain_model(), str(out), name="net", shapes={"N": 2}, opt_level=1)
    files = set(os.listdir(out))
    assert {"net.h", "net.c", "net_kernels.h", "net_kernels_0.c", "net_weights.c", "net_weights.bin",
            "CMakeLists.txt", "Makefile", "manifest.json", "libnet.so", "runtime", "pdc_kernels_common.h"} <= files
    m = json.loads((out / "manifest.json").read_text())
    assert m["inputs"] == [{"name": "x", "dtype": "float32", "shape": [2, 3, 4]}]
    assert m["outputs"] == [{"name": "y", "dtype": "float32", "shape": [2, 3, 4]}]
    assert m["weight_bytes"] == 64 and m["target"].startswith("x86-") and m["pdc_version"] == pdc.__version__
    assert m["naive_activation_bytes"] == 2 * 96 and m["arena_bytes"] <= 128
    assert [k["op"] for k in m["kernels"]] and all(k["function"].startswith("net_k") for k in m["kernels"])
    header = (out / "net.h").read_text()
    for needle in ("#define NET_ARENA_BYTES", "pdc_status net_init(const char *weights_path, int num_threads);",
                   "pdc_status net_run(void *arena, const void *const *inputs, void *const *outputs);"):
        assert needle in header


def test_hostile_names_compile_to_safe_correct_code(tmp_path):
    model = chain_model(tuple(HOSTILE[:3]) + ("y\u00e9\"*/",))
    out = tmp_path / "b"
    mod = pdc.compile(model, out_dir=str(out), shapes={"N": 1}, opt_level=1)
    sources = "".join((out / f).read_text() for f in os.listdir(out) if f.endswith((".c", ".h")))
    assert sources.isascii()
    assert "#include <stdio.h> /*" not in sources.replace("#include <stdio.h>\n", "")
    for line in sources.splitlines():  # no comment is closed early, no stray preprocessor line
        body = line.split("/*", 1)[1] if "/*" in line else ""
        assert body.count("*/") <= 1
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    got = mod.run({HOSTILE[0]: x})["y\u00e9\"*/"]
    ROUNDED.check(got, expected(x))
    # the names survive in the C tensor descriptors, byte for byte
    assert mod.inputs[0].name == HOSTILE[0]


def test_generated_code_is_warning_free(tmp_path):
    out = tmp_path / "b"
    compile_bundle(chain_model(), str(out), name="net", shapes={"N": 1}, build=False, opt_level=1)
    srcs = ["net.c", "net_weights.c", "net_kernels_0.c", "runtime/pdc_runtime.c"]
    compilers = [cc for cc in ("gcc", "clang", "clang-15") if shutil.which(cc)]
    assert "gcc" in compilers and any(cc.startswith("clang") for cc in compilers), compilers
    for cc in compilers:
        r = subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I.", "-Iruntime",
                            "-DPDC_THREADS=1", "-Wa,-I.", "-c", *srcs], cwd=out, capture_output=True, text=True)
        assert r.returncode == 0, f"{cc}: {r.stderr}"


def test_make_and_cmake_build_the_libraries(tmp_path):
    out = tmp_path / "b"
    compile_bundle(chain_model(), str(out), name="net", shapes={"N": 1}, build=False, opt_level=1)
    r = subprocess.run(["make", "-s"], cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (out / "libnet.a").exists() and (out / "libnet.so").exists()
    if shutil.which("cmake"):
        build = tmp_path / "cm"
        r = subprocess.run(["cmake", "-S", str(out), "-B", str(build)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (build / "libnet.a").exists() and (build / "libnet.so").exists()


def test_weights_bin_are_loaded_at_init(tmp_path):
    out = tmp_path / "b"
    mod = pdc.compile(chain_model(), out_dir=str(out), shapes={"N": 1}, weights="bin", opt_level=1)
    assert "incbin" not in (out / "model_weights.c").read_text()
    x = np.ones((1, 3, 4), np.float32)
    ROUNDED.check(mod.run({"x": x})["y"], expected(x))
    (out / "model_weights.bin").write_bytes(b"short")
    with pytest.raises(PdcError, match="init failed with status 3"):
        pdc.load(str(out))


def test_failed_compile_leaves_the_folder_alone(tmp_path):
    out = tmp_path / "b"
    compile_bundle(chain_model(), str(out), shapes={"N": 1}, opt_level=1)
    before = sorted(os.listdir(out))
    with pytest.raises(PdcError, match=r"input 'x' has the unbound dim 'N'"):
        compile_bundle(chain_model(), str(out), opt_level=1)
    assert sorted(os.listdir(out)) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".b.tmp")]


def test_module_run_rejects_bad_feeds(tmp_path):
    mod = pdc.compile(chain_model(), out_dir=str(tmp_path / "b"), shapes={"N": 1}, opt_level=1)
    ok = np.zeros((1, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"missing input 'x' \(float32\[1, 3, 4\]\)"):
        mod.run({})
    with pytest.raises(ValueError, match=r"unknown input\(s\) \['z'\]"):
        mod.run({"x": ok, "z": ok})
    with pytest.raises(ValueError, match=r"input 'x' has shape \[2, 3, 4\], expected \[1, 3, 4\]"):
        mod.run({"x": np.zeros((2, 3, 4), np.float32)})
    with pytest.raises(ValueError, match=r"input 'x' has dtype float64, expected float32"):
        mod.run({"x": ok.astype(np.float64)})
    assert repr(mod.inputs) == "[x: float32[1, 3, 4]]"


def test_cli_compile_run_check(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(chain_model(), model)
    out = tmp_path / "bundle"
    run = lambda *a: subprocess.run([sys.executable, "-m", "pdc.cli", *a], capture_output=True, text=True)  # noqa
    r = run("compile", str(model), "-o", str(out), "--shape", "x=1,3,4", "--name", "tiny", "-O", "1")
    assert r.returncode == 0, r.stderr
    assert "tiny: 3 kernels" in r.stdout or "tiny: " in r.stdout
    x = np.full((1, 3, 4), 0.5, np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run("run", str(out), "--inputs", str(tmp_path / "x.npy"), "--save", str(tmp_path / "o.npz"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("y: float32[1, 3, 4]")
    ROUNDED.check(np.load(tmp_path / "o.npz")["y"], expected(x))
    r = run("check", str(model), "--shape", "N=2", "-O", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout and "y: max abs err" in r.stdout
    r = run("compile", str(model), "-o", str(out), "--name", "9bad")
    assert r.returncode == 1 and "--name '9bad': must be a C identifier" in r.stderr
