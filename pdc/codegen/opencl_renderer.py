"""The bundle of an OpenCL target: device kernels in one OpenCL C program, a C host that drives them.

Placement (placement.py) puts every node with a device kernel (kernels/opencl/select.py) on the
device and the rest on the host, with explicit copies where values cross. The host side is the C
bundle of the CPU targets (the same API: NAME_init, NAME_run, contexts), whose run function
enqueues the device kernels in order on one in-order queue, calls the host kernels in between,
and copies only where placement put a copy: the model's inputs in, its outputs out, and around
host fallbacks.

At init the program is built (or loaded from the binary cache, pdc_opencl.c), one device arena is
allocated from the memory plan's "device" space, the constants device kernels read are uploaded
once, and every kernel gets its buffer arguments (sub-buffers of the arena and of the weights)
set once: a run only enqueues.
"""
from __future__ import annotations

import re

import numpy as np

from .. import __version__
from ..ir.graph import Graph, Node, Value
from .c_renderer import (Bundle, CRenderer, WeightBlob, c_comment, c_identifier, c_string, is_free_view, kernel_path,
                         tensor_info_lines)
from .context import KernelContext
from .kernels.opencl import DeviceKernel
from .kernels.opencl.program import program_source
from .kernels.opencl.select import device_kernel
from .memory import plan_memory
from .placement import HOST, place

