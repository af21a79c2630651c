"""Errors the engine reports as a clear one-line message instead of a traceback."""


class NrError(Exception):
    """An expected failure: the message names the host, file or field and the cause."""
