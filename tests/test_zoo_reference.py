"""Every zoo model through pdc (import, verify, reference interpreter) against ONNX Runtime.

Also tests the zoo's cache itself: keys, reuse, and parallel generation.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo as zoo_lib
from pdc.ir.errors import PdcError
from tolerances import assert_zoo_close, max_rel_error, zoo_tolerance

CASES = [pytest.param(name, marks=[pytest.mark.zoo] if name in zoo_lib.PADDLE_MODELS else [], id=name)
         for name in zoo_lib.ZOO_MODELS]


@pytest.mark.parametrize("name", CASES)
def test_matches_onnxruntime(name, zoo):
    path = zoo(name)
    try:
        rows = zoo_lib.compare(path)
    except PdcError as e:  # unsupported op, verify failure...: pdc's one-line message says it all
        error = f"{type(e).__name__}: {e}"
    else:
        error = None
    if error:
        pytest.fail(error, pytrace=False)
    bad = [r for r in rows if r["pdc_shape"] != r["shape"] or r["rel_error"] > r["tolerance"] or r["elementwise"]]
    assert not bad, "; ".join(
        f"output '{r['output']}': pdc {r['pdc_dtype']}{r['pdc_shape']} vs onnxruntime {r['dtype']}{r['shape']}, "
        f"max rel error {r['rel_error']:.3g} (tolerance {r['tolerance']:g}); {r['elementwise']}" for r in bad)


def test_symbolic_batch_keeps_its_symbol(zoo):
    from pdc.frontend import load_model

    graph = load_model(zoo("symbolic_batch"))
    assert graph.inputs[0].type.shape == ("N", 3, 16, 16)


# ---- the harness ----------------------------------------------------------------------------------
def test_rel_error():
    assert max_rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert max_rel_error([1.0, 2.1], [1.0, 2.0]) == pytest.approx(0.05)
    assert max_rel_error([0.0], [0.0]) == 0.0
    assert max_rel_error([1.0], [1.0, 2.0]) == float("inf")
    assert max_rel_error([float("nan")], [1.0]) == float("inf")
    assert max_rel_error([float("nan"), 1.0], [float("nan"), 1.0]) == 0.0
    assert zoo_tolerance("float32") == 1e-4 and zoo_tolerance("int64") == 0.0


def test_cache_is_reused_and_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("PDC_ZOO_CACHE", str(tmp_path))
    path = Path(zoo_lib.zoo_model("mlp"))
    assert path.is_file() and path.parent.parent == tmp_path
    mtime = path.stat().st_mtime_ns
    assert Path(zoo_lib.zoo_model("mlp")) == path and path.stat().st_mtime_ns == mtime
    meta = zoo_lib.model_meta("mlp")
    assert meta["key"] in path.parent.name and meta["params"] == zoo_lib.spec("mlp").params
    s = zoo_lib.spec("mlp")
    changed = zoo_lib.ZooSpec(s.name, s.source, s.builder, dict(s.params, opset=17))
    assert zoo_lib.cache_key(changed) != zoo_lib.cache_key(s)
    assert not any((tmp_path / "tmp").iterdir())


def test_external_data_sits_next_to_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PDC_ZOO_CACHE", str(tmp_path))
    path = Path(zoo_lib.zoo_model("external_data"))
    assert (path.parent / "weights.bin").stat().st_size > 4 * 64 * 128


def test_parallel_workers_build_once(tmp_path):
    code = ("import json, sys, zoo; p = zoo.zoo_model('tiny_cnn'); "
            "print(json.dumps([p, zoo.model_meta('tiny_cnn')['created']]))")
    env = dict(os.environ, PDC_ZOO_CACHE=str(tmp_path), PYTHONPATH=str(Path(__file__).parent))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({tuple(r) for r in results}) == 1  # same path, same build
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tiny_cnn")] == [Path(results[0][0]).parent.name]
    assert not any((tmp_path / "tmp").iterdir())


def test_compare_catches_a_wrong_answer(monkeypatch):
    path = zoo_lib.zoo_model("mlp")
    # stands in for pdc: onnxruntime's answer, 0.1% off
    ort = zoo_lib.run_onnxruntime
    monkeypatch.setattr(zoo_lib, "run_pdc", lambda p, feeds: [(n, a * 1.001) for n, a in ort(p, feeds)])
    (row,) = zoo_lib.compare(path)
    assert row["tolerance"] < row["rel_error"] == pytest.approx(1e-3, rel=1e-2)


def test_elementwise_check_catches_an_error_in_the_small_elements():
    """An error confined to elements far below the largest one passes the max relative error and
    fails the element-by-element check."""
    want = np.linspace(-1, 1, 1001).astype(np.float32)
    got = np.where(np.abs(want) < 0.01, want + np.float32(5e-5), want)  # 5e-5 of the largest value
    assert max_rel_error(got, want) <= zoo_tolerance(want.dtype)
    with pytest.raises(AssertionError, match="elements differ"):
        assert_zoo_close(got, want)
    assert_zoo_close(want * np.float32(1 + 5e-5), want)  # 0.005% everywhere is within both


def test_missing_paddle_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PDC_ZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(zoo_lib, "paddle_missing", lambda: "paddle not installed")
    with pytest.raises(zoo_lib.ZooUnavailable, match="'resnet18' needs Paddle: paddle not installed"):
        zoo_lib.zoo_model("resnet18")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(zoo_lib.ZooError, match="unknown zoo model 'nope'"):
        zoo_lib.zoo_model("nope")


def test_paddle_stays_out_of_the_test_process():
    # exports run in a subprocess: importing paddle here would cost seconds per pytest worker
    assert "paddle" not in sys.modules
