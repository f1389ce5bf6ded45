"""How the x86 kernels share a layer among threads: the band conv's band heights, the GEMM's split
dimension, the per-thread scratch slots. Each choice is read where the generator makes it (or in
the C it wrote) while a real layer compiles, and the layer's output is checked against ONNX
Runtime's where this CPU has AVX-512."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.codegen.context import SLOT_GAP, KernelContext
from pdc.codegen.kernels.x86 import conv as x86_conv
from pdc.compiler import compile_bundle


def conv_model(c: int, m: int, hw: int, k: int) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((m, c, k, k)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def recorded(monkeypatch, module, name: str) -> list:
    """The results of module.name while the test compiles."""
    seen, original = [], getattr(module, name)

    def record(*args, **kw):
        seen.append(original(*args, **kw))
        return seen[-1]
    monkeypatch.setattr(module, name, record)
    return seen


def compile_x86(model, tmp_path, threads: int) -> str:
    """Compiles model for x86-avx512 (the tiles the plans are stated for) and, where this CPU has
    AVX-512, checks the output against ONNX Runtime's; returns the kernels' C."""
    import onnxruntime as ort
    from pdc.targets import get_target
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    if get_target("x86-avx512").lacking_isa():
        compile_bundle(str(path), str(tmp_path / "out"), target="x86-avx512", threads=threads, build=False)
        return kernels_c(tmp_path / "out")
    module = pdc.compile(str(path), target="x86-avx512", out_dir=str(tmp_path / "out"), threads=threads)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = list(module.run({"x": x}).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    return kernels_c(tmp_path / "out")


def kernels_c(folder) -> str:
    return "".join(p.read_text() for p in sorted(folder.glob("*_kernels_*.c")))


@pytest.mark.parametrize("threads", [1, 2])
def test_band_heights_share_the_rows_among_threads(monkeypatch, tmp_path, threads):
    """squeezenet1_1's 3x3 16 -> 64 at 55x55: one band of 51 rows would fit the band buffer with a
    4-row second one, the least padded work in all; on 2 threads the busiest one would then do 51 rows
    of 55 (the layer ran no faster than on one). The busiest thread does at most half the rows, rounded up.
    (The band path forced: the layer's own pick is Winograd.)"""
    monkeypatch.setenv("PDC_FORCE_PATH", "conv=band")
    plans = recorded(monkeypatch, x86_conv, "_iconv_plan")
    compile_x86(conv_model(16, 64, 55, 3), tmp_path, threads)
    plan = next(p for p in plans if p is not None)
    bands = [plan["band"]] * (plan["nbands"] - 1) + [55 - (plan["nbands"] - 1) * plan["band"]]
    busiest = x86_conv._busiest(bands, threads)
    assert busiest <= -(-55 // threads), bands


def test_busiest_thread():
    assert x86_conv._busiest([51, 4], 2) == 51
    assert x86_conv._busiest([28, 27], 2) == 28
    assert x86_conv._busiest([18, 18, 18, 1], 2) == 36  # the fourth band waits for the first thread free
    assert x86_conv._busiest([3] * 100, 2) == 150  # many bands: an even share


def test_large_weights_split_output_channels(monkeypatch, tmp_path):
    """A 1x1 conv whose 2 MB of weights outgrow a core's L2 share splits its output channels among
    the threads (each streams half the weights, and all of the 346 KB input) even where that leaves
    1% more tiles on the busiest thread than splitting the pixels would (squeezenet1_1's
    classifier, 512 -> 1000 at 13x13)."""
    splits = recorded(monkeypatch, x86_conv, "choose_split")
    compile_x86(conv_model(512, 1000, 13, 1), tmp_path, 2)
    assert splits == [(1, 1)]


def test_large_input_splits_pixels(monkeypatch, tmp_path):
    """mobilenet_v2's projection 192 -> 32 at 28x28 splits its pixels: splitting the output
    channels has 6% fewer tiles on the busiest thread, but then every thread reads the whole 600 KB
    input for 24 KB of weights (it ran slower on 2 threads than on one)."""
    splits = recorded(monkeypatch, x86_conv, "choose_split")
    compile_x86(conv_model(192, 32, 28, 1), tmp_path, 2)
    assert splits == [(1, 0)]


def test_thread_scratch_slots_keep_apart():
    """Two threads' scratch slots are SLOT_GAP bytes apart beyond their 64-byte rounded size (a
    core's prefetchers fetch the lines just past those it writes); one slot has no gap."""
    from pdc.codegen.c_renderer import WeightBlob
    from pdc.ir import dtypes as D
    from pdc.ir.graph import Node, Value
    from pdc.ir.types import TensorType
    from pdc.targets.base import KernelConfig
    x = Value("x", TensorType(D.float32, [4]))
    y = Value("y", TensorType(D.float32, [4]))
    ctx = KernelContext(Node("relu", [x], [y], {}), "k", KernelConfig(2, 512, "avx512"), WeightBlob(), {})
    _, stride = ctx.thread_scratch(80, 2)
    assert stride * 4 == 320 + SLOT_GAP
    assert ctx.scratch_bytes >= 2 * (320 + SLOT_GAP)
    _, one = ctx.thread_scratch(80, 1)
    assert one == 80
    _, bytes_ = ctx.thread_scratch(100, 2, "uint8_t", 1)
    assert bytes_ == 128 + SLOT_GAP


@pytest.mark.parametrize("c,m,split_m", [(384, 64, 1), (96, 576, 0)])
def test_small_image_split(monkeypatch, tmp_path, c, m, split_m):
    """The small-image path (pixels as GEMM rows, 14x14): a projection's few output channels split
    the pixel rows (split N, every thread would pack all 196 pixels of the 384 channels: 37 -> 35 us,
    576 -> 96: 93 -> 76 us); an expansion's many output channels split the channels."""
    splits = recorded(monkeypatch, x86_conv, "choose_split")
    compile_x86(conv_model(c, m, 14, 1), tmp_path, 2)
    assert [s[1] for s in splits] == [split_m]


def expand_then(second: str) -> onnx.ModelProto:
    """A 1x1 conv 24 -> 144 at 56x56, then a 3x3 depthwise conv or a 1x1 conv back to 24."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((144, 24, 1, 1)).astype(np.float32), "w1")
    shape = (144, 1, 3, 3) if second == "depthwise" else (24, 144, 1, 1)
    w2 = numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), "w2")
    attrs = dict(group=144, pads=[1] * 4) if second == "depthwise" else {}
    g = helper.make_graph([helper.make_node("Conv", ["x", "w1"], ["e"]), helper.make_node("Conv", ["e", "w2"], ["y"], **attrs)],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 24, 56, 56])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("second,split_m", [("depthwise", ["1"]), ("pointwise", ["0", "0"])])
def test_expansion_before_a_depthwise_conv_splits_channels(tmp_path, second, split_m):
    """A 1x1 expansion read by a depthwise conv (which splits its planes among the threads) splits
    its output channels, so each thread's depthwise planes are the ones it wrote; read by another
    1x1 conv (which splits pixels) it splits the pixels."""
    code = compile_x86(expand_then(second), tmp_path, 2)
    assert re.findall(r"job\.split_m = (\d);", code) == split_m


@pytest.mark.parametrize("c,m,parallel", [(960, 240, True), (672, 168, True), (480, 120, False)])
def test_gemv_shares_its_weights_from_a_quarter_of_the_macs(tmp_path, c, m, parallel):
    # squeeze-excitation's FCs stream their weights from the outer caches: from 100k MACs (400 KB) on
    # they are read by every thread (mobilenet_v3_large's 960 x 240: 21 us in the model on one thread)
    code = compile_x86(conv_model(c, m, 1, 1), tmp_path, threads=2)
    assert "conv/gemv" in code or "_gemv" in code
    assert ("pdc_parallel_for(" in code and "_gemv, &args)" in code) == parallel