DEVICE = "device"
ALIGN = 256  # bytes: device buffers start here aligned (sub-buffers need the device's base alignment)
BUILD_OPTIONS = "-cl-std=CL1.2"
DOUBLE = re.compile(r"\bdouble\b")


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """float32 values as bfloat16 bit patterns (uint16), rounded to nearest even, NaN kept quiet."""
    u = np.ascontiguousarray(array, np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


class DeviceBlob:
    """The constants device kernels read and their tables, each ALIGN-aligned, uploaded at init."""

    def __init__(self, storage: str = "f32"):
        self.chunks: list[bytes] = []
        self.size = 0
        self.offsets: dict[int, int] = {}  # id(array) -> offset
        self.half = storage != "f32"  # float32 data stored in 16 bits (--precision fp16 / bf16)
        self.storage = storage

    def add(self, array: np.ndarray) -> int:
        key = id(array)
        if key not in self.offsets:
            pad = (-self.size) % ALIGN
            self.chunks.append(b"\0" * pad)
            self.offsets[key] = self.size + pad
            if self.half and array.dtype == np.float32:
                array = array.astype(np.float16) if self.storage == "f16" else bfloat16_bits(array)
            data = np.ascontiguousarray(array).tobytes()
            self.chunks.append(data)
            self.size += pad + len(data)
        return self.offsets[key]

    def stored_bytes(self, array: np.ndarray) -> int:
        return array.nbytes // 2 if self.half and array.dtype == np.float32 else array.nbytes

    def tobytes(self) -> bytes:
        return b"".join(self.chunks) + b"\0" * ((-self.size) % ALIGN)


class OpenCLRenderer(CRenderer):
    family = "opencl"  # the kernel family of its device kernels (manifest, pdc report)

    def render(self, graph: Graph, name: str, weights_mode: str, config) -> Bundle:
        on_device = {id(n) for n in graph.nodes if self._device(n, "pdc_probe", config) is not None}
        graph, spaces = place(graph, lambda n: DEVICE if id(n) in on_device else HOST, (HOST, DEVICE))
        weights, helpers, device_helpers = WeightBlob(), {}, {}
        host_kernels: list = []
        device: dict[int, DeviceKernel] = {}
        scratch: dict[int, int] = {}
        checked: set[int] = set()
        paths, families = [], []
        for i, node in enumerate(graph.nodes):
            if node.op == "copy":
                paths.append(None)
                families.append(f"{self.family}-copy")
                continue
            if spaces[node.outputs[0]] == DEVICE:
                fn = f"{name}_k{i}_{c_identifier(node.op)}"
                dk = device[i] = self._device(node, fn, config, device_helpers)
                if dk.scratch_bytes:
                    scratch[i] = dk.scratch_bytes
                paths.append(dk.path or None)
                families.append(self.family)
                continue
            ctx, src = self.host_kernel(node, i, name, config, weights, helpers)
            if ctx.scratch_bytes:
                scratch[i] = ctx.scratch_bytes
            if ctx.reports_status:
                checked.add(i)
            host_kernels.append((node, ctx.fn_name, src))
            paths.append(kernel_path(src))
            families.append(ctx.family)
        plan = plan_memory(graph, alignment=ALIGN, scratch=scratch, spaces=spaces)
        const_offsets = self.add_constants(graph, plan, host_kernels, weights)
        blob = DeviceBlob(config.float_storage)
        for i, dk in device.items():
            node = graph.nodes[i]
            for v in node.inputs:
                if v is not None and v.is_const:
                    blob.add(v.data)
            for array in dk.tables.values():
                blob.add(array)
        device_blob = blob.tobytes()
        weights.owner = None
        blob_offset = weights.add(np.frombuffer(device_blob, np.uint8)) if device_blob else 0

        b = Bundle(name, plan=plan, graph=graph)
        b.kernel_paths, b.kernel_families = paths, families
        b.weight_bytes = weights.bytes_by_owner()
        self.add_kernel_files(b, name, host_kernels, helpers, weights_mode)
        sources = [f"/* {c_comment(graph.nodes[i].name or graph.nodes[i].outputs[0].name)} ({graph.nodes[i].op}) */\n"
                   f"{dk.source}" for i, dk in device.items()]
        wblob = weights.tobytes()
        b.files[f"{name}_weights.bin"] = wblob
        b.files[f"{name}_weights.c"] = self.render_weights(name, len(wblob), weights_mode).encode()
        b.files[f"{name}.h"] = self.render_header(graph, plan, name, len(wblob), weights_mode).encode()
        host_fns = {id(node): fn for node, fn, _ in host_kernels}
        run = self.host_program(graph, plan, name, device, host_fns, checked, const_offsets, blob, blob_offset,
                                len(device_blob), config.float_storage)
        run.add_files(b, device_helpers, sources, weights_mode)
        fallback = sorted({n.op for n in graph.nodes if n.op != "copy" and spaces[n.outputs[0]] == HOST})
        if fallback:
            counts = {op: sum(1 for n in graph.nodes if n.op == op) for op in fallback}
            b.notes.append(f"warning: {self.target.name} has no device kernel for "
                           + ", ".join(f"{op} x{c}" for op, c in counts.items()) + ": they run on the host CPU")
        return b

    def _device(self, node: Node, fn: str, config, helpers=None):
        """The node's device kernel, or None: none exists, or it computes in double on a device
        without fp64 (its helpers are left unregistered then)."""
        ctx = KernelContext(node, fn, config, WeightBlob(), {})
        dk = self.select(ctx)
        if dk is None:
            return None
        if not self.target.fp64 and any(DOUBLE.search(text) for text in [dk.source, *ctx._helpers.values()]):
            return None
        if helpers is not None:
            helpers.update(ctx._helpers)
        return dk

    @staticmethod
    def select(ctx: KernelContext):
        return device_kernel(ctx)

    @staticmethod
    def host_program(*args):
        return HostProgram(*args)


def _runtime(name: str) -> bytes:
    from ..build import runtime_file
    return runtime_file(name)


class HostProgram:
    """The C of NAME.c for an OpenCL bundle: init (device, buffers, kernels), run, shutdown."""

    def __init__(self, graph, plan, name, device, host_fns, checked, const_offsets, blob, blob_offset,
                 blob_bytes, storage: str = "f32"):
        self.half = storage != "f32"  # float32 values live on the device in 16 bits: copies convert them
        self.storage = storage
        self.program = ""
        self.graph, self.plan, self.name = graph, plan, name
        self.device, self.host_fns, self.checked = device, host_fns, checked
        self.const_offsets, self.blob, self.blob_offset, self.blob_bytes = const_offsets, blob, blob_offset, blob_bytes
        self.subs: dict[tuple, int] = {}  # (parent, offset, bytes) -> index in subs[]
        self.constants = set(graph.constants)
        self.in_index = {v: i for i, v in enumerate(graph.inputs)}
        self.out_index = {}
        for i, v in enumerate(graph.outputs):
            if v not in self.in_index and v not in self.constants:
                self.out_index.setdefault(v, i)

    def add_files(self, b: Bundle, helpers: dict, sources: list[str], weights_mode: str) -> None:
        """The program (NAME_kernels.cl), the runtime and NAME.c into the bundle."""
        name = self.name
        self.program = program_source(helpers, sources, self.storage)
        b.files[f"{name}_kernels.cl"] = self.program.encode()
        b.files["runtime/pdc_opencl.h"] = _runtime("pdc_opencl.h")
        b.files["runtime/pdc_opencl.c"] = _runtime("pdc_opencl.c")
        b.kernel_files.append("runtime/pdc_opencl.c")
        b.files[f"{name}.c"] = self.render(weights_mode).encode()

    # ---- where values live -------------------------------------------------------------------
    def root(self, v: Value) -> Value:
        return self.plan.storage.get(v, v)

    def host_pointer(self, v: Value) -> str:
        root = self.root(v)
        if root in self.const_offsets:
            return f"(pdc_weights + {self.const_offsets[root]})"
        if root in self.out_index:
            return f"((uint8_t *)outputs[{self.out_index[root]}])"
        if root in self.in_index:
            return f"((const uint8_t *)inputs[{self.in_index[root]}])"
        if root in self.constants:
            return "0"
        return f"(A + {self.plan.offsets[root]})"

    def sub(self, parent: str, offset: int, nbytes: int) -> str:
        key = (parent, offset, max(nbytes, 1))
        if key not in self.subs:
            self.subs[key] = len(self.subs)
        return f"subs[{self.subs[key]}]"

    def operand(self, i: int, arg: str):
        """What argument `arg` of device node i's kernels is: a buffer of its own by name ("dummy",
        "status", "staging"), or (space, byte offset, bytes) in the device arena ("arena") or the
        uploaded weights ("weights")."""
        node = self.graph.nodes[i]
        if arg == "none":
            return "dummy"
        if arg in ("status", "staging"):
            return arg
        dk = self.device.get(i)  # None for a copy's conversion
        if arg == "scratch":
            return "arena", self.plan.scratch[i], dk.scratch_bytes
        if dk is not None and arg in dk.tables:
            table = dk.tables[arg]
            return "weights", self.blob.offsets[id(table)], self.blob.stored_bytes(table)
        kind, k = None, None
        for prefix in ("in", "out"):
            if arg.startswith(prefix) and arg[len(prefix):].isdigit():
                kind, k = prefix, int(arg[len(prefix):])
        if k is None:
            raise ValueError(f"device kernel of {node.describe()}: unknown argument '{arg}'")
        v = (node.inputs if kind == "in" else node.outputs)[k]
        if v is None:
            return "dummy"
        if v.is_const:
            return "weights", self.blob.offsets[id(v.data)], self.blob.stored_bytes(v.data)
        return "arena", self.plan.offsets[self.root(v)], v.type.nbytes

    def device_buffer(self, i: int, arg: str) -> str:
        """The cl_mem bound to parameter `arg` of device node i's kernels."""
        where = self.operand(i, arg)
        return where if isinstance(where, str) else self.sub(*where)

    def host_call(self, node: Node, i: int, label: str) -> list[str]:
        """The call of host node i's C kernel on host pointers, and its status check."""
        args = ["0" if v is None else f"(const void *){self.host_pointer(v)}" for v in node.inputs]
        args += [f"(void *){self.host_pointer(v)}" for v in node.outputs]
        if i in self.plan.scratch:
            args.append(f"A + {self.plan.scratch[i]}")
        if i in self.checked:
            args.append("&err")
        lines = [f"    {self.host_fns[id(node)]}({', '.join(args)}); /* {label} */"]
        if i in self.checked:
            lines.append("    if (err != PDC_OK) goto done;")
        return lines

    # ---- the C --------------------------------------------------------------------------------
    def render(self, weights_mode: str) -> str:
        name, graph, plan = self.name, self.graph, self.plan
        kernels = []  # (node index, launch, kernel slot)
        body = []
        for i, node in enumerate(graph.nodes):
            label = c_comment(node.name or node.outputs[0].name)
            if is_free_view(node, plan):
                body.append(f"    /* {label}: {node.op} is a view, no code */")
            elif node.op == "copy" and not self.converts(node):
                body += self.copy(node)
            elif i in self.device or node.op == "copy":
                launches = self.device[i].launches if i in self.device else self.conversion(node)
                if node.op == "copy" and node.attrs["to"] == DEVICE:
                    body.append(f"    PDC_TRY(pdc_cl_write(&cl, staging, 0, {self.host_pointer(node.inputs[0])}, "
                                f"{node.inputs[0].type.nbytes}u)); /* {label} in */")
                for launch in launches:
                    slot = len(kernels)
                    kernels.append((i, launch))
                    dims = len(launch.global_size)
                    g = ", ".join(f"{x}u" for x in launch.global_size)
                    local = "NULL" if launch.local_size is None else \
                        f"(const size_t[]){{{', '.join(f'{x}u' for x in launch.local_size)}}}"
                    body.append(f"    PDC_TRY(pdc_cl_launch(&cl, kernels[{slot}], {dims}, (const size_t[]){{{g}}}, "
                                f"{local})); /* {label} */")
                if node.op == "copy" and node.attrs["to"] == HOST:
                    body.append(f"    PDC_TRY(pdc_cl_read(&cl, staging, 0, {self.host_pointer(node.outputs[0])}, "
                                f"{node.outputs[0].type.nbytes}u)); /* {label} out */")
            else:
                body += self.host_call(node, i, label)
        for i, v in enumerate(graph.outputs):
            if self.out_index.get(v) != i:
                body.append(f"    memcpy(outputs[{i}], {self.host_pointer(v)}, {v.type.nbytes});")
        status_check = any(a == "status" for _, launch in kernels for a in launch.args)
        arg_lists = [[self.device_buffer(i, a) for a in launch.args] for i, launch in kernels]
        return "\n".join(self.prologue(weights_mode, len(kernels), status_check)
                         + self.init(kernels, arg_lists, weights_mode, status_check)
                         + self.run(body, status_check)
                         + CRenderer.render_ctx(name, plan)) + "\n"

    def init_opening(self, weights_mode: str) -> list[str]:
        """NAME_init's first lines: the weights file (--weights bin), the host threads."""
        name = self.name
        lines = [f"pdc_status {name}_init(const char *weights_path, int num_threads) {{", "    pdc_status err = PDC_OK;"]
        if weights_mode == "bin":
            lines.append(f"    if ({name}_load_weights(weights_path)) return PDC_ERR_WEIGHTS;")
        else:
            lines.append("    (void)weights_path;")
        return lines + ["    if ((err = pdc_threads_init(num_threads)) != PDC_OK) return err;"]

    def argument_checks(self) -> list[str]:
        """A run's first lines: the pointers it needs, the host arena's alignment."""
        plan, graph = self.plan, self.graph
        needed = [p for p, used in (("!host_arena", plan.arena_bytes), ("!inputs", graph.inputs),
                                    ("!outputs", graph.outputs)) if used]
        lines = [f"    if ({' || '.join(needed)}) return PDC_ERR_NULL_ARGUMENT;"] if needed else []
        if plan.arena_bytes:
            lines.append("    if (!pdc_is_aligned(host_arena)) return PDC_ERR_MISALIGNED;")
        return lines

    def converts(self, node: Node) -> bool:
        """A copy of a float32 value under fp16 storage: the device side is half, converted there."""
        return self.half and node.inputs[0].type.dtype.short == "f32" and node.inputs[0].type.numel > 0

    def conversion(self, node: Node) -> list:
        """The conversion launch of a converting copy, through the staging buffer (float32)."""
        from .kernels.opencl import Launch
        n = (node.inputs[0].type.numel,)
        if node.attrs["to"] == DEVICE:
            return [Launch("pdc_f32_to_half", ("staging", "out0"), n)]
        return [Launch("pdc_half_to_f32", ("in0", "staging"), n)]

    def staging_bytes(self) -> int:
        return max([n.inputs[0].type.nbytes for n in self.graph.nodes if n.op == "copy" and self.converts(n)],
                   default=0)

    def copy(self, node: Node) -> list[str]:
        src, dst = node.inputs[0], node.outputs[0]
        n = dst.type.nbytes
        label = c_comment(src.name)
        if node.attrs["to"] == DEVICE:
            off = self.plan.offsets[self.root(dst)]
            return [f"    PDC_TRY(pdc_cl_write(&cl, arena, {off}u, {self.host_pointer(src)}, {n}u)); /* {label} in */"]
        off = self.plan.offsets[self.root(src)]
        return [f"    PDC_TRY(pdc_cl_read(&cl, arena, {off}u, {self.host_pointer(dst)}, {n}u)); /* {label} out */"]

    def prologue(self, weights_mode: str, n_kernels: int, status_check: bool) -> list[str]:
        name, graph = self.name, self.graph
        lines = [f"/* {name}.c: generated by pdc {__version__}. The host side of an OpenCL bundle: device kernels",
                 " * enqueued in order on one queue, host kernels called in between, copies where values cross. */",
                 f"#include \"{name}.h\"", f"#include \"{name}_kernels.h\"", "#include \"pdc_opencl.h\"",
                 "#include <pthread.h>", "#include <string.h>", ""]
        lines += tensor_info_lines(name, graph)
        lines += ["", f"/* {name}_kernels.cl, built at init */", "static const char program_source[] ="]
        lines += [f"    {c_string(line + chr(10))}" for line in self.program.splitlines()] + ["    \"\";", ""]
        lines += [f"#define PDC_NUM_KERNELS {max(n_kernels, 1)}", f"#define PDC_NUM_SUBS {max(len(self.subs), 1)}",
                  "static pdc_cl cl;",
                  "static cl_mem arena, weights, dummy, status, staging;",
                  "static cl_mem subs[PDC_NUM_SUBS];",
                  "static cl_kernel kernels[PDC_NUM_KERNELS];",
                  "static pthread_mutex_t device_lock = PTHREAD_MUTEX_INITIALIZER;",
                  "#define PDC_TRY(call) do { if ((err = (call)) != PDC_OK) goto done; } while (0)", "",
                  f"int {name}_load_weights(const char *path);",
                  "/* Why init or a run failed with PDC_ERR_DEVICE (one line). */",
                  f"const char *{name}_device_error(void) {{ return pdc_opencl_error(); }}", ""]
        return lines

    def init(self, kernels, arg_lists, weights_mode: str, status_check: bool) -> list[str]:
        name = self.name
        device_arena = self.plan.arenas.get(DEVICE, 0)
        lines = [f"void {name}_shutdown(void) {{",
                 "    for (int i = 0; i < PDC_NUM_KERNELS; i++) if (kernels[i]) clReleaseKernel(kernels[i]);",
                 "    for (int i = 0; i < PDC_NUM_SUBS; i++) if (subs[i]) clReleaseMemObject(subs[i]);",
                 "    cl_mem *owned[] = {&arena, &weights, &dummy, &status, &staging};",
                 "    for (int i = 0; i < 5; i++) if (*owned[i]) clReleaseMemObject(*owned[i]);",
                 "    memset(kernels, 0, sizeof kernels);", "    memset(subs, 0, sizeof subs);",
                 "    arena = weights = dummy = status = staging = 0;",
                 "    if (cl.context) pdc_cl_close(&cl);", "    pdc_threads_shutdown();", "}", ""]
        lines += self.init_opening(weights_mode)
        lines += [f"    PDC_TRY(pdc_cl_open(&cl, program_source, \"{BUILD_OPTIONS}\", {ALIGN}));",
                  f"    PDC_TRY(pdc_cl_buffer(&cl, {device_arena}u, NULL, &arena));",
                  f"    PDC_TRY(pdc_cl_buffer(&cl, {self.blob_bytes}u, "
                  f"{f'pdc_weights + {self.blob_offset}' if self.blob_bytes else 'NULL'}, &weights));",
                  "    PDC_TRY(pdc_cl_buffer(&cl, 64, NULL, &dummy));",
                  "    PDC_TRY(pdc_cl_buffer(&cl, sizeof(int), NULL, &status));",
                  f"    PDC_TRY(pdc_cl_buffer(&cl, {self.staging_bytes()}u, NULL, &staging));"]
        for (parent, off, nbytes), k in sorted(self.subs.items(), key=lambda kv: kv[1]):
            lines.append(f"    PDC_TRY(pdc_cl_sub({parent}, {off}u, {nbytes}u, &subs[{k}]));")
        for slot, ((i, launch), args) in enumerate(zip(kernels, arg_lists)):
            lines.append(f"    {{ const cl_mem a[] = {{{', '.join(args)}}}; PDC_TRY(pdc_cl_kernel(&cl, "
                         f"{c_string(launch.function)}, {len(args)}, a, &kernels[{slot}])); }}")
        lines += ["done:", f"    if (err != PDC_OK) {name}_shutdown();", "    return err;", "}", ""]
        return lines

    def run(self, body: list[str], status_check: bool) -> list[str]:
        name = self.name
        lines = [f"pdc_status {name}_run(void *host_arena, const void *const *inputs, void *const *outputs) {{"]
        lines += self.argument_checks()
        lines += ["    if (!cl.context) return PDC_ERR_DEVICE;  /* init failed or not called */",
                  "    uint8_t *A = (uint8_t *)host_arena;", "    (void)A;",
                  "    pdc_status err = PDC_OK;",
                  "    pthread_mutex_lock(&device_lock);  /* one device arena: one run at a time */"]
        if status_check:
            lines.append("    { static const int zero = 0; PDC_TRY(pdc_cl_write(&cl, status, 0, &zero, sizeof zero)); }")
        lines += body + ["    PDC_TRY(pdc_cl_finish(&cl));"]
        if status_check:  # last: a PDC_TRY after it would overwrite err
            lines += ["    { int bad = 0; PDC_TRY(pdc_cl_read(&cl, status, 0, &bad, sizeof bad));",
                      "      if (bad) err = (pdc_status)bad; }"]
        lines += ["done:", "    pthread_mutex_unlock(&device_lock);", "    return err;", "}", ""]
        return lines
