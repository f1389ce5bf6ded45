"""A model compiled once for a range of sizes against the same model compiled for one size, in ONE process.

    python benchmarks/bounded_dims.py [--model transformer_encoder_dyn] [--shape batch=1..8,seq=1..128]
                                      [--at 8,128] [--threads 2] [--reps 30] [--block 5]

The zoo's TransformerEncoder exported with its batch and sequence dims as symbols is compiled twice
for x86: with the dims as ranges (known only at run time, the arena planned for the upper bounds)
and with the dims fixed at `--at` (default: the upper bounds). Both run on the same input of that
size, in alternating blocks after a pause (bounded first in even rounds, static first in odd ones,
so neither always follows the other), then ONNX Runtime alone for reference; the table gives
median ms, the fastest block median (pdc.bench.fastest_median's figure: the slow spells of a virtual
machine only ever slow a block down) and the ratio bounded / static of both. Then the bounded bundle runs at every size of
a grid and its outputs are compared with ONNX Runtime's.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench import SETTLE_S, cpu_name  # noqa: E402
from int8_accuracy import zoo_path  # noqa: E402

def alternating_samples(runs: dict, reps: int, block: int) -> dict[str, list]:
    """Seconds of `block` timed runs of each callable per round after a warm-up, each block after a
    pause; the order of the callables reversed every other round."""
    for run in runs.values():
        for _ in range(5):
            run()
    samples = {k: [] for k in runs}
    for r in range(reps):
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            time.sleep(SETTLE_S)
            for _ in range(block):
                t = time.perf_counter()
                runs[k]()
                samples[k].append(time.perf_counter() - t)
    return samples


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="transformer_encoder_dyn")
    ap.add_argument("--shape", default="batch=1..8,seq=1..128")
    ap.add_argument("--at", default=None, help="the sizes of the static compile, comma-separated (default: the bounds)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--block", type=int, default=10)
    args = ap.parse_args(argv)

    import numpy as np
    import onnxruntime as ort

    import pdc
    from pdc.compiler import compile_details
    from pdc.ir.shapes import parse_shape_options

    path = zoo_path(args.model)
    ranges = {name: dims[0] for name, dims in parse_shape_options([args.shape]).items()}
    at = [int(x) for x in args.at.split(",")] if args.at else [hi for _, hi in ranges.values()]
    sizes = dict(zip(ranges, at))
    with tempfile.TemporaryDirectory() as tmp:
        bounded = pdc.load(compile_details(path, os.path.join(tmp, "bounded"), target="x86", threads=args.threads,
                                           shapes={s: [r] for s, r in ranges.items()}).folder)
        static = pdc.load(compile_details(path, os.path.join(tmp, "static"), target="x86", threads=args.threads,
                                          shapes={s: [n] for s, n in sizes.items()}).folder)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        (spec,) = static.inputs
        feeds = {spec.name: np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)}
        samples = alternating_samples({"bounded": lambda: bounded.run(feeds), "static": lambda: static.run(feeds)},
                                      args.reps, args.block)
        samples.update(alternating_samples({"onnxruntime": lambda: sess.run(None, feeds)}, args.reps, args.block))
        ms = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        fastest = {k: min(statistics.median(v[i:i + args.block]) for i in range(0, len(v), args.block)) * 1e3
                   for k, v in samples.items()}
        print(f"{args.model} at {sizes} on {cpu_name()}, {args.threads} threads, fp32, {args.reps} blocks of "
              f"{args.block} runs each")
        print(f"  {'':12s} {'median':>8s} {'fastest block median':>22s}")
        for k in ms:
            print(f"  {k:12s} {ms[k]:8.3f} {fastest[k]:22.3f} ms")
        print(f"  bounded / static: {ms['bounded'] / ms['static']:.3f} (medians), "
              f"{fastest['bounded'] / fastest['static']:.3f} (fastest block medians; a virtual machine's slow "
              f"spells only slow blocks down)")
        print(f"  static / onnxruntime: {ms['static'] / ms['onnxruntime']:.3f} (medians)")

        grid = list(itertools.product(*[sorted({lo, hi, (lo + hi) // 2, min(hi, lo + 2)})
                                        for lo, hi in ranges.values()]))
        worst = 0.0
        for point in grid:
            shape = [dict(zip(ranges, point)).get(d, d) if isinstance(d, str) else d for d in bounded.inputs[0].shape]
            x = {spec.name: np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
            got = bounded.run(x)
            want = sess.run(None, x)
            worst = max(worst, max(float(np.abs(g - w).max()) for g, w in zip(got.values(), want)))
        print(f"  {len(grid)} sizes of {list(ranges)} against ONNX Runtime: largest difference {worst:.2e}")


if __name__ == "__main__":
    main()
