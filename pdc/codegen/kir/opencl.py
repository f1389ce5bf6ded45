"""OpenCLPrinter: kernel IR as OpenCL C 1.2, the CPrinter with OpenCL's spellings.

What differs from C: type names (char, uint, long, half), overloaded math functions (no float
suffix; rint for nearbyint), address-space qualifiers, `__kernel`, loops bound to work-items
(get_global_id / get_group_id / get_local_id, guarded by the loop's bound), barriers, vector
types (float4, vload4 / vstore4), half-precision loads and stores through the program's PDC_LDH /
PDC_STH (vload_half / vstore_half_rte where the device has cl_khr_fp16, exact integer conversions
elsewhere), and copies and fills as loops (no memcpy / memset).
bf16 uses the helpers in `helpers`, which the program's source must include once.
"""
from __future__ import annotations

from .expr import Cast, Const, Expr, Load, iadd
from .printer import PREC, PRIMARY, UNARY, DevicePrinter
from .stmt import Barrier, Copy, Fill, Store, Unroll
from ...ir.dtypes import float32 as F32
from .types import VectorType

HELPERS = r"""
inline float pdc_bf16_to_f32(ushort h) { return as_float((uint)h << 16); }
inline ushort pdc_f32_to_bf16(float f) {
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (ushort)(u >> 16);
}
"""


