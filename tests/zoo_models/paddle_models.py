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

import paddle  # noqa: E402

MODEL_PREFIX = "model"  # paddle.onnx.export appends ".onnx"
LOG_MARK = "### zoo model: "


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


def export(job) -> None:
    p = job["params"]
    paddle.seed(p.get("seed", 0))  # per model, so weights do not depend on which batch it was built in
    model = BUILDERS[job["builder"]](p)
    model.eval()
    spec = paddle.static.InputSpec(p["input_shape"], "float32", "x")
    paddle.onnx.export(model, os.path.join(job["out_dir"], MODEL_PREFIX), input_spec=[spec],
                       opset_version=p["opset"])
    if not os.path.isfile(os.path.join(job["out_dir"], MODEL_PREFIX + ".onnx")):
        raise RuntimeError("paddle.onnx.export wrote no model file")


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
