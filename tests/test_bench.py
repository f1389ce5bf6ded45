"""pdc bench: latency percentiles beside ONNX Runtime, the per-kernel profile of a profiling
build, instruction counts for qemu-user targets, and its errors."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.cli import main
from test_arm import require_tools


def conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal((8 * 8 * 8, 4)) * 0.1).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(conv_model(), str(path))
    return str(path)


def table(out: str) -> dict:
    """engine -> [p50, p90, p99, min, mean] from bench's table."""
    rows = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(pdc|onnxruntime)\s+" + r"\s+".join([r"([\d.]+)"] * 5), line.strip())
        if m:
            rows[m.group(1)] = [float(v) for v in m.groups()[1:]]
    return rows


def test_bench_times_pdc_beside_onnxruntime(model_path, capsys):
    assert main(["bench", model_path, "--runs", "30", "--warmup", "3", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pdc bench: net on x86")
    assert "1 thread, 30 runs after 3 warm-up runs, interleaved with ONNX Runtime" in out
    rows = table(out)
    assert set(rows) == {"pdc", "onnxruntime"}
    for p50, p90, p99, fastest, mean in rows.values():
        assert 0 < fastest <= p50 <= p90 <= p99 and mean > 0
    ratio = float(re.search(r"pdc / onnxruntime \(p50\): ([\d.]+)", out).group(1))
    a, b = rows["pdc"][0], rows["onnxruntime"][0]  # printed to 0.001 ms
    assert abs(ratio - a / b) <= 0.0005 * (1 + a / b) / b + 0.005


def test_profile_lists_every_kernel_that_runs(model_path, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    module = pdc.compile(model_path, out_dir=str(bundle), threads=1)
    assert main(["bench", str(bundle), "--runs", "20", "--warmup", "2", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "(ONNX Runtime runs beside pdc for .onnx models)" in out and set(table(out)) == {"pdc"}
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S+)\s+(.+)$", out.split("per kernel")[1], re.M)
    kernels = module.manifest["kernels"]
    # every kernel but the views (flatten here) takes time; each row names its op and source node
    assert sorted(int(r[0]) for r in rows) == [i for i, k in enumerate(kernels) if k["op"] != "flatten"]
    for index, us, share, op, path, nodes in rows:
        k = kernels[int(index)]
        assert float(us) > 0 and op == k["op"] and path == k.get("path", "-") and nodes == "-"  # unnamed nodes
    assert sum(float(r[2]) for r in rows) == pytest.approx(100, abs=0.5)
    # the profiling build is a copy: the bundle's own library has no clock in it
    symbols = subprocess.run(["nm", "-D", str(bundle / "libnet.so")], capture_output=True, text=True).stdout
    assert "net_profile_ns" not in symbols


def test_arm64_bundles_report_instructions(model_path, tmp_path, capsys):
    require_tools("arm64")
    pdc.compile(model_path, target="arm64", out_dir=str(tmp_path / "b"))
    assert main(["bench", str(tmp_path / "b"), "--runs", "1"]) == 0
    out = capsys.readouterr().out
    m = re.fullmatch(r"pdc bench: net on arm64 runs under qemu-aarch64 here: wall-clock times are not the device's; "
                     r"instructions per run: ([\d,]+)\n", out)
    assert m and int(m.group(1).replace(",", "")) > 10_000


@pytest.mark.parametrize("argv,message", [
    (["--runs", "0"], "pdc: error: --runs 0: at least one timed run"),
    (["--warmup", "-1"], "pdc: error: --warmup -1: zero or more warm-up runs"),
])
def test_bad_arguments_are_one_line_errors(model_path, argv, message, capsys):
    assert main(["bench", model_path, *argv]) == 1
    assert capsys.readouterr().err == message + "\n"


def test_cortex_m_bundles_are_refused(model_path, tmp_path, capsys):
    require_tools("cortex-m4")
    pdc.compile(model_path, target="cortex-m4", out_dir=str(tmp_path / "m4"))
    assert main(["bench", str(tmp_path / "m4")]) == 1
    assert capsys.readouterr().err == ("pdc: error: cortex-m4: its bundles run under qemu-system-arm here, which times "
                                       "nothing of the device; pdc bench times host targets and counts the "
                                       "instructions of arm64 / armv7 ones\n")
