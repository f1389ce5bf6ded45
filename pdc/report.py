"""pdc report: what deploying a model costs, before the user builds anything.

The model is compiled with pdc's own compiler into a temporary folder; the figures come from what
the compiler produced, not from a second estimate of it:

- RAM: the memory plan's arena (manifest arena_bytes), its live bytes at every schedule step (the
  tensors whose storage group lives across that step, plus the kernel scratch of that step), the
  peak step with the values live there; the stack estimate of a Cortex-M image (GCC's call graph).
- flash: code + weights of what was built (text + data from `size`: the firmware image for
  Cortex-M, the shared library for x86, the static library for ARM Cortex-A).
- per layer: the weight bytes it owns in the bundle's weights blob (after packing, padding
  included, so the layers sum to weight_bytes), which kernel family renders it (native or the
  portable fallback) and its path, and an estimated latency from a per-target cost model.

Cost models (estimates; `pdc bench MODEL --profile` measures each kernel of a real build):
- x86, per kernel a roofline: the larger of compute = (MACs / efficiency of the kernel's path +
  outputs x its fused activation's cost in MACs) / calibrated MAC/s, and memory = weight bytes /
  bandwidth + activation bytes / bandwidth (4x where they fit L2); plus a fixed overhead per kernel
  (8 for a conv / GEMM: packing, tiles, a parallel dispatch), and one per run. MAC/s (of a large
  1x1 conv), bandwidth and the overheads are measured once per machine and thread count by a
  calibration bundle of three tiny kernels (calibrate()), cached under the pdc cache folder; the
  path efficiencies (PATH_EFFICIENCY, fitted to `pdc bench --profile` of the zoo models on a quiet
  2-core Zen 4) are relative to that rate. How far each path's kernels stray from that fit on
  this machine (Winograd's transforms and the depthwise loops differ most between cores) is
  measured too: the calibration times typical layers of mobile and residual networks (PATH_LAYERS)
  and fits per path the factor on the compute term that gives their measured time
  (path_factor_fit). So the estimate follows the machine it runs on. benchmarks/report_latency.py sets the totals beside measured runs.
- ARM Cortex-A and Cortex-M: cycles = MACs x cycles per MAC of the kernel family + bytes moved x
  cycles per byte + cycles per kernel (CYCLE_MODELS), at the nominal clock of the core.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Optional

from .ir.errors import PdcError

CALIBRATION_VERSION = 5  # bump when the calibration bundle or what it measures changes


# ---- compile and collect ----------------------------------------------------------------------
def make_report(model, target: str = "x86", shapes: Optional[dict] = None, threads: Optional[int] = None,
                opt_level: int = 2, calibration: Optional[dict] = None, out_dir: Optional[str] = None,
                progress=None) -> dict:
    """The report of `model` compiled for `target` (a JSON-ready dict; see the module doc). The bundle
    is compiled into a temporary folder, or into out_dir, which then keeps it (to time it, say).
    progress(message) hears of the x86 calibration when this machine has none cached yet."""
    from .compiler import compile_details
    from .targets import get_target
    if get_target(target) is None:
        raise PdcError("target 'reference' runs the interpreter and deploys nothing; pick a code target "
                       "(pdc targets)")
    with tempfile.TemporaryDirectory(prefix="pdc-report-") as tmp:
        c = compile_details(model, out_dir or os.path.join(tmp, "bundle"), target=target, shapes=shapes,
                            threads=threads, opt_level=opt_level)
        flash = flash_figures(c.folder, c.manifest)
    return report_of(c, flash, opt_level, calibration, progress)


def report_of(c, flash: dict, opt_level: int, calibration: Optional[dict], progress=None) -> dict:
    """The report's figures from a compile_details() result and its flash figures."""
    m = c.manifest
    at = {d["name"]: d["max"] for d in m.get("dims", [])}
    if at:  # sizes known only at run time: the figures at their upper bounds
        at_sizes(c.graph, at)
    layers = layer_rows(c.graph, c.bundle)
    timeline, peak = memory_timeline(c.graph, c.bundle.plan)
    latency = estimate_latency(layers, m["target"], m["threads"], calibration, progress)
    stack = (m.get("memory") or {}).get("stack_estimate")
    return {
        "model": m["name"], "target": m["target"], "threads": m["threads"], "opt_level": opt_level,
        "inputs": m["inputs"], "outputs": m["outputs"],
        "arena_bytes": m["arena_bytes"], "peak": peak, "timeline": timeline,
        "scratch_bytes": max(c.bundle.plan.scratch_bytes.values(), default=0),
        "vtcm_bytes": m.get("vtcm_bytes"), "vtcm_limit": m.get("vtcm_limit"),
        "stack_bytes": stack, "ram_bytes": m["arena_bytes"] + (stack or 0),
        "weight_bytes": m["weight_bytes"], "flash": flash,
        "coverage": coverage_counts(layers),
        "latency": latency, "layers": layers,
        "measure": measure_hint(m["target"]),
        "at_sizes": at,
    }


