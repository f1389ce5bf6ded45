"""pdc tune: measures each layer's kernel paths on this machine and keeps the fastest in the tuning
database (pdc/tuning.py), which pdc compile reads.

The model is compiled once with the heuristics' paths, then once per path of every kernel family
its kernels use, each path forced (PDC_FORCE_PATH) where it can compute a layer, and once for one
thread (a small layer may lose more to the thread pool's dispatch than it gains). Profiling builds of
all the variants (pdc/bench.py) are timed in rounds, every variant once per round, and each kernel's
time is its fastest round: a machine's slow spells (another process, a virtual machine's neighbours)
only ever slow a round down, and falling in one variant's round would otherwise decide for it. A
layer keeps the heuristics' path unless another one is faster by more than MARGIN. Kernels timed in
separate builds need not add up, so the whole model decides last: compiled with every tuned choice,
with the tuned paths only (no one-thread layers) and with the heuristics', timed in turns, the
fastest set is what the database keeps (the heuristics' unless a set is MARGIN / 2 faster).

Measured on the calling machine, so x86 targets only (an ARM bundle runs under qemu here, where
instruction counts, not the device's time, are what can be measured).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack, contextmanager
from typing import Callable, Optional

from .ir.errors import PdcError

MARGIN = 0.05  # a path replaces the heuristics' choice only when this much faster
SERIAL = "one thread"
KEPT = {"all": "every tuned choice", "paths": "the tuned paths", "none": "the heuristics"}  # the variant compiled for one thread: each kernel on the calling thread alone


@contextmanager
def _forced(spec: Optional[str], db: str = ""):
    """PDC_FORCE_PATH=spec and PDC_TUNING_DB=db (default: none) for the block."""
    from .codegen.kernels.paths import FORCE_ENV
    from .tuning import DB_ENV
    saved = {k: os.environ.get(k) for k in (FORCE_ENV, DB_ENV)}
    os.environ[DB_ENV] = db
    if spec:
        os.environ[FORCE_ENV] = spec
    else:
        os.environ.pop(FORCE_ENV, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def tune(model, target: str = "x86", threads: Optional[int] = None, db: Optional[str] = None, rounds: int = 5,
         runs: int = 20, say: Callable[[str], None] = print) -> dict:
    """Tunes `model` (a path or an IR graph) for `target`; returns {"layers": [...], "db": path,
    "variants": n, "kept": "all" | "paths" | "none", "whole_ms": {set: ms}}. Each layer row: index,
    nodes, key, the heuristics' path, its candidate, the kept set's choice and the fastest
    microseconds of every choice tried."""
    from .bench import kernel_us, profiling_build
    from .codegen.kernels.paths import FAMILIES
    from .compiler import compile_details
    from .inputs import random_inputs
    from .module import Module
    from .targets import get_target
    from .tuning import db_path, record
    if rounds < 1 or runs < 1:
        raise PdcError(f"--rounds {rounds} --runs {runs}: at least one of each")
    tgt = get_target(target)
    if not tgt.name.startswith("x86"):
        raise PdcError(f"pdc tune times kernels on this machine: x86 targets only, not {tgt.name} (an ARM bundle "
                       "runs under qemu here, which measures nothing of the device's time)")
    db = db or db_path()
    if not db:
        raise PdcError("tuning is off (PDC_TUNING_DB is empty): name a database file with --db")
    with tempfile.TemporaryDirectory(prefix="pdc-tune-") as tmp, ExitStack() as stack:
        folders = {}

        def build(spec: Optional[str], label: str, n: Optional[int]) -> None:
            folders[label] = os.path.join(tmp, f"v{len(folders)}")
            with _forced(spec):
                compile_details(model, folders[label], target=tgt.name, threads=n)

        build(None, "heuristics", threads)
        base = Module(folders["heuristics"]).manifest
        families = sorted({k["path"].split("/")[0] for k in base["kernels"] if k.get("path")})
        specs = [f"{f}={p}" for f in families for p in FAMILIES.get(f, ())]
        say(f"pdc tune: {len(base['kernels'])} kernels on {tgt.name} ({base['threads']} threads); "
            f"{len(specs)} forced paths of {', '.join(families) or 'no family with paths'}"
            + (", and every kernel on one thread" if base["threads"] > 1 else ""))
        for spec in specs:
            build(spec, spec, threads)
        if base["threads"] > 1:
            build(None, SERIAL, 1)
        variants = {}
        for label, folder in folders.items():
            manifest = Module(folder).manifest
            if [k["op"] for k in manifest["kernels"]] == [k["op"] for k in base["kernels"]]:
                variants[label] = manifest
        profiled = {label: stack.enter_context(profiling_build(folders[label])) for label in variants}
        feeds = random_inputs(Module(folders["heuristics"]).signature(), 0)
        best = {label: [float("inf")] * len(base["kernels"]) for label in profiled}
        for r in range(rounds):
            say(f"pdc tune: round {r + 1} of {rounds} ({len(profiled)} variants x {runs} runs)")
            for label, (module, _, ns) in profiled.items():
                best[label] = [min(a, b) for a, b in zip(best[label], kernel_us(module, ns, feeds, runs, 2))]
    layers, entries = [], {}
    for i, k in enumerate(base["kernels"]):
        mine = k.get("path") or "-"
        family = mine.split("/")[0]
        times = {mine: best["heuristics"][i]}  # choice -> microseconds; "@1t": on the calling thread alone
        for label, manifest in variants.items():
            p = manifest["kernels"][i].get("path") or "-"
            choice = f"{p}@1t" if label == SERIAL else p
            if label != "heuristics" and p.split("/")[0] == family and choice not in times:
                times[choice] = best[label][i]
        fastest = min(times, key=times.get)
        chosen = fastest if times[fastest] < (1 - MARGIN) * times[mine] else mine
        if len(times) < 2 or times[mine] == 0:
            continue
        path, serial = chosen.removesuffix("@1t"), chosen.endswith("@1t")
        layers.append({"index": i, "nodes": k["source_nodes"], "key": k["tuning_key"], "heuristic": mine,
                       "candidate": chosen, "us": times})
        entries[k["tuning_key"]] = {"paths": {family: path.split("/", 1)[1]} if "/" in path else {},
                                    **({"threads": 1} if serial else {}),
                                    "us": {p: round(t, 2) for p, t in times.items()}}
    kept, whole = _whole_model(model, tgt.name, threads, entries, rounds, say)
    for r in layers:  # what the kept set says for each layer
        c = r["candidate"]
        r["chosen"] = {"all": c, "paths": c.removesuffix("@1t"), "none": r["heuristic"]}[kept]
    record(_subset(entries, kept), db)
    return {"layers": layers, "db": db, "variants": len(variants), "kept": kept, "whole_ms": whole}


def _subset(entries: dict, kept: str) -> dict:
    """The entries of a kept set: "all" of them, their "paths" without the one-thread choices, "none"."""
    if kept == "all":
        return entries
    if kept == "paths":
        return {key: {k: v for k, v in e.items() if k != "threads"} for key, e in entries.items()}
    return {}


def _whole_model(model, target: str, threads: Optional[int], entries: dict, rounds: int, say) -> tuple[str, dict]:
    """Which set of the layers' choices to keep ("all", "paths", "none"), by the whole model's time:
    kernels timed in separate builds need not add up (a kernel timed on one thread ran beside no
    other work; caches hold other data in another build), so the sets are compiled and their runs
    timed in turns, each its fastest block median over `rounds` rounds. Returns the set and the ms."""
    from .bench import fastest_median
    from .compiler import compile_details
    from .inputs import random_inputs
    from .module import Module
    from .tuning import record
    modules = {}
    with tempfile.TemporaryDirectory(prefix="pdc-tune-") as tmp:
        for kept in ("none", "paths", "all"):
            db = os.path.join(tmp, f"{kept}.json")
            record(_subset(entries, kept), db)
            with _forced(None, db):
                compile_details(model, os.path.join(tmp, kept), target=target, threads=threads)
            modules[kept] = Module(os.path.join(tmp, kept))
        feeds = random_inputs(modules["none"].signature(), 0)
        say(f"pdc tune: the whole model with the heuristics', the tuned paths and all tuned choices, "
            f"{rounds} rounds")
        ms = {kept: float("inf") for kept in modules}
        for _ in range(rounds):
            for kept, m in modules.items():
                ms[kept] = min(ms[kept], fastest_median(lambda: m.run(feeds), blocks=2, block_seconds=0.1) * 1e3)
    best = min(ms, key=ms.get)
    return (best if ms[best] < (1 - MARGIN / 2) * ms["none"] else "none"), ms


def tune_lines(result: dict) -> list[str]:
    rows = result["layers"]
    changed = [r for r in rows if r["chosen"] != r["heuristic"]]
    before = sum(r["us"][r["heuristic"]] for r in rows)
    after = sum(r["us"][r["chosen"]] for r in rows)
    lines = [f"{'#':>4}  {'heuristic':<24}{'us':>9}  {'tuned':<24}{'us':>9}  nodes"]
    for r in changed:
        lines.append(f"{r['index']:>4}  {r['heuristic']:<24}{r['us'][r['heuristic']]:>9.1f}  {r['chosen']:<24}"
                     f"{r['us'][r['chosen']]:>9.1f}  {', '.join(r['nodes'])[:40]}")
    ms = result["whole_ms"]
    lines.append(f"pdc tune: {len(changed)} of {len(rows)} layers take another path; their kernels "
                 f"{before / 1e3:.3f} -> {after / 1e3:.3f} ms (profiling builds); the whole model "
                 f"{ms['none']:.3f} ms with the heuristics, {ms['paths']:.3f} with the tuned paths, {ms['all']:.3f} "
                 f"with every tuned choice: kept {KEPT[result['kept']]}; wrote {result['db']}")
    return lines
