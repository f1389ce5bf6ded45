"""Renders a lowered graph as a C bundle: header, AOT run function, kernels, weights.

One C-style renderer; targets subclass it to override only what differs (preamble, vector types,
file extension). Model names are untrusted: they reach C only through `c_string` (string
literals) and `c_comment` (comments); identifiers are generated.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .. import __version__
from ..ir.errors import UnsupportedError
from ..ir.graph import Graph, Node, Value
from ..ir.symbolic import bound_nbytes, dim_exprs, upper_shape
from ..tuning import entry_for, layer_key
from ..passes.bound_outputs import measured_outputs
from .c_helpers import split_helpers
from .context import KernelContext, runtime_type
from .ctypes_c import ctype
from .kernels import generate, supports
from .kernels.paths import layer_paths
from .memory import VIEW_OPS, MemoryPlan, plan_memory
from .narrow_c import NARROW_C
from .placement import HOST, place

ALIGN = 64
KERNELS_PER_FILE = 48  # kernel files compile in parallel


def c_string(s: str) -> str:
    """A C string literal for any text: plain ASCII kept; quotes, backslashes, comment and
    preprocessor characters, trigraph `?` and all non-ASCII bytes octal-escaped."""
    out = []
    for b in s.encode("utf-8"):
        ch = chr(b)
        if (ch.isascii() and ch.isalnum()) or ch in " _-.:,;()[]{}<>=+&^%$@!~|'":
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def c_comment(s: str) -> str:
    """Text safe inside a /* */ comment on one line."""
    text = json.dumps(s, ensure_ascii=True)[1:-1]
    return text.replace("*/", "*\\/").replace("/*", "/\\*")


def c_identifier(s: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return ident if ident and not ident[0].isdigit() else "m_" + ident


class WeightBlob:
    """Constants laid out back to back, each 64-byte aligned: the graph constants some kernel reads
    in place (constants_read) and what kernels add (packed weights, index tables). A packed copy
    exceeds its constant by its panel padding only (dense_core.panel_vectors); the bound this keeps
    is stated and checked in tests/codegen/test_weight_bytes.py."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0
        self._by_id: dict[int, tuple[int, np.ndarray]] = {}
        self.owner = None  # the node index whose data is being added (pdc report: weight bytes per layer)
        self.owned: dict = {}  # owner -> bytes it added, its alignment padding included

    def add(self, array: np.ndarray) -> int:
        key = id(array)
        if key in self._by_id:
            return self._by_id[key][0]
        pad = (-self.size) % ALIGN
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        offset = self.size
        data = array.tobytes()
        self.chunks.append(data)
        self.size += len(data)
        self.owned[self.owner] = self.owned.get(self.owner, 0) + pad + len(data)
        self._by_id[key] = (offset, array)  # holding the array keeps its id from being reused
        return offset

    def bytes_by_owner(self) -> dict:
        """owner -> its bytes of tobytes(): the blob's tail padding goes to the last owner."""
        owned = dict(self.owned)
        if owned:
            last = next(reversed(owned))
            owned[last] += (-self.size) % ALIGN
        return owned

    def tobytes(self) -> bytes:
        pad = (-self.size) % ALIGN
        return b"".join(self.chunks) + b"\0" * pad


@dataclass
class Bundle:
    name: str
    files: dict[str, bytes] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    kernel_files: list[str] = field(default_factory=list)
    kernel_paths: list = field(default_factory=list)  # per kernel: 'family/path' it took, or None
    kernel_families: list = field(default_factory=list)  # per kernel: the kernel family that rendered it
    weight_bytes: dict = field(default_factory=dict)  # node index -> its bytes of the weights blob
    plan: MemoryPlan = None  # where every intermediate tensor and kernel scratch lives
    graph: Graph = None  # the graph the bundle runs, node i = kernel i (placement's copies included)
    notes: list = field(default_factory=list)  # what the compile should tell the user (host fallbacks)
    vtcm_bytes: dict = field(default_factory=dict)  # node index -> the bytes of on-chip memory (VTCM) it uses
    tuning_keys: list = field(default_factory=list)  # per kernel: (layer key, tuned by the tuning database)


# pdc_erff's polynomials, from degree 0 (tools/fit_erf.py prints them): P in x^2 below |x| = 0.9,
# Q in u = (|x| - 2.41) / 1.51 up to 3.92
ERF_P = ("1.12837923f", "-0.376126379f", "0.112837896f", "-0.0268659256f", "0.00522272522f", "-0.000851372664f",
         "0.000115228511f", "-1.05404151e-05f")
