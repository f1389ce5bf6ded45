"""pdc report's x86 latency estimate against measured runs of the same bundles, in ONE process.

    python benchmarks/report_latency.py [--models lenet,...,resnet18] [--threads 2] [--runs 40]

For each zoo model: compiled once for x86, `pdc report`'s estimate (the cost model of pdc/report.py,
calibrated on this machine first) beside the median of timed runs (pdc.bench.interleaved), and
their ratio; the last line says how many models lie within 35%. Run it on a quiet machine: the
estimate models the machine's calibrated peak, and a busy machine measures its load too.
tests/test_report_latency.py runs the same comparison, alone after the parallel suite.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from int8_accuracy import zoo_path  # noqa: E402

MODELS = ("lenet", "mlp", "tiny_cnn", "digits_cnn", "transformer_encoder", "mobilenet_v3_small", "squeezenet1_1",
          "mobilenet_v2", "resnet18")
TOLERANCE = 0.35


def within(estimate: float, measured: float) -> bool:
    return abs(estimate / measured - 1) <= TOLERANCE


def estimate_and_measure(model_path: str, threads: int, runs: int, calibration: dict,
                         tries: int = 1) -> tuple[float, float]:
    """(estimated ms, measured median ms) of the model compiled for x86. With tries > 1, a median
    outside the tolerance is measured again, up to `tries` times, keeping the lowest: other work on
    the machine only ever slows a run down, and the estimate models an idle machine."""
    import pdc
    from pdc.bench import interleaved
    from pdc.compiler import compile_details
    from pdc.inputs import random_inputs
    from pdc.report import flash_figures, report_of
    with tempfile.TemporaryDirectory() as tmp:
        c = compile_details(model_path, os.path.join(tmp, "b"), target="x86", threads=threads)
        estimate = report_of(c, flash_figures(c.folder, c.manifest), 2, calibration)["latency"]["total_us"] / 1e3
        module = pdc.load(c.folder)
        feeds = random_inputs(module.signature(), 0)
        measured = float("inf")
        for _ in range(tries):
            times = interleaved({"pdc": lambda: module.run(feeds)}, runs, 5)["pdc"]
            measured = min(measured, float(np.median(times)) * 1e3)
            if within(estimate, measured):
                break
    return estimate, measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 2))
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    from pdc.report import calibrate
    calibration = vars(calibrate(args.threads, refresh=True))
    print(f"x86, {args.threads} threads, median of {args.runs} runs; calibration: {calibration}")
    print(f"{'model':<22}{'estimate ms':>12}{'measured ms':>12}{'ratio':>7}")
    count = 0
    names = args.models.split(",")
    for name in names:
        estimate, measured = estimate_and_measure(zoo_path(name), args.threads, args.runs, calibration)
        count += within(estimate, measured)
        print(f"{name:<22}{estimate:>12.3f}{measured:>12.3f}{estimate / measured:>7.2f}", flush=True)
    print(f"within {TOLERANCE:.0%}: {count} of {len(names)}")


if __name__ == "__main__":
    main()
