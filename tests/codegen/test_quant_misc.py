"""Compiled x86 kernels of the quantization ops (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
QLinearMatMul, QLinearConv) and of Det, the losses, RoiAlign, MaxRoiPool, Dropout and Unique.

Each test compiles one model holding many independent one-node cases (one compile for many
attribute combinations) and compares every output, element by element, with pdc's NumPy reference
and with an oracle that is not pdc's (tests/oracles.py): ONNX Runtime where it runs the node, ONNX's
reference evaluator (in float64 for half-precision inputs) where it does not (float16 / float64 Det,
float16 losses, RoiAlign and MaxRoiPool, mixed quantized types...). Integer outputs match exactly,
float outputs within tolerances.ROUNDED (ACCUMULATED where the kernel sums long rows or eliminates).
A case routed to the reference evaluator, or left without an oracle, says why.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from conftest import require_cpu
from oracles import REFERENCE, check_outputs, node_by_node
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph, verify_graph
from tolerances import ACCUMULATED, KERNEL, REQUANTIZED, ROUNDED

rng = np.random.default_rng(7)
# the NumPy references warn on the NaN cases tested on purpose
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
try:
    from ml_dtypes import bfloat16
except ImportError:  # pragma: no cover
    bfloat16 = None

AUTO = "auto"  # ONNX Runtime, or the reference evaluator where ONNX Runtime cannot run the node


class Cases:
    """A model of independent nodes; inputs are graph inputs or (listed in consts) initializers."""

    def __init__(self):
        self.nodes, self.inputs, self.inits, self.outputs, self.feeds = [], [], [], [], {}
        self.reference = []  # outputs whose oracle is ONNX's reference (ONNX Runtime departs from the spec)
        self.no_oracle = []  # outputs neither oracle gets right
        self.numpy_oracles = []  # (outputs, function, inputs): float64 NumPy written here, where no oracle runs

    def add(self, op, inputs, attrs=None, n_out=1, consts=(), oracle=AUTO):
        """`oracle`: AUTO, REFERENCE (a comment at the call says how ONNX Runtime departs), a function
        of the inputs giving the outputs (float64 NumPy, where neither oracle runs the case) or None
        (a comment says why no oracle applies)."""
        k = len(self.nodes)
        names = []
        for i, a in enumerate(inputs):
            if a is None:
                names.append("")
                continue
            a = np.asarray(a)
            name = f"n{k}_in{i}"
            names.append(name)
            if i in consts:
                self.inits.append(numpy_helper.from_array(a, name))
            else:
                self.inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape))
                self.feeds[name] = a
        outs = [f"n{k}_out{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op, names, outs, name=f"{op}_{k}", **(attrs or {})))
        self.outputs += outs
        if oracle == REFERENCE:
            self.reference += outs
        elif oracle is None:
            self.no_oracle += outs
        elif callable(oracle):
            self.numpy_oracles.append((outs, oracle, [None if a is None else np.asarray(a) for a in inputs]))
        return outs

    @property
    def without_onnx_oracle(self) -> list:
        return self.no_oracle + [o for outs, _, _ in self.numpy_oracles for o in outs]

    def model(self, opset=21):
        outs = [helper.make_tensor_value_info(o, 0, None) for o in self.outputs]
        graph = helper.make_graph(self.nodes, "cases", self.inputs, outs, self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def run_cases(cases: Cases, tmp_path, opset=21, tolerance=ROUNDED, oracle_tolerance=None, threads=2, target="x86"):
    """Compiles the cases; every output against pdc's reference (`tolerance`) and an independent oracle
    (`oracle_tolerance`, the same by default)."""
    model = cases.model(opset)
    g = import_onnx(model)
    verify_graph(g)
    want = run_graph(g, cases.feeds)
    mod = pdc.compile(model, target=target, out_dir=str(tmp_path / "b"), threads=threads, opt_level=0)
    got = mod.run(cases.feeds)
    for name in cases.outputs:
        want_ = np.asarray(want[name])
        assert got[name].dtype == want_.dtype, (name, got[name].dtype, want_.dtype)
        tolerance.check(got[name], want_, f"{name} (vs the reference interpreter)")
    oracle_tolerance = oracle_tolerance or tolerance
    oracle = node_by_node(model, cases.feeds, reference=cases.reference, skip=cases.without_onnx_oracle)
    check_outputs(got, oracle, oracle_tolerance, [o for o in cases.outputs if o not in cases.without_onnx_oracle])
    for outs, function, inputs in cases.numpy_oracles:
        for name, want_ in zip(outs, function(*inputs)):
            oracle_tolerance.check(got[name], want_, f"{name} (vs float64 NumPy)")


def saturate(values, zero_point):
    """QuantizeLinear's last steps: round half to even, add the zero point, saturate to its dtype."""
    zero_point = np.asarray(zero_point)
    info = np.iinfo(zero_point.dtype)
    return np.clip(np.rint(values) + zero_point.astype(np.float64), info.min, info.max).astype(zero_point.dtype)


