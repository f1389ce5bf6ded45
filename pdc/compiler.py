"""`pdc compile`: model -> optimized, planned IR -> C bundle -> (for host targets) a shared library."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Optional, Union

from . import __version__
from .codegen.c_renderer import c_identifier
from .ir.errors import PdcError
from .ir.graph import Graph
from .ir.limits import DEFAULT_MAX_TENSOR_BYTES, check_graph_limits, parse_byte_size
from .ir.shapes import bind_shapes, unbound_dims
from .ir.symbolic import bound_nbytes
from .output_folder import check_output_folder, write_folder
from .passes.bound_outputs import bound_outputs, measured_outputs
from .targets import get_target


def load_graph(model: Union[str, Graph, "onnx.ModelProto"],  # noqa: F821
               max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Graph:
    graph = _imported(model, max_tensor_bytes)
    check_graph_limits(graph, max_tensor_bytes)
    return graph


def _imported(model, max_tensor_bytes: int) -> Graph:
    if isinstance(model, Graph):
        return model.copy()
    if isinstance(model, (str, os.PathLike)):
        from .frontend import load_model
        return load_model(os.fspath(model), max_tensor_bytes)
    try:
        import onnx
        if isinstance(model, onnx.ModelProto):
            from .frontend.onnx_import import import_onnx
            return import_onnx(model, model.graph.name or "<model>", max_tensor_bytes=max_tensor_bytes)
    except ImportError:
        pass
    raise PdcError(f"cannot compile a {type(model).__name__}: pass a model path, an onnx.ModelProto or a pdc Graph")


def optimize(graph: Graph, opt_level: int, target=None) -> Graph:
    """The graph after the target's -O<opt_level> pipeline (the default pipeline without a target)."""
    from .passes import PassManager, parse_pipeline
    from .passes.manager import pipeline_for_level
    pipeline = target.pipeline(opt_level) if target is not None else pipeline_for_level(opt_level)
    return PassManager(parse_pipeline(pipeline)).run(graph) if pipeline else graph


def lower_bodies(graph: Graph, opt_level: int, target=None) -> Graph:
    """Control-flow bodies as code generation takes them: the constants their nodes capture bound
    into them, then optimized by the same -O<opt_level> pipeline (nested bodies too)."""
    from .ir.ops.control_flow import bind_constant_captures
    for i, node in enumerate(graph.nodes):
        if not any(isinstance(a, Graph) for a in node.attrs.values()):
            continue
        node = graph.nodes[i] = bind_constant_captures(node)
        for key, body in node.attrs.items():
            if isinstance(body, Graph):
                node.attrs[key] = lower_bodies(optimize(body, opt_level, target), opt_level, target)
    graph.remove_unused_constants()  # those only the bodies read now live in them
    return graph


def default_name(model) -> str:
    if isinstance(model, (str, os.PathLike)):
        stem = os.path.basename(os.fspath(model).rstrip("/"))
        stem = re.sub(r"\.(onnx|pdir|json|pdmodel)$", "", stem)
        return c_identifier(stem).lower() or "model"
    return "model"


@dataclass
class Compiled:
    """What compile_details made: the folder, the lowered graph the bundle runs, the rendered
    bundle (memory plan, kernel paths and families, weight bytes per node) and the manifest."""
    folder: str
    graph: Graph
    bundle: object  # pdc.codegen.c_renderer.Bundle
    manifest: dict


def compile_bundle(model, out_dir: str, **options) -> str:
    """Writes the bundle for `model` into out_dir (atomically) and returns out_dir's absolute path;
    the options are compile_details'."""
    return compile_details(model, out_dir, **options).folder


