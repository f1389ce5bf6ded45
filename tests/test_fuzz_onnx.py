"""Mutation fuzzing of the ONNX importer and the compiler: small valid models with bytes flipped,
truncated, or their structure broken (huge, zero and negative dims, wrong attribute types and
values, duplicate and hostile names, dropped and reordered nodes, external-data tricks) go through
what `pdc inspect`, `pdc opt -O2` and `pdc compile` do. Each must succeed or raise a PdcError:
any other exception, or an example running over HANG_S, is a bug. A model pdc compiles is built
and run on random inputs beside ONNX Runtime (check_model): where ONNX Runtime runs it too, the
outputs must agree within pdc.compare's tolerances; where it refuses the model, that is counted.

Time-bounded: PDC_FUZZ_SECONDS (default 30) and PDC_FUZZ_EXAMPLES (default 2000), derandomized so
CI sees the same examples each run. The long run (`make fuzz`, tools/fuzz_onnx.py) checks a fixed
number of fresh models, each in a worker process, and counts every outcome."""
from __future__ import annotations

import os
import shutil
import signal
import time
import traceback
from typing import Optional

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from pdc.cli import describe_model
from pdc.compare import compare_outputs
from pdc.compiler import compile_bundle, optimize
from pdc.frontend import load_model
from pdc.inputs import random_inputs
from pdc.ir.errors import PdcError
from pdc.ir.limits import check_graph_limits
from pdc.ir.shapes import bind_shapes

SECONDS = float(os.environ.get("PDC_FUZZ_SECONDS", "30"))
EXAMPLES = int(os.environ.get("PDC_FUZZ_EXAMPLES", "2000"))
RANDOM = bool(os.environ.get("PDC_FUZZ_RANDOM"))
COMPARE = os.environ.get("PDC_FUZZ_COMPARE", "1") != "0"  # build accepted models and run them beside ORT
HANG_S = 30
SMALL_LIMIT = 4 << 20  # tensors a fuzz example may hold: keeps every accepted model quick to compile

DIMS = [0, 1, 3, -1, -7, 2 ** 20, 2 ** 24, 2 ** 31, 2 ** 40, 2 ** 63 - 1]
INTS = [0, 1, -1, 2, 7, -(2 ** 31), 2 ** 31, 2 ** 40, 2 ** 62]
NAMES = ["x", "y", "w1", "a", "", "../../etc/passwd", "a b;c", "*/ int x; /*", "\u00e9\u4e2d", "\n", "x" * 300]
OPS = ["Relu", "Add", "Conv", "MaxPool", "Gemm", "Softmax", "Reshape", "Transpose", "Concat", "Pad",
       "AveragePool", "Gather", "Slice", "Expand", "Resize", "Cast", "MatMul", "ReduceSum", "Identity"]
F32 = TensorProto.FLOAT


def _vi(name, shape, dtype=F32):
    return helper.make_tensor_value_info(name, dtype, shape)


