"""fused_elementwise: a tree of elementwise ops evaluated as one node.

    %y = fused_elementwise(%x, %b) {args=[0, 1, -1], arity=[2, 1], ops=["add", "leaky_relu"],
                                    step_attrs=["", "alpha=0.1"]} : f32[8,16]

The body is a small straight-line program. Step k applies `ops[k]` to `arity[k]` operands taken
in order from the flat list `args`; an operand `i >= 0` is the node's input i, an operand `-j`
is the result of step j-1 (so -1 is the first step's result). The last step's result is the
node's output. `step_attrs` (absent when no step has attributes) holds each step's attributes
in IR attribute syntax (`"alpha=0.1, to=f16"`, empty for none).

Every step is a registered elementwise op and is typed, verified and computed exactly as a
node of that op would be (`component_node` builds that node), so fusing never changes a
result: not the broadcasting, not the dtype of an intermediate value.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import PdcError
from ..graph import Node, Value
from ..registry import Attr, InferContext, REQUIRED, get_op, register_op
from ..types import TensorType, dims_compatible
from .common import broadcast_shapes

OP = "fused_elementwise"


@dataclass
class Step:
    op: str
    args: list[int]  # >= 0: an input of the fused node; < 0: -(k+1) is step k's result
    attrs: dict


def component_node(op: str, types: list, attrs: dict, name: str, data: list | None = None) -> Node:
    """A detached node of `op` over values of the given types (optionally with constant data),
    for running that op's schema check, infer and reference on behalf of a fused or layout op."""
    data = data or [None] * len(types)
    ins = [None if t is None else Value(f"{name}.in{i}", t, d) for i, (t, d) in enumerate(zip(types, data))]
    return Node(op, ins, [Value(f"{name}.out", None)], dict(attrs), name)


def component_infer(ctx: InferContext, op: str, types: list, attrs: dict, name: str, data=None) -> list:
    """Checks and infers a component node; its errors are reported against the fused node."""
    from ..verify import check_node_schema, infer_node  # verify imports the registry: import lazily
    node = component_node(op, types, attrs, name, data)
    try:
        check_node_schema(node)
        return infer_node(node)
    except PdcError as e:
        ctx.fail(f"{name} ({op}): {str(e).removeprefix(node.describe() + ': ')}")


# ---- encoding of the program in attributes --------------------------------------------------
def format_step_attrs(attrs: dict) -> str:
    from ..printer import format_attr
    return ", ".join(f"{k}={format_attr(attrs[k])}" for k in sorted(attrs))


@lru_cache(maxsize=1024)
def _parse_step_attrs_cached(text: str) -> tuple:
    from ..parser import parse_graph  # the IR grammar parses the attribute literals
    g = parse_graph(f"graph @s() -> () {{\n  %s = s() {{{text}}} : f32[]\n}}\n", source="step_attrs")
    return tuple(g.nodes[0].attrs.items())


def parse_step_attrs(text: str) -> dict:
    if not text.strip():
        return {}
    return {k: (list(v) if isinstance(v, list) else v) for k, v in _parse_step_attrs_cached(text)}


def encode_program(steps: list[Step]) -> dict:
    """The attributes of a fused_elementwise node running `steps`."""
    attrs = {"ops": [s.op for s in steps], "arity": [len(s.args) for s in steps],
             "args": [a for s in steps for a in s.args]}
    if any(s.attrs for s in steps):
        attrs["step_attrs"] = [format_step_attrs(s.attrs) for s in steps]
    return attrs


def decode_program(attrs: dict) -> list[Step]:
    """The steps of a fused_elementwise node (raises ValueError on inconsistent attributes)."""
    ops, arity, args = attrs["ops"], attrs["arity"], attrs["args"]
    texts = attrs.get("step_attrs") or [""] * len(ops)
    if not (len(ops) == len(arity) == len(texts)):
        raise ValueError(f"ops, arity and step_attrs must have one entry per step, "
                         f"got {len(ops)}, {len(arity)}, {len(texts)}")
    if any(a < 0 for a in arity) or sum(arity) != len(args):
        raise ValueError(f"arity {arity} does not split the {len(args)} args")
    steps, pos = [], 0
    for op, n, text in zip(ops, arity, texts):
        try:
            step_attrs = parse_step_attrs(text)
        except PdcError as e:
            raise ValueError(f"step attributes {text!r} do not parse: {e}") from None
        steps.append(Step(op, list(args[pos:pos + n]), step_attrs))
        pos += n
    return steps


