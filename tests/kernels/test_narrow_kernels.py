"""float8, float4, 4- and 2-bit integer tensors (dtypes.NARROW): Cast, CastLike, QuantizeLinear and
DequantizeLinear compiled for x86 and the ARM targets, compared bit for bit with ONNX's reference
evaluator (which converts with ml_dtypes), over every code of each format and the values around
every rounding boundary; the IR text of such graphs; and the clear errors of everything else."""
from __future__ import annotations

import os
import tempfile

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import pdc
from pdc.compiler import compile_details
from pdc.frontend.onnx_import import import_onnx
from pdc.ir import verify_graph
from pdc.ir.errors import PdcError, UnsupportedError
from pdc.ir.parser import parse_graph
from pdc.ir import Value, TensorType, dtypes as D
from pdc.ir.printer import print_graph
from pdc.ir.textio import load_ir, save_ir
from targets import options, require

MINIFLOATS = {TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn, TensorProto.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
              TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2, TensorProto.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz,
              TensorProto.FLOAT4E2M1: ml_dtypes.float4_e2m1fn}
INTS = {TensorProto.INT4: ml_dtypes.int4, TensorProto.UINT4: ml_dtypes.uint4, TensorProto.INT2: ml_dtypes.int2,
        TensorProto.UINT2: ml_dtypes.uint2}
E8M0 = ml_dtypes.float8_e8m0fnu
NARROW = {**MINIFLOATS, **INTS, TensorProto.FLOAT8E8M0: E8M0}


def _codes(np_type) -> np.ndarray:
    bits = 4 if np.dtype(np_type).name.startswith("float4") else 8
    return np.arange(1 << bits, dtype=np.uint8).view(np_type)


def boundary_values() -> np.ndarray:
    """float32 values that probe every format's rounding: each representable value, the midpoints
    between neighbours (ties) and the floats next to them, beyond the largest value, specials,
    integers around the 4- and 2-bit ranges, and random floats over a wide range of exponents."""
    vals = [np.float32(v) for v in (0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 3e38, -3e38)]
    for np_type in MINIFLOATS.values():
        reps = np.unique(_codes(np_type).astype(np.float32))
        reps = reps[np.isfinite(reps)]
        mids = ((reps[1:].astype(np.float64) + reps[:-1]) / 2).astype(np.float32)
        top = reps.max() * np.float32(1.5)
        for v in np.concatenate([reps, mids, [top, reps.max() * 2]]).astype(np.float32):
            vals += [v, np.nextafter(v, np.float32(np.inf)), np.nextafter(v, np.float32(-np.inf))]
    vals += list(np.arange(-20, 20, 0.25, dtype=np.float32))
    e = np.random.default_rng(0).uniform(-140, 127, 600)
    vals += list((np.random.default_rng(1).choice([-1, 1], 600) * 2.0 ** e).astype(np.float32))
    v = np.array(vals, np.float32)
    return np.concatenate([v, -v])


def _cast_model(cases):
    """One model, one Cast (or CastLike) per case: (name, input array, to, attrs)."""
    inputs, outputs, nodes, feeds = [], [], [], {}
    for name, x, to, attrs in cases:
        src = helper.np_dtype_to_tensor_dtype(x.dtype)
        inputs.append(helper.make_tensor_value_info(f"{name}_x", src, x.shape))
        outputs.append(helper.make_tensor_value_info(f"{name}_y", to, x.shape))
        nodes.append(helper.make_node("Cast", [f"{name}_x"], [f"{name}_y"], to=to, **attrs))
        feeds[f"{name}_x"] = x
    graph = helper.make_graph(nodes, "narrow_casts", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)]), feeds


def _same(got: np.ndarray, want: np.ndarray, what: str):
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if got.dtype.itemsize == 1 and got.dtype.kind not in "iub":  # narrow: the codes, bit for bit
        bad = np.nonzero(got.view(np.uint8) != want.view(np.uint8))[0]
    else:
        g, w = got.astype(np.float64).ravel(), want.astype(np.float64).ravel()
        bad = np.nonzero(~((g == w) & (np.signbit(g) == np.signbit(w)) | np.isnan(g) & np.isnan(w)))[0]
    assert bad.size == 0, f"{what}: {bad.size} elements differ, first at {bad[0]}: got {got.ravel()[bad[0]]!r}, " \
                          f"want {want.ravel()[bad[0]]!r}"


