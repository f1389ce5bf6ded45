"""Assorted math ops: Einsum, Det, NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""
from __future__ import annotations

import re
from typing import Optional

import numpy as np

from .. import dtypes
from ..errors import PdcError
from ..registry import REQUIRED, Attr, InferContext, register_op
from ..types import UNKNOWN, TensorType
from .common import broadcast_shapes

_NUMERIC = tuple(d for d in dtypes.ALL if d is not dtypes.bool_)
_TERM = re.compile(r"^[A-Za-z]*(\.\.\.)?[A-Za-z]*$")


def _half_to_f32(dt):
    return np.float32 if dt in (np.float16, dtypes.bfloat16.np) else dt


# ---- Einsum -------------------------------------------------------------------------------
class EinsumError(ValueError):
    pass


def parse_einsum(equation: str, n_inputs: int) -> tuple[list[str], str]:
    """The input terms and the explicit output term ('...' marks the broadcast dims)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != n_inputs:
        raise EinsumError(f"equation '{equation}' has {len(terms)} input terms for {n_inputs} inputs")
    for t in terms + ([rhs] if arrow else []):
        if not _TERM.match(t):
            raise EinsumError(f"equation '{equation}': term '{t}' must be letters with at most one '...'")
    if not arrow:
        # implicit output: the broadcast dims, then the labels used exactly once, sorted
        letters = "".join(t.replace("...", "") for t in terms)
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        rhs = ("..." if any("..." in t for t in terms) else "") + "".join(once)
    else:
        labels = rhs.replace("...", "")
        if len(set(labels)) != len(labels):
            raise EinsumError(f"equation '{equation}': output term '{rhs}' repeats a label")
        used = set("".join(terms))
        missing = [c for c in labels if c not in used]
        if missing:
            raise EinsumError(f"equation '{equation}': output label(s) {missing} appear in no input")
        if "..." in rhs and not any("..." in t for t in terms):
            raise EinsumError(f"equation '{equation}': output has '...' but no input does")
    return terms, rhs


def _merge_dim(label, old, d):
    """One label seen with sizes old and d (size-1 dims broadcast, as in numpy)."""
    if old is None or old == d or old == 1 or old == UNKNOWN:
        return d if old is None or d != 1 else old
    if d == 1 or d == UNKNOWN:
        return old
    if isinstance(old, int) and isinstance(d, int):
        raise EinsumError(f"label '{label}' has sizes {old} and {d}")
    return old if isinstance(old, int) else d if isinstance(d, int) else UNKNOWN


def einsum_shape(terms: list[str], rhs: str, shapes: list) -> Optional[tuple]:
    """The output shape; None when an input's rank (needed for '...') is unknown."""
    sizes: dict[str, object] = {}
    ell_shapes = []
    for term, shape in zip(terms, shapes):
        labels = term.replace("...", "")
        if shape is None:
            if "..." in term:
                return None
            continue
        if "..." in term:
            n_ell = len(shape) - len(labels)
            if n_ell < 0:
                raise EinsumError(f"term '{term}' has more labels than its input's rank {len(shape)}")
            pos = term.index("...")
            ell_shapes.append(tuple(shape[pos:pos + n_ell]))
            dims = list(shape[:pos]) + list(shape[pos + n_ell:])
        else:
            if len(labels) != len(shape):
                raise EinsumError(f"term '{term}' has {len(labels)} labels for an input of rank {len(shape)}")
            dims = list(shape)
        for c, d in zip(labels, dims):
            sizes[c] = _merge_dim(c, sizes.get(c), d)
    ell = broadcast_shapes(ell_shapes) if ell_shapes else ()
    out = []
    for part in re.split(r"(\.\.\.)", rhs):
        if part == "...":
            out.extend(ell)
        else:
            out.extend(sizes.get(c, UNKNOWN) for c in part)
    return tuple(out)


def _einsum_infer(ctx: InferContext):
    dts = {t.dtype for t in ctx.types}
    if len(dts) != 1:
        ctx.fail(f"inputs must share one dtype, got {sorted(map(str, dts))}")
    dt = dts.pop()
    if dt not in _NUMERIC:
        ctx.fail(f"dtype {dt} is not numeric")
    try:
        terms, rhs = parse_einsum(ctx.attrs["equation"], len(ctx.types))
        shape = einsum_shape(terms, rhs, [t.shape for t in ctx.types])
    except (EinsumError, ValueError) as e:
        ctx.fail(str(e))
    return [TensorType(dt, shape)]


def _einsum_reference(inputs, attrs):
    terms, rhs = parse_einsum(attrs["equation"], len(inputs))
    dt = inputs[0].dtype
    wd = _half_to_f32(dt)
    out = np.einsum(",".join(terms) + "->" + rhs, *[x.astype(wd, copy=False) for x in inputs])
    return np.asarray(out).astype(dt)


register_op("einsum", ["Inputs*"], ["Output"], onnx="Einsum", attrs={"equation": Attr("string", REQUIRED)},
            infer=_einsum_infer, reference=_einsum_reference,
            doc="ONNX Einsum: Einstein summation over the inputs (explicit or implicit output, '...' broadcast).")


