"""`pdc check` compares with the framework a model came from: ONNX Runtime or Paddle Inference."""
import os
import subprocess
import sys

import pytest

import paddle_models


def pdc(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pdc.cli", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def lenet(paddle_installed):
    return paddle_models.ensure_models(["lenet"], "pir")["lenet"]


def test_check_paddle_model_against_paddle_inference(lenet):
    r = pdc("check", lenet, "--shape", "N=1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "vs Paddle Inference" in r.stdout and r.stdout.rstrip().endswith("PASS")


def test_check_says_when_paddle_is_missing(lenet, tmp_path):
    (tmp_path / "paddle.py").write_text("raise ImportError('no paddle here')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    r = pdc("check", lenet, "--shape", "N=1", "--target", "reference", env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == ("pdc: error: pdc check compares a Paddle model with Paddle Inference, which is not "
                                "installed (pip install paddlepaddle)")
