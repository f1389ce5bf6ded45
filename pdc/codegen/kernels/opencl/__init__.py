"""OpenCL C device kernels (kernel family "opencl"), for the opencl and Mali targets.

A generator registered with `@kernel(op, family=OPENCL)` receives the node's KernelContext (shapes,
attributes, constant inputs, ctx.config) and returns a DeviceKernel, or None to leave the node to
the next family (the kernel-IR generators printed in OpenCL C, then the host).

The device ABI: every `__kernel` function takes only `__global` buffers, named after what the host
binds to them (`in0`.. the node's inputs, `out0`.. its outputs, `scratch` the kernel's device
scratch of DeviceKernel.scratch_bytes), each pointing at the tensor's first element (the host binds
sub-buffers of the device arena and of the uploaded weights). Shapes and attributes are
compile-time constants in the source. A DeviceKernel may launch several functions in order (a
reduction, then a normalization); the host sets their arguments once, at init, and a run only
enqueues them, on one in-order queue.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

OPENCL = "opencl"


@dataclass(frozen=True)
class Launch:
    """One NDRange launch of `function` over `global_size` work-items in groups of `local_size`
    (None: the driver's choice); `args` names the buffer of each parameter, in order."""
    function: str
    args: tuple
    global_size: tuple
    local_size: Optional[tuple] = None

    def __post_init__(self):
        if not 1 <= len(self.global_size) <= 3:
            raise ValueError(f"{self.function}: an NDRange has 1 to 3 dimensions, not {self.global_size}")
        if self.local_size is not None:
            if len(self.local_size) != len(self.global_size):
                raise ValueError(f"{self.function}: local size {self.local_size} vs global {self.global_size}")
            if any(g % l for g, l in zip(self.global_size, self.local_size)):
                raise ValueError(f"{self.function}: global size {self.global_size} is not a multiple of "
                                 f"the local size {self.local_size} (OpenCL 1.2)")


@dataclass
class DeviceKernel:
    """A node's OpenCL C (its `__kernel` functions and their helpers, names prefixed with the
    context's fn_name so that kernels of one program never clash) and its launches in order."""
    source: str
    launches: list = field(default_factory=list)
    scratch_bytes: int = 0
    tables: dict = field(default_factory=dict)  # name -> array: read-only buffers uploaded at init (packed weights, lookup tables), bound by name
    path: str = ""  # which implementation: 'opencl/<name>' (pdc report, the tests' path coverage)


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m
