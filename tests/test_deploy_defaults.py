"""Deployment papercuts (issue 13): the thread default, temporary bundles that go away, pdc.Module
exported, unknown keywords named as the caller wrote them, flags that do not apply to a bundle folder,
help texts naming every model format, the package description, and what `make demo` installs."""
import gc
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import pdc
from pdc.compiler import compile_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def relu_model():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def cli(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "pdc", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def cores() -> int:
    return len(os.sched_getaffinity(0))


# ---- threads: the machine's cores for x86, 1 elsewhere; an explicit count wins ----------------------
def test_python_compile_defaults_to_every_core_for_x86(tmp_path):
    module = pdc.compile(relu_model(), out_dir=str(tmp_path / "a"))
    assert module.manifest["threads"] == cores()
    assert f"PDC_DEFAULT_THREADS={cores()}" in (tmp_path / "a" / "Makefile").read_text()
    assert pdc.compile(relu_model(), out_dir=str(tmp_path / "b"), threads=1).manifest["threads"] == 1


def test_cli_compile_defaults_to_every_core_for_x86(tmp_path):
    onnx.save(relu_model(), str(tmp_path / "m.onnx"))
    for extra, want in (((), cores()), (("--threads", "3"), 3)):
        out = tmp_path / f"b{want}"
        rc, _, err = cli("compile", tmp_path / "m.onnx", "-o", out, "-q", *extra)
        assert rc == 0, err
        assert json.loads((out / "manifest.json").read_text())["threads"] == want


@pytest.mark.parametrize("target", ["arm64", "cortex-m4"])
def test_cross_targets_default_to_one_thread(tmp_path, target):
    out = compile_bundle(relu_model(), str(tmp_path / "b"), target=target, build=False)
    assert json.loads(open(os.path.join(out, "manifest.json")).read())["threads"] == 1


# ---- temporary bundles ---------------------------------------------------------------------------------
def test_temporary_bundle_is_removed_with_its_module():
    module = pdc.compile(relu_model())
    folder = module.folder
    assert os.path.dirname(folder) == tempfile.gettempdir() and os.path.isfile(os.path.join(folder, "manifest.json"))
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.testing.assert_array_equal(module.run({"x": x})["y"], np.maximum(x, 0))
    del module
    gc.collect()
    assert not os.path.exists(folder)


def test_temporary_bundle_is_removed_at_exit_and_out_dir_stays(tmp_path):
    code = ("import sys, onnx, pdc; m = onnx.load(sys.argv[1]); keep = pdc.compile(m); "
            "kept = pdc.compile(m, out_dir=sys.argv[2]); print(keep.folder)")
    onnx.save(relu_model(), str(tmp_path / "m.onnx"))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx"), str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(r.stdout.strip())
    assert (tmp_path / "out" / "manifest.json").is_file() and (tmp_path / "out" / "libmodel.so").is_file()


def test_failed_compile_leaves_no_temporary_folder(monkeypatch):
    made = []  # the folders this compile makes (other tests may make theirs meanwhile)
    mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(mkdtemp(*a, **k)) or made[-1])
    with pytest.raises(pdc.PdcError, match=r"^unknown target 'riscv'"):
        pdc.compile(relu_model(), target="riscv")
    assert made and not any(os.path.exists(f) for f in made)


# ---- the API ---------------------------------------------------------------------------------------
def test_module_is_exported(tmp_path):
    from pdc import Module
    module = pdc.compile(relu_model(), out_dir=str(tmp_path / "b"))
    assert type(module) is Module and isinstance(pdc.load(module.folder), Module)


def test_unknown_keyword_names_pdc_compile():
    with pytest.raises(TypeError) as e:
        pdc.compile(relu_model(), thread=2)
    assert str(e.value) == (
        "pdc.compile() got an unexpected keyword argument 'thread' (did you mean 'threads'?); accepted: model, "
        "target, out_dir, name, threads, shapes, weights, opt_level, build, progress, c_opt, flash, ram, vtcm, "
        "allow_scalar_float, reuse_factor, part, clock_mhz, quantize, calibration, quant_options, precision, "
        "max_tensor_bytes")
    with pytest.raises(TypeError, match=r"^pdc\.compile\(\) got an unexpected keyword argument 'colour'; accepted: "):
        pdc.compile(relu_model(), colour="blue")


# ---- pdc run on a bundle folder: flags that cannot apply are errors ---------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "b"
    return pdc.compile(relu_model(), out_dir=str(folder), name="net").folder


def one_line_error(rc, err) -> str:
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_run_bundle_refuses_another_target(bundle):
    built = json.loads(open(os.path.join(bundle, "manifest.json")).read())["target"]
    for target in ("riscv", "arm64", "reference"):
        assert one_line_error(*cli("run", bundle, "--target", target)[::2]) == (
            f"pdc: error: --target {target} does not apply to a bundle folder: {bundle} was compiled for {built} "
            f"and runs only there; compile the model with --target {target} instead")
    rc, out, err = cli("run", bundle, "--target", built)  # the bundle's own target is fine
    assert rc == 0 and out.startswith("y: float32[2, 3] min "), err


def test_run_bundle_refuses_shape(bundle):
    assert one_line_error(*cli("run", bundle, "--shape", "x=4,3")[::2]) == (
        f"pdc: error: --shape does not apply to a bundle folder: {bundle} was compiled for fixed shapes (x=2,3); "
        f"compile the model again with --shape")


# ---- help texts, package description, make demo ----------------------------------------------------------
FORMATS = ["ONNX model (.onnx)", "PaddlePaddle 3 model (inference.json + .pdiparams)",
           "legacy Paddle model (.pdmodel + .pdiparams)", "pdc IR file (.pdir + .pdir.npz)"]


@pytest.mark.parametrize("command", ["compile", "opt", "inspect", "run", "quantize"])
def test_help_names_every_model_format(command):
    rc, out, _ = cli(command, "--help")
    text = " ".join(out.split())  # argparse wraps lines
    assert rc == 0 and all(f in text for f in FORMATS), text


def test_package_description_says_what_exists():
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    description = re.search(r'^description = "(.*)"$', text, re.M).group(1)
    assert description == ("An ahead-of-time deep-learning compiler: ONNX and PaddlePaddle models to C "
                           "for x86-64, ARM Cortex-A (arm64, armv7), Cortex-M microcontrollers, OpenCL and CUDA "
                           "GPUs and Hexagon DSPs")
    assert not re.search(r"FPGA", description)  # not a target yet
    assert re.search(r'^check = \["onnxruntime>=1\.18"\]$', text, re.M)


def test_make_demo_installs_onnxruntime_for_its_check_step():
    """make demo ends with pdc check (ONNX Runtime): its install step takes the `check` extra."""
    r = subprocess.run(["make", "-n", "demo", "PYTHON=python3"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    install = next(i for i, ln in enumerate(lines) if "pip install" in ln)
    assert lines[install].endswith("-e '.[check]'"), lines[install]
    assert install < next(i for i, ln in enumerate(lines) if ln.startswith("pdc check"))
