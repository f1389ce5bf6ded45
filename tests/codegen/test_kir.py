"""The kernel IR (pdc/codegen/kir): printed text of small kernels in C and OpenCL, kernels built from
it compiled and run against NumPy, the C printer's parentheses checked by running random
expressions, and the list of generators that print through it."""
import ctypes
import os
import subprocess
import textwrap

import numpy as np
import pytest

from pdc.codegen import kir
from pdc.codegen.c_renderer import PREAMBLE
from pdc.codegen.kir.opencl import OpenCLPrinter
from pdc.ir import dtypes as D
from pdc.ir.errors import UnsupportedError

RUNTIME = os.path.join(os.path.dirname(__file__), "..", "..", "pdc", "runtime")
f32, f16, bf16 = D.float32, D.float16, D.bfloat16


def bias_relu(bind=None, dtype=f32):
    """out0[i, j] = relu(in0[i, j] + in1[j]) over a 4 x 8 tensor."""
    x, b, y = kir.Buffer("in0", dtype), kir.Buffer("in1", dtype), kir.Buffer("out0", dtype)
    i, j = kir.index_var("i"), kir.index_var("j")
    v = kir.Var("v", f32)
    inner = kir.loop(j, 8, kir.Declare(v, kir.cast(f32, x[i * 8 + j]) + kir.cast(f32, b[j])),
                     kir.store(y, i * 8 + j, kir.select(v > 0, v, 0)))
    return kir.make_kernel("bias_relu", [x, b], [y], kir.loop(i, 4, inner, annotation=bind))


def test_c_text():
    assert kir.CPrinter().function(bias_relu()) == textwrap.dedent("""\
        void bias_relu(const float *in0, const float *in1, float *out0) {
            for (int64_t i = 0; i < 4; i++) {
                for (int64_t j = 0; j < 8; j++) {
                    const float v = in0[i * 8 + j] + in1[j];
                    out0[i * 8 + j] = v > 0 ? v : 0;
                }
            }
        }
        """)


def test_c_text_half_types_and_math_suffixes():
    printer = kir.CPrinter()
    assert "const float v = pdc_bf16_to_f32(in0[i * 8 + j]) + pdc_bf16_to_f32(in1[j]);" in \
        printer.function(bias_relu(dtype=bf16))
    assert "out0[i * 8 + j] = pdc_f32_to_bf16(v > 0 ? v : 0);" in printer.function(bias_relu(dtype=bf16))
    assert "const float v = (float)in0[i * 8 + j] + (float)in1[j];" in printer.function(bias_relu(dtype=f16))
    assert "out0[i * 8 + j] = (_Float16)(v > 0 ? v : 0);" in printer.function(bias_relu(dtype=f16))
    a, d = kir.Var("a", f32), kir.Var("d", D.float64)
    assert printer.expr(kir.math("exp", -a) + kir.math("tanh", a)) == "expf(-a) + tanhf(a)"
    assert printer.expr(kir.math("exp", d) * kir.math("nearbyint", d)) == "exp(d) * nearbyint(d)"
    assert printer.expr(kir.math("isinf", a).land(a > 0)) == "isinf(a) && a > 0"
    # literals: a Python float is a double literal, lit() gives the compute type's
    assert printer.expr(a * 0.5 + kir.lit(0.1, f32) + kir.lit(3, f32)) == "a * 0.5 + 0x1.999999999999ap-4f + 3.0f"


