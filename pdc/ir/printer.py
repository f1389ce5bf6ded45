"""Prints a graph as IR text. The layout is canonical: print(parse(text)) == text.

    graph @name(%x: f32[N,3,32,32]) -> (%y: f32[N,10]) {
      %w = const f32[16,3,3,3]
      %0 = conv(%x, %w, _) {group=1, pads=[1,1,1,1]} : f32[N,16,32,32] @"conv_0"
      %a, %b = split(%0, %s) {axis=1} : f32[N,8,32,32], f32[N,8,32,32]
    }

Names that are not plain identifiers are JSON-quoted; `_` is an absent optional input;
attributes are sorted by name; `@"..."` after the types is the source node's name.
Constant data is not printed: it lives in the side file (see textio).
"""
from __future__ import annotations

import json
import math
import re

import numpy as np

from .dtypes import DType
from .graph import Graph, Node, Value
from .types import TensorType

_PLAIN = re.compile(r"[A-Za-z0-9_.\-]+")


def quote_name(name: str) -> str:
    return name if _PLAIN.fullmatch(name) else json.dumps(name, ensure_ascii=True)


def value_ref(v: Value) -> str:
    return "%" + quote_name(v.name)


def format_float(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    r = repr(x)
    return r


def format_scalar(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return format_float(x)


def format_attr(v, level: int = 0) -> str:
    if isinstance(v, Graph):  # a subgraph, one level deeper than the node that holds it
        return print_graph(v, level + 1).rstrip("\n")
    if isinstance(v, DType):
        return v.short
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=True)
    if isinstance(v, np.ndarray):
        from .dtypes import from_numpy
        t = TensorType(from_numpy(v.dtype), v.shape)
        flat = v.reshape(-1)
        items = [format_scalar(bool(x) if v.dtype == np.bool_ else (int(x) if t.dtype.is_int else float(x)))
                 for x in flat]
        return f"dense({t}, [{', '.join(items)}])"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    return format_scalar(v)


def format_node(n: Node, level: int = 0) -> str:
    results = ", ".join(value_ref(v) for v in n.outputs)
    operands = ", ".join("_" if v is None else value_ref(v) for v in n.inputs)
    line = f"{results} = {n.op}({operands})"
    if n.attrs:
        line += " {" + ", ".join(f"{k}={format_attr(n.attrs[k], level)}" for k in sorted(n.attrs)) + "}"
    line += " : " + ", ".join(str(v.type) for v in n.outputs)
    if n.name:
        line += " @" + json.dumps(n.name, ensure_ascii=True)
    return line


def print_graph(g: Graph, level: int = 0) -> str:
    """The text of g; a subgraph (level > 0) is indented one step per level, its first line
    continuing the attribute that holds it."""
    params = ", ".join(f"{value_ref(v)}: {v.type}" for v in g.inputs)
    results = ", ".join(f"{value_ref(v)}: {v.type}" for v in g.outputs)
    pad = "  " * level
    lines = [f"graph @{quote_name(g.name)}({params}) -> ({results}) {{"]
    lines += [f"{pad}  {value_ref(c)} = const {c.type}" for c in g.constants]
    lines += [f"{pad}  {format_node(n, level)}" for n in g.nodes]
    lines.append(pad + "}")
    return "\n".join(lines) + "\n"
