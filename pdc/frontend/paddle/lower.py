"""Lowers a parsed Paddle `Program` (PIR terms) to a pdc IR graph.

Each Paddle op goes through a converter from `ops.py`, which emits one or more IR nodes through
an `OpContext`. Nodes whose inputs are all constants are folded at import (weight reshapes and
transposes, shape arithmetic on static shapes), so the graph holds the weights in the layout its
consumers need; a dequantize_linear is not (its int8 weights are what fold-qdq needs, quant.py).
Results are checked against the types the Paddle file declares: a static dim or dtype that
disagrees is a bug in pdc's lowering and is reported as such.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Hashable, Optional

import numpy as np

from ...ir import dtypes
from ...ir.errors import PdcError, UnsupportedError
from ...ir.graph import Graph, Node, Value
from ...ir.interpreter import run_node
from ...ir.registry import get_op, with_defaults
from ...ir.types import TensorType, refine
from ...ir.verify import infer_node
from .program import Const, Op, Program

Converter = Callable[["OpContext"], list]
CONVERTERS: dict[str, Converter] = {}

SHARE_LIMIT = 16  # constants up to this many elements are shared by value
FOLD_LIMIT = 1 << 24  # elements; folding bigger computations would bloat the graph's constants


def converter(*types: str):
    """Registers the lowering of the Paddle (PIR) op types."""
    def wrap(fn):
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return wrap


class _Unavailable:
    """A value the program refers to but pdc does not have (an uncomputed result, say)."""

    def __init__(self, why: str):
        self.why = why


def _all_ops(ops: list):
    """The ops and, depth first, those of every control-flow body they hold."""
    for op in ops:
        yield op
        for block in op.regions:
            yield from _all_ops(block.ops)


def sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.]", "_", name)[:64]
    return s if s and not s[0].isdigit() and s[0] != "." else "v_" + s


class OpContext:
    """What a converter sees of one Paddle op: its operands as IR values, its attributes, and
    ways to emit IR nodes and constants."""

    def __init__(self, lowering: "Lowering", op: Op):
        self.lowering = lowering
        self.op = op
        self.attrs = op.attrs
        self.where = op.where
        self._count = 0

    # ---- operands ----------------------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self.op.operands) and self.op.operands[i] is not None

    def _resolve(self, x, i: int):
        if isinstance(x, Const):
            return self.constant(x.data)
        v = self.lowering.env.get(x, _Unavailable(f"value {x!r} is not defined before use"))
        if isinstance(v, _Unavailable):
            self.fail(f"operand {i} is unavailable: {v.why}")
        return v

    def value(self, i: int) -> Optional[Value]:
        """Operand i as one IR value (None when absent)."""
        if not self.has(i):
            return None
        x = self.op.operands[i]
        v = [self._resolve(e, i) for e in x] if isinstance(x, list) else self._resolve(x, i)
        if isinstance(v, list):
            if len(v) != 1:
                self.fail(f"operand {i} is a list of {len(v)} tensors, expected one tensor")
            v = v[0]
        return v

    def values(self, i: int) -> list[Value]:
        """Operand i as a list of IR values (a PIR vector or a legacy multi-argument slot)."""
        if not self.has(i):
            return []
        x = self.op.operands[i]
        items = x if isinstance(x, list) else [x]
        out = []
        for e in items:
            v = self._resolve(e, i)
            out.extend(v if isinstance(v, list) else [v])
        return out

    def const(self, i: int) -> Optional[np.ndarray]:
        """Operand i's data when it is known at import time, else None."""
        if not self.has(i):
            return None
        x = self.op.operands[i]
        if isinstance(x, list):
            vs = self.values(i)
            if all(v.data is not None for v in vs):
                return np.concatenate([v.data.reshape(-1) for v in vs]) if vs else np.zeros(0, np.int64)
            return None
        if isinstance(x, Const):
            return x.data
        return self.value(i).data

    def ints(self, i: int, what: str) -> list[int]:
        data = self.const(i)
        if data is None:
            self.unsupported(f"{what} must be known at import time (it is computed by the model)")
        return [int(v) for v in np.asarray(data).reshape(-1)]

    def scalar(self, i: int, what: str) -> float:
        data = self.const(i)
        if data is None or np.asarray(data).size != 1:
            self.unsupported(f"{what} must be a scalar known at import time")
        return np.asarray(data).reshape(-1)[0].item()

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def out_type(self, k: int = 0):
        t = self.op.result_types
        return t[k] if k < len(t) else None

    # ---- emitting -----------------------------------------------------------------------------
    def constant(self, data, dtype=None) -> Value:
        return self.lowering.constant(data, dtype, f"{self.op.name}_c")

    def emit(self, op: str, inputs: list, attrs: Optional[dict] = None, n: Optional[int] = None):
        """Appends an IR node; returns its output Value (or the list of outputs when n is given)."""
        opdef = get_op(op)
        for i, spec in enumerate(opdef.inputs):
            if not spec.optional and not spec.variadic and (i >= len(inputs) or inputs[i] is None):
                self.fail(f"operand '{spec.name}' of {op} is missing")
        full = with_defaults(opdef, attrs or {})
        count = n if n is not None else 1
        self._count += 1
        name = self.op.name if self._count == 1 else f"{self.op.name}.{self._count - 1}"
        outs = [Value(self.lowering.fresh(name), TensorType(dtypes.float32, None)) for _ in range(count)]
        node = Node(op, list(inputs), outs, full, name)
        for v, t in zip(outs, infer_node(node)):
            if t is None:  # an operand the file left out (a required one missing or of the wrong kind)
                self.fail(f"missing or malformed operands for {op}")
            v.type = t
        folded = self.lowering.fold(node)
        if folded is not None:
            return folded if n is not None else folded[0]
        self.lowering.graph.nodes.append(node)
        return outs if n is not None else outs[0]

    # ---- shapes --------------------------------------------------------------------------------
    def rank(self, v: Value, what: str = "the input") -> int:
        if v.type.shape is None:
            self.unsupported(f"{what} needs a known rank")
        return len(v.type.shape)

    def static_dims(self, v: Value, what: str = "the input") -> tuple:
        if not v.type.is_static:
            self.unsupported(f"{what} needs a static shape, got {v.type}")
        return v.type.shape

    def unsupported(self, msg: str):
        raise UnsupportedError(f"{self.where}: {msg}")

    def fail(self, msg: str):
        raise PdcError(f"{self.where}: {msg}")


