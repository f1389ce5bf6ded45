"""Signal-processing ops (opset 17/20): hann_window, hamming_window, blackman_window,
mel_weight_matrix, dft, stft.

Complex values are real tensors whose last dim holds (real, imaginary); a real signal has a last
dim of 1.
- Windows: w[n] = a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N), N = size (periodic=1) or size - 1
  (periodic=0), computed like the ONNX function bodies (a size-1 symmetric window divides by 0).
- mel_weight_matrix: (dft_length // 2 + 1, num_mel_bins) triangular filters with peak 1, their
  edges at the spectrogram bins of num_mel_bins + 2 points spaced evenly on the mel scale
  mel(f) = 2595 log10(1 + f / 700) between lower_edge_hertz and upper_edge_hertz.
- dft: the DFT along `axis` (an input since opset 20; default -2), of dft_length points (the input
  cut or zero-padded; default the axis size). inverse=1 divides by dft_length. onesided=1 keeps
  bins 0..L/2 of a real input's spectrum (RFFT), or with inverse=1 reads a one-sided spectrum and
  returns the real signal (IRFFT; default length 2 * (n - 1); imaginary parts of bins 0 and L/2
  ignored, as NumPy's irfft does).
- stft: frames of frame_length samples every frame_step samples, times the window (default all
  ones), each DFT'd; onesided (default 1) keeps bins 0..frame_length/2.
The references run NumPy's FFT in the input's precision (float32 for float32 and half inputs),
which is how ONNX's node tests made their expected data.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .tensor import runtime_error

_FLOATS = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)
_INDEX = (dtypes.int32, dtypes.int64)
_WINDOW_OUT = tuple(d for d in dtypes.ALL if d != dtypes.bool_)


def _scalar_int(ctx: InferContext, i: int, name: str):
    """The value of constant integer scalar input i, or None; checks its type."""
    t = ctx.types[i]
    if t.dtype not in _INDEX:
        ctx.fail(f"{name} must be int32 or int64, got {t.dtype}")
    if t.numel not in (None, 1):
        ctx.fail(f"{name} must be a scalar, got {t}")
    data = ctx.const(i)
    return None if data is None else int(np.asarray(data).reshape(-1)[0])


def _int(a) -> int:
    return int(np.asarray(a).reshape(-1)[0])


# ---- windows -------------------------------------------------------------------------------------
WINDOWS = {  # op: (ONNX type, a0, a1, a2)
    "hann_window": ("HannWindow", 0.5, 0.5, 0.0),
    "hamming_window": ("HammingWindow", 25 / 46, 21 / 46, 0.0),
    "blackman_window": ("BlackmanWindow", 0.42, 0.5, 0.08),
}


def window_values(op: str, size: int, periodic: int) -> np.ndarray:
    """The window in float64 (NaN for a size-1 symmetric window, as the ONNX function gives)."""
    _, a0, a1, a2 = WINDOWS[op]
    n_div = size if periodic else size - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arange(size, dtype=np.float64) * (2 * np.pi / n_div if n_div else np.inf)
        return a0 - a1 * np.cos(angle) + a2 * np.cos(2 * angle)


def cast_window(values: np.ndarray, dt) -> np.ndarray:
    """float64 values in dtype dt; for integer types NaN becomes 0 (the C kernels do the same)."""
    if dt.is_int:
        return np.where(np.isnan(values), 0, np.trunc(values)).astype(dt.np)
    return values.astype(dt.np)


def _window_infer(ctx: InferContext):
    if ctx.attrs.get("periodic", 1) not in (0, 1):
        ctx.fail(f"attribute 'periodic' must be 0 or 1, got {ctx.attrs['periodic']}")
    dt = ctx.attrs.get("output_datatype") or dtypes.float32
    if dt not in _WINDOW_OUT:
        ctx.fail(f"output_datatype {dt} is not a numeric type")
    size = _scalar_int(ctx, 0, "size")
    if size is not None and size < 0:
        ctx.fail(f"size must be >= 0, got {size}")
    return [TensorType(dt, (UNKNOWN if size is None else size,))]


def _window_ref(op):
    def ref(inputs, attrs):
        size = _int(inputs[0])
        if size < 0:
            runtime_error(f"{op}: size must be >= 0, got {size}")
        dt = attrs.get("output_datatype") or dtypes.float32
        return cast_window(window_values(op, size, attrs.get("periodic", 1)), dt)
    return ref


for _op, (_onnx, *_) in WINDOWS.items():
    register_op(_op, ["size"], ["output"], onnx=_onnx,
                attrs={"periodic": Attr("int", 1), "output_datatype": Attr("dtype", dtypes.float32)},
                infer=_window_infer, reference=_window_ref(_op),
                doc=f"The {_onnx[:-6]} window of `size` points (periodic or symmetric).")


# ---- mel_weight_matrix ---------------------------------------------------------------------------
def mel_bins(num_mel_bins: int, dft_length: int, sample_rate: int, lower: float, upper: float) -> np.ndarray:
    """The num_mel_bins + 2 filter edges as spectrogram bin indices (int64), in float64 math."""
    mel_lo = 2595 * np.log10(1 + lower / 700)
    mel_hi = 2595 * np.log10(1 + upper / 700)
    step = (mel_hi - mel_lo) / (num_mel_bins + 2)
    hz = 700 * (np.power(10.0, (np.arange(num_mel_bins + 2) * step + mel_lo) / 2595) - 1)
    bins = np.floor_divide((dft_length + 1) * hz, float(sample_rate))
    return np.where(np.isfinite(bins), bins, -2).astype(np.int64)  # NaN (a band below -700 Hz): invalid


def mel_filter_writes(edges: np.ndarray, n_mel: int):
    """(row, column, value) of every weight the filters write, in order (later writes win)."""
    for i in range(n_mel):
        lo, mid, hi = (int(e) for e in edges[i:i + 3])
        if mid == lo:
            yield mid, i, 1.0
        else:
            for j in range(lo, mid + 1):
                yield j, i, (j - lo) / (mid - lo)
        for j in range(mid, hi):
            yield j, i, (hi - j) / (hi - mid)


def _mel_infer(ctx: InferContext):
    dt = ctx.attrs.get("output_datatype") or dtypes.float32
    if dt not in _WINDOW_OUT:
        ctx.fail(f"output_datatype {dt} is not a numeric type")
    bins = _scalar_int(ctx, 0, "num_mel_bins")
    length = _scalar_int(ctx, 1, "dft_length")
    _scalar_int(ctx, 2, "sample_rate")
    for i, name in ((3, "lower_edge_hertz"), (4, "upper_edge_hertz")):
        t = ctx.types[i]
        if t.dtype not in _FLOATS:
            ctx.fail(f"{name} must be a float scalar, got {t.dtype}")
        if t.numel not in (None, 1):
            ctx.fail(f"{name} must be a scalar, got {t}")
    if bins is not None and bins <= 0:
        ctx.fail(f"num_mel_bins must be > 0, got {bins}")
    if length is not None and length <= 0:
        ctx.fail(f"dft_length must be > 0, got {length}")
    rate = ctx.const(2)
    if rate is not None and _int(rate) <= 0:
        ctx.fail(f"sample_rate must be > 0, got {_int(rate)}")
    return [TensorType(dt, (UNKNOWN if length is None else length // 2 + 1, UNKNOWN if bins is None else bins))]


def _mel_ref(inputs, attrs):
    n_mel, length, rate = (_int(a) for a in inputs[:3])
    lower, upper = (float(np.asarray(a, np.float64).reshape(-1)[0]) for a in inputs[3:5])
    if n_mel <= 0 or length <= 0 or rate <= 0:
        runtime_error(f"mel_weight_matrix: num_mel_bins ({n_mel}), dft_length ({length}) and sample_rate ({rate}) "
                      f"must be > 0")
    n_spec = length // 2 + 1
    out = np.zeros((n_spec, n_mel), np.float64)
    with np.errstate(invalid="ignore"):
        edges = mel_bins(n_mel, length, rate, lower, upper)
    if edges.min() < -1 or edges.max() > n_spec:  # (also NaN edges) the filters would write far outside
        edges = edges.clip(-1, n_spec)
    for j, i, v in mel_filter_writes(edges, n_mel):
        if not 0 <= j < n_spec:
            runtime_error(f"mel_weight_matrix: the band [{lower}, {upper}] Hz reaches bin {j}, outside the "
                          f"spectrogram's bins 0..{n_spec - 1} (sample_rate {rate})")
        out[j, i] = v
    dt = attrs.get("output_datatype") or dtypes.float32
    return out.astype(dt.np)


register_op("mel_weight_matrix", ["num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz",
                                  "upper_edge_hertz"], ["output"], onnx="MelWeightMatrix",
            attrs={"output_datatype": Attr("dtype", dtypes.float32)},
            infer=_mel_infer, reference=_mel_ref,
            doc="Triangular mel filterbank weights, (dft_length // 2 + 1, num_mel_bins).")


# ---- dft -----------------------------------------------------------------------------------------
def dft_axis(axis: int, rank: int, fail) -> int:
    """A DFT axis in [0, rank - 2] (the last dim holds the complex parts)."""
    if not (-rank <= axis <= -2 or 0 <= axis <= rank - 2):
        fail(f"axis {axis} is out of range for rank {rank} (valid: [-{rank}, -2] or [0, {rank - 2}])")
    return axis % rank


def dft_plan(x_shape, axis: int, length, inverse: bool, onesided: bool, fail):
    """(dft_length, output shape) of a DFT over a static-rank input shape."""
    n, comp = x_shape[axis], x_shape[-1]
    if isinstance(comp, int) and comp not in (1, 2):
        fail(f"the last dim must be 1 (real) or 2 (complex), got {comp}")
    if onesided and not inverse and comp == 2:
        fail("onesided=1 (RFFT) takes a real input (last dim 1), got a complex one")
    if onesided and inverse and comp == 1:
        fail("onesided=1 with inverse=1 (IRFFT) takes a complex one-sided spectrum (last dim 2), got a real input")
    if length is None:
        if not isinstance(n, int):
            length = UNKNOWN
        else:
            length = 2 * (n - 1) if onesided and inverse else n
    if isinstance(length, int) and length < 1:
        fail(f"dft_length must be >= 1, got {length}")
    out = list(x_shape)
    if onesided and not inverse:
        out[axis] = length // 2 + 1 if isinstance(length, int) else UNKNOWN
    else:
        out[axis] = length
    out[-1] = 1 if onesided and inverse else 2
    return length, tuple(out)


def _dft_attrs(ctx: InferContext):
    for k in ("inverse", "onesided"):
        if ctx.attrs.get(k, 0) not in (0, 1):
            ctx.fail(f"attribute '{k}' must be 0 or 1, got {ctx.attrs[k]}")
    return bool(ctx.attrs.get("inverse", 0)), bool(ctx.attrs.get("onesided", 0))


def _dft_infer(ctx: InferContext):
    x = ctx.types[0]
    if x.dtype not in _FLOATS:
        ctx.fail(f"input has dtype {x.dtype}; DFT takes float16, bfloat16, float32 or float64")
    inverse, onesided = _dft_attrs(ctx)
    length = _scalar_int(ctx, 1, "dft_length") if ctx.has_input(1) else None
    axis = -2
    if ctx.has_input(2):
        t = ctx.types[2]
        if t.dtype != dtypes.int64 or t.numel not in (None, 1):
            ctx.fail(f"axis must be an int64 scalar, got {t}")
        axis = None if ctx.const(2) is None else _int(ctx.const(2))
    if x.shape is None:
        return [TensorType(x.dtype, None)]
    if len(x.shape) < 2:
        ctx.fail(f"input must have rank >= 2 (signal dims, then 1 or 2), got {x}")
    if ctx.has_input(1) and length is None:
        length = UNKNOWN
    if axis is None:
        # the axis is known at run time only: the shape stays known when no axis changes size
        _, shape = dft_plan(x.shape, 0, UNKNOWN if length is None else length, inverse, onesided, ctx.fail)
        if length is None and not onesided:
            return [TensorType(x.dtype, x.shape[:-1] + (2,))]
        return [TensorType(x.dtype, (UNKNOWN,) * (len(x.shape) - 1) + shape[-1:])]
    axis = dft_axis(axis, len(x.shape), ctx.fail)
    _, shape = dft_plan(x.shape, axis, length, inverse, onesided, ctx.fail)
    return [TensorType(x.dtype, shape)]


def _fft_dtype(dt: np.dtype):
    return np.float64 if dt == np.float64 else np.float32


def _dft_ref(inputs, attrs):
    x = inputs[0]
    length = _int(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
    axis = _int(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else -2
    inverse, onesided = bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0))
    fail = lambda m: runtime_error(f"dft: {m}")  # noqa: E731
    if x.ndim < 2:
        fail(f"input must have rank >= 2, got shape {list(x.shape)}")
    axis = dft_axis(axis, x.ndim, fail)
    length, _ = dft_plan(x.shape, axis, length, inverse, onesided, fail)
    w = x.astype(_fft_dtype(x.dtype))
    sig = w[..., 0] if x.shape[-1] == 1 else w[..., 0] + 1j * w[..., 1]
    if inverse and onesided:
        return np.fft.irfft(sig, n=length, axis=axis)[..., None].astype(x.dtype)
    if inverse:
        y = np.fft.ifft(sig, n=length, axis=axis)
    elif onesided:
        y = np.fft.rfft(sig, n=length, axis=axis)
    else:
        y = np.fft.fft(sig, n=length, axis=axis)
    return np.stack([y.real, y.imag], axis=-1).astype(x.dtype)


register_op("dft", ["input", "dft_length?", "axis?"], ["output"], onnx="DFT",
            attrs={"inverse": Attr("int", 0), "onesided": Attr("int", 0)},
            infer=_dft_infer, reference=_dft_ref,
            doc="Discrete Fourier transform along an axis (inverse, one-sided, cut or zero-padded).")


# ---- stft ----------------------------------------------------------------------------------------
def stft_plan(signal_len: int, step: int, window_len, frame_len, fail) -> tuple[int, int]:
    """(frame_length, frames) of an STFT."""
    if frame_len is None:
        frame_len = window_len if window_len is not None else signal_len
    elif window_len is not None and window_len != frame_len:
        fail(f"the window has {window_len} values but frame_length is {frame_len}")
    if step < 1:
        fail(f"frame_step must be >= 1, got {step}")
    if frame_len < 1 or frame_len > signal_len:
        fail(f"frame_length {frame_len} must be in [1, signal length {signal_len}]")
    return frame_len, (signal_len - frame_len) // step + 1


def _stft_infer(ctx: InferContext):
    x = ctx.types[0]
    if x.dtype not in _FLOATS:
        ctx.fail(f"signal has dtype {x.dtype}; STFT takes float16, bfloat16, float32 or float64")
    onesided = ctx.attrs.get("onesided", 1)
    if onesided not in (0, 1):
        ctx.fail(f"attribute 'onesided' must be 0 or 1, got {onesided}")
    step = _scalar_int(ctx, 1, "frame_step")
    window_len = None
    if ctx.has_input(2):
        w = ctx.types[2]
        if w.dtype != x.dtype:
            ctx.fail(f"window ({w.dtype}) must have the signal's dtype ({x.dtype})")
        if w.rank not in (None, 1):
            ctx.fail(f"window must be 1-D, got {w}")
        window_len = w.shape[0] if w.shape is not None else UNKNOWN
    frame_len = _scalar_int(ctx, 3, "frame_length") if ctx.has_input(3) else None
    if x.shape is None:
        return [TensorType(x.dtype, (UNKNOWN,) * 3 + (2,))]
    if len(x.shape) != 3 or (isinstance(x.shape[2], int) and x.shape[2] not in (1, 2)):
        ctx.fail(f"signal must have shape [batch, length, 1 or 2], got {x}")
    known = [v for v in (step, x.shape[1]) if not isinstance(v, int)]
    if known or (ctx.has_input(3) and frame_len is None) or window_len == UNKNOWN:
        return [TensorType(x.dtype, (x.shape[0], UNKNOWN, UNKNOWN, 2))]
    frame_len, frames = stft_plan(x.shape[1], step, window_len, frame_len, ctx.fail)
    return [TensorType(x.dtype, (x.shape[0], frames, frame_len // 2 + 1 if onesided else frame_len, 2))]


def _stft_ref(inputs, attrs):
    x, step = inputs[0], _int(inputs[1])
    window = inputs[2] if len(inputs) > 2 else None
    frame_len = _int(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
    fail = lambda m: runtime_error(f"stft: {m}")  # noqa: E731
    frame_len, frames = stft_plan(x.shape[1], step, None if window is None else window.shape[0], frame_len, fail)
    ft = _fft_dtype(x.dtype)
    w = x.astype(ft)
    sig = w[..., 0] if x.shape[-1] == 1 else w[..., 0] + 1j * w[..., 1]
    idx = np.arange(frames)[:, None] * step + np.arange(frame_len)[None, :]
    frames_x = sig[:, idx]  # (batch, frames, frame_length)
    if window is not None:
        frames_x = frames_x * window.astype(ft)
    y = np.fft.fft(frames_x, axis=-1)
    if attrs.get("onesided", 1):
        y = y[..., :frame_len // 2 + 1]
    return np.stack([y.real, y.imag], axis=-1).astype(x.dtype)


register_op("stft", ["signal", "frame_step", "window?", "frame_length?"], ["output"], onnx="STFT",
            attrs={"onesided": Attr("int", 1)}, infer=_stft_infer, reference=_stft_ref,
            doc="Short-time Fourier transform: windowed frames, each DFT'd.")
