"""x86 C kernels of the extra families (BitCast, CumProd, SwiGLU, RotaryEmbedding, TensorScatter;
windows, MelWeightMatrix, DFT, STFT; GridSample, AffineGrid, Col2Im, DeformConv) against the
reference interpreter and against an oracle that is not pdc's (tests/oracles.py: ONNX Runtime, or
ONNX's reference evaluator for the ops and dtypes ONNX Runtime lacks). Each test batches many
independent nodes into one model, so one compile covers many attribute combinations. Data movement
must match exactly, arithmetic element by element within a tolerance of tests/tolerances.py."""
import itertools

import ml_dtypes
import numpy as np
import pytest
from onnx import helper, numpy_helper

import pdc
from oracles import check_against_oracles
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import run_graph
from pdc.ir.errors import PdcError
from tolerances import ACCUMULATED, REDUCED

BF16 = np.dtype(ml_dtypes.bfloat16)
rng = np.random.default_rng(5)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def i64(*v):
    return np.array(v, np.int64)


class Net:
    """Independent nodes over named graph inputs; array operands become initializers."""

    def __init__(self):
        self.inputs: dict = {}
        self.consts: dict = {}
        self.nodes: list = []
        self.outputs: list = []

    def feed(self, value) -> str:
        name = f"x{len(self.inputs)}"
        self.inputs[name] = np.asarray(value)
        return name

    def const(self, value) -> str:
        name = f"c{len(self.consts)}"
        self.consts[name] = np.asarray(value)
        return name

    def add(self, op, ins, **attrs) -> str:
        """ins: graph-input names, '' for an omitted optional input, or arrays (made constants)."""
        names = [a if isinstance(a, str) else self.const(a) for a in ins]
        out = f"y{len(self.outputs)}"
        self.nodes.append(helper.make_node(op, names, [out], **attrs))
        self.outputs.append(out)
        return out

    def model(self, opset):
        vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in self.inputs.items()]
        inits = [numpy_helper.from_array(a, n) for n, a in self.consts.items()]
        outs = [helper.make_tensor_value_info(o, 0, None) for o in self.outputs]
        g = helper.make_graph(self.nodes, "t", vis, outs, inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)

    def check(self, tmp_path, opset, tolerance=REDUCED, **oracle):
        """Compiles the model and compares every output with the reference interpreter and the
        independent oracles (`oracle`: check_against_oracles's routing of outputs)."""
        model = self.model(opset)
        g = import_onnx(model)
        want = run_graph(g, self.inputs)
        mod = pdc.compile(model, out_dir=str(tmp_path / "b"), opt_level=0, c_opt="-O1")
        got = mod.run(self.inputs)
        for v in g.outputs:
            a, b = got[v.name], np.asarray(want[v.name])
            assert a.dtype == b.dtype and a.shape == b.shape, (v.name, a.dtype, a.shape, b.dtype, b.shape)
            tolerance.check(a, b, f"{v.name} (vs the reference interpreter)")
        check_against_oracles(got, model, self.inputs, tolerance, [v.name for v in g.outputs], **oracle)
        return mod


