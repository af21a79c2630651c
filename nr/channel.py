"""One SSH exec channel, driven directly: send a script on stdin, collect stdout and stderr apart.

(Invoke's stdin pump reads non-tty streams one byte per 10 ms; a script of a few KiB would take
seconds, so the channel is driven with select() on both streams.) The loop never waits for an EOF
that cannot come: it leaves as soon as the channel or its transport is closed (the host went away,
or :class:`nr.keepalive.Watchdog` gave up on it) or the run is interrupted.
"""

from __future__ import annotations

import select
import threading
import time
from dataclasses import dataclass, field

import paramiko

from nr.interrupt import CANCELLED

POLL = 0.25  # seconds between looks at the interrupt flag while a command runs


class ChannelClosed(Exception):
    """The channel or its transport closed before the command's exit status arrived."""


class Cancelled(Exception):
    """The run was interrupted while the command ran."""


@dataclass
class TransportStats:
    """What one connection did in a run: counted, so benchmarks and reports can show round trips."""

    commands: int = 0
    transfers: int = 0
    seconds: float = 0.0
    connect_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "commands": self.commands,
            "transfers": self.transfers,
            "seconds": round(self.seconds, 3),
            "connect_seconds": round(self.connect_seconds, 3),
        }


def _alive(ch: paramiko.Channel, transport: paramiko.Transport) -> None:
    if ch.closed or not transport.is_active():
        raise ChannelClosed
    if CANCELLED.is_set():
        raise Cancelled


def _wait(ch: paramiko.Channel, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    select.select([ch], [], [], min(remaining, POLL))


def _wait_status(ch: paramiko.Channel, deadline: float) -> None:
    """Wait for the exit status. (Not with select: after EOF paramiko keeps the channel's pipe
    readable for good, so select returns at once and the loop would spin until the status comes.)"""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    ch.status_event.wait(min(remaining, POLL))


def exec_channel(
    transport: paramiko.Transport, command: str, stdin: bytes, limit: float
) -> tuple[int, str, str]:
    """Exec ``command`` on a new channel, send ``stdin`` then EOF, return (exit status, stdout, stderr).

    Raises ``TimeoutError`` after ``limit`` seconds, :class:`ChannelClosed` when the connection
    goes away first, :class:`Cancelled` when the run is interrupted.
    """
    if not transport.is_active():
        raise ChannelClosed
    deadline = time.monotonic() + limit
    ch = transport.open_session(timeout=limit)
    try:
        ch.exec_command(command)
        ch.sendall(stdin)
        ch.shutdown_write()
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            while ch.recv_ready():
                out.append(ch.recv(65536))
            while ch.recv_stderr_ready():
                err.append(ch.recv_stderr(65536))
            if ch.eof_received and not ch.recv_ready() and not ch.recv_stderr_ready():
                break
            _alive(ch, transport)
            _wait(ch, deadline)
        while not ch.exit_status_ready():
            _alive(ch, transport)
            _wait_status(ch, deadline)
        status = ch.recv_exit_status()
        if status == -1 and not transport.is_active():
            raise ChannelClosed  # closed without an exit status: the host went away
    finally:
        ch.close()
    return status, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace")
