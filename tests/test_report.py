"""pdc report: arena, peak, weights per layer and flash against the compiled bundle, the HTML page in
a headless browser, and the CLI. (The x86 latency estimate against measured runs is
tests/test_report_latency.py, run alone: a timing inside a parallel test run measures the other tests too.)"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pdc
from conftest import missing_dependency
from pdc.cli import main
from pdc.compiler import compile_details
from pdc.report import calibrate, flash_figures, html_report, report_of

THREADS = min(os.cpu_count() or 1, 2)
MCU_MODELS = ("digits_cnn", "lenet", "mlp", "tiny_cnn")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """compiled(model, target) -> (compile_details result, report), each compiled once per module."""
    from zoo import zoo_model
    cache = {}
    # measured now, beside the timed runs: a cached calibration may come from a busier (or idler) machine
    calibration = vars(calibrate(THREADS, refresh=True))

    def get(name: str, target: str = "x86"):
        if (name, target) not in cache:
            folder = tmp_path_factory.mktemp(f"{name}-{target}") / "bundle"
            c = compile_details(zoo_model(name), str(folder), target=target,
                                threads=THREADS if target == "x86" else None)
            cache[name, target] = (c, report_of(c, flash_figures(c.folder, c.manifest), 2,
                                                 calibration if target == "x86" else None))
        return cache[name, target]
    return get


def live_bytes_by_step(graph, plan) -> list[int]:
    """Independently of pdc.report: at each step, the distinct arena roots of the values defined at
    or before it and read at or after it, plus the step's kernel scratch."""
    defined, last_use = {}, {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v is not None:
                last_use[v] = i
        for v in node.outputs:
            defined[v] = i
            last_use.setdefault(v, i)
    steps = []
    for i in range(len(graph.nodes)):
        roots = {plan.storage[v] for v in plan.offsets if defined[v] <= i <= last_use[v]}
        steps.append(sum(r.type.nbytes for r in roots) + plan.scratch_bytes.get(i, 0))
    return steps


@pytest.mark.parametrize("name", ["lenet", "tiny_cnn", "mobilenet_v2", "transformer_encoder"])
def test_arena_weights_and_peak_are_the_bundles(zoo, compiled, name):
    zoo(name)  # skips (fails in CI) when the zoo cannot be generated
    c, rep = compiled(name)
    m = c.manifest
    assert rep["arena_bytes"] == m["arena_bytes"] == c.bundle.plan.arena_bytes
    blob = (Path(c.folder) / f"{m['name']}_weights.bin").stat().st_size
    assert sum(r["weight_bytes"] for r in rep["layers"]) == rep["weight_bytes"] == m["weight_bytes"] == blob
    assert [r["path"] or None for r in rep["layers"]] == [k.get("path") for k in m["kernels"]]
    # the peak: the independent count at the reported step, and no step above it
    steps = live_bytes_by_step(c.graph, c.bundle.plan)
    peak = rep["peak"]
    assert steps == rep["timeline"]
    assert steps[peak["node"]] == peak["live_bytes"] == max(steps) <= m["arena_bytes"]
    assert sum(v["bytes"] for v in peak["values"]) == peak["live_bytes"]
    assert rep["scratch_bytes"] == max(c.bundle.plan.scratch_bytes.values(), default=0)
    assert sum(rep["coverage"].values()) == len(m["kernels"]) and rep["coverage"]["unsupported"] == 0


def test_weights_per_layer_follow_packing(zoo, compiled):
    """The layers own their packed weights: a conv's row carries its bytes, a pooling layer none."""
    zoo("lenet")
    _, rep = compiled("lenet")
    by_op = {}
    for r in rep["layers"]:
        by_op.setdefault(r["op"], []).append(r["weight_bytes"])
    assert all(b > 0 for b in by_op["fused_conv"]) and all(b == 0 for b in by_op["max_pool"])
    # both convolutions (28x28 and 10x10 outputs) take the x86 family's band path, AVX-512 or AVX2, and
    # both float32 max pools its band kernel
    native = [(r["op"], r["path"]) for r in rep["layers"] if r["coverage"] == "native"]
    assert native == [("fused_conv", "conv/band"), ("max_pool", "pool/avx-band")] * 2


def _size_text_data(path: Path) -> int:
    out = subprocess.run(["arm-none-eabi-size", "-B", str(path)], capture_output=True, text=True, check=True).stdout
    text, data = out.strip().splitlines()[1].split()[:2]
    return int(text) + int(data)


@pytest.mark.parametrize("name", MCU_MODELS)
def test_cortex_m_flash_and_stack_match_the_firmware(zoo, compiled, name):
    from test_cortex_m import require_mcu_tools
    require_mcu_tools()
    zoo(name)
    c, rep = compiled(name, "cortex-m4")
    m = c.manifest
    size = _size_text_data(Path(c.folder) / f"{m['name']}.elf")
    assert abs(rep["flash"]["bytes"] - size) <= 0.05 * size
    assert rep["flash"]["weights"] == m["weight_bytes"] and rep["flash"]["code"] > 0
    assert rep["stack_bytes"] == m["memory"]["stack_estimate"] > 0
    assert rep["ram_bytes"] == m["arena_bytes"] + rep["stack_bytes"] == m["ram_bytes"]
    assert rep["latency"]["cycles"] > 0 and all("est_cycles" in r for r in rep["layers"])


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing_dependency("chromium not installed (Debian package chromium; make toolchains installs it)")
    return exe


def test_html_opens_in_a_headless_browser_with_both_plots(zoo, compiled, tmp_path):
    exe = chromium()
    zoo("tiny_cnn")
    _, rep = compiled("tiny_cnn")
    page = tmp_path / "report.html"
    page.write_text(html_report(rep))
    assert "<script" not in page.read_text() and "http" not in page.read_text().replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # no background networking (the machine may have no network) and a profile of its own
    quiet = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", *quiet, "--enable-logging=stderr",
                        "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    for plot, title in (("arena-plot", "Arena live bytes over the schedule"),
                        ("latency-plot", "Estimated latency per layer")):
        m = re.search(rf'<svg id="{plot}"[^>]*>(.*?)</svg>', dom, re.S)
        assert m and f"<title>{title}</title>" in m.group(1), plot
    assert re.search(r"peak [\d,]+ B at node \d+", dom)
    assert dom.count("<polyline") == 1 and dom.count("<rect") == len(rep["layers"])
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console


