"""Cortex-M presets: bare-metal bundles (weights in flash, one static arena, no malloc) run under
qemu-system-arm with a semihosting harness.

LeNet (random weights) and a CNN trained on sklearn's 8x8 digits (tests/zoo_models/arm_models.py)
give the x86 build's outputs on Cortex-M4 (FPU, plain C kernels) and Cortex-M55 (Helium/MVE
kernels), and ONNX Runtime's (an oracle that is not pdc's code); the digits model's accuracy on the
held-back digits equals the x86 accuracy.
pdc compile reports flash and RAM and refuses what does not fit. Needs gcc-arm-none-eabi,
libnewlib-arm-none-eabi and qemu-system-arm (.ci/run installs them); without them the tests skip,
except in CI.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pdc
import zoo as zoo_mod
from pdc.ir.errors import PdcError
from pdc.targets import get_target
from pdc.targets.cortex_m import CORTEX_M4, GCC, QEMU, SIZE, load_manifest, parse_size, run_samples
from test_arm import ModelBuilder, assert_arm_kernels_used, compare, nn_model, run_onnxruntime
from tolerances import KERNEL, assert_zoo_close
from zoo import run_onnxruntime as run_model_onnxruntime


def require_mcu_tools() -> None:
    missing = [f"{t.program} (Debian package {t.package})" for t in (GCC, SIZE, QEMU) if not t.available()]
    if missing:
        msg = "missing: " + ", ".join(missing) + " (see .ci/run)"
        if os.environ.get("CI") or os.environ.get("PDC_ARM_REQUIRED"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


# ---- the models ------------------------------------------------------------------------------------
class _ArmSpec(zoo_mod.ZooSpec):
    """A zoo entry built by tests/zoo_models/arm_models.py (same protocol as the Paddle models)."""

    @property
    def generator(self) -> Path:
        return zoo_mod.GENERATORS / "arm_models.py"


ARM_SPECS = {
    "lenet": _ArmSpec("lenet", "paddle", "lenet", {"input_shape": [1, 1, 28, 28], "opset": 13, "seed": 0},
                      "paddle.vision.models.LeNet, random weights"),
    "digits_cnn": _ArmSpec("digits_cnn", "paddle", "digits_cnn",
                           {"input_shape": [1, 1, 8, 8], "opset": 13, "seed": 0, "epochs": 15, "c1": 8, "c2": 16},
                           "2 conv + 1 linear CNN trained on sklearn's load_digits"),
}


def arm_model(name: str) -> str:
    """The model.onnx of an arm_models.py entry: from the zoo once it is registered there, else
    generated into the zoo cache with the zoo's own machinery."""
    if name in zoo_mod.SPECS_BY_NAME:
        return zoo_mod.zoo_model(name)
    spec = ARM_SPECS[name]
    if not zoo_mod._ready(spec):
        fd = zoo_mod._lock(spec, blocking=True)
        try:
            if not zoo_mod._ready(spec):
                errors = zoo_mod._generate_paddle([spec])
                if errors:
                    raise errors[name]
        finally:
            zoo_mod._unlock(fd)
    return str(zoo_mod.entry_dir(spec) / zoo_mod.MODEL_FILE)


@pytest.fixture(scope="session")
def arm_zoo():
    def get(name: str) -> str:
        try:
            return arm_model(name)
        except zoo_mod.ZooUnavailable as e:
            if os.environ.get("CI") or os.environ.get("PDC_ZOO_REQUIRED"):
                pytest.fail(str(e), pytrace=False)
            pytest.skip(str(e))
    return get


_builds: dict = {}


def build(model_path: str, target: str, tmp_path_factory) -> tuple[pdc.Module, Path]:
    key = (model_path, target)
    if key not in _builds:
        folder = tmp_path_factory.mktemp(f"{Path(model_path).parent.name}-{target}")
        _builds[key] = (pdc.compile(model_path, target=target, out_dir=str(folder)), folder)
    return _builds[key]


def first_output(outputs: dict) -> np.ndarray:
    return next(iter(outputs.values()))


# ---- presets ----------------------------------------------------------------------------------------
def test_presets_and_memory_overrides():
    names = {t: get_target(t) for t in ("cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55")}
    boards = {t: m.board.machine for t, m in names.items()}
    assert boards == {"cortex-m3": "mps2-an385", "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500",
                      "cortex-m55": "mps3-an547"}
    assert names["cortex-m55"].simd == "mve" and names["cortex-m4"].simd == "none"
    assert all(m.flash > 0 and m.ram > 0 and m.limits.max_threads == 1 for m in names.values())
    big = CORTEX_M4.with_memory("1M", "256K")
    assert (big.flash, big.ram) == (1 << 20, 256 << 10) and big.name == "cortex-m4"
    assert parse_size(65536, "ram") == 65536 and parse_size("512k", "flash") == 512 << 10
    with pytest.raises(PdcError, match=r"--flash 'lots': expected a size"):
        CORTEX_M4.with_memory("lots")
    with pytest.raises(PdcError, match="microcontroller targets"):
        pdc.compile(ModelBuilder("m").model(), target="arm64", flash="1M")