def quantize_f64(x, scale, zero_point=None, axis=1):
    """QuantizeLinear in float64, per tensor or (1-D scale) per `axis`; x / 0 and huge quotients
    saturate, where ONNX's reference evaluator casts them to 0."""
    zp = np.zeros((), np.uint8) if zero_point is None else np.asarray(zero_point)
    scale = np.asarray(scale, np.float64)
    if scale.ndim == 1:
        scale = scale.reshape([-1 if d == axis % x.ndim else 1 for d in range(x.ndim)])
    with np.errstate(divide="ignore"):
        return [saturate(x.astype(np.float64) / scale, zp)]


def qlinear_matmul_f64(a, sa, za, b, sb, zb, sy, zy):
    """QLinearMatMul in float64: per-row a parameters (1-D, one per row of a) and per-column b
    parameters, which ONNX's reference evaluator does not broadcast."""
    def per_row(p):
        p = np.asarray(p, np.float64)
        return p.reshape(-1, 1) if p.ndim == 1 and p.size > 1 and a.ndim >= 2 else p
    real_a = (a.astype(np.float64) - per_row(za)) * per_row(sa)
    real_b = (b.astype(np.float64) - np.asarray(zb, np.float64)) * np.asarray(sb, np.float64)
    return [saturate(np.matmul(real_a, real_b) / np.float64(sy), zy)]


def qrand(dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)


def scale(*shape, dtype=np.float32):
    return (rng.uniform(0.02, 0.3, shape)).astype(dtype)


