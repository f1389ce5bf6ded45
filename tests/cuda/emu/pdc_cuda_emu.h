/* Device code of a pdc CUDA bundle compiled as C++ for the CPU emulator (cuda_emu.cpp): CUDA's
 * qualifiers, built-in variables, half / bfloat16 types and intrinsics, __syncthreads (a fiber
 * switch) and the warp matrix functions (wmma, lane 0 of a warp holding whole 16x16 tiles), as the
 * bundle's kernels use them. Included through the cuda_fp16.h / cuda_bf16.h / mma.h beside it. */
#ifndef PDC_CUDA_EMU_DEVICE_H
#define PDC_CUDA_EMU_DEVICE_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"

struct uint3 { unsigned int x, y, z; };
extern "C" {
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
void pdc_emu_syncthreads(void);
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static /* one block runs at a time: a function's statics are its shared memory */
#define __syncthreads() pdc_emu_syncthreads()
#define __threadfence() std::atomic_thread_fence(std::memory_order_seq_cst)

typedef _Float16 __half;
typedef __half half;
inline float __half2float(__half h) { return (float)h; }
inline __half __float2half_rn(float f) { return (__half)f; }

struct __nv_bfloat16 {
    uint16_t bits;
    operator float() const { uint32_t u = (uint32_t)bits << 16; float f; memcpy(&f, &u, 4); return f; }
};
inline float __bfloat162float(__nv_bfloat16 b) { return (float)b; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}
inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline float __fmul_rn(float a, float b) { volatile float p = a * b; return p; }
template <class A, class B> inline auto min(A a, B b) { return a < b ? a : b; }  /* by value: auto decays */
template <class A, class B> inline auto max(A a, B b) { return a < b ? b : a; }

/* The kernel table's entries: each kernel with the function that calls it on a launch's arguments. */
namespace pdc_emu {
struct Entry {
    void (*invoke)(const Entry *, void **);
    void *fn;
    int arity;
};
template <class... A, size_t... I> void call(void (*f)(A...), void **args, std::index_sequence<I...>) {
    f(*static_cast<A *>(args[I])...);
}
template <class... A> void invoke(const Entry *e, void **args) {
    call(reinterpret_cast<void (*)(A...)>(e->fn), args, std::index_sequence_for<A...>{});
}
template <class... A> const void *entry(void (*f)(A...)) {
    return new Entry{&invoke<A...>, reinterpret_cast<void *>(f), (int)sizeof...(A)};
}
inline bool lane0() {
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return t % 32 == 0;
}
}  // namespace pdc_emu
#define PDC_KERNEL_ADDRESS(fn) pdc_emu::entry(fn)

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
    T x[rows * cols];
};
/* Every lane of a warp makes the same call on the same tiles; lane 0 computes and stores them for
   the warp (a fragment is never read element by element in pdc's kernels), the others skip. */
template <class U, int M, int N, int K, class T, class L> void fill_fragment(fragment<U, M, N, K, T, L> &f, float v) {
    if (!pdc_emu::lane0()) return;
    for (auto &e : f.x) e = (T)v;
}
template <class U, int M, int N, int K, class T, class L>
void load_matrix_sync(fragment<U, M, N, K, T, L> &f, const T *p, unsigned ldm) {
    static_assert(std::is_same<L, row_major>::value, "the emulator loads row-major tiles");
    using F = fragment<U, M, N, K, T, L>;
    if (!pdc_emu::lane0()) return;
    for (int r = 0; r < F::rows; r++)
        for (int c = 0; c < F::cols; c++) f.x[r * F::cols + c] = p[(size_t)r * ldm + c];
}
template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
              const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    if (!pdc_emu::lane0()) return;
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; k++) s += (float)a.x[i * K + k] * (float)b.x[k * N + j];
            out[i * N + j] = s;
        }
    memcpy(d.x, out, sizeof out);
}
template <int M, int N, int K>
void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t layout) {
    if (!pdc_emu::lane0()) return;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            if (layout == mem_row_major) p[(size_t)i * ldm + j] = f.x[i * N + j];
            else p[(size_t)j * ldm + i] = f.x[i * N + j];
        }
}
}  // namespace wmma
}  // namespace nvcuda
#endif
