"""FPGA targets: the HLS C++ designs' C simulation against pdc's fixed-point reference (bit for bit),
their accuracy against the float models, the estimate's refusals, the C++ under g++ -Wall -Wextra and
the sanitizers, and the one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from conftest import missing_dependency
from pdc.codegen.hls import reference
from pdc.codegen.hls.renderer import typed_design
from pdc.compiler import compile_details
from pdc.ir.errors import PdcError
from pdc.targets import get_target
from pdc.targets.fpga import CSIM_FLAGS, ap_types_dir, run_samples


@pytest.fixture(scope="module")
def ap_types():
    folder = ap_types_dir()
    if folder is None:
        missing_dependency("the ap_types headers (pip install --no-deps hls4ml)")
    return folder


def _reference(c, target: str, **options) -> dict:
    """pdc's fixed-point reference of a compiled bundle's design, rebuilt from its graph and options."""
    t = get_target(target).with_fixed_point(options.get("precision"), options.get("calibration"),
                                            options.get("reuse_factor"))
    return typed_design(c.graph, t)[0]


def _csim(c, feeds: dict) -> dict:
    """The bundle's C simulation over a batch (each input [N, ...]); outputs stacked the same way."""
    n = len(next(iter(feeds.values())))
    outs = run_samples(c.folder, c.manifest, [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)])
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _jet():
    from zoo import zoo_model
    path = zoo_model("jet_mlp")
    return path, dict(np.load(os.path.join(os.path.dirname(path), "data.npz")))


def _nonzero_weights(path: str, t: str = "ap_fixed<16,6>") -> list[int]:
    """Per MatMul of the model, its weights that stay non-zero in type t (each needs a multiplier)."""
    from pdc.quantize.fixed import Fixed
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return [int(np.count_nonzero(Fixed.parse(t).from_float(inits[n.input[1]]))) for n in m.graph.node
            if n.op_type == "MatMul"]


def _float_accuracy(path: str, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: xi[None]})[0] for xi in x])
    return float((logits.reshape(len(x), -1).argmax(1) == y).mean())


def test_digits_cnn_bit_identical_with_chosen_precisions(ap_types, zoo, tmp_path, capsys):
    """Types chosen from the training split; C simulation of all held-back digits equals the reference bit
    for bit, and the accuracy is within 1 point of the float model's."""
    from quantize.test_ptq import digits_split
    x_tr, x_te, y_te = digits_split()
    model = zoo("digits_cnn")
    c = compile_details(model, str(tmp_path / "digits"), target="fpga-hls", calibration=x_tr[:, None])
    got = _csim(c, {"x": x_te})
    (name,) = got
    want = reference.run(_reference(c, "fpga-hls", calibration=x_tr[:, None]), {"x": x_te})[name]
    assert got[name].dtype == np.float32 and np.array_equal(got[name], want)
    fixed = float((got[name].reshape(len(y_te), -1).argmax(1) == y_te).mean())
    floating = _float_accuracy(model, x_te, y_te)
    p = c.manifest["fpga"]["precision"]
    with capsys.disabled():
        print(f"\ndigits_cnn: float {floating:.4f}, fpga-hls {fixed:.4f} at {p['width']} bits: "
              + "; ".join(f"{e['layer']} {e['result']}" for e in p["layers"]))
    assert p["how"] == "calibrated" and p["width"] <= 16
    assert abs(fixed - floating) <= 0.01


