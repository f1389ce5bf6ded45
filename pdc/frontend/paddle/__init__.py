"""PaddlePaddle importer: inference models in PIR JSON or legacy ProgramDesc form -> IR graph.

`load_paddle(path)` accepts the model file (`inference.json` or `inference.pdmodel`), the path
prefix (`out/inference`), the parameters file, or a folder holding one model, detects the
format from the content, reads the parameters from the combined `.pdiparams` next to the model,
and lowers the program. paddle itself is never imported.
"""
from __future__ import annotations

import glob
import os

from ...ir.errors import PdcError
from ...ir.graph import Graph

MODEL_SUFFIXES = (".json", ".pdmodel")
PARAMS_SUFFIX = ".pdiparams"


def is_paddle_path(path: str) -> bool:
    """Whether `path` names a Paddle model: a model or parameters file, a path prefix, or a folder
    holding a model (so `load_model` can dispatch without reading anything)."""
    if os.path.isdir(path):
        return any(glob.glob(os.path.join(glob.escape(path), "*" + s)) for s in MODEL_SUFFIXES)
    if path.endswith(MODEL_SUFFIXES + (PARAMS_SUFFIX,)):
        return True
    return not os.path.exists(path) and any(os.path.isfile(path + s) for s in MODEL_SUFFIXES)


def _sniff(path: str) -> str:
    """'pir', 'legacy' or '' from a file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(64)
    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        return "pir"
    if head[:1] == b"\x0a":  # ProgramDesc field 1 (blocks), length-delimited
        return "legacy"
    return ""


def resolve(path: str) -> tuple[str, str, str]:
    """(model file, parameters file, format) for any of the accepted spellings of a model path."""
    if os.path.isdir(path):
        found = sorted(p for s in MODEL_SUFFIXES for p in glob.glob(os.path.join(glob.escape(path), "*" + s)))
        preferred = [p for p in found if os.path.basename(p).startswith("inference.")]
        if len(preferred) == 1:
            found = preferred
        elif len(found) > 1:
            with_params = [p for p in found if os.path.exists(os.path.splitext(p)[0] + PARAMS_SUFFIX)]
            found = with_params if len(with_params) == 1 else found
        if not found:
            raise PdcError(f"{path}: no Paddle model (*.json or *.pdmodel) in this folder")
        if len(found) > 1:
            names = ", ".join(os.path.basename(p) for p in found)
            raise PdcError(f"{path}: several Paddle models in this folder ({names}); name the model file")
        path = found[0]
    elif path.endswith(PARAMS_SUFFIX):
        prefix = path[:-len(PARAMS_SUFFIX)]
        found = [prefix + s for s in MODEL_SUFFIXES if os.path.isfile(prefix + s)]
        if not found:
            raise PdcError(f"{path}: no model file ({prefix}.json or {prefix}.pdmodel) next to these parameters")
        path = found[0]
    elif not os.path.exists(path):
        found = [path + s for s in MODEL_SUFFIXES if os.path.isfile(path + s)]
        if not found:
            raise PdcError(f"{path}: no such file")
        path = found[0]
    if not os.path.isfile(path):
        raise PdcError(f"{path}: not a file")
    fmt = _sniff(path)
    if not fmt:
        raise PdcError(f"{path}: not a Paddle model (neither PIR JSON nor a ProgramDesc protobuf)")
    prefix = os.path.splitext(path)[0] if path.endswith(MODEL_SUFFIXES) else path
    return path, prefix + PARAMS_SUFFIX, fmt


def load_paddle(path: str) -> Graph:
    """Loads a Paddle inference model into an IR graph."""
    from .lower import Lowering
    from .pdiparams import read_pdiparams

    model, params_path, fmt = resolve(path)
    if fmt == "pir":
        from .pir_json import load_pir_json
        program = load_pir_json(model)
    else:
        from .program_desc import load_program_desc
        program = load_program_desc(model)
    specs = [spec for spec, _ in program.params]
    if os.path.isfile(params_path):
        arrays = read_pdiparams(params_path, specs, model)
    elif specs:
        raise PdcError(f"{params_path}: no such file (the parameters of {model}, which declares {len(specs)})")
    else:
        arrays = {}
    name = os.path.basename(os.path.dirname(os.path.abspath(model))) or "main"
    return Lowering(program, arrays, name).run()
