"""Paramiko's SFTP read-ahead thread: its errors go to the thread that reads, not to stderr."""

from __future__ import annotations

from typing import Any

import paramiko


def keep_prefetch_errors_for_the_reader() -> None:
    """Paramiko's ``SFTPFile`` reads ahead on a thread of its own (``_prefetch_thread``, started by
    ``prefetch()``, which ``SFTPClient.get`` uses), and lets a lost connection's error escape it: a
    traceback on stderr after nr has reported the host lost. The error is kept where Paramiko keeps
    a read's errors for the reading thread (``_saved_exception``, raised by the file's next read)."""
    cls = paramiko.SFTPFile
    original = getattr(cls, "_prefetch_thread", None)  # private: a Paramiko without it is left alone
    if original is None or getattr(original, "nr_keeps_errors", False):
        return

    def prefetch_thread(self: paramiko.SFTPFile, *args: Any) -> None:
        try:
            original(self, *args)
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self._saved_exception = exc  # type: ignore[attr-defined]

    prefetch_thread.nr_keeps_errors = True  # type: ignore[attr-defined]
    setattr(cls, "_prefetch_thread", prefetch_thread)  # noqa: B010 (not in Paramiko's stubs)
