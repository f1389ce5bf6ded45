"""pdc's integer ops (qconv, qmatmul, requantize, qadd, qmul, lookup, qsoftmax: pdc/ir/ops/qint.py) compiled for every target
that runs here, against their NumPy references BIT FOR BIT (np.array_equal, same dtype).

These ops are pdc IR, not ONNX, so a draw is a pdc Graph: each layer is one node reading its own
graph inputs (constants for weights and bias), every output a graph output, compiled once per draw
(one emulator start). Random layers over the attribute space: kernels 1..7, strides and dilations
1..3, asymmetric pads 0..4 (wider than the kernel too), auto_pad, dense / grouped / depthwise
groups, int8 / uint8 in and out, random zero points, per-tensor and per-channel float32 scales
(natural, log-uniform over [1e-9, 10], dyadic ones that make many exact ties, extreme ones), clamps.
PDC_FUZZ_SCALE / PDC_FUZZ_SEED scale and reseed the draws as for the other kernel properties.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import pdc
from harness import fuzz_examples, log_draw
from strategies import _out_extent
from pdc.codegen.kernels.paths import FORCE_ENV
from pdc.ir import dtypes
from pdc.ir.errors import UnsupportedError
from pdc.ir.graph import Graph, Node, Value
from pdc.ir.interpreter import run_graph
from pdc.ir.ops.qint import requant_scale
from pdc.ir.ops.quant import int_conv
from pdc.ir.types import TensorType
from pdc.ir.verify import infer_node, verify_graph
from targets import TARGETS, examples, options, require

ALL_TARGETS = list(TARGETS)
ACT = [np.int8, np.uint8]
DT = {np.dtype(np.int8): dtypes.int8, np.dtype(np.uint8): dtypes.uint8}


@dataclass
class Const:
    """A node input that is a graph constant (weights, bias)."""
    value: np.ndarray


@dataclass
class QLayer:
    op: str
    inputs: list                 # np.ndarray (graph input), Const (constant) or None (absent)
    attrs: dict = field(default_factory=dict)

    def describe(self) -> str:
        def arg(i):
            if i is None:
                return "_"
            a = i.value if isinstance(i, Const) else i
            return f"{'const ' if isinstance(i, Const) else ''}{a.dtype}{list(a.shape)}"
        attrs = {k: (v if not isinstance(v, list) or len(v) <= 4 else f"[{len(v)} values]")
                 for k, v in self.attrs.items()}
        return f"{self.op}({', '.join(arg(i) for i in self.inputs)}) {attrs}"


def build_graph(layers: list[QLayer]) -> tuple[Graph, dict]:
    """The side-by-side graph of a draw and its feeds; outputs typed by the ops' own inference."""
    g, feeds = Graph("draw"), {}
    for li, layer in enumerate(layers):
        ins = []
        for k, i in enumerate(layer.inputs):
            if i is None:
                ins.append(None)
                continue
            a = np.asarray(i.value if isinstance(i, Const) else i)
            v = Value(f"l{li}_in{k}", TensorType(dtypes.from_numpy(a.dtype), a.shape),
                      a if isinstance(i, Const) else None)
            (g.constants if isinstance(i, Const) else g.inputs).append(v)
            if not isinstance(i, Const):
                feeds[v.name] = a
            ins.append(v)
        y = Value(f"l{li}_y", TensorType(dtypes.int8, None))
        node = Node(layer.op, ins, [y], dict(layer.attrs), f"l{li}")
        y.type = infer_node(node)[0]
        g.nodes.append(node)
        g.outputs.append(y)
    verify_graph(g)
    return g, feeds


def check_qlayers(layers: list[QLayer], target: str, threads: int = 2, force: Optional[str] = None,
                  **compile_options) -> str:
    """Compiles the draw for target (PDC_FORCE_PATH=force, as harness.check_layers), runs it and
    compares every output exactly with the reference; returns the kernels' C source."""
    g, feeds = build_graph(layers)
    want = run_graph(g, feeds)
    folder = tempfile.mkdtemp(prefix="pdc-qint-")
    old = os.environ.pop(FORCE_ENV, None)
    try:
        if force:
            os.environ[FORCE_ENV] = force
        module = pdc.compile(g, target=target, out_dir=os.path.join(folder, "b"), threads=threads, **compile_options)
        got = module.run(feeds)
        source = "".join(open(os.path.join(module.folder, f)).read() for f in sorted(os.listdir(module.folder))
                         if "kernels" in f and f.endswith(".c"))
    finally:
        os.environ.pop(FORCE_ENV, None)
        if old is not None:
            os.environ[FORCE_ENV] = old
        shutil.rmtree(folder, ignore_errors=True)
    errors = []
    for li, (layer, y) in enumerate(zip(layers, g.outputs)):
        w, r = want[y.name], np.asarray(got[y.name])
        if r.dtype != w.dtype or r.shape != w.shape:
            errors.append(f"{layer.describe()}: got {r.dtype}{list(r.shape)}, want {w.dtype}{list(w.shape)}")
        elif not np.array_equal(r, w):
            bad = np.argwhere(r != w)
            first = tuple(int(v) for v in bad[0])
            errors.append(f"{layer.describe()}: {len(bad)} of {w.size} elements differ, first at {list(first)}: "
                          f"got {r[first]}, want {w[first]}")
    where = f"{target}{f' {force}' if force else ''}"
    assert not errors, f"{len(errors)} layer(s) wrong on {where}:\n  " + "\n  ".join(errors)
    return source


