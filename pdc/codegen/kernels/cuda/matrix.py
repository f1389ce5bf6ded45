"""Matrix products on NVIDIA GPUs: the kernels of a MatrixProduct (kernels/opencl/_matrix.py: C
expressions of one element of A and of B and the statements storing one result, shared with the
OpenCL kernels that build them for gemm, matmul and every convolution).

- `tiled` (CUDA cores, float): a block of 16 x 16 threads computes a 64 x 64 block of C; each
  step of the K loop stages a 16-deep slab of A and of B in shared memory, and each thread
  accumulates 4 x 4 results in registers, its rows and columns 16 apart (conflict-free shared
  reads, coalesced stores).
- `wmma` (tensor cores, --precision fp16 / bf16): a block of 4 warps computes a 64 x 64 block of
  C; each warp 32 x 32 of it as 2 x 2 wmma 16x16x16 fragments accumulating in float from slabs of
  A and B converted to the storage's 16-bit type in shared memory; the accumulators go through
  shared memory to the epilogue, which stores every element through the product's `store`.
- `simple` (the OpenCL family's, one thread per element of C) for tiny products.
"""
from __future__ import annotations

from ..opencl import Launch, round_up
from ..opencl._matrix import MatrixProduct, indent, kernel_params, slab_load

T, R, TK = 16, 4, 16  # tiled: threads per side, results per thread per side, slab depth
TILE = T * R  # 64
WARPS_M, WARPS_N, FRAG = 2, 2, 16  # wmma: warps per block side, fragment size
WM = 32  # C rows (and columns) per warp
LDA, LDB, LDC = TK + 8, TILE + 8, TILE + 4  # padded shared strides (wmma: multiples of 8 halves / 4 floats)
WMMA_TYPES = {"f16": "__half", "bf16": "__nv_bfloat16"}
CONVERT = {"f16": "__float2half_rn", "bf16": "__float2bfloat16_rn"}


def _limits(mp: MatrixProduct):
    return (None if mp.M % TILE == 0 else mp.M, None if mp.N % TILE == 0 else mp.N,
            None if mp.K % TK == 0 else mp.K)


def _column_setup(mp: MatrixProduct, L: int, b_kmajor: bool) -> tuple[bool, list[str]]:
    """Whether every thread loads one fixed column of B's slab (cl), and that column's setup."""
    fixed = not b_kmajor and L % TILE == 0
    lines = []
    if fixed:
        lines.append(f"const int cl = lid % {TILE};")
        if mp.b_column is not None:  # padded columns (n >= N) compute a setup they never use
            lines += mp.b_column("(n0 + cl)")
    return fixed, lines


def _stores(mp: MatrixProduct, value, m: str, n: str, lim_m, lim_n) -> list[str]:
    cond = [c for c in (f"{m} < {mp.M}" if lim_m else "", f"{n} < {mp.N}" if lim_n else "") if c]
    body = [f"float v = {value};"] + mp.store("v", m, n)
    if cond:
        return [f"if ({' && '.join(cond)}) {{"] + ["    " + x for x in body] + ["}"]
    return ["{"] + ["    " + x for x in body] + ["}"]


