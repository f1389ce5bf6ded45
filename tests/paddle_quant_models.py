"""Paddle models quantized with Paddle's own API, for tests/test_paddle_quant.py; generated with paddle
itself and cached under .cache/paddle_quant/ at the repo root.

Importing this module does not import paddle: `ensure_models(fmt)` runs this file as a script in a
subprocess (FLAGS_enable_pir_api must be set before paddle is imported), which writes two models
into one folder per format, keyed by a hash of this file, the format and the paddle version:

- cnn/: a small CNN (conv + relu + max pool, conv + relu + max pool, flatten, linear + relu, linear;
  seeded weights, random biases) quantized with paddle.quantization.PTQ (AbsmaxObserver for
  activations and weights) on 4 seeded calibration batches, `convert`ed and saved with
  paddle.jit.save;
- probe/: three quantize_linear / dequantize_linear pairs (paddle.nn.quant.format.LinearQuanter /
  LinearDequanter, as `convert` makes them) on one input holding rounding ties and values past the
  range: per tensor with scale 127 (step 1) and 12.7 (step 0.1), per axis 0 with scales [127, 254].

Each folder has io.npz: `in_x`, `eager_<k>` (the converted model run eagerly) and, when Paddle
Inference ran the saved files, `paddle_<k>` (MKL-DNN and IR optimizations off); spec.json records
Paddle Inference's error otherwise. Paddle 3.3.1 exports the PIR form only with a static batch (its
quantize op allocates a persistable buffer of the input's shape), so both formats use BATCH.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "paddle_quant")
FORMATS = ("pir", "legacy")
MODELS = ("cnn", "probe")
BATCH = 16


def model_dir(fmt: str) -> str:
    with open(__file__, "rb") as f:
        src = f.read()
    try:
        ver = importlib.metadata.version("paddlepaddle")
    except importlib.metadata.PackageNotFoundError:
        ver = "none"
    key = hashlib.sha256(src + f"|{fmt}|{ver}".encode()).hexdigest()[:12]
    return os.path.join(CACHE, f"{fmt}-{key}")


def ensure_models(fmt: str) -> str:
    """The folder of the format's models (generated when missing)."""
    os.makedirs(CACHE, exist_ok=True)
    out = model_dir(fmt)
    with open(os.path.join(CACHE, f".lock-{fmt}"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(os.path.isfile(os.path.join(out, m, "io.npz")) for m in MODELS):
            env = dict(os.environ)
            env["FLAGS_enable_pir_api"] = "0" if fmt == "legacy" else "1"
            env.setdefault("CUDA_VISIBLE_DEVICES", "")
            tmp = tempfile.mkdtemp(dir=CACHE, prefix=".tmp-")
            r = subprocess.run([sys.executable, os.path.abspath(__file__), fmt, tmp], env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise RuntimeError(f"generating the quantized Paddle models ({fmt}) failed:\n"
                                   f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
            for old in os.listdir(CACHE):  # older generator versions of this format
                if old.startswith(f"{fmt}-"):
                    shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)
            os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------
# Everything below runs only in the generator subprocess.

def _generate(fmt: str, out: str) -> None:
    import numpy as np
    import paddle
    import paddle.inference as pinf
    import paddle.nn as nn
    import paddle.nn.functional as F
    from paddle.nn.quant.format import LinearDequanter, LinearQuanter
    from paddle.quantization import PTQ, QuantConfig
    from paddle.quantization.observers import AbsmaxObserver

    paddle.set_device("cpu")

    class QuantCNN(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2D(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2D(8, 8, 3, padding=1)
            self.fc1 = nn.Linear(8 * 4 * 4, 16)
            self.fc2 = nn.Linear(16, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
            return self.fc2(F.relu(self.fc1(paddle.flatten(x, 1))))

    class Probe(nn.Layer):
        def __init__(self):
            super().__init__()
            specs = [(np.float32(127.0), None), (np.float32(12.7), None), (np.array([127.0, 254.0], np.float32), 0)]
            self.pairs = nn.LayerList()
            for s, axis in specs:
                z = np.zeros_like(s)
                self.pairs.append(nn.LayerList([LinearQuanter(s, z, quant_axis=axis),
                                                LinearDequanter(s, z, quant_axis=axis)]))

        def forward(self, x):
            outs = []
            for q, dq in self.pairs:
                codes = q(x)
                outs += [codes, dq(codes)]
            return tuple(outs)

    def run_inference(prefix, feeds):
        model_file = prefix + (".json" if fmt == "pir" else ".pdmodel")
        config = pinf.Config(model_file, prefix + ".pdiparams")
        config.disable_gpu()
        config.switch_ir_optim(False)
        config.disable_mkldnn()
        config.disable_glog_info()
        predictor = pinf.create_predictor(config)
        for n in predictor.get_input_names():
            predictor.get_input_handle(n).copy_from_cpu(feeds[n])
        predictor.run()
        return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]

    def save(name, layer, x):
        folder = os.path.join(out, name)
        prefix = os.path.join(folder, "inference")
        with paddle.no_grad():
            eager = layer(paddle.to_tensor(x))
        eager = [t.numpy() for t in (eager if isinstance(eager, (list, tuple)) else [eager])]
        paddle.jit.save(layer, prefix, input_spec=[paddle.static.InputSpec(list(x.shape), "float32", "x")])
        arrays = {"in_x": x, **{f"eager_{k}": a for k, a in enumerate(eager)}}
        spec = dict(name=name, format=fmt, paddle=paddle.__version__, paddle_inference_error=None)
        try:
            arrays.update({f"paddle_{k}": np.asarray(a) for k, a in enumerate(run_inference(prefix, {"x": x}))})
        except Exception as e:  # recorded: Paddle 3.3.1 cannot run the PIR form of the quantized CNN
            spec["paddle_inference_error"] = f"{type(e).__name__}: {str(e).strip()[-600:]}"
        np.savez(os.path.join(folder, "io.npz"), **arrays)
        with open(os.path.join(folder, "spec.json"), "w") as f:
            json.dump(spec, f)

    # ---- the quantized CNN
    paddle.seed(1234)
    rng = np.random.default_rng(1234)
    model = QuantCNN()
    for layer in (model.conv1, model.conv2, model.fc1, model.fc2):  # Paddle initializes biases to 0
        layer.bias.set_value(rng.uniform(-0.2, 0.2, layer.bias.shape).astype("float32"))
    model.eval()
    ptq = PTQ(QuantConfig(activation=AbsmaxObserver(quant_bits=8), weight=AbsmaxObserver(quant_bits=8)))
    observed = ptq.quantize(model, inplace=False)
    with paddle.no_grad():
        for _ in range(4):
            observed(paddle.to_tensor(rng.standard_normal((8, 3, 16, 16)).astype("float32")))
    converted = ptq.convert(observed, inplace=False)
    converted.eval()
    save("cnn", converted, rng.standard_normal((BATCH, 3, 16, 16)).astype("float32"))

    # ---- the probe: ties at step 1 and step 0.1, saturation both ways, per-axis scales
    row = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.4, 127.6, 200.0, -127.5, -128.4, -128.6, -300.0,
                    3.2, -3.7, 0.05, 0.15, 0.25, -0.05, -0.15, -0.25, 12.65, -12.75, 7.45, -7.55], np.float32)
    row = np.concatenate([row, (rng.standard_normal(6) * 60).astype(np.float32)])
    probe = Probe()
    probe.eval()
    save("probe", probe, np.stack([row, row * 2]).astype(np.float32))


if __name__ == "__main__":
    _generate(sys.argv[1], sys.argv[2])
