"""Static memory planning: every intermediate tensor gets a fixed byte offset in one arena.

Graph inputs are read from the caller's buffers, graph outputs are written straight into the
caller's output buffers and constants live with the weights; everything else (node outputs that
are not graph outputs) lives in the arena. The plan is built in three steps:

1. Storage sharing. A view op (reshape, flatten, ...) copies nothing: its output shares its input's
   storage. An elementwise op in `inplace_ops` may write its output over an input that dies at
   that node. With `place_concats`, a concat whose inputs each fill one contiguous block of its
   output (nothing outside the axis but it: a batch of one) has its inputs written in place there by
   the nodes that produce them, and copies nothing. Values that share storage form a group named
   by its root; a concat's input lies at its block's offset from the root.
2. Lifetimes. A value is live from the node that defines it to its last use (node index order);
   a group lives for the union of its members' lifetimes, both ends inclusive, so a node's inputs
   and outputs never overlap unless the op was explicitly made in-place.
   A kernel's scratch (KernelContext.scratch: buffers it used to keep on the stack) is a group of
   its own that lives during its node only.
3. Offsets. Groups are placed one by one, largest first (and again longest lived first, keeping
   the smaller arena); each goes into the smallest gap between the groups already placed whose
   lifetimes overlap it (best fit), or above them all.

Memory spaces: a target with device memory places nodes (pdc/codegen/placement.py) and each
space gets an arena of its own, planned the same way (`spaces`: the space of each value a node
writes; a kernel's scratch is in its node's space). Host-only targets have the one host arena.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ir.errors import PdcError, UnsupportedError
from ..ir.graph import Graph, Node, Value
from ..ir.symbolic import bound_nbytes

# Ops whose output is their first input's bytes, unchanged (a reinterpretation, never a copy).
VIEW_OPS = frozenset({"reshape", "flatten", "squeeze", "unsqueeze", "identity", "dropout"})

# Elementwise ops whose kernels read element i of every input before writing element i of the
# output, so the output may overwrite ANY input of its shape and element size (a code generator
# passing its own set must only name ops whose kernels are safe for every such input).
INPLACE_OPS = frozenset({
    "relu", "sigmoid", "tanh", "exp", "neg", "abs", "clip", "leaky_relu", "hard_sigmoid", "hard_swish",
    "gelu", "cast", "add", "sub", "mul", "div",
})


@dataclass
class MemoryPlan:
    """Where every value lives. A value v is at arena + offsets[v] when storage[v] is an arena root,
    else it is the caller's buffer (graph inputs and outputs) or the weights (constants) of storage[v]."""

    offsets: dict[Value, int]  # byte offset in the arena of every value stored there (aligned)
    storage: dict[Value, Value]  # value -> the root whose storage it shares; roots map to themselves
    arena_bytes: int  # total arena size (a multiple of the alignment)
    naive_activation_bytes: int  # sum of the sizes of all intermediates (node outputs, not graph outputs)
    scratch: dict[int, int] = None  # node index -> arena offset of that kernel's scratch
    arenas: dict[str, int] = None  # memory space -> its arena's size ({"host": arena_bytes} on host targets)
    space: dict[Value, str] = None  # the space of each arena value (absent: host)
    scratch_bytes: dict[int, int] = None  # node index -> bytes of that kernel's scratch

    def __post_init__(self):
        self.scratch = self.scratch or {}
        self.scratch_bytes = self.scratch_bytes or {}
        self.arenas = self.arenas or {"host": self.arena_bytes}
        self.space = self.space or {}


def _nbytes(v: Value, bounds: Optional[dict] = None) -> int:
    """The bytes a value needs; with dims known only at run time, at their upper bounds."""
    n = bound_nbytes(v.type, bounds)
    if n is None:
        raise UnsupportedError(f"memory plan: %{v.name} has a non-static type {v.type}; "
                               "static memory planning needs every intermediate shape known (bind symbolic dims)")
    return n


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def lifetimes(graph: Graph) -> tuple[dict[Value, int], dict[Value, int]]:
    """The schedule step defining each node output, and the last step reading each value."""
    defined: dict[Value, int] = {}
    last_use: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v is not None:
                last_use[v] = i
        for v in node.outputs:
            defined[v] = i
            last_use.setdefault(v, i)  # an unused output still needs room while its node runs
    return defined, last_use


