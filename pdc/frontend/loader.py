"""Detects a model's format from its path and imports it."""
from __future__ import annotations

import os

from ..ir.errors import PdcError
from ..ir.graph import Graph
from ..ir.limits import DEFAULT_MAX_TENSOR_BYTES, check_graph_limits
from .paddle import is_paddle_path, load_paddle


def load_model(path: str, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Graph:
    """Loads an ONNX model (.onnx), a Paddle model or a pdc IR file (.pdir) into an IR graph whose
    tensors each fit in max_tensor_bytes (symbolic dims counted as 1)."""
    graph = _import(path, max_tensor_bytes)
    check_graph_limits(graph, max_tensor_bytes)
    return graph


def _import(path: str, max_tensor_bytes: int) -> Graph:
    if is_paddle_path(path):  # a Paddle model: .json / .pdmodel file, path prefix or folder
        return load_paddle(path)
    if not os.path.exists(path):
        raise PdcError(f"{path}: no such file")
    if os.path.isdir(path):
        raise PdcError(f"{path}: is a folder, not a model file")
    if path.endswith(".pdir"):
        from ..ir.textio import load_ir
        return load_ir(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if path.endswith(".onnx") or _looks_like_protobuf(head):
        from .onnx_import import load_onnx
        return load_onnx(path, max_tensor_bytes)
    raise PdcError(f"{path}: unknown model format "
                   f"(expected .onnx, a Paddle model (inference.json or .pdmodel) or .pdir)")


def _looks_like_protobuf(head: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, varint): tag byte 0x08
    return len(head) > 1 and head[0] == 0x08
