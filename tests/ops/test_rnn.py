"""LSTM, GRU and RNN against ONNX Runtime: directions, sequence_lens, initial states, peepholes,
clip, input_forget, linear_before_reset, activations with alpha/beta, layout 1, optional outputs."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from pdc.frontend.onnx_import import import_onnx
from pdc.ir import PdcError, run_graph, verify_graph
from tolerances import KERNEL, Tolerance

rng = np.random.default_rng(11)
T, N, I, H = 4, 3, 5, 3
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
INPUTS = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]


def one_node(op, arrays, attrs, outputs=("Y", "Y_h", "Y_c"), opset=14, consts=()):
    """`arrays`: dict by ONNX input name (absent = omitted); names in `consts` become initializers."""
    names = INPUTS[:max(INPUTS.index(k) for k in arrays) + 1]
    node_in = [n if n in arrays else "" for n in names]
    feeds = {n: a for n, a in arrays.items() if n not in consts}
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()]
    inits = [numpy_helper.from_array(arrays[n], n) for n in consts if n in arrays]
    node = helper.make_node(op, node_in, list(outputs), **attrs)
    outs = [helper.make_tensor_value_info(o, 0, None) for o in outputs if o]
    model = helper.make_model(helper.make_graph([node], "t", vis, outs, inits),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    inferred = onnx.shape_inference.infer_shapes(model)
    for o, io in zip(model.graph.output, inferred.graph.output):  # ORT wants typed outputs
        o.CopyFrom(io)
    return model, feeds


def run_pdc(model, feeds):
    g = import_onnx(model)
    verify_graph(g)
    res = run_graph(g, feeds)
    return [res[v.name] for v in g.outputs]


def run_ort(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_close(got, want, tolerance: Tolerance = KERNEL):
    """Recurrences over a few steps, summed in another order than ONNX Runtime's."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        tolerance.check(a, b)


def check(op, arrays, attrs, outputs=("Y", "Y_h", "Y_c"), consts=(), opset=14):
    model, feeds = one_node(op, arrays, attrs, outputs, consts=consts, opset=opset)
    assert_close(run_pdc(model, feeds), run_ort(model, feeds))


def make_arrays(op, ndir=1, bias=True, seq_lens=None, init=True, peephole=False, dtype=np.float32):
    g = GATES[op]
    a = {"X": rng.standard_normal((T, N, I)),
         "W": rng.standard_normal((ndir, g * H, I)) * 0.5,
         "R": rng.standard_normal((ndir, g * H, H)) * 0.5}
    if bias:
        a["B"] = rng.standard_normal((ndir, 2 * g * H)) * 0.5
    a = {k: v.astype(dtype) for k, v in a.items()}
    if seq_lens is not None:
        a["sequence_lens"] = np.array(seq_lens, np.int32)
    if init:
        a["initial_h"] = rng.standard_normal((ndir, N, H)).astype(dtype)
        if op == "LSTM":
            a["initial_c"] = rng.standard_normal((ndir, N, H)).astype(dtype)
    if peephole:
        a["P"] = (rng.standard_normal((ndir, 3 * H)) * 0.5).astype(dtype)
    return a


def _outputs(op):
    return ("Y", "Y_h", "Y_c") if op == "LSTM" else ("Y", "Y_h")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("seq_lens", [None, [4, 0, 2]])
def test_directions_and_sequence_lens(op, direction, seq_lens):
    ndir = 2 if direction == "bidirectional" else 1
    arrays = make_arrays(op, ndir, seq_lens=seq_lens, peephole=op == "LSTM")
    check(op, arrays, {"hidden_size": H, "direction": direction}, _outputs(op))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_defaults_without_optional_inputs(op):
    arrays = make_arrays(op, bias=False, init=False)
    check(op, arrays, {"hidden_size": H}, _outputs(op))
    # without hidden_size (taken from R; ORT insists on the attribute)
    want = run_ort(*one_node(op, arrays, {"hidden_size": H}, _outputs(op)))
    assert_close(run_pdc(*one_node(op, arrays, {}, _outputs(op))), want)


def test_lstm_clip_input_forget_peepholes():
    arrays = make_arrays("LSTM", 2, seq_lens=[3, 4, 1], peephole=True)
    check("LSTM", arrays, {"hidden_size": H, "direction": "bidirectional", "clip": 0.7, "input_forget": 1})


@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_linear_before_reset_and_clip(lbr):
    arrays = make_arrays("GRU", 2, seq_lens=[2, 4, 3])
    check("GRU", arrays, {"hidden_size": H, "direction": "bidirectional", "linear_before_reset": lbr,
                          "clip": 1.1}, ("Y", "Y_h"))