class _Planner:
    def __init__(self, graph: Graph, alignment: int, view_ops: frozenset, inplace_ops: frozenset,
                 scratch: dict[int, int], spaces: dict[Value, str], bounds: Optional[dict] = None):
        self.graph = graph
        self.bounds = bounds
        self.scratch = scratch
        self.spaces = spaces
        self.alignment = alignment
        self.view_ops = view_ops
        self.inplace_ops = inplace_ops
        self.outputs = set(graph.outputs)
        # the caller's or the weights' memory: graph inputs, constants, graph outputs
        self.external = set(graph.inputs) | set(graph.constants) | self.outputs
        self.defined, self.last_use = lifetimes(graph)
        self.storage: dict[Value, Value] = {v: v for v in self.external}
        self.members: dict[Value, list[Value]] = {}  # arena root -> every value sharing its storage
        self.delta: dict[Value, int] = {}  # a value placed inside its root's storage: bytes from its start
        self.placed_in: dict[Value, Value] = {}  # a concat input written in place -> the concat's output

    def nbytes(self, v: Value) -> int:
        return _nbytes(v, self.bounds)

    # ---- step 1: storage sharing ----------------------------------------------------------------
    def place_concats(self) -> None:
        """Concats whose every input can be written in place into the output: each input made by a
        node (not a view or another such concat) for this concat alone, at an aligned block."""
        users, producer = self.graph.users(), self.graph.producers()
        for node in self.graph.nodes:
            if node.op != "concat" or len(node.outputs) != 1:
                continue
            out = node.outputs[0]
            if out in self.external or not out.type.is_static or len(set(node.inputs)) != len(node.inputs):
                continue
            axis = node.attrs.get("axis", 0) % max(len(out.type.shape), 1)
            if any(d != 1 for d in out.type.shape[:axis]):
                continue  # a block per outer index: not contiguous
            deltas, at = {}, 0
            for v in node.inputs:
                made = producer.get(v)
                if (v is None or made is None or v in self.external or len(users[v]) != 1 or len(made.outputs) != 1
                        or made.op in self.view_ops or made.op == "concat" or at % self.alignment
                        or not v.type.is_static or v.type.dtype != out.type.dtype):
                    break
                deltas[v] = at
                at += v.type.nbytes
            else:
                for v, d in deltas.items():
                    self.placed_in[v], self.delta[v] = out, d

    def share(self) -> None:
        for i, node in enumerate(self.graph.nodes):
            for v in node.outputs:
                if v in self.storage:  # a graph output, or a concat output its inputs were written into
                    continue
                self.nbytes(v)  # fails early, naming the first intermediate of unknown size
                if v in self.placed_in:  # written in place into a concat's output, which starts here
                    root = self.storage.setdefault(self.placed_in[v], self.placed_in[v])
                    self.storage[v] = root
                    self.members.setdefault(root, [root]).append(v)
                    continue
                root = self._view_root(node, v) or self._inplace_root(i, node, v) or v
                self.storage[v] = root
                if root not in self.external:
                    self.members.setdefault(root, []).append(v)

    def _view_root(self, node: Node, out: Value):
        if node.op not in self.view_ops or len(node.outputs) != 1 or not node.inputs or node.inputs[0] is None:
            return None
        src = node.inputs[0]
        root = self.storage.get(src, src)
        # reading a caller's output buffer would be fine, but a copy keeps the rules simple
        if root in self.outputs or bound_nbytes(src.type, self.bounds) != self.nbytes(out):
            return None
        return root

    def _inplace_root(self, i: int, node: Node, out: Value):
        if node.op not in self.inplace_ops or len(node.outputs) != 1:
            return None
        for src in node.inputs:
            if src is None or src.type.shape != out.type.shape or src.type.dtype.itemsize != out.type.dtype.itemsize:
                continue
            root = self.storage.get(src, src)
            if root in self.external or self.nbytes(root) != self.nbytes(out):
                continue
            if any(self.last_use[m] > i for m in self.members[root]):
                continue  # some member of the group is still read after this node
            # another input reading the same bytes through a different view could be overwritten early
            if any(w is not None and w is not src and self.storage.get(w, w) is root for w in node.inputs):
                continue
            return root
        return None

    # ---- steps 2 and 3: lifetimes and offsets ---------------------------------------------------
    def space_of(self, v: Value) -> str:
        return self.spaces.get(v, "host")

    def groups(self, space: str) -> list[tuple[int, int, int, Value]]:
        """(aligned size, first node, last node, root) of every storage group in the space's arena."""
        result = []
        for root, members in self.members.items():
            if self.space_of(root) != space:
                continue
            start = min(self.defined[m] for m in members)
            end = max(self.last_use[m] for m in members)
            result.append((_align(self.nbytes(root), self.alignment), start, end, root))
        for i, nbytes in self.scratch.items():
            if self.space_of(self.graph.nodes[i].outputs[0]) == space:
                result.append((_align(nbytes, self.alignment), i, i, _Scratch(i)))
        return result

    # Placement orders to try; the smallest arena wins. Largest first is the classic greedy; longest
    # lived first does better where a few long-lived tensors would otherwise fragment the arena.
    ORDERS = (
        lambda g: (-g[0], g[1], g[2]),
        lambda g: (g[1] - g[2], -g[0], g[1]),
    )

    def place(self, space: str) -> tuple[dict[Value, int], int]:
        groups = self.groups(space)
        best = None
        for order in self.ORDERS:
            placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
            offsets: dict[Value, int] = {}
            arena = 0
            for size, start, end, root in sorted(groups, key=order):
                offset = 0 if size == 0 else self._best_fit(placed, size, start, end)
                placed.append((offset, size, start, end))
                offsets[root] = offset
                arena = max(arena, offset + size)
            if best is None or arena < best[1]:
                best = (offsets, arena)
        return best

    @staticmethod
    def _best_fit(placed, size: int, start: int, end: int) -> int:
        """The lowest offset of the smallest free gap that holds `size` bytes during [start, end]."""
        busy = sorted((o, o + s) for o, s, a, b in placed if s and a <= end and start <= b)
        best, best_gap = None, None
        top = 0
        for lo, hi in busy:
            gap = lo - top
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = top, gap
            top = max(top, hi)
        return top if best is None else best


