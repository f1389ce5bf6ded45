"""Whole-graph verification and type inference. Every message names the node it is about."""
from __future__ import annotations

from typing import Optional

from .errors import PdcError, UnsupportedError, VerifyError
from .graph import Graph, Node
from .registry import REQUIRED, InferContext, check_attr_value, get_op
from .types import TensorType, types_compatible


# the ops that take float8, 4-bit and 2-bit tensors (dtypes.NARROW): conversions and data movement
NARROW_OPS = frozenset({"cast", "cast_like", "quantize_linear", "dequantize_linear", "identity", "reshape",
                        "flatten", "squeeze", "unsqueeze"})


def _check_narrow(node: Node, types) -> None:
    if node.op in NARROW_OPS:
        return
    narrow = sorted({str(t.dtype) for t in types if t is not None and t.dtype.is_narrow})
    if narrow:
        raise UnsupportedError(f"{node.describe()}: {node.op} does not take {', '.join(narrow)} tensors "
                               f"(float8, 4-bit and 2-bit types go through Cast, QuantizeLinear, "
                               f"DequantizeLinear and reshapes only)")


def infer_node(node: Node) -> list[TensorType]:
    """Output types of `node` from its op's infer function (which may raise VerifyError)."""
    opdef = get_op(node.op)
    _check_narrow(node, [None if v is None else v.type for v in node.inputs])
    ctx = InferContext(node, opdef)
    try:
        result = opdef.infer(ctx)
    except PdcError:
        raise
    except Exception as e:  # an infer function tripping over a malformed node is the node's fault
        raise VerifyError(f"{node.describe()}: type inference failed: {type(e).__name__}: {e}") from e
    _check_narrow(node, result)
    if len(result) != len(node.outputs):
        raise VerifyError(f"{node.describe()}: op gives {len(result)} outputs, node has {len(node.outputs)}")
    return list(result)


def check_node_arity_and_attrs(node: Node, where: Optional[str] = None) -> None:
    """The node's input / output counts and attribute kinds against its op's schema; `where` names
    the node in messages (default: node.describe())."""
    opdef = get_op(node.op)
    where = where or node.describe()
    lo, hi = opdef.input_arity
    n = len(node.inputs)
    if n < lo or (hi is not None and n > hi):
        raise VerifyError(f"{where}: takes {lo}{'' if hi == lo else ' to ' + ('any' if hi is None else str(hi))}"
                          f" inputs, got {n}")
    for i, spec in enumerate(opdef.inputs):
        if i < n and node.inputs[i] is None and not spec.optional:
            raise VerifyError(f"{where}: input '{spec.name}' is required")
    lo, hi = opdef.output_arity
    n = len(node.outputs)
    if n < lo or (hi is not None and n > hi):
        raise VerifyError(f"{where}: has {n} outputs, op gives {lo} to {hi}")
    for k, v in node.attrs.items():
        spec = opdef.attrs.get(k)
        if spec is None:
            raise VerifyError(f"{where}: unknown attribute '{k}'")
        if not check_attr_value(spec.kind, v):
            raise VerifyError(f"{where}: attribute '{k}' must be of kind {spec.kind}, got {_short_repr(v)}")
    for k, spec in opdef.attrs.items():
        if spec.default is REQUIRED and k not in node.attrs:
            raise VerifyError(f"{where}: attribute '{k}' is required")


def _short_repr(v, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[:n] + "..."


def check_node_schema(node: Node) -> None:
    check_node_arity_and_attrs(node)
    opdef = get_op(node.op)
    if opdef.verify is not None:
        opdef.verify(InferContext(node, opdef))


def verify_graph(graph: Graph) -> None:
    """Raises VerifyError on the first broken invariant: SSA, def-before-use, schema, types."""
    defined = set()
    names = set()

    def define(v, what):
        if v.name in names:
            raise VerifyError(f"value %{v.name} is defined twice ({what})")
        problem = v.type.quant.problem(v.type) if v.type.quant is not None else None
        if problem:
            raise VerifyError(f"value %{v.name} ({what}): {problem}")
        names.add(v.name)
        defined.add(v)

    for v in graph.inputs:
        define(v, "graph input")
    for c in graph.constants:
        if c.data is None:
            raise VerifyError(f"constant %{c.name} has no data")
        if tuple(c.data.shape) != c.type.shape or c.data.dtype != c.type.dtype.np:
            raise VerifyError(f"constant %{c.name}: data {c.data.dtype}{list(c.data.shape)} does not match {c.type}")
        define(c, "constant")
    for node in graph.nodes:
        for i, v in enumerate(node.inputs):
            if v is not None and v not in defined:
                raise VerifyError(f"{node.describe()}: input {i} (%{v.name}) is used before it is defined")
        check_node_schema(node)
        for key, sub in node.attrs.items():
            if isinstance(sub, Graph):
                try:
                    verify_graph(sub)
                except VerifyError as e:
                    raise VerifyError(f"{node.describe()}, subgraph '{key}': {e}") from None
        for v, t in zip(node.outputs, infer_node(node)):
            if not types_compatible(v.type, t):
                raise VerifyError(f"{node.describe()}: output %{v.name} is declared {v.type} but the op gives {t}")
        for v in node.outputs:
            define(v, node.describe())
    for v in graph.outputs:
        if v not in defined:
            raise VerifyError(f"graph output %{v.name} is not defined")
