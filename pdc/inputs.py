"""Model inputs: seeded random feeds and feeds read from .npz / .npy files."""
from __future__ import annotations

import numpy as np

from .ir.errors import PdcError
from .ir.graph import Graph
from .ir.symbolic import upper_shape


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random data for every input; every dim must be static or a size known only at
    run time (at its upper bound)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        shape = upper_shape(v.type.shape, graph.dim_bounds) if v.type.shape is not None else None
        if shape is None or not all(isinstance(d, int) for d in shape):
            raise PdcError(f"input '{v.name}' has type {v.type}: bind its dims with --shape {v.name}=D0,D1,...")
        dt = v.type.dtype
        if dt.is_float:
            data = rng.standard_normal(shape).astype(dt.np)
        elif dt.short == "bool":
            data = rng.random(shape) < 0.5
        else:
            data = rng.integers(0, 10, shape).astype(dt.np)
        feeds[v.name] = data
    return feeds


def load_inputs(path: str, graph: Graph) -> dict[str, np.ndarray]:
    """Feeds from an .npz (keys are input names) or, for a one-input model, a single .npy."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PdcError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as e:
        raise PdcError(f"{path}: not a .npz or .npy file ({e})") from None
    if isinstance(data, np.ndarray):
        if len(graph.inputs) != 1:
            raise PdcError(f"{path}: a single .npy feeds a one-input model; this one takes "
                           f"{[v.name for v in graph.inputs]} (use an .npz keyed by input name)")
        return {graph.inputs[0].name: data}
    with data:
        return {k: data[k] for k in data.files}
