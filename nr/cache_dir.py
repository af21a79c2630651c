"""Where nr keeps what it can fetch or compute again: ``$XDG_CACHE_HOME/nr`` (``~/.cache/nr``), and
how a cache file whose content nr trusts (code to run, digests that vouch for files) is read and written."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nr"


def private(st: os.stat_result) -> bool:
    """A regular file of this user's that no one else may write: the only kind whose content is trusted."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def read_private(path: Path) -> bytes | None:
    """``path``'s content if it is :func:`private`, else (or unreadable, or absent) None."""
    try:
        with open(path, "rb") as f:
            return f.read() if private(os.fstat(f.fileno())) else None
    except OSError:
        return None


def replace_private(path: Path, data: bytes) -> None:
    """``path`` replaced at once by ``data``, 0600 in a 0700 folder; an existing file that is not
    :func:`private` is left as it is. Raises OSError (callers treat a cache they cannot write as none)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if not private(os.stat(path)):
            return
    except FileNotFoundError:
        pass
    part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
