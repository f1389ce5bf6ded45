"""Targets pdc compiles for, as data: a name, what it means, how its code is built and run."""
from __future__ import annotations

from ..ir.errors import PdcError
from .x86 import X86_AVX2, X86_AVX512, detect_host


def _targets() -> dict:
    host = detect_host()
    return {
        "x86": (host, f"this host's x86-64 ({host.name.split('-')[1].upper()} detected)"),
        "x86-avx2": (X86_AVX2, X86_AVX2.description),
        "x86-avx512": (X86_AVX512, X86_AVX512.description),
        "reference": (None, "pdc's NumPy reference interpreter (the semantic oracle; no code generated)"),
    }


def known_targets() -> dict[str, str]:
    return {k: desc for k, (_, desc) in _targets().items()}


def get_target(name: str):
    """The target object for a name (None for 'reference'); unknown names are a one-line error."""
    targets = _targets()
    if name not in targets:
        raise PdcError(f"unknown target '{name}' (known targets: {', '.join(targets)})")
    return targets[name][0]