# ---- BitCast / CumProd / SwiGLU / RotaryEmbedding / TensorScatter ------------------------------------------
def test_tensor_ops(tmp_path):
    n = Net()
    for src, to in ((np.float32, 6), (np.int64, 11), (np.uint16, 10), (np.bool_, 2), (BF16, 5)):
        x = (rng.random((3, 4)) < 0.5) if src == np.bool_ else randn(3, 4).astype(src) if src != np.int64 else \
            rng.integers(-2 ** 40, 2 ** 40, (3, 4))
        n.add("BitCast", [n.feed(np.asarray(x, src))], to=to)
    n.add("BitCast", [n.feed(np.array(2.5, np.float32))], to=6)
    xf = rng.uniform(0.5, 1.5, (3, 4, 5)).astype(np.float32)
    for axis, ex, rev in itertools.product([0, 1, -1], [0, 1], [0, 1]):
        n.add("CumProd", [n.feed(xf), i64(axis).reshape(())], exclusive=ex, reverse=rev)
    n.add("CumProd", [n.feed(xf), n.feed(np.array(1, np.int32))], reverse=1)  # axis known at run time only
    for dt in (np.float16, np.float64, np.int32, np.uint64):
        n.add("CumProd", [n.feed(rng.integers(1, 9, (4, 9)).astype(dt)), i64(1).reshape(())], exclusive=1)
    for dt, alpha in ((np.float32, 1.0), (np.float32, 0.3), (np.float16, 1.0), (BF16, 1.5), (np.float64, 2.0)):
        a, b = (randn(5, 7) * 5).astype(dt), randn(5, 7).astype(dt)
        n.add("SwiGLU", [n.feed(a), n.feed(b)], alpha=alpha)
    for shape, inter, rot, pos in itertools.product([(2, 3, 5, 8), (2, 5, 24)], [0, 1], [0, 4], [True, False]):
        half = (rot or 8) // 2
        seq = shape[2] if len(shape) == 4 else shape[1]
        ang = rng.uniform(0, 6, (20, half) if pos else (2, seq, half))
        ins = [n.feed(randn(*shape)), n.feed(np.cos(ang).astype(np.float32)), n.feed(np.sin(ang).astype(np.float32))]
        if pos:
            ins.append(n.feed(rng.integers(0, 20, (2, seq))))
        attrs = {"interleaved": inter, "rotary_embedding_dim": rot}
        if len(shape) == 3:
            attrs["num_heads"] = 3
        n.add("RotaryEmbedding", ins, **attrs)
    ang = rng.uniform(0, 6, (2, 4, 3))
    n.add("RotaryEmbedding", [n.feed(randn(2, 2, 4, 6).astype(np.float16)), n.feed(np.cos(ang).astype(np.float16)),
                              n.feed(np.sin(ang).astype(np.float16))])
    for mode, axis, cache, upd in [("linear", -2, (2, 3, 6, 4), (2, 3, 2, 4)), ("circular", 1, (2, 5, 3), (2, 3, 3)),
                                   ("circular", 2, (3, 2, 7), (3, 2, 4)), ("linear", -3, (2, 6, 2, 2), (2, 1, 2, 2))]:
        hi = cache[axis] - upd[axis] + 1 if mode == "linear" else 3 * cache[axis]
        wi = rng.integers(-cache[axis] if mode == "circular" else 0, hi, (cache[0],))
        n.add("TensorScatter", [n.feed(randn(*cache)), n.feed(randn(*upd)), n.feed(wi)], mode=mode, axis=axis)
    n.add("TensorScatter", [n.feed(rng.integers(0, 9, (2, 4, 3)).astype(np.int8)),
                            n.feed(rng.integers(0, 9, (2, 2, 3)).astype(np.int8))])
    n.check(tmp_path, opset=28)


def test_tensor_ops_out_of_range_stay_memory_safe(tmp_path):
    """Indices the reference rejects: the kernels skip the write (TensorScatter) or copy the row
    unrotated (RotaryEmbedding) instead of reading or writing out of bounds."""
    n = Net()
    cache, upd = randn(2, 4, 3), randn(2, 2, 3)
    n.add("TensorScatter", [n.feed(cache), n.feed(upd), n.feed(i64(3, -1))])
    x = randn(1, 1, 2, 4)
    ang = rng.uniform(0, 6, (3, 2))
    n.add("RotaryEmbedding", [n.feed(x), n.feed(np.cos(ang).astype(np.float32)), n.feed(np.sin(ang).astype(np.float32)),
                              n.feed(i64(1, 7).reshape(1, 2))])
    mod = pdc.compile(n.model(24), out_dir=str(tmp_path / "b"), opt_level=0, c_opt="-O1")
    sc, rope = mod.run(n.inputs).values()
    want = cache.copy()
    want[0, 3] = upd[0, 0]  # batch 0 writes at 3 (then 4: skipped); batch 1 at -1 (skipped), then 0
    want[1, 0] = upd[1, 1]
    np.testing.assert_array_equal(sc, want)
    np.testing.assert_array_equal(rope[0, 0, 1], x[0, 0, 1])


