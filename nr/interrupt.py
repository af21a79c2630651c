"""Ctrl-C: stop the run now, and say what was done.

Python delivers SIGINT to the main thread only, while the hosts' work runs in Nornir's worker
threads (blocked in SSH channels). :func:`interrupt` sets :data:`CANCELLED`; every connection
checks it before it opens or runs anything and while it waits for a command, so the workers
finish within a fraction of a second (a remote command already started is not waited for), and
hosts not started yet are never touched.
"""

from __future__ import annotations

import threading

from nr.errors import NrError

CANCELLED = threading.Event()
GRACE = 1.2  # seconds the workers get to wind down before the process exits regardless
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class Interrupted(NrError):
    """The run was interrupted (Ctrl-C) before or while this host's step ran."""


def check(what: str) -> None:
    """Raise :class:`Interrupted` if the run was interrupted (``what``: the host or step)."""
    if CANCELLED.is_set():
        raise Interrupted(f"{what}: interrupted (Ctrl-C)")


def interrupt() -> None:
    CANCELLED.set()
