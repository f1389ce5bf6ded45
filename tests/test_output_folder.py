"""`pdc compile -o DIR` never deletes what pdc did not write: a new or empty DIR is written, an
earlier bundle is swapped for the new one in one step, anything else is refused; a compile killed
at any moment leaves DIR the complete old or the complete new bundle, and its temporary folders
are removed by the next compile into the same parent."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from onnx import TensorProto, helper, numpy_helper, save
import numpy as np

from pdc import output_folder
from pdc.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conv_model(path) -> str:
    """A small conv net: enough kernels that a compile takes a moment to kill."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"], name="relu1"),
             helper.make_node("Conv", ["b", "w2"], ["c"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["d"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Softmax", ["d"], ["y"], name="softmax", axis=1)]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], initializer=inits)
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def snapshot(folder) -> dict:
    """relative path -> content hash of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def temporaries(parent) -> list[str]:
    return sorted(n for n in os.listdir(parent) if ".tmp-" in n or ".old-" in n)


def compile_cli(capsys, *argv) -> tuple[int, str]:
    code = main(["compile", "-q", *argv])
    return code, capsys.readouterr().err


def test_refuses_a_project_folder_and_keeps_every_file(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    conv_model(project / "model.onnx")
    (project / "notes.txt").write_text("mine")
    (project / "src").mkdir()
    (project / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    before = snapshot(project)
    monkeypatch.chdir(project)
    code, err = compile_cli(capsys, "model.onnx", "-o", ".")
    assert code == 1
    assert err.strip().splitlines() == ["pdc: error: -o .: the folder is not empty and holds no pdc bundle; pick a "
                                        "new or empty folder (pdc only replaces a folder it wrote)"]
    assert snapshot(project) == before
    assert temporaries(tmp_path) == [] and sorted(os.listdir(project)) == ["model.onnx", "notes.txt", "src"]


def test_writes_a_new_or_empty_folder_and_swaps_an_old_bundle(tmp_path, capsys):
    model = conv_model(tmp_path / "m.onnx")
    (tmp_path / "empty").mkdir()
    assert compile_cli(capsys, model, "-o", str(tmp_path / "empty"))[0] == 0
    assert os.path.isfile(tmp_path / "empty" / "manifest.json")
    out = tmp_path / "new" / "deeper"
    assert compile_cli(capsys, model, "-o", str(out), "--name", "old_net")[0] == 0
    old = snapshot(out)
    assert compile_cli(capsys, model, "-o", str(out), "--name", "new_net")[0] == 0
    new = snapshot(out)
    assert "old_net.h" in old and "new_net.h" in new and "old_net.h" not in new
    assert temporaries(out.parent) == []


def test_swap_without_an_atomic_exchange(tmp_path, capsys, monkeypatch):
    """Where renameat2 is missing the old bundle is renamed aside first, then removed."""
    monkeypatch.setattr(output_folder, "exchange_folders", lambda a, b: False)
    model = conv_model(tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert compile_cli(capsys, model, "-o", str(out), "--name", "old_net")[0] == 0
    assert compile_cli(capsys, model, "-o", str(out), "--name", "new_net")[0] == 0
    assert "new_net.h" in snapshot(out) and "old_net.h" not in snapshot(out)
    assert temporaries(tmp_path) == []


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_next_compile_removes_stale_temporaries_only(tmp_path, capsys):
    model = conv_model(tmp_path / "m.onnx")
    gone = dead_pid()
    stale = [f".out.tmp-{gone}-0123abcd", f".other.old-{gone}-89abcdef"]
    live = [f".out.tmp-{os.getpid()}-0123abcd"]  # a compile of this process still running
    unrelated = [".out.tmp-notes", ".git"]
    for name in stale + live + unrelated:
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text("x")
    assert compile_cli(capsys, model, "-o", str(tmp_path / "out"))[0] == 0
    left = set(os.listdir(tmp_path))
    assert not left & set(stale)
    assert set(live + unrelated) <= left


def pdc_compile(model, out, name) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "pdc.cli", "compile", "-q", model, "-o", out, "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def test_a_killed_compile_leaves_the_old_or_the_new_bundle(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    reference = tmp_path / "ref"
    assert pdc_compile(model, str(reference / "old"), "old_net").wait() == 0
    start = time.perf_counter()
    assert pdc_compile(model, str(reference / "new"), "new_net").wait() == 0
    duration = time.perf_counter() - start  # of a warm compile, as the ones below are
    old, new = snapshot(reference / "old"), snapshot(reference / "new")
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    rng = random.Random(12)
    # kill points over the whole run, more of them near its end where the bundle is put in place
    delays = [0.2] + [rng.uniform(0.2, duration) for _ in range(2)] + [rng.uniform(0.8, 1.2) * duration
                                                                      for _ in range(4)]
    outcomes = []
    for delay in delays:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(reference / "old", out)
        proc = pdc_compile(model, str(out), "new_net")
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the compiler and the C compiler it started
        proc.wait()
        got = snapshot(out)
        assert got in (old, new), f"killed after {delay:.2f} s: {out} is neither the old nor the new bundle"
        outcomes.append("new" if got == new else "old")
    assert "old" in outcomes, outcomes  # some kills came before the swap
    assert pdc_compile(model, str(out), "new_net").wait() == 0
    assert snapshot(out) == new
    assert temporaries(out.parent) == [], "the next compile removes what killed compiles left"