# ---- Det ----------------------------------------------------------------------------------
def _det_infer(ctx: InferContext):
    t = ctx.types[0]
    if not t.dtype.is_float:
        ctx.fail(f"input must be a float tensor, got {t.dtype}")
    if t.shape is None:
        return [TensorType(t.dtype, None)]
    if len(t.shape) < 2:
        ctx.fail(f"input must have rank >= 2, got {t}")
    a, b = t.shape[-2:]
    if isinstance(a, int) and isinstance(b, int) and a != b:
        ctx.fail(f"the last two dims must be equal (square matrices), got {t}")
    return [TensorType(t.dtype, t.shape[:-2])]


def _det_reference(inputs, attrs):
    x = inputs[0]
    return np.asarray(np.linalg.det(x.astype(_half_to_f32(x.dtype), copy=False))).astype(x.dtype)


register_op("det", ["X"], ["Y"], onnx="Det", infer=_det_infer, reference=_det_reference,
            doc="ONNX Det: determinants of the square matrices in the last two dims.")


# ---- NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss ------------------------------------
_REDUCTIONS = ("none", "sum", "mean")
_LOSS_ATTRS = {"ignore_index": Attr("int", None), "reduction": Attr("string", "mean")}


def _loss_infer(ctx: InferContext, *, with_log_prob: bool):
    x, target = ctx.types[0], ctx.types[1]
    if not x.dtype.is_float:
        ctx.fail(f"input must be a float tensor, got {x.dtype}")
    if target.dtype not in (dtypes.int32, dtypes.int64):
        ctx.fail(f"target must be int32 or int64, got {target.dtype}")
    if ctx.has_input(2) and ctx.types[2].dtype is not x.dtype:
        ctx.fail(f"weight has dtype {ctx.types[2].dtype}, input has {x.dtype}")
    reduction = ctx.attrs.get("reduction", "mean")
    if reduction not in _REDUCTIONS:
        ctx.fail(f"reduction '{reduction}' must be one of {', '.join(_REDUCTIONS)}")
    xs, ts = x.shape, target.shape
    if xs is not None and len(xs) < 2:
        ctx.fail(f"input must have rank >= 2 ([N, C, ...]), got {x}")
    if xs is not None and ts is not None:
        if len(ts) != len(xs) - 1:
            ctx.fail(f"target {target} must have rank {len(xs) - 1} for input {x}")
        for a, b in zip(ts, (xs[0],) + tuple(xs[2:])):
            if isinstance(a, int) and isinstance(b, int) and a != b:
                ctx.fail(f"target {target} does not match input {x} (expected [N, d1, ...])")
    if reduction != "none":
        loss = TensorType(x.dtype, ())
    else:
        loss = TensorType(x.dtype, ts if ts is not None else None if xs is None else (xs[0],) + tuple(xs[2:]))
    return [loss, x] if with_log_prob else [loss]


def _nll(logp: np.ndarray, target: np.ndarray, weight, attrs) -> np.ndarray:
    """The loss in logp's dtype; entries whose target is ignore_index weigh 0."""
    C = logp.shape[1]
    t = target.astype(np.int64)
    ignore = attrs.get("ignore_index")
    valid = np.ones(t.shape, bool) if ignore is None else t != ignore
    if np.any(valid & ((t < 0) | (t >= C))):
        raise PdcError(f"loss target values must lie in [0, {C}) (or equal ignore_index)")
    safe = np.where(valid, t, 0)
    picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    w = np.ones(t.shape, logp.dtype) if weight is None else weight.astype(logp.dtype)[safe]
    w = np.where(valid, w, 0).astype(logp.dtype)
    loss = -picked * w
    reduction = attrs.get("reduction", "mean")
    if reduction == "sum":
        return np.asarray(loss.sum())
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(loss.sum() / w.sum())  # a weighted mean over the non-ignored entries
    return loss


def _nll_reference(inputs, attrs):
    x, target = inputs[0], inputs[1]
    weight = inputs[2] if len(inputs) > 2 else None
    wd = _half_to_f32(x.dtype)
    return _nll(x.astype(wd), target, weight, attrs).astype(x.dtype)


def _sce_reference(inputs, attrs):
    x, target = inputs[0], inputs[1]
    weight = inputs[2] if len(inputs) > 2 else None
    xw = x.astype(_half_to_f32(x.dtype))
    shifted = xw - np.max(xw, axis=1, keepdims=True)
    log_prob = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return [_nll(log_prob, target, weight, attrs).astype(x.dtype), log_prob.astype(x.dtype)]


register_op("negative_log_likelihood_loss", ["input", "target", "weight?"], ["loss"],
            onnx="NegativeLogLikelihoodLoss", attrs=dict(_LOSS_ATTRS),
            infer=lambda ctx: _loss_infer(ctx, with_log_prob=False), reference=_nll_reference,
            doc="ONNX NegativeLogLikelihoodLoss: -input[n, target[n, d...], d...] * weight, reduced by "
                "`reduction` (mean = weighted mean over entries whose target is not ignore_index).")
register_op("softmax_cross_entropy_loss", ["scores", "labels", "weights?"], ["output", "log_prob?"],
            onnx="SoftmaxCrossEntropyLoss", attrs=dict(_LOSS_ATTRS),
            infer=lambda ctx: _loss_infer(ctx, with_log_prob=True)[:ctx.num_outputs], reference=_sce_reference,
            doc="ONNX SoftmaxCrossEntropyLoss: NegativeLogLikelihoodLoss of log_softmax(scores, axis=1); "
                "optionally also returns the log probabilities.")
