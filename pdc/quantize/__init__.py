"""Post-training int8 quantization: calibration ranges, the quantizer, and its calibration data."""
from __future__ import annotations

from .data import load_calibration  # noqa: F401
from .ptq import Options, Report, quantize  # noqa: F401


def quantize_model(graph, calibration, options: "Options" = None, progress=None):
    """(quantized graph, report) for a graph and calibration data (a .npz / .npy path, a dict or an array)."""
    samples = load_calibration(calibration, graph)
    return quantize(graph, samples, options or Options(), progress)
