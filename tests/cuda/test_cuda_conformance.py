"""ONNX's node conformance tests through the cuda-sm80 target on the CPU emulator (each test's model
compiled for CUDA, its device kernels run by tests/cuda/emu), on a fixed sample: every SAMPLE-th
test in name order (PDC_CUDA_CONFORMANCE_SAMPLE=1 runs all of them; each costs a C++ compile of its
kernels, about a second). The expected failures are compiled x86 code's (the lists of
tests/test_onnx_conformance.py): a node without a device kernel runs the same C on the host, and a
device kernel must fail no test the host code passes."""
from __future__ import annotations

import os

from emulator import EmulatedCudaBackend
from test_onnx_conformance import SHARED, X86_ONLY, node_test_class, sampled

SAMPLE = int(os.environ.get("PDC_CUDA_CONFORMANCE_SAMPLE", "8"))


CudaEmulatedNodeModelTest = type("CudaEmulatedNodeModelTest",
                                 (sampled(node_test_class(EmulatedCudaBackend, [SHARED, X86_ONLY]), SAMPLE),), {})