# ---- QuantizeLinear / DequantizeLinear -------------------------------------------------------------
def test_quantize_dequantize(tmp_path):
    c = Cases()
    x = (rng.standard_normal((3, 5, 4)) * 30).astype(np.float32)
    x.flat[:6] = [0.5, 1.5, -2.5, 2.5, 1e9, -1e9]  # ties to even; saturation
    for dt in (np.uint8, np.int8, np.uint16, np.int16):
        zp = np.array(3 if dt in (np.uint8, np.uint16) else -3, dt)
        c.add("QuantizeLinear", [x, np.float32(0.5), zp], consts=(1, 2))
        c.add("QuantizeLinear", [x, np.float32(0.25), zp])  # runtime scale and zero point
        c.add("DequantizeLinear", [qrand(dt, (3, 5, 4)), np.float32(0.125), zp], consts=(1, 2))
    c.add("QuantizeLinear", [x, np.float32(0.7)], consts=(1,))  # default uint8
    c.add("QuantizeLinear", [x, np.float32(0.7)], {"output_dtype": TensorProto.INT8}, consts=(1,))
    c.add("QuantizeLinear", [x, np.float32(0.0)], consts=(1,), oracle=quantize_f64)  # x / 0 saturates
    # per axis (axis 0, 1, -1), with a per-tensor zero point mixed in
    for axis in (0, 1, -1):
        n = x.shape[axis]
        c.add("QuantizeLinear", [x, scale(n), qrand(np.int8, (n,))], {"axis": axis}, consts=(1, 2))
        c.add("QuantizeLinear", [x, scale(n), qrand(np.uint8, (n,))], {"axis": axis})
        c.add("DequantizeLinear", [qrand(np.int16, x.shape), scale(n), qrand(np.int16, (n,))], {"axis": axis})
    # a per-axis scale with a per-tensor zero point: ONNX Runtime refuses it, ONNX's reference casts the
    # saturated 1e9 / scale to 0
    c.add("QuantizeLinear", [x, scale(5), np.array(7, np.uint8)], {"axis": 1}, consts=(1, 2), oracle=quantize_f64)
    # blocked: axis dim 5 in blocks of 2 (a short last block), and blocks along the last axis
    c.add("QuantizeLinear", [x, scale(3, 3, 4), qrand(np.int8, (3, 3, 4))], {"axis": 1, "block_size": 2},
          consts=(1, 2))
    c.add("QuantizeLinear", [x, scale(3, 5, 2)], {"axis": -1, "block_size": 3})
    c.add("DequantizeLinear", [qrand(np.uint8, x.shape), scale(3, 3, 4), qrand(np.uint8, (3, 3, 4))],
          {"axis": 1, "block_size": 2})
    c.add("DequantizeLinear", [qrand(np.int8, x.shape), scale(2, 5, 4)], {"axis": 0, "block_size": 2}, consts=(1,))
    # int32 input / output, no zero point, half-precision scales and outputs
    # ONNX Runtime wraps x - zero_point in int32; the spec (and ONNX's reference) does not
    c.add("DequantizeLinear", [qrand(np.int32, (7, 3)), scale(3), qrand(np.int32, (3,))], {"axis": 1},
          oracle=REFERENCE)
    c.add("DequantizeLinear", [qrand(np.int32, (7, 3)), np.float32(1e-3)], consts=(1,))
    c.add("DequantizeLinear", [qrand(np.uint8, (4, 6)), np.float16(0.037), np.array(128, np.uint8)])
    c.add("DequantizeLinear", [qrand(np.int8, (4, 6)), scale(6, dtype=np.float16)], {"axis": 1}, consts=(1,))
    c.add("QuantizeLinear", [np.clip(x, -6e4, 6e4).astype(np.float16), np.float16(0.3), np.array(-5, np.int8)])
    c.add("QuantizeLinear", [(rng.integers(-2000, 2000, (5, 6))).astype(np.int32), np.float32(7.0)])
    c.add("QuantizeLinear", [np.array([2**31 - 1, -2**31, 16777217, 3], np.int32), np.float32(1.0),
                             np.array(0, np.int16)])
    if bfloat16 is not None:
        # ONNX's reference casts the saturated +-1e9 / 0.25 of bfloat16 inputs to int wrongly
        c.add("QuantizeLinear", [x.astype(bfloat16), np.array(0.25, bfloat16), np.array(1, np.int8)],
              oracle=quantize_f64)
        c.add("DequantizeLinear", [qrand(np.int8, (4, 6)), np.array(0.1, bfloat16)])
    # a tensor large enough to be quantized in chunks over the two threads (a short last chunk), ties too
    big = (np.random.default_rng(11).standard_normal((3, 70001)) * 40).astype(np.float32)  # the module's rng left as it was
    big.flat[::7] = np.round(big.flat[::7]) + 0.5
    c.add("QuantizeLinear", [big, np.float32(0.5), np.array(-3, np.int8)], consts=(1, 2))
    c.add("QuantizeLinear", [big, np.float32(0.25), np.array(130, np.uint8)])
    run_cases(c, tmp_path)
    source = "".join(p.read_text() for p in (tmp_path / "b").glob("*.c"))
    assert "pdc_parallel_for(13, pdc_quantize_row_i8_task" in source
    assert "pdc_parallel_for(13, pdc_quantize_row_u8_task" in source


def test_opset_25_attributes(tmp_path):
    """QuantizeLinear's precision and DequantizeLinear's output_dtype (attributes since opset 23 / 25)."""
    c = Cases()
    c.add("DequantizeLinear", [qrand(np.int8, (4, 6)), np.float32(0.1)], {"output_dtype": TensorProto.FLOAT16})
    x = (rng.standard_normal((4, 6)) * 10).astype(np.float16)
    c.add("QuantizeLinear", [x, np.float16(0.3), np.array(2, np.int8)], {"precision": TensorProto.FLOAT})
    c.add("QuantizeLinear", [x, scale(6, dtype=np.float16)], {"axis": 1, "precision": TensorProto.FLOAT})
    run_cases(c, tmp_path, opset=25)


