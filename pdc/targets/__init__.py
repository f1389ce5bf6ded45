"""Targets pdc can run a model on. Each target is data: a name, what it is, how it runs a graph."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir.errors import PdcError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    run: Callable  # (graph, feeds) -> outputs by name


def _run_reference(graph, feeds):
    from ..ir.interpreter import run_graph
    return run_graph(graph, feeds)


TARGETS = {
    "reference": Target("reference", "pdc's NumPy reference interpreter (the semantic oracle)", _run_reference),
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise PdcError(f"unknown target '{name}' (known targets: {', '.join(TARGETS)})") from None