def test_c_parentheses_follow_precedence_and_warnings():
    p = kir.CPrinter()
    a, b, c = (kir.Var(n, D.int32) for n in "abc")
    assert p.expr(a - (b - c)) == "a - (b - c)"
    assert p.expr((a - b) - c) == "a - b - c"
    assert p.expr((a + b) * c) == "(a + b) * c"
    assert p.expr((a & b) | c) == "(a & b) | c"          # -Wparentheses
    assert p.expr(a << (b + 1)) == "a << (b + 1)"         # -Wparentheses
    assert p.expr((a < b).ne(b < c)) == "(a < b) != (b < c)"
    assert p.expr((a > 0).land(b > 0).lor(c > 0)) == "(a > 0 && b > 0) || c > 0"
    assert p.expr(kir.select(a > 0, a, kir.select(b > 0, b, c))) == "a > 0 ? a : (b > 0 ? b : c)"
    assert p.expr(-(-a)) == "-(-a)"
    assert p.expr(kir.cast(D.int8, a + b)) == "(int8_t)(a + b)"


def test_an_address_is_a_helper_calls_pointer_argument():
    """A helper that walks a row itself gets the row's address; the buffer counts as used."""
    x, y = kir.Buffer("in0", f32), kir.Buffer("out0", f32)
    i = kir.index_var("i")
    row = kir.call("row_sum", f32, kir.address(x, i * 16), 16)
    k = kir.make_kernel("k", [x], [y], kir.loop(i, 4, kir.store(y, i, row)),
                        kir.store(y, 4, kir.call("row_sum", f32, kir.address(x, 0), 64)))
    assert kir.CPrinter().body(k).splitlines() == [
        "    for (int64_t i = 0; i < 4; i++) out0[i] = row_sum(in0 + i * 16, 16);",
        "    out0[4] = row_sum(in0, 64);"]


def test_opencl_printer_over_the_same_ir():
    """The OpenCL printer changes types, qualifiers, math names, half memory accesses (the program's
    PDC_LDH / PDC_STH) and the bound loop, nothing else."""
    text = OpenCLPrinter().function(bias_relu(bind=kir.Bind("global.x"), dtype=f16))
    assert text == textwrap.dedent("""\
        __kernel void bias_relu(__global const half *in0, __global const half *in1, __global half *out0) {
            {
                const long i = get_global_id(0);
                if (i < 4) {
                    for (long j = 0; j < 8; j++) {
                        const float v = PDC_LDH(in0, i * 8 + j) + PDC_LDH(in1, j);
                        PDC_STH(out0, i * 8 + j, v > 0 ? v : 0);
                    }
                }
            }
        }
        """)
    # the C printer runs the bound loop serially
    assert "for (int64_t i = 0; i < 4; i++) {" in kir.CPrinter().function(bias_relu(bind=kir.Bind("global.x")))
    a = kir.Var("a", f32)
    assert OpenCLPrinter().expr(kir.math("exp", a) + kir.math("nearbyint", a)) == "exp(a) + rint(a)"


def test_opencl_half_storage_keeps_float_buffers_as_half_in_global_memory():
    """--precision fp16: float32 parameters become half, read by PDC_LDH and written by PDC_STH
    (the program's conversions; vectors by their 4-wide forms, copies and fills too); private
    arrays, other dtypes and the arithmetic stay as they are."""
    x, y, n = kir.Buffer("in0", f32), kir.Buffer("out0", f32), kir.Buffer("in1", kir.INDEX)
    t = kir.Buffer("t", f32, "private")
    i = kir.index_var("i")
    k = kir.make_kernel("k", [x, n], [y], kir.Allocate(t, 2),
                        kir.Store(t, kir.idx(0), x[n[0]] * 2),
                        kir.Store(y, kir.idx(0), kir.Load(x, kir.idx(4), 4), 4),
                        kir.Copy(y, kir.idx(8), x, kir.idx(0), kir.idx(4)),
                        kir.Fill(y, kir.idx(12), kir.idx(4), t[0]),
                        kir.loop(i, 4, kir.store(y, i + 16, t[0] + x[i])))
    assert OpenCLPrinter(half_storage=True).function(k) == textwrap.dedent("""\
        __kernel void k(__global const half *in0, __global const long *in1, __global half *out0) {
            __private float t[2];
            t[0] = PDC_LDH(in0, in1[0]) * 2;
            PDC_STH4(out0, 0, PDC_LDH4(in0, 4));
            for (long copy_i = 0; copy_i < 4; copy_i++) PDC_STH(out0, 8 + copy_i, PDC_LDH(in0, copy_i));
            for (long fill_i = 0; fill_i < 4; fill_i++) PDC_STH(out0, 12 + fill_i, t[0]);
            for (long i = 0; i < 4; i++) PDC_STH(out0, i + 16, t[0] + PDC_LDH(in0, i));
        }
        """)


