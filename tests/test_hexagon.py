"""The Hexagon DSP targets: int8 models through the HVX kernels under qemu-hexagon, bit for bit with the
integer reference and the x86 int8 build; the scalar build's instruction count beside the HVX build's;
the compile-only versions (v68, v69, v73) warning-free; VTCM in the memory report; the refusals."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pdc
from conftest import missing_dependency
from pdc.compiler import compile_details
from pdc.frontend import load_model
from pdc.ir.errors import PdcError
from pdc.ir.interpreter import run_graph
from pdc.quantize import quantize_model
from pdc.targets import get_target
from pdc.targets.cortex_m import load_manifest
from pdc.targets.hexagon import CLANG, compiler_rt_available, run_samples
from quantize.test_int8_targets import x86_digits
from test_arm import require_tools

RUNNABLE = ["hexagon-v66", "hexagon-v67"]
COMPILE_ONLY = ["hexagon-v68", "hexagon-v69", "hexagon-v73"]


@pytest.fixture(autouse=True)
def _tools():
    require_tools("hexagon-v66")
    if not compiler_rt_available():
        missing_dependency("the Python package ziglang (the Hexagon compiler runtime)")


def _quantized(zoo, name: str):
    """The zoo model quantized on 8 random samples (as tests/quantize/test_int8_targets.py) and a feed maker."""
    g = load_model(zoo(name))
    rng = np.random.default_rng(0)
    feed = lambda: {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}  # noqa: E731
    qg, _ = quantize_model(g, {v.name: np.stack([feed()[v.name] for _ in range(8)]) for v in g.inputs})
    return qg, feed


def _logits(outputs: dict) -> np.ndarray:
    return next(iter(outputs.values()))[0]


def test_digits_int8_on_v66_and_v67_is_bit_identical_to_x86_int8(digits, tmp_path):
    """All held-back digits in one qemu-hexagon run per version: the reference's logits exactly, and so the
    x86 int8 build's accuracy."""
    g, qg, x, y = digits
    feeds, got_x86 = x86_digits(qg, x, str(tmp_path / "x86"))
    for target in RUNNABLE:
        folder = str(tmp_path / target)
        c = compile_details(qg, folder, target=target)
        assert {k["path"] for k in c.manifest["kernels"] if k["op"] == "qconv"} == {"qconv/hvx-gemm"}
        outs = run_samples(folder, load_manifest(folder), feeds)
        np.testing.assert_array_equal(np.stack([_logits(o) for o in outs]), got_x86)
    accuracy = float((got_x86.argmax(1) == y).mean())
    print(f"\ndigits CNN int8: accuracy {accuracy:.4f} on {len(y)} held-back digits, x86 = hexagon-v66 = hexagon-v67")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "transformer_encoder"])
def test_zoo_int8_on_v66_and_v67_is_bit_identical(zoo, tmp_path, name):
    """Dense, strided, pointwise and depthwise layers and the fully connected ones through the HVX kernels
    (the transformer's attention, softmax and LayerNorms on the scalar core): the integer reference's outputs
    exactly, on both versions, as the x86 int8 build gives them (the lookup-table ops of mobilenet_v3 are
    property-tested on hexagon-v66 in tests/kernels/test_qint_kernels.py)."""
    qg, feed = _quantized(zoo, name)
    x86 = pdc.compile(qg, target="x86", out_dir=str(tmp_path / "x86"))
    samples = [feed() for _ in range(2)]
    want = [run_graph(qg, s) for s in samples]
    for s, w in zip(samples, want):
        np.testing.assert_array_equal(_logits(x86.run(s)), _logits(w))
    for target in RUNNABLE:
        folder = str(tmp_path / target)
        c = compile_details(qg, folder, target=target)
        paths = {k.get("path") for k in c.manifest["kernels"] if k["op"] == "qconv"}
        assert paths <= {"qconv/hvx-gemm", "qconv/hvx-depthwise"}, paths
        fc = [p for n, p in zip(c.graph.nodes, c.bundle.kernel_paths) if n.op == "qmatmul" and n.inputs[1].data is not None]
        assert fc and set(fc) == {"qmatmul/hvx"}, fc  # weights: the HVX product
        for got, w in zip(run_samples(folder, load_manifest(folder), samples), want):
            np.testing.assert_array_equal(_logits(got), _logits(w))


