"""int8 vs float32 latency of pdc on x86 (and ONNX Runtime's QDQ int8 side by side), in ONE process.

    python benchmarks/int8.py [--model PATH ...] [--threads 2] [--reps 40] [--calib 8] [--seed 0] [--no-ort]
    python benchmarks/int8.py --arm64 [--model PATH ...]     (arm64 instruction counts under qemu instead)

For each model (default: the zoo's resnet18 and mobilenet_v2 under .cache/zoo/<name>-*/model.onnx):
1. the int8 graph: pdc.quantize.quantize_model(graph, calibration) on `--calib` seeded random
   samples (standard normal, the input's shape);
2. pdc.compile of the float and the int8 graph for target x86 with `--threads` threads;
3. ONNX Runtime: the float model and, unless --no-ort, QDQ models from
   onnxruntime.quantization.quantize_static (QuantFormat.QDQ, per_channel=True, QInt8 weights;
   QInt8 activations (s8s8, as pdc's default) and QUInt8 activations (u8s8, ONNX Runtime's faster
   x86 kernels); the model pre-processed by quant_pre_process first, as ONNX Runtime recommends)
   calibrated on the same samples;
4. batch 1, the same input for every engine, engines interleaved in blocks (A A A, B B B, ..., A A A,
   ...): before each block a short pause (the previous engine's spinning threads go idle) and one
   untimed run (the engine's own thread pool awake again: on this shared 2-vCPU guest a worker that
   fell asleep can wait tens of milliseconds for its vCPU, which bench.py's pause-then-time counted
   into single runs); the median over all timed runs and the fastest one (the machine is shared: the
   minimum is what a quiet core gives), printed with the ratios float / int8.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench import interleaved_samples  # noqa: E402  (benchmarks/bench.py)
from int8_accuracy import ort_qdq, zoo_path  # noqa: E402

DEFAULT_MODELS = ("resnet18", "mobilenet_v2")


def calibration(graph, count: int, seed: int) -> dict:
    """{input: [count, *shape]} standard-normal samples for every graph input."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in graph.inputs:
        shape = tuple(d if isinstance(d, int) else 1 for d in v.type.shape)
        out[v.name] = rng.standard_normal((count,) + shape).astype(v.type.dtype.np)
    return out