def test_a_printer_subclass_changes_loop_annotations_in_a_few_lines():
    class HLSPrinter(kir.CPrinter):
        type_names = {**kir.CPrinter.type_names, "f16": "half"}

        def loop_body_pragmas(self, annotation, level):
            if isinstance(annotation, kir.Pipeline):
                return [self.indent * level + f"#pragma HLS PIPELINE II={annotation.ii}"]
            return []

    i = kir.index_var("i")
    y = kir.Buffer("out0", f16)
    k = kir.make_kernel("ramp", [], [y], kir.loop(i, 16, kir.store(y, i, kir.cast(f32, i)), annotation=kir.Pipeline()))
    assert HLSPrinter().function(k) == textwrap.dedent("""\
        void ramp(half *out0) {
            for (int64_t i = 0; i < 16; i++) {
                #pragma HLS PIPELINE II=1
                out0[i] = (half)((float)i);
            }
        }
        """)
    assert kir.CPrinter().body(k) == "    for (int64_t i = 0; i < 16; i++) out0[i] = (_Float16)((float)i);"


def test_barrier_and_local_memory():
    i = kir.index_var("i")
    x, y = kir.Buffer("in0", f32), kir.Buffer("out0", f32)
    tile = kir.Buffer("tile", f32, "local")
    body = [kir.Allocate(tile, 64),
            kir.loop(i, 64, kir.store(tile, i, x[i]), annotation=kir.Bind("local.x")),
            kir.Barrier(),
            kir.loop(i, 64, kir.store(y, i, tile[63 - i]), annotation=kir.Bind("local.x"))]
    k = kir.make_kernel("reverse64", [x], [y], body)
    text = OpenCLPrinter().body(k)
    assert "__local float tile[64];" in text and "barrier(CLK_LOCAL_MEM_FENCE);" in text
    assert "const long i = get_local_id(0);" in text
    with pytest.raises(UnsupportedError, match="barrier needs a work-group target"):
        kir.CPrinter().body(k)


# ---- compiled and run ------------------------------------------------------------------------------
def build(tmp_path, kernels, warnings=("-Wall", "-Wextra", "-Werror")) -> ctypes.CDLL:
    src = tmp_path / "k.c"
    src.write_text(PREAMBLE + "".join(kir.CPrinter().function(k) for k in kernels))
    lib = tmp_path / "k.so"
    subprocess.run(["gcc", "-std=c11", "-O2", *warnings, "-shared", "-fPIC", f"-I{RUNTIME}",
                    str(src), "-o", str(lib), "-lm"], check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))


def ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
def test_kernel_from_kir_runs_like_numpy(tmp_path, dtype):
    lib = build(tmp_path, [bias_relu(dtype=dtype)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(dtype.np)
    b = rng.standard_normal(8).astype(dtype.np)
    y = np.zeros((4, 8), dtype.np)
    lib.bias_relu(ptr(x), ptr(b), ptr(y))
    want = np.maximum(x.astype(np.float32) + b.astype(np.float32), 0).astype(dtype.np)
    assert y.tobytes() == want.tobytes()


def test_vector_kernel_runs_like_numpy(tmp_path):
    """out0 = in0 * s + in1 in 4-lane vectors (any alignment) with a scalar tail."""
    n, lanes = 23, 4
    x, z, y = kir.Buffer("in0", f32), kir.Buffer("in1", f32), kir.Buffer("out0", f32)
    s = kir.Var("s", f32)
    i, t = kir.index_var("i"), kir.index_var("t")
    vs = kir.Var("vs", kir.VectorType(f32, lanes))
    body = [kir.Declare(s, kir.lit(1.5, f32)),
            kir.Declare(vs, kir.Broadcast(s, lanes)),
            kir.loop(i, n // lanes, kir.Store(y, i * lanes, kir.Load(x, i * lanes, lanes) * vs
                                              + kir.Load(z, i * lanes, lanes), lanes)),
            kir.loop(t, n, kir.store(y, t, x[t] * s + z[t]), start=n // lanes * lanes)]
    k = kir.make_kernel("axpy", [x, z], [y], body)
    text = kir.CPrinter().body(k)
    assert "vector_size(16)" in text and "*(const pdc_f32x4 *)(in0 + i * 4)" in text
    lib = build(tmp_path, [k])
    rng = np.random.default_rng(1)
    xs = rng.standard_normal(n + 1).astype(np.float32)[1:]  # misaligned on purpose
    zs = rng.standard_normal(n).astype(np.float32)
    ys = np.zeros(n, np.float32)
    lib.axpy(ptr(xs), ptr(zs), ptr(ys))
    np.testing.assert_array_equal(ys, xs * np.float32(1.5) + zs)


def _random_int_expr(rng, vars_, depth):
    """A random int expression over small ints with no overflow or division: printed by kir and
    evaluated here with C's meaning of each operator."""
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.6:
            v = vars_[rng.integers(len(vars_))]
            return v, v.name
        c = int(rng.integers(-3, 4))
        return kir.as_expr(c), c
    kind = rng.integers(6)
    if kind == 0:
        a, av = _random_int_expr(rng, vars_, depth - 1)
        op = ["neg", "not", "bitnot"][rng.integers(3)]
        return kir.Unary(op, a), (op, av)
    if kind == 1:
        c, cv = _random_int_expr(rng, vars_, depth - 1)
        a, av = _random_int_expr(rng, vars_, depth - 1)
        b, bv = _random_int_expr(rng, vars_, depth - 1)
        return kir.select(c, a, b), ("select", cv, av, bv)
    a, av = _random_int_expr(rng, vars_, depth - 1)
    b, bv = _random_int_expr(rng, vars_, depth - 1)
    op = ["add", "sub", "mul", "bitand", "bitor", "bitxor", "land", "lor", "lt", "le", "gt", "ge", "eq",
          "ne"][rng.integers(14)]
    return kir.binary(op, a, b), (op, av, bv)


def _eval(t, env):
    if isinstance(t, str):
        return env[t]
    if isinstance(t, int):
        return t
    op, *args = t
    if op == "select":
        return _eval(args[1], env) if _eval(args[0], env) else _eval(args[2], env)
    v = [_eval(a, env) for a in args]
    return {"neg": lambda: -v[0], "not": lambda: int(not v[0]), "bitnot": lambda: ~v[0],
            "add": lambda: v[0] + v[1], "sub": lambda: v[0] - v[1], "mul": lambda: v[0] * v[1],
            "bitand": lambda: v[0] & v[1], "bitor": lambda: v[0] | v[1], "bitxor": lambda: v[0] ^ v[1],
            "land": lambda: int(bool(v[0]) and bool(v[1])), "lor": lambda: int(bool(v[0]) or bool(v[1])),
            "lt": lambda: int(v[0] < v[1]), "le": lambda: int(v[0] <= v[1]), "gt": lambda: int(v[0] > v[1]),
            "ge": lambda: int(v[0] >= v[1]), "eq": lambda: int(v[0] == v[1]), "ne": lambda: int(v[0] != v[1])}[op]()


def test_printed_expressions_compute_what_the_tree_says(tmp_path):
    """Random trees of every int operator, printed, compiled with -Werror (-Wparentheses) and run:
    the printer's parentheses keep each tree's meaning."""
    rng = np.random.default_rng(3)
    x = kir.Buffer("in0", D.int64)
    y = kir.Buffer("out0", D.int64)
    vs = [kir.Var(n, D.int64) for n in "abc"]
    exprs = [_random_int_expr(rng, vs, 4) for _ in range(300)]
    body = [kir.Declare(v, x[k]) for k, v in enumerate(vs)]
    body += [kir.store(y, k, e) for k, (e, _) in enumerate(exprs)]
    # random trees compare booleans with numbers and such: only the parentheses warnings are errors
    lib = build(tmp_path, [kir.make_kernel("exprs", [x], [y], body)], ("-Werror=parentheses",))
    for env in ({"a": 2, "b": -3, "c": 0}, {"a": -1, "b": 1, "c": 3}):
        xs = np.array([env["a"], env["b"], env["c"]], np.int64)
        ys = np.zeros(len(exprs), np.int64)
        lib.exprs(ptr(xs), ptr(ys))
        assert ys.tolist() == [_eval(t, env) for _, t in exprs]


def test_types_follow_c():
    a8, u32, i64 = kir.Var("a", D.int8), kir.Var("u", D.uint32), kir.Var("l", D.int64)
    assert (a8 + a8).dtype == D.int32          # integer promotion
    assert (u32 + 1).dtype == D.uint32
    assert (u32 + i64).dtype == D.int64        # the signed type holds every uint32
    assert (a8 < 1).dtype == D.int32
    assert (kir.Var("f", f32) + 0.5).dtype == D.float64  # an unsuffixed literal is a double
    with pytest.raises(UnsupportedError, match="bf16 is a storage type"):
        kir.Var("h", bf16) + 1


def test_kir_generated_ops():
    """The registered ops whose generators print through the kernel IR: every op of the ported
    families (elementwise and fused chains, copies, tensor movement, index gathers and scatters),
    the reductions (Reduce*, the global pools, ArgMax / ArgMin, the scans) and the block moves."""
    from pdc.codegen.kernels import generators
    from pdc.codegen.kernels._kir import kir_generated_ops
    ported_modules = ("elementwise", "fused", "copy", "tensor", "tensor_index")
    ported_ops = ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_l1", "reduce_l2",
                  "reduce_log_sum", "reduce_log_sum_exp", "reduce_sum_square", "global_average_pool",
                  "global_max_pool", "global_lp_pool", "arg_max", "arg_min", "cum_sum", "cum_prod", "max_unpool",
                  "depth_to_space", "space_to_depth", "bit_cast", "tensor_scatter", "dropout")
    ported = sorted(op for op, fn in generators().items()
                    if fn.__module__.rsplit(".", 1)[-1] in ported_modules or op in ported_ops)
    assert kir_generated_ops() == ported
    assert len(ported) == 122  # with the memory-space copy


def test_kernel_signature_is_the_contexts(tmp_path):
    """A generator's kir kernel has the signature KernelContext.signature gives the renderer, the
    status pointer included when it checks its input data."""
    from pdc.codegen.c_renderer import WeightBlob
    from pdc.codegen.context import KernelContext
    from pdc.codegen.kernels import generators
    from pdc.codegen.kernels._kir import io
    from pdc.ir.graph import Node, Value
    from pdc.ir.types import TensorType
    from pdc.targets.base import KernelConfig
    x = Value("x", TensorType(f32, [5, 3]))
    i = Value("i", TensorType(D.int64, [2]), np.array([0, -1], np.int64))
    y = Value("y", TensorType(f32, [2, 3]))
    ctx = KernelContext(Node("gather", [x, i], [y], {"axis": 0}), "k_gather", KernelConfig(1, 128, "none"),
                        WeightBlob(), {})
    body = generators()["gather"](ctx)
    assert "*pdc_err = PDC_ERR_INDEX;" in body
    ins, outs = io(ctx)
    k = kir.make_kernel("k_gather", ins, outs, kir.Check(kir.as_expr(0)))
    assert kir.CPrinter().signature(k) == ctx.signature()
