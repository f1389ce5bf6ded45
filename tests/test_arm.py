"""ARM Cortex-A targets (arm64 = arm = aarch64, armv7): cross-built bundles run under qemu-user.

The ARM kernels (pdc/codegen/kernels/arm/) are checked op by op against ONNX Runtime on
models that put many attribute combinations side by side, and must really be the ones used; the
zoo models match ONNX Runtime within the zoo tolerance on both architectures; the AArch64
conv/GEMM kernels hold NEON instructions (objdump), and resnet18's instruction count under qemu
is compared with a plain-C build of the same kernels. Needs the Debian cross toolchains and
qemu-user (.ci/run installs them); without them the tests skip, except in CI, where they fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.ir.errors import PdcError
from pdc.targets import get_target
from pdc.targets.arm import AARCH64, ARMV7, run_counting
from tolerances import KERNEL, Tolerance, assert_zoo_close

CORTEX_A = ["arm64", "armv7"]


def require_tools(*targets: str) -> None:
    """Skips (fails in CI) when a target's cross compiler or emulator is missing."""
    missing = sorted({f"{t.program} (Debian package {t.package})" for name in targets
                      for t in get_target(name).tools() if not t.available()})
    if missing:
        msg = "missing: " + ", ".join(missing) + " (see .ci/run)"
        if os.environ.get("CI") or os.environ.get("PDC_ARM_REQUIRED"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


# ---- models with many ops side by side ---------------------------------------------------------------
def _rng(seed=0):
    return np.random.default_rng(seed)


class ModelBuilder:
    """A one-graph ONNX model whose outputs are many independent nodes over a few inputs."""

    def __init__(self, name: str, seed: int = 0):
        self.name, self.rng = name, _rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.feeds: dict[str, np.ndarray] = {}
        self.n = 0

    def input(self, name: str, shape) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.feeds[name] = self.rng.standard_normal(shape).astype(np.float32)
        return name

    def const(self, array, name=None) -> str:
        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def weight(self, *shape, scale=0.3) -> str:
        return self.const(self.rng.standard_normal(shape).astype(np.float32) * scale)

    def node(self, op: str, inputs, output=None, **attrs) -> str:
        self.n += 1
        out = output or f"t{self.n}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=f"{op}_{self.n}", **attrs))
        return out

    def output(self, value: str) -> None:
        self.outputs.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, None))

    def model(self, opset: int = 17) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return onnx.shape_inference.infer_shapes(m)


