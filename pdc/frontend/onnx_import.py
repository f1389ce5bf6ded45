"""ONNX importer: ModelProto -> IR graph.

Most ONNX ops map one-to-one onto an IR op that declares `onnx="OpType"`; the default
converter copies inputs and attributes (filling defaults). Ops whose ONNX form varies across
opsets, or that lower to several IR ops, have a converter in `pdc.frontend.onnx_ops`.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from typing import Callable, Optional

import numpy as np
import onnx
import onnx.version_converter
from onnx import numpy_helper
from google.protobuf.message import DecodeError

from ..ir import dtypes
from ..ir.errors import PdcError, UnsupportedError
from ..ir.graph import Graph, Node, Value
from ..ir.registry import all_ops, with_defaults
from ..ir.types import UNKNOWN, TensorType, refine, types_compatible
from ..ir.folding import try_fold
from ..ir.limits import DEFAULT_MAX_TENSOR_BYTES, check_shape, check_value
from ..ir.verify import check_node_arity_and_attrs, infer_node
from .onnx_functions import DEFAULT_DOMAINS, expand_function_ops

MIN_OPSET = 7
FOLD_MAX_ELEMENTS = 4096  # constant subgraphs whose outputs stay this small are evaluated at import

Converter = Callable[["NodeContext"], None]
CONVERTERS: dict[str, Converter] = {}


def converter(*op_types: str):
    """Registers a converter for ONNX op types (used by pdc.frontend.onnx_ops)."""
    def wrap(fn):
        for t in op_types:
            CONVERTERS[t] = fn
        return fn
    return wrap


def _default_converters() -> dict[str, str]:
    return {op.onnx: name for name, op in all_ops().items() if op.onnx}


def supported_onnx_ops() -> set[str]:
    _load_converters()
    return set(CONVERTERS) | set(_default_converters())


_converters_loaded = False


def _load_converters():
    global _converters_loaded
    if not _converters_loaded:
        _converters_loaded = True
        from . import onnx_ops  # noqa: F401


# ---------------------------------------------------------------------------------------------
def _symbol(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else "d_" + s


def type_from_proto(tp: onnx.TypeProto, where: str) -> Optional[TensorType]:
    if not tp.HasField("tensor_type"):
        kind = tp.WhichOneof("value")
        raise UnsupportedError(f"{where}: {kind or 'untyped'} values are not supported (tensors only)")
    tt = tp.tensor_type
    if tt.elem_type == 0:
        return None
    try:
        dt = dtypes.from_onnx(tt.elem_type)
    except UnsupportedError as e:
        raise UnsupportedError(f"{where}: {e}") from None
    if not tt.HasField("shape"):
        return TensorType(dt, None)
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            if d.dim_value < 0:
                raise PdcError(f"{where}: negative dim {d.dim_value} in its declared shape")
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(_symbol(d.dim_param))
        else:
            dims.append(UNKNOWN)
    return TensorType(dt, tuple(dims))


def tensor_dtype(t: onnx.TensorProto, where: str) -> dtypes.DType:
    try:
        return dtypes.from_onnx(t.data_type)
    except UnsupportedError as e:
        raise UnsupportedError(f"{where}: {e}") from None


def tensor_to_array(t: onnx.TensorProto, where: str,
                    max_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> np.ndarray:
    dt = tensor_dtype(t, where)  # rejects unsupported element types with a clear message
    check_shape(tuple(t.dims), dt, max_bytes, where)  # before numpy allocates anything
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:
        raise PdcError(f"{where}: cannot read tensor '{t.name}': {e}") from None
    return np.array(arr, dtype=dt.np, order="C")


def attr_value(a: onnx.AttributeProto, where: str):
    if a.type == onnx.AttributeProto.GRAPH:
        return a.g  # a body: the control-flow converters import it (onnx_ops/control_flow.py)
    if a.type == onnx.AttributeProto.GRAPHS:
        raise UnsupportedError(f"{where}: attribute '{a.name}' holds a list of subgraphs")
    if a.type in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS,
                  onnx.AttributeProto.TYPE_PROTO, onnx.AttributeProto.TYPE_PROTOS):
        raise UnsupportedError(f"{where}: attribute '{a.name}' has an unsupported kind")
    if a.ref_attr_name:
        raise UnsupportedError(f"{where}: attribute '{a.name}' refers to a function attribute")
    if a.type not in _READABLE_ATTRIBUTE_TYPES:
        raise PdcError(f"{where}: attribute '{a.name}' has no valid type (type code {a.type})")
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, onnx.TensorProto):
        return tensor_to_array(v, where)
    if isinstance(v, list):
        if a.type == onnx.AttributeProto.STRINGS:
            return [s.decode("utf-8", "replace") for s in v]
        if a.type == onnx.AttributeProto.TENSORS:
            raise UnsupportedError(f"{where}: attribute '{a.name}' holds a list of tensors")
        return list(v)
    return v


_A = onnx.AttributeProto
_READABLE_ATTRIBUTE_TYPES = {_A.FLOAT, _A.INT, _A.STRING, _A.TENSOR, _A.FLOATS, _A.INTS, _A.STRINGS}


# int attributes the spec defines as a 0 / 1 flag: ONNX Runtime reads other values one way or the
# other per op (keepdims=-1 drops the axes, a non-zero transB transposes), so pdc refuses them
FLAG_ATTRIBUTES = {"keepdims", "transA", "transB", "ceil_mode", "count_include_pad", "storage_order",
                   "select_last_index", "noop_with_empty_axes", "exclusive", "reverse", "largest", "sorted",
                   "antialias", "exclude_outside", "fmod", "detect_negative", "detect_positive", "align_corners",
                   "input_forget", "is_causal", "center_point_box", "saturate"}


def node_where(node: onnx.NodeProto) -> str:
    """How messages name an ONNX node."""
    return f"node '{node.name}' ({node.op_type})" if node.name else f"{node.op_type} node"


def _schema(node: onnx.NodeProto, opset: int):
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain)
    except Exception:  # an op newer than the model's opset: the converter says what is wrong
        return None


def check_against_schema(node: onnx.NodeProto, opset: int, where: str) -> None:
    """The node's input / output counts and attribute types as the ONNX op schema declares them."""
    schema = _schema(node, opset)
    if schema is None:
        return
    for what, n, lo, hi in (("inputs", len(node.input), schema.min_input, schema.max_input),
                            ("outputs", len(node.output), schema.min_output, schema.max_output)):
        if not lo <= n <= hi:
            spelled = str(lo) if lo == hi else f"{lo} to {hi if hi < 2**31 - 1 else 'any'}"
            raise PdcError(f"{where}: has {n} {what}, {node.op_type} takes {spelled}")
    for a in node.attribute:
        spec = schema.attributes.get(a.name)
        if spec is not None and spec.type == _A.INT and a.type == _A.INT and a.name in FLAG_ATTRIBUTES \
                and a.i not in (0, 1):
            raise PdcError(f"{where}: attribute '{a.name}' is {a.i}, it must be 0 or 1")
        # an INT where the schema says FLOAT is refused too, as the onnx checker and ONNX Runtime do
        if spec is None or a.type == spec.type:
            continue
        want, got = (_A.AttributeType.Name(t) if t in _A.AttributeType.values() else str(t)
                     for t in (spec.type, a.type))
        raise PdcError(f"{where}: attribute '{a.name}' must be {want}, got {got}")


