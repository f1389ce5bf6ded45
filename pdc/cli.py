"""The `pdc` command line."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter

import numpy as np

from .ir.errors import PdcError


# every format pdc/frontend reads, for the help of each command that takes a MODEL
MODEL_FORMATS = ("an ONNX model (.onnx), a PaddlePaddle 3 model (inference.json + .pdiparams), a legacy Paddle "
                 "model (.pdmodel + .pdiparams), either Paddle one given as the file, the path prefix or the "
                 "folder, or a pdc IR file (.pdir + .pdir.npz)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _load(path: str, args=None):
    from .frontend import load_model
    from .ir.limits import DEFAULT_MAX_TENSOR_BYTES, parse_byte_size
    limit = getattr(args, "max_tensor_bytes", None)
    return load_model(path, DEFAULT_MAX_TENSOR_BYTES if limit is None else parse_byte_size(limit))


# ---- commands -------------------------------------------------------------------------------
def cmd_opt(args) -> int:
    from .ir.printer import print_graph
    from .ir.textio import save_ir
    from .passes import PassManager, all_passes, parse_pipeline
    from .passes.manager import pipeline_for_level
    if args.list_passes:
        for name, cls in sorted(all_passes().items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            opts = cls().options()
            spelled = ", ".join(f"{k}={v}" for k, v in opts.items())
            print(f"{name}{'{' + spelled + '}' if spelled else ''}\n    {doc}")
        return 0
    if not args.model:
        raise PdcError("opt: a MODEL is required (or --list-passes)")
    pipeline = args.passes if args.passes is not None else pipeline_for_level(args.opt_level if args.opt_level is not None else 0)
    passes = parse_pipeline(pipeline)
    graph = _load(args.model, args)
    before = Counter(n.op for n in graph.nodes)
    n_before = len(graph.nodes)
    PassManager(passes, verify_each=args.verify_each, print_after_all=args.print_ir_after_all,
                print_after=set(args.print_ir_after or ()), timing=args.pass_timing).run(graph)
    if args.stats:
        print(json.dumps({"pipeline": pipeline, "nodes_before": n_before, "nodes_after": len(graph.nodes),
                          "ops_before": dict(sorted(before.items())),
                          "ops_after": dict(sorted(Counter(n.op for n in graph.nodes).items()))}, indent=2))
        if not args.output:
            return 0
    if args.output:
        save_ir(graph, args.output)
        print(f"wrote {args.output} and {args.output}.npz", file=sys.stderr)
    else:
        sys.stdout.write(print_graph(graph))
    return 0


def _macs(graph) -> tuple[int, str]:
    """MACs, with every symbolic dim taken as 1 when there are any (per batch item, say)."""
    from .ir.cost import graph_macs
    from .ir.shapes import bind_shapes
    symbols = {d for v in graph.inputs for d in (v.type.shape or ()) if isinstance(d, str) and d != "?"}
    if not symbols:
        return graph_macs(graph), ""
    try:
        return graph_macs(bind_shapes(graph, {s: 1 for s in symbols})), f"{', '.join(sorted(symbols))} = 1"
    except PdcError:
        return graph_macs(graph), ""


def describe_model(graph) -> dict:
    from .ir.cost import parameter_count
    io = lambda vs: [{"name": v.name, "dtype": v.type.dtype.name,  # noqa: E731
                      "shape": None if v.type.shape is None else list(v.type.shape)} for v in vs]
    macs, assume = _macs(graph)
    return {
        "graph": graph.name,
        "inputs": io(graph.inputs),
        "outputs": io(graph.outputs),
        "nodes": len(graph.nodes),
        "ops": dict(sorted(Counter(n.op for n in graph.nodes).items())),
        "parameters": parameter_count(graph),
        "parameter_bytes": sum(int(c.data.nbytes) for c in graph.constants),
        "macs": macs,
        "macs_assume": assume,
    }


def cmd_inspect(args) -> int:
    info = describe_model(_load(args.model, args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    fmt_io = lambda v: f"  {v['name']}: {v['dtype']}{v['shape'] if v['shape'] is not None else '[*]'}"  # noqa: E731
    print(f"model: {args.model} (graph '{info['graph']}')")
    print("inputs:")
    print("\n".join(fmt_io(v) for v in info["inputs"]))
    print("outputs:")
    print("\n".join(fmt_io(v) for v in info["outputs"]))
    print(f"nodes: {info['nodes']}")
    width = max((len(k) for k in info["ops"]), default=0)
    for op, count in sorted(info["ops"].items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op:<{width}}  {count}")
    print(f"parameters: {info['parameters']:,} ({info['parameter_bytes'] / 2**20:.2f} MiB)")
    assume = f" (with {info['macs_assume']})" if info["macs_assume"] else ""
    print(f"MACs: {info['macs']:,}{assume}")
    return 0


def _bound_model(args):
    """The model with --shape bindings applied."""
    from .ir.shapes import bind_shapes, parse_shape_options
    graph = _load(args.model)
    if args.shape:
        graph = bind_shapes(graph, parse_shape_options(args.shape))
    return graph


def _summary(name, a) -> str:
    a = np.asarray(a)
    head = f"{name}: {a.dtype}{list(a.shape)}"
    if a.size == 0:
        return head + " (empty)"
    if a.dtype.kind in "fc":
        f = a.astype(np.float64)
        return head + f" min {np.nanmin(f):.6g} max {np.nanmax(f):.6g} mean {np.nanmean(f):.6g}"
    return head + f" min {a.min()} max {a.max()}"


def _runner(args, graph):
    """A function feeds -> outputs for args.target: the interpreter, or a freshly compiled bundle."""
    from .targets import get_target
    target = get_target(args.target)
    if target is None:
        from .ir.interpreter import run_graph
        return lambda feeds: run_graph(graph, feeds)
    from . import compile
    # a temporary bundle, removed when pdc exits
    return compile(graph, target=args.target, threads=getattr(args, "threads", 1),
                   opt_level=getattr(args, "opt_level", 2)).run


def cmd_run(args) -> int:
    from .inputs import load_inputs, random_inputs
    if os.path.isfile(os.path.join(args.model, "manifest.json")):
        from .module import Module
        module = Module(args.model)
        _check_bundle_flags(args, module.manifest)
        graph = module.signature()
        run = module.run
    else:
        args.target = args.target or "reference"
        graph = _bound_model(args)
        run = _runner(args, graph)
    if args.inputs:
        feeds = load_inputs(args.inputs, graph)
    else:
        feeds = random_inputs(graph, args.seed)
        print(f"no --inputs: running on random data (seed {args.seed})", file=sys.stderr)
    try:
        outputs = run(feeds)
    except ValueError as e:
        raise PdcError(str(e)) from None
    for name, a in outputs.items():
        print(_summary(name, a))
    if args.save:
        np.savez(args.save, **outputs)
        print(f"saved outputs to {args.save}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from .bench import check_runs, interleaved, onnxruntime_runner, profile, profile_lines, summary
    from .inputs import random_inputs
    from .module import Module
    from .targets import get_target
    check_runs(args.runs, args.warmup)
    source = None
    if os.path.isfile(os.path.join(args.model, "manifest.json")):
        module = Module(args.model)
        _check_bundle_flags(args, module.manifest)
        graph = module.signature()
    else:
        from . import compile
        args.target = args.target or "x86"
        graph = _bound_model(args)
        from .compiler import default_name
        module = compile(graph, target=args.target, threads=args.threads, name=default_name(args.model))  # temporary
        source = args.model if args.model.endswith(".onnx") else None
    m = module.manifest
    target = get_target(m["target"])
    feeds = random_inputs(graph, args.seed)
    if module._emulated is not None:
        if target.runner_kind == "qemu-hexagon":
            from .targets.hexagon import run_samples
            count = run_samples(module.folder, m, [feeds], counting=True)[1]
            print(f"pdc bench: {m['name']} on {m['target']} runs under qemu-hexagon here: wall-clock times are not "
                  f"the DSP's; instructions per run: {count:,}")
            return 0
        if target.runner_kind == "csim":
            t = m["fpga"]["estimate"]["total"]
            print(f"pdc bench: {m['name']} on {m['target']} runs as a C simulation here, which times nothing of the "
                  f"FPGA; the design's estimate: latency {t['latency_cycles']:,} cycles ({t['latency_ns']:,} ns), a new "
                  f"input every {t['interval_cycles']:,} cycles (pdc report --target {m['target']}: per layer)")
            return 0
        if target.runner_kind != "qemu-user":
            raise PdcError(f"{m['target']}: its bundles run under qemu-system-arm here, which times nothing of the "
                           f"device; pdc bench times host targets and counts the instructions of arm64 / armv7 ones")
        from .targets.arm import count_instructions
        print(f"pdc bench: {m['name']} on {m['target']} runs under {target.emulator.program} here: wall-clock times "
              f"are not the device's; instructions per run: {count_instructions(module.folder, feeds):,}")
        return 0
    engines = {"pdc": lambda: module.run(feeds)}
    ort = onnxruntime_runner(source, feeds, m["threads"]) if source and not args.no_ort else None
    if ort:
        engines["onnxruntime"] = ort
    import platform
    threads = f"{m['threads']} thread" + ("s" if m["threads"] != 1 else "")
    print(f"pdc bench: {m['name']} on {m['target']}, {threads}, {args.runs} runs after {args.warmup} "
          f"warm-up runs{', interleaved with ONNX Runtime' if ort else ''}; {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    stats = {k: summary(v) for k, v in interleaved(engines, args.runs, args.warmup).items()}
    cols = [f"p{p}" for p in (50, 90, 99)] + ["min", "mean"]
    print(f"{'engine':<12}" + "".join(f"{c + ' ms':>10}" for c in cols))
    for k, st in stats.items():
        print(f"{k:<12}" + "".join(f"{st[c]:>10.3f}" for c in cols))
    if ort:
        print(f"pdc / onnxruntime (p50): {stats['pdc']['p50'] / stats['onnxruntime']['p50']:.2f}")
    elif source is None and not args.no_ort:
        print("(ONNX Runtime runs beside pdc for .onnx models)")
    if args.profile:
        print("\n".join(profile_lines(profile(module.folder, feeds, args.runs, args.warmup), args.runs)))
    return 0


def cmd_tune(args) -> int:
    from .tune import tune, tune_lines
    args.target = args.target or "x86"
    graph = _bound_model(args)
    result = tune(graph, target=args.target, threads=args.threads, db=args.db, rounds=args.rounds, runs=args.runs,
                  say=lambda msg: print(msg, file=sys.stderr))
    print("\n".join(tune_lines(result)))
    return 0


def _check_bundle_flags(args, manifest: dict) -> None:
    """A bundle is compiled for one target and fixed shapes: --target elsewhere or --shape cannot apply."""
    from .targets import get_target
    built = manifest["target"]
    if args.shape:
        shapes = ", ".join(f"{d['name']}={','.join(map(str, d['shape']))}" for d in manifest["inputs"])
        raise PdcError(f"--shape does not apply to a bundle folder: {args.model} was compiled for fixed shapes "
                       f"({shapes}); compile the model again with --shape")
    if args.target is None:
        return
    try:
        asked = get_target(args.target)
    except PdcError:
        asked = None
    if asked is None or asked.name != built:
        raise PdcError(f"--target {args.target} does not apply to a bundle folder: {args.model} was compiled for "
                       f"{built} and runs only there; compile the model with --target {args.target} instead")


def cmd_check(args) -> int:
    from .compare import compare_outputs
    from .ir.shapes import bind_shapes
    from .inputs import random_inputs
    from .targets import get_target
    from .oracles import oracle_name, run_oracle
    get_target(args.target)
    if args.model.endswith(".pdir"):
        raise PdcError(f"{args.model}: pdc check compares with the source framework and needs the .onnx or "
                       f"Paddle model, not an IR file")
    graph = _bound_model(args)
    run = _runner(args, graph)
    ok = True
    for sizes in _check_sizes(graph.dim_bounds):  # a model compiled for ranges: checked across them
        fixed = bind_shapes(graph, {sym: [n] for sym, n in sizes.items()}) if sizes else graph
        feeds = random_inputs(fixed, args.seed)
        want = run_oracle(args.model, feeds)
        got = run(feeds)
        if set(want) != set(got) and len(want) == len(got):  # frameworks may rename outputs: pair by position
            want = dict(zip(got, want.values()))
        results = compare_outputs(got, want)
        at = f" at {', '.join(f'{k}={v}' for k, v in sizes.items())}" if sizes else ""
        print(f"{args.model} on {args.target}{at} vs {oracle_name(args.model)} (random inputs, seed {args.seed}):")
        for r in results:
            print(f"  {r}")
        ok = ok and all(r.ok for r in results)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def _check_sizes(bounds: dict) -> list[dict]:
    """The sizes pdc check runs a model compiled for ranges at: every range's low end, middle and
    high end together ([{}] without ranges)."""
    if not bounds:
        return [{}]
    return [{sym: pick(lo, hi) for sym, (lo, hi) in bounds.items()}
            for pick in (lambda lo, hi: lo, lambda lo, hi: (lo + hi) // 2, lambda lo, hi: hi)]


def cmd_compile(args) -> int:
    from .compiler import compile_bundle, stderr_progress
    from .ir.shapes import parse_shape_options
    shapes = parse_shape_options(args.shape)
    out = compile_bundle(args.model, args.output, target=args.target, name=args.name, threads=args.threads,
                         shapes=shapes, weights=args.weights, opt_level=args.opt_level,
                         progress=None if args.quiet else stderr_progress, flash=args.flash, ram=args.ram,
                         vtcm=args.vtcm, allow_scalar_float=args.allow_scalar_float, quantize=args.quantize,
                         calibration=args.calibration, quant_options=_quant_options(args), precision=args.precision,
                         reuse_factor=args.reuse_factor, part=args.part, clock_mhz=args.clock,
                         max_tensor_bytes=args.max_tensor_bytes)
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    if "fpga" in m:  # an HLS design: its estimate instead of an arena
        f, t = m["fpga"], m["fpga"]["estimate"]["total"]
        print(f"{m['name']}: HLS design for {f['part']} at {f['clock_mhz']:g} MHz, reuse factor {f['reuse_factor']}: "
              f"DSP {t['dsp']:,}, BRAM_18K {t['bram18']:,}, URAM {t['uram']:,}, LUT {t['lut']:,}, FF {t['ff']:,}; "
              f"latency {t['latency_cycles']:,} cycles ({t['latency_ns']:,} ns) (estimate) -> {out}")
        return 0
    print(f"{m['name']}: {len(m['kernels'])} kernels, arena {m['arena_bytes']:,} bytes "
          f"(naive {m['naive_activation_bytes']:,}), weights {m['weight_bytes']:,} bytes -> {out}")
    if "flash_bytes" in m:  # microcontrollers: what the image takes of the part
        print(f"{m['target']}: flash {m['flash_bytes']:,} of {m['flash_limit']:,} bytes, "
              f"RAM {m['ram_bytes']:,} of {m['ram_limit']:,} bytes (arena + stack estimate)")
    if "vtcm_bytes" in m:  # Hexagon: the on-chip memory the HVX kernels' tiles take
        print(f"{m['target']}: VTCM {m['vtcm_bytes']:,} of {m['vtcm_limit']:,} bytes (largest kernel; per kernel: "
              f"pdc report)")
    return 0


def cmd_report(args) -> int:
    from .ir.shapes import parse_shape_options
    from .compiler import stderr_progress
    from .report import html_report, json_report, make_report, text_report
    shapes = parse_shape_options(args.shape)
    from .targets import get_target
    if args.target and getattr(get_target(args.target), "fixed_point", False):
        return _fpga_report(args, shapes)
    rep = make_report(args.model, target=args.target, shapes=shapes, threads=args.threads, opt_level=args.opt_level,
                      progress=stderr_progress)
    if args.json == "-":
        print(json_report(rep))
        return 0
    sys.stdout.write(text_report(rep))
    for path, text in ((args.json, json_report(rep)), (args.html, html_report(rep))):
        if path:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _fpga_report(args, shapes) -> int:
    """An FPGA design's report: the types and the resource / latency estimate per layer (no arena, no kernels)."""
    import tempfile
    from .codegen.hls.estimate import table_of
    from .compiler import compile_details
    if args.json not in (None, "-") or args.html:
        raise PdcError(f"--json FILE / --html: the report of {args.target} prints as text, or as JSON with --json -")
    with tempfile.TemporaryDirectory(prefix="pdc-report-") as tmp:
        c = compile_details(args.model, os.path.join(tmp, "b"), target=args.target, shapes=shapes,
                            opt_level=args.opt_level, build=False)
    f = c.manifest["fpga"]
    if args.json == "-":
        print(json.dumps(f, indent=2))
        return 0
    print(f"{c.manifest['name']} on {args.target} ({f['part']}, {f['clock_mhz']:g} MHz): types {f['precision']['how']}")
    for row in f["precision"]["layers"]:
        types = ", ".join(f"{k} {row[k]}" for k in ("weight", "bias", "accum") if k in row)
        print(f"  {row['layer']:<24} {row['kind']:<10} out {row['result']}" + (f"; {types}" if types else ""))
    print("estimate (pdc/codegen/hls/estimate.py):")
    print("\n".join(f"  {line}" for line in table_of(f["estimate"])))
    return 0


