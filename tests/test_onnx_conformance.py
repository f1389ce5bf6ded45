"""ONNX's node conformance tests, unchanged, through pdc.onnx_backend, on both engines.

OnnxBackendNodeModelTest runs compiled x86 code (the default engine), ReferenceNodeModelTest the
NumPy reference interpreter. Families listed in onnx_expected_failures.txt (both engines) and
onnx_expected_failures_x86.txt (compiled code only) run as expected failures; an unexpected pass
fails the run, so the lists stay exact. Nothing is skipped. `python tools/conformance.py` prints
the pass counts.
"""
import os
import warnings

import onnx.backend.test

import pdc.onnx_backend

warnings.filterwarnings("ignore", category=RuntimeWarning)

HERE = os.path.dirname(__file__)


def expected_failures(path):
    """(regex, reason) pairs from the expected-failure file."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                regex, reason = (part.strip() for part in line.split(" | ", 1))
                out.append((regex, reason))
    return out


def node_test_class(backend, failure_files):
    """The node-test TestCase class of a BackendTest for `backend`, CPU variants only."""
    bt = onnx.backend.test.BackendTest(backend, __name__)
    for path in failure_files:
        for regex, _reason in expected_failures(os.path.join(HERE, path)):
            bt.xfail(regex)
    cls = bt.test_cases["OnnxBackendNodeModelTest"]
    # pdc compiles for the CPU: the CUDA variants are not collected at all (rather than skipped)
    for name in [n for n in dir(cls) if n.startswith("test_") and not n.endswith("_cpu")]:
        delattr(cls, name)
    return cls


OnnxBackendNodeModelTest = node_test_class(pdc.onnx_backend.X86Backend,
                                           ["onnx_expected_failures.txt", "onnx_expected_failures_x86.txt"])
ReferenceNodeModelTest = type("ReferenceNodeModelTest",
                              (node_test_class(pdc.onnx_backend.ReferenceBackend, ["onnx_expected_failures.txt"]),),
                              {})
