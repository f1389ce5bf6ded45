"""Generates (and optionally checks) the whole model zoo cache used by the tests.

    python tools/make_zoo.py                 # generate what the cache lacks (CI: once before pytest -n 2)
    python tools/make_zoo.py --check         # also run pdc vs onnxruntime on every model
    python tools/make_zoo.py resnet18 lstm   # only these
    python tools/make_zoo.py --prune         # delete cache entries no current model uses

Exits 1 when a model could not be generated (or, with --check, does not match).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import zoo  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"zoo models (default: all): {', '.join(zoo.ZOO_MODELS)}")
    ap.add_argument("--check", action="store_true", help="compare pdc's reference interpreter with onnxruntime")
    ap.add_argument("--prune", action="store_true", help="remove cache entries of old keys")
    args = ap.parse_args()
    names = args.names or zoo.ZOO_MODELS
    for n in names:
        if n not in zoo.SPECS_BY_NAME:
            print(f"error: unknown zoo model '{n}' (known: {', '.join(zoo.ZOO_MODELS)})", file=sys.stderr)
            return 2
    if args.prune:
        for p in zoo.prune():
            print(f"removed {p}")

    cached = {n for n in names if zoo.model_meta(n) is not None}
    t0 = time.perf_counter()
    results = zoo.ensure(names)
    print(f"zoo cache: {zoo.cache_dir()}  ({time.perf_counter() - t0:.1f}s)")
    failed = False
    for n in names:
        r = results[n]
        if isinstance(r, zoo.ZooError):
            failed = True
            print(f"  {n:30s} FAILED  {str(r).splitlines()[0]}")
            continue
        meta = zoo.model_meta(n)
        how = "cached" if n in cached else "generated"
        line = f"  {n:30s} {how:9s} gen {meta['seconds']:6.2f}s"
        if args.check:
            ok, status = check(str(r))
            failed |= not ok
            line += f"  {status}"
        print(line)
    return 1 if failed else 0


def check(path: str) -> tuple[bool, str]:
    from pdc.ir.errors import PdcError

    t0 = time.perf_counter()
    try:
        rows = zoo.compare(path)
    except PdcError as e:
        return False, f"FAIL {type(e).__name__}: {str(e).replace(path + ': ', '')}"
    except Exception as e:  # a crash inside pdc is a bug worth seeing, not a reason to stop the table
        return False, f"FAIL {type(e).__name__}: {e}"
    worst = max(rows, key=lambda r: r["rel_error"])
    ok = all(r["rel_error"] <= r["tolerance"] and r["pdc_shape"] == r["shape"] for r in rows)
    return ok, f"{'pass' if ok else 'FAIL'} max rel error {worst['rel_error']:.2e} ({time.perf_counter() - t0:.1f}s)"


if __name__ == "__main__":
    sys.exit(main())