def const_bias(layer: QLayer) -> QLayer:
    """The layer with a run-time bias made a constant (the native kernels leave a run-time bias to the
    portable one, which would hide a forced path)."""
    if len(layer.inputs) > 2 and isinstance(layer.inputs[2], np.ndarray):
        layer.inputs[2] = Const(layer.inputs[2])
    return layer


def check_path(layers: list, target: str, force: str, path: str, threads: int = 2) -> str:
    """Compiles the draw for target with PDC_FORCE_PATH=force, checks it bit for bit and that each
    layer's kernel took `path` ('qconv/vnni', 'qconv/neon-gemm', ...); returns the kernels' C."""
    layers = [const_bias(layer) for layer in layers]
    source = check_qlayers(layers, target, threads=threads, force=force)
    taken = source.count(f"/* path: {path} */")
    assert taken == len(layers), f"{taken} of {len(layers)} layers took {path} under PDC_FORCE_PATH={force}"
    return source


def run_qproperty(strategy, target: str, *, examples: int, force: Optional[str] = None,
                  check: Optional[Callable] = None, **compile_options) -> None:
    """`examples` draws of `strategy` (each a list of QLayers) checked on target (harness.run_property's
    settings: a fixed seed by default, PDC_FUZZ_SCALE / PDC_FUZZ_SEED for long runs), by
    check(layers) where given, else bit for bit against the reference with these compile options."""
    seed = os.environ.get("PDC_FUZZ_SEED", "0")

    @settings(max_examples=fuzz_examples(examples), deadline=None, database=None, derandomize=seed == "0",
              phases=[Phase.explicit, Phase.generate, Phase.shrink], print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(layers):
        if check is None:
            check_qlayers(layers, target, force=force, **compile_options)
        else:
            check(layers)
        log_draw(target, force, layers, {})

    if seed not in ("0", "random"):
        prop = __import__("hypothesis").seed(int(seed))(prop)
    prop()


# ---- strategies ---------------------------------------------------------------------------------------
def _range(dt) -> tuple[int, int]:
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def _ints(rng, dt, shape) -> np.ndarray:
    lo, hi = _range(dt)
    return rng.integers(lo, hi + 1, shape).astype(dt)


def _zero(rng, dt) -> int:
    lo, hi = _range(dt)
    return int(rng.integers(lo, hi + 1))


def _scales(draw, rng, channels: int, per_channel: bool, scale: float) -> list[float]:
    """Requantization scales (float32 values): mostly near 48 / scale (scale: the accumulators' typical
    magnitude, so that outputs spread over the type); else log-uniform over [1e-9, 10], dyadic ones
    (odd / 2^j near 48 / scale: many products land exactly halfway, to test the ties), or extreme
    ones (zero, tiny, huge: saturated or zero outputs)."""
    n = channels if per_channel else 1
    mode = draw(st.sampled_from(["natural"] * 3 + ["log-uniform", "extreme", "ties", "ties"]))
    if mode == "ties":
        j = np.clip(np.round(np.log2(max(scale, 1.0) / 48)) + rng.integers(0, 2, n), 1, 40)
        reals = rng.choice([1, 1, 3, 5], n) / 2.0 ** j
    elif mode == "extreme":
        reals = rng.choice([0.0, 1e-30, 3e-12, 1e3, 1e9, 3e30], n)
    elif mode == "natural":
        reals = 48 / max(scale, 1.0) * 10 ** rng.uniform(-0.7, 0.5, n)
    else:
        reals = 10 ** rng.uniform(-9, 1, n)
    return [requant_scale(float(r)) for r in reals]


def _acc_scale(x: np.ndarray, zero: int, w: np.ndarray) -> float:
    """Typical |sum over K of (x - zero) * w| for random weights (w [rows, K])."""
    k = w.shape[1]
    rms_x = float(np.sqrt(np.mean((x.astype(np.float64) - zero) ** 2))) if x.size else 1.0
    rms_w = float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) if w.size else 1.0
    return math.sqrt(max(k, 1)) * rms_x * rms_w


def _output_attrs(draw, rng, accumulators: bool = False) -> dict:
    """y_dtype, y_zero and sometimes a clamp (a fused ReLU-like range); with `accumulators` (qconv,
    qmatmul) now and then y_dtype int32 alone: the accumulators themselves."""
    if accumulators and draw(st.integers(0, 5)) == 0:
        return {"y_dtype": dtypes.int32}
    y_dt = draw(st.sampled_from(ACT))
    lo, hi = _range(y_dt)
    attrs = {"y_dtype": DT[np.dtype(y_dt)], "y_zero": int(rng.integers(lo, hi + 1))}
    kind = draw(st.sampled_from(["none", "none", "relu", "range"]))
    if kind == "relu":
        attrs["clamp"] = [attrs["y_zero"], hi]
    elif kind == "range":
        mid = (lo + hi) // 2
        attrs["clamp"] = [int(rng.integers(lo, mid + 1)), int(rng.integers(mid, hi + 1))]
    return attrs


