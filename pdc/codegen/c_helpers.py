"""The kernels' shared C helpers, compiled once per bundle.

Kernel generators register helpers (types, macros, inline functions and whole functions: the
GEMM drivers, packers, microkernels, task functions) as C text, each once per bundle
(KernelContext.helper). A bundle whose kernels fill one file keeps them there. A larger bundle
splits them: the interface (everything but the functions' bodies) goes to the kernel header,
which every kernel file includes, and each function (`static`, not `inline`) is defined once, in
`<name>_kernels_helpers.c`, with external linkage under a name prefixed with the bundle's, so
two bundles link into one program. Inline functions stay in the header: they are the small
hot ones (vector math) the compiler inlines into each file.
"""
from __future__ import annotations

import re

_FUNCTION_START = re.compile(r"static\s+(?!inline\b)")
_NAME = re.compile(r"(\w+)\s*\($")


def _code_chars(text: str):
    """(index, char) of text outside comments, strings and character literals."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            i = text.find("*/", i + 2)
            i = n if i < 0 else i + 2
            continue
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        yield i, c
        i += 1


def _top_level_items(code: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the top-level function definitions and prototypes that start a line
    with `static` (not inline), outside any #if: kind "def" or "proto"."""
    items = []
    depth, start, head_paren, conditional = 0, None, False, 0
    line_start = True
    for i, c in _code_chars(code):
        if line_start and c == "#" and depth == 0:
            directive = re.match(r"#\s*(\w+)", code[i:])
            word = directive.group(1) if directive else ""
            conditional += (word in ("if", "ifdef", "ifndef")) - (word == "endif")
        if depth == 0 and start is None and line_start and not conditional and _FUNCTION_START.match(code, i):
            start, head_paren = i, False
        line_start = c == "\n"
        if start is None:
            depth += (c == "{") - (c == "}")
            continue
        if depth == 0 and c == "(":
            head_paren = True
        if depth == 0 and c in ";=":
            # a prototype, or a static variable (skipped)
            if c == ";" and head_paren:
                items.append((start, i + 1, "proto"))
            start = None
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                items.append((start, i + 1, "def"))
                start = None
    return items


def split_helpers(code: str, prefix: str) -> tuple[str, str]:
    """(interface, definitions) of the helpers' C text: the interface declares every function the
    definitions hold (renamed `<prefix>_<name>` by a macro) and keeps everything else."""
    items = _top_level_items(code)
    names, defs, pieces, pos = [], [], [], 0
    for start, end, kind in items:
        pieces.append(code[pos:start])
        pos = end
        text = code[start:end]
        head = text[:text.index("{")].rstrip() if kind == "def" else text[:-1].rstrip()
        head = head[len("static"):].lstrip()
        if kind == "def":
            name = _NAME.search(head[:head.index("(") + 1]).group(1)
            names.append(name)
            defs.append(head + " " + text[text.index("{"):])
            pieces.append(head + ";")
        else:  # a forward declaration, now of the external function
            pieces.append(head + ";")
    pieces.append(code[pos:])
    renames = "".join(f"#define {n} {prefix}_{n}\n" for n in names)
    return renames + "".join(pieces), "\n".join(defs) + "\n"
