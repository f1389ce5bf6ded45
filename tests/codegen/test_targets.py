"""The Target interface and the kernel registry: targets are driven through explicit hooks only,
kernels are chosen per (op, kernel family) in the target's fallback order, and --threads reaches
the kernels' work split."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import pdc
from pdc.cli import main
from pdc.codegen.kernels import PORTABLE, REGISTRY, coverage, kernel, load_all
from pdc.targets import code_targets, get_target
from pdc.targets.base import KernelConfig, Target
from tests.kernels.harness import Const, Layer, build_model

PDC = Path(pdc.__file__).resolve().parent
DRIVERS = [PDC / "compiler.py", PDC / "codegen" / "c_renderer.py", *sorted((PDC / "codegen" / "kernels").rglob("*.py"))]


@pytest.mark.parametrize("path", DRIVERS, ids=lambda p: str(p.relative_to(PDC)))
def test_no_target_probing(path):
    """The compiler, the renderer and the generators ask the Target / KernelConfig, never probe them."""
    text = path.read_text()
    assert not re.search(r"\b(hasattr|getattr)\([^)]*\b(tgt|target)\b", text)
    assert "ctx.target" not in text and "install()" not in text


def test_every_code_target_implements_the_interface():
    targets = code_targets()
    assert {"x86-avx2", "x86-avx512", "arm64", "armv7", "cortex-m3", "cortex-m4", "cortex-m7",
            "cortex-m55"} <= set(targets)
    for name, t in targets.items():
        assert isinstance(t, Target), name
        # a fixed-point dataflow target (FPGA) renders HLS layers, not kernels
        assert t.kernel_families[-1] == PORTABLE if not t.fixed_point else t.kernel_families == (), name
        cfg = t.kernel_config(1)
        assert isinstance(cfg, KernelConfig) and cfg.threads == 1
        assert t.pipeline(2) and t.limits.max_threads >= 1 and t.cflags
    assert get_target("arm").kernel_config(4).threads == 4
    assert get_target("cortex-m55").kernel_config(1).simd == "mve"


def test_options_a_target_cannot_honour_are_refused():
    with pytest.raises(pdc.PdcError, match=r"--flash / --ram apply to microcontroller targets \(cortex-m\*\), "
                                           r"not to arm64"):
        get_target("arm64").with_memory("1M", None)
    with pytest.raises(pdc.PdcError, match=r"cortex-m4: microcontroller bundles are single-threaded"):
        get_target("cortex-m4").check_options("c", 2)
    with pytest.raises(pdc.PdcError, match=r"arm64: --threads 65 exceeds the target's 64"):
        get_target("arm64").check_options("c", 65)


def test_a_dtype_outside_the_targets_limits_is_refused():
    """Limits.dtypes (None: all) is checked on the optimized graph, naming the first value."""
    from dataclasses import fields

    from pdc.compiler import load_graph
    from pdc.targets.base import Limits
    x86 = get_target("x86")

    class Float32Only(type(x86)):
        @property
        def limits(self) -> Limits:
            return Limits(dtypes=frozenset({"f32", "i64"}))
    narrow = Float32Only(**{f.name: getattr(x86, f.name) for f in fields(x86)})
    model, _, _ = build_model([Layer("Relu", [np.zeros([2, 3], np.float16)], {})])
    graph = load_graph(model)
    x86.check_graph(graph)
    with pytest.raises(pdc.PdcError, match=rf"^{re.escape(x86.name)} does not compute f16 \(%\w+ of node relu -> "
                                           r"%\w+\); it computes f32, i64$"):
        narrow.check_graph(graph)


def test_a_declining_native_kernel_falls_back_to_the_next_family():
    """An ARM generator returns None for nodes it does not cover; the portable one renders them."""
    load_all()
    assert ("conv", "arm") in REGISTRY and ("conv", PORTABLE) in REGISTRY
    cov = coverage(("arm", PORTABLE))
    assert "conv" in cov["arm"] and "conv" not in cov[PORTABLE] and "lstm" in cov[PORTABLE]
    with pytest.raises(ValueError, match="arm kernel for 'conv' registered twice"):
        kernel("conv", family="arm")(lambda ctx: None)


def test_coverage_command(capsys):
    assert main(["targets", "--coverage", "--target", "arm64"]) == 0
    out = capsys.readouterr().out.splitlines()
    total = len({op for op, _ in load_all()})
    assert out[0] == f"arm64: {total} ops; kernel families in fallback order: arm -> portable"
    native = len(coverage(("arm", PORTABLE))["arm"])
    assert out[1] == f"  arm (native; a node it does not cover falls back): {native} ops"
    assert main(["targets", "--target", "reference"]) == 1
    assert capsys.readouterr().err.strip() == "pdc: error: target 'reference' runs the interpreter: it has no kernels"


def test_threads_set_the_split_and_leave_the_numbers_alone(tmp_path):
    """--threads 1/2/4: the same outputs; the GEMM job is serial at 1 and uses the pool at 2 and 4."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal([96, 256]).astype(np.float32)
    layer = Layer("Gemm", [x, Const(rng.standard_normal([256, 192]).astype(np.float32))], {})
    model, feeds, _ = build_model([layer])
    outs, parallel = {}, {}
    for threads in (1, 2, 4):
        mod = pdc.compile(model, target="x86", out_dir=str(tmp_path / f"t{threads}"), threads=threads)
        outs[threads] = mod.run(feeds)
        src = "".join(p.read_text() for p in (tmp_path / f"t{threads}").glob("*_kernels_*.c"))
        parallel[threads] = re.search(r"\.parallel = (\d)", src).group(1)
        assert mod.manifest["threads"] == threads
    for threads in (2, 4):
        for name, value in outs[1].items():
            np.testing.assert_array_equal(outs[threads][name], value)
    assert parallel == {1: "0", 2: "1", 4: "1"}


