"""Long mutation fuzzing of the ONNX importer and the compiler (the CI tier is tests/test_fuzz_onnx.py):
N fresh mutated models (byte flips, truncation, the structural mutations of the test) each go through
inspect, opt -O2 and compile, and those pdc accepts are built and run beside ONNX Runtime. Models run
one at a time in worker processes, so a crash (a signal) or a hang past the worker's own 30 s alarm
is caught and counted against the model, and the worker replaced.

    python tools/fuzz_onnx.py --models 1000 [--jobs 1] [--seed 7] [--out /tmp/pdc-fuzz]

Prints the count of each outcome (refused, match, accepted-ort-rejects, accepted-not-run,
internal-error, hang, crash, mismatch) and writes out/results.jsonl; every model stays in out/models/
for reproduction (`python tools/fuzz_onnx.py --replay out/models/0042.onnx`). Exit status 1 when
there is an internal error, a hang, a crash or a mismatch.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

HARD_TIMEOUT_S = 90  # past the worker's own alarm (30 s a stage): stuck outside Python, counted as a hang
BUGS = ("internal-error", "hang", "crash", "mismatch")


def generate(n: int, seed: int, folder: Path) -> list[tuple[Path, list[str]]]:
    """n mutated models drawn by the test's strategy, written as folder/NNNN.onnx."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed
    from test_fuzz_onnx import hostile_model, write_data_file

    folder.mkdir(parents=True, exist_ok=True)
    write_data_file(str(folder))
    drawn = []

    @with_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(hostile_model())
    def collect(example):
        if len(drawn) < n:
            drawn.append(example)

    collect()
    out = []
    for i, (data, done) in enumerate(drawn):
        path = folder / f"{i:04d}.onnx"
        path.write_bytes(data)
        out.append((path, done))
    return out


def worker(max_tensor_bytes: int) -> int:
    """Reads model paths from stdin; per model, prints stage lines then one result line (JSON)."""
    from test_fuzz_onnx import check_model
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else writes to stdout (a compiler, a library) goes to stderr
    scratch = tempfile.mkdtemp(prefix="pdc-fuzz-")
    for n, line in enumerate(sys.stdin):
        path = line.rstrip("\n")
        say = lambda stage: print(json.dumps({"stage": stage}), file=answer)  # noqa: E731
        bundle = os.path.join(scratch, f"b{n}")  # a fresh path: a process keeps the first library of a path
        outcome, detail = check_model(path, bundle, compare=True, stage=say, max_tensor_bytes=max_tensor_bytes)
        shutil.rmtree(bundle, ignore_errors=True)
        print(json.dumps({"outcome": outcome, "detail": detail}), file=answer)
    return 0


class Worker:
    def __init__(self, max_tensor_bytes: int):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--max-tensor-bytes", str(max_tensor_bytes)], cwd=ROOT, text=True, bufsize=1,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pending = b""

    def check(self, path: Path) -> dict:
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        stage, t0 = "start", time.monotonic()
        while True:
            line = self._line(t0 + HARD_TIMEOUT_S)
            if line is None:
                self.kill()
                return {"outcome": "hang", "detail": f"no answer in {HARD_TIMEOUT_S} s (stage {stage})"}
            if not line:
                code = self.proc.wait()
                return {"outcome": "crash", "detail": f"worker died with status {code} (stage {stage})",
                        "stage": stage}
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "stage" in msg:
                stage = msg["stage"]
                continue
            msg["seconds"] = round(time.monotonic() - t0, 2)
            return msg

    def _line(self, deadline: float):
        """The worker's next line; '' when it died, None at the deadline. Reads the pipe itself:
        a buffered reader would hide a second line from select()."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode(errors="replace") + "\n"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run(models: list[tuple[Path, list[str]]], jobs: int, results_path: Path, max_tensor_bytes: int) -> Counter:
    """Checks every model, `jobs` workers at a time (a worker that crashed or hung is replaced)."""
    import concurrent.futures
    import threading
    counts: Counter = Counter()
    lock = threading.Lock()
    local = threading.local()

    def one(item):
        path, done = item
        if getattr(local, "worker", None) is None or local.worker.proc.poll() is not None:
            local.worker = Worker(max_tensor_bytes)
        result = local.worker.check(path)
        if result["outcome"] in ("crash", "hang"):
            local.worker.kill()
            local.worker = None
        result.update(model=str(path), mutations=done)
        with lock:
            counts[result["outcome"]] += 1
            with open(results_path, "a") as f:
                f.write(json.dumps(result) + "\n")
            if result["outcome"] in BUGS:
                print(f"{path.name}: {result['outcome']}: {result['detail'].splitlines()[0][:300]}", flush=True)
            if sum(counts.values()) % 50 == 0:
                print(f"... {sum(counts.values())} models: {dict(counts)}", flush=True)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, models))
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=1000, help="how many mutated models (default 1000)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--seed", type=int, default=None, help="the draw's seed (default: from the clock)")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "pdc-fuzz"),
                    help="folder for the models and results.jsonl (default: TMPDIR/pdc-fuzz)")
    ap.add_argument("--replay", help="check one model in this process and print its outcome")
    ap.add_argument("--max-tensor-bytes", default="16G",
                    help="pdc's size limit while compiling (default 16G, pdc's own); models run only within 4 MiB")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from pdc.ir.limits import parse_byte_size
    limit = parse_byte_size(args.max_tensor_bytes)
    if args.worker:
        return worker(limit)
    if args.replay:
        from test_fuzz_onnx import check_model
        bundle = tempfile.mkdtemp(prefix="pdc-fuzz-")
        outcome, detail = check_model(args.replay, os.path.join(bundle, "b"), compare=True, max_tensor_bytes=limit)
        print(f"{outcome}: {detail}")
        return int(outcome in BUGS)
    seed = args.seed if args.seed is not None else int(time.time())
    out = Path(args.out)
    results = out / "results.jsonl"
    results.unlink(missing_ok=True)
    t0 = time.monotonic()
    models = generate(args.models, seed, out / "models")
    print(f"{len(models)} models drawn (seed {seed}) in {time.monotonic() - t0:.0f} s", flush=True)
    counts = run(models, args.jobs, results, limit)
    print(f"fuzz: {len(models)} models in {time.monotonic() - t0:.0f} s (seed {seed}): "
          + ", ".join(f"{k} {counts[k]}" for k in ("refused", "match", "accepted-ort-rejects", "accepted-not-run",
                                                   "internal-error", "hang", "crash", "mismatch")))
    return int(any(counts[k] for k in BUGS))


if __name__ == "__main__":
    sys.exit(main())
