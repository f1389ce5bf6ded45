"""If, Loop and Scan: their bodies become closed subgraphs (onnx_import.BodyImporter), the outer
values they read explicit inputs of the node (pdc/ir/ops/control_flow.py)."""
from __future__ import annotations

from ...ir import dtypes
from ...ir.graph import Graph, Value
from ...ir.ops.control_flow import share_captures
from ...ir.types import TensorType
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
        ctx.unsupported("Scan-8 (with a batch axis) is not supported; opset 9 and later are")
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
