"""Kernels of the signal-processing ops: windows, mel_weight_matrix, dft, stft.

- Windows depend only on their (static) length: the values are computed at compile time by the
  op's reference and copied.
- mel_weight_matrix reads dft_length, sample_rate and the band edges at run time and computes the
  filter edges in double, flooring like NumPy's floor_divide; writes outside the matrix (which the
  reference rejects) are skipped.
- dft / stft transform one line at a time in a double-precision scratch buffer (kernel scratch):
  an iterative radix-2 FFT when the length is a power of two, else a direct DFT of the bins
  needed, both with a compile-time twiddle table. Results are rounded once to the output type
  (the references use NumPy's float32 FFT for float32 data, so results agree to float32 rounding).
  A run-time DFT axis (when the output shape does not depend on it) switches between loop nests
  compiled for every axis.
"""
from __future__ import annotations

import numpy as np

from ...ir.ops.extra_signal import WINDOWS, cast_window, dft_axis, dft_plan, stft_plan, window_values
from ..context import KernelContext
from . import kernel
from ._axis import Num, indent, prod

MAX_FFT = 1 << 15  # power-of-two lengths: 512 KiB of scratch and a 512 KiB twiddle table at most
MAX_DIRECT = 1 << 13  # other lengths: a direct O(L^2) DFT with two scratch lines