def nn_model(small: bool = False) -> ModelBuilder:
    """Convolutions (dense, grouped, depthwise, 1-D; strides, asymmetric pads, dilations; fused
    activations and residuals), pooling, Gemm and MatMul variants."""
    b = ModelBuilder("arm_nn")
    C, S = (4, 9) if small else (8, 12)
    x = b.input("x", (1, C, S, S))
    y = b.input("y", (1, 2 * C, S, S))
    x1 = b.input("x1", (2, 3, 21))
    a2 = b.input("a2", (3, 20))
    a3 = b.input("a3", (20, 3))
    a4 = b.input("a4", (2, 5, 20))
    out = b.output
    # dense convs
    out(b.node("Relu", [b.node("Conv", [x, b.weight(2 * C, C, 3, 3), b.weight(2 * C)], pads=[1, 1, 1, 1])]))
    out(b.node("Conv", [x, b.weight(5, C, 3, 3)], strides=[2, 2], pads=[0, 1, 1, 0]))
    out(b.node("Conv", [x, b.weight(C, C // 2, 3, 3), b.weight(C)], group=2, dilations=[2, 2], pads=[2, 2, 2, 2]))
    out(b.node("Conv", [x, b.weight(6, C, 2, 3)], auto_pad="SAME_UPPER", strides=[2, 1]))
    pw = b.node("Conv", [x, b.weight(2 * C, C, 1, 1), b.weight(2 * C)])
    out(b.node("Relu", [b.node("Add", [pw, y])]))  # residual before the activation
    out(b.node("Add", [b.node("Sigmoid", [b.node("Conv", [x, b.weight(2 * C, C, 1, 1)])]), y]))  # post-pass + after
    # depthwise
    out(b.node("Clip", [b.node("Conv", [x, b.weight(C, 1, 3, 3), b.weight(C)], group=C, pads=[1, 1, 1, 1]),
                        b.const(0.0, "zero"), b.const(6.0, "six")]))
    out(b.node("Sigmoid", [b.node("Conv", [x, b.weight(C, 1, 3, 3), b.weight(C)], group=C, strides=[2, 2],
                                  pads=[1, 1, 1, 1])]))
    out(b.node("Conv", [x, b.weight(C, 1, 5, 5)], group=C, pads=[2, 1, 2, 3]))
    out(b.node("Conv", [x, b.weight(C, 1, 3, 3), b.weight(C)], group=C, dilations=[2, 2], pads=[2, 2, 2, 2]))
    out(b.node("Conv", [x, b.weight(C, 1, 3, 3)], group=C, strides=[3, 3]))
    out(b.node("Conv", [x, b.weight(2 * C, 1, 3, 3)], group=C, pads=[1, 1, 1, 1]))  # channel multiplier 2
    out(b.node("Conv", [x1, b.weight(4, 3, 3), b.weight(4)], strides=[2], pads=[1, 0]))  # 1-D
    # pooling
    out(b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    out(b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
    out(b.node("MaxPool", [x], kernel_shape=[2, 2], dilations=[2, 2]))
    out(b.node("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    out(b.node("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1))
    out(b.node("AveragePool", [x], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1))
    out(b.node("MaxPool", [x1], kernel_shape=[3], strides=[2]))
    out(b.node("GlobalAveragePool", [x]))
    out(b.node("GlobalMaxPool", [y]))
    # gemm / matmul
    out(b.node("Gemm", [a2, b.weight(20, 7), b.weight(7)], alpha=0.5, beta=2.0))
    out(b.node("Gemm", [a3, b.weight(7, 20), b.weight(3, 1)], transA=1, transB=1))
    out(b.node("Gemm", [a2, b.weight(20, 9), b.weight(3, 9)]))
    out(b.node("Relu", [b.node("Gemm", [a2, b.weight(20, 5), b.const(0.25)])]))
    out(b.node("Add", [b.node("MatMul", [a4, b.weight(20, 9)]), b.weight(9)]))
    out(b.node("Relu", [b.node("MatMul", [a4, b.weight(20, 1)])]))
    return b


def elementwise_model() -> ModelBuilder:
    """Binary ops with the broadcast patterns the ARM loops take, and the unary ops."""
    b = ModelBuilder("arm_elementwise", seed=1)
    x = b.input("x", (2, 6, 5, 7))
    y = b.input("y", (2, 6, 5, 7))
    r = b.input("r", (6, 1, 1))
    out = b.output
    out(b.node("Add", [x, y]))
    out(b.node("Sub", [x, b.const(0.5)]))
    out(b.node("Mul", [x, r]))
    out(b.node("Div", [x, b.node("Add", [b.node("Abs", [y]), b.const(1.0)])]))
    out(b.node("Max", [x, y]))
    out(b.node("Min", [y, b.weight(5, 7)]))
    out(b.node("Relu", [x]))
    out(b.node("Clip", [y, b.const(-0.5), b.const(0.75)]))
    out(b.node("Clip", [x, b.const(-0.25)]))
    out(b.node("LeakyRelu", [x], alpha=0.1))
    out(b.node("HardSigmoid", [y], alpha=0.3, beta=0.4))
    out(b.node("Neg", [x]))
    out(b.node("Relu", [b.node("Add", [x, x])]))
    return b


def run_onnxruntime(model: onnx.ModelProto, feeds: dict) -> dict:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def kernel_bodies(folder) -> dict[str, str]:
    """The generated C of each kernel function of a bundle, by function name."""
    m = json.loads((folder / "manifest.json").read_text())
    text = "".join((folder / f).read_text() for f in sorted(os.listdir(folder)) if "_kernels_" in f)
    bodies = {}
    for k in m["kernels"]:
        start = text.find(f"void {k['function']}(")
        if start >= 0:
            bodies[k["function"]] = text[start:text.find("\n}\n", start)]
    return bodies


ARM_MARKS = {  # what an ARM kernel's body contains, per op family
    "conv": ("pdc_agemm", "_planes"), "fused_conv": ("pdc_agemm", "_planes"),  # Winograd too: its GEMM step
    "gemm": ("pdc_agemm_run",), "fused_gemm": ("pdc_agemm_run",), "matmul": ("pdc_agemm_run",),
    "fused_matmul": ("pdc_agemm_run",), "max_pool": ("band[",), "average_pool": ("band[",),
    "global_average_pool": ("#if PDC_V",), "global_max_pool": ("#if PDC_V",),
}


def assert_arm_kernels_used(folder, ops=None) -> None:
    """Every conv / gemm / matmul / pool / elementwise kernel of the bundle is an ARM one."""
    m = json.loads((folder / "manifest.json").read_text())
    bodies = kernel_bodies(folder)
    for k in m["kernels"]:
        op = k["op"]
        if ops is not None and op not in ops:
            continue
        marks = ARM_MARKS.get(op, ("#if PDC_V",) if op in ("add", "sub", "mul", "div", "max", "min", "relu", "clip",
                                                             "leaky_relu", "hard_sigmoid", "neg", "abs") else ())
        if marks and k["function"] in bodies:
            assert any(mk in bodies[k["function"]] for mk in marks), f"{k['function']} ({op}) is not an ARM kernel"


def compare(got: dict, want: dict, tolerance: Tolerance = KERNEL) -> None:
    """Every output element by element (the ops' kernels: tolerances.KERNEL)."""
    assert list(got) == list(want)
    bad = {n: tolerance.mismatches(got[n], want[n]) for n in want}
    bad = {n: msg for n, msg in bad.items() if msg}
    assert not bad, "outputs off:\n" + "\n".join(f"{n}: {msg}" for n, msg in bad.items())


# ---- targets ------------------------------------------------------------------------------------------
def test_target_names_and_aliases():
    assert get_target("arm") is get_target("arm64") is get_target("aarch64") is AARCH64
    assert get_target("armv7") is ARMV7
    assert AARCH64.simd == "neon64" and ARMV7.simd == "neon32" and AARCH64.runner_kind == "qemu-user"
    assert "-mfpu=neon" in ARMV7.cflags and "-mfloat-abi=hard" in ARMV7.cflags
    from pdc.targets import known_targets
    names = known_targets()
    for n in ("arm", "arm64", "aarch64", "armv7", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55"):
        assert n in names and names[n]
    assert "NEON" in names["arm64"] and "NEON" in names["armv7"]


def test_missing_toolchain_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(PdcError, match=r"aarch64-linux-gnu-gcc not found: .*'gcc-aarch64-linux-gnu'"):
        pdc.compile(elementwise_model().model(), target="arm64", out_dir=str(tmp_path / "b"))


# ---- the ARM kernels, op by op ----------------------------------------------------------------------------
@pytest.mark.parametrize("target", CORTEX_A)
@pytest.mark.parametrize("opt_level", [0, 2])
def test_nn_ops_match_onnxruntime(tmp_path, target, opt_level):
    require_tools(target)
    b = nn_model()
    model = b.model()
    folder = tmp_path / "b"
    mod = pdc.compile(model, target=target, out_dir=str(folder), opt_level=opt_level)
    assert_arm_kernels_used(folder)
    ops = {k["op"] for k in json.loads((folder / "manifest.json").read_text())["kernels"]}
    if opt_level == 2:  # the fused forms were made, and went through the ARM epilogues
        assert {"fused_conv", "fused_gemm"} <= ops
    compare(mod.run(b.feeds), run_onnxruntime(model, b.feeds))


@pytest.mark.parametrize("target", CORTEX_A)
def test_elementwise_ops_match_onnxruntime(tmp_path, target):
    require_tools(target)
    b = elementwise_model()
    model = b.model()
    folder = tmp_path / "b"
    mod = pdc.compile(model, target=target, out_dir=str(folder), opt_level=0)
    assert_arm_kernels_used(folder, ops={"add", "sub", "mul", "max", "min", "relu", "clip", "leaky_relu", "neg"})
    compare(mod.run(b.feeds), run_onnxruntime(model, b.feeds))


def test_nan_propagates_like_the_reference(tmp_path):
    """max / relu / clip / max-pool / conv+relu with NaN inputs: NaN where the reference has NaN."""
    require_tools("arm64")
    from pdc.frontend.onnx_import import import_onnx
    from pdc.ir import run_graph
    b = ModelBuilder("nan")
    x = b.input("x", (1, 2, 6, 8))
    pools = []
    for op, extra in (("Relu", {}), ("MaxPool", {"kernel_shape": [2, 2]}), ("GlobalMaxPool", {})):
        b.output(b.node(op, [x], **extra))
        if op != "Relu":
            pools.append(b.outputs[-1].name)
    b.output(b.node("Max", [x, b.weight(8)]))
    b.output(b.node("Clip", [x, b.const(-0.1), b.const(0.1)]))
    b.output(b.node("Relu", [b.node("Conv", [x, b.weight(4, 2, 1, 1)])]))
    b.feeds["x"][0, 1, 2, 3] = np.nan
    b.feeds["x"][0, 0, 5, 0] = np.nan
    model = b.model()
    want = run_graph(import_onnx(model, "nan"), b.feeds)
    got = pdc.compile(model, target="arm64", out_dir=str(tmp_path / "b")).run(b.feeds)
    for name in want:
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(want[name]), err_msg=name)
        KERNEL.check(got[name], want[name], name)
    # and ONNX's reference, which propagates NaN like NumPy (ONNX Runtime's max-like kernels skip it);
    # a NaN in a max pool's window is pdc's own choice (both ONNX oracles skip it there)
    from oracles import check_against_oracles
    check_against_oracles(got, model, b.feeds, KERNEL, list(want), reference=list(want), unchecked=pools)


def test_threads_split_the_work(tmp_path):
    """--threads 2: the GEMM and depthwise kernels run on the pool (real threads under qemu-user)."""
    require_tools("arm64")
    b = ModelBuilder("threads")
    x = b.input("x", (1, 16, 64, 64))
    b.output(b.node("Relu", [b.node("Conv", [x, b.weight(32, 16, 3, 3), b.weight(32)], pads=[1, 1, 1, 1])]))
    b.output(b.node("Conv", [x, b.weight(16, 1, 3, 3)], group=16, pads=[1, 1, 1, 1]))
    model = b.model()
    folder = tmp_path / "b"
    mod = pdc.compile(model, target="arm64", out_dir=str(folder), threads=2)
    text = "".join(kernel_bodies(folder).values())
    assert "g.parallel = 1;" in text and "pdc_parallel_for(" in text
    compare(mod.run(b.feeds), run_onnxruntime(model, b.feeds))


# ---- the bundle ----------------------------------------------------------------------------------------
def test_bundle_cross_builds_with_its_makefile_and_runs_from_the_cli(tmp_path):
    require_tools("armv7")
    b = nn_model(small=True)
    model_path = tmp_path / "nn.onnx"
    onnx.save(b.model(), model_path)
    folder = tmp_path / "b"
    r = subprocess.run([sys.executable, "-m", "pdc.cli", "compile", str(model_path), "--target", "armv7",
                        "-o", str(folder)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((folder / "manifest.json").read_text())
    assert m["target"] == "armv7" and m["library"] is None and m["static_library"] == "libnn.a"
    assert m["runner"]["kind"] == "qemu-user" and m["runner"]["emulator"] == "qemu-arm"
    assert (folder / "nn_harness").exists() and (folder / "libnn.a").exists()
    # the bundle's own Makefile cross-builds the same thing
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    for f in ("nn_harness", "libnn.a"):
        os.unlink(copy / f)
    r = subprocess.run(["make", "-j2"], cwd=copy, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (copy / "nn_harness").exists()
    # pdc run DIR runs the bundle under qemu, like an x86 bundle
    np.savez(tmp_path / "in.npz", **b.feeds)
    r = subprocess.run([sys.executable, "-m", "pdc.cli", "run", str(copy), "--inputs", str(tmp_path / "in.npz"),
                        "--save", str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = dict(np.load(tmp_path / "out.npz"))
    compare(got, run_onnxruntime(b.model(), b.feeds))


def test_module_run_checks_feeds_and_reports_a_missing_emulator(tmp_path, monkeypatch):
    require_tools("arm64")
    b = elementwise_model()
    mod = pdc.compile(b.model(), target="arm64", out_dir=str(tmp_path / "b"), opt_level=0)
    with pytest.raises(ValueError, match="missing input"):
        mod.run({"x": b.feeds["x"]})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PdcError, match=r"qemu-aarch64 not found: .*'qemu-user'"):
        mod.run(b.feeds)


# ---- zoo models ----------------------------------------------------------------------------------------
ZOO = ["mobilenet_v2", "resnet18", "squeezenet1_1", "transformer_encoder"]
_bundles: dict = {}


def zoo_bundle(zoo, name: str, target: str, tmp_path_factory):
    """The compiled bundle of a zoo model for a target (compiled once per session)."""
    key = (name, target)
    if key not in _bundles:
        folder = tmp_path_factory.mktemp(f"{name}-{target}")
        _bundles[key] = (pdc.compile(zoo(name), target=target, out_dir=str(folder)), folder)
    return _bundles[key]


def check_zoo_outputs(zoo, name: str, target: str, got: dict, feeds: dict) -> None:
    from zoo import run_onnxruntime as ort_run
    want = ort_run(zoo(name), feeds)
    assert len(got) == len(want)
    for (wname, w), g in zip(want, got.values()):
        assert_zoo_close(g, w, f"{name} on {target}: output {wname}")


# resnet18 on arm64 runs in test_resnet18_instruction_count_neon_vs_plain_c (one qemu run for both)
@pytest.mark.slow
@pytest.mark.parametrize("name,target", [(n, t) for n in ZOO for t in CORTEX_A if (n, t) != ("resnet18", "arm64")])
def test_zoo_model_matches_onnxruntime(zoo, tmp_path_factory, name, target):
    require_tools(target)
    from zoo import make_feeds
    mod, folder = zoo_bundle(zoo, name, target, tmp_path_factory)
    assert_arm_kernels_used(folder)
    feeds = make_feeds(zoo(name))
    check_zoo_outputs(zoo, name, target, mod.run(feeds), feeds)


def disassembly(tool: str, lib) -> dict[str, str]:
    """objdump -d of an archive, split per function symbol."""
    text = subprocess.run([tool, "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    funcs, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            current = m.group(1)
            funcs[current] = ""
        elif current:
            funcs[current] += line + "\n"
    return funcs


@pytest.mark.slow
def test_aarch64_conv_and_gemm_kernels_use_neon(zoo, tmp_path_factory):
    """The microkernels doing resnet18's convolutions and its fc layer, and mobilenet_v2's
    depthwise kernels, are NEON code: fmla on 4 x fp32 vectors (by lane for the GEMM)."""
    require_tools("arm64")
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    assert objdump, "aarch64-linux-gnu-objdump missing (binutils-aarch64-linux-gnu)"
    fmla_lane = re.compile(r"\bfmla\s+v\d+\.4s, v\d+\.4s, v\d+\.s\[\d\]")
    fmla_vec = re.compile(r"\bfmla\s+v\d+\.4s, v\d+\.4s, v\d+\.4s")
    for name, needs in (("resnet18", ("pdc_aukr_",)), ("mobilenet_v2", ("pdc_aukr_", "_planes"))):
        _, folder = zoo_bundle(zoo, name, "arm64", tmp_path_factory)
        funcs = disassembly(objdump, folder / "libmodel.a")
        for part in needs:
            found = {f: body for f, body in funcs.items() if part in f}
            assert found, f"{name}: no {part}* function in libmodel.a"
            if part == "pdc_aukr_":
                assert all(fmla_lane.search(body) for body in found.values()), f"{name}: a GEMM microkernel without NEON"
            else:
                assert any(fmla_vec.search(body) for body in found.values()), f"{name}: depthwise kernels without NEON"
        # the conv kernels do reach the microkernels (through the GEMM driver; compiled for one
        # thread, its sequential run function is inlined into the kernel, which calls its units)
        assert any(re.search(r"pdc_agemm_(run|task|unit)", body) for f, body in funcs.items()
                   if "_fused_conv" in f or f.startswith("pdc_agemm"))


def test_winograd_takes_fewer_instructions_than_the_direct_conv(tmp_path, monkeypatch):
    """A 64-channel 3x3 layer at 28x28 on arm64 under qemu: F(4x4) takes 44% of the direct path's
    instructions (4.7M against 10.5M; its multiplies are 4x fewer). A Winograd GEMM that read a
    block's partial panel in place took 68% (7.2M). Both paths against ONNX Runtime."""
    require_tools("arm64")
    import onnxruntime as ort
    rng = _rng(3)
    w = numpy_helper.from_array(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.1, "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 28, 28])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    feeds = {"x": rng.standard_normal((1, 64, 28, 28)).astype(np.float32)}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    counts = {}
    for path in ("winograd4", "neon-gemm"):
        monkeypatch.setenv("PDC_FORCE_PATH", f"conv={path}")
        folder = tmp_path / path
        pdc.compile(model, target="arm64", out_dir=str(folder))
        assert json.loads((folder / "manifest.json").read_text())["kernels"][0]["path"] == f"conv/{path}"
        got, counts[path] = run_counting(str(folder), feeds)
        np.testing.assert_allclose(list(got.values())[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert counts["winograd4"] < 0.6 * counts["neon-gemm"], counts


@pytest.mark.slow
def test_resnet18_instruction_count_neon_vs_plain_c(zoo, tmp_path_factory, record_property):
    """Guest instructions of one resnet18 inference under qemu-aarch64: the NEON build against a
    plain-C build (-DPDC_PLAIN_C: the same kernels, packing and tiles without intrinsics)."""
    require_tools("arm64")
    from zoo import make_feeds
    _, folder = zoo_bundle(zoo, "resnet18", "arm64", tmp_path_factory)
    assert_arm_kernels_used(folder)
    feeds = make_feeds(zoo("resnet18"))
    AARCH64.build_variant(str(folder), "plain_harness", ["-DPDC_PLAIN_C"])
    got, neon = run_counting(str(folder), feeds)
    check_zoo_outputs(zoo, "resnet18", "arm64", got, feeds)
    got, plain = run_counting(str(folder), feeds, "plain_harness")
    check_zoo_outputs(zoo, "resnet18", "arm64 (plain C)", got, feeds)
    record_property("resnet18_aarch64_instructions_neon", neon)
    record_property("resnet18_aarch64_instructions_plain_c", plain)
    print(f"\nresnet18 on qemu-aarch64: {neon:,} instructions with NEON, {plain:,} plain C "
          f"({plain / neon:.2f}x)")
    assert neon * 1.5 < plain


def test_generated_arm_code_is_warning_free(tmp_path):
    """The kernels compile without warnings for every ARM flavour, NEON / Helium and plain C."""
    from pdc.compiler import compile_bundle
    flavours = [("arm64", "aarch64-linux-gnu-gcc", [], ["", "-DPDC_PLAIN_C"]),
                ("armv7", "arm-linux-gnueabihf-gcc", ["-mfpu=neon", "-mfloat-abi=hard"], ["", "-DPDC_PLAIN_C"]),
                ("cortex-m55", "arm-none-eabi-gcc", ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"], [""]),
                ("cortex-m4", "arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                                                    "-mfloat-abi=hard"], [""])]
    for target, cc, arch, variants in flavours:
        if not shutil.which(cc):
            require_tools(target)
        for i, (b, level) in enumerate(((nn_model(small=True), 2), (nn_model(small=True), 0),
                                        (elementwise_model(), 0))):
            out = tmp_path / f"{target}-{i}"
            compile_bundle(b.model(), str(out), target=target, build=False, opt_level=level)
            srcs = sorted(f for f in os.listdir(out) if f.endswith(".c") and f != "model_harness.c")
            for extra in variants:
                cmd = [cc, *arch, *([extra] if extra else []), "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror",
                       "-I.", "-Iruntime", "-Wa,-I.", "-fsyntax-only", *srcs]
                r = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
                assert r.returncode == 0, f"{target} {extra}: {r.stderr[-2000:]}"
