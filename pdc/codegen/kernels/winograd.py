"""Winograd convolution F(m x m, 3 x 3) (Lavin & Gray, CVPR 2016): the transforms, the C that
applies them to one plane's tiles, and the driver of the three steps. A target's path
(x86/winograd.py, arm/conv.py) gives the GEMM step and runs

    V[xi][c][t] = (B^T d_t B)[xi]      input transform: each (m+2)^2 tile d_t of each input channel
    M[xi] = U[xi] V[xi]                one GEMM per xi: (out channels x in channels) x (in channels x tiles)
    y_t = A^T M[.][k][t] A             output transform: m x m outputs, then the fused epilogue

with U[xi][k][c] = (G g_kc G^T)[xi] transformed at compile time. The matrices come from the
Toom-Cook construction on the points below and infinity, in exact fractions, and are
checked against the convolution they stand for when first built.

The C transforms work on groups of tiles at a time, one tile per array column: each row of a tile's
transform is one loop over the tiles, which the C compiler vectorizes (a loop per row keeps its
registers few and the compiler's work small; a loop per output compiled 3x slower, a loop per tile
ran 1.7x slower). The driver (pdc_wino_run) takes
blocks of whole tile rows, so that V and M stay bounded (in the arena): per block the input
transform, the target's GEMMs (one per xi and group: M[n][xi][k][t] = U[xi][k][c] V[n][xi][c][t]) and
the output transform, which writes the output with bias, the residual before the activation and the
clamp; any other activation or a residual after it follows over the rows just written. The two
transforms spread over the thread pool by planes. KERNELS.md §2.5 has the accuracy
(F(4x4) in fp32: about 10x the direct error, fine at inference tolerances) and the weight growth.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Optional

import numpy as np

from ..ctypes_c import float_literal
from . import native
from . import dense_conv as _portable  # noqa: F401  (declares the conv family's general path first)
from .activations import act_function
from .epilogue import c_float
from .paths import declare, take

declare("conv", "winograd4", "winograd2")

R = 3  # the kernel size the transforms are for
# F(2x2): 0, 1, -1; F(4x4) adds 2 and -1/2, which halves the fp32 error of the usual 2, -2 (max abs
# error 1.0e-5 against 3.0e-5 on 64-channel 3x3 layers with O(1) outputs, numpy in float32; as
# Barabasz et al., "Error analysis and improving the accuracy of Winograd convolution", 2020)
POINTS = (0, 1, -1, 2, Fraction(-1, 2))
GROUP = 64  # tiles a transform handles at once (the columns of its scratch arrays)


@lru_cache(maxsize=None)
def transforms(m: int) -> tuple[list, list, list]:
    """(A^T: m x a, G: a x 3, B^T: a x a) for F(m, 3), a = m + 2, in Fractions."""
    a = m + R - 1
    pts = [Fraction(p) for p in POINTS[:a - 1]]

    def poly_mul(p, q):
        out = [Fraction(0)] * (len(p) + len(q) - 1)
        for i, x in enumerate(p):
            for j, y in enumerate(q):
                out[i + j] += x * y
        return out

    def product(roots):  # coefficients of prod (x - r), lowest power first
        out = [Fraction(1)]
        for r in roots:
            out = poly_mul(out, [-r, Fraction(1)])
        return out

    at = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g, bt = [], []
    for j, p in enumerate(pts):
        others = pts[:j] + pts[j + 1:]
        scale = Fraction(1)
        for q in others:
            scale *= p - q
        g.append([p ** k / scale for k in range(R)])
        bt.append(product(others) + [Fraction(0)])
    g.append([Fraction(int(k == R - 1)) for k in range(R)])
    bt.append(product(pts))
    # sum_j A^T[i][j] G[j][k] B^T[j][l] = [l == i + k]: y_i = sum_k g_k d_(i+k)
    for i in range(m):
        for k in range(R):
            for col in range(a):
                s = sum(at[i][j] * g[j][k] * bt[j][col] for j in range(a))
                assert s == int(col == i + k), f"F({m},3) transform check failed"
    return at, g, bt


def fits(ctx, g) -> bool:
    """The layers the Winograd paths compute: 2-D 3x3, stride 1, no dilation, constant weights."""
    return (ctx.const(1) is not None and g.in_sp[0] == 1 and g.out_sp[0] == 1 and g.kernel == [1, 3, 3]
            and g.strides == [1, 1, 1] and g.dilations == [1, 1, 1])


PANEL = 16  # the tile columns a GEMM panel rounds up to, for the heuristic's estimate
GAIN = 0.8  # the share of the direct MACs Winograd's must stay under to pay for its transforms


def preferred(ctx, g, max_tile_bytes: float = float("inf"), min_channels: int = 8) -> Optional[int]:
    """The tile size m the heuristic picks for a layer, or None (the other paths): the m whose GEMM
    work (a^2 products per tile column, tile columns rounded up to a panel) is least, where it is
    under GAIN of the direct 9 per output. Single-layer timings on x86 (AVX2, one thread): F(4x4)
    0.4-0.6 of the direct paths' time from 8 to 512 channels at 14x14 to 64x64; at 7x7 with 512
    channels F(2x2) 0.46 and F(4x4) 0.99 (4 tiles in a 16-column panel); at 4x4, both slower. Not
    where weights are read in place (microcontrollers' flash): the transformed copy is 4x their size.
    Nor where the transformed weights (a^2 / 9 times the direct weights' bytes) exceed
    `max_tile_bytes` per tile of an image (the family's choice): they come from memory in a network,
    and each serves only the image's few tiles as GEMM columns; nor where
    the input or output channels are fewer than `min_channels`: the transforms, per tile linear
    in the channels, then outweigh the GEMM's saving, quadratic in them."""
    if not ctx.config.pack_weights or min(g.cg, g.mg) < min_channels:
        return None

    def tiles(m):
        return -(-g.OH // m) * -(-g.OW // m)

    def work(m):
        return tile(m) ** 2 * -(-tiles(m) // PANEL) * PANEL
    def tile_bytes(m):  # the transformed weights per tile of the image
        return tile(m) ** 2 * g.group * g.mg * g.cg * 4 / tiles(m)
    options = [(work(m), m) for m in (4, 2) if tile_bytes(m) <= max_tile_bytes]
    if not options:
        return None
    cost, m = min(options)
    return m if cost < GAIN * 9 * g.OH * g.OW else None


def choose(ctx, g, max_tile_bytes: float = float("inf"), min_channels: int = 8) -> Optional[int]:
    """m of the Winograd path a layer takes (the heuristic's, or a forced one), or None."""
    if not fits(ctx, g):
        return None
    pick = preferred(ctx, g, max_tile_bytes, min_channels)
    for m in (4, 2):
        if take("conv", f"winograd{m}", pick == m):
            return m
    return None


def tile(m: int) -> int:
    return m + R - 1


def transform_weights(w: np.ndarray, m: int) -> np.ndarray:
    """(M, C, 3, 3) -> U: (a*a, M, C) float32, U[xi] = G w G^T at position xi (computed in float64)."""
    _, g, _ = transforms(m)
    gm = np.array(g, np.float64)
    u = np.einsum("ik,mckl,jl->ijmc", gm, np.asarray(w, np.float64), gm, optimize=True)
    a = tile(m)
    return np.ascontiguousarray(u.reshape(a * a, *w.shape[:2]), np.float32)


def _combo(coefs, names: list[str]) -> str:
    """sum of coef * name over the nonzero coefficients, as a C float expression."""
    terms = []
    for c, n in zip(coefs, names):
        if c == 0:
            continue
        if c == 1:
            terms.append(f"+ {n}")
        elif c == -1:
            terms.append(f"- {n}")
        else:
            lit = float_literal(float(abs(c)), "float")
            terms.append(f"{'-' if c < 0 else '+'} {lit} * {n}")
    expr = " ".join(terms) if terms else "0.0f"
    return expr[2:] if expr.startswith("+ ") else expr


def helpers_c(ctx, m: int) -> str:
    """pdc_wino<m>_in and pdc_wino<m>_out: the input and output transforms of one plane's tiles (the
    tiles' gather from the input and their scatter into the output are native pieces)."""
    at, _, bt = transforms(m)
    a = tile(m)
    A2 = a * a
    lines = [f"/* ---- pdc Winograd F({m}x{m},3x3): the transforms of one plane's tiles ---- */",
             f"/* Tiles [t0, t0 + nt) of one input plane (H x W; tile t at row (t / TW) * {m} - ph, column",
             f"   (t % TW) * {m} - pw, zeros outside) -> V rows v + xi * vs, columns [0, nt). s: {2 * A2} x GN floats. */",
             f"static void pdc_wino{m}_in(const float *restrict x, int64_t H, int64_t W, int64_t ph, int64_t pw,",
             "                          int64_t TW, int64_t t0, int64_t nt, float *restrict v, int64_t vs,",
             "                          float *restrict s) {",
             f"    float *restrict d = s, *restrict e = s + {A2} * GN;",
             "    for (int64_t g0 = 0; g0 < nt; g0 += GN) {",
             "        const int n = (int)(nt - g0 < GN ? nt - g0 : GN);",
             "        int nv = n;  /* the columns transformed: n, or whole vectors where the gather zero-fills */",
             "@native wino_gather",
             "        for (int i = 0; i < n; i++) {",
             "            const int64_t t = t0 + g0 + i;",
             f"            const int64_t y0 = (t / TW) * {m} - ph, x0 = (t % TW) * {m} - pw;",
             f"            if (y0 >= 0 && x0 >= 0 && y0 + {a} <= H && x0 + {a} <= W) {{",
             "                const float *xr = x + y0 * W + x0;",
             f"                for (int r = 0; r < {a}; r++)",
             f"                    for (int c = 0; c < {a}; c++) d[(r * {a} + c) * GN + i] = xr[r * W + c];",
             "                continue;",
             "            }",
             f"            for (int r = 0; r < {a}; r++)",
             f"                for (int c = 0; c < {a}; c++) {{",
             "                    const int64_t yy = y0 + r, xx = x0 + c;",
             f"                    d[(r * {a} + c) * GN + i] = yy >= 0 && yy < H && xx >= 0 && xx < W ? x[yy * W + xx] : 0.0f;",
             "                }",
             "        }",
             "@end"]
    # along the columns within each row (d[r][c] -> e[r][xi_x]), then along the rows into V: a loop
    # over the tiles per row of the tile, its a results in its body (a loads, a stores: few registers)
    for r in range(a):
        lines.append("        for (int i = 0; i < nv; i++) {")
        lines.append("            " + " ".join(f"const float x{c} = d[{r * a + c} * GN + i];" for c in range(a)))
        for o, row in enumerate(bt):
            lines.append(f"            e[{r * a + o} * GN + i] = {_combo(row, [f'x{c}' for c in range(a)])};")
        lines.append("        }")
    for o, row in enumerate(bt):
        # V's rows, vs apart, never overlap: without the pragma gcc wants a run-time check for each
        # pair of the a rows written (15 for F(4x4), over its limit of 10) and leaves the loop scalar
        lines.append("#pragma GCC ivdep")
        lines.append("        for (int i = 0; i < nv; i++) {")
        for xc in range(a):
            lines.append(f"            v[{o * a + xc} * vs + g0 + i] = {_combo(row, [f'e[{r * a + xc} * GN + i]' for r in range(a)])};")
        lines.append("        }")
    lines += ["    }", "}"]
    lines += [
        "/* Tiles [t0, t0 + nt) of one output plane (OH x OW) from M rows m + xi * ms (columns [0, nt)):",
        "   y = A^T M A + bias (+ res, the residual before the activation, at the same place), clamped to",
        f"   [lo, hi] when clamp. s: {2 * A2} x GN floats. */",
        f"static void pdc_wino{m}_out(const float *restrict mm, int64_t ms, float *restrict y, const float *restrict res,",
        "                           int64_t OH, int64_t OW, int64_t TW, int64_t t0, int64_t nt, float bias,",
        "                           float lo, float hi, int clamp, float *restrict s) {",
        f"    float *restrict q = s, *restrict o = s + {A2} * GN;",
        "    for (int64_t g0 = 0; g0 < nt; g0 += GN) {",
        "        const int n = (int)(nt - g0 < GN ? nt - g0 : GN);",
        "        int nv = n;  /* the columns transformed (M's row stride leaves room for whole vectors) */",
        "@native wino_lanes @end"]
    for r in range(a):  # along the columns of each row of M: q[r][ox], a loop per row of the tile
        lines.append("        for (int i = 0; i < nv; i++) {")
        lines.append("            " + " ".join(f"const float x{c} = mm[{r * a + c} * ms + g0 + i];" for c in range(a)))
        for ox, row in enumerate(at):
            lines.append(f"            q[{r * m + ox} * GN + i] = {_combo(row, [f'x{c}' for c in range(a)])};")
        lines.append("        }")
    for oy, row in enumerate(at):  # then along the rows, + bias
        lines.append("        for (int i = 0; i < nv; i++) {")
        for ox in range(m):
            names = [f"q[{r * m + ox} * GN + i]" for r in range(a)]
            lines.append(f"            o[{oy * m + ox} * GN + i] = {_combo(row, names)} + bias;")
        lines.append("        }")
    lines += [
        "@native wino_scatter",
        "        for (int i = 0; i < n; i++) {",
        "            const int64_t t = t0 + g0 + i;",
        f"            const int64_t y0 = (t / TW) * {m}, x0 = (t % TW) * {m};",
        f"            const int rows = (int)(OH - y0 < {m} ? OH - y0 : {m}), cols = (int)(OW - x0 < {m} ? OW - x0 : {m});",
        "            for (int r = 0; r < rows; r++)",
        "                for (int c = 0; c < cols; c++) {",
        "                    const int64_t at = (y0 + r) * OW + x0 + c;",
        f"                    float val = o[(r * {m} + c) * GN + i];",
        "                    if (res) val += res[at];",
        "                    if (clamp) { val = val < lo ? lo : val; val = val > hi ? hi : val; }",
        "                    y[at] = val;",
        "                }",
        "        }",
        "@end",
        "    }",
        "}"]
    return native.fill(ctx, "\n".join(lines) + "\n", m=m).replace("GN", str(GROUP))


def scratch_floats(m: int) -> int:
    """The floats a transform's scratch `s` holds."""
    return 2 * tile(m) ** 2 * GROUP


DRIVER_C = r"""
/* ---- pdc Winograd convolution: the driver of the three steps ---- */
typedef void (*pdc_wino_in_fn)(const float *x, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t TW,
                               int64_t t0, int64_t nt, float *v, int64_t vs, float *s);
typedef void (*pdc_wino_out_fn)(const float *mm, int64_t ms, float *y, const float *res, int64_t OH, int64_t OW,
                                int64_t TW, int64_t t0, int64_t nt, float bias, float lo, float hi, int clamp,
                                float *s);
typedef struct pdc_wino_job pdc_wino_job;
struct pdc_wino_job {
    const float *x, *bias, *res; float *y;
    float *v, *m;                     /* V[n][xi][c][P], M[n][xi][k][P] of the current block */
    int64_t N, A2, G, Cg, Mg, H, W, OH, OW, ph, pw, TH, TW, TM;  /* TM: outputs per tile side */
    int64_t t0, nt, P;                /* the block's tiles; P: V's and M's row stride, nt at most */
    float lo, hi; int clamp;
    pdc_wino_in_fn in; pdc_wino_out_fn out;
    /* the block's M = U V over its nt tile columns (a partial panel is the GEMM's: x86's pads it,
       ARM's computes it whole; M's columns past nt are never read) */
    void (*gemm)(const void *job, int64_t cols); const void *gemm_job;
    /* after the output transform, on output pixels [p0, p0 + np) of plane u (image n, channel k):
       the target's post-pass, or act and the residual after it in scalar C */
    void (*post)(const pdc_wino_job *j, int64_t u, int64_t p0, int64_t np, float *y); const void *post_ctx;
    float (*act)(float, float, float); float alpha, beta; const float *res_after;
    float *s; int64_t s_stride; int slots; /* the transforms' scratch, per thread slot */
};
static void pdc_wino_in_task(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_wino_job *j = (const pdc_wino_job *)vj;
    const int64_t C = j->G * j->Cg;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t n = u / C, c = u % C;
        float *v = j->v + (n * j->A2 * C + c) * j->P;
        j->in(j->x + u * j->H * j->W, j->H, j->W, j->ph, j->pw, j->TW, j->t0, j->nt, v, C * j->P,
              j->s + slot * j->s_stride);
    }
}
static void pdc_wino_out_task(void *vj, int64_t u0, int64_t u1, int slot) {
    const pdc_wino_job *j = (const pdc_wino_job *)vj;
    const int64_t K = j->G * j->Mg, plane = j->OH * j->OW;
    const int64_t oy0 = j->t0 / j->TW * j->TM, oy1e = (j->t0 + j->nt) / j->TW * j->TM;
    const int64_t p0 = oy0 * j->OW, np = ((oy1e < j->OH ? oy1e : j->OH) - oy0) * j->OW;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t n = u / K, k = u % K;
        float *y = j->y + u * plane;
        j->out(j->m + (n * j->A2 * K + k) * j->P, K * j->P, y, j->res ? j->res + u * plane : 0, j->OH, j->OW,
               j->TW, j->t0, j->nt, j->bias ? j->bias[k] : 0.0f, j->lo, j->hi, j->clamp,
               j->s + slot * j->s_stride);
        if (j->post) {
            j->post(j, u, p0, np, y + p0);
        } else if (j->act || j->res_after) {
            for (int64_t i = p0; i < p0 + np; i++) {
                float val = j->act ? j->act(y[i], j->alpha, j->beta) : y[i];
                if (j->res_after) val += j->res_after[u * plane + i];
                y[i] = val;
            }
        }
    }
}
/* blocks of `rows` tile rows: transform in, the GEMMs, transform out */
static void pdc_wino_run(pdc_wino_job *j, int64_t rows) {
    for (int64_t ty = 0; ty < j->TH; ty += rows) {
        j->t0 = ty * j->TW;
        j->nt = ((ty + rows < j->TH ? ty + rows : j->TH) - ty) * j->TW;
        pdc_parallel_slots(j->N * j->G * j->Cg, j->slots, pdc_wino_in_task, j);
        j->gemm(j->gemm_job, j->nt);
        pdc_parallel_slots(j->N * j->G * j->Mg, j->slots, pdc_wino_out_task, j);
    }
}
"""


def block_rows(th: int, tw: int, per_col: int, nr: int, budget: int) -> tuple[int, int]:
    """(tile rows per block, P: its columns rounded up to NR) for the largest block whose V and M
    (per_col floats a column) fit `budget` floats; one row at least. The blocks are made even (14
    rows in blocks of 13 and 1 would pay the three steps' synchronisation for a block of one row).
    ARM's blocks; x86 picks its blocks with its register tile (x86/winograd.py)."""
    def cols(rows):
        return -(-rows * tw // nr) * nr
    rows = max([r for r in range(1, th + 1) if per_col * cols(r) <= budget] or [1])
    rows = -(-th // -(-th // rows))
    return rows, cols(rows)


def job_lines(ctx, g, epi, m: int, *, v: str, mm: str, p: int, gemm: str, gemm_job: str, slots: int,
              post: str = "0", post_ctx: str = "0") -> list[str]:
    """The C lines declaring `pdc_wino_job wj` for a layer (the GEMM step and the post-pass named
    by the target; without a post-pass, act and the residual after it are the driver's scalar loop)."""
    a = tile(m)
    s, stride = ctx.thread_scratch(scratch_floats(m), slots)
    fields = dict(x="in0", bias="in2" if ctx.has_input(2) else "0", y="out0", v=v, m=mm, N=g.n, A2=a * a,
                  G=g.group, Cg=g.cg, Mg=g.mg, H=g.H, W=g.W, OH=g.OH, OW=g.OW, ph=g.ph, pw=g.pw,
                  TH=-(-g.OH // m), TW=-(-g.OW // m), TM=m, P=p, lo=c_float(epi.lo), hi=c_float(epi.hi),
                  clamp=int(epi.clamp), gemm=gemm, gemm_job=gemm_job, post=post, post_ctx=post_ctx, s=s,
                  s_stride=stride, slots=slots, **{"in": f"pdc_wino{m}_in", "out": f"pdc_wino{m}_out"})
    if epi.res_before:
        fields["res"] = epi.res_before
    if post == "0":
        if not epi.fast and epi.activation not in ("none", "relu", "clip"):
            fields.update(act=act_function(ctx, epi.activation), alpha=c_float(epi.alpha or 0.0),
                          beta=c_float(epi.beta or 0.0))
        elif not epi.fast and epi.activation != "none":  # a clamp, then the residual after it
            lo, hi = epi.clamp_range
            fields.update(lo=c_float(lo), hi=c_float(hi), clamp=1)
        if epi.res_after:
            fields["res_after"] = epi.res_after
    ctx.helper(f"pdc_wino{m}", helpers_c(ctx, m))
    ctx.helper("pdc_wino_driver", DRIVER_C)
    lines = ["    pdc_wino_job wj;", "    memset(&wj, 0, sizeof wj);"]
    for k, val in fields.items():
        if isinstance(val, str) and val.startswith("in") and k in ("x", "bias", "res", "res_after"):
            val = f"(const float *){val}"
        lines.append(f"    wj.{k} = {val};")
    return lines