def test_resnet18_hvx_build_runs_a_quarter_of_the_scalar_build_instructions(zoo, tmp_path):
    """Instructions executed under qemu-hexagon (the TCG plugin), whole process: the HVX build against the
    scalar one (portable C kernels, no -mhvx) of the same int8 resnet18, both bit-identical."""
    qg, feed = _quantized(zoo, "resnet18")
    x = feed()
    counts, outputs = {}, {}
    target = get_target("hexagon-v66")
    for label, tgt in (("hvx", target), ("scalar", dataclasses.replace(target, hvx=False))):
        folder = str(tmp_path / label)
        c = compile_details(qg, folder, target=tgt)
        assert any(k.get("path", "").startswith("qconv/hvx") for k in c.manifest["kernels"]) == (label == "hvx")
        outs = run_samples(folder, load_manifest(folder), [x], counting=True)
        outputs[label], counts[label] = outs[0], outs[1]
    np.testing.assert_array_equal(_logits(outputs["hvx"]), _logits(outputs["scalar"]))
    ratio = counts["hvx"] / counts["scalar"]
    print(f"\nresnet18 int8 on hexagon-v66: HVX {counts['hvx']:,} instructions, scalar {counts['scalar']:,}: "
          f"{100 * ratio:.1f} %")
    assert ratio <= 0.25


