"""Kernel paths: which implementation a generator takes for a layer, and a debug override.

Most op families have several implementations ("paths"), each chosen from the layer's static
shape by a heuristic (the small-output transposed GEMM for a 7x7 conv, the flat depthwise kernel
for stride 1, ...). Each path must compute every layer it accepts, not only the ones its
heuristic picks, so tests force it:

    PDC_FORCE_PATH="conv=im2col,pool=generic" pdc compile model.onnx ...

makes every conv take the im2col path and every pooling layer the generic one wherever that path
can compute the layer at all: size thresholds and cost heuristics are ignored, while the hard
limits of a path (its fixed buffers, the layer kinds it implements) still hold. A layer the forced
path cannot compute takes the family's general path. A generator records the path it took as the
first line of the kernel body (`/* path: conv/im2col */`), which is how tests see what ran.

The tuning database (pdc/tuning.py) names paths per layer the same way: while a layer's kernel is
generated, layer_paths() makes its entries act as forced ones (PDC_FORCE_PATH still wins).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Optional

from ...ir.errors import PdcError

FORCE_ENV = "PDC_FORCE_PATH"

# family -> its paths, the general one (taken when nothing else applies) first
FAMILIES: dict[str, tuple[str, ...]] = {}


def declare(family: str, *paths: str) -> None:
    """Declares a family's paths (idempotent), the general one first."""
    FAMILIES[family] = tuple(dict.fromkeys(FAMILIES.get(family, ()) + paths))


def forced_paths() -> dict[str, str]:
    """The overrides of PDC_FORCE_PATH, checked against the declared paths."""
    spec = os.environ.get(FORCE_ENV, "").strip()
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        family, sep, path = item.partition("=")
        family, path = family.strip(), path.strip()
        if not sep or family not in FAMILIES or path not in FAMILIES[family]:
            known = "; ".join(f"{f}={'|'.join(p)}" for f, p in sorted(FAMILIES.items()))
            raise PdcError(f"{FORCE_ENV}: '{item}' is not FAMILY=PATH of a known kernel path ({known})")
        out[family] = path
    return out


_LAYER: ContextVar[dict] = ContextVar("pdc_layer_paths", default={})


@contextmanager
def layer_paths(paths: dict):
    """Within the block, forced(family) answers paths[family] where PDC_FORCE_PATH names none."""
    token = _LAYER.set(paths)
    try:
        yield
    finally:
        _LAYER.reset(token)


def forced(family: str) -> Optional[str]:
    return forced_paths().get(family) or _LAYER.get().get(family)


def take(family: str, path: str, heuristic: bool = True) -> bool:
    """Whether to try `path` for a layer its hard limits allow: the heuristic's answer, unless
    PDC_FORCE_PATH names a path of this family, in which case only that one is tried."""
    f = forced(family)
    return heuristic if f is None else f == path


def mark(family: str, path: str, body: Optional[str]) -> Optional[str]:
    """The kernel body with the path it took on its first line (None stays None: path not taken)."""
    if body is None:
        return None
    assert path in FAMILIES.get(family, ()), f"undeclared kernel path {family}/{path}"
    return f"    /* path: {family}/{path} */\n{body}"
