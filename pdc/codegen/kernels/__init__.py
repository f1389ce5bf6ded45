"""Kernel generators: one C function per (fused) node, specialized to its static shapes.

A generator is registered for IR ops with `@kernel("relu", ...)` and receives a KernelContext.
It returns the BODY of the C function; the context supplies the signature

    void <fn>(const T0 *in0, const T1 *in1, ..., T *out0, ...)

with one pointer per node input (NULL for an absent optional input) and output, in node order.
Generators read shapes from `ctx.inputs[i]` / `ctx.outputs[i]` (TensorTypes, all static), the
node's attributes from `ctx.attrs`, and the data of constant inputs from `ctx.const(i)` (to pack
weights at compile time with `ctx.add_weight(array)`, which returns a C expression for a pointer).
Shared static helpers (an erf, a float16 conversion) go through `ctx.helper(name, code)`.
Importing this package registers every generator (one module per op family).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

GENERATORS: dict[str, Callable] = {}


def kernel(*ops: str):
    def wrap(fn):
        for op in ops:
            if op in GENERATORS:
                raise ValueError(f"kernel for '{op}' registered twice: {GENERATORS[op].__module__} and {fn.__module__}")
            GENERATORS[op] = fn
        return fn
    return wrap


_loaded = False


def generators() -> dict[str, Callable]:
    global _loaded
    if not _loaded:
        _loaded = True
        for m in pkgutil.iter_modules(__path__):
            if not m.name.startswith("_"):
                importlib.import_module(f"{__name__}.{m.name}")
    return GENERATORS
