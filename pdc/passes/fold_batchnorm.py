"""fold-batchnorm: folds inference batch normalizations into the weights before them."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ._rewrite import input_or_none, new_constant, sole_user
from .manager import Pass, register_pass
from ..ir.ops.nn_norm import EPSILON


@register_pass
class FoldBatchnorm(Pass):
    """Removes batch_normalization (inference form, constant scale / B / mean / var).

    y = x * inv + shift with inv = scale / sqrt(var + epsilon), shift = B - mean * inv, per
    channel (axis 1). When x comes from a conv / conv_transpose / gemm with constant weights
    (and constant or no bias) that nothing else reads, inv scales the weights' output channels
    and shift joins the bias. A matmul by a constant 2-D matrix giving a 2-D result takes inv
    into its columns and leaves `add(y, shift)`, which fuse-conv-bias-activation turns into
    the fused op's bias. Any other batch normalization becomes mul + add by per-channel
    constants.
    """

    name = "fold-batchnorm"

    def run(self, graph: Graph) -> None:
        users = graph.users()
        producers = graph.producers()
        kept = []
        for node in graph.nodes:
            if node.op != "batch_normalization":
                kept.append(node)
                continue
            params = _scale_shift(node, users)
            if params is None:
                kept.append(node)
                continue
            inv, shift = params
            x = node.inputs[0]
            p = producers.get(x)
            if p is not None and sole_user(graph, users, x) is node and len(p.outputs) == 1:
                folded = _FOLDERS.get(p.op, _no_fold)(graph, p, node, inv, shift)
                if folded is not None:
                    kept.extend(folded)
                    producers[node.outputs[0]] = folded[-1] if folded else p  # a batch norm may follow
                    continue
            kept.extend(_as_mul_add(graph, node, inv, shift) or [node])
        graph.nodes = kept
        graph.remove_unused_constants()


def _scale_shift(bn: Node, users) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(inv, shift) in float64, or None when this is not a foldable inference batch norm."""
    if bn.attrs.get("training_mode", 0) or any(users.get(v) for v in bn.outputs[1:]):
        return None
    if not bn.inputs[0].type.dtype.is_float or any(v is None or v.data is None for v in bn.inputs[1:5]):
        return None
    scale, b, mean, var = (v.data.astype(np.float64).reshape(-1) for v in bn.inputs[1:5])
    eps = bn.attrs.get("epsilon", EPSILON)
    if bn.inputs[0].type.dtype != dtypes.float64:
        eps = float(np.float32(eps))  # the reference adds it in float32
    inv = scale / np.sqrt(var + eps)
    return inv, b - mean * inv


def _bias(node: Node, i: int, n: int) -> Optional[np.ndarray]:
    """Input i as a float64 bias of n values (zeros when absent), or None when not constant."""
    v = input_or_none(node, i)
    if v is None:
        return np.zeros(n)
    return None if v.data is None else v.data.astype(np.float64)


def _take_output(p: Node, bn: Node) -> list[Node]:
    """The producer now computes the batch norm's output (its name included)."""
    p.outputs = [bn.outputs[0]]
    return []


def _fold_conv(graph: Graph, p: Node, bn: Node, inv, shift):
    w = p.inputs[1]
    m = len(inv)
    if w.data is None or w.data.shape[0] != m:
        return None
    b = _bias(p, 2, m)
    if b is None:
        return None
    dt = w.type.dtype
    w_new = w.data.astype(np.float64) * inv.reshape((m,) + (1,) * (w.data.ndim - 1))
    w_c = new_constant(graph, w.name, w_new, dt)
    p.inputs = [p.inputs[0], w_c, new_constant(graph, f"{w.name}.bias", b * inv + shift, dt)]
    return _take_output(p, bn)


def _fold_conv_transpose(graph: Graph, p: Node, bn: Node, inv, shift):
    w = p.inputs[1]
    if w.data is None:
        return None
    c, mg = w.data.shape[:2]
    group = p.attrs.get("group", 1)
    m = mg * group
    if len(inv) != m or c % group:
        return None
    b = _bias(p, 2, m)
    if b is None:
        return None
    # W is (C, M/group, k...): input channel i of group i // (C/group) feeds outputs of that group
    out_channel = (np.arange(c)[:, None] // (c // group)) * mg + np.arange(mg)[None, :]
    w_new = w.data.astype(np.float64) * inv[out_channel].reshape((c, mg) + (1,) * (w.data.ndim - 2))
    dt = w.type.dtype
    w_c = new_constant(graph, w.name, w_new, dt)
    p.inputs = [p.inputs[0], w_c, new_constant(graph, f"{w.name}.bias", b * inv + shift, dt)]
    return _take_output(p, bn)


def _fold_gemm(graph: Graph, p: Node, bn: Node, inv, shift):
    w = p.inputs[1]
    n = len(inv)
    if w.data is None or w.data.ndim != 2:
        return None
    trans_b = p.attrs.get("transB", 0)
    if w.data.shape[0 if trans_b else 1] != n:
        return None
    c = _bias(p, 2, n)
    if c is None or c.ndim > 2:
        return None
    dt = w.type.dtype
    w_new = w.data.astype(np.float64) * (inv[:, None] if trans_b else inv[None, :])
    beta = float(p.attrs.get("beta", 1.0))
    c_new = (beta * c * inv if beta != 0 else 0) + shift  # C broadcasts to (M, N): N is its last axis
    p.inputs = [p.inputs[0], new_constant(graph, w.name, w_new, dt), new_constant(graph, f"{w.name}.bias", c_new, dt)]
    p.attrs = dict(p.attrs, beta=1.0)
    return _take_output(p, bn)


def _fold_matmul(graph: Graph, p: Node, bn: Node, inv, shift):
    w = p.inputs[1]
    n = len(inv)
    out = p.outputs[0]
    if w.data is None or w.data.ndim != 2 or w.data.shape[1] != n or out.type.rank != 2:
        return None
    dt = w.type.dtype
    p.inputs = [p.inputs[0], new_constant(graph, w.name, w.data.astype(np.float64) * inv[None, :], dt)]
    # the shift stays as a bias add (matmul has no bias input)
    bias = new_constant(graph, f"{w.name}.bias", shift, dt)
    return [Node("add", [out, bias], [bn.outputs[0]], {}, bn.name)]


def _no_fold(*args):
    return None


_FOLDERS = {"conv": _fold_conv, "conv_transpose": _fold_conv_transpose, "gemm": _fold_gemm, "matmul": _fold_matmul}


def _as_mul_add(graph: Graph, bn: Node, inv, shift) -> Optional[list[Node]]:
    """x * inv + shift with constants shaped (C, 1, ..., 1) to broadcast along axis 1."""
    x, y = bn.inputs[0], bn.outputs[0]
    rank = x.type.rank
    if rank is None or rank < 2:
        return None
    shape = (len(inv),) + (1,) * (rank - 2)
    dt = x.type.dtype
    scale_c = new_constant(graph, f"{bn.inputs[1].name}.scale", inv.reshape(shape), dt)
    shift_c = new_constant(graph, f"{bn.inputs[2].name}.shift", shift.reshape(shape), dt)
    scaled = Value(graph.fresh_name(f"{y.name}.scaled"), x.type)
    return [Node("mul", [x, scale_c], [scaled], {}, bn.name), Node("add", [scaled, shift_c], [y], {}, bn.name)]