def _bias(draw, rng, channels: int, scale: float):
    """None, or an int32 bias (a constant, or known only at run time) about the accumulators' size,
    now and then much larger."""
    kind = draw(st.sampled_from(["none", "const", "const", "runtime"]))
    if kind == "none":
        return None
    bound = 1 << 24 if draw(st.integers(0, 5)) == 0 else max(1, int(2 * scale))
    b = rng.integers(-bound, bound, channels).astype(np.int32)
    return Const(b) if kind == "const" else b


def _operands(draw, rng, x_dt, zero: int, x_shape, w_shape) -> tuple[np.ndarray, np.ndarray]:
    """Activations over their whole type and int8 weights over theirs; or, now and then, both small
    (x within 3 of its zero point, |w| <= 2): small accumulators, so the multipliers get few
    significant bits and the rounding meets many exact ties, negative ones too."""
    if draw(st.integers(0, 3)):
        return _ints(rng, x_dt, x_shape), rng.integers(-128, 128, w_shape).astype(np.int8)
    lo, hi = _range(x_dt)
    x = np.clip(zero + rng.integers(-3, 4, x_shape), lo, hi).astype(x_dt)
    return x, rng.integers(-2, 3, w_shape).astype(np.int8)


# channel draws per kind of convolution: depthwise (groups, channel multipliers), the others
# (input channels per group, output channels per group); pointwise: 1x1, stride 1, no padding
CHANNELS = {"depthwise": (12, [1, 1, 2, 3]), "grouped": (6, 6), "dense": (12, 16), "pointwise": (12, 16)}


