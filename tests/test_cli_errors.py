"""User mistakes give one line on stderr that says what and where, a non-zero exit, no traceback."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def pdc(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "pdc.cli", *args], capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def assert_one_line_error(rc, err, pattern, code=1):
    assert rc == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    import re
    assert re.search(pattern, lines[0]), lines[0]


def relu_model(op="Relu", inputs=("x",)):
    nodes = [helper.make_node(op, list(inputs), ["y"], name="n0")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_missing_file(tmp_path):
    rc, _, err = pdc("inspect", str(tmp_path / "nope.onnx"))
    assert_one_line_error(rc, err, r"^pdc: error: .*nope\.onnx: no such file$")


def test_folder_is_not_a_model(tmp_path):
    rc, _, err = pdc("inspect", str(tmp_path))
    assert_one_line_error(rc, err, r"is a folder, not a model file$")


def test_not_a_model(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"this is not a protobuf \xff\xfe")
    rc, _, err = pdc("inspect", str(p))
    assert_one_line_error(rc, err, r"junk\.onnx: not a valid ONNX model \(truncated or corrupt protobuf\)$")
    q = tmp_path / "notes.txt"
    q.write_text("hello")
    rc, _, err = pdc("opt", str(q))
    assert_one_line_error(rc, err, r"notes\.txt: unknown model format "
                                   r"\(expected \.onnx, a Paddle model \(inference\.json or \.pdmodel\) or \.pdir\)$")


def test_truncated_protobuf(tmp_path):
    model = relu_model()
    model.graph.initializer.append(numpy_helper.from_array(np.ones((64, 64), np.float32), "big"))
    data = model.SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    rc, _, err = pdc("inspect", str(p))
    assert_one_line_error(rc, err, r"cut\.onnx: not a valid ONNX model \(truncated or corrupt protobuf\)$")


def test_unsupported_ops_are_listed_in_one_error(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("FooOp", ["a"], ["b"], name="foo1", domain="custom.dom"),
             helper.make_node("Bernoulli", ["b"], ["c"], name="bern1"),
             helper.make_node("Bernoulli", ["c"], ["d"], name="bern2"),
             helper.make_node("FooOp", ["d"], ["y"], name="foo2", domain="custom.dom")]
    g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.dom", 1)])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    rc, _, err = pdc("inspect", str(p))
    assert_one_line_error(rc, err, r"m\.onnx: unsupported ops: Bernoulli x2 \(first: 'bern1'\), "
                                   r"custom\.dom\.FooOp x2 \(first: 'foo1'\)$")


def test_bad_option(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(relu_model(), p)
    rc, _, err = pdc("opt", str(p), "--emit", "llvm")
    assert_one_line_error(rc, err, r"argument --emit: invalid choice: 'llvm'", code=2)
    rc, _, err = pdc("run", str(p), "--shape", "x=1,a")
    assert_one_line_error(rc, err, r"--shape 'x=1,a': expected NAME=D0,D1,\.\.\. with non-negative integers")
    rc, _, err = pdc("frobnicate")
    assert_one_line_error(rc, err, r"invalid choice: 'frobnicate'", code=2)


def test_unknown_target(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(relu_model(), p)
    rc, _, err = pdc("check", str(p), "--target", "z80")
    assert_one_line_error(rc, err, r"^pdc: error: unknown target 'z80' \(known targets: x86, x86-avx2, x86-avx512, "
                                   r"reference(, [a-z0-9-]+)*\)$")


def test_unbound_symbolic_dim(tmp_path):
    p = tmp_path / "m.onnx"
    m = relu_model()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(m, p)
    rc, _, err = pdc("run", str(p))
    assert_one_line_error(rc, err, r"input 'x' has type f32\[batch,3\]: bind its dims with --shape x=D0,D1,\.\.\.$")
    rc, out, err = pdc("run", str(p), "--shape", "batch=4")
    assert rc == 0, err
    assert out.startswith("y: float32[4, 3] min 0")


@pytest.mark.parametrize("location, message", [
    ("../../etc/passwd", r"external data location '\.\./\.\./etc/passwd' points outside the model's folder$"),
    ("/etc/passwd", r"external data location '/etc/passwd' must be a path relative to the model's folder$"),
    ("missing.bin", r"external data file 'missing\.bin' not found next to the model$"),
])
def test_external_data_must_stay_in_the_model_folder(tmp_path, location, message):
    m = relu_model("Add", ("x", "w"))
    t = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    m.graph.initializer.append(t)
    p = tmp_path / "ext.onnx"
    p.write_bytes(m.SerializeToString())
    rc, _, err = pdc("inspect", str(p))
    assert_one_line_error(rc, err, r"ext\.onnx: initializer 'w': " + message)


def test_external_data_inside_the_folder_loads(tmp_path):
    m = relu_model("Add", ("x", "w"))
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    m.graph.initializer.append(numpy_helper.from_array(w, "w"))
    p = tmp_path / "ext.onnx"
    onnx.save(m, str(p), save_as_external_data=True, all_tensors_to_one_file=True, location="sub_weights.bin",
              size_threshold=0)
    assert (tmp_path / "sub_weights.bin").exists()
    from pdc.frontend import load_model
    g = load_model(str(p))
    np.testing.assert_array_equal(g.constants[0].data, w)


def test_version_and_help():
    rc, out, _ = pdc("--version")
    assert rc == 0 and out.startswith("pdc ")
    rc, out, _ = pdc("--help")
    assert rc == 0
    for cmd in ("opt", "inspect", "run", "check"):
        assert cmd in out