def test_dynamic_quantize(tmp_path):
    c = Cases()
    for x in ((rng.standard_normal((4, 7)) * 5).astype(np.float32),
              rng.uniform(1, 3, (9,)).astype(np.float32),  # all positive: the range still holds 0
              -rng.uniform(1, 3, (2, 3, 4)).astype(np.float32),
              np.array([[0.0, 2.5, -7.25, 100.0]], np.float32)):
        c.add("DynamicQuantizeLinear", [x], n_out=3)
    # all zeros: the spec's scale is 0 / 255, which ONNX's reference (and pdc) replace by 1 / 255, ONNX
    # Runtime by 1
    c.add("DynamicQuantizeLinear", [np.zeros((3, 3), np.float32)], n_out=3, oracle=REFERENCE)
    # a NaN: the spec leaves the range open; ONNX Runtime skips the NaN, ONNX's reference gives a NaN
    # scale, pdc the range [0, 0] (pdc's reference interpreter is the only check)
    c.add("DynamicQuantizeLinear", [np.array([1.0, np.nan, -2.0], np.float32)], n_out=3, oracle=None)
    run_cases(c, tmp_path)


# ---- QLinearMatMul ------------------------------------------------------------------------------------
def _qmm(c, a, b, sa, za, sb, zb, sy, zy, consts=(), oracle=AUTO):
    return c.add("QLinearMatMul", [a, sa, za, b, sb, zb, sy, zy], consts=consts, oracle=oracle)


TARGETS = ["x86-avx2", "x86-avx512"]  # the int16 GEMM's 8 x 8 and 16 x 16 tiles


@pytest.mark.parametrize("target", TARGETS)
def test_qlinear_matmul(target, tmp_path):
    require_cpu(target)
    c = Cases()
    u8, i8 = np.uint8, np.int8
    for ta, tb, ty in ((u8, u8, u8), (i8, i8, i8), (u8, i8, u8), (i8, u8, i8)):
        a, b = qrand(ta, (5, 40)), qrand(tb, (40, 7))
        za, zb, zy = qrand(ta, ()), qrand(tb, ()), qrand(ty, ())
        sa, sb, sy = np.float32(0.02), np.float32(0.013), np.float32(0.4)
        _qmm(c, a, b, sa, za, sb, zb, sy, zy)  # everything at run time
        _qmm(c, a, b, sa, za, sb, zb, sy, zy, consts=(1, 2, 3, 4, 5, 6, 7))  # packed b, table
    # per-row a / per-column b parameters, runtime and constant (checked against float64 NumPy: ONNX
    # Runtime refuses per-row a parameters, ONNX's reference does not broadcast them)
    a, b = qrand(u8, (6, 33)), qrand(u8, (33, 9))
    pa = (scale(6), qrand(u8, (6,)), scale(9), qrand(u8, (9,)), np.float32(0.5), np.uint8(100))
    per_row = qlinear_matmul_f64
    _qmm(c, a, b, pa[0], pa[1], pa[2], pa[3], pa[4], pa[5], oracle=per_row)
    _qmm(c, a, b, pa[0], pa[1], pa[2], pa[3], pa[4], pa[5], consts=(1, 2, 3, 4, 5, 6, 7), oracle=per_row)
    # constant b (the GEMM path) with runtime scales, per-row a / per-column b zero points and scales
    b = qrand(u8, (33, 9))
    _qmm(c, a, b, np.float32(0.03), pa[1], pa[2], pa[3], pa[4], pa[5], consts=(3, 5), oracle=per_row)
    _qmm(c, a, b, np.float32(0.03), pa[1], pa[2], pa[3], pa[4], pa[5], consts=(1, 2, 3, 4, 5, 6, 7),
         oracle=per_row)
    _qmm(c, qrand(u8, (2, 3, 33)), b, np.float32(0.03), u8(9), pa[2], u8(4), pa[4], pa[5], consts=(3, 5))
    # batch broadcasting and 1-D operands
    p = (np.float32(0.05), np.uint8(3), np.float32(0.07), np.uint8(250), np.float32(0.9), np.uint8(128))
    for sa_, sb_ in (((2, 3, 4, 16), (16, 5)), ((3, 1, 4, 16), (2, 16, 5)), ((16,), (2, 16, 5)),
                     ((2, 4, 16), (16,)), ((16,), (16,))):
        a, b = qrand(u8, sa_), qrand(u8, sb_)
        _qmm(c, a, b, p[0], p[1], p[2], p[3], p[4], p[5])
        _qmm(c, a, b, p[0], p[1], p[2], p[3], p[4], p[5], consts=(3, 5))
    # per-column b params of a batched b ([B, 1, N])
    b = qrand(i8, (2, 16, 5))
    _qmm(c, qrand(i8, (2, 3, 16)), b, np.float32(0.1), np.int8(1), scale(2, 1, 5), qrand(i8, (2, 1, 5)),
         np.float32(0.3), np.int8(-2))
    # half-precision scales: the multiplier is rounded in float16 (runtime and folded)
    h = (np.float16(0.0213), np.float16(0.0171), np.float16(0.33))
    a, b = qrand(u8, (4, 24)), qrand(u8, (24, 6))
    _qmm(c, a, b, h[0], u8(7), h[1], u8(9), h[2], u8(120))
    _qmm(c, a, b, h[0], u8(7), h[1], u8(9), h[2], u8(120), consts=(1, 4, 6))
    # mixed dtypes (y_scale is cast to a_scale's float16 first), per-row a_scale: float64 NumPy
    _qmm(c, a, b, scale(4, dtype=np.float16), u8(7), np.float32(0.02), u8(9), np.float32(0.3), u8(120),
         oracle=per_row)
    if bfloat16 is not None:
        bs = np.array(0.043, bfloat16)
        _qmm(c, a, b, bs, u8(7), bs, u8(9), np.array(0.5, bfloat16), u8(120))
    # large enough to run on two threads; K above the int32 accumulator bound
    a, b = qrand(u8, (64, 96)), qrand(u8, (96, 80))
    _qmm(c, a, b, np.float32(0.01), u8(128), np.float32(0.01), u8(128), np.float32(2.0), u8(128), consts=(3,))
    a, b = qrand(u8, (1, 34000)), qrand(u8, (34000, 2))
    _qmm(c, a, b, np.float32(1e-4), u8(0), np.float32(1e-4), u8(255), np.float32(1.0), u8(128))
    # K over one packed panel: the GEMM accumulates K blocks
    a, b = qrand(i8, (3, 9001)), qrand(i8, (9001, 8))
    _qmm(c, a, b, np.float32(1e-3), i8(-3), np.float32(1e-3), i8(5), np.float32(1.0), i8(7), consts=(3, 5))
    run_cases(c, tmp_path, oracle_tolerance=REQUANTIZED, target=target)


