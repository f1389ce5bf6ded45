"""The pass manager: named passes with typed options, run from a pipeline string.

A pipeline is a comma-separated list of pass names, each optionally followed by options in
braces: "fold-constants,fuse-elementwise{max-ops=8},eliminate-dead-code". A pass is a dataclass
subclass of `Pass` whose fields are its options (kebab-case in pipelines, snake_case in Python).
"""
from __future__ import annotations

import dataclasses
import re
import sys
import time
from typing import ClassVar, Optional, TextIO

from ..ir.errors import PdcError
from ..ir.graph import Graph
from ..ir.printer import print_graph
from ..ir.verify import verify_graph


@dataclasses.dataclass
class Pass:
    """Base class. Subclasses set `name` and implement `run`, which rewrites the graph in place."""

    name: ClassVar[str] = ""

    def run(self, graph: Graph) -> None:
        raise NotImplementedError

    def options(self) -> dict:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    def spelling(self) -> str:
        opts = self.options()
        if not opts:
            return self.name
        return self.name + "{" + ",".join(f"{k}={_format_option(v)}" for k, v in opts.items()) + "}"


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: makes the pass a dataclass (its annotated fields are its options) and registers it."""
    cls = dataclasses.dataclass(cls)
    assert re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", cls.name), cls.name
    assert cls.name not in PASSES, cls.name
    PASSES[cls.name] = cls
    return cls


def all_passes() -> dict[str, type[Pass]]:
    from . import _load_all
    _load_all()
    return PASSES


def _format_option(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _convert_option(pass_name: str, field: dataclasses.Field, text: str):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "bool":
            if text not in ("true", "false", "1", "0"):
                raise ValueError
            return text in ("true", "1")
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        return text
    except ValueError:
        raise PdcError(f"pass '{pass_name}': option '{field.name.replace('_', '-')}' expects {'an' if kind == 'int' else 'a'} {kind}, "
                       f"got '{text}'") from None


def parse_pipeline(text: str) -> list[Pass]:
    """Pass instances for a pipeline string; unknown passes or options are one-line errors."""
    passes = all_passes()
    result = []
    for m in re.finditer(r"\s*([^,{}\s]+)\s*(?:\{([^}]*)\})?\s*(?:,|$)", text.strip()):
        if not m.group(0).strip():
            continue
        name, opts = m.group(1), m.group(2)
        if name not in passes:
            raise PdcError(f"unknown pass '{name}' (known passes: {', '.join(sorted(passes))})")
        cls = passes[name]
        fields = {f.name.replace("_", "-"): f for f in dataclasses.fields(cls)}
        kwargs = {}
        for item in filter(None, (o.strip() for o in (opts or "").split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if key not in fields:
                known = ", ".join(fields) or "none"
                raise PdcError(f"pass '{name}' has no option '{key}' (its options: {known})")
            if not sep:
                raise PdcError(f"pass '{name}': option '{key}' needs a value ({key}=...)")
            kwargs[fields[key].name] = _convert_option(name, fields[key], value.strip())
        result.append(cls(**kwargs))
    spelled = ",".join(p.name for p in result)
    if re.sub(r"\{[^}]*\}|\s", "", text) != spelled:
        raise PdcError(f"malformed pipeline '{text}' (expected NAME[{{opt=value,...}}],...)")
    return result


class PassManager:
    """Runs passes in order, with optional verification, IR printing and timing after each."""

    def __init__(self, passes: list[Pass], *, verify_each: bool = False, print_after_all: bool = False,
                 print_after: Optional[set[str]] = None, timing: bool = False, out: Optional[TextIO] = None):
        self.passes = passes
        self.verify_each = verify_each
        self.print_after_all = print_after_all
        self.print_after = set(print_after or ())
        self.timing = timing
        self.out = out or sys.stderr
        self.times: list[tuple[str, float]] = []
        unknown = self.print_after - set(all_passes())
        if unknown:
            raise PdcError(f"--print-ir-after: unknown pass '{sorted(unknown)[0]}'")

    def run(self, graph: Graph) -> Graph:
        for p in self.passes:
            start = time.perf_counter()
            p.run(graph)
            self.times.append((p.name, time.perf_counter() - start))
            if self.verify_each:
                try:
                    verify_graph(graph)
                except PdcError as e:
                    raise PdcError(f"after pass '{p.name}': {e}") from e
            if self.print_after_all or p.name in self.print_after:
                self.out.write(f"// ----- IR after {p.spelling()} -----\n{print_graph(graph)}")
        if self.timing:
            total = sum(t for _, t in self.times) or 1e-12
            self.out.write("// ----- pass timing -----\n")
            for name, t in self.times:
                self.out.write(f"//  {t * 1000:9.3f} ms  {100 * t / total:5.1f}%  {name}\n")
            self.out.write(f"//  {total * 1000:9.3f} ms  100.0%  total\n")
        return graph


# What each optimization level runs (targets may append their own passes).
OPT_LEVELS = {
    0: "",
    1: "unroll-loops,fold-qdq,simplify-algebra,fold-constants,eliminate-common-subexpressions,eliminate-dead-code",
    2: ("unroll-loops,fold-qdq,simplify-algebra,fold-constants,eliminate-common-subexpressions,fold-pad,fold-batchnorm,"
        "fuse-attention,fuse-layer-norm,fuse-conv-bias-activation,fuse-elementwise,simplify-algebra,eliminate-dead-code"),
}


def pipeline_for_level(level: int) -> str:
    if level not in OPT_LEVELS:
        raise PdcError(f"unknown optimization level -O{level} (known: -O0, -O1, -O2)")
    return OPT_LEVELS[level]
