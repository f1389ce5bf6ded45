"""Every zoo model: `pdc opt M --emit ir -o a.pdir` then `pdc opt a.pdir --emit ir -o b.pdir` gives
byte-identical files, and the reference interpreter gives the same outputs on both."""
import numpy as np
import pytest

import zoo as zoo_lib
from pdc.cli import main
from pdc.frontend import load_model
from pdc.ir.interpreter import run_graph

CASES = [pytest.param(name, marks=[pytest.mark.zoo] if name in zoo_lib.PADDLE_MODELS else [], id=name)
         for name in zoo_lib.ZOO_MODELS]


@pytest.mark.parametrize("name", CASES)
def test_pdir_round_trip(name, zoo, tmp_path):
    path = zoo(name)
    a, b = str(tmp_path / "a.pdir"), str(tmp_path / "b.pdir")
    assert main(["opt", path, "--emit", "ir", "-o", a]) == 0
    assert main(["opt", a, "--emit", "ir", "-o", b]) == 0
    assert open(a, "rb").read() == open(b, "rb").read()
    feeds = zoo_lib.make_feeds(path)
    out_onnx = run_graph(load_model(path), feeds)
    out_a = run_graph(load_model(a), feeds)
    out_b = run_graph(load_model(b), feeds)
    for k in out_onnx:
        np.testing.assert_array_equal(out_a[k], out_onnx[k])
        np.testing.assert_array_equal(out_b[k], out_onnx[k])
