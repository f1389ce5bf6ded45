"""kir.parallel.bind_parallel: a kernel's Parallel loop nest collapsed into one loop bound to GPU
work-items. Printed OpenCL of small kernels; the generators' kernels of ~30 op configurations bound
and run serially in C (the C printer runs a bound loop as an ordinary loop, which checks the index
recovery) and compiled for the opencl target, on the device, each against the op's NumPy reference."""
import ctypes
import os
import subprocess
import textwrap

import numpy as np
import pytest

from pdc.codegen import kir
from pdc.codegen.c_renderer import PREAMBLE, WeightBlob
from pdc.codegen.context import KernelContext
from pdc.codegen.kernels import generators
from pdc.codegen.kir.opencl import OpenCLPrinter
from pdc.codegen.kir.parallel import bind_parallel
from pdc.ir import dtypes as D
from pdc.ir.graph import Node, Value
from pdc.ir.interpreter import run_node
from pdc.ir.ops.fused_elementwise import Step, encode_program
from pdc.ir.registry import get_op, with_defaults
from pdc.ir.types import TensorType
from pdc.ir.verify import infer_node
from pdc.targets.base import KernelConfig

RUNTIME = os.path.join(os.path.dirname(__file__), "..", "..", "pdc", "runtime")
f32 = D.float32
PAR = kir.Parallel()


def nest3(outer_annotation=PAR):
    """out0[i, j, k] = in0[i, j, k] * in1[k] over 2 x 3 x 4, i from a table, with a preamble."""
    x, w, y = kir.Buffer("in0", f32), kir.Buffer("in1", f32), kir.Buffer("out0", f32)
    i, j, k, p, q = (kir.index_var(n) for n in "ijkpq")
    s = kir.Var("s", f32)
    body = kir.loop(i, 2, kir.Declare(p, i * 12),
                    kir.loop(j, 3, kir.Declare(q, p + j * 4),
                             kir.loop(k, 4, kir.store(y, q + k, x[q + k] * w[k] * s), annotation=PAR),
                             annotation=PAR),
                    annotation=outer_annotation)
    return kir.make_kernel("nest3", [x, w], [y], kir.Comment("scaled"), kir.Declare(s, w[4] + 1), body)


def test_collapsed_nest_recovers_each_index_by_division_and_modulo():
    bound, n = bind_parallel(nest3())
    assert n == 24
    assert OpenCLPrinter().function(bound) == textwrap.dedent("""\
        __kernel void nest3(__global const float *in0, __global const float *in1, __global float *out0) {
            /* scaled */
            const float s = in1[4] + 1;
            {
                const long gid = get_global_id(0);
                if (gid < 24) {
                    const long i = gid / 12;
                    const long j = gid / 4 % 3;
                    const long k = gid % 4;
                    const long p = i * 12;
                    const long q = p + j * 4;
                    out0[q + k] = in0[q + k] * in1[k] * s;
                }
            }
        }
        """)


def test_start_and_step_and_a_stop_at_a_serial_or_variable_loop():
    x, y = kir.Buffer("in0", f32), kir.Buffer("out0", f32)
    i, j, r = kir.index_var("i"), kir.index_var("j"), kir.index_var("r")
    acc = kir.Var("acc", f32)
    serial_inside = kir.loop(i, 11, kir.loop(j, 4, kir.Declare(acc, kir.zero(f32), const=False),
                                             kir.loop(r, 5, kir.Assign(acc, acc + x[j * 5 + r])),
                                             kir.store(y, i * 4 + j, acc), annotation=PAR),
                             start=3, step=2, annotation=PAR)
    bound, n = bind_parallel(kir.make_kernel("k", [x], [y], serial_inside))
    assert n == 16  # i in 3, 5, 7, 9 times j in 0..3; the serial r loop stays in each work-item
    text = OpenCLPrinter().body(bound)
    assert "const long i = 3 + 2 * (gid / 4);" in text and "const long j = gid % 4;" in text
    assert "for (long r = 0; r < 5; r++) acc += in0[j * 5 + r];" in text
    # an inner loop with a bound that is not a literal ends the nest above it
    tri = kir.loop(i, 6, kir.loop(j, i + 1, kir.store(y, i * 6 + j, x[j]), annotation=PAR), annotation=PAR)
    bound, n = bind_parallel(kir.make_kernel("k", [x], [y], tri))
    assert n == 6 and "for (long j = 0; j < i + 1; j++)" in OpenCLPrinter().body(bound)


