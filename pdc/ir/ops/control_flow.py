"""Control flow: If, Loop and Scan, whose bodies are subgraph attributes (the `graph` kind).

A body is a closed graph: it reads nothing but its inputs. What an ONNX body reads from the
enclosing scope (outer values, constants) the node passes in explicitly, as its last `captures`
inputs, which the body takes as its last inputs, in the same order. So a pass that looks only at
the outer graph sees every value a body uses. A body input that a constant of the enclosing graph
is passed to carries that constant's data (as the inputs of a node do), so that shapes computed
from it inside the body fold as they would outside (shapes.reinfer re-attaches it).

- if(cond, captures...) {then_branch, else_branch}: both branches take the captures and give the
  node's outputs; where their shapes differ, the dims that differ are unknown ("?").
- loop(M, cond, carried..., captures...) {body, captures=C}: as ONNX Loop. The body takes
  (iteration number i64[], condition bool[], carried..., captures...) and gives (condition,
  carried..., scanned...); the node gives the final carried values, then each scanned value of
  every iteration stacked on a new first axis.
- scan(states..., scan inputs..., captures...) {body, num_scan_inputs, the axes and directions,
  captures=C}: as ONNX Scan (opset 9 and later).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..graph import Graph, Node, Value
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import normalize_axis


def merge_types(a: TensorType, b: TensorType) -> TensorType:
    """A type holding both: dims that differ become unknown, ranks that differ an unknown shape."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return TensorType(a.dtype, None)
    return TensorType(a.dtype, tuple(x if x == y else UNKNOWN for x, y in zip(a.shape, b.shape)))


def _check_inputs(ctx: InferContext, body: Graph, what: str, given: list) -> None:
    """The body's inputs against the types the node passes in (None: the body fixes the type)."""
    if len(body.inputs) != len(given):
        ctx.fail(f"{what} takes {len(body.inputs)} inputs, the node passes {len(given)}")
    for v, t in zip(body.inputs, given):
        if t is not None and v.type.dtype != t.dtype:
            ctx.fail(f"{what} input %{v.name} is {v.type.dtype}, the node passes {t.dtype}")


def _check_flag(ctx: InferContext, t: TensorType, what: str) -> None:
    if t.dtype is not dtypes.bool_ or (t.numel is not None and t.numel != 1):
        ctx.fail(f"{what} must be one bool, got {t}")


def share_captures(branches: list) -> list:
    """The captures of all branches ([(Graph, its captured outer values)]), each once, in order;
    every branch's inputs are rearranged to take all of them (an unused input where a branch
    does not read one), as an if's branches must."""
    caps = list(dict.fromkeys(c for _, own in branches for c in own))
    for g, own in branches:
        mine, taken = dict(zip(own, g.inputs)), g.value_names()
        for c in caps:
            if c not in mine:
                mine[c] = Value(g.fresh_name("unused", taken), c.type)
                taken.add(mine[c].name)
        g.inputs = [mine[c] for c in caps]
    return caps


def bind_constant_captures(node: Node) -> Node:
    """The control-flow node with its captured inputs that are constants made constants of its
    bodies (copied) instead: the form code generation takes, where a body's kernels pack them at
    compile time and its passes fold through them. (A body that holds constants is not written to
    IR files, whose weights are the outer graph's.)"""
    start = 1 if node.op == "if" else len(node.inputs) - node.attrs.get("captures", 0)
    bound = [i for i in range(start, len(node.inputs)) if node.inputs[i] is not None and node.inputs[i].is_const]
    if not bound:
        return node
    attrs = dict(node.attrs)
    for key, body in node.attrs.items():
        if not isinstance(body, Graph):
            continue
        g = body.copy()
        shift = len(node.inputs) - len(g.inputs)  # node input i is body input i - shift
        fixed = [g.inputs[i - shift] for i in bound]
        for v, i in zip(fixed, bound):
            v.data = node.inputs[i].data
        g.inputs = [v for v in g.inputs if not any(v is f for f in fixed)]
        g.constants = g.constants + fixed
        attrs[key] = g
    if "captures" in attrs:
        attrs["captures"] -= len(bound)
    return Node(node.op, [v for i, v in enumerate(node.inputs) if i not in bound], node.outputs, attrs, node.name)


