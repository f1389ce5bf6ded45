"""Conv kernels, every path on every target that runs here, against ONNX Runtime (ONNX's reference
where ONNX Runtime departs from the spec): random layers over the attribute space, each path
forced on layers that would not normally pick it (see tests/kernels/harness.py)."""
from __future__ import annotations

import numpy as np
import pytest

from harness import Const, Layer, check_layers, run_property
from strategies import conv_layer, conv_transpose_layer, layers
from targets import examples, options, require
from tolerances import WINOGRAD4

# (target, path, the draw that reaches it); every path of the conv family on each target
X86_PATHS = [("im2col", "any"), ("depthwise-flat", "flat"), ("depthwise-rows", "depthwise"), ("direct", "any"),
             ("direct", "any-f16"), ("pointwise", "pointwise"), ("band", "any"), ("winograd4", "winograd"),
             ("winograd2", "winograd"), ("gemv", "gemv")]
AVX512_PATHS = X86_PATHS + [("transposed", "small")]
ARM_PATHS = [("im2col", "any"), ("neon-gemm", "any"), ("neon-depthwise", "depthwise"), ("winograd4", "winograd"),
             ("winograd2", "winograd"), ("gemv", "gemv")]
CASES = ([("x86-avx512", p, k) for p, k in AVX512_PATHS] + [("x86-avx2", p, k) for p, k in X86_PATHS]
         + [(t, p, k) for t in ("arm64", "armv7", "cortex-m4") for p, k in ARM_PATHS])
EXAMPLES = 10  # per x86 case (CI's share; tools/fuzz_kernels.py draws more)


IDS = [f"{t}-{p}{'-f16' if k.endswith('-f16') else ''}" for t, p, k in CASES]


@pytest.mark.parametrize("target,path,kind", CASES, ids=IDS)
def test_conv_path_matches_onnxruntime(target, path, kind):
    """The direct path is the one of the other dtypes: float64 and float16 (computed in float32)."""
    require(target)
    arm = not target.startswith("x86")
    dtype = np.float16 if kind.endswith("-f16") else np.float64 if path == "direct" else np.float32
    draw = conv_layer(kind.removesuffix("-f16"), max_dims=2 if arm and path.startswith("neon") else 3,
                      max_extent=32 if arm else 64, max_macs=300_000 if arm else 1_500_000, dtype=dtype)
    tolerance = dict(zip(("rtol", "atol"), WINOGRAD4(np.float32))) if path == "winograd4" else {}
    run_property(layers(draw, max_size=4 if arm else 6), target, examples=examples(target, EXAMPLES),
                 force=f"conv={path}", expect_path=f"conv/{path}", **tolerance, **options(target))


