"""Shared pytest setup. The model zoo part: the `zoo` marker and the `zoo` fixture (see tests/zoo.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # tests/ helpers (zoo, tolerances) under any --import-mode
    sys.path.insert(0, str(Path(__file__).parent))

import zoo as _zoo  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "zoo: uses a Paddle-generated zoo model (needs paddlepaddle + paddle2onnx; generated once and "
                   "cached in .cache/zoo, see tools/make_zoo.py)")


def zoo_required() -> bool:
    """In CI (or with PDC_ZOO_REQUIRED=1) a zoo model that cannot be generated fails the test instead of skipping."""
    return bool(os.environ.get("PDC_ZOO_REQUIRED") or os.environ.get("CI"))


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