ERF_Q = ("0.999346197f", "0.00511673931f", "-0.018621007f", "0.0412923284f", "-0.0609677918f", "0.0604443736f",
         "-0.0363477878f", "0.00524911936f", "0.0133388368f", "-0.0137695568f", "0.00390205556f", "0.00340629695f",
         "-0.00261635333f", "-0.000193413929f", "0.000419937016f")


def _horner(var: str, t: str, coefs: tuple) -> str:
    """C lines evaluating the polynomial `coefs` (from degree 0) at t into the float var."""
    lines = [f"    float {var} = {coefs[-1]};"]
    lines += [f"    {var} = {var} * {t} {'-' if c[0] == '-' else '+'} {c.lstrip('-')};" for c in coefs[-2::-1]]
    return "\n".join(lines) + "\n"


ERF_C = ("""/* erf in float32, branch-free so that loops over it vectorize (libm's erff is a call per element):
   x * P(x^2) below |x| = 0.9, Q((|x| - 2.41) / 1.51) clamped to 1 up to 3.92, 1 beyond (erf(3.92)
   rounds to 1). P and Q are least-squares fits on Chebyshev nodes made for pdc
   (tools/fit_erf.py); within 2.4 ulp of erf over the floats. NaN passes through. */
static inline float pdc_erff(float x) {
    const float a = fabsf(x), z = x * x;
""" + _horner("p", "z", ERF_P) + """    const float u = ((a < 3.92f ? a : 3.92f) - 2.41f) * 0.662251651f;
""" + _horner("q", "u", ERF_Q) + """    q = q < 1.0f ? q : 1.0f;
    return a < 0.9f ? x * p : a == a ? copysignf(q, x) : x;
}
""")

PREAMBLE = r"""/* Generated by pdc. Shared definitions for the kernels. */
#ifndef PDC_KERNELS_COMMON_H
#define PDC_KERNELS_COMMON_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "pdc_runtime.h"

@ERF@static inline float pdc_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t pdc_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}
@NARROW@#endif
""".replace("@ERF@", ERF_C).replace("@NARROW@", NARROW_C)


def kernel_path(src: str):
    """The implementation a kernel took ('family/path', see kernels/paths.py), or None."""
    m = re.search(r"/\* path: ([\w-]+/[\w-]+) \*/", src)
    return m.group(1) if m else None


def profile_macros(name: str, kernels: int) -> list[str]:
    """A profiling build (-DPDC_PROFILE: pdc bench --profile) sums each kernel's nanoseconds over the
    runs in NAME_profile_ns[kernel index]; a normal build compiles the marks to nothing."""
    return ["#ifdef PDC_PROFILE  /* pdc bench --profile: the time of each kernel, summed over runs */",
            "#include <time.h>",
            f"double {name}_profile_ns[{max(kernels, 1)}];",
            "static double pdc_profile_now(void) {",
            "    struct timespec t;",
            "    clock_gettime(CLOCK_MONOTONIC, &t);",
            "    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;",
            "}",
            "#define PDC_PROFILE_START double pdc_profile_t = pdc_profile_now()",
            f"#define PDC_PROFILE_POINT(k) do {{ const double t_ = pdc_profile_now(); {name}_profile_ns[k] += "
            "t_ - pdc_profile_t; pdc_profile_t = t_; } while (0)",
            "#else",
            "#define PDC_PROFILE_START (void)0",
            "#define PDC_PROFILE_POINT(k) (void)0",
            "#endif"]


