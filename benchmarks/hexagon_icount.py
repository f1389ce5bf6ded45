"""Instructions the Hexagon DSP executes for int8 models: the HVX build against the scalar build, under
qemu-hexagon with pdc's instruction-count plugin (qemu's TCG plugin; counts the whole process: reading the
inputs, the model, writing the outputs).

    python benchmarks/hexagon_icount.py [--model NAME ...] [--target hexagon-v66] [--calib 8] [--seed 0]

For each model (default: the zoo's digits_cnn, mobilenet_v2 and resnet18): the graph quantized by
pdc.quantize.quantize_model on `--calib` seeded standard-normal samples; compiled twice for the target:
the HVX build (the hexagon kernel family, -mhvx) and the scalar build (portable C kernels only, no
-mhvx); both run once on the same input, whose outputs must be equal (and the integer reference's);
printed: each build's instruction count and the ratio HVX / scalar.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="zoo model name (repeatable)")
    ap.add_argument("--target", default="hexagon-v66", help="hexagon-v66 or hexagon-v67 (the ones qemu runs)")
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from zoo import zoo_model
    from pdc.compiler import compile_details
    from pdc.frontend import load_model
    from pdc.ir.interpreter import run_graph
    from pdc.quantize import quantize_model
    from pdc.targets import get_target
    from pdc.targets.hexagon import run_samples
    target = get_target(args.target)
    print(f"{'model':<16} {'HVX build':>15} {'scalar build':>15} {'HVX / scalar':>13}")
    for name in args.model or ["digits_cnn", "mobilenet_v2", "resnet18"]:
        g = load_model(zoo_model(name))
        rng = np.random.default_rng(args.seed)
        cal = {v.name: rng.standard_normal((args.calib, *v.type.shape)).astype(np.float32) for v in g.inputs}
        qg, _ = quantize_model(g, cal)
        x = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
        want = run_graph(qg, x)
        counts = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label, tgt in (("hvx", target), ("scalar", dataclasses.replace(target, hvx=False))):
                c = compile_details(qg, os.path.join(tmp, label), target=tgt)
                outputs, counts[label] = run_samples(c.folder, c.manifest, [x], counting=True)
                for k, v in want.items():
                    if not np.array_equal(outputs[k], v):
                        print(f"{name}: the {label} build's {k} differs from the integer reference")
                        return 1
        print(f"{name:<16} {counts['hvx']:>15,} {counts['scalar']:>15,} {counts['hvx'] / counts['scalar']:>12.1%}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