@st.composite
def qconv_layer(draw, max_extent: int = 20, max_macs: int = 300_000, kind=None, channels=CHANNELS):
    """A qconv of `kind` (drawn: dense, grouped or depthwise, when None), its channels drawn up to
    `channels[kind]`, shrunk (channels, groups, then the image) to at most max_macs."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n = draw(st.sampled_from([1, 1, 1, 2]))
    kind = kind or draw(st.sampled_from(["dense", "dense", "grouped", "depthwise"]))
    if kind == "depthwise":
        groups, multipliers = channels[kind]
        group, cg, mg = draw(st.integers(1, groups)), 1, draw(st.sampled_from(multipliers))
    elif kind == "grouped":
        group, cg, mg = draw(st.integers(2, 4)), draw(st.integers(1, channels[kind][0])), \
            draw(st.integers(1, channels[kind][1]))
    elif kind == "pointwise":
        group = draw(st.sampled_from([1, 1, 1, 2, 3]))
        cg, mg = draw(st.integers(1, channels[kind][0])), draw(st.integers(1, channels[kind][1]))
    else:
        group, cg, mg = 1, draw(st.integers(1, channels[kind][0])), draw(st.integers(1, channels[kind][1]))
    pointwise = kind == "pointwise"
    auto_pad = "NOTSET" if pointwise else draw(st.sampled_from(["NOTSET"] * 6 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    kernel, strides, dils, pads, ins = [], [], [], [], []
    for _ in range(2):
        k = 1 if pointwise else draw(st.integers(1, 7))
        s = 1 if pointwise else draw(st.integers(1, 3))
        d = draw(st.integers(1, 3)) if not pointwise and draw(st.booleans()) else 1
        p = (0, 0) if pointwise else (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
        ext = (k - 1) * d + 1
        lo = ext if auto_pad == "VALID" else 1
        size = draw(st.integers(lo, max(lo, max_extent)))
        if auto_pad == "NOTSET" and size + p[0] + p[1] < ext:
            size = ext - p[0] - p[1]
        kernel.append(k), strides.append(s), dils.append(d), pads.append(p), ins.append(max(size, 1))
    outs = [_out_extent(ins[i], kernel[i], strides[i], dils[i], pads[i], auto_pad) for i in range(2)]

    def macs():
        return n * group * mg * math.prod(outs) * cg * math.prod(kernel)
    while macs() > max_macs:  # channels first, then the image (the window kept inside it)
        if mg > 1 or cg > 1:
            mg, cg = max(1, mg * 2 // 3), max(1, cg * 2 // 3)
        elif group > 1:
            group = max(1, group // 2)
        else:
            i = int(np.argmax(outs))
            ext = (kernel[i] - 1) * dils[i] + 1
            floor = ext if auto_pad == "VALID" else max(1, ext - pads[i][0] - pads[i][1]) if auto_pad == "NOTSET" else 1
            if ins[i] // 2 >= floor:
                ins[i] //= 2
            elif n > 1:
                n = 1
            else:
                break
        outs = [_out_extent(ins[i], kernel[i], strides[i], dils[i], pads[i], auto_pad) for i in range(2)]
    c, m = cg * group, mg * group
    x_dt = draw(st.sampled_from(ACT))
    attrs = {"x_zero": _zero(rng, x_dt) if draw(st.integers(0, 3)) else 0}
    x, w = _operands(draw, rng, x_dt, attrs["x_zero"], (n, c, *ins), (m, cg, *kernel))
    attrs["kernel_shape"] = list(kernel)
    if draw(st.booleans()) or any(s > 1 for s in strides):
        attrs["strides"] = strides
    if any(d > 1 for d in dils) or draw(st.booleans()):
        attrs["dilations"] = dils
    if group > 1:
        attrs["group"] = group
    if auto_pad != "NOTSET":
        attrs["auto_pad"] = auto_pad
    elif any(pads[0] + pads[1]) or draw(st.booleans()):
        attrs["pads"] = [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]
    scale = _acc_scale(x, attrs["x_zero"], w.reshape(m, -1))
    out = _output_attrs(draw, rng, accumulators=True)
    if out["y_dtype"] is not dtypes.int32:
        attrs["scale"] = _scales(draw, rng, m, draw(st.booleans()), scale)
    attrs.update(out)
    bias = _bias(draw, rng, m, scale)
    return QLayer("qconv", [x, Const(w)] + ([bias] if bias is not None else []), attrs)


@st.composite
def qmatmul_layer(draw, max_macs: int = 300_000):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    k = draw(st.sampled_from([1, 2, 3, 7, 16, 31, 64, 100, 257]))
    n_out = draw(st.integers(1, 48))
    lead = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
    while math.prod(lead) * k * n_out > max_macs and lead:
        lead = lead[1:]
    a_dt = draw(st.sampled_from(ACT))
    attrs = {"a_zero": _zero(rng, a_dt) if draw(st.integers(0, 3)) else 0}
    a, b = _operands(draw, rng, a_dt, attrs["a_zero"], (*lead, k), (k, n_out))
    scale = _acc_scale(a, attrs["a_zero"], b.T)
    out = _output_attrs(draw, rng, accumulators=True)
    if out["y_dtype"] is not dtypes.int32:
        attrs["scale"] = _scales(draw, rng, n_out, draw(st.booleans()), scale)
    attrs.update(out)
    bias = _bias(draw, rng, n_out, scale)
    return QLayer("qmatmul", [a, Const(b)] + ([bias] if bias is not None else []), attrs)


@st.composite
def requantize_layer(draw):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    shape = draw(st.lists(st.integers(1, 9), min_size=0, max_size=4))
    x_dt = draw(st.sampled_from(ACT))
    x = _ints(rng, x_dt, shape)
    attrs = {"x_zero": _zero(rng, x_dt)}
    scale = _acc_scale(x.reshape(1, -1), attrs["x_zero"], np.ones((1, 1)))
    attrs["scale"] = _scales(draw, rng, 1, False, scale)
    attrs.update(_output_attrs(draw, rng))
    return QLayer("requantize", [x], attrs)


@st.composite
def qadd_layer(draw):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    out = draw(st.lists(st.integers(1, 7), min_size=0, max_size=4))
    if out and draw(st.booleans()):
        out[-1] = draw(st.integers(8, 300))  # a long inner dim

    def operand():
        rank = draw(st.integers(0, len(out)))
        return [1 if draw(st.integers(0, 2)) == 0 else d for d in out[len(out) - rank:]]
    a_shape, b_shape = operand(), operand()
    if draw(st.booleans()):  # one of them the full shape
        a_shape = list(out)
    a_dt, b_dt = draw(st.sampled_from(ACT)), draw(st.sampled_from(ACT))
    a, b = _ints(rng, a_dt, a_shape), _ints(rng, b_dt, b_shape)
    attrs = {"a_zero": _zero(rng, a_dt), "b_zero": _zero(rng, b_dt)}
    mode = draw(st.sampled_from(["natural"] * 3 + ["log-uniform", "extreme", "ties"]))
    if mode == "extreme":  # saturated or zero outputs, and the constant's extremes
        ra, rb = (float(v) for v in rng.choice([0.0, 1e-30, 1e-6, 1e4, 1e30], 2))
    elif mode == "ties":  # dyadic ratios (x / 2^j): many sums exactly halfway between two codes
        ra, rb = (float(v) for v in rng.integers(0, 16, 2) / 2.0 ** rng.integers(1, 6, 2))
    else:
        sa, sb, sy = (float(10 ** rng.uniform(-3, 0)) for _ in range(3))
        if mode == "natural":  # y's scale about that of a + b's values: outputs spread over the type
            rms = [_acc_scale(v.reshape(1, -1), attrs[z], np.ones((1, 1))) for v, z in ((a, "a_zero"), (b, "b_zero"))]
            sy = (sa * rms[0] + sb * rms[1]) / 48 * 10 ** rng.uniform(-0.5, 0.5)
        ra, rb = sa / sy, sb / sy
    attrs.update(a_scale=requant_scale(ra), b_scale=requant_scale(rb))
    attrs.update(_output_attrs(draw, rng))
    return QLayer("qadd", [a, b], attrs)


@st.composite
def qmul_layer(draw):
    """qadd's operand shapes and types, multiplied: one scale for s_a * s_b / s_y."""
    layer = draw(qadd_layer())
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a, b = layer.inputs
    attrs = {k: layer.attrs[k] for k in ("a_zero", "b_zero", "y_dtype", "y_zero", "clamp") if k in layer.attrs}
    spread = _acc_scale(a.reshape(1, -1), attrs["a_zero"], np.ones((1, 1))) * \
        _acc_scale(b.reshape(1, -1), attrs["b_zero"], np.ones((1, 1)))
    attrs["scale"] = _scales(draw, rng, 1, False, spread)
    return QLayer("qmul", [a, b], attrs)


