"""Runs ONNX's node conformance tests through pdc.onnx_backend and prints pass counts.

    python tools/conformance.py [-k PATTERN] [-v]
"""
import argparse
import re
import sys
import unittest
import warnings

import onnx.backend.test

import pdc.onnx_backend


def node_tests(pattern=None):
    bt = onnx.backend.test.BackendTest(pdc.onnx_backend, "conformance")
    bt.include(r"^test_.*_cpu$")
    suite = unittest.TestSuite()
    for case in bt.test_cases.values():
        for name in unittest.TestLoader().getTestCaseNames(case):
            if "OnnxBackendNodeModelTest" not in case.__name__ or not name.endswith("_cpu"):
                continue
            if pattern and not re.search(pattern, name):
                continue
            suite.addTest(case(name))
    return suite


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default=None)
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    suite = node_tests(args.k)
    result = unittest.TestResult()
    suite.run(result)
    failed = {t.id().split(".")[-1]: e for t, e in result.failures + result.errors}
    total = suite.countTestCases()
    if args.v:
        for name, err in sorted(failed.items()):
            last = err.strip().splitlines()[-1][:200]
            print(f"FAIL {name}: {last}")
    print(f"passed {total - len(failed) - len(result.skipped)} of {total} (skipped {len(result.skipped)})")


if __name__ == "__main__":
    sys.exit(main())