class OpenCLPrinter(DevicePrinter):
    type_names = {"f64": "double", "f32": "float", "f16": "half", "bf16": "ushort", "i8": "char", "u8": "uchar",
                  "i16": "short", "u16": "ushort", "i32": "int", "u32": "uint", "i64": "long", "u64": "ulong",
                  "bool": "uchar"}
    index_type = "long"
    float_suffix = ""
    math_names = {"nearbyint": "rint"}
    space_qualifiers = {"global": "__global", "constant": "__constant", "local": "__local", "private": "__private"}
    kernel_prefix = "__kernel "
    const_array_prefix = "__constant"
    helpers = HELPERS
    id_functions = {"global": "get_global_id", "group": "get_group_id", "local": "get_local_id"}
    status_type = "__global int"

    def __init__(self, half_storage: bool = False):
        # --precision fp16: float32 tensors in global memory are stored as half, computed as float
        self.half_storage = half_storage

    def halved(self, buffer) -> bool:
        """A float32 buffer in global memory, stored as half."""
        return self.half_storage and buffer.space == "global" and buffer.dtype is not None \
            and buffer.dtype.short == "f32"

    def half_memory(self, buffer) -> bool:
        """Elements stored as half: read and written through PDC_LDH / PDC_STH (assigning half
        elements directly needs cl_khr_fp16)."""
        return self.halved(buffer) or (buffer.dtype is not None and buffer.dtype.short == "f16")

    def param(self, p) -> str:
        if self.halved(p.buffer):
            return f"__global {'const ' if p.const else ''}half *{p.buffer.name}"
        return super().param(p)

    def vector_type_name(self, t: VectorType) -> str:
        return f"{self.type_names[t.elem.short]}{t.lanes}"

    def vector_typedefs(self, root) -> list[str]:
        return []

    def convert(self, to, x: Expr):
        if isinstance(to, VectorType):
            return f"convert_{self.type_name(to)}({self.expr(x)})", PRIMARY
        if isinstance(x, Load) and self.half_memory(x.buffer) and x.lanes == 1 and to.short in ("f32", "f64"):
            text = self.load(x)
            return (text, PRIMARY) if to.short == "f32" else (f"(double){text}", UNARY)
        return super().convert(to, x)

    def load(self, e: Load) -> str:
        if self.half_memory(e.buffer):  # half in memory is read as float (the program's PDC_LDH)
            if e.lanes == 1:
                return f"PDC_LDH({e.buffer.name}, {self.expr(e.index)})"
            if e.lanes == 4:
                return f"PDC_LDH4({e.buffer.name}, {self.expr(e.index)})"
            return f"({self.type_name(VectorType(F32, e.lanes))})(" + ", ".join(
                f"PDC_LDH({e.buffer.name}, {self.expr(iadd(e.index, k))})" for k in range(e.lanes)) + ")"
        if e.lanes == 1:
            return super().load(e)
        return f"vload{e.lanes}(0, {self.address(e.buffer.name, e.index)})"

    def store_half(self, buffer, index: Expr, value: str, lanes: int = 1) -> str:
        """value (a float, or a vector of `lanes` floats) into half memory, rounded to nearest even."""
        if lanes in (1, 4):
            return f"PDC_STH{'' if lanes == 1 else 4}({buffer.name}, {self.expr(index)}, {value});"
        stores = " ".join(f"PDC_STH({buffer.name}, {self.expr(iadd(index, k))}, v_.s{k:x});" for k in range(lanes))
        return f"{{ const float{lanes} v_ = {value}; {stores} }}"

    def bitcast(self, e):
        """as_<type>: OpenCL reinterprets any value as another type of its size."""
        if self.type_name(e.dtype) == self.type_name(e.a.dtype):
            return self._expr(e.a)
        return f"as_{self.type_name(e.dtype)}({self.expr(e.a)})", PRIMARY

    def broadcast(self, e) -> str:
        return f"({self.type_name(e.dtype)})({self.expr(e.a)})"

    def simple(self, s):
        if isinstance(s, Store) and self.half_memory(s.buffer):
            v = s.value.a if isinstance(s.value, Cast) and s.buffer.dtype.short == "f16" else s.value
            return self.store_half(s.buffer, s.index, self.expr(v), s.lanes)
        if isinstance(s, Store) and s.lanes > 1:
            return f"vstore{s.lanes}({self.expr(s.value)}, 0, {self.address(s.buffer.name, s.index)});"
        if isinstance(s, Copy) and (self.half_memory(s.dst) or self.half_memory(s.src)):
            k = "copy_i"
            src, dst = self._at(s.src_index, k), self._at(s.dst_index, k)
            value = f"PDC_LDH({s.src.name}, {src})" if self.half_memory(s.src) else f"{s.src.name}[{src}]"
            store = (f"PDC_STH({s.dst.name}, {dst}, {value});" if self.half_memory(s.dst)
                     else f"{s.dst.name}[{dst}] = {value};")
            return f"for ({self.index_type} {k} = 0; {k} < {self.expr(s.count)}; {k}++) {store}"
        if isinstance(s, Copy):
            k = "copy_i"
            value = f"{s.src.name}[{self._at(s.src_index, k)}]"
            if self.type_name(s.src.dtype) != self.type_name(s.dst.dtype):  # bits moved, not converted
                value = f"as_{self.type_name(s.dst.dtype)}({value})"
            return (f"for ({self.index_type} {k} = 0; {k} < {self.expr(s.count)}; {k}++) "
                    f"{s.dst.name}[{self._at(s.dst_index, k)}] = {value};")
        return super().simple(s)

    def fill(self, s: Fill, level: int) -> list[str]:
        if self.half_memory(s.dst):
            i = "fill_i"
            at = i if isinstance(s.index, Const) and s.index.value == 0 else f"{self._operand(s.index, PREC['add'])} + {i}"
            return [f"{self.indent * level}for ({self.index_type} {i} = 0; {i} < {self.expr(s.count)}; {i}++) "
                    f"PDC_STH({s.dst.name}, {at}, {self.expr(s.value)});"]
        return super().fill(Fill(s.dst, s.index, s.count, s.value, zero=False), level)

    def loop_pragmas(self, annotation, level: int) -> list[str]:
        if isinstance(annotation, Unroll):
            hint = f"({annotation.factor})" if annotation.factor else ""
            return [self.indent * level + f"__attribute__((opencl_unroll_hint{hint}))"]
        return []

    def work_item(self, scope: str, dim: int) -> str:
        return f"{self.id_functions[scope]}({dim})"

    def barrier(self, s: Barrier) -> str:
        return f"barrier({'CLK_GLOBAL_MEM_FENCE' if s.space == 'global' else 'CLK_LOCAL_MEM_FENCE'});"
