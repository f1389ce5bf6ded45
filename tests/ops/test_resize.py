"""Resize / Upsample / CenterCropPad against ONNX Runtime.

Where ORT departs from ONNX's reference (whose outputs are the conformance test data), the test
uses the reference evaluator: align_corners and tf_crop_and_resize with a fractional scale * length
(ORT uses the integer output length), and linear exclude_outside without antialias (ORT refuses it).
"""
import itertools

import numpy as np
import pytest

from pdc.ir.errors import PdcError, UnsupportedError
from tolerances import ACCUMULATED
from tensor_helpers import check, make_model, pdc_graph, randn, run_oracle, run_pdc

COORDS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
          "tf_crop_and_resize"]
TARGETS = [("scales", [1, 1, 0.6, 1.7]), ("scales", [1, 1, 2, 3]), ("sizes", [1, 2, 3, 9]), ("sizes", [1, 2, 1, 1]),
           ("scales", [1, 1, 0.34, 0.5])]
X = randn(1, 2, 5, 7)
ROI = np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 0.8], np.float32)


def resize_inputs(x, kind, val, roi=None, empty_scales=False):
    inputs = [("x", x), ("roi", np.zeros(0, np.float32) if roi is None else roi)]
    if kind == "scales":
        return inputs + [("s", np.array(val, np.float32))]
    return inputs + [("s", np.zeros(0, np.float32)) if empty_scales else ("", None), ("z", np.array(val, np.int64))]


def _fractional(x, kind, val):
    return kind == "scales" and any(s * n != int(s * n) for s, n in zip(val, x.shape))


def _oracle(mode, coord, target, antialias, exclude):
    """Which oracle to trust: ONNX Runtime, ONNX's reference where ORT deviates from the spec, or
    None where neither is right (the reference mis-samples some exact integer coordinates for
    half_pixel_symmetric and tests `length_resized > 1` on the fractional length for
    pytorch_half_pixel); those combinations are left out."""
    oracle = "ort"
    if coord in ("align_corners", "tf_crop_and_resize") and _fractional(X, *target):
        oracle = "ref"
    if mode == "linear" and exclude and not antialias:
        oracle = "ref"
    if coord in ("half_pixel_symmetric", "pytorch_half_pixel") and oracle == "ref":
        return None
    return oracle


CASES = [(m, c, t, aa, ex) for m, c, t, aa, ex in itertools.product(["nearest", "linear", "cubic"], COORDS, TARGETS,
                                                                     [0, 1], [0, 1])
         if (m != "nearest" or not (aa or ex)) and _oracle(m, c, t, aa, ex)]


@pytest.mark.parametrize("mode,coord,target,antialias,exclude", CASES)
def test_resize_modes(mode, coord, target, antialias, exclude):
    kind, val = target
    attrs = dict(mode=mode, coordinate_transformation_mode=coord, antialias=antialias, exclude_outside=exclude,
                 extrapolation_value=-1.5)
    roi = ROI if coord == "tf_crop_and_resize" else None
    oracle = _oracle(mode, coord, target, antialias, exclude)
    check("Resize", resize_inputs(X, kind, val, roi), attrs, opset=19, consts=("roi", "s", "z"), oracle=oracle,
          tolerance=ACCUMULATED)  # antialiased windows: long sums


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"])
@pytest.mark.parametrize("target", [("scales", [1, 1, 2.5, 1.5]), ("sizes", [1, 2, 2, 3]), ("sizes", [1, 2, 8, 9])])
def test_resize_nearest_modes(nearest_mode, coord, target):
    oracle = "ref" if coord == "align_corners" and _fractional(X, *target) else "ort"
    check("Resize", resize_inputs(X, *target), dict(mode="nearest", nearest_mode=nearest_mode,
                                                    coordinate_transformation_mode=coord),
          opset=19, consts=("roi", "s", "z"), oracle=oracle)


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("axes", [[2, 3], [3, 2], [-1]])
def test_resize_axes_and_policy(policy, axes):
    sizes = [4, 9][:len(axes)]
    inputs = [("x", X), ("", None), ("", None), ("z", np.array(sizes, np.int64))]
    if axes == [-1]:  # ORT (and ONNX's reference) do not normalize a negative axis here: compare with axes=[3]
        got, _ = run_pdc(*make_model("Resize", inputs, dict(mode="linear", axes=axes, keep_aspect_ratio_policy=policy),
                                     opset=19, consts=("z",)))
        want, _ = run_pdc(*make_model("Resize", inputs, dict(mode="linear", axes=[3], keep_aspect_ratio_policy=policy),
                                      opset=19, consts=("z",)))
        np.testing.assert_array_equal(got[0], want[0])
        assert got[0].shape == (1, 2, 5, 4)
    else:
        check("Resize", inputs, dict(mode="linear", axes=axes, keep_aspect_ratio_policy=policy), opset=19,
              consts=("z",))
    check("Resize", [("x", X), ("", None), ("s", np.array([2.0, 0.5][:len(axes)], np.float32))],
          dict(mode="cubic", axes=axes), opset=19, consts=("s",))


