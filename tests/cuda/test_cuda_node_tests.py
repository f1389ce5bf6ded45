"""Every ONNX node-test model that compiles for x86 compiles for CUDA, and its device kernels (the
kernel IR printed as CUDA C, the OpenCL family's kernels, the products and convolutions) are valid
CUDA C++ to nvcc for sm_80. Each test is specialized as the ONNX backend specializes it (its first
data set's shapes and shape-giving values: pdc.onnx_backend.PdcRep.specialized), its CUDA program
generated, and the programs of a shard compiled as one translation unit (each in a namespace of its
own; nvcc takes about a second per program otherwise). A test that fails to compile here must be an
expected failure of compiled x86 code (tests/onnx_expected_failures*.txt): one that fails there at
compile time fails here too; one that compiles there (a numerical expected failure) is compiled."""
from __future__ import annotations

import functools
import os
import re
import subprocess
import warnings

import numpy as np
import pytest

import pdc.onnx_backend
from pdc.compiler import compile_details
from pdc.codegen.kernels.cuda.program import BODY_MARK
from pdc.targets.cuda import nvcc_path
from test_onnx_conformance import HERE, SHARED, X86_ONLY, expected_failures

SHARDS = 8
# the warnings nvcc may give on printed kernels (C compilers give none): an index a fused elementwise
# kernel declares for an input its expression never reads, and a shift's range guard (count < 0)
# on an unsigned count
ALLOWED = re.compile(r'warning #177-D: variable "\w+" was declared but never referenced|'
                     r'warning #186-D: pointless comparison of unsigned integer with zero')

pytestmark = pytest.mark.usefixtures("cuda_toolkit")


@functools.lru_cache(maxsize=1)  # loading the 1,884 node tests takes seconds: once per worker, not per shard
def node_tests() -> list:
    from onnx.backend.test.loader import load_node_model_tests
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(load_node_model_tests(), key=lambda t: t.name)


def cuda_program(case, folder: str, name: str) -> str:
    rep = pdc.onnx_backend.PdcBackend.prepare(case.model, engine="x86")
    inputs = case.data_sets[0][0]
    feeds = {v.name: np.asarray(a) for v, a in zip(rep.graph.inputs, inputs)}
    graph, _ = rep.specialized(feeds)
    compile_details(graph, folder, target="cuda-sm80", name=name, opt_level=1, threads=1, build=False)
    with open(os.path.join(folder, f"{name}_kernels.cu")) as f:
        return f.read()


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SHARDS))
def test_node_test_programs_compile_with_nvcc(shard, tmp_path):
    entries = [e for path in (SHARED, X86_ONLY) for e in expected_failures(os.path.join(HERE, path))]
    cases = node_tests()[shard::SHARDS]
    programs, refused = [], []
    for k, case in enumerate(cases):
        try:
            programs.append(cuda_program(case, str(tmp_path / f"m{k}"), f"m{k}"))
        except Exception as e:  # noqa: BLE001  (checked against the expected failures below)
            if not any(entry.covers(f"{case.name}_cpu") for entry in entries):
                refused.append(f"{case.name}: {type(e).__name__}: {e}")
    assert refused == [], "compiles on x86 but not for cuda:\n" + "\n".join(refused)
    assert len(programs) >= 0.75 * len(cases)
    header = programs[0].partition(BODY_MARK)[0]
    assert all(p.startswith(header) for p in programs)  # one storage type: one preamble
    unit = header + "".join(f"namespace pdc_t{i} {{\n{BODY_MARK}{p.partition(BODY_MARK)[2]}}}\n"
                            for i, p in enumerate(programs))
    (tmp_path / "all.cu").write_text(unit)
    # to PTX: nvcc's front end and NVVM see every program; ptxas (a third of the time again) runs on the zoo's
    # bundles (test_cuda_target)
    r = subprocess.run([nvcc_path(), "-arch=sm_80", "-std=c++17", "-ptx", "all.cu", "-o", "all.ptx"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    other = [ln for ln in r.stderr.splitlines() if "warning" in ln and not ALLOWED.search(ln)
             and not ln.startswith("Remark")]
    assert other == [], "\n".join(other)
    kernels = unit.count('extern "C" __global__') + unit.count("__kernel ")
    assert kernels >= len(programs) // 2