def _compile_and_compare(model, feeds, target, want=None):
    if want is None:
        want = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    with tempfile.TemporaryDirectory() as tmp:
        module = pdc.compile(model, target=target, out_dir=os.path.join(tmp, "b"), **options(target))
        got = module.run(feeds)
    for name, w in want.items():
        _same(np.asarray(got[name]), np.asarray(w), name)


def cast_cases():
    x = boundary_values()
    cases = []
    for to, np_type in NARROW.items():
        tname = TensorProto.DataType.Name(to).lower()
        if to == TensorProto.FLOAT8E8M0:
            for mode in ("up", "down", "nearest"):
                for sat in (0, 1):
                    cases.append((f"f32_{tname}_{mode}{sat}", x, to, {"saturate": sat, "round_mode": mode}))
            continue
        for sat in (0, 1) if to in MINIFLOATS else (1,):
            cases.append((f"f32_{tname}_sat{sat}", x, to, {"saturate": sat}))
        # other sources: float64 (one rounding, not two), float16, integers (wrap into the narrow ints)
        cases.append((f"f64_{tname}", x.astype(np.float64) * (1 + 2.0 ** -30), to, {}))
        with np.errstate(over="ignore"):
            cases.append((f"f16_{tname}", x.astype(np.float16), to, {}))
        cases.append((f"i32_{tname}", np.arange(-300, 300, 7, dtype=np.int32), to, {}))
        # every code back to float32, float16, int32 (finite codes) and int8
        codes = _codes(np_type)
        for out in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
            cases.append((f"{tname}_to_{out}", codes, out, {}))
        finite = codes[np.isfinite(codes.astype(np.float32))]
        cases.append((f"{tname}_to_i32", finite, TensorProto.INT32, {}))
        cases.append((f"{tname}_to_bool", codes, TensorProto.BOOL, {}))
    return cases


@pytest.mark.parametrize("target", ["x86-avx2", "arm64", "cortex-m4"])
def test_casts_match_onnx_reference_bit_for_bit(target):
    require(target)
    cases = cast_cases()
    if target == "cortex-m4":  # a small board: a tenth of the values
        cases = [(n, x[::10] if x.size > 600 else x, to, a) for n, x, to, a in cases]
    model, feeds = _cast_model(cases)
    _compile_and_compare(model, feeds, target)


def _qdq_model(op, x, scale, zp, attrs, out_type):
    inits = [numpy_helper.from_array(scale, "s")] + ([numpy_helper.from_array(zp, "z")] if zp is not None else [])
    node = helper.make_node(op, ["x", "s"] + (["z"] if zp is not None else []), ["y"], **attrs)
    graph = helper.make_graph([node], op.lower(),
                              [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)],
                              [helper.make_tensor_value_info("y", out_type, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)]), {"x": x}


QDQ_LAYOUTS = [  # (scale shape, attrs): per tensor, per axis, blocked
    ((), {}), ((6,), {"axis": 1}), ((4, 2), {"axis": 1, "block_size": 4}),
]


