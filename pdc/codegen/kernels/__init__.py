"""Kernel generators: one C function per (fused) node, specialized to its static shapes.

A generator is registered for IR ops with `@kernel("relu", ...)` and receives a KernelContext.
It returns the BODY of the C function; the context supplies the signature

    void <fn>(const T0 *in0, const T1 *in1, ..., T *out0, ...)

with one pointer per node input (NULL for an absent optional input) and output, in node order.
Generators read shapes from `ctx.inputs[i]` / `ctx.outputs[i]` (TensorTypes, all static), the
node's attributes from `ctx.attrs`, and the data of constant inputs from `ctx.const(i)` (to pack
weights at compile time with `ctx.add_weight(array)`, which returns a C expression for a pointer).
Shared static helpers (an erf, a float16 conversion) go through `ctx.helper(name, code)`; what
the target allows (threads, vector ISA, tiles) comes from `ctx.config` (a KernelConfig).

Generators belong to a kernel family: "portable" (plain C, any target) or a target family's
native kernels ("x86", "arm", each in its own folder). A target lists its families in fallback
order (Target.kernel_families); the first family with a generator that does not decline (return
None) renders the node. Importing this package's modules registers every generator.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Callable, Optional

from ...ir.errors import UnsupportedError
from ...ir.symbolic import RuntimeSizeError

PORTABLE = "portable"  # plain C generators every target can compile; the last family of every target
# (op, family) -> generator. A family's generator returns None for a node it does not cover (a
# dtype, a shape it has no fast path for), and the next family in the target's order takes it.
REGISTRY: dict[tuple[str, str], Callable] = {}


def kernel(*ops: str, family: str = PORTABLE):
    """Registers a generator for IR ops in a kernel family (a target's kernel_families name it)."""
    def wrap(fn):
        for op in ops:
            if (op, family) in REGISTRY:
                raise ValueError(f"{family} kernel for '{op}' registered twice: "
                                 f"{REGISTRY[op, family].__module__} and {fn.__module__}")
            REGISTRY[op, family] = fn
        return fn
    return wrap


_loaded = False


def load_all() -> dict[tuple[str, str], Callable]:
    """Imports every generator module (each registers its generators and declares its paths)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for m in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
            if not m.name.rsplit(".", 1)[1].startswith("_"):
                importlib.import_module(m.name)
    return REGISTRY


def generators(family: str = PORTABLE) -> dict[str, Callable]:
    """op -> generator of one family."""
    return {op: fn for (op, fam), fn in load_all().items() if fam == family}


def supports(op: str, families: tuple) -> bool:
    return native_family(op, families) is not None


def native_family(op: str, families: tuple) -> Optional[str]:
    """The first family in `families` with a generator for op, or None."""
    return next((fam for fam in families if (op, fam) in load_all()), None)


def coverage(families: tuple) -> dict[str, list[str]]:
    """family -> the ops whose first generator (in the target's order) is that family's."""
    out: dict[str, list[str]] = {fam: [] for fam in families}
    for op in sorted({op for op, _ in load_all()}):
        fam = native_family(op, families)
        if fam is not None:
            out[fam].append(op)
    return out


def unnamed(body: str, params: list[str]) -> list[str]:
    """The parameters a kernel body never names (to mark used with `(void)p;`)."""
    return [p for p in params if not re.search(rf"\b{p}\b", body)]


def generate(ctx, families: tuple) -> str:
    """The C body for ctx's node from the first family (in the target's order) that takes it."""
    registry = load_all()
    refused = None  # why the first family refused sizes known only at run time
    for fam in families:
        fn = registry.get((ctx.node.op, fam))
        if fn is None:
            continue
        try:
            body = fn(ctx)
        except (RuntimeSizeError, TypeError) as e:
            if not ctx.runtime_sizes:
                raise
            refused = refused or e  # a family that needs a concrete size leaves the node to the next one
            ctx.scratch_bytes = ctx.vtcm_bytes = 0
            ctx.reports_status = False
            continue
        if body is None:
            continue
        ctx.family = fam  # which family took it: pdc report's op coverage
        if fam != PORTABLE:  # a native kernel may ignore an input (a shape it reads at compile time)
            unused = unnamed(body, [f"in{i}" for i in range(len(ctx.inputs))])
            body = "".join(f"    (void){name};\n" for name in unused) + body
        return body
    if refused is not None:
        raise UnsupportedError(f"{ctx.node.describe()}: no {ctx.node.op} kernel takes a size known only at run "
                               f"time here ({refused}); fix that size with --shape")
    raise AssertionError(f"no generator took {ctx.node.op}: the {PORTABLE} family must not decline")
