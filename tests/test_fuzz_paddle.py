"""Mutation fuzzing of the Paddle importers, in the style of tests/test_fuzz_onnx.py: LeNet exported by
Paddle (tests/paddle_models.py) as PIR JSON and as a legacy ProgramDesc, with values anywhere in the
JSON tree replaced by hostile ones (huge, negative and 4000-digit integers, wrong types, hostile
strings), keys and list items dropped or repeated, or the file's bytes flipped or truncated. Each
model goes through inspect, opt -O2 and compile (no C build) and must succeed or raise a PdcError.

Time-bounded: PDC_FUZZ_PADDLE_SECONDS (default 20) and PDC_FUZZ_EXAMPLES (default 2000),
derandomized unless PDC_FUZZ_RANDOM is set."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paddle_models as pm
from test_fuzz_onnx import BUGS, REFUSED, check_model

SECONDS = float(os.environ.get("PDC_FUZZ_PADDLE_SECONDS", "20"))
EXAMPLES = int(os.environ.get("PDC_FUZZ_EXAMPLES", "2000"))
RANDOM = bool(os.environ.get("PDC_FUZZ_RANDOM"))
MODEL_FILE = {"pir": "inference.json", "legacy": "inference.pdmodel"}

HOSTILE = [None, True, -1, 0, 3, 2 ** 31, 2 ** 40, -(2 ** 63), 2 ** 64, 10 ** 4000, 1.5, float("nan"), "",
           "x" * 1000, "../../etc/passwd", "*/ int x; /*", "\u00e9\n", [], [[]], {}, {"#": "0.t_f32"}, [-1, -1]]


def _paths(tree):
    """Every (container, key) in a JSON tree, so a draw can replace any value."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield tree, key
        yield from _paths(value)


def mutate_json(doc, draw) -> None:
    spots = list(_paths(doc))
    for _ in range(draw(st.integers(1, 3))):
        container, key = spots[draw(st.integers(0, len(spots) - 1))]
        if key not in (container if isinstance(container, dict) else range(len(container))):
            continue  # removed by an earlier mutation of this draw
        kind = draw(st.sampled_from(["replace", "replace", "replace", "drop", "repeat"]))
        if kind == "replace":
            container[key] = draw(st.sampled_from(HOSTILE))
        elif kind == "drop":
            del container[key]
        elif isinstance(container, list):
            container.insert(key, container[key])
        else:
            container[key] = [container[key], container[key]]


def mutate_bytes(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate"]))
    if kind == "truncate" or not data:
        return data[: draw(st.integers(0, len(data)))]
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    return bytes(b)


@st.composite
def hostile_paddle_model(draw, seeds: dict) -> tuple[str, bytes, str]:
    """(format, model file bytes, what was done)."""
    fmt = draw(st.sampled_from(sorted(seeds)))
    data = seeds[fmt]
    if fmt == "pir" and draw(st.integers(0, 3)):
        doc = json.loads(data)
        mutate_json(doc, draw)
        return fmt, json.dumps(doc).encode(), "json"
    return fmt, mutate_bytes(data, draw), "bytes"


@pytest.fixture(scope="module")
def lenet(paddle_installed) -> dict:
    return {fmt: pm.ensure_models(["lenet"], fmt)["lenet"] for fmt in pm.FORMATS}


def test_hostile_paddle_models_never_cause_internal_errors(lenet, tmp_path):
    seeds = {fmt: open(os.path.join(folder, MODEL_FILE[fmt]), "rb").read() for fmt, folder in lenet.items()}
    deadline = time.monotonic() + SECONDS
    counts: dict = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck))
    @given(hostile_paddle_model(seeds))
    def check(example):
        if time.monotonic() > deadline:
            return
        fmt, data, done = example
        counts["n"] = counts.get("n", 0) + 1
        folder = tmp_path / f"m{counts['n']}"
        folder.mkdir()
        shutil.copy(os.path.join(lenet[fmt], "inference.pdiparams"), folder)
        (folder / MODEL_FILE[fmt]).write_bytes(data)
        outcome, detail = check_model(str(folder / MODEL_FILE[fmt]), str(folder / "bundle"), compare=False)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in BUGS:
            kept = tmp_path / f"failing-{fmt}"
            shutil.copytree(folder, kept, dirs_exist_ok=True)
            pytest.fail(f"{fmt} {done}: {outcome}: {detail} (model kept in {kept})")
        shutil.rmtree(folder, ignore_errors=True)

    check()
    checked = counts.pop("n", 0)
    print(f"paddle fuzz: {checked} models: {counts}")
    assert checked > 0 and counts.get(REFUSED, 0) > 0
