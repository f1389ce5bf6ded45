"""The opset 17-28 ops of the extra families on the reference interpreter: BitCast, CumProd, SwiGLU,
RotaryEmbedding, TensorScatter; the windows, MelWeightMatrix, DFT, STFT; GridSample, AffineGrid,
Col2Im, DeformConv; NonMaxSuppression. Oracles: ONNX Runtime where it implements the op and
opset, else NumPy formulas written here (or ONNX's reference evaluator where noted)."""
import itertools

import ml_dtypes
import numpy as np
import pytest

from nn_helpers import check, import_only, model_of, randn, rng, run_ort, run_pdc
from pdc.ir import PdcError, UnsupportedError
from tolerances import ACCUMULATED, KERNEL, ROUNDED

BF16 = np.dtype(ml_dtypes.bfloat16)


def i64(*v):
    return np.array(v, np.int64)


def scalar(v, dt=np.int64):
    return np.array(v, dt)


# ---- BitCast ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.int32, np.float32), (np.float64, np.int64),
                                     (np.uint16, np.float16), (BF16, np.int16), (np.int8, np.uint8),
                                     (np.bool_, np.uint8), (np.uint64, np.float64)])
def test_bit_cast(src, dst):
    from onnx import helper
    x = rng.integers(0, 2, (2, 3)).astype(src) if src == np.bool_ else \
        rng.integers(-100, 100, (2, 3)).astype(np.float32).astype(src) if src != np.uint64 else \
        rng.integers(0, 2 ** 62, (2, 3), dtype=np.uint64)
    (y,) = run_pdc(*model_of("BitCast", [("x", x)], {"to": helper.np_dtype_to_tensor_dtype(np.dtype(dst))},
                             opset=26))
    assert y.dtype == np.dtype(dst) and y.shape == x.shape
    np.testing.assert_array_equal(y.view(np.uint8), x.view(np.uint8))


def test_bit_cast_scalar_and_errors():
    (y,) = run_pdc(*model_of("BitCast", [("x", np.array(1.5, np.float32))], {"to": 6}, opset=26))
    assert y.shape == () and y == np.array(1.5, np.float32).view(np.int32)
    check("BitCast", [("x", randn(3, 4))], {"to": 6}, opset=26)
    with pytest.raises(PdcError, match="widths must match"):
        import_only("BitCast", [("x", randn(3))], {"to": 7}, opset=26)


# ---- CumProd ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("axis", [0, 1, -1, -3])
def test_cum_prod(exclusive, reverse, axis):
    x = rng.uniform(0.5, 1.5, (3, 4, 5)).astype(np.float32)
    check("CumProd", [("x", x), ("axis", scalar(axis))], {"exclusive": exclusive, "reverse": reverse}, opset=26)


@pytest.mark.parametrize("dt", [np.float64, np.int32, np.int64, np.uint32, np.uint64])
def test_cum_prod_dtypes(dt):
    x = rng.integers(1, 4, (4, 6)).astype(dt)
    check("CumProd", [("x", x), ("axis", scalar(1, np.int32))], {"exclusive": 1}, opset=26)


def test_cum_prod_half_and_wrap():
    x = rng.uniform(0.5, 1.5, (2, 7)).astype(np.float16)
    (y,) = run_pdc(*model_of("CumProd", [("x", x), ("axis", scalar(1))], opset=26))
    np.testing.assert_array_equal(y, np.cumprod(x, axis=1, dtype=np.float16))
    big = np.full((40,), 7, np.int32)  # wraps like NumPy's int32 product
    (y,) = run_pdc(*model_of("CumProd", [("x", big), ("axis", scalar(0))], opset=26))
    np.testing.assert_array_equal(y, np.cumprod(big, dtype=np.int32))


def test_cum_prod_errors():
    with pytest.raises(PdcError, match="out of range"):
        import_only("CumProd", [("x", randn(2, 3)), ("axis", scalar(2))], opset=26, consts=("axis",))
    with pytest.raises(PdcError, match="scalar"):
        import_only("CumProd", [("x", randn(2, 3)), ("axis", i64(0, 1))], opset=26)
    with pytest.raises(PdcError, match="CumProd takes"):
        import_only("CumProd", [("x", np.ones(3, np.int8)), ("axis", scalar(0))], opset=26)


