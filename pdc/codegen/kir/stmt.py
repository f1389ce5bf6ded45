"""Kernel-IR statements and the Kernel itself.

A kernel body is a list of statements over named buffers (the kernel's parameters and its
local/private arrays) and scalar variables. Loops carry an optional annotation the printer maps
to its language: Parallel (threads), Vectorize, Unroll(n), Pipeline(ii) (HLS), or Bind(axis),
which maps the loop onto the work-items of a GPU launch:

    For(i, 0, n, body, annotation=Bind("global.x"))

is one work-item per i on an OpenCL/CUDA target (i = get_global_id(0), guarded by i < n) and an
ordinary loop in C. Work-items of a group share 'local' buffers (Allocate) and meet at Barrier;
a serial printer cannot run a barrier and refuses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from ...ir.dtypes import DType
from ...ir.errors import UnsupportedError
from .expr import Buffer, Expr, Var, as_expr, cast


class Stmt:
    """A statement; subclasses are frozen dataclasses."""


# ---- loop annotations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Parallel:
    """Iterations may run on different threads (no iteration reads what another writes)."""


@dataclass(frozen=True)
class Vectorize:
    """Iterations are independent and should run in SIMD lanes."""


@dataclass(frozen=True)
class Unroll:
    factor: int  # 0: fully


@dataclass(frozen=True)
class Pipeline:
    """HLS: start one iteration every `ii` cycles."""
    ii: int = 1


@dataclass(frozen=True)
class Bind:
    """One GPU work-item (or work-group) per iteration: axis is 'global.x|y|z' (work-item in the
    whole launch), 'group.x|y|z' (work-group) or 'local.x|y|z' (work-item in its group)."""
    axis: str

    AXES = tuple(f"{s}.{a}" for s in ("global", "group", "local") for a in "xyz")

    def __post_init__(self):
        if self.axis not in self.AXES:
            raise ValueError(f"kir: loop binding '{self.axis}' is not one of {', '.join(self.AXES)}")

    @property
    def scope(self) -> str:
        return self.axis.split(".")[0]

    @property
    def dim(self) -> int:
        return "xyz".index(self.axis[-1])


Annotation = Union[Parallel, Vectorize, Unroll, Pipeline, Bind]


# ---- statements ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Declare(Stmt):
    """A scalar variable, initialized when init is given; const when it is never assigned again."""
    var: Var
    init: Optional[Expr] = None
    const: bool = True


@dataclass(frozen=True)
class Assign(Stmt):
    var: Var
    value: Expr


@dataclass(frozen=True)
class Store(Stmt):
    """buffer[index] = value (value of the buffer's type: see `store`); with lanes > 1 a vector value
    goes to `lanes` consecutive elements."""
    buffer: Buffer
    index: Expr
    value: Expr
    lanes: int = 1


@dataclass(frozen=True)
class Block(Stmt):
    """Statements in order; scoped: in braces, so its declarations end with it."""
    body: tuple
    scoped: bool = False


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then: Block
    orelse: Optional[Block] = None


@dataclass(frozen=True)
class For(Stmt):
    """for (var = start; var < stop; var += step) body"""
    var: Var
    start: Expr
    stop: Expr
    body: Block
    step: int = 1
    annotation: Optional[Annotation] = None


@dataclass(frozen=True)
class Continue(Stmt):
    pass


@dataclass(frozen=True)
class Break(Stmt):
    pass


@dataclass(frozen=True)
class Check(Stmt):
    """Bad input data (an index out of range): when `bad` holds, the run reports `status` (the
    kernel goes on, memory-safe). A C kernel with a Check takes the status pointer parameter."""
    bad: Expr
    status: str = "PDC_ERR_INDEX"


@dataclass(frozen=True)
class Comment(Stmt):
    text: str


@dataclass(frozen=True)
class Barrier(Stmt):
    """Every work-item of the group waits here; `space`'s writes before it are seen after it."""
    space: str = "local"


@dataclass(frozen=True)
class Allocate(Stmt):
    """A local or private array of `size` elements (a work-group's shared memory, a thread's stack)."""
    buffer: Buffer
    size: int


@dataclass(frozen=True)
class Copy(Stmt):
    """dst[dst_index + k] = src[src_index + k] for k < count. The ranges do not overlap, except
    with in_place: they may then be the same range (an in-place op), and nothing is copied."""
    dst: Buffer
    dst_index: Expr
    src: Buffer
    src_index: Expr
    count: Expr
    in_place: bool = False


@dataclass(frozen=True)
class Fill(Stmt):
    """dst[index + k] = value for k < count; zero: the value's bits are all zero (memset-able)."""
    dst: Buffer
    index: Expr
    count: Expr
    value: Expr
    zero: bool = False


@dataclass(frozen=True)
class ConstArray(Stmt):
    """A read-only array with its values written into the source (a small index table)."""
    buffer: Buffer
    values: tuple


@dataclass(frozen=True)
class WeightsView(Stmt):
    """`buffer` names constant data packed into the bundle's weights at byte `offset` (a table too
    large for the source)."""
    buffer: Buffer
    offset: int


# ---- the kernel ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    buffer: Buffer
    const: bool = False  # read-only


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple
    body: Block


# ---- builders -----------------------------------------------------------------------------------
def block(*stmts, scoped: bool = False) -> Block:
    """A Block of statements; nested lists and plain (unscoped) Blocks are flattened, None dropped."""
    out: list = []

    def add(s):
        if s is None:
            return
        if isinstance(s, (list, tuple)):
            for x in s:
                add(x)
        elif isinstance(s, Block) and not s.scoped:
            for x in s.body:
                add(x)
        elif isinstance(s, Stmt):
            out.append(s)
        else:
            raise TypeError(f"kir: {s!r} is not a statement")
    add(stmts)
    return Block(tuple(out), scoped)


def loop(var: Var, stop, *body, start=0, step: int = 1, annotation: Optional[Annotation] = None) -> For:
    return For(var, as_expr(start), as_expr(stop), block(*body), step, annotation)


def when(cond, *body) -> If:
    """if (cond) { body }"""
    return If(as_expr(cond), block(*body))


def store(buffer: Buffer, index, value) -> Store:
    """buffer[index] = value converted to the buffer's type."""
    if buffer.dtype is None:
        raise UnsupportedError(f"kir: {buffer.name} has no element type to store")
    return Store(buffer, as_expr(index), cast(buffer.dtype, value))


def io_buffers(inputs: Sequence[Optional[DType]], outputs: Sequence[DType],
               space: str = "global") -> tuple[list[Buffer], list[Buffer]]:
    """The buffers of pdc's kernel signature: read-only inputs in0.. and outputs out0.."""
    return ([Buffer(f"in{i}", t, space) for i, t in enumerate(inputs)],
            [Buffer(f"out{i}", t, space) for i, t in enumerate(outputs)])


def make_kernel(name: str, inputs: Sequence[Buffer], outputs: Sequence[Buffer], *body) -> Kernel:
    params = tuple([Param(b, True) for b in inputs] + [Param(b, False) for b in outputs])
    return Kernel(name, params, block(*body))


__all__ = ["Stmt", "Parallel", "Vectorize", "Unroll", "Pipeline", "Bind", "Annotation", "Declare", "Assign",
           "Store", "Block", "If", "For", "Continue", "Break", "Check", "Comment", "Barrier", "Allocate", "Copy",
           "Fill", "ConstArray", "WeightsView", "Param", "Kernel", "block", "loop", "when", "store", "io_buffers",
           "make_kernel"]
