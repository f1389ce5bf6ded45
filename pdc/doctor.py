"""`pdc --version` and `pdc doctor`: what this machine has of the toolchains the targets need."""
from __future__ import annotations

import os
import platform
import re

from . import __version__


def _tools() -> list:
    """Every program a code target needs, once each, in target order."""
    from .targets import code_targets
    seen = {}
    for target in code_targets().values():
        for tool in target.tools():
            seen.setdefault(tool.program, tool)
    return list(seen.values())


def version_text() -> str:
    """The version, where pdc runs from, and which toolchain programs are found (and which are not)."""
    tools = _tools()
    found = [t.program for t in tools if t.available()]
    missing = [f"{t.program} (Debian package {t.package})" for t in tools if not t.available()]
    where = os.path.dirname(os.path.abspath(__file__))
    return "\n".join([
        f"pdc {__version__} (Python {platform.python_version()}, {where})",
        f"toolchains found: {', '.join(found) or 'none'}",
        f"toolchains missing: {', '.join(missing) or 'none'}; pdc doctor says which targets build and run here",
    ])


def doctor_lines() -> list[str]:
    """One line per target preset: can it build here, can it run here, and what is missing; then the
    apt-get command that installs the missing Debian packages, when any."""
    from .targets import code_targets
    targets = code_targets()
    width = max(len(name) for name in targets)
    lines, packages = [], []
    for name, target in targets.items():
        build, run = target.build_problems(), target.run_problems()
        problems = list(dict.fromkeys(build + run))  # in-process targets repeat the build's problems
        line = f"{name:<{width}}  build: {'no ' if build else 'yes'}  run: {'no ' if run else 'yes'}"
        lines.append(line + (f"  {'; '.join(problems)}" if problems else ""))
        for p in problems:
            packages += [pkg for pkg in re.findall(r"\(Debian package ([^)]+)\)", p) if pkg not in packages]
    if packages:
        lines.append(f"to install what is missing: sudo apt-get install {' '.join(packages)}")
    return lines