@pytest.mark.parametrize("target", COMPILE_ONLY)
def test_compile_only_versions_build_warning_free(digits, zoo, tmp_path, target):
    """v68, v69 and v73 bundles compile and link here (v73 with zig's clang: clang-15 knows versions up to
    v69); their sources again with -Wall -Wextra -Werror, the harness linked with --fatal-warnings, its ELF
    header naming the version; running one says it runs on the DSP only."""
    from pdc.targets.hexagon import zig_compiler_rt
    qg = digits[1]
    folder = str(tmp_path / "b")
    c = compile_details(qg, folder, target=target)
    tgt = get_target(target)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".c")) + ["runtime/pdc_runtime.c",
                                                                          "runtime/hexagon/pdc_libm.c"]
    objs = []
    for f in files:
        obj = os.path.join(str(tmp_path), os.path.basename(f) + ".o")
        r = subprocess.run([*tgt.compiler(), *c.manifest["cflags"], *tgt.include_flags(), "-Wall", "-Wextra", "-Werror",
                            "-c", f, "-o", obj], cwd=folder, capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, f"{f}: {r.stderr}"
        objs.append(obj)
    r = subprocess.run([CLANG.program, *tgt.link_flags, "-Wl,--fatal-warnings", "-o", str(tmp_path / "harness"), *objs,
                        zig_compiler_rt()],
                       cwd=folder, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    flags = subprocess.run(["readelf", "-h", str(tmp_path / "harness")], capture_output=True, text=True).stdout
    assert f"Flags:                             0x{tgt.version[1:]}" in flags
    with pytest.raises(PdcError, match=rf"built for Hexagon {tgt.version}; qemu-hexagon emulates CPU versions up to "
                                       r"v67, so this bundle runs on the DSP only"):
        pdc.load(folder).run({"x": digits[2][:1]})


def test_vtcm_per_kernel_in_the_manifest_and_the_report(zoo, tmp_path):
    """Each HVX kernel's VTCM (its packed input, staged rows and tile) and the largest, within the preset's
    256 KiB; the scalar kernels none."""
    from pdc.report import make_report, text_report
    qg, _ = _quantized(zoo, "mobilenet_v2")
    rep = make_report(qg, target="hexagon-v66")
    rows = [r for r in rep["layers"] if "/hvx" in r["path"]]
    assert {r["op"] for r in rows} == {"qconv", "qmatmul"} and all(0 < r["vtcm_bytes"] <= 256 * 1024 for r in rows)
    assert all(r["vtcm_bytes"] == 0 for r in rep["layers"] if "/hvx" not in r["path"])
    assert rep["vtcm_bytes"] == max(r["vtcm_bytes"] for r in rows) and rep["vtcm_limit"] == 256 * 1024
    text = text_report(rep)
    assert f"VTCM:           {rep['vtcm_bytes']:,} B" in text and "VTCM B" in text


def test_a_smaller_vtcm_cuts_layers_into_bands(digits, tmp_path):
    """--vtcm 32K: the same outputs from bands of fewer rows, every kernel within 32 KiB."""
    _, qg, x, _ = digits
    c = compile_details(qg, str(tmp_path / "b"), target="hexagon-v66", vtcm="32K")
    assert 0 < c.manifest["vtcm_bytes"] <= 32 * 1024 and c.manifest["vtcm_limit"] == 32 * 1024
    feeds = [{"x": x[i:i + 1]} for i in range(8)]
    got = run_samples(c.folder, c.manifest, feeds)
    for f, o in zip(feeds, got):
        np.testing.assert_array_equal(_logits(o), _logits(run_graph(qg, f)))


def test_scalar_float_path_when_asked(zoo, tmp_path):
    """--allow-scalar-float: a float model on the scalar core (compiler_rt's float functions, and tanh / erf
    from runtime/hexagon/pdc_libm.c), within the float tolerance of the reference."""
    g = load_model(zoo("lenet"))
    m = pdc.compile(g, target="hexagon-v66", out_dir=str(tmp_path / "b"), allow_scalar_float=True)
    x = {v.name: np.random.default_rng(1).standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    want, got = _logits(run_graph(g, x)), _logits(m.run(x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---- refusals -------------------------------------------------------------------------------------------
def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pdc", *args], capture_output=True, text=True, env=env)


def test_float_model_is_refused_with_the_way_to_quantize(zoo, tmp_path):
    r = _cli("compile", zoo("lenet"), "-o", str(tmp_path / "b"), "--target", "hexagon-v66")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("pdc: error: hexagon-v66: ") and "computes in float" in line
    assert line.endswith("the DSP runs int8: quantize the model (--quantize int8 --calibration data.npz) or pass "
                         "--allow-scalar-float for the slow scalar float path")
    assert not (tmp_path / "b").exists()
    r = _cli("compile", zoo("lenet"), "-o", str(tmp_path / "c"), "--target", "x86", "--allow-scalar-float")
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == (
        "pdc: error: --allow-scalar-float applies to the Hexagon targets (hexagon-*); x86-avx2 computes float"
        if get_target("x86").name == "x86-avx2" else
        "pdc: error: --allow-scalar-float applies to the Hexagon targets (hexagon-*); x86-avx512 computes float")


def test_missing_clang_names_its_package(zoo, tmp_path):
    """Without clang-15 on PATH: one line naming the Debian package, no bundle."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    r = _cli("compile", zoo("lenet"), "-o", str(tmp_path / "b"), "--target", "hexagon-v66", "--allow-scalar-float",
             env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("pdc: error: clang-15 not found: it comes with the Debian package "
                                                 "'clang-15' (apt-get install clang-15)")
    assert not (tmp_path / "b").exists()


def test_missing_qemu_names_its_package(digits, tmp_path, monkeypatch):
    folder = str(tmp_path / "b")
    compile_details(digits[1], folder, target="hexagon-v66")
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    with pytest.raises(PdcError, match=r"^qemu-hexagon not found: it comes with the Debian package 'qemu-user' "
                                       r"\(apt-get install qemu-user\)$"):
        pdc.load(folder).run({"x": digits[2][:1]})


def test_missing_ziglang_names_the_package(monkeypatch):
    import importlib.util
    from pdc.targets import hexagon
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "ziglang" else real(n, *a))
    assert not hexagon.compiler_rt_available()
    assert "missing the Python package ziglang (pip install ziglang: pdc builds the Hexagon compiler runtime with " \
           "it)" in get_target("hexagon-v66").build_problems()


def test_options_the_target_cannot_honour(zoo, tmp_path):
    for args, msg in ((["--threads", "2"], "hexagon-v66: Hexagon bundles run on one hardware thread (--threads 1)"),
                      (["--weights", "bin"], "hexagon-v66: the weights are compiled into the library (the DSP has no "
                                             "file system pdc can assume); --weights bin is not available, use "
                                             "--weights c"),
                      (["--flash", "1M"], "--flash / --ram apply to microcontroller targets (cortex-m*); hexagon-v66 "
                                          "takes --vtcm"),
                      (["--vtcm", "big"], "--vtcm 'big': expected a size such as 512K, 1M or 65536")):
        r = _cli("compile", zoo("lenet"), "-o", str(tmp_path / "b"), "--target", "hexagon-v66", *args)
        assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == f"pdc: error: {msg}", r.stderr
    r = _cli("compile", zoo("lenet"), "-o", str(tmp_path / "b"), "--target", "arm64", "--vtcm", "1M")
    assert r.stderr.strip().splitlines()[-1] == \
        "pdc: error: --vtcm applies to the Hexagon targets (hexagon-*), not to arm64"


def test_manifest_records_the_runner(digits, tmp_path):
    folder = str(tmp_path / "b")
    compile_details(digits[1], folder, target="hexagon-v67")
    m = json.load(open(os.path.join(folder, "manifest.json")))
    assert m["runner"] == {"kind": "qemu-hexagon", "emulator": "qemu-hexagon", "package": "qemu-user",
                           "executable": f"{m['name']}_harness", "cpu": "v67"}
    assert os.path.exists(os.path.join(folder, m["static_library"]))


def test_bench_counts_instructions(digits, tmp_path):
    """pdc bench on a Hexagon bundle: the instructions qemu-hexagon executes for one run (no wall clock)."""
    folder = str(tmp_path / "b")
    compile_details(digits[1], folder, target="hexagon-v66")
    r = _cli("bench", folder)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("pdc bench: model on hexagon-v66 runs under qemu-hexagon here: wall-clock times are not "
                           "the DSP's; instructions per run: ")
    assert int(line.rsplit(" ", 1)[1].replace(",", "")) > 1000
