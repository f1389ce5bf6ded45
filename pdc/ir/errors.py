"""Errors pdc reports to its users: one line saying what is wrong and where."""


class PdcError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""


class VerifyError(PdcError):
    """A graph breaks an IR invariant; the message names the node."""


class UnsupportedError(PdcError):
    """The model uses something pdc does not support (an op, an attribute value, a dtype)."""
