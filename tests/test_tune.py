"""pdc tune and the tuning database: what compile takes from it, what tune writes, and the errors.
Nothing here asserts a speed (benchmarks/tune.py measures that): only that the database decides the
paths and threads, that a tuned bundle computes the same outputs, and that tune keeps the fastest
choice it measured."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import pdc
from pdc.ir.errors import PdcError
from pdc.tuning import DB_ENV, record
from oracles import onnxruntime_run

pytestmark = pytest.mark.zoo


def _lenet_keys(zoo, tmp_path, monkeypatch) -> tuple[str, list[dict]]:
    monkeypatch.setenv(DB_ENV, "")
    path = zoo("lenet")
    return path, pdc.compile(path, target="x86", threads=2, out_dir=str(tmp_path / "plain")).manifest["kernels"]


def test_compile_takes_the_databases_path_and_threads(zoo, tmp_path, monkeypatch):
    path, kernels = _lenet_keys(zoo, tmp_path, monkeypatch)
    convs = [k for k in kernels if k["op"] == "fused_conv"]
    assert [k["path"] for k in convs] == ["conv/band", "conv/band"] and not any("tuned" in k for k in kernels)
    db = tmp_path / "tuning.json"
    record({convs[1]["tuning_key"]: {"paths": {"conv": "im2col"}, "threads": 1, "us": {}}}, str(db))
    monkeypatch.setenv(DB_ENV, str(db))
    module = pdc.compile(path, target="x86", threads=2, out_dir=str(tmp_path / "tuned"))
    tuned = [k for k in module.manifest["kernels"] if k["op"] == "fused_conv"]
    assert [k["path"] for k in tuned] == ["conv/band", "conv/im2col"]
    assert [k.get("tuned", False) for k in module.manifest["kernels"]] == \
        [k["tuning_key"] == convs[1]["tuning_key"] for k in kernels]
    code = (tmp_path / "tuned" / "model_kernels_0.c").read_text()
    conv1 = code[code.index(tuned[1]["function"] + "("):]
    assert "job.parallel = 0;" in conv1[:conv1.index("pdc_sgemm_run")]  # threads 1: no pool
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    import onnx
    want = onnxruntime_run(onnx.load(path), {"x": x})
    np.testing.assert_allclose(module.run({"x": x})[module.outputs[0].name], want[0], rtol=1e-5, atol=1e-5)


def test_an_empty_variable_turns_tuning_off_and_a_bad_file_is_one_error(zoo, tmp_path, monkeypatch):
    path, kernels = _lenet_keys(zoo, tmp_path, monkeypatch)
    db = tmp_path / "tuning.json"
    record({kernels[2]["tuning_key"]: {"paths": {"conv": "im2col"}, "us": {}}}, str(db))
    monkeypatch.setenv(DB_ENV, "")
    assert "tuned" not in pdc.compile(path, target="x86", threads=2).manifest["kernels"][2]
    db.write_text("{not json")
    monkeypatch.setenv(DB_ENV, str(db))
    with pytest.raises(PdcError, match=r"tuning.json: not a pdc tuning database \(.*\); delete it or set "
                                       r"PDC_TUNING_DB"):
        pdc.compile(path, target="x86", threads=2)


def _conv_relu(path: str) -> str:
    """A 3x3 conv (128 channels on 24x24, a Winograd F(4x4) layer) and a ReLU: one family to tune."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((128, 128, 3, 3)).astype(np.float32) / 32,
                                "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["c"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128, 24, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128, 24, 24])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_tune_keeps_each_layers_fastest_choice_and_compile_reuses_it(tmp_path, monkeypatch):
    from pdc.tune import MARGIN, tune
    path = _conv_relu(str(tmp_path / "conv.onnx"))
    db = tmp_path / "tuning.json"
    monkeypatch.setenv(DB_ENV, "")
    result = tune(path, target="x86", threads=2, db=str(db), rounds=1, runs=3, say=lambda msg: None)
    layers = {r["key"]: r for r in result["layers"]}
    assert [r["heuristic"] for r in result["layers"]] == ["conv/winograd4"]
    assert {"conv/winograd4", "conv/winograd2", "conv/band", "conv/im2col", "conv/winograd4@1t"} <= \
        set(result["layers"][0]["us"])
    for r in result["layers"]:  # each layer's candidate: its fastest choice, by the margin
        fastest = min(r["us"], key=r["us"].get)
        beats = r["us"][fastest] < (1 - MARGIN) * r["us"][r["heuristic"]]
        assert r["candidate"] == (fastest if beats else r["heuristic"]), r
    # the database keeps the set whose whole model ran fastest (the heuristics' unless one beat them)
    ms, kept = result["whole_ms"], result["kept"]
    assert kept == "none" or ms[kept] == min(ms.values()) < (1 - MARGIN / 2) * ms["none"]
    saved = json.loads(db.read_text())["layers"]
    assert set(saved) == (set() if kept == "none" else set(layers))
    for key, entry in saved.items():
        chosen = layers[key]["chosen"]
        assert entry.get("threads") == (1 if chosen.endswith("@1t") else None)
        assert entry["paths"] == ({chosen.split("/")[0]: chosen.removesuffix("@1t").split("/")[1]}
                                  if "/" in chosen else {})
    monkeypatch.setenv(DB_ENV, str(db))  # a second compile reads it
    kernels = pdc.compile(path, target="x86", threads=2).manifest["kernels"]
    for k in kernels:
        if k["tuning_key"] in layers:
            assert k.get("tuned", False) == (k["tuning_key"] in saved)
            assert k.get("path", "-") == layers[k["tuning_key"]]["chosen"].removesuffix("@1t")


@pytest.mark.parametrize("argv,message", [
    (["--target", "arm64"], "pdc: error: pdc tune times kernels on this machine: x86 targets only, not arm64 (an "
                            "ARM bundle runs under qemu here, which measures nothing of the device's time)"),
    (["--rounds", "0"], "pdc: error: --rounds 0 --runs 20: at least one of each"),
])
def test_cli_errors_are_one_line(zoo, tmp_path, argv, message):
    out = subprocess.run([sys.executable, "-m", "pdc", "tune", zoo("lenet"), "--db", str(tmp_path / "t.json"), *argv],
                         capture_output=True, text=True)
    assert out.returncode != 0 and out.stderr.strip().splitlines() == [message], out.stderr
