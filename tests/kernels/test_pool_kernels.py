"""Pooling kernels (MaxPool with Indices, AveragePool, LpPool, the Global pools), every path on every
target that runs here, against ONNX Runtime (ONNX's reference where ONNX Runtime refuses a layer):
random layers over the attribute space the spec allows (1-D/2-D/3-D, strides, dilations, asymmetric
pads, auto_pad, ceil_mode, count_include_pad, storage_order), each path forced on layers that would
not normally pick it (see tests/kernels/harness.py)."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import numpy as np
import pytest
from hypothesis import strategies as st

from harness import Const, Layer, check_layers, layer_outputs, run_property
from strategies import layers
from targets import examples, options, require

WINDOWED = ("MaxPool", "AveragePool", "LpPool")
GLOBAL = ("GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool")


# ---- window geometry, from the spec's formulas --------------------------------------------------------
def window_out(size, k, s, d, pb, pe, auto_pad, ceil_mode):
    """(output extent, padding before the first window) of one spatial axis; extent 0: no window."""
    ext = (k - 1) * d + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-size // s)
        total = max(0, (out - 1) * s + ext - size)
        return out, total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
    if auto_pad == "VALID":
        return ((size - ext) // s + 1 if size >= ext else 0), 0
    span = size + pb + pe - ext
    if span < 0:
        return 0, pb
    if not ceil_mode:
        return span // s + 1, pb
    out = -(-span // s) + 1
    if (out - 1) * s >= size + pb:  # "sliding windows that would start in the right padded region are ignored"
        out -= 1
    return out, pb


def every_window_reads_input(size, k, s, d, begin, out) -> bool:
    """The spec leaves a window wholly in the padding undefined (a max of nothing): draws avoid it."""
    return all(any(0 <= o * s - begin + t * d < size for t in range(k)) for o in range(out))


# ---- strategies -----------------------------------------------------------------------------------------
# float32 mainly, and every other type the op takes (integers: MaxPool only)
DTYPES = (np.float32, np.float32, np.float32, np.float32, np.float16, np.float64, np.int8, np.uint8)


def rand_input(rng, shape, dtype, nan: bool = False, few: bool = False):
    """Normal floats (with a few NaNs where asked) or integers over the type's whole range; `few`:
    three values, the type's lowest among them (ties, and windows whose maximum is the lowest)."""
    dtype = np.dtype(dtype)
    if few:
        lowest = -np.inf if dtype.kind == "f" else np.iinfo(dtype).min
        x = rng.choice(np.array([lowest, lowest, 1, 2], dtype), size=shape)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    if nan and x.size and dtype.kind == "f":
        x.flat[rng.choice(x.size, size=max(1, x.size // 50))] = np.nan
    return x


def reference_keeps_nan(op: str, dtype) -> bool:
    """ONNX's reference, the oracle of float64 average and Lp pools, pads with NaN and drops every
    NaN from a window: those layers get no NaNs."""
    return not (np.dtype(dtype) == np.float64 and op in ("AveragePool", "LpPool", "GlobalLpPool"))


def expect(layer: Layer, equivalent: Optional[Layer] = None) -> Layer:
    """Sets layer.want where an oracle needs help: from `equivalent` (the same layer in a form ONNX
    Runtime computes as the spec says), and for a max over NaNs or -inf. pdc takes NaN as the
    largest value (numpy's max; the first NaN's index), which the spec leaves open and ONNX Runtime's
    kernels each treat their own way; ONNX Runtime's MaxPool gives -FLT_MAX for a window of -inf.
    The oracle then runs on the input with every NaN replaced by a value above all others and every
    -inf by one below them, and those values in its output read as NaN and -inf."""
    ref = equivalent or layer
    x = layer.inputs[0]
    if layer.op in ("MaxPool", "GlobalMaxPool") and x.dtype.kind == "f" and not np.isfinite(x).all():
        big = np.asarray(60000.0 if x.dtype == np.float16 else 1e30, x.dtype)
        stand_in = np.where(np.isnan(x), big, np.where(x == -np.inf, -big, x))
        want = layer_outputs(replace(ref, inputs=[stand_in] + ref.inputs[1:]))
        want[0] = np.where(want[0] == big, x.dtype.type(np.nan), np.where(want[0] == -big, -np.inf, want[0]))
        layer.want = want
    elif equivalent is not None:
        layer.want = layer_outputs(equivalent)
    return layer


@st.composite
def pool_layer(draw, op: str = "any", kind: str = "any", max_dims: int = 3, max_extent: int = 40,
               max_work: int = 400_000, dtype=None, indices: bool = True, nan: bool = False):
    """One windowed pool over the attribute space (dtype None: drawn from DTYPES; nan: NaNs in a
    quarter of the inputs). kind steers the draw toward a path's layers: 'band' (1-D/2-D, no
    Indices: ARM's band kernel), 'band-s2' (the same with strides 1..2: x86's int8 band kernel),
    'wide' (1-D rows longer than a chunk)."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    if op == "any":
        op = draw(st.sampled_from(WINDOWED if dtype.kind == "f" else ("MaxPool",)))
    nsp = 1 if kind == "wide" else draw(st.integers(1, min(max_dims, 2) if kind.startswith("band") else max_dims))
    n = draw(st.sampled_from([1, 1, 2]))
    c = draw(st.integers(1, 6))
    auto_pad = draw(st.sampled_from(["NOTSET"] * 5 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    # pads up to the dilated window (the spec allows them, ONNX Runtime wants them below the kernel size)
    deep = auto_pad == "NOTSET" and kind != "wide" and draw(st.integers(0, 5)) == 0
    ceil_mode = draw(st.integers(0, 1)) if auto_pad == "NOTSET" and not deep else 0
    if dtype == np.float64 and op != "MaxPool":
        # ONNX Runtime has no float64 AveragePool / LpPool, and ONNX's reference shifts the windows by
        # half the extra padding ceil_mode needs: ceil_mode is drawn in float32 and float16 only
        ceil_mode = 0
    include_pad = op == "AveragePool" and draw(st.integers(0, 1))
    # a window wholly in the padding: a sum of nothing, defined where the pads count or for LpPool
    zero_when_empty = deep and (op == "LpPool" or include_pad)
    kernel, strides, dils, pads, ins, outs = [], [], [], [], [], []
    for axis in range(nsp):
        k = draw(st.integers(1, 4 if nsp == 3 else 7))
        if axis == nsp - 1 and nsp < 3 and draw(st.integers(0, 5)) == 0:  # rows wider than the unrolled taps
            k = draw(st.integers(8, 24))
        s = draw(st.integers(1, 2 if kind == "band-s2" else 4))
        d = draw(st.integers(1, 3)) if deep or draw(st.integers(0, 2)) == 0 else 1
        ext = (k - 1) * d + 1
        if kind == "wide":
            size = draw(st.integers(260, 700)) * s
        else:
            size = draw(st.integers(1, max_extent if nsp < 3 else 10))
        most = (ext + 1 if zero_when_empty else ext - 1) if deep else k - 1
        pb, pe = (draw(st.integers(0, most)), draw(st.integers(0, most))) if auto_pad == "NOTSET" else (0, 0)
        size = max(size, ext - pb - pe, ext if auto_pad == "VALID" else 1)
        out, begin = window_out(size, k, s, d, pb, pe, auto_pad, ceil_mode)
        while not zero_when_empty and not every_window_reads_input(size, k, s, d, begin, out):
            size += 1
            out, begin = window_out(size, k, s, d, pb, pe, auto_pad, ceil_mode)
        if auto_pad.startswith("SAME"):  # the spec's pads, which the oracle (ONNX Runtime) wants below k
            pb, pe = begin, max(0, (out - 1) * s + ext - size) - begin
            if max(pb, pe) >= k:
                d, ext = 1, k
                out, begin = window_out(size, k, s, d, 0, 0, auto_pad, ceil_mode)
                pb, pe = begin, max(0, (out - 1) * s + ext - size) - begin
        kernel.append(k), strides.append(s), dils.append(d), pads.append((pb, pe)), ins.append(size), outs.append(out)
    while n * c * math.prod(outs) * math.prod(kernel) > max_work and c > 1:
        c //= 2
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dils}
    if auto_pad == "NOTSET":
        attrs["pads"] = [p[0] for p in pads] + [p[1] for p in pads]
    else:
        attrs["auto_pad"] = auto_pad
    if ceil_mode or draw(st.integers(0, 3)) == 0:
        attrs["ceil_mode"] = ceil_mode
    for key, value in (("strides", strides), ("dilations", dils)):  # omitted attributes take their defaults
        if all(v == 1 for v in value) and draw(st.booleans()):
            del attrs[key]
    outputs = 1
    # (deep pads: the oracle pads with the lowest value, whose index an integer window may pick)
    if op == "MaxPool" and indices and not kind.startswith("band") and not (deep and dtype.kind != "f") and draw(st.booleans()):
        outputs = 2
        if draw(st.booleans()):
            attrs["storage_order"] = draw(st.integers(0, 1))
    if op == "AveragePool" and (include_pad or draw(st.booleans())):
        attrs["count_include_pad"] = include_pad
    if op == "LpPool" and draw(st.integers(0, 3)):
        attrs["p"] = draw(st.sampled_from([1, 2, 3]))
    nan = nan and not deep and reference_keeps_nan(op, dtype) and draw(st.integers(0, 3)) == 0
    few = op == "MaxPool" and not deep and draw(st.integers(0, 3)) == 0
    layer = Layer(op, [rand_input(rng, [n, c] + ins, dtype, nan, few)], attrs, outputs=outputs)
    if auto_pad.startswith("SAME") and (any(v > 1 for v in dils) or any(
            (o - 1) * s + (k - 1) * d + 1 < i for i, k, s, d, o in zip(ins, kernel, strides, dils, outs))):
        return expect(layer, explicit_pads(layer, pads))
    if auto_pad == "VALID" and any(v > 1 for v in dils):  # ONNX's reference sizes VALID undilated
        return expect(layer, explicit_pads(layer, pads))
    if any(max(p) >= k for p, k in zip(pads, kernel)):
        layer.want = padded_input_oracle(layer, pads)
        return layer
    return expect(layer)


def padded_input_oracle(layer: Layer, pads) -> list:
    """Pads at or past the kernel size, which ONNX Runtime refuses: the pool of the input padded
    beforehand (-inf or the type's minimum for max, zeros else; ceil_mode is 0). An average that
    leaves the pads out is that of the padded input over that of the padded ones (the share of
    taps inside); Indices count in the padded input and are moved back."""
    x = layer.inputs[0]
    width = [(0, 0), (0, 0)] + [tuple(p) for p in pads]
    attrs = {k: v for k, v in layer.attrs.items() if k != "pads"}
    is_max = layer.op == "MaxPool"
    low = (-np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min) if is_max else 0
    padded = np.pad(x, width, constant_values=low)
    want = layer_outputs(replace(layer, inputs=[padded], attrs=attrs, want=None))
    if layer.op == "AveragePool" and not layer.attrs.get("count_include_pad", 0):
        inside = np.pad(np.ones_like(x), width)
        (share,) = layer_outputs(replace(layer, inputs=[inside], attrs=attrs, outputs=1, want=None))
        want[0] = (want[0].astype(np.float64) / share).astype(x.dtype)
    if layer.outputs == 2:  # (n * C + c) * plane + the spatial position, row- or column-major
        order = "F" if attrs.get("storage_order") else "C"
        plane, padded_plane = math.prod(x.shape[2:]), math.prod(padded.shape[2:])
        coords = np.unravel_index(want[1] % padded_plane, padded.shape[2:], order=order)
        coords = tuple(c - p[0] for c, p in zip(coords, pads))
        want[1] = want[1] // padded_plane * plane + np.ravel_multi_index(coords, x.shape[2:], order=order)
    return want


def explicit_pads(layer: Layer, pads) -> Layer:
    """SAME or VALID auto_pad as the explicit pads the spec defines, for departures of both oracles:
    with dilations ONNX Runtime sizes a SAME output as if undilated, ONNX's reference pads SAME for
    the undilated window and sizes a VALID output as if undilated (float64 average and Lp pools,
    which only it computes); where the windows stop short of the input's end (a stride past the window)
    both take the negative pad_shape as a crop at the start instead of padding nothing."""
    attrs = {k: v for k, v in layer.attrs.items() if k != "auto_pad"}
    attrs["pads"] = [p[0] for p in pads] + [p[1] for p in pads]
    return replace(layer, attrs=attrs)



@st.composite
def global_pool_layer(draw, op: str = "any", max_dims: int = 3, dtype=None, nan: bool = False):
    """One global pool over 1..max_dims spatial dims (dtype None: a float type from DTYPES)."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(draw(st.sampled_from([t for t in DTYPES if np.dtype(t).kind == "f"])) if dtype is None else dtype)
    op = draw(st.sampled_from(GLOBAL)) if op == "any" else op
    nsp = draw(st.integers(1, max_dims))
    shape = [draw(st.sampled_from([1, 1, 2])), draw(st.integers(1, 8))]
    shape += [draw(st.integers(1, 24 if nsp < 3 else 8)) for _ in range(nsp)]
    attrs = {"p": draw(st.sampled_from([1, 2, 3]))} if op == "GlobalLpPool" and draw(st.booleans()) else {}
    nan = nan and reference_keeps_nan(op, dtype) and draw(st.integers(0, 3)) == 0
    layer = Layer(op, [rand_input(rng, shape, dtype, nan)], attrs)
    return expect(layer, global_pool_f64(layer) if dtype == np.float64 else None)


def global_pool_f64(layer: Layer) -> Layer:
    """ONNX Runtime has no float64 global pools, and ONNX's reference reduces the wrong axes in
    GlobalMaxPool (but for 2-D) and has no GlobalLpPool: the equivalent reduction or LpPool."""
    x = layer.inputs[0]
    if layer.op == "GlobalLpPool":
        return Layer("LpPool", [x], {"kernel_shape": list(x.shape[2:]), **layer.attrs})
    reduce = {"GlobalMaxPool": "ReduceMax", "GlobalAveragePool": "ReduceMean"}[layer.op]
    return Layer(reduce, [x, Const(np.arange(2, x.ndim, dtype=np.int64))], {"keepdims": 1})


def any_pool(dtype=None, **kw):
    """Windowed or global pools (the global ones take float types only)."""
    if dtype is not None and np.dtype(dtype).kind != "f":
        return pool_layer(dtype=dtype, **kw)
    return st.one_of(pool_layer(dtype=dtype, **kw),
                     global_pool_layer(dtype=dtype, max_dims=kw.get("max_dims", 3), nan=kw.get("nan", False)))


# ---- the properties -------------------------------------------------------------------------------------
# (target, path, the draw that reaches it): x86 has the portable paths, the float32 band kernel and, on
# AVX-512, the int8 one; on ARM the band and global kernels come first and the portable paths are
# forced past them
PORTABLE = [("generic", "any"), ("interior", "any")]
X86 = PORTABLE + [("avx-band", "f32-band-s2")]
ARM = PORTABLE + [("neon-band", "band"), ("neon-global", "global")]
CASES = ([(t, p, k) for t in ("x86-avx512", "x86-avx2") for p, k in X86] + [("x86-avx512", "avx512-band", "int8-band")]
         + [(t, p, k) for t in ("arm64", "armv7", "cortex-m4") for p, k in ARM])
EXAMPLES = 10


def pool_draw(kind: str, arm: bool):
    small = dict(max_dims=2, max_extent=24, max_work=100_000) if arm else {}
    if kind == "band":  # the band kernel is fp32 only
        return pool_layer(kind="band", dtype=np.float32, nan=True, **small)
    if kind == "global":
        return global_pool_layer(dtype=np.float32, nan=True, max_dims=2 if arm else 3)
    if kind == "f32-band-s2":  # x86's float32 band kernel: MaxPool, column strides 1 and 2; rows past a band's vectors
        return pool_layer("MaxPool", kind="band-s2", dtype=np.float32, nan=True, max_extent=60)
    if kind == "int8-band":  # rows past several 64-byte vectors too
        return st.one_of(*(pool_layer("MaxPool", kind="band-s2", dtype=t, max_extent=150) for t in (np.int8, np.uint8)))
    return any_pool(nan=True, **small)


@pytest.mark.parametrize("target,path,kind", CASES, ids=[f"{t}-{p}" for t, p, _ in CASES])
def test_pool_path_matches_onnxruntime(target, path, kind):
    require(target)
    arm = not target.startswith("x86")
    run_property(layers(pool_draw(kind, arm), max_size=4 if arm else 6), target,
                 examples=examples(target, EXAMPLES), force=f"pool={path}", expect_path=f"pool/{path}",
                 **options(target))


def test_wide_rows_take_several_chunks():
    """Rows of more outputs than the portable kernel computes at once (pool.CHUNK)."""
    require("x86-avx2")
    run_property(layers(pool_layer(kind="wide", dtype=None, nan=True), max_size=3), "x86-avx2", examples=4,
                 expect_path="pool/interior")


# ---- the layers the properties found wrong, kept as they were found ------------------------------------
def _max_pool_indices(x, **attrs):
    return expect(Layer("MaxPool", [np.asarray(x)], attrs, outputs=2))


def regressions() -> dict:
    return {
        # a window whose maximum is the type's lowest value (uint8 zeros after a ReLU) and whose first
        # tap is in the padding reported that padding position as its index (-1 here) instead of its
        # first tap inside the input
        "uint8-zeros": _max_pool_indices(np.zeros([1, 1, 4], np.uint8), kernel_shape=[3], pads=[1, 1]),
        # the same through a leading dim's padding, column-major indices
        "int8-lowest-rows": _max_pool_indices(np.full([1, 2, 3, 2], -128, np.int8), kernel_shape=[2, 2],
                                              pads=[1, 0, 0, 1], strides=[2, 1], storage_order=1),
        # the same in the scalar kernel of a slice holding a NaN, for a window of -inf
        "nan-slice-inf-window": _max_pool_indices(np.array([[[-np.inf, -np.inf, np.nan, 1]]], np.float32),
                                                  kernel_shape=[3], pads=[1, 1]),
        # not a pdc bug: the oracle's. VALID with a dilation, float64 (ONNX's reference computes it):
        # the reference sized the output as if undilated (2 rows, the second 0); the spec says 1 row
        "lp-valid-dilated-f64": _valid_dilated_lp_pool(),
    }


def _valid_dilated_lp_pool() -> Layer:
    x = np.random.default_rng(0).standard_normal([1, 1, 3, 8])
    layer = Layer("LpPool", [x], {"kernel_shape": [2, 8], "strides": [1, 2], "dilations": [2, 1],
                                  "auto_pad": "VALID"})
    layer = expect(layer, explicit_pads(layer, [(0, 0), (0, 0)]))
    assert layer.want[0].shape == (1, 1, 1, 1)
    return layer


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2", "arm64", "armv7", "cortex-m4"])
def test_pool_regressions(target):
    require(target)
    check_layers(list(regressions().values()), target, **options(target))