@pytest.mark.parametrize("to", list(MINIFLOATS) + list(INTS), ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("layout", range(len(QDQ_LAYOUTS)))
def test_quantize_and_dequantize(to, layout):
    rng = np.random.default_rng(to * 10 + layout)
    shape, attrs = QDQ_LAYOUTS[layout]
    np_type = NARROW[to]
    x = (rng.standard_normal((4, 6)) * 40).astype(np.float32)
    x[0, :3] = [np.inf, -np.inf, np.nan] if to in MINIFLOATS else [1e9, -1e9, 0.5]
    scale = rng.uniform(0.5, 3, shape).astype(np.float32)
    zp = None
    if to in INTS:
        lo, hi = int(ml_dtypes.iinfo(np_type).min), int(ml_dtypes.iinfo(np_type).max)
        zp = rng.integers(lo, hi + 1, shape).astype(np_type)
    elif to == TensorProto.FLOAT4E2M1:
        zp = rng.choice([-1.0, 0.0, 0.5], shape).astype(np_type)
    q_attrs = {**attrs, **({"output_dtype": to} if zp is None else {})}
    for sat in (1, 0) if to in MINIFLOATS and to != TensorProto.FLOAT4E2M1 else (1,):
        q_model, feeds = _qdq_model("QuantizeLinear", x, scale, zp, {**q_attrs, "saturate": sat}, to)
        _compile_and_compare(q_model, feeds, "x86")
    q = ReferenceEvaluator(q_model).run(None, feeds)[0]
    dq_model, feeds = _qdq_model("DequantizeLinear", q, scale, zp, attrs, TensorProto.FLOAT)
    # the spec's formula: ONNX's reference leaves out float4's zero point here (and adds it when quantizing)
    expand = (lambda p: np.repeat(p, 4, axis=1)[:, :6]) if "block_size" in attrs else (lambda p: p)
    want = q.astype(np.float32) - (expand(zp).astype(np.float32) if zp is not None else 0)
    _compile_and_compare(dq_model, feeds, "x86", {"y": want * expand(scale)})


def test_int4_weights_fold_into_a_matmul():
    """A 4-bit weight dequantized per block, as quantized language models store it."""
    rng = np.random.default_rng(3)
    w = rng.integers(-8, 8, (32, 16)).astype(ml_dtypes.int4)
    scale = rng.uniform(0.01, 0.1, (4, 16)).astype(np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wf"], axis=0, block_size=8),
             helper.make_node("MatMul", ["x", "wf"], ["y"])]
    graph = helper.make_graph(nodes, "int4_matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (3, 32))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (3, 16))],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    x = rng.standard_normal((3, 32)).astype(np.float32)
    want = x @ (w.astype(np.float32) * np.repeat(scale, 8, axis=0))
    with tempfile.TemporaryDirectory() as tmp:
        got = pdc.compile(model, target="x86", out_dir=os.path.join(tmp, "b")).run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_ir_text_round_trips_narrow_types(tmp_path):
    model, _ = _cast_model([("a", np.zeros((2, 3), np.float32), TensorProto.FLOAT8E4M3FN, {"saturate": 0}),
                            ("b", np.zeros(4, np.int64), TensorProto.INT4, {})])
    g = import_onnx(model)
    text = print_graph(g)
    assert "f8e4m3fn[2,3]" in text and "i4[4]" in text and "saturate=0" in text
    assert print_graph(parse_graph(text)) == text
    # constants of narrow types survive the weights file (.npy has no such dtypes: raw bytes)
    w = np.array([-8, 7, 3, -1], ml_dtypes.int4)
    g.constants.append(Value("w4", TensorType(D.int4, (4,)), w))
    g.outputs.append(g.constants[-1])
    save_ir(g, str(tmp_path / "m.pdir"))
    back = load_ir(str(tmp_path / "m.pdir"))
    assert print_graph(back) == print_graph(g)
    assert back.constants[0].data.dtype == w.dtype and back.constants[0].data.tobytes() == w.tobytes()


def test_arithmetic_on_narrow_types_is_refused():
    graph = helper.make_graph([helper.make_node("Add", ["a", "a"], ["y"])], "add_f8",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT8E4M3FN, (3,))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FN, (3,))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedError, match=r"^node add -> %y: add does not take f8e4m3fn tensors \(float8, 4-bit "
                                               r"and 2-bit types go through Cast, QuantizeLinear, DequantizeLinear "
                                               r"and reshapes only\)"):
        verify_graph(import_onnx(model))


@pytest.mark.parametrize("target", ["opencl", "cuda"])
def test_device_targets_convert_narrow_types_on_the_host(target, tmp_path):
    """A float8 round trip (one fused elementwise kernel at -O2): the device printers have no
    spelling for the narrow types, so the node runs on the host, whose C converts them."""
    model, _ = _cast_model([("a", np.zeros(4, np.float32), TensorProto.FLOAT8E5M2, {})])
    model.graph.node.append(helper.make_node("Cast", ["a_y"], ["z"], to=TensorProto.FLOAT))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, (4,)))
    c = compile_details(model, str(tmp_path / "b"), target=target, build=False)
    kernels = c.manifest["kernels"]
    assert [k["op"] for k in kernels] == ["fused_elementwise"]
    assert not kernels[0].get("path", "").startswith(("cuda/", "opencl/"))  # a host kernel


def test_fpga_refuses_narrow_types(tmp_path):
    model, _ = _cast_model([("a", np.zeros((1, 4), np.float32), TensorProto.FLOAT8E5M2, {})])
    model.graph.node.append(helper.make_node("Cast", ["a_y"], ["z"], to=TensorProto.FLOAT))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, (1, 4)))
    with pytest.raises(PdcError, match=r"^fpga-hls has no kernels for f8e5m2 \(node fused_elementwise -> %z\); "
                                       r"float8, 4-bit and 2-bit tensors compile for the C targets"):
        pdc.compile(model, target="fpga-hls", out_dir=str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