# ---- SwiGLU ----------------------------------------------------------------------------------------
def _swiglu(a, b, alpha):
    """In float64, with alpha as the model holds it (a float32 attribute)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return a / (1 + np.exp(-float(np.float32(alpha)) * a)) * b


@pytest.mark.parametrize("dt,alpha", [(np.float32, 1.0), (np.float32, 0.5), (np.float64, 1.702), (np.float16, 1.0),
                                      (BF16, 2.0)])
def test_swiglu(dt, alpha):
    a, b = (randn(3, 5) * 4).astype(dt), randn(3, 5).astype(dt)
    a[0, :3] = [60, -60, 0]
    (y,) = run_pdc(*model_of("SwiGLU", [("a", a), ("b", b)], {"alpha": alpha}, opset=28))
    assert y.dtype == np.dtype(dt)
    ROUNDED.check(y, _swiglu(a, b, alpha))  # against float64: the dtype's own rounding


def test_swiglu_errors():
    with pytest.raises(PdcError, match="same shape"):
        import_only("SwiGLU", [("a", randn(2, 4)), ("b", randn(1, 4))], opset=28)


# ---- RotaryEmbedding -------------------------------------------------------------------------------
def _rope_inputs(shape, half, with_pos, dt=np.float32, max_pos=20):
    x = randn(*shape).astype(dt)
    batch = shape[0]
    seq = shape[2] if len(shape) == 4 else shape[1]
    if with_pos:
        pos = rng.integers(0, max_pos, (batch, seq)).astype(np.int64)
        ang = rng.uniform(0, 6, (max_pos, half))
        return [("x", x), ("cos", np.cos(ang).astype(dt)), ("sin", np.sin(ang).astype(dt)), ("pos", pos)]
    ang = rng.uniform(0, 6, (batch, seq, half))
    return [("x", x), ("cos", np.cos(ang).astype(dt)), ("sin", np.sin(ang).astype(dt))]


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rot", [0, 4])
@pytest.mark.parametrize("with_pos", [True, False])
def test_rotary_embedding(interleaved, rot, with_pos):
    half = (rot or 8) // 2
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rot}
    check("RotaryEmbedding", _rope_inputs((2, 3, 5, 8), half, with_pos), attrs, opset=23)
    check("RotaryEmbedding", _rope_inputs((2, 5, 24), half, with_pos), dict(attrs, num_heads=3), opset=23)


def test_rotary_embedding_half():
    check("RotaryEmbedding", _rope_inputs((1, 2, 4, 6), 3, True, np.float16), {"interleaved": 1}, opset=23)


def test_rotary_embedding_errors():
    with pytest.raises(PdcError, match="num_heads must be given"):
        import_only("RotaryEmbedding", _rope_inputs((2, 5, 24), 4, True), opset=23)
    with pytest.raises(PdcError, match="must be even"):
        import_only("RotaryEmbedding", _rope_inputs((2, 3, 5, 8), 2, True), {"rotary_embedding_dim": 5}, opset=23)
    with pytest.raises(PdcError, match="does not match the expected"):
        import_only("RotaryEmbedding", _rope_inputs((2, 3, 5, 8), 3, True), opset=23)
    bad = _rope_inputs((1, 1, 2, 4), 2, True, max_pos=3)
    bad[3] = ("pos", i64(0, 3).reshape(1, 2))
    with pytest.raises(PdcError, match="position_ids must be in"):
        run_pdc(*model_of("RotaryEmbedding", bad, opset=23))


# ---- TensorScatter ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("axis,cache,update", [(-2, (2, 3, 6, 4), (2, 3, 2, 4)), (1, (2, 5, 3), (2, 3, 3)),
                                               (2, (3, 2, 7), (3, 2, 4)), (-3, (2, 6, 2, 2), (2, 1, 2, 2))])
def test_tensor_scatter(mode, axis, cache, update):
    max_len, seq = cache[axis], update[axis]
    hi = max_len - seq + 1 if mode == "linear" else 2 * max_len
    wi = rng.integers(0, hi, (cache[0],)).astype(np.int64)
    check("TensorScatter", [("c", randn(*cache)), ("u", randn(*update)), ("w", wi)], {"mode": mode, "axis": axis},
          opset=24)


def test_tensor_scatter_default_indices_and_types():
    check("TensorScatter", [("c", randn(2, 4, 3)), ("u", randn(2, 2, 3))], opset=24)
    c = rng.integers(0, 9, (2, 5, 2)).astype(np.int8)
    u = rng.integers(0, 9, (2, 3, 2)).astype(np.int8)
    (y,) = run_pdc(*model_of("TensorScatter", [("c", c), ("u", u), ("w", i64(2, 4))], {"mode": "circular"}, opset=24))
    want = c.copy()
    for b, w in enumerate((2, 4)):
        for s in range(3):
            want[b, (w + s) % 5] = u[b, s]
    np.testing.assert_array_equal(y, want)


def test_tensor_scatter_errors():
    with pytest.raises(PdcError, match="batch axis"):
        import_only("TensorScatter", [("c", randn(2, 4)), ("u", randn(2, 4))], {"axis": 0}, opset=24)
    with pytest.raises(PdcError, match="longer than past_cache"):
        import_only("TensorScatter", [("c", randn(2, 2, 3)), ("u", randn(2, 3, 3))], opset=24)
    with pytest.raises(PdcError, match="mode must be"):
        import_only("TensorScatter", [("c", randn(2, 4, 3)), ("u", randn(2, 2, 3))], {"mode": "ring"}, opset=24)
    with pytest.raises(PdcError, match="outside"):
        run_pdc(*model_of("TensorScatter", [("c", randn(2, 4, 3)), ("u", randn(2, 2, 3)), ("w", i64(0, 3))], opset=24))


# ---- windows / MelWeightMatrix ---------------------------------------------------------------------
WINDOW_COEFFS = {"HannWindow": (0.5, 0.5, 0.0), "HammingWindow": (25 / 46, 21 / 46, 0.0),
                 "BlackmanWindow": (0.42, 0.5, 0.08)}


@pytest.mark.parametrize("op", list(WINDOW_COEFFS))
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("size", [1, 2, 10, 33])
def test_windows(op, periodic, size):
    (y,) = run_pdc(*model_of(op, [("n", scalar(size, np.int32))], {"periodic": periodic}, opset=17))
    a0, a1, a2 = WINDOW_COEFFS[op]
    n = size if periodic else size - 1
    with np.errstate(all="ignore"):
        ang = 2 * np.pi * np.arange(size) / n
        want = a0 - a1 * np.cos(ang) + a2 * np.cos(2 * ang)
    assert y.dtype == np.float32 and y.shape == (size,)
    ROUNDED.check(y, want.astype(np.float32))
    if size > 1:  # ORT agrees wherever the window is defined
        check(op, [("n", scalar(size, np.int64))], {"periodic": periodic}, opset=17)


def test_window_output_types():
    for dt, code in ((np.float64, 11), (np.float16, 10), (np.int32, 6)):
        # ONNX Runtime computes windows in float32 whatever the output type: ONNX's reference (float64)
        check("HannWindow", [("n", scalar(9))], {"output_datatype": code}, opset=17, oracle="ref")
    with pytest.raises(PdcError, match="size must be >= 0"):
        import_only("HannWindow", [("n", scalar(-1))], opset=17, consts=("n",))


@pytest.mark.parametrize("bins,length,rate,lo,hi", [(8, 16, 8192, 0.0, 4096.0), (10, 64, 16000, 20.0, 8000.0),
                                                    (4, 33, 1000, 100.0, 400.0), (20, 512, 22050, 0.0, 11025.0)])
def test_mel_weight_matrix(bins, length, rate, lo, hi):
    ins = [("b", scalar(bins)), ("l", scalar(length)), ("r", scalar(rate)), ("lo", scalar(lo, np.float32)),
           ("hi", scalar(hi, np.float32))]
    check("MelWeightMatrix", ins, opset=17)
    check("MelWeightMatrix", ins, {"output_datatype": 11}, opset=17)


def test_mel_weight_matrix_errors():
    ins = [("b", scalar(8)), ("l", scalar(16)), ("r", scalar(8192)), ("lo", scalar(0, np.float32)),
           ("hi", scalar(9000, np.float32))]  # above the Nyquist frequency: past the last bin
    with pytest.raises(PdcError, match="outside the spectrogram"):
        run_pdc(*model_of("MelWeightMatrix", ins, opset=17))
    with pytest.raises(PdcError, match="num_mel_bins must be > 0"):
        import_only("MelWeightMatrix", [("b", scalar(0))] + ins[1:], opset=17, consts=("b",))


# ---- DFT ---------------------------------------------------------------------------------------------
def _np_dft(x, length, axis, inverse, onesided):
    sig = x[..., 0] if x.shape[-1] == 1 else x[..., 0] + 1j * x[..., 1]
    sig = sig.astype(np.complex128)
    if inverse and onesided:
        return np.fft.irfft(sig, n=length, axis=axis)[..., None]
    y = (np.fft.ifft if inverse else np.fft.fft)(sig, n=length, axis=axis)
    if onesided:
        y = np.take(y, np.arange(y.shape[axis] // 2 + 1), axis=axis)
    return np.stack([y.real, y.imag], -1)


@pytest.mark.parametrize("inverse,onesided,comp", [(0, 0, 1), (0, 0, 2), (1, 0, 2), (1, 0, 1), (0, 1, 1), (1, 1, 2)])
@pytest.mark.parametrize("axis", [1, -2, 0, -4])
@pytest.mark.parametrize("length", [None, 5, 8, 13])
def test_dft(inverse, onesided, comp, axis, length):
    x = randn(3, 6, 4, comp, dtype=np.float64)
    ins = [("x", x), ("n", scalar(length)) if length else ("", None), ("axis", scalar(axis))]
    attrs = {"inverse": inverse, "onesided": onesided}
    (y,) = run_pdc(*model_of("DFT", ins, attrs, opset=20, consts=("n", "axis")))
    n = length or (2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis])
    ACCUMULATED.check(y, _np_dft(x, n, axis % 4, inverse, onesided))
    if not (inverse and onesided and n // 2 + 1 != x.shape[axis]):  # ORT's IRFFT differs from NumPy's irfft
        # when it has to cut or zero-pad the one-sided spectrum
        check("DFT", [("x", x.astype(np.float32))] + ins[1:], attrs, opset=20, tolerance=KERNEL,
              consts=("n", "axis"))  # ONNX Runtime's float32 transform: a float32 sum's error


def test_dft_opset17_forms_and_runtime_axis():
    x = randn(2, 8, 5, 1)
    check("DFT", [("x", x)], {"axis": 2}, opset=17, tolerance=ACCUMULATED)
    check("DFT", [("x", x), ("n", scalar(6))], {"onesided": 1}, opset=17, tolerance=ACCUMULATED)
    m, feeds = model_of("DFT", [("x", x), ("", None), ("axis", scalar(2))], opset=20)  # axis fed at run time
    (y,) = run_pdc(m, feeds)
    ACCUMULATED.check(y, _np_dft(x.astype(np.float64), 5, 2, 0, 0))


def test_dft_half():
    x = randn(2, 8, 2).astype(np.float16)
    (y,) = run_pdc(*model_of("DFT", [("x", x)], {"inverse": 1}, opset=20))
    assert y.dtype == np.float16
    ACCUMULATED.check(y, _np_dft(x.astype(np.float64), 8, 1, 1, 0))


def test_dft_errors():
    with pytest.raises(PdcError, match="takes a real input"):
        import_only("DFT", [("x", randn(2, 8, 2))], {"onesided": 1}, opset=20)
    with pytest.raises(PdcError, match="complex one-sided spectrum"):
        import_only("DFT", [("x", randn(2, 8, 1))], {"onesided": 1, "inverse": 1}, opset=20)
    with pytest.raises(PdcError, match="out of range"):
        import_only("DFT", [("x", randn(2, 8, 1)), ("", None), ("a", scalar(-1))], opset=20, consts=("a",))
    with pytest.raises(PdcError, match="last dim must be 1"):
        import_only("DFT", [("x", randn(2, 8, 3))], opset=20)
    with pytest.raises(PdcError, match="dft_length must be >= 1"):
        import_only("DFT", [("x", randn(2, 8, 1)), ("n", scalar(0))], opset=20, consts=("n",))


# ---- STFT --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("onesided,comp", [(1, 1), (0, 1), (0, 2), (1, 2)])
@pytest.mark.parametrize("window,frame_len,step", [(True, None, 4), (False, 12, 5), (True, 10, 3), (False, None, 7)])
def test_stft(onesided, comp, window, frame_len, step):
    sig = randn(2, 40, comp)
    n = frame_len or (10 if window else 40)
    ins = [("s", sig), ("step", scalar(step)), ("w", np.hanning(n).astype(np.float32)) if window else ("", None)]
    if frame_len:
        ins.append(("fl", scalar(frame_len)))
    if window or frame_len:
        # ONNX Runtime transforms in float32, 1e-5 off on outputs of magnitude 10: ONNX's reference (float64)
        check("STFT", ins, {"onesided": onesided}, opset=17, tolerance=ACCUMULATED, consts=("step", "fl"),
              oracle="ref")
        return
    # neither: one frame of the whole signal (ORT cannot infer that frame length)
    (y,) = run_pdc(*model_of("STFT", ins, {"onesided": onesided}, opset=17, consts=("step",)))
    want = _np_dft(sig.astype(np.float64), 40, 1, 0, onesided)[:, None]
    ACCUMULATED.check(y, want)


def test_stft_errors():
    base = [("s", randn(1, 20, 1)), ("step", scalar(2))]
    with pytest.raises(PdcError, match="window has 8 values but frame_length is 6"):
        import_only("STFT", base + [("w", randn(8)), ("fl", scalar(6))], opset=17, consts=("step", "fl"))
    with pytest.raises(PdcError, match=r"frame_length 30 must be in \[1, signal length 20\]"):
        import_only("STFT", base + [("", None), ("fl", scalar(30))], opset=17, consts=("step", "fl"))
    with pytest.raises(PdcError, match="frame_step must be >= 1"):
        import_only("STFT", [base[0], ("step", scalar(0))], opset=17, consts=("step",))


# ---- GridSample --------------------------------------------------------------------------------------
GRID_POINTS = np.array([-1.5, -1.25, -1, -0.75, -0.5, -0.3, -0.25, 0, 0.2, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 3.1],
                       np.float32)


def _grid(*shape):
    """Random positions mixed with exact half-pixel ones (where rounding and borders matter)."""
    g = rng.uniform(-1.6, 1.6, shape).astype(np.float32)
    pick = rng.random(shape) < 0.5
    return np.where(pick, rng.choice(GRID_POINTS, shape), g).astype(np.float32)


@pytest.mark.parametrize("mode,pad,align", list(itertools.product(["linear", "nearest", "cubic"],
                                                                  ["zeros", "border", "reflection"], [0, 1])))
def test_grid_sample(mode, pad, align):
    attrs = {"mode": mode, "padding_mode": pad, "align_corners": align}
    check("GridSample", [("x", randn(2, 3, 5, 4)), ("g", _grid(2, 6, 7, 2))], attrs, opset=20, tolerance=KERNEL)
    if mode != "cubic":  # ORT does cubic in 4-D only
        check("GridSample", [("x", randn(1, 2, 3, 4, 5)), ("g", _grid(1, 3, 2, 4, 3))], attrs, opset=20,
              tolerance=KERNEL)


def test_grid_sample_opset16_and_types():
    x, g = randn(1, 2, 4, 5), _grid(1, 3, 3, 2)
    check("GridSample", [("x", x), ("g", g)], {"mode": "bicubic", "padding_mode": "border"}, opset=16, tolerance=KERNEL)
    check("GridSample", [("x", x), ("g", g)], {"align_corners": 1}, opset=16, tolerance=KERNEL)
    check("GridSample", [("x", x.astype(np.float64)), ("g", g.astype(np.float64))], {"mode": "cubic"}, opset=20)
    xi = rng.integers(-50, 50, (1, 2, 4, 5)).astype(np.int32)
    (yi,) = run_pdc(*model_of("GridSample", [("x", xi), ("g", g)], opset=20))
    (yf,) = run_pdc(*model_of("GridSample", [("x", xi.astype(np.float64)), ("g", g)], opset=20))
    np.testing.assert_array_equal(yi, np.trunc(yf).astype(np.int32))
    gn = g.copy()
    gn[0, 0, 0, 1] = np.nan
    (y,) = run_pdc(*model_of("GridSample", [("x", x), ("g", gn)], opset=20))
    assert np.isnan(y[0, :, 0, 0]).all() and np.isfinite(y[0, :, 1:]).all()


def test_grid_sample_volumetric_cubic():
    """N-cubic beyond 2-D (ORT has none): against ONNX's reference evaluator (zero padding, where it agrees)."""
    check("GridSample", [("x", randn(1, 2, 4, 3, 5)), ("g", _grid(1, 2, 3, 2, 3))], {"mode": "cubic"}, opset=20,
          oracle="onnx", tolerance=KERNEL)


