"""Shared pytest setup: the `zoo` marker and fixture (see tests/zoo.py), what a missing tool does,
and the CI guard.

A test whose tool or package is missing skips on a developer's machine and fails in CI (CI=1, or
PDC_REQUIRE_ALL=1): CI installs everything (`make test`), so there a skip would hide a test that
never ran. Besides each test asking for its tools (`require_module`, `missing_dependency`), a guard
turns any other skip in CI into a failure, except the ones for hardware the machine lacks
(a GPU, a CPU extension), which no package install can fix.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/ helpers (zoo, tolerances) under any --import-mode
    sys.path.insert(0, str(Path(__file__).parent))

import zoo as _zoo  # noqa: E402

# compiles take the heuristics' kernel paths, whatever `pdc tune` left in this machine's database
# (tests/test_tune.py names its own files)
os.environ["PDC_TUNING_DB"] = ""

# skip reasons CI accepts: hardware this machine does not have
HARDWARE_SKIP = re.compile(r"\bGPU\b|\bCUDA\b|a CPU with", re.IGNORECASE)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "zoo: uses a Paddle-generated zoo model (needs paddlepaddle + paddle2onnx; generated once and "
                   "cached in .cache/zoo, see tools/make_zoo.py)")
    config.addinivalue_line("markers", "gpu: needs a GPU (the one thing CI may skip)")


def in_ci() -> bool:
    """CI (or a developer asking for CI's rules): every tool is installed, so nothing may skip."""
    return bool(os.environ.get("CI") or os.environ.get("PDC_REQUIRE_ALL"))


def zoo_required() -> bool:
    """In CI (or with PDC_ZOO_REQUIRED=1) a zoo model that cannot be generated fails the test instead of skipping."""
    return bool(os.environ.get("PDC_ZOO_REQUIRED") or in_ci())


def missing_dependency(message: str) -> None:
    """A test cannot run because a package or tool is missing: skip here, fail in CI."""
    if in_ci():
        pytest.fail(f"{message} (CI installs it: make test-deps)", pytrace=False)
    pytest.skip(message)


def require_cpu(target: str) -> None:
    """Skips (CI too: hardware) an x86 target whose instruction sets this CPU lacks, such as x86-avx512."""
    from pdc.targets import get_target
    lacking = getattr(get_target(target), "lacking_isa", lambda: [])()
    if lacking:
        pytest.skip(f"{target}: needs a CPU with {', '.join(lacking)}")


def require_module(*names: str) -> None:
    """Skips (fails in CI) unless every named Python package can be imported."""
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        missing_dependency(f"{' and '.join(missing)} not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip is a failure, unless the test needs a GPU or the reason is missing hardware."""
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail") or item.get_closest_marker("gpu"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if HARDWARE_SKIP.search(reason):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, where every dependency is installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (pytest.importorskip, allow_module_level)."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not HARDWARE_SKIP.search(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where every dependency is installed: {reason}"


@pytest.fixture(scope="session")
def paddle_installed():
    """For tests that generate Paddle models (tests/paddle_models.py): skips, or fails in CI, without paddle."""
    require_module("paddle")


@pytest.fixture(scope="session")
def paddle2onnx_installed():
    """For tests that export Paddle models to ONNX: skips, or fails in CI, without paddle and paddle2onnx."""
    require_module("paddle", "paddle2onnx")


@pytest.fixture(scope="session")
def opencl_platform():
    """For tests that run OpenCL bundles (PoCL here, which `make test` installs): skips, or fails in
    CI, without an OpenCL platform and the headers to build against."""
    from pdc.targets import get_target
    target = get_target("opencl")
    problems = target.build_problems() + target.run_problems()
    if problems:
        missing_dependency("; ".join(problems))


@pytest.fixture(scope="session")
def cuda_toolkit():
    """For tests that build CUDA bundles (nvcc and the CUDA runtime library; no GPU needed): skips,
    or fails in CI, without them."""
    from pdc.targets import get_target
    problems = get_target("cuda-sm80").build_problems()
    if problems:
        missing_dependency("; ".join(problems))


@pytest.fixture(scope="session")
def cuda_gpu(cuda_toolkit):
    """For tests that run CUDA bundles (marked gpu): skips where the machine has no NVIDIA GPU and
    driver, CI included."""
    from pdc.targets.cuda import host_arch
    if not host_arch():
        pytest.skip("no NVIDIA GPU on this machine")
    return host_arch()


@pytest.fixture(scope="module")
def digits(zoo):
    """The digits CNN (float graph, int8 graph, held-back images, labels), quantized on 100 images of the
    training split (tests/quantize/test_ptq.py's split)."""
    from pdc.frontend import load_model
    from pdc.quantize import quantize_model
    from quantize.test_ptq import digits_split
    g = load_model(zoo("digits_cnn"))
    x_tr, x_te, y_te = digits_split()
    qg, _ = quantize_model(g, x_tr[:100][:, None])
    return g, qg, x_te, y_te


@pytest.fixture(scope="session")
def zoo():
    """`zoo(name)` -> path of the zoo model's model.onnx; skips when Paddle is absent (fails in CI)."""
    def get(name: str) -> str:
        try:
            return _zoo.zoo_model(name)
        except _zoo.ZooError as e:
            error = e
        if isinstance(error, _zoo.ZooUnavailable) and not zoo_required():
            pytest.skip(str(error))
        pytest.fail(str(error), pytrace=False)
    return get
