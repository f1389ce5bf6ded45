"""If, Loop and Scan: their bodies become closed subgraphs (onnx_import.BodyImporter), the outer
values they read explicit inputs of the node (pdc/ir/ops/control_flow.py). Scan-8 (a batch axis)
becomes a scan over the batch whose body scans each item."""
from __future__ import annotations

from ...ir import dtypes
from ...ir.graph import Graph, Node, Value
from ...ir.ops.control_flow import share_captures
from ...ir.types import TensorType
from ...ir.verify import infer_node
from ..onnx_import import CONVERTERS, BodyImporter, NodeContext, converter, default_convert


def import_body(ctx: NodeContext, key: str, formal: list) -> tuple[Graph, list[Value]]:
    """The body in attribute `key` as a Graph (its formal inputs typed by `formal` where the body
    leaves them open) and the outer values it captures, which follow the formal inputs."""
    body = ctx.attrs.get(key)
    if body is None:
        ctx.fail(f"attribute '{key}' is required")
    sub = BodyImporter(ctx.importer, body, f"{ctx.where} {key}", formal)
    return sub.run(), sub.captures


def inline_branch(ctx: NodeContext, branch) -> None:
    """A branch whose condition is known at import (often a test on shapes) replaces the If: its
    nodes are imported into the enclosing graph (the other branch, never run, may not even type)."""
    importer = ctx.importer
    for t in branch.initializer:
        importer._add_initializer(t)
    for n in branch.node:
        sub = NodeContext(importer, n)
        CONVERTERS.get(n.op_type, default_convert)(sub)
    if len(branch.output) != len(ctx.output_names):
        ctx.fail(f"the branch taken gives {len(branch.output)} outputs, the node has {len(ctx.output_names)}")
    for name, o in zip(ctx.output_names, branch.output):
        ctx.bind(name, importer.lookup(o.name, f"{ctx.where}: branch output"))


@converter("If")
def convert_if(ctx: NodeContext) -> None:
    for key in ("then_branch", "else_branch"):
        if key not in ctx.attrs:
            ctx.fail(f"attribute '{key}' is required")
    cond = ctx.const_input(0)
    if cond is not None and cond.size == 1:
        return inline_branch(ctx, ctx.attrs["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"])
    (then, then_caps), (other, other_caps) = (import_body(ctx, k, []) for k in ("then_branch", "else_branch"))
    caps = share_captures([(then, then_caps), (other, other_caps)])
    ctx.emit_node_outputs("if", [ctx.input(0)] + caps, {"then_branch": then, "else_branch": other})


@converter("Loop")
def convert_loop(ctx: NodeContext) -> None:
    carried = ctx.inputs[2:]
    formal = [TensorType(dtypes.int64, ()), TensorType(dtypes.bool_, ())] + [v.type for v in carried]
    body, caps = import_body(ctx, "body", formal)
    ctx.emit_node_outputs("loop", [ctx.input(0), ctx.input(1)] + carried + caps,
                          {"body": body, "captures": len(caps)})


@converter("Scan")
def convert_scan(ctx: NodeContext) -> None:
    if ctx.opset < 9:
        return convert_scan8(ctx)
    m = ctx.attrs.get("num_scan_inputs")
    if not isinstance(m, int) or not 1 <= m <= len(ctx.inputs):
        ctx.fail(f"num_scan_inputs must be between 1 and the {len(ctx.inputs)} inputs, got {m!r}")
    n = len(ctx.inputs) - m
    axes = ctx.attrs.get("scan_input_axes") or [0] * m
    formal = [v.type for v in ctx.inputs[:n]]
    for v, a in zip(ctx.inputs[n:], axes):
        t = v.type
        if t.shape is None or not -len(t.shape) <= a < len(t.shape):
            formal.append(TensorType(t.dtype, None))
            continue
        a %= len(t.shape)
        formal.append(TensorType(t.dtype, t.shape[:a] + t.shape[a + 1:]))
    body, caps = import_body(ctx, "body", formal)
    attrs = {k: ctx.attrs[k] for k in ("num_scan_inputs", "scan_input_axes", "scan_input_directions",
                                       "scan_output_axes", "scan_output_directions") if k in ctx.attrs}
    ctx.emit_node_outputs("scan", ctx.inputs + caps, {**attrs, "body": body, "captures": len(caps)})


def convert_scan8(ctx: NodeContext) -> None:
    """Scan-8: every input and output has a batch axis first (scan inputs: batch, then sequence),
    each batch item scanned on its own. It becomes a scan over the batch axis (no states: every
    input sliced, every output stacked) whose body is a Scan-9 over the item's sequence."""
    if ctx.inputs and ctx.inputs[0] is not None:
        ctx.unsupported("Scan-8 with sequence_lens (a length per batch item) is not supported")
    values = ctx.inputs[1:]
    m = ctx.attrs.get("num_scan_inputs")
    if not isinstance(m, int) or not 1 <= m <= len(values):
        ctx.fail(f"num_scan_inputs must be between 1 and the {len(values)} inputs, got {m!r}")
    n = len(values) - m
    item = [_without_first(v.type, ctx) for v in values]  # one batch item
    body, caps = import_body(ctx, "body", item[:n] + [_without_first(t, ctx) for t in item[n:]])
    slices = [Value(f"item{i}", t) for i, t in enumerate(item)] + [Value(f"capture{i}", v.type)
                                                                   for i, v in enumerate(caps)]
    attrs = {"num_scan_inputs": m, "body": body, "captures": len(caps)}
    if ctx.attrs.get("directions"):
        attrs["scan_input_directions"] = list(ctx.attrs["directions"])
    inner = Node("scan", slices, [Value(f"out{i}", None) for i in range(len(body.outputs))], attrs)
    for v, t in zip(inner.outputs, infer_node(inner)):
        v.type = t
    batch = Graph("scan8_item", slices, inner.outputs, [inner])
    ctx.emit_node_outputs("scan", values + caps, {"num_scan_inputs": len(values), "body": batch,
                                                   "captures": len(caps)})


def _without_first(t: TensorType, ctx: NodeContext) -> TensorType:
    if t.shape is None:
        return TensorType(t.dtype, None)
    if not t.shape:
        ctx.fail(f"Scan-8's inputs have a batch axis first; got a scalar {t}")
    return TensorType(t.dtype, t.shape[1:])
