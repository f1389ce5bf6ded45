"""Targets pdc compiles for, as data: a name, what it means, how its code is built and run."""
from __future__ import annotations

from ..ir.errors import PdcError
from .arm import CORTEX_A
from .cortex_m import CORTEX_M
from .cuda import CUDA_PRESETS, detect_cuda
from .fpga import FPGA
from .hexagon import HEXAGON
from .opencl import OPENCL_TARGETS
from .x86 import X86_AVX2, X86_AVX512, detect_host


def _targets() -> dict:
    host = detect_host()
    return {
        "x86": (host, f"this host's x86-64 ({host.name.split('-')[1].upper()} detected)"),
        "x86-avx2": (X86_AVX2, X86_AVX2.description),
        "x86-avx512": (X86_AVX512, X86_AVX512.description),
        "reference": (None, "pdc's NumPy reference interpreter (the semantic oracle; no code generated)"),
        **_arm_targets(),
        **{t.name: (t, t.description) for t in OPENCL_TARGETS},
        **{t.name: (t, t.description) for t in (detect_cuda(), *CUDA_PRESETS)},
        **{t.name: (t, t.description) for t in HEXAGON},
        **{t.name: (t, t.description) for t in FPGA},
    }


def _arm_targets() -> dict:
    """ARM Cortex-A (arm64 = arm = aarch64, armv7) and Cortex-M presets, with their aliases."""
    out = {}
    for t in (*CORTEX_A, *CORTEX_M):
        out[t.name] = (t, t.description)
        for alias in t.aliases:
            out[alias] = (t, f"= {t.name}")
    return out


def bundle_runner(folder: str, manifest: dict):
    """feeds -> outputs for a cross-compiled bundle, by the manifest's runner (an emulator)."""
    from .arm import CortexATarget
    from .cortex_m import CortexMTarget
    from .fpga import FpgaTarget
    from .hexagon import HexagonTarget
    runners = {t.runner_kind: t.run_bundle for t in (CortexATarget, CortexMTarget, HexagonTarget, FpgaTarget)}
    kind = manifest["runner"].get("kind")
    if kind not in runners:
        raise PdcError(f"{folder}: unknown runner '{kind}' in manifest.json (built by a newer pdc?)")
    return lambda feeds: runners[kind](folder, manifest, feeds)


def code_targets() -> dict:
    """name -> Target for every code target (presets, without aliases)."""
    return {name: t for name, (t, _) in _targets().items() if t is not None and t.name == name}


def known_targets() -> dict[str, str]:
    return {k: desc for k, (_, desc) in _targets().items()}


def get_target(name: str):
    """The target object for a name (None for 'reference'); unknown names are a one-line error."""
    targets = _targets()
    if name not in targets:
        raise PdcError(f"unknown target '{name}' (known targets: {', '.join(targets)})")
    return targets[name][0]
