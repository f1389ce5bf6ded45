"""What a kernel generator sees of its node (see pdc.codegen.kernels)."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..ir.dtypes import DType
from ..ir.errors import UnsupportedError
from ..ir.graph import Node
from ..ir.symbolic import SizeExpr, dim_exprs, same_size, upper
from ..ir.types import TensorType
from .ctypes_c import ctype

SLOT_GAP = 256  # bytes between two threads' scratch slots (see KernelContext.thread_scratch)


def strides(shape) -> list[int]:
    """Row-major element strides of a static shape."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def broadcast_strides(in_shape, out_shape) -> list[int]:
    """Element strides of an input read at output indices (numpy broadcasting): 0 on broadcast dims."""
    pad = len(out_shape) - len(in_shape)
    st = strides(in_shape)
    # a dim equal to the output's is read as it is (a size known only at run time is equal only to
    # itself, which no broadcast can stretch)
    return [0 if i < pad or same_size(in_shape[i - pad], 1) and not same_size(in_shape[i - pad], out_shape[i])
            else st[i - pad] for i in range(len(out_shape))]


class KernelContext:
    def __init__(self, node: Node, fn_name: str, config, weights, helpers: dict):
        self.node = node
        self.fn_name = fn_name
        self.config = config  # KernelConfig (pdc/targets/base.py): threads, vector ISA, tiles
        self.reports_status = False  # the kernel takes `pdc_status *pdc_err` (see check)
        self.family = None  # the kernel family that rendered the node (set by kernels.generate)
        self.scratch_bytes = 0  # the kernel takes `uint8_t *pdc_scratch` of this size (see scratch)
        self.vtcm_bytes = 0  # the kernel takes `uint8_t *pdc_vtcm` of this size (see vtcm)
        self.kir_kernel = None  # the kir Kernel a kernel-IR generator printed (kernels._kir.render)
        self.attrs = node.attrs
        self.readers: list[Node] = []  # the nodes that read the first output (where the renderer knows them)
        self._weights = weights
        self._helpers = helpers
        sizes = dim_exprs(config.bounds)
        self.runtime_sizes = False  # some shape of the node holds a size known only at run time
        inputs_static = all(v is None or v.type.is_static for v in node.inputs)
        for v in node.inputs + node.outputs:
            if v is not None and v.type.shape is not None and v.type.shape and all(
                    isinstance(d, int) or d in sizes for d in v.type.shape) and not v.type.is_static:
                self.runtime_sizes = True
            elif v is not None and not v.type.is_static:
                if sizes:
                    raise UnsupportedError(f"{node.describe()}: %{v.name} has type {v.type}, a size pdc cannot "
                                           f"write in terms of the sizes known only at run time "
                                           f"({', '.join(sizes)}); compiled code takes those sizes themselves, "
                                           f"not sums or products of them")
                if inputs_static:
                    raise UnsupportedError(f"{node.describe()}: the shape of %{v.name} ({v.type}) depends on the "
                                           f"input values; pdc compiles static shapes only")
                raise UnsupportedError(f"{node.describe()}: %{v.name} has type {v.type}; pdc compiles static "
                                       f"shapes only (bind symbolic dims with --shape)")
        self.inputs: list[Optional[TensorType]] = [None if v is None else runtime_type(v.type, sizes)
                                                   for v in node.inputs]
        self.outputs: list[TensorType] = [runtime_type(v.type, sizes) for v in node.outputs]

    # ---- signature -------------------------------------------------------------------------
    def signature(self) -> str:
        params = []
        for i, t in enumerate(self.inputs):
            params.append(f"const {ctype(t.dtype) if t else 'void'} *in{i}")
        for i, t in enumerate(self.outputs):
            params.append(f"{ctype(t.dtype)} *out{i}")
        if self.scratch_bytes:
            params.append("uint8_t *pdc_scratch")
        if self.vtcm_bytes:
            params.append("uint8_t *pdc_vtcm")
        if self.reports_status:
            params.append("pdc_status *pdc_err")
        return f"void {self.fn_name}({', '.join(params) or 'void'})"

    def scratch(self, count: int, c_type: str = "float", itemsize: int = 4) -> str:
        """A C pointer to `count` items of memory for this kernel alone, in the arena (free while
        the node runs) instead of on the stack, which microcontrollers have little of."""
        offset = -(-self.scratch_bytes // 64) * 64
        self.scratch_bytes = offset + upper(count) * itemsize
        return f"(({c_type} *)(pdc_scratch + {offset}))"

    def vtcm(self, nbytes: int) -> str:
        """A C pointer (uint8_t *) to `nbytes` of the on-chip memory of a DSP (Hexagon's VTCM), 128-byte
        aligned, for this kernel alone: every kernel's region starts at the bundle's VTCM base."""
        offset = -(-self.vtcm_bytes // 128) * 128
        self.vtcm_bytes = offset + nbytes
        return f"(pdc_vtcm + {offset})"

    def slots(self, parallel) -> int:
        """The thread slots of a kernel's scratch: the compiled thread count if it uses the pool."""
        return self.config.threads if parallel else 1

    def thread_scratch(self, count: int, slots: int, c_type: str = "float", itemsize: int = 4) -> tuple[str, int]:
        """Scratch of `count` items for each of `slots` threads (a parallel kernel dispatches with
        pdc_parallel_slots(..., slots, ...), so no more threads run it): a C pointer to slot 0 and
        the items from one slot to the next (64-byte aligned). Several slots keep SLOT_GAP bytes
        apart: a core's prefetchers fetch the lines just past those it writes, and a neighbour's
        slot there moves from core to core on every store (a float max pool's 320-byte rows: 2
        threads 45 us, 29 us with the gap)."""
        stride = -(-upper(count) * itemsize // 64) * 64 + (SLOT_GAP if slots > 1 else 0)
        return self.scratch(stride // itemsize * slots, c_type, itemsize), stride // itemsize

    def check(self, bad: str, status: str = "PDC_ERR_INDEX") -> str:
        """A C statement that makes the run function return `status` when `bad` holds (bad input
        data, e.g. an index out of range); the kernel itself goes on, memory-safe. Serial code only."""
        self.reports_status = True
        return f"if ({bad}) *pdc_err = {status};"

    def split(self, work: int, min_work: int) -> bool:
        """Whether to spread `work` over the thread pool: the bundle is compiled for several
        threads and there is enough work to pay for the dispatch (work known only at run time: at
        its upper bound; see split_at_run_time)."""
        return self.config.parallel and upper(work) >= min_work

    @staticmethod
    def split_at_run_time(work, min_work: int) -> Optional[str]:
        """Where split(work) holds at the upper bound but not at every size: the C condition under
        which the run should use the pool; None where the answer is the same for every size."""
        if isinstance(work, SizeExpr) and work.lo < min_work <= work.hi:
            return f"{work} >= {min_work}"
        return None

    # ---- data --------------------------------------------------------------------------------
    def const(self, i: int) -> Optional[np.ndarray]:
        v = self.node.inputs[i] if i < len(self.node.inputs) else None
        return None if v is None else v.data

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] is not None

    def add_weight(self, array: np.ndarray, c_type: str = "float") -> str:
        """Adds compile-time data (packed weights, tables); returns a C pointer expression to it."""
        offset = self._weights.add(np.ascontiguousarray(array))
        return f"((const {c_type} *)(pdc_weights + {offset}))"

    def helper(self, name: str, code: str) -> str:
        """Registers a static helper emitted once per kernel file; returns its name."""
        self._helpers.setdefault(name, code)
        return name

    # ---- C spellings ---------------------------------------------------------------------------
    @staticmethod
    def ctype(dt: DType) -> str:
        return ctype(dt)

    @staticmethod
    def compute_ctype(dt: DType) -> str:
        """The type arithmetic runs in: half precision computes in float, like the reference."""
        return "float" if dt.short in ("f16", "bf16") else ctype(dt)

    @staticmethod
    def load(dt: DType, expr: str) -> str:
        if dt.short == "bf16":
            return f"pdc_bf16_to_f32({expr})"
        if dt.short == "f16":
            return f"(float)({expr})"
        return expr

    @staticmethod
    def store(dt: DType, expr: str) -> str:
        if dt.short == "bf16":
            return f"pdc_f32_to_bf16({expr})"
        if dt.short == "f16":
            return f"(_Float16)({expr})"
        return f"({ctype(dt)})({expr})"

    def fail(self, msg: str):
        raise UnsupportedError(f"{self.node.describe()}: {msg}")


def runtime_type(t: TensorType, sizes: dict) -> TensorType:
    """t with each bounded symbol as the SizeExpr that reads its size in the run."""
    if not sizes or t.is_static:
        return t
    return TensorType(t.dtype, tuple(sizes.get(d, d) if isinstance(d, str) else d for d in t.shape), t.quant)


def numel(t: TensorType) -> int:
    return math.prod(t.shape)
