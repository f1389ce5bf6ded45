"""fused_elementwise: the whole step program evaluated per output element, in one loop.

Each step is computed by the expression builder of its op (pdc/codegen/kernels/elementwise.py),
exactly as that op's own kernel computes it: its operands are loaded and converted the same way,
and its result is stored in the step's dtype (so a float16 intermediate is rounded as the unfused
graph rounds it). The program is evaluated at every output index; an input reads its element
under numpy broadcasting, and a step result is a scalar of that iteration.
"""
from __future__ import annotations

import re

from ...ir.graph import Node
from ...ir.ops.fused_elementwise import component_node, decode_program
from ...ir.registry import get_op, with_defaults
from ...ir.types import TensorType
from ..context import KernelContext
from . import kernel
from .elementwise import EXPR_BUILDERS, OPERAND_NAMES
from .loops import broadcast_loop

NAMES = OPERAND_NAMES


class StepContext:
    """What an expression builder sees of one step: a KernelContext for a detached node of the
    step's op over the step's operand types."""

    def __init__(self, parent: KernelContext, node: Node, index: int):
        self.parent, self.node, self.index = parent, node, index
        self.target = parent.target
        self.attrs = node.attrs
        self.inputs: list[TensorType] = [v.type for v in node.inputs]
        self.outputs: list[TensorType] = [v.type for v in node.outputs]

    def has_input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    ctype = staticmethod(KernelContext.ctype)
    compute_ctype = staticmethod(KernelContext.compute_ctype)
    load = staticmethod(KernelContext.load)
    store = staticmethod(KernelContext.store)

    def fail(self, msg: str):
        self.parent.fail(f"step {self.index} ({self.node.op}): {msg}")


def step_nodes(ctx: KernelContext) -> list[Node]:
    """One typed, detached node per step (its inputs typed by the fused inputs or earlier results)."""
    from ...ir.verify import infer_node  # verify imports the registry: import lazily
    try:
        steps = decode_program(ctx.attrs)
    except ValueError as e:
        ctx.fail(str(e))
    nodes: list[Node] = []
    for k, s in enumerate(steps):
        types = [ctx.inputs[a] if a >= 0 else nodes[-a - 1].outputs[0].type for a in s.args]
        node = component_node(s.op, types, with_defaults(get_op(s.op), s.attrs), f"step {k}")
        node.outputs[0].type = infer_node(node)[0]
        nodes.append(node)
    return nodes


@kernel("fused_elementwise")
def fused_elementwise(ctx: KernelContext) -> str:
    steps = decode_program(ctx.attrs)
    nodes = step_nodes(ctx)
    lines = []
    for k, (s, node) in enumerate(zip(steps, nodes)):
        builder = EXPR_BUILDERS.get(s.op)
        if builder is None:
            ctx.fail(f"step {k}: no C expression for op '{s.op}'")
        e = builder(StepContext(ctx, node, k))
        if len(e.operands) > len(NAMES):
            ctx.fail(f"step {k} ({s.op}): {len(e.operands)} operands, at most {len(NAMES)} are supported")

        def source(j: int, s=s) -> str:
            a = s.args[j]
            return f"in{a}[i{a}]" if a >= 0 else f"r{-a - 1}"

        def dtype_of(j: int, s=s, node=node):
            return node.inputs[j].type.dtype

        decls = [f"const {e.ct_of(j)} {NAMES[n]} = ({e.ct_of(j)}){ctx.load(dtype_of(j), source(j))};"
                 for n, j in enumerate(e.operands)]
        # a prelude reads scalar operands once (clip's bounds, as inK[0]): here they are read per element
        prelude = [re.sub(r"\bin(\d+)\[0\]", lambda m: source(int(m.group(1))), p.strip()) for p in e.prelude]
        out_t = node.outputs[0].type
        lines.append(f"{ctx.ctype(out_t.dtype)} r{k}; {{ /* {s.op} */ {' '.join(prelude + decls)} "
                     f"r{k} = {ctx.store(out_t.dtype, e.expr)}; }}")
    last = len(nodes) - 1
    if nodes[last].outputs[0].type.dtype != ctx.outputs[0].dtype:
        ctx.fail(f"the last step gives {nodes[last].outputs[0].type.dtype}, the node {ctx.outputs[0].dtype}")
    shapes = [t.shape for t in ctx.inputs]
    flat = all(tuple(sh) == tuple(ctx.outputs[0].shape) for sh in shapes)
    pad = "\n" + "    " * (2 if flat else len(ctx.outputs[0].shape) + 1)
    body = pad.join(lines + [f"out0[o] = r{last};"])
    return broadcast_loop(ctx.outputs[0].shape, shapes, body)