# ---------------------------------------------------------------------------------------------
class NodeContext:
    """What a converter sees: the ONNX node, its opset, its inputs as IR values."""

    def __init__(self, importer: "OnnxImporter", node: onnx.NodeProto):
        self.importer = importer
        self.proto = node
        self.op_type = node.op_type
        self.name = node.name
        self.opset = importer.opset
        self.where = node_where(node)
        if node.domain in DEFAULT_DOMAINS:
            check_against_schema(node, importer.opset, f"{importer.source}: {self.where}")
        self.attrs = {a.name: attr_value(a, self.where) for a in node.attribute}
        self.inputs: list[Optional[Value]] = [importer.lookup(n, self.where) if n else None for n in node.input]
        self.output_names = list(node.output)

    def input(self, i: int) -> Optional[Value]:
        return self.inputs[i] if i < len(self.inputs) else None

    def const_input(self, i: int) -> Optional[np.ndarray]:
        v = self.input(i)
        return None if v is None else v.data

    def constant(self, data, dtype=None, hint: str = "c") -> Value:
        g = self.importer.graph
        return g.add_constant(self.importer.fresh(hint), data, dtype)

    def emit(self, op: str, inputs: list, attrs: Optional[dict] = None, outputs: Optional[list[str]] = None,
             num_outputs: Optional[int] = None) -> list[Value]:
        """Appends an IR node. `outputs`: ONNX output names to bind ('' = unused); by default fresh names."""
        return self.importer.emit(op, inputs, attrs or {}, outputs, num_outputs, self)

    def emit_node_outputs(self, op: str, inputs: list, attrs: Optional[dict] = None) -> list[Value]:
        """Appends an IR node producing exactly this ONNX node's outputs."""
        return self.emit(op, inputs, attrs, self.output_names)

    def bind(self, onnx_name: str, value: Value) -> None:
        """Makes an ONNX output name refer to an existing value (for ops that lower to nothing)."""
        self.importer.bind(onnx_name, value, self)

    def unsupported(self, msg: str):
        raise UnsupportedError(f"{self.where}: {msg}")

    def fail(self, msg: str):
        raise PdcError(f"{self.where}: {msg}")


