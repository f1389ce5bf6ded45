"""Concurrent runs of one model: `Module.run` from many Python threads, two `NAME_ctx` instances in
one C program, and the runtime's thread pool called from several threads (and from inside its own
tasks). Every output must equal the single-threaded one, bit for bit.

The model is small (a conv large enough for the pool to split it, then relu, pool, matmul) so a
thousand runs per thread take a fraction of a second; bundles compiled for 1 and 2 threads cover
the serial path and the pool.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pdc
from pdc.build import runtime_sources, sources
from pdc.compiler import compile_bundle
from pdc.targets.x86 import c_compiler

THREADS = 8
RUNS = 1000
SAMPLES = 8  # distinct inputs, so runs that leaked into each other would show
SHAPE = (1, 8, 32, 32)
# the bundle's own flags (manifest "cflags") come first: the same code, compiled the same way, as the
# module the program's outputs are compared with bit for bit
CFLAGS = ["-I.", "-Iruntime", "-DPDC_THREADS=1", "-Wa,-I."]


def conv_model():
    """x -> Conv(8 -> 16, 3x3; ~1.2 M MACs, above the pool's threshold) -> Relu -> MaxPool -> MatMul."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((16 * 16 * 16, 10)) * 0.05).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w2"], ["y"])]
    g = helper.make_graph(nodes, "conv_model", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w1, w2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def samples() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(SAMPLES)]


@pytest.fixture(scope="module", params=[1, 2], ids=["threads1", "threads2"])
def module(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"net{request.param}") / "bundle"
    return pdc.compile(conv_model(), out_dir=str(folder), name="net", threads=request.param, opt_level=1)


def run_concurrently(worker, count: int) -> None:
    """Runs worker(k) on `count` threads started together; re-raises the first failure."""
    errors = []
    start = threading.Barrier(count)

    def guarded(k):
        try:
            start.wait()
            worker(k)
        except BaseException as e:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ---- Python: one Module, many threads ---------------------------------------------------------------
def test_module_run_from_eight_threads_equals_single_threaded(module):
    xs = samples()
    want = [module.run({"x": x})["y"] for x in xs]
    wrong = [0] * THREADS

    def worker(k):
        for i in range(RUNS):
            j = (k + i) % SAMPLES
            if not np.array_equal(module.run({"x": xs[j]})["y"], want[j]):
                wrong[k] += 1

    run_concurrently(worker, THREADS)
    assert sum(wrong) == 0, f"{sum(wrong)} of {THREADS * RUNS} concurrent runs differ from the single-threaded ones"
    assert 1 <= module._arenas.made <= THREADS + 1  # arenas are reused, one per overlapping run at most


def test_module_threads_bundle_matches_serial_bundle(tmp_path):
    """The pool changes who computes, not what: 1- and 2-thread bundles agree, run concurrently."""
    serial = pdc.compile(conv_model(), out_dir=str(tmp_path / "a"), name="net", threads=1, opt_level=1)
    pooled = pdc.compile(conv_model(), out_dir=str(tmp_path / "b"), name="net", threads=2, opt_level=1)
    xs = samples()
    got = {}

    def worker(k):
        mod = (serial, pooled)[k % 2]
        got[k] = [mod.run({"x": x})["y"] for x in xs for _ in range(20)]

    run_concurrently(worker, 4)
    for k in range(4):
        np.testing.assert_allclose(got[k], got[0], rtol=1e-5, atol=1e-6)


# ---- C: two contexts in one program -----------------------------------------------------------------
TWO_INSTANCES_C = r"""
/* Two instances of net (one context each) run concurrently from two threads, RUNS runs each;
 * every output is compared with the single-threaded result of its input. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net.h"

#define SAMPLES %(samples)d
#define RUNS %(runs)d
#define IN_FLOATS (NET_INPUT0_BYTES / 4)
#define OUT_FLOATS (NET_OUTPUT0_BYTES / 4)

static float inputs[SAMPLES][IN_FLOATS];
static float want[SAMPLES][OUT_FLOATS];

typedef struct { net_ctx ctx; int first; long wrong; pdc_status status; } job;

static void *alloc64(size_t n) { return aligned_alloc(64, (n + 63) / 64 * 64 + 64); }

static pdc_status run_one(const net_ctx *ctx, int s, float *out) {
    const void *in[1] = {inputs[s]};
    void *outs[1] = {out};
    return net_run_ctx(ctx, in, outs);
}

static void *instance(void *arg) {
    job *j = (job *)arg;
    float out[OUT_FLOATS];
    for (int r = 0; r < RUNS && j->status == PDC_OK; r++) {
        const int s = (j->first + r) %% SAMPLES;
        memset(out, 0xff, sizeof out);
        j->status = run_one(&j->ctx, s, out);
        j->wrong += memcmp(out, want[s], sizeof out) != 0;
    }
    return 0;
}

int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(inputs, sizeof inputs, 1, f) != 1) { fprintf(stderr, "cannot read %%s\n", argv[1]); return 2; }
    fclose(f);
    pdc_status s = net_init(0, 0);
    job jobs[2];
    for (int i = 0; i < 2 && s == PDC_OK; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].first = i;
        s = net_ctx_init(&jobs[i].ctx, alloc64(NET_ARENA_BYTES), NET_ARENA_BYTES);
    }
    for (int k = 0; k < SAMPLES && s == PDC_OK; k++) s = run_one(&jobs[0].ctx, k, want[k]);  /* single-threaded */
    if (s != PDC_OK) { fprintf(stderr, "net: %%s\n", pdc_status_string(s)); return 1; }
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], 0, instance, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], 0);
    net_shutdown();
    f = fopen(argv[2], "wb");
    fwrite(want, sizeof want, 1, f);
    fclose(f);
    for (int i = 0; i < 2; i++) {
        printf("instance %%d: %%ld of %%d runs differ (%%s)\n", i, jobs[i].wrong, RUNS,
               pdc_status_string(jobs[i].status));
        if (jobs[i].wrong || jobs[i].status != PDC_OK) return 1;
    }
    return 0;
}
"""


def build_program(folder, source: str, extra=()) -> str:
    with open(folder / "manifest.json") as f:
        manifest = json.load(f)
    kernel_files = sorted(p.name for p in folder.glob("net_kernels_*.c"))
    (folder / "two_instances.c").write_text(source)
    cmd = [c_compiler(), *manifest["cflags"], *CFLAGS, *extra, *sources(manifest["name"], kernel_files), "two_instances.c",
           "-o", "two_instances", "-lpthread", "-lm"]
    r = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return str(folder / "two_instances")


def run_two_instances(tmp_path, threads: int, runs: int, extra=(), env=None):
    folder = tmp_path / "bundle"
    compile_bundle(conv_model(), str(folder), name="net", threads=threads, opt_level=1, build=False)
    exe = build_program(folder, TWO_INSTANCES_C % {"samples": SAMPLES, "runs": runs}, extra)
    xs = samples()
    (tmp_path / "in.bin").write_bytes(b"".join(x.tobytes() for x in xs))
    r = subprocess.run([exe, str(tmp_path / "in.bin"), str(tmp_path / "want.bin")], capture_output=True,
                       text=True, timeout=300, env=env)
    return r, xs, np.frombuffer((tmp_path / "want.bin").read_bytes(), np.float32).reshape(SAMPLES, 1, 10)


@pytest.mark.parametrize("threads", [1, 2])
def test_two_instances_in_one_c_program(tmp_path, threads):
    r, xs, want = run_two_instances(tmp_path, threads, RUNS)
    assert r.returncode == 0, r.stdout + r.stderr
    # the program's single-threaded reference is the Python module's output
    mod = pdc.compile(conv_model(), out_dir=str(tmp_path / "py"), name="net", threads=threads, opt_level=1)
    for x, w in zip(xs, want):
        np.testing.assert_array_equal(mod.run({"x": x})["y"], w)


def test_two_instances_under_thread_sanitizer(tmp_path):
    """No data race in the pool or the generated code while two contexts run (ThreadSanitizer)."""
    probe = subprocess.run([c_compiler(), "-fsanitize=thread", "-x", "c", "-", "-o", str(tmp_path / "probe")],
                           input="int main(void) { return 0; }", capture_output=True, text=True)
    if probe.returncode != 0 or subprocess.run([str(tmp_path / "probe")]).returncode != 0:
        pytest.skip("the C compiler cannot build or run ThreadSanitizer programs")
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1")
    r, _, _ = run_two_instances(tmp_path, 2, 100, extra=("-fsanitize=thread", "-g"), env=env)
    assert r.returncode == 0 and "ThreadSanitizer" not in r.stderr, r.stdout + r.stderr[-4000:]


# ---- the C context API ------------------------------------------------------------------------------
class Ctx(ctypes.Structure):
    _fields_ = [("arena", ctypes.c_void_p), ("arena_bytes", ctypes.c_size_t)]


def test_ctx_init_checks_the_arena(tmp_path):
    folder = tmp_path / "bundle"
    mod = pdc.compile(conv_model(), out_dir=str(folder), name="net", threads=1, opt_level=1)
    lib = ctypes.CDLL(str(folder / "libnet.so"))
    init, run = lib.net_ctx_init, lib.net_run_ctx
    init.restype = run.restype = ctypes.c_int
    init.argtypes = [ctypes.POINTER(Ctx), ctypes.c_void_p, ctypes.c_size_t]
    run.argtypes = [ctypes.POINTER(Ctx), ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
    need = mod.manifest["arena_bytes"]
    buf = np.zeros(need + 128, np.uint8)
    arena = buf.ctypes.data + (-buf.ctypes.data) % 64
    ctx = Ctx()
    assert init(None, arena, need) == 1  # PDC_ERR_NULL_ARGUMENT
    assert init(ctypes.byref(ctx), None, need) == 1
    assert init(ctypes.byref(ctx), arena + 8, need) == 2  # PDC_ERR_MISALIGNED
    assert init(ctypes.byref(ctx), arena, need - 1) == 7  # PDC_ERR_ARENA_SIZE
    x = samples()[0]
    y = np.empty((1, 10), np.float32)
    ins = (ctypes.c_void_p * 1)(x.ctypes.data)
    outs = (ctypes.c_void_p * 1)(y.ctypes.data)
    assert run(ctypes.byref(ctx), ins, outs) == 7  # a failed init leaves the context unusable
    assert init(ctypes.byref(ctx), arena, need) == 0
    assert run(ctypes.byref(ctx), ins, outs) == 0
    np.testing.assert_array_equal(y, mod.run({"x": x})["y"])
    header = (folder / "net.h").read_text()
    for needle in ("net_ctx ctx;", "pdc_status net_ctx_init(net_ctx *ctx, void *arena, size_t arena_bytes);",
                   "pdc_status net_run_ctx(const net_ctx *ctx, const void *const *inputs, void *const *outputs);",
                   "concurrently"):
        assert needle in header


# ---- the runtime's pool -----------------------------------------------------------------------------
POOL_C = r"""
/* Four threads call pdc_parallel_for / pdc_parallel_slots on one pool at once, some loops nested in
 * a task, of 1..N indices (fewer than the chunks, not a multiple of them); every index of every
 * loop must be visited exactly once, and nothing may hang. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "pdc_runtime.h"

#define N 257
#define CALLERS 4
#ifndef LOOPS
#define LOOPS 2000
#endif

typedef struct { unsigned char seen[N]; int nested; int bad_slot; } loop;

static void visit(void *p, int64_t begin, int64_t end) {
    loop *l = (loop *)p;
    for (int64_t i = begin; i < end; i++) l->seen[i]++;
}
static void visit_nesting(void *p, int64_t begin, int64_t end) {
    loop *l = (loop *)p;
    for (int64_t i = begin; i < end; i++) {
        if (i == 0) { loop inner; memset(&inner, 0, sizeof inner); pdc_parallel_for(N, visit, &inner);
                      for (int k = 0; k < N; k++) l->nested += inner.seen[k] != 1; }
        l->seen[i]++;
    }
}
static void visit_slot(void *p, int64_t begin, int64_t end, int slot) {
    loop *l = (loop *)p;
    if (slot < 0 || slot >= 3) l->bad_slot = 1;
    visit(p, begin, end);
}

static void *caller(void *arg) {
    long *wrong = (long *)arg;
    for (int r = 0; r < LOOPS; r++) {
        loop l;
        memset(&l, 0, sizeof l);
        const int n = 1 + (r * 37) %% N;
        if (r %% 3 == 0) pdc_parallel_for(n, visit, &l);
        else if (r %% 3 == 1) pdc_parallel_slots(n, 3, visit_slot, &l);
        else pdc_parallel_for(n, visit_nesting, &l);
        for (int i = 0; i < N; i++) *wrong += l.seen[i] != (i < n);
        *wrong += l.nested + l.bad_slot;
    }
    return 0;
}

int main(void) {
    if (pdc_threads_init(4) != PDC_OK || pdc_threads_count() != 4) return 2;
    pthread_t threads[CALLERS];
    long wrong[CALLERS] = {0};
    for (int i = 0; i < CALLERS; i++) pthread_create(&threads[i], 0, caller, &wrong[i]);
    for (int i = 0; i < CALLERS; i++) pthread_join(threads[i], 0);
    long total = 0;
    for (int i = 0; i < CALLERS; i++) total += wrong[i];
    /* restarting the pool after use: workers must not replay an old loop */
    pdc_threads_shutdown();
    if (pdc_threads_init(3) != PDC_OK) return 2;
    caller(&total);
    pdc_threads_shutdown();
    printf("%%ld wrong visits\n", total);
    return total != 0;
}
"""


@pytest.mark.parametrize("sanitize", [(), ("-fsanitize=thread", "-g", "-DLOOPS=100")], ids=["plain", "tsan"])
def test_pool_is_reentrant(tmp_path, sanitize):
    if sanitize:
        probe = subprocess.run([c_compiler(), *sanitize, "-x", "c", "-", "-o", str(tmp_path / "probe")],
                               input="int main(void) { return 0; }", capture_output=True, text=True)
        if probe.returncode != 0 or subprocess.run([str(tmp_path / "probe")]).returncode != 0:
            pytest.skip("the C compiler cannot build or run ThreadSanitizer programs")
    for rel, data in runtime_sources().items():
        (tmp_path / os.path.basename(rel)).write_bytes(data)
    (tmp_path / "pool.c").write_text(POOL_C % {})
    cmd = [c_compiler(), "-O1", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-DPDC_THREADS=1", *sanitize,
           "pool.c", "pdc_runtime.c", "-o", "pool", "-lpthread"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1")
    r = subprocess.run([str(tmp_path / "pool")], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "0 wrong visits" in r.stdout, r.stdout + r.stderr[-4000:]


def test_ctx_of_a_model_without_arena_takes_none(tmp_path):
    """A model whose tensors all live in the caller's buffers needs no arena: NULL binds."""
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    folder = tmp_path / "bundle"
    mod = pdc.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), out_dir=str(folder),
                      name="net", opt_level=1)
    assert mod.manifest["arena_bytes"] == 0
    lib = ctypes.CDLL(str(folder / "libnet.so"))
    lib.net_ctx_init.argtypes = [ctypes.POINTER(Ctx), ctypes.c_void_p, ctypes.c_size_t]
    lib.net_run_ctx.argtypes = [ctypes.POINTER(Ctx), ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
    ctx = Ctx()
    assert lib.net_ctx_init(ctypes.byref(ctx), None, 0) == 0
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    y = np.empty_like(x)
    ins, outs = (ctypes.c_void_p * 1)(x.ctypes.data), (ctypes.c_void_p * 1)(y.ctypes.data)
    assert lib.net_run_ctx(ctypes.byref(ctx), ins, outs) == 0
    np.testing.assert_array_equal(y, np.maximum(x, 0))
