"""Static cost estimates: parameter counts and multiply-accumulates per node."""
from __future__ import annotations

import math
from typing import Optional

from .graph import Graph, Node


def _static(v) -> Optional[tuple]:
    return v.type.shape if v is not None and v.type.is_static else None


def node_macs(n: Node) -> int:
    """Multiply-accumulates of one node (0 for ops whose cost is not MAC-dominated or shapes unknown)."""
    outs = [_static(v) for v in n.outputs]
    ins = [_static(v) for v in n.inputs]
    w_index = {"conv": 1, "conv_integer": 1, "qlinear_conv": 3, "fused_conv": 1, "conv_nhwc": 1, "fused_conv_nhwc": 1}
    if n.op in w_index and outs[0] and ins[w_index[n.op]]:
        w = ins[w_index[n.op]]  # [M, C/group, k...]
        return math.prod(outs[0]) * math.prod(w[1:])
    if n.op == "conv_transpose" and ins[0] and ins[1]:
        w = ins[1]  # [C, M/group, k...]
        return math.prod(ins[0]) * math.prod(w[1:])
    if n.op in ("matmul", "matmul_integer", "qlinear_matmul", "fused_matmul") and outs[0] and ins[0]:
        k = ins[0][-1] if len(ins[0]) else 1
        return math.prod(outs[0]) * k
    if n.op in ("gemm", "fused_gemm") and outs[0] and ins[0]:
        k = ins[0][0] if n.attrs.get("transA", 0) else ins[0][-1]
        return math.prod(outs[0]) * k
    if n.op in ("attention", "fused_attention") and ins[0] and ins[1] and outs[0]:
        q, k = ins[0], ins[1]
        # QK^T and PV: (query elements) x (key positions), twice
        return 2 * math.prod(q) * (k[-2] if len(k) == 4 else k[-2])
    if n.op in ("lstm", "gru", "rnn") and ins[0] and ins[1] and ins[2]:
        seq = ins[0][0] if n.attrs.get("layout", 0) == 0 else ins[0][1]
        batch = ins[0][1] if n.attrs.get("layout", 0) == 0 else ins[0][0]
        return seq * batch * (math.prod(ins[1]) + math.prod(ins[2]))
    return 0


def graph_macs(g: Graph) -> int:
    return sum(node_macs(n) for n in g.nodes)


def parameter_count(g: Graph) -> int:
    return sum(int(c.data.size) for c in g.constants)
