"""A backup on disk: one folder per backup, its manifest, checksums, modes and retention.

``<dest>/<site>-<UTC timestamp>/`` (0700) holds what each component wrote under ``<component>/``, a
copy of the inventory's files under ``inventory/``, ``secrets.enc`` when a key was given
(:mod:`nr.backup.secretbox`) and ``manifest.json``: what was backed up, from where, when, with which
versions, and the size and sha256 of every file. Every file is 0600.

A backup is written into ``<name>.partial/`` and renamed only when every component succeeded; a backup
that failed keeps that name and a manifest that says ``"complete": false`` and why. A restore refuses
both, and refuses any file whose sha256 differs from the manifest's, before touching a host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nr import __version__
from nr.errors import NrError
from nr.ops.fetch import Fetched, fetch, file_sha256
from nr.secrets import Secret
from nr.transport import Remote

FORMAT = "nr-backup/1"
MANIFEST = "manifest.json"
SECRETS_FILE = "secrets.enc"
PARTIAL = ".partial"
STAMP = "%Y%m%dT%H%M%SZ"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class BackupError(NrError):
    """A backup folder cannot be used (missing, incomplete, modified): bad input, nothing was touched."""


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, 0600 from the first byte on."""
    _private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    path.chmod(0o600)


@dataclass(frozen=True)
class SecretEntry:
    reference: str  # where the inventory keeps it (env:NAME, file:PATH, or a file nr generated)
    fingerprint: str  # nr.backup.secretbox.fingerprint of the value
    keep_at: str | None = None  # inventory-relative path a restore may write it back to (0600)


@dataclass
class Writer:
    """The folder being written (``<name>.partial``) and what was put in it."""

    root: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, SecretEntry] = field(default_factory=dict)
    values: dict[str, Secret] = field(default_factory=dict, repr=False)

    def _target(self, name: str) -> Path:
        if not _SAFE.match(name) or ".." in name.split("/"):
            raise NrError(f"backup file name {name!r} is not a plain relative path")
        return self.root / name

    def _record(self, name: str, path: Path) -> None:
        self.files[name] = {"sha256": file_sha256(path), "size": path.stat().st_size}

    def write(self, name: str, data: bytes) -> Path:
        path = self._target(name)
        write_private(path, data)
        self._record(name, path)
        return path

    def fetch(self, remote: Remote, remote_path: str, name: str, timeout: float | None = None) -> Fetched:
        path = self._target(name)
        _private_dir(path.parent)
        got = fetch(remote, remote_path, path, timeout=timeout)
        self.files[name] = {"sha256": got.sha256, "size": got.size}
        return got

    def part(self, component: str) -> Part:
        return Part(self, component)


@dataclass
class Part:
    """What a component sees of the folder: its own subfolder, and the backup's secrets."""

    writer: Writer
    component: str

    def name(self, name: str) -> str:
        return f"{self.component}/{name}"

    def path(self, name: str) -> Path:
        return self.writer.root / self.name(name)

    def write(self, name: str, data: bytes) -> str:
        self.writer.write(self.name(name), data)
        return self.name(name)

    def fetch(self, remote: Remote, remote_path: str, name: str, timeout: float | None = None) -> Fetched:
        """Copy a host's file into the backup over the host's connection (staged, sha256 checked)."""
        return self.writer.fetch(remote, remote_path, self.name(name), timeout)

    def secret(self, key: str, value: Secret, reference: str, keep_at: str | None = None) -> None:
        """A secret the restore needs: its reference and fingerprint are recorded; its value only goes
        into the encrypted secrets file, and only when the operator gave a key."""
        from nr.backup.secretbox import fingerprint

        full = f"{self.component}.{key}"
        self.writer.secrets[full] = SecretEntry(reference, fingerprint(value.reveal()), keep_at)
        self.writer.values[full] = value


def stamp(now: float | None = None) -> str:
    return time.strftime(STAMP, time.gmtime(time.time() if now is None else now))


