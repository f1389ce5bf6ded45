"""Normalization ops against ONNX Runtime, across their opset forms."""
import numpy as np
import pytest

from nn_helpers import check, import_only, model_of, randn, rng, run_pdc
from pdc.ir import PdcError, UnsupportedError
from tolerances import ACCUMULATED, KERNEL, REDUCED


def _bn_inputs(xs, dtype=np.float32):
    c = xs[1]
    return [("x", randn(*xs, dtype=dtype)), ("s", randn(c, dtype=dtype)), ("b", randn(c, dtype=dtype)),
            ("m", randn(c, dtype=dtype)), ("v", rng.uniform(0.5, 2, c).astype(dtype))]


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("xs", [(2, 3), (2, 3, 5), (1, 4, 3, 3), (1, 2, 3, 2, 2)])
def test_batch_norm(opset, xs):
    check("BatchNormalization", _bn_inputs(xs), {"epsilon": 1e-3, "momentum": 0.8}, opset=opset)


def test_batch_norm_legacy_attrs_and_errors():
    check("BatchNormalization", _bn_inputs((1, 3, 4, 4)), {"spatial": 1}, opset=7)
    with pytest.raises(UnsupportedError, match="spatial=0"):
        import_only("BatchNormalization", _bn_inputs((1, 3, 4, 4)), {"spatial": 0}, opset=7)
    with pytest.raises(UnsupportedError, match="training_mode=1 is not supported"):
        import_only("BatchNormalization", _bn_inputs((1, 3, 4, 4)), {"training_mode": 1}, opset=15)
    with pytest.raises(UnsupportedError, match="training mode in opset 9"):
        import_only("BatchNormalization", _bn_inputs((1, 3, 4, 4)), opset=9, n_out=5)
    with pytest.raises(PdcError, match="scale has 2 values, X has 3 channels"):
        import_only("BatchNormalization", _bn_inputs((1, 3, 4))[:1] + _bn_inputs((1, 2, 4))[1:], opset=15)


def test_batch_norm_half():
    check("BatchNormalization", _bn_inputs((1, 3, 4, 4), np.float16), opset=15)


@pytest.mark.parametrize("xs", [(2, 3, 5), (1, 4, 3, 3), (1, 2, 3, 2, 2)])
def test_instance_norm(xs):
    check("InstanceNormalization", [("x", randn(*xs)), ("s", randn(xs[1])), ("b", randn(xs[1]))],
          {"epsilon": 1e-3}, opset=7, tolerance=KERNEL)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
@pytest.mark.parametrize("n_out", [1, 3])
def test_layer_norm(axis, n_out):
    xs = (2, 3, 4)
    tail = xs[axis % 3:]
    check("LayerNormalization", [("x", randn(*xs)), ("s", randn(*tail)), ("b", randn(*tail))],
          {"axis": axis, "epsilon": 1e-3}, opset=17, n_out=n_out, tolerance=KERNEL)


def test_layer_norm_no_bias_broadcast_scale_and_half():
    check("LayerNormalization", [("x", randn(2, 3, 4)), ("s", randn(4))], {"axis": 1}, opset=17, tolerance=KERNEL)
    check("LayerNormalization", [("x", randn(2, 3, 8, dtype=np.float16)), ("s", randn(8, dtype=np.float16)),
                                 ("b", randn(8, dtype=np.float16))], {}, opset=17, n_out=3, tolerance=ACCUMULATED)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_rms_norm(axis):
    xs = (2, 3, 4)
    check("RMSNormalization", [("x", randn(*xs)), ("s", randn(*xs[axis % 3:]))], {"axis": axis, "epsilon": 1e-3},
          opset=23, tolerance=KERNEL)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm_21(groups):
    # ORT cannot load GroupNormalization-21 one-node models here; ONNX's reference evaluator is the oracle
    xs = (2, 4, 3, 3)
    check("GroupNormalization", [("x", randn(*xs)), ("s", randn(4)), ("b", randn(4))],
          {"num_groups": groups, "epsilon": 1e-3}, opset=21, tolerance=KERNEL, oracle="ref")


def test_group_norm_18_per_group_params():
    # opset 18: one scale / bias per group, repeated per channel
    x, s, b = randn(2, 6, 3), randn(3), randn(3)
    want = check("GroupNormalization", [("x", x), ("s", s), ("b", b)], {"num_groups": 3}, opset=18,
                 consts=("s", "b"), oracle="ref", tolerance=KERNEL)
    got = check("GroupNormalization", [("x", x), ("s", np.repeat(s, 2)), ("b", np.repeat(b, 2))],
                {"num_groups": 3}, opset=21, tolerance=KERNEL, oracle="ref")
    REDUCED.check(got[0], want[0])
    with pytest.raises(UnsupportedError, match="needs a constant scale"):
        import_only("GroupNormalization", [("x", x), ("s", s), ("b", b)], {"num_groups": 3}, opset=18)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(size):
    check("LRN", [("x", randn(2, 6, 3, 3))], {"size": size, "alpha": 1e-2, "beta": 0.6, "bias": 2.0},
          opset=13, tolerance=KERNEL)


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size(size):
    # ORT takes odd sizes only: the spec's formula, channel by channel
    x = randn(2, 6, 3)
    (got,) = run_pdc(*model_of("LRN", [("x", x)], {"size": size, "alpha": 1e-2, "beta": 0.6, "bias": 2.0}, opset=13))
    want = np.empty_like(x)
    for c in range(6):
        lo, hi = max(0, c - (size - 1) // 2), min(5, c + size // 2)
        want[:, c] = x[:, c] / (2.0 + 1e-2 / size * np.square(x[:, lo:hi + 1]).sum(axis=1)) ** 0.6
    REDUCED.check(got, want)


@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [2, 3], [-1]])
def test_mvn(axes):
    check("MeanVarianceNormalization", [("x", randn(2, 3, 4, 5))], {} if axes is None else {"axes": axes},
          opset=13, tolerance=ACCUMULATED)  # the spec's E[X^2] - E[X]^2 cancels


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_lp_normalization(p, axis):
    x = randn(3, 4, 5)
    x[0, 0, :] = 0  # an all-zero slice along the last axis
    check("LpNormalization", [("x", x)], {"p": p, "axis": axis}, opset=11)


def test_lp_normalization_bad_p():
    with pytest.raises(UnsupportedError, match="p=3"):
        import_only("LpNormalization", [("x", randn(3, 4))], {"p": 3}, opset=11)
