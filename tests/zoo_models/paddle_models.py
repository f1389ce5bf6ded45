"""Paddle zoo models: built with random weights (paddle.seed(0)) and exported with paddle.onnx.export.

Run as a script, never imported by the test process (importing paddle takes seconds):

    python paddle_models.py JOBS.json RESULTS.json

JOBS.json is a list of {"name", "builder", "params", "out_dir"}; each job writes
out_dir/model.onnx. RESULTS.json gets {name: {"ok", "seconds", "error"}}; one failing
export does not stop the others. tests/zoo.py hashes this file's source into the cache key.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

os.environ.setdefault("GLOG_minloglevel", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # exports are CPU work; keep GPUs out of it

import numpy as np  # noqa: E402
import paddle  # noqa: E402
from paddle.nn.layer.norm import _BatchNormBase  # noqa: E402

MODEL_PREFIX = "model"  # paddle.onnx.export appends ".onnx"
LOG_MARK = "### zoo model: "
CENTERING = 0.5  # batch norms subtract this fraction of the measured mean (see randomize)


class _RnnOutput(paddle.nn.Layer):
    """Wraps paddle.nn.LSTM / GRU so the model has one input and returns only the sequence output."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        y, _ = self.rnn(x)
        return y


def build_vision(p):
    return getattr(paddle.vision.models, p["arch"])()


def build_transformer_encoder(p):
    layer = paddle.nn.TransformerEncoderLayer(d_model=p["d_model"], nhead=p["nhead"],
                                              dim_feedforward=p["dim_feedforward"], dropout=0)
    return paddle.nn.TransformerEncoder(layer, p["num_layers"])


def build_rnn(p):
    cls = {"lstm": paddle.nn.LSTM, "gru": paddle.nn.GRU}[p["cell"]]
    return _RnnOutput(cls(input_size=p["input_size"], hidden_size=p["hidden_size"], num_layers=p["num_layers"],
                          direction=p["direction"]))


BUILDERS = {"vision": build_vision, "transformer_encoder": build_transformer_encoder, "rnn": build_rnn}


def randomize(model, p) -> None:
    """Makes a freshly initialized model a stronger test.

    Fresh layers have zero biases and identity norm layers (scale 1, shift 0, mean 0, variance 1),
    which would hide mistakes in how those are handled, and with random weights the activations
    shrink or grow layer after layer. So: random biases and norm scales, then batch-norm statistics
    derived from a random batch (one train-mode forward, momentum 0), which keep activations near
    unit scale and make every batch norm a real affine map.
    """
    rng = np.random.default_rng(p.get("seed", 0))
    for name, param in model.named_parameters():
        if "bias" in name.rsplit(".", 1)[-1]:
            param.set_value(rng.normal(0.0, 0.1, param.shape).astype("float32"))
    layers = model.sublayers(include_self=True)
    for layer in layers:
        if isinstance(layer, (_BatchNormBase, paddle.nn.LayerNorm)) and layer.weight is not None:
            layer.weight.set_value(rng.uniform(0.5, 1.5, layer.weight.shape).astype("float32"))
    bns = [layer for layer in layers if isinstance(layer, _BatchNormBase)]
    if bns:
        for bn in bns:
            bn._momentum = 0.0  # running stats := this batch's stats
        shape = [2 if d is None else d for d in p["input_shape"]]
        shape[0] = max(shape[0], 2)
        model.train()
        with paddle.no_grad():
            model(paddle.to_tensor(rng.standard_normal(shape).astype("float32")))
        for bn in bns:
            bn._momentum = 0.9
            # Centering on the full batch mean would amplify relative rounding error layer after layer
            # (ReLU outputs are mostly mean); half the mean, with the variance taken around it, keeps
            # activations at unit scale but the network well conditioned. The floor is for dead channels.
            mean, var = bn._mean.numpy(), bn._variance.numpy()
            bn._mean.set_value(CENTERING * mean)
            bn._variance.set_value(np.maximum(var + ((1 - CENTERING) * mean) ** 2, 0.01).astype("float32"))


def export(job) -> None:
    p = job["params"]
    paddle.seed(p.get("seed", 0))  # per model, so weights do not depend on which batch it was built in
    model = BUILDERS[job["builder"]](p)
    randomize(model, p)
    model.eval()
    spec = paddle.static.InputSpec(p["input_shape"], "float32", "x")
    paddle.onnx.export(model, os.path.join(job["out_dir"], MODEL_PREFIX), input_spec=[spec],
                       opset_version=p["opset"])
    if not os.path.isfile(os.path.join(job["out_dir"], MODEL_PREFIX + ".onnx")):
        raise RuntimeError("paddle.onnx.export wrote no model file")
    if p.get("dim_names"):
        rename_dims(os.path.join(job["out_dir"], MODEL_PREFIX + ".onnx"), p["dim_names"])


def rename_dims(path: str, names: list) -> None:
    """Names the symbolic dims of the model's first input (the exporter's DynamicDimension_k), in
    order, everywhere they appear in the graph's declared types."""
    import onnx
    m = onnx.load(path)
    found = [d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim if d.dim_param]
    mapping = dict(zip(found, names))
    for vi in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in mapping:
                d.dim_param = mapping[d.dim_param]
    onnx.save(m, path)


def main(jobs_path: str, results_path: str) -> None:
    with open(jobs_path) as f:
        jobs = json.load(f)
    results = {}
    for job in jobs:
        print(f"{LOG_MARK}{job['name']}", file=sys.stderr, flush=True)  # splits the log per model
        t0 = time.perf_counter()
        try:
            export(job)
            results[job["name"]] = {"ok": True, "seconds": time.perf_counter() - t0}
        except Exception as e:
            traceback.print_exc()
            sys.stderr.flush()
            results[job["name"]] = {"ok": False, "seconds": time.perf_counter() - t0,
                                    "error": f"{type(e).__name__}: {e}"}
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
