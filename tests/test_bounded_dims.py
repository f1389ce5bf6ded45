"""Sizes known only at run time (--shape batch=1..8): the option's syntax, SizeExpr (decides only what
holds over its whole range, and its C renders the values it claims), whole models compiled once for a
range and run at sizes across it against ONNX Runtime (x86 in process; arm64 and armv7 under qemu),
the C entry points, concurrent runs at different sizes, and the refusals."""
from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import sys
import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.compiler import load_graph, optimize
from pdc.ir.errors import PdcError, UnsupportedError
from pdc.ir.shapes import bind_shapes, parse_shape_option
from pdc.ir.symbolic import RuntimeSizeError, SizeExpr, dim_exprs
from pdc.targets import get_target

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "kernels"))
from targets import require  # noqa: E402

ENCODER = "transformer_encoder_dyn"
BATCH, SEQ = "batch", "seq"  # the encoder's symbolic dims
GRID = [(1, 1), (1, 128), (8, 1), (8, 128), (2, 3), (3, 17), (4, 33), (5, 64), (6, 5), (7, 100), (2, 127), (1, 2)]


# ---- the option ---------------------------------------------------------------------------------
def test_shape_option_takes_ranges_for_symbols_and_input_dims():
    assert parse_shape_option("batch=1..8,seq=1..128") == [("batch", ((1, 8),)), ("seq", ((1, 128),))]
    assert parse_shape_option("x=1..8,1..128,64") == [("x", ((1, 8), (1, 128), 64))]
    assert parse_shape_option("x=1,3,224,224") == [("x", (1, 3, 224, 224))]
    assert parse_shape_option("N=4") == [("N", (4,))]


@pytest.mark.parametrize("text", ["batch=0..8", "batch=9..8", "batch=1..x", "=1..8", "1..8", "x=1,,a"])
def test_shape_option_refuses_bad_ranges(text):
    with pytest.raises(PdcError, match="expected NAME=D0,D1,... with non-negative integers, or ranges LO..HI"):
        parse_shape_option(text)


def test_binding_a_range_keeps_the_symbol_and_records_its_bounds():
    g = load_graph(_elementwise_model())
    b = bind_shapes(g, {"N": [(1, 4)], "S": "2..6"})  # a range: (lo, hi) as a dim, or "lo..hi"
    assert b.dim_bounds == {"N": (1, 4), "S": (2, 6)}
    assert str(b.inputs[0].type) == "f32[N,S,8]" and str(b.outputs[0].type) == "f32[N,S,8]"
    one = bind_shapes(g, {"N": "3..3", "S": 5})  # a range of one size is that size
    assert one.dim_bounds == {} and str(one.outputs[0].type) == "f32[3,5,8]"
    named = bind_shapes(load_graph(_unnamed_dim_model()), {"x": ((1, 4), 8)})  # a range for an unnamed dim
    assert named.dim_bounds == {"x_0": (1, 4)} and str(named.inputs[0].type) == "f32[x_0,8]"


# ---- SizeExpr -------------------------------------------------------------------------------------
def test_size_expr_answers_only_what_holds_over_its_range():
    n = SizeExpr("n", 1, 8, atom=True)
    assert n != 0 and n > 0 and n < 9 and n <= 8 and not n > 8 and bool(n)
    assert n == n and (n * 2) == (n * 2) and n * 1 is n and n + 0 is n and n * 0 == 0
    for undecided in (lambda: n == 1, lambda: n > 4, lambda: n < 8, lambda: max(n, 3), lambda: int(n),
                      lambda: range(n), lambda: np.zeros(n), lambda: n / 2, lambda: f"{n:d}", lambda: (n - 2) % 3):
        with pytest.raises(RuntimeSizeError):
            undecided()
    with pytest.raises(RuntimeSizeError, match="may be negative"):
        (n - 4) // 2  # C's / truncates: a floor division of a possibly negative value is refused


def _c_value(expr: str, values: dict) -> int:
    """Evaluates the C of a SizeExpr as C would: every division in it is of non-negative ints."""
    text = expr
    for name, v in values.items():
        text = text.replace(name, str(v))
    return eval(text.replace("/", "//"))


