"""int8 accuracy of pdc's post-training quantization next to ONNX Runtime's, on the zoo models.

For each model: 64 seeded calibration samples (standard normal inputs, as the zoo's random-weight
models take), pdc's quantizer (`pdc.quantize.quantize_model`) and ONNX Runtime's `quantize_static`
(QDQ, per-channel int8 weights, int8 activations, MinMax) on the same samples; then 256 other
samples through the float model and both int8 models, compiled for x86 (pdc) or run by ONNX
Runtime. Prints, per model, the top-1 agreement with the float model's class and the mean / min
cosine similarity of the logits.

    python benchmarks/int8_accuracy.py [--models resnet18,mobilenet_v2,...] [--calibration 64] [--samples 256]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

MODELS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "transformer_encoder"]


def zoo_path(name: str) -> str:
    """The zoo model's current entry (tests/zoo.py: its key hashes the generator and its
    parameters, so an older entry left in the cache is never taken), generated if missing."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from zoo import ZooError, zoo_model
    try:
        return zoo_model(name)
    except ZooError as e:
        sys.exit(f"{name}: {e}")


def feeds(graph, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs} for _ in range(n)]


def model_sets(names: str, calibration: int, samples: int):
    """Per comma-separated zoo model: (name, path, graph, calibration feeds (seed 0), other feeds (seed 1))."""
    from pdc.frontend import load_model
    for name in names.split(","):
        path = zoo_path(name)
        graph = load_model(path)
        yield name, path, graph, feeds(graph, calibration, 0), feeds(graph, samples, 1)


def ort_qdq(path: str, calibration: list[dict], folder: str, activations: str = "int8") -> str:
    """The QDQ model ONNX Runtime's quantize_static writes from these samples (per-channel int8
    weights, int8 or uint8 activations, MinMax), saved in folder; its path."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            return next(self.items, None)

        def rewind(self):  # newer onnxruntime versions call it
            pass

    # ONNX Runtime's recipe: pre-process first (shape inference, graph optimizations: batch norms
    # folded into the convolutions), else the QDQ pairs land around unfused float batch norms
    pre = os.path.join(folder, "model_pre.onnx")
    if not os.path.exists(pre):
        quant_pre_process(path, pre)
    qdq = os.path.join(folder, f"model_qdq_{activations}.onnx")
    act = QuantType.QInt8 if activations == "int8" else QuantType.QUInt8
    quantize_static(pre, qdq, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=act, weight_type=QuantType.QInt8)
    return qdq


def ort_int8(path: str, calibration: list[dict], folder: str):
    import onnxruntime as ort
    sess = ort.InferenceSession(ort_qdq(path, calibration, folder), providers=["CPUExecutionProvider"])
    return lambda f: sess.run(None, f)[0]


def compare(reference: list, got: list) -> tuple[float, float, float]:
    agree, cos = [], []
    for a, b in zip(reference, got):
        a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
        agree.append(a.argmax() == b.argmax())
        cos.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.mean(agree)), float(np.mean(cos)), float(np.min(cos))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--calibration", type=int, default=64)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--method", default="mse")
    args = ap.parse_args()
    import pdc
    from pdc.quantize import Options, quantize
    print(f"{'model':<22} {'engine':<10} {'top-1 agreement':>16} {'cosine mean':>12} {'cosine min':>11}")
    for name, path, graph, calibration, samples in model_sets(args.models, args.calibration, args.samples):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            qgraph, _ = quantize(graph, calibration, Options(method=args.method))
            seconds = time.perf_counter() - t0
            fp32 = pdc.compile(graph, target="x86", out_dir=os.path.join(tmp, "fp32"))
            int8 = pdc.compile(qgraph, target="x86", out_dir=os.path.join(tmp, "int8"))
            first = lambda out: next(iter(out.values()))  # noqa: E731
            reference = [first(fp32.run(f)) for f in samples]
            rows = [("pdc int8", [first(int8.run(f)) for f in samples])]
            try:
                run = ort_int8(path, calibration, tmp)
                rows.append(("ORT int8", [run(f) for f in samples]))
            except Exception as e:  # the comparison is optional: ONNX Runtime's quantizer may refuse a model
                print(f"{name}: ONNX Runtime's quantize_static failed: {type(e).__name__}: {e}", file=sys.stderr)
            for engine, got in rows:
                agree, cos_mean, cos_min = compare(reference, got)
                print(f"{name:<22} {engine:<10} {agree:>16.4f} {cos_mean:>12.6f} {cos_min:>11.6f}")
        print(f"{name:<22} (pdc calibration on {args.calibration} samples: {seconds:.1f} s)")


if __name__ == "__main__":
    main()
