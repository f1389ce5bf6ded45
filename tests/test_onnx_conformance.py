"""ONNX's node conformance tests, unchanged, through pdc.onnx_backend, on both engines.

OnnxBackendNodeModelTest runs compiled x86 code (the default engine), ReferenceNodeModelTest the
NumPy reference interpreter. Families listed in onnx_expected_failures.txt (both engines) and
onnx_expected_failures_x86.txt (compiled code only) are expected failures, each with the failure it
states: the test must raise that exception with that message, so a test failing for another reason
fails the run, and so does one that passes; an entry matching no test is an error too. The lists stay
exact. Nothing is skipped. `python tools/conformance.py` prints the pass counts.
"""
from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass

import onnx.backend.test
import pytest

import pdc.onnx_backend

warnings.filterwarnings("ignore", category=RuntimeWarning)

HERE = os.path.dirname(__file__)
SHARED, X86_ONLY = "onnx_expected_failures.txt", "onnx_expected_failures_x86.txt"


@dataclass(frozen=True)
class ExpectedFailure:
    """One line of an expected-failure file: REGEX | EXCEPTION: MESSAGE | reason."""
    pattern: str  # searched in the test name
    error: str  # the exception's class name (or a base class's)
    message: str  # regex searched in the exception's message
    reason: str
    where: str  # file:line, for messages

    def covers(self, test_name: str) -> bool:
        return re.search(self.pattern, test_name) is not None

    def explains(self, exc: BaseException) -> bool:
        return (any(cls.__name__ == self.error for cls in type(exc).__mro__)
                and re.search(self.message, str(exc)) is not None)

    @property
    def failure(self) -> str:
        return f"{self.error}: {self.message}"


def expected_failures(path: str) -> list[ExpectedFailure]:
    """The entries of an expected-failure file."""
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{os.path.basename(path)}:{lineno}"
            parts = [p.strip() for p in line.split(" | ")]
            if len(parts) != 3 or ": " not in parts[1]:
                raise ValueError(f"{where}: expected 'REGEX | EXCEPTION: MESSAGE | reason', got {line!r}")
            error, message = (p.strip() for p in parts[1].split(": ", 1))
            out.append(ExpectedFailure(parts[0], error, message, parts[2], where))
    return out


def leading_alternatives(pattern: str) -> list[str]:
    """The pattern once per alternative of its first top-level group: '^t_(a|b)x' -> ['^t_(a)x', '^t_(b)x']
    (the pattern itself when it has no group of alternatives)."""
    start = pattern.find("(")
    while start > 0 and pattern[start - 1] == "\\":
        start = pattern.find("(", start + 1)
    if start < 0 or pattern.startswith("(?", start):
        return [pattern]
    depth, alts, piece, i = 0, [], "", start + 1
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            piece += pattern[i:i + 2]
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                break
            depth -= 1
        elif c == "|" and depth == 0:
            alts.append(piece)
            piece = ""
            i += 1
            continue
        piece += c
        i += 1
    alts.append(piece)
    head, tail = pattern[:start], pattern[i + 1:]
    return [f"{head}({alt}){tail}" for alt in alts]


def expect_failure(test, entries: list[ExpectedFailure]):
    """The test, run as an expected failure: xfail when it fails the way an entry says, fail otherwise."""
    @functools.wraps(test)
    def run(self, *args, **kwargs):
        try:
            test(self, *args, **kwargs)
        except Exception as exc:
            for entry in entries:
                if entry.explains(exc):
                    pytest.xfail(f"{entry.reason} ({entry.where})")
            stated = "; ".join(f"{e.failure} ({e.where})" for e in entries)
            raise AssertionError(f"expected to fail with {stated}, but failed with {type(exc).__name__}: "
                                 f"{str(exc)[:500]}") from exc
        pytest.fail(f"expected to fail ({entries[0].where}: {entries[0].reason}) but passed: remove the entry",
                    pytrace=False)
    return run


def node_test_class(backend, failure_files):
    """The node-test TestCase class of a BackendTest for `backend`, CPU variants only, with the
    expected failures of `failure_files` checked against the way they fail."""
    bt = onnx.backend.test.BackendTest(backend, __name__)
    cls = bt.test_cases["OnnxBackendNodeModelTest"]
    # pdc compiles for the CPU: the CUDA variants are not collected at all (rather than skipped)
    for name in [n for n in dir(cls) if n.startswith("test_") and not n.endswith("_cpu")]:
        delattr(cls, name)
    entries = [e for path in failure_files for e in expected_failures(os.path.join(HERE, path))]
    for name in [n for n in dir(cls) if n.startswith("test_")]:
        covering = [e for e in entries if e.covers(name)]
        if covering:
            setattr(cls, name, expect_failure(getattr(cls, name), covering))
    return cls


def sampled(cls, every: int):
    """The node-test class with every `every`-th test in name order kept (a slow engine's sample)."""
    names = sorted(n for n in dir(cls) if n.startswith("test_"))
    for k, name in enumerate(names):
        if k % every:
            delattr(cls, name)
    return cls


OnnxBackendNodeModelTest = node_test_class(pdc.onnx_backend.X86Backend, [SHARED, X86_ONLY])
ReferenceNodeModelTest = type("ReferenceNodeModelTest",
                              (node_test_class(pdc.onnx_backend.ReferenceBackend, [SHARED]),), {})


# ---- the lists themselves ------------------------------------------------------------------------
def node_test_names() -> list[str]:
    return [n for n in dir(OnnxBackendNodeModelTest) if n.startswith("test_")]


@pytest.mark.parametrize("path", [SHARED, X86_ONLY])
def test_every_entry_matches_a_test(path):
    names = node_test_names()
    stale = [f"{e.where}: {alt}" for e in expected_failures(os.path.join(HERE, path))
             for alt in leading_alternatives(e.pattern) if not any(re.search(alt, n) for n in names)]
    assert not stale, "entries (or alternatives of them) that match no ONNX node test:\n" + "\n".join(stale)


def test_no_test_matches_two_entries():
    entries = expected_failures(os.path.join(HERE, SHARED)) + expected_failures(os.path.join(HERE, X86_ONLY))
    twice = {n: [e.where for e in entries if e.covers(n)] for n in node_test_names()}
    twice = {n: w for n, w in twice.items() if len(w) > 1}
    assert not twice, f"tests matched by several entries (say which failure applies): {twice}"


def test_leading_alternatives():
    assert leading_alternatives("^test_(a|b_(c|d))_x") == ["^test_(a)_x", "^test_(b_(c|d))_x"]
    assert leading_alternatives("^test_plain_") == ["^test_plain_"]
    assert leading_alternatives(r"^test_\(x(?!y)") == [r"^test_\(x(?!y)"]


def test_a_failure_for_another_reason_is_not_expected():
    entry = ExpectedFailure("^test_x", "UnsupportedError", "unsupported ops: Loop", "control flow", "f:1")
    from pdc.ir.errors import UnsupportedError
    assert entry.explains(UnsupportedError("unsupported ops: Loop x1"))
    assert not entry.explains(UnsupportedError("unsupported ops: If x1"))
    assert not entry.explains(AssertionError("unsupported ops: Loop x1"))

    def broken(self):
        raise ValueError("a crash")
    with pytest.raises(AssertionError, match="expected to fail with UnsupportedError: .* but failed with ValueError"):
        expect_failure(broken, [entry])(None)
    with pytest.raises(pytest.fail.Exception, match="but passed: remove the entry"):
        expect_failure(lambda self: None, [entry])(None)
