"""nr.dist_info finds what importlib.metadata finds, without importing it."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

from nr import dist_info


def test_every_installed_distribution_has_the_version_importlib_metadata_gives() -> None:
    names = sorted({d.metadata["Name"] for d in metadata.distributions()})
    assert len(names) > 20  # the venv's: nr, nornir, paramiko, the dev tools...
    for name in names:
        assert dist_info.version(name) == metadata.version(name), name


@pytest.mark.parametrize(
    ("given", "normal"),
    [("nr-orchestrator", "nr_orchestrator"), ("Ruamel.YAML", "ruamel_yaml"), ("a--_.b", "a_b"), ("x", "x")],
)
def test_names_are_compared_normalized(given: str, normal: str) -> None:
    assert dist_info.normalize(given) == normal


def test_the_first_folder_on_sys_path_wins_and_blank_or_missing_metadata_gives_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, version in ((first, "2.0"), (second, "1.0")):
        info = folder / "demo_pkg-9.9.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: Demo-Pkg\nVersion: {version}\n\nVersion: 7\n"
        )
    (tmp_path / "c" / "empty-1.dist-info").mkdir(parents=True)
    monkeypatch.setattr(
        sys, "path", [str(tmp_path / "missing"), str(first), str(second), str(tmp_path / "c")]
    )
    assert dist_info.version("demo.pkg") == "2.0"
    assert dist_info.version("empty") is None  # no METADATA
    assert dist_info.version("absent") is None
    assert dist_info.find("demo-pkg") == str(first / "demo_pkg-9.9.dist-info")