# ---- QLinearConv --------------------------------------------------------------------------------------
def _qconv(c, x, w, bias=None, attrs=None, per_channel=False, consts=(3, 4, 5, 8), oracle=AUTO, scales=None):
    M = w.shape[0]
    tx, tw = x.dtype.type, w.dtype.type
    xs, ys = np.float32(0.05), np.float32(0.4)
    ws = scale(M) if per_channel else np.float32(0.03)
    wz = np.zeros(M, tw) if per_channel else qrand(tw, ())
    if scales is not None:
        xs, ws, ys = scales
    inputs = [x, xs, qrand(tx, ()), w, ws, wz, ys, qrand(tx, ()), bias]
    return c.add("QLinearConv", inputs, attrs, consts=consts, oracle=oracle)


@pytest.mark.parametrize("target", TARGETS)
def test_qlinear_conv(target, tmp_path):
    require_cpu(target)
    c = Cases()
    u8, i8 = np.uint8, np.int8
    x = qrand(u8, (2, 4, 9, 8))
    w = qrand(i8, (6, 4, 3, 3))
    b = rng.integers(-500, 500, (6,)).astype(np.int32)
    _qconv(c, x, w, b)
    _qconv(c, x, w, b, {"pads": [1, 1, 1, 1]}, per_channel=True)
    _qconv(c, x, w, None, {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]}, per_channel=True)
    _qconv(c, x, w, b, {"auto_pad": "SAME_UPPER", "strides": [2, 2]})
    _qconv(c, x, w, b, {"auto_pad": "SAME_LOWER", "strides": [2, 2]})
    _qconv(c, x, w, b, {"auto_pad": "VALID"})
    _qconv(c, x, w, b, consts=())  # everything at run time
    _qconv(c, x, qrand(i8, (6, 2, 3, 3)), b, {"group": 2, "pads": [1, 1, 1, 1]}, per_channel=True)
    _qconv(c, x, qrand(i8, (4, 1, 3, 3)), None, {"group": 4, "pads": [1, 1, 1, 1], "strides": [2, 2]})
    # a per-channel weight zero point (ONNX Runtime wants 0 there)
    c.add("QLinearConv", [x, np.float32(0.05), u8(3), w, scale(6), qrand(i8, (6,)), np.float32(0.4), u8(9), b],
          {"pads": [1, 1, 1, 1]}, consts=(3, 4, 5))
    # int8 activations, 1-D and 3-D
    _qconv(c, qrand(i8, (1, 3, 20)), qrand(i8, (5, 3, 4)), None, {"strides": [3], "pads": [2, 1]})
    _qconv(c, qrand(u8, (1, 2, 5, 6, 4)), qrand(i8, (3, 2, 2, 3, 2)), None, {"pads": [1, 0, 1, 0, 1, 1]})
    _qconv(c, qrand(u8, (2, 2, 5, 6, 4)), qrand(i8, (8, 2, 2, 3, 2)), None,
           {"pads": [1, 0, 1, 0, 1, 1], "strides": [2, 1, 2]})
    # odd K (3 channels x 3 x 3), pointwise, K over one packed panel, a K needing int64 accumulators
    _qconv(c, qrand(u8, (1, 3, 7, 7)), qrand(i8, (8, 3, 3, 3)), b[:1].repeat(8), {"strides": [2, 2]})
    _qconv(c, qrand(u8, (2, 8, 5, 5)), qrand(i8, (12, 8, 1, 1)), None, per_channel=True)
    _qconv(c, qrand(u8, (1, 1000, 3, 3)), qrand(i8, (8, 1000, 3, 3)), None, {"pads": [1, 1, 1, 1]})
    _qconv(c, qrand(u8, (1, 33100, 1, 1)), qrand(i8, (1, 33100, 1, 1)), None)
    # uint8 weights, half-precision scales (runtime and folded)
    h = (np.float16(0.047), scale(6, dtype=np.float16), np.float16(0.31))
    _qconv(c, x, qrand(u8, (6, 4, 3, 3)), b, scales=h, consts=(3, 5))
    _qconv(c, x, qrand(u8, (6, 4, 3, 3)), b, scales=h, consts=(1, 3, 4, 5, 6))
    # a larger one: threads, a row longer than one chunk, int32 accumulation of 576 taps
    _qconv(c, qrand(u8, (1, 64, 6, 300)), qrand(i8, (16, 64, 3, 3)), None, {"pads": [1, 1, 1, 1]},
           per_channel=True)
    _qconv(c, qrand(u8, (1, 16, 6, 300)), qrand(i8, (16, 1, 3, 3)), None, {"pads": [1, 1, 1, 1], "group": 16},
           per_channel=True)  # depthwise: direct loops, rows over one chunk
    run_cases(c, tmp_path, oracle_tolerance=REQUANTIZED, target=target)