@st.composite
def lookup_layer(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    x = _ints(rng, draw(st.sampled_from(ACT)), draw(st.lists(st.integers(1, 9), min_size=0, max_size=4)))
    table_dt = draw(st.sampled_from([np.int8, np.uint8, np.float32]))
    table = rng.normal(0, 50, 256).astype(table_dt) if table_dt == np.float32 else _ints(rng, table_dt, (256,))
    return QLayer("lookup", [x, Const(table)], {})


@st.composite
def qsoftmax_layer(draw):
    """Rows of 1..300 codes along any axis; x scales that make the table span a few to hundreds of
    e-folds; y scales 1/255 (what quantizers give a softmax), 1/256, random, or tiny ones (huge
    floor(1 / y_scale): saturated outputs); any zero point (int8 codes past 127 wrap)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    if draw(st.booleans()):
        shape[axis] = draw(st.integers(1, 300))
    dt = draw(st.sampled_from(ACT))
    x = _ints(rng, dt, shape)
    y_scale = draw(st.sampled_from([1 / 255, 1 / 256, float(10 ** rng.uniform(-4, -0.5)), 1e-9]))
    lo, hi = _range(dt)
    y_zero = draw(st.sampled_from([lo, 0 if lo < 0 else lo, int(rng.integers(lo, hi + 1))]))
    return QLayer("qsoftmax", [x], {"axis": axis, "x_scale": requant_scale(float(10 ** rng.uniform(-3, 0))),
                                   "y_scale": requant_scale(y_scale), "y_zero": y_zero})


@st.composite
def qmatmul_act_layer(draw):
    """qmatmul of two activations (attention's q @ k^T, p @ v): a [..., M, K] by b [..., K, N] with
    batch dims that broadcast (or a 2-D run-time b), int8 / uint8 each with any zero point, requantized
    or int32 accumulators."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    m, k, n = draw(st.integers(1, 9)), draw(st.sampled_from([1, 2, 5, 16, 33, 64])), draw(st.integers(1, 17))
    batch = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    drop = lambda: [1 if draw(st.integers(0, 2)) == 0 else d for d in batch][draw(st.integers(0, len(batch))):]  # noqa: E731
    a_shape, b_shape = (drop() + [m, k], drop() + [k, n]) if draw(st.integers(0, 3)) else (batch + [m, k], [k, n])
    a_dt, b_dt = draw(st.sampled_from(ACT)), draw(st.sampled_from(ACT))
    attrs = {"a_zero": _zero(rng, a_dt), "b_zero": _zero(rng, b_dt)}
    a, b = _ints(rng, a_dt, a_shape), _ints(rng, b_dt, b_shape)
    out = _output_attrs(draw, rng, accumulators=True)
    if out["y_dtype"] is not dtypes.int32:
        spread = _acc_scale(a.reshape(-1, k), attrs["a_zero"], (b.reshape(-1, k, n)[0].astype(np.int64) - attrs["b_zero"]).T)
        attrs["scale"] = _scales(draw, rng, n, draw(st.booleans()), spread)
    attrs.update(out)
    return QLayer("qmatmul", [a, Const(b) if draw(st.integers(0, 4)) == 0 else b], attrs)


@st.composite
def qlayer_norm_layer(draw):
    """Rows of 1..300 codes (one dim or several normalized), int8 / uint8 with any zero point, alone or
    with a residual on a finer grid; gamma, beta in output units; int8 / uint8 (clamped) or f32 out."""
    from pdc.ir.ops.qint import layer_norm_epsilon, residual_multipliers
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    if draw(st.booleans()):
        shape[-1] = draw(st.integers(1, 300))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    tail = shape[axis % len(shape):]
    x_dt = draw(st.sampled_from(ACT))
    x = _ints(rng, x_dt, shape)
    if draw(st.integers(0, 5)) == 0:  # constant rows: the variance is epsilon's alone
        x[...] = x.reshape(-1)[0]
    attrs = {"axis": axis, "x_zero": _zero(rng, x_dt)}
    unit = float(10 ** rng.uniform(-3, 0))
    inputs = [x]
    if draw(st.booleans()):
        r_dt = draw(st.sampled_from(ACT))
        bits = draw(st.sampled_from([0, 4, 10]))
        xm, rm, unit = residual_multipliers(unit, float(10 ** rng.uniform(-3, 0)), bits)
        if math.prod(tail) * (xm + rm) * 256 < 2 ** 26:
            attrs.update(x_mult=xm, r_zero=_zero(rng, r_dt), r_mult=rm)
            inputs.append(_ints(rng, r_dt, shape))
    attrs["var_epsilon"] = layer_norm_epsilon(draw(st.sampled_from([1e-5, 1e-12, 0.1])), math.prod(tail), unit)
    y = _output_attrs(draw, rng)
    if draw(st.integers(0, 2)) == 0:
        y = {"y_dtype": dtypes.float32}
    attrs.update(y)
    step = 1.0 if y["y_dtype"] is dtypes.float32 else float(10 ** rng.uniform(-2, 0))
    gamma = (rng.normal(1, 0.5, tail) / step).astype(np.float32)
    beta = (rng.normal(0, 0.5, tail) / step).astype(np.float32)
    params = [Const(gamma), Const(beta)] if len(inputs) == 1 or draw(st.booleans()) else [Const(gamma), None]
    if len(inputs) == 1 and draw(st.integers(0, 3)) == 0:
        params = [Const(gamma)]
    return QLayer("qlayer_norm", inputs[:1] + params + inputs[1:], attrs)


def draws(one, max_size: int):
    return st.lists(one, min_size=1, max_size=max_size)


# ---- properties -------------------------------------------------------------------------------------
EXAMPLES = 20


# x86-avx512 and arm64 render qconv / qmatmul with their VNNI / NEON kernels (kernels/x86/qint.py,
# kernels/arm/qint.py) where they apply; the portable kernels are checked there too, forced
PORTABLE = "qconv=portable,qmatmul=portable"
CASES = [(t, None) for t in ALL_TARGETS] + [("x86-avx512", PORTABLE), ("arm64", PORTABLE)]
# the portable kernels where native ones exist too (x86-avx512, arm64: kernels/x86/qint.py, kernels/arm/qint.py)
PORTABLE_CASES = [("x86-avx512", PORTABLE), ("x86-avx2", None), ("arm64", PORTABLE), ("armv7", None)]
PORTABLE_IDS = ["x86-avx512-portable", "x86-avx2", "arm64-portable", "armv7"]
IDS = [t + ("-portable" if f else "") for t, f in CASES]


@pytest.mark.parametrize("target,force", CASES, ids=IDS)
def test_qconv_matches_reference(target, force):
    require(target)
    arm = not target.startswith("x86")
    run_qproperty(draws(qconv_layer(max_extent=14 if arm else 40, max_macs=150_000 if arm else 400_000),
                        4 if arm else 6), target, examples=examples(target, EXAMPLES), force=force, **options(target))


@pytest.mark.parametrize("target,force", CASES, ids=IDS)
def test_qmatmul_matches_reference(target, force):
    require(target)
    run_qproperty(draws(qmatmul_layer(), 5), target, examples=examples(target, EXAMPLES), force=force,
                  **options(target))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_elementwise_ops_match_reference(target):
    """requantize, qadd, qmul and lookup."""
    require(target)
    run_qproperty(draws(st.one_of(requantize_layer(), qadd_layer(), qmul_layer(), lookup_layer(),
                                qsoftmax_layer()), 8), target,
                  examples=examples(target, EXAMPLES), **options(target))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_transformer_ops_match_reference(target):
    """qmatmul of two activations (the portable kernel: nothing to pack) and qlayer_norm."""
    require(target)
    run_qproperty(draws(st.one_of(qmatmul_act_layer(), qlayer_norm_layer()), 6), target,
                  examples=examples(target, EXAMPLES), **options(target))


# ---- every input value, on dyadic scales: the rounding's ties (negative ones too) ----------------------------
def _every_value(dt) -> np.ndarray:
    return (np.arange(256) + _range(dt)[0]).astype(dt)


def _exhaustive_layers() -> list[QLayer]:
    out = []
    kinds = [(np.int8, np.int8), (np.uint8, np.int8), (np.int8, np.uint8), (np.uint8, np.uint8)]
    for i, (x_dt, y_dt) in enumerate(kinds):
        x, zx, zy = _every_value(x_dt).reshape(16, 16), [-5, 131, 0, 126][i], [3, -2, 128, 0][i]
        for real in (0.5, 0.25, 0.75, 1.5, 2.0, 3 / 64, 5 / 1024, requant_scale(0.37)):
            out.append(QLayer("requantize", [x], {"x_zero": zx, "scale": [real], "y_zero": zy,
                                                   "y_dtype": DT[np.dtype(y_dt)]}))
        # every pair (a, b): a down the rows, b along the columns
        for real in (0.25, 3 / 32, 2.0 ** -10):
            out.append(QLayer("qmul", [x.reshape(256, 1), _every_value(y_dt)],
                              {"a_zero": zx, "b_zero": zy, "scale": [real], "y_zero": zy,
                               "y_dtype": DT[np.dtype(y_dt)]}))
        for ra, rb in ((0.25, 0.75), (5 / 8, 0.25), (0.5, 0.75), (requant_scale(0.3), requant_scale(0.71))):
            out.append(QLayer("qadd", [x.reshape(256, 1), _every_value(y_dt)],
                              {"a_zero": zx, "b_zero": zy, "a_scale": ra, "b_scale": rb,
                               "y_zero": zy, "y_dtype": DT[np.dtype(y_dt)]}))
        # 1x1 convolutions / matmuls whose accumulators are +-1 or 3 times x - x_zero, plus a bias
        attrs = {"scale": [0.5, 0.25, 0.125], "y_zero": zy, "y_dtype": DT[np.dtype(y_dt)]}
        w = np.array([1, -1, 3], np.int8)
        out.append(QLayer("qconv", [x.reshape(1, 1, 16, 16), Const(w.reshape(3, 1, 1, 1)),
                                    Const(np.array([0, 1, -3], np.int32))], {"x_zero": zx, **attrs}))
        out.append(QLayer("qmatmul", [x.reshape(256, 1), Const(w.reshape(1, 3)), Const(np.array([1, 0, 5], np.int32))],
                          {"a_zero": zx, **attrs}))
        out.append(QLayer("qconv", [x.reshape(1, 1, 16, 16), Const(w.reshape(3, 1, 1, 1))],
                          {"x_zero": zx, "y_dtype": dtypes.int32}))
    return out


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_rounding_ties_on_every_value(target):
    require(target)
    layers = _exhaustive_layers()
    g, feeds = build_graph(layers)
    want = run_graph(g, feeds)
    assert sum(len(np.unique(want[y.name])) for y in g.outputs) > 20 * len(layers)  # not saturated
    check_qlayers(layers, target, **options(target))


# ---- fixed layers: the paths a random draw reaches rarely -------------------------------------------
def _conv(seed, x_shape, w_shape, x_dt=np.uint8, per_channel=True, bias=True, **attrs):
    rng = np.random.default_rng(seed)
    m = w_shape[0]
    scales = [requant_scale(float(v)) for v in 10 ** rng.uniform(-4.5, -2.5, m if per_channel else 1)]
    a = {"x_zero": _zero(rng, x_dt), "scale": scales, "y_zero": 5, "y_dtype": dtypes.int8, **attrs}
    ins = [_ints(rng, x_dt, x_shape), Const(rng.integers(-127, 128, w_shape).astype(np.int8))]
    if bias:
        ins.append(Const(rng.integers(-5000, 5000, m).astype(np.int32)))
    return QLayer("qconv", ins, a)


def _matmul(seed, a_shape, n, a_dt=np.int8, **attrs):
    rng = np.random.default_rng(seed)
    k = a_shape[-1]
    scales = [requant_scale(float(v)) for v in 10 ** rng.uniform(-4.5, -2.5, n)]
    a = {"a_zero": _zero(rng, a_dt), "scale": scales, "y_dtype": dtypes.uint8, "y_zero": 128, **attrs}
    return QLayer("qmatmul", [_ints(rng, a_dt, a_shape), Const(rng.integers(-127, 128, (k, n)).astype(np.int8)),
                              Const(rng.integers(-5000, 5000, n).astype(np.int32))], a)


# big enough to be split over the threads (pdc_parallel_slots / pdc_parallel_for), every layer kind
THREADED = [
    _conv(1, [1, 16, 20, 20], [32, 16, 3, 3], pads=[1, 1, 1, 1]),                    # dense
    _conv(2, [2, 32, 33, 31], [32, 1, 5, 5], x_dt=np.int8, group=32, strides=[2, 2],  # depthwise, asymmetric pads
          pads=[3, 0, 1, 4], dilations=[1, 2]),
    _conv(3, [1, 24, 12, 12], [36, 8, 3, 3], group=3, auto_pad="SAME_LOWER", strides=[2, 1], per_channel=False),
    _conv(10, [1, 3, 9, 75], [8, 3, 3, 3], x_dt=np.int8, pads=[0, 2, 1, 0]),       # 3 pixel blocks, the last partial
    _matmul(4, [3, 40, 96], 64),
    _matmul(5, [1, 600], 512, a_dt=np.uint8),                                          # one row: column blocks
    QLayer("requantize", [_ints(np.random.default_rng(6), np.uint8, (3, 160, 200))],
           {"x_zero": 131, "scale": [requant_scale(0.37)], "y_zero": -7}),
    QLayer("qadd", [_ints(np.random.default_rng(7), np.int8, (2, 64, 48, 16)),
                    _ints(np.random.default_rng(8), np.uint8, (64, 1, 16))],
           {"a_zero": -3, "b_zero": 120,
            "a_scale": requant_scale(0.02, divisor=0.04), "b_scale": requant_scale(0.05, divisor=0.04),
            "y_zero": 2, "clamp": [2, 127]}),
]


@pytest.mark.parametrize("target,force", PORTABLE_CASES, ids=PORTABLE_IDS)
def test_threaded_layers(target, force):
    require(target)
    source = check_qlayers(THREADED, target, threads=2, force=force, **options(target))
    assert "pdc_parallel_slots(" in source and "pdc_parallel_for(" in source
    assert source.count("/* path: qconv/portable */") == 4 and source.count("/* path: qmatmul/portable */") == 2


# accumulators past int32: K = 8192 * 9 uint8 taps of weights -128 (the kernel accumulates in int64)
def _wide_layers():
    rng = np.random.default_rng(9)
    x = np.full((1, 8192, 3, 3), 255, np.uint8)
    x[0, ::7] = rng.integers(0, 256, x[0, ::7].shape)
    w = np.full((2, 8192, 3, 3), -128, np.int8)
    w[1, ::5] = 127
    conv = QLayer("qconv", [x, Const(w)], {"scale": [requant_scale(2e-9)], "x_zero": 0, "y_dtype": dtypes.int8})
    a = rng.integers(0, 256, (2, 70000)).astype(np.uint8)
    a[:, ::3] = 255
    b = np.full((70000, 3), -128, np.int8)
    b[::4, 1] = 127
    mm = QLayer("qmatmul", [a, Const(b)], {"scale": [requant_scale(1e-9)] * 3, "a_zero": 3, "y_dtype": dtypes.uint8,
                                          "y_zero": 100})
    # the accumulators themselves: past int32, wrapped as numpy's cast wraps them
    acc = QLayer("qconv", [x, Const(w)], {"x_zero": 7, "y_dtype": dtypes.int32})
    return [conv, mm, acc]


@pytest.mark.parametrize("target,force", PORTABLE_CASES, ids=PORTABLE_IDS)
def test_int64_accumulators(target, force):
    require(target)
    layers = _wide_layers()
    g, feeds = build_graph(layers)
    want = run_graph(g, feeds)
    assert all(np.abs(want[y.name].astype(np.int32)).max() < 127 for y in g.outputs[:2])  # not all saturated
    acc = int_conv(layers[2].inputs[0].astype(np.int64) - 7, layers[2].inputs[1].value.astype(np.int64), {})
    assert np.abs(acc).max() >= 2 ** 31 and np.array_equal(want[g.outputs[2].name], acc.astype(np.int32))
    source = check_qlayers(layers, target, force=force, **options(target))
    assert all(f"pdc_qi_{k}_int64" in source for k in ("conv_u8_i8", "matmul_u8_u8", "conv_u8_i32"))


# ---- the layers the properties found wrong, kept as they were found ----------------------------------------
REGRESSIONS = [
    # arm64: gcc 12 -O3 vectorized a fixed-point rounding shift written on uint64 and cast back to
    # int64 into an unsigned halving add (uhadd) on 16-bit lanes: every negative value came out as +127
    QLayer("qadd", [np.array([[89, 35, 2, -59, -50, -118], [-109, -124, -84, 80, 38, 105], [0, 27, 120, 58, 33, 11]],
                             np.int8), np.array(15, np.int8)],
           {"a_zero": 111, "b_zero": -57, "a_scale": 6.5, "b_scale": 5.0, "y_dtype": dtypes.int8, "y_zero": -28}),
]


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_regressions(target):
    require(target)
    check_qlayers(REGRESSIONS, target, **options(target))


# ---- what the generators refuse -----------------------------------------------------------------------
def _compile_error(layer: QLayer, tmp_path) -> str:
    g, _ = build_graph([layer])
    with pytest.raises(UnsupportedError) as e:
        pdc.compile(g, target="x86-avx2", out_dir=str(tmp_path / "b"))
    return str(e.value)


def test_qconv_1d_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    w = Const(rng.integers(-127, 128, (4, 3, 3)).astype(np.int8))
    layer = QLayer("qconv", [_ints(rng, np.int8, (1, 3, 10)), w],
                   {"scale": [2.0 ** -10]})
    msg = _compile_error(layer, tmp_path)
    assert "qconv" in msg and "1-D convolution" in msg and "only 2-D qconv" in msg


def test_runtime_weights_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    conv = QLayer("qconv", [_ints(rng, np.int8, (1, 3, 6, 6)), rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)],
                  {"scale": [2.0 ** -10]})
    assert "qconv needs constant weights" in _compile_error(conv, tmp_path)



def test_native_qmatmul_leaves_a_runtime_b_to_the_portable_kernel():
    """A run-time b (an activation) has nothing to pack: the VNNI / NEON generators decline it, even forced."""
    rng = np.random.default_rng(0)
    mm = QLayer("qmatmul", [_ints(rng, np.uint8, (2, 5)), rng.integers(-127, 128, (5, 3)).astype(np.int8)],
                {"scale": [2.0 ** -10]})
    for target, force in (("x86-avx512", "qmatmul=vnni"), ("arm64", "qmatmul=neon")):
        require(target)
        source = check_qlayers([mm], target, force=force)
        assert source.count("/* path: qmatmul/portable */") == 1