# ---- windows ------------------------------------------------------------------------------------
@kernel(*WINDOWS)
def window(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    values = cast_window(window_values(ctx.node.op, y.shape[0], ctx.attrs.get("periodic", 1)), y.dtype)
    if values.size == 0:
        return "    (void)in0; (void)out0;"
    return f"    (void)in0;\n    memcpy(out0, {ctx.add_weight(values, ctx.ctype(y.dtype))}, {values.nbytes});"


# ---- mel_weight_matrix --------------------------------------------------------------------------
_FLOOR_DIV = """static double pdc_floor_divide(double a, double b) {
    /* NumPy's float floor_divide: exact for the quotient's integer part */
    double mod = fmod(a, b), div = (a - mod) / b;
    if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.0;
    if (div != 0) {
        double f = floor(div);
        if (div - f > 0.5) f += 1.0;
        return f;
    }
    return copysign(0.0, a / b);
}
"""


@kernel("mel_weight_matrix")
def mel_weight_matrix(ctx: KernelContext) -> str:
    y = ctx.outputs[0]
    n_spec, n_mel = y.shape
    if n_spec * n_mel == 0:
        return "    (void)in0; (void)in1; (void)in2; (void)in3; (void)in4; (void)out0;"
    fd = ctx.helper("pdc_floor_divide", _FLOOR_DIV)
    lo_t, hi_t = ctx.inputs[3].dtype, ctx.inputs[4].dtype
    st = lambda e: ctx.store(y.dtype, e) if y.dtype.is_float else f"({ctx.ctype(y.dtype)})({e})"  # noqa: E731
    return f"""    (void)in0;
    const int64_t length = (int64_t)in1[0], rate = (int64_t)in2[0];
    const double lower = (double){ctx.load(lo_t, 'in3[0]')}, upper = (double){ctx.load(hi_t, 'in4[0]')};
    memset(out0, 0, {n_spec * n_mel * y.dtype.itemsize});
    const double mel_lo = 2595 * log10(1 + lower / 700), mel_hi = 2595 * log10(1 + upper / 700);
    const double step = (mel_hi - mel_lo) / {n_mel + 2};
    int64_t edge[{n_mel + 2}];
    for (int64_t i = 0; i < {n_mel + 2}; i++) {{
        const double hz = 700 * (pow(10.0, ((double)i * step + mel_lo) / 2595) - 1);
        const double b = {fd}((double)(length + 1) * hz, (double)rate);
        /* far-out (or NaN) edges are clipped: they only bound the writes, all skipped */
        edge[i] = !(b >= -1) ? -1 : (b > {n_spec} ? {n_spec} : (int64_t)b);
    }}
    for (int64_t i = 0; i < {n_mel}; i++) {{
        const int64_t lo = edge[i], mid = edge[i + 1], hi = edge[i + 2];
        if (mid == lo) {{
            if (mid >= 0 && mid < {n_spec}) out0[mid * {n_mel} + i] = {st('1.0')};
        }} else {{
            for (int64_t j = lo; j <= mid; j++)
                if (j >= 0 && j < {n_spec}) out0[j * {n_mel} + i] = {st('(double)(j - lo) / (double)(mid - lo)')};
        }}
        for (int64_t j = mid; j < hi; j++)
            if (j >= 0 && j < {n_spec}) out0[j * {n_mel} + i] = {st('(double)(hi - j) / (double)(hi - mid)')};
    }}"""


# ---- the transform --------------------------------------------------------------------------------
_TRANSFORM = """static void pdc_dft_line(double *buf, double *tmp, int64_t n, int64_t nonzero, int64_t nout,
                         const double *w, const int32_t *rev, double sign) {
    /* the DFT of the n complex values in buf (zero from `nonzero` on); bins 0..nout-1 end in buf.
       w: cos / -sin of 2 pi m / n; sign -1 conjugates them (the inverse transform). */
    if (rev) {
        for (int64_t i = 0; i < n; i++) {
            const int64_t j = rev[i];
            if (j > i) {
                double t = buf[2 * i]; buf[2 * i] = buf[2 * j]; buf[2 * j] = t;
                t = buf[2 * i + 1]; buf[2 * i + 1] = buf[2 * j + 1]; buf[2 * j + 1] = t;
            }
        }
        for (int64_t len = 2; len <= n; len <<= 1) {
            const int64_t half = len >> 1, stride = n / len;
            for (int64_t i = 0; i < n; i += len)
                for (int64_t j = 0; j < half; j++) {
                    const double wr = w[2 * j * stride], wi = sign * w[2 * j * stride + 1];
                    double *u = buf + 2 * (i + j), *v = buf + 2 * (i + j + half);
                    const double vr = v[0] * wr - v[1] * wi, vi = v[0] * wi + v[1] * wr;
                    v[0] = u[0] - vr; v[1] = u[1] - vi;
                    u[0] += vr; u[1] += vi;
                }
        }
        return;
    }
    for (int64_t k = 0; k < nout; k++) {
        double sr = 0, si = 0;
        int64_t m = 0;
        for (int64_t t = 0; t < nonzero; t++) {
            const double wr = w[2 * m], wi = sign * w[2 * m + 1];
            sr += buf[2 * t] * wr - buf[2 * t + 1] * wi;
            si += buf[2 * t] * wi + buf[2 * t + 1] * wr;
            m += k;
            if (m >= n) m -= n;
        }
        tmp[2 * k] = sr; tmp[2 * k + 1] = si;
    }
    memcpy(buf, tmp, (size_t)nout * 2 * sizeof(double));
}
"""


class Transform:
    """The scratch declarations and the call that transforms one line of length n."""

    def __init__(self, ctx: KernelContext, n: int, nout: int):
        self.fn = ctx.helper("pdc_dft_line", _TRANSFORM)
        pow2 = n >= 4 and n & (n - 1) == 0
        if n > (MAX_FFT if pow2 else MAX_DIRECT):
            ctx.fail(f"a transform of length {n} is not supported (at most {MAX_FFT} for "
                     f"powers of two, {MAX_DIRECT} otherwise)")
        m = np.arange(n, dtype=np.float64)
        tw = np.stack([np.cos(2 * np.pi * m / n), -np.sin(2 * np.pi * m / n)], axis=-1).reshape(-1)
        self.w = ctx.add_weight(tw, "double")
        self.rev = "NULL"
        if pow2:
            bits = n.bit_length() - 1
            rev = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)], np.int32)
            self.rev = ctx.add_weight(rev, "int32_t")
        self.n, self.nout, self.pow2, self.ctx = n, nout, pow2, ctx

    def decls(self) -> str:
        ctx = self.ctx
        tmp = ctx.scratch(2 * self.nout, "double", 8) if not self.pow2 else "NULL"
        return f"double *buf = {ctx.scratch(2 * self.n, 'double', 8)};\ndouble *tmp = {tmp};"

    def call(self, nonzero: str, inverse: bool) -> str:
        sign = -1.0 if inverse else 1.0
        return f"{self.fn}(buf, tmp, {self.n}, {nonzero}, {self.nout}, {self.w}, {self.rev}, {sign});"


