"""The tuning database: per layer, the kernel path `pdc tune` measured fastest on this machine,
which pdc compile then takes instead of its heuristic's choice.

A layer is keyed by what its kernel is generated from (layer_key): the target, the thread count,
the op, its input and output types and its attributes, so every model with a layer of that shape
on that target reuses the entry. The database is one JSON file: PDC_TUNING_DB names it (an empty
value turns tuning off), by default tuning.json in pdc's cache folder. Entries map the key to the
path per kernel family ("conv": "band"), optionally "threads": 1 (the layer runs on the calling
thread alone: its work is too small for the pool here), and the measured microseconds of each
choice tried.
"""
from __future__ import annotations

import json
import os
from typing import Optional

DB_ENV = "PDC_TUNING_DB"

_loaded: dict = {}  # path -> (mtime, entries): one read per change of the file


def db_path() -> Optional[str]:
    """The database file pdc compile reads and pdc tune writes; None when tuning is off."""
    if DB_ENV in os.environ:
        return os.environ[DB_ENV] or None
    from .build import _cache_dir
    return os.path.join(_cache_dir(), "tuning.json")


def layer_key(target: str, threads: int, node) -> str:
    """What a layer's kernel is generated from, as one string."""
    types = lambda values: ",".join("_" if v is None else str(v.type) for v in values)  # noqa: E731
    attrs = {k: v for k, v in node.attrs.items() if k != "source_nodes"}
    return (f"{target}|{threads}t|{node.op}({types(node.inputs)})->({types(node.outputs)})|"
            f"{json.dumps(attrs, sort_keys=True, default=str)}")


def entries(path: Optional[str] = None) -> dict:
    """The database's entries ({} where there is no file)."""
    path = path or db_path()
    if not path or not os.path.exists(path):
        return {}
    mtime = os.path.getmtime(path)
    if _loaded.get(path, (None,))[0] != mtime:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            from .ir.errors import PdcError
            raise PdcError(f"{path}: not a pdc tuning database ({e}); delete it or set {DB_ENV}") from None
        _loaded[path] = (mtime, data.get("layers", {}))
    return _loaded[path][1]


def entry_for(key: str) -> dict:
    """The database's entry for the layer: {"paths": {family: path}, "threads": n?, "us": ...}, or {}
    (none, or tuning off)."""
    return entries().get(key) or {}


def record(new: dict, path: Optional[str] = None) -> str:
    """Merges `new` entries (key -> {"paths": ..., "us": ...}) into the database file, written in one
    step (a reader never sees half a file); returns its path."""
    path = path or db_path()
    if not path:
        from .ir.errors import PdcError
        raise PdcError(f"tuning is off ({DB_ENV} is empty): name a database file with --db")
    merged = dict(entries(path))
    merged.update(new)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"format": 1, "layers": merged}, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path
