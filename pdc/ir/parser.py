"""Parses IR text (the grammar in ir.lark) back into a Graph."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Optional

import lark
import numpy as np

from . import dtypes
from .errors import PdcError
from .graph import Graph, Node, Value
from .types import Quant, TensorType


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resources.files(__package__).joinpath("ir.lark").read_text()  # package data, also in a wheel
    return lark.Lark(grammar, parser="lalr", maybe_placeholders=True)


def _name(token: str) -> str:
    body = token[1:]
    return json.loads(body) if body.startswith('"') else body


def parse_type(text: str) -> TensorType:
    dt, rest = text.split("[", 1)
    body, quant = rest.split("]", 1)
    body = body.strip()
    q = _parse_quant(quant) if quant else None
    if body == "*":
        return TensorType(dtypes.from_short(dt), None, q)
    dims = [] if not body else [d.strip() for d in body.split(",")]
    return TensorType(dtypes.from_short(dt), tuple(int(d) if d.lstrip("-").isdigit() else d for d in dims), q)


_QUANT = re.compile(r"\{(?:axis=(-?\d+), )?scale=(\[[^\]]*\]|[^,\]]+), zero=(\[[^\]]*\]|-?\d+)\}")


def _parse_quant(text: str) -> Quant:
    """{scale=S, zero=Z} or {axis=A, scale=[S, ...], zero=[Z, ...]}, as Quant.__str__ writes them."""
    m = _QUANT.fullmatch(text)
    if m is None:
        raise PdcError(f"malformed quantization '{text}': expected {{scale=S, zero=Z}} or "
                       "{axis=A, scale=[S, ...], zero=[Z, ...]}")
    axis, scale, zero = m.groups()
    listed = lambda s: s.startswith("[")  # noqa: E731
    if listed(scale) != (axis is not None) or listed(zero) != (axis is not None):
        raise PdcError(f"malformed quantization '{text}': lists of scales and zero points go with an axis")
    try:
        scales = [float(s) for s in scale.strip("[]").split(",")]
        zeros = [int(z) for z in zero.strip("[]").split(",")]
    except ValueError:
        raise PdcError(f"malformed quantization '{text}': scales are numbers, zero points integers") from None
    return Quant(tuple(scales), tuple(zeros), None if axis is None else int(axis))


class _Literals(lark.Transformer):
    def int(self, t):
        return int(t[0])

    def float(self, t):
        return float(t[0])

    def string(self, t):
        return json.loads(t[0])

    def list(self, items):
        return [] if items == [None] else list(items)

    def dtype(self, t):
        return dtypes.from_short(str(t[0]))

    def true(self, _):
        return True

    def false(self, _):
        return False

    def tensor(self, items):
        t = parse_type(str(items[0]))
        values = [] if items[1:] == [None] else items[1:]
        return np.array(values, dtype=t.dtype.np).reshape(t.shape)


class _Builder:
    """Builds one graph; a subgraph attribute gets a builder of its own (a closed scope)."""

    def __init__(self, source: str, constants: Optional[dict]):
        self.source = source
        self.constants = constants
        self.values: dict[str, Value] = {}

    def fail(self, token, msg: str):
        line = getattr(token, "line", "?")
        raise PdcError(f"{self.source}:{line}: {msg}")

    def define(self, token, v: Value) -> Value:
        if v.name in self.values:
            self.fail(token, f"%{v.name} is defined twice")
        self.values[v.name] = v
        return v

    def use(self, token) -> Value:
        name = _name(str(token))
        if name not in self.values:
            self.fail(token, f"%{name} is used before it is defined")
        return self.values[name]

    def build(self, tree: lark.Tree) -> Graph:
        """A graph from its graph_def tree."""
        name_tok, inputs, outputs, *stmts = tree.children
        g = Graph(_name(str(name_tok)))
        for p in _params(inputs):
            g.inputs.append(self.define(p.children[0], Value(_name(str(p.children[0])), parse_type(str(p.children[1])))))
        for s in stmts:
            if s.data == "const_stmt":
                g.constants.append(self.const(*s.children, self.constants))
            else:
                g.nodes.append(self.node(*s.children))
        for p in _params(outputs):
            v = self.use(p.children[0])
            if v.type != parse_type(str(p.children[1])):
                self.fail(p.children[0], f"output %{v.name} is declared {p.children[1]} but defined as {v.type}")
            g.outputs.append(v)
        return g

    def const(self, results, ty, constants) -> Value:
        tok = results.children[0]
        if len(results.children) != 1:
            self.fail(tok, "a constant defines one value")
        name = _name(str(tok))
        t = parse_type(str(ty))
        data = None
        if constants is not None:
            if name not in constants:
                self.fail(tok, f"no data for constant %{name} in the weights file")
            data = _as_dtype(constants[name], t, lambda m: self.fail(tok, f"%{name}: {m}"))
        return self.define(tok, Value(name, t, data))

    def node(self, results, op, operands, attrs_tree, types_tree, loc) -> Node:
        inputs = [None if o.children[0].type == "ABSENT" else self.use(o.children[0])
                  for o in operands.children if o is not None]
        attrs = {}
        for a in (attrs_tree.children if attrs_tree is not None else []):
            if a is None:
                continue
            key = str(a.children[0])
            if key in attrs:
                self.fail(a.children[0], f"attribute '{key}' given twice")
            lit = a.children[1]
            if isinstance(lit, lark.Tree) and lit.data == "subgraph":
                attrs[key] = _Builder(self.source, self.constants).build(lit.children[0])
            else:
                attrs[key] = _LITERALS.transform(lit)
        types = [parse_type(str(t)) for t in types_tree.children]
        if len(types) != len(results.children):
            self.fail(op, f"{len(results.children)} results but {len(types)} types")
        outs = [Value(_name(str(r)), t) for r, t in zip(results.children, types)]
        for r, v in zip(results.children, outs):
            self.define(r, v)
        return Node(str(op), inputs, outs, attrs, _name(str(loc.children[0])) if loc is not None else "")


_LITERALS = _Literals()


def _params(tree):
    return [p for p in tree.children if p is not None]


def _as_dtype(data: np.ndarray, t: TensorType, fail) -> np.ndarray:
    data = np.asarray(data)
    if data.dtype != t.dtype.np:
        if data.dtype.itemsize == t.dtype.itemsize and data.dtype.kind in "uV":
            data = data.view(t.dtype.np)  # bfloat16 is stored as raw 16-bit words
        else:
            fail(f"constant data has dtype {data.dtype}, declared {t}")
    if tuple(data.shape) != t.shape:
        fail(f"constant data has shape {list(data.shape)}, declared {t}")
    return data


def parse_graph(text: str, constants: Optional[dict] = None, source: str = "<ir>") -> Graph:
    """Parses IR text. `constants` maps constant names to arrays (None: constants stay without data)."""
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        ctx = text.splitlines()[e.line - 1].strip() if 0 < getattr(e, "line", 0) <= len(text.splitlines()) else ""
        raise PdcError(f"{source}:{e.line}:{e.column}: syntax error near '{ctx[:60]}'") from None
    return _Builder(source, constants).build(tree.children[0])