def test_more_pool_threads_than_compiled_keep_to_the_scratch_slots(tmp_path):
    """The GEMM's packing buffers are thread slots of its scratch in the arena, one per compiled
    thread: a pool of 6 threads (an application's pdc_threads_init) runs the kernel on 2 of them,
    with the same numbers."""
    rng = np.random.default_rng(1)
    layer = Layer("Gemm", [rng.standard_normal([96, 256]).astype(np.float32),
                           Const(rng.standard_normal([256, 192]).astype(np.float32))], {})
    model, feeds, _ = build_model([layer])
    mod = pdc.compile(model, target="x86", out_dir=str(tmp_path / "b"), threads=2)
    src = "".join(p.read_text() for p in (tmp_path / "b").glob("*_kernels_*.c"))
    assert re.search(r"\.slots = 2;", src) and "pdc_scratch" in src
    assert max((int(n) for n in re.findall(r"float \w+\[(\d+)\]", src)), default=0) <= 256  # none on the stack
    want = mod.run(feeds)
    assert mod._lib.pdc_threads_init(6) == 0 and mod._lib.pdc_threads_count() == 6
    got = mod.run(feeds)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)


@pytest.mark.parametrize("target", ["x86", "arm64"])
def test_kernels_report_bad_indices(tmp_path, target):
    """An out-of-range index makes the run fail with PDC_ERR_INDEX (the reference raises too)
    instead of returning zeros; in-range data runs as before."""
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Gather", ["x", "i"], ["y"])], "g", [x, i], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    mod = pdc.compile(model, target=target, out_dir=str(tmp_path / "b"))
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(mod.run({"x": data, "i": np.array([3, -4])})["y"], data[[3, 0]])
    with pytest.raises(pdc.PdcError, match="an input holds an index out of its range"):
        mod.run({"x": data, "i": np.array([1, 4])})


# ---- vector ISA code stays in the families' folders -----------------------------------------------
KERNELS = PDC / "codegen" / "kernels"
ISA_FOLDERS = (KERNELS / "x86", KERNELS / "arm", KERNELS / "hexagon")
# intrinsics, their headers and types, the ISA macros, NEON's v<op>q_<type> spellings and HVX's Q6_ ones
INTRINSIC = re.compile(r"_mm|immintrin|arm_neon|arm_mve|\bvld[1-4]|\bvst[1-4]|\bv[a-z0-9_]+q_(?:[fsu](?:8|16|32|64)|n_f32)\b"
                       r"|__m(?:128|256|512)|__AVX|__ARM_NEON|__ARM_FEATURE_MVE|float32x4_t"
                       r"|\bQ6_|hexagon_protos|HVX_Vector|__builtin_HEXAGON")