def run_body(body: Graph, args: list) -> list[np.ndarray]:
    """The body's outputs, in order, for these inputs."""
    from ..interpreter import run_graph  # the interpreter imports the registry: import lazily
    res = run_graph(body, {v.name: a for v, a in zip(body.inputs, args)})
    return [res[v.name] for v in body.outputs]


# ---- If ---------------------------------------------------------------------------------------
def _if_infer(ctx: InferContext):
    _check_flag(ctx, ctx.types[0], "cond")
    then, other = ctx.attrs["then_branch"], ctx.attrs["else_branch"]
    captures = ctx.types[1:]
    for what, br in (("then_branch", then), ("else_branch", other)):
        _check_inputs(ctx, br, what, captures)
        if len(br.outputs) != ctx.num_outputs:
            ctx.fail(f"{what} gives {len(br.outputs)} outputs, the node has {ctx.num_outputs}")
    out = []
    for i, (a, b) in enumerate(zip(then.outputs, other.outputs)):
        if a.type.dtype != b.type.dtype:
            ctx.fail(f"output {i} is {a.type.dtype} in then_branch and {b.type.dtype} in else_branch")
        out.append(merge_types(a.type, b.type))
    return out


def _if_reference(inputs, attrs):
    branch = attrs["then_branch"] if bool(np.asarray(inputs[0]).reshape(-1)[0]) else attrs["else_branch"]
    return run_body(branch, inputs[1:])


def _passed(values) -> list:
    """(type, data) of node inputs a body takes: a captured constant's data goes with it."""
    return [(v.type, v.data) for v in values]


def _if_bodies(node) -> dict:
    passed = _passed(node.inputs[1:])
    return {"then_branch": passed, "else_branch": passed}


register_op("if", ["cond", "captures*"], ["outputs*"], onnx="If",
            attrs={"then_branch": Attr("graph", REQUIRED), "else_branch": Attr("graph", REQUIRED)},
            infer=_if_infer, reference=_if_reference, body_inputs=_if_bodies,
            doc="Runs then_branch or else_branch on the captures, as cond says.")


# ---- Loop -------------------------------------------------------------------------------------
def _loop_counts(ctx_or_attrs, n_inputs: int) -> tuple[int, int]:
    """(carried values, captures) of a loop node with n_inputs inputs."""
    attrs = ctx_or_attrs.attrs if isinstance(ctx_or_attrs, InferContext) else ctx_or_attrs
    c = attrs.get("captures", 0)
    return n_inputs - 2 - c, c


def _loop_infer(ctx: InferContext):
    body: Graph = ctx.attrs["body"]
    n, c = _loop_counts(ctx, len(ctx.types))
    if n < 0 or c < 0:
        ctx.fail(f"{len(ctx.types)} inputs cannot hold M, cond and {c} captures")
    if not ctx.has_input(0) and not ctx.has_input(1):
        ctx.fail("a loop without a trip count (M) or a condition never ends")
    if ctx.has_input(0) and (ctx.types[0].dtype is not dtypes.int64 or ctx.types[0].numel not in (None, 1)):
        ctx.fail(f"M must be one int64, got {ctx.types[0]}")
    if ctx.has_input(1):
        _check_flag(ctx, ctx.types[1], "cond")
    i64, flag = TensorType(dtypes.int64, ()), TensorType(dtypes.bool_, ())
    _check_inputs(ctx, body, "body", [i64, flag] + ctx.types[2:])
    k = len(body.outputs) - 1 - n
    if k < 0 or ctx.num_outputs != n + k:
        ctx.fail(f"body gives {len(body.outputs)} outputs: the condition, {n} carried values and the scanned "
                 f"ones, which the node's {ctx.num_outputs} outputs must match")
    _check_flag(ctx, body.outputs[0].type, "the body's condition output")
    carried = []
    for i in range(n):
        init, after = ctx.types[2 + i], body.outputs[1 + i].type
        if init.dtype != after.dtype:
            ctx.fail(f"carried value {i} enters as {init.dtype} and leaves the body as {after.dtype}")
        carried.append(merge_types(init, after))
    trips = UNKNOWN
    m, cond = ctx.const(0), ctx.const(1)
    # the loop runs M times without a condition input, or with a true one the body passes on unchanged
    if m is not None and (not ctx.has_input(1) or cond is not None and bool(np.asarray(cond).reshape(-1)[0])
                          and passes_condition(body)):
        trips = max(int(np.asarray(m).reshape(-1)[0]), 0)
    scanned = [TensorType(v.type.dtype, None if v.type.shape is None else (trips,) + tuple(v.type.shape))
               for v in body.outputs[1 + n:]]
    return carried + scanned


