"""pdc bench: latency of a compiled model (percentiles after a warm-up), side by side with ONNX
Runtime on the host, and a per-kernel profile from a profiling build of the bundle."""
from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Optional

import numpy as np

from .ir.errors import PdcError

PERCENTILES = (50, 90, 99)


def interleaved(engines: dict[str, Callable[[], object]], runs: int, warmup: int, block: int = 5) -> dict:
    """Seconds of `runs` timed calls of each engine after `warmup` untimed ones, the engines
    interleaved in blocks (A A A, B B B, A A A, ...) so that a drifting machine affects them alike."""
    for run in engines.values():
        for _ in range(warmup):
            run()
    samples = {k: [] for k in engines}
    while any(len(s) < runs for s in samples.values()):
        for k, run in engines.items():
            for _ in range(min(block, runs - len(samples[k]))):
                t = time.perf_counter()
                run()
                samples[k].append(time.perf_counter() - t)
    return {k: np.array(v) for k, v in samples.items()}


def fastest_median(run: Callable[[], object], blocks: int = 10, block_seconds: float = 0.1) -> float:
    """The lowest of `blocks` medians of `run`'s seconds, each over about `block_seconds` of calls
    (at least 10). Other work on the machine, and the slow spells of a virtual machine (here: the
    same call at 1.5-2.5x its time for up to half a second at a stretch), only ever slow a block
    down: the fastest block is the machine's own figure."""
    t0 = time.perf_counter()
    run()
    runs = int(min(5000, max(10, block_seconds / max(time.perf_counter() - t0, 1e-7))))
    return min(float(np.median(interleaved({"run": run}, runs, 2)["run"])) for _ in range(blocks))


def summary(seconds: np.ndarray) -> dict:
    """Milliseconds: the percentiles, the fastest run and the mean."""
    ms = seconds * 1e3
    out = {f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES}
    out.update(min=float(ms.min()), mean=float(ms.mean()))
    return out


def onnxruntime_runner(model_path: str, feeds: dict, threads: int) -> Optional[Callable[[], object]]:
    """A call of ONNX Runtime on the same model and inputs (None where it cannot run it here)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


@contextmanager
def profiling_build(folder: str):
    """(module, manifest, ns) of a profiling build of the bundle in `folder`: a copy compiled with
    -DPDC_PROFILE, whose run function adds each kernel's nanoseconds into ns (a ctypes array), loaded
    for the duration of the block."""
    from .build import build_shared
    from .module import Module
    from .targets.x86 import c_compiler
    with tempfile.TemporaryDirectory(prefix="pdc-profile-") as tmp:
        copy = os.path.join(tmp, "bundle")
        shutil.copytree(folder, copy)
        with open(os.path.join(copy, "manifest.json")) as f:  # the original's library need not load
            manifest = json.load(f)
        name = manifest["name"]
        kernel_files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(copy, f"{name}_kernels_*.c")))
        build_shared(copy, name, kernel_files, c_compiler(), manifest["cflags"], manifest["threads"],
                     ("-DPDC_PROFILE",))
        profiled = Module(copy)
        ns = (ctypes.c_double * max(len(manifest["kernels"]), 1)).in_dll(profiled._lib, f"{name}_profile_ns")
        yield profiled, manifest, ns


def kernel_us(module, ns, feeds: dict, runs: int, warmup: int) -> list[float]:
    """Each kernel's mean microseconds over `runs` runs of a profiling build (profiling_build)."""
    for _ in range(warmup):
        module.run(feeds)
    ctypes.memset(ns, 0, ctypes.sizeof(ns))
    for _ in range(runs):
        module.run(feeds)
    return [v / runs / 1e3 for v in ns]


def profile(folder: str, feeds: dict, runs: int, warmup: int) -> list[dict]:
    """Per kernel of the bundle in `folder`: its mean microseconds per run, measured by a profiling
    build (profiling_build), with the manifest's op, path and source nodes."""
    with profiling_build(folder) as (module, manifest, ns):
        times = kernel_us(module, ns, feeds, runs, warmup)
    rows = []
    for i, k in enumerate(manifest["kernels"]):
        if times[i] > 0:
            rows.append({"index": i, "function": k["function"], "op": k["op"], "path": k.get("path", ""),
                         "nodes": k["source_nodes"], "us": times[i]})
    return rows


def profile_lines(rows: list[dict], runs: int) -> list[str]:
    total = sum(r["us"] for r in rows) or 1.0
    lines = [f"per kernel (a profiling build, mean of {runs} runs; kernels total {total / 1e3:.3f} ms):",
             f"  {'#':>4} {'us':>9} {'%':>6}  {'op':<24} {'path':<28} nodes"]
    for r in sorted(rows, key=lambda r: -r["us"]):
        nodes = ", ".join(n for n in r["nodes"] if n) or "-"  # unnamed nodes: "-"
        lines.append(f"  {r['index']:>4} {r['us']:>9.1f} {100 * r['us'] / total:>6.1f}  {r['op']:<24} "
                     f"{r['path'] or '-':<28} {nodes[:60]}")
    return lines


def check_runs(runs: int, warmup: int) -> None:
    if runs < 1:
        raise PdcError(f"--runs {runs}: at least one timed run")
    if warmup < 0:
        raise PdcError(f"--warmup {warmup}: zero or more warm-up runs")