def test_cli_text_json_and_html(zoo, tmp_path, capsys):
    path = zoo("tiny_cnn")
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    assert main(["report", path, "--json", str(out_json), "--html", str(out_html), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert re.match(r"pdc report: model on x86(-avx2|-avx512)? \(1 thread, -O2, \d+ kernels\)", text)
    for key in ("arena (RAM):", "peak:", "kernel scratch:", "stack:", "flash:", "weights:", "coverage:",
                "latency (est.):", "measure:", "per layer (schedule order):"):
        assert re.search(rf"^{re.escape(key)}", text, re.M), key
    rep = json.loads(out_json.read_text())
    m = pdc.compile(path, threads=1).manifest  # the same model compiled on its own
    assert rep["arena_bytes"] == m["arena_bytes"] and rep["weight_bytes"] == m["weight_bytes"]
    assert [r["op"] for r in rep["layers"]] == [k["op"] for k in m["kernels"]]
    assert [r["path"] or None for r in rep["layers"]] == [k.get("path") for k in m["kernels"]]
    assert rep["target"] == m["target"] and rep["threads"] == 1 and rep["inputs"] == m["inputs"]
    assert rep["peak"]["live_bytes"] == max(rep["timeline"]) and rep["flash"]["bytes"] > rep["weight_bytes"]
    assert rep["latency"]["total_us"] > 0 and "<svg" in out_html.read_text()
    assert re.search(rf"arena \(RAM\):\s+{rep['arena_bytes']:,} B", text)


def test_cli_json_on_stdout_for_arm64(zoo, capsys):
    from test_arm import require_tools
    require_tools("arm64")
    path = zoo("mlp")
    assert main(["report", path, "--target", "arm64", "--json", "-"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["target"] == "arm64" and rep["stack_bytes"] is None
    assert rep["latency"]["model"].startswith("cycle model") and rep["latency"]["cycles"] > 0
    assert rep["flash"]["of"] == "libmodel.a" and rep["flash"]["bytes"] > rep["weight_bytes"]


@pytest.mark.parametrize("argv, message", [
    (["report", "MISSING", "--target", "x86"], r"pdc: error: .*missing\.onnx: no such file"),
    (["report", "MODEL", "--target", "nope"], r"pdc: error: unknown target 'nope' \(known targets: .*\)"),
    (["report", "MODEL", "--target", "reference"], r"pdc: error: target 'reference' runs the interpreter.*"),
])
def test_cli_errors_are_one_line(zoo, tmp_path, argv, message):
    model = zoo("mlp")
    argv = [a.replace("MISSING", str(tmp_path / "missing.onnx")).replace("MODEL", model) for a in argv]
    r = subprocess.run([sys.executable, "-m", "pdc", *argv], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and re.fullmatch(message, r.stderr.strip()), r.stderr
    assert "Traceback" not in r.stderr


def test_path_factor_scales_the_compute_of_its_path():
    """x86_seconds = max(compute x the path's factor, memory) + the call: a compute-bound layer of the
    path doubles with a factor of 2, one bound by its memory traffic stays, other paths stay."""
    from pdc.report import Calibration, kernel_call_s, x86_seconds, x86_terms
    row = {"runs": True, "family": "x86", "path": "conv/winograd4", "macs": 10 ** 8, "outputs": 0,
           "bytes_moved": 1000, "weight_bytes": 0, "op": "fused_conv", "reduction": 576}
    plain = Calibration(mac_per_s=1e11, bytes_per_s=1e10, kernel_s=1e-6, run_s=0.0)
    scaled = Calibration(**{**vars(plain), "path_factor": {"conv/winograd4": 2.0, "conv/pointwise": 5.0}})
    call = kernel_call_s(row, plain)
    compute, memory = x86_terms(row, plain, False)
    assert compute > memory
    assert x86_seconds(row, scaled) - call == pytest.approx(2 * (x86_seconds(row, plain) - call))
    streaming = {**row, "bytes_moved": 10 ** 9}  # its memory term dwarfs twice the compute
    assert x86_seconds(streaming, scaled) == pytest.approx(x86_seconds(streaming, plain))
    other = {**row, "path": "conv/band"}
    assert x86_seconds(other, scaled) == pytest.approx(x86_seconds(other, plain))


def test_path_factor_fit_gives_the_measured_sum():
    from pdc.report import path_factor_fit
    rows = [(1.0, 0.5, 2.0), (1.0, 3.0, 3.0)]  # (compute, memory, measured): the first compute-bound
    f = path_factor_fit(rows)
    assert sum(max(c * f, m) for c, m, _ in rows) == pytest.approx(5.0) and f == pytest.approx(2.0)
    assert path_factor_fit([(0.1, 1.0, 2.0)]) is None  # bound by memory at every factor: no evidence


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2"])
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1", "resnet18"])
def test_calibration_layers_take_every_path_the_zoo_takes(zoo, tmp_path, name, target):
    """The calibration's typical layers (PATH_LAYERS) take every conv / GEMM path these networks take
    on either x86 ISA, so each path's factor is the machine's measurement."""
    from pdc.report import layer_rows, path_model

    def paths(model, folder):
        c = compile_details(model, str(tmp_path / folder), target=target, threads=THREADS, build=False)
        return {r["path"] for r in layer_rows(c.graph, c.bundle) if r["macs"] and r["path"]}
    taken = paths(zoo(name), "net")
    assert taken and taken <= paths(path_model(), "calibration"), taken - paths(path_model(), "calibration2")


def test_calibration_says_when_it_measures_and_is_cached_after(tmp_path, monkeypatch):
    import pdc.report as report
    monkeypatch.setenv("PDC_CACHE", str(tmp_path))
    measured = report.Calibration(mac_per_s=1e11, bytes_per_s=1e10, kernel_s=1e-7, run_s=1e-6,
                                  path_factor={"conv/band": 1.5})
    monkeypatch.setattr(report, "measure_calibration", lambda threads: measured)
    heard = []
    assert report.calibrate(3, progress=heard.append) == measured
    assert heard == [f"calibrating the x86 cost model on this machine at 3 thread(s), once (about half a minute; "
                     f"cached in {tmp_path / 'report'})"]
    monkeypatch.setattr(report, "measure_calibration", lambda threads: pytest.fail("measured again"))
    assert report.calibrate(3, progress=heard.append) == measured and len(heard) == 1  # from the cache
