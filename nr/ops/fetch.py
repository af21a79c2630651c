"""Fetching a file from a host over its SSH connection, checked end to end (the reverse of ``plan_upload``).

Files worth fetching (database snapshots) belong to root or a service user, and SFTP runs as the login
user. :func:`fetch` therefore works in three steps on the one connection the run already has:

1. a script (as root) copies the file into the login user's home under a unique name (mode 0600, owned
   by the login user; the copy reads one inode, so a file replaced by a rename meanwhile is still copied
   whole) and prints its sha256 and size;
2. SFTP copies it here (:meth:`nr.transport.Remote.get`);
3. the staged copy is removed, and the local copy is checked against the host's sha256.

A staged copy a killed run leaves behind has the upload prefix: the next apply on the host removes it
after 30 minutes (:func:`nr.lock.host_lock_script`).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from shlex import quote

from nr.errors import NrError
from nr.lock import UPLOAD_PREFIX
from nr.transport import CommandFailed, Remote

MISSING_EXIT = 3


@dataclass(frozen=True)
class Fetched:
    """A file copied from a host: where it was, and what the host and this machine agree it holds."""

    remote_path: str
    local: Path
    sha256: str
    size: int


def stage_script(path: str, staged: str) -> str:
    """Copy ``path`` to ``staged`` (relative: the login user's home), readable by the login user only."""
    src, tmp = quote(path), quote(staged)
    return "\n".join(
        [
            "set -e",
            f"if [ ! -f {src} ]; then echo {quote(f'{path}: no such file')} >&2; exit {MISSING_EXIT}; fi",
            "umask 077",
            f"cp {src} {tmp}",
            f'chown "${{SUDO_USER:-$(id -un)}}" {tmp}',  # under sudo: the login user SFTP runs as
            f"sha256sum {tmp} | cut -d ' ' -f 1",
            f"stat -c %s {tmp}",
        ]
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(remote: Remote, path: str, local: Path, *, timeout: float | None = None) -> Fetched:
    """Copy the host's ``path`` to ``local`` (written 0600); NrError naming host and path on any failure."""
    staged = f"{UPLOAD_PREFIX}get-{secrets.token_hex(8)}"
    try:
        res = remote.run(stage_script(path, staged), timeout=timeout)
    except CommandFailed as exc:
        detail = exc.result.stderr.strip()[-300:] or f"exit {exc.result.exited}"
        raise NrError(f"{remote.name}: cannot read {path}: {detail}") from None
    lines = res.stdout.split()
    if len(lines) != 2 or not lines[1].isdigit():
        raise NrError(f"{remote.name}: unexpected answer while staging {path}: {res.stdout[-200:]!r}")
    digest, size = lines[0], int(lines[1])
    local.parent.mkdir(parents=True, exist_ok=True)
    local.touch(mode=0o600, exist_ok=True)
    local.chmod(0o600)
    try:
        remote.get(staged, local)
    finally:
        with contextlib.suppress(NrError):  # a host lost meanwhile: its error is the one to report
            remote.run(f"rm -f {quote(staged)}", check=False, timeout=60)
    local.chmod(0o600)
    got = file_sha256(local)
    if got != digest or local.stat().st_size != size:
        local.unlink(missing_ok=True)
        raise NrError(
            f"{remote.name}: the copy of {path} is corrupt (sha256 {got[:12]} here, {digest[:12]} on the host)"
        )
    return Fetched(path, local, digest, size)