def test_jet_mlp_from_the_command_line(ap_types, tmp_path, capsys):
    """pdc compile --calibration, then pdc.load(dir).run: the MLP equals the reference bit for bit and its
    accuracy is within 1 point of float; the chosen widths are printed."""
    path, data = _jet()
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=data["x_train"][:, None])
    out = tmp_path / "jet"
    r = subprocess.run([sys.executable, "-m", "pdc", "compile", path, "--target", "fpga-hls", "--calibration",
                        str(cal), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "precision chosen from 512 calibration samples:" in r.stderr
    assert "HLS design for xcvu13p-flga2577-2-e at 200 MHz, reuse factor 1: DSP" in r.stdout
    module = pdc.load(str(out))
    x = data["x_test"]
    got = np.concatenate([module.run({"x": xi[None]})["logits"] for xi in x[:40]])
    c = compile_details(path, str(tmp_path / "again"), target="fpga-hls", calibration=str(cal), build=False)
    design = _reference(c, "fpga-hls", calibration=str(cal))
    assert np.array_equal(got, reference.run(design, {"x": x[:40]})["logits"])
    all_got = _csim(c_built(out), {"x": x})["logits"]
    assert np.array_equal(all_got, reference.run(design, {"x": x})["logits"])
    fixed = float((all_got.argmax(1) == data["y_test"]).mean())
    floating = _float_accuracy(path, x, data["y_test"])
    width = json.loads((out / "manifest.json").read_text())["fpga"]["precision"]["width"]
    with capsys.disabled():
        print(f"\njet_mlp: float {floating:.4f}, fpga-hls {fixed:.4f} at {width} bits")
    assert abs(fixed - floating) <= 0.01


class c_built:  # noqa: N801 - a compiled folder seen as compile_details' result
    def __init__(self, folder):
        self.folder = str(folder)
        self.manifest = json.loads((folder / "manifest.json").read_text())


def test_given_precision_and_reuse_factor(ap_types, tmp_path):
    """--precision ap_fixed<16,6> everywhere (hls4ml's default) and reuse factor 4: bit-identical, and the
    estimate trades multipliers for cycles."""
    path, data = _jet()
    x = data["x_test"][:50]
    c1 = compile_details(path, str(tmp_path / "r1"), target="fpga-hls", precision="ap_fixed<16,6>", build=False)
    c4 = compile_details(path, str(tmp_path / "r4"), target="fpga-hls", precision="ap_fixed<16,6>", reuse_factor=4)
    assert {e["result"] for e in c4.manifest["fpga"]["precision"]["layers"]} == {"ap_fixed<16,6>"}
    want = reference.run(_reference(c4, "fpga-hls", precision="ap_fixed<16,6>", reuse_factor=4), {"x": x})
    assert np.array_equal(_csim(c4, {"x": x})["logits"], want["logits"])
    e1, e4 = (c.manifest["fpga"]["estimate"] for c in (c1, c4))
    assert [layer["reuse"] for layer in e4["layers"]] == [4, 4, 4, 4]
    # 16 x 16 bit products take one DSP each, one per non-zero weight at R=1, a quarter of them at R=4
    nonzero = _nonzero_weights(path)
    assert sum(nonzero) > 0.99 * (16 * 64 + 64 * 32 + 32 * 32 + 32 * 5)
    assert e1["total"]["dsp"] == sum(nonzero)
    assert e4["total"]["dsp"] == sum(-(-m // 4) for m in nonzero)
    assert e4["total"]["interval_cycles"] > e1["total"]["interval_cycles"]


def _layers_model() -> tuple[onnx.ModelProto, dict]:
    """One input read by many branches, one per layer form: strided / dilated / grouped / depthwise
    convolutions with asymmetric padding, fused and table activations, a residual add, max and average
    pooling (with and without counting the padding), global pooling into a dense layer, concat, softmax over a
    vector and over each pixel's channels."""
    rng = np.random.default_rng(3)
    inits, nodes, outs = [], [], []

    def w(name, *shape, scale=0.3):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def output(name):
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))

    x = "x"
    a = node("Conv", [x, w("wa", 6, 4, 3, 3), w("ba", 6)], "ca", strides=[2, 2], pads=[1, 0, 2, 1])
    output(node("LeakyRelu", [a], "ya", alpha=0.1))
    b = node("Conv", [x, w("wb", 4, 2, 3, 3), w("bb", 4)], "cb", group=2, dilations=[2, 2], pads=[2, 2, 2, 2])
    output(node("Sigmoid", [b], "yb"))
    c = node("Conv", [x, w("wc", 8, 4, 1, 1), w("bc", 8)], "cc")
    c = node("Relu", [c], "rc")
    output(node("MaxPool", [c], "yc", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    output(node("Softmax", [c], "yj", axis=1))
    d = node("AveragePool", [x], "pd", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    output(node("Tanh", [d], "yd"))
    output(node("AveragePool", [x], "ye", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1],
                count_include_pad=1))
    f = node("GlobalAveragePool", [x], "gf")
    f = node("Flatten", [f], "ff")
    f = node("Gemm", [f, w("wf", 3, 4), w("bf", 3)], "gemf", transB=1)
    output(node("Clip", [f, "lo", "hi"], "yf"))
    output(node("Softmax", [f], "yi", axis=-1))
    inits += [numpy_helper.from_array(np.float32(-0.5), "lo"), numpy_helper.from_array(np.float32(0.7), "hi")]
    g = node("Conv", [x, w("wg", 4, 4, 3, 3), w("bg", 4)], "cg", pads=[1, 1, 1, 1])
    g = node("Add", [g, x], "ag")
    output(node("Relu", [g], "yg"))
    h = node("Conv", [x, w("wh", 4, 1, 3, 3), w("bh", 4)], "ch", group=4, pads=[0, 1, 0, 1])
    h = node("HardSwish", [h], "hh")
    output(node("Concat", [h, node("MaxPool", [x], "mh", kernel_shape=[3, 1])], "yh", axis=1))
    graph = helper.make_graph(nodes, "layers", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 4, 9, 10])],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, {"x": rng.standard_normal((6, 1, 4, 9, 10)).astype(np.float32)}


@pytest.mark.parametrize("types", ["given", "calibrated"])
def test_every_layer_form_bit_identical(ap_types, tmp_path, types):
    """Given one type, or chosen from calibration (the streams inside fused nodes typed from their own
    ranges), every layer form runs bit for bit as the reference and near ONNX Runtime's float values."""
    model, feeds = _layers_model()
    if types == "given":
        options = dict(precision="ap_fixed<16,6,AP_RND,AP_SAT>")
    else:
        cal = np.random.default_rng(9).standard_normal((48, 1, 4, 9, 10)).astype(np.float32)
        options = dict(calibration=cal)
    c = compile_details(model, str(tmp_path / "layers"), target="fpga-hls", **options)
    kinds = {layer["kind"] for layer in c.manifest["fpga"]["estimate"]["layers"]}
    assert kinds == {"conv", "dense", "max_pool", "avg_pool", "activation", "add", "concat", "softmax", "clone"}
    x = feeds["x"][:, 0]
    got = _csim(c, {"x": x})
    want = reference.run(_reference(c, "fpga-hls", **options), {"x": x})
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for name in want:
        assert np.array_equal(got[name], want[name]), name
        floating = np.concatenate([sess.run([name], {"x": xi[None]})[0] for xi in x])
        # the fixed-point design means the model: 10 fractional bits, tables of 1,024 entries over +-32
        np.testing.assert_allclose(want[name], floating, atol=0.08, err_msg=name)


def test_sanitizers_and_warnings(ap_types, tmp_path):
    """The design and testbench build warning-free with g++ -Wall -Wextra, and run clean under
    -fsanitize=address,undefined (outputs unchanged; any report stops the run). The bundle's ubsan.supp
    covers only the ap_types headers' own shifts (ap_private.h)."""
    model, feeds = _layers_model()
    c = compile_details(model, str(tmp_path / "b"), target="fpga-hls", precision="ap_fixed<12,5>", build=False)
    n = c.manifest["name"]
    build = ["g++", *CSIM_FLAGS, "-isystem", ap_types, "-I.", f"{n}.cpp", f"{n}_tb.cpp"]
    plain = subprocess.run(build + ["-o", "plain"], cwd=c.folder, capture_output=True, text=True)
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr[-2000:]
    san = subprocess.run(build + ["-fsanitize=address,undefined", "-o", "san"], cwd=c.folder, capture_output=True,
                         text=True)
    assert san.returncode == 0, san.stderr[-2000:]
    assert (Path(c.folder) / "ubsan.supp").read_text().splitlines()[-1] == "shift-base:ap_private.h"
    x = feeds["x"][:, 0]
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    env = dict(os.environ, UBSAN_OPTIONS="suppressions=ubsan.supp:halt_on_error=1:print_stacktrace=1")
    for exe in ("plain", "san"):
        r = subprocess.run([f"./{exe}", str(tmp_path / "in.bin"), str(tmp_path / f"{exe}.bin")], cwd=c.folder,
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
    assert (tmp_path / "plain.bin").read_bytes() == (tmp_path / "san.bin").read_bytes()


def test_resnet18_does_not_fit_a_pynq_z2(zoo, tmp_path):
    out = tmp_path / "r18"
    with pytest.raises(PdcError) as e:
        compile_details(zoo("resnet18"), str(out), target="fpga-pynq-z2")
    msg = str(e.value)
    assert msg.startswith("fpga-pynq-z2: the design does not fit xc7z020clg400-1: DSP ")
    assert "no reuse factor fits: the weights alone are 187.0 Mbit and the part holds 5.2 Mbit on chip (36.2x)" in msg
    assert not out.exists()


def test_a_reuse_factor_that_fits_is_suggested(tmp_path):
    path, _ = _jet()
    dsp = sum(_nonzero_weights(path))
    with pytest.raises(PdcError, match=rf"^fpga-pynq-z2: the design does not fit xc7z020clg400-1: DSP {dsp:,} of 220 "
                                       rf"\({dsp / 220:.1f}x\).*; --reuse-factor 32 fits$"):
        compile_details(path, str(tmp_path / "j"), target="fpga-pynq-z2", build=False)
    c = compile_details(path, str(tmp_path / "j"), target="fpga-pynq-z2", reuse_factor=32, build=False)
    assert c.manifest["fpga"]["estimate"]["total"]["dsp"] <= 220


@pytest.mark.parametrize("args,message", [
    (["--target", "fpga-hls", "--precision", "float8"], "precision 'float8': expected ap_fixed<W,I>"),
    (["--target", "fpga-hls", "--reuse-factor", "0"], "--reuse-factor 0: must be at least 1"),
    (["--target", "fpga-hls", "--part", "xc9z999"], "--part xc9z999: unknown part (known: "),
    (["--target", "x86", "--reuse-factor", "2"], "--reuse-factor applies to the FPGA targets (fpga-*), not to x86"),
    (["--target", "fpga-zcu104", "--quantize", "int8", "--calibration", "c.npz"],
     "--quantize: fpga-zcu104 computes in fixed point"),
    (["--target", "fpga-hls", "--threads", "2"], "fpga-hls: --threads does not apply"),
    (["--target", "fpga-hls", "--precision", "auto"], "--precision auto chooses the types from data: add --calibration"),
    (["--target", "fpga-hls", "--precision", "auto:2", "--calibration", "c.npz"],
     "--precision auto:2: expected auto or auto:AGREEMENT"),
])
def test_one_line_errors(tmp_path, args, message):
    path, _ = _jet()
    r = subprocess.run([sys.executable, "-m", "pdc", "compile", path, "-q", "-o", str(tmp_path / "o"), *args],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("pdc: error: ") and message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("op,attrs,message", [
    ("LogSoftmax", {}, r"op 'log_softmax' has no FPGA layer \(the dataflow maps conv, gemm / matmul"),
    ("Softmax", {"axis": 2}, r"softmax runs over the channels of each pixel"),
])
def test_a_node_without_a_layer_is_named(tmp_path, op, attrs, message):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node(op, ["x"], ["y"], name="n", **attrs)], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(PdcError, match=rf"^fpga-hls: .*: {message}"):
        compile_details(model, str(tmp_path / "o"), target="fpga-hls")
    assert not (tmp_path / "o").exists()


def test_a_per_layer_precision_file(tmp_path):
    """--precision FILE: a default type, and per layer (by its name in the compile's summary) weight / bias / result types and a
    reuse factor; an unknown layer name is a one-line error listing the layers."""
    path, _ = _jet()
    spec = {"default": "ap_fixed<12,4>",
            "layers": {"r1": {"weight": "ap_fixed<8,2>", "result": "ap_fixed<14,6,AP_RND,AP_SAT>", "reuse": 8}}}
    f = tmp_path / "types.json"
    f.write_text(json.dumps(spec))
    c = compile_details(path, str(tmp_path / "o"), target="fpga-hls", precision=str(f), reuse_factor=2, build=False)
    layers = {e["layer"]: e for e in c.manifest["fpga"]["precision"]["layers"]}
    assert layers["r1"]["weight"] == "ap_fixed<8,2>" and layers["r1"]["bias"] == "ap_fixed<12,4>"
    assert layers["r1"]["result"] == "ap_fixed<14,6,AP_RND,AP_SAT>"
    assert layers["r0"]["weight"] == layers["r0"]["result"] == "ap_fixed<12,4>"
    assert layers["x"]["result"] == "ap_fixed<12,4>"
    reuse = {e["layer"]: e["reuse"] for e in c.manifest["fpga"]["estimate"]["layers"]}
    assert reuse == {"r0": 2, "r1": 8, "r2": 2, "logits": 2}
    f.write_text(json.dumps({"layers": {"fc9": {"weight": "ap_fixed<8,2>"}}}))
    with pytest.raises(PdcError, match=rf"^{f}: no layer 'fc9' \(layers: logits, r0, r1, r2\)$"):
        compile_details(path, str(tmp_path / "p"), target="fpga-hls", precision=str(f), build=False)


def test_report_prints_the_types_and_the_estimate():
    path, _ = _jet()
    r = subprocess.run([sys.executable, "-m", "pdc", "report", path, "--target", "fpga-hls"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "model on fpga-hls (xcvu13p-flga2577-2-e, 200 MHz): types given"
    assert lines[2].split() == ["r0", "dense", "out", "ap_fixed<16,6>;", "weight", "ap_fixed<16,6>,", "bias",
                                "ap_fixed<16,6>,", "accum", "ap_fixed<29,9>"]
    # 16 x 16-bit products: one DSP per non-zero weight, every multiplication in parallel at reuse factor 1
    assert lines[-3].split()[:2] == ["total", f"{sum(_nonzero_weights(path)):,}"]
    j = subprocess.run([sys.executable, "-m", "pdc", "report", path, "--target", "fpga-hls", "--json", "-"],
                       capture_output=True, text=True)
    assert json.loads(j.stdout)["estimate"]["total"]["dsp"] == sum(_nonzero_weights(path))


def test_the_agreement_asked_for_sets_the_width(tmp_path):
    """--precision auto:P: the narrowest width whose reference agrees with float on at least P of the
    calibration samples; a stricter P never gives a narrower width."""
    path, data = _jet()
    cal = data["x_train"][:, None]
    widths = []
    for p in (0.9, 0.999):
        c = compile_details(path, str(tmp_path / str(p)), target="fpga-hls", precision=f"auto:{p}", calibration=cal,
                            build=False)
        got = c.manifest["fpga"]["precision"]
        assert got["how"] == "calibrated" and got["target_agreement"] == p and got["agreement"] >= p
        widths.append(got["width"])
    assert widths[0] <= widths[1]
