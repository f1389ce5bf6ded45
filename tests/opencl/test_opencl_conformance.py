"""ONNX's node conformance tests through the opencl engine (pdc.onnx_backend.OpenCLBackend: each
model compiled for the opencl target and run on this machine's OpenCL platform), on a fixed sample:
every SAMPLE-th test in name order, which spans the op families (PoCL compiles each test's program
in about a second, too long for all 1884 in CI; `PDC_BACKEND=opencl python tools/conformance.py`
runs them all). The expected failures are compiled x86 code's (the same lists as
tests/test_onnx_conformance.py): a node without a device kernel runs the same C on the host, and
a device kernel must fail no test the host code passes."""
from __future__ import annotations

import pytest

import pdc.onnx_backend
from test_onnx_conformance import SHARED, X86_ONLY, node_test_class, sampled

SAMPLE = 6


OpenCLNodeModelTest = type("OpenCLNodeModelTest",
                           (sampled(node_test_class(pdc.onnx_backend.OpenCLBackend, [SHARED, X86_ONLY]), SAMPLE),), {})


@pytest.fixture(autouse=True)
def _platform(opencl_platform):
    """Every test here needs the OpenCL platform (unittest classes take autouse fixtures only)."""