def _quant_options(args):
    from .quantize import Options
    return Options(method=args.method, per_channel=args.per_channel, activations=args.activations,
                   symmetric=args.symmetric, keep_float=tuple(k for ks in args.keep_float or () for k in ks.split(",")),
                   bias_correction=args.bias_correction)


def cmd_quantize(args) -> int:
    from .compiler import stderr_progress
    from .ir.textio import save_ir
    from .quantize import quantize_model
    if not args.output.endswith(".pdir"):
        raise PdcError(f"-o {args.output}: the quantized model is IR text, name it NAME.pdir")
    say = (lambda msg: None) if args.quiet else stderr_progress
    graph, report = quantize_model(_bound_model(args), args.calibration, _quant_options(args), say)
    save_ir(graph, args.output)
    for line in report.lines():
        print(line)
    print(f"wrote {args.output} and {args.output}.npz")
    return 0


def cmd_doctor(args) -> int:
    from .doctor import doctor_lines
    print("\n".join(doctor_lines()))
    return 0


def cmd_toolchain(args) -> int:
    from .ir.textio import atomic_write
    from .targets import get_target
    text = get_target(args.target).toolchain_cmake()
    if text is None:
        raise PdcError(f"{args.target}: builds with this machine's own compiler; it needs no toolchain file")
    if args.output:
        atomic_write(args.output, lambda f: f.write(text.encode()))
    else:
        print(text, end="")
    return 0


