"""Native pieces of portable kernels: the one way a portable generator's C reaches a vector ISA.

Portable generators print plain C, correct on every target. Where a piece of one of their helpers
has a faster form on some ISA (an exp over a row, a GEMM microkernel), the piece has a name and a
kernel family's folder implements it: x86/ (AVX-512, AVX2) or arm/ (NEON, Helium), the only places
intrinsics are written. The target's vector ISA (ctx.config.simd) picks the family; where that
family does not implement a piece, its plain C stands. A family's text keeps its vector code under
the ISA's own preprocessor test with the plain C as the fallback, so it builds for any CPU of the
family (and with -DPDC_PLAIN_C where the family offers that).

A piece takes one of two shapes:

- A slot in a C text: the lines between `@native NAME` and `@end`, each alone on its line (`@native
  NAME @end` for a slot without plain C), are the slot's plain C. `fill(ctx, text, **params)`
  replaces each slot by the family's text for NAME, in which a line `@plain` stands for the slot's
  plain C: a vector loop keeps the plain loop as its tail or its `#else` branch. The text may be a
  function of fill()'s keyword arguments (a kernel's tile, an operation).
- An emitter: a function printing a whole helper of a documented ABI, which a portable driver asks
  for with `emitter(ctx, NAME)` and uses instead of its own plain C one (None: the family has
  none). The dense GEMM microkernels are (pdc_ukr_fn, documented in dense_core.py).

A family registers a piece with `@implements(NAME, family=...)` on a function (a slot's text as a
function of the fill parameters, or an emitter) or `implement(family, NAME=text, ...)`.
"""
from __future__ import annotations

import re
from typing import Callable, Optional, Union

# the kernel family that implements native pieces for a vector ISA (KernelConfig.simd); plain C otherwise
SIMD_FAMILIES = {"avx512": "x86", "avx2": "x86", "neon64": "arm", "neon32": "arm", "mve": "arm"}

# (piece, family) -> its text, or a function returning it (slots), or the emitter
PIECES: dict[tuple[str, str], Union[str, Callable]] = {}

_SLOT = re.compile(r"^@native (\w+)(?: @end(?:\n|\Z)|\n(.*?)^@end(?:\n|\Z))", re.M | re.S)
_PLAIN = re.compile(r"^@plain(?:\n|\Z)", re.M)


def implement(family: str, **texts: str) -> None:
    """Registers a family's texts for slots, by slot name."""
    for name, text in texts.items():
        _register(name, family, text)


def implements(name: str, family: str):
    """Registers a function as a family's piece `name`: a slot's text from fill()'s parameters, or an emitter."""
    def wrap(fn):
        _register(name, family, fn)
        return fn
    return wrap


def _register(name: str, family: str, impl) -> None:
    if (name, family) in PIECES:
        raise ValueError(f"native piece '{name}' of the {family} family registered twice")
    PIECES[name, family] = impl


def family_of(ctx) -> Optional[str]:
    """The family whose native pieces ctx's kernels use (None: plain C)."""
    return SIMD_FAMILIES.get(ctx.config.simd)


def _piece(ctx, name: str):
    from . import load_all  # the families' modules register their pieces when they are imported
    load_all()
    family = family_of(ctx)
    return PIECES.get((name, family)) if family else None


def fill(ctx, text: str, **params) -> str:
    """The C text with every slot replaced by the native text of ctx's family, or by its plain C."""
    def one(m: re.Match) -> str:
        plain = m.group(2) or ""
        impl = _piece(ctx, m.group(1))
        if impl is None:
            return plain
        code = impl(**params) if callable(impl) else impl
        if code and not code.endswith("\n"):
            code += "\n"
        return _PLAIN.sub(lambda _: plain, code)

    out = _SLOT.sub(one, text)
    assert "@native" not in out and "@plain" not in out, "an unclosed native slot"
    return out


def emitter(ctx, name: str) -> Optional[Callable]:
    """The native emitter `name` of ctx's family, or None (the driver uses its plain C one)."""
    impl = _piece(ctx, name)
    assert impl is None or callable(impl), f"native piece '{name}' is a slot, not an emitter"
    return impl
