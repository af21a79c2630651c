"""The backup folder (nr/backup/folder.py) and the secrets file (nr/backup/secretbox.py): names, modes,
the manifest, what makes a backup unusable (incomplete, a file missing or modified), retention, and
secrets that are never in clear."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from nr.backup.folder import (
    FORMAT,
    BackupError,
    Writer,
    manifest_doc,
    new_folder,
    open_backup,
    prune,
    write_manifest,
)
from nr.backup.secretbox import BoxError, fingerprint, seal, unseal
from nr.secrets import Secret

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def mode(p: Path) -> str:
    return oct(stat.S_IMODE(p.stat().st_mode))


def make(
    dest: Path, site: str = "lab", now: float = NOW, *, complete: bool = True, data: bytes = b"x"
) -> Path:
    partial, final = new_folder(dest, site, now)
    w = Writer(partial)
    w.write("redis/shard-1.rdb", data)
    write_manifest(
        partial, manifest_doc(w, site=site, created=now, complete=complete, components={"redis": {}})
    )
    if complete:
        partial.rename(final)
        return final
    return partial


def test_a_backup_is_a_private_folder_named_after_the_site_and_utc_time(tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    partial, final = new_folder(dest, "lab", NOW)
    assert final.name == "lab-20260101T000000Z" and partial.name == "lab-20260101T000000Z.partial"
    assert mode(dest) == "0o700" and mode(partial) == "0o700"
    _, second = new_folder(dest, "lab", NOW)  # the same second: never the same folder
    assert second.name == "lab-20260101T000000Z-2"
    w = Writer(partial)
    w.write("k3s/state.db", b"data")
    assert mode(partial / "k3s") == "0o700" and mode(partial / "k3s" / "state.db") == "0o600"
    with pytest.raises(Exception, match="not a plain relative path"):
        w.write("../escape", b"x")


def test_the_manifest_lists_every_file_with_its_sha256_and_size(tmp_path: Path) -> None:
    path = make(tmp_path, data=b"RDB")
    doc = json.loads((path / "manifest.json").read_text())
    assert doc["format"] == FORMAT and doc["site"] == "lab" and doc["complete"] is True
    assert doc["created"] == "2026-01-01T00:00:00Z"
    assert doc["files"] == {"redis/shard-1.rdb": {"sha256": hashlib.sha256(b"RDB").hexdigest(), "size": 3}}
    assert mode(path / "manifest.json") == "0o600"
    assert open_backup(path).site == "lab"


def test_an_incomplete_backup_is_refused_with_why(tmp_path: Path) -> None:
    partial, _ = new_folder(tmp_path, "lab", NOW)
    w = Writer(partial)
    write_manifest(
        partial, manifest_doc(w, site="lab", created=NOW, complete=False, failed={"vm2": "BGSAVE: disk full"})
    )
    with pytest.raises(
        BackupError, match=r"an incomplete backup \(vm2: BGSAVE: disk full\): it cannot be restored"
    ):
        open_backup(partial)


@pytest.mark.parametrize("damage", ["modify", "truncate", "delete"])
def test_a_file_that_is_not_what_the_manifest_says_is_named_and_refused(tmp_path: Path, damage: str) -> None:
    path = make(tmp_path, data=b"0123456789")
    f = path / "redis" / "shard-1.rdb"
    if damage == "modify":
        f.write_bytes(b"0123456780")
    elif damage == "truncate":
        f.write_bytes(b"01234")
    else:
        f.unlink()
    with pytest.raises(
        BackupError, match=r"the backup is damaged, nothing was restored: redis/shard-1.rdb: "
    ):
        open_backup(path)


def test_things_that_are_not_backups_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no such backup folder"):
        open_backup(tmp_path / "nope")
    with pytest.raises(BackupError, match=r"no manifest\.json"):
        open_backup(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(BackupError, match=r"not an nr backup manifest \(format 'other/9'"):
        open_backup(tmp_path)


def test_retention_keeps_the_newest_complete_backups_of_the_site_only(tmp_path: Path) -> None:
    olds = [make(tmp_path, now=NOW + i * 3600) for i in range(4)]
    failed = make(tmp_path, now=NOW + 1800, complete=False)  # between the 1st and 2nd
    recent_failed = make(tmp_path, now=NOW + 5 * 3600, complete=False)
    other_site = make(tmp_path, site="prod", now=NOW)
    stranger = tmp_path / "lab-notes"
    stranger.mkdir()
    gone = prune(tmp_path, "lab", keep=2)
    assert sorted(gone) == sorted([olds[0], olds[1], failed])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([olds[2].name, olds[3].name, recent_failed.name, other_site.name, "lab-notes"])


def test_secrets_are_sealed_with_a_passphrase_and_only_open_with_it() -> None:
    key = Secret("correct horse battery staple", "test")
    blob = seal({"k3s.token": "K10abc::server:0123456789abcdef"}, key)
    assert b"0123456789abcdef" not in blob and b"server" not in blob
    assert unseal(blob, key) == {"k3s.token": "K10abc::server:0123456789abcdef"}
    with pytest.raises(BoxError, match="the passphrase is wrong, or the file was modified"):
        unseal(blob, Secret("another passphrase, long enough", "test"))
    doc = json.loads(blob)
    doc["kdf"]["n"] = 2**14  # the header is authenticated too
    with pytest.raises(BoxError, match="wrong, or the file was modified"):
        unseal(json.dumps(doc).encode(), key)
    with pytest.raises(BoxError, match="use at least 16"):
        seal({"a": "b"}, Secret("short-pass", "test"))
    with pytest.raises(BoxError, match="not an nr secrets file"):
        unseal(b'{"format": "x"}', key)


def test_a_fingerprint_compares_secrets_without_revealing_them() -> None:
    a = fingerprint("0123456789abcdef0123")
    assert a == fingerprint("0123456789abcdef0123") and a != fingerprint("0123456789abcdef0124")
    assert "0123456789" not in a and len(a) == 32


def test_write_private_never_has_a_wider_mode(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = make(tmp_path)
    finally:
        os.umask(old)
    assert {mode(p) for p in path.rglob("*") if p.is_file()} == {"0o600"}
    assert {mode(p) for p in [path, *path.rglob("*")] if p.is_dir()} == {"0o700"}
