"""Binding symbolic input dims to sizes and re-inferring every type downstream."""
from __future__ import annotations

from .errors import PdcError
from .graph import Graph
from .registry import get_op
from .types import TensorType, refine, types_compatible
from .verify import infer_node


def parse_shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """'x=1,3,224,224' -> ('x', (1, 3, 224, 224)); 'N=4' binds a symbol. Raises PdcError on bad syntax."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
    except ValueError:
        shape = None
    if not sep or not name or shape is None or any(d < 0 for d in shape):
        raise PdcError(f"--shape '{text}': expected NAME=D0,D1,... with non-negative integers")
    return name, shape


def bind_shapes(graph: Graph, shapes: dict[str, tuple]) -> Graph:
    """A copy of `graph` whose inputs have the given static shapes, with all types re-inferred."""
    g = graph.copy()
    inputs = {v.name: v for v in g.inputs}
    symbols: dict[str, int] = {}
    all_symbols = {d for v in g.inputs for d in (v.type.shape or ()) if isinstance(d, str) and d != "?"}
    for name, shape in shapes.items():
        shape = (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)
        if name not in inputs and name in all_symbols and len(shape) == 1:
            symbols[name] = shape[0]  # --shape N=4 binds the symbol N
            continue
        if name not in inputs:
            raise PdcError(f"--shape names '{name}', which is neither an input nor a symbolic dim "
                           f"(inputs: {', '.join(inputs)})")
        v = inputs[name]
        declared = v.type.shape
        if declared is not None and len(declared) != len(shape):
            raise PdcError(f"--shape {name}: rank {len(shape)} given, the input has rank {len(declared)} ({v.type})")
        for d, s in zip(declared or (), shape):
            if isinstance(d, int) and d != s:
                raise PdcError(f"--shape {name}: {list(shape)} does not match the static dims of {v.type}")
            if isinstance(d, str) and d != "?":
                if symbols.setdefault(d, s) != s:
                    raise PdcError(f"--shape: symbol '{d}' bound to both {symbols[d]} and {s}")
        v.type = v.type.with_shape(shape)
    for v in g.inputs:  # other inputs sharing a bound symbol
        if v.type.shape is not None:
            v.type = v.type.with_shape(symbols.get(d, d) if isinstance(d, str) else d for d in v.type.shape)
    reinfer(g)
    return g


def reinfer(g: Graph) -> None:
    """Re-runs type inference over every node in order, keeping the more precise type; a
    control-flow body first takes the types its node now passes in (bound dims included)."""
    for node in g.nodes:
        bodies = get_op(node.op).extra.get("body_inputs")
        for key, passed in (bodies(node) if bodies else {}).items():
            body = node.attrs[key]
            for v, (t, data) in zip(body.inputs, passed):
                if t is not None and t.dtype == v.type.dtype and types_compatible(v.type, t):
                    v.type, v.data = t, data
            reinfer(body)
        for v, t in zip(node.outputs, infer_node(node)):
            if not types_compatible(v.type, t) and v.type.dtype == t.dtype:
                v.type = t  # shapes changed with the binding
            elif types_compatible(v.type, t):
                v.type = refine(t, v.type) if not t.is_static else t
            else:
                raise PdcError(f"{node.describe()}: output type {t} no longer matches {v.type}")


def unbound_dims(graph: Graph) -> list[tuple[str, object]]:
    """(input name, dim) for every input dim that is not a fixed size."""
    out = []
    for v in graph.inputs:
        if v.type.shape is None:
            out.append((v.name, "*"))
        else:
            out += [(v.name, d) for d in v.type.shape if not isinstance(d, int)]
    return out