def ir_attrs(ctx: NodeContext, ir_op: str, attrs: dict) -> dict:
    """ONNX attributes checked against the IR op's schema, converted (dtype codes, int floats) and
    completed with the op's defaults."""
    opdef = all_ops()[ir_op]
    out = {}
    for k, v in attrs.items():
        spec = opdef.attrs.get(k)
        if spec is None:
            ctx.unsupported(f"attribute '{k}' is not supported")
        if spec.kind == "dtype" and isinstance(v, int):
            v = dtypes.from_onnx(v)
        elif spec.kind == "float" and isinstance(v, int):
            v = float(v)
        out[k] = v
    return with_defaults(opdef, out)


def default_convert(ctx: NodeContext) -> None:
    ir_op = _default_converters()[ctx.op_type]
    ctx.emit_node_outputs(ir_op, ctx.inputs, ir_attrs(ctx, ir_op, ctx.attrs))


class OnnxImporter:
    def __init__(self, model: onnx.ModelProto, source: str, base_dir: str,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
        self.model = model
        self.onnx_graph = model.graph  # the graph this importer imports (a subgraph importer: a body)
        self.source = source
        self.base_dir = base_dir
        self.max_tensor_bytes = max_tensor_bytes
        self.producers: dict[Value, str] = {}  # node outputs -> the node, for messages
        self.defined_by: dict[str, str] = {}  # every ONNX name -> what defines it (filled by check_names)
        self.opset = self._default_opset()
        self.graph = Graph(_symbol(model.graph.name or "main"))
        self.values: dict[str, Value] = {}
        self.taken: set[str] = set()
        self.onnx_types: dict[str, TensorType] = {}

    def _default_opset(self) -> int:
        v = default_domain_version(self.model)
        if v is None:
            raise UnsupportedError(f"{self.source}: the model imports no default-domain (ai.onnx) opset")
        if not MIN_OPSET <= v <= onnx.defs.onnx_opset_version():  # a future opset's semantics are unknown
            raise UnsupportedError(f"{self.source}: opset {v} is not supported (pdc reads opsets {MIN_OPSET} to "
                                   f"{onnx.defs.onnx_opset_version()})")
        if self.model.ir_version > onnx.IR_VERSION:
            raise UnsupportedError(f"{self.source}: ONNX IR version {self.model.ir_version} is newer than pdc reads "
                                   f"(up to {onnx.IR_VERSION})")
        return v

    # ---- names and values ------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.]", "_", hint) or "v"
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def lookup(self, name: str, where: str) -> Value:
        try:
            return self.values[name]
        except KeyError:
            pass
        if name in self.defined_by:  # defined, but by a later node
            raise PdcError(f"{self.source}: {where} uses '{name}' before {self.defined_by[name]} defines it "
                           f"(the nodes are not in topological order, or form a cycle)")
        raise PdcError(f"{self.source}: {where} uses '{name}', which nothing defines")

    def bind(self, onnx_name: str, value: Value, ctx: NodeContext) -> None:
        if not onnx_name:
            return
        if onnx_name in self.graph_output_names:
            # a graph output must be a distinct named value: copy through identity
            (value,) = self.emit("identity", [value], {}, [onnx_name], None, ctx)
            return
        self.values[onnx_name] = value

    def emit(self, op, inputs, attrs, outputs, num_outputs, ctx) -> list[Value]:
        if outputs is None:
            outputs = [""] * (num_outputs or 1)
        names = []
        for o in outputs:
            if o and o not in self.taken:
                self.taken.add(o)
                names.append(o)
            else:
                names.append(self.fresh(o or f"{ctx.name or op}_out"))
        placeholder = TensorType(dtypes.float32, None)
        node = Node(op, list(inputs), [Value(n, placeholder) for n in names], attrs, ctx.name)
        check_node_arity_and_attrs(node, f"{self.source}: {ctx.where}")
        for v, t in zip(node.outputs, infer_node(node)):
            known = self.onnx_types.get(v.name)
            v.type = refine(t, known) if known is not None and types_compatible(t, known) else t
            check_value(v, self.max_tensor_bytes, f"{self.source}: {ctx.where}")
            self.producers[v] = ctx.where
        # a dequantized constant stays a node: fold-qdq reads the integers (fold-constants folds the rest)
        folded = None if op == "dequantize_linear" else try_fold(node, FOLD_MAX_ELEMENTS)
        if folded is not None:  # shape arithmetic and other small constant subgraphs
            for v, data in zip(node.outputs, folded):
                v.data = data
                v.type = v.type.with_shape(data.shape)
                self.graph.constants.append(v)
        else:
            self.graph.nodes.append(node)
        for o, v in zip(outputs, node.outputs):
            if o:
                self.values[o] = v
        return node.outputs

    # ---- the import ------------------------------------------------------------------------
    def check_supported(self) -> None:
        _load_converters()
        known = supported_onnx_ops()
        missing: Counter = Counter()
        first: dict[str, str] = {}
        for n in _all_nodes(self.onnx_graph):
            key = n.op_type if n.domain in DEFAULT_DOMAINS else f"{n.domain}.{n.op_type}"
            if n.domain not in DEFAULT_DOMAINS or n.op_type not in known:
                missing[key] += 1
                first.setdefault(key, n.name or "(unnamed)")
        if missing:
            listing = ", ".join(f"{k} x{c} (first: '{first[k]}')" for k, c in sorted(missing.items()))
            raise UnsupportedError(f"{self.source}: unsupported ops: {listing}")

    def check_names(self) -> None:
        """An ONNX graph is SSA: every name defined once, by an input, an initializer or one node."""
        g, src = self.onnx_graph, self.source
        if not g.output:
            raise PdcError(f"{src}: the graph is empty (no nodes, no outputs)" if not g.node
                           else f"{src}: the graph has no outputs")
        _refuse_duplicates((t.name for t in g.initializer), f"{src}: initializer '{{}}' is defined twice")
        _refuse_duplicates((i.name for i in g.input), f"{src}: input '{{}}' is listed twice")
        _refuse_duplicates((o.name for o in g.output), f"{src}: graph output '{{}}' is listed twice")
        defined = {i.name: "a graph input" for i in g.input}
        defined.update({t.name: "an initializer" for t in g.initializer})
        for n in g.node:
            where = node_where(n)
            if not any(n.output):
                raise PdcError(f"{src}: {where} has no outputs")
            for o in filter(None, n.output):
                if o in defined:
                    raise PdcError(f"{src}: {where} redefines '{o}', already {_defined_as(defined[o])}")
                defined[o] = where
        self.defined_by = defined

    def run(self) -> Graph:
        g = self.onnx_graph
        self.check_supported()
        self.check_names()
        self._collect_onnx_types()
        self.graph_output_names = {o.name for o in g.output}
        for t in g.initializer:
            self._add_initializer(t)
        for t in g.sparse_initializer:
            raise UnsupportedError(f"{self.source}: sparse initializer '{t.values.name}' is not supported")
        for inp in g.input:
            if inp.name in self.values:
                continue  # an initializer listed as an input (older exporters): a constant
            t = type_from_proto(inp.type, f"{self.source}: input '{inp.name}'")
            if t is None:
                raise PdcError(f"{self.source}: input '{inp.name}' has no element type")
            check_shape(t.shape, t.dtype, self.max_tensor_bytes, f"{self.source}: input '{inp.name}'")
            name = self.fresh(inp.name) if inp.name in self.taken else inp.name
            self.taken.add(name)
            v = Value(name, t)
            self.graph.inputs.append(v)
            self.values[inp.name] = v
        self.convert_nodes()
        for o in g.output:
            v = self.lookup(o.name, "graph output")
            declared = type_from_proto(o.type, f"{self.source}: output '{o.name}'")
            if declared is not None and declared.dtype != v.type.dtype:
                source = self.producers.get(v)
                gives = f"{source} gives" if source else "it is"
                raise PdcError(f"{self.source}: graph output '{o.name}' is declared {declared.dtype.name} but "
                               f"{gives} {v.type.dtype.name}")
            if declared is not None and types_compatible(v.type, declared):
                v.type = refine(v.type, declared)
            self.graph.outputs.append(v)
        self.graph.remove_unused_constants()
        return self.graph

    def convert_nodes(self) -> None:
        for n in self.onnx_graph.node:
            CONVERTERS.get(n.op_type, default_convert)(NodeContext(self, n))

    def _collect_onnx_types(self) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model, strict_mode=False)
        except Exception:
            return
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            if vi.type.HasField("tensor_type"):
                try:
                    t = type_from_proto(vi.type, vi.name)
                except PdcError:  # the declaration itself is reported where the value is imported
                    continue
                if t is not None:
                    self.onnx_types[vi.name] = t

    def _add_initializer(self, t: onnx.TensorProto) -> None:
        where = f"{self.source}: initializer '{t.name}'"
        # dims and size first: a hostile header must not make pdc read or allocate terabytes
        check_shape(tuple(t.dims), tensor_dtype(t, where), self.max_tensor_bytes, where)
        if t.data_location == onnx.TensorProto.EXTERNAL:
            load_external(t, self.base_dir, where)
        arr = tensor_to_array(t, where, self.max_tensor_bytes)
        name = self.fresh(t.name)
        v = self.graph.add_constant(name, arr, dtypes.from_onnx(t.data_type))
        self.values[t.name] = v