def ort_session(path: str, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def bench(path: str, threads: int, reps: int, calib: int, seed: int, use_ort: bool) -> tuple[dict, dict]:
    import pdc
    from pdc.frontend import load_model
    from pdc.quantize import quantize_model
    info = {}
    graph = load_model(path)
    samples = calibration(graph, calib, seed)
    feeds = {k: v[0] for k, v in samples.items()}
    t = time.perf_counter()
    qgraph, _ = quantize_model(graph, samples)
    info["quantize s"] = time.perf_counter() - t
    folder = tempfile.mkdtemp(prefix="pdc-int8-bench-")
    engines = {}
    for key, g in (("pdc fp32", graph), ("pdc int8", qgraph)):
        t = time.perf_counter()
        mod = pdc.compile(g, target="x86", out_dir=os.path.join(folder, key.replace(" ", "_")), threads=threads)
        info[f"compile {key} s"] = time.perf_counter() - t
        engines[key] = (lambda m: lambda: m.run(feeds))(mod)
    if use_ort:
        sess = ort_session(path, threads)
        engines["ort fp32"] = lambda: sess.run(None, feeds)
        listed = [{k: v[i] for k, v in samples.items()} for i in range(calib)]
        for key, act in (("ort qdq s8s8", "int8"), ("ort qdq u8s8", "uint8")):
            t = time.perf_counter()
            qsess = ort_session(ort_qdq(path, listed, folder, act), threads)
            info[f"{key} quantize s"] = time.perf_counter() - t
            engines[key] = (lambda q: lambda: q.run(None, feeds))(qsess)
    med, best = time_interleaved(engines, reps)
    return med, best, info


def arm64_counts(paths: list, calib: int, seed: int) -> None:
    """Guest instructions of one run of each model's arm64 fp32 and int8 bundles (one thread) under
    qemu-user with the instruction-count plugin: deterministic, no timing noise."""
    import pdc
    from pdc.frontend import load_model
    from pdc.quantize import quantize_model
    from pdc.targets.arm import run_counting
    folder = tempfile.mkdtemp(prefix="pdc-int8-arm64-")
    print(f"{'arm64 model':<22}{'fp32 insns':>16}{'int8 insns':>16}{'int8/fp32':>11}")
    for path in paths:
        name = os.path.basename(os.path.dirname(path)).split("-")[0] or os.path.basename(path)
        graph = load_model(path)
        samples = calibration(graph, calib, seed)
        feeds = {k: v[0] for k, v in samples.items()}
        qgraph, _ = quantize_model(graph, samples)
        counts = {}
        for key, g in (("fp32", graph), ("int8", qgraph)):
            out = os.path.join(folder, f"{name}-{key}")
            pdc.compile(g, target="arm64", out_dir=out, threads=1)
            counts[key] = run_counting(out, feeds)[1]
        print(f"{name:<22}{counts['fp32']:>16,}{counts['int8']:>16,}{counts['int8'] / counts['fp32']:>11.3f}", flush=True)


def time_interleaved(runs: dict, reps: int, block: int = 4) -> tuple[dict, dict]:
    """(median, fastest) milliseconds of each callable over reps blocks of `block` timed runs, the
    engines' blocks interleaved, each block after a pause and an untimed run."""
    samples = interleaved_samples(runs, reps, block, untimed=True)
    return ({k: statistics.median(v) * 1e3 for k, v in samples.items()},
            {k: min(v) * 1e3 for k, v in samples.items()})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="ONNX model path (repeatable); default: zoo resnet18, mobilenet_v2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15, help="blocks of 4 timed runs per engine")
    ap.add_argument("--calib", type=int, default=8, help="calibration samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime (float and QDQ int8)")
    ap.add_argument("--arm64", action="store_true",
                    help="instead: the instructions the arm64 fp32 and int8 bundles execute under qemu-user")
    args = ap.parse_args(argv)
    paths = args.model or [zoo_path(n) for n in DEFAULT_MODELS]
    if args.arm64:
        return arm64_counts(paths, args.calib, args.seed)
    print(f"batch 1, {args.threads} threads, median (and fastest run) of {args.reps} interleaved blocks of 4 runs, {args.calib} calibration "
          f"samples (seed {args.seed}); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    for path in paths:
        name = os.path.basename(os.path.dirname(path)).split("-")[0] or os.path.basename(path)
        print(f"{name} ...", file=sys.stderr)
        med, best, info = bench(path, args.threads, args.reps, args.calib, args.seed, not args.no_ort)
        rows.append((name + " median", med, info))
        rows.append((name + " min", best, None))
    keys = list(rows[0][1])
    ort = "ort fp32" in keys
    print(f"{'model':<22}" + "".join(f"{k + ' ms':>17}" for k in keys) + f"{'pdc fp32/int8':>15}"
          + (f"{'ort fp32/s8s8':>15}{'ort fp32/u8s8':>15}{'ort best int8/pdc int8':>24}" if ort else ""))
    for name, ms, _ in rows:
        line = f"{name:<22}" + "".join(f"{ms[k]:>17.2f}" for k in keys) + f"{ms['pdc fp32'] / ms['pdc int8']:>15.2f}"
        if ort:
            best = min(ms["ort qdq s8s8"], ms["ort qdq u8s8"])
            line += (f"{ms['ort fp32'] / ms['ort qdq s8s8']:>15.2f}{ms['ort fp32'] / ms['ort qdq u8s8']:>15.2f}"
                     f"{best / ms['pdc int8']:>24.2f}")
        print(line)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    for name, _, info in rows:
        if info:
            print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in info.items()))


if __name__ == "__main__":
    main()
