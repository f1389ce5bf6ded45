"""Recurrent layers: LSTM, GRU and RNN, exactly as the ONNX spec defines them.

Shared conventions (ONNX):
- layout 0: X [seq, batch, input], Y [seq, num_directions, batch, hidden], Y_h/Y_c and
  initial_h/initial_c [num_directions, batch, hidden]; layout 1 puts batch first in all of them.
- W [num_directions, gates*hidden, input], R [num_directions, gates*hidden, hidden],
  B [num_directions, 2*gates*hidden] (input biases, then recurrence biases).
- Gate order: LSTM i, o, f, c (peepholes P: i, o, f); GRU z, r, h; RNN one gate.
- `clip` bounds every gate pre-activation to [-clip, clip].
- sequence_lens: batch entry b runs over its first L_b steps only (the reverse direction starts at
  step L_b - 1); Y is zero past L_b, and Y_h / Y_c hold the last computed state, zero when L_b = 0
  (as ONNX Runtime does).
- activation_alpha / activation_beta are consumed in order, only by the activations that take
  them (as ONNX Runtime does). LeakyRelu, HardSigmoid and Elu fall back to their ONNX defaults;
  Affine, ScaledTanh and ThresholdedRelu have no agreed default and need explicit values.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import dtypes
from ..errors import PdcError
from ..registry import Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType

_FLOATS = (dtypes.float32, dtypes.float64, dtypes.float16, dtypes.bfloat16)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _elu(x, a):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0)))


# name (lower case) -> (function(x, alpha, beta), number of alphas, number of betas, default alpha, default beta)
ACTIVATIONS = {
    "relu": (lambda x, a, b: np.maximum(x, 0), 0, 0, None, None),
    "tanh": (lambda x, a, b: np.tanh(x), 0, 0, None, None),
    "sigmoid": (lambda x, a, b: _sigmoid(x), 0, 0, None, None),
    "affine": (lambda x, a, b: a * x + b, 1, 1, None, None),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 1, 0, 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0), 1, 0, None, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1, 1, None, None),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 1, 1, 0.2, 0.5),
    "elu": (lambda x, a, b: _elu(x, a), 1, 0, 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), 0, 0, None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), 0, 0, None, None),
}

# op -> (gates, activations per direction, default activations)
_KINDS = {
    "lstm": (4, 3, ["Sigmoid", "Tanh", "Tanh"]),
    "gru": (3, 2, ["Sigmoid", "Tanh"]),
    "rnn": (1, 1, ["Tanh"]),
}

_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


class ActivationError(ValueError):
    pass


def resolve_activations(op: str, attrs: dict) -> list[tuple]:
    """[(fn, alpha, beta)] per activation slot (directions concatenated); ActivationError if invalid."""
    direction = attrs.get("direction", "forward")
    ndir = _DIRECTIONS[direction]
    _, per_dir, default = _KINDS[op]
    names = attrs.get("activations")
    if names is None:
        names = default * ndir
    if len(names) != per_dir * ndir:
        raise ActivationError(f"activations must list {per_dir * ndir} functions for direction '{direction}', "
                              f"got {len(names)}")
    specs = []
    for n in names:
        if n.lower() not in ACTIVATIONS:
            raise ActivationError(f"activation '{n}' is not one of the RNN activation functions "
                                  f"({', '.join(sorted(ACTIVATIONS))})")
        specs.append(ACTIVATIONS[n.lower()])
    alphas = _consume(names, specs, list(attrs.get("activation_alpha") or []), 1, 3, "activation_alpha")
    betas = _consume(names, specs, list(attrs.get("activation_beta") or []), 2, 4, "activation_beta")
    return [(s[0], a, b) for s, a, b in zip(specs, alphas, betas)]


def _consume(names, specs, values, count_at, default_at, attr):
    """Hands `values` out in order to the activations that take one; defaults fill the rest."""
    out, it = [], 0
    for n, s in zip(names, specs):
        if not s[count_at]:
            out.append(None)
        elif it < len(values):
            out.append(values[it])
            it += 1
        elif s[default_at] is not None:
            out.append(s[default_at])
        else:
            raise ActivationError(f"activation '{n}' needs a value in {attr} (it has no agreed default)")
    if it < len(values):
        # More values than takers: only accept the one-value-per-activation reading when it agrees.
        positional = len(values) == len(names) and all(
            o is None or o == v for o, v in zip(out, values))
        if not positional:
            raise ActivationError(f"{attr} has {len(values)} values but the activations "
                                  f"{list(names)} take {it}; cannot tell which value belongs to which")
    return out


# ---- type inference -----------------------------------------------------------------------
def _dim(shape, i):
    return UNKNOWN if shape is None else shape[i]


def _check_dim(ctx, what, got, want):
    if isinstance(got, int) and isinstance(want, int) and got != want:
        ctx.fail(f"{what} is {got}, expected {want}")


def rnn_infer(op: str):
    gates = _KINDS[op][0]

    def infer(ctx: InferContext):
        x = ctx.types[0]
        if x.dtype not in _FLOATS:
            ctx.fail(f"X has dtype {x.dtype}, expected a float type")
        for i in range(1, len(ctx.types)):
            t = ctx.types[i]
            if t is None:
                continue
            want = dtypes.int32 if i == 4 else x.dtype
            if t.dtype is not want:
                ctx.fail(f"input {i} has dtype {t.dtype}, expected {want}")
            if t.shape is not None and len(t.shape) != (1 if i == 4 else 2 if i in (3, 7) else 3):
                ctx.fail(f"input {i} has rank {len(t.shape)}")
        direction = ctx.attrs.get("direction", "forward")
        if direction not in _DIRECTIONS:
            ctx.fail(f"direction '{direction}' must be forward, reverse or bidirectional")
        layout = ctx.attrs.get("layout", 0)
        if layout not in (0, 1):
            ctx.fail(f"layout must be 0 or 1, got {layout}")
        if op == "gru" and ctx.attrs.get("linear_before_reset", 0) not in (0, 1):
            ctx.fail(f"linear_before_reset must be 0 or 1, got {ctx.attrs['linear_before_reset']}")
        if op == "lstm" and ctx.attrs.get("input_forget", 0) not in (0, 1):
            ctx.fail(f"input_forget must be 0 or 1, got {ctx.attrs['input_forget']}")
        clip = ctx.attrs.get("clip")
        if clip is not None and clip < 0:
            ctx.fail(f"clip must be non-negative, got {clip}")
        try:
            resolve_activations(op, ctx.attrs)
        except ActivationError as e:
            ctx.fail(str(e))
        ndir = _DIRECTIONS[direction]
        xs, ws, rs = x.shape, ctx.types[1].shape, ctx.types[2].shape
        if xs is not None and len(xs) != 3:
            ctx.fail(f"X must have rank 3, got {x}")
        hidden = ctx.attrs.get("hidden_size")
        if hidden is None:
            hidden = _dim(rs, 2)
        else:
            _check_dim(ctx, "R's last dim", _dim(rs, 2), hidden)
        seq, batch = (_dim(xs, 0), _dim(xs, 1)) if layout == 0 else (_dim(xs, 1), _dim(xs, 0))
        _check_dim(ctx, "W's first dim (num_directions)", _dim(ws, 0), ndir)
        _check_dim(ctx, "R's first dim (num_directions)", _dim(rs, 0), ndir)
        if isinstance(hidden, int):
            _check_dim(ctx, "W's second dim", _dim(ws, 1), gates * hidden)
            _check_dim(ctx, "R's second dim", _dim(rs, 1), gates * hidden)
            if ctx.has_input(3):
                _check_dim(ctx, "B's second dim", _dim(ctx.types[3].shape, 1), 2 * gates * hidden)
            if op == "lstm" and ctx.has_input(7):
                _check_dim(ctx, "P's second dim", _dim(ctx.types[7].shape, 1), 3 * hidden)
        _check_dim(ctx, "W's last dim (input_size)", _dim(ws, 2), _dim(xs, 2))
        if ctx.has_input(4):
            _check_dim(ctx, "sequence_lens' length", _dim(ctx.types[4].shape, 0), batch)
        if layout == 0:
            y = (seq, ndir, batch, hidden)
            yh = (ndir, batch, hidden)
        else:
            y = (batch, seq, ndir, hidden)
            yh = (batch, ndir, hidden)
        for i in (5, 6):
            if ctx.has_input(i) and ctx.types[i].shape is not None:
                for a, b in zip(ctx.types[i].shape, yh):
                    _check_dim(ctx, f"input {i}'s shape {ctx.types[i].shape}", a, b)
        return [TensorType(x.dtype, s) for s in (y, yh, yh)][:ctx.num_outputs]
    return infer


# ---- reference ----------------------------------------------------------------------------
def _clipper(clip: Optional[float]):
    if clip is None:
        return lambda v: v
    return lambda v: np.clip(v, -clip, clip)


def _lstm_cell(p, acts, clip, attrs):
    (f, fa, fb), (g, ga, gb), (h, ha, hb) = acts
    input_forget = attrs.get("input_forget", 0)
    pi, po, pf = p

    def step(x_proj, h_prev, c_prev, R, rb):
        gates = x_proj + h_prev @ R.T + rb
        i, o, fg, c = np.split(gates, 4, axis=-1)
        i = f(clip(i + pi * c_prev), fa, fb)
        if input_forget:
            fg = 1 - i  # the forget gate is coupled to the input gate
        else:
            fg = f(clip(fg + pf * c_prev), fa, fb)
        c = g(clip(c), ga, gb)
        c_new = fg * c_prev + i * c
        o = f(clip(o + po * c_new), fa, fb)
        return o * h(c_new, ha, hb), c_new
    return step


def _gru_cell(acts, clip, attrs):
    (f, fa, fb), (g, ga, gb) = acts
    lbr = attrs.get("linear_before_reset", 0)

    def step(x_proj, h_prev, c_prev, R, rb):
        # the recurrence bias of h sits inside the reset product when linear_before_reset
        xz, xr, xh = np.split(x_proj, 3, axis=-1)
        rz, rr, rh = np.split(R, 3, axis=0)
        bz, br, bh = np.split(rb, 3)
        z = f(clip(xz + h_prev @ rz.T + bz), fa, fb)
        r = f(clip(xr + h_prev @ rr.T + br), fa, fb)
        if lbr:
            hh = g(clip(xh + r * (h_prev @ rh.T + bh)), ga, gb)
        else:
            hh = g(clip(xh + (r * h_prev) @ rh.T + bh), ga, gb)
        return (1 - z) * hh + z * h_prev, None
    return step


def _rnn_cell(acts, clip):
    ((f, fa, fb),) = acts

    def step(x_proj, h_prev, c_prev, R, rb):
        return f(clip(x_proj + h_prev @ R.T + rb), fa, fb), None
    return step


def _work_dtype(dt):
    return np.float32 if dt in (np.float16, dtypes.bfloat16.np) else dt


def rnn_reference(op: str):
    gates, per_dir, _ = _KINDS[op]

    def reference(inputs, attrs):
        inputs = list(inputs) + [None] * (8 - len(inputs))
        X, W, R, B, seq_lens, init_h, init_c, P = inputs
        out_dt = X.dtype
        wd = _work_dtype(out_dt)
        layout = attrs.get("layout", 0)
        if layout:
            X = X.swapaxes(0, 1)
            init_h = None if init_h is None else init_h.swapaxes(0, 1)
            init_c = None if init_c is None else init_c.swapaxes(0, 1)
        X, W, R = X.astype(wd), W.astype(wd), R.astype(wd)
        T, N, _ = X.shape
        ndir, hidden = W.shape[0], R.shape[-1]
        direction = attrs.get("direction", "forward")
        acts = resolve_activations(op, attrs)
        clip = _clipper(attrs.get("clip"))
        lens = np.full(N, T, np.int64) if seq_lens is None else seq_lens.astype(np.int64)
        if np.any(lens < 0) or np.any(lens > T):
            raise PdcError(f"sequence_lens {lens.tolist()} must lie in [0, {T}]")
        B = np.zeros((ndir, 2 * gates * hidden), wd) if B is None else B.astype(wd)
        zeros = np.zeros((ndir, N, hidden), wd)
        init_h = zeros if init_h is None else init_h.astype(wd)
        init_c = zeros if init_c is None else init_c.astype(wd)
        P = np.zeros((ndir, 3 * hidden), wd) if P is None else P.astype(wd)

        Y = np.zeros((T, ndir, N, hidden), wd)
        Y_h = np.zeros((ndir, N, hidden), wd)
        Y_c = np.zeros((ndir, N, hidden), wd)
        batch = np.arange(N)
        for d in range(ndir):
            reverse = direction == "reverse" or d == 1
            dir_acts = acts[d * per_dir:(d + 1) * per_dir]
            wb, rb = np.split(B[d], 2)
            if op == "lstm":
                step = _lstm_cell(np.split(P[d], 3), dir_acts, clip, attrs)
            elif op == "gru":
                step = _gru_cell(dir_acts, clip, attrs)
            else:
                step = _rnn_cell(dir_acts, clip)
            x_proj = X @ W[d].T + wb  # [T, N, gates*hidden], input biases included
            h, c = init_h[d], init_c[d]
            for s in range(T):
                active = s < lens
                t = np.where(active, lens - 1 - s if reverse else s, 0)
                h_new, c_new = step(x_proj[t, batch], h, c, R[d], rb)
                h = np.where(active[:, None], h_new, h)
                if c_new is not None:
                    c = np.where(active[:, None], c_new, c)
                Y[t[active], d, batch[active]] = h_new[active]
            done = lens > 0  # zero-length sequences report zero states
            Y_h[d] = np.where(done[:, None], h, 0)
            Y_c[d] = np.where(done[:, None], c, 0)
        if layout:
            Y = Y.transpose(2, 0, 1, 3)
            Y_h, Y_c = Y_h.swapaxes(0, 1), Y_c.swapaxes(0, 1)
        return [Y.astype(out_dt), Y_h.astype(out_dt), Y_c.astype(out_dt)]
    return reference


_COMMON_ATTRS = {
    "activation_alpha": Attr("floats", None),
    "activation_beta": Attr("floats", None),
    "activations": Attr("strings", None),
    "clip": Attr("float", None),
    "direction": Attr("string", "forward"),
    "hidden_size": Attr("int", None),
    "layout": Attr("int", 0),
}

register_op("lstm", ["X", "W", "R", "B?", "sequence_lens?", "initial_h?", "initial_c?", "P?"],
            ["Y?", "Y_h?", "Y_c?"], onnx="LSTM",
            attrs={**_COMMON_ATTRS, "input_forget": Attr("int", 0)},
            infer=rnn_infer("lstm"), reference=rnn_reference("lstm"),
            doc="ONNX LSTM: one LSTM layer (gates i, o, f, c; optional peepholes), forward/reverse/bidirectional.")
register_op("gru", ["X", "W", "R", "B?", "sequence_lens?", "initial_h?"], ["Y?", "Y_h?"], onnx="GRU",
            attrs={**_COMMON_ATTRS, "linear_before_reset": Attr("int", 0)},
            infer=rnn_infer("gru"), reference=rnn_reference("gru"),
            doc="ONNX GRU: one GRU layer (gates z, r, h), forward/reverse/bidirectional.")
register_op("rnn", ["X", "W", "R", "B?", "sequence_lens?", "initial_h?"], ["Y?", "Y_h?"], onnx="RNN",
            attrs=dict(_COMMON_ATTRS),
            infer=rnn_infer("rnn"), reference=rnn_reference("rnn"),
            doc="ONNX RNN: one simple recurrent layer, forward/reverse/bidirectional.")
