"""Paddle models compiled for x86 at -O2 match Paddle's own outputs (the zoo tolerances: max relative
error and element by element), in both formats.

The models and Paddle's reference outputs come from tests/paddle_models.py (the same cache as
tests/test_paddle_frontend.py, which checks the reference interpreter). One test per model covers
both formats: each format's file is imported, bound to the test input's shape and optimized with
the -O2 pipeline; when the two optimized graphs are the same up to naming (tests/graph_canon.py)
and their constants are byte for byte equal, the generated code is the same too, so the model is
compiled once and that library is checked against both formats' Paddle outputs. Otherwise each
format is compiled on its own. (Weights go to the bundle's side file, weights="bin": the same
kernels, half the disk of weights compiled into the library.)

Bundles are cached under .cache/paddle_x86/<model>-<key>, the key hashing the optimized graph's
canonical form and constants, pdc's and the runtime's sources, the C compiler and the host
target, so an unchanged model is not compiled again; a model's stale bundles are deleted.
"""
from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import paddle_models as pm
import pdc
from graph_canon import canonical
from tolerances import ZOO_ELEMENTWISE, max_rel_error, zoo_tolerance
from pdc.compiler import optimize
from pdc.frontend.paddle import load_paddle
from pdc.ir.errors import PdcError
from pdc.ir.shapes import bind_shapes

pytestmark = pytest.mark.usefixtures("paddle_installed")  # skips without paddle, fails in CI

BUNDLES = os.path.join(os.path.dirname(pm.CACHE), "paddle_x86")
NETWORKS = [n for n in pm.MODELS if not n.startswith("ops_")]
OP_MODELS = [n for n in pm.MODELS if n.startswith("ops_")]

# Known failures outside the Paddle frontend, each with its cause (strict: a fix makes them fail
# here until the entry goes).
XFAIL: dict[str, str] = {}  # model -> why it is expected to fail (none now)


def params(names):
    return [pytest.param(n, marks=pytest.mark.xfail(reason=XFAIL[n], strict=True)) if n in XFAIL else n
            for n in names]


_dirs: dict[str, dict[str, str]] = {}


def folder(name: str, fmt: str) -> str:
    if not _dirs:  # the first call generates what is missing, both formats side by side
        names = {"pir": list(pm.MODELS) + list(pm.CONTROL_FLOW_MODELS) + list(pm.UNSUPPORTED_MODELS),
                 "legacy": list(pm.MODELS) + list(pm.LEGACY_PROGRAMS)}
        with ThreadPoolExecutor(len(pm.FORMATS)) as pool:
            jobs = {f: pool.submit(pm.ensure_models, names[f], f) for f in pm.FORMATS}
            _dirs.update({f: job.result() for f, job in jobs.items()})
    return _dirs[fmt][name]


@functools.lru_cache(maxsize=None)
def toolchain_key() -> str:
    """What the generated code depends on besides the graph: pdc's and the runtime's sources, the C
    compiler, the host target, this file."""
    from pdc.targets import get_target
    from pdc.targets.x86 import c_compiler
    h = hashlib.sha256()
    root = os.path.dirname(os.path.dirname(os.path.abspath(pdc.__file__)))
    files = glob.glob(os.path.join(root, "pdc", "**", "*.*"), recursive=True)  # pdc/runtime included
    for path in sorted(f for f in files if "__pycache__" not in f):
        h.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    cc = c_compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    h.update(f"{cc}|{version}|{get_target('x86').name}|{os.environ.get('CFLAGS', '')}".encode())
    with open(__file__, "rb") as f:  # the compile options below
        h.update(f.read())
    return h.hexdigest()


def graph_key(graph) -> str:
    """The bundle key of an optimized graph: its canonical form, its constants' bytes, the toolchain."""
    form = canonical(graph)
    h = hashlib.sha256(toolchain_key().encode())
    h.update(form.text().encode())
    for c in form.constants:
        h.update(f"{c.dtype}{c.shape}".encode())
        h.update(np.ascontiguousarray(c).tobytes())
    return h.hexdigest()[:16]