class Lowering:
    def __init__(self, program: Program, arrays: dict[str, np.ndarray], graph_name: str = "main"):
        self.program = program
        self.arrays = arrays
        self.graph = Graph(sanitize(graph_name))
        self.env: dict[Hashable, object] = {}
        self.taken: set[str] = set()
        self.small_constants: dict[tuple, Value] = {}
        # quantize_linear results (the codes as float32, Paddle's type) -> the integer codes (quant.py)
        self.quant_codes: dict[str, Value] = {}

    def fresh(self, hint: str) -> str:
        base = sanitize(hint)
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def constant(self, data, dtype=None, hint: str = "c") -> Value:
        """A graph constant; small ones (axes, shapes, scalars) are shared by value."""
        data = np.asarray(data)
        dt = dtype or dtypes.from_numpy(data.dtype)
        key = None
        if data.size <= SHARE_LIMIT:
            key = (dt.name, data.shape, np.ascontiguousarray(data.astype(dt.np, copy=False)).tobytes())
            if key in self.small_constants:
                return self.small_constants[key]
        v = self.graph.add_constant(self.fresh(hint), data, dt)
        if key is not None:
            self.small_constants[key] = v
        return v

    def fold(self, node: Node) -> Optional[list[Value]]:
        """Computes a node whose inputs are all constants; returns its outputs as constants."""
        present = [v for v in node.inputs if v is not None]
        if node.op == "dequantize_linear":
            return None  # a quantized weight stays int8 behind its DequantizeLinear (for fold-qdq)
        if node.op == "shape" and present[0].type.is_static:
            # the shape of a static tensor is a constant; the reference only reads its dims
            args = [np.broadcast_to(np.zeros((), present[0].type.dtype.np), present[0].type.shape)]
        elif present and all(v.data is not None for v in present):
            args = [None if v is None else v.data for v in node.inputs]
        else:
            return None
        if any(not v.type.is_static or v.type.numel > FOLD_LIMIT for v in node.outputs):
            return None
        try:
            results = run_node(node, args)
        except PdcError:
            raise
        except Exception as e:  # a reference tripping over a malformed model is the model's fault
            raise PdcError(f"{node.describe()}: cannot compute at import: {type(e).__name__}: {e}") from None
        return [self.graph.add_constant(v.name, r, v.type.dtype) for v, r in zip(node.outputs, results)]

    # ---- the whole program -----------------------------------------------------------------------
    def check_supported(self) -> None:
        missing: Counter = Counter()
        for op in _all_ops(self.program.ops):
            if op.unsupported or op.type not in CONVERTERS:
                missing[op.type] += 1
        if missing:
            listing = ", ".join(f"{t} x{c}" for t, c in sorted(missing.items()))
            raise UnsupportedError(f"{self.program.source}: unsupported Paddle ops: {listing}")

    def run(self) -> Graph:
        from . import control_flow, ops, quant  # noqa: F401  (registers the converters)
        self.check_supported()
        for k, why in self.program.unavailable.items():
            self.env[k] = _Unavailable(why)
        for spec, key in self.program.params:
            self.env[key] = self.graph.add_constant(self.fresh(spec.name), self.arrays[spec.name], spec.dtype)
        for i, (name, key, t) in enumerate(self.program.inputs):
            # dynamic dims become symbols: the batch dim N, others <input>_d<axis> (bound with --shape)
            symbol = re.sub(r"[^A-Za-z0-9_]", "_", sanitize(name))
            shape = tuple(d if d >= 0 else ("N" if j == 0 else f"{symbol}_d{j}") for j, d in enumerate(t.shape))
            v = Value(self.fresh(name), TensorType(t.dtype, shape))
            self.graph.inputs.append(v)
            self.env[key] = v
        for op in self.program.ops:
            self.lower(op)
        for k, key in enumerate(self.program.outputs):
            v = self.result(key, f"{self.program.source}: output {k}")
            if v.data is not None or v in self.graph.inputs or v in self.graph.outputs:
                # a graph output is a distinct computed value
                node = Node("identity", [v], [Value(self.fresh(f"output{k}"), v.type)], {}, f"output{k}")
                self.graph.nodes.append(node)
                v = node.outputs[0]
            self.graph.outputs.append(v)
        quant.finish(self.graph)
        self.graph.remove_unused_constants()
        return self.graph

    def result(self, key, what: str) -> Value:
        """The value of `key`, which `what` (a program output, a body result) must have."""
        v = self.env.get(key)
        if not isinstance(v, Value):
            why = v.why if isinstance(v, _Unavailable) else f"value {key!r} is not defined"
            raise PdcError(f"{what} is unavailable: {why}")
        return v

    def lower(self, op: Op) -> None:
        cx = OpContext(self, op)
        try:
            results = CONVERTERS[op.type](cx)
        except PdcError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
            # attributes or operands of the wrong kind: report the op instead of a traceback
            raise PdcError(f"{op.where}: malformed op ({type(e).__name__}: {e})") from None
        if results is None:
            results = []
        if not isinstance(results, (list, tuple)):
            results = [results]
        for k, key in enumerate(op.results):
            r = results[k] if k < len(results) else None
            if isinstance(key, list):  # a legacy slot with several variables receives a vector
                if not isinstance(r, list) or len(r) != len(key):
                    cx.fail(f"result {k} should be {len(key)} tensors")
                types = cx.out_type(k) or [None] * len(key)
                for kk, rr, t in zip(key, r, types):
                    self._check(cx, k, rr, t)
                    self.env[kk] = rr
                continue
            if key is None:
                continue
            if r is None:
                if key not in self.env or isinstance(self.env[key], _Unavailable):
                    self.env[key] = _Unavailable(f"result {k} of {op.where} is not computed by pdc")
                continue  # legacy programs write unused results into existing variables
            r = self.match_scalar_rank(cx, r, cx.out_type(k))
            self.check_result(cx, k, r)
            self.env[key] = r

    def match_scalar_rank(self, cx: OpContext, r, declared):
        """Paddle before 2.5 gave scalar results (full slices, full reductions) shape [1], later
        versions shape []; a result is reshaped to what its file declares."""
        if isinstance(r, Value) and isinstance(declared, TensorType) and r.type.shape is not None:
            if (r.type.shape, declared.shape) in (((), (1,)), ((1,), ())):
                return cx.emit("reshape", [r, self.constant(np.asarray(declared.shape, np.int64).reshape(-1))])
        return r

    def check_result(self, cx: OpContext, k: int, r) -> None:
        declared = cx.out_type(k)
        if isinstance(r, list):
            if isinstance(declared, list):
                for v, t in zip(r, declared):
                    self._check(cx, k, v, t)
            return
        self._check(cx, k, r, declared)

    def _check(self, cx: OpContext, k: int, v: Value, declared) -> None:
        if not isinstance(declared, TensorType) or not isinstance(v, Value):
            return
        got = v.type
        bad = got.dtype != declared.dtype
        if got.shape is not None and declared.shape is not None:
            if len(got.shape) != len(declared.shape):
                bad = True
            else:
                bad = bad or any(isinstance(a, int) and isinstance(b, int) and a != b
                                 for a, b in zip(got.shape, declared.shape))
        if bad and cx.op.type == "full" and got.shape == () and "?" in (declared.shape or ()):
            raise UnsupportedError(f"{cx.where}: a scalar placeholder declared {declared}: Paddle's dy2static "
                                   f"writes one for a variable first assigned inside a loop, whose value before the "
                                   f"loop has no shape; assign the variable before the loop")
        if bad:
            raise PdcError(f"{cx.where}: pdc's lowering gives result {k} type {got} but the file declares "
                           f"{declared} (a pdc bug or an inconsistent model)")
        if v.data is None and got.shape is not None and declared.shape is not None and v not in self.graph.inputs:
            v.type = refine(got, declared)
