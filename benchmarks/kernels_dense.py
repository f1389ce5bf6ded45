"""Microbenchmarks of pdc's dense kernels (conv / fused_conv / gemm / matmul) against ONNX Runtime.

    python benchmarks/kernels_dense.py [--realtime] models [--models resnet18,mobilenet_v2,resnet50] [--reps 20]
    python benchmarks/kernels_dense.py [--realtime] layers resnet50 [--reps 20] [--top 15] [--stat min]

`models`: compiles each zoo model with pdc (x86, -O2, 2 threads) and times Module.run against an
onnxruntime.InferenceSession (intra_op_num_threads=2) in this process, interleaved in blocks,
median of `reps` after warm-up; prints latencies, the ratio and compile times.

`layers`: takes every dense node of the model's -O2 graph (conv, fused_conv, fused_matmul, ...),
compiles it alone (its constants included) and times it against the same layer as a small ONNX
model (Conv [+ Add] [+ Relu | Clip], MatMul + Add) in ONNX Runtime. Prints per-layer times,
GFLOP/s and the ratio, sorted by pdc time, and the totals: which kernels dominate.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

THREADS = 2


def _session(model_bytes_or_path, threads=THREADS):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes_or_path, so, providers=["CPUExecutionProvider"])


def _time_interleaved(fns: dict, reps: int, warmup: int = 3, stat=statistics.median, block: int = 5,
                      gap_s: float = 0.2, clock=time.perf_counter) -> dict:
    """Milliseconds per call of each function: `stat` (median) of `reps` timed calls, interleaved in
    blocks: engine A x block, engine B x block, ... Before each block the process sleeps gap_s and
    makes one untimed call, so the other engine's spinning pool threads have gone idle (they would
    otherwise compete for the 2 cores, and under --realtime block them outright)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    samples = {k: [] for k in fns}
    while min(len(v) for v in samples.values()) < reps:
        for k, f in fns.items():
            time.sleep(gap_s)
            f()
            for _ in range(block):
                t = clock()
                f()
                samples[k].append(clock() - t)
    if stat is None:
        return {k: v for k, v in samples.items()}
    return {k: stat(v) * 1e3 for k, v in samples.items()}


def _realtime():
    """SCHED_FIFO for this process and the threads it starts (root only): on a machine shared with
    other work, the measured engines then run undisturbed. Both engines get the same priority."""
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))


# ---- whole models ----------------------------------------------------------------------------------
def bench_models(names, reps, threads=THREADS):
    import pdc
    from zoo import zoo_model
    print(f"{'model':14s} {'pdc ms':>8s} {'ORT ms':>8s} {'ratio':>6s} {'compile s':>9s}   (min pdc / ORT)")
    for name in names:
        path = zoo_model(name)
        sess = _session(path, threads)
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape]).astype(np.float32)
        t = time.perf_counter()
        mod = pdc.compile(path, target="x86", out_dir=tempfile.mkdtemp(prefix="pdc-kd-"), opt_level=2, threads=threads)
        compile_s = time.perf_counter() - t
        feeds = {inp.name: x}
        pdc_name = mod.inputs[0].name
        raw = _time_interleaved({"pdc": lambda: mod.run({pdc_name: x}), "ort": lambda: sess.run(None, feeds)}, reps,
                                stat=None)
        ms = {k: statistics.median(v) * 1e3 for k, v in raw.items()}
        mn = {k: min(v) * 1e3 for k, v in raw.items()}
        ref = sess.run(None, feeds)[0]
        out = list(mod.run({pdc_name: x}).values())[0]
        err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-6))
        print(f"{name:14s} {ms['pdc']:8.2f} {ms['ort']:8.2f} {ms['pdc'] / ms['ort']:6.2f} {compile_s:9.1f}"
              f"   ({mn['pdc']:.2f} / {mn['ort']:.2f}, max rel err {err:.1e})", flush=True)


# ---- per layer ---------------------------------------------------------------------------------------
DENSE = ("conv", "fused_conv", "gemm", "fused_gemm", "matmul", "fused_matmul")


def _macs(node) -> int:
    y = node.outputs[0].type.shape
    w = node.inputs[1].type.shape
    if node.op in ("conv", "fused_conv"):
        return math.prod(y) * math.prod(w[1:])
    return math.prod(y) * node.inputs[0].type.shape[-1]


