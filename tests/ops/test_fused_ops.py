"""The ops the fusion and layout passes create: fused_elementwise, fused_attention and the NHWC variants.

Each is checked against its unfused form (the component ops on the reference interpreter), and
its verifier against malformed nodes.
"""
import numpy as np
import pytest

from pdc.ir import dtypes
from pdc.ir.errors import VerifyError
from pdc.ir.graph import Node, Value
from pdc.ir.interpreter import run_node
from pdc.ir.types import TensorType
from pdc.ir.verify import check_node_schema, infer_node
from tolerances import REDUCED, ROUNDED

RNG = np.random.default_rng(0)


def _run(op, arrays, attrs, consts=()):
    """Checks, infers and runs a one-node `op`; returns (result, inferred type)."""
    ins = [None if a is None else Value(f"i{i}", TensorType(dtypes.from_numpy(a.dtype), a.shape),
                                        a if i in consts else None) for i, a in enumerate(arrays)]
    node = Node(op, ins, [Value("y", None)], attrs)
    check_node_schema(node)
    node.outputs[0].type = infer_node(node)[0]
    return run_node(node, arrays)[0], node.outputs[0].type


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---- fused_elementwise --------------------------------------------------------------------------
def test_fused_elementwise_matches_its_steps():
    x, b = _f32(2, 3), _f32(3)
    y, t = _run("fused_elementwise", [x, b], {"ops": ["add", "leaky_relu", "mul"], "arity": [2, 1, 2],
                                              "args": [0, 1, -1, -2, 0], "step_attrs": ["", "alpha=0.1", ""]})
    z = x + b
    ROUNDED.check(y, np.where(z >= 0, z, np.float32(0.1) * z) * x)
    assert str(t) == "f32[2,3]"


def test_fused_elementwise_keeps_intermediate_dtypes():
    # the cast to int32 truncates in the middle of the program, as the unfused graph does
    x = np.array([1.7, -2.5, 3.2], np.float32)
    y, t = _run("fused_elementwise", [x], {"ops": ["cast", "cast", "mul"], "arity": [1, 1, 2],
                                           "args": [0, -1, -2, -2], "step_attrs": ["to=i32", "to=f32", ""]})
    np.testing.assert_array_equal(y, [1.0, 4.0, 9.0])
    assert str(t) == "f32[3]"


