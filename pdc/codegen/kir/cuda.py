"""CUDAPrinter: kernel IR as CUDA C++ device code, the CPrinter with CUDA's spellings.

What differs from C: `extern "C" __global__` kernels (unmangled names the host looks up), loops
bound to threads (blockIdx / threadIdx, guarded by the loop's bound), `__shared__` memory and
`__syncthreads()`, half precision as cuda_fp16's `__half` with its conversion intrinsics, and the
bundle's float storage: under --precision fp16 / bf16 a float32 tensor in global memory is stored
as `pdc_f32s` (__half / __nv_bfloat16) and read and written through the program's PDC_LD / PDC_ST,
computed in float. CUDA device code has no GCC vector types: a kernel using them is refused
(UnsupportedError) and its node runs on the host.
"""
from __future__ import annotations

import numpy as np

from .expr import Expr, Load
from .printer import PRIMARY, UNARY, DevicePrinter
from .stmt import Barrier, Copy, Fill, Store
from .types import VectorType
from ...ir.errors import UnsupportedError


class CUDAPrinter(DevicePrinter):
    type_names = {**DevicePrinter.type_names, "f16": "__half", "bool": "uint8_t"}
    space_qualifiers = {"global": "", "constant": "", "local": "__shared__", "private": ""}
    kernel_prefix = 'extern "C" __global__ '
    id_axes = {"global": None, "group": "blockIdx", "local": "threadIdx"}

    def __init__(self, storage: str = "f32"):
        # how float32 tensors in global memory are stored: f32, or f16 / bf16 (--precision)
        self.storage = storage

    def halved(self, buffer) -> bool:
        """A float32 buffer in global memory stored in 16 bits (pdc_f32s)."""
        return self.storage != "f32" and buffer.space == "global" and buffer.dtype is not None \
            and buffer.dtype.short == "f32"

    def type_name(self, t) -> str:
        if isinstance(t, VectorType):
            raise UnsupportedError("kir: CUDA device code has no vector types")
        return super().type_name(t)

    def float_literal(self, x: float, t) -> str:
        """A float32 constant as the float it is (nvcc warns on a literal it must round)."""
        if t.short == "f32":
            x = float(np.float32(x))
        return super().float_literal(x, t)

    def param(self, p) -> str:
        if self.halved(p.buffer):
            return f"{'const ' if p.const else ''}pdc_f32s *{p.buffer.name}"
        return super().param(p)

    def convert(self, to, x: Expr):
        frm = x.dtype
        if isinstance(x, Load) and self.halved(x.buffer) and to.short in ("f32", "f64"):
            text = self.load(x)
            return (text, PRIMARY) if to.short == "f32" else (f"(double){text}", UNARY)
        if frm.short == "f16" and to.short != "f16":
            text = f"__half2float({self.expr(x)})"
            return (text, PRIMARY) if to.short == "f32" else (f"({self.type_name(to)}){text}", UNARY)
        if to.short == "f16" and frm.short != "f16":
            inner = self.expr(x) if frm.short == "f32" else f"(float){self._operand(x, UNARY)}"
            return f"__float2half_rn({inner})", PRIMARY
        return super().convert(to, x)

    def load(self, e: Load) -> str:
        if self.halved(e.buffer):
            return f"PDC_LD({e.buffer.name}, {self.expr(e.index)})"
        return super().load(e)

    def simple(self, s):
        if isinstance(s, Store) and self.halved(s.buffer):
            return f"PDC_ST({s.buffer.name}, {self.expr(s.index)}, {self.expr(s.value)});"
        if isinstance(s, Copy) and (self.halved(s.dst) or self.halved(s.src)):
            k = "copy_i"
            src, dst = self._at(s.src_index, k), self._at(s.dst_index, k)
            value = f"PDC_LD({s.src.name}, {src})" if self.halved(s.src) else f"{s.src.name}[{src}]"
            store = (f"PDC_ST({s.dst.name}, {dst}, {value});" if self.halved(s.dst)
                     else f"{s.dst.name}[{dst}] = {value};")
            return f"for ({self.index_type} {k} = 0; {k} < {self.expr(s.count)}; {k}++) {store}"
        return super().simple(s)

    def fill(self, s: Fill, level: int) -> list[str]:
        if self.halved(s.dst):
            i = "fill_i"
            return [f"{self.indent * level}for ({self.index_type} {i} = 0; {i} < {self.expr(s.count)}; {i}++) "
                    f"PDC_ST({s.dst.name}, {self._at(s.index, i)}, {self.expr(s.value)});"]
        return super().fill(s, level)

    def work_item(self, scope: str, dim: int) -> str:
        axis = "xyz"[dim]
        if scope == "global":
            return f"((int64_t)blockIdx.{axis} * blockDim.{axis} + threadIdx.{axis})"
        return f"(int64_t){self.id_axes[scope]}.{axis}"

    def barrier(self, s: Barrier) -> str:
        return "__syncthreads();" if s.space != "global" else "__threadfence(); __syncthreads();"


# the bfloat16 conversions printed kernels call (bf16 tensors are uint16_t, as in C)
HELPERS = r"""
static __device__ __forceinline__ __attribute__((unused)) float pdc_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
static __device__ __forceinline__ __attribute__((unused)) uint16_t pdc_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}
"""

__all__ = ["CUDAPrinter", "HELPERS"]