def _declared(vi: onnx.ValueInfoProto, where: str) -> Optional[TensorType]:
    """A body's input or output type; None where the body leaves it out (ONNX infers it)."""
    return type_from_proto(vi.type, where) if vi.type.WhichOneof("value") is not None else None


def _all_nodes(g: onnx.GraphProto):
    """The graph's nodes and, depth first, those of every body an attribute holds."""
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)


class BodyImporter(OnnxImporter):
    """Imports a control-flow body (an ONNX subgraph) into a closed Graph: the names it reads from
    enclosing scopes become inputs after its own, and `captures` lists the outer values they are,
    in order. Outer constants are copied in while importing, so that shapes fold as in the outer
    graph; at the end every constant of the body becomes a captured input too (bodies hold none),
    which keeps its data (pdc/ir/ops/control_flow.py)."""

    def __init__(self, parent: OnnxImporter, body: onnx.GraphProto, where: str, formal: list):
        self.parent = parent
        self.model = parent.model
        self.onnx_graph = body
        self.source = f"{parent.source}: {where}"
        self.base_dir = parent.base_dir
        self.max_tensor_bytes = parent.max_tensor_bytes
        self.producers, self.defined_by, self.onnx_types = {}, {}, {}
        self.opset = parent.opset
        self.graph = Graph(_symbol(body.name or "body"))
        self.values: dict[str, Value] = {}
        self.taken: set[str] = set()
        self.formal = formal  # per formal input: the type the node passes in (None: the body's own)
        self.captures: list[Value] = []  # outer values read, in the order of the inputs after the formal ones
        self.copied: dict[Value, Value] = {}  # outer constant -> its copy in the body

    def lookup(self, name: str, where: str) -> Value:
        if name in self.values or name in self.defined_by:
            return super().lookup(name, where)
        try:
            outer = self.parent.lookup(name, where)
        except PdcError as e:  # name the body the reading node is in
            raise PdcError(str(e).replace(f"{self.parent.source}: ", f"{self.source}: ", 1)) from None
        if outer.is_const:
            local = self.graph.add_constant(self.fresh(name), outer.data, outer.type.dtype)
            self.copied[local] = outer
        else:
            local = Value(self.fresh(name), outer.type)
            self.captures.append(outer)
            self.graph.inputs.append(local)
        self.values[name] = local
        return local

    def run(self) -> Graph:
        g = self.onnx_graph
        self.check_names()
        self.graph_output_names = {o.name for o in g.output}
        if len(g.input) != len(self.formal):
            raise PdcError(f"{self.source}: takes {len(g.input)} inputs, the node passes {len(self.formal)}")
        for t in g.initializer:
            self._add_initializer(t)
        for inp, given in zip(g.input, self.formal):
            declared = _declared(inp, f"{self.source}: input '{inp.name}'")
            t = declared if given is None else refine(given, declared) if declared is not None and \
                types_compatible(given, declared) else given
            if t is None:
                raise PdcError(f"{self.source}: input '{inp.name}' has no element type")
            v = Value(self.fresh(inp.name), t)
            self.graph.inputs.append(v)  # before any capture: the nodes have not run yet
            self.values[inp.name] = v
        self.convert_nodes()
        for o in g.output:
            v = self.lookup(o.name, "body output")
            declared = _declared(o, f"{self.source}: output '{o.name}'")
            if declared is not None and types_compatible(v.type, declared):
                v.type = refine(v.type, declared)
            self.graph.outputs.append(v)
        self.graph.remove_unused_constants()
        for c in self.graph.constants:  # constants become captured inputs (keeping their data)
            outer = self.copied.get(c) or self.parent.graph.add_constant(self.parent.fresh(c.name), c.data,
                                                                         c.type.dtype)
            self.graph.inputs.append(c)
            self.captures.append(outer)
        self.graph.constants = []
        return self.graph


