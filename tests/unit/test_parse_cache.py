"""Inventory files read before come from the parse cache, by content: never a stale or a wrong value."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from nr.inventory import parse_cache, yaml_parse
from nr.inventory.loader import InventoryError, load_yaml

HOSTS = "vm1:\n  hostname: 192.168.64.11\n  groups: [k3s_server, redis]\n  data: {weight: 1.5, enabled: true, x: null}\n"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the YAML parser was given."""
    seen: list[str] = []
    real = yaml_parse.parse

    def counting(path: Path, text: str) -> Any:
        seen.append(text)
        return real(path, text)

    monkeypatch.setattr(yaml_parse, "parse", counting)
    return seen


def test_the_same_bytes_are_parsed_once_and_an_edit_is_parsed_again(
    tmp_path: Path, parses: list[str]
) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(HOSTS)
    first = load_yaml(path, required=True)
    assert load_yaml(path, required=True) == first and len(parses) == 1
    assert first["vm1"]["data"] == {"weight": 1.5, "enabled": True, "x": None}
    assert type(first["vm1"]["data"]["enabled"]) is bool
    path.write_text(HOSTS.replace("192.168.64.11", "192.168.64.12"))
    assert load_yaml(path, required=True)["vm1"]["hostname"] == "192.168.64.12" and len(parses) == 2
    other = tmp_path / "copy.yaml"  # another file with the same bytes: the same document
    other.write_text(HOSTS)
    assert load_yaml(other, required=True) == first and len(parses) == 2


def test_errors_are_never_kept(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("vm1: {}\nvm1: {}\n")
    for _ in range(2):
        with pytest.raises(InventoryError, match="duplicate key 'vm1'"):
            load_yaml(path, required=True)
    assert len(parses) == 2 and not list(parse_cache.folder().glob("*.json"))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("since: 2024-01-02\n", datetime.date),
        ("blob: !!binary aGk=\n", bytes),
        ("1: one\n", int),  # an integer key: JSON would make it "1"
        ("on: yes\n", bool),  # YAML 1.1: the key is True
        ("big: .inf\n", float),
    ],
)
def test_what_json_would_change_is_parsed_every_time(
    tmp_path: Path, parses: list[str], text: str, kind: type
) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(text)
    for _ in range(2):
        ((key, value),) = load_yaml(path, required=True).items()
        assert type(key if kind in (int, bool) else value) is kind
    assert len(parses) == 2 and not list(parse_cache.folder().glob("*.json"))


def test_entries_are_private_and_a_damaged_one_is_a_miss(tmp_path: Path, parses: list[str]) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(HOSTS)
    expected = load_yaml(path, required=True)
    (entry,) = parse_cache.folder().glob("*.json")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(parse_cache.folder().stat().st_mode) == 0o700
    entry.write_text('{"vm1": {"hostna')
    assert load_yaml(path, required=True) == expected and len(parses) == 2


def test_a_cache_that_cannot_be_written_changes_nothing(
    tmp_path: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    path = tmp_path / "hosts.yaml"
    path.write_text(HOSTS)
    assert load_yaml(path, required=True)["vm1"]["hostname"] == "192.168.64.11"
    assert load_yaml(path, required=True)["vm1"]["hostname"] == "192.168.64.11" and len(parses) == 2


def test_only_the_newest_entries_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_cache, "KEEP", 3)
    for n in range(5):
        path = tmp_path / f"f{n}.yaml"
        path.write_text(f"n: {n}\n")
        load_yaml(path, required=True)
        entries = list(parse_cache.folder().glob("*.json"))
        os.utime(max(entries, key=lambda p: p.stat().st_mtime_ns), (n + 10, n + 10))  # distinct, ordered
    assert len(list(parse_cache.folder().glob("*.json"))) == 3


def test_a_value_json_cannot_write_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text('a: "\\ud800"\n')  # a lone surrogate: valid YAML, not writable as UTF-8
    assert load_yaml(path, required=True) == {"a": "\ud800"}
    assert not parse_cache.folder().exists() or not list(parse_cache.folder().iterdir())


def test_a_new_parser_parses_again(
    tmp_path: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade of nr's YAML parsing (or of PyYAML) must see every file again: a parser that now
    refuses what an older one took cannot be bypassed by what the older one cached."""
    path = tmp_path / "hosts.yaml"
    path.write_text(HOSTS)
    load_yaml(path, required=True)
    load_yaml(path, required=True)
    assert len(parses) == 1
    module = Path(yaml_parse.__file__)
    assert str(module).encode() in parse_cache.parser_stamp()
    before = module.stat()
    try:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # "upgraded"
        parse_cache.parser_stamp.cache_clear()
        load_yaml(path, required=True)
        assert len(parses) == 2
        load_yaml(path, required=True)
        assert len(parses) == 2
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
        parse_cache.parser_stamp.cache_clear()
