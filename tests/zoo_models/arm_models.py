"""Small Paddle models for microcontroller tests: LeNet (random weights) and a CNN trained on
scikit-learn's 8x8 digits (sklearn.datasets.load_digits), exported with paddle.onnx.export.

Run as a script, like paddle_models.py (importing paddle takes seconds):

    python arm_models.py JOBS.json RESULTS.json

JOBS.json is a list of {"name", "builder", "params", "out_dir"}; each job writes
out_dir/model.onnx, and the digits job also out_dir/digits_test.npz: the held-back images
("x", float32 N x 1 x 8 x 8, scaled to [0, 1]) and their labels ("y"), with the accuracy Paddle
measured on them ("paddle_accuracy"). RESULTS.json gets {name: {"ok", "seconds", "error"}}.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

os.environ.setdefault("GLOG_minloglevel", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import paddle  # noqa: E402

MODEL_PREFIX = "model"  # paddle.onnx.export appends ".onnx"
LOG_MARK = "### zoo model: "
DIGITS_TEST = "digits_test.npz"


def build_lenet(p, out_dir):
    """paddle.vision.models.LeNet with random weights and random (non-zero) biases."""
    model = paddle.vision.models.LeNet(num_classes=p.get("num_classes", 10))
    rng = np.random.default_rng(p.get("seed", 0))
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            param.set_value(rng.normal(0.0, 0.1, param.shape).astype("float32"))
    return model


class DigitsCNN(paddle.nn.Layer):
    """8x8 digits: two 3x3 conv + ReLU + 2x2 max-pool stages, then one linear layer."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.features = paddle.nn.Sequential(
            paddle.nn.Conv2D(1, c1, 3, padding=1), paddle.nn.ReLU(), paddle.nn.MaxPool2D(2),
            paddle.nn.Conv2D(c1, c2, 3, padding=1), paddle.nn.ReLU(), paddle.nn.MaxPool2D(2))
        self.fc = paddle.nn.Linear(c2 * 4, 10)

    def forward(self, x):
        return self.fc(paddle.flatten(self.features(x), 1))


def build_digits_cnn(p, out_dir):
    """Trains DigitsCNN on load_digits (a seeded split); saves the held-back part for the tests."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[:, None]
    y = digits.target.astype("int64")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=p.get("test_size", 0.2), random_state=p.get("seed", 0),
                                              stratify=y)
    model = DigitsCNN(p.get("c1", 8), p.get("c2", 16))
    opt = paddle.optimizer.Adam(learning_rate=p.get("lr", 0.01), parameters=model.parameters())
    loss_fn = paddle.nn.CrossEntropyLoss()
    rng = np.random.default_rng(p.get("seed", 0))
    batch = p.get("batch", 64)
    model.train()
    for _ in range(p.get("epochs", 15)):
        order = rng.permutation(len(x_tr))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = loss_fn(model(paddle.to_tensor(x_tr[idx])), paddle.to_tensor(y_tr[idx]))
            loss.backward()
            opt.step()
            opt.clear_grad()
    model.eval()
    with paddle.no_grad():
        pred = model(paddle.to_tensor(x_te)).numpy().argmax(1)
    np.savez(os.path.join(out_dir, DIGITS_TEST), x=x_te, y=y_te, paddle_accuracy=np.float64((pred == y_te).mean()))
    return model


BUILDERS = {"lenet": build_lenet, "digits_cnn": build_digits_cnn}


def export(job) -> None:
    p = job["params"]
    paddle.seed(p.get("seed", 0))
    model = BUILDERS[job["builder"]](p, job["out_dir"])
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
        print(f"{LOG_MARK}{job['name']}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            export(job)
            results[job["name"]] = {"ok": True, "seconds": time.perf_counter() - t0}
        except Exception as e:  # one failing model must not stop the others
            traceback.print_exc()
            results[job["name"]] = {"ok": False, "seconds": time.perf_counter() - t0,
                                    "error": f"{type(e).__name__}: {e}"}
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