def load_external(t: onnx.TensorProto, base_dir: str, where: str) -> None:
    """Reads a tensor's external data, refusing locations outside the model's folder."""
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    base = os.path.realpath(base_dir)
    if "\0" in location:
        raise PdcError(f"{where}: external data location '{location}' holds a NUL character")
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", location):
        raise PdcError(f"{where}: external data location '{location}' must be a path relative to the model's folder")
    path = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, path]) != base:
        raise PdcError(f"{where}: external data location '{location}' points outside the model's folder")
    if not os.path.isfile(path):
        raise PdcError(f"{where}: external data file '{location}' not found next to the model")
    offset, length = external_range(info, os.path.getsize(path), where, location)
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise PdcError(f"{where}: external data file '{location}' is truncated")
    t.raw_data = data
    t.data_location = onnx.TensorProto.DEFAULT
    del t.external_data[:]


def external_range(info: dict, file_size: int, where: str, location: str) -> tuple[int, int]:
    """(offset, length) of an external tensor, checked against the file before anything is read."""
    offset = _byte_count(info.get("offset") or "0", "offset", where)
    length = _byte_count(info["length"], "length", where) if info.get("length") else file_size - offset
    if offset > file_size or offset + length > file_size:
        raise PdcError(f"{where}: external data offset {offset} + length {max(length, 0)} is beyond the end of "
                       f"'{location}' ({file_size} bytes)")
    return offset, length