class CRenderer:
    """Renders the C bundle for host-style targets."""

    preamble = PREAMBLE
    bounds: dict = {}  # symbol -> (lo, hi) of the dims known only at run time (set by render)

    def __init__(self, target):
        self.target = target

    def render(self, graph: Graph, name: str, weights_mode: str, config) -> Bundle:
        """The bundle's sources and memory plan; `config` (a KernelConfig) is what every kernel is
        generated for. The plan comes after the kernels: it holds their scratch too."""
        families = self.target.kernel_families
        graph, spaces = place(graph, self.target.space_of, self.target.memory_spaces)
        devices = sorted(set(spaces.values()) - {HOST})
        if devices:
            raise UnsupportedError(f"{self.target.name}: the C renderer writes host code; nodes placed in "
                                   f"{devices} need a device renderer")
        missing = sorted({n.op for n in graph.nodes if not supports(n.op, families)})
        if missing:
            counts = {op: sum(1 for n in graph.nodes if n.op == op) for op in missing}
            raise UnsupportedError(f"no {self.target.name} kernel for ops: "
                                   + ", ".join(f"{op} x{c}" for op, c in counts.items()))
        self.bounds = config.bounds  # symbol -> (lo, hi) of the dims known only at run time
        weights = WeightBlob()
        helpers: dict[str, str] = {}
        kernels: list[tuple[Node, str, str]] = []  # node, fn name, code
        families_used: list[str] = []
        scratch: dict[int, int] = {}  # node index -> bytes of the kernel's scratch
        vtcm: dict[int, int] = {}  # node index -> bytes of the kernel's on-chip memory
        checked: set[int] = set()  # node indices of the kernels that report bad input (KernelContext.check)
        tuning_keys: list[tuple] = []  # per kernel: its layer key, whether the tuning database chose for it
        users = graph.users()
        for i, node in enumerate(graph.nodes):
            ctx, src = self.host_kernel(node, i, name, config, weights, helpers, readers=users.get(node.outputs[0], []))
            families_used.append(ctx.family)
            tuning_keys.append((ctx.tuning_key, ctx.tuned))
            if ctx.scratch_bytes:
                scratch[i] = ctx.scratch_bytes
            if ctx.vtcm_bytes:
                vtcm[i] = ctx.vtcm_bytes
            if ctx.reports_status:
                checked.add(i)
            kernels.append((node, ctx.fn_name, src))
        plan = plan_memory(graph, scratch=scratch, spaces=spaces, bounds=self.bounds, place_concats=True)
        const_offsets = self.add_constants(graph, plan, kernels, weights)
        b = Bundle(name, plan=plan, graph=graph, vtcm_bytes=vtcm)
        b.kernel_paths = [kernel_path(src) for _, _, src in kernels]
        b.tuning_keys = tuning_keys
        b.kernel_families = families_used
        b.weight_bytes = weights.bytes_by_owner()
        self.add_kernel_files(b, name, kernels, helpers, weights_mode)
        blob = weights.tobytes()
        b.files[f"{name}_weights.bin"] = blob
        b.files[f"{name}_weights.c"] = self.render_weights(name, len(blob), weights_mode).encode()
        b.files[f"{name}.h"] = self.render_header(graph, plan, name, len(blob), weights_mode, vtcm).encode()
        b.files[f"{name}.c"] = self.render_run(graph, plan, name, kernels, checked, const_offsets, weights_mode,
                                               vtcm).encode()
        return b

    # ---- pieces ------------------------------------------------------------------------------
    def host_kernel(self, node: Node, i: int, name: str, config, weights, helpers: dict,
                    owner: Optional[int] = None, readers=()) -> tuple[KernelContext, str]:
        """The C function of node i (from the target's kernel families) and the context it filled;
        `owner`: the top-level node its weights count for (a control-flow body's kernels: the node
        that holds the body); `readers`: the nodes that read its first output."""
        fn = f"{name}_k{i}_{c_identifier(node.op)}"
        key = layer_key(self.target.name, config.threads, node)
        tuned = entry_for(key)  # pdc tune's choice for this layer: paths, fewer threads
        if tuned.get("threads") and tuned["threads"] < config.threads:
            config = dataclasses.replace(config, threads=tuned["threads"])
        ctx = KernelContext(node, fn, config, weights, helpers)
        ctx.tuning_key, ctx.tuned = key, bool(tuned)
        ctx.readers = list(readers)
        owner = i if owner is None else owner
        ctx.render_subgraph = lambda graph, prefix: self.render_subgraph(graph, prefix, config, weights, helpers,
                                                                         owner)
        weights.owner = owner
        with layer_paths(tuned.get("paths", {})):
            body = generate(ctx, self.target.kernel_families)
        src = f"/* {c_comment(node.name or node.outputs[0].name)} ({node.op}) */\n{ctx.signature()} {{\n{body}\n}}\n"
        return ctx, src

    def render_subgraph(self, graph: Graph, prefix: str, config, weights, helpers: dict, owner: int) -> tuple[str, int]:
        """A control-flow body as static C functions: its kernels and `static pdc_status
        PREFIX_run(uint8_t *A, const void *const *inputs, void *const *outputs)`, which runs them
        over the arena A; and the bytes that arena needs."""
        kernels, scratch, checked = [], {}, set()
        for i, node in enumerate(graph.nodes):
            ctx, src = self.host_kernel(node, i, prefix, config, weights, helpers, owner)
            if ctx.vtcm_bytes:
                raise UnsupportedError(f"{node.describe()}: kernels in on-chip memory (VTCM) inside a control-flow "
                                       f"body are not supported")
            if ctx.scratch_bytes:
                scratch[i] = ctx.scratch_bytes
            if ctx.reports_status:
                checked.add(i)
            kernels.append((node, ctx.fn_name, src))
        plan = plan_memory(graph, scratch=scratch, bounds=config.bounds)
        const_offsets = self.add_constants(graph, plan, kernels, weights)
        lines = [f"static pdc_status {prefix}_run(uint8_t *A, const void *const *inputs, void *const *outputs) {{",
                 "    (void)A;", "    (void)inputs;", "    (void)outputs;"]
        if checked:
            lines.append("    pdc_status err = PDC_OK;  /* set by kernels that check their input data */")
        lines += self.run_calls(graph, plan, kernels, checked, const_offsets, profile=False, bounds=config.bounds)
        lines += ["    return PDC_OK;", "}", ""]
        funcs = [src.replace("\nvoid ", "\nstatic void ", 1) for _, _, src in kernels]
        return "\n".join(funcs + lines), plan.arena_bytes

    @staticmethod
    def add_constants(graph: Graph, plan: MemoryPlan, kernels, weights) -> dict:
        """The offsets in the weights of the constants the kernels read in place. After the kernels:
        a constant a kernel packed into its own layout is stored only once."""
        const_offsets = {}
        for c, reader in constants_read(graph, plan, kernels).items():
            weights.owner = reader  # the first node that reads it in place
            const_offsets[c] = weights.add(c.data)
        return const_offsets

    def add_kernel_files(self, b: Bundle, name: str, kernels, helpers: dict, weights_mode: str) -> None:
        """The kernels' C files, their header and the shared preamble, into the bundle."""
        b.files["pdc_kernels_common.h"] = self.preamble.encode()
        helper_code = "\n".join(helpers.values())
        chunks = [kernels[i:i + KERNELS_PER_FILE] for i in range(0, max(len(kernels), 1), KERNELS_PER_FILE)]
        # one kernel file holds its helpers; several share them (c_helpers.py): the interface in
        # the header, each function compiled once in <name>_kernels_helpers.c
        interface, definitions = ("", "") if len(chunks) == 1 else split_helpers(helper_code, name)
        decls = "".join(f"{_decl(src)};\n" for _, _, src in kernels)
        qualifier = "const " if weights_mode == "c" else ""
        b.files[f"{name}_kernels.h"] = (f"/* Generated by pdc: kernel declarations of {name}. */\n"
                                        f"#ifndef {name.upper()}_KERNELS_H\n#define {name.upper()}_KERNELS_H\n"
                                        f"#include \"pdc_kernels_common.h\"\n#define pdc_weights {name}_weights\n"
                                        f"extern {qualifier}uint8_t pdc_weights[];\n{interface}\n{decls}#endif\n").encode()
        inline_helpers = f"{helper_code}\n" if len(chunks) == 1 else ""
        texts = [inline_helpers + "\n".join(src for _, _, src in chunk) for chunk in chunks]
        names = [f"{name}_kernels_{i}.c" for i in range(len(chunks))]
        if definitions.strip():
            texts.append(definitions)
            names.append(f"{name}_kernels_helpers.c")
        for fname, text in zip(names, texts):
            b.files[fname] = (f"/* Generated by pdc {__version__}: kernels of {name}. */\n"
                              f"#include \"{name}_kernels.h\"\n{text}").encode()
            b.kernel_files.append(fname)

    def render_weights(self, name: str, size: int, mode: str) -> str:
        if mode == "c":
            # The blob is assembled into .rodata: a const array without a huge C initializer to parse.
            return (f"/* Generated by pdc: the weights of {name}, compiled in ({size} bytes). */\n"
                    f"#include <stdint.h>\n"
                    f"__asm__(\".section .rodata\\n.balign 64\\n.global {name}_weights\\n"
                    f"{name}_weights:\\n.incbin \\\"{name}_weights.bin\\\"\\n.previous\\n\");\n"
                    f"int {name}_load_weights(const char *path) {{ (void)path; return 0; }}\n")
        return (f"/* Generated by pdc: the weights of {name}, read from a file at init ({size} bytes). */\n"
                f"#include <stdint.h>\n#include <stdio.h>\n"
                f"uint8_t {name}_weights[{max(size, 1)}] __attribute__((aligned(64)));\n"
                f"int {name}_load_weights(const char *path) {{\n"
                f"    FILE *f = path ? fopen(path, \"rb\") : 0;\n"
                f"    if (!f) return 1;\n"
                f"    size_t got = fread({name}_weights, 1, {size}, f);\n"
                f"    int extra = fgetc(f) != EOF;\n"
                f"    fclose(f);\n"
                f"    return got != {size} || extra;\n}}\n")

    def render_header(self, graph: Graph, plan: MemoryPlan, name: str, weight_bytes: int, mode: str,
                      vtcm: Optional[dict] = None) -> str:
        N = name.upper()
        lines = [f"/* {name}.h: generated by pdc {__version__} for target {self.target.name}.",
                 " *",
                 " * Usage:",
                 f" *   {name}_init(NULL, 0);            (weights file path when built with --weights bin; threads)",
                 f" *   void *arena = aligned_alloc(64, {N}_ARENA_BYTES);",
                 f" *   {name}_ctx ctx;  {name}_ctx_init(&ctx, arena, {N}_ARENA_BYTES);",
                 f" *   const void *inputs[{N}_NUM_INPUTS] = {{...}};  void *outputs[{N}_NUM_OUTPUTS] = {{...}};",
                 f" *   {name}_run_ctx(&ctx, inputs, outputs);      (or {name}_run(arena, inputs, outputs))",
                 f" *   {name}_shutdown();",
                 " * Buffers are dense row-major tensors of the dtypes and shapes below. The arena is scratch",
                 " * memory owned by the caller.",
                 " *",
                 " * Threads: a context (its arena) serves one run at a time; runs on different contexts may",
                 " * go on concurrently from any number of threads. The thread pool started by init is shared:",
                 " * one run's kernels use it at a time and a run that finds it busy computes on its own",
                 " * thread, so concurrent runs never wait on each other. init and shutdown must not overlap",
                 " * a run. */",
                 f"#ifndef {N}_H", f"#define {N}_H", "#include \"pdc_runtime.h\"",
                 "#ifdef __cplusplus", "extern \"C\" {", "#endif", "",
                 f"#define {N}_ARENA_BYTES {plan.arena_bytes}u",
                 f"#define {N}_WEIGHT_BYTES {weight_bytes}u",
                 f"#define {N}_NUM_INPUTS {len(graph.inputs)}",
                 f"#define {N}_NUM_OUTPUTS {len(graph.outputs)}", ""]
        bounds = self.bounds
        if bounds:
            lines += [f"/* Sizes known only at run time: {name}_run_dims takes them in this order (dims[k]); "
                      f"{name}_run runs at",
                      "   their upper bounds. A tensor is dense at the run's sizes; the _BYTES below are at the "
                      "upper bounds. */",
                      f"#define {N}_NUM_DIMS {len(bounds)}"]
            for k, (sym, (lo, hi)) in enumerate(bounds.items()):
                lines += [f"/* dim {k}: {c_comment(sym)}, {lo}..{hi} */",
                          f"#define {N}_DIM{k}_MIN {lo}", f"#define {N}_DIM{k}_MAX {hi}"]
            lines.append("")
        measured = measured_outputs(graph)
        for kind, values in (("INPUT", graph.inputs), ("OUTPUT", graph.outputs)):
            for i, v in enumerate(values):
                lines.append(f"/* {kind.lower()} {i}: {c_comment(v.name)} {v.type} */")
                if v in measured:  # a bound: the run writes how much of it holds the result
                    length, axis = measured[v]
                    lines.append(f"/*   its length depends on the data: the first {c_comment(length.name)} "
                                 f"(an output) entries of axis {axis} hold it, zeros follow */")
                lines.append(f"#define {N}_{kind}{i}_BYTES {bound_nbytes(v.type, bounds)}u")
        lines += ["",
                  f"extern const pdc_tensor_info {name}_inputs[{max(len(graph.inputs), 1)}];",
                  f"extern const pdc_tensor_info {name}_outputs[{max(len(graph.outputs), 1)}];", "",
                  "/* Loads the weights (weights_path: the .bin file for --weights bin, else ignored) and starts",
                  "   num_threads threads (0: the default chosen at compile time). */",
                  f"pdc_status {name}_init(const char *weights_path, int num_threads);",
                  "/* Runs the model: inputs[i] / outputs[i] point to the tensors described above. */",
                  f"pdc_status {name}_run(void *arena, const void *const *inputs, void *const *outputs);",
                  *([f"/* Runs the model at the sizes dims[0..{N}_NUM_DIMS-1] (PDC_ERR_SIZE outside their ranges). */",
                     f"pdc_status {name}_run_dims(void *arena, const int64_t *dims, const void *const *inputs, "
                     f"void *const *outputs);"] if bounds else []),
                  "",
                  "/* One instance of the model: the arena its runs use. Several contexts run concurrently. */",
                  f"typedef struct {{ void *arena; size_t arena_bytes; }} {name}_ctx;",
                  f"/* Binds a 64-byte aligned arena of at least {N}_ARENA_BYTES bytes to ctx. */",
                  f"pdc_status {name}_ctx_init({name}_ctx *ctx, void *arena, size_t arena_bytes);",
                  "/* Runs the model on ctx's arena; the same ctx must not run on two threads at once. */",
                  f"pdc_status {name}_run_ctx(const {name}_ctx *ctx, const void *const *inputs, void *const *outputs);",
                  *([f"pdc_status {name}_run_ctx_dims(const {name}_ctx *ctx, const int64_t *dims, "
                     f"const void *const *inputs, void *const *outputs);"] if bounds else []),
                  "",
                  "/* Stops the threads started by init. */",
                  f"void {name}_shutdown(void);", "",
                  *vtcm_declarations(name, vtcm),
                  "#ifdef __cplusplus", "}", "#endif", "#endif", ""]
        return "\n".join(lines)

    def render_run(self, graph, plan, name, kernels, checked, const_offsets, mode, vtcm=None) -> str:
        lines = [f"/* {name}.c: generated by pdc {__version__}. The AOT run function: kernels in order over one arena. */",
                 f"#include \"{name}.h\"", f"#include \"{name}_kernels.h\"", "#include <string.h>", ""]
        bounds = self.bounds
        lines += tensor_info_lines(name, graph, bounds) + ["", *profile_macros(name, len(kernels)), "",
                                                   *vtcm_definitions(name, vtcm),
                                 f"int {name}_load_weights(const char *path);",
                                 f"pdc_status {name}_init(const char *weights_path, int num_threads) {{"]
        if mode == "bin":
            lines.append(f"    if ({name}_load_weights(weights_path)) return PDC_ERR_WEIGHTS;")
        else:
            lines.append("    (void)weights_path;")
        lines += ["    return pdc_threads_init(num_threads);", "}", "",
                  f"void {name}_shutdown(void) {{ pdc_threads_shutdown(); }}", "",
                  *(sized_run_lines(name, bounds) if bounds else []),
                  f"{'static pdc_status ' + name + '_run_sized' if bounds else 'pdc_status ' + name + '_run'}"
                  f"(void *arena, const void *const *inputs, void *const *outputs) {{"]
        needed = [p for p, used in (("!arena", plan.arena_bytes), ("!inputs", graph.inputs), ("!outputs", graph.outputs))
                  if used]
        if needed:
            lines.append(f"    if ({' || '.join(needed)}) return PDC_ERR_NULL_ARGUMENT;")
        if plan.arena_bytes:
            lines.append("    if (!pdc_is_aligned(arena)) return PDC_ERR_MISALIGNED;")
        lines += ["    uint8_t *A = (uint8_t *)arena;", "    (void)A;", "    PDC_PROFILE_START;"]
        if checked:
            lines.append("    pdc_status err = PDC_OK;  /* set by kernels that check their input data */")
        lines += self.run_calls(graph, plan, kernels, checked, const_offsets, vtcm=vtcm, bounds=bounds)
        lines += ["    return PDC_OK;", "}", ""]
        return "\n".join(lines + self.render_ctx(name, plan, bounds))

    @staticmethod
    def run_calls(graph, plan, kernels, checked, const_offsets, vtcm=None, profile: bool = True,
                  bounds: Optional[dict] = None) -> list[str]:
        """The run function's statements: each kernel called on its tensors in the arena A, the
        caller's `inputs` / `outputs` and the weights; then the outputs no kernel wrote."""
        def pointer(v: Value) -> str:
            root = plan.storage.get(v, v)
            if root in const_offsets:
                return f"(pdc_weights + {const_offsets[root]})"
            if root in constants:
                return "0"  # no kernel reads it: not in the blob
            if root in out_index:
                return f"((uint8_t *)outputs[{out_index[root]}])"
            if root in in_index:
                return f"((const uint8_t *)inputs[{in_index[root]}])"
            return f"(A + {plan.offsets[v]})"  # (a concat's input: inside its root)

        constants = set(graph.constants)
        in_index = {v: i for i, v in enumerate(graph.inputs)}
        out_index = {}
        for i, v in enumerate(graph.outputs):
            if v not in in_index and v not in constants:
                out_index.setdefault(v, i)
        lines = []
        for i, (node, fn, _) in enumerate(kernels):
            if is_free_view(node, plan):
                lines.append(f"    /* {c_comment(node.name or node.outputs[0].name)}: {node.op} is a view, no code */")
                continue
            args = []
            for v in node.inputs:
                args.append("0" if v is None else f"(const void *){pointer(v)}")
            for v in node.outputs:
                args.append(f"(void *){pointer(v)}")
            if i in plan.scratch:
                args.append(f"A + {plan.scratch[i]}")
            if vtcm and i in vtcm:
                args.append("pdc_vtcm")
            if i in checked:
                args.append("&err")
            lines.append(f"    {fn}({', '.join(args)}); /* {c_comment(node.name or node.outputs[0].name)} */")
            if i in checked:
                lines.append("    if (err != PDC_OK) return err;")
            if profile:
                lines.append(f"    PDC_PROFILE_POINT({i});")
        # outputs not written by a kernel: graph inputs, constants, or a value listed twice
        for i, v in enumerate(graph.outputs):
            if out_index.get(v) != i:
                lines.append(f"    memcpy(outputs[{i}], {pointer(v)}, {runtime_nbytes(v.type, bounds)});")
        return lines

    @staticmethod
    def render_ctx(name: str, plan: MemoryPlan, bounds: Optional[dict] = None) -> list[str]:
        """The context entry points: the arena is checked once, at ctx_init; a run_ctx is a run."""
        N = name.upper()
        arena_checks = ["    if (!arena) return PDC_ERR_NULL_ARGUMENT;",
                        "    if (!pdc_is_aligned(arena)) return PDC_ERR_MISALIGNED;",
                        f"    if (arena_bytes < {N}_ARENA_BYTES) return PDC_ERR_ARENA_SIZE;"]
        bound_check = [f"    if (ctx->arena_bytes < {N}_ARENA_BYTES) return PDC_ERR_ARENA_SIZE;  /* never bound */"]
        if not plan.arena_bytes:  # the model needs no arena: any (even NULL) will do
            arena_checks, bound_check = [], []
        return [f"pdc_status {name}_ctx_init({name}_ctx *ctx, void *arena, size_t arena_bytes) {{",
                "    if (!ctx) return PDC_ERR_NULL_ARGUMENT;",
                "    ctx->arena = 0;",
                "    ctx->arena_bytes = 0;",
                *arena_checks,
                "    ctx->arena = arena;",
                "    ctx->arena_bytes = arena_bytes;",
                "    return PDC_OK;",
                "}", "",
                f"pdc_status {name}_run_ctx(const {name}_ctx *ctx, const void *const *inputs, void *const *outputs) {{",
                "    if (!ctx) return PDC_ERR_NULL_ARGUMENT;",
                *bound_check,
                f"    return {name}_run(ctx->arena, inputs, outputs);",
                "}", "",
                *([f"pdc_status {name}_run_ctx_dims(const {name}_ctx *ctx, const int64_t *dims, "
                   f"const void *const *inputs, void *const *outputs) {{",
                   "    if (!ctx) return PDC_ERR_NULL_ARGUMENT;",
                   *bound_check,
                   f"    return {name}_run_dims(ctx->arena, dims, inputs, outputs);",
                   "}", ""] if bounds else [])]