# ---- Det, losses --------------------------------------------------------------------------------------
def test_det(tmp_path):
    c = Cases()
    c.add("Det", [rng.standard_normal((3, 3)).astype(np.float32)])
    c.add("Det", [rng.standard_normal((2, 3, 5, 5)).astype(np.float32)])
    c.add("Det", [rng.standard_normal((4, 6, 6))])  # no float64 Det in ONNX Runtime
    c.add("Det", [np.array([[1, 2], [2, 4]], np.float32)])  # singular
    c.add("Det", [np.array([[0, 2, 1], [3, 0, 1], [1, 1, 0]], np.float32)])  # pivoting
    c.add("Det", [rng.standard_normal((2, 1, 1)).astype(np.float32)])
    c.add("Det", [rng.standard_normal((2, 4, 4)).astype(np.float16)])
    run_cases(c, tmp_path, tolerance=ACCUMULATED)


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
def test_losses(op, tmp_path):
    c = Cases()
    sce = op == "SoftmaxCrossEntropyLoss"
    n_out = 2 if sce else 1
    for shape in ((5, 4), (3, 5, 6), (2, 3, 4, 5), (2, 70, 3)):  # (2, 70, 3): more classes than a block
        N, C, rest = shape[0], shape[1], shape[2:]
        x = rng.standard_normal(shape).astype(np.float32)
        t = rng.integers(0, C, (N,) + rest).astype(np.int64)
        w = rng.uniform(0.2, 2, (C,)).astype(np.float32)
        for red in ("none", "sum", "mean"):
            c.add(op, [x, t], {"reduction": red}, n_out=n_out)
            c.add(op, [x, t, w], {"reduction": red}, n_out=n_out)
            ti = t.copy()
            ti.flat[::3] = -1
            c.add(op, [x, ti.astype(np.int32), w], {"reduction": red, "ignore_index": -1}, n_out=n_out)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    t = rng.integers(0, 5, (3, 2)).astype(np.int64)
    t[0, 0] = 1
    c.add(op, [x, t], {"ignore_index": 1}, n_out=1)  # mean over the non-ignored entries, one output
    c.add(op, [x.astype(np.float64), t], {"reduction": "sum"}, n_out=n_out)
    c.add(op, [x.astype(np.float16), t, rng.uniform(0.5, 1, 5).astype(np.float16)], n_out=n_out)
    c.add(op, [np.full((2, 3), -np.inf, np.float32), np.array([0, 2])], {"reduction": "none"}, n_out=n_out)
    run_cases(c, tmp_path, tolerance=KERNEL)  # sums over classes and batch


