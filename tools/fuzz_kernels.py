"""Long fuzzing run of the kernel properties (tests/kernels): rounds of the whole property suite, each
with a fresh random seed and K times the CI tier's examples, until the time is up; then the number
of layers drawn per op family and target, and the failures (each with hypothesis' shrunk layer).

    python tools/fuzz_kernels.py --minutes 60 [--scale 8] [-k conv] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_round(seed: int, scale: float, selection: str, workers: int, log: str, budget_s: float) -> tuple[int, str]:
    env = dict(os.environ, PDC_FUZZ_SEED=str(seed), PDC_FUZZ_SCALE=str(scale), PDC_FUZZ_LOG=log)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels"]
    if workers > 1:
        cmd += ["-n", str(workers)]
    if selection:
        cmd += ["-k", selection]
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(60.0, budget_s))
    except subprocess.TimeoutExpired:
        return 0, ""  # the time is up mid-round: what it checked is in the log
    return r.returncode, r.stdout + r.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="how long to fuzz (default 60)")
    ap.add_argument("--scale", type=float, default=3.0, help="examples per property, times the CI tier's")
    ap.add_argument("-k", dest="selection", default="", help="pytest -k selection (e.g. 'conv and x86')")
    ap.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    ap.add_argument("--log", default="", help="keep the per-draw log here (JSON lines)")
    args = ap.parse_args(argv)
    log = args.log or tempfile.mktemp(prefix="pdc-fuzz-", suffix=".jsonl")
    deadline = time.monotonic() + args.minutes * 60
    failures, rounds = [], 0
    while time.monotonic() < deadline - 30:
        seed = random.SystemRandom().randrange(1, 2 ** 31)
        rounds += 1
        print(f"fuzz-kernels: round {rounds}, seed {seed}", flush=True)
        rc, out = run_round(seed, args.scale, args.selection, args.workers, log, deadline - time.monotonic())
        if rc not in (0, 5):
            report = f"{log}.seed{seed}.txt"  # every failing test's shrunk layer, not only the last
            with open(report, "w") as f:
                f.write(out)
            failures.append((seed, report))
            print(out[-6000:] + f"\nfuzz-kernels: the whole output of round {rounds}: {report}", flush=True)
    layers, draws = Counter(), Counter()
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                d = json.loads(line)
                for op in set(d["ops"]):
                    draws[(op, d["target"])] += 1
                for op in d["ops"]:
                    layers[(op, d["target"])] += 1
    print(f"\nfuzz-kernels: {rounds} rounds in {args.minutes:g} min; layers checked (draws) per op and target:")
    for (op, target), n in sorted(layers.items()):
        print(f"  {op:24s} {target:12s} {n:7d} ({draws[(op, target)]})")
    print(f"  {'total':24s} {'':12s} {sum(layers.values()):7d}")
    print(f"fuzz-kernels: {len(failures)} failing round(s)" + "".join(f"\n  seed {s}: {r}" for s, r in failures))
    if not args.log:
        os.unlink(log) if os.path.exists(log) else None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