def passes_condition(body: Graph) -> bool:
    """Whether the body's condition output is its condition input (directly or through identities)."""
    producer = body.producers()
    v = body.outputs[0]
    while v in producer and producer[v].op == "identity":
        v = producer[v].inputs[0]
    return v is body.inputs[1]


def _loop_reference(inputs, attrs):
    body: Graph = attrs["body"]
    n, c = _loop_counts(attrs, len(inputs))
    m = None if inputs[0] is None else int(np.asarray(inputs[0]).reshape(-1)[0])
    cond = None if inputs[1] is None else bool(np.asarray(inputs[1]).reshape(-1)[0])
    carried, captures = list(inputs[2:2 + n]), list(inputs[2 + n:])
    scanned: list[list] = [[] for _ in body.outputs[1 + n:]]
    i = 0
    while (m is None or i < m) and cond is not False:
        outs = run_body(body, [np.array(i, np.int64), np.array(True if cond is None else cond)] + carried + captures)
        if inputs[1] is not None:
            cond = bool(np.asarray(outs[0]).reshape(-1)[0])
        carried = outs[1:1 + n]
        for acc, v in zip(scanned, outs[1 + n:]):
            acc.append(v)
        i += 1
    stacked = []
    for acc, v in zip(scanned, body.outputs[1 + n:]):
        if acc:
            stacked.append(np.stack(acc))
        else:  # no iteration ran: an empty stack of the body's (static) shape
            shape = v.type.shape if v.type.is_static else ()
            stacked.append(np.zeros((0,) + tuple(shape), v.type.dtype.np))
    return carried + stacked


def _loop_bodies(node) -> dict:
    """Carried values change from one iteration to the next: only the captures pass their data."""
    c = node.attrs.get("captures", 0)
    carried = node.inputs[2:len(node.inputs) - c]
    return {"body": [(None, None), (None, None)] + [(v.type, None) for v in carried] +
            _passed(node.inputs[len(node.inputs) - c:])}


register_op("loop", ["M?", "cond?", "inputs*"], ["outputs*"], onnx="Loop",
            attrs={"body": Attr("graph", REQUIRED), "captures": Attr("int", 0)},
            infer=_loop_infer, reference=_loop_reference, body_inputs=_loop_bodies,
            doc="ONNX Loop: runs body while i < M and cond holds; the last `captures` inputs are outer "
                "values the body reads.")


# ---- Scan -------------------------------------------------------------------------------------
def scan_layout(attrs, n_inputs: int, n_outputs: int):
    """(states, scan inputs, captures, scan outputs), the axes and the directions."""
    m, c = attrs["num_scan_inputs"], attrs.get("captures", 0)
    n = n_inputs - m - c
    k = n_outputs - n
    in_axes = list(attrs.get("scan_input_axes") or [0] * m)
    in_dirs = list(attrs.get("scan_input_directions") or [0] * m)
    out_axes = list(attrs.get("scan_output_axes") or [0] * k)
    out_dirs = list(attrs.get("scan_output_directions") or [0] * k)
    return n, m, c, k, in_axes, in_dirs, out_axes, out_dirs


