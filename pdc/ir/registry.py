"""The op registry: each op declares its schema, type inference, verifier and NumPy reference.

An op is registered with `register_op`. Input and output specs are names with an optional
suffix: `X?` is optional, `X*` is variadic (only the last spec may be variadic). Attributes are
`Attr(kind, default)`; kinds are int, float, string, ints, floats, strings, dtype, tensor, graph
(a closed subgraph: every value it reads is one of its inputs).
`REQUIRED` marks an attribute without a default; `None` marks an optional one that may be absent.

- `infer(ctx) -> list[TensorType]` computes output types from `ctx.types` / `ctx.attrs` /
  `ctx.const(i)` (the data of a constant input, or None); `ctx.fail(msg)` raises a VerifyError
  naming the node. Dims it cannot know are "?".
- `reference(inputs, attrs) -> ndarray | list[ndarray]` computes the outputs with NumPy. Its
  results are cast to the declared output dtypes by the interpreter.
- `verify(ctx)` (optional) checks attribute values beyond their kinds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .dtypes import DType
from .errors import UnsupportedError, VerifyError
from .graph import Graph
from .types import TensorType

REQUIRED = object()
ATTR_KINDS = ("int", "float", "string", "ints", "floats", "strings", "dtype", "tensor", "graph")


@dataclass(frozen=True)
class Attr:
    kind: str
    default: Any = None

    def __post_init__(self):
        assert self.kind in ATTR_KINDS, self.kind

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class PortSpec:
    name: str
    optional: bool = False
    variadic: bool = False

    @staticmethod
    def parse(spec: str) -> "PortSpec":
        if spec.endswith("?"):
            return PortSpec(spec[:-1], optional=True)
        if spec.endswith("*"):
            return PortSpec(spec[:-1], variadic=True)
        return PortSpec(spec)


def _arity(specs: list[PortSpec]) -> tuple[int, Optional[int]]:
    lo = sum(1 for s in specs if not s.optional and not s.variadic)
    if specs and specs[-1].variadic:
        return lo, None
    return lo, len(specs)


@dataclass
class OpDef:
    name: str
    inputs: list[PortSpec]
    outputs: list[PortSpec]
    attrs: dict[str, Attr]
    infer: Callable
    reference: Callable
    verify: Optional[Callable] = None
    doc: str = ""
    onnx: Optional[str] = None  # the ONNX op type this op mirrors, if any
    elementwise: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def input_arity(self):
        return _arity(self.inputs)

    @property
    def output_arity(self):
        return _arity(self.outputs)


REGISTRY: dict[str, OpDef] = {}


def register_op(name: str, inputs: list[str], outputs: list[str], *, infer: Callable, reference: Callable,
                attrs: Optional[dict[str, Attr]] = None, verify: Optional[Callable] = None, doc: str = "",
                onnx: Optional[str] = None, elementwise: bool = False, **extra) -> OpDef:
    if name in REGISTRY:
        raise ValueError(f"op '{name}' registered twice")
    op = OpDef(name, [PortSpec.parse(s) for s in inputs], [PortSpec.parse(s) for s in outputs],
               dict(attrs or {}), infer, reference, verify, doc, onnx, elementwise, extra)
    REGISTRY[name] = op
    return op


def get_op(name: str) -> OpDef:
    _load_ops()
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnsupportedError(f"unknown op '{name}'") from None


def all_ops() -> dict[str, OpDef]:
    _load_ops()
    return REGISTRY


_loaded = False


def _load_ops():
    global _loaded
    if not _loaded:
        _loaded = True
        from . import ops  # noqa: F401  (registers every op)


class InferContext:
    """What an op's infer/verify function sees of a node."""

    def __init__(self, node, opdef: OpDef):
        self.node = node
        self.opdef = opdef
        self.types: list[Optional[TensorType]] = [None if v is None else v.type for v in node.inputs]
        self.attrs = node.attrs
        self.num_outputs = len(node.outputs)

    def const(self, i: int) -> Optional[np.ndarray]:
        if i < len(self.node.inputs) and self.node.inputs[i] is not None:
            return self.node.inputs[i].data
        return None

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] is not None

    def fail(self, msg: str):
        raise VerifyError(f"{self.node.describe()}: {msg}")

    def unsupported(self, msg: str):
        raise UnsupportedError(f"{self.node.describe()}: {msg}")


def check_attr_value(kind: str, value) -> bool:
    if kind == "int":
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (float, int)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind in ("ints", "floats", "strings"):
        return isinstance(value, list) and all(check_attr_value(kind[:-1] if kind != "strings" else "string", v)
                                               for v in value)
    if kind == "dtype":
        return isinstance(value, DType)
    if kind == "tensor":
        return isinstance(value, np.ndarray)
    if kind == "graph":
        return isinstance(value, Graph)
    return False


def with_defaults(opdef: OpDef, attrs: dict) -> dict:
    """The attributes with every declared default filled in (absent optional ones stay absent)."""
    out = {}
    for k, spec in opdef.attrs.items():
        if k in attrs:
            out[k] = attrs[k]
        elif spec.default is not None and spec.default is not REQUIRED:
            d = spec.default
            out[k] = list(d) if isinstance(d, (list, tuple)) else d
    for k in attrs:
        if k not in out:
            out[k] = attrs[k]
    return out
