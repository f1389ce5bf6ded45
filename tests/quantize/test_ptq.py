"""Post-training quantization on the reference interpreter: what the quantizer rewrites, the digits
CNN's int8 accuracy, and the errors for bad calibration data."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pdc.frontend.onnx_import import import_onnx
from pdc.ir import PdcError
from pdc.ir.interpreter import run_graph
from pdc.quantize import Options, load_calibration, quantize, quantize_model


def digits_split():
    """The digits CNN's training and held-back images (the split tests/zoo_models/arm_models.py trains on)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[:, None]
    x_tr, x_te, _, y_te = train_test_split(x, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
    return x_tr, x_te, y_te


def conv_model(tmp_path, bias_as_add=True):
    """x -> Conv 3x3 (bias as a separate Add, as paddle2onnx writes it) -> Relu -> MaxPool -> Flatten
    -> Gemm -> Sigmoid: the quantizer takes conv+add+relu and gemm, the sigmoid stays float."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (1, 4, 1, 1)).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.3, (3, 16)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.normal(0, 0.1, (3,)).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "b"], ["cb"], name="bias"),
             helper.make_node("Relu", ["cb"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["g"], ["y"], name="sigmoid")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path, import_onnx(model, "m")


def samples(n, shape=(1, 2, 4, 4), seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(n)]


def test_conv_bias_relu_and_gemm_become_integer_ops(tmp_path):
    _, g = conv_model(tmp_path)
    qg, report = quantize(g, samples(16))
    ops = [n.op for n in qg.nodes]
    assert ops == ["quantize_linear", "qconv", "max_pool", "flatten", "qmatmul", "lookup"]
    conv = qg.nodes[1]
    # the bias add is folded into the int32 bias, the ReLU into the output clamp (zero -> -128 = qmin)
    assert conv.inputs[2].type.dtype.name == "int32" and conv.attrs["y_zero"] == -128
    assert conv.outputs[0].type.quant.zero == (-128,)
    # pooling and flattening keep the conv output's quantization
    assert qg.nodes[2].outputs[0].type.quant == qg.nodes[3].outputs[0].type.quant == conv.outputs[0].type.quant
    w = conv.inputs[1]
    assert w.type.quant.axis == 0 and len(w.type.quant.scale) == 4 and set(w.type.quant.zero) == {0}
    assert int(np.abs(w.data).max()) == 127 and np.all(np.abs(w.data).max(axis=(1, 2, 3)) == 127)
    # the sigmoid of the gemm's int8 codes is a table of float32 values (the model's output is float)
    fc, lookup = qg.nodes[4], qg.nodes[5]
    table, q = lookup.inputs[1].data, fc.outputs[0].type.quant
    codes = np.arange(-128, 128)
    want = 1 / (1 + np.exp(-((codes - q.zero[0]) * np.float32(q.scale[0])).astype(np.float64)))
    assert table.dtype == np.float32 and table.shape == (256,) and np.abs(table - want).max() < 1e-6
    assert report.quantized == [("conv", "conv"), ("fc", "gemm"), ("sigmoid", "sigmoid")]
    assert report.lines() == ["quantized 3 nodes to int8 (1 conv, 1 gemm, 1 sigmoid)"]
    x = samples(1, seed=5)[0]
    want, got = run_graph(g, x)["y"], run_graph(qg, x)["y"]
    assert np.abs(got - want).max() < 0.03


def test_per_tensor_weights_and_uint8_symmetric_activations(tmp_path):
    _, g = conv_model(tmp_path)
    qg, _ = quantize(g, samples(8), Options(per_channel=False, activations="uint8", symmetric=True))
    conv = next(n for n in qg.nodes if n.op == "qconv")
    assert conv.inputs[1].type.quant.axis is None and len(conv.attrs["scale"]) == 1
    assert conv.inputs[0].type.dtype.name == "uint8" and conv.inputs[0].type.quant.zero == (128,)


def test_keep_float_by_op_and_by_node(tmp_path):
    _, g = conv_model(tmp_path)
    qg, report = quantize(g, samples(4), Options(keep_float=("fc",)))
    assert [n.op for n in qg.nodes].count("gemm") == 1 and report.kept_float == [("fc", "gemm", "--keep-float")]
    assert "kept float: fc (gemm): --keep-float" in report.lines()
    with pytest.raises(PdcError, match=r"^the model has no quantizable op"):
        quantize(g, samples(4), Options(keep_float=("conv", "gemm")))


def test_bias_correction_takes_back_the_weights_mean_rounding_shift(tmp_path):
    """x (mean far from 0) -> Gemm with weights that all round the same way: every output is shifted
    by the sum of the rounding errors times the mean input; the corrected bias removes that shift."""
    rng = np.random.default_rng(2)
    w = (np.round(rng.uniform(-1, 1, (32, 4)) * 127) + 0.4) / 127  # every weight 0.4 code above a code
    w[0] = 1.0  # each column's largest weight is 1
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(w.astype(np.float32), "w")])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "m")
    data = [{"x": rng.uniform(2, 4, (1, 32)).astype(np.float32)} for _ in range(32)]
    mean_error = {}
    for correct in (False, True):
        qg, _ = quantize(g, data, Options(bias_correction=correct))
        fc = next(n for n in qg.nodes if n.op == "qmatmul")
        assert (fc.inputs[2] is not None) == correct  # the gemm had no bias: one is made to correct
        mean_error[correct] = np.mean([run_graph(qg, d)["y"][0] - run_graph(g, d)["y"][0] for d in data], axis=0)
        if not correct:  # the shift the weights' rounding gives: (w_q - w) . mean(x), per column
            w_q = fc.inputs[1].data * np.asarray(fc.inputs[1].type.quant.scale)
            shift = np.mean([d["x"][0] for d in data], axis=0) @ (w_q - w)
    assert np.abs(shift).max() > 0.05
    assert np.abs(mean_error[False] - shift).max() < 0.01  # the outputs' mean error is that shift ...
    assert np.abs(mean_error[True]).max() < 0.01  # ... which the corrected bias takes back


def test_weight_scales_take_the_grid_with_the_least_error():
    """A channel's grid ends at its largest |w| or, where the weights have long tails, a little
    before it: clipping the few largest buys finer steps for the many others."""
    from pdc.quantize.ptq import weight_bounds
    rng = np.random.default_rng(5)
    rows = np.stack([rng.normal(0, 1, 4000), rng.laplace(0, 1, 4000)])

    def error(row, bound):
        step = bound / 127
        return float(np.sum((row - np.clip(np.rint(row / step), -127, 127) * step) ** 2))
    bounds, top = weight_bounds(rows), np.abs(rows).max(axis=1)
    assert np.all(bounds <= top) and bounds[0] >= 0.95 * top[0] and bounds[1] < 0.99 * top[1]
    assert all(error(r, b) <= error(r, t) for r, b, t in zip(rows, bounds, top))
    assert error(rows[1], bounds[1]) < 0.99 * error(rows[1], top[1])
    for f in np.linspace(0.6, 1.0, 9):  # no grid end of the candidates does better
        assert all(error(r, b) <= error(r, f * t) + 1e-9 for r, b, t in zip(rows, bounds, top))


def test_an_add_read_only_as_float_stays_float(tmp_path):
    """A residual add before a float op (here a softmax; a LayerNorm in a transformer): its sum is
    dequantized for its only reader anyway, so it is added in float, without an int8 rounding; an
    add that a quantized layer reads becomes qadd."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (8, 8)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("Add", ["h", "x"], ["r"], name="residual"),
             helper.make_node("Softmax", ["r"], ["s"], name="softmax"),
             helper.make_node("MatMul", ["h", "w"], ["h2"], name="proj2"),
             helper.make_node("Add", ["h2", "h"], ["r2"], name="residual2"),
             helper.make_node("MatMul", ["r2", "w"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, [4, 8]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [w])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "m")
    data = [{"x": rng.normal(0, 1, (4, 8)).astype(np.float32)} for _ in range(8)]
    qg, report = quantize(g, data)
    op_of = {n.name: n.op for n in qg.nodes}
    assert op_of["residual"] == "add" and op_of["residual2"] == "qadd" and op_of["softmax"] == "softmax"
    assert ("residual", "add") not in report.quantized and not report.kept_float


def test_digits_int8_accuracy_within_one_point_of_float(zoo):
    """100 calibration images from the training split; accuracy on the 360 held-back digits."""
    path = zoo("digits_cnn")
    from pdc.frontend import load_model
    g = load_model(path)
    x_tr, x_te, y_te = digits_split()
    qg, report = quantize_model(g, x_tr[:100][:, None])
    assert report.lines() == ["quantized 3 nodes to int8 (2 conv, 1 matmul)"]
    logits = lambda graph: np.stack([run_graph(graph, {"x": x_te[i:i + 1]})["fetch_name_0"][0]  # noqa: E731
                                     for i in range(len(x_te))])
    acc_float, acc_int8 = ((logits(gr).argmax(1) == y_te).mean() for gr in (g, qg))
    print(f"\ndigits CNN, reference interpreter: float {acc_float:.4f}, int8 {acc_int8:.4f}")
    assert acc_float > 0.9 and abs(acc_int8 - acc_float) <= 0.01


# ---- bad calibration data -------------------------------------------------------------------------
@pytest.mark.parametrize("data, message", [
    ({"y": np.zeros((2, 1, 2, 4, 4), np.float32)},
     r"^calibration data: holds \['y'\] but the model's inputs are \['x'\] \(missing \['x'\]; unknown \['y'\]\)$"),
    ({"x": np.zeros((2, 2, 4, 4), np.float32)},
     r"^calibration data: 'x' has shape \[2, 2, 4, 4\]; expected \[N, 1, 2, 4, 4\] \(samples stacked on a new "
     r"leading axis\)$"),
    ({"x": np.zeros((2, 1, 2, 4, 4), np.float64)}, r"^calibration data: 'x' has dtype float64; the input is float32$"),
    ({"x": np.zeros((0, 1, 2, 4, 4), np.float32)}, r"^calibration data: holds no samples \(the leading axis is empty\)$"),
])
def test_bad_calibration_data(tmp_path, data, message):
    _, g = conv_model(tmp_path)
    with pytest.raises(PdcError, match=message):
        load_calibration(data, g)


def test_calibration_files(tmp_path):
    _, g = conv_model(tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(PdcError, match=r"junk\.npz: not a \.npy or \.npz file"):
        load_calibration(str(tmp_path / "junk.npz"), g)
    with pytest.raises(PdcError, match=r"nope\.npz: no such calibration file$"):
        load_calibration(str(tmp_path / "nope.npz"), g)
    np.save(tmp_path / "one.npy", np.zeros((3, 1, 2, 4, 4), np.float32))
    assert len(load_calibration(str(tmp_path / "one.npy"), g)) == 3


def test_a_model_without_quantizable_ops(tmp_path):
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"])]
    model = helper.make_model(helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(PdcError, match=r"^the model has no quantizable op \(Conv, Gemm, MatMul with constant "
                                       r"weights, Add, Mul\)$"):
        quantize_model(import_onnx(model, "m"), np.zeros((2, 2), np.float32))


# ---- command line --------------------------------------------------------------------------------
def pdc(*args):
    r = subprocess.run([sys.executable, "-m", "pdc.cli", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_cli_quantize_writes_a_model_pdc_compile_takes(tmp_path):
    path, _ = conv_model(tmp_path)
    np.savez(tmp_path / "cal.npz", x=np.stack([s["x"] for s in samples(20)]))
    out = tmp_path / "m_int8.pdir"
    rc, stdout, stderr = pdc("quantize", str(path), "--calibration", str(tmp_path / "cal.npz"), "--method",
                             "percentile", "-o", str(out))
    assert rc == 0, stderr
    assert stdout.splitlines() == ["quantized 3 nodes to int8 (1 conv, 1 gemm, 1 sigmoid)", f"wrote {out} and {out}.npz"]
    assert "pdc: calibrating: 20/20 samples" in stderr
    assert "qconv(" in out.read_text() and "{scale=" in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["--calibration", "CAL", "-o", "out.onnx"], r"^pdc: error: -o out\.onnx: the quantized model is IR text, "
                                                 r"name it NAME\.pdir$"),
    (["--calibration", "MISSING", "-o", "out.pdir"], r"^pdc: error: .*missing\.npz: no such calibration file$"),
    (["--calibration", "CAL", "--method", "kl", "-o", "o.pdir"], r"argument --method: invalid choice: 'kl'"),
])
def test_cli_quantize_errors(tmp_path, args, message):
    path, _ = conv_model(tmp_path)
    np.savez(tmp_path / "cal.npz", x=np.zeros((2, 1, 2, 4, 4), np.float32))
    args = [a.replace("CAL", str(tmp_path / "cal.npz")).replace("MISSING", str(tmp_path / "missing.npz"))
            for a in args]
    rc, _, err = pdc("quantize", str(path), *args)
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    import re
    assert re.search(message, err.strip()), err


def test_compile_quantize_needs_calibration(tmp_path):
    path, _ = conv_model(tmp_path)
    rc, _, err = pdc("compile", str(path), "--quantize", "int8", "-o", str(tmp_path / "b"))
    assert rc == 1 and err.strip().splitlines()[-1] == ("pdc: error: --quantize int8 needs --calibration DATA "
                                                        "(.npz keyed by input name, or .npy)")
    assert not Path(tmp_path / "b").exists()


def test_average_pooling_runs_as_an_integer_depthwise_convolution(tmp_path):
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["a"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0],
                              count_include_pad=1),
             helper.make_node("GlobalAveragePool", ["a"], ["y"])]
    model = helper.make_model(helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    g = import_onnx(model, "m")
    qg, report = quantize(g, samples(16, (1, 2, 6, 6)))
    assert [n.op for n in qg.nodes] == ["quantize_linear", "qconv", "qconv", "qconv", "dequantize_linear"]
    pool, gap = qg.nodes[2], qg.nodes[3]  # the pool gives 3x3: (6 + 1 - 2) // 2 + 1
    assert pool.attrs["group"] == 4 and pool.attrs["kernel_shape"] == [2, 2] and pool.attrs["pads"] == [1, 1, 0, 0]
    # the global pool gives the model's output: its int32 sums, dequantized per channel with s_x * s_w
    assert gap.attrs["kernel_shape"] == [3, 3] and gap.attrs["y_dtype"].name == "int32" and "scale" not in gap.attrs
    deq = qg.nodes[4]
    sx, sw = gap.inputs[0].type.quant.scale[0], np.array(gap.inputs[1].type.quant.scale, np.float32)
    assert deq.inputs[0] is gap.outputs[0] and deq.attrs["axis"] == 1
    np.testing.assert_array_equal(deq.inputs[1].data, np.float32(sx) * sw)
    assert np.all(pool.inputs[1].data == 127) and np.all(gap.inputs[1].data == 127)
    assert [op for _, op in report.quantized] == ["conv", "average_pool", "global_average_pool"]
    x = samples(1, (1, 2, 6, 6), seed=9)[0]
    want, got = run_graph(g, x)["y"], run_graph(qg, x)["y"]
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()


def attention_model():
    """A post-LN transformer layer as paddle2onnx writes it: q, k, v projections, q * 1/sqrt(d),
    q @ k^T, Softmax, @ v, an output projection, the residual add and a LayerNorm written out as
    reductions; then a feed-forward matmul, a second residual add and a LayerNormalization."""
    rng = np.random.default_rng(3)
    w = lambda name: numpy_helper.from_array(rng.normal(0, 0.3, (8, 8)).astype(np.float32), name)  # noqa: E731
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    inits = [w("wq"), w("wk"), w("wv"), w("wo"), w("wf"), c("scale", [0.5]), c("two", 2.0), c("eps", 1e-5),
             c("gamma", rng.uniform(0.5, 1.5, 8)), c("beta", rng.normal(0, 0.1, 8)),
             c("gamma2", rng.uniform(0.5, 1.5, 8)), c("beta2", rng.normal(0, 0.1, 8))]
    mm = lambda a, b, out: helper.make_node("MatMul", [a, b], [out], name=out)  # noqa: E731
    nodes = [mm("x", "wq", "q"), mm("x", "wk", "k"), mm("x", "wv", "v"),
             helper.make_node("Mul", ["q", "scale"], ["qs"], name="qs"),
             helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
             mm("qs", "kt", "s"), helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
             mm("p", "v", "o"), mm("o", "wo", "h"), helper.make_node("Add", ["x", "h"], ["r"], name="residual"),
             helper.make_node("ReduceMean", ["r"], ["m"], name="mean", axes=[-1]),
             helper.make_node("Sub", ["r", "m"], ["d"], name="d"),
             helper.make_node("Pow", ["d", "two"], ["d2"], name="d2"),
             helper.make_node("ReduceMean", ["d2"], ["var"], name="var", axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="ve"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="sd"),
             helper.make_node("Div", ["d", "sd"], ["n"], name="n"),
             helper.make_node("Mul", ["n", "gamma"], ["ng"], name="ng"),
             helper.make_node("Add", ["ng", "beta"], ["ln"], name="ln"),
             mm("ln", "wf", "f"), helper.make_node("Add", ["ln", "f"], ["r2"], name="residual2"),
             helper.make_node("LayerNormalization", ["r2", "gamma2", "beta2"], ["y"], name="ln2", axis=-1)]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8])], inits)
    return import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "m")