def vtcm_declarations(name: str, vtcm: Optional[dict]) -> list[str]:
    """The header's VTCM lines, where kernels use on-chip memory (Hexagon): its size and the setter."""
    if not vtcm:
        return []
    N = name.upper()
    return [f"/* VTCM (the DSP's on-chip memory) the HVX kernels keep their tiles in: {N}_VTCM_BYTES bytes. Hand",
            "   the model the block your application acquired (HAP_request_VTCM, 128-byte aligned) before a run;",
            "   until then the kernels use a static buffer of ordinary memory (slower). NULL: back to that buffer. */",
            f"#define {N}_VTCM_BYTES {max(vtcm.values())}u",
            f"pdc_status {name}_set_vtcm(void *vtcm, size_t bytes);", ""]


def vtcm_definitions(name: str, vtcm: Optional[dict]) -> list[str]:
    if not vtcm:
        return []
    N = name.upper()
    return [f"static uint8_t {name}_vtcm_fallback[{N}_VTCM_BYTES] __attribute__((aligned(128)));",
            f"static uint8_t *pdc_vtcm = {name}_vtcm_fallback;",
            f"pdc_status {name}_set_vtcm(void *vtcm, size_t bytes) {{",
            "    if (!vtcm) {",
            f"        pdc_vtcm = {name}_vtcm_fallback;",
            "        return PDC_OK;",
            "    }",
            f"    if (bytes < {N}_VTCM_BYTES) return PDC_ERR_ARENA_SIZE;",
            "    if ((uintptr_t)vtcm & 127) return PDC_ERR_MISALIGNED;",
            "    pdc_vtcm = (uint8_t *)vtcm;",
            "    return PDC_OK;",
            "}", ""]


