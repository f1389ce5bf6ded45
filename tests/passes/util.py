"""Helpers for pass tests: IR text in, pipeline, IR text out, and a semantic check on the interpreter."""
import textwrap

import numpy as np

from pdc.ir.interpreter import run_graph
from pdc.ir.parser import parse_graph
from pdc.ir.printer import print_graph
from pdc.ir.verify import verify_graph
from pdc.passes import PassManager, parse_pipeline
from tolerances import REWRITE, Tolerance


def graph_from_text(text: str, constants: dict | None = None, seed: int = 0):
    """Parses IR text; constants without given data get seeded random values of their type."""
    text = textwrap.dedent(text).strip() + "\n"
    g = parse_graph(text, None)
    rng = np.random.default_rng(seed)
    for c in g.constants:
        given = (constants or {}).get(c.name)
        if given is not None:
            c.data = np.asarray(given, dtype=c.type.dtype.np).reshape(c.type.shape)
        elif c.type.dtype.is_float:
            c.data = rng.standard_normal(c.type.shape).astype(c.type.dtype.np)
        else:
            c.data = rng.integers(1, 4, c.type.shape).astype(c.type.dtype.np)
    verify_graph(g)
    return g


def random_feeds(g, seed: int = 1):
    rng = np.random.default_rng(seed)
    return {v.name: (rng.standard_normal(v.type.shape).astype(v.type.dtype.np) if v.type.dtype.is_float
                     else rng.integers(0, 4, v.type.shape).astype(v.type.dtype.np)) for v in g.inputs}


def assert_same_outputs(before, after, feeds, tolerance: Tolerance = REWRITE):
    """The graphs' outputs agree element by element (tolerances.REWRITE: atol relative to each
    output's largest magnitude)."""
    want, got = run_graph(before, feeds), run_graph(after, feeds)
    assert [v.name for v in before.outputs] == [v.name for v in after.outputs]
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, (k, got[k].dtype, want[k].dtype)
        tolerance.check(got[k], want[k], f"output {k}")


def run_passes(g, pipeline: str):
    return PassManager(parse_pipeline(pipeline), verify_each=True).run(g)


def check_pass(pipeline: str, before: str, after: str, constants: dict | None = None):
    """Runs `pipeline` on IR text `before`; asserts the printed result is `after` and outputs agree."""
    g = graph_from_text(before, constants)
    reference = g.copy()
    run_passes(g, pipeline)
    expected = textwrap.dedent(after).strip() + "\n"
    assert print_graph(g) == expected, "\n--- got ---\n" + print_graph(g) + "--- expected ---\n" + expected
    assert_same_outputs(reference, g, random_feeds(reference))
    return g
