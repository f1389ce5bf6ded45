"""Property tests of compiled kernels: many random layers per bundle, compared with an oracle.

A draw is a list of `Layer`s (one ONNX node each, optionally followed by activations that the
-O2 pipeline fuses into it). `check_layers` puts every layer of a draw side by side in one ONNX
model (each reads its own graph inputs; every output is a graph output), compiles it once for the
target (so an emulator starts once per draw), runs it, and compares every output element by
element (tests/tolerances.py) with an oracle that is not pdc's code: ONNX Runtime, or ONNX's own
reference evaluator (onnx.reference) for what ONNX Runtime does not implement. `force` sets
PDC_FORCE_PATH for the compile (pdc/codegen/kernels/paths.py); the paths the kernels took are
returned, read from the `/* path: family/name */` line each generator writes.

`run_property` wraps a hypothesis strategy of draws into one test: a fixed seed and a bounded
number of examples by default (the CI tier); PDC_FUZZ_SCALE=K (K times the examples) and
PDC_FUZZ_SEED=S (or `random`) turn it into a long fuzzing run (`make fuzz-kernels`).
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, Phase, given, settings
from onnx import TensorProto, helper, numpy_helper

import pdc
from oracles import onnxruntime_saturates
from tolerances import mismatches

OPSET = 21


@dataclass
class Const:
    """A layer input that is an initializer (a compile-time constant), not a graph input."""
    value: np.ndarray


@dataclass
class Chain:
    """A layer input computed by a chain of ops from `source` (an array: graph input, or a Const),
    each step (op, attrs, extra inputs) applied to the value so far: the Reshape / Transpose an
    exporter writes around a pattern a pass fuses. Also allowed as an extra input of `post`."""
    source: object
    ops: list


@dataclass
class Layer:
    op: str
    inputs: list                      # np.ndarray (graph input), Const (initializer) or None (absent)
    attrs: dict = field(default_factory=dict)
    post: list = field(default_factory=list)   # [(op, attrs, extra inputs)] applied to output 0
    outputs: int = 1
    domain: str = ""
    rtol: Optional[float] = None      # None: the dtype's tolerance
    atol: Optional[float] = None
    oracle: str = "ort"               # or "onnx-reference" (what ONNX Runtime does not implement)
    opset: Optional[int] = None       # the default domain's opset the op needs, when above OPSET
    want: Optional[list] = None       # expected outputs the test derives itself (an oracle run on an
    # equivalent layer where both oracles depart from the spec); they also declare the output shapes
    # ONNX's shape inference leaves open (axes fed at run time)

    def describe(self) -> str:
        def arg(i):
            if i is None:
                return "_"
            if isinstance(i, Chain):
                return arg(i.source) + "".join(f" -> {op}{attrs or ''}" for op, attrs, _ in i.ops)
            a = i.value if isinstance(i, Const) else i
            return f"{'const ' if isinstance(i, Const) else ''}{a.dtype}{list(a.shape)}"
        post = "".join(f" -> {op}{attrs or ''}" for op, attrs, _ in self.post)
        return f"{self.op}({', '.join(arg(i) for i in self.inputs)}) {self.attrs}{post}"


def static_shape(info: onnx.ValueInfoProto) -> bool:
    t = info.type.tensor_type
    return t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim)


def build_model(layers: list[Layer], first: int = 0) -> tuple[onnx.ModelProto, dict, list[list[str]]]:
    """The side-by-side model of a draw: (model, feeds, output names per layer). Names depend only
    on each layer's place in the draw (from `first`), so a subset's model shares them."""
    nodes, inits, feeds, outs = [], [], {}, []

    def value(i, li) -> str:
        if i is None:
            return ""
        if isinstance(i, Chain):
            last = value(i.source, li)
            for op, attrs, extra in i.ops:
                out = f"l{li}_c{next(count)}"
                nodes.append(helper.make_node(op, [last] + [value(e, li) for e in extra], [out], **attrs))
                last = out
            return last
        name = f"l{li}_in{next(count)}"
        if isinstance(i, Const):
            inits.append(numpy_helper.from_array(np.asarray(i.value), name))
        else:
            feeds[name] = np.asarray(i)
        return name

    for li, layer in enumerate(layers, first):
        count = iter(range(1 << 30))
        names = [f"l{li}_y{k}" for k in range(layer.outputs)]
        ins = [value(i, li) for i in layer.inputs]
        last = names[0] if not layer.post else f"l{li}_raw"
        nodes.append(helper.make_node(layer.op, ins, [last] + names[1:], domain=layer.domain, **layer.attrs))
        before = None
        for step, (op, attrs, extra) in enumerate(layer.post):
            out = names[0] if step == len(layer.post) - 1 else f"l{li}_p{step}"
            # "self": the value itself; "before": the value the previous step read (x of x * sigmoid(x))
            extra_names = [{"self": last, "before": before}[e] if isinstance(e, str) else value(e, li) for e in extra]
            nodes.append(helper.make_node(op, [last] + extra_names, [out], **attrs))
            before, last = last, out
        outs.append(names)
    graph_in = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for k, v in feeds.items()]
    graph_out = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for names in outs for n in names]
    domains = {layer.domain for layer in layers} - {""}
    opset = max([OPSET] + [layer.opset for layer in layers if layer.opset])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in sorted(domains)]
    model = helper.make_model(helper.make_graph(nodes, "draw", graph_in, graph_out, inits), opset_imports=opsets)
    typed = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in list(typed.graph.value_info) + list(typed.graph.output)
             if v.type.tensor_type.elem_type}
    for layer, names in zip(layers, outs):  # shapes inference leaves open (axes fed at run time): from want
        for name, value in zip(names, layer.want or []):
            if name not in known or not static_shape(known[name]):
                known[name] = helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                            value.shape)
    for o in model.graph.output:
        if o.name in known:
            o.CopyFrom(known[o.name])
    return model, feeds, outs


def oracle_outputs(model: onnx.ModelProto, feeds: dict, oracle: str) -> dict:
    """Every graph output of the model by the oracle: 'ort' or 'onnx-reference' (also for 'ort' where
    ONNX Runtime saturates products on this CPU: oracles.onnxruntime_saturates)."""
    names = [o.name for o in model.graph.output]
    if oracle == "ort" and onnxruntime_saturates(model):
        oracle = "onnx-reference"
    if oracle == "ort":
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return dict(zip(names, sess.run(names, feeds)))
    if oracle == "onnx-reference":
        from onnx.reference import ReferenceEvaluator
        return dict(zip(names, ReferenceEvaluator(model).run(names, feeds)))
    raise ValueError(oracle)


def layer_outputs(layer: Layer) -> list:
    """One layer's outputs by ONNX Runtime, or by ONNX's reference where ONNX Runtime refuses it."""
    model, feeds, names = build_model([layer])
    try:
        got = oracle_outputs(model, feeds, "ort")
    except Exception:
        got = oracle_outputs(model, feeds, "onnx-reference")
    return [got[n] for n in names[0]]


PATH_LINE = re.compile(r"/\* path: ([\w-]+/[\w-]+) \*/")


def paths_taken(folder: str) -> Counter:
    """How many kernels of the bundle took each path ('family/path')."""
    seen = Counter()
    for f in glob.glob(os.path.join(folder, "*kernels*.c")):
        with open(f) as fh:
            seen.update(PATH_LINE.findall(fh.read()))
    return seen


def check_layers(layers: list[Layer], target: str, *, force: Optional[str] = None, oracle: str = "ort",
                 threads: int = 2, opt_level: int = 2, rtol: Optional[float] = None, atol: Optional[float] = None,
                 passes: Optional[str] = None, **compile_options) -> Counter:
    """Compiles the draw for target and compares every output with the oracle (AssertionError naming
    the layer on a mismatch); returns the kernel paths taken. `passes`: a pipeline run on the
    imported graph before the target's (a pass option the -O levels do not set)."""
    model, feeds, outs = build_model(layers)
    want = {name: value for layer, names in zip(layers, outs) if layer.want is not None
            for name, value in zip(names, layer.want)}
    asked = [(i, layer) for i, layer in enumerate(layers) if layer.want is None]
    for name in {layer.oracle if oracle == "ort" else oracle for _, layer in asked}:
        part = [(i, layer) for i, layer in asked if (layer.oracle if oracle == "ort" else oracle) == name]
        for i, layer in part:  # one model per layer keeps the names of the whole draw's model
            sub, sub_feeds, _ = build_model([layer], i)
            try:
                want.update(oracle_outputs(sub, sub_feeds, name))
            except Exception:
                if name != "ort":
                    raise
                # ONNX Runtime refuses some layers the spec allows: ONNX's reference evaluator decides
                want.update(oracle_outputs(sub, sub_feeds, "onnx-reference"))
    folder = tempfile.mkdtemp(prefix="pdc-kprop-")
    old = os.environ.get("PDC_FORCE_PATH")
    try:
        if force:
            os.environ["PDC_FORCE_PATH"] = force
        else:
            os.environ.pop("PDC_FORCE_PATH", None)
        source = model
        if passes:
            from pdc.compiler import load_graph
            from pdc.passes import PassManager, parse_pipeline
            source = PassManager(parse_pipeline(passes)).run(load_graph(model))
        module = pdc.compile(source, target=target, out_dir=os.path.join(folder, "b"), threads=threads,
                             opt_level=opt_level, **compile_options)
        got = module.run(feeds)
        taken = paths_taken(module.folder)
    finally:
        if old is None:
            os.environ.pop("PDC_FORCE_PATH", None)
        else:
            os.environ["PDC_FORCE_PATH"] = old
        shutil.rmtree(folder, ignore_errors=True)
    errors = []
    for layer, names in zip(layers, outs):
        for name in names:
            msg = mismatches(got[name], want[name], layer.rtol if rtol is None else rtol,
                             layer.atol if atol is None else atol)
            if msg:
                errors.append(f"{layer.describe()} output {name[name.index('_') + 1:]}: {msg}")
    where = f"{target}{f' {force}' if force else ''}"
    assert not errors, f"{len(errors)} layer(s) wrong on {where}:\n  " + "\n  ".join(errors)
    return taken