def test_preamble_statements_stay_before_the_bound_loop():
    x, y = kir.Buffer("in0", f32), kir.Buffer("out0", f32)
    tab = kir.Buffer("t0", D.int32, "constant")
    scratch = kir.Buffer("acc", f32, "private")
    i, c = kir.index_var("i"), kir.index_var("c")
    k = kir.make_kernel("k", [x], [y], kir.Comment("table"), kir.ConstArray(tab, (2, 0, 1)),
                        kir.Allocate(scratch, 4), kir.Declare(c, kir.idx(7)),
                        kir.loop(i, 3, kir.store(scratch, 0, x[tab[i]]), kir.store(y, i, scratch[0] * c),
                                 annotation=PAR))
    bound, n = bind_parallel(k)
    assert n == 3
    lines = OpenCLPrinter().body(bound).splitlines()
    assert [ln.strip() for ln in lines[:5]] == [
        "/* table */", "__constant int t0[3] = {2, 0, 1};", "__private float acc[4];", "const long c = 7;", "{"]
    assert "const long i = gid;" in lines[7]


def test_kernels_without_one_parallel_nest_at_the_top_stay_serial():
    x, y = kir.Buffer("in0", f32), kir.Buffer("out0", f32)
    i, j, o = kir.index_var("i"), kir.index_var("j"), kir.index_var("o")
    one = kir.loop(i, 4, kir.store(y, i, x[i]), annotation=PAR)
    cases = {
        "two top-level loops": [one, kir.loop(j, 4, kir.store(y, j + 4, x[j]), annotation=PAR)],
        "a Parallel loop below a serial one": [kir.loop(j, 2, kir.loop(i, 4, kir.store(y, j * 4 + i, x[i]),
                                                                       annotation=PAR))],
        "a serial loop": [kir.loop(i, 4, kir.store(y, i, x[i]))],
        "a running counter before it": [kir.Declare(o, kir.idx(0), const=False),
                                        kir.loop(i, 4, kir.store(y, o, x[i]), kir.Assign(o, o + 1), annotation=PAR)],
        "a fill before it": [kir.Fill(y, kir.idx(0), kir.idx(8), kir.zero(f32), zero=True), one],
        "a value read from the output": [kir.Declare(o, kir.cast(kir.INDEX, y[0])), one],
        "a loop after it": [one, kir.Comment("done")],
        "nothing": [],
    }
    for why, body in cases.items():
        k = kir.make_kernel("k", [x], [y], *body)
        assert bind_parallel(k) == (k, 1), why
    # the Declares between two loops must be pure for the nest to go on: here it stops at i
    impure = kir.loop(i, 2, kir.Declare(o, i * 4, const=False), kir.loop(j, 4, kir.store(y, o + j, x[j]),
                                                                        annotation=PAR), annotation=PAR)
    assert bind_parallel(kir.make_kernel("k", [x], [y], impure))[1] == 2


