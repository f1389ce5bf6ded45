"""ONNX's node conformance tests, unchanged, through pdc.onnx_backend.

Families listed in onnx_expected_failures.txt run as expected failures (an XPASS shows one that
started to pass); nothing else is skipped. `python tools/conformance.py` prints the pass count.
"""
import os
import warnings

import onnx.backend.test

import pdc.onnx_backend

warnings.filterwarnings("ignore", category=RuntimeWarning)

HERE = os.path.dirname(__file__)


def expected_failures(path=os.path.join(HERE, "onnx_expected_failures.txt")):
    """(regex, reason) pairs from the expected-failure file."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                regex, reason = (part.strip() for part in line.split(" | ", 1))
                out.append((regex, reason))
    return out


backend_test = onnx.backend.test.BackendTest(pdc.onnx_backend, __name__)
backend_test.include(r"^test_.*_cpu$")
for _regex, _reason in expected_failures():
    backend_test.xfail(_regex)

OnnxBackendNodeModelTest = backend_test.test_cases["OnnxBackendNodeModelTest"]
