"""Paddle's `if` and `while` (PIR) as pdc's if and loop (pdc/ir/ops/control_flow.py).

A region's ops are lowered into a closed body graph by a BodyLowering: values the body reads
from outside become captured inputs (outer constants are copied in while lowering, so that
shapes fold as outside, and become captured inputs at the end). `while(cond, carried...)` runs its
body while cond holds; the body's arguments are the carried values and its yield gives the next
condition and carried values: a pdc loop without a trip count. `if(cond)` yields its results
from one of two regions; a condition known at import keeps only the region it picks.
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from ...ir.graph import Graph, Value
from ...ir.ops.control_flow import share_captures
from ...ir.types import TensorType
from .lower import Lowering, OpContext, converter
from .program import Block


class _Scope(dict):
    """A body's environment: a key it does not define resolves through the enclosing lowering
    and is captured (BodyLowering.capture)."""

    def __init__(self, body: "BodyLowering"):
        super().__init__()
        self.body = body

    def get(self, key, default=None):
        if key in self:
            return self[key]
        outer = self.body.parent.env.get(key, default)
        if isinstance(outer, Value):
            self[key] = self.body.capture(outer)
            return self[key]
        return outer


class BodyLowering(Lowering):
    def __init__(self, parent: Lowering, block: Block, where: str, formal: list[Value]):
        super().__init__(parent.program, parent.arrays, "body")
        self.parent = parent
        self.block = block
        self.where = where
        self.env = _Scope(self)
        self.graph.inputs = list(formal)
        self.taken = {v.name for v in formal}
        self.captures: list[Value] = []  # outer values, in the order of the inputs after the formal ones
        self.copied: dict[Value, Value] = {}  # body constant -> the outer constant it copies

    def capture(self, outer: Value) -> Value:
        if outer.data is not None:
            local = self.graph.add_constant(self.fresh(outer.name), outer.data, outer.type.dtype)
            self.copied[local] = outer
            return local
        local = Value(self.fresh(outer.name), outer.type)
        self.graph.inputs.append(local)
        self.captures.append(outer)
        return local

    def lower_body(self) -> Graph:
        for op in self.block.ops:
            self.lower(op)
        self.graph.outputs = [self.result(key, f"{self.where}: body result {k}")
                              for k, key in enumerate(self.block.yields)]
        self.graph.remove_unused_constants()
        for c in self.graph.constants:  # a body holds no constants: captured inputs keeping their data
            outer = self.copied.get(c) or self.parent.constant(c.data, c.type.dtype, c.name)
            self.graph.inputs.append(c)
            self.captures.append(outer)
        self.graph.constants = []
        return self.graph


def _lower_block(cx: OpContext, block: Block, formal: list[Value], what: str) -> tuple[Graph, list[Value]]:
    body = BodyLowering(cx.lowering, block, f"{cx.where} {what}", formal)
    return body.lower_body(), body.captures


@converter("while")
def while_(cx: OpContext):
    (block,) = cx.op.regions
    cond, carried = cx.value(0), [cx.value(i) for i in range(1, len(cx.op.operands))]
    if len(block.args) != len(carried) or len(block.yields) != len(carried) + 1:
        cx.fail(f"the body takes {len(block.args)} values and yields {len(block.yields)}; the loop carries "
                f"{len(carried)} (and the condition)")
    formal = [Value("iteration", TensorType(dtypes.int64, ())), Value("cond_in", TensorType(dtypes.bool_, ()))]
    for j, ((key, declared), v) in enumerate(zip(block.args, carried)):
        formal.append(Value(f"carried{j}", declared if isinstance(declared, TensorType) else v.type))
    body = BodyLowering(cx.lowering, block, f"{cx.where} body", formal)
    for (key, _), v in zip(block.args, formal[2:]):
        body.env[key] = v
    graph = body.lower_body()
    return cx.emit("loop", [None, cond] + carried + body.captures, {"body": graph, "captures": len(body.captures)},
                   n=len(carried))


@converter("if")
def if_(cx: OpContext):
    if len(cx.op.regions) != 2:
        cx.fail(f"an if needs two regions, got {len(cx.op.regions)}")
    cond = cx.value(0)
    if cond.data is not None and cond.data.size == 1:  # known at import: keep the region it picks
        block = cx.op.regions[0 if bool(np.asarray(cond.data).reshape(-1)[0]) else 1]
        for op in block.ops:
            cx.lowering.lower(op)
        return [cx.lowering.env.get(key) for key in block.yields]
    branches = [_lower_block(cx, b, [], what) for b, what in zip(cx.op.regions, ("true branch", "false branch"))]
    caps = share_captures(branches)
    n = len(branches[0][0].outputs)
    return cx.emit("if", [cond] + caps, {"then_branch": branches[0][0], "else_branch": branches[1][0]}, n=n)