# ---- dft ------------------------------------------------------------------------------------------
def _dft_along(ctx: KernelContext, axis: int, length: int, inverse: bool, onesided: bool) -> str:
    x, y = ctx.inputs[0], ctx.outputs[0]
    num = Num(x.dtype)
    _, shape = dft_plan(x.shape, axis, length, inverse, onesided, ctx.fail)
    if tuple(shape) != tuple(y.shape):
        ctx.fail(f"a DFT over axis {axis} gives {list(shape)}, the output is {list(y.shape)}")
    outer, n_in, inner = prod(x.shape[:axis]), x.shape[axis], prod(x.shape[axis + 1:-1])
    c_in, n_out, c_out = x.shape[-1], y.shape[axis], y.shape[-1]
    if outer * inner * n_out == 0:
        return "/* empty */"
    irfft = inverse and onesided
    tr = Transform(ctx, length, length if irfft else n_out)
    src = f"in0 + (o * {n_in * inner} + j) * {c_in}"
    dst = f"out0 + (o * {n_out * inner} + j) * {c_out}"
    def re(t):
        return f"(double){num.load(f'x[({t}) * {inner * c_in}]')}"

    def im(t):
        return f"(double){num.load(f'x[({t}) * {inner * c_in} + 1]')}" if c_in == 2 else "0.0"
    if irfft:
        # the Hermitian spectrum of a real signal: bins above L/2 mirror the conjugates of those below
        half = length // 2 + 1
        used = min(n_in, half)
        fill = f"""for (int64_t k = 0; k < {used}; k++) {{ buf[2 * k] = {re('k')}; buf[2 * k + 1] = {im('k')}; }}
for (int64_t k = {used}; k < {half}; k++) {{ buf[2 * k] = 0; buf[2 * k + 1] = 0; }}
buf[1] = 0;{' buf[2 * %d + 1] = 0;' % (length // 2) if length % 2 == 0 else ''}
for (int64_t k = {half}; k < {length}; k++) {{
    buf[2 * k] = buf[2 * ({length} - k)]; buf[2 * k + 1] = -buf[2 * ({length} - k) + 1];
}}"""
        nonzero = length
        store = f"for (int64_t k = 0; k < {n_out}; k++) y[k * {inner}] = {num.store(f'buf[2 * k] * {1.0 / length!r}')};"
    else:
        used = min(n_in, length)
        fill = (f"for (int64_t t = 0; t < {used}; t++) {{ buf[2 * t] = {re('t')}; buf[2 * t + 1] = {im('t')}; }}\n"
                f"for (int64_t t = {used}; t < {length}; t++) {{ buf[2 * t] = 0; buf[2 * t + 1] = 0; }}")
        nonzero = used
        scale = f" * {1.0 / length!r}" if inverse else ""
        store = (f"for (int64_t k = 0; k < {n_out}; k++) {{ y[k * {inner * 2}] = {num.store(f'buf[2 * k]{scale}')}; "
                 f"y[k * {inner * 2} + 1] = {num.store(f'buf[2 * k + 1]{scale}')}; }}")
    return f"""{tr.decls()}
for (int64_t o = 0; o < {outer}; o++)
    for (int64_t j = 0; j < {inner}; j++) {{
        const {num.c} *x = {src};
        {num.c} *y = {dst};
{indent(fill, 2)}
        {tr.call(str(nonzero), inverse)}
        {store}
    }}"""


@kernel("dft")
def dft(ctx: KernelContext) -> str:
    x = ctx.inputs[0]
    rank = len(x.shape)
    inverse, onesided = bool(ctx.attrs.get("inverse", 0)), bool(ctx.attrs.get("onesided", 0))
    length = None
    if ctx.has_input(1):
        data = ctx.const(1)
        if data is None:
            ctx.fail("dft_length (input 1) must be a compile-time constant")
        length = int(np.asarray(data).reshape(-1)[0])

    def body(axis):
        n = length
        if n is None:
            n = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
        return "{\n" + indent(_dft_along(ctx, axis, n, inverse, onesided)) + "\n}"

    unused = "    (void)in1;\n" if ctx.has_input(1) else ""
    if not ctx.has_input(2) or ctx.const(2) is not None:
        axis = -2 if not ctx.has_input(2) else int(np.asarray(ctx.const(2)).reshape(-1)[0])
        axis = dft_axis(axis, rank, ctx.fail)
        return unused + ("    (void)in2;\n" if ctx.has_input(2) else "") + indent(body(axis))
    cases = "\n".join(f"case {a}: case {a - rank}: {body(a)}\n    break;" for a in range(rank - 1))
    return (f"{unused}    switch ((int64_t)in2[0]) {{\n{indent(cases)}\n"
            f"    default: break; /* out of range: left as is */\n    }}")