# ---- windows / MelWeightMatrix / DFT / STFT ----------------------------------------------------------------
def test_signal_ops(tmp_path):
    """Windows and transforms are checked against ONNX's reference (float64 NumPy): ONNX Runtime computes
    windows and transforms in float32, and its inverse one-sided DFT with a dft_length is wrong."""
    n, float64_oracle = Net(), []
    for op, periodic, size, dt in [("HannWindow", 1, 5000, 1), ("HammingWindow", 0, 4500, 11),
                                   ("BlackmanWindow", 1, 4100, 10)]:
        # past the import-time folding size
        float64_oracle.append(n.add(op, [np.array(size)], periodic=periodic, output_datatype=dt))
    for bins, length, rate, lo, hi, dt in [(8, 16, 8192, 0.0, 4096.0, 1), (10, 64, 16000, 20.0, 8000.0, 11),
                                           (20, 512, 22050, 0.0, 11025.0, 1), (4, 33, 1000, 100.0, 400.0, 6)]:
        n.add("MelWeightMatrix", [np.array(bins), np.array(length), np.array(rate), n.feed(np.array(lo, np.float32)),
                                  n.feed(np.array(hi, np.float32))], output_datatype=dt)
    for (inv, one, comp), axis, length in itertools.product(
            [(0, 0, 1), (0, 0, 2), (1, 0, 2), (0, 1, 1), (1, 1, 2)], [1, -4], [None, 5, 8, 12]):
        x = randn(3, 6, 4, comp)
        float64_oracle.append(n.add("DFT", [n.feed(x), i64(length).reshape(()) if length else "",
                                            i64(axis).reshape(())], inverse=inv, onesided=one))
    float64_oracle += [
        n.add("DFT", [n.feed(randn(2, 7, 5, 2)), "", n.feed(np.array(2, np.int64))]),  # run-time axis
        n.add("DFT", [n.feed(randn(2, 64, 2)), "", i64(-2).reshape(())], inverse=1),  # radix-2 path
        n.add("DFT", [n.feed(randn(2, 33, 1).astype(np.float16)), i64(64).reshape(()), i64(1).reshape(())],
              onesided=1),
        n.add("DFT", [n.feed(randn(2, 16, 2).astype(np.float64))])]
    for one, comp, window, frame_len, step in [(1, 1, True, None, 4), (0, 1, False, 12, 5), (0, 2, True, 10, 3),
                                               (1, 2, False, None, 7), (1, 1, True, 32, 8)]:
        fl = frame_len or (10 if window else 40)
        ins = [n.feed(randn(2, 40, comp)), i64(step).reshape(()),
               n.feed(np.hanning(fl).astype(np.float32)) if window else ""]
        if frame_len:
            ins.append(i64(frame_len).reshape(()))
        float64_oracle.append(n.add("STFT", ins, onesided=one))
    n.check(tmp_path, opset=20, tolerance=ACCUMULATED, reference=float64_oracle)  # transforms of up to 4500 points


def test_dft_length_limits(tmp_path):
    n = Net()
    n.add("DFT", [n.feed(randn(1, 9000, 1)), "", i64(1).reshape(())])
    with pytest.raises(PdcError, match="length 9000 is not supported"):
        pdc.compile(n.model(20), out_dir=str(tmp_path / "b"), opt_level=0)


# ---- GridSample / AffineGrid / Col2Im / DeformConv -----------------------------------------------------------
GRID_POINTS = np.array([-1.5, -1.25, -1, -0.75, -0.5, -0.3, -0.25, 0, 0.2, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 3.1],
                       np.float32)


def _grid(*shape, dtype=np.float32):
    g = rng.uniform(-1.6, 1.6, shape).astype(np.float32)
    return np.where(rng.random(shape) < 0.5, rng.choice(GRID_POINTS, shape), g).astype(dtype)


