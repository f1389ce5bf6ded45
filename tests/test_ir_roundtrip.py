"""Every ONNX node-test model pdc imports survives .pdir save/load byte for byte, and runs the same.

This is `pdc opt M --emit ir -o a.pdir; pdc opt a.pdir --emit ir -o b.pdir` in-process (the CLI
calls the same save_ir/load_ir), sharded so pytest -n 2 splits it.
"""
import warnings

import numpy as np
import pytest
from onnx.backend.test.loader import load_model_tests

from pdc.frontend.onnx_import import import_onnx
from pdc.ir.errors import PdcError
from pdc.ir.interpreter import run_graph
from pdc.ir.textio import load_ir, save_ir

SHARDS = 8


def _node_tests():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(load_model_tests(kind="node"), key=lambda t: t.name)


def _same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


@pytest.mark.parametrize("shard", range(SHARDS))
def test_node_models_round_trip(shard, tmp_path):
    imported, problems = 0, []
    for case in _node_tests()[shard::SHARDS]:
        try:
            g = import_onnx(case.model, case.name)
        except PdcError:
            continue  # not importable: counted by the conformance suite, not here
        imported += 1
        a, b = str(tmp_path / "a.pdir"), str(tmp_path / "b.pdir")
        save_ir(g, a)
        g2 = load_ir(a)
        save_ir(g2, b)
        if open(a, "rb").read() != open(b, "rb").read():
            problems.append(f"{case.name}: a.pdir and b.pdir differ")
            continue
        if not case.data_sets:
            continue
        inputs = case.data_sets[0][0]
        feeds = {v.name: x for v, x in zip(g.inputs, inputs)}
        try:
            with np.errstate(all="ignore"):
                out1 = run_graph(g, feeds)
                out2 = run_graph(g2, feeds)
        except PdcError:
            continue  # a run-time failure is the conformance suite's business
        for k in out1:
            if not _same(out1[k], out2[k]):
                problems.append(f"{case.name}: output {k} differs after the round trip")
    assert imported > 0
    assert not problems, "\n".join(problems)
