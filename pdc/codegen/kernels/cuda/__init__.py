"""CUDA C++ device kernels (kernel family "cuda"), for the cuda targets.

The device ABI is the OpenCL family's (kernels/opencl/__init__.py): a generator registered with
`@kernel(op, family=CUDA)` returns a DeviceKernel whose `extern "C" __global__` functions take
only device pointers named after what the host binds to them (`in0`.., `out0`.., `scratch`,
`status`), shapes and attributes compiled in, and its Launches in order (global size = grid x
block, in threads; local size = the block). The host launches them through the kernel table the
program exports, with the arguments fixed at init (pdc/codegen/cuda_renderer.py).
"""
from __future__ import annotations

from ..opencl import DeviceKernel, Launch, round_up  # noqa: F401  (the shared device ABI, re-exported)

CUDA = "cuda"