# ---- the op -----------------------------------------------------------------------------------
def _program(ctx: InferContext) -> list[Step]:
    try:
        steps = decode_program(ctx.attrs)
    except ValueError as e:
        ctx.fail(str(e))
    if not steps:
        ctx.fail("the program has no steps")
    n_in = len(ctx.types)
    used_inputs, used_results = set(), set()
    for k, s in enumerate(steps):
        try:
            opdef = get_op(s.op)
        except PdcError:
            ctx.fail(f"step {k}: unknown op '{s.op}'")
        if not opdef.elementwise or s.op == OP:
            ctx.fail(f"step {k}: '{s.op}' is not an elementwise op")
        for a in s.args:
            if a >= n_in or -a - 1 >= k:
                ctx.fail(f"step {k} ({s.op}): operand {a} refers to "
                         + (f"input {a}, but the node has {n_in}" if a >= 0 else f"step {-a - 1}, not an earlier one"))
            (used_inputs if a >= 0 else used_results).add(a if a >= 0 else -a - 1)
    unused = sorted(set(range(n_in)) - used_inputs)
    if unused:
        ctx.fail(f"input {unused[0]} is not used by any step")
    dead = sorted(set(range(len(steps) - 1)) - used_results)
    if dead:
        ctx.fail(f"the result of step {dead[0]} ({steps[dead[0]].op}) is never used")
    return steps


def step_types(ctx: InferContext, steps: list[Step]) -> list[TensorType]:
    """The type of every step's result, each inferred (and checked) by its own op."""
    types, data = ctx.types, [ctx.const(i) for i in range(len(ctx.types))]
    results: list[TensorType] = []
    for k, s in enumerate(steps):
        ts = [types[a] if a >= 0 else results[-a - 1] for a in s.args]
        ds = [data[a] if a >= 0 else None for a in s.args]
        results.append(component_infer(ctx, s.op, ts, s.attrs, f"step {k}", ds)[0])
    return results


def _infer(ctx: InferContext):
    steps = _program(ctx)
    out = step_types(ctx, steps)[-1]
    if any(t is None for t in ctx.types):
        ctx.fail("fused_elementwise takes no absent inputs")
    expected = broadcast_shapes([t.shape for t in ctx.types], ctx)
    if out.shape is not None and expected is not None and not (
            len(out.shape) == len(expected) and all(dims_compatible(a, b) for a, b in zip(out.shape, expected))):
        ctx.fail(f"the result {out} does not have the broadcast shape of the inputs {list(expected)}")
    return [out]


def _verify(ctx: InferContext):
    _program(ctx)


def _reference(inputs, attrs):
    from ..dtypes import from_numpy
    from ..interpreter import run_node
    from ..verify import infer_node
    results = []
    for k, s in enumerate(decode_program(attrs)):
        args = [inputs[a] if a >= 0 else results[-a - 1] for a in s.args]
        node = component_node(s.op, [TensorType(from_numpy(x.dtype), x.shape) for x in args], s.attrs, f"step {k}")
        node.outputs[0].type = infer_node(node)[0]
        results.append(run_node(node, args)[0])  # computed and cast exactly as the unfused node
    return results[-1]


register_op(OP, ["inputs*"], ["output"], infer=_infer, reference=_reference, verify=_verify, elementwise=True,
            attrs={"ops": Attr("strings", REQUIRED), "arity": Attr("ints", REQUIRED), "args": Attr("ints", REQUIRED),
                   "step_attrs": Attr("strings", None)},
            doc="A tree of elementwise ops as one node; see pdc/ir/ops/fused_elementwise.py for the encoding.")