# ---- RoiAlign, MaxRoiPool -------------------------------------------------------------------------------
def test_roi_align_and_max_roi_pool(tmp_path):
    c = Cases()
    x = rng.standard_normal((2, 5, 10, 12)).astype(np.float32)
    rois = np.array([[0, 0, 9, 9], [1.3, 2.2, 7.7, 8.1], [-3, -2, 4, 5], [8, 6, 20, 15], [5, 5, 5, 5],
                     [2.5, 0.5, 11.5, 3.0]], np.float32)
    bidx = np.array([0, 1, 1, 0, 1, 0], np.int64)
    for mode in ("avg", "max"):
        for ctm in ("half_pixel", "output_half_pixel"):
            for ratio, sc in ((0, 1.0), (2, 0.5), (3, 1.25)):
                c.add("RoiAlign", [x, rois, bidx], {"mode": mode, "coordinate_transformation_mode": ctm,
                                                    "sampling_ratio": ratio, "spatial_scale": sc,
                                                    "output_height": 3, "output_width": 4})
    c.add("RoiAlign", [x.astype(np.float64), rois.astype(np.float64), bidx], {"output_height": 2, "output_width": 2})
    c.add("RoiAlign", [x.astype(np.float16), rois.astype(np.float16), bidx], {"output_height": 2})
    big = rng.standard_normal((1, 130, 6, 6)).astype(np.float32)  # channels over one block
    c.add("RoiAlign", [big, rois[:3], np.zeros(3, np.int64)], {"output_height": 2, "output_width": 2})
    prois = np.array([[0, 0, 0, 9, 9], [1, 1.4, 2.6, 7.5, 8.5], [1, -3, -2, 4, 5], [0, 8, 6, 20, 15],
                      [1, 5, 5, 5, 5], [0, 11, 9, 11, 9]], np.float32)
    c.add("MaxRoiPool", [x, prois], {"pooled_shape": [2, 3]})
    c.add("MaxRoiPool", [x, prois], {"pooled_shape": [4, 4], "spatial_scale": 0.5})
    c.add("MaxRoiPool", [x.astype(np.float16), prois.astype(np.float16)], {"pooled_shape": [3, 2]})
    run_cases(c, tmp_path, tolerance=KERNEL)  # bilinear weights: ONNX Runtime computes them in float32


# ---- Dropout ----------------------------------------------------------------------------------
def test_dropout(tmp_path):
    c = Cases()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    c.add("Dropout", [x], n_out=2)
    c.add("Dropout", [x, np.float32(0.3)], n_out=1, consts=(1,))
    c.add("Dropout", [x, np.float32(0.3), np.array(False)], n_out=2, consts=(1, 2))
    run_cases(c, tmp_path)


def test_bad_roi_batch_index_gives_nan(tmp_path):
    """The reference raises on an out-of-range batch index; the compiled code writes NaN."""
    c = Cases()
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    c.add("RoiAlign", [x, np.array([[0, 0, 3, 3]], np.float32), np.array([3], np.int64)])
    model = c.model()
    mod = pdc.compile(model, target="x86", out_dir=str(tmp_path / "b"), opt_level=0)
    assert np.isnan(list(mod.run(c.feeds).values())[0]).all()