def tensor_info_lines(name: str, graph: Graph, bounds: Optional[dict] = None) -> list[str]:
    """NAME_inputs / NAME_outputs: each input's and output's name, dtype, rank, shape and bytes (a
    dim known only at run time: its upper bound)."""
    shapes, infos = [], []
    for kind, values in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        for i, v in enumerate(values):
            dims = ", ".join(str(d) for d in upper_shape(v.type.shape, bounds or {})) or "0"
            shapes.append(f"static const int64_t {kind}_shape{i}[{max(len(v.type.shape), 1)}] = {{{dims}}};")
        fields = ", ".join(f"{{{c_string(v.name)}, {v.type.dtype.onnx}, {len(v.type.shape)}, {kind}_shape{i}, "
                           f"{bound_nbytes(v.type, bounds)}u}}" for i, v in enumerate(values)) or "{0, 0, 0, 0, 0}"
        infos.append(f"const pdc_tensor_info {name}_{kind}[{max(len(values), 1)}] = {{{fields}}};")
    return shapes + infos


def runtime_nbytes(t, bounds: Optional[dict]) -> str:
    """A C expression of a tensor's bytes in the run (its dims known only at run time read)."""
    if t.is_static or not bounds:
        return str(t.nbytes)
    return str(math.prod(runtime_type(t, dim_exprs(bounds)).shape, start=t.dtype.itemsize))


