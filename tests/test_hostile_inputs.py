"""Hostile and broken models (tests/hostile/corpus, written by tests/hostile/make_corpus.py) give
one exact line on stderr and exit 1 from `pdc inspect`, `pdc opt -O2` and `pdc compile`: never an
internal error (exit 70), a traceback, a hang or a terabyte allocation. Also the size limit's
option, external-data checks, output paths that cannot be written, and softmax over non-finite rows."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pdc.cli import main
from pdc.ir.errors import PdcError

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "hostile", "corpus")
sys.path.insert(0, os.path.join(HERE, "hostile"))
import make_corpus  # noqa: E402

LIMIT = "over the limit of 16 GiB (--max-tensor-bytes)"
NOT_TOPOLOGICAL = "(the nodes are not in topological order, or form a cycle)"

# corpus file -> what follows "pdc: error: FILE: "
EXPECTED = {
    "empty_graph.onnx": "the graph is empty (no nodes, no outputs)",
    "no_outputs.onnx": "the graph has no outputs",
    "duplicate_initializer.onnx": "initializer 'w' is defined twice",
    "duplicate_input.onnx": "input 'x' is listed twice",
    "duplicate_graph_output.onnx": "graph output 'y' is listed twice",
    "duplicate_node_output.onnx": "node 'neg' (Neg) redefines 'y', already the output of node 'relu' (Relu)",
    "output_shadows_input.onnx": "node 'relu' (Relu) redefines 'x', already a graph input",
    "output_shadows_initializer.onnx": "node 'neg' (Neg) redefines 'w', already an initializer",
    "undefined_input.onnx": "node 'add' (Add) uses 'nowhere', which nothing defines",
    "nodes_out_of_order.onnx": f"node 'second' (Neg) uses 'a' before node 'first' (Relu) defines it {NOT_TOPOLOGICAL}",
    "undefined_graph_output.onnx": "graph output uses 'z', which nothing defines",
    "negative_initializer_dim.onnx": "initializer 'w': negative dim -2 in shape [-2]",
    "negative_input_dim.onnx": "input 'x': negative dim -3 in its declared shape",
    "output_dtype_mismatch.onnx": "graph output 'y' is declared int64 but node 'relu' (Relu) gives float32",
    "node_without_inputs_and_outputs.onnx": "node 'hollow' (Relu) has no outputs",
    "relu_with_two_inputs.onnx": "node 'relu' (Relu): has 2 inputs, Relu takes 1",
    "gemm_string_alpha.onnx": "node 'gemm' (Gemm): attribute 'alpha' must be FLOAT, got STRING",
    "huge_input_dim.onnx": f"input 'x': f32[1099511627776,3] takes 12 TiB, {LIMIT}",
    "huge_batch.onnx": f"input 'x': f32[1099511627776,3,8,8] takes 768 TiB, {LIMIT}",
    "huge_spatial_dim.onnx": f"input 'x': f32[1,3,1099511627776,8] takes 96 TiB, {LIMIT}",
    "huge_pool_padding.onnx": f"node 'pool' (MaxPool): output 'y': f32[1,3,2199023255559,7] takes 168 TiB, {LIMIT}",
    "huge_conv_padding.onnx": f"node 'conv' (Conv): output 'y': f32[1,4,2199023255558,6] takes 192 TiB, {LIMIT}",
    "huge_initializer_dims.onnx": f"initializer 'w': f32[1099511627776,1099511627776] takes 4,194,304 EiB, {LIMIT}",
    "huge_rank.onnx": "input 'x': rank 100 is over pdc's limit of 64",
    "external_offset_negative.onnx": "initializer 'w': external data offset '-8' is not a non-negative integer",
    "external_offset_not_a_number.onnx": "initializer 'w': external data offset 'eight' is not a non-negative integer",
    "external_length_beyond_file.onnx":
        "initializer 'w': external data offset 0 + length 64 is beyond the end of 'weights.bin' (16 bytes)",
    "external_offset_huge.onnx":
        "initializer 'w': external data offset 1099511627776 + length 16 is beyond the end of 'weights.bin' (16 bytes)",
    "paddle_long_integer/inference.json": "not a Paddle PIR model (a number too long to read)",
}

COMMANDS = {
    "inspect": lambda model, out: ["inspect", model],
    "opt": lambda model, out: ["opt", "-O2", model],
    "compile": lambda model, out: ["compile", "-q", model, "-o", out],
}


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line(err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert lines == [expected], err


def test_corpus_matches_its_script(tmp_path):
    """The checked-in corpus is what make_corpus.py writes (rerun it after changing a case)."""
    fresh = make_corpus.write_corpus(str(tmp_path))
    names = sorted(os.path.relpath(p, tmp_path) for p in fresh)
    assert names == sorted(EXPECTED), "every corpus model needs its expected message here"
    for rel in names:
        assert os.path.isfile(os.path.join(CORPUS, rel)), f"{rel}: run python tests/hostile/make_corpus.py"


@pytest.mark.parametrize("command", COMMANDS)
def test_corpus_gives_one_line_errors(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(CORPUS)  # messages name the model as given: a path relative to the corpus
    for model, message in EXPECTED.items():
        out = str(tmp_path / "bundle")
        start = time.perf_counter()
        code, err = run_cli(COMMANDS[command](model, out), capsys)
        assert time.perf_counter() - start < 2, f"{model}: {command} took over 2 s"
        assert code == 1, f"{model}: {command} exit {code}: {err}"
        assert_one_line(err, f"pdc: error: {model}: {message}")
        assert not os.path.exists(out), f"{model}: a failed compile wrote {out}"


def relu_model(shape, path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_max_tensor_bytes_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    relu_model([1024, 1024], tmp_path / "m.onnx")  # 4 MiB tensors
    for argv in (["inspect", "m.onnx"], ["opt", "m.onnx"], ["compile", "-q", "m.onnx", "-o", "out"]):
        code, err = run_cli([*argv, "--max-tensor-bytes", "1M"], capsys)
        assert code == 1
        assert_one_line(err, "pdc: error: m.onnx: input 'x': f32[1024,1024] takes 4 MiB, over the limit of "
                             "1 MiB (--max-tensor-bytes)")
    code, err = run_cli(["inspect", "m.onnx", "--max-tensor-bytes", "4M"], capsys)
    assert code == 0, err
    code, err = run_cli(["inspect", "m.onnx", "--max-tensor-bytes", "lots"], capsys)
    assert code == 1
    assert_one_line(err, "pdc: error: --max-tensor-bytes 'lots': expected a positive size such as 16G, 512M "
                         "or 1048576")


def test_max_tensor_bytes_keyword_and_bound_symbols(tmp_path):
    """pdc.compile takes the limit too, and a --shape binding is checked against it."""
    import pdc
    path = relu_model(["N", 1024], tmp_path / "m.onnx")
    with pytest.raises(PdcError, match=r"^input 'x': f32\[1024,1024\] takes 4 MiB, over the limit of 1 MiB"):
        pdc.compile(path, out_dir=str(tmp_path / "a"), shapes={"N": 1024}, max_tensor_bytes="1M", build=False)
    with pytest.raises(PdcError, match=r"^input 'x': f32\[1099511627776,1024\] takes 4 PiB, over the limit of "
                                       r"16 GiB"):
        pdc.compile(path, out_dir=str(tmp_path / "b"), shapes={"N": 2 ** 40}, build=False)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_unwritable_and_blocked_output_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    relu_model([2, 3], tmp_path / "m.onnx")
    (tmp_path / "afile").write_text("not a folder")
    code, err = run_cli(["compile", "-q", "m.onnx", "-o", "afile"], capsys)
    assert code == 1
    assert_one_line(err, "pdc: error: -o afile: exists and is not a folder")
    code, err = run_cli(["compile", "-q", "m.onnx", "-o", "afile/sub/dir"], capsys)
    assert code == 1
    assert_one_line(err, f"pdc: error: -o afile/sub/dir: {tmp_path / 'afile'} is a file, not a folder")
    if os.path.isdir("/proc/self"):  # a folder nobody may create entries in, not even root
        code, err = run_cli(["compile", "-q", "m.onnx", "-o", "/proc/pdc-bundle"], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("pdc: error: -o /proc/pdc-bundle: cannot write the bundle: "), err
        code, err = run_cli(["opt", "m.onnx", "-o", "/proc/pdc-model.pdir"], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "internal error" not in err, err


# ---- softmax over rows that overflow: NaN where ONNX Runtime gives NaN -----------------------
ROWS = np.array([[np.inf, 1, 2], [-np.inf, -np.inf, -np.inf], [np.inf, np.inf, 1], [np.nan, 1, 2],
                 [-np.inf, 1, 2], [3e38, -3e38, 0], [1, 2, 3]], np.float32)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_of_non_finite_rows_matches_onnxruntime(op, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import pdc
    from pdc.frontend.onnx_import import import_onnx
    from pdc.ir.interpreter import run_graph
    for x, axis in ((ROWS, -1), (np.ascontiguousarray(ROWS.T), 0)):  # the rows kernel and the blocked one
        g = helper.make_graph([helper.make_node(op, ["x"], ["y"], axis=axis)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        with np.errstate(all="ignore"):
            reference = run_graph(import_onnx(m), {"x": x})["y"]
        compiled = pdc.compile(m, out_dir=str(tmp_path / f"{op}{axis}")).run({"x": x})["y"]
        for got in (reference, compiled):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
