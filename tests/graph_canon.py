"""Graphs compared up to naming: a canonical text form plus the constants' data.

Two graphs are the same up to naming when their canonical forms agree:

    form = canonical(graph)          # Canonical(lines=[...], constants=[array, ...])
    problems = differences(form_a, form_b)   # [] when equal

The canonical order of the nodes is a depth-first post-order from the graph outputs (in output
order), visiting each node's inputs in operand order, so it does not depend on the order in which
a frontend emitted independent branches. Values are renamed by position: graph inputs in0, in1...,
constants c0, c1... in order of first use, node results v0, v1..., symbolic dims s0, s1... in
order of first appearance. Each line is
`v3 = conv(in0, c0, c1) {group=1, pads=[1,1,1,1]} : f32[2,64,32,32]`; floating-point attributes
are printed with 6 significant digits (files store them as float32 or float64), and constant data
is compared element by element (tolerances.REWRITE) rather than printed.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from pdc.ir.graph import Graph, Value
from pdc.ir.printer import format_attr
from tolerances import REWRITE, Tolerance

NAME_ATTRS = {"source_nodes"}  # attributes that hold model names, not semantics


@dataclass
class Canonical:
    lines: list[str]
    constants: list[np.ndarray]

    def text(self) -> str:
        return "\n".join(self.lines)


def attr_text(v) -> str:
    """An attribute value as canonical text."""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, float) for x in v):
        return "[" + ",".join(f"{x:.6g}" for x in v) + "]"
    return format_attr(v)


def canonical(graph: Graph) -> Canonical:
    producer = graph.producers()
    names: dict[Value, str] = {v: f"in{i}" for i, v in enumerate(graph.inputs)}
    symbols: dict[str, str] = {}

    def typ(t) -> str:  # symbolic dims renamed by first appearance: N, x_d1 -> s0, s1
        if t.shape is None:
            return str(t)
        dims = [d if isinstance(d, int) or d == "?" else symbols.setdefault(d, f"s{len(symbols)}") for d in t.shape]
        return str(t.with_shape(dims))

    lines = ["inputs " + ", ".join(f"{names[v]}: {typ(v.type)}" for v in graph.inputs)]
    constants: list[np.ndarray] = []

    def name_of(v) -> str:
        if v is None:
            return "_"
        if v not in names:  # a constant (node results are named when their node is emitted)
            names[v] = f"c{len(constants)}"
            constants.append(np.asarray(v.data))
            lines.append(f"{names[v]} = const {typ(v.type)}")
        return names[v]

    done: set[int] = set()
    results = 0
    # iterative post-order DFS (deep networks exceed Python's recursion limit)
    stack = [(producer[v], False) for v in reversed(graph.outputs) if v in producer]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if not expanded:
            stack.append((node, True))
            for v in reversed(node.inputs):
                if v is not None and v in producer and id(producer[v]) not in done:
                    stack.append((producer[v], False))
            continue
        done.add(id(node))
        args = ", ".join(name_of(v) for v in node.inputs)
        outs = []
        for v in node.outputs:
            names[v] = f"v{results}"
            results += 1
            outs.append(names[v])
        attrs = ", ".join(f"{k}={attr_text(a)}" for k, a in sorted(node.attrs.items())
                          if k not in NAME_ATTRS and a is not None)
        types = ", ".join(typ(v.type) for v in node.outputs)
        lines.append(f"{', '.join(outs)} = {node.op}({args})" + (f" {{{attrs}}}" if attrs else "") + f" : {types}")
    lines.append("outputs " + ", ".join(f"{name_of(v)}: {typ(v.type)}" for v in graph.outputs))
    return Canonical(lines, constants)


def differences(a: Canonical, b: Canonical, tolerance: Tolerance = REWRITE, context: int = 2) -> list[str]:
    """What differs between two canonical forms: a unified diff of the lines, or the constants whose
    data differ beyond `tolerance` (element by element, atol relative to the constant's largest magnitude)."""
    if a.lines != b.lines:
        return list(difflib.unified_diff(a.lines, b.lines, "a", "b", n=context, lineterm=""))
    problems = []
    for i, (x, y) in enumerate(zip(a.constants, b.constants)):
        if x.dtype != y.dtype or x.shape != y.shape:
            problems.append(f"c{i}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        elif x.dtype.kind in "biu":
            if not np.array_equal(x, y):
                problems.append(f"c{i}: integer data differs")
        elif tolerance.mismatches(y, x):
            problems.append(f"c{i}: data differs (max |a - b| = {float(np.max(np.abs(x - y))):.3g})")
    return problems