def test_size_expr_c_computes_the_value_within_the_range_it_claims():
    """Random expressions of two run-time sizes (the kernels' index arithmetic: sums, products,
    ceiling divisions, remainders): their C, evaluated at every size in range, gives Python's value
    and stays within [lo, hi]."""
    rng = np.random.default_rng(0)
    a, b = dim_exprs({"A": (1, 9), "B": (3, 7)}).values()
    steps = [lambda x, o: x + o, lambda x, o: x * o, lambda x, o: -(-x // o), lambda x, o: x // o,
             lambda x, o: x % o, lambda x, o: o - x]
    checked = 0
    for _ in range(300):
        first = int(rng.integers(2))
        x, py = [a, b][first], [lambda u, v: u, lambda u, v: v][first]
        for _ in range(rng.integers(1, 5)):
            step, c = steps[rng.integers(len(steps))], int(rng.integers(1, 40))
            other, opy = (b, lambda u, v: v) if rng.integers(2) and step in steps[:2] + steps[5:] else \
                (c, lambda u, v, c=c: c)
            try:
                x = step(x, other)
            except RuntimeSizeError:  # refused (a possibly negative division): nothing rendered
                continue
            py = (lambda f, g, step=step: lambda u, v: step(f(u, v), g(u, v)))(py, opy)
        if not isinstance(x, SizeExpr):
            continue
        checked += 1
        for u, v in itertools.product(range(1, 10), range(3, 8)):
            got = _c_value(str(x), {"pdc_dims[0]": u, "pdc_dims[1]": v})
            assert got == py(u, v), (str(x), u, v)
            assert x.lo <= got <= x.hi, (str(x), u, v, x.lo, x.hi)
    assert checked > 250


# ---- whole models against ONNX Runtime -------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder(zoo):
    return zoo(ENCODER)


def _encoder_grid(module, path, grid):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for b, s in grid:
        x = rng.standard_normal((b, s, 64)).astype(np.float32)
        (got,) = module.run({"x": x}).values()
        want = sess.run(None, {"x": x})[0]
        assert got.shape == (b, s, 64)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"batch {b}, seq {s}")


@pytest.mark.zoo
def test_encoder_compiled_once_runs_a_grid_of_sizes(encoder):
    """The TransformerEncoder with batch 1..8 and seq 1..128, compiled once (-O2: the same 12 fused
    matmuls, 2 attentions and 4 layer norms as a static compile), against ONNX Runtime at 12 sizes
    from corner to corner."""
    shapes = {BATCH: "1..8", SEQ: "1..128"}
    bound = optimize(bind_shapes(load_graph(encoder), shapes), 2, get_target("x86"))
    static = optimize(bind_shapes(load_graph(encoder), {BATCH: 8, SEQ: 128}), 2, get_target("x86"))
    assert sorted(n.op for n in bound.nodes) == sorted(n.op for n in static.nodes)
    assert {n.op for n in bound.nodes} == {"fused_matmul", "attention", "layer_normalization"}
    module = pdc.compile(encoder, target="x86", shapes=shapes, threads=2)
    assert module.dims == {BATCH: (1, 8), SEQ: (1, 128)}
    _encoder_grid(module, encoder, GRID)


@pytest.mark.zoo
@pytest.mark.parametrize("target", ["arm64", "armv7"])
def test_encoder_on_cortex_a_takes_run_time_sizes(encoder, target):
    """The same under qemu: the harness takes the run's sizes and the tensors' bytes at them."""
    require(target)
    module = pdc.compile(encoder, target=target, shapes={BATCH: "1..4", SEQ: "1..32"}, threads=1)
    _encoder_grid(module, encoder, [(1, 1), (4, 32), (2, 7)])


@pytest.mark.zoo
@pytest.mark.parametrize("level", [0, 1])
def test_encoder_unfused_kernels_take_run_time_sizes(encoder, level):
    """At -O0 / -O1 the element-wise, transpose, reduction, softmax and batched matmul kernels see
    the run-time sizes (both matmul operands a batch known only at run time)."""
    module = pdc.compile(encoder, target="x86", shapes={BATCH: "1..4", SEQ: "1..40"}, opt_level=level, threads=2)
    _encoder_grid(module, encoder, [(1, 1), (4, 40), (3, 7), (2, 33)])


