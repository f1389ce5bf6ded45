"""Calibration data: one array per model input, named after the input, samples on a new leading axis.

An input of shape [1,3,224,224] takes an array of shape [N,1,3,224,224] (a .npz file, one entry
per input); a single-input model may take a plain .npy array.
"""
from __future__ import annotations

import os
import zipfile
from typing import Union

import numpy as np

from ..ir.errors import PdcError
from ..ir.graph import Graph
from ..ir.types import dims_compatible


def load_calibration(source: Union[str, dict, np.ndarray], graph: Graph) -> list[dict]:
    """The samples as feeds (input name -> array), checked against the graph's inputs."""
    where = source if isinstance(source, str) else "calibration data"
    arrays = _read(source, graph) if isinstance(source, str) else source
    if isinstance(arrays, np.ndarray):
        arrays = _single_input(arrays, graph, where)
    names = [v.name for v in graph.inputs]
    unknown = sorted(set(arrays) - set(names))
    missing = [n for n in names if n not in arrays]
    if unknown or missing:
        wrong = "; ".join(f"{what} {_listed(names)}" for what, names in (("missing", missing), ("unknown", unknown))
                          if names)
        raise PdcError(f"{where}: holds {_listed(sorted(arrays))} but the model's inputs are {_listed(names)} ({wrong})")
    counts = set()
    for v in graph.inputs:
        a = np.asarray(arrays[v.name])
        want = v.type.shape
        if a.ndim != len(want) + 1 or not all(dims_compatible(d, s) for d, s in zip(want, a.shape[1:])):
            raise PdcError(f"{where}: '{v.name}' has shape {list(a.shape)}; expected [N, "
                           f"{', '.join(str(d) for d in want)}] (samples stacked on a new leading axis)")
        if a.dtype != v.type.dtype.np:
            raise PdcError(f"{where}: '{v.name}' has dtype {a.dtype}; the input is {v.type.dtype.name}")
        counts.add(a.shape[0])
    if len(counts) > 1:
        raise PdcError(f"{where}: the inputs hold different numbers of samples {sorted(counts)}")
    n = counts.pop() if counts else 0
    if n == 0:
        raise PdcError(f"{where}: holds no samples (the leading axis is empty)")
    return [{v.name: np.asarray(arrays[v.name][i]) for v in graph.inputs} for i in range(n)]


def _read(path: str, graph: Graph):
    if not os.path.isfile(path):
        raise PdcError(f"{path}: no such calibration file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise PdcError(f"{path}: not a .npy or .npz file ({e})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        return {k: data[k] for k in data.files}


def _single_input(array: np.ndarray, graph: Graph, where: str) -> dict:
    if len(graph.inputs) != 1:
        raise PdcError(f"{where}: a single array, but the model has {len(graph.inputs)} inputs "
                       f"{_listed([v.name for v in graph.inputs])}; give a .npz with one entry per input")
    return {graph.inputs[0].name: array}


def _listed(names) -> str:
    return "[" + ", ".join(repr(n) for n in names) + "]"