@pytest.mark.parametrize("path", [p for p in sorted(KERNELS.rglob("*.py")) if not any(f in p.parents for f in ISA_FOLDERS)],
                         ids=lambda p: str(p.relative_to(KERNELS)))
def test_no_intrinsic_outside_the_isa_folders(path):
    """Portable generators print plain C; AVX and NEON code lives in kernels/x86/ and kernels/arm/ only,
    reached through native pieces (kernels/native.py)."""
    hits = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1) if INTRINSIC.search(line)]
    assert not hits, "\n".join(hits)


def _portable_dense_model():
    """Layers the ARM family declines, so that the portable generators (and their native pieces)
    render them: runtime-weight convs (im2col, depthwise), a runtime MatMul, an LSTM with constant
    weights, softmax, row reductions, a quantized MatMul, attention."""
    rng = np.random.default_rng(0)

    def r(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    def q(*shape, dtype=np.uint8):
        return rng.integers(0, 255, shape).astype(dtype)

    scalar = lambda v, dt=np.float32: Const(np.array(v, dt))  # noqa: E731
    layers = [Layer("Conv", [r(1, 8, 10, 10), r(16, 8, 3, 3)], {"pads": [1, 1, 1, 1]}, [("Relu", {}, [])]),
              Layer("Conv", [r(1, 8, 12, 12), r(8, 1, 3, 3)], {"group": 8, "strides": [2, 2]}),
              Layer("MatMul", [r(2, 12, 20), r(2, 20, 24)], {}, [("Sigmoid", {}, [])]),
              Layer("LSTM", [r(3, 1, 16), Const(r(1, 64, 16)), Const(r(1, 64, 16))], {"hidden_size": 16}),
              Layer("Softmax", [r(4, 40)], {"axis": -1}),
              Layer("ReduceMax", [r(4, 40), Const(np.array([1]))], {"keepdims": 0}),
              Layer("ReduceSumSquare", [r(4, 40), Const(np.array([1]))], {"keepdims": 0}),
              Layer("QLinearMatMul", [q(6, 32), scalar(0.02), scalar(128, np.uint8), Const(q(32, 16)), scalar(0.01),
                                      scalar(120, np.uint8), scalar(0.5), scalar(100, np.uint8)]),
              Layer("Attention", [r(1, 2, 3, 8), r(1, 2, 6, 8), r(1, 2, 6, 8)], opset=23)]
    return build_model(layers)[0]


def _kernel_c(tmp_path, target, **options) -> str:
    from pdc.compiler import compile_bundle
    out = compile_bundle(_portable_dense_model(), str(tmp_path / target), target=target, build=False, **options)
    return "".join(p.read_text() for p in sorted(Path(out).glob("*_kernels*.[ch]")))  # the shared helpers too


@pytest.mark.parametrize("target,options", [("arm64", {}), ("cortex-m4", dict(flash="8M", ram="8M"))])
def test_arm_bundles_carry_no_x86_code(tmp_path, target, options):
    """The portable kernels an ARM bundle falls back to print plain C or ARM's native pieces (the
    dense GEMM's NEON microkernel pdc_sukr_n on AArch64; plain pdc_sukr_c on a Cortex-M4): no x86
    intrinsic, header or ISA test, dead or alive (the same model's x86 bundle has them)."""
    src = _kernel_c(tmp_path, target, **options)
    ukr = "pdc_sukr_n" if target == "arm64" else "pdc_sukr_c"
    for helper in ("pdc_sgemm_run", ukr, "pdc_dw_", "pdc_seq_gemv16", "pdc_exp_sum_f32", "pdc_rowf_max",
                   "pdc_qg_kernel_", "pdc_attn_dot"):
        assert helper in src, helper  # the portable pieces under test are there
    assert not re.search(r"_mm|immintrin|__m(?:256|512)|__AVX", src)
    x86 = _kernel_c(tmp_path, "x86-avx512")
    assert "#include <immintrin.h>" in x86 and "_mm512_fmadd_ps" in x86 and "pdc_sukr_z" in x86
