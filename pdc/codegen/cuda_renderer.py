"""The bundle of a CUDA target: device kernels in one CUDA file, a C host that drives them.

The bundle's shape is the OpenCL one (opencl_renderer.py: placement, the device arena from the
memory plan, weights uploaded once, host kernels where no device kernel exists, explicit copies),
with CUDA's way to run it:

- NAME_kernels.cu (compiled by nvcc for the target's sm_NN) holds every device kernel and
  `NAME_kernel_table`, their host-side addresses in launch order;
- NAME.c (the host C compiler, on the CUDA runtime API) allocates at init one device arena and
  the device weights, fixes every launch's arguments, and captures each run of consecutive
  launches (a segment: what lies between two copies or host kernels) once into a CUDA graph; a
  run copies the inputs in, replays the graphs in order on one stream, runs the host kernels in
  between and copies the outputs out.

NAME_run takes host pointers, NAME_run_device device pointers (the copies become device to device;
refused with a reason when a host kernel would read an input or write an output itself).
"""
from __future__ import annotations

import math
import re

from .. import __version__
from ..ir.errors import PdcError
from ..ir.graph import Node
from .c_renderer import Bundle, CRenderer, c_comment, is_free_view, tensor_info_lines
from .context import KernelContext
from .kernels.cuda.program import program_source
from .kernels.cuda.select import device_kernel
from .kernels.opencl import Launch, round_up
from .opencl_renderer import DEVICE, HostProgram, OpenCLRenderer, _runtime

CONVERT_BLOCK = 256  # threads per block of the float32 <-> 16-bit conversions


class CudaRenderer(OpenCLRenderer):
    family = "cuda"

    @staticmethod
    def select(ctx: KernelContext):
        return device_kernel(ctx)

    def render_header(self, graph, plan, name, weight_bytes, weights_mode) -> str:
        """The C bundle's header, with NAME_run_device and NAME_device_error."""
        text = super().render_header(graph, plan, name, weight_bytes, weights_mode)
        run = f"pdc_status {name}_run(void *arena, const void *const *inputs, void *const *outputs);\n"
        extra = ("/* NAME_run on device pointers (cudaMalloc'd inputs and outputs; arena: host memory as for\n"
                 "   NAME_run); PDC_ERR_DEVICE where a host kernel would touch them (see NAME_device_error). */\n"
                 f"pdc_status {name}_run_device(void *arena, const void *const *inputs, void *const *outputs);\n"
                 "/* Why init or a run failed with PDC_ERR_DEVICE (one line). */\n"
                 f"const char *{name}_device_error(void);\n").replace("NAME", name)
        return text.replace(run, run + extra)

    def host_program(self, *args):
        return CudaHostProgram(*args, arch=self.target.arch, target=self.target.name)


# a kernel's declared block size: CUDA's __launch_bounds__(N) (at most N threads) or the OpenCL
# family's PDC_WORK_GROUP(x, y, z) (exactly that group)
BOUNDS = re.compile(r"(?:__launch_bounds__\((\d+)\)|PDC_WORK_GROUP\((\d+), (\d+), (\d+)\))\s*void (\w+)\(")


def check_launch_bounds(sources: list[str], launches: list) -> None:
    """Every launch fits its kernel's declared block size: a GPU refuses the launch otherwise
    ("too many resources requested"), which no test without one would see."""
    declared = {}
    for src in sources:
        for most, x, y, z, fn in BOUNDS.findall(src):
            declared[fn] = (int(most), False) if most else (int(x) * int(y) * int(z), True)
    for _, launch in launches:
        if launch.function not in declared:
            continue
        threads = math.prod(launch.local_size or (1,))
        bound, exact = declared[launch.function]
        if threads > bound or (exact and threads != bound):
            raise PdcError(f"internal error: {launch.function} launched with {threads} threads per block, "
                           f"declared for {'exactly ' if exact else 'at most '}{bound}")


