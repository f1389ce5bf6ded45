"""Latency of pdc vs ONNX Runtime (and TVM's default Relax build) on the model zoo, in ONE process.

    python benchmarks/bench.py [--models resnet18,mobilenet_v2,resnet50] [--threads 2] [--reps 30]
                               [--levels 2 | --levels 0,2] [--no-tvm] [--block N --settle S] [--after-ort]

--models takes zoo names and paths of .onnx files (e.g. those benchmarks/export_models.py writes).

Batch 1, the same inputs for every engine, repetitions interleaved (engine A, B, C, A, B, C, ...)
so that machine noise hits all of them alike, with a short untimed pause before each run so
that the previous engine's spinning threads are idle; medians are reported with the ratio to
ONNX Runtime, plus each engine's compile time. With --block N each engine runs N timed runs in a
row (after an untimed one) per turn, the median of its per-block medians reported: an engine's own
thread pool stays warm, and --settle (default 0.05 s; ONNX Runtime's threads spin for 50 ms and
more after a run) lets the previous engine's spinners stop first.

With --after-ort, a second table times pdc (the -O level named last) on a machine ONNX Runtime has
just used: in each of the reps turns, one block of pdc runs as above (after the pause), and
`block` pdc runs each right after an ONNX Runtime run, with no pause, while ORT's worker threads
still spin as they do by default. It prints both medians (of per-block medians) and their ratio, and
the CPU time the process spends in the 100 ms after an ONNX Runtime run while its caller sleeps:
what ORT's spinning workers take from the cores pdc then runs on.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# Thread pools spin for a while after a run (ONNX Runtime's by default); without a pause, the
# next engine in the interleaving would share its cores with those spinners.
SETTLE_S = 0.05


def _median_ms(samples):
    return statistics.median(samples) * 1e3


def make_engines(path, feeds, threads, levels, use_tvm):
    import onnx
    import onnxruntime as ort
    import pdc
    engines, compile_s = {}, {}
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    t = time.perf_counter()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    compile_s["onnxruntime"] = time.perf_counter() - t
    engines["onnxruntime"] = lambda: sess.run(None, feeds)
    for level in levels:
        t = time.perf_counter()
        mod = pdc.compile(path, target="x86", out_dir=tempfile.mkdtemp(prefix="pdc-bench-"), threads=threads,
                          opt_level=level)
        key = f"pdc -O{level}"
        compile_s[key] = time.perf_counter() - t
        engines[key] = (lambda m: lambda: m.run(feeds))(mod)
    if use_tvm:
        try:
            import tvm
            from tvm import relax
            from tvm.relax.frontend.onnx import from_onnx
            t = time.perf_counter()
            model = onnx.load(path)
            mod = from_onnx(model, shape_dict={k: v.shape for k, v in feeds.items()}, keep_params_in_input=False)
            # "native" is refused by this LLVM for the triple it reports; ask LLVM for the host CPU's name
            cpu = tvm.get_global_func("target.llvm_get_system_cpu")()
            target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": cpu,
                                        "num-cores": threads})
            ex = tvm.compile(mod, target=target)
            vm = relax.VirtualMachine(ex, tvm.cpu())
            args = [tvm.runtime.tensor(v) for v in feeds.values()]
            vm["main"](*args)
            compile_s["tvm"] = time.perf_counter() - t
            engines["tvm"] = lambda: vm["main"](*args)
        except Exception as e:  # TVM is optional: say why it is missing from the table
            print(f"  tvm: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120]})", file=sys.stderr)
    return engines, compile_s


def bench_model(name, threads, reps, levels, use_tvm, block=1):
    """(median ms per engine, compile seconds per engine, the engines' run callables)."""
    from tests.zoo import make_feeds, zoo_model
    path = name if name.endswith(".onnx") else zoo_model(name)
    feeds = make_feeds(path)
    engines, compile_s = make_engines(path, feeds, threads, levels, use_tvm)
    if block == 1:
        return time_interleaved(engines, reps), compile_s, engines
    samples = interleaved_samples(engines, reps, block, untimed=True)
    return {k: statistics.median(_median_ms(v[i:i + block]) for i in range(0, len(v), block))
            for k, v in samples.items()}, compile_s, engines


def interleaved_samples(runs: dict, reps: int, block: int = 1, untimed: bool = False) -> dict[str, list]:
    """Seconds of each callable's timed runs after a warm-up, the engines interleaved in blocks of
    `block` runs (A A, B B, C C, A A, ...), each block after a pause and, with `untimed`, one
    untimed run (the engine's own thread pool awake again)."""
    for run in runs.values():
        for _ in range(3):
            run()
    samples = {k: [] for k in runs}
    for _ in range(reps):
        for k, run in runs.items():
            time.sleep(SETTLE_S)  # let the previous engine's spinning worker threads go idle
            if untimed:
                run()
            for _ in range(block):
                t = time.perf_counter()
                run()
                samples[k].append(time.perf_counter() - t)
    return samples


def after_ort_ms(ort_run, pdc_run, reps: int, block: int) -> tuple[float, float]:
    """pdc's median ms in blocks after a pause, and right after ONNX Runtime runs (see the docstring)."""
    for _ in range(3):
        ort_run()
        pdc_run()
    def block_ms(before=None) -> float:  # the median of `block` timed pdc runs, each after before()
        times = []
        for _ in range(block):
            if before:
                before()
            t = time.perf_counter()
            pdc_run()
            times.append(time.perf_counter() - t)
        return _median_ms(times)

    alone, after = [], []
    for _ in range(reps):
        time.sleep(SETTLE_S)
        pdc_run()
        alone.append(block_ms())
        after.append(block_ms(ort_run))
    return statistics.median(alone), statistics.median(after)


def spin_cpu_ms(ort_run, trials: int = 5, window_s: float = 0.1) -> float:
    """Median CPU milliseconds the process uses in the `window_s` after an ONNX Runtime run while the
    calling thread sleeps: ORT's worker threads spinning for their next task."""
    used = []
    for _ in range(trials):
        ort_run()
        t = time.process_time()
        time.sleep(window_s)
        used.append(time.process_time() - t)
    return _median_ms(used)


def time_interleaved(runs: dict, reps: int) -> dict[str, float]:
    """Median milliseconds of each callable after a warm-up, the runs interleaved (A, B, C, A, ...)."""
    return {k: _median_ms(v) for k, v in interleaved_samples(runs, reps).items()}


def main(argv=None):
    global SETTLE_S
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet_v2,resnet18,resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--levels", default="2", help="pdc optimization levels to time, e.g. 0,2")
    ap.add_argument("--no-tvm", action="store_true")
    ap.add_argument("--block", type=int, default=1, help="timed runs per engine turn (default 1)")
    ap.add_argument("--settle", type=float, default=SETTLE_S, help="seconds of pause before each turn")
    ap.add_argument("--after-ort", action="store_true", help="also time pdc right after ONNX Runtime runs")
    args = ap.parse_args(argv)
    SETTLE_S = args.settle
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    levels = [int(x) for x in args.levels.split(",")]
    how = f"{args.reps} interleaved runs" if args.block == 1 else f"{args.reps} blocks of {args.block} runs, interleaved"
    print(f"batch 1, {args.threads} threads, median of {how}, {args.settle} s pause before each; "
          f"machine: {os.cpu_count()} CPUs, {cpu_name()}")
    rows, after = [], []
    for name in args.models.split(","):
        print(f"{name} ...", file=sys.stderr)
        ms, cs, engines = bench_model(name, args.threads, args.reps, levels, not args.no_tvm, args.block)
        rows.append((os.path.basename(name).removesuffix(".onnx"), ms, cs))
        if args.after_ort:  # the same engines, timed again
            after.append((rows[-1][0], *after_ort_ms(engines["onnxruntime"], engines[f"pdc -O{levels[-1]}"], args.reps,
                                              max(args.block, 1)), spin_cpu_ms(engines["onnxruntime"])))
    engines = [k for k in rows[0][1]]
    head = f"{'model':<22}" + "".join(f"{k + ' ms':>16}" for k in engines) + \
        "".join(f"{k + '/ort':>14}" for k in engines if k != "onnxruntime")
    print(head)
    for name, ms, _ in rows:
        line = f"{name:<22}" + "".join(f"{ms.get(k, float('nan')):>16.2f}" for k in engines)
        line += "".join(f"{ms.get(k, float('nan')) / ms['onnxruntime']:>14.2f}" for k in engines if k != "onnxruntime")
        print(line)
    if after:
        print(f"\npdc -O{levels[-1]} right after ONNX Runtime runs (no pause), against its blocks after a pause:")
        print(f"{'model':<22}{'blocks ms':>12}{'after ORT ms':>14}{'ratio':>8}{'ORT spin CPU ms / 100 ms':>26}")
        for name, alone, behind, spin in after:
            print(f"{name:<22}{alone:>12.2f}{behind:>14.2f}{behind / alone:>8.2f}{spin:>26.1f}")
    print("compile times (s):")
    for name, _, cs in rows:
        print(f"  {name:<20}" + "  ".join(f"{k} {v:.1f}" for k, v in cs.items()))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
