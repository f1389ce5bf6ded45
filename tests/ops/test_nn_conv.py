"""Conv, ConvTranspose, ConvInteger and the pooling ops against ONNX Runtime."""
import numpy as np
import pytest

from nn_helpers import check, import_only, model_of, randn, rng, run_pdc
from pdc.ir import PdcError
from tolerances import ACCUMULATED, IDENTICAL, KERNEL, ROUNDED


# ---- Conv ------------------------------------------------------------------------------------
CONV_CASES = [
    # x shape, w shape, attrs
    ((1, 3, 9), (4, 3, 3), {}),
    ((2, 3, 11), (4, 3, 3), {"strides": [2], "pads": [1, 2], "dilations": [2]}),
    ((1, 2, 7, 8), (3, 2, 3, 3), {}),
    ((2, 4, 9, 10), (6, 2, 3, 2), {"group": 2, "strides": [2, 1], "pads": [1, 0, 2, 1]}),
    ((1, 4, 8, 8), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),  # depthwise
    ((1, 4, 8, 8), (8, 1, 3, 3), {"group": 4, "strides": [2, 2]}),  # depth multiplier 2
    ((1, 3, 10, 9), (2, 3, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 0, 3]}),
    ((1, 5, 6, 6), (7, 5, 1, 1), {}),  # pointwise
    ((1, 5, 6, 6), (7, 5, 1, 1), {"strides": [2, 2]}),
    ((1, 3, 7, 8), (2, 3, 3, 3), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), {"strides": [1, 2, 2], "pads": [1, 0, 1, 0, 1, 1]}),
    ((1, 4, 5, 5, 5), (4, 2, 3, 3, 3), {"group": 2, "dilations": [1, 2, 1]}),
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES)
def test_conv(xs, ws, attrs, bias):
    inputs = [("x", randn(*xs)), ("w", randn(*ws))]
    if bias:
        inputs.append(("b", randn(ws[0])))
    check("Conv", inputs, attrs, opset=11, tolerance=KERNEL)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("xs,ws,strides", [((1, 2, 7, 8), (3, 2, 3, 2), [2, 3]), ((1, 2, 6, 5), (3, 2, 4, 3), [1, 1]),
                                           ((1, 2, 9), (2, 2, 2), [2])])
def test_conv_auto_pad(auto_pad, xs, ws, strides):
    check("Conv", [("x", randn(*xs)), ("w", randn(*ws))], {"auto_pad": auto_pad, "strides": strides},
          opset=11, tolerance=KERNEL)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_conv_dtypes(dtype):
    check("Conv", [("x", randn(1, 3, 6, 6, dtype=dtype)), ("w", randn(4, 3, 3, 3, dtype=dtype)),
                   ("b", randn(4, dtype=dtype))], {"pads": [1, 1, 1, 1]}, opset=11, tolerance=ACCUMULATED,
          oracle="ort" if dtype == np.float16 else "ref")  # ORT has no float64 Conv


def test_conv_symbolic_batch_and_errors():
    g, _ = import_only("Conv", [("x", randn(2, 3, 8, 8)), ("w", randn(4, 3, 3, 3))], {"strides": [2, 2]})
    assert g.outputs[0].type.shape == (2, 4, 3, 3)
    model, feeds = model_of("Conv", [("x", randn(2, 3, 8, 8)), ("w", randn(4, 3, 3, 3))], {},
                            dims={"x": ["N", 3, "H", 8]})
    from pdc.frontend.onnx_import import import_onnx
    shape = import_onnx(model).outputs[0].type.shape
    assert shape[:2] == ("N", 4) and shape[3] == 6 and not isinstance(shape[2], int)
    with pytest.raises(PdcError, match="pads .* cannot be combined with auto_pad"):
        import_only("Conv", [("x", randn(1, 3, 8, 8)), ("w", randn(4, 3, 3, 3))],
                    {"auto_pad": "SAME_UPPER", "pads": [1, 1, 1, 1]})
    with pytest.raises(PdcError, match="X has 3 channels but W expects 2"):
        import_only("Conv", [("x", randn(1, 3, 8, 8)), ("w", randn(4, 2, 3, 3))])
    with pytest.raises(PdcError, match="larger than the padded input"):
        import_only("Conv", [("x", randn(1, 3, 2, 8)), ("w", randn(4, 3, 3, 3))])


