"""ONNX Runtime's own int8 models through pdc: how close pdc's outputs come to ONNX Runtime's.

For each zoo model and activation type: ONNX Runtime's `quantize_static` (QDQ, per-channel int8
weights, MinMax) on 64 seeded calibration samples, the QDQ model imported by pdc (`fold-qdq` makes
it integer ops) and compiled for x86, then N other samples through pdc and ONNX Runtime (with its
integer kernels for int8 activations too, which on x86 it uses only when asked). Prints,
per model, the largest difference of an output element in quantization steps of the model's
output (the scale of its last DequantizeLinear) and the share of output elements that are equal.

    python benchmarks/int8_ort_match.py [--models resnet18,...] [--activations uint8,int8] [--samples 64]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from int8_accuracy import MODELS, model_sets, ort_qdq  # noqa: E402


def output_step(qdq_path: str) -> float:
    """The scale of the DequantizeLinear that gives the model's (first) output."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(qdq_path)
    out = model.graph.output[0].name
    inits = {t.name: t for t in model.graph.initializer}
    node = next(n for n in model.graph.node if out in n.output)
    if node.op_type != "DequantizeLinear":
        sys.exit(f"{qdq_path}: the output comes from {node.op_type}, not a DequantizeLinear")
    return float(numpy_helper.to_array(inits[node.input[1]]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--activations", default="uint8,int8")
    ap.add_argument("--calibration", type=int, default=64)
    ap.add_argument("--samples", type=int, default=64)
    args = ap.parse_args()
    import onnxruntime as ort
    import pdc
    print(f"{'model':<22} {'activations':<12} {'max steps':>10} {'equal share':>12}")
    for name, path, _, calibration, samples in model_sets(args.models, args.calibration, args.samples):
        for act in args.activations.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                qdq = ort_qdq(path, calibration, tmp, act)
                options = ort.SessionOptions()
                # ONNX Runtime runs int8-activation QDQ convolutions and matmuls through its integer
                # kernels only on ARM unless asked; elsewhere it dequantizes and runs them in float
                options.add_session_config_entry("session.qdqisint8allowed", "1")
                sess = ort.InferenceSession(qdq, options, providers=["CPUExecutionProvider"])
                module = pdc.compile(qdq, target="x86", out_dir=os.path.join(tmp, "pdc"))
                step = output_step(qdq)
                steps, equal = [], []
                for f in samples:
                    want, got = sess.run(None, f)[0], next(iter(module.run(f).values()))
                    diff = np.abs(want.astype(np.float64) - got.astype(np.float64)) / step
                    steps.append(float(np.round(diff.max(), 3)))
                    equal.append(float(np.mean(want == got)))
            print(f"{name:<22} {act:<12} {max(steps):>10.3g} {np.mean(equal):>12.4f}", flush=True)


if __name__ == "__main__":
    main()