def test_fission_splits_top_level_loops_copies_and_fills_into_kernels_launched_in_order():
    from pdc.codegen.kir.parallel import fission
    x, y = kir.Buffer("in0", f32), kir.Buffer("out0", f32)
    i, c = kir.index_var("i"), kir.index_var("c")
    k = kir.make_kernel("k", [x], [y], kir.Declare(c, kir.idx(4)),
                        kir.Fill(y, kir.idx(0), kir.idx(8), kir.zero(f32), zero=True),
                        kir.Copy(y, c, x, kir.idx(0), kir.idx(3)),
                        kir.loop(i, 2, kir.store(y, i, x[i] + 1), annotation=PAR))
    pieces = fission(k)
    assert [p.name for p in pieces] == ["k_0", "k_1", "k_2"]
    texts = [OpenCLPrinter().body(bind_parallel(p)[0]) for p in pieces]
    assert [bind_parallel(p)[1] for p in pieces] == [8, 3, 2]
    assert texts[0].splitlines()[-5:] == ["        if (gid < 8) {", "            const long fill_k = gid;",
                                          "            out0[fill_k] = 0.0f;", "        }", "    }"]
    assert "const long c = 4;" in texts[1] and "out0[c + copy_k] = in0[copy_k];" in texts[1]
    # a scalar carried from one statement to the next: left whole
    o = kir.index_var("o")
    carried = kir.make_kernel("k", [x], [y], kir.Declare(o, kir.idx(0), const=False),
                              kir.loop(i, 2, kir.store(y, i, x[i]), annotation=PAR), kir.Assign(o, o + 2),
                              kir.loop(i, 2, kir.store(y, o + i, x[i]), annotation=PAR))
    assert fission(carried) == [carried]
    one = kir.make_kernel("k", [x], [y], kir.loop(i, 2, kir.store(y, i, x[i]), annotation=PAR))
    assert fission(one) == [one]


# ---- the generators' kernels, bound ---------------------------------------------------------------
def rand(rng, shape, dt):
    dt = np.dtype(dt)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if dt.kind in "iu":
        return rng.integers(-20, 21, size=shape).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def C(a):
    """A constant input (shape operands: Slice's starts, Pad's pads...)."""
    return ("const", np.asarray(a))