def _onnx_layer(node):
    """The node as an ONNX model of standard ops (inputs: its non-constant inputs)."""
    from onnx import TensorProto, helper, numpy_helper
    inits, inputs, names = [], [], []
    for i, v in enumerate(node.inputs):
        if v is None:
            names.append("")
            continue
        nm = f"i{i}"
        names.append(nm)
        if v.data is not None:
            inits.append(numpy_helper.from_array(np.asarray(v.data), nm))
        else:
            inputs.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT, list(v.type.shape)))
    a = node.attrs
    nodes = []
    if node.op in ("conv", "fused_conv"):
        keep = {k: v for k, v in a.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
                and v is not None}
        nodes.append(helper.make_node("Conv", [n for n in names[:3] if n], ["t0"], **keep))
    cur = "t0"
    if node.op not in ("conv", "fused_conv"):
        nodes.append(helper.make_node("MatMul", names[:2], ["t0"]))
        if len(names) > 2 and names[2]:
            nodes.append(helper.make_node("Add", ["t0", names[2]], ["tb"]))
            cur = "tb"
    if a.get("residual") == "before_activation":
        nodes.append(helper.make_node("Add", [cur, names[3]], ["t1"]))
        cur = "t1"
    act = a.get("activation", "none")
    if act == "relu":
        nodes.append(helper.make_node("Relu", [cur], ["t2"]))
        cur = "t2"
    elif act == "clip":
        lo = numpy_helper.from_array(np.array(a["activation_alpha"], np.float32), "lo")
        hi = numpy_helper.from_array(np.array(a["activation_beta"], np.float32), "hi")
        inits += [lo, hi]
        nodes.append(helper.make_node("Clip", [cur, "lo", "hi"], ["t2"]))
        cur = "t2"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "layer", inputs, [out], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def bench_layers(model, reps, top, threads=THREADS, stat="median", clock="wall"):
    import pdc
    from pdc.compiler import load_graph, optimize
    from pdc.ir.graph import Graph, Node, Value
    from zoo import zoo_model
    g = optimize(load_graph(zoo_model(model)), 2)
    rows = []
    rng = np.random.default_rng(0)
    for idx, node in enumerate(g.nodes):
        if node.op not in DENSE:
            continue
        ins, consts, feeds, new_inputs = [], [], {}, []
        for i, v in enumerate(node.inputs):
            if v is None:
                ins.append(None)
                continue
            nv = Value(f"i{i}", v.type, v.data)
            ins.append(nv)
            if v.data is not None:
                consts.append(nv)
            else:
                new_inputs.append(nv)
                feeds[nv.name] = rng.standard_normal(v.type.shape).astype(np.float32)
        y = Value("y", node.outputs[0].type)
        sub = Graph("layer", new_inputs, [y], [Node(node.op, ins, [y], dict(node.attrs), node.name)], consts)
        mod = pdc.compile(sub, target="x86", out_dir=tempfile.mkdtemp(prefix="pdc-kl-"), opt_level=0, threads=threads)
        sess = _session(_onnx_layer(node).SerializeToString(), threads)
        ms = _time_interleaved({"pdc": lambda: mod.run(feeds), "ort": lambda: sess.run(None, feeds)}, reps,
                               stat=min if stat == "min" else statistics.median, gap_s=0.0 if clock == "cpu" else 0.2,
                               clock=time.process_time if clock == "cpu" else time.perf_counter)
        ref = sess.run(None, feeds)[0]
        out = mod.run(feeds)["y"]
        err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-6))
        macs = _macs(node)
        w = node.inputs[1].type.shape
        desc = (f"{node.op} x{list(node.inputs[0].type.shape)} w{list(w)} s{node.attrs.get('strides')} "
                f"g{node.attrs.get('group', 1)} {node.attrs.get('activation', '')} {node.attrs.get('residual', '')}")
        rows.append((ms["pdc"], ms["ort"], macs, desc, err))
        print(f"  [{idx:3d}] {ms['pdc']:7.3f} ms  ORT {ms['ort']:7.3f}  {2 * macs / ms['pdc'] / 1e6:6.1f} GF/s "
              f"ratio {ms['pdc'] / ms['ort']:5.2f}  err {err:.0e}  {desc}", flush=True)
    tp, to = sum(r[0] for r in rows), sum(r[1] for r in rows)
    print(f"\ntotal dense: pdc {tp:.2f} ms, ORT {to:.2f} ms, ratio {tp / to:.2f}")
    print(f"top {top} by pdc time:")
    for r in sorted(rows, reverse=True)[:top]:
        print(f"  {r[0]:7.3f} ms ({100 * r[0] / tp:4.1f}%)  ORT {r[1]:7.3f}  {2 * r[2] / r[0] / 1e6:6.1f} GF/s  {r[3]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realtime", action="store_true",
                    help="run under SCHED_FIFO (needs root): steady numbers on a machine shared with other work")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("models")
    m.add_argument("--models", default="mobilenet_v2,resnet18,resnet50")
    m.add_argument("--reps", type=int, default=20)
    m.add_argument("--threads", type=int, default=THREADS)
    la = sub.add_parser("layers")
    la.add_argument("model")
    la.add_argument("--reps", type=int, default=20)
    la.add_argument("--top", type=int, default=15)
    la.add_argument("--threads", type=int, default=THREADS)
    la.add_argument("--stat", choices=("median", "min"), default="median",
                    help="min is steadier on a machine shared with other work")
    la.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time per call, insensitive to other work (use with --threads 1)")
    args = ap.parse_args()
    if args.realtime:
        _realtime()
    if args.cmd == "models":
        bench_models(args.models.split(","), args.reps, args.threads)
    else:
        bench_layers(args.model, args.reps, args.top, args.threads, args.stat, args.clock)


if __name__ == "__main__":
    main()
