"""The targets kernel properties run on, and what each needs from this machine.

x86-avx512 runs where the CPU has AVX-512 and skips elsewhere (CI's machines too: hardware);
x86-avx2 everywhere on x86-64.
The ARM targets run under qemu: fewer examples (an emulated run costs seconds), batched one
bundle per draw. Without a toolchain a test skips, except in CI (CI=1), where it fails: CI
installs every toolchain (`make toolchains`).
"""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import require_cpu

# target -> (programs it needs, Debian packages, examples scale: 1 = the x86 count)
TARGETS = {
    "x86-avx512": ((), (), 1.0),
    "x86-avx2": ((), (), 1.0),
    "arm64": (("aarch64-linux-gnu-gcc", "qemu-aarch64"), ("gcc-aarch64-linux-gnu", "qemu-user"), 0.5),
    "armv7": (("arm-linux-gnueabihf-gcc", "qemu-arm"), ("gcc-arm-linux-gnueabihf", "qemu-user"), 0.4),
    "cortex-m4": (("arm-none-eabi-gcc", "qemu-system-arm"), ("gcc-arm-none-eabi", "qemu-system-arm"), 0.4),
    "hexagon-v66": (("clang-15", "ld.lld-15", "qemu-hexagon"), ("clang-15", "lld-15", "qemu-user"), 0.5),
}
# Cortex-M bundles link weights into flash and the arena into RAM: give the draw room (the emulated
# boards have more than the preset's part)
COMPILE_OPTIONS = {"cortex-m4": dict(flash="3M", ram="3M", threads=1), "hexagon-v66": dict(threads=1)}


def require(target: str) -> None:
    """Skips (fails in CI) when this machine cannot build and run target."""
    programs, packages, _ = TARGETS[target]
    require_cpu(target)
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        msg = f"{target}: needs {', '.join(missing)}" + (f" (Debian: {', '.join(packages)})" if packages else "")
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def examples(target: str, x86_count: int) -> int:
    return max(2, round(x86_count * TARGETS[target][2]))


def options(target: str) -> dict:
    return dict(COMPILE_OPTIONS.get(target, {}))