def _scan_infer(ctx: InferContext):
    body: Graph = ctx.attrs["body"]
    n, m, c, k, in_axes, in_dirs, out_axes, out_dirs = scan_layout(ctx.attrs, len(ctx.types), ctx.num_outputs)
    if m < 1 or n < 0 or c < 0 or k < 0:
        ctx.fail(f"{len(ctx.types)} inputs and {ctx.num_outputs} outputs do not hold {m} scan inputs and "
                 f"{c} captures")
    for name, lst, want in (("scan_input_axes", in_axes, m), ("scan_input_directions", in_dirs, m),
                            ("scan_output_axes", out_axes, k), ("scan_output_directions", out_dirs, k)):
        if len(lst) != want:
            ctx.fail(f"{name} has {len(lst)} entries, expected {want}")
    if any(d not in (0, 1) for d in in_dirs + out_dirs):
        ctx.fail("scan directions are 0 (forward) or 1 (reverse)")
    seq = UNKNOWN
    slices = []
    for j in range(m):
        t = ctx.types[n + j]
        if t.shape is None:
            slices.append(None)
            continue
        axis = normalize_axis(in_axes[j], len(t.shape), ctx)
        if seq == UNKNOWN:
            seq = t.shape[axis]
        elif t.shape[axis] not in (seq, UNKNOWN) and seq != UNKNOWN:
            ctx.fail(f"scan inputs have sequence lengths {seq} and {t.shape[axis]}")
        slices.append(TensorType(t.dtype, t.shape[:axis] + t.shape[axis + 1:]))
    _check_inputs(ctx, body, "body", ctx.types[:n] + slices + ctx.types[n + m:])
    if len(body.outputs) != n + k:
        ctx.fail(f"body gives {len(body.outputs)} outputs, the node has {n + k}")
    out = []
    for i in range(n):
        init, after = ctx.types[i], body.outputs[i].type
        if init.dtype != after.dtype:
            ctx.fail(f"state {i} enters as {init.dtype} and leaves the body as {after.dtype}")
        out.append(merge_types(init, after))
    for j, v in enumerate(body.outputs[n:]):
        t = v.type
        if t.shape is None:
            out.append(TensorType(t.dtype, None))
            continue
        axis = normalize_axis(out_axes[j], len(t.shape) + 1, ctx)
        out.append(TensorType(t.dtype, tuple(t.shape[:axis]) + (seq,) + tuple(t.shape[axis:])))
    return out


def _scan_reference(inputs, attrs):
    body: Graph = attrs["body"]
    n, m, c, k, in_axes, in_dirs, out_axes, out_dirs = scan_layout(attrs, len(inputs), len(body.outputs))
    states, xs, captures = list(inputs[:n]), inputs[n:n + m], list(inputs[n + m:])
    xs = [np.moveaxis(x, a % x.ndim, 0) for x, a in zip(xs, in_axes)]
    xs = [x[::-1] if d else x for x, d in zip(xs, in_dirs)]
    steps = xs[0].shape[0]
    scanned: list[list] = [[] for _ in range(k)]
    for t in range(steps):
        outs = run_body(body, states + [x[t] for x in xs] + captures)
        states = outs[:n]
        for acc, v in zip(scanned, outs[n:]):
            acc.append(v)
    results = []
    for acc, v, a, d in zip(scanned, body.outputs[n:], out_axes, out_dirs):
        shape = tuple(v.type.shape) if v.type.is_static else ()
        y = np.stack(acc) if acc else np.zeros((0,) + shape, v.type.dtype.np)
        y = y[::-1] if d else y
        results.append(np.moveaxis(y, 0, a % y.ndim))
    return states + results


def _scan_bodies(node) -> dict:
    n, m, c, k, in_axes, *_ = scan_layout(node.attrs, len(node.inputs), len(node.outputs))
    slices = []
    for v, a in zip(node.inputs[n:n + m], in_axes):
        t = v.type
        a = a % len(t.shape) if t.shape else 0
        slices.append((None if t.shape is None else TensorType(t.dtype, t.shape[:a] + t.shape[a + 1:]), None))
    return {"body": [(v.type, None) for v in node.inputs[:n]] + slices + _passed(node.inputs[n + m:])}


register_op("scan", ["inputs*"], ["outputs*"], onnx="Scan",
            attrs={"body": Attr("graph", REQUIRED), "num_scan_inputs": Attr("int", REQUIRED),
                   "scan_input_axes": Attr("ints", None), "scan_input_directions": Attr("ints", None),
                   "scan_output_axes": Attr("ints", None), "scan_output_directions": Attr("ints", None),
                   "captures": Attr("int", 0)},
            infer=_scan_infer, reference=_scan_reference, body_inputs=_scan_bodies,
            doc="ONNX Scan (opset 9 and later): runs body once per slice of the scan inputs, carrying the "
                "states; the last `captures` inputs are outer values the body reads.")