def sized_run_lines(name: str, bounds: dict) -> list[str]:
    """NAME_run_dims, which checks the run's sizes and runs with pdc_dims pointing at them, and
    NAME_run, which runs at every size's upper bound."""
    checks = " || ".join(f"dims[{k}] < {lo} || dims[{k}] > {hi}" for k, (lo, hi) in enumerate(bounds.values()))
    return [f"static pdc_status {name}_run_sized(void *arena, const void *const *inputs, void *const *outputs);",
            "",
            f"pdc_status {name}_run_dims(void *arena, const int64_t *dims, const void *const *inputs, "
            f"void *const *outputs) {{",
            "    if (!dims) return PDC_ERR_NULL_ARGUMENT;",
            f"    if ({checks}) return PDC_ERR_SIZE;",
            "    const int64_t *outer = pdc_dims;  /* a run nested in another's kernel keeps that run's sizes */",
            "    pdc_dims = dims;",
            f"    const pdc_status status = {name}_run_sized(arena, inputs, outputs);",
            "    pdc_dims = outer;",
            "    return status;",
            "}", "",
            f"pdc_status {name}_run(void *arena, const void *const *inputs, void *const *outputs) {{",
            f"    static const int64_t upper[{len(bounds)}] = {{{', '.join(str(hi) for _, hi in bounds.values())}}};",
            f"    return {name}_run_dims(arena, upper, inputs, outputs);",
            "}", ""]


