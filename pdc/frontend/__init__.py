"""Model importers. `load_model(path)` detects the format and returns an IR graph."""
from .loader import load_model  # noqa: F401