def _w(name, shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "fuzz", inputs, outputs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def seed_models() -> list[onnx.ModelProto]:
    cnn = _model([helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="conv", pads=[1, 1, 1, 1],
                                   strides=[1, 1], kernel_shape=[3, 3]),
                  helper.make_node("Relu", ["a"], ["b"], name="relu"),
                  helper.make_node("MaxPool", ["b"], ["c"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
                  helper.make_node("Flatten", ["c"], ["d"], name="flatten"),
                  helper.make_node("Gemm", ["d", "w2"], ["e"], name="gemm", transB=1, alpha=1.0),
                  helper.make_node("Softmax", ["e"], ["y"], name="softmax", axis=-1)],
                 [_vi("x", ["N", 2, 6, 6])], [_vi("y", ["N", 5])],
                 [_w("w1", (4, 2, 3, 3)), _w("b1", (4,)), _w("w2", (5, 36))])
    shapes = _model([helper.make_node("Reshape", ["x", "shape"], ["a"], name="reshape"),
                     helper.make_node("Transpose", ["a"], ["b"], name="transpose", perm=[1, 0]),
                     helper.make_node("Concat", ["b", "b"], ["c"], name="concat", axis=0),
                     helper.make_node("Pad", ["c", "pads"], ["d"], name="pad", mode="constant"),
                     helper.make_node("ReduceSum", ["d", "axes"], ["y"], name="sum", keepdims=1)],
                    [_vi("x", [2, 3, 4])], [_vi("y", None)],
                    [numpy_helper.from_array(np.array([6, 4], np.int64), "shape"),
                     numpy_helper.from_array(np.array([1, 0, 1, 2], np.int64), "pads"),
                     numpy_helper.from_array(np.array([1], np.int64), "axes")])
    pool = _model([helper.make_node("AveragePool", ["x"], ["a"], name="avg", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                   helper.make_node("Add", ["a", "bias"], ["b"], name="add"),
                   helper.make_node("MatMul", ["b", "m"], ["y"], name="matmul")],
                  [_vi("x", [1, 2, 5, 5])], [_vi("y", [1, 2, 5, 3])], [_w("bias", (1, 2, 1, 1)), _w("m", (5, 3))])
    # windowed ops whose spatial dims nothing else fixes: a huge input dim still imports and reaches
    # the generators that walk output positions
    windows = _model([helper.make_node("Conv", ["x", "wd"], ["a"], name="dw", pads=[1, 1, 1, 1], group=2),
                      helper.make_node("MaxPool", ["a"], ["b"], name="max", kernel_shape=[3, 3], strides=[2, 2],
                                       pads=[1, 1, 1, 1]),
                      helper.make_node("Pad", ["b", "wpads"], ["c"], name="pad", mode="reflect"),
                      helper.make_node("Resize", ["c", "", "scales"], ["d"], name="resize", mode="nearest"),
                      helper.make_node("AveragePool", ["d"], ["y"], name="avg", kernel_shape=[2, 3],
                                       pads=[0, 1, 0, 1], count_include_pad=1)],
                     [_vi("x", [1, 2, 8, 8])], [_vi("y", None)],
                     [_w("wd", (2, 1, 3, 3)), numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64), "wpads"),
                      numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    return [cnn, shapes, pool, windows]


SEEDS = [m.SerializeToString() for m in seed_models()]


# ---- mutations: each takes the model (mutated in place) and a hypothesis `draw` --------------------
def _pick(draw, seq):
    return seq[draw(st.integers(0, len(seq) - 1))] if len(seq) else None


def _any_dim_field(draw, m):
    fields = [vi.type.tensor_type.shape.dim for vi in list(m.graph.input) + list(m.graph.output)
              if vi.type.HasField("tensor_type")]
    dims = [d for ds in fields for d in ds]
    return _pick(draw, dims)


def mutate_value_dim(m, draw):
    d = _any_dim_field(draw, m)
    if d is not None:
        d.dim_value = draw(st.sampled_from(DIMS))


def mutate_initializer_dims(m, draw):
    t = _pick(draw, m.graph.initializer)
    if t is not None and t.dims:
        t.dims[draw(st.integers(0, len(t.dims) - 1))] = draw(st.sampled_from(DIMS))


def mutate_initializer_data(m, draw):
    t = _pick(draw, m.graph.initializer)
    if t is not None:
        raw = t.raw_data  # seeds hold their data as raw bytes
        t.raw_data = raw[: draw(st.integers(0, len(raw)))] + draw(st.binary(max_size=8))
        t.data_type = draw(st.sampled_from([t.data_type, TensorProto.INT64, TensorProto.STRING, 0, 99]))


def mutate_attribute(m, draw):
    n = _pick(draw, m.graph.node)
    if n is None or not n.attribute:
        return
    a = _pick(draw, n.attribute)
    kind = draw(st.sampled_from(["int", "ints", "float", "string", "huge_list", "drop", "type"]))
    name = a.name
    if kind == "drop":
        n.attribute.remove(a)
        return
    value = {"int": lambda: draw(st.sampled_from(INTS)),
             "ints": lambda: draw(st.lists(st.sampled_from(INTS), max_size=6)),
             "float": lambda: draw(st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e38])),
             "string": lambda: draw(st.sampled_from(["", "abc", "SAME_UPPER", "\x00"])),
             "huge_list": lambda: [1] * 2000,
             "type": lambda: None}[kind]()
    n.attribute.remove(a)
    if kind == "type":
        new = helper.make_attribute(name, 1)
        new.type = draw(st.sampled_from(sorted(onnx.AttributeProto.AttributeType.values())))
    else:
        new = helper.make_attribute(name, value) if value != [] else helper.make_attribute(
            name, [], attr_type=onnx.AttributeProto.INTS)
    n.attribute.append(new)


def mutate_attribute_plausibly(m, draw):
    """A small in-range value for an int attribute (a stride, a pad, an axis, a flag): models that
    still import, so the compiled code meets ONNX Runtime more often."""
    n = _pick(draw, m.graph.node)
    ints = [a for a in n.attribute if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)] if n else []
    a = _pick(draw, ints)
    if a is None:
        return
    if a.type == onnx.AttributeProto.INT:
        a.i = draw(st.sampled_from([-1, 0, 1, 2]))
    elif len(a.ints):
        a.ints[draw(st.integers(0, len(a.ints) - 1))] = draw(st.sampled_from([0, 1, 2, 3]))


