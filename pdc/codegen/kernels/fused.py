"""fused_elementwise: the whole step program evaluated per output element, in one loop.

Each step is computed by the expression builder of its op (pdc/codegen/kernels/elementwise.py),
exactly as that op's own kernel computes it: its operands are loaded and converted the same way,
and its result is stored in the step's dtype (so a float16 intermediate is rounded as the unfused
graph rounds it). The program is evaluated at every output index; an input reads its element
under numpy broadcasting, and a step result is a scalar of that iteration.
"""
from __future__ import annotations

from ...ir.graph import Node
from ...ir.ops.fused_elementwise import component_node, decode_program
from ...ir.registry import get_op, with_defaults
from ...ir.types import TensorType
from .. import kir
from ..context import KernelContext
from . import kernel
from ._kir import io, prints_kir, render
from .elementwise import EXPR_BUILDERS, OPERAND_NAMES, operand
from .loops import broadcast_nest

NAMES = OPERAND_NAMES


class StepContext:
    """What an expression builder sees of one step: a KernelContext for a detached node of the
    step's op over the step's operand types."""

    def __init__(self, parent: KernelContext, node: Node, index: int):
        self.parent, self.node, self.index = parent, node, index
        self.config = parent.config
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
@prints_kir
def fused_elementwise(ctx: KernelContext) -> str:
    steps = decode_program(ctx.attrs)
    nodes = step_nodes(ctx)
    built = []
    for k, (s, node) in enumerate(zip(steps, nodes)):
        builder = EXPR_BUILDERS.get(s.op)
        if builder is None:
            ctx.fail(f"step {k}: no C expression for op '{s.op}'")
        e = builder(StepContext(ctx, node, k))
        if len(e.operands) > len(NAMES):
            ctx.fail(f"step {k} ({s.op}): {len(e.operands)} operands, at most {len(NAMES)} are supported")
        built.append((s, node, e))
    last = len(nodes) - 1
    if nodes[last].outputs[0].type.dtype != ctx.outputs[0].dtype:
        ctx.fail(f"the last step gives {nodes[last].outputs[0].type.dtype}, the node {ctx.outputs[0].dtype}")
    ins, outs = io(ctx)

    def body(at, o):
        stmts, results = [], []
        for k, (s, node, e) in enumerate(built):
            def source(j: int, s=s) -> kir.Expr:
                a = s.args[j]
                return ins[a][at[a]] if a >= 0 else results[-a - 1]

            # scalar operands (clip's bounds) are read per element here, from their broadcast index
            scalars = [kir.Declare(v, kir.cast(v.dtype, source(j))) for v, j in e.scalars]
            loads = [kir.Declare(operand(n, e.ct_of(j)), kir.cast(e.ct_of(j), source(j)))
                     for n, j in enumerate(e.operands)]
            r = kir.Var(f"r{k}", node.outputs[0].type.dtype)
            # stored in the step's dtype: a float16 intermediate is rounded as the unfused graph rounds it
            stmts += [kir.Declare(r, const=False),
                      kir.block(kir.Comment(s.op), scalars, loads, kir.Assign(r, kir.cast(r.dtype, e.expr)),
                                scoped=True)]
            results.append(r)
        return stmts + [kir.store(outs[0], o, results[last])]
    return render(ctx, broadcast_nest(ctx.outputs[0].shape, [t.shape for t in ctx.inputs], body))
