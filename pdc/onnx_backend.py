"""pdc as a standard ONNX backend (`onnx.backend.base.Backend`).

`onnx.backend.test.BackendTest(pdc.onnx_backend, __name__)` runs ONNX's conformance tests
unchanged. By default models are compiled to x86 C and run natively; `PDC_BACKEND=opencl` compiles
them for the OpenCL target (run on the machine's OpenCL platform), and `PDC_BACKEND=reference`
(or `prepare(model, engine="reference")`) runs the NumPy reference interpreter instead.

Compilation is specialized to the input shapes seen at run time (and, where an output shape
depends on the values of small integer inputs, such as a Reshape's target shape, to those
values); each specialization is compiled once and cached.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from .frontend.onnx_import import import_onnx
from .ir.folding import try_fold
from .ir.graph import Graph
from .ir.interpreter import check_feeds, run_graph
from .ir.shapes import bind_shapes, reinfer
from .ir.verify import verify_graph

ENGINES = ("x86", "opencl", "reference")  # a code target, or the NumPy interpreter
SPECIALIZE_MAX_ELEMENTS = 64  # integer inputs up to this size may be baked in as constants


def default_engine() -> str:
    engine = os.environ.get("PDC_BACKEND", "x86")
    if engine not in ENGINES:
        raise ValueError(f"PDC_BACKEND={engine!r}: expected one of {ENGINES}")
    return engine


# Inputs that give shapes, axes, counts or sizes: compiled code needs them at compile time.
SHAPE_OPERANDS = {
    "reshape": {1}, "expand": {1}, "tile": {1}, "pad": {1, 3}, "slice": {1, 2, 3, 4}, "squeeze": {1},
    "unsqueeze": {1}, "top_k": {1}, "split": {1}, "resize": {1, 2, 3}, "one_hot": {1}, "constant_of_shape": {0},
    "range": {0, 1, 2}, "cum_sum": {1}, "cum_prod": {1}, "center_crop_pad": {1, 2}, "trilu": {1},
    "reduce_sum": {1}, "reduce_mean": {1}, "reduce_max": {1}, "reduce_min": {1}, "reduce_prod": {1},
    "reduce_l1": {1}, "reduce_l2": {1}, "reduce_log_sum": {1}, "reduce_log_sum_exp": {1},
    "reduce_sum_square": {1}, "dft": {1, 2}, "stft": {1, 3}, "hann_window": {0}, "hamming_window": {0},
    "blackman_window": {0}, "mel_weight_matrix": {0, 1, 2}, "col2im": {1, 2}, "affine_grid": {1},
}


def _shape_operands(node) -> set:
    """The inputs of node that give shapes: SHAPE_OPERANDS, and a Loop's trip count and condition
    when the loop stacks values of every iteration (their length is the number of iterations)."""
    if node.op == "loop":
        carried = len(node.inputs) - 2 - node.attrs.get("captures", 0)
        return {0, 1} if len(node.outputs) > carried else set()
    return SHAPE_OPERANDS.get(node.op, set())


def _shape_slice(graph: Graph) -> set:
    """Nodes whose results flow into a shape operand (they compute shapes, not data)."""
    producer = graph.producers()
    todo = [n.inputs[i] for n in graph.nodes for i in _shape_operands(n)
            if i < len(n.inputs) and n.inputs[i] is not None]
    seen_values, nodes = set(), set()
    while todo:
        v = todo.pop()
        if v in seen_values:
            continue
        seen_values.add(v)
        node = producer.get(v)
        if node is not None:
            nodes.add(node)
            todo += [u for u in node.inputs if u is not None]
    return seen_values, nodes


def _specialize_values(graph: Graph, feeds: dict) -> tuple[Graph, tuple]:
    """Bakes small inputs that (through shape arithmetic) give shapes, axes, counts or scales into
    constants, and evaluates that shape arithmetic; data computations stay in compiled code."""
    shape_values, _ = _shape_slice(graph)
    wanted = {v.name for v in graph.inputs if v in shape_values and (feeds[v.name].dtype.kind in "iuf"
                                                                       or feeds[v.name].dtype.name == "bfloat16")
              and feeds[v.name].size <= SPECIALIZE_MAX_ELEMENTS}
    if not wanted:
        return graph, ()
    g = graph.copy()
    baked = []
    for v in list(g.inputs):
        if v.name in wanted:
            v.data = np.asarray(feeds[v.name])
            g.inputs.remove(v)
            g.constants.append(v)
            baked.append((v.name, v.data.tobytes()))
    _, shape_nodes = _shape_slice(g)
    kept = []
    for node in g.nodes:
        folded = try_fold(node, SPECIALIZE_MAX_ELEMENTS) if node in shape_nodes else None
        if folded is None:
            kept.append(node)
            continue
        for v, data in zip(node.outputs, folded):
            v.data, v.type = data, v.type.with_shape(data.shape)
            g.constants.append(v)
    g.nodes = kept
    reinfer(g)  # shapes that depended on the values are now static
    return g, tuple(baked)


class PdcRep(BackendRep):
    def __init__(self, graph: Graph, engine: str, opt_level: int = 1):
        self.graph = graph
        self.engine = engine
        self.opt_level = opt_level
        self._modules: dict = {}
        self._folders: list[str] = []

    def specialized(self, feeds: dict) -> tuple[Graph, tuple]:
        """The graph compiled for these feeds (their shapes bound, shape-giving inputs baked) and
        its cache key."""
        shapes = {v.name: feeds[v.name].shape for v in self.graph.inputs}
        graph = bind_shapes(self.graph, shapes) if not all(v.type.is_static for v in self.graph.inputs) \
            else self.graph
        graph, baked = _specialize_values(graph, feeds)
        return graph, (tuple(sorted(shapes.items())), baked)

    def _module(self, feeds: dict):
        graph, key = self.specialized(feeds)
        if key not in self._modules:
            folder = tempfile.mkdtemp(prefix="pdc-backend-")
            self._folders.append(folder)
            self._modules[key] = (self.build(graph, folder), [v.name for v in graph.inputs])
        return self._modules[key]

    def build(self, graph: Graph, folder: str):
        """The Module of `graph` compiled into `folder` (a test's backend may build it otherwise)."""
        from .compiler import compile_bundle
        from .module import Module
        compile_bundle(graph, folder, target=self.engine, name="model", opt_level=self.opt_level, c_opt="-O1",
                       threads=1)  # node tests are tiny: no thread pool
        return Module(folder)

    def run(self, inputs: Any, **kwargs) -> tuple:
        if isinstance(inputs, dict):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = {v.name: np.asarray(a) for v, a in zip(self.graph.inputs, inputs)}
        names = [v.name for v in self.graph.outputs]
        if self.engine == "reference":
            outputs = run_graph(self.graph, feeds)
        else:
            check_feeds(self.graph, feeds)
            module, input_names = self._module(feeds)
            outputs = module.run({k: feeds[k] for k in input_names})
        return namedtupledict("Outputs", [f"o{i}" for i in range(len(names))])(*[outputs[n] for n in names])

    def __del__(self):
        for f in self._folders:
            shutil.rmtree(f, ignore_errors=True)


class PdcBackend(Backend):
    engine: str | None = None  # None: PDC_BACKEND, else x86
    rep = PdcRep  # what prepare returns

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", engine: str | None = None, **kwargs) -> PdcRep:
        graph = import_onnx(model, source=model.graph.name or "<model>")
        verify_graph(graph)
        return cls.rep(graph, engine or cls.engine or default_engine())

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info=None, **kwargs) -> tuple:
        from onnx import helper
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype),
                                             np.asarray(a).shape) for n, a in zip(node.input, inputs)]
        outs = [helper.make_tensor_value_info(n, 0, None) for n in node.output]
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(helper.make_graph([node], "run_node", ins, outs),
                                  opset_imports=[helper.make_opsetid("", opset)])
        return cls.run_model(model, list(inputs), device, **kwargs)


class ReferenceBackend(PdcBackend):
    """The same backend on the NumPy reference interpreter."""
    engine = "reference"


class X86Backend(PdcBackend):
    """The same backend on compiled x86 code."""
    engine = "x86"


class OpenCLBackend(PdcBackend):
    """The same backend on the OpenCL target (device kernels on this machine's OpenCL platform)."""
    engine = "opencl"


prepare = PdcBackend.prepare
run_model = PdcBackend.run_model
run_node = PdcBackend.run_node
supports_device = PdcBackend.supports_device