def _elementwise_model():
    """x[N, S, 8] through the ops exporters write around a transformer block's sizes."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Softmax", ["m"], ["s"], axis=1),  # over a run-time axis
             helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Greater", ["t", "z"], ["c"]),
             helper.make_node("Where", ["c", "t", "z"], ["u"]),
             helper.make_node("LayerNormalization", ["u", "g", "bb"], ["l"], axis=-1),
             helper.make_node("CumSum", ["l", "one"], ["k"]),
             helper.make_node("Slice", ["k", "st", "en", "ax"], ["sl"]),
             helper.make_node("Concat", ["sl", "sl"], ["y"], axis=2)]
    inits = {"w": w, "z": np.full(8, 0.1, np.float32), "g": rng.uniform(0.5, 1.5, 8).astype(np.float32),
             "bb": rng.standard_normal(8).astype(np.float32), "one": np.array(1), "st": np.array([2]),
             "en": np.array([6]), "ax": np.array([2])}
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", 8])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _unnamed_dim_model():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("level", [0, 2])
def test_ops_around_run_time_sizes_match_onnx_runtime(level):
    model = _elementwise_model()
    module = pdc.compile(model, shapes={"N": "1..4", "S": "1..6"}, opt_level=level, threads=2)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for n, s in [(1, 1), (4, 6), (2, 3), (3, 5), (1, 6)]:
        x = rng.standard_normal((n, s, 8)).astype(np.float32)
        got, want = module.run({"x": x})["y"], sess.run(None, {"x": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"N={n}, S={s}")


@pytest.mark.zoo
def test_a_dynamic_batch_cnn_runs_every_batch(zoo):
    """mobilenet_v3_small exported with its batch as a symbol (its flatten goes through Shape, Slice,
    Concat and Reshape): batch 1..3 compiled once, each batch against ONNX Runtime."""
    path = zoo("mobilenet_v3_small_dynbatch")
    module = pdc.compile(path, shapes={"x": ("1..3", 3, 224, 224)}, threads=2)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (1, 2, 3):
        x = rng.standard_normal((n, 3, 224, 224)).astype(np.float32)
        (got,) = module.run({"x": x}).values()
        np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5, err_msg=f"batch {n}")


# ---- the bundle: manifest, header, C entry points, threads -----------------------------------------
@pytest.fixture(scope="module")
def small():
    return pdc.compile(_elementwise_model(), shapes={"N": "1..4", "S": "2..6"}, threads=2)


def test_manifest_and_header_describe_the_ranges(small):
    assert small.manifest["dims"] == [{"name": "N", "min": 1, "max": 4}, {"name": "S", "min": 2, "max": 6}]
    assert small.manifest["inputs"][0]["shape"] == ["N", "S", 8]
    header = open(os.path.join(small.folder, "model.h")).read()
    for line in ("#define MODEL_NUM_DIMS 2", "/* dim 0: N, 1..4 */", "#define MODEL_DIM0_MIN 1",
                 "#define MODEL_DIM1_MAX 6", "#define MODEL_INPUT0_BYTES 768u",
                 "pdc_status model_run_dims(void *arena, const int64_t *dims, const void *const *inputs, "
                 "void *const *outputs);"):
        assert line in header
    assert small.signature().inputs[0].type.shape == (4, 6, 8)  # feeds made for it: at the bounds


def test_run_refuses_sizes_outside_the_range(small):
    with pytest.raises(ValueError, match=r"input 'x' has shape \[5, 3, 8\]: N = 5 is outside 1..4, the range "
                                         r"compiled for"):
        small.run({"x": np.zeros((5, 3, 8), np.float32)})
    with pytest.raises(ValueError, match=r"input 'x' has shape \[2, 1, 8\]: S = 1 is outside 2..6"):
        small.run({"x": np.zeros((2, 1, 8), np.float32)})
    with pytest.raises(ValueError, match=r"input 'x' has shape \[2, 3, 7\], expected \[N=1..4, S=2..6, 8\]"):
        small.run({"x": np.zeros((2, 3, 7), np.float32)})


def test_c_entry_point_checks_the_sizes(small):
    lib = ctypes.CDLL(os.path.join(small.folder, small.manifest["library"]))
    run = lib.model_run_dims
    run.restype = ctypes.c_int
    run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, ctypes.c_void_p]
    arena = np.zeros(small.manifest["arena_bytes"] + 64, np.uint8)
    aligned = arena.ctypes.data + (-arena.ctypes.data) % 64
    x, y = np.ones((4, 6, 8), np.float32), np.zeros((4, 6, 8), np.float32)
    ins, outs = (ctypes.c_void_p * 1)(x.ctypes.data), (ctypes.c_void_p * 1)(y.ctypes.data)
    dims = lambda *d: (ctypes.c_int64 * 2)(*d)  # noqa: E731
    assert run(aligned, dims(0, 3), ins, outs) == 10  # PDC_ERR_SIZE
    assert run(aligned, dims(2, 7), ins, outs) == 10
    assert run(aligned, None, ins, outs) == 1  # PDC_ERR_NULL_ARGUMENT
    assert run(aligned, dims(4, 6), ins, outs) == 0
    lib.pdc_status_string.restype = ctypes.c_char_p
    assert lib.pdc_status_string(10) == b"a size is outside the range the model was compiled for"


def test_concurrent_runs_at_different_sizes(small):
    """Each run's sizes are its own (pdc_dims is per thread and handed to the pool's workers): two
    threads running different sizes at once both get the single-run result."""
    rng = np.random.default_rng(2)
    feeds = [rng.standard_normal(shape).astype(np.float32) for shape in ((4, 6, 8), (1, 2, 8))]
    want = [small.run({"x": x})["y"] for x in feeds]
    errors = []

    def worker(k):
        for _ in range(200):
            got = small.run({"x": feeds[k]})["y"]
            if got.shape != want[k].shape or not np.array_equal(got, want[k]):
                errors.append(k)
                return
    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---- refusals ---------------------------------------------------------------------------------------
def test_targets_without_run_time_sizes_refuse_ranges(tmp_path):
    with pytest.raises(PdcError, match=r"--shape N=1..4, S=1..6: sizes known only at run time compile for the x86 "
                                       r"and Cortex-A targets; cortex-m4 needs every size fixed"):
        pdc.compile(_elementwise_model(), target="cortex-m4", shapes={"N": "1..4", "S": "1..6"})


def test_a_size_that_is_a_product_of_run_time_sizes_is_refused():
    g = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"], axis=2)], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match=r"node flatten -> %y: %y has type f32\[unk__0,8\], a size pdc "
                                               r"cannot write in terms of the sizes known only at run time \(N, S\)"):
        pdc.compile(model, shapes={"N": "1..4", "S": "1..6"})


def test_a_kernel_that_needs_a_fixed_size_is_refused():
    """Gather reads its axis' size to wrap negative indices into a table when compiling: refused."""
    g = helper.make_graph([helper.make_node("Gather", ["x", "i"], ["y"], axis=2)], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", 3])],
                          [numpy_helper.from_array(np.array([0, 3, 3]), "i")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match=r"node gather -> %y: no gather kernel takes a size known only at "
                                               r"run time here \(.*\); fix that size with --shape"):
        pdc.compile(model, shapes={"N": "1..4", "S": "1..6"})


# ---- the command line ---------------------------------------------------------------------------------
def _pdc(*args):
    r = subprocess.run([sys.executable, "-m", "pdc.cli", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_command_line_over_ranges(tmp_path):
    """compile / run / check / report on a model compiled for ranges: run makes its random inputs at
    the upper bounds, check checks the ranges' low ends, middles and high ends against ONNX Runtime,
    report gives its figures at the upper bounds; a malformed range is one line."""
    path = str(tmp_path / "m.onnx")
    onnx.save(_elementwise_model(), path)
    rc, out, err = _pdc("compile", path, "-o", str(tmp_path / "b"), "--shape", "N=1..4,S=2..6", "-q")
    assert rc == 0, err
    rc, out, err = _pdc("run", str(tmp_path / "b"))
    assert rc == 0 and "y: float32[4, 6, 8]" in out, err
    rc, out, err = _pdc("check", path, "--target", "x86", "--shape", "N=1..4,S=2..6")
    assert rc == 0 and out.count(" ok") == 3 and out.strip().endswith("PASS"), out + err
    for at in ("at N=1, S=2", "at N=2, S=4", "at N=4, S=6"):
        assert at in out
    rc, out, err = _pdc("report", path, "--shape", "N=1..4", "--shape", "S=2..6")
    assert rc == 0 and "-O2, " in out and "; at N = 4, S = 6)" in out.splitlines()[0], err
    rc, out, err = _pdc("compile", path, "-o", str(tmp_path / "c"), "--shape", "N=4..1")
    assert rc != 0 and err.strip().splitlines() == [
        "pdc: error: --shape 'N=4..1': expected NAME=D0,D1,... with non-negative integers, or ranges LO..HI "
        "(1 <= LO <= HI) for sizes known only at run time"]
