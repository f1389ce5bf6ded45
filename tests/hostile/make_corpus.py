"""Writes the hostile-model corpus: small models that are malformed, inconsistent or absurdly large,
each of which pdc must refuse with one line (tests/test_hostile_inputs.py holds the messages).

    python tests/hostile/make_corpus.py [OUT_DIR]    (default: tests/hostile/corpus)

Every file is a few hundred bytes; models that claim terabytes do so in their shapes, not their data.
The corpus is generated, so a change here is a change of the corpus: rerun and commit both.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
F32 = TensorProto.FLOAT
HUGE = 2 ** 40
EXTERNAL_FILE = "weights.bin"  # 16 bytes next to the models, for the external-data cases


def tensor(name, shape, dtype=F32):
    return helper.make_tensor_value_info(name, dtype, shape)


def model(nodes, inputs, outputs, initializers=(), opset=17, name="g"):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def relu(inp="x", out="y", name="relu"):
    return helper.make_node("Relu", [inp], [out], name=name)


def weight_3x3(name="w", shape=(4, 3, 3, 3)):
    return const(name, np.ones(shape, np.float32))


def external(name, shape, **info):
    """A float initializer whose data is said to live in weights.bin at the given offset / length."""
    t = onnx.TensorProto(name=name, data_type=F32, dims=list(shape))
    t.data_location = TensorProto.EXTERNAL
    for k, v in {"location": EXTERNAL_FILE, **info}.items():
        t.external_data.add(key=k, value=str(v))
    return t


def add_external(name, **info):
    return model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [tensor("x", [4])],
                 [tensor("y", [4])], [external("w", [4], **info)])


def gemm_with_string_alpha():
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm")
    node.attribute.append(helper.make_attribute("alpha", "fast"))
    return model([node], [tensor("x", [2, 3])], [tensor("y", [2, 4])], [const("w", np.ones((3, 4), np.float32))])


def initializer_with_negative_dim():
    w = const("w", np.ones(2, np.float32))
    w.dims[:] = [-2]
    return model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [tensor("x", [2])],
                 [tensor("y", [2])], [w])


def initializer_claiming_huge_dims():
    w = onnx.TensorProto(name="w", data_type=F32, dims=[HUGE, HUGE])
    return model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [tensor("x", [2])],
                 [tensor("y", [2])], [w])


def nodes_out_of_order():
    return model([helper.make_node("Neg", ["a"], ["y"], name="second"), relu("x", "a", name="first")],
                 [tensor("x", [2])], [tensor("y", [2])])


ONNX_CASES = {
    "empty_graph": lambda: model([], [], []),
    "no_outputs": lambda: model([relu()], [tensor("x", [2])], []),
    "duplicate_initializer": lambda: model(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add")], [tensor("x", [2])], [tensor("y", [2])],
        [const("w", np.ones(2, np.float32)), const("w", np.zeros(2, np.float32))]),
    "duplicate_input": lambda: model([relu()], [tensor("x", [2]), tensor("x", [2])], [tensor("y", [2])]),
    "duplicate_graph_output": lambda: model([relu()], [tensor("x", [2])], [tensor("y", [2]), tensor("y", [2])]),
    "duplicate_node_output": lambda: model([relu(), helper.make_node("Neg", ["x"], ["y"], name="neg")],
                                           [tensor("x", [2])], [tensor("y", [2])]),
    "output_shadows_input": lambda: model([relu("x", "x")], [tensor("x", [2])], [tensor("x", [2])]),
    "output_shadows_initializer": lambda: model(
        [helper.make_node("Neg", ["x"], ["w"], name="neg"), helper.make_node("Add", ["x", "w"], ["y"], name="add")],
        [tensor("x", [2])], [tensor("y", [2])], [const("w", np.ones(2, np.float32))]),
    "undefined_input": lambda: model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="add")],
                                     [tensor("x", [2])], [tensor("y", [2])]),
    "nodes_out_of_order": nodes_out_of_order,
    "undefined_graph_output": lambda: model([relu()], [tensor("x", [2])], [tensor("z", [2])]),
    "negative_initializer_dim": initializer_with_negative_dim,
    "negative_input_dim": lambda: model([relu()], [tensor("x", [-3, 2])], [tensor("y", None)]),
    "output_dtype_mismatch": lambda: model([relu()], [tensor("x", [2])], [tensor("y", [2], TensorProto.INT64)]),
    "node_without_inputs_and_outputs": lambda: model(
        [helper.make_node("Relu", [], [], name="hollow"), relu()], [tensor("x", [2])], [tensor("y", [2])]),
    "relu_with_two_inputs": lambda: model([helper.make_node("Relu", ["x", "x"], ["y"], name="relu")],
                                          [tensor("x", [2])], [tensor("y", [2])]),
    "gemm_string_alpha": gemm_with_string_alpha,
    "huge_input_dim": lambda: model([relu()], [tensor("x", [HUGE, 3])], [tensor("y", [HUGE, 3])]),
    "huge_batch": lambda: model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                                [tensor("x", [HUGE, 3, 8, 8])], [tensor("y", None)], [weight_3x3()]),
    "huge_spatial_dim": lambda: model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2])],
                                      [tensor("x", [1, 3, HUGE, 8])], [tensor("y", None)]),
    "huge_pool_padding": lambda: model(
        [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], pads=[HUGE, 0, HUGE, 0])],
        [tensor("x", [1, 3, 8, 8])], [tensor("y", None)]),
    "huge_conv_padding": lambda: model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[HUGE, 0, HUGE, 0])],
        [tensor("x", [1, 3, 8, 8])], [tensor("y", None)], [weight_3x3()]),
    "huge_initializer_dims": initializer_claiming_huge_dims,
    "huge_rank": lambda: model([relu()], [tensor("x", [1] * 100)], [tensor("y", None)]),
    "external_offset_negative": lambda: add_external("w", offset=-8, length=16),
    "external_offset_not_a_number": lambda: add_external("w", offset="eight", length=16),
    "external_length_beyond_file": lambda: add_external("w", offset=0, length=64),
    "external_offset_huge": lambda: add_external("w", offset=HUGE, length=16),
}

PADDLE_CASES = {
    # a PIR JSON model with a 5000-digit integer where a dim belongs: Python refuses to convert it
    "paddle_long_integer/inference.json":
        '{"base_code": {"magic": "pir", "version": 1}, "program": {"regions": [{"blocks": [{"ops": '
        '[{"#": "1.data", "A": [{"N": "shape", "AT": {"#": "1.a_intarray", "D": [1, ' + "9" * 5000 + ']}}]}]}]}]}}',
}


def write_corpus(out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, build in ONNX_CASES.items():
        path = os.path.join(out_dir, name + ".onnx")
        with open(path, "wb") as f:
            f.write(build().SerializeToString())
        written.append(path)
    for rel, text in PADDLE_CASES.items():
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        written.append(path)
    with open(os.path.join(out_dir, EXTERNAL_FILE), "wb") as f:
        f.write(np.arange(4, dtype=np.float32).tobytes())
    return written


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    print(f"wrote {len(write_corpus(out))} hostile models to {out}")