def at_sizes(graph, sizes: dict) -> None:
    """Gives every value of `graph` its type at these sizes of its symbolic dims, in place (the
    memory plan and the bundle keep naming the same values)."""
    from .ir.shapes import bind_shapes
    bound = bind_shapes(graph, {sym: [n] for sym, n in sizes.items()})
    for old, new in zip(graph.values(), bound.values()):
        old.type = new.type


def layer_rows(graph, bundle) -> list[dict]:
    """One row per node (= kernel) in schedule order: what it computes, who renders it, its weights,
    scratch, MACs and bytes moved (activations read and written + its weights)."""
    from .codegen.c_renderer import is_free_view
    from .ir.cost import node_macs
    plan = bundle.plan
    constants = set(graph.constants)
    rows = []
    for i, node in enumerate(graph.nodes):
        weights = bundle.weight_bytes.get(i, 0)
        acts = sum(v.type.nbytes for v in (*node.inputs, *node.outputs)
                   if v is not None and plan.storage.get(v, v) not in constants)
        free = is_free_view(node, plan)
        rows.append({
            "index": i, "name": node.name or node.outputs[0].name, "op": node.op,
            "family": bundle.kernel_families[i], "path": bundle.kernel_paths[i] or "",
            "coverage": coverage_of(bundle.kernel_families[i]),
            "runs": not free,  # a view that shares its input's storage runs no code
            "macs": 0 if free else node_macs(node), "bytes_moved": 0 if free else acts + weights,
            "outputs": node.outputs[0].type.numel if node.outputs[0].type.is_static else 0,
            "activation": node.attrs.get("activation") if isinstance(node.attrs.get("activation"), str) else None,
            **gemm_dims(node),
            "weight_bytes": weights, "scratch_bytes": plan.scratch_bytes.get(i, 0),
            "vtcm_bytes": bundle.vtcm_bytes.get(i, 0),
            "source_nodes": node.attrs["source_nodes"] if isinstance(node.attrs.get("source_nodes"), list)
            else [node.name],
        })
    unowned = bundle.weight_bytes.get(None, 0)  # constants returned as graph outputs
    if unowned and rows:
        rows[-1]["weight_bytes"] += unowned
    return rows


def gemm_dims(node) -> dict:
    """A conv's or dense layer's output channels and reduction length (per output), for the cost model."""
    w = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if w is None or not w.type.is_static or len(w.type.shape) < 2:
        return {}
    shape = w.type.shape
    if "conv" in node.op and len(shape) >= 3:  # [M, C/group, k...]
        return {"out_channels": shape[0], "reduction": math.prod(shape[1:])}
    if node.op in ("gemm", "fused_gemm", "matmul", "fused_matmul"):
        trans_b = node.attrs.get("transB", node.attrs.get("trans_b", 0))
        return {"out_channels": shape[0] if trans_b else shape[-1], "reduction": shape[-1] if trans_b else shape[-2]}
    return {}


def coverage_of(family: Optional[str]) -> str:
    from .codegen.kernels import PORTABLE
    return "unsupported" if family is None else "portable" if family == PORTABLE else "native"


def coverage_counts(layers: list[dict]) -> dict:
    counts = {"native": 0, "portable": 0, "unsupported": 0}
    for r in layers:
        counts[r["coverage"]] += 1
    return counts


# ---- memory -------------------------------------------------------------------------------------
def storage_groups(graph, plan) -> dict:
    """Arena storage root -> (first step, last step, bytes): a group lives from its first member's
    definition to its last member's last use, as the planner sees it."""
    from .codegen.memory import lifetimes
    defined, last_use = lifetimes(graph)
    groups = {}
    for v in plan.offsets:
        root = plan.storage[v]
        start, end = defined[v], last_use[v]
        if root in groups:
            s, e, n = groups[root]
            start, end = min(s, start), max(e, end)
        groups[root] = (start, end, root.type.nbytes)
    return groups


def memory_timeline(graph, plan) -> tuple[list[int], dict]:
    """The arena's live bytes at each schedule step (tensor bytes, alignment padding not counted) and
    the peak step with the values live there, largest first."""
    groups = storage_groups(graph, plan)
    live = [plan.scratch_bytes.get(i, 0) for i in range(len(graph.nodes))]
    for start, end, nbytes in groups.values():
        for i in range(start, end + 1):
            live[i] += nbytes
    if not live:
        return [], {"node": None, "name": "", "op": "", "live_bytes": 0, "values": []}
    step = max(range(len(live)), key=lambda i: live[i])  # the first step at the peak
    values = [{"name": root.name, "bytes": n} for root, (s, e, n) in groups.items() if s <= step <= e]
    if plan.scratch_bytes.get(step):
        values.append({"name": "(kernel scratch)", "bytes": plan.scratch_bytes[step]})
    node = graph.nodes[step]
    return live, {"node": step, "name": node.name or node.outputs[0].name, "op": node.op,
                  "live_bytes": live[step], "values": sorted(values, key=lambda v: -v["bytes"])}


