"""The generated code and the runtime run the zoo cleanly under AddressSanitizer and UBSan."""
import json
import os

import numpy as np
import pytest

from pdc.compiler import compile_bundle
from pdc.harness import build_harness, run_harness
from pdc.targets.x86 import c_compiler
from tolerances import assert_zoo_close
from zoo import PADDLE_MODELS, make_feeds, run_onnxruntime

SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")
MODELS = ["tiny_cnn", "mlp", "squeezenet1_1", "mobilenet_v2", "transformer_encoder", "lstm"]


@pytest.mark.parametrize("name", [pytest.param(m, marks=pytest.mark.zoo) if m in PADDLE_MODELS else m for m in MODELS])
def test_zoo_under_sanitizers(name, zoo, tmp_path):
    path = zoo(name)
    feeds = make_feeds(path)
    folder = str(tmp_path / "bundle")
    compile_bundle(path, folder, target="x86", threads=2, shapes={k: v.shape for k, v in feeds.items()},
                   build=False)
    exe = build_harness(folder, c_compiler(), ["-O1", "-march=native", "-std=gnu11"], extra=SANITIZE)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    got = run_harness([exe], folder, manifest, feeds, env=env)
    want = dict(run_onnxruntime(path, feeds))
    for k, w in want.items():
        assert_zoo_close(got[k], w, k)
    assert all(np.isfinite(v).all() for v in got.values())