def cmake_dir() -> str:
    """The folder of pdc's CMake package (pdcConfig.cmake, pdc.mk): package data."""
    from importlib import resources
    return str(resources.files("pdc").joinpath("cmake"))


class _CMakeDirAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(cmake_dir())
        parser.exit(0)


def cmd_targets(args) -> int:
    from .targets import code_targets, get_target, known_targets
    if args.coverage or args.target:
        return _print_coverage([get_target(args.target)] if args.target else list(code_targets().values()),
                               args.target)
    names = known_targets()
    width = max(len(n) for n in names)
    for name, what in names.items():
        print(f"{name:<{width}}  {what}")
    return 0


def _print_coverage(targets, asked) -> int:
    """Which ops each target renders with its native kernels and which with the portable ones."""
    from .codegen.kernels import PORTABLE, coverage
    from .codegen.kernels._kir import kir_generated_ops
    if targets == [None]:
        raise PdcError(f"target '{asked}' runs the interpreter: it has no kernels")
    for t in targets:
        if t.fixed_point:  # an FPGA: its HLS layers, not kernels
            from .codegen.hls.plan import layer_ops
            ops = layer_ops()
            print(f"{t.name}: {len(ops)} ops as HLS dataflow layers (any other op is refused)\n    {' '.join(ops)}")
            continue
        if "device" in t.memory_spaces:
            cov = t.device_coverage()
            total = sum(len(ops) for ops in cov.values())
            print(f"{t.name}: {total} ops; a node without a device kernel runs on the host CPU")
            for what, ops in cov.items():
                print(f"  {what}: {len(ops)} ops" + (f"\n    {' '.join(ops)}" if ops else ""))
            continue
        cov = coverage(t.kernel_families)
        total = sum(len(ops) for ops in cov.values())
        print(f"{t.name}: {total} ops; kernel families in fallback order: {' -> '.join(t.kernel_families)}")
        for fam, ops in cov.items():
            what = "plain C, any target" if fam == PORTABLE else "native; a node it does not cover falls back"
            print(f"  {fam} ({what}): {len(ops)} ops" + (f"\n    {' '.join(ops)}" if ops else ""))
    kir_ops = kir_generated_ops()
    print(f"kernel IR: {len(kir_ops)} ops' portable generators print through it (pdc/codegen/kir)")
    return 0