# ---- flash --------------------------------------------------------------------------------------
def flash_figures(folder: str, manifest: dict) -> dict:
    """Code + weights of what was built: the Cortex-M firmware's text + data (from its build), the
    x86 shared library's or the ARM static library's text + data from `size`."""
    weights = manifest["weight_bytes"]
    if "flash_bytes" in manifest:  # Cortex-M: arm-none-eabi-size of the linked image
        return {"bytes": manifest["flash_bytes"], "weights": weights,
                "code": manifest["flash_bytes"] - weights, "of": f"{manifest['name']}.elf (firmware image)",
                "limit": manifest.get("flash_limit")}
    lib = manifest.get("library") or manifest.get("static_library")
    if not lib:
        return {"bytes": None, "weights": weights, "code": None, "of": "nothing built", "limit": None}
    path = os.path.join(folder, lib)
    total = text_plus_data(path, size_tool(manifest))
    if total is None:  # no binutils here: the file's size, an upper bound
        total = os.path.getsize(path)
    return {"bytes": total, "weights": weights, "code": total - weights, "of": lib, "limit": None}


def size_tool(manifest: dict) -> str:
    tool = manifest.get("toolchain") or ""
    return tool[:-3] + "size" if tool.endswith("-gcc") else "size"


def text_plus_data(path: str, tool: str) -> Optional[int]:
    """text + data (Berkeley format: text includes .rodata) summed over the file's objects."""
    try:
        out = subprocess.run([tool, "-B", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for line in out.strip().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            total += int(parts[0]) + int(parts[1])
    return total


# ---- latency: x86 ---------------------------------------------------------------------------------
# Achieved fraction of the calibrated peak MAC rate per kernel path (family/path as in the
# manifest; op families without paths by op). Read from `pdc bench --profile` of the zoo models on
# the development machine (see the module doc): ratios to the peak, so another x86 keeps them.
PATH_EFFICIENCY = {
    "conv/pointwise": 0.72, "conv/band": 1.05, "conv/transposed": 0.80, "conv/im2col": 0.60,
    "conv/direct": 0.15, "conv/depthwise-flat": 0.22, "conv/depthwise-rows": 0.22,
    "gemm/packed-b": 0.70, "gemm/packed-a": 0.60, "gemm/loops": 0.15, "gemm/runtime": 0.30,
    "attention/keys-transposed": 0.15, "attention/keys-direct": 0.12, "attention/scalar": 0.05,
    "rnn/packed": 0.10, "rnn/rowdot": 0.05,
    # shares of the direct MACs (a 3x3 conv's 9 per output): Winograd does fewer, so above 1. From
    # `pdc bench --profile` of resnet18 on AVX2, 2 threads (F(4x4) 0.8-1.2 ms, F(2x2) at 7x7 1.15 ms
    # per 116 M direct MACs); AVX-512 assumed the same
    "conv/winograd4": 1.8, "conv/winograd2": 1.55,
}
# AVX2's own shares where they differ from AVX-512's (its conv paths run 6x16 tiles; the depthwise
# loops take two 8-lane vectors per block; im2col is the calibration conv's own path there): per-kernel
# profiles and whole runs of the zoo on an AMD EPYC without AVX-512, against the estimate with the same
# machine's calibration
PATH_EFFICIENCY_AVX2 = {**PATH_EFFICIENCY, "conv/pointwise": 0.78, "conv/band": 0.68, "conv/im2col": 0.9,
                        "conv/depthwise-flat": 0.16, "conv/depthwise-rows": 0.13}
# A fused activation's cost per output element, in MACs of the calibrated rate: the ones computed in
# vectors after the tile (x86/activations.py: hard-swish, sigmoid, swish) cost a few; the scalar ones
# (a switch per element, libm's tanh / erf) about 1.5 ns per output on 2 threads, some 190 MACs
ACTIVATION_MACS = {"hard_swish": 12, "hard_sigmoid": 20, "sigmoid": 30, "swish": 30, "gelu": 250,
                   "gelu_tanh": 250, "tanh": 190, "elu": 150, "selu": 150}
MAC_KERNEL_CALLS = 8  # a conv / GEMM call's set-up (packing, tiles, a parallel dispatch) in tiny-kernel calls
DEFAULT_EFFICIENCY = 0.30  # a MAC-heavy kernel without an entry
PORTABLE_EFFICIENCY = 0.05  # plain C loops: scalar or what gcc vectorizes
# Achieved fraction of the calibrated elementwise bandwidth by the kernels whose bytes differ from
# one read + one write per element: pooling reads each input element several times, a batch-1
# dense layer streams its weights from further caches, a concat only copies.
PATH_BANDWIDTH = {"pool/interior": 0.42, "pool/generic": 0.2, "pool/avx512-band": 0.4, "pool/avx-band": 0.4,
                  "concat": 0.74, "reduce/rows-f32": 0.2, "mul": 0.24}
# A kernel whose bytes fit the L2 cache (1 MiB per core on the development machine) reads them about
# 4x faster than the calibration's add, whose tensors come from L3 (KERNELS.md section 0: L2 98-117
# GB/s against ~26 GB/s further out).
L2_BYTES, L2_SPEEDUP = 1 << 20, 4.0
FULL_REDUCTION = 64  # the reduction length (C/group x kernel) below which a conv's tile idles
FULL_REDUCTION_AVX2 = 16  # AVX2's 6x16 tile idles less (mobilenet_v2's 1x1 convs on 16 channels run full)


@dataclass(frozen=True)
class Calibration:
    """This machine's figures at one thread count, measured by calibrate()."""
    mac_per_s: float  # MACs per second of a large 1x1 conv (the fastest path), all threads
    bytes_per_s: float  # bytes per second read + written by a large elementwise add
    kernel_s: float  # seconds of one tiny kernel (a call on the calling thread)
    run_s: float  # seconds of one Module.run besides its kernels (ctypes, input/output copies)
    # per kernel path: the factor on the compute term that makes the model give the measured time
    # of the calibration's typical layers on that path (PATH_LAYERS, path_factor_fit): the path
    # tables were fitted on one machine, and a path's share of the peak differs between
    # microarchitectures (Winograd's transforms, the depthwise loops) far more than the peak itself
    path_factor: dict = field(default_factory=dict)


def x86_seconds(row: dict, cal: Calibration, avx2: bool = False) -> float:
    """A kernel's estimated seconds, a roofline: the larger of its compute (x86_terms, scaled by its
    path's measured factor) and its memory traffic, plus the fixed cost of the call."""
    if not row["runs"]:
        return 0.0
    compute, memory = x86_terms(row, cal, avx2)
    return max(compute * cal.path_factor.get(row["path"], 1.0), memory) + kernel_call_s(row, cal)


def x86_terms(row: dict, cal: Calibration, avx2: bool) -> tuple[float, float]:
    """(compute, memory) seconds of a kernel: its MACs at its path's share of the peak (less where its
    tile is not filled) plus its fused activation per output; weights streamed at the calibrated
    bandwidth, activations 4x faster when they fit L2."""
    fallback = PORTABLE_EFFICIENCY if row["family"] == "portable" else DEFAULT_EFFICIENCY
    shares = PATH_EFFICIENCY_AVX2 if avx2 else PATH_EFFICIENCY
    eff = shares.get(row["path"], fallback) * tile_fill(row, FULL_REDUCTION_AVX2 if avx2 else FULL_REDUCTION)
    compute = (row["macs"] / eff + row.get("outputs", 0) * ACTIVATION_MACS.get(row.get("activation"), 0)) / cal.mac_per_s
    acts = row["bytes_moved"] - row["weight_bytes"]
    bandwidth = cal.bytes_per_s * PATH_BANDWIDTH.get(row["path"] or row["op"], 1.0)
    memory = row["weight_bytes"] / cal.bytes_per_s + acts / (bandwidth * (L2_SPEEDUP if acts <= L2_BYTES else 1.0))
    return compute, memory


def kernel_call_s(row: dict, cal: Calibration) -> float:
    return cal.kernel_s * (MAC_KERNEL_CALLS if row["macs"] else 1)


def tile_fill(row: dict, full: int) -> float:
    """The share of a conv's register tile a layer fills: a reduction shorter than `full` (a first
    conv on 3 input channels) leaves accumulators waiting on loads."""
    k = row.get("reduction")
    if not k or "conv" not in row["op"] or row["path"].startswith("conv/depthwise"):
        return 1.0
    return min(1.0, k / full)


# ---- latency: ARM (cycle model) -------------------------------------------------------------------
@dataclass(frozen=True)
class CycleModel:
    clock_hz: float  # the core's nominal clock (what a typical part runs at)
    native_cycles_per_mac: float  # NEON / SIMD kernels
    portable_cycles_per_mac: float  # plain C loops
    cycles_per_byte: float  # loads and stores of the bytes a kernel moves
    kernel_cycles: float  # call, loop set-up


# Simple documented assumptions, not measurements: a 4-lane fp32 FMA per cycle on AArch64 NEON, 2 on
# ARMv7 NEON; Cortex-M: a single-precision FPU MAC with its loads in ~3 cycles (M4/M7), MVE about
# 2 MACs per cycle (M55), software float on the M3 (~30 cycles per MAC).
CYCLE_MODELS = {
    "arm64": CycleModel(1.5e9, 0.35, 1.0, 0.25, 200),
    "armv7": CycleModel(1.2e9, 0.6, 2.0, 0.35, 200),
    "cortex-m3": CycleModel(100e6, 30.0, 30.0, 1.0, 100),
    "cortex-m4": CycleModel(168e6, 3.0, 3.0, 0.5, 100),
    "cortex-m7": CycleModel(400e6, 1.5, 1.5, 0.3, 100),
    "cortex-m55": CycleModel(250e6, 0.5, 2.0, 0.3, 100),
}


def cycles(row: dict, model: CycleModel) -> float:
    if not row["runs"]:
        return 0.0
    per_mac = model.portable_cycles_per_mac if row["family"] == "portable" else model.native_cycles_per_mac
    return row["macs"] * per_mac + row["bytes_moved"] * model.cycles_per_byte + model.kernel_cycles


def estimate_latency(layers: list[dict], target: str, threads: int, calibration: Optional[dict] = None,
                     progress=None) -> dict:
    """Fills each layer's est_us; returns the model's description and total."""
    if target in CYCLE_MODELS:
        model = CYCLE_MODELS[target]
        for r in layers:
            r["est_cycles"] = round(cycles(r, model))
            r["est_us"] = r["est_cycles"] / model.clock_hz * 1e6
        total_cycles = sum(r["est_cycles"] for r in layers)
        return {"model": f"cycle model: MACs x cycles/MAC + bytes x cycles/byte + cycles/kernel at a nominal "
                         f"{model.clock_hz / 1e6:g} MHz", "cycles": total_cycles,
                "total_us": total_cycles / model.clock_hz * 1e6, "constants": vars(model)}
    cal = Calibration(**calibration) if calibration else calibrate(threads, progress=progress)
    for r in layers:
        r["est_us"] = x86_seconds(r, cal, avx2=target == "x86-avx2") * 1e6
    return {"model": "x86: MACs / (calibrated peak x path efficiency) + bytes / calibrated bandwidth "
                     "+ per-kernel overhead, + per-run overhead",
            "total_us": sum(r["est_us"] for r in layers) + cal.run_s * 1e6, "run_overhead_us": cal.run_s * 1e6,
            "constants": vars(cal)}


def measure_hint(target: str) -> str:
    if target.startswith("cortex-m"):
        return "measure on the device (the bundle's harness); pdc bench runs host targets"
    if target in ("arm64", "armv7") or target.startswith("hexagon-"):
        return f"pdc bench MODEL --target {target} (instructions per run under qemu)"
    return f"pdc bench MODEL --target {target} --profile (each kernel's time from a profiling build)"


# ---- calibration (x86) ------------------------------------------------------------------------------
def calibration_models():
    """Two tiny bundles' models: a large 1x1 conv (the peak MAC rate) and a large add (bandwidth, its
    tensors in the L2/L3 caches as most layers' are); and a chain of tanh kernels on 16 floats (the cost of a kernel, and of a
    run besides its kernels; compiled at -O1 so nothing fuses them).
    Returns the two models, the conv's MACs and the add's bytes."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    c, hw, n, f = 256, 28, 1 << 17, TensorProto.FLOAT
    w = numpy_helper.from_array(rng.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.05, "w")
    heavy = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Add", ["a", "b"], ["s"])], "heavy",
        [helper.make_tensor_value_info("x", f, [1, c, hw, hw]), helper.make_tensor_value_info("a", f, [n]),
         helper.make_tensor_value_info("b", f, [n])],
        [helper.make_tensor_value_info("y", f, [1, c, hw, hw]), helper.make_tensor_value_info("s", f, [n])], [w])
    chain = [helper.make_node("Tanh", [f"t{k}"], [f"t{k + 1}"]) for k in range(16)]
    light = helper.make_graph(chain, "light", [helper.make_tensor_value_info("t0", f, [16])],
                              [helper.make_tensor_value_info("t16", f, [16])])
    opset = [helper.make_opsetid("", 17)]
    return (helper.make_model(heavy, opset_imports=opset), helper.make_model(light, opset_imports=opset),
            c * c * hw * hw, 3 * 4 * n)


# Typical layers of mobile and residual networks (torchvision's mobilenet_v2 / v3, squeezenet and
# resnet18 at 224 x 224), each taking the path the target's conv / GEMM picks for its shape:
# (in channels, out channels, kernel, stride, group, input size); a kernel of 0 is a dense layer on a
# vector. Whatever paths they take on this machine get a measured path_factor from their sum.
PATH_LAYERS = (
    # depthwise
    (32, 32, 3, 1, 32, 112), (96, 96, 3, 2, 96, 112), (192, 192, 3, 1, 192, 28), (384, 384, 3, 1, 384, 14),
    (240, 240, 5, 1, 240, 14),
    # 1x1 on large images: expansions, projections, squeezenet's squeeze / expand
    (16, 96, 1, 1, 1, 112), (24, 144, 1, 1, 1, 56), (144, 24, 1, 1, 1, 56), (16, 64, 1, 1, 1, 55),
    (32, 192, 1, 1, 1, 28),
    # 1x1 on small images
    (48, 288, 1, 1, 1, 14), (384, 96, 1, 1, 1, 14), (960, 320, 1, 1, 1, 7), (512, 64, 1, 1, 1, 13),
    # 3x3 stride 1 (residual blocks, squeezenet's expand 3x3) and stride 2, a stem on three channels
    (64, 64, 3, 1, 1, 56), (128, 128, 3, 1, 1, 28), (256, 256, 3, 1, 1, 14), (512, 512, 3, 1, 1, 7),
    (16, 64, 3, 1, 1, 55), (64, 128, 3, 2, 1, 56), (3, 32, 3, 2, 1, 224),
    # a strided 1x1 shortcut, a squeeze-excitation's 1x1 on a pooled vector, classifiers
    (64, 128, 1, 2, 1, 56), (576, 144, 1, 1, 1, 1), (576, 1024, 0, 1, 1, 1), (1280, 1000, 0, 1, 1, 1),
)


def path_model():
    """A model of PATH_LAYERS side by side. As in a network, each layer reads what a kernel has just
    written (a Relu of its own input) and writes into the arena (a max over its output is what
    leaves the model), not into a caller's output array."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, weights = [], [], [], []
    for i, (cin, cout, k, stride, group, size) in enumerate(PATH_LAYERS):
        x, h, y, w = f"x{i}", f"h{i}", f"y{i}", f"w{i}"
        nodes.append(helper.make_node("Relu", [x], [h]))
        if k == 0:
            weights.append(numpy_helper.from_array(rng.standard_normal((cin, cout)).astype(np.float32) * 0.05, w))
            nodes.append(helper.make_node("MatMul", [h, w], [y]))
            in_shape = [1, cin]
        else:
            weights.append(numpy_helper.from_array(
                rng.standard_normal((cout, cin // group, k, k)).astype(np.float32) * 0.05, w))
            nodes.append(helper.make_node("Conv", [h, w], [y], kernel_shape=[k, k], strides=[stride] * 2,
                                          pads=[k // 2] * 4, group=group))
            in_shape = [1, cin, size, size]
        nodes.append(helper.make_node("ReduceMax", [y], [f"m{i}"], keepdims=0))
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, in_shape))
        outputs.append(helper.make_tensor_value_info(f"m{i}", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "paths", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def calibration_path(threads: int) -> str:
    from . import __version__
    from .build import _cache_dir
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    key = hashlib.sha256(repr((CALIBRATION_VERSION, __version__, cpu, os.cpu_count(), threads)).encode())
    return os.path.join(_cache_dir(), "report", f"calibration-{key.hexdigest()[:16]}.json")


def calibrate(threads: int, refresh: bool = False, progress=None) -> Calibration:
    """This machine's Calibration at `threads`, measured once (about half a minute: the layer bundle
    is compiled) and cached; progress(message) hears when it is measured."""
    path = calibration_path(threads)
    if not refresh and os.path.exists(path):
        with open(path) as f:
            return Calibration(**json.load(f))
    if progress:
        progress(f"calibrating the x86 cost model on this machine at {threads} thread(s), once "
                 f"(about half a minute; cached in {os.path.dirname(path)})")
    cal = measure_calibration(threads)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(vars(cal), f)
    os.replace(tmp, path)  # parallel calibrations: the last one wins, none is half written
    return cal


def measure_calibration(threads: int, runs: int = 30, repeats: int = 9) -> Calibration:
    """Each kernel's time is the fastest of `repeats` profiles (each a mean over `runs`): other work
    on the machine only ever slows a profile down (with 3 profiles the conv's MAC rate still varied
    by a third from one calibration to the next; with 9, by 4%)."""
    import numpy as np

    import pdc
    from .bench import fastest_median
    heavy, light, macs, add_bytes = calibration_models()
    times = {}
    for model in (heavy, light):
        module = pdc.compile(model, target="x86", threads=threads, name="calibration", opt_level=1)
        feeds = calibration_feeds(module.manifest)
        for r in fastest_profile(module.folder, feeds, runs, repeats):
            times.setdefault(r["op"], []).append(r["us"] * 1e-6)
        if model is light:  # a run besides its kernels: ctypes, argument checks, output arrays
            run_s = max(fastest_median(lambda: module.run(feeds), block_seconds=0.05) - sum(times["tanh"]), 0.0)
    base = Calibration(mac_per_s=macs / times["conv"][0], bytes_per_s=add_bytes / times["add"][0],
                       kernel_s=float(np.median(times["tanh"])), run_s=run_s)
    return Calibration(**{**vars(base), "path_factor": measure_path_factors(base, threads, runs, repeats)})


def measure_path_factors(base: Calibration, threads: int, runs: int, repeats: int) -> dict:
    """Per path of PATH_LAYERS' compiled conv / GEMM kernels: the factor on their compute term by
    which the cost model with `base` gives their measured total (path_factor_fit)."""
    from .compiler import compile_details
    with tempfile.TemporaryDirectory(prefix="pdc-calibration-") as tmp:
        c = compile_details(path_model(), os.path.join(tmp, "paths"), target="x86", threads=threads,
                            name="calibration", opt_level=1)
        measured = {r["index"]: r["us"] * 1e-6 for r in fastest_profile(c.folder, calibration_feeds(c.manifest),
                                                                        runs, repeats)}
        avx2 = c.manifest["target"] == "x86-avx2"
        layers: dict = {}
        for row in layer_rows(c.graph, c.bundle):
            if row["index"] in measured and row["path"] and row["macs"]:
                spent = measured[row["index"]] - kernel_call_s(row, base)
                layers.setdefault(row["path"], []).append((*x86_terms(row, base, avx2), spent))
    return {path: f for path, rows in layers.items() if (f := path_factor_fit(rows)) is not None}


def path_factor_fit(rows: list, low: float = 0.25, high: float = 4.0) -> Optional[float]:
    """The f in [low, high] for which the layers' sum of max(compute x f, memory) is their measured
    sum, rows being (compute, memory, measured) seconds; None where no f gives it (layers that the
    model has bound by memory at every f: they say nothing of the compute)."""
    want = sum(m for _, _, m in rows)
    total = lambda f: sum(max(c * f, mem) for c, mem, _ in rows)  # noqa: E731 - nondecreasing in f
    if not total(low) <= want <= total(high):
        return None
    for _ in range(60):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if total(mid) < want else (low, mid)
    return math.sqrt(low * high)


def calibration_feeds(manifest: dict) -> dict:
    import numpy as np
    rng = np.random.default_rng(0)
    return {v["name"]: rng.standard_normal(v["shape"]).astype(np.float32) for v in manifest["inputs"]}


def fastest_profile(folder: str, feeds: dict, runs: int, repeats: int) -> list[dict]:
    """The profile's rows, each kernel's time the fastest of `repeats` profiles."""
    from .bench import profile
    profiles = [profile(folder, feeds, runs, warmup=5) for _ in range(repeats)]
    return [{**r, "us": min(p[k]["us"] for p in profiles)} for k, r in enumerate(profiles[0])]


# ---- output -----------------------------------------------------------------------------------
def human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n:,} B ({n / size:.1f} {unit})"
    return f"{n:,} B"


def summary_lines(rep: dict) -> list[str]:
    peak, flash, lat, cov = rep["peak"], rep["flash"], rep["latency"], rep["coverage"]
    stack = human_bytes(rep["stack_bytes"]) if rep["stack_bytes"] is not None else "- (hosted target: thread stacks)"
    return [
        f"pdc report: {rep['model']} on {rep['target']} ({rep['threads']} thread{'s' * (rep['threads'] != 1)}, "
        f"-O{rep['opt_level']}, {len(rep['layers'])} kernels"
        + ("; at " + ", ".join(f"{k} = {v}" for k, v in rep["at_sizes"].items()) if rep.get("at_sizes") else "")
        + ")",
        f"arena (RAM):    {human_bytes(rep['arena_bytes'])}",
        f"peak:           {human_bytes(peak['live_bytes'])} live at node {peak['node']} {peak['name']} ({peak['op']}): "
        + ", ".join(f"{v['name']} {v['bytes']:,}" for v in peak["values"][:6])
        + (" ..." if len(peak["values"]) > 6 else ""),
        f"kernel scratch: {human_bytes(rep['scratch_bytes'])} (largest, inside the arena)",
        f"stack:          {stack}",
        *([f"VTCM:           {human_bytes(rep['vtcm_bytes'])} of {human_bytes(rep['vtcm_limit'])} (the largest "
           f"kernel's tiles; each kernel's below)"] if rep.get("vtcm_bytes") else []),
        f"flash:          {human_bytes(flash['bytes'])} = code {human_bytes(flash['code'])} + weights "
        f"{human_bytes(flash['weights'])} (text + data of {flash['of']})",
        f"weights:        {human_bytes(rep['weight_bytes'])}",
        f"coverage:       {cov['native']} native, {cov['portable']} portable fallback, {cov['unsupported']} unsupported",
        f"latency (est.): {lat['total_us'] / 1e3:.3f} ms  [{lat['model']}]",
        f"measure:        {rep['measure']}",
    ]


def layer_lines(rep: dict) -> list[str]:
    vtcm = bool(rep.get("vtcm_bytes"))  # a DSP target: each kernel's VTCM
    lines = [f"  {'#':>4} {'op':<22} {'kernel':<9} {'path':<26} {'weights B':>12} {'scratch B':>10} "
             + (f"{'VTCM B':>10} " if vtcm else "") + f"{'MACs':>13} {'est us':>10}  name"]
    for r in rep["layers"]:
        lines.append(f"  {r['index']:>4} {r['op'][:22]:<22} {r['coverage']:<9} {(r['path'] or '-')[:26]:<26} "
                     f"{r['weight_bytes']:>12,} {r['scratch_bytes']:>10,} "
                     + (f"{r['vtcm_bytes']:>10,} " if vtcm else "") + f"{r['macs']:>13,} {r['est_us']:>10.1f}  "
                     f"{r['name'][:40]}")
    return lines


def text_report(rep: dict) -> str:
    return "\n".join(summary_lines(rep) + ["", "per layer (schedule order):"] + layer_lines(rep)) + "\n"


def json_report(rep: dict) -> str:
    return json.dumps(rep, indent=2)


# ---- HTML ---------------------------------------------------------------------------------------
SVG_W, SVG_H, PAD = 900, 300, 60


def svg_timeline(live: list[int], peak: dict) -> str:
    """The arena's live bytes over the schedule (a line), the peak marked."""
    n, top = max(len(live), 1), max(max(live, default=0), 1)

    def xy(i, b):
        return PAD + (SVG_W - 2 * PAD) * (i / max(n - 1, 1)), SVG_H - PAD - (SVG_H - 2 * PAD) * b / top
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, b) for i, b in enumerate(live)))
    px, py = xy(peak["node"] or 0, peak["live_bytes"])
    title = "Arena live bytes over the schedule"
    return (f'<svg id="arena-plot" xmlns="http://www.w3.org/2000/svg" width="{SVG_W}" height="{SVG_H}" '
            f'role="img" aria-label="{title}"><title>{title}</title>'
            + _axes(f"node index (0..{n - 1})", f"bytes (max {top:,})")
            + f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{points}"/>'
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="#d62728"/>'
            f'<text x="{min(px + 8, SVG_W - 260):.1f}" y="{max(py - 8, 14):.1f}" font-size="12" fill="#d62728">'
            f'peak {peak["live_bytes"]:,} B at node {peak["node"]} ({html.escape(peak["name"][:30])})</text></svg>')


def svg_latency(layers: list[dict]) -> str:
    """The estimated latency of each layer (bars in schedule order), the largest ones named."""
    n = max(len(layers), 1)
    top = max((r["est_us"] for r in layers), default=0) or 1.0
    width = (SVG_W - 2 * PAD) / n
    named = {r["index"] for r in sorted(layers, key=lambda r: -r["est_us"])[:3]}
    bars = []
    for k, r in enumerate(layers):
        h = (SVG_H - 2 * PAD) * r["est_us"] / top
        x, y = PAD + k * width, SVG_H - PAD - h
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width - 1, 0.5):.1f}" height="{h:.1f}" '
                    f'fill="#ff7f0e"><title>#{r["index"]} {html.escape(r["name"])}: {r["est_us"]:.1f} us</title></rect>')
        if r["index"] in named:
            bars.append(f'<text x="{x:.1f}" y="{max(y - 4, 12):.1f}" font-size="11">'
                        f'{html.escape(r["name"][:24])} {r["est_us"]:.0f} us</text>')
    title = "Estimated latency per layer"
    return (f'<svg id="latency-plot" xmlns="http://www.w3.org/2000/svg" width="{SVG_W}" height="{SVG_H}" '
            f'role="img" aria-label="{title}"><title>{title}</title>'
            + _axes("layer (schedule order)", f"us (max {top:,.1f})") + "".join(bars) + "</svg>")


def _axes(xlabel: str, ylabel: str) -> str:
    x0, y0, x1, y1 = PAD, SVG_H - PAD, SVG_W - PAD, PAD
    return (f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>'
            f'<text x="{(x0 + x1) / 2}" y="{SVG_H - 20}" font-size="12" text-anchor="middle">{html.escape(xlabel)}</text>'
            f'<text x="14" y="{(y0 + y1) / 2}" font-size="12" text-anchor="middle" '
            f'transform="rotate(-90 14 {(y0 + y1) / 2})">{html.escape(ylabel)}</text>')


def html_report(rep: dict) -> str:
    """One self-contained page: the two plots and the tables; no scripts, no network."""
    e = html.escape
    summary = "".join(f"<li>{e(line)}</li>" for line in summary_lines(rep)[1:])
    head = ["#", "op", "kernel", "path", "weights B", "scratch B", "MACs", "est. us", "name"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in (
            r["index"], r["op"], r["coverage"], r["path"] or "-", f"{r['weight_bytes']:,}",
            f"{r['scratch_bytes']:,}", f"{r['macs']:,}", f"{r['est_us']:.1f}", r["name"])) + "</tr>"
        for r in rep["layers"])
    title = f"pdc report: {rep['model']} on {rep['target']}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
            "td:nth-child(n+5):nth-child(-n+8){text-align:right}</style></head><body>"
            f"<h1>{e(title)}</h1><ul>{summary}</ul>"
            f"<h2>Arena live bytes over the schedule</h2>{svg_timeline(rep['timeline'], rep['peak'])}"
            f"<h2>Estimated latency per layer</h2>{svg_latency(rep['layers'])}"
            f"<h2>Layers</h2><table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{rows}</table>"
            "</body></html>\n")