@pytest.mark.parametrize("acts,alpha,beta", [
    (["Relu", "LeakyRelu", "Softsign"], None, None),
    (["HardSigmoid", "Elu", "Softplus"], [0.3, 0.8], [0.4]),
    (["Sigmoid", "Affine", "ScaledTanh"], [0.6, 1.5], [0.1, 0.7]),
    (["Sigmoid", "ThresholdedRelu", "Tanh"], [0.2], None),
    (["sigmoid", "tanh", "leakyrelu"], [0.2], None),  # names are case-insensitive, like ORT
])
def test_lstm_activations(acts, alpha, beta):
    attrs = {"hidden_size": H, "activations": acts}
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    check("LSTM", make_arrays("LSTM", peephole=True), attrs)


def test_bidirectional_activation_values_are_consumed_in_order():
    attrs = {"hidden_size": H, "direction": "bidirectional", "activations": ["Relu", "LeakyRelu"],
             "activation_alpha": [0.25]}
    check("RNN", make_arrays("RNN", 2), attrs, ("Y", "Y_h"))
    attrs = {"hidden_size": H, "direction": "bidirectional",
             "activations": ["HardSigmoid", "Tanh", "Sigmoid", "Elu"], "activation_alpha": [0.3, 0.5],
             "activation_beta": [0.6]}
    check("GRU", make_arrays("GRU", 2), attrs, ("Y", "Y_h"))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_layout_1_matches_layout_0(op):
    # ORT's CPU kernels reject layout=1: compare with the layout-0 model on transposed data
    arrays = make_arrays(op, 2, seq_lens=[4, 1, 3], peephole=op == "LSTM")
    attrs = {"hidden_size": H, "direction": "bidirectional"}
    model0, feeds0 = one_node(op, arrays, attrs, _outputs(op))
    want = run_ort(model0, feeds0)
    batch_first = dict(arrays)
    batch_first["X"] = arrays["X"].transpose(1, 0, 2).copy()
    for k in ("initial_h", "initial_c"):
        if k in arrays:
            batch_first[k] = arrays[k].transpose(1, 0, 2).copy()
    model1, feeds1 = one_node(op, batch_first, {**attrs, "layout": 1}, _outputs(op))
    got = run_pdc(model1, feeds1)
    want = [want[0].transpose(2, 0, 1, 3)] + [w.transpose(1, 0, 2) for w in want[1:]]
    assert_close(got, want)


def test_optional_outputs_and_constant_weights():
    arrays = make_arrays("LSTM", peephole=True)
    check("LSTM", arrays, {"hidden_size": H}, ("", "Y_h"), consts=("W", "R", "B", "P"))
    check("LSTM", arrays, {"hidden_size": H}, ("", "", "Y_c"), consts=("W", "R"))
    check("GRU", make_arrays("GRU"), {"hidden_size": H}, ("Y",))


def test_opset7_and_float64():
    check("GRU", make_arrays("GRU"), {"hidden_size": H, "linear_before_reset": 1}, ("Y", "Y_h"), opset=7)
    # ORT has no float64 kernels: compare with its float32 result
    arrays = make_arrays("LSTM", 2, dtype=np.float64, peephole=True)
    attrs = {"hidden_size": H, "direction": "bidirectional"}
    want = run_ort(*one_node("LSTM", {k: v.astype(np.float32) if v.dtype == np.float64 else v
                                      for k, v in arrays.items()}, attrs, opset=7))
    got = run_pdc(*one_node("LSTM", arrays, attrs, opset=7))
    assert all(g.dtype == np.float64 for g in got)
    assert_close([g.astype(np.float32) for g in got], want)


@pytest.mark.parametrize("attrs,match", [
    ({"activations": ["Sigmoid", "Affine", "Tanh"]}, "needs a value in activation_alpha"),
    ({"activations": ["Sigmoid", "Tanh"]}, "must list 3 functions"),
    ({"activations": ["Sigmoid", "Gelu", "Tanh"]}, "'Gelu' is not one of"),
    ({"activations": ["Sigmoid", "Tanh", "LeakyRelu"], "activation_alpha": [0.1, 0.2]}, "cannot tell which value"),
    ({"direction": "sideways"}, "direction 'sideways'"),
    ({"hidden_size": H + 1}, "R's last dim"),
])
def test_errors(attrs, match):
    model, _ = one_node("LSTM", make_arrays("LSTM"), {"hidden_size": H, **attrs})
    with pytest.raises(PdcError, match=match):
        import_onnx(model)
