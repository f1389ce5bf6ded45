"""Every pass, and the whole -O2 pipeline, keeps the reference interpreter's outputs (element by
element, tolerances.REWRITE) on every ONNX node-test model pdc imports. Sharded so that pytest -n 2
splits it."""
import warnings

import numpy as np
import pytest
from onnx.backend.test.loader import load_model_tests

from pdc.frontend.onnx_import import import_onnx
from pdc.ir.errors import PdcError
from pdc.ir.interpreter import run_graph
from pdc.passes import PassManager, all_passes, parse_pipeline
from pdc.passes.manager import OPT_LEVELS
from tolerances import REWRITE

SHARDS = 8
# convert-layout is a target pass (not in -O2); it is checked here too
PIPELINES = sorted(all_passes()) + [OPT_LEVELS[2]]


def _cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(load_model_tests(kind="node"), key=lambda t: t.name)


def _close(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind not in "fc":  # integers, bool and bfloat16 (whose rewrites have been bit-exact): equal
        return np.array_equal(a, b)
    return not REWRITE.mismatches(a, b)


@pytest.mark.parametrize("shard", range(SHARDS))
def test_passes_keep_outputs_on_node_models(shard):
    checked, problems = 0, []
    for case in _cases()[shard::SHARDS]:
        if not case.data_sets:
            continue
        try:
            graph = import_onnx(case.model, case.name)
            feeds = {v.name: x for v, x in zip(graph.inputs, case.data_sets[0][0])}
            with np.errstate(all="ignore"):
                want = run_graph(graph, feeds)
        except PdcError:
            continue  # not importable or not runnable: the conformance suite reports it
        for pipeline in PIPELINES:
            g = graph.copy()
            try:
                PassManager(parse_pipeline(pipeline), verify_each=True).run(g)
                with np.errstate(all="ignore"):
                    got = run_graph(g, feeds)
            except Exception as e:  # a pass that breaks a model is as wrong as one that changes it
                problems.append(f"{case.name}: {pipeline}: {type(e).__name__}: {str(e)[:200]}")
                continue
            bad = [k for k in want if not _close(got[k], want[k])]
            if bad:
                problems.append(f"{case.name}: {pipeline} changes output(s) {bad}")
        checked += 1
    assert checked > 0
    assert not problems, "\n".join(problems[:20])