# ---- stft -----------------------------------------------------------------------------------------
def _const_scalar(ctx: KernelContext, i: int, what: str):
    if not ctx.has_input(i):
        return None
    data = ctx.const(i)
    if data is None:
        ctx.fail(f"{what} (input {i}) must be a compile-time constant")
    return int(np.asarray(data).reshape(-1)[0])


@kernel("stft")
def stft(ctx: KernelContext) -> str:
    """frame_step may be known at run time only (the static output fixes the frame count): frames
    that would then run past the signal (which the reference rejects) are written as zeros."""
    x, y = ctx.inputs[0], ctx.outputs[0]
    num = Num(x.dtype)
    batch, sig_len, c_in = x.shape
    onesided = bool(ctx.attrs.get("onesided", 1))
    has_window = ctx.has_input(2)
    window_len = ctx.inputs[2].shape[0] if has_window else None
    step = ctx.const(1)
    step = None if step is None else int(np.asarray(step).reshape(-1)[0])
    frame_len = None
    if ctx.has_input(3):
        if ctx.const(3) is not None:
            frame_len = int(np.asarray(ctx.const(3)).reshape(-1)[0])
        elif window_len is not None:
            frame_len = window_len  # the reference requires them equal
        elif not onesided:
            frame_len = y.shape[2]
        else:
            ctx.fail("frame_length (input 3) must be a compile-time constant")
    n_out = y.shape[2]
    if step is not None:
        frame_len, frames = stft_plan(sig_len, step, window_len, frame_len, ctx.fail)
        if (batch, frames) != tuple(y.shape[:2]):
            ctx.fail(f"the STFT gives {batch} x {frames} frames, the output is {list(y.shape)}")
        start, guard = str(step), ""
    else:
        frame_len, _ = stft_plan(sig_len, 1, window_len, frame_len, ctx.fail)
        frames = y.shape[1]
        start = "step"
        guard = (f"if (step < 1 || f * step + {frame_len} > {sig_len}) {{ /* past the signal: zeros */\n"
                 f"                memset(y, 0, {n_out * 2 * y.dtype.itemsize}); continue;\n            }}")
    if n_out != (frame_len // 2 + 1 if onesided else frame_len):
        ctx.fail(f"{n_out} bins do not match frame_length {frame_len} (onesided={int(onesided)})")
    unused = "    (void)in1;" + (" (void)in2;" if has_window else "") + (" (void)in3;" if ctx.has_input(3) else "")
    if batch * frames * n_out == 0:
        return unused + " (void)in0; (void)out0;"
    tr = Transform(ctx, frame_len, n_out)
    w = f" * (double){ctx.load(ctx.inputs[2].dtype, 'in2[t]')}" if has_window else ""
    re = f"(double){num.load('x[t * ' + str(c_in) + ']')}{w}"
    im = f"(double){num.load('x[t * 2 + 1]')}{w}" if c_in == 2 else "0.0"
    read_step = "" if step is not None else "\n    const int64_t step = (int64_t)in1[0];"
    return f"""{unused}{read_step}
{indent(tr.decls())}
    for (int64_t b = 0; b < {batch}; b++)
        for (int64_t f = 0; f < {frames}; f++) {{
            {num.c} *y = out0 + (b * {frames} + f) * {n_out * 2};
            {guard}
            const {num.c} *x = in0 + (b * {sig_len} + f * {start}) * {c_in};
            for (int64_t t = 0; t < {frame_len}; t++) {{ buf[2 * t] = {re}; buf[2 * t + 1] = {im}; }}
            {tr.call(str(frame_len), False)}
            for (int64_t k = 0; k < {n_out}; k++) {{
                y[2 * k] = {num.store('buf[2 * k]')}; y[2 * k + 1] = {num.store('buf[2 * k + 1]')};
            }}
        }}"""