def compile_details(model, out_dir: str, *, target: str = "x86", name: Optional[str] = None,
                    threads: Optional[int] = None, shapes: Optional[dict] = None, weights: str = "c",
                    opt_level: int = 2, build: bool = True, progress=None, c_opt: str = "-O3", flash=None, ram=None,
                    vtcm=None, allow_scalar_float: bool = False, reuse_factor: Optional[int] = None,
                    part: Optional[str] = None, clock_mhz: Optional[float] = None,
                    quantize: Optional[str] = None, calibration=None, quant_options=None,
                    precision: Optional[str] = None, max_tensor_bytes=DEFAULT_MAX_TENSOR_BYTES) -> Compiled:
    """Writes the bundle for `model` into out_dir (atomically) and returns out_dir's absolute path.

    out_dir must be new, empty or an earlier bundle (which is swapped for the new one in one step).
    target: a name (pdc targets) or a Target object (a preset varied, e.g. a Hexagon scalar build).
    flash / ram (bytes, or strings such as '1M', '256K') override a microcontroller preset's memory,
    vtcm a Hexagon preset's VTCM; allow_scalar_float lets a Hexagon target compile float nodes.
    An FPGA target (fpga-*) takes precision as its fixed-point type ('ap_fixed<16,6>', or a per-layer
    JSON file), calibration as the data its types are chosen from, reuse_factor, and part / clock_mhz.
    threads=None: the target's default (this machine's cores for x86, else 1).
    quantize='int8' quantizes the model first from `calibration` (see pdc.quantize.quantize_model).
    precision: 'fp32', 'fp16' or 'bf16' (a GPU target's float tensors stored in 16 bits); None: the target's default.
    max_tensor_bytes (bytes, or a string such as '4G') refuses models with a larger tensor."""
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    from .targets.base import Target
    tgt = target if isinstance(target, Target) else get_target(target)
    if tgt is None:
        raise PdcError("target 'reference' runs the interpreter and has nothing to compile; pick a code target")
    if flash is not None or ram is not None or vtcm is not None:
        tgt = tgt.with_memory(flash, ram, vtcm)
    if allow_scalar_float:
        tgt = tgt.allowing_scalar_float()
    if tgt.fixed_point:  # an FPGA: the types come from --precision or --calibration, not int8 quantization
        if quantize is not None:
            raise PdcError(f"--quantize: {tgt.name} computes in fixed point; its types come from --precision "
                           f"ap_fixed<W,I> or from --calibration data")
        tgt = tgt.with_fixed_point(precision, calibration, reuse_factor).with_part(part, clock_mhz)
        precision = calibration = None
    else:
        for option, value in (("--reuse-factor", reuse_factor), ("--part", part), ("--clock", clock_mhz)):
            if value is not None:
                raise PdcError(f"{option} applies to the FPGA targets (fpga-*), not to {tgt.name}")
    name = name or default_name(model)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise PdcError(f"--name '{name}': must be a C identifier (letters, digits, _; not starting with a digit)")
    if weights not in ("c", "bin"):
        raise PdcError(f"--weights '{weights}': expected 'c' or 'bin'")
    threads = tgt.default_threads() if threads is None else threads
    if threads < 1:
        raise PdcError(f"--threads {threads}: must be at least 1")
    max_tensor_bytes = parse_byte_size(max_tensor_bytes)
    check_output_folder(out_dir)  # refuse a folder pdc must not replace before any work
    check_forced_paths()
    tgt.check_options(weights, threads)
    precision = tgt.precision(precision)
    graph = load_graph(model, max_tensor_bytes)
    if shapes:
        graph = bind_shapes(graph, shapes)
        check_graph_limits(graph, max_tensor_bytes)
    bounds = dict(graph.dim_bounds)  # dims known only at run time: symbol -> (lo, hi)
    if bounds and not tgt.runtime_sizes:
        raise PdcError(f"--shape {', '.join(f'{s}={lo}..{hi}' for s, (lo, hi) in bounds.items())}: sizes known only "
                       f"at run time compile for the x86 and Cortex-A targets; {tgt.name} needs every size fixed")
    unbound = unbound_dims(graph)
    if unbound:
        inp, dim = unbound[0]
        raise PdcError(f"input '{inp}' has the unbound dim '{dim}': bind it with --shape {inp}=D0,D1,... "
                       f"(or --shape {dim}=SIZE)")
    say(f"imported {len(graph.nodes)} nodes")
    if quantize is not None or calibration is not None:
        graph = _quantized(graph, quantize, calibration, quant_options, say)
    # "naive": every intermediate tensor of the model as imported, each in its own buffer
    naive_bytes = sum(bound_nbytes(v.type, bounds) or 0 for n in graph.nodes for v in n.outputs
                      if v not in graph.outputs)
    graph = bound_outputs(lower_bodies(optimize(graph, opt_level, tgt), opt_level, tgt))
    say(f"optimized to {len(graph.nodes)} nodes (-O{opt_level})")
    tgt.check_graph(graph)
    config = dataclasses.replace(tgt.kernel_config(threads), dim_bounds=tuple((s, lo, hi) for s, (lo, hi)
                                                                               in bounds.items()))
    if precision in ("fp16", "bf16"):
        config = dataclasses.replace(config, float_storage={"fp16": "f16", "bf16": "bf16"}[precision])
        say(f"precision: {precision} storage, fp32 arithmetic "
            f"({'the ' + tgt.name + ' default' if tgt.precision(None) == precision else 'asked'})")
    bundle = tgt.renderer().render(graph, name, weights, config)
    graph = bundle.graph  # as rendered: a device target's placement adds copies
    plan = bundle.plan
    cflags = [c_opt if f == "-O3" else f for f in tgt.cflags]
    measured = measured_outputs(graph)
    files = dict(bundle.files)
    files.update(tgt.library_files(name, bundle.kernel_files, cflags, threads))
    for note in bundle.notes:
        say(note)
    manifest = {
        "name": name,
        "pdc_version": __version__,
        "target": tgt.name,
        **({"dims": [{"name": s, "min": lo, "max": hi} for s, (lo, hi) in bounds.items()]} if bounds else {}),
        "inputs": [_io(v) for v in graph.inputs],
        "outputs": [_io(v, measured) for v in graph.outputs],
        "arena_bytes": plan.arena_bytes,
        "naive_activation_bytes": naive_bytes,
        "optimized_activation_bytes": plan.naive_activation_bytes,
        "weight_bytes": len(bundle.files[f"{name}_weights.bin"]) if f"{name}_weights.bin" in bundle.files else 0,
        "weights": weights,
        "threads": threads,
        "precision": precision,
        "opt_level": opt_level,
        "cflags": cflags,
        "kernels": [{"function": f"{name}_k{i}_{c_identifier(n.op)}", "op": n.op,
                     "source_nodes": n.attrs.get("source_nodes", [n.name]) if isinstance(
                         n.attrs.get("source_nodes"), list) else [n.name],
                     **({"path": path} if path else {})}
                    for i, (n, path) in enumerate(zip(graph.nodes, bundle.kernel_paths))],
        "library": None,
        **bundle.manifest,  # what the target's renderer adds (an FPGA's types and estimate)
    }
    if bundle.tuning_keys:  # each kernel's layer key, and whether the tuning database chose its path / threads
        for k, (key, tuned) in zip(manifest["kernels"], bundle.tuning_keys):
            k["tuning_key"] = key
            if tuned:
                k["tuned"] = True
        count = sum(k.get("tuned", False) for k in manifest["kernels"])
        if count:
            from .tuning import db_path
            say(f"tuned: {count} of {len(manifest['kernels'])} kernels as the tuning database {db_path()} says")
    if bundle.vtcm_bytes:  # a DSP's on-chip memory: each kernel's, the largest, the part's
        for i, nbytes in bundle.vtcm_bytes.items():
            manifest["kernels"][i]["vtcm_bytes"] = nbytes
        manifest["vtcm_bytes"] = max(bundle.vtcm_bytes.values())
        manifest["vtcm_limit"] = config.vtcm_bytes
        say(f"VTCM: {manifest['vtcm_bytes']:,} of {config.vtcm_bytes:,} bytes (the largest of "
            f"{len(bundle.vtcm_bytes)} HVX kernels' tiles)")
    files.update(tgt.bundle_files(name, bundle.kernel_files, cflags, threads, manifest))
    if tgt.toolchain_cmake():
        files["toolchain.cmake"] = tgt.toolchain_cmake().encode()
    files["manifest.json"] = json.dumps(manifest, indent=2).encode()

    def fill(folder: str) -> None:
        for rel, data in files.items():
            path = os.path.join(folder, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        if build:  # the target adds what it built (library, executable, runner) to the manifest
            manifest.update(tgt.build(folder, name, bundle.kernel_files, cflags, threads, say))
            with open(os.path.join(folder, "manifest.json"), "w") as f:
                json.dump(manifest, f, indent=2)

    out_dir = write_folder(out_dir, fill)
    say(f"wrote {out_dir} in {time.perf_counter() - t0:.1f} s")
    return Compiled(out_dir, graph, bundle, manifest)


def _quantized(graph: Graph, precision, calibration, options, say) -> Graph:
    from .quantize import quantize_model
    if precision != "int8":
        raise PdcError(f"--quantize '{precision}': the supported precision is int8")
    if calibration is None:
        raise PdcError("--quantize int8 needs --calibration DATA (.npz keyed by input name, or .npy)")
    graph, report = quantize_model(graph, calibration, options, say)
    for line in report.lines():
        say(line)
    return graph


def check_forced_paths() -> None:
    """A bad PDC_FORCE_PATH (a debug override of the kernels' path choice) fails before any work."""
    from .codegen.kernels import load_all
    from .codegen.kernels.paths import forced_paths
    load_all()  # every generator module declares its paths on import
    forced_paths()


def _io(v, measured: Optional[dict] = None) -> dict:
    """A model input's or output's manifest entry; a bounded output (passes/bound_outputs.py) names
    the output holding its length and the axis it measures."""
    entry = {"name": v.name, "dtype": v.type.dtype.name, "shape": list(v.type.shape)}
    if measured and v in measured:
        entry.update(length=measured[v][0].name, length_axis=measured[v][1])
    return entry


def stderr_progress(msg: str) -> None:
    print(f"pdc: {msg}", file=sys.stderr)
