"""simplify-algebra: removes nodes that compute nothing and collapses reshape / transpose chains."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..ir.ops.tensor import slice_bounds
from ._rewrite import broadcasts_into, input_or_none, new_constant, remove_dead, same_shape
from .manager import Pass, register_pass

_RESHAPES = ("reshape", "squeeze", "unsqueeze", "flatten")  # all keep the row-major element order
# op -> (neutral constant, operand positions it may take)
_NEUTRAL = {"add": (0, (0, 1)), "sub": (0, (1,)), "mul": (1, (0, 1)), "div": (1, (1,))}
# A slice end at least this large reaches the end of a symbolic axis (no axis is longer).
_OPEN_END = 2**31 - 1


@register_pass
class SimplifyAlgebra(Pass):
    """Removes identities and no-ops, and collapses chains of data-movement ops.

    Removed: identity; dropout (inference, mask unused); x*1, 1*x, x+0, 0+x, x-0, x/1 when the
    constant does not broadcast x to a larger shape; cast to the same dtype; pad by zeros;
    slice of the full range; expand / reshape / squeeze / unsqueeze / flatten whose output has
    the input's shape (which also cancels squeeze/unsqueeze pairs and reshape round trips);
    transpose by the identity permutation.
    Collapsed: reshape(reshape(x)) -> reshape(x); transpose(transpose(x)) -> one transpose with
    the composed permutation (or nothing). Rewritten: x * hard_sigmoid(x){alpha=1/6, beta=0.5}
    -> hard_swish(x), the form exporters write HardSwish in; x * sigmoid(x) -> swish(x){alpha=1}
    (SiLU), which the fusion pass then folds into the conv or GEMM that computes x.
    A graph output keeps its name: the value that replaces it is renamed, or, where that value
    is itself a graph input or output, an identity stays.
    """

    name = "simplify-algebra"

    def run(self, graph: Graph) -> None:
        for _ in range(100):  # each sweep removes or shortens something, so this ends quickly
            if not _Sweep(graph).run():
                break


class _Sweep:
    """One forward sweep; values replaced by others are resolved as later nodes read them."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.replace: dict[Value, Value] = {}
        self.producer: dict[Value, Node] = {}
        self.touched: list[Node] = []  # producers whose readers changed: they may be dead now
        self.used = {v for n in graph.nodes for v in n.inputs if v is not None} | set(graph.outputs)
        self.changed = False

    def resolve(self, v):
        while v in self.replace:
            v = self.replace[v]
        return v

    def run(self) -> bool:
        kept = []
        for node in self.g.nodes:
            node.inputs = [None if v is None else self.resolve(v) for v in node.inputs]
            src = self.simplify(node)
            if src is not None and self.bypass(node, src):
                continue
            kept.append(node)
            for v in node.outputs:
                self.producer[v] = node
        self.g.nodes = kept
        self.g.outputs = [self.resolve(v) for v in self.g.outputs]
        remove_dead(self.g, self.touched)
        self.g.remove_unused_constants()
        return self.changed

    def touch(self, node: Node) -> None:
        self.touched.extend(self.producer[v] for v in node.inputs if v in self.producer)

    # ---- removing a node ---------------------------------------------------------------------
    def bypass(self, node: Node, src: Value) -> bool:
        """Makes readers of the node's output read `src`; False when the node must stay."""
        out = node.outputs[0]
        if out in self.g.outputs:
            if src in self.g.inputs or src in self.g.outputs:
                # both names are interface: an identity keeps them apart
                if node.op != "identity":
                    self.touch(node)
                    node.op, node.inputs, node.outputs, node.attrs = "identity", [src], [out], {}
                    self.changed = True
                return False
            src.name = out.name  # the output's name is the model's interface; out is going away
            self.g.outputs = [src if v is out else v for v in self.g.outputs]
        self.replace[out] = src
        self.touch(node)
        self.changed = True
        return True

    # ---- what each op can simplify to ----------------------------------------------------------
    def simplify(self, node: Node) -> Optional[Value]:
        """A value the node's (first) output always equals, or None; may rewrite the node in place."""
        op = node.op
        x = input_or_none(node, 0)
        if x is None:
            return None
        out = node.outputs[0]
        if op == "identity":
            return x
        if op == "dropout":
            return x if self._dropout_is_identity(node) else None
        if op == "cast":
            return x if node.attrs.get("to") == x.type.dtype else None
        if op in _NEUTRAL:
            return self._neutral_operand(node)
        if op == "pad":
            pads = input_or_none(node, 1)
            return x if pads is not None and pads.data is not None and not pads.data.any() else None
        if op == "slice":
            return x if self._full_slice(node) else None
        if op == "transpose":
            return self._transpose(node)
        if op in _RESHAPES or op == "expand":
            if same_shape(out.type.shape, x.type.shape):
                return x
            if op in _RESHAPES:
                return self._reshape_chain(node)
        return None

    def _dropout_is_identity(self, node: Node) -> bool:
        mode = input_or_none(node, 2)
        if mode is not None and (mode.data is None or bool(mode.data.reshape(-1)[0])):
            return False
        return len(node.outputs) < 2 or node.outputs[1] not in self.used

    def _neutral_operand(self, node: Node) -> Optional[Value]:
        value, positions = _NEUTRAL[node.op]
        for pos in positions:
            c, other = node.inputs[pos], node.inputs[1 - pos]
            if c.data is None or c.data.size == 0 or not np.all(c.data == value):
                continue
            if c.type.dtype != other.type.dtype or node.outputs[0].type.dtype != other.type.dtype:
                continue
            # x * ones(bigger shape) broadcasts x: not a no-op
            if c.data.ndim == 0 or broadcasts_into(c.data.shape, other.type.shape):
                return other
        if node.op == "mul":
            self._hard_swish(node) or self._swish(node)
        return None

    def _hard_swish(self, node: Node) -> bool:
        """x * hard_sigmoid(x){alpha=1/6, beta=1/2} is HardSwish (exporters spell it this way)."""
        for a, b in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            p = self.producer.get(a)
            if p is None or p.op != "hard_sigmoid" or p.inputs[0] is not b or not b.type.dtype.is_float:
                continue
            alpha, beta = p.attrs.get("alpha", 0.2), p.attrs.get("beta", 0.5)
            if abs(alpha * 6 - 1) <= 1e-6 and abs(beta - 0.5) <= 1e-7:
                self.touch(node)
                node.op, node.inputs, node.attrs = "hard_swish", [b], {}
                self.changed = True
                return True
        return False

    def _swish(self, node: Node) -> bool:
        """x * sigmoid(x) is SiLU, Swish with alpha = 1 (how exporters write it): one activation the
        fusion pass folds into the conv or GEMM before it, instead of two elementwise kernels. The
        sigmoid stays where something else reads it."""
        for a, b in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            p = self.producer.get(a)
            if p is None or p.op != "sigmoid" or p.inputs[0] is not b or not b.type.dtype.is_float:
                continue
            self.touch(node)
            node.op, node.inputs, node.attrs = "swish", [b], {"alpha": 1.0}
            self.changed = True
            return True
        return False

    def _full_slice(self, node: Node) -> bool:
        x = node.inputs[0]
        parts = [input_or_none(node, i) for i in range(1, 5)]
        if x.type.shape is None or parts[0] is None or parts[1] is None:
            return False
        if any(p is not None and p.data is None for p in parts):
            return False
        starts, ends = (p.data.reshape(-1).tolist() for p in parts[:2])
        axes = parts[2].data.reshape(-1).tolist() if parts[2] is not None else list(range(len(starts)))
        steps = parts[3].data.reshape(-1).tolist() if parts[3] is not None else [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            return False
        rank = x.type.rank
        for axis, start, end, step in zip(axes, starts, ends, steps):
            if step != 1 or not -rank <= axis < rank:
                return False
            dim = x.type.shape[axis]
            if isinstance(dim, int):
                begin, _, length = slice_bounds(dim, start, end, 1)
                if begin != 0 or length != dim:
                    return False
            elif not (start == 0 or start <= -_OPEN_END) or end < _OPEN_END:
                return False
        return True

    def _transpose(self, node: Node) -> Optional[Value]:
        perm = _perm(node)
        if perm is None:
            return None
        if perm == list(range(len(perm))):
            return node.inputs[0]
        inner = self.producer.get(node.inputs[0])
        first = _perm(inner) if inner is not None and inner.op == "transpose" else None
        if first is None or len(first) != len(perm):
            return None
        composed = [first[p] for p in perm]
        if composed == list(range(len(perm))):
            return inner.inputs[0]
        self.touch(node)
        node.inputs = [inner.inputs[0]]
        node.attrs = dict(node.attrs, perm=composed)
        self.changed = True
        return None

    def _reshape_chain(self, node: Node) -> Optional[Value]:
        inner = self.producer.get(node.inputs[0])
        if inner is None or inner.op not in _RESHAPES:
            return None
        src, out = inner.inputs[0], node.outputs[0]
        if same_shape(out.type.shape, src.type.shape):
            return src  # a round trip, e.g. squeeze then unsqueeze of the same axes
        if node.op != "reshape":
            return None
        shape = node.inputs[1]
        if shape.data is None:
            return None
        if not node.attrs.get("allowzero", 0) and (shape.data == 0).any():
            # a 0 copies a dim of the intermediate, which x may not have: spell the shape out
            if not out.type.is_static:
                return None
            shape = new_constant(self.g, shape.name, np.array(out.type.shape, np.int64), shape.type.dtype)
        self.touch(node)
        node.inputs = [src, shape]
        self.changed = True
        return None


def _perm(node: Node) -> Optional[list]:
    perm = node.attrs.get("perm")
    if perm is not None:
        return list(perm)
    rank = node.inputs[0].type.rank
    return None if rank is None else list(range(rank))[::-1]

