"""pdc's FPGA design of the jet-tagging MLP (the zoo's jet_mlp: 16-64-32-32-5, ReLU) side by side with
hls4ml's, built with the same types and reuse factor, both in C simulation on the same test inputs.

    python benchmarks/fpga_hls4ml.py [--precision auto | 'ap_fixed<16,6>'] [--reuse 1] [--samples 1000]
                                     [--hls4ml-python PYTHON]

pdc compiles the model for fpga-hls (types chosen from the training split, or the one given); its weights
as pdc rounds them and each layer's weight / bias / accumulator / result types go to hls4ml (by layer name),
which builds and runs its own C simulation (benchmarks/hls4ml_mlp.py, under --hls4ml-python: a Python with
hls4ml and its dependencies, `pip install hls4ml`). Printed: whether the two outputs are identical, both
accuracies, pdc's resource / latency estimate, and beside it what hls4ml reports without a synthesis tool
(each layer's multiplier limit, which its latency strategy gives HLS as the number of multipliers).
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
sys.path.insert(0, os.path.join(ROOT, "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", default="auto", help="'auto' (from calibration) or a type, e.g. 'ap_fixed<16,6>'")
    ap.add_argument("--reuse", type=int, default=1)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--hls4ml-python", default=sys.executable)
    args = ap.parse_args()
    from zoo import zoo_model
    from pdc.codegen.hls.renderer import typed_design
    from pdc.compiler import compile_details
    from pdc.targets import get_target
    from pdc.targets.fpga import run_samples
    path = zoo_model("jet_mlp")
    data = np.load(os.path.join(os.path.dirname(path), "data.npz"))
    x, y = data["x_test"][:args.samples], data["y_test"][:args.samples]
    auto = args.precision == "auto"
    options = dict(calibration=data["x_train"][:, None]) if auto else dict(precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        c = compile_details(path, os.path.join(tmp, "pdc"), target="fpga-hls", reuse_factor=args.reuse, **options)
        ours = np.concatenate([o["logits"] for o in run_samples(c.folder, c.manifest, [{"x": xi[None]} for xi in x])])
        target = get_target("fpga-hls").with_fixed_point(options.get("precision"), options.get("calibration"),
                                                         args.reuse)
        design, _ = typed_design(c.graph, target)
        spec = {"n_layers": len(design.layers), "input_t": str(design.inputs[0].type), "reuse": args.reuse, "x": x}
        for i, layer in enumerate(design.layers):
            assert layer.kind == "dense" and layer.activation in ("relu", "none"), layer.kind
            w_t, b_t = layer.weight_t, layer.bias_t
            spec.update({f"w{i}": w_t.values(w_t.from_float(layer.weights)), f"b{i}": b_t.values(b_t.from_float(layer.bias)),
                         f"relu{i}": int(layer.activation == "relu"), f"weight{i}": str(w_t), f"bias{i}": str(b_t),
                         f"accum{i}": str(layer.acc_t), f"result{i}": str(layer.outputs[0].type)})
        np.savez(os.path.join(tmp, "spec.npz"), **spec)
        r = subprocess.run([args.hls4ml_python, os.path.join(ROOT, "benchmarks", "hls4ml_mlp.py"),
                            os.path.join(tmp, "spec.npz"), os.path.join(tmp, "out.npz"), os.path.join(tmp, "h")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"hls4ml failed (run with a Python that has hls4ml and its dependencies: --hls4ml-python):\n"
                  f"{r.stderr[-2000:]}")
            return 1
        out = np.load(os.path.join(tmp, "out.npz"))
        theirs, report = out["y"], json.loads(str(out["report"][()]))
    same = np.array_equal(ours.astype(np.float64), theirs)
    print(f"jet_mlp, {len(x)} test samples, types {'chosen by pdc' if auto else args.precision}, "
          f"reuse factor {args.reuse}, hls4ml {report['hls4ml']}")
    for i, layer in enumerate(design.layers):
        print(f"  fc{i}: in {layer.inputs[0].type}, weights {layer.weight_t}, bias {layer.bias_t}, "
              f"accum {layer.acc_t}, result {layer.outputs[0].type}")
    print(f"outputs identical: {same} (largest difference {np.abs(ours - theirs).max():g})")
    print(f"accuracy: pdc {(ours.argmax(1) == y).mean():.4f}, hls4ml {(theirs.argmax(1) == y).mean():.4f}")
    est = c.manifest["fpga"]["estimate"]
    print(f"\n{'layer':<8} {'pdc DSP':>8} {'pdc LUT':>9} {'pdc FF':>9} {'pdc II':>7} {'pdc latency':>12} "
          f"{'hls4ml multipliers':>19}")
    limits = report["multiplier_limit"]
    for i, e in enumerate(est["layers"]):
        print(f"fc{i:<6} {e['dsp']:>8,} {e['lut']:>9,} {e['ff']:>9,} {e['interval_cycles']:>7,} "
              f"{e['latency_cycles']:>12,} {limits[i] if i < len(limits) else '-':>19}")
    t = est["total"]
    print(f"{'total':<8} {t['dsp']:>8,} {t['lut']:>9,} {t['ff']:>9,} {t['interval_cycles']:>7,} "
          f"{t['latency_cycles']:>12,} {sum(limits):>19,}")
    print(f"pdc: {t['latency_ns']:,} ns at {est['clock_mhz']:g} MHz on {est['part']} (its documented model); "
          f"hls4ml synthesis report: {report['synthesis'] or 'none (no synthesis tool ran)'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