@pytest.mark.parametrize("attrs, message", [
    ({"ops": ["add"], "arity": [2], "args": [0, 2]}, "refers to input 2, but the node has 2"),
    ({"ops": ["exp", "neg"], "arity": [1, 1], "args": [-1, -1]}, "refers to step 0, not an earlier one"),
    ({"ops": ["exp"], "arity": [1], "args": [0]}, "input 1 is not used"),
    ({"ops": ["exp", "add"], "arity": [1, 2], "args": [0, 0, 1]}, "result of step 0 (exp) is never used"),
    ({"ops": ["matmul"], "arity": [2], "args": [0, 1]}, "'matmul' is not an elementwise op"),
    ({"ops": ["nope"], "arity": [2], "args": [0, 1]}, "unknown op 'nope'"),
    ({"ops": ["add"], "arity": [3], "args": [0, 1]}, "does not split"),
    ({"ops": ["add", "relu"], "arity": [2], "args": [0, 1]}, "one entry per step"),
    ({"ops": ["add"], "arity": [2], "args": [0, 1], "step_attrs": ["alpha=0.1"]}, "unknown attribute 'alpha'"),
    ({"ops": ["add"], "arity": [2], "args": [0, 1], "step_attrs": ["alpha="]}, "do not parse"),
    ({"ops": [], "arity": [], "args": []}, "no steps"),
])
def test_fused_elementwise_verifier(attrs, message):
    with pytest.raises(VerifyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run("fused_elementwise", [_f32(2, 3), _f32(2, 3)], attrs)


def test_fused_elementwise_reports_a_bad_broadcast_against_its_step():
    with pytest.raises(VerifyError, match=r"step 0 \(add\): shapes do not broadcast"):
        _run("fused_elementwise", [_f32(2, 3), _f32(4)], {"ops": ["add"], "arity": [2], "args": [0, 1]})


# ---- fused_attention ----------------------------------------------------------------------------
def _attention(q, k, v, mask, scale):
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == np.bool_ else s + mask
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def test_fused_attention_4d_with_mask_and_default_scale():
    q, k, v, m = _f32(2, 3, 5, 4), _f32(2, 3, 7, 4), _f32(2, 3, 7, 6), _f32(1, 1, 5, 7)
    y, t = _run("fused_attention", [q, k, v, m], {})
    REDUCED.check(y, _attention(q, k, v, m, 0.5))
    assert str(t) == "f32[2,3,5,6]"


def test_fused_attention_3d_splits_and_merges_heads():
    b, s, h, d = 2, 5, 4, 8
    q, k, v = _f32(b, s, h * d), _f32(b, s, h * d), _f32(b, s, h * d)
    mask = RNG.random((s, s)) > 0.3
    np.fill_diagonal(mask, True)
    y, t = _run("fused_attention", [q, k, v, mask], {"num_heads": h, "scale": 0.2})
    split = [x.reshape(b, s, h, d).transpose(0, 2, 1, 3) for x in (q, k, v)]
    want = _attention(*split, mask, 0.2).transpose(0, 2, 1, 3).reshape(b, s, h * d)
    REDUCED.check(y, want)
    assert str(t) == "f32[2,5,32]"


@pytest.mark.parametrize("arrays, attrs, message", [
    ([_f32(1, 4, 30), _f32(1, 4, 30), _f32(1, 4, 30)], {"num_heads": 4}, "not divisible by num_heads 4"),
    ([_f32(1, 4, 32), _f32(1, 4, 32), _f32(1, 4, 32)], {}, "must have rank 4"),
    ([_f32(1, 2, 4, 8), _f32(1, 2, 4, 6), _f32(1, 2, 4, 8)], {}, "head size differs"),
    ([_f32(1, 2, 4, 8), _f32(1, 2, 4, 8), _f32(1, 2, 4, 8), _f32(2, 2, 4, 4)], {}, "would grow the scores"),
    ([_f32(1, 2, 4, 8), _f32(1, 2, 4, 8), _f32(1, 2, 4, 8)], {"scale": float("nan")}, "scale must be finite"),
])
def test_fused_attention_verifier(arrays, attrs, message):
    with pytest.raises(VerifyError, match=message):
        _run("fused_attention", arrays, attrs)


# ---- NHWC variants ------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["OHWI", "HWIO", "OIHW"])
def test_conv_nhwc_matches_conv(layout):
    x, w, b = _f32(2, 6, 9, 9), _f32(4, 3, 3, 3), _f32(4)
    attrs = {"pads": [1, 0, 1, 2], "strides": [2, 1], "group": 2}
    want, _ = _run("conv", [x, w, b], attrs)
    got, t = _run("conv_nhwc", [x.transpose(0, 2, 3, 1), w.transpose(["OIHW".index(c) for c in layout]), b],
                  {**attrs, "weight_layout": layout})
    ROUNDED.check(got.transpose(0, 3, 1, 2), want)
    assert t.shape == want.transpose(0, 2, 3, 1).shape


@pytest.mark.parametrize("op, attrs", [
    ("max_pool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("average_pool", {"kernel_shape": [2, 3], "ceil_mode": 1, "strides": [2, 2]}),
    ("global_average_pool", {}),
    ("global_max_pool", {}),
])
def test_pool_nhwc_matches_pool(op, attrs):
    x = _f32(2, 3, 7, 8)
    want, _ = _run(op, [x], attrs)
    got, t = _run(op + "_nhwc", [x.transpose(0, 2, 3, 1)], attrs)
    ROUNDED.check(got.transpose(0, 3, 1, 2), want)
    assert t.shape == want.transpose(0, 2, 3, 1).shape


def test_batch_normalization_nhwc_matches_batch_normalization():
    x = _f32(2, 3, 4, 5)
    params = [_f32(3), _f32(3), _f32(3), np.abs(_f32(3)) + 0.1]
    want, _ = _run("batch_normalization", [x] + params, {"epsilon": 1e-3})
    got, _ = _run("batch_normalization_nhwc", [x.transpose(0, 2, 3, 1)] + params, {"epsilon": 1e-3})
    REDUCED.check(got.transpose(0, 3, 1, 2), want)


@pytest.mark.parametrize("op, arrays, attrs, message", [
    ("conv_nhwc", [_f32(1, 5, 5, 3), _f32(4, 3, 3, 3)], {"weight_layout": "OIHX"}, "weight_layout must order"),
    ("conv_nhwc", [_f32(1, 5, 5, 3), _f32(4, 3, 3, 2)], {}, "X has 3 channels but W expects 2"),
    ("max_pool_nhwc", [_f32(1, 5, 3)], {"kernel_shape": [2, 2]}, "rank 4"),
    ("batch_normalization_nhwc", [_f32(1, 2, 2, 3)] + [_f32(3)] * 4, {"training_mode": 1}, "training_mode must be 0"),
])
def test_nhwc_verifier(op, arrays, attrs, message):
    with pytest.raises(VerifyError, match=message):
        _run(op, arrays, attrs)
