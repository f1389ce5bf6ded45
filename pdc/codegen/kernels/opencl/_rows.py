"""Shared pieces of the row-wise OpenCL kernels (softmax family, normalizations, attention, pooling).

A "row" is a group of elements one output depends on together (a softmax row, a layer-norm row,
an instance-norm plane). Rows run one of two ways, chosen at compile time:

- item: one work-item per row, the row's loops sequential (short rows, many of them); the global
  size is the row count rounded up to ITEM_GROUP, and the extra work-items return at once.
- group: one work-group of a power-of-two size per row (long rows); the work-items stride over
  the row and combine their partial results with a __local tree reduction (reduce()).

The same body text serves both: loop() opens the loop over a row's elements (all of them, or the
work-item's stride), reduce() combines a partial result across the group (nothing for an item).
A group's work-items never return early: every one of them must reach each barrier (PoCL
miscompiles a group whose items all return before a later barrier, writing to wrong rows).

float32 tensors in global memory (inputs, outputs, float32 tables) are `pdc_f32s` buffers read and
written only through ld() / st() (the program's PDC_LD / PDC_ST: half storage under --precision
fp16, plain float accesses otherwise); __local and private arrays, and device scratch only the
kernel itself reads, stay float.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...ctypes_c import float_literal
from . import Launch, round_up

ITEM_GROUP = 64  # work-group size of the one-item-per-row launches (a multiple of Mali's warp of 16)
LONG_ROW = 256  # rows at least this long get a work-group each
BIG_ROW = 4096  # rows at least this long get the larger group
GROUP_SMALL, GROUP_LARGE = 64, 128
prod = math.prod

# element types a kernel parameter may point at (OpenCL C spelling); others decline
CL_TYPES = {"f32": "float", "i64": "long", "i32": "int", "bool": "uchar", "i8": "char", "u8": "uchar"}


F32S = "pdc_f32s"  # the storage type of float32 tensors in global memory (program.STORAGE)


def cl_type(dt) -> Optional[str]:
    return CL_TYPES.get(dt.short)


def storage_type(dt) -> Optional[str]:
    """The element type of a global buffer of dtype dt: pdc_f32s for float32, else cl_type."""
    return F32S if dt.short == "f32" else cl_type(dt)


def ld(p: str, i, ty: str = F32S) -> str:
    """Element i of the global buffer p (of element type ty) as a value: a float for pdc_f32s."""
    return f"PDC_LD({p}, {i})" if ty == F32S else f"{p}[{i}]"


def st(p: str, i, v: str, ty: str = F32S) -> str:
    """The statement storing v at element i of the global buffer p (of element type ty)."""
    return f"PDC_ST({p}, {i}, {v});" if ty == F32S else f"{p}[{i}] = {v};"


def lit(x: float) -> str:
    """An exact float32 literal of x (rounded to float32 first, as the references' attributes are)."""
    return float_literal(float(np.float32(x)), "float")


def itype(*sizes: int) -> str:
    """The index type for element offsets below max(sizes)."""
    return "int" if max(sizes, default=0) < 2 ** 31 - 1 else "long"


def group_size(n: int) -> int:
    return GROUP_LARGE if n >= BIG_ROW else GROUP_SMALL


class Rows:
    """`count` rows of `n` elements each, as items or groups (see the module doc)."""

    def __init__(self, count: int, n: int, group: Optional[bool] = None, wg: Optional[int] = None):
        self.count, self.n = count, n
        self.group = n >= LONG_ROW if group is None else group
        self.wg = (wg or group_size(n)) if self.group else ITEM_GROUP
        self.it = itype(count * max(n, 1))

    @property
    def kind(self) -> str:
        return "group" if self.group else "item"

    def attribute(self) -> str:
        return f"PDC_WORK_GROUP({self.wg}, 1, 1) " if self.group else ""

    def prologue(self, local: tuple = ()) -> str:
        """Declares the group's __local arrays (`red` and the C declarations in `local`, groups
        only), r (the row) and lid (the work-item in the row's group, 0 for an item)."""
        it = self.it
        if self.group:
            return "\n".join([f"__local float red[{self.wg}];", *local,
                              f"const {it} r = ({it})get_group_id(0);",
                              "const int lid = (int)get_local_id(0);"])
        return (f"const {it} r = ({it})get_global_id(0);\n"
                f"if (r >= {self.count}) return;\n"
                "const int lid = 0; (void)lid;")

    def loop(self, var: str = "i", n: Optional[int] = None) -> str:
        n = self.n if n is None else n
        if self.group:
            return f"for ({self.it} {var} = lid; {var} < {n}; {var} += {self.wg})"
        return f"for ({self.it} {var} = 0; {var} < {n}; {var}++)"

    def reduce(self, var: str, op: str) -> str:
        """Combines the float `var` over the group (op: 'sum', 'max' NaN-sticky, 'or'), leaving the
        result in every work-item's `var`; nothing for an item."""
        if not self.group:
            return ""
        comb = {"sum": "ra + rb", "max": "(rb > ra || rb != rb) ? rb : ra",
                "or": "(ra != 0.0f || rb != 0.0f) ? 1.0f : 0.0f"}[op]
        return tree(var, comb, self.wg)

    def sync(self) -> str:
        """A barrier between a phase writing global memory and one reading other items' writes."""
        return "barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);" if self.group else ""

    def launch(self, fn: str, args) -> Launch:
        if self.group:
            return Launch(fn, tuple(args), (self.count * self.wg,), (self.wg,))
        return Launch(fn, tuple(args), (round_up(max(self.count, 1), ITEM_GROUP),), (ITEM_GROUP,))


def tree(var: str, comb: str, wg: int, buf: str = "red") -> str:
    """A __local tree reduction of the float `var` over a group of wg (a power of two) items with
    the C expression `comb` of ra and rb; every item ends with the result (the group's buffer is free
    again after the last barrier)."""
    return "\n".join([
        f"{buf}[lid] = {var};",
        "barrier(CLK_LOCAL_MEM_FENCE);",
        f"for (int off = {wg // 2}; off > 0; off >>= 1) {{",
        f"    if (lid < off) {{ const float ra = {buf}[lid], rb = {buf}[lid + off]; {buf}[lid] = {comb}; }}",
        "    barrier(CLK_LOCAL_MEM_FENCE);",
        "}",
        f"{var} = {buf}[0];",
        "barrier(CLK_LOCAL_MEM_FENCE);"])


def indent(code: str, n: int = 1) -> str:
    pad = "    " * n
    return "\n".join(pad + line if line else line for line in code.splitlines())


def kernel_source(attribute: str, fn: str, params: list[str], body: str) -> str:
    return f"__kernel {attribute}void {fn}({', '.join(params)}) {{\n{indent(body)}\n}}\n"