def mutate_names(m, draw):
    n = _pick(draw, m.graph.node)
    if n is None:
        return
    lists = [n.input, n.output]
    which = draw(st.sampled_from(lists))
    if len(which):
        which[draw(st.integers(0, len(which) - 1))] = draw(st.sampled_from(NAMES))


def mutate_nodes(m, draw):
    nodes = list(m.graph.node)
    kind = draw(st.sampled_from(["drop", "duplicate", "swap", "op_type", "domain", "no_io"]))
    if not nodes:
        return
    i = draw(st.integers(0, len(nodes) - 1))
    if kind == "drop":
        del nodes[i]
    elif kind == "duplicate":
        nodes.insert(i, nodes[i])
    elif kind == "swap":
        j = draw(st.integers(0, len(nodes) - 1))
        nodes[i], nodes[j] = nodes[j], nodes[i]
    elif kind == "op_type":
        nodes[i].op_type = draw(st.sampled_from(OPS))
    elif kind == "domain":
        nodes[i].domain = draw(st.sampled_from(["com.microsoft", "ai.onnx.ml", "x"]))
    else:
        del nodes[i].input[:]
        del nodes[i].output[:]
    del m.graph.node[:]
    m.graph.node.extend(nodes)


def mutate_graph_io(m, draw):
    kind = draw(st.sampled_from(["drop_outputs", "dup_output", "elem_type", "drop_inputs", "opset"]))
    if kind == "drop_outputs":
        del m.graph.output[:]
    elif kind == "dup_output" and m.graph.output:
        m.graph.output.append(m.graph.output[0])
    elif kind == "elem_type" and m.graph.output:
        m.graph.output[0].type.tensor_type.elem_type = draw(st.sampled_from([0, 8, 16, 23, 25]))
    elif kind == "drop_inputs":
        del m.graph.input[:]
    elif kind == "opset":
        m.opset_import[0].version = draw(st.sampled_from([1, 6, 7, 11, 13, 21, 99, -1]))


def mutate_external_data(m, draw):
    t = _pick(draw, m.graph.initializer)
    if t is None:
        return
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    for key in ("location", "offset", "length"):
        if draw(st.booleans()):
            value = {"location": st.sampled_from(["data.bin", "../data.bin", "/etc/passwd", "", "missing.bin"]),
                     "offset": st.sampled_from(["0", "4", "-8", "x", str(2 ** 40), "9" * 30]),
                     "length": st.sampled_from(["0", "16", "-1", "abc", str(2 ** 40), "1e3"])}[key]
            t.external_data.add(key=key, value=draw(value))


STRUCTURAL = [mutate_value_dim, mutate_initializer_dims, mutate_initializer_data, mutate_attribute, mutate_names,
              mutate_nodes, mutate_graph_io, mutate_external_data, mutate_attribute_plausibly,
              mutate_attribute_plausibly]


@st.composite
def hostile_model(draw) -> tuple[bytes, list[str]]:
    """(model bytes, what was done to it)."""
    m = onnx.ModelProto()
    m.ParseFromString(SEEDS[draw(st.integers(0, len(SEEDS) - 1))])
    done = []
    for _ in range(draw(st.integers(1, 3))):
        mutation = draw(st.sampled_from(STRUCTURAL))
        mutation(m, draw)
        done.append(mutation.__name__)
    data = m.SerializeToString()
    byte_level = draw(st.sampled_from(["none", "none", "flip", "truncate"]))
    if byte_level == "flip" and data:
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        data = bytes(b)
    elif byte_level == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    return data, done + ([byte_level] if byte_level != "none" else [])


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang(f"over {HANG_S} s")


# outcomes of one model: the first five are fine, the last three are bugs
REFUSED, MATCH, ORT_REJECTS, NOT_RUN = "refused", "match", "accepted-ort-rejects", "accepted-not-run"
ACCEPTED = "accepted"  # compiled, not compared (PDC_FUZZ_COMPARE=0)
INTERNAL, HANG, MISMATCH = "internal-error", "hang", "mismatch"
BUGS = (INTERNAL, HANG, MISMATCH)


