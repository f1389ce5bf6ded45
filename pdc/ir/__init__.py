"""The typed graph IR. Imports nothing else from pdc."""
from . import dtypes  # noqa: F401
from .errors import PdcError, UnsupportedError, VerifyError  # noqa: F401
from .graph import Graph, Node, Value  # noqa: F401
from .interpreter import run_graph  # noqa: F401
from .registry import REQUIRED, Attr, get_op, register_op  # noqa: F401
from .types import UNKNOWN, TensorType  # noqa: F401
from .verify import infer_node, verify_graph  # noqa: F401
