"""Notice a host that went silent while a command or an upload runs, instead of waiting for it.

A host that is paused, powered off or cut off the network sends nothing: no EOF, no TCP reset, so
a channel waits for its command to finish until the command timeout (900 s by default). Like
OpenSSH's ``ServerAliveInterval``/``ServerAliveCountMax``, :class:`Watchdog` sends a global request
(``keepalive@openssh.com``, want-reply: sshd answers it with a failure message, which is proof of
life) every ``interval`` seconds while an operation runs. When no answer has come for
``interval * count`` seconds the host is declared lost and the transport closed, which ends the
operation at once; the caller then reports the host as lost, not as slow.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko

DEFAULT_INTERVAL = 5
DEFAULT_COUNT = 3
REQUEST = "keepalive@openssh.com"


@dataclass(frozen=True)
class KeepaliveSettings:
    interval: float = DEFAULT_INTERVAL
    count: int = DEFAULT_COUNT

    @property
    def window(self) -> float:
        """Seconds without an answer after which the host counts as lost."""
        return self.interval * self.count


class Watchdog:
    """``with Watchdog(transport, settings) as dog:`` probes the host while the block runs;
    ``dog.lost`` tells whether it closed the transport because the host stopped answering."""

    def __init__(self, transport: paramiko.Transport, settings: KeepaliveSettings) -> None:
        self.transport = transport
        self.settings = settings
        self.lost = False
        self._stop = threading.Event()
        self._answered = time.monotonic()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nr-keepalive", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval):
            if not self.transport.is_active():
                return
            with self._lock:
                silent = time.monotonic() - self._answered
            if silent >= self.settings.window:
                self.lost = True
                self.transport.close()  # every channel on it closes: the operation ends now
                return
            threading.Thread(target=self._probe, name="nr-keepalive-probe", daemon=True).start()

    def _probe(self) -> None:
        """One want-reply request; it returns on the answer, or when the transport closes."""
        try:
            self.transport.global_request(REQUEST, wait=True)
        except (paramiko.SSHException, OSError, EOFError):
            return
        if self.transport.is_active():
            with self._lock:
                self._answered = time.monotonic()


class SharedWatchdog:
    """One :class:`Watchdog` for the operations that run at once on one connection (the reads of
    several components go over one host's connection together, each on its own channel): the first
    operation starts it, the last one to end stops it. ``lost`` is the last watchdog's verdict."""

    def __init__(self, settings: KeepaliveSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._users = 0
        self._dog: Watchdog | None = None

    @property
    def lost(self) -> bool:
        return self._dog is not None and self._dog.lost

    @contextlib.contextmanager
    def watch(self, transport: paramiko.Transport) -> Iterator[Watchdog]:
        with self._lock:
            if self._users == 0 or self._dog is None:
                self._dog = Watchdog(transport, self.settings).__enter__()
            self._users += 1
            dog = self._dog
        try:
            yield dog
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    dog.__exit__()