def is_free_view(node: Node, plan: MemoryPlan) -> bool:
    """A view op whose output shares its input's storage, or a concat whose inputs were written in
    place into its output (memory.py): no code runs for it."""
    if node.op == "concat":
        return plan.storage.get(node.outputs[0]) is not None and all(
            v is not None and plan.storage.get(v) is plan.storage.get(node.outputs[0]) for v in node.inputs)
    return node.op in VIEW_OPS and plan.storage.get(node.outputs[0]) is plan.storage.get(node.inputs[0], node.inputs[0])


_VOID_CAST = re.compile(r"\(void\)\s*in\d+\s*;")
_INPUT_NAME = re.compile(r"\bin(\d+)\b")


def inputs_read(src: str) -> set[int]:
    """Indices of the `inK` parameters a rendered kernel names in its body, other than to cast
    them to void. Any other mention (a load, a pointer passed on or stored in a struct) counts:
    a kernel that packed a constant at compile time and reads only its copy does not name it."""
    body = src.split("\n", 2)[2]  # past the comment line and the signature
    return {int(i) for i in _INPUT_NAME.findall(_VOID_CAST.sub("", body))}


def constants_read(graph: Graph, plan: MemoryPlan, kernels) -> dict[Value, Optional[int]]:
    """The graph constants the bundle reads in place, in graph order, each with the index of the
    first node that reads it (None: only returned as an output): those whose storage a kernel that
    runs names in its body (directly or through a view), and constants returned as outputs (copied
    to the caller). The others were packed into the blob by the kernels that use them."""
    constants = set(graph.constants)
    read = {v: None for v in graph.outputs if v in constants}
    for k, (node, _, src) in enumerate(kernels):
        if is_free_view(node, plan):
            continue
        for i in inputs_read(src):
            v = node.inputs[i] if i < len(node.inputs) else None
            root = None if v is None else plan.storage.get(v, v)
            if root in constants and read.get(root) is None:
                read[root] = k
    return {c: read[c] for c in graph.constants if c in read}


def _decl(src: str) -> str:
    for line in src.splitlines():
        if line.startswith("void "):
            return line.rstrip(" {")
    raise AssertionError(src)