def fuzz_examples(default: int) -> int:
    """The CI tier's count, times PDC_FUZZ_SCALE for long runs (tools/fuzz_kernels.py)."""
    return max(1, round(default * float(os.environ.get("PDC_FUZZ_SCALE", "1"))))


def log_draw(target: str, force: Optional[str], layers: list[Layer], taken: Counter) -> None:
    """One line per checked draw into PDC_FUZZ_LOG, for the fuzzing run's counts."""
    path = os.environ.get("PDC_FUZZ_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"target": target, "force": force, "ops": [layer.op for layer in layers],
                                "paths": dict(taken)}) + "\n")


def run_property(strategy, target: str, *, examples: int, force: Optional[str] = None, oracle: str = "ort",
                 expect_path: Optional[str] = None, **options) -> Counter:
    """Checks `examples` draws of `strategy` (each a list of Layers) on target; with expect_path,
    fails unless some kernel took that path ('family/path'). Returns the paths taken."""
    seed = os.environ.get("PDC_FUZZ_SEED", "0")
    seen: Counter = Counter()

    @settings(max_examples=fuzz_examples(examples), deadline=None, database=None, derandomize=seed == "0",
              phases=[Phase.explicit, Phase.generate, Phase.shrink], print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(layers):
        taken = check_layers(layers, target, force=force, oracle=oracle, **options)
        log_draw(target, force, layers, taken)
        seen.update(taken)

    if seed not in ("0", "random"):
        prop = __import__("hypothesis").seed(int(seed))(prop)
    prop()
    if expect_path:
        assert seen[expect_path] > 0, f"no draw took {expect_path} on {target} (paths taken: {dict(seen)})"
    return seen