def compiled(name: str, graph, shapes: dict, key: str) -> "pdc.module.Module":
    """The bundle of `graph` from the cache, compiled on a miss (under a per-model lock)."""
    out = os.path.join(BUNDLES, f"{name}-{key}")
    with open(os.path.join(BUNDLES, f".lock-{name}"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(out, "manifest.json")):
            pdc.compile(graph, target="x86", out_dir=out, shapes=shapes, opt_level=2, threads=1, weights="bin")
    return pdc.load(out)


def drop_stale(name: str, keys: set) -> None:
    """Deletes the model's bundles of other keys (older sources or models)."""
    with open(os.path.join(BUNDLES, f".lock-{name}"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for old in glob.glob(os.path.join(BUNDLES, f"{name}-*")):
            if old.rsplit("-", 1)[1] not in keys:
                shutil.rmtree(old, ignore_errors=True)


def check(module, io, what: str) -> list[str]:
    """Mismatches between the module's outputs and Paddle's (io.npz), one line each."""
    feeds = {k[3:]: io[k] for k in io.files if k.startswith("in_")}
    outs = list(module.run(feeds).values())
    refs = sorted((k for k in io.files if k.startswith("out_")), key=lambda k: int(k[4:]))
    if len(outs) != len(refs):
        return [f"{what}: {len(outs)} outputs, Paddle has {len(refs)}"]
    problems = []
    for got, key in zip(outs, refs):
        ref = io[key]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            problems.append(f"{what} {key}: {got.dtype}{list(got.shape)}, Paddle {ref.dtype}{list(ref.shape)}")
            continue
        err = max_rel_error(got, ref)
        if err > zoo_tolerance(ref.dtype):
            problems.append(f"{what} {key}: max rel error {err:.3g}")
        elif ZOO_ELEMENTWISE.mismatches(got, ref):
            problems.append(f"{what} {key}: {ZOO_ELEMENTWISE.mismatches(got, ref)}")
    return problems


def run_model(name: str, formats) -> None:
    os.makedirs(BUNDLES, exist_ok=True)
    keys: dict[str, list[str]] = {}  # bundle key -> the formats it serves
    loaded = {}
    for fmt in formats:
        io = np.load(os.path.join(folder(name, fmt), "io.npz"))
        shapes = {k[3:]: io[k].shape for k in io.files if k.startswith("in_")}
        graph = load_paddle(folder(name, fmt))
        loaded[fmt] = (graph, shapes, io)
        keys.setdefault(graph_key(optimize(bind_shapes(graph, shapes), 2)), []).append(fmt)
    drop_stale(name, set(keys))
    problems = []
    for key, fmts in keys.items():
        graph, shapes, _ = loaded[fmts[0]]
        try:
            module = compiled(name, graph, shapes, key)
        except PdcError as e:  # reported with the other format's result
            problems.append(f"{'/'.join(fmts)}: {type(e).__name__}: {e}")
            continue
        for fmt in fmts:
            problems += check(module, loaded[fmt][2], f"{fmt}{' (shared bundle)' if len(fmts) > 1 else ''}")
    assert not problems, f"{name} on x86 vs Paddle:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", params(NETWORKS))
def test_network_on_x86_matches_paddle(name):
    run_model(name, pm.FORMATS)


@pytest.mark.parametrize("name", ["control_flow", *pm.CONTROL_FLOW_MODELS])
def test_pir_control_flow_on_x86_matches_paddle(name):
    """Paddle's if and while, lowered to pdc's if and loop and compiled as C control flow."""
    run_model(name, ["pir"])


@pytest.mark.parametrize("name", params(OP_MODELS + list(pm.LEGACY_PROGRAMS)))
def test_op_models_on_x86_match_paddle(name):
    run_model(name, [f for f in pm.FORMATS if name not in pm.LEGACY_PROGRAMS or f == "legacy"])