# ---- ConvTranspose ---------------------------------------------------------------------------
CONV_T_CASES = [
    ((1, 2, 5), (2, 3, 3), {}),
    ((1, 2, 5), (2, 3, 3), {"strides": [2], "output_padding": [1], "pads": [1, 0]}),
    ((1, 1, 3, 3), (1, 2, 3, 3), {}),
    ((2, 2, 4, 5), (2, 3, 3, 2), {"strides": [3, 2], "pads": [1, 2, 0, 1]}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_padding": [1, 1], "dilations": [1, 1]}),
    ((1, 1, 3, 3), (1, 1, 2, 2), {"dilations": [2, 2]}),
    ((1, 4, 3, 4), (4, 2, 3, 3), {"group": 2, "strides": [2, 2]}),
    ((2, 6, 3, 3), (6, 1, 2, 2), {"group": 3, "strides": [1, 2]}),
    ((1, 2, 3, 4, 3), (2, 2, 3, 2, 2), {"strides": [2, 1, 2], "pads": [1, 0, 0, 0, 1, 1]}),
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("xs,ws,attrs", CONV_T_CASES)
def test_conv_transpose(xs, ws, attrs, bias):
    inputs = [("x", randn(*xs)), ("w", randn(*ws))]
    if bias:
        inputs.append(("b", randn(ws[1] * attrs.get("group", 1))))
    check("ConvTranspose", inputs, attrs, opset=11, tolerance=KERNEL)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("strides", [[2, 2], [3, 2]])
def test_conv_transpose_auto_pad(auto_pad, strides):
    check("ConvTranspose", [("x", randn(1, 2, 3, 4)), ("w", randn(2, 3, 3, 3))],
          {"auto_pad": auto_pad, "strides": strides}, opset=11, tolerance=KERNEL)


def test_conv_transpose_same_lower_follows_spec():
    # ONNX: the odd padding pixel goes to the beginning for SAME_LOWER (the output starts one later)
    x = randn(1, 1, 3, 3)
    w = randn(1, 1, 3, 3)
    (upper,) = run_pdc(*model_of("ConvTranspose", [("x", x), ("w", w)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}))
    (valid,) = run_pdc(*model_of("ConvTranspose", [("x", x), ("w", w)], {"auto_pad": "VALID", "strides": [2, 2]}))
    (lower,) = run_pdc(*model_of("ConvTranspose", [("x", x), ("w", w)], {"auto_pad": "SAME_LOWER", "strides": [2, 2]}))
    assert upper.shape == lower.shape == (1, 1, 6, 6)
    IDENTICAL.check(upper, valid[:, :, :6, :6])
    IDENTICAL.check(lower, valid[:, :, 1:, 1:])


# ---- ConvInteger -----------------------------------------------------------------------------
@pytest.mark.parametrize("attrs", [{}, {"pads": [1, 1, 1, 1]}, {"strides": [2, 1], "group": 2}])
def test_conv_integer(attrs):
    x = rng.integers(0, 255, (1, 4, 5, 6), dtype=np.uint8)
    w = rng.integers(0, 255, (4, 4 // attrs.get("group", 1), 3, 3), dtype=np.uint8)
    check("ConvInteger", [("x", x), ("w", w), ("xz", np.array(7, np.uint8)), ("wz", np.array(130, np.uint8))],
          attrs, opset=10, consts=("xz", "wz"))
    check("ConvInteger", [("x", x), ("w", w)], attrs, opset=10)


# ---- MaxPool ---------------------------------------------------------------------------------
POOL_CASES = [
    ((1, 2, 9), {"kernel_shape": [3]}),
    ((1, 2, 9), {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "ceil_mode": 1}),
    ((2, 3, 7, 8), {"kernel_shape": [3, 3]}),
    ((1, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]}),
    ((1, 2, 8, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 6, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((1, 2, 9, 9), {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1], "ceil_mode": 1}),
    ((1, 2, 9, 10), {"kernel_shape": [2, 3], "dilations": [2, 2], "strides": [1, 2]}),
    ((1, 2, 9, 10), {"kernel_shape": [2, 2], "dilations": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 7, 6), {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 7, 6), {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2], "pads": [0, 1, 1, 1, 0, 1]}),
]


@pytest.mark.parametrize("xs,attrs", POOL_CASES)
def test_max_pool(xs, attrs):
    check("MaxPool", [("x", randn(*xs))], attrs, opset=12)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("xs,attrs", [c for c in POOL_CASES if len(c[0]) == 4 and "dilations" not in c[1]])
def test_max_pool_indices(xs, attrs, storage_order):
    check("MaxPool", [("x", randn(*xs))], dict(attrs, storage_order=storage_order), opset=12, n_out=2)


def test_max_pool_indices_3d():
    check("MaxPool", [("x", randn(2, 2, 4, 5, 6))], {"kernel_shape": [2, 2, 3], "strides": [2, 1, 2]},
          opset=12, n_out=2)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_max_pool_int(dtype):
    x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (1, 2, 6, 6)).astype(dtype)
    check("MaxPool", [("x", x)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=12)


def test_max_pool_old_opset():
    check("MaxPool", [("x", randn(1, 2, 7, 7))], {"kernel_shape": [3, 3], "strides": [2, 2]}, opset=7)
    check("MaxPool", [("x", randn(1, 2, 7, 7))], {"kernel_shape": [3, 3], "storage_order": 1}, opset=8, n_out=2)


# ---- AveragePool / LpPool --------------------------------------------------------------------
@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("xs,attrs", POOL_CASES)
def test_average_pool(xs, attrs, count_include_pad):
    opset = 19 if "dilations" in attrs else 11
    check("AveragePool", [("x", randn(*xs))], dict(attrs, count_include_pad=count_include_pad), opset=opset)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("xs,attrs", [c for c in POOL_CASES if "ceil_mode" not in c[1] and "dilations" not in c[1]])
def test_lp_pool(xs, attrs, p):
    check("LpPool", [("x", randn(*xs))], dict(attrs, p=p), opset=11, tolerance=ACCUMULATED)  # powers amplify


def test_lp_pool_opset18_dilations_and_ceil():
    # ORT lacks LpPool-18's dilations / ceil_mode: ONNX's reference evaluator is the oracle
    check("LpPool", [("x", randn(1, 2, 7, 8))], {"kernel_shape": [2, 2], "dilations": [2, 1], "p": 2},
          opset=18, oracle="ref", tolerance=ACCUMULATED)


@pytest.mark.parametrize("op,attrs", [("GlobalAveragePool", {}), ("GlobalMaxPool", {}),
                                      ("GlobalLpPool", {"p": 2}), ("GlobalLpPool", {"p": 3})])
@pytest.mark.parametrize("xs", [(2, 3, 5), (1, 3, 4, 5), (1, 2, 3, 4, 2)])
def test_global_pools(op, attrs, xs):
    check(op, [("x", randn(*xs))], attrs, opset=13, tolerance=ACCUMULATED)


def test_pool_errors():
    with pytest.raises(PdcError, match="strides has 1 values, expected 2"):
        import_only("MaxPool", [("x", randn(1, 2, 5, 5))], {"kernel_shape": [2, 2], "strides": [1]})
    with pytest.raises(PdcError, match="auto_pad must be one of"):
        import_only("AveragePool", [("x", randn(1, 2, 5, 5))], {"kernel_shape": [2, 2], "auto_pad": "SAME"})


# ---- MaxUnpool -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [None, [1, 2, 5, 5]])
def test_max_unpool(shape):
    x = randn(1, 2, 2, 2)
    i = np.array([[[[0, 3], [10, 15]], [[17, 22], [24, 31]]]], np.int64)  # flat positions in (1, 2, 4, 4)
    if shape is not None:
        i = np.array([[[[0, 3], [11, 18]], [[25, 28], [45, 48]]]], np.int64)  # ... in (1, 2, 5, 5)
    inputs = [("x", x), ("i", i)] + ([("s", np.array(shape, np.int64))] if shape else [])
    check("MaxUnpool", inputs, {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=11, consts=("s",))


def test_max_unpool_inverts_max_pool():
    x = randn(1, 2, 5, 5)
    y, idx = run_pdc(*model_of("MaxPool", [("x", x)], {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=12, n_out=2))
    (u,) = run_pdc(*model_of("MaxUnpool", [("y", y), ("i", idx), ("s", np.array(x.shape, np.int64))],
                             {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=11, consts=("s",)))
    assert u.shape == x.shape
    np.testing.assert_array_equal(u.reshape(-1)[idx.reshape(-1)], y.reshape(-1))


# ---- RoiAlign / MaxRoiPool -------------------------------------------------------------------
ROIS = np.array([[0.0, 0.0, 7.0, 7.0], [1.5, 2.2, 5.1, 6.9], [-2.0, -1.0, 3.0, 9.5], [4.0, 3.0, 4.5, 3.2],
                 [6.0, 6.0, 2.0, 2.0]], np.float32)


@pytest.mark.parametrize("opset,ctm", [(10, None), (16, "half_pixel"), (16, "output_half_pixel")])
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align(opset, ctm, mode, sampling_ratio):
    attrs = {"mode": mode, "sampling_ratio": sampling_ratio, "output_height": 3, "output_width": 2,
             "spatial_scale": 0.9}
    if ctm:
        attrs["coordinate_transformation_mode"] = ctm
    x = randn(2, 3, 8, 7)
    check("RoiAlign", [("x", x), ("rois", ROIS), ("bi", np.array([0, 1, 1, 0, 1], np.int64))], attrs,
          opset=opset, tolerance=ACCUMULATED)


def test_max_roi_pool():
    rois = np.array([[0, 0, 0, 6, 7], [1, 1.4, 2.6, 5.2, 6.9], [1, -2, -1, 3, 9.5], [0, 4, 3, 4.5, 3.2]], np.float32)
    check("MaxRoiPool", [("x", randn(2, 3, 8, 7)), ("rois", rois)], {"pooled_shape": [2, 3], "spatial_scale": 0.8},
          opset=13)


@pytest.mark.parametrize("op", ["Conv", "MaxPool", "AveragePool", "AveragePool1"])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_same_padding_with_dilations_follows_spec(op, auto_pad):
    # ORT refuses (Conv) or mis-sizes (pools) SAME padding with dilations, and ONNX's reference
    # pads with the undilated kernel. The spec: out = ceil(in / stride), pads from the dilated
    # extent -- equal to explicit pads computed that way, which ORT runs.
    x = randn(1, 2, 9, 8)
    kernel, strides, dilations = [3, 2], [2, 3], [2, 3]
    pads = []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        pads.append((total // 2, total - total // 2) if auto_pad == "SAME_UPPER" else (total - total // 2, total // 2))
    explicit = [p[0] for p in pads] + [p[1] for p in pads]
    onnx_op = op.rstrip("1")
    inputs = [("x", x)] + ([("w", randn(3, 2, *kernel))] if op == "Conv" else [])
    attrs = {"strides": strides, "dilations": dilations}
    if op != "Conv":
        attrs["kernel_shape"] = kernel
    if op == "AveragePool1":
        attrs["count_include_pad"] = 1
    (same,) = run_pdc(*model_of(onnx_op, inputs, dict(attrs, auto_pad=auto_pad), opset=19))
    want = check(onnx_op, inputs, dict(attrs, pads=explicit), opset=19, tolerance=KERNEL)
    assert same.shape == (1, 3 if op == "Conv" else 2, 5, 3)
    ROUNDED.check(same, want[0])
