"""The image tarball cache of tasks.deploy.local: a no-op run re-uses a saved tarball, and two
versions run in turn (e.g. a benchmark of this checkout against main) do not delete each other's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.deploy import local

IDS = {"v1": "sha256:" + "1" * 64, "v2": "sha256:" + "2" * 64, "v3": "sha256:" + "3" * 64,
       "v4": "sha256:" + "4" * 64}  # fmt: skip


@pytest.fixture
def saves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``docker save -o FILE REF`` without Docker: writes FILE, records REF."""
    done: list[str] = []

    def docker(*args: str, timeout: float = 600) -> str:
        assert args[:2] == ("save", "-o")
        Path(args[2]).write_bytes(b"tar")
        done.append(args[3])
        return ""

    monkeypatch.setattr(local, "docker", docker)
    return done


def save(cache: Path, version: str) -> Path | None:
    return local.save("aeroalpes", f"aeroalpes:{version}", IDS[version], f"0.1.0-{version}", dry_run=False,
                      cache=cache)  # fmt: skip


def test_two_versions_in_turn_save_each_image_once(tmp_path: Path, saves: list[str]) -> None:
    for _ in range(3):
        for version in ("v1", "v2"):
            tarball = save(tmp_path, version)
            assert tarball is not None and tarball.exists()
    assert saves == ["aeroalpes:v1", "aeroalpes:v2"]


def test_only_the_most_recently_used_tarballs_stay(tmp_path: Path, saves: list[str]) -> None:
    v1, v2, v3 = (save(tmp_path, v) for v in ("v1", "v2", "v3"))
    assert v1 and v2 and v3
    for age, path in enumerate((v3, v2, v1)):  # v1 oldest by mtime ...
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    assert save(tmp_path, "v1") == v1  # ... until it is used again
    v4 = save(tmp_path, "v4")
    assert v4 is not None
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == sorted(p.name for p in (v1, v3, v4))
    assert local.KEEP == 3


def test_a_dry_run_writes_nothing(tmp_path: Path, saves: list[str]) -> None:
    assert (
        local.save("aeroalpes", "aeroalpes:v1", IDS["v1"], "0.1.0-v1", dry_run=True, cache=tmp_path) is None
    )
    tarball = save(tmp_path, "v1")
    assert tarball is not None
    os.utime(tarball, (1000, 1000))
    assert (
        local.save("aeroalpes", "aeroalpes:v1", IDS["v1"], "0.1.0-v1", dry_run=True, cache=tmp_path)
        == tarball
    )
    assert tarball.stat().st_mtime == 1000
    assert saves == ["aeroalpes:v1"]