def test_grid_sample(tmp_path):
    n = Net()
    x4, g4 = n.feed(randn(2, 3, 5, 4)), n.feed(_grid(2, 6, 7, 2))
    x5, g5 = n.feed(randn(1, 2, 3, 4, 5)), n.feed(_grid(1, 3, 2, 4, 3))
    modes = itertools.product(["linear", "nearest", "cubic"], ["zeros", "border", "reflection"], [0, 1])
    # no oracle: ONNX Runtime has no volumetric GridSample, and ONNX's reference clamps cubic taps in
    # border mode unlike the spec's torch.grid_sample (and ONNX Runtime, in 2-D); integer inputs, whose
    # interpolated values the spec does not say how to round (ONNX Runtime lacks them, ONNX's reference
    # returns zeros); grid points 1e12 far out, which only check memory safety (float32 cannot place
    # their reflections)
    unchecked = []
    for mode, pad, align in modes:
        n.add("GridSample", [x4, g4], mode=mode, padding_mode=pad, align_corners=align)
        y5 = n.add("GridSample", [x5, g5], mode=mode, padding_mode=pad, align_corners=align)
        if (mode, pad) == ("cubic", "border"):
            unchecked.append(y5)
    n.add("GridSample", [n.feed(randn(1, 2, 6)), n.feed(_grid(1, 9, 1))], mode="cubic", padding_mode="reflection")
    n.add("GridSample", [n.feed(randn(1, 2, 4, 5).astype(np.float16)), n.feed(_grid(1, 3, 3, 2, dtype=np.float16))])
    n.add("GridSample", [n.feed(randn(1, 2, 4, 5, dtype=np.float64)), n.feed(_grid(1, 3, 3, 2, dtype=np.float64))],
          mode="cubic", padding_mode="border")
    unchecked.append(n.add("GridSample", [n.feed(rng.integers(-99, 99, (1, 2, 4, 5)).astype(np.int32)),
                                          n.feed(_grid(1, 3, 3, 2))], mode="cubic"))
    unchecked.append(n.add("GridSample", [n.feed(rng.integers(0, 255, (1, 2, 4, 5)).astype(np.uint8)),
                                          n.feed(_grid(1, 3, 3, 2))]))
    gn = _grid(1, 2, 3, 2)
    gn[0, 0, 0, 0], gn[0, 1, 1, 1] = np.nan, np.inf
    # a NaN or infinite grid point samples nowhere (pdc: NaN); ONNX Runtime returns a value and ONNX's
    # reference fails: no oracle
    unchecked.append(n.add("GridSample", [n.feed(randn(1, 2, 4, 5)), n.feed(gn)]))
    gb = _grid(1, 2, 3, 2) * 1e12  # far outside: coordinates clamp, taps stay in bounds
    unchecked.append(n.add("GridSample", [n.feed(randn(1, 2, 4, 5)), n.feed(gb)], padding_mode="reflection",
                           mode="cubic"))
    n.check(tmp_path, opset=22, unchecked=unchecked)