@dataclass(frozen=True)
class _Scratch:
    node: int  # the index of the node whose kernel uses it


def plan_memory(graph: Graph, *, alignment: int = 64, view_ops: frozenset = VIEW_OPS,
                inplace_ops: frozenset = INPLACE_OPS, scratch: dict[int, int] = None,
                spaces: dict[Value, str] = None, bounds: Optional[dict] = None,
                place_concats: bool = False) -> MemoryPlan:
    """Assigns every intermediate of `graph` (topologically ordered) an aligned offset in its
    space's arena (`spaces`, from placement; default: all host), and each kernel's scratch (node
    index -> bytes) an offset that is free while its node runs. `bounds` (symbol -> (lo, hi)): dims
    known only at run time take the room of their upper bound."""
    if alignment < 1:
        raise PdcError(f"memory plan: alignment must be >= 1, got {alignment}")
    spaces = dict(spaces or {})
    p = _Planner(graph, alignment, frozenset(view_ops), frozenset(inplace_ops), dict(scratch or {}), spaces, bounds)
    if place_concats:
        p.place_concats()
    p.share()
    root_offsets, arenas = {}, {}
    for space in ["host"] + sorted(set(spaces.values()) - {"host"}):
        offs, arena = p.place(space)
        root_offsets.update(offs)
        arenas[space] = _align(arena, alignment)
    offsets = {v: root_offsets[root] + p.delta.get(v, 0) for v, root in p.storage.items() if root in root_offsets}
    scratch_offsets = {k.node: off for k, off in root_offsets.items() if isinstance(k, _Scratch)}
    naive = sum(_nbytes(v, bounds) for node in graph.nodes for v in node.outputs if v not in p.outputs)
    space = {v: p.space_of(root) for v, root in p.storage.items() if root in root_offsets}
    return MemoryPlan(offsets, p.storage, arenas["host"], naive, scratch_offsets, arenas, space, dict(p.scratch))
