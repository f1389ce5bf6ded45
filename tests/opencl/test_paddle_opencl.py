"""Paddle's classifiers (tests/paddle_models.py, Paddle 3 PIR format) compiled for the opencl target
and run on this machine's OpenCL platform match Paddle's own outputs (the zoo tolerances), with
every node on the device."""
from __future__ import annotations

import os

import numpy as np
import pytest

import pdc
from test_opencl_target import host_nodes
from test_paddle_x86 import NETWORKS, check, folder
from pdc.frontend.paddle import load_paddle
from pdc.ir.shapes import bind_shapes

pytestmark = pytest.mark.usefixtures("paddle_installed", "opencl_platform")


@pytest.mark.parametrize("name", NETWORKS)
def test_paddle_network_on_opencl_matches_paddle(name, tmp_path):
    where = folder(name, "pir")
    io = np.load(os.path.join(where, "io.npz"))
    shapes = {k[3:]: io[k].shape for k in io.files if k.startswith("in_")}
    graph = bind_shapes(load_paddle(where), shapes)
    module = pdc.compile(graph, target="opencl", out_dir=str(tmp_path / "b"), weights="bin")
    problems = check(module, io, "pir")
    assert not problems, f"{name} on opencl vs Paddle:\n" + "\n".join(problems)
    assert host_nodes(module.manifest) == [], f"{name}: host fallback for {host_nodes(module.manifest)}"