# ---- entry point ----------------------------------------------------------------------------
def max_tensor_bytes_arg(sp, default=None) -> None:
    sp.add_argument("--max-tensor-bytes", metavar="SIZE", default=default,
                    help="refuse a model with a larger tensor, e.g. 4G, 512M (default: 16G)")


class _VersionAction(argparse.Action):
    """--version: the version and which toolchain programs this machine has (argparse's plain version
    action prints one fixed string)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .doctor import version_text
        print(version_text())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pdc", description="pdc: an ahead-of-time deep-learning compiler for ONNX and PaddlePaddle "
                                        "models.")
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="print pdc's version and the toolchains found on this machine, and exit")
    p.add_argument("--cmake-dir", action=_CMakeDirAction, nargs=0,
                   help="print the folder of pdc's CMake package (find_package(pdc): -Dpdc_DIR=<it>) and of "
                        "pdc.mk, and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    opt = sub.add_parser("opt", help="import a model and print or save its IR",
                         description="Imports MODEL and emits its IR text. With -o FILE, writes "
                                     "FILE (the text) and FILE.npz (the constants); FILE is then a complete model "
                                     "that every pdc command accepts. MODEL: " + MODEL_FORMATS + ".")
    opt.add_argument("model", metavar="MODEL", nargs="?", help=MODEL_FORMATS)
    opt.add_argument("--emit", choices=["ir"], default="ir", help="what to emit (default: ir)")
    opt.add_argument("--passes", metavar="PIPELINE",
                     help="passes to run, e.g. 'fold-constants,fuse-elementwise{max-ops=8}' (overrides -O)")
    opt.add_argument("-O", dest="opt_level", type=int, choices=[0, 1, 2], metavar="LEVEL",
                     help="optimization level 0, 1 or 2 (default for opt: 0, i.e. the imported IR)")
    opt.add_argument("--list-passes", action="store_true", help="list the passes and their options")
    opt.add_argument("--verify-each", action="store_true", help="run the IR verifier after every pass")
    opt.add_argument("--print-ir-after-all", action="store_true", help="print the IR (stderr) after every pass")
    opt.add_argument("--print-ir-after", action="append", metavar="PASS", help="print the IR after PASS")
    opt.add_argument("--pass-timing", action="store_true", help="print the time each pass took (stderr)")
    opt.add_argument("--stats", action="store_true",
                     help="print JSON node counts and op histograms before and after (instead of the IR)")
    opt.add_argument("-o", "--output", metavar="FILE", help="write to FILE (+ FILE.npz) instead of stdout")
    max_tensor_bytes_arg(opt)
    opt.set_defaults(func=cmd_opt)

    ins = sub.add_parser("inspect", help="summarize a model: inputs, outputs, ops, parameters, MACs",
                         description="Prints MODEL's inputs and outputs, a histogram of its ops, its parameter "
                                     "count and an estimate of its multiply-accumulates.")
    ins.add_argument("model", metavar="MODEL", help=MODEL_FORMATS)
    ins.add_argument("--json", action="store_true", help="print JSON for machines")
    max_tensor_bytes_arg(ins)
    ins.set_defaults(func=cmd_inspect)

    def quant_args(sp, required: bool):
        sp.add_argument("--calibration", metavar="DATA", required=required,
                        help="calibration samples: an .npz with one array per model input, named after it, the "
                             "samples stacked on a new leading axis ([N, *input shape]); or an .npy for a "
                             "one-input model")
        sp.add_argument("--method", choices=["minmax", "percentile", "mse", "entropy"], default="mse",
                        help="how activation ranges are chosen from the samples (default: mse)")
        sp.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                        help="one weight scale per output channel (default; --no-per-channel: one per tensor)")
        sp.add_argument("--activations", choices=["int8", "uint8"], default="int8",
                        help="the activations' integer type (default: int8)")
        sp.add_argument("--symmetric", action="store_true", help="symmetric activations (zero point 0 / 128)")
        sp.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=True,
                        help="biases take back the mean shift of the weights' rounding (default; "
                             "--no-bias-correction: leave them)")
        sp.add_argument("--keep-float", action="append", metavar="OPS_OR_NODES",
                        help="ops (conv, gemm, matmul, add) or node names to leave in float; comma-separated, "
                             "repeatable")

    def model_args(sp, default_target="reference", model_help=MODEL_FORMATS, target_default_shown=None):
        sp.add_argument("model", metavar="MODEL", help=model_help)
        sp.add_argument("--target", default=default_target,
                        help=f"a target from pdc targets, or reference (the NumPy interpreter); "
                             f"default: {target_default_shown or default_target}")
        sp.add_argument("--shape", action="append", metavar="NAME=D0,D1,...",
                        help="bind an input's symbolic dims, e.g. --shape x=1,3,224,224 (repeatable); a range "
                             "LO..HI leaves a size to run time (x86, Cortex-A), e.g. --shape batch=1..8,seq=1..128")
        sp.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")

    run = sub.add_parser("run", help="run a model on inputs and summarize its outputs",
                         description="Runs MODEL on --inputs (an .npz keyed by input name, or one .npy for a "
                                     "one-input model), or on seeded random data, and prints a summary of each "
                                     "output.")
    model_args(run, default_target=None, target_default_shown="reference for a model; a bundle folder runs on "
                                                             "the target it was compiled for",
               model_help="a bundle folder written by pdc compile (--target and --shape do not apply to it), or "
                          + MODEL_FORMATS)
    run.add_argument("--inputs", metavar="FILE", help="an .npz keyed by input name, or a .npy")
    run.add_argument("--save", metavar="FILE.npz", help="save the outputs to an .npz")
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("check", help="run a model and compare every output with ONNX Runtime",
                         description="Runs MODEL on seeded random inputs with pdc and with ONNX Runtime and "
                                     "prints the max abs/rel error of every output; exits 1 on a mismatch.")
    model_args(chk, default_target="x86", model_help="an ONNX model (.onnx), compared with ONNX Runtime, or a Paddle "
                                                     "model (inference.json or .pdmodel + .pdiparams: the file, the "
                                                     "path prefix or the folder), compared with Paddle Inference")
    chk.add_argument("--threads", type=int, default=1, help="threads of the compiled code (default: 1)")
    chk.add_argument("-O", dest="opt_level", type=int, choices=[0, 1, 2], default=2, metavar="LEVEL",
                     help="optimization level (default: 2)")
    chk.set_defaults(func=cmd_check)

    cmp = sub.add_parser("compile", help="compile a model into a C bundle (and, for x86, a shared library)",
                         description="Compiles MODEL ahead of time into DIR: NAME.h (the C API), NAME.c (the run "
                                     "function), kernel sources, weights, CMakeLists.txt, Makefile and "
                                     "manifest.json; for x86 also libNAME.so. DIR must be new, empty or an "
                                     "earlier bundle, which is replaced atomically.")
    cmp.add_argument("model", metavar="MODEL", help=MODEL_FORMATS)
    cmp.add_argument("--target", default="x86", help="what to compile for (default: x86, this host); "
                                                     "see pdc targets")
    cmp.add_argument("-o", "--output", metavar="DIR", required=True, help="the bundle folder to write")
    cmp.add_argument("--name", help="C name prefix of the API (default: from the model file name)")
    cmp.add_argument("--threads", type=int, default=None,
                     help="default thread count of the runtime (default: this machine's cores for x86, "
                          "1 for the other targets); recorded in manifest.json")
    cmp.add_argument("--shape", action="append", metavar="NAME=D0,D1,...",
                     help="bind an input's symbolic dims (or one symbol: N=1); repeatable. A range LO..HI "
                          "leaves a size to run time (x86 and Cortex-A targets): --shape batch=1..8,seq=1..128 compiles code "
                          "that takes every size in range, its memory planned for the upper bounds")
    cmp.add_argument("--weights", choices=["c", "bin"], default="c",
                     help="c: weights compiled into the library (default); bin: a file loaded by init")
    cmp.add_argument("-O", dest="opt_level", type=int, choices=[0, 1, 2], default=2, metavar="LEVEL",
                     help="optimization level (default: 2)")
    cmp.add_argument("--flash", metavar="SIZE", help="microcontroller targets: the part's flash, e.g. 1M "
                                                   "(default: the preset's; see pdc targets)")
    cmp.add_argument("--ram", metavar="SIZE", help="microcontroller targets: the part's RAM, e.g. 256K "
                                               "(default: the preset's)")
    cmp.add_argument("--vtcm", metavar="SIZE", help="Hexagon targets: the part's VTCM, e.g. 2M (default: the "
                                                  "preset's; the HVX kernels' tiles must fit in it)")
    cmp.add_argument("--allow-scalar-float", action="store_true",
                     help="Hexagon targets: compile a float model for the DSP's scalar core (slow) instead of "
                          "refusing it; quantize it for HVX")
    cmp.add_argument("--quantize", choices=["int8"], help="quantize the model first (needs --calibration)")
    cmp.add_argument("--precision", metavar="P",
                     help="GPU targets: fp16 or bf16 float tensors (fp32 arithmetic; tensor cores on cuda-*) or fp32 "
                          "(default: fp16 on the Mali presets, fp32 elsewhere; bf16: cuda-sm80+). FPGA targets: the "
                          "fixed-point type, e.g. 'ap_fixed<16,6>' (the default without --calibration), a JSON "
                          "file of per-layer types, or with --calibration auto:AGREEMENT (default auto:0.99: the "
                          "narrowest types whose top-1 class matches the float model's on that share of samples)")
    cmp.add_argument("--reuse-factor", type=int, metavar="N",
                     help="FPGA targets: multiplications each multiplier does per output (default 1: fully "
                          "parallel; larger: fewer DSPs, longer latency)")
    cmp.add_argument("--part", metavar="PART", help="FPGA targets (fpga-hls): the FPGA part, e.g. xczu9eg-ffvb1156-2-e")
    cmp.add_argument("--clock", type=float, metavar="MHZ", help="FPGA targets: the clock in MHz (default: the preset's)")
    quant_args(cmp, required=False)
    cmp.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    max_tensor_bytes_arg(cmp, default="16G")
    cmp.set_defaults(func=cmd_compile)

    qz = sub.add_parser("quantize", help="quantize a model to int8 from calibration data",
                        description="Runs MODEL over the calibration samples (the reference interpreter), picks "
                                    "int8 scales, and writes the quantized model as IR (FILE.pdir + FILE.pdir.npz), "
                                    "which pdc compile takes like any model. Convolutions, dense layers and adds "
                                    "become integer ops; other ops stay float between dequantize / quantize.")
    qz.add_argument("model", metavar="MODEL", help=MODEL_FORMATS)
    qz.add_argument("-o", "--output", metavar="FILE.pdir", required=True, help="the quantized model to write")
    qz.add_argument("--shape", action="append", metavar="NAME=D0,D1,...", help="bind an input's symbolic dims")
    quant_args(qz, required=True)
    qz.add_argument("--weights", choices=["int8"], default="int8",
                    help="the weights' type: int8, symmetric (zero point 0; the only choice)")
    qz.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    qz.set_defaults(func=cmd_quantize)

    tg = sub.add_parser("targets", help="list the targets pdc compiles for",
                        description="Lists every --target name with what it means; an alias says which target "
                                    "it stands for. With --coverage, which ops each target implements with "
                                    "its native kernels and which fall back to the portable C ones.")
    tg.add_argument("--coverage", action="store_true", help="ops per kernel family for each target")
    tg.add_argument("--target", help="only this target (implies --coverage)")
    tg.set_defaults(func=cmd_targets)

    bn = sub.add_parser("bench", help="time a compiled model beside ONNX Runtime; --profile: per kernel",
                        description="Compiles MODEL for --target (default x86) or takes a bundle folder, and "
                                    "times it on seeded random inputs: latency percentiles after a warm-up, "
                                    "interleaved with ONNX Runtime for .onnx models (same threads). --profile "
                                    "adds each kernel's time from a profiling build of the bundle. arm64 / armv7 "
                                    "bundles, which run under qemu here, report instructions per run instead.")
    model_args(bn, default_target=None, target_default_shown="x86 for a model; a bundle folder runs on the "
                                                             "target it was compiled for",
               model_help="a bundle folder written by pdc compile, or " + MODEL_FORMATS)
    bn.add_argument("--threads", type=int, help="threads (default: this machine's cores for x86)")
    bn.add_argument("--runs", type=int, default=100, help="timed runs (default: 100)")
    bn.add_argument("--warmup", type=int, default=10, help="untimed runs first (default: 10)")
    bn.add_argument("--profile", action="store_true", help="each kernel's time, from a profiling build")
    bn.add_argument("--no-ort", action="store_true", help="time pdc alone")
    bn.set_defaults(func=cmd_bench)

    tu = sub.add_parser("tune", help="measure each layer's kernel paths here; pdc compile takes the fastest",
                        description="Compiles MODEL with the heuristics' kernel paths and once per other path "
                                    "of its kernel families, times profiling builds of them all in rounds on "
                                    "seeded random inputs, and records each layer's fastest path (when more "
                                    "than 5%% faster than the heuristics') in the tuning database, keyed by "
                                    "target, threads and the layer's shape and attributes: every later pdc "
                                    "compile of a layer like it on this target takes that path. x86 targets.")
    model_args(tu, default_target=None, target_default_shown="x86")
    tu.add_argument("--threads", type=int, help="threads (default: this machine's cores)")
    tu.add_argument("--db", help="the tuning database file (default: PDC_TUNING_DB, else tuning.json in pdc's "
                                 "cache folder)")
    tu.add_argument("--rounds", type=int, default=5, help="timing rounds; each kernel keeps its fastest (default: 5)")
    tu.add_argument("--runs", type=int, default=20, help="runs per variant and round (default: 20)")
    tu.set_defaults(func=cmd_tune)

    rp = sub.add_parser("report", help="what deploying a model costs: RAM, flash, weights per layer, op coverage, "
                                       "estimated latency",
                        description="Compiles MODEL for --target into a temporary folder and reports what "
                                    "deploying it costs: the arena (RAM) and its peak step with the values live "
                                    "there, kernel scratch, the stack estimate (Cortex-M), flash (code + weights), "
                                    "the weight bytes of each layer, which layers a native kernel renders and "
                                    "which fall back to portable C, and each layer's latency from the target's "
                                    "cost model (x86: calibrated once on this machine; ARM: a cycle model). "
                                    "pdc bench MODEL --profile measures the real figures.")
    rp.add_argument("model", metavar="MODEL", help=MODEL_FORMATS)
    rp.add_argument("--target", default="x86", help="what to deploy on (default: x86, this host); see pdc targets")
    rp.add_argument("--shape", action="append", metavar="NAME=D0,D1,...",
                    help="bind an input's symbolic dims (or one symbol: N=1); repeatable")
    rp.add_argument("--threads", type=int, default=None,
                    help="threads of the bundle (default: this machine's cores for x86, 1 for the other targets)")
    rp.add_argument("-O", dest="opt_level", type=int, choices=[0, 1, 2], default=2, metavar="LEVEL",
                    help="optimization level (default: 2)")
    rp.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE ('-': JSON on stdout "
                                                   "instead of the table)")
    rp.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with plots of the "
                                                   "arena over the schedule and of the latency per layer")
    rp.set_defaults(func=cmd_report)

    tc = sub.add_parser("toolchain", help="write the CMake toolchain file of a cross target",
                        description="Prints (or with -o writes) a CMake toolchain file for TARGET's cross "
                                    "compiler, with its CPU flags and the emulator that runs its programs here: "
                                    "cmake -DCMAKE_TOOLCHAIN_FILE=FILE builds a project for the machine the "
                                    "bundles of TARGET run on. Cross bundles carry the same file as "
                                    "toolchain.cmake.")
    tc.add_argument("target", metavar="TARGET", help="a cross target: arm64, armv7, cortex-m3/m4/m7/m55")
    tc.add_argument("-o", "--output", metavar="FILE", help="write the file here instead of printing it")
    tc.set_defaults(func=cmd_toolchain)

    doc = sub.add_parser("doctor", help="which targets can build and run on this machine",
                         description="Prints one line per target: whether this machine can build its bundles "
                                     "and run them, and each missing tool with the Debian package that provides "
                                     "it; then the apt-get command that installs them.")
    doc.set_defaults(func=cmd_doctor)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except PdcError as e:
        print(f"pdc: error: {one_line(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system refused (permissions, a full disk): not a bug in pdc
        if isinstance(e, BrokenPipeError):
            return 0
        where = f"{e.filename}: " if e.filename else ""
        print(f"pdc: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("pdc: error: out of memory (a smaller --max-tensor-bytes refuses such models early)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pdc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("PDC_DEBUG"):
            raise
        print(f"pdc: internal error: {type(e).__name__}: {one_line(str(e))} (set PDC_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 70


def one_line(message: str) -> str:
    """Error messages are one line, whatever a library put into them."""
    return re.sub(r"\s*\n\s*", " ", message).strip()


if __name__ == "__main__":
    sys.exit(main())
