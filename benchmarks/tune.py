"""pdc tune on zoo models: each model's latency with the heuristics' kernel paths and with the paths
pdc tune measured fastest, in ONE process.

    python benchmarks/tune.py [--models mobilenet_v3_small,squeezenet1_1,...] [--threads 2] [--rounds 5]

For each model: `pdc tune` into a temporary database (shared by the models, as a user's would be),
then two bundles, one compiled without the database and one with it, timed in alternating blocks
(A B A B ..., ten blocks each); the figure of each is its fastest block median, the way pdc report's
calibration measures (pdc.bench.fastest_median). Prints the layers tune changed, both times and
their ratio. Run it on a quiet machine.
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

MODELS = ("lenet", "transformer_encoder", "mobilenet_v3_small", "squeezenet1_1", "mobilenet_v2", "resnet18")


def heuristic_and_tuned(model: str, threads: int, db: str, tmp: str) -> tuple[float, float]:
    """Fastest block medians (ms) of the model compiled without and with the tuning database."""
    import pdc
    from pdc.bench import interleaved
    from pdc.inputs import random_inputs
    from pdc.tuning import DB_ENV
    modules = {}
    for label, path in (("heuristics", ""), ("tuned", db)):
        os.environ[DB_ENV] = path
        modules[label] = pdc.compile(model, target="x86", threads=threads, out_dir=os.path.join(tmp, label))
    feeds = random_inputs(modules["heuristics"].signature(), 0)
    runs = {label: (lambda m=m: m.run(feeds)) for label, m in modules.items()}
    one = min(interleaved(runs, 3, 1)["heuristics"])
    n = int(min(2000, max(10, 0.1 / max(one, 1e-7))))
    best = {label: float("inf") for label in runs}
    for _ in range(10):
        for label, seconds in interleaved(runs, n, 2, block=n).items():
            best[label] = min(best[label], float(np.median(seconds)) * 1e3)
    return best["heuristics"], best["tuned"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 2))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from pdc.tune import tune, tune_lines
    rows = []
    with tempfile.TemporaryDirectory(prefix="pdc-tune-bench-") as tmp:
        db = os.path.join(tmp, "tuning.json")
        for name in args.models.split(","):
            result = tune(zoo_path(name), threads=args.threads, db=db, rounds=args.rounds, say=lambda msg: None)
            print(f"\n{name}:\n" + "\n".join(tune_lines(result)), flush=True)
            before, after = heuristic_and_tuned(zoo_path(name), args.threads, db, os.path.join(tmp, name))
            rows.append((name, before, after))
            print(f"{name}: heuristics {before:.3f} ms, tuned {after:.3f} ms, tuned/heuristics {after / before:.2f}",
                  flush=True)
    print(f"\nx86, {args.threads} threads, fastest of 10 block medians each")
    print(f"{'model':<22}{'heuristics ms':>14}{'tuned ms':>10}{'ratio':>7}")
    for name, before, after in rows:
        print(f"{name:<22}{before:>14.3f}{after:>10.3f}{after / before:>7.2f}")


if __name__ == "__main__":
    main()