# (id, op, inputs: arrays, C(constants), or (shape, dtype) for random data, attrs, expected work-items:
# 1 where the kernel has no single parallel nest and runs in one work-item)
CASES = [
    ("add-broadcast", "add", [((2, 3, 4), np.float32), ((3, 1), np.float32)], {}, 24),
    ("mul-flat", "mul", [((5, 7), np.float32), ((5, 7), np.float32)], {}, 35),
    ("sub-int-broadcast", "sub", [((4, 1, 3), np.int32), ((5, 1), np.int32)], {}, 60),
    ("fused", "fused_elementwise", [((2, 3, 4), np.float32), ((4,), np.float32), ((3, 1), np.float32)],
     encode_program([Step("add", [0, 1], {}), Step("relu", [-1], {}), Step("mul", [-2, 2], {})]), 24),
    ("where", "where", [((2, 1, 4), np.bool_), ((3, 4), np.float32), ((2, 3, 1), np.float32)], {}, 24),
    ("cast", "cast", [((3, 5), np.float32)], {"to": D.int32}, 15),
    ("sigmoid-f16", "sigmoid", [((4, 6), np.float16)], {}, 24),
    ("clip", "clip", [((10,), np.float32), C(np.float32(-0.5)), C(np.float32(0.5))], {}, 10),
    ("transpose-tiles", "transpose", [((2, 30, 40), np.float32)], {"perm": [0, 2, 1]}, 12),
    ("transpose", "transpose", [((2, 3, 4), np.float32)], {"perm": [2, 0, 1]}, 24),
    ("concat", "concat", [((2, 3), np.float32), ((2, 5), np.float32)], {"axis": 1}, 1),
    ("slice", "slice", [((6, 9), np.float32), C([1, 2]), C([5, 9]), C([0, 1]), C([1, 2])], {}, 16),
    ("gather-rows", "gather", [((5, 3), np.float32), np.array([4, 0, -1, 2])], {"axis": 0}, 4),
    ("gather-inner", "gather", [((4, 6), np.float32), np.array([[1, 5, -2], [0, 0, 3]])], {"axis": 1}, 24),
    ("gather_elements", "gather_elements", [((3, 4), np.float32), np.array([[0, 3], [1, -1], [2, 2]])],
     {"axis": 1}, 6),
    ("gather_nd", "gather_nd", [((2, 3, 4), np.float32), np.array([[1, 2], [0, -1]])], {}, 2),
    ("reduce_sum-inner", "reduce_sum", [((4, 5, 6), np.float32), C([-1])], {}, 20),
    ("reduce_sum-middle", "reduce_sum", [((4, 5, 6), np.float32), C([1])], {"keepdims": 0}, 4),
    ("reduce_mean-outer", "reduce_mean", [((7, 9), np.float32), C([0])], {}, 1),
    ("reduce_sum-outer-remainder", "reduce_sum", [((3, 70), np.float32), C([0])], {}, 1),
    ("reduce_sum-middle-remainder", "reduce_sum", [((2, 3, 70), np.float32), C([1])], {}, 2),
    ("reduce_max-two-axes", "reduce_max", [((3, 4, 5), np.float32), C([0, 2])], {}, 4),
    ("reduce_prod-int", "reduce_prod", [((6, 3), np.int64), C([1])], {}, 6),
    ("reduce_log_sum_exp-lanes", "reduce_log_sum_exp", [((3, 150), np.float32), C([1])], {}, 3),
    ("global_average_pool", "global_average_pool", [((2, 3, 4, 5), np.float32)], {}, 6),
    ("global_max_pool", "global_max_pool", [((1, 4, 3, 3), np.float32)], {}, 4),
    ("arg_max-rows", "arg_max", [((3, 4, 5), np.float32)], {"axis": 2}, 12),
    ("arg_min-blocks", "arg_min", [((3, 4, 5), np.float32)], {"axis": 1, "keepdims": 0}, 3),
    ("cum_sum", "cum_sum", [((3, 4, 5), np.float32), C(np.int64(1))], {}, 15),
    ("cum_sum-exclusive-reverse", "cum_sum", [((3, 4), np.int32), C(np.int64(-1))],
     {"exclusive": 1, "reverse": 1}, 3),
    ("expand", "expand", [((3, 1), np.float32), C([2, 3, 4])], {}, 24),
    ("tile", "tile", [((2, 3), np.float32), C([2, 2])], {}, 24),
    ("pad-reflect", "pad", [((3, 4), np.float32), C([1, 2, 1, 2])], {"mode": "reflect"}, 40),
    ("pad-constant", "pad", [((3, 4), np.float32), C([1, 2, 1, 2])], {"mode": "constant"}, 1),
    ("depth_to_space", "depth_to_space", [((1, 8, 2, 3), np.float32)], {"blocksize": 2}, 48),
    ("space_to_depth", "space_to_depth", [((1, 2, 4, 4), np.float32)], {"blocksize": 2, "mode": "DCR"}, 32),
    ("trilu", "trilu", [((2, 4, 5), np.float32), C(np.int64(1))], {"upper": 1}, 40),
    ("one_hot", "one_hot", [np.array([[1, -1, 7], [0, 4, 2]]), C(np.int64(5)), np.array([0.5, 2.0], np.float32)],
     {"axis": 1}, 1),
    ("one_hot-last", "one_hot", [np.array([1.5, -1.0, 9.0]), C(np.int64(4)), np.array([0, 3], np.int32)], {}, 1),
    ("range", "range", [C(np.float32(1)), C(np.float32(10)), C(np.float32(0.5))], {}, 18),
    ("reverse_sequence", "reverse_sequence", [((4, 3, 2), np.float32), np.array([2, 4, 0])],
     {"batch_axis": 1, "time_axis": 0}, 12),
]
# paths other than the fp32 rows through the C vector helpers (_axis.row_f32_helper)
FORCED = {"reduce_log_sum_exp-lanes": "reduce=lanes", "global_average_pool": "reduce=groups"}


def case_node(case, rng):
    """(node, input arrays) of a case; constant inputs carry their data."""
    name, op, specs, attrs, _ = case
    values, arrays = [], []
    for k, s in enumerate(specs):
        const = isinstance(s, tuple) and s[0] == "const"
        a = s[1] if const else (rand(rng, *s) if isinstance(s, tuple) else np.asarray(s))
        values.append(Value(f"x{k}", TensorType(D.from_numpy(a.dtype), list(a.shape)), a if const else None))
        arrays.append(a)
    node = Node(op, values, [Value("y", None)], with_defaults(get_op(op), attrs))
    node.outputs = [Value(f"y{k}", t) for k, t in enumerate(infer_node(node))]
    return node, arrays