def new_folder(dest: Path, site: str, now: float | None = None) -> tuple[Path, Path]:
    """(the ``.partial`` folder to write, the final name) for a new backup of ``site`` under ``dest``."""
    _private_dir(dest)
    base = f"{site}-{stamp(now)}"
    for n in range(1, 100):
        name = base if n == 1 else f"{base}-{n}"
        final, partial = dest / name, dest / (name + PARTIAL)
        if final.exists() or partial.exists():
            continue
        partial.mkdir(mode=0o700)
        return partial, final
    raise NrError(f"{dest}: too many backups named {base}*")


def manifest_doc(writer: Writer, *, site: str, created: float, complete: bool, **more: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "site": site,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "complete": complete,
        "nr_version": __version__,
        **more,
        "secrets": {
            k: {"reference": e.reference, "fingerprint": e.fingerprint, "keep_at": e.keep_at}
            for k, e in sorted(writer.secrets.items())
        },
        "files": dict(sorted(writer.files.items())),
    }


def write_manifest(root: Path, doc: Mapping[str, Any]) -> None:
    write_private(root / MANIFEST, (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode())


# -- reading a backup ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backup:
    """A complete backup whose every file matches the manifest (:func:`open_backup`)."""

    root: Path
    manifest: Mapping[str, Any]

    @property
    def site(self) -> str:
        return str(self.manifest.get("site", ""))

    @property
    def components(self) -> Mapping[str, Any]:
        comps: Mapping[str, Any] = self.manifest.get("components") or {}
        return comps

    def file(self, name: str) -> Path:
        if name not in (self.manifest.get("files") or {}):
            raise BackupError(f"{self.root}: the manifest lists no file {name}")
        return self.root / name


def _load_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise BackupError(f"{root}: no such backup folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{root}: no {MANIFEST} (not a backup, or one that never finished)") from None
    except (OSError, UnicodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise BackupError(f"{path}: not an nr backup manifest (format {found!r}, expected {FORMAT!r})")
    return doc


def open_backup(root: Path) -> Backup:
    """The backup in ``root``, refused (BackupError naming the file) unless complete and intact."""
    doc = _load_manifest(root)
    if doc.get("complete") is not True:
        why = "; ".join(f"{h}: {r}" for h, r in (doc.get("failed") or {}).items()) or "it did not finish"
        raise BackupError(f"{root}: an incomplete backup ({why}): it cannot be restored")
    problems = []
    for name, meta in (doc.get("files") or {}).items():
        path = root / name
        if not _SAFE.match(name) or ".." in name.split("/"):
            problems.append(f"{name}: not a plain relative path")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != meta.get("size") or file_sha256(path) != meta.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest (modified or corrupt)")
    if problems:
        raise BackupError(f"{root}: the backup is damaged, nothing was restored: " + "; ".join(problems))
    return Backup(root, doc)


# -- retention -------------------------------------------------------------------------------------------
def _ours(dest: Path, site: str) -> tuple[list[Path], list[Path]]:
    """(complete backups, partial ones) of ``site`` in ``dest``, oldest first."""
    pattern = re.compile(rf"^{re.escape(site)}-\d{{8}}T\d{{6}}Z(-\d+)?(\{PARTIAL})?$")
    complete, partial = [], []
    for p in sorted(dest.iterdir()) if dest.is_dir() else []:
        if not p.is_dir() or not pattern.match(p.name):
            continue
        if p.name.endswith(PARTIAL):
            partial.append(p)
            continue
        try:
            if _load_manifest(p).get("complete") is True:
                complete.append(p)
        except BackupError:
            continue
    return complete, partial


def prune(dest: Path, site: str, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest complete backups of ``site``, and partial ones older than the
    oldest kept. Folders that are not backups of the site are never touched."""
    complete, partial = _ours(dest, site)
    if keep < 1 or len(complete) <= 0:
        return []
    gone = complete[:-keep] if len(complete) > keep else []
    kept = complete[-keep:]
    oldest = kept[0].name
    gone += [p for p in partial if p.name.removesuffix(PARTIAL) < oldest]
    for p in gone:
        shutil.rmtree(p)
    return gone
