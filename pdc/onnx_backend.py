"""pdc as a standard ONNX backend (`onnx.backend.base.Backend`).

`onnx.backend.test.BackendTest(pdc.onnx_backend, __name__)` runs ONNX's conformance tests
unchanged. Models run on the reference interpreter.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from .frontend.onnx_import import import_onnx
from .ir.interpreter import run_graph
from .ir.verify import verify_graph


class PdcRep(BackendRep):
    def __init__(self, graph):
        self.graph = graph

    def run(self, inputs: Any, **kwargs) -> tuple:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = {v.name: np.asarray(a) for v, a in zip(self.graph.inputs, inputs)}
        outputs = run_graph(self.graph, feeds)
        names = [v.name for v in self.graph.outputs]
        return namedtupledict("Outputs", [f"o{i}" for i in range(len(names))])(*[outputs[n] for n in names])


class PdcBackend(Backend):
    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> PdcRep:
        graph = import_onnx(model, source=model.graph.name or "<model>")
        verify_graph(graph)
        return PdcRep(graph)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs) -> tuple:
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info=None, **kwargs) -> tuple:
        from onnx import helper
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype),
                                             np.asarray(a).shape) for n, a in zip(node.input, inputs)]
        outs = [helper.make_tensor_value_info(n, 0, None) for n in node.output]
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(helper.make_graph([node], "run_node", ins, outs),
                                  opset_imports=[helper.make_opsetid("", opset)])
        return cls.run_model(model, list(inputs), device)


prepare = PdcBackend.prepare
run_model = PdcBackend.run_model
run_node = PdcBackend.run_node
supports_device = PdcBackend.supports_device
