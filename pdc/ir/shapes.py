"""Binding symbolic input dims to sizes and re-inferring every type downstream."""
from __future__ import annotations

from .errors import PdcError
from .graph import Graph
from .registry import get_op
from .symbolic import parse_range
from .types import TensorType, refine, types_compatible
from .verify import infer_node


def parse_shape_option(text: str) -> list[tuple[str, tuple]]:
    """One --shape: 'x=1,3,224,224' -> [('x', (1, 3, 224, 224))]; 'N=4' binds a symbol; a dim may be a
    range, known only at run time: 'batch=1..8,seq=1..128' -> [('batch', ((1, 8),)), ('seq', ((1, 128),))],
    'x=1..8,1..128,64' -> [('x', ((1, 8), (1, 128), 64))]. Raises PdcError on bad syntax."""
    bindings: list[tuple[str, list]] = []
    for part in text.split(","):
        name, sep, dim = part.rpartition("=")
        if sep:
            if not name or "=" in name:
                break
            bindings.append((name, []))
        elif not bindings:
            break
        dim = dim.strip()
        size = parse_range(dim)
        if size is None:
            try:
                size = int(dim) if dim else None
            except ValueError:
                break
        if size is not None:
            bindings[-1][1].append(size)
    else:
        if bindings and all(_valid_dim(d) for _, dims in bindings for d in dims):
            return [(name, tuple(dims)) for name, dims in bindings]
    raise PdcError(f"--shape '{text}': expected NAME=D0,D1,... with non-negative integers, or ranges LO..HI "
                   f"(1 <= LO <= HI) for sizes known only at run time")


def _valid_dim(d) -> bool:
    return d >= 0 if isinstance(d, int) else 1 <= d[0] <= d[1]


def parse_shape_options(texts) -> dict:
    """Every --shape given: name -> dims (ints, or (lo, hi) ranges)."""
    return dict(b for text in texts or () for b in parse_shape_option(text))


def _dim(d):
    """A bound dim as given to bind_shapes: an int, a (lo, hi) range or the string 'LO..HI'; a
    range of one size is that size."""
    if isinstance(d, str):
        r = parse_range(d)
        if r is None or not _valid_dim(r):
            raise PdcError(f"shape dim '{d}': expected a size or a range LO..HI with 1 <= LO <= HI")
        d = r
    if isinstance(d, (tuple, list)):
        lo, hi = (int(x) for x in d)
        return lo if lo == hi else (lo, hi)
    return int(d)


def bind_shapes(graph: Graph, shapes: dict[str, tuple]) -> Graph:
    """A copy of `graph` whose inputs have the given shapes, with all types re-inferred. A dim given
    as a range (lo, hi) stays a symbol, known only at run time; the copy's `dim_bounds` holds the
    ranges (symbol -> (lo, hi), in the order the inputs name them)."""
    g = graph.copy()
    inputs = {v.name: v for v in g.inputs}
    symbols: dict[str, object] = {}  # symbol -> size, or its (lo, hi) range
    all_symbols = {d for v in g.inputs for d in (v.type.shape or ()) if isinstance(d, str) and d != "?"}
    for name, shape in shapes.items():
        shape = (_dim(shape),) if isinstance(shape, (int, str)) else tuple(_dim(d) for d in shape)
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
        bound = []
        for i, s in enumerate(shape):
            d = declared[i] if declared is not None else "?"
            if isinstance(d, int) and d != s:
                raise PdcError(f"--shape {name}: {_text(shape)} does not match the static dims of {v.type}")
            if d == "?" and isinstance(s, tuple):
                d = f"{name}_{i}"  # a range for an unnamed dim: it gets a name
            if isinstance(d, str) and d != "?":
                if symbols.setdefault(d, s) != s:
                    raise PdcError(f"--shape: symbol '{d}' bound to both {_text([symbols[d]])} and {_text([s])}")
            bound.append(d if isinstance(s, tuple) else s)
        v.type = v.type.with_shape(bound)
    for v in g.inputs:  # other inputs sharing a bound symbol
        if v.type.shape is not None:
            v.type = v.type.with_shape(symbols.get(d, d) if isinstance(d, str) and isinstance(symbols.get(d), int)
                                       else d for d in v.type.shape)
    g.dim_bounds = {**{d: r for d, r in graph.dim_bounds.items() if d not in symbols},
                    **{d: r for d, r in symbols.items() if isinstance(r, tuple)}}
    reinfer(g)
    return g


def _text(shape) -> str:
    return "[" + ", ".join(f"{d[0]}..{d[1]}" if isinstance(d, tuple) else str(d) for d in shape) + "]"


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
    out, bounded = [], graph.dim_bounds
    for v in graph.inputs:
        if v.type.shape is None:
            out.append((v.name, "*"))
        else:
            out += [(v.name, d) for d in v.type.shape if not isinstance(d, int) and d not in bounded]
    return out


