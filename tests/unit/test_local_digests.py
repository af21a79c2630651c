"""Large local files' digests, remembered across runs while the file stays the same file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from nr import local_digests
from nr.local_digests import LARGE, local_sha256, store


def noted(path: Path, digest: str) -> None:
    """Replace the remembered digest of ``path`` (identity kept): shows where an answer comes from. The
    next call is a later run's (this process's own memory of digests is dropped)."""
    entries = json.loads(store().read_text())
    entries[str(path.resolve())][5] = digest
    store().write_text(json.dumps(entries))
    local_digests._digest.cache_clear()


def test_a_large_file_is_hashed_once_while_it_stays_the_same_file(tmp_path: Path) -> None:
    big = tmp_path / "k3s"
    big.write_bytes(b"\x7fELF" + b"x" * LARGE)
    real = hashlib.sha256(big.read_bytes()).hexdigest()
    assert local_sha256(big) == real
    assert oct(store().stat().st_mode & 0o777) == "0o600"
    assert oct(store().parent.stat().st_mode & 0o777) == "0o700"

    noted(big, "e" * 64)
    assert local_sha256(big) == "e" * 64  # a later run: not hashed again

    big.chmod(0o700)  # same bytes, size and mtime; a new ctime
    assert local_sha256(big) == real
    os.utime(big, ns=(0, 0))
    noted(big, "e" * 64)
    big.write_bytes(big.read_bytes())  # rewritten in place: new mtime and ctime
    assert local_sha256(big) == real


def test_small_files_are_not_remembered(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"y" * (LARGE - 1))
    assert local_sha256(small) == hashlib.sha256(small.read_bytes()).hexdigest()
    assert not store().exists()


def test_a_store_others_may_write_is_neither_read_nor_replaced(tmp_path: Path) -> None:
    big = tmp_path / "images.tar"
    big.write_bytes(b"z" * LARGE)
    real = hashlib.sha256(big.read_bytes()).hexdigest()
    local_sha256(big)
    noted(big, "e" * 64)
    store().chmod(0o666)
    before = store().read_text()
    assert local_sha256(big) == real
    assert store().read_text() == before


def test_entries_beyond_the_limit_go_oldest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_digests, "KEEP", 2)
    paths = []
    for name in ("a", "b", "c"):
        p = tmp_path / name
        p.write_bytes(name.encode() * LARGE)
        local_sha256(p)
        paths.append(str(p.resolve()))
    assert list(json.loads(store().read_text())) == paths[1:]