def test_refuses_what_a_microcontroller_cannot_do(tmp_path):
    b = ModelBuilder("e")
    b.output(b.node("Relu", [b.input("x", (1, 4))]))
    with pytest.raises(PdcError, match="weights go into flash"):
        pdc.compile(b.model(), target="cortex-m4", out_dir=str(tmp_path / "a"), weights="bin")
    with pytest.raises(PdcError, match="single-threaded"):
        pdc.compile(b.model(), target="cortex-m4", out_dir=str(tmp_path / "b"), threads=2)


# ---- the kernels on microcontrollers ----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["cortex-m55", "cortex-m3"])
def test_nn_ops_match_onnxruntime(tmp_path, target):
    """The ARM kernels with Helium (M55) and in plain soft-float C (M3), weights read in place."""
    require_mcu_tools()
    b = nn_model(small=True)
    model = b.model()
    folder = tmp_path / "b"
    mod = pdc.compile(model, target=target, out_dir=str(folder))
    assert_arm_kernels_used(folder)
    compare(mod.run(b.feeds), run_onnxruntime(model, b.feeds))


# ---- LeNet and the digits CNN ----------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m55"])
def test_lenet_gives_the_x86_outputs(arm_zoo, tmp_path_factory, target):
    require_mcu_tools()
    path = arm_zoo("lenet")
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 1, 28, 28)).astype(np.float32)} for _ in range(3)]
    x86, _ = build(path, "x86", tmp_path_factory)
    mcu, folder = build(path, target, tmp_path_factory)
    assert_arm_kernels_used(folder)
    outs, stats = run_samples(str(folder), load_manifest(str(folder)), samples)
    for k, (feeds, got) in enumerate(zip(samples, outs)):
        # the same kernels' arithmetic on another machine (Helium's vector sums in another order)
        KERNEL.check(first_output(got), first_output(x86.run(feeds)), f"sample {k} vs x86")
        assert_zoo_close(first_output(got), run_model_onnxruntime(path, feeds)[0][1], f"sample {k} vs onnxruntime")
    KERNEL.check(first_output(mcu.run(samples[0])), first_output(x86.run(samples[0])), "Module.run vs x86")
    m = load_manifest(str(folder))
    assert stats["stack_used"] and stats["stack_used"] <= m["memory"]["stack_estimate"]


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m55"])
def test_digits_accuracy_equals_x86(arm_zoo, tmp_path_factory, target, record_property):
    """All held-back digits in one qemu run: the same logits as x86, hence the same accuracy."""
    require_mcu_tools()
    path = arm_zoo("digits_cnn")
    data = np.load(Path(path).parent / "digits_test.npz")
    x, y = data["x"], data["y"]
    x86, _ = build(path, "x86", tmp_path_factory)
    _, folder = build(path, target, tmp_path_factory)
    want = np.stack([first_output(x86.run({"x": x[i:i + 1]}))[0] for i in range(len(x))])
    outs, _ = run_samples(str(folder), load_manifest(str(folder)), [{"x": x[i:i + 1]} for i in range(len(x))])
    got = np.stack([first_output(o)[0] for o in outs])
    KERNEL.check(got, want, "vs x86")
    reference = np.stack([run_model_onnxruntime(path, {"x": x[i:i + 1]})[0][1][0] for i in range(len(x))])
    assert_zoo_close(got, reference, "vs onnxruntime")
    acc_x86, acc_mcu = float((want.argmax(1) == y).mean()), float((got.argmax(1) == y).mean())
    record_property(f"digits_accuracy_{target}", acc_mcu)
    print(f"\ndigits CNN on {target}: accuracy {acc_mcu:.4f} (x86 {acc_x86:.4f}, Paddle {float(data['paddle_accuracy']):.4f}) "
          f"on {len(y)} held-back digits")
    assert acc_mcu == acc_x86 and acc_x86 > 0.9


# ---- memory ---------------------------------------------------------------------------------------------
def _symbols(elf: Path) -> dict[str, tuple[int, int, str]]:
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16), parts[2])
        elif len(parts) == 3 and parts[0] not in "Uw":  # no size (a symbol defined in assembly)
            syms[parts[2]] = (int(parts[0], 16), 0, parts[1])
    return syms