def bound_kernel(case, node, monkeypatch):
    """The generator's kir kernel for the node, bound: (kernel, work-items)."""
    if case[0] in FORCED:
        monkeypatch.setenv("PDC_FORCE_PATH", FORCED[case[0]])
    else:
        monkeypatch.delenv("PDC_FORCE_PATH", raising=False)
    ctx = KernelContext(node, f"k_{case[0].replace('-', '_')}", KernelConfig(1, 128, "none"), WeightBlob(), {})
    assert generators()[node.op](ctx) is not None
    assert not ctx._helpers, "a kir kernel that calls C helpers cannot run on the device"
    return bind_parallel(ctx.kir_kernel)


def check(case, got, want):
    for g, w in zip(got, want):
        if w.dtype.kind == "f":
            tol = 2e-3 if w.dtype == np.float16 else 1e-5
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol,
                                       err_msg=case[0])
        else:
            np.testing.assert_array_equal(g, w, err_msg=case[0])


def test_generated_kernels_bound_run_serially_in_c(tmp_path, monkeypatch):
    """Every case's bound kernel printed in C (the bound loop runs over gid serially), compiled
    into one library and run against the reference; the work-item counts as expected."""
    rng = np.random.default_rng(1)
    runs, sources = [], []
    for case in CASES:
        node, arrays = case_node(case, rng)
        k, n = bound_kernel(case, node, monkeypatch)
        assert n == case[4], (case[0], n)
        sources.append(kir.CPrinter().function(k))
        runs.append((case, node, arrays, k))
    src = tmp_path / "k.c"
    src.write_text(PREAMBLE + "".join(sources))
    lib = tmp_path / "k.so"
    subprocess.run(["gcc", "-std=c11", "-O1", "-shared", "-fPIC", f"-I{RUNTIME}", str(src), "-o", str(lib), "-lm"],
                   check=True, capture_output=True, text=True)
    dll = ctypes.CDLL(str(lib))
    for case, node, arrays, k in runs:
        ins = [np.ascontiguousarray(a) for a in arrays]
        outs = [np.zeros(v.type.shape, v.type.dtype.np) for v in node.outputs]
        status = ctypes.c_int(0)
        args = [a.ctypes.data_as(ctypes.c_void_p) for a in ins + outs]
        if "pdc_err" in kir.CPrinter().signature(k):
            args.append(ctypes.byref(status))
        getattr(dll, k.name)(*args)
        assert status.value == 0, case[0]
        check(case, outs, run_node(node, arrays))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_generated_kernels_bound_run_on_opencl(case, tmp_path, monkeypatch, opencl_platform):
    """The case's node compiled alone for the opencl target (its kernel printed in OpenCL C, bound
    over its work-items, launched on this machine's OpenCL platform) against the reference."""
    from pdc.compiler import compile_details
    from pdc.ir.graph import Graph
    from pdc.module import Module
    node, arrays = case_node(case, np.random.default_rng(2))
    k, n = bound_kernel(case, node, monkeypatch)
    inputs = [v for v in node.inputs if v is not None and not v.is_const]
    graph = Graph("one", inputs, node.outputs, [node], [v for v in node.inputs if v is not None and v.is_const])
    c = compile_details(graph, str(tmp_path / "b"), target="opencl", opt_level=0)
    kernels = [k for k in c.manifest["kernels"] if k["op"] == node.op]
    assert len(kernels) == 1
    if node.op not in generators("opencl"):  # else a hand-written device kernel takes the node
        assert kernels[0]["path"].startswith("opencl/kir-")
        if n > 1:
            assert kernels[0]["path"] == "opencl/kir-parallel"
    got = Module(c.folder).run({v.name: a for v, a in zip(node.inputs, arrays) if v in inputs})
    check(case, [got[v.name] for v in node.outputs], run_node(node, arrays))
