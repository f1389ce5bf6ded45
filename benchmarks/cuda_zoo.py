"""The zoo on an NVIDIA GPU against ONNX Runtime, and batch-1 fp16 latency beside PyTorch, in one run.

    python benchmarks/cuda_zoo.py [--runs 200]

Needs a GPU machine with nvcc (and, for the latency references, PyTorch with CUDA and torchvision).
Per zoo model: max relative error of `--target cuda` (fp32, seeds 0-1) against ONNX Runtime (CPU),
and the fp16 build's top-1 agreement on seeds 0-31 (classifiers). Then for mobilenet_v2, resnet18 and
resnet50 in fp16 (random weights, batch 1, 224x224), medians over --runs runs after a warm-up:
- pdc: NAME_run_device on device buffers (the whole inference: its CUDA graphs and host steps), and
  Module.run (host arrays: the copies in and out included);
- PyTorch eager (torchvision's model, .half(), channels_last, cudnn.benchmark);
- cuDNN through PyTorch captured once into a CUDA graph and replayed (torch.cuda.CUDAGraph),
and the ratios pdc / graph. Every section says what it skipped and why.
"""
import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import pdc  # noqa: E402
from pdc.inputs import random_inputs  # noqa: E402
from zoo import zoo_model  # noqa: E402

CLASSIFIERS = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "resnet50", "squeezenet1_1")
ZOO = CLASSIFIERS + ("transformer_encoder", "lstm", "gru", "lenet", "mlp", "digits_cnn", "tiny_cnn")
LATENCY = ("mobilenet_v2", "resnet18", "resnet50")
OUT = tempfile.mkdtemp(prefix="pdc-cuda-zoo-")


def median_ms(fn, runs: int, sync=lambda: None) -> float:
    for _ in range(max(10, runs // 10)):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def accuracy() -> None:
    import onnxruntime as ort
    print("model | fp32 max rel error (<= 1e-4) | fp16 top-1 agreement | host nodes")
    for name in ZOO:
        path = zoo_model(name)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        m32 = pdc.compile(path, target="cuda", out_dir=os.path.join(OUT, f"{name}-fp32"))
        err = 0.0
        for seed in range(2):
            feeds = random_inputs(m32.signature(), seed)
            for g, r in zip(m32.run(feeds).values(), session.run(None, feeds)):
                err = max(err, float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)))
        agree = "-"
        if name in CLASSIFIERS:
            m16 = pdc.compile(path, target="cuda", precision="fp16", out_dir=os.path.join(OUT, f"{name}-fp16"))
            same = 0
            for seed in range(32):
                feeds = random_inputs(m16.signature(), seed)
                g, r = list(m16.run(feeds).values())[0], session.run(None, feeds)[0]
                same += int(g.reshape(-1).argmax() == r.reshape(-1).argmax())
            agree = f"{same}/32"
        host = [k["op"] for k in m32.manifest["kernels"]
                if k["op"] != "copy" and not k.get("path", "").startswith(("cuda/", "opencl/"))]
        print(f"{name} | {err:.2e} | {agree} | {host or 'none'}", flush=True)


def pdc_latency(name: str, runs: int) -> tuple[float, float]:
    """(ms of NAME_run_device on device buffers, ms of Module.run on host arrays), fp16 storage."""
    folder = os.path.join(OUT, f"{name}-lat")
    module = pdc.compile(zoo_model(name), target="cuda", precision="fp16", out_dir=folder, name="net")
    feeds = random_inputs(module.signature(), 0)
    host = median_ms(lambda: module.run(feeds), runs)
    lib = ctypes.CDLL(os.path.join(folder, "libnet.so"))  # the library `module` loaded and initialized
    buffers = []
    for arrays in (list(feeds.values()), [np.empty(o["shape"], np.float32) for o in module.manifest["outputs"]]):
        ptrs = []
        for a in arrays:
            p = ctypes.c_void_p()
            assert lib.cudaMalloc(ctypes.byref(p), ctypes.c_size_t(a.nbytes)) == 0
            lib.cudaMemcpy(p, a.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(a.nbytes), 1)
            ptrs.append(p)
        buffers.append((ctypes.c_void_p * len(ptrs))(*ptrs))
    arena = np.empty(module.manifest["arena_bytes"] + 64, np.uint8)
    at = ctypes.c_void_p((arena.ctypes.data + 63) // 64 * 64)
    device = median_ms(lambda: lib.net_run_device(at, buffers[0], buffers[1]), runs)
    return device, host


def torch_latency(name: str, runs: int) -> tuple[float, float]:
    """(ms of PyTorch eager, ms of the same captured into a CUDA graph), fp16, channels_last."""
    import torch
    import torchvision
    torch.backends.cudnn.benchmark = True
    net = getattr(torchvision.models, name)(weights=None).eval().half().cuda().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 224, 224, device="cuda").half().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = median_ms(lambda: net(x), runs, torch.cuda.synchronize)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(5):
                net(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            net(x)
        replay = median_ms(graph.replay, runs, torch.cuda.synchronize)
    return eager, replay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    from pdc.targets.cuda import host_arch
    if not host_arch():
        sys.exit("no NVIDIA GPU on this machine (nvidia-smi found none): run this on a GPU machine")
    print(f"GPU: sm_{host_arch()}")
    try:
        accuracy()
    except ImportError as e:
        print(f"accuracy skipped: {e}")
    print("\nbatch-1 fp16 latency, median ms | pdc run_device | pdc Module.run | PyTorch eager | "
          "cuDNN + CUDA graph | pdc / graph")
    for name in LATENCY:
        dev, host = pdc_latency(name, args.runs)
        try:
            eager, graph = torch_latency(name, args.runs)
            refs = f"{eager:.3f} | {graph:.3f} | {dev / graph:.2f}"
        except ImportError as e:
            refs = f"PyTorch skipped ({e})"
        print(f"{name} | {dev:.3f} | {host:.3f} | {refs}", flush=True)


if __name__ == "__main__":
    main()
