"""Paddle frontend: models exported by paddle itself, in PIR JSON and legacy ProgramDesc form, imported
by pdc and run on the reference interpreter, compared with Paddle's own outputs; plus the error cases.

The models come from tests/paddle_models.py (generated once, cached under .cache/paddle/).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import paddle_models as pm
from tolerances import ZOO_ELEMENTWISE, max_rel_error, zoo_tolerance
from pdc.frontend.paddle import load_paddle
from pdc.frontend.paddle.pdiparams import ParamSpec, read_pdiparams
from pdc.ir import dtypes, run_graph, verify_graph
from pdc.ir.errors import PdcError, UnsupportedError

needs_paddle = pytest.mark.usefixtures("paddle_installed")  # skips without paddle, fails in CI

_dirs: dict[str, dict[str, str]] = {}


def names(fmt: str) -> list[str]:
    """The models that must match Paddle in this format."""
    return list(pm.MODELS) + (list(pm.LEGACY_PROGRAMS) if fmt == "legacy" else [])


def model(name: str, fmt: str) -> str:
    """The cached folder of a generated model. The first call generates every missing model, both
    formats side by side (one paddle process each)."""
    if not _dirs:
        with ThreadPoolExecutor(len(pm.FORMATS)) as pool:
            done = {f: pool.submit(pm.ensure_models, names(f) + list(pm.UNSUPPORTED_MODELS), f) for f in pm.FORMATS}
            _dirs.update({f: job.result() for f, job in done.items()})
    return _dirs[fmt][name]


def spellings(folder: str, fmt: str) -> list[str]:
    """The ways a user may name the model: the model file, the path prefix, the folder."""
    ext = ".json" if fmt == "pir" else ".pdmodel"
    prefix = os.path.join(folder, "inference")
    return [prefix + ext, prefix, folder, prefix + ".pdiparams"]


def compare(graph, folder: str) -> list[float]:
    io = np.load(os.path.join(folder, "io.npz"))
    results = run_graph(graph, {v.name: io["in_" + v.name] for v in graph.inputs})
    errors = []
    refs = sorted((k for k in io.files if k.startswith("out_")), key=lambda k: int(k[4:]))
    assert len(graph.outputs) == len(refs)
    for v, key in zip(graph.outputs, refs):
        got, ref = results[v.name], io[key]
        assert got.shape == ref.shape, f"output {key}: shape {got.shape}, paddle {ref.shape}"
        assert got.dtype == ref.dtype, f"output {key}: dtype {got.dtype}, paddle {ref.dtype}"
        if ref.dtype.kind in "biu":
            assert np.array_equal(got, ref), f"output {key} differs"
            errors.append(0.0)
        else:  # max |pdc - paddle| / max |paddle| per output, and element by element
            err = max_rel_error(got, ref)
            assert err <= zoo_tolerance(ref.dtype), f"output {key}: max rel error {err:.3g}"
            ZOO_ELEMENTWISE.check(got, ref, f"output {key}")
            errors.append(err)
    return errors


@needs_paddle
@pytest.mark.parametrize("name, fmt", [(n, f) for f in pm.FORMATS for n in names(f)])
def test_model_matches_paddle(name, fmt):
    folder = model(name, fmt)
    path = spellings(folder, fmt)[names(fmt).index(name) % 3]  # each spelling gets exercised
    graph = load_paddle(path)
    verify_graph(graph)
    compare(graph, folder)


# ---- formats, paths, dims ------------------------------------------------------------------------
@needs_paddle
@pytest.mark.parametrize("fmt", pm.FORMATS)
def test_path_spellings_and_symbolic_batch(fmt):
    folder = model("resnet18", fmt)
    graphs = [load_paddle(p) for p in spellings(folder, fmt)]
    for g in graphs:
        assert [str(v.type) for v in g.inputs] == ["f32[N,3,64,64]"]
        assert [str(v.type) for v in g.outputs] == ["f32[N,10]"]
    from pdc.frontend import load_model
    assert str(load_model(os.path.join(folder, "inference")).inputs[0].type) == "f32[N,3,64,64]"


@needs_paddle
def test_shape_binding():
    from pdc.ir.shapes import bind_shapes
    g = load_paddle(model("lstm", "pir"))
    assert [str(v.type) for v in g.inputs] == ["f32[N,x_d1,16]"]
    bound = bind_shapes(g, {"x": (3, 5, 16)})
    assert [str(v.type) for v in bound.outputs] == ["f32[3,5,48]", "f32[4,3,24]", "f32[4,3,24]"]
    bound = bind_shapes(load_paddle(model("resnet18", "legacy")), {"N": (1,)})
    assert str(bound.outputs[0].type) == "f32[1,10]"


@needs_paddle
def test_folder_with_two_models(tmp_path):
    for fmt in pm.FORMATS:
        for f in glob.glob(os.path.join(model("lenet", fmt), "inference.*")):
            shutil.copy(f, tmp_path / os.path.basename(f).replace("inference", f"m_{fmt}"))
    with pytest.raises(PdcError, match="several Paddle models"):
        load_paddle(str(tmp_path))
    assert len(load_paddle(str(tmp_path / "m_pir")).nodes) > 0


# ---- errors ----------------------------------------------------------------------------------------
def copy_model(fmt: str, dest, name: str = "lenet") -> str:
    for f in glob.glob(os.path.join(model(name, fmt), "inference.*")):
        shutil.copy(f, dest)
    return os.path.join(str(dest), "inference")


@needs_paddle
@pytest.mark.parametrize("fmt", pm.FORMATS)
def test_missing_params(fmt, tmp_path):
    prefix = copy_model(fmt, tmp_path)
    os.remove(prefix + ".pdiparams")
    with pytest.raises(PdcError, match=r"inference\.pdiparams: no such file \(the parameters of"):
        load_paddle(prefix)


@needs_paddle
@pytest.mark.parametrize("fmt", pm.FORMATS)
@pytest.mark.parametrize("cut", [7, 100, 1000])
def test_truncated_params(fmt, cut, tmp_path):
    prefix = copy_model(fmt, tmp_path)
    with open(prefix + ".pdiparams", "r+b") as f:
        f.truncate(os.path.getsize(prefix + ".pdiparams") - cut)
    with pytest.raises(PdcError, match="truncated"):
        load_paddle(prefix)


@needs_paddle
@pytest.mark.parametrize("fmt", pm.FORMATS)
def test_params_of_another_model(fmt, tmp_path):
    prefix = copy_model(fmt, tmp_path)
    shutil.copy(os.path.join(model("mobilenet_v2", fmt), "inference.pdiparams"), prefix + ".pdiparams")
    with pytest.raises(PdcError, match="program/params mismatch"):
        load_paddle(prefix)


@needs_paddle
@pytest.mark.parametrize("fmt", pm.FORMATS)
def test_extra_bytes_in_params(fmt, tmp_path):
    prefix = copy_model(fmt, tmp_path)
    with open(prefix + ".pdiparams", "ab") as f:
        f.write(b"\0" * 12)
    with pytest.raises(PdcError, match="12 bytes remain after the 10 parameters"):
        load_paddle(prefix)


@needs_paddle
def test_params_in_pir_and_legacy_are_the_same():
    a, b = load_paddle(model("lenet", "pir")), load_paddle(model("lenet", "legacy"))
    assert sorted(c.data.tobytes() for c in a.constants if c.data.size > 16) == \
        sorted(c.data.tobytes() for c in b.constants if c.data.size > 16)


@needs_paddle
def test_unknown_pir_version(tmp_path):
    prefix = copy_model("pir", tmp_path)
    with open(prefix + ".json") as f:
        doc = json.load(f)
    doc["base_code"]["version"] = 99
    with open(prefix + ".json", "w") as f:
        json.dump(doc, f)
    with pytest.raises(UnsupportedError, match="PIR schema version 99 is not supported"):
        load_paddle(prefix + ".json")


@pytest.mark.parametrize("content, ext, message", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), ".pdmodel", "not a Paddle model"),
    (b"hello world", ".json", "not a Paddle model"),
    (b'{"magic": "onnx"}', ".json", "not a Paddle PIR model"),
    (b"{not json", ".json", r"not a Paddle PIR model \(invalid JSON"),
    (b"\x0a\xff\xff\xff\xff\x0f", ".pdmodel", "not a Paddle ProgramDesc"),
    (b"\x0a\x00", ".pdmodel", r"not a Paddle ProgramDesc \(no ops"),
])
def test_not_a_paddle_model(tmp_path, content, ext, message):
    path = tmp_path / ("model" + ext)
    path.write_bytes(content)
    with pytest.raises(PdcError, match=message):
        load_paddle(str(path))


def test_no_such_model(tmp_path):
    with pytest.raises(PdcError, match="no such file"):
        load_paddle(str(tmp_path / "nothing"))
    with pytest.raises(PdcError, match="no Paddle model"):
        load_paddle(str(tmp_path))


@needs_paddle
def test_unsupported_ops_listed_once_pir(tmp_path):
    prefix = copy_model("pir", tmp_path)
    with open(prefix + ".json") as f:
        text = f.read()
    text = text.replace('"1.relu"', '"1.fancy_relu"').replace('"1.pool2d"', '"1.mystery"', 1)
    with open(prefix + ".json", "w") as f:
        f.write(text)
    with pytest.raises(UnsupportedError, match=r"unsupported Paddle ops: fancy_relu x2, mystery x1$"):
        load_paddle(prefix)


@needs_paddle
def test_unsupported_ops_listed_once_legacy(tmp_path):
    prefix = copy_model("legacy", tmp_path)
    with open(prefix + ".pdmodel", "rb") as f:
        data = f.read()
    # OpDesc.type is field 3: tag 0x1a, then the length; same-length names keep the message valid
    data = data.replace(b"\x1a\x04relu", b"\x1a\x04relX").replace(b"\x1a\x06pool2d", b"\x1a\x06poolXd", 1)
    with open(prefix + ".pdmodel", "wb") as f:
        f.write(data)
    with pytest.raises(UnsupportedError, match=r"unsupported Paddle ops: poolXd x1, relX x2$"):
        load_paddle(prefix)


@needs_paddle
def test_legacy_control_flow_is_reported():
    """(PIR's if and while are lowered: tests/test_paddle_x86.py)"""
    with pytest.raises(UnsupportedError, match=r"conditional_block \(control flow\) x2, select_input x1$"):
        load_paddle(model("control_flow", "legacy"))


# ---- the parameter file on its own --------------------------------------------------------------------
def record(dtype_code: int, dims, data: bytes, lod=()) -> bytes:
    desc = bytes([0x08, dtype_code]) + b"".join(bytes([0x10, d]) for d in dims)
    out = struct.pack("<IQ", 0, len(lod))
    for level in lod:
        out += struct.pack("<Q", 8 * len(level)) + struct.pack(f"<{len(level)}Q", *level)
    return out + struct.pack("<Ii", 0, len(desc)) + desc + data


def test_pdiparams_records(tmp_path):
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    b = np.array([1.5, -2.0], np.float32)
    # records sorted by name: "a.w" < "b.w"; the first carries a lod level, which is skipped
    path = tmp_path / "p.pdiparams"
    path.write_bytes(record(3, [2, 3], a.tobytes(), lod=[[0, 2]]) + record(5, [2], b.tobytes()))
    arrays = read_pdiparams(str(path), [ParamSpec("b.w", dtypes.float32, (2,)), ParamSpec("a.w", dtypes.int64, (2, 3))])
    assert np.array_equal(arrays["a.w"], a) and np.array_equal(arrays["b.w"], b)
    # a wrong name order shows up as a type mismatch
    with pytest.raises(PdcError, match=r"parameter #0 'a.w' is i64\[2,3\] in the file but f32\[2\] in prog"):
        read_pdiparams(str(path), [ParamSpec("z.w", dtypes.int64, (2, 3)), ParamSpec("a.w", dtypes.float32, (2,))],
                       "prog")
    path.write_bytes(record(33, [1], b"\0"))
    with pytest.raises(UnsupportedError, match="element type FP8_E5M2 is not supported"):
        read_pdiparams(str(path), [ParamSpec("x", dtypes.uint8, (1,))])


# The full-size variants (pm.FULL_MODELS: AlexNet and VGG16 with their 4096-wide classifiers, Inception v3
# at 299x299) run in CI: measured on 2 cores, generating all three in both formats takes about 31 s
# (16 s per format, one paddle process each, 1.7 GB peak memory) and writes 1.7 GB to .cache/paddle; the six
# reference-interpreter runs take 12 s (1.2 GB peak). Cached, a rerun costs only the 12 s.
_full_dirs: dict[str, dict[str, str]] = {}


def full_size_model(name: str, fmt: str) -> str:
    """The folder of a full-size model; the first call per format generates all of them in one process."""
    if fmt not in _full_dirs:
        _full_dirs[fmt] = pm.ensure_models(list(pm.FULL_MODELS), fmt)
    return _full_dirs[fmt][name]


@needs_paddle
@pytest.mark.slow
@pytest.mark.parametrize("fmt", pm.FORMATS)
@pytest.mark.parametrize("name", list(pm.FULL_MODELS))
def test_full_size_model_matches_paddle(name, fmt):
    folder = full_size_model(name, fmt)
    graph = load_paddle(folder)
    verify_graph(graph)
    compare(graph, folder)


# ---- the lowering on hand-built programs ------------------------------------------------------------
def lower_program(ops, inputs, outputs):
    from pdc.frontend.paddle.lower import Lowering
    from pdc.frontend.paddle.program import Program
    program = Program("hand-built", "pir", inputs=inputs, ops=ops, outputs=outputs)
    return Lowering(program, {}).run()


def test_scalar_results_follow_the_declared_rank():
    # files from Paddle < 2.5 declare full slices and reductions as [1], newer ones as []
    from pdc.frontend.paddle.program import Const, Op
    from pdc.ir.types import TensorType
    f32 = dtypes.float32
    ops = [Op("slice", [1, Const(np.array([0])), Const(np.array([1]))], [2], {"axes": [0], "decrease_axis": [0]},
              [TensorType(f32, (1,))], "op #0 'slice'", "slice_0"),
           Op("mean_all", [1], [3], {}, [TensorType(f32, ())], "op #1 'mean_all'", "mean_0")]
    g = lower_program(ops, [("x", 1, TensorType(f32, (3,)))], [2, 3])
    out = run_graph(g, {"x": np.array([1.0, 2.0, 6.0], np.float32)})
    assert [o.shape for o in out.values()] == [(1,), ()]


def test_unsqueeze_positions_follow_paddle():
    from pdc.frontend.paddle.ops import paddle_unsqueeze_positions
    assert paddle_unsqueeze_positions([0, -1], 4) == [0, 5]
    assert paddle_unsqueeze_positions([3, 1], 4) == [1, 4]
    assert paddle_unsqueeze_positions([-1, -1], 2) == [2, 3]


def test_unavailable_value_is_reported():
    from pdc.frontend.paddle.program import Op
    from pdc.ir.types import TensorType
    f32 = dtypes.float32
    ops = [Op("layer_norm", [1, None, None], [2, 3, 4], {"begin_norm_axis": 1}, [None] * 3, "op #0 'layer_norm'",
              "ln_0"),
           Op("relu", [3], [5], {}, [None], "op #1 'relu'", "relu_1")]
    with pytest.raises(PdcError, match=r"op #1 'relu': operand 0 is unavailable: result 1 of op #0 'layer_norm'"):
        lower_program(ops, [("x", 1, TensorType(f32, (2, 3)))], [5])
