"""Semantic checks of passes on zoo models: outputs before and after a pipeline agree."""
from collections import Counter

import zoo as zoo_lib
from pdc.frontend import load_model

from .util import assert_same_outputs, run_passes


def check_zoo_model(path: str, pipeline: str, rtol: float = 1e-5):
    """Runs `pipeline` (verifying after each pass) on the model at `path`; asserts that the reference
    interpreter gives the same outputs before and after, and returns (graph, op histogram before, after)."""
    graph = load_model(path)
    before = graph.copy()
    run_passes(graph, pipeline)
    assert_same_outputs(before, graph, zoo_lib.make_feeds(path), rtol)
    return graph, Counter(n.op for n in before.nodes), Counter(n.op for n in graph.nodes)
