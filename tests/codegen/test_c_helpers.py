"""The kernels' shared C helpers are compiled once per bundle (pdc/codegen/c_helpers.py)."""
import re
import subprocess

import numpy as np

import pdc
from pdc.codegen.c_helpers import split_helpers
from pdc.codegen.c_renderer import KERNELS_PER_FILE
from tests.kernels.harness import Const, Layer, build_model

HELPERS = '''/* a { in a comment */
typedef struct { int a; } T;
static inline int f(int x) { return x + 1; }
static void g(const T *t, int n);
#if defined(X)
static void h(void) { }
#endif
static const int tab[2] = {1, 2};
static void g(const T *t,
              int n) {
    const char *s = "}{";
    if (n) { g(t, n - 1); }
}
static int k(void) { return f(tab[0]); }
'''


def test_split_keeps_the_interface_and_moves_each_function_once():
    """Types, macros, inline functions, tables and anything under #if stay in the interface; each
    static function becomes one external definition, declared (and renamed) in the interface."""
    interface, definitions = split_helpers(HELPERS, "net")
    assert interface == '''#define g net_g
#define k net_k
/* a { in a comment */
typedef struct { int a; } T;
static inline int f(int x) { return x + 1; }
void g(const T *t, int n);
#if defined(X)
static void h(void) { }
#endif
static const int tab[2] = {1, 2};
void g(const T *t,
              int n);
int k(void);
'''
    assert definitions == '''void g(const T *t,
              int n) {
    const char *s = "}{";
    if (n) { g(t, n - 1); }
}
int k(void) { return f(tab[0]); }
'''


def test_a_bundle_of_several_kernel_files_defines_each_helper_once(tmp_path):
    """Enough GEMMs for two kernel files: the GEMM driver and microkernels are defined once, in
    <name>_kernels_helpers.c, not in each file; the bundle computes what NumPy does."""
    rng = np.random.default_rng(0)
    layers = [Layer("Gemm", [rng.standard_normal([8, 32]).astype(np.float32),
                             Const(rng.standard_normal([32, 24]).astype(np.float32))], {})
              for _ in range(KERNELS_PER_FILE + 4)]
    model, feeds, outs = build_model(layers)
    mod = pdc.compile(model, target="x86", out_dir=str(tmp_path / "b"))
    files = {p.name: p.read_text() for p in (tmp_path / "b").glob("model_kernels*")}
    assert sorted(files) == ["model_kernels.h", "model_kernels_0.c", "model_kernels_1.c", "model_kernels_helpers.c"]
    definitions = {name: len(re.findall(r"^void pdc_sgemm_run\(.*\{$", text, re.M)) for name, text in files.items()}
    assert definitions == {"model_kernels.h": 0, "model_kernels_0.c": 0, "model_kernels_1.c": 0,
                           "model_kernels_helpers.c": 1}
    assert "#define pdc_sgemm_run model_pdc_sgemm_run" in files["model_kernels.h"]
    for name in sorted(files):
        if name.endswith(".c"):
            r = subprocess.run(["gcc", "-std=gnu11", "-O2", "-march=native", "-Wall", "-Wextra", "-Werror", "-I.",
                                "-Iruntime", "-fsyntax-only", name], cwd=tmp_path / "b", capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[:2000]
    got = mod.run(feeds)
    for layer, names in zip(layers, outs):
        want = layer.inputs[0] @ layer.inputs[1].value
        np.testing.assert_allclose(got[names[0]], want, rtol=1e-5, atol=1e-5)