def _byte_count(text: str, key: str, where: str) -> int:
    if not re.fullmatch(r"\d{1,19}", text.strip()):
        raise PdcError(f"{where}: external data {key} '{_clip(text)}' is not a non-negative integer")
    return int(text)


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _refuse_duplicates(names, message: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise PdcError(message.format(name))
        seen.add(name)


def _defined_as(what: str) -> str:
    return what if what.startswith("a") else f"the output of {what}"


def parse_onnx_bytes(data: bytes, source: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError:
        raise PdcError(f"{source}: not a valid ONNX model (truncated or corrupt protobuf)") from None
    if not model.HasField("graph"):
        raise PdcError(f"{source}: not a valid ONNX model (no graph)")
    return model


def _text_fields(model: onnx.ModelProto):
    """(what, value) for every name and string field the importer reads."""
    g = model.graph
    yield "the graph name", g.name
    for o in model.opset_import:
        yield "an opset domain", o.domain
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        yield "a value name", vi.name
        if vi.type.HasField("tensor_type"):
            for d in vi.type.tensor_type.shape.dim:
                yield f"a dim name of '{vi.name}'", d.dim_param
    for t in g.initializer:
        yield "an initializer name", t.name
        for e in t.external_data:
            yield f"the external data of '{t.name}'", e.key
            yield f"the external data of '{t.name}'", e.value
    for i, n in enumerate(g.node):
        for text in (n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)):
            yield f"a name in node #{i}", text


def check_text_fields(model: onnx.ModelProto, source: str) -> None:
    """Protobuf hands back bytes for a string field that is not UTF-8: refuse such a model up front."""
    for what, text in _text_fields(model):
        if not isinstance(text, str):
            raise PdcError(f"{source}: {what} is not valid UTF-8")


def default_domain_version(model: onnx.ModelProto) -> Optional[int]:
    """The opset the model imports for the default (ai.onnx) domain, or None."""
    versions = {o.domain: o.version for o in model.opset_import}
    return versions.get("", versions.get("ai.onnx"))


def upgraded(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """A model of an opset older than pdc reads, brought up to MIN_OPSET by ONNX's version converter."""
    v = default_domain_version(model)
    if v is None or v >= MIN_OPSET:
        return model
    try:
        return onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:  # the converter has no adapter for some op of the model
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = re.sub(r"^\S+\.cc:\d+: ", "", reason)  # the converter's C++ source location
        raise UnsupportedError(f"{source}: opset {v} is older than pdc reads ({MIN_OPSET} and up), and ONNX's "
                               f"version converter could not bring it to opset {MIN_OPSET}: {reason}") from None


def import_onnx(model: onnx.ModelProto, source: str = "<model>", base_dir: str = ".",
                max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Graph:
    check_text_fields(model, source)
    model = expand_function_ops(upgraded(model, source), supported_onnx_ops())
    return OnnxImporter(model, source, base_dir, max_tensor_bytes).run()


def load_onnx(path: str, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Graph:
    with open(path, "rb") as f:
        data = f.read()
    model = parse_onnx_bytes(data, path)
    return import_onnx(model, path, os.path.dirname(os.path.abspath(path)), max_tensor_bytes)