# ---- the layers the properties or real models found wrong, kept as they were found ----------------------
def _conv(x_shape, w_shape, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    fan_in = int(np.prod(w_shape[1:]))
    return Layer("Conv", [rng.standard_normal(x_shape).astype(np.float32),
                          Const((rng.standard_normal(w_shape) / np.sqrt(fan_in)).astype(np.float32)),
                          Const(rng.standard_normal(w_shape[0]).astype(np.float32))], attrs)


REGRESSIONS = {
    # DeepLab's ASPP head: most taps in the padding; im2col wrote zeros past a row segment lying
    # wholly inside the left / right padding, over the neighbouring panel
    "aspp-dilation-6": _conv([1, 64, 14, 14], [64, 64, 3, 3], dilations=[6, 6], pads=[6] * 4),
    "aspp-dilation-12": _conv([1, 64, 14, 14], [64, 64, 3, 3], dilations=[12, 12], pads=[12] * 4),
    # MixNet's 9x9 depthwise on 14x14 (the same im2col bug: 81 taps go to im2col)
    "mixnet-dw9x9": _conv([1, 90, 14, 14], [90, 1, 9, 9], pads=[4] * 4, group=90),
}


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2", "arm64", "armv7"])
def test_conv_regressions(target):
    require(target)
    check_layers(list(REGRESSIONS.values()), target, rtol=1e-5, atol=1e-5, **options(target))


# found by fuzz-kernels, on a forced path (each layer: its path)
FORCED_REGRESSIONS = {
    # a 1x1 conv whose end padding adds output pixels: the transposed path's strided-copy packing read
    # past the input for them instead of taking the padded path (AVX-512; output pixel 1 was garbage)
    "transposed-1x1-end-pad": ("transposed", _conv([1, 2, 1], [1, 2, 1], pads=[0, 1])),
    "transposed-1x1-end-pad-2d": ("transposed", _conv([1, 8, 3, 2], [40, 8, 1, 1], pads=[0, 0, 1, 2],
                                                       strides=[2, 1])),
}


@pytest.mark.parametrize("name", FORCED_REGRESSIONS)
@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2"])
def test_conv_forced_path_regressions(target, name):
    require(target)
    path, layer = FORCED_REGRESSIONS[name]
    check_layers([layer], target, force=f"conv={path}", rtol=1e-5, atol=1e-5, **options(target))


# ---- ConvTranspose: one path (direct loops), float32 and float64 ----------------------------------------
CT_TARGETS = ["x86-avx512", "x86-avx2", "arm64"]


def numpy_conv_transpose(x, w, b, attrs) -> np.ndarray:
    """ConvTranspose in float64 NumPy, written from the ONNX spec: every input pixel scatters its
    weighted kernel into the output at i * stride + tap * dilation - pads_begin."""
    nsp = x.ndim - 2
    kernel = list(w.shape[2:])
    s = attrs.get("strides", [1] * nsp)
    d = attrs.get("dilations", [1] * nsp)
    group = attrs.get("group", 1)
    opad = attrs.get("output_padding", [0] * nsp)
    ins = list(x.shape[2:])
    full = [s[i] * (ins[i] - 1) + opad[i] + (kernel[i] - 1) * d[i] + 1 for i in range(nsp)]
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if "output_shape" in attrs or auto_pad.startswith("SAME"):
        out = attrs["output_shape"] if "output_shape" in attrs else [ins[i] * s[i] for i in range(nsp)]
        total = [full[i] - out[i] for i in range(nsp)]
        upper = auto_pad == "SAME_UPPER"
        begin = [t // 2 if upper else t - t // 2 for t in total]
    elif auto_pad == "VALID":
        out, begin = full, [0] * nsp
    else:
        pads = attrs.get("pads", [0] * 2 * nsp)
        begin, out = pads[:nsp], [full[i] - pads[i] - pads[nsp + i] for i in range(nsp)]
    n, c = x.shape[:2]
    cg, mg = c // group, w.shape[1]
    xg = x.astype(np.float64).reshape(n, group, cg, *ins)
    wg = w.astype(np.float64).reshape(group, cg, mg, *kernel)
    y = np.zeros([n, group, mg] + out)
    for tap in np.ndindex(*kernel):
        src, dst = [], []
        for i in range(nsp):
            off = tap[i] * d[i] - begin[i]  # output = input * s + off
            lo = max(0, -(off // s[i]))
            while lo * s[i] + off < 0:
                lo += 1
            hi = min(ins[i] - 1, (out[i] - 1 - off) // s[i])
            if hi < lo:
                break
            src.append(slice(lo, hi + 1))
            dst.append(slice(lo * s[i] + off, hi * s[i] + off + 1, s[i]))
        else:
            part = np.einsum("ngc...,gcm->ngm...", xg[(slice(None),) * 3 + tuple(src)], wg[(...,) + tap])
            y[(slice(None),) * 3 + tuple(dst)] += part
    y = y.reshape([n, group * mg] + out)
    if b is not None:
        y += b.astype(np.float64).reshape([1, -1] + [1] * nsp)
    return y.astype(x.dtype)


def with_numpy_oracle(layer: Layer) -> Layer:
    """ONNX Runtime has no float64 ConvTranspose and departs from the spec on negative total padding, and
    ONNX's reference fails on some groups: float64 NumPy written from the spec decides."""
    x, w = (i.value if isinstance(i, Const) else i for i in layer.inputs[:2])
    b = layer.inputs[2].value if len(layer.inputs) > 2 else None
    layer.want = [numpy_conv_transpose(x, w, b, layer.attrs)]
    return layer


def test_numpy_conv_transpose_agrees_with_onnxruntime():
    """The float64 oracle itself, on float32 layers ONNX Runtime runs."""
    from hypothesis import given, settings
    from harness import build_model, oracle_outputs

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(conv_transpose_layer().filter(lambda layer: layer.oracle == "ort"))
    def agree(layer):
        model, feeds, outs = build_model([layer])
        want = oracle_outputs(model, feeds, "ort")[outs[0][0]]
        x, w = (i.value if isinstance(i, Const) else i for i in layer.inputs[:2])
        b = layer.inputs[2].value if len(layer.inputs) > 2 else None
        np.testing.assert_allclose(numpy_conv_transpose(x, w, b, layer.attrs), want, rtol=1e-5, atol=2e-5)
    agree()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("target", CT_TARGETS)
def test_conv_transpose_matches_onnxruntime(target, dtype):
    require(target)
    arm = not target.startswith("x86")
    draw = conv_transpose_layer(max_extent=12 if arm else 24, max_macs=200_000 if arm else 1_500_000, dtype=dtype)
    draw = draw.map(lambda layer: with_numpy_oracle(layer) if dtype == np.float64 or layer.oracle == "spec" else layer)
    run_property(layers(draw, max_size=4 if arm else 6), target, examples=examples(target, EXAMPLES),
                 expect_path="conv_transpose/direct", **options(target))


# ---- fused activations over their whole input range -----------------------------------------------------
def _extremes(channels: int = 4, width: int = 29) -> np.ndarray:
    """Values through every branch of the activations' forms: both signs, exp's underflow (x < -87.3),
    the saturations, the infinities and NaN, in `channels` channels of 3 x `width` pixels (with 29, a
    vector tail too)."""
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0, 6.0, -6.0, 87.0, -87.0, 87.5, -87.5, 88.8, -88.8,
                        100.0, -100.0, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)
    x = np.concatenate([special, rng.uniform(-12, 12, channels * 3 * width - special.size).astype(np.float32)])
    return x.reshape(1, channels, 3, width)


ACTIVATION_POSTS = {"sigmoid": [("Sigmoid", {}, [])], "silu": [("Sigmoid", {}, []), ("Mul", {}, ["before"])],
                    "hard_swish": [("HardSwish", {}, [])], "swish-0.7": [("Swish", {"alpha": 0.7}, [])],
                    "swish--0.7": [("Swish", {"alpha": -0.7}, [])],
                    "hard_sigmoid": [("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [])],
                    "leaky_relu": [("LeakyRelu", {"alpha": 0.15}, [])]}


# the conv paths whose tile post-passes apply the activation, per target: AVX-512's transposed
# path (small images) stores its tile transposed before the activation
ACTIVATION_CONVS = [(t, c) for t in ("x86-avx512", "x86-avx2", "arm64") for c in ("pointwise", "depthwise")]
ACTIVATION_CONVS.append(("x86-avx512", "transposed"))


@pytest.mark.parametrize("act", list(ACTIVATION_POSTS))
@pytest.mark.parametrize("target,conv", ACTIVATION_CONVS)
def test_fused_activations_over_their_whole_range(target, act, conv):
    """A conv that copies its input (identity weights: a 1x1 conv, or a 3x3 depthwise one with its
    centre tap 1), then the activation: the vector forms (x86 and AArch64: exp by range reduction and
    a polynomial) and the scalar ones agree with ONNX Runtime at the extremes, the infinities and
    NaN. Swish with alpha 0.7 and -0.7 (opset 24) has ONNX's reference as oracle."""
    require(target)
    x = _extremes()
    if conv == "transposed":  # 32 channels of 12 columns: the transposed path's shapes
        x = _extremes(32, 12)
        w, attrs = np.eye(32, dtype=np.float32).reshape(32, 32, 1, 1), {}
    elif conv == "pointwise":
        w, attrs = np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1), {}
    else:
        w, attrs = np.zeros((4, 1, 3, 3), np.float32), {"group": 4, "pads": [1, 1, 1, 1]}
        w[:, 0, 1, 1] = 1
    layer = Layer("Conv", [x, Const(w)], attrs, post=ACTIVATION_POSTS[act],
                  **(dict(opset=24, oracle="onnx-reference") if act.startswith("swish") else {}))
    paths = check_layers([layer], target, rtol=2e-6, atol=1e-6, **options(target))
    assert conv != "transposed" or set(paths) == {"conv/transposed"}, paths
