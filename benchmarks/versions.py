"""Speed of this pdc against another checkout of pdc (a baseline), on the model zoo, in ONE run.

    python benchmarks/versions.py --baseline ../pdc-old [--models mobilenet_v2,resnet18] [--threads 2]
                                  [--reps 30] [--arm-models lenet,tiny_cnn,m.onnx] [--threads-sweep 1,2,4]
                                  [--sweep-models resnet18]

Each tree compiles every model (in a subprocess with that tree first on the path, so each uses its
own code generator); this process then loads both x86 bundles and times them interleaved
(baseline, this, baseline, this, ...), so machine noise hits both alike, and prints the medians and
their ratio. For ARM it counts the instructions the arm64 bundle of each tree executes under
qemu-user (deterministic, no timing noise). With --threads-sweep, this tree's bundles compiled for
each thread count are timed side by side too, and their outputs compared bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import cpu_name, time_interleaved  # noqa: E402  (benchmarks/bench.py)

COMPILE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pdc.compiler import compile_bundle
compile_bundle(sys.argv[2], sys.argv[3], target=sys.argv[4], threads=int(sys.argv[5]), shapes=json.loads(sys.argv[6]))
"""


def compile_with(tree: str, model: str, out: str, target: str, threads: int, feeds: dict) -> str:
    """Compiles `model` with the pdc of `tree` for the shapes of `feeds` (binding symbolic dims)."""
    shapes = json.dumps({k: list(v.shape) for k, v in feeds.items()})
    r = subprocess.run([sys.executable, "-c", COMPILE, tree, model, out, target, str(threads), shapes],
                       capture_output=True, text=True, cwd=tree)
    if r.returncode != 0:
        raise SystemExit(f"{tree}: compiling {model} for {target} failed:\n{r.stderr[-2000:]}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="another pdc checkout (its repository root)")
    ap.add_argument("--models", default="mobilenet_v2,resnet18,resnet50,squeezenet1_1,mobilenet_v3_small,"
                                        "transformer_encoder,lstm,gru,tiny_cnn,mlp,lenet,digits_cnn")
    ap.add_argument("--arm-models", default="lenet,digits_cnn,tiny_cnn,mlp,squeezenet1_1,mobilenet_v3_small",
                    help="zoo models or .onnx files whose arm64 instruction counts are compared ('' for none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads-sweep", default="", help="thread counts to time this tree's bundles at, e.g. 1,2,4")
    ap.add_argument("--sweep-models", default="mobilenet_v2,resnet18,resnet50", help="models of the thread sweep")
    args = ap.parse_args(argv)
    from pdc.module import Module
    from pdc.targets.arm import run_counting
    from tests.zoo import make_feeds, zoo_model

    base = os.path.abspath(args.baseline)
    print(f"baseline {base} vs this tree {ROOT}; x86: batch 1, {args.threads} threads, median of {args.reps} "
          f"interleaved runs on {os.cpu_count()} CPUs ({cpu_name()})")
    work = tempfile.mkdtemp(prefix="pdc-versions-")
    print(f"{'model':<22}{'baseline ms':>13}{'this ms':>10}{'this/base':>11}")
    for name in [m for m in args.models.split(",") if m]:
        path = zoo_model(name)
        feeds = make_feeds(path)
        mods = {}
        for key, tree in (("baseline", base), ("this", ROOT)):
            mods[key] = Module(compile_with(tree, path, os.path.join(work, f"{name}-{key}"), "x86", args.threads,
                                               feeds))
        ms = time_interleaved({k: (lambda m: lambda: m.run(feeds))(m) for k, m in mods.items()}, args.reps)
        print(f"{name:<22}{ms['baseline']:>13.3f}{ms['this']:>10.3f}{ms['this'] / ms['baseline']:>11.3f}", flush=True)
    if args.arm_models:
        print(f"\n{'arm64 model':<22}{'baseline insns':>16}{'this insns':>14}{'this/base':>11}")
        for entry in args.arm_models.split(","):
            path = entry if entry.endswith(".onnx") else zoo_model(entry)
            name = os.path.basename(entry)[:-5] if entry.endswith(".onnx") else entry
            feeds = make_feeds(path)
            counts = {}
            for key, tree in (("baseline", base), ("this", ROOT)):
                folder = compile_with(tree, path, os.path.join(work, f"{name}-arm-{key}"), "arm64", 1, feeds)
                counts[key] = run_counting(folder, feeds)[1]
            print(f"{name:<22}{counts['baseline']:>16,}{counts['this']:>14,}{counts['this'] / counts['baseline']:>11.4f}",
                  flush=True)
    if args.threads_sweep:
        sweep = [int(t) for t in args.threads_sweep.split(",")]
        print(f"\nthis tree, --threads {'/'.join(map(str, sweep))} (bundle compiled and run with that many threads):")
        print(f"{'model':<22}" + "".join(f"{f'{t} thr ms':>11}" for t in sweep) + "  outputs")
        for name in [m for m in args.sweep_models.split(",") if m]:
            path = zoo_model(name)
            feeds = make_feeds(path)
            mods = {t: Module(compile_with(ROOT, path, os.path.join(work, f"{name}-t{t}"), "x86", t, feeds))
                    for t in sweep}
            outs = {t: m.run(feeds) for t, m in mods.items()}
            same = all(np.array_equal(outs[t][k], outs[sweep[0]][k]) for t in sweep for k in outs[t])
            ms = time_interleaved({t: (lambda m: lambda: m.run(feeds))(m) for t, m in mods.items()}, args.reps)
            print(f"{name:<22}" + "".join(f"{ms[t]:>11.3f}" for t in sweep) + ("  identical" if same else "  DIFFER"),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