def _symbols(graph) -> dict:
    """Every symbolic input dim bound to 1, so the model runs on concrete inputs."""
    return {d: 1 for v in graph.inputs for d in (v.type.shape or ()) if isinstance(d, str) and d != "?"}


def run_like_the_cli(path: str, out_dir: str, build: bool = False, max_tensor_bytes: int = SMALL_LIMIT):
    """inspect, opt -O2 and compile, as the CLI runs them; the graph with its symbols bound."""
    graph = load_model(path, max_tensor_bytes)
    describe_model(graph)
    optimize(graph.copy(), 2)
    symbols = _symbols(graph)
    compile_bundle(path, out_dir, build=build, max_tensor_bytes=max_tensor_bytes, c_opt="-O0", shapes=symbols)
    return bind_shapes(graph, symbols) if symbols else graph


def onnxruntime_outputs(path: str, feeds: dict) -> tuple[Optional[dict], str]:
    """(outputs, '') where ONNX Runtime loads and runs the model, else (None, its first line)."""
    import onnxruntime as ort
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds))), ""
    except Exception as e:  # noqa: BLE001 - any refusal of ONNX Runtime is an answer here
        return None, (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def compare_with_onnxruntime(path: str, graph, bundle: str, stage=lambda name: None) -> tuple[str, str]:
    """(outcome, detail) of running the compiled bundle and ONNX Runtime on the same random inputs."""
    import pdc
    try:
        check_graph_limits(graph, SMALL_LIMIT)  # compiled under a larger limit: too big to run here
        feeds = random_inputs(graph, seed=0)
    except PdcError as e:
        return NOT_RUN, str(e)
    stage("onnxruntime")
    want, why = onnxruntime_outputs(path, feeds)
    if want is None:
        return ORT_REJECTS, why
    stage("run")
    got = pdc.load(bundle).run(feeds)
    if set(want) != set(got) and len(want) == len(got):  # pair by position where names differ
        want = dict(zip(got, want.values()))
    bad = [str(r) for r in compare_outputs(got, want) if not r.ok]
    return (MISMATCH, "; ".join(bad)[:500]) if bad else (MATCH, "")


def check_model(path: str, bundle: str, compare: bool = COMPARE, stage=lambda name: None,
                max_tensor_bytes: int = SMALL_LIMIT) -> tuple[str, str]:
    """(outcome, detail) of one model through inspect, opt -O2, compile and, if it compiles and
    `compare`, a run beside ONNX Runtime (models within SMALL_LIMIT); each stage under HANG_S
    (SIGALRM: main thread only)."""
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(HANG_S)
    try:
        stage("compile")
        graph = run_like_the_cli(path, bundle, build=compare, max_tensor_bytes=max_tensor_bytes)
        if not compare:
            return ACCEPTED, ""
        signal.alarm(HANG_S)
        return compare_with_onnxruntime(path, graph, bundle, stage)
    except Hang as e:
        return HANG, str(e)
    except PdcError as e:
        msg = str(e).strip()
        if "\n" in msg:
            return INTERNAL, f"a multi-line message: {msg!r}"
        return REFUSED, msg
    except Exception as e:  # noqa: BLE001 - anything but a PdcError is what the fuzzing looks for
        return INTERNAL, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def write_data_file(folder) -> None:
    """The file the external-data mutations point at, beside the model."""
    with open(os.path.join(folder, "data.bin"), "wb") as f:
        f.write(np.arange(64, dtype=np.float32).tobytes())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    write_data_file(str(folder))
    return folder


def test_hostile_models_never_cause_internal_errors(workdir):
    deadline = time.monotonic() + SECONDS
    counts: dict = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck))
    @given(hostile_model())
    def check(example):
        if time.monotonic() > deadline:
            return
        data, done = example
        path = workdir / "model.onnx"
        path.write_bytes(data)
        counts["n"] = counts.get("n", 0) + 1  # a fresh folder each: a process keeps the first library of a path
        bundle = workdir / f"bundle{counts['n']}"
        outcome, detail = check_model(str(path), str(bundle))
        shutil.rmtree(bundle, ignore_errors=True)
        counts[outcome] = counts.get(outcome, 0) + 1
        if os.environ.get("PDC_FUZZ_SHOW"):
            print(f"{done}: {outcome}: {detail}")
        if outcome in BUGS:
            (workdir / "failing.onnx").write_bytes(data)
            pytest.fail(f"{done}: {outcome}: {detail} (model kept as {workdir / 'failing.onnx'})")

    check()
    checked = counts.pop("n", 0)
    print(f"fuzz: {checked} models: {counts}")
    assert checked > 0
