"""Small models the device targets' tests share (OpenCL, CUDA), with what their outputs must be."""
from __future__ import annotations

import ctypes

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import pdc

OPSET = [helper.make_opsetid("", 17)]


def relu_model(shape=(2, 3, 8)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y]),
                             opset_imports=OPSET)


def topk_between_model() -> onnx.ModelProto:
    """Exp, TopK (no device kernel: the host runs it between device kernels), Neg."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])
    outs = [helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", TensorProto.INT64, None)]
    k = onnx.numpy_helper.from_array(np.array([3], np.int64), "k")
    nodes = [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("TopK", ["e", "k"], ["t", "i"]),
             helper.make_node("Neg", ["t"], ["v"])]
    return helper.make_model(helper.make_graph(nodes, "mixed", [x], outs, [k]), opset_imports=OPSET)


def check_topk_between(module: pdc.Module) -> None:
    a = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    got = module.run({"x": a})
    e = np.exp(a)
    order = np.argsort(-e, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(got["i"], order)
    np.testing.assert_allclose(got["v"], -np.take_along_axis(e, order, 1), rtol=1e-6)


def gather_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 3])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph([helper.make_node("Gather", ["x", "i"], ["y"])], "g", [x, i], [y]),
                             opset_imports=OPSET)


def check_gather_index_error(module: pdc.Module) -> None:
    """Gather checks its indices on the device (the status buffer): a bad index fails the run, as
    on x86, instead of giving zeros."""
    a = np.arange(15, dtype=np.float32).reshape(5, 3)
    np.testing.assert_array_equal(module.run({"x": a, "i": np.array([4, 0, -1, 2])})["y"], a[[4, 0, -1, 2]])
    with pytest.raises(pdc.PdcError, match="an input holds an index out of its range"):
        module.run({"x": a, "i": np.array([0, 5, 1, 1])})


def check_run_device(library: str, name: str) -> None:
    """A CUDA bundle of relu_model(): NAME_run_device on buffers from the bundle's own (static) CUDA
    runtime's cudaMalloc, so that they live in the bundle's context."""
    lib = ctypes.CDLL(library)
    assert getattr(lib, f"{name}_init")(None, 0) == 0
    x = np.arange(48, dtype=np.float32).reshape(2, 3, 8) / 4 - 5
    y = np.zeros_like(x)
    dx, dy = ctypes.c_void_p(), ctypes.c_void_p()
    assert lib.cudaMalloc(ctypes.byref(dx), ctypes.c_size_t(x.nbytes)) == 0
    assert lib.cudaMalloc(ctypes.byref(dy), ctypes.c_size_t(y.nbytes)) == 0
    to_device, to_host = 1, 2  # cudaMemcpyKind
    assert lib.cudaMemcpy(dx, x.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(x.nbytes), to_device) == 0
    assert getattr(lib, f"{name}_run_device")(None, (ctypes.c_void_p * 1)(dx), (ctypes.c_void_p * 1)(dy)) == 0
    assert lib.cudaMemcpy(y.ctypes.data_as(ctypes.c_void_p), dy, ctypes.c_size_t(y.nbytes), to_host) == 0
    np.testing.assert_array_equal(y, np.maximum(x, 0))  # quarter steps: exact in half too
    lib.cudaFree(dx)
    lib.cudaFree(dy)
    getattr(lib, f"{name}_shutdown")()
