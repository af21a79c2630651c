"""sha256 of local files, large ones remembered across runs while they stay the same file.

Every run compares what it installs from local files (a 70 MB binary, an image tarball of hundreds of
MB) with the hosts' copies, so it needs their digests: hashing them again on every run costs 0.1 to several
seconds. A large file's digest is kept in ``$XDG_CACHE_HOME/nr/digests.json`` with the file's identity
(device, inode, size, mtime and ctime in nanoseconds), as git's index keeps its stat data: any write,
rename or chmod changes the ctime, and the file is hashed again. The file is 0600 in a 0700 folder,
replaced at once when an entry is added; one that is not this user's, or that others may write, is
neither read nor replaced (its digests could vouch for a file they do not describe).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
from pathlib import Path

from nr.cache_dir import cache_root, read_private, replace_private

LARGE = 1 << 20  # smaller files are hashed each run (in a millisecond), and not remembered
KEEP = 256  # entries kept (the oldest go first)
_LOCK = threading.Lock()


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def store() -> Path:
    return cache_root() / "digests.json"


def _load(path: Path) -> dict[str, list[object]]:
    raw = read_private(path)
    with contextlib.suppress(ValueError):
        data = json.loads(raw) if raw is not None else None
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 6}
    return {}


def _save(path: Path, entries: dict[str, list[object]]) -> None:
    with contextlib.suppress(OSError):
        replace_private(path, json.dumps(dict(list(entries.items())[-KEEP:])).encode())


def _hash(path: Path) -> tuple[str, list[int] | None]:
    """The digest, and the identity the file had throughout (None: it changed while it was read)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        before = _identity(os.fstat(fh.fileno()))
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        after = _identity(os.fstat(fh.fileno()))
    return h.hexdigest(), before if before == after else None


def local_sha256(path: Path) -> str:
    """sha256 of a local file: a large one's from :func:`store` while its identity is the one noted
    (within a run, every file's digest is kept by its identity: a run asks once per host)."""
    resolved = path.resolve()
    return _digest(resolved, tuple(_identity(resolved.stat())))


@functools.lru_cache(maxsize=64)
def _digest(path: Path, identity: tuple[int, ...]) -> str:
    if identity[2] < LARGE:
        return _hash(path)[0]
    key = str(path)
    with _LOCK:
        known = _load(store()).get(key)
    if known is not None and tuple(known[:5]) == identity and isinstance(known[5], str):
        return known[5]
    digest, held = _hash(path)
    if held is not None:
        with _LOCK:
            entries = _load(store())
            entries.pop(key, None)
            entries[key] = [*held, digest]
            _save(store(), entries)
    return digest
