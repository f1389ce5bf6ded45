"""The framework a model came from, run as the reference `pdc check` compares against.

ONNX models run on ONNX Runtime; Paddle models on Paddle Inference, in a subprocess (pdc never
imports paddle itself; it is optional and only needed for this comparison).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

from .ir.errors import PdcError

PADDLE_SCRIPT = r"""
import os, sys
import numpy as np
import paddle.inference as pi
model, params, feeds_path, out_path = sys.argv[1:5]
config = pi.Config(model, params)
config.disable_gpu()
config.switch_ir_optim(False)
if hasattr(config, "disable_mkldnn"):
    config.disable_mkldnn()
predictor = pi.create_predictor(config)
feeds = np.load(feeds_path)
for name in predictor.get_input_names():
    predictor.get_input_handle(name).copy_from_cpu(feeds[name])
predictor.run()
np.savez(out_path, **{n: predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()})
"""


def oracle_name(model_path: str) -> str:
    from .frontend.paddle import is_paddle_path
    return "Paddle Inference" if is_paddle_path(model_path) else "ONNX Runtime"


def run_oracle(model_path: str, feeds: dict) -> dict:
    from .frontend.paddle import is_paddle_path
    if is_paddle_path(model_path):
        return run_paddle(model_path, feeds)
    return run_onnxruntime(model_path, feeds)


def run_onnxruntime(model_path: str, feeds: dict) -> dict:
    try:
        import onnxruntime as ort
    except ImportError:
        raise PdcError("pdc check compares with ONNX Runtime, which is not installed (pip install onnxruntime)") from None
    try:
        sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))
    except Exception as e:
        raise PdcError(f"{model_path}: ONNX Runtime could not run the model: {str(e).splitlines()[0]}") from None


def run_paddle(model_path: str, feeds: dict) -> dict:
    from .frontend.paddle import resolve
    model, params, _fmt = resolve(model_path)
    probe = subprocess.run([sys.executable, "-c", "import paddle.inference"], capture_output=True)
    if probe.returncode != 0:
        raise PdcError("pdc check compares a Paddle model with Paddle Inference, which is not installed "
                       "(pip install paddlepaddle)")
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = os.path.join(tmp, "feeds.npz"), os.path.join(tmp, "out.npz")
        np.savez(fin, **feeds)
        env = dict(os.environ, GLOG_minloglevel="3", FLAGS_call_stack_level="0")
        r = subprocess.run([sys.executable, "-c", PADDLE_SCRIPT, model, params, fin, fout], capture_output=True,
                           text=True, env=env)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise PdcError(f"{model_path}: Paddle Inference could not run the model: {last[:300]}")
        with np.load(fout) as z:
            return {k: z[k] for k in z.files}