def test_grid_sample_errors():
    with pytest.raises(PdcError, match="mode must be one of"):
        import_only("GridSample", [("x", randn(1, 1, 3, 3)), ("g", _grid(1, 2, 2, 2))], {"mode": "bilinear"}, opset=20)
    with pytest.raises(UnsupportedError, match="mode 'area'"):
        import_only("GridSample", [("x", randn(1, 1, 3, 3)), ("g", _grid(1, 2, 2, 2))], {"mode": "area"}, opset=16)
    with pytest.raises(PdcError, match="last dim must be 2"):
        import_only("GridSample", [("x", randn(1, 1, 3, 3)), ("g", _grid(1, 2, 2, 3))], opset=20)


# ---- AffineGrid --------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(2, 3, 5, 7), (2, 1, 3, 4, 5), (1, 2, 1, 4)])
@pytest.mark.parametrize("align", [0, 1])
def test_affine_grid(size, align):
    r = len(size) - 2
    theta = randn(size[0], r, r + 1)
    if align and 1 in size[2:]:
        with pytest.raises(UnsupportedError, match="spatial size of 1"):
            import_only("AffineGrid", [("t", theta), ("s", i64(*size))], {"align_corners": align}, opset=20,
                        consts=("s",))
        return
    check("AffineGrid", [("t", theta), ("s", i64(*size))], {"align_corners": align}, opset=20, consts=("s",))