def tiled(ctx, fn: str, mp: MatrixProduct) -> tuple[str, Launch]:
    names, params = kernel_params(ctx)
    lim_m, lim_n, lim_k = _limits(mp)
    L = T * T
    body = [f"__shared__ float As[{TK * TILE}];  /* As[k][m] */",
            f"__shared__ float Bs[{TK * TILE}];  /* Bs[k][n] */",
            "const int tx = threadIdx.x, ty = threadIdx.y, lid = ty * 16 + tx;",
            f"const int m0 = blockIdx.y * {TILE}, n0 = blockIdx.x * {TILE}, bt = blockIdx.z;",
            "(void)bt;  /* read by the batched products' prologue only */",
            *mp.prologue]
    fixed, setup = _column_setup(mp, L, mp.b_kmajor)
    body += setup
    a_load = slab_load("As", TK, TILE, L, "k0", "m0", lim_k, lim_m, lambda k, m: mp.a_elem(m, k),
                       rows_fast=not mp.a_kmajor)
    b_load = slab_load("Bs", TK, TILE, L, "k0", "n0", lim_k, lim_n, mp.b_elem, rows_fast=mp.b_kmajor,
                       fixed_col=fixed, col_setup=None if fixed else mp.b_column)
    body += [f"float c[{R}][{R}];",
             f"#pragma unroll\nfor (int i = 0; i < {R}; i++)",
             f"    #pragma unroll\n    for (int j = 0; j < {R}; j++) c[i][j] = 0.0f;",
             f"for (int k0 = 0; k0 < {mp.K}; k0 += {TK}) {{"]
    body += ["    " + x for x in a_load + b_load]
    body += ["    __syncthreads();",
             f"    #pragma unroll\n    for (int kk = 0; kk < {TK}; kk++) {{",
             f"        float a[{R}], b[{R}];",
             f"        #pragma unroll\n        for (int i = 0; i < {R}; i++) a[i] = As[kk * {TILE} + ty + i * {T}];",
             f"        #pragma unroll\n        for (int j = 0; j < {R}; j++) b[j] = Bs[kk * {TILE} + tx + j * {T}];",
             f"        #pragma unroll\n        for (int i = 0; i < {R}; i++)",
             f"            #pragma unroll\n            for (int j = 0; j < {R}; j++) c[i][j] += a[i] * b[j];",
             "    }", "    __syncthreads();", "}"]
    for i in range(R):
        for j in range(R):
            body.append(f"{{ const int m = m0 + ty + {i * T}, n = n0 + tx + {j * T};")
            body += ["    " + x for x in _stores(mp, f"c[{i}][{j}]", "m", "n", lim_m, lim_n)]
            body.append("}")
    src = (f'extern "C" __global__ __launch_bounds__({L})\nvoid {fn}({params})\n{{\n{indent(body, 4)}}}\n')
    gs = (round_up(mp.N, TILE) // R, round_up(mp.M, TILE) // R, mp.batch)
    return src, Launch(fn, tuple(names), gs, (T, T, 1))


def wmma(ctx, fn: str, mp: MatrixProduct, storage: str) -> tuple[str, Launch]:
    names, params = kernel_params(ctx)
    lim_m, lim_n, lim_k = _limits(mp)
    L = 32 * WARPS_M * WARPS_N
    ht, cvt = WMMA_TYPES[storage], CONVERT[storage]
    body = ["using namespace nvcuda;",
            f"__shared__ __align__(32) {ht} As[{TILE * LDA}];  /* As[m][k] */",
            f"__shared__ __align__(32) {ht} Bs[{TK * LDB}];  /* Bs[k][n] */",
            f"__shared__ __align__(32) float Cs[{TILE * LDC}];  /* the block of C, for the epilogue */",
            "const int lid = threadIdx.x, warp = lid / 32;",
            f"const int wm = warp / {WARPS_N}, wn = warp % {WARPS_N};",
            f"const int m0 = blockIdx.y * {TILE}, n0 = blockIdx.x * {TILE}, bt = blockIdx.z;",
            "(void)bt;  /* read by the batched products' prologue only */",
            *mp.prologue]
    fixed, setup = _column_setup(mp, L, mp.b_kmajor)
    body += setup
    a_load = slab_load("As", TILE, TK, L, "m0", "k0", lim_m, lim_k, mp.a_elem, rows_fast=mp.a_kmajor,
                       stride=LDA, wrap=lambda v: f"{cvt}({v})")
    b_load = slab_load("Bs", TK, TILE, L, "k0", "n0", lim_k, lim_n, mp.b_elem, rows_fast=mp.b_kmajor,
                       fixed_col=fixed, col_setup=None if fixed else mp.b_column, stride=LDB,
                       wrap=lambda v: f"{cvt}({v})")
    frag = f"{FRAG}, {FRAG}, {FRAG}"
    body += [f"wmma::fragment<wmma::accumulator, {frag}, float> acc[2][2];",
             "#pragma unroll\nfor (int i = 0; i < 2; i++)",
             "    #pragma unroll\n    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);",
             f"for (int k0 = 0; k0 < {mp.K}; k0 += {TK}) {{"]
    body += ["    " + x for x in a_load + b_load]
    body += ["    __syncthreads();",
             f"    wmma::fragment<wmma::matrix_a, {frag}, {ht}, wmma::row_major> a[2];",
             f"    wmma::fragment<wmma::matrix_b, {frag}, {ht}, wmma::row_major> b[2];",
             "    #pragma unroll\n    for (int i = 0; i < 2; i++) {",
             f"        wmma::load_matrix_sync(a[i], As + (wm * {WM} + i * {FRAG}) * {LDA}, {LDA});",
             f"        wmma::load_matrix_sync(b[i], Bs + wn * {WM} + i * {FRAG}, {LDB});",
             "    }",
             "    #pragma unroll\n    for (int i = 0; i < 2; i++)",
             "        #pragma unroll\n        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);",
             "    __syncthreads();", "}",
             "#pragma unroll\nfor (int i = 0; i < 2; i++)",
             "    #pragma unroll\n    for (int j = 0; j < 2; j++)",
             f"        wmma::store_matrix_sync(Cs + (wm * {WM} + i * {FRAG}) * {LDC} + wn * {WM} + j * {FRAG}, "
             f"acc[i][j], {LDC}, wmma::mem_row_major);",
             "__syncthreads();",
             f"for (int e = lid; e < {TILE * TILE}; e += {L}) {{",
             f"    const int m = m0 + e / {TILE}, n = n0 + e % {TILE};"]
    body += ["    " + x for x in _stores(mp, f"Cs[(e / {TILE}) * {LDC} + e % {TILE}]", "m", "n", lim_m, lim_n)]
    body.append("}")
    src = (f'extern "C" __global__ __launch_bounds__({L})\nvoid {fn}({params})\n{{\n{indent(body, 4)}}}\n')
    gs = (round_up(mp.N, TILE) // TILE * L, round_up(mp.M, TILE) // TILE, mp.batch)
    return src, Launch(fn, tuple(names), gs, (L, 1, 1))