def test_attention_and_layer_norms_become_integer_ops():
    """The act x act matmuls become qmatmul (b with its zero point), q * 0.5 a view of q's codes on half
    the scale (no node), the softmax qsoftmax, each residual add + LayerNorm one qlayer_norm of the
    exact sum (the first written out as reductions: fuse-layer-norm runs first), the last one giving
    the model's float output itself: nothing float is left but the input's quantize_linear."""
    from pdc.ir.ops.qint import requant_scale
    g = attention_model()
    rng = np.random.default_rng(4)
    data = [{"x": rng.normal(0, 1, (1, 6, 8)).astype(np.float32)} for _ in range(16)]
    qg, report = quantize(g, data)
    assert [n.op for n in qg.nodes] == ["quantize_linear", "qmatmul", "qmatmul", "qmatmul", "transpose", "qmatmul",
                                        "qsoftmax", "qmatmul", "qmatmul", "qlayer_norm", "qmatmul", "qlayer_norm"]
    node = {n.name: n for n in qg.nodes}
    q, kt = node["s"].inputs
    assert q is node["q"].outputs[0] and kt is node["kt"].outputs[0]  # q's own codes
    assert node["s"].attrs["scale"] == [requant_scale(requant_scale(q.type.quant.scale[0], 0.5),
                                                      kt.type.quant.scale[0], divisor=node["s"].outputs[0].type.quant.scale[0])]
    assert node["s"].attrs["b_zero"] == kt.type.quant.zero[0]
    assert node["o"].inputs[0] is node["softmax"].outputs[0]
    ln, ln2 = node["ln"], node["ln2"]
    assert [v.name for v in ln.inputs[::3]] == ["x.q", "h.q"]  # the model's input quantized once, for both uses
    assert 1024 in (ln.attrs["x_mult"], ln.attrs["r_mult"])  # the larger scale's step on a 2^10-finer grid
    assert ln.outputs[0].type.dtype.short == "i8" and ln2.attrs["y_dtype"].short == "f32" and ln2.outputs[0] is qg.outputs[0]
    assert ("residual", "add") in report.quantized and ("ln", "layer_normalization") in report.quantized
    assert ("qs", "mul") in report.quantized
    want, got = (np.concatenate([run_graph(m, f)["y"].reshape(-1) for f in data[:4]]) for m in (g, qg))
    assert want @ got / (np.linalg.norm(want) * np.linalg.norm(got)) > 0.99
