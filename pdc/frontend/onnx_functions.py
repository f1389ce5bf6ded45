"""ONNX ops that pdc has no converter for but ONNX defines as a function of other ops (a function
body in the op's schema, or one built from the node and its input types, as for
ai.onnx.preview.FlexAttention): each such node is replaced by its body before import.

The body's formal inputs and outputs become the node's actual ones, its internal values get names
of their own (prefixed by the node's), attributes that refer to the node's attributes
(ref_attr_name) take the node's values (or are dropped, leaving the op's default), and the opsets
the body is written in are added to the model. Bodies may use further function ops: expansion
repeats up to MAX_DEPTH levels.
"""
from __future__ import annotations

from typing import Optional

import onnx
from onnx import defs, helper, shape_inference

MAX_DEPTH = 4
DEFAULT_DOMAINS = ("", "ai.onnx")


def expand_function_ops(model: onnx.ModelProto, supported: set[str]) -> onnx.ModelProto:
    """model with every top-level node that pdc does not support but ONNX defines as a function
    replaced by the function's body (model itself where there is none)."""
    for _ in range(MAX_DEPTH):
        if not any(_schema(model, n) is not None for n in model.graph.node if not _known(n, supported)):
            return model
        model = _expand_once(model, supported)
    return model


def _known(node: onnx.NodeProto, supported: set[str]) -> bool:
    return node.domain in DEFAULT_DOMAINS and node.op_type in supported


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}


def _schema(model: onnx.ModelProto, node: onnx.NodeProto):
    """The node's schema at the model's opset of its domain, where it defines the op as a function."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    version = _opsets(model).get(domain)
    if version is None:
        return None
    try:
        schema = defs.get_schema(node.op_type, version, domain)
    except defs.SchemaError:
        return None
    return schema if schema.has_function or schema.has_context_dependent_function else None


def _body(model: onnx.ModelProto, node: onnx.NodeProto, schema, types: dict) -> Optional[onnx.FunctionProto]:
    """The function body of the node (its schema: _schema's) for the model's default-domain opset:
    the newest one written for that opset or an older one (None where all are newer); a
    context-dependent one is built from the node and its inputs' types (None where a type is not
    known)."""
    target = _opsets(model).get("", 0)
    if schema.has_function:
        versions = [v for v in schema.function_opset_versions if v <= target]
        return schema.get_function_with_opset_version(max(versions)) if versions else None
    versions = [v for v in schema.context_dependent_function_opset_versions if v <= target]
    if not versions or any(name and name not in types for name in node.input):
        return None
    inputs = [types[name].SerializeToString() if name else onnx.TypeProto().SerializeToString()
              for name in node.input]
    body = schema.get_context_dependent_function_with_opset_version(max(versions), node.SerializeToString(),
                                                                    inputs)
    return onnx.FunctionProto.FromString(body) if body else None


def _value_types(model: onnx.ModelProto) -> dict:
    inferred = shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type for v in (*g.input, *g.value_info, *g.output)}
    for init in g.initializer:
        types.setdefault(init.name, helper.make_tensor_type_proto(init.data_type, list(init.dims)))
    return types


def _expand_once(model: onnx.ModelProto, supported: set[str]) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the caller's model stays as it was
    types = _value_types(model)
    nodes, opsets = [], _opsets(model)
    g = model.graph
    taken = {v.name for v in (*g.input, *g.output, *g.initializer)} | {
        name for n in g.node for name in (*n.input, *n.output)}
    for k, node in enumerate(model.graph.node):
        schema = None if _known(node, supported) else _schema(model, node)
        body = None if schema is None else _body(model, node, schema, types)
        if body is None or not body.node:
            nodes.append(node)
            continue
        nodes += _inlined(node, body, f"{node.name or node.op_type}_{k}", taken)
        for o in body.opset_import:  # the model's own versions stay: the body is written for them
            opsets.setdefault("" if o.domain == "ai.onnx" else o.domain, o.version)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
    return model


def _inlined(node: onnx.NodeProto, body: onnx.FunctionProto, prefix: str, taken: set) -> list:
    """The body's nodes with the node's values in place of the formal ones."""
    names = {formal: actual for formal, actual in zip(body.input, node.input)}
    names.update({formal: "" for formal in body.input[len(node.input):]})
    names.update({formal: actual for formal, actual in zip(body.output, node.output)})

    def rename(name: str) -> str:
        if name not in names:
            fresh, i = f"{prefix}__{name}", 0
            while fresh in taken:
                i += 1
                fresh = f"{prefix}__{name}_{i}"
            taken.add(fresh)
            names[name] = fresh
        return names[name]

    attrs = {a.name: a for a in node.attribute}
    out = []
    for fn in body.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(fn)
        copy.input[:] = [rename(n) if n else "" for n in fn.input]
        copy.output[:] = [rename(n) if n else "" for n in fn.output]
        copy.name = f"{prefix}__{fn.name or fn.op_type}_{len(out)}"
        del copy.attribute[:]
        for a in fn.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in attrs:  # the node's value, under the body node's attribute name
                    given = onnx.AttributeProto()
                    given.CopyFrom(attrs[a.ref_attr_name])
                    given.name = a.name
                    copy.attribute.append(given)
                continue  # not given: the op's default
            if a.type == onnx.AttributeProto.GRAPH:
                a = _renamed_graph_attr(a, names)
            copy.attribute.append(a)
        out.append(copy)
    return out


def _renamed_graph_attr(attr: onnx.AttributeProto, names: dict) -> onnx.AttributeProto:
    """A subgraph attribute of a body node whose outer reads refer to the body's renamed values."""
    out = onnx.AttributeProto()
    out.CopyFrom(attr)
    inner = {v.name for v in (*out.g.input, *out.g.initializer)} | {o for n in out.g.node for o in n.output}
    for n in out.g.node:
        n.input[:] = [names.get(i, i) if i and i not in inner else i for i in n.input]
    return out
