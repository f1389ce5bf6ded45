"""IR files: `m.pdir` holds the text, `m.pdir.npz` beside it the constants, keyed by value name."""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from .errors import PdcError
from .graph import Graph
from .parser import parse_graph
from .printer import print_graph
from .verify import verify_graph


def weights_path(path: str) -> str:
    return path + ".npz"


def _storable(a: np.ndarray) -> np.ndarray:
    # .npy has no bfloat16: store the raw 16-bit words; the IR text says what they are
    return a.view(np.uint16) if a.dtype.name == "bfloat16" else a


def atomic_write(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_ir(graph: Graph, path: str) -> None:
    """Writes the IR text and its constants; either both files are replaced or neither."""
    for node in graph.nodes:
        for key, body in node.attrs.items():
            if isinstance(body, Graph) and body.constants:
                raise PdcError(f"{node.describe()}: subgraph '{key}' holds constants, which an IR file cannot "
                               f"store (its weights are the outer graph's; bodies take constants as inputs)")
    text = print_graph(graph).encode()
    arrays = {c.name: _storable(c.data) for c in graph.constants}
    atomic_write(weights_path(path), lambda f: np.savez(f, **arrays))
    atomic_write(path, lambda f: f.write(text))


def load_ir(path: str) -> Graph:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise PdcError(f"{path}: not an IR text file (not UTF-8)") from None
    wpath = weights_path(path)
    constants = {}
    if os.path.exists(wpath):
        try:
            with np.load(wpath, allow_pickle=False) as z:
                constants = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise PdcError(f"{wpath}: cannot read the weights file ({e})") from None
    graph = parse_graph(text, constants, source=path)
    verify_graph(graph)
    return graph
