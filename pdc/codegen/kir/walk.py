"""Traversal of kernel-IR trees (expressions and statements are dataclasses)."""
from __future__ import annotations

import dataclasses
from typing import Iterator

from .expr import Buffer, Expr, Var
from .stmt import Stmt


def children(node) -> Iterator:
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, (Expr, Stmt, Buffer)):
            yield v
        elif isinstance(v, tuple):
            yield from (x for x in v if isinstance(x, (Expr, Stmt, Buffer)))


def nodes(root) -> Iterator:
    """root and every node below it, depth first."""
    stack = [root]
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, Buffer):
            stack.extend(reversed(list(children(n))))


def buffers_used(root) -> set[str]:
    return {n.name for n in nodes(root) if isinstance(n, Buffer)}


def variables_used(root) -> set[str]:
    return {n.name for n in nodes(root) if isinstance(n, Var)}
