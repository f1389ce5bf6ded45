"""The broadcast loop nest of elementwise kernels (pdc/codegen/kernels/loops.py): which loops it
writes. The numerics of every shape are the elementwise properties' business."""
from __future__ import annotations

import re

import onnx
from onnx import TensorProto, helper

from pdc.codegen.kernels.loops import coalesce
from pdc.compiler import compile_bundle


def test_coalesce_merges_what_every_input_reads_as_one():
    # a per-channel gate over 14x14 pixels: the pixels are one loop, the batch dim of 1 goes
    assert coalesce([1, 672, 14, 14], [[0, 1, 0, 0], [0, 196, 14, 1]]) == ([672, 196], [[1, 0], [196, 1]])
    # a row vector against a matrix: the broadcast dim stays apart from the one read
    assert coalesce([2, 3, 4], [[12, 4, 1], [0, 1, 0]]) == ([2, 3, 4], [[12, 4, 1], [0, 1, 0]])
    # broadcast in both inputs over the two outer dims: merged
    assert coalesce([5, 6, 7], [[0, 0, 1], [42, 7, 1]]) == ([30, 7], [[0, 1], [7, 1]])
    # a scalar result
    assert coalesce([1, 1], [[0, 0]]) == ([], [[]])


def test_gate_multiply_loops_over_the_pixels(tmp_path):
    """x * s with s per channel ([1, 672, 1, 1]) writes 672 x 196, not 1 x 672 x 14 x 14."""
    g = helper.make_graph([helper.make_node("Mul", ["s", "x"], ["y"])], "g",
                          [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 672, 1, 1]),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 672, 14, 14])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    folder = compile_bundle(str(path), str(tmp_path / "out"), target="x86", build=False)
    code = "".join(p.read_text() for p in (tmp_path / "out").glob("*_kernels_*.c"))
    assert re.findall(r"for \(int64_t \w+ = 0; \w+ < (\d+); \w+\+\+\)", code) == ["672", "196"], folder
