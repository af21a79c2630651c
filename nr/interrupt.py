"""Ctrl-C: stop the run now, and say what was done.

Python delivers SIGINT to the main thread only, while the hosts' work runs in Nornir's worker
threads (blocked in SSH channels). :func:`interrupt` sets :data:`CANCELLED`; every connection
checks it before it opens or runs anything and while it waits for a command, so the workers
finish within a fraction of a second (a remote command already started is not waited for), and
hosts not started yet are never touched.
"""

from __future__ import annotations

import threading
import time

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


class _Active:
    """How many host tasks are running now (the runner waits for them to wind down on Ctrl-C)."""

    def __init__(self) -> None:
        self.count = 0
        self._cv = threading.Condition()

    def __enter__(self) -> None:
        with self._cv:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self._cv:
            self.count -= 1
            self._cv.notify_all()

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no task runs or ``deadline`` (monotonic) passes; True when none runs."""
        with self._cv:
            while self.count and time.monotonic() < deadline:
                self._cv.wait(max(0.0, deadline - time.monotonic()))
            return self.count == 0


ACTIVE = _Active()