def test_resize_tf_crop_axes():
    check("Resize", [("x", X), ("roi", np.array([0.1, 0.2, 0.9, 0.7], np.float32)), ("", None),
                     ("z", np.array([3, 4], np.int64))],
          dict(mode="linear", axes=[3, 2], coordinate_transformation_mode="tf_crop_and_resize",
               extrapolation_value=3.0), opset=19, consts=("roi", "z"))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_resize_ints_and_opset11(mode, dt):
    """Integer outputs truncate, as ONNX Runtime does (ORT has no integer cubic: the reference rounds there)."""
    x = np.random.default_rng(1).integers(-128 if dt == np.int8 else 0, 127, (1, 1, 4, 5)).astype(dt)
    inputs = resize_inputs(x, "sizes", [1, 1, 7, 3], empty_scales=True)
    if mode == "linear" and dt == np.int8:
        # exact-integer results land on either side in ORT's float32 arithmetic: allow off-by-one
        model, feeds = make_model("Resize", inputs, {"mode": mode}, opset=11, consts=("roi", "s", "z"))
        (got,), _ = run_pdc(model, feeds)
        want = run_oracle(model, feeds)[0]
        assert np.abs(got.astype(int) - want).max() <= 1
    elif mode != "cubic":
        check("Resize", inputs, {"mode": mode}, opset=11, consts=("roi", "s", "z"))
    check("Resize", resize_inputs(X, "scales", [1, 1, 2, 3]), {"mode": mode,
                                                              "coordinate_transformation_mode": "align_corners"},
          opset=13, consts=("roi", "s"))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 1.5, 2.5]])
def test_resize_opset10_and_upsample(mode, scales):
    s = np.array(scales, np.float32)
    check("Resize", [("x", X), ("s", s)], {"mode": mode}, opset=10, consts=("s",))
    check("Upsample", [("x", X), ("s", s)], {"mode": mode}, opset=9, consts=("s",))
    check("Upsample", [("x", X)], {"mode": mode, "scales": [float(v) for v in scales]}, opset=7)


def test_resize_opset10_downsample_floors():
    """Opset 10 samples at x / scale rounded down (ONNX's version converter; ORT rounds up here)."""
    x = np.arange(8, dtype=np.float32).reshape(1, 8)
    model, feeds = make_model("Resize", [("x", x), ("s", np.array([1, 0.375], np.float32))], {"mode": "nearest"},
                              opset=10, consts=("s",))
    (got,), _ = run_pdc(model, feeds)
    np.testing.assert_array_equal(got, [[0, 2, 5]])


def test_resize_infer():
    g = pdc_graph("Resize", resize_inputs(X, "scales", [1, 1, 0.6, 1.7]), {}, opset=19, consts=("roi", "s"))
    assert g.outputs[0].type.shape == (1, 2, 3, 11)
    g = pdc_graph("Resize", resize_inputs(X, "sizes", [2, 9]), {"axes": [1, 3]}, opset=19)
    assert g.outputs[0].type.shape[::2] == (1, 5)  # sizes not constant: only the axes not resized are known


def test_resize_errors():
    with pytest.raises(UnsupportedError, match="mode 'area' is not supported"):
        pdc_graph("Resize", resize_inputs(X, "scales", [1, 1, 2, 2]), {"mode": "area"}, opset=19, consts=("s",))
    with pytest.raises(UnsupportedError, match="coordinate_transformation_mode 'bogus' is not supported"):
        pdc_graph("Resize", resize_inputs(X, "scales", [1, 1, 2, 2]), {"coordinate_transformation_mode": "bogus"},
                  opset=19, consts=("s",))
    inputs = [("x", X), ("", None), ("s", np.ones(4, np.float32)), ("z", np.ones(4, np.int64))]
    with pytest.raises(PdcError, match="exactly one of scales and sizes"):
        pdc_graph("Resize", inputs, {}, opset=19, consts=("s", "z"))
    with pytest.raises(PdcError, match="scales has 3 entries for 4 axes"):
        pdc_graph("Resize", resize_inputs(X, "scales", [1, 2, 2]), {}, opset=19, consts=("s",))


@pytest.mark.parametrize("shape,axes", [([3, 4, 6], None), ([2, 8], [1, 2]), ([5], [-1]), ([2, 2, 9], [0, 1, 2])])
def test_center_crop_pad(shape, axes):
    x = randn(4, 5, 7)
    check("CenterCropPad", [("x", x), ("s", np.array(shape, np.int64))], {} if axes is None else {"axes": axes},
          consts=("s",))