def test_flash_and_ram_report_weights_in_flash_no_heap(arm_zoo, tmp_path_factory, record_property):
    require_mcu_tools()
    path = arm_zoo("lenet")
    _, folder = build(path, "cortex-m4", tmp_path_factory)
    m = load_manifest(str(folder))
    mem = m["memory"]
    assert m["flash_bytes"] == mem["weights"] + mem["model_code"] + mem["runtime_code"] + mem["startup_harness_libc"]
    assert m["ram_bytes"] == mem["arena"] + mem["stack_estimate"] and mem["arena"] == m["arena_bytes"]
    assert m["flash_bytes"] <= m["flash_limit"] == CORTEX_M4.flash and mem["image_ram"] <= m["ram_limit"]
    assert mem["weights"] == m["weight_bytes"] > 200_000 and mem["weights"] < m["flash_bytes"] < mem["weights"] * 1.2
    # arm-none-eabi-size of the runtime object: the single-threaded runtime is tiny
    assert 0 < mem["runtime_code"] < 2048
    for k, v in {"flash": m["flash_bytes"], "ram": m["ram_bytes"], "runtime_code": mem["runtime_code"]}.items():
        record_property(f"lenet_cortex_m4_{k}", v)
    # the weights are in flash (.rodata), the arena is in RAM (.bss); no heap, no malloc
    syms = _symbols(folder / "model.elf")
    board = CORTEX_M4.board
    addr, _, kind = syms["model_weights"]
    assert kind in "rRtT" and board.flash_origin <= addr < board.flash_origin + CORTEX_M4.flash
    addr, size, kind = syms["model_arena"]
    assert kind in "bB" and board.ram_origin <= addr and size >= m["arena_bytes"]
    assert not {"malloc", "_malloc_r", "_sbrk", "free", "pthread_create"} & set(syms)
    # the linker script puts .rodata in FLASH
    assert re.search(r"\.text : \{[^}]*\*\(\.rodata\*\)[^}]*\} > FLASH", (folder / "link.ld").read_text())


def test_cli_prints_flash_and_ram_and_refuses_a_model_that_does_not_fit(arm_zoo, tmp_path):
    require_mcu_tools()
    path = arm_zoo("lenet")
    cmd = [sys.executable, "-m", "pdc.cli", "compile", path, "--target", "cortex-m3", "-o"]
    r = subprocess.run([*cmd, str(tmp_path / "a")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"cortex-m3: flash [\d,]+ bytes .* RAM [\d,]+ bytes", r.stderr)
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["flash_bytes"] > 0 and m["ram_bytes"] > 0
    # LeNet's 247 KB of weights in 200 KiB of flash; its arena in 16 KiB of RAM
    for kw, which in ((dict(flash="200K"), "flash"), (dict(ram="16K"), "ram")):
        with pytest.raises(PdcError, match=rf"does not fit cortex-m3 .* --{which} SIZE"):
            pdc.compile(path, target="cortex-m3", out_dir=str(tmp_path / which), **kw)
        assert not (tmp_path / which).exists()
    # the image itself too big after linking (weights fit, code does not)
    w = m["weight_bytes"]
    with pytest.raises(PdcError, match=r"does not fit .*it needs [\d,]+ bytes of flash"):
        pdc.compile(path, target="cortex-m3", out_dir=str(tmp_path / "c"), flash=w + 1024)


def test_run_reports_a_missing_qemu(arm_zoo, tmp_path_factory, monkeypatch, tmp_path):
    require_mcu_tools()
    mod, _ = build(arm_zoo("digits_cnn"), "cortex-m4", tmp_path_factory)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PdcError, match=r"qemu-system-arm not found: .*'qemu-system-arm'"):
        mod.run({"x": np.zeros((1, 1, 8, 8), np.float32)})


def test_a_part_bigger_than_the_emulated_board_compiles_but_does_not_run(arm_zoo, tmp_path):
    require_mcu_tools()
    mod = pdc.compile(arm_zoo("digits_cnn"), target="cortex-m4", out_dir=str(tmp_path / "b"), ram="8M")
    assert load_manifest(str(tmp_path / "b"))["ram_limit"] == 8 << 20
    assert 'LENGTH = 8388608' in (tmp_path / "b" / "link.ld").read_text()
    with pytest.raises(PdcError, match=r"qemu's mps2-an386 has 4 MiB: the bundle is for the real part"):
        mod.run({"x": np.zeros((1, 1, 8, 8), np.float32)})
