"""One SSH exec channel, driven directly: send a script on stdin, collect stdout and stderr apart.

(Invoke's stdin pump reads non-tty streams one byte per 10 ms; a script of a few KiB would take
seconds, so the channel is driven with select() on both streams.) The loop never waits for an EOF
that cannot come: it leaves as soon as the channel or its transport is closed (the host went away,
or :class:`nr.keepalive.Watchdog` gave up on it) or the run is interrupted.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko

from nr.errors import NrError
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
    transport: paramiko.Transport,
    command: str,
    stdin: bytes,
    limit: float,
    gate: SessionGate | None = None,
    name: str = "",
    release: Callable[[], bool] | None = None,
) -> tuple[int, str, str]:
    """Exec ``command`` on a new channel, send ``stdin`` then EOF, return (exit status, stdout, stderr).

    Raises ``TimeoutError`` after ``limit`` seconds, :class:`ChannelClosed` when the connection
    goes away first, :class:`Cancelled` when the run is interrupted. With a ``gate`` (the connection's
    :class:`SessionGate`; ``name`` names the host), a session sshd refuses waits for one of ours
    (``release``: see :meth:`SessionGate.open`).
    """
    if not transport.is_active():
        raise ChannelClosed
    deadline = time.monotonic() + limit
    if gate is not None:
        ch = gate.open(name, transport, deadline, release)
    else:
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
        if gate is not None:
            gate.closed()
    return status, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace")


class _RefusedSessions(logging.Filter):
    """Drops paramiko's log line of a channel sshd refused ("Secsh channel N open FAILED", at ERROR, which
    Python's last-resort handler would print): :class:`SessionGate` waits those out, or names them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            isinstance(record.msg, str) and "open FAILED" in record.msg and "Secsh channel" in record.msg
        )


logging.getLogger("paramiko.transport").addFilter(_RefusedSessions())


class SessionGate:
    """The sessions nr holds open on one connection, so that a refused one can wait for one to close.

    The reads of several components go over one host's connection at once, each on a channel of its
    own. sshd refuses a session past its ``MaxSessions`` (10 by default, fewer on hardened hosts): its
    ``session_new`` finds no slot, and ``server_input_channel_open`` answers "open failed" with reason
    SSH2_OPEN_CONNECT_FAILED (OpenSSH serverloop.c, session.c; paramiko shows it as ChannelException(2,
    'Connect failed')). The open then waits until a session of ours closes and asks again, within the
    command's deadline. Refused while we hold none (sshd may not have freed one that just closed), it
    asks a few more times, then fails with that reason.
    """

    ALONE_TRIES = 10  # 50 ms apart
    FREED_GRACE = 2.0  # seconds after we closed a session in which a refusal is not yet "alone"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = 0
        self._closed = 0

    def open(
        self,
        name: str,
        transport: paramiko.Transport,
        deadline: float,
        release: Callable[[], bool] | None = None,
    ) -> paramiko.Channel:
        """A new session channel; when sshd refuses it, ``release`` (if given) may close an idle session
        of ours (True if it did), asked again at each wait."""
        alone = 0
        freed = 0.0  # when release() last closed a session: sshd frees its slot a moment later
        while True:
            if time.monotonic() >= deadline:
                raise TimeoutError
            with self._cond:
                seen = self._closed
            try:
                ch = transport.open_session(timeout=max(0.001, deadline - time.monotonic()))
            except paramiko.SSHException as exc:
                if not _refused(exc, transport):
                    raise
                if release is not None and release():
                    freed = time.monotonic()
                    continue
                with self._cond:
                    held = self._held
                alone = 0 if held or time.monotonic() - freed < self.FREED_GRACE else alone + 1
                if alone > self.ALONE_TRIES:
                    raise NrError(
                        f"{name}: sshd refused to open a session ({exc}: its MaxSessions, or a Match rule "
                        "for this user)"
                    ) from None
                self._wait(seen if held else None, deadline, once=release is not None)
                continue
            with self._cond:
                self._held += 1
            return ch

    def closed(self) -> None:
        """A session :meth:`open` gave has closed."""
        with self._cond:
            self._held -= 1
            self._closed += 1
            self._cond.notify_all()

    def _wait(self, seen: int | None, deadline: float, *, once: bool = False) -> None:
        """Until a session of ours closes after the ``seen``-th, or (None: we hold none) 50 ms; ``once``:
        at most one poll interval (a session held idle may be released by then)."""
        with self._cond:
            while seen is None or self._closed <= seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._cond.wait(min(remaining, POLL if seen is not None else 0.05))
                if CANCELLED.is_set():
                    raise Cancelled
                if seen is None or once:
                    return


def _refused(exc: paramiko.SSHException, transport: paramiko.Transport) -> bool:
    """sshd refused a session channel (the connection stays up): reason 2 from OpenSSH, 1
    (administratively prohibited) from other servers. paramiko keeps one failure per transport
    (``saved_exception``), so of two opens refused at once one may get the other's ChannelException and
    the other a bare "Unable to open channel." (paramiko transport.py open_channel)."""
    if isinstance(exc, paramiko.ChannelException):
        return exc.code in (
            paramiko.common.OPEN_FAILED_CONNECT_FAILED,
            paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
        )
    return (
        type(exc) is paramiko.SSHException and str(exc) == "Unable to open channel." and transport.is_active()
    )
