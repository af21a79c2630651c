"""Locks: one run at a time per inventory (on this machine) and per host (on the host).

* :class:`RunLock` is an ``flock`` on ``<inventory>/.nr.lock``, taken by ``nr run`` (not by a dry
  run, ``check``, ``drift`` or ``inventory``, which change nothing and may run alongside). The file
  holds who has it (pid, user, command, since when) for the message a second run gets. The kernel
  drops the lock when the process dies, so a killed run never leaves a stale lock behind.
* :func:`host_lock_script` is the start of every apply round trip: an ``flock`` on
  ``/run/nr.lock`` held while the changes are made, so two runs from different inventories or
  machines never change one host at the same time. ``/run`` is a tmpfs: a reboot clears it.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from shlex import quote
from typing import IO

from nr.errors import NrError
from nr.text import clip, command

LOCK_NAME = ".nr.lock"
HOST_LOCK = "/run/nr.lock"
HOST_LOCKED_EXIT = 75  # EX_TEMPFAIL: try again later
UPLOAD_PREFIX = ".nr-upload-"
STALE_UPLOAD_MINUTES = 30  # an upload not written to for this long was left by a killed run


@dataclass(frozen=True)
class Holder:
    pid: int
    user: str
    host: str
    command: str
    since: float

    @classmethod
    def me(cls) -> Holder:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return cls(os.getpid(), user, socket.gethostname(), command("nr", sys.argv[1:]), time.time())

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return (
            f"pid {self.pid} of user {clip(self.user, 40)} on {clip(self.host, 64)} "
            f"({clip(self.command, 200)}), since {since}"
        )


HOLDER = Holder.me()


class Locked(NrError):
    """Another run holds the lock."""


class RunLock:
    """The inventory's lock: ``with RunLock(folder):`` or :meth:`acquire`/:meth:`release`."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fh: IO[str] | None = None

    def _open(self) -> IO[str]:
        """The lock file in the inventory folder; for a folder this user cannot write (a read-only
        checkout), one in ~/.cache/nr/locks named after the folder's absolute path."""
        try:
            return self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            first = exc
        digest = hashlib.sha256(str(self.path.parent.resolve()).encode()).hexdigest()[:16]
        fallback = Path("~/.cache/nr/locks").expanduser() / f"{digest}.lock"
        try:
            fallback.parent.mkdir(parents=True, exist_ok=True)
            fh = fallback.open("a+", encoding="utf-8")
        except OSError:
            raise Locked(f"{self.path}: cannot create the inventory's lock file: {first.strerror}") from None
        self.path = fallback
        return fh

    def acquire(self) -> None:
        fh = self._open()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _read_holder(fh)
            fh.close()
            raise Locked(
                f"another nr run is changing this inventory: {who}; wait for it to finish "
                f"(lock file {self.path}; read-only commands such as nr drift and nr check may run meanwhile)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(asdict(HOLDER)) + "\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.close()  # closing drops the flock
            self._fh = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fh: IO[str]) -> str:
    fh.seek(0)
    try:
        doc = json.loads(fh.read(4096) or "{}")
        return Holder(**doc).describe()
    except (ValueError, TypeError):
        return "a process whose details are not recorded"


def host_lock_script(holder: Holder = HOLDER, lock: str | None = None) -> str:
    """Shell that takes the host's lock (``lock``, default :data:`HOST_LOCK`) for the rest of the
    script (fd 9) or fails, naming the holder; then removes uploads killed runs left in the login
    user's home (the working directory)."""
    lock = lock or HOST_LOCK
    me, path, who = quote(holder.describe()), quote(lock), quote(lock + ".holder")
    return "\n".join(
        [
            f"exec 9>>{path}",
            "if ! flock -n 9; then",
            f'  echo "another nr run is changing this host: $(cat {who} 2>/dev/null || echo unknown)'
            '; try again when it has finished" >&2',
            f"  exit {HOST_LOCKED_EXIT}",
            "fi",
            f"printf '%s\\n' {me} > {who}",
            f"find . -maxdepth 1 -name '{UPLOAD_PREFIX}*' -type f -mmin +{STALE_UPLOAD_MINUTES} "
            "-exec rm -f {} + 2>/dev/null || true",
        ]
    )