def test_sampling_ops(tmp_path):
    n, reference = Net(), []
    for size, align in [((2, 3, 5, 7), 0), ((2, 3, 5, 7), 1), ((2, 1, 3, 4, 5), 0), ((2, 1, 3, 4, 5), 1),
                        ((1, 2, 1, 4), 0)]:
        r = len(size) - 2
        n.add("AffineGrid", [n.feed(randn(size[0], r, r + 1)), i64(*size)], align_corners=align)
    for img, blk, attrs, dt in [([5, 6], [2, 3], {}, np.float32),
                                ([7, 6], [3, 2], {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]},
                                 np.float32),
                                ([3, 4, 5], [2, 2, 2], {"strides": [1, 2, 1]}, np.int32),
                                ([6], [3], {"pads": [2, 1], "dilations": [2]}, np.float16)]:
        nsp = len(img)
        st, dl = attrs.get("strides", [1] * nsp), attrs.get("dilations", [1] * nsp)
        pd = attrs.get("pads", [0] * 2 * nsp)
        blocks = int(np.prod([(img[d] + pd[d] + pd[d + nsp] - dl[d] * (blk[d] - 1) - 1) // st[d] + 1
                              for d in range(nsp)]))
        x = (randn(2, 3 * int(np.prod(blk)), blocks) * 10).astype(dt)
        y = n.add("Col2Im", [n.feed(x), i64(*img), i64(*blk)], **attrs)
        if nsp == 1:  # ONNX Runtime's 1-D Col2Im misplaces blocks: ONNX's reference
            reference.append(y)
    numpy = {}  # 1-D and 3-D DeformConv: ONNX Runtime and ONNX's reference take 2-D only
    for xs, ws, attrs, mask, bias in [
            ((1, 2, 5, 6), (3, 2, 3, 3), {}, False, False),
            ((2, 4, 6, 7), (4, 4, 2, 3), {"strides": [2, 1], "pads": [1, 2, 0, 1], "dilations": [1, 2],
                                          "offset_group": 2}, True, True),
            ((1, 4, 5, 5), (6, 2, 3, 3), {"group": 2, "offset_group": 4}, True, False),
            ((1, 2, 7), (3, 2, 3), {"pads": [1, 2]}, True, True),
            ((1, 2, 4, 3, 5), (2, 1, 2, 2, 2), {"group": 2, "strides": [1, 1, 2]}, False, True)]:
        nsp = len(xs) - 2
        st, dl = attrs.get("strides", [1] * nsp), attrs.get("dilations", [1] * nsp)
        pd = attrs.get("pads", [0] * 2 * nsp)
        out = [(xs[2 + d] + pd[d] + pd[d + nsp] - dl[d] * (ws[2 + d] - 1) - 1) // st[d] + 1 for d in range(nsp)]
        og, k = attrs.get("offset_group", 1), int(np.prod(ws[2:]))
        ins = [n.feed(randn(*xs)), n.feed(randn(*ws)), n.feed(randn(xs[0], og * k * nsp, *out) * 2)]
        ins.append(n.feed(randn(ws[0])) if bias else "")
        if mask:
            ins.append(n.feed(rng.uniform(0, 1, (xs[0], og * k, *out)).astype(np.float32)))
        y = n.add("DeformConv", ins if ins[-1] else ins[:-1], **attrs)
        if nsp != 2:
            numpy[y] = deform_conv_f64(*[n.inputs[i] if i else None for i in ins], **attrs).astype(np.float32)
    n.check(tmp_path, opset=22, tolerance=ACCUMULATED, reference=reference, numpy=numpy)  # DeformConv: long sums


def _sample(planes, pos):
    """Values of planes (C, *spatial) at the point pos by N-linear interpolation, zero outside."""
    out = np.zeros(planes.shape[0])
    base = np.floor(pos).astype(int)
    for corner in np.ndindex(*(2,) * len(pos)):
        idx = base + corner
        if all(0 <= i < s for i, s in zip(idx, planes.shape[1:])):
            weight = np.prod([f if c else 1 - f for c, f in zip(corner, pos - base)])
            out += weight * planes[(slice(None),) + tuple(idx)]
    return out


def deform_conv_f64(x, w, offset, bias=None, mask=None, strides=None, pads=None, dilations=None, group=1,
                    offset_group=1):
    """DeformConv of any rank in float64, as the spec states it: each tap samples x at its place plus its
    offset (one per spatial axis, per tap, per offset group), scaled by the mask."""
    nd = w.ndim - 2
    strides, dilations, pads = strides or [1] * nd, dilations or [1] * nd, pads or [0] * 2 * nd
    n, c, m = x.shape[0], x.shape[1], w.shape[0]
    taps = list(np.ndindex(*w.shape[2:]))
    per_group, per_offset_group, out_per_group = c // group, c // offset_group, m // group
    y = np.zeros((n, m) + offset.shape[2:])
    for b, o in itertools.product(range(n), np.ndindex(*offset.shape[2:])):
        for (t, tap), g in itertools.product(enumerate(taps), range(offset_group)):
            k = g * len(taps) + t
            pos = np.array([o[d] * strides[d] - pads[d] + tap[d] * dilations[d] + offset[(b, k * nd + d) + o]
                            for d in range(nd)], np.float64)
            values = _sample(x[b, g * per_offset_group:(g + 1) * per_offset_group].astype(np.float64), pos)
            values *= 1.0 if mask is None else mask[(b, k) + o]
            for ci, v in enumerate(values):
                channel = g * per_offset_group + ci
                grp = channel // per_group
                outs = slice(grp * out_per_group, (grp + 1) * out_per_group)
                y[(b, outs) + o] += w[(outs, channel - grp * per_group) + tap] * v
    if bias is not None:
        y += bias.reshape((1, m) + (1,) * nd)
    return y


def test_stft_run_time_step(tmp_path):
    """frame_step fed at run time (the declared output fixes the frame count): the right frames, and
    zeros for frames a too-large step would read past the signal."""
    sig = randn(1, 64, 1)
    node = helper.make_node("STFT", ["s", "step", "w"], ["y"])
    vis = [helper.make_tensor_value_info("s", 1, sig.shape), helper.make_tensor_value_info("step", 7, ())]
    out = helper.make_tensor_value_info("y", 1, (1, 7, 9, 2))
    w = np.hanning(16).astype(np.float32)
    g = helper.make_graph([node], "t", vis, [out], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    mod = pdc.compile(model, out_dir=str(tmp_path / "b"), opt_level=0, c_opt="-O1")
    frames = np.stack([sig[0, f * 8:f * 8 + 16, 0] * w for f in range(7)])
    want = np.fft.rfft(frames.astype(np.float64), axis=-1)
    (y,) = mod.run({"s": sig, "step": np.array(8, np.int64)}).values()
    ACCUMULATED.check(y[0], np.stack([want.real, want.imag], -1).astype(np.float32))
    (y,) = mod.run({"s": sig, "step": np.array(9, np.int64)}).values()
    assert np.all(y[0, 6] == 0) and np.any(y[0, 5] != 0)  # 6 * 9 + 16 > 64


# ---- CausalConvWithState / LinearAttention -------------------------------------------------------------------
def test_recurrent_ops(tmp_path):
    n = Net()
    for (k, length), (bias, past, act), dt in itertools.product(
            [(4, 7), (1, 5), (3, 1)], [(False, False, "none"), (True, True, "silu"), (True, False, "swish")],
            [np.float32, np.float16]):
        ins = [n.feed(randn(2, 3, length).astype(dt)), n.feed(randn(3, 1, k).astype(dt)),
               n.feed(randn(3).astype(dt)) if bias else ""]
        if past:
            ins.append(n.feed(randn(2, 3, k - 1).astype(dt)))
        n.nodes.append(helper.make_node("CausalConvWithState", ins if ins[-1] else ins[:-1],
                                        [f"y{len(n.outputs)}", f"y{len(n.outputs) + 1}"], activation=act))
        n.outputs += [f"y{len(n.outputs)}", f"y{len(n.outputs) + 1}"]
    for rule, (hq, hkv, t, past, per_key, beta_one, dt, sdt) in itertools.product(
            ["linear", "gated", "delta", "gated_delta"],
            [(4, 2, 3, True, False, False, np.float32, np.float32), (3, 1, 1, False, True, True, np.float32, None),
             (2, 2, 4, True, True, False, np.float16, np.float16), (4, 2, 2, True, False, True, BF16, np.float32)]):
        dk, dv = 3, 5
        ins = [n.feed(randn(2, t, hq * dk).astype(dt)), n.feed((randn(2, t, hkv * dk) * 0.5).astype(dt)),
               n.feed(randn(2, t, hkv * dv).astype(dt)), n.feed(randn(2, hkv, dk, dv).astype(sdt)) if past else ""]
        if rule in ("gated", "gated_delta"):
            ins.append(n.feed(rng.uniform(-1, 0, (2, t, hkv * dk if per_key else hkv)).astype(dt)))
        elif rule == "delta":
            ins.append("")
        if rule in ("delta", "gated_delta"):
            ins.append(n.feed(rng.uniform(0, 1, (2, t, 1 if beta_one else hkv)).astype(dt)))
        while ins[-1] == "":
            ins.pop()
        outs = [f"y{len(n.outputs)}", f"y{len(n.outputs) + 1}"]
        n.nodes.append(helper.make_node("LinearAttention", ins, outs, update_rule=rule, q_num_heads=hq,
                                        kv_num_heads=hkv))
        n.outputs += outs
    n.check(tmp_path, opset=27, tolerance=ACCUMULATED)  # recurrences over time
