"""pdc.Module: a compiled bundle loaded into this process (host targets, through ctypes)."""
from __future__ import annotations

import ctypes
import json
import os
import threading
from dataclasses import dataclass

import numpy as np

from .ir import dtypes
from .ir.errors import PdcError
from .ir.symbolic import concrete_shape, upper_shape


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple

    def __repr__(self) -> str:
        return f"{self.name}: {self.dtype}{list(self.shape)}"


class ArenaPool:
    """The scratch arenas of one module: each run borrows one for its whole duration, so runs from
    several threads never share one. Arenas are made on demand (as many as runs ever overlapped)
    and reused after. A free arena is kept with its aligned address (reading an array's address
    costs a run more than its bookkeeping)."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.made = 0  # arenas made so far: the most runs that overlapped
        self._free: list[tuple[np.ndarray, int]] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[np.ndarray, int]:
        """An arena (a zeroed buffer whose part at the 64-byte aligned address holds nbytes) and that
        address, which no other run uses until it is given back."""
        with self._lock:
            if self._free:
                return self._free.pop()
            self.made += 1
        buffer = np.zeros(self.nbytes + 64, np.uint8)
        return buffer, buffer.ctypes.data + (-buffer.ctypes.data) % 64

    def give_back(self, arena: tuple[np.ndarray, int]) -> None:
        with self._lock:
            self._free.append(arena)


class Module:
    """A compiled model. `run({name: array}) -> {name: array}`; safe to call from several threads at
    once (each run borrows its own arena; the bundle's thread pool serves one run at a time, the
    others run on their calling threads)."""

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        path = os.path.join(self.folder, "manifest.json")
        try:
            with open(path) as f:
                self.manifest = json.load(f)
        except FileNotFoundError:
            raise PdcError(f"{folder}: not a pdc bundle (no manifest.json)") from None
        except json.JSONDecodeError as e:
            raise PdcError(f"{path}: corrupt manifest ({e})") from None
        m = self.manifest
        spec = lambda d: TensorSpec(d["name"], dtypes.from_name(d["dtype"]).np, tuple(d["shape"]))  # noqa: E731
        self.inputs = [spec(d) for d in m["inputs"]]
        self.outputs = [spec(d) for d in m["outputs"]]  # the buffers a run fills
        # bounded outputs (their length known at run time): name -> (length output, axis)
        self._measured = {d["name"]: (d["length"], d["length_axis"]) for d in m["outputs"] if "length" in d}
        self._lengths = {length for length, _ in self._measured.values()}
        # sizes known only at run time: symbol -> (min, max), in the order NAME_run_dims takes them
        self.dims = {d["name"]: (d["min"], d["max"]) for d in m.get("dims", [])}
        self.name = m["name"]
        self._emulated = None
        if m.get("runner"):  # cross-compiled: run through the bundle's harness under an emulator
            from .targets import bundle_runner
            self._emulated = bundle_runner(self.folder, m)
            return
        if not m.get("library"):
            raise PdcError(f"{folder}: built for {m['target']}, which this machine cannot load in-process")
        lib_path = os.path.join(self.folder, m["library"])
        if not os.path.exists(lib_path):
            raise PdcError(f"{folder}: {m['library']} is missing (rebuild with pdc compile)")
        self._lib = ctypes.CDLL(lib_path)
        self._run = getattr(self._lib, f"{self.name}_run")
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        if self.dims:
            self._run_dims = getattr(self._lib, f"{self.name}_run_dims")
            self._run_dims.restype = ctypes.c_int
            self._run_dims.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64),
                                       ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        init = getattr(self._lib, f"{self.name}_init")
        init.restype = ctypes.c_int
        init.argtypes = [ctypes.c_char_p, ctypes.c_int]
        weights = os.path.join(self.folder, f"{self.name}_weights.bin").encode()
        status = init(weights, m.get("threads", 1))
        if status != 0:
            why = getattr(self._lib, f"{self.name}_device_error", None)  # a device target's reason
            if why is not None:
                why.restype = ctypes.c_char_p
                raise PdcError(f"{folder}: {why().decode(errors='replace')}")
            raise PdcError(f"{folder}: init failed with status {status}")
        self._status_string = self._lib.pdc_status_string
        self._status_string.restype, self._status_string.argtypes = ctypes.c_char_p, [ctypes.c_int]
        self._arenas = ArenaPool(m["arena_bytes"])
        self._ins_type = ctypes.c_void_p * max(len(self.inputs), 1)
        self._outs_type = ctypes.c_void_p * max(len(self.outputs), 1)

    def _check(self, feeds: dict) -> tuple[list[np.ndarray], dict]:
        """The input arrays in order, and the sizes of the dims known only at run time they give."""
        if not isinstance(feeds, dict):
            raise ValueError(f"run() takes a dict of input name -> array; inputs: {self.inputs}")
        unknown = set(feeds) - {s.name for s in self.inputs}
        if unknown:
            raise ValueError(f"unknown input(s) {sorted(unknown)}; expected {[s.name for s in self.inputs]}")
        arrays, sizes = [], {}
        for s in self.inputs:
            if s.name not in feeds:
                raise ValueError(f"missing input '{s.name}' ({s.dtype}{list(s.shape)})")
            a = np.asarray(feeds[s.name])
            if a.dtype != s.dtype:
                raise ValueError(f"input '{s.name}' has dtype {a.dtype}, expected {s.dtype}")
            if len(a.shape) != len(s.shape) or any(isinstance(d, int) and d != n for d, n in zip(s.shape, a.shape)):
                raise ValueError(f"input '{s.name}' has shape {list(a.shape)}, expected {self._shape_text(s)}")
            for d, n in zip(s.shape, a.shape):
                if isinstance(d, str):
                    lo, hi = self.dims[d]
                    if not lo <= n <= hi:
                        raise ValueError(f"input '{s.name}' has shape {list(a.shape)}: {d} = {n} is outside "
                                         f"{lo}..{hi}, the range compiled for")
                    if sizes.setdefault(d, n) != n:
                        raise ValueError(f"input '{s.name}' has shape {list(a.shape)}: {d} = {n}, but another "
                                         f"input has {d} = {sizes[d]}")
            arrays.append(np.ascontiguousarray(a))
        return arrays, sizes

    def _shape_text(self, s: TensorSpec) -> str:
        return "[" + ", ".join(f"{d}={self.dims[d][0]}..{self.dims[d][1]}" if isinstance(d, str) else str(d)
                               for d in s.shape) + "]"

    def run(self, feeds: dict) -> dict[str, np.ndarray]:
        arrays, sizes = self._check(feeds)
        if self._emulated is not None:
            return self._trimmed(self._emulated({s.name: a for s, a in zip(self.inputs, arrays)}))
        outs = [np.empty(concrete_shape(s.shape, sizes), s.dtype) for s in self.outputs]
        ins_p = self._ins_type(*[a.ctypes.data for a in arrays])
        outs_p = self._outs_type(*[o.ctypes.data for o in outs])
        arena = self._arenas.take()
        try:  # ctypes releases the GIL: runs overlap here
            if self.dims:
                dims = (ctypes.c_int64 * len(self.dims))(*(sizes[d] for d in self.dims))
                status = self._run_dims(arena[1], dims, ins_p, outs_p)
            else:
                status = self._run(arena[1], ins_p, outs_p)
        finally:
            self._arenas.give_back(arena)
        if status != 0:
            why = self._status_string(status).decode()
            device = getattr(self._lib, f"{self.name}_device_error", None)
            if device is not None:
                device.restype = ctypes.c_char_p
                why = f"{why}: {device().decode(errors='replace')}"
            raise PdcError(f"{self.name}_run failed: {why} (status {status})")
        return self._trimmed({s.name: o for s, o in zip(self.outputs, outs)})

    def _trimmed(self, results: dict) -> dict:
        """The model's outputs: each bounded one cut to its length, the lengths themselves left out."""
        if not self._measured:
            return results
        out = {}
        for name, a in results.items():
            if name in self._measured:
                length, axis = self._measured[name]
                a = a[(slice(None),) * axis + (slice(0, int(results[length])),)]
            if name not in self._lengths:
                out[name] = a
        return out

    def signature(self):
        """A node-less IR graph with this bundle's inputs and outputs (to make or check feeds); sizes
        known only at run time at their upper bounds, where NAME_run runs."""
        from .ir.graph import Graph, Value
        from .ir.types import TensorType
        def io(specs):
            return [Value(s.name, TensorType(dtypes.from_numpy(s.dtype), upper_shape(s.shape, self.dims)))
                    for s in specs]
        return Graph(self.name, io(self.inputs), io([s for s in self.outputs if s.name not in self._lengths]))

    def __repr__(self) -> str:
        return f"<pdc.Module {self.name} ({self.manifest['target']}) inputs={self.inputs} outputs={self.outputs}>"


def load(folder: str) -> Module:
    return Module(folder)
