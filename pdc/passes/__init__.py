"""Graph -> graph rewrites. One module per pass, named after it (fold-constants: fold_constants.py)."""
import importlib
import pkgutil

from .manager import OPT_LEVELS, PASSES, Pass, PassManager, all_passes, parse_pipeline, register_pass  # noqa: F401

_loaded = False


def _load_all():
    global _loaded
    if not _loaded:
        _loaded = True
        for m in pkgutil.iter_modules(__path__):
            if m.name != "manager" and not m.name.startswith("_"):
                importlib.import_module(f"{__name__}.{m.name}")


def run_pipeline(graph, pipeline: str, **options):
    """Runs a pipeline string over `graph` (in place) and returns it."""
    return PassManager(parse_pipeline(pipeline), **options).run(graph)
