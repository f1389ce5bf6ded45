"""pdc: an ahead-of-time deep-learning compiler."""
__version__ = "0.1.0"

from .ir.errors import PdcError  # noqa: E402,F401
