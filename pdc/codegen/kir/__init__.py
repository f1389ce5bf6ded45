"""Kernel IR: the loop/tensor-level layer between graph nodes and source text.

A generator describes its kernel as typed expressions (kir.expr) and statements (kir.stmt: loops
with annotations, stores into named buffers in memory spaces, copies, barriers) and a printer turns
that into one language: CPrinter (C99, kir.printer) for pdc's CPU targets, OpenCLPrinter
(kir.opencl) as the first GPU language. A new language is a printer subclass, not new generators.
"""
from .expr import *  # noqa: F401,F403
from .expr import __all__ as _expr_all
from .printer import CPrinter, comment_text  # noqa: F401
from .stmt import *  # noqa: F401,F403
from .stmt import __all__ as _stmt_all
from .types import C_INT, HALF, INDEX, Type, VectorType, arith, promote  # noqa: F401

__all__ = list(_expr_all) + list(_stmt_all) + ["CPrinter", "comment_text", "C_INT", "HALF", "INDEX", "Type",
                                              "VectorType", "arith", "promote"]
