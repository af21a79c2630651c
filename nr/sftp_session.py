"""The SFTP session of one SSH connection (Fabric's, which its put and get use), counted as a session.

sshd allows ``MaxSessions`` sessions on a connection (10 by default, 1 on some hardened hosts), and a
command and a copy each need one. The session is opened through the connection's
:class:`nr.channel.SessionGate`, so that past that limit a copy waits for a slot as a command does;
Fabric keeps it open after a copy, and a command sshd refuses while no copy uses it gets it closed
(:meth:`SftpSession.release`) and asks again.
"""

from __future__ import annotations

import contextlib
import threading
import time

import paramiko
from fabric import Connection

from nr.channel import ChannelClosed, SessionGate
from nr.errors import NrError


class SftpSession:
    """``conn``'s SFTP client, one copy at a time (:attr:`lock`, held by the copy)."""

    def __init__(self, name: str, conn: Connection, gate: SessionGate, timeout: float) -> None:
        self.name = name
        self.conn = conn
        self.gate = gate
        self.timeout = timeout
        self.lock = threading.Lock()

    def open(self, transport: paramiko.Transport) -> None:
        """Open the session unless it is open (the caller holds :attr:`lock`)."""
        if self.conn._sftp is not None:
            return
        try:
            ch = self.gate.open(self.name, transport, time.monotonic() + self.timeout)
        except TimeoutError:
            raise NrError(
                f"{self.name}: no SSH session free for a file copy within {self.timeout:.0f} s "
                "(command_timeout; sshd's MaxSessions)"
            ) from None
        try:
            ch.invoke_subsystem("sftp")
            self.conn._sftp = paramiko.SFTPClient(ch)
        except BaseException:
            ch.close()
            self.gate.closed()
            raise

    def release(self) -> bool:
        """Close the session unless a copy is using it; True if one was closed."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            sftp, self.conn._sftp = self.conn._sftp, None
            if sftp is None:
                return False
            with contextlib.suppress(Exception):
                sftp.close()
            self.gate.closed()
            return True
        finally:
            self.lock.release()

    def remove(self, path: str) -> None:
        """Best effort: remove a half-written upload (an apply removes old leftovers anyway); nothing
        without a session (the copy never started)."""
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError, ChannelClosed), self.lock:
            if self.conn._sftp is not None:
                self.conn._sftp.remove(path)
