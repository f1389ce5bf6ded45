"""Errors pdc reports to its users: one line saying what is wrong and where."""
import re

# control characters a model's names may smuggle into a message (a newline would break the one line)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(message: str) -> str:
    """The message with control characters spelled as escapes (\\n, \\x1b), so it stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)


class PdcError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""

    def __init__(self, message="", *args):
        super().__init__(one_line(message) if isinstance(message, str) else message, *args)


class VerifyError(PdcError):
    """A graph breaks an IR invariant; the message names the node."""


class UnsupportedError(PdcError):
    """The model uses something pdc does not support (an op, an attribute value, a dtype)."""
