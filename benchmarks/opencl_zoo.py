"""The zoo on the OpenCL targets against ONNX Runtime, on this machine's OpenCL platform (PoCL here).

    python benchmarks/opencl_zoo.py

Per model: max relative error (max abs error / max |reference|) of `--target opencl` (fp32, seed 0)
and `--target mali-g78` (fp16 storage), the fp16 build's top-1 agreement with ONNX Runtime on seeds
0-31 (classifiers), the nodes left on the host in either build, and the fp32 build's kernel paths.
"""
import collections
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import onnxruntime as ort  # noqa: E402

import pdc  # noqa: E402
from pdc.inputs import random_inputs  # noqa: E402
from zoo import zoo_model  # noqa: E402

OUT = tempfile.mkdtemp(prefix="pdc-opencl-zoo-")
CLASSIFIERS = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "resnet50", "squeezenet1_1")
for name in ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "resnet50", "squeezenet1_1", "transformer_encoder", "lstm", "gru"):
    path = zoo_model(name)
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    row = [name]
    for target in ("opencl", "mali-g78"):
        m = pdc.compile(path, target=target, out_dir=os.path.join(OUT, f"{name}-{target}"))
        seeds = range(32) if (target == "mali-g78" and name in CLASSIFIERS) else range(1 if target == "opencl" else 2)
        err, agree = 0.0, 0
        for seed in seeds:
            f = random_inputs(m.signature(), seed)
            got, ref = list(m.run(f).values()), s.run(None, f)
            err = max(err, max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)) for g, r in zip(got, ref)))
            agree += int(got[0].reshape(-1).argmax() == ref[0].reshape(-1).argmax())
        row.append(f"{err:.2e}")
        if target == "mali-g78":
            row.append(f"{agree}/{len(seeds)}" if name in CLASSIFIERS else "-")
            paths = collections.Counter(k.get("path", "copy") for k in m.manifest["kernels"])
            host = [k["op"] for k in m.manifest["kernels"] if k["op"] != "copy" and not k.get("path", "").startswith("opencl/")]
    fp32paths = collections.Counter(k.get("path") for k in pdc.load(os.path.join(OUT, f"{name}-opencl")).manifest["kernels"] if k["op"] != "copy")
    host32 = [k["op"] for k in pdc.load(os.path.join(OUT, f"{name}-opencl")).manifest["kernels"] if k["op"] != "copy" and not k.get("path", "").startswith("opencl/")]
    print(" | ".join(row), "| host fp32:", host32 or "none", "fp16:", host or "none", "|", dict(fp32paths), flush=True)