def grid_of(launch: Launch) -> tuple[tuple, tuple]:
    """(grid, block) of a launch: its global size in threads over its block, padded to 3 dims."""
    local = launch.local_size or (1,) * len(launch.global_size)
    grid = tuple(-(-g // b) for g, b in zip(launch.global_size, local))
    pad = (1,) * (3 - len(grid))
    return grid + pad, tuple(local) + pad


class CudaHostProgram(HostProgram):
    """NAME.c and NAME_kernels.cu of a CUDA bundle."""

    def __init__(self, *args, arch: int, target: str):
        super().__init__(*args)
        self.arch, self.target = arch, target

    def add_files(self, b: Bundle, helpers: dict, sources: list[str], weights_mode: str) -> None:
        name = self.name
        steps, launches = self.steps()
        check_launch_bounds(sources, launches)
        table = [launch.function for _, launch in launches]
        b.files[f"{name}_kernels.cu"] = program_source(helpers, sources, self.storage, table, name).encode()
        b.files["runtime/pdc_cuda.h"] = _runtime("pdc_cuda.h")
        b.files["runtime/pdc_cuda.c"] = _runtime("pdc_cuda.c")
        b.kernel_files.append("runtime/pdc_cuda.c")
        b.files[f"{name}.c"] = self.render_c(steps, launches, weights_mode).encode()

    # ---- the run as steps ------------------------------------------------------------------------
    def steps(self) -> tuple[list, list]:
        """The run as a list of steps, ("segment", [launch slots]) or ("host", [C lines]) (copies,
        host kernels), and every launch as (node index, Launch) in slot order."""
        graph = self.graph
        steps, launches = [], []

        def host(lines):
            steps.append(("host", lines))

        def launch(i, ln):
            if 0 in ln.global_size:
                return
            if not steps or steps[-1][0] != "segment":
                steps.append(("segment", []))
            steps[-1][1].append(len(launches))
            launches.append((i, ln))

        for i, node in enumerate(graph.nodes):
            label = c_comment(node.name or node.outputs[0].name)
            if i in self.device:
                for ln in self.device[i].launches:
                    launch(i, ln)
            elif node.op == "copy" and self.converts(node):
                n = node.inputs[0].type.numel
                if node.attrs["to"] == DEVICE:
                    host([f"    PDC_TRY(pdc_cu_copy(&cu, staging, {self.host_pointer(node.inputs[0])}, "
                          f"{node.inputs[0].type.nbytes}u)); /* {label} in */"])
                    launch(i, Launch("pdc_f32_to_half", ("staging", "out0", "n"), (round_up(n, CONVERT_BLOCK),),
                                     (CONVERT_BLOCK,)))
                else:
                    launch(i, Launch("pdc_half_to_f32", ("in0", "staging", "n"), (round_up(n, CONVERT_BLOCK),),
                                     (CONVERT_BLOCK,)))
                    host([f"    PDC_TRY(pdc_cu_copy(&cu, {self.host_pointer(node.outputs[0])}, staging, "
                          f"{node.outputs[0].type.nbytes}u)); /* {label} out */"])
            elif node.op == "copy":
                host(self.copy(node))
            elif not is_free_view(node, self.plan):
                host(self.host_call(node, i, label))
        return steps, launches

    def copy(self, node: Node) -> list[str]:
        src, dst = node.inputs[0], node.outputs[0]
        label = c_comment(src.name)
        if node.attrs["to"] == DEVICE:
            return [f"    PDC_TRY(pdc_cu_copy(&cu, D + {self.plan.offsets[self.root(dst)]}, {self.host_pointer(src)}, "
                    f"{dst.type.nbytes}u)); /* {label} in */"]
        return [f"    PDC_TRY(pdc_cu_copy(&cu, {self.host_pointer(dst)}, D + {self.plan.offsets[self.root(src)]}, "
                f"{dst.type.nbytes}u)); /* {label} out */"]

    def host_touches_caller_memory(self) -> bool:
        """Whether the run uses the caller's buffers as host memory (NAME_run_device then refuses):
        a host kernel reading an input or writing an output in place, or an output that is a
        duplicate of another value."""
        caller = set(self.in_index) | set(self.out_index)
        for i, node in enumerate(self.graph.nodes):
            if i in self.device or node.op == "copy" or is_free_view(node, self.plan):
                continue
            if any(v is not None and self.root(v) in caller for v in node.inputs + node.outputs):
                return True
        return any(self.out_index.get(v) != i for i, v in enumerate(self.graph.outputs))

    def argument(self, i: int, arg: str) -> str:
        """The C value of argument `arg` of a launch of node i: a device pointer, or a conversion's
        int64 count (`n`, passed in a pointer-sized slot)."""
        if arg == "n":
            return f"(uintptr_t){self.graph.nodes[i].inputs[0].type.numel}u"
        where = self.operand(i, arg)
        if isinstance(where, str):
            return where
        space, offset, _ = where
        return f"{'D' if space == 'arena' else 'W'} + {offset}"

    # ---- the C -------------------------------------------------------------------------------------
    def render_c(self, steps, launches, weights_mode: str) -> str:
        name, graph = self.name, self.graph
        values, first = [], []
        for i, ln in launches:
            first.append(len(values))
            values += [self.argument(i, a) for a in ln.args]
        body, segments = [], []
        for kind, x in steps:
            if kind == "segment":
                body.append(f"    PDC_TRY(pdc_cu_replay(&cu, graphs[{len(segments)}]));")
                segments.append(x)
            else:
                body += x
        for i, v in enumerate(graph.outputs):
            if self.out_index.get(v) != i:
                body.append(f"    PDC_TRY(pdc_cu_copy(&cu, outputs[{i}], {self.host_pointer(v)}, {v.type.nbytes}u));")
        status_check = any(a == "status" for _, ln in launches for a in ln.args)
        dims = [grid_of(ln) for _, ln in launches] or [((1, 1, 1), (1, 1, 1))]
        lines = [f"/* {name}.c: generated by pdc {__version__}. The host side of a CUDA bundle: the device kernels",
                 f" * of {name}_kernels.cu replayed as CUDA graphs on one stream, host kernels called in between,",
                 " * copies where values cross. */",
                 f"#include \"{name}.h\"", f"#include \"{name}_kernels.h\"", "#include \"pdc_cuda.h\"",
                 "#include <pthread.h>", "#include <stdint.h>", "#include <string.h>", ""]
        lines += tensor_info_lines(name, graph)
        lines += ["", f"extern const void *const {name}_kernel_table[];  /* {name}_kernels.cu */",
                  f"#define PDC_NUM_LAUNCHES {max(len(launches), 1)}",
                  f"#define PDC_NUM_VALUES {max(len(values), 1)}",
                  f"#define PDC_NUM_GRAPHS {max(len(segments), 1)}",
                  "static const unsigned grids[PDC_NUM_LAUNCHES][3] = {"
                  + ", ".join("{%du, %du, %du}" % g for g, _ in dims) + "};",
                  "static const unsigned blocks[PDC_NUM_LAUNCHES][3] = {"
                  + ", ".join("{%du, %du, %du}" % b for _, b in dims) + "};",
                  f"static const int first_value[PDC_NUM_LAUNCHES] = {{{', '.join(map(str, first)) or '0'}}};",
                  "static pdc_cu cu;",
                  "static uint8_t *D, *W;  /* the device arena, the device weights */",
                  "static void *dummy, *status, *staging;",
                  "static void *values[PDC_NUM_VALUES];  /* every launch's arguments, in order */",
                  "static void *argv_[PDC_NUM_VALUES];  /* their addresses (cudaLaunchKernel's args) */",
                  "static cudaGraphExec_t graphs[PDC_NUM_GRAPHS];",
                  "static pthread_mutex_t device_lock = PTHREAD_MUTEX_INITIALIZER;",
                  "#define PDC_TRY(call) do { if ((err = (call)) != PDC_OK) goto done; } while (0)", "",
                  f"int {name}_load_weights(const char *path);",
                  "/* Why init or a run failed with PDC_ERR_DEVICE (one line). */",
                  f"const char *{name}_device_error(void) {{ return pdc_cuda_error(); }}", "",
                  "static pdc_status launch(int slot) {",
                  f"    return pdc_cu_launch(&cu, {name}_kernel_table[slot], grids[slot], blocks[slot], "
                  "argv_ + first_value[slot]);", "}", ""]
        lines += self.init_c(values, segments, weights_mode, status_check)
        lines += self.run_c(body, status_check, self.host_touches_caller_memory())
        lines += CRenderer.render_ctx(name, self.plan)
        return "\n".join(lines) + "\n"

    def init_c(self, values, segments, weights_mode: str, status_check: bool) -> list[str]:
        name = self.name
        device_arena = self.plan.arenas.get(DEVICE, 0)
        weights = f"pdc_weights + {self.blob_offset}" if self.blob_bytes else "NULL"
        lines = [f"void {name}_shutdown(void) {{",
                 "    for (int i = 0; i < PDC_NUM_GRAPHS; i++) if (graphs[i]) cudaGraphExecDestroy(graphs[i]);",
                 "    memset(graphs, 0, sizeof graphs);",
                 "    void **owned[] = {(void **)&D, (void **)&W, &dummy, &status, &staging};",
                 "    for (int i = 0; i < 5; i++) { pdc_cu_free(*owned[i]); *owned[i] = NULL; }",
                 "    pdc_cu_close(&cu);", "    pdc_threads_shutdown();", "}", ""]
        lines += self.init_opening(weights_mode)
        lines += [f"    PDC_TRY(pdc_cu_open(&cu, {self.arch}, \"{self.target}\"));",
                  f"    PDC_TRY(pdc_cu_alloc(&cu, {device_arena}u, NULL, \"device arena\", (void **)&D));",
                  f"    PDC_TRY(pdc_cu_alloc(&cu, {self.blob_bytes}u, {weights}, \"weights\", (void **)&W));",
                  "    PDC_TRY(pdc_cu_alloc(&cu, 256, NULL, \"dummy buffer\", &dummy));",
                  "    PDC_TRY(pdc_cu_alloc(&cu, sizeof(int), NULL, \"status word\", &status));",
                  f"    PDC_TRY(pdc_cu_alloc(&cu, {self.staging_bytes()}u, NULL, \"conversion buffer\", &staging));"]
        lines += [f"    values[{k}] = (void *)({v});" for k, v in enumerate(values)]
        lines += ["    for (int i = 0; i < PDC_NUM_VALUES; i++) argv_[i] = &values[i];"]
        for s, slots in enumerate(segments):  # each segment captured once into a graph
            lines.append("    PDC_TRY(pdc_cu_capture_begin(&cu));")
            lines += [f"    PDC_TRY(launch({slot}));" for slot in slots]
            lines.append(f"    PDC_TRY(pdc_cu_capture_end(&cu, &graphs[{s}]));")
        lines += ["done:", f"    if (err != PDC_OK) {name}_shutdown();", "    return err;", "}", ""]
        return lines

    def run_c(self, body: list[str], status_check: bool, host_io: bool) -> list[str]:
        name = self.name
        lines = ["static pdc_status run(uint8_t *A, const void *const *inputs, void *const *outputs) {",
                 "    pdc_status err = PDC_OK;", "    (void)A; (void)inputs; (void)outputs;"]
        if status_check:
            lines.append("    PDC_TRY(pdc_cu_zero(&cu, status, sizeof(int)));")
        lines += body + ["    PDC_TRY(pdc_cu_finish(&cu));"]
        if status_check:  # last: a PDC_TRY after it would overwrite err
            lines += ["    { int bad = 0; PDC_TRY(pdc_cu_copy(&cu, &bad, status, sizeof bad));",
                      "      if (bad) err = (pdc_status)bad; }"]
        lines += ["done:", "    return err;", "}", ""]
        for variant, doc in (("run", "host pointers"), ("run_device", "device pointers (cudaMalloc'd)")):
            lines += [f"/* inputs and outputs: {doc} */",
                      f"pdc_status {name}_{variant}(void *host_arena, const void *const *inputs, void *const *outputs) {{"]
            lines += self.argument_checks()
            lines.append("    if (!cu.open) return PDC_ERR_DEVICE;  /* init failed or not called */")
            if variant == "run_device" and host_io:
                lines += ["    (void)inputs; (void)outputs;",
                          f"    return pdc_cu_refuse(\"{name}_run_device: a host kernel of this bundle reads the "
                          f"inputs or writes the outputs itself: use {name}_run with host pointers\");", "}", ""]
                continue
            lines += ["    pthread_mutex_lock(&device_lock);  /* one device arena: one run at a time */",
                      "    pdc_status err = run((uint8_t *)host_arena, inputs, outputs);",
                      "    pthread_mutex_unlock(&device_lock);", "    return err;", "}", ""]
        return lines
