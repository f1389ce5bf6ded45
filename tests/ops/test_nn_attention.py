"""Attention (opsets 23-25) against ONNX Runtime, and ONNX's reference evaluator for what ORT lacks."""
import numpy as np
import pytest

from nn_helpers import check, import_only, randn, rng
from pdc.ir import PdcError
from tolerances import ACCUMULATED

B, SQ, SKV, D = 2, 3, 4, 8


def _qkv(hq=2, hkv=2, rank=4, dv=D, sq=SQ, skv=SKV):
    if rank == 4:
        return [("q", randn(B, hq, sq, D)), ("k", randn(B, hkv, skv, D)), ("v", randn(B, hkv, skv, dv))]
    return [("q", randn(B, sq, hq * D)), ("k", randn(B, skv, hkv * D)), ("v", randn(B, skv, hkv * dv))]


@pytest.mark.parametrize("heads", [(2, 2), (4, 2), (4, 1)])
@pytest.mark.parametrize("rank", [3, 4])
@pytest.mark.parametrize("attrs", [{}, {"is_causal": 1}, {"scale": 0.3}, {"softcap": 2.0}])
def test_attention(heads, rank, attrs):
    hq, hkv = heads
    if rank == 3:
        attrs = dict(attrs, q_num_heads=hq, kv_num_heads=hkv)
    check("Attention", _qkv(hq, hkv, rank, dv=6), attrs, opset=23, tolerance=ACCUMULATED)


@pytest.mark.parametrize("mask_shape", [(SQ, SKV), (2, SQ, SKV), (B, 1, SQ, SKV)])
@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_masks(mask_shape, dtype, causal):
    mask = rng.random(mask_shape) > 0.3 if dtype == np.bool_ else randn(*mask_shape)
    if dtype == np.bool_:
        mask[..., 0] = True  # keep every row attending something
    check("Attention", _qkv() + [("m", mask)], {"is_causal": causal}, opset=23, tolerance=ACCUMULATED)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_attention_kv_cache_and_qk_output(mode):
    past = [("pk", randn(B, 2, 5, D)), ("pv", randn(B, 2, 5, D))]
    inputs = _qkv() + [("m", randn(SQ, SKV + 5))] + past
    # ORT puts the lowest float where the causal mask has -inf in mode 2; ONNX's reference evaluator
    # softcaps mode 0's raw scores, against the spec: each oracle where it follows the spec
    check("Attention", inputs, {"qk_matmul_output_mode": mode, "softcap": 1.5, "is_causal": 1}, opset=23,
          n_out=4, tolerance=ACCUMULATED, oracle="ref" if mode == 2 else "ort")


def test_attention_fully_masked_row_is_zero():
    mask = np.ones((SQ, SKV), bool)
    mask[1] = False
    y, qk = check("Attention", _qkv() + [("m", mask)], {"qk_matmul_output_mode": 3}, opset=23, n_out=4,
                  oracle="ref", tolerance=ACCUMULATED)[::3]
    assert not np.isnan(y).any() and (y[:, :, 1] == 0).all() and (qk[:, :, 1] == 0).all()


def test_attention_external_cache_and_windows():
    nonpad = np.array([3, 4], np.int64)
    check("Attention", _qkv(4, 2) + [("m", randn(SQ, SKV)), ("", None), ("", None), ("n", nonpad)],
          {"is_causal": 1}, opset=24, oracle="ref", tolerance=ACCUMULATED)
    check("Attention", _qkv(sq=4, skv=6), {"left_window_size": 2, "right_window_size": 1}, opset=25,
          oracle="ref", tolerance=ACCUMULATED)


def test_attention_half_and_softmax_precision():
    inputs = [(n, a.astype(np.float16)) for n, a in _qkv()]
    check("Attention", inputs, {"is_causal": 1}, opset=23, tolerance=ACCUMULATED, oracle="ref")
    check("Attention", inputs, {"softmax_precision": 1}, opset=23, tolerance=ACCUMULATED, oracle="ref")


def test_attention_errors():
    with pytest.raises(PdcError, match="3-D inputs need the q_num_heads"):
        import_only("Attention", _qkv(rank=3), opset=23)
    with pytest.raises(PdcError, match="not a multiple of kv_num_heads"):
        import_only("Attention", _qkv(3, 2), opset=23)
    with pytest.raises(PdcError, match="past_key and past_value must be given together"):
        import_only("Attention", _qkv() + [("", None), ("pk", randn(B, 2, 5, D))], opset=23)
