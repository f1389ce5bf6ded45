"""PDC_FORCE_PATH and the kernel path record: what the properties rely on to reach every path."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from harness import Const, Layer, build_model
from pdc.codegen.kernels import generators
from pdc.codegen.kernels.paths import FAMILIES, forced_paths, take
from pdc.compiler import compile_details


def _conv_model():
    """A 3x3 conv of 128 channels on 24x24: 36 F(4x4) tiles, so the heuristic takes winograd4."""
    rng = np.random.default_rng(0)
    layer = Layer("Conv", [rng.standard_normal([1, 128, 24, 24]).astype(np.float32),
                           Const(rng.standard_normal([128, 128, 3, 3]).astype(np.float32))], {"pads": [1, 1, 1, 1]})
    return build_model([layer])[0]


def test_every_family_declares_its_general_path_first():
    generators()  # imports every generator module, which declares its paths
    assert FAMILIES["conv"][0] == "im2col"
    assert {"im2col", "band", "transposed", "pointwise", "depthwise-flat", "depthwise-rows", "neon-gemm",
            "neon-depthwise", "direct", "winograd4", "winograd2"} <= set(FAMILIES["conv"])


def test_a_forced_path_wins_over_the_heuristic(monkeypatch):
    generators()
    monkeypatch.setenv("PDC_FORCE_PATH", "conv=im2col")
    assert forced_paths() == {"conv": "im2col"}
    assert take("conv", "im2col", heuristic=False) and not take("conv", "band", heuristic=True)
    assert take("pool", "anything", heuristic=True) is True  # other families keep their heuristics
    monkeypatch.delenv("PDC_FORCE_PATH")
    assert take("conv", "band", heuristic=True) and not take("conv", "band", heuristic=False)


@pytest.mark.parametrize("force,path", [("", "conv/winograd4"), ("conv=band", "conv/band"),
                                        ("conv=im2col", "conv/im2col")])
def test_the_manifest_names_each_kernels_path(tmp_path, monkeypatch, force, path):
    if force:
        monkeypatch.setenv("PDC_FORCE_PATH", force)
    # not built: the AVX-512 kernels' paths are chosen on any host, the library runs only on one with AVX-512
    c = compile_details(_conv_model(), str(tmp_path / "b"), target="x86-avx512", build=False)
    assert [k.get("path") for k in c.manifest["kernels"]] == [path]


def test_an_unknown_path_is_a_one_line_error(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(_conv_model().SerializeToString())
    r = subprocess.run([sys.executable, "-m", "pdc.cli", "compile", str(path), "-o", str(tmp_path / "b")],
                       capture_output=True, text=True, env={"PDC_FORCE_PATH": "conv=fastest", "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.startswith("pdc: error: PDC_FORCE_PATH: 'conv=fastest' is not FAMILY=PATH of a known kernel path (")
    assert not (tmp_path / "b").exists()