# ---- Col2Im ------------------------------------------------------------------------------------------
def _blocks(img, blk, attrs):
    nsp = len(img)
    st, dl = attrs.get("strides", [1] * nsp), attrs.get("dilations", [1] * nsp)
    pd = attrs.get("pads", [0] * 2 * nsp)
    return int(np.prod([(img[d] + pd[d] + pd[d + nsp] - dl[d] * (blk[d] - 1) - 1) // st[d] + 1 for d in range(nsp)]))


@pytest.mark.parametrize("img,blk,attrs", [([5, 6], [2, 3], {}),
                                           ([7, 6], [3, 2], {"strides": [2, 1], "pads": [1, 0, 2, 1],
                                                             "dilations": [1, 2]}),
                                           ([3, 4, 5], [2, 2, 2], {"strides": [1, 2, 1]}),
                                           ([6], [3], {"pads": [2, 1], "dilations": [2]})])
def test_col2im(img, blk, attrs):
    x = randn(2, 3 * int(np.prod(blk)), _blocks(img, blk, attrs))
    ins = [("x", x), ("i", i64(*img)), ("b", i64(*blk))]
    if len(img) >= 2:  # ORT takes 2-D and 3-D images
        check("Col2Im", ins, attrs, opset=18, consts=("i", "b"))
    xi = (x * 10).astype(np.int32)
    (yi,) = run_pdc(*model_of("Col2Im", [("x", xi)] + ins[1:], attrs, opset=18, consts=("i", "b")))
    (yf,) = run_pdc(*model_of("Col2Im", [("x", xi.astype(np.float64))] + ins[1:], attrs, opset=18, consts=("i", "b")))
    np.testing.assert_array_equal(yi, yf.astype(np.int32))


def test_col2im_errors():
    with pytest.raises(PdcError, match="number of blocks"):
        import_only("Col2Im", [("x", randn(1, 4, 7)), ("i", i64(3, 3)), ("b", i64(2, 2))], opset=18, consts=("i", "b"))
    with pytest.raises(PdcError, match="multiple of prod"):
        import_only("Col2Im", [("x", randn(1, 5, 4)), ("i", i64(3, 3)), ("b", i64(2, 2))], opset=18, consts=("i", "b"))


# ---- DeformConv --------------------------------------------------------------------------------------
def _deform_inputs(xs, ws, attrs, mask, bias, scale=1.5):
    nsp = len(xs) - 2
    st, dl = attrs.get("strides", [1] * nsp), attrs.get("dilations", [1] * nsp)
    pd = attrs.get("pads", [0] * 2 * nsp)
    out = [(xs[2 + d] + pd[d] + pd[d + nsp] - dl[d] * (ws[2 + d] - 1) - 1) // st[d] + 1 for d in range(nsp)]
    og, k = attrs.get("offset_group", 1), int(np.prod(ws[2:]))
    ins = [("x", randn(*xs)), ("w", randn(*ws)), ("o", (randn(xs[0], og * k * nsp, *out) * scale).astype(np.float32))]
    ins.append(("b", randn(ws[0])) if bias else ("", None))
    if mask:
        ins.append(("m", rng.uniform(0, 1, (xs[0], og * k, *out)).astype(np.float32)))
    return ins if ins[-1][0] else ins[:-1]


@pytest.mark.parametrize("xs,ws,attrs,mask,bias", [
    ((1, 2, 5, 6), (3, 2, 3, 3), {}, False, False),
    ((2, 4, 6, 7), (4, 4, 2, 3), {"strides": [2, 1], "pads": [1, 2, 0, 1], "dilations": [1, 2], "offset_group": 2},
     True, True),
    ((1, 4, 5, 5), (6, 2, 3, 3), {"group": 2, "offset_group": 4}, True, False),
    ((1, 2, 4, 4), (2, 2, 2, 2), {"kernel_shape": [2, 2]}, False, True)])
def test_deform_conv(xs, ws, attrs, mask, bias):
    check("DeformConv", _deform_inputs(xs, ws, attrs, mask, bias), attrs, opset=19, tolerance=KERNEL)


@pytest.mark.parametrize("xs,ws,attrs", [((1, 2, 7), (3, 2, 3), {"pads": [1, 2]}),
                                         ((1, 2, 4, 3, 5), (2, 1, 2, 2, 2), {"group": 2, "strides": [1, 1, 2]})])
def test_deform_conv_nd_zero_offsets_is_conv(xs, ws, attrs):
    """1-D and 3-D (ORT has 2-D only): zero offsets and no mask make a plain convolution."""
    ins = _deform_inputs(xs, ws, attrs, False, True, scale=0.0)
    (y,) = run_pdc(*model_of("DeformConv", ins, attrs, opset=19))
    conv = [ins[0], ins[1], ins[3]]
    want = run_ort(*model_of("Conv", conv, attrs, opset=19))[0]
    KERNEL.check(y, want)


def test_deform_conv_errors():
    with pytest.raises(PdcError, match="do not split into group=1"):
        import_only("DeformConv", _deform_inputs((1, 4, 5, 5), (2, 2, 3, 3), {}, False, False), opset=19)
    with pytest.raises(PdcError, match="offset_group=3"):
        import_only("DeformConv", _deform_inputs((1, 4, 5, 5), (2, 4, 3, 3), {}, False, False), {"offset_group": 3},
                    opset=19)
    with pytest.raises(PdcError, match="kernel_shape"):
        import_only("DeformConv", _deform_inputs((1, 2, 5, 5), (2, 2, 3, 3), {}, False, False),
                    {"kernel_shape": [2, 2]}, opset=19)


# ---- NonMaxSuppression -------------------------------------------------------------------------------
def _boxes(b, n, center):
    if center:
        return np.concatenate([rng.uniform(0, 10, (b, n, 2)), rng.uniform(0.5, 4, (b, n, 2))], -1).astype(np.float32)
    p, q = rng.uniform(0, 10, (b, n, 2)), rng.uniform(0, 10, (b, n, 2))
    return np.concatenate([p, q], -1).astype(np.float32)  # corners in either order


@pytest.mark.parametrize("center", [0, 1])
@pytest.mark.parametrize("max_out,iou,score", [(3, 0.5, 0.2), (100, 0.3, None), (2, 0.0, 0.5), (0, 0.5, None)])
def test_non_max_suppression(center, max_out, iou, score):
    scores = rng.random((2, 3, 12)).astype(np.float32)
    scores[0, 0, :4] = 0.5  # ties: lower box index first
    ins = [("b", _boxes(2, 12, center)), ("s", scores), ("m", i64(max_out)), ("i", np.array([iou], np.float32))]
    if score is not None:
        ins.append(("t", np.array([score], np.float32)))
    check("NonMaxSuppression", ins, {"center_point_box": center}, opset=11)


def test_non_max_suppression_defaults_and_errors():
    (y,) = run_pdc(*model_of("NonMaxSuppression", [("b", _boxes(1, 4, 0)), ("s", randn(1, 2, 4))], opset=11))
    assert y.shape == (0, 3) and y.dtype == np.int64
    with pytest.raises(PdcError, match="differ in num_boxes"):
        import_only("NonMaxSuppression", [("b", _boxes(1, 4, 0)), ("s", randn(1, 2, 5))], opset=11)
    with pytest.raises(PdcError, match="iou_threshold must be in"):
        run_pdc(*model_of("NonMaxSuppression", [("b", _boxes(1, 4, 0)), ("s", randn(1, 2, 4)), ("m", i64(2)),
                                                ("i", np.array([1.5], np.float32))], opset=11))


# ---- CausalConvWithState -----------------------------------------------------------------------------
@pytest.mark.parametrize("k,length", [(4, 7), (1, 5), (3, 1), (5, 2)])
@pytest.mark.parametrize("bias,past,act", [(False, False, "none"), (True, True, "silu"), (True, False, "swish"),
                                           (False, True, "none")])
def test_causal_conv_with_state(k, length, bias, past, act):
    ins = [("x", randn(2, 3, length)), ("w", randn(3, 1, k)), ("b", randn(3)) if bias else ("", None)]
    if past:
        ins.append(("p", randn(2, 3, k - 1)))
    check("CausalConvWithState", ins, {"activation": act}, opset=27, n_out=2)


def test_causal_conv_with_state_half_and_errors():
    ins = [("x", randn(1, 2, 6).astype(np.float16)), ("w", randn(2, 1, 3).astype(np.float16)), ("", None),
           ("p", randn(1, 2, 2).astype(np.float16))]
    check("CausalConvWithState", ins, {"activation": "silu"}, opset=27, n_out=2, tolerance=ACCUMULATED)
    with pytest.raises(PdcError, match="activation must be one of"):
        import_only("CausalConvWithState", [("x", randn(1, 2, 6)), ("w", randn(2, 1, 3))], {"activation": "gelu"},
                    opset=27, n_out=2)
    with pytest.raises(PdcError, match="past_state must have shape"):
        import_only("CausalConvWithState", [("x", randn(1, 2, 6)), ("w", randn(2, 1, 3)), ("", None),
                                            ("p", randn(1, 2, 3))], opset=27, n_out=2)


# ---- LinearAttention ---------------------------------------------------------------------------------
def _la_inputs(rule, b=2, t=3, hq=4, hkv=2, dk=3, dv=5, past=True, per_key=False, beta_one=False, dt=np.float32):
    ins = [("q", randn(b, t, hq * dk).astype(dt)), ("k", (randn(b, t, hkv * dk) * 0.5).astype(dt)),
           ("v", randn(b, t, hkv * dv).astype(dt)), ("p", randn(b, hkv, dk, dv).astype(dt)) if past else ("", None)]
    if rule in ("gated", "gated_delta"):
        ins.append(("g", rng.uniform(-1, 0, (b, t, hkv * dk if per_key else hkv)).astype(dt)))
    elif rule == "delta":
        ins.append(("", None))
    if rule in ("delta", "gated_delta"):
        ins.append(("beta", rng.uniform(0, 1, (b, t, 1 if beta_one else hkv)).astype(dt)))
    return ins


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
@pytest.mark.parametrize("variant", [{}, {"past": False, "t": 1}, {"per_key": True, "beta_one": True},
                                     {"hq": 2, "hkv": 2, "t": 5}, {"hq": 3, "hkv": 1, "dk": 4, "dv": 2}])
def test_linear_attention(rule, variant):
    if variant.get("per_key") and rule not in ("gated", "gated_delta"):
        variant = {k: v for k, v in variant.items() if k != "per_key"}
    ins = _la_inputs(rule, **variant)
    attrs = {"update_rule": rule, "q_num_heads": variant.get("hq", 4), "kv_num_heads": variant.get("hkv", 2)}
    check("LinearAttention", ins, attrs, opset=27, n_out=2, tolerance=ACCUMULATED)  # a recurrence over time


def test_linear_attention_scale_half_and_errors():
    attrs = {"update_rule": "gated_delta", "q_num_heads": 4, "kv_num_heads": 2}
    check("LinearAttention", _la_inputs("gated_delta"), dict(attrs, scale=0.25), opset=27, n_out=2,
          tolerance=ACCUMULATED)
    check("LinearAttention", _la_inputs("gated_delta", dt=np.float16), attrs, opset=27, n_out=2, tolerance=ACCUMULATED)
    mixed = _la_inputs("gated_delta", dt=np.float16)
    mixed[3] = ("p", mixed[3][1].astype(np.float32))  # a float32 state with float16 activations
    check("LinearAttention", mixed, attrs, opset=27, n_out=2, tolerance=ACCUMULATED)
    with pytest.raises(PdcError, match="needs the decay input"):
        import_only("LinearAttention", _la_inputs("linear"), attrs, opset=27, n_out=2)
    with pytest.raises(PdcError, match="takes no decay input"):
        import_only("LinearAttention", _la_inputs("gated"), dict(attrs, update_rule="linear"), opset=27, n_out=2)
    with pytest.raises(PdcError, match="positive multiple"):
        import_only("LinearAttention", _la_inputs("linear"), dict(attrs, update_rule="linear", q_num_heads=3),
                    opset=27, n_out=2)


def test_col2im_bool_rejected():
    with pytest.raises(PdcError, match="bool input is not supported"):
        import_only("Col2Im", [("x", np.ones((1, 4, 4), bool)), ("i", i64(3, 3)), ("b", i64(2, 2))], opset=18,
                    consts=("i", "b"))
