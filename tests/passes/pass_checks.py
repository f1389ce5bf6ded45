"""More pass-test helpers: check_pass for graphs with symbolic dims, and semantic checks on zoo models."""
import textwrap
from collections import Counter

import numpy as np

import zoo as zoo_lib
from pdc.frontend import load_model
from pdc.ir.printer import print_graph

from .util import assert_same_outputs, graph_from_text, run_passes


def check_pass_symbolic(pipeline: str, before: str, after: str, constants: dict | None = None, dim: int = 2):
    """check_pass where the inputs may have symbolic dims; each symbol is fed as `dim`."""
    g = graph_from_text(before, constants)
    reference = g.copy()
    run_passes(g, pipeline)
    expected = textwrap.dedent(after).strip() + "\n"
    assert print_graph(g) == expected, "\n--- got ---\n" + print_graph(g) + "--- expected ---\n" + expected
    rng = np.random.default_rng(1)
    feeds = {v.name: rng.standard_normal([d if isinstance(d, int) else dim for d in v.type.shape])
             .astype(v.type.dtype.np) for v in reference.inputs}
    assert_same_outputs(reference, g, feeds)
    return g


def check_zoo_model(path: str, pipeline: str):
    """Runs `pipeline` (verifying after each pass) on the model at `path`; asserts that the reference
    interpreter gives the same outputs before and after, and returns (graph, op histogram before, after)."""
    graph = load_model(path)
    before = graph.copy()
    run_passes(graph, pipeline)
    assert_same_outputs(before, graph, zoo_lib.make_feeds(path))
    return graph, Counter(n.op for n in before.nodes), Counter(n.op for n in graph.nodes)
