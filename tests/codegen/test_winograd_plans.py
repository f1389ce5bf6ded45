"""Which 3x3 layers x86 computes by Winograd, and how the Winograd paths block them: the path chosen
for layers of resnet18 and squeezenet1_1, the blocks of tile rows (even; on x86 chosen with the
register tile, their columns whole vectors), and the GEMM of each block over its own columns. Each
layer is checked against ONNX Runtime where this CPU has AVX-512 (compile_x86)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pdc.codegen.kernels import winograd
from pdc.compiler import compile_details
from tests.codegen.test_parallel_plans import compile_x86, conv_model


def path_of(model: onnx.ModelProto, tmp_path) -> str:
    c = compile_details(model, str(tmp_path / "p"), target="x86-avx512", build=False)
    return c.manifest["kernels"][0]["path"]


@pytest.mark.parametrize("c,m,hw,path", [
    (64, 64, 56, "conv/winograd4"),    # resnet18's first stage: 590 KB of transformed weights, 196 tiles
    (128, 128, 28, "conv/winograd4"),  # 49 tiles, 48 KB of them a tile
    (256, 256, 14, "conv/winograd4"),  # F(4x4): 9.4 MB for 16 tiles, 590 KB a tile
    (512, 512, 7, "conv/winograd2"),   # F(4x4) pads 4 tiles to a panel; F(2x2): 16.8 MB for 16 tiles, 1 MB a tile
    (1024, 1024, 7, "conv/transposed"),  # F(2x2): 4 MB a tile: direct
    (32, 128, 27, "conv/winograd4"),   # squeezenet1_1's expansions from 32 channels
    (16, 64, 55, "conv/winograd4"),    # ... and from 16
    (8, 64, 55, "conv/band"),          # not from 8: the transforms outweigh the saving
])
def test_the_layers_winograd_takes(tmp_path, c, m, hw, path):
    assert path_of(conv_model(c, m, hw, 3), tmp_path) == path


def test_arms_blocks_are_even_and_whole_panels():
    # 15 tile rows of 15 tiles whose V and M take 4608 floats a column, in 1M floats: at most 12
    # rows (180 columns, 192 as whole panels of 48); two blocks of 8 and 7 rows, not 12 and 3
    rows, p = winograd.block_rows(15, 15, 4608, 48, 1 << 20)
    assert rows == 8 and p == 144
    for th, tw, per_col, nr in [(14, 14, 4608, 48), (7, 7, 9216, 32), (4, 4, 8192, 64), (30, 3, 100, 24)]:
        rows, p = winograd.block_rows(th, tw, per_col, nr, 1 << 20)
        blocks = -(-th // rows)
        assert rows * (blocks - 1) < th <= rows * blocks and th - rows * (blocks - 1) >= rows - 1
        assert p >= rows * tw and p % nr == 0


def test_the_blocks_and_tile_least_padded_work():
    from pdc.codegen.kernels.x86.winograd import _blocks
    # resnet18's 64-channel 56x56 F(4x4): 14 x 14 tiles; 8 x 48 tiles need 240 columns (over the
    # budget), so one block of 12 x 32 tiles (224 columns) beats two blocks of 98 as 6 x 64 (128 each)
    assert _blocks("avx512", 64, 14, 14, 36 * 128) == (14, 224, 12, 2)
    # a block's columns are whole panels and vectors, within the budget
    for mg, th, tw, per_col in [(128, 7, 7, 36 * 256), (256, 7, 7, 16 * 512), (64, 56, 56, 36 * 128)]:
        rows, p, mr, nv = _blocks("avx512", mg, th, tw, per_col)
        assert p >= rows * tw and p % (16 * nv) == 0 and per_col * p <= 1 << 20


def test_each_block_computes_its_own_columns(tmp_path):
    """64 channels at 60x60 with a residual: blocks of 8 and 7 tile rows (120 and 105 tiles); the
    register tile is picked for a block's 120 columns (6 x 64: two panels, V's rows 128 apart), and
    the GEMM is told each block's columns (the last block's tail panel is padded by the GEMM, not
    computed as a whole block)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.1, "w")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4),
                           helper.make_node("Add", ["c", "x"], ["s"]), helper.make_node("Relu", ["s"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 60, 60])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    src = compile_x86(model, tmp_path, threads=2)
    assert "pdc_wino_run(&wj, 8);" in src
    assert "gemm.job.P = 128;" in src and "gemm.job.NR = 64;" in src
    assert "job.cols = cols;" in src  # the block's columns reach the pointwise GEMM
