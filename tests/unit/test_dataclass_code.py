"""nr.dataclass_code: the methods dataclasses write are compiled once and kept; classes behave the same.

Each case runs a fresh interpreter (the cache is read at install and written at exit), with its own
``XDG_CACHE_HOME``."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nr import dataclass_code
from nr.dataclass_code import KEEP

CLASSES = """
import dataclasses, json
from dataclasses import dataclass, field

@dataclass(frozen=True, order=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list, compare=False, hash=False)

@dataclass(slots=True, kw_only=True)
class Conf:
    name: str
    port: int = 22

p, q = Point(1, 2, ["a"]), Point(1, 2)
try:
    p.x = 5
    frozen = "no error"
except dataclasses.FrozenInstanceError as exc:
    frozen = type(exc).__name__
c = Conf(name="h")
c.port = 2222
try:
    Conf("h")
    kw = "no error"
except TypeError as exc:
    kw = str(exc)
print(json.dumps([repr(p), p == q, hash(p) == hash(q), Point(0) < p, frozen, repr(c), kw]))
"""


def run(tmp_path: Path, *, install: bool = True) -> tuple[list[object], dict[str, int]]:
    """The classes' observable behaviour, and the cache's counts (read, used, compiled) in that run."""
    prelude = (
        "from nr import dataclass_code\ncache = dataclass_code.install()\n" if install else "cache = None\n"
    )
    counts = (
        "\nimport sys\nif cache: print(json.dumps({'known': len(cache.known), 'used': len(cache.used),"
        " 'fresh': len(cache.fresh)}), file=sys.stderr)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", prelude + CLASSES + counts],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    stats = json.loads(out.stderr.strip().splitlines()[-1]) if install else {}
    return json.loads(out.stdout), stats


def cache_file(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "nr").glob("dataclasses-*.marshal")
    return found


def test_the_second_run_compiles_nothing_and_its_classes_behave_as_without_the_cache(tmp_path: Path) -> None:
    plain, _ = run(tmp_path, install=False)
    first, stats1 = run(tmp_path)
    assert stats1["known"] == 0 and stats1["fresh"] >= 8  # __init__, __repr__, __eq__, ... of both
    path = cache_file(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    second, stats2 = run(tmp_path)
    assert stats2 == {"known": stats1["fresh"], "used": stats1["fresh"], "fresh": 0}
    assert first == second == plain
    assert plain[4] == "FrozenInstanceError" and "positional" in str(plain[6])


def poison(path: Path) -> None:
    """Every entry replaced by code that raises: a file that is read makes every class fail."""
    entries = marshal.loads(path.read_bytes())
    bad = marshal.dumps(compile("raise RuntimeError('poisoned cache')", "<string>", "exec"))
    path.write_bytes(marshal.dumps(dict.fromkeys(entries, bad)))


def test_a_file_others_may_write_is_neither_read_nor_replaced(tmp_path: Path) -> None:
    run(tmp_path)
    path = cache_file(tmp_path)
    poison(path)
    with pytest.raises(subprocess.CalledProcessError) as trusted:
        run(tmp_path)  # this user's 0600 file is trusted: the poisoned code runs (the test's premise)
    assert "RuntimeError: poisoned cache" in trusted.value.stderr
    path.chmod(0o666)
    before = path.read_bytes()
    result, stats = run(tmp_path)
    assert stats["known"] == 0 and stats["fresh"] >= 8 and result[4] == "FrozenInstanceError"
    assert path.read_bytes() == before  # not replaced either


def test_an_unreadable_or_corrupt_file_is_a_miss_and_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "nr" / dataclass_code.path().name  # the file install() reads under tmp_path
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"\x00 not marshal")
    path.chmod(0o600)
    result, stats = run(tmp_path)
    assert stats["known"] == 0 and result[4] == "FrozenInstanceError"
    _, again = run(tmp_path)
    assert again["fresh"] == 0 and again["used"] == stats["fresh"]


def test_source_that_differs_is_compiled_not_looked_up(tmp_path: Path) -> None:
    cache = dataclass_code.CodeCache(tmp_path / "c")
    a = cache.code("def f():\n return 1\n")
    cache.known = dict(cache.fresh)
    cache.fresh.clear()
    b = cache.code("def f():\n return 2\n")
    assert a is not b and len(cache.fresh) == 1 and cache.used == set()
    ns: dict[str, object] = {}
    exec(b, ns)
    assert ns["f"]() == 2  # type: ignore[operator]


def test_a_full_file_keeps_this_runs_entries_and_the_most_recent_others(tmp_path: Path) -> None:
    path = tmp_path / "nr" / "c.marshal"
    path.parent.mkdir(mode=0o700)
    old = {f"x = {i}\n": marshal.dumps(compile(f"x = {i}\n", "<string>", "exec")) for i in range(KEEP + 20)}
    path.write_bytes(marshal.dumps(old))
    path.chmod(0o600)
    cache = dataclass_code.CodeCache(path)
    cache.code(f"x = {KEEP + 10}\n")  # one of the oldest, used by this run
    cache.code("y = 1\n")  # a new one
    cache.save()
    saved = marshal.loads(path.read_bytes())
    assert len(saved) == KEEP and list(saved)[:2] == ["y = 1\n", f"x = {KEEP + 10}\n"]
    assert "x = 0\n" in saved and f"x = {KEEP - 3}\n" in saved and f"x = {KEEP - 2}\n" not in saved
    ns: dict[str, object] = {}
    exec(marshal.loads(saved[f"x = {KEEP + 10}\n"]), ns)
    assert ns["x"] == KEEP + 10


def test_a_save_with_nothing_new_leaves_the_file_alone(tmp_path: Path) -> None:
    run(tmp_path)
    path = cache_file(tmp_path)
    before = path.stat().st_mtime_ns
    run(tmp_path)
    assert path.stat().st_mtime_ns == before


def cached_sources(tmp_path: Path, code: str) -> set[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    return set(marshal.loads(cache_file(tmp_path).read_bytes()))


def test_the_console_script_installs_the_cache_before_nr_defines_its_classes(tmp_path: Path) -> None:
    """nr.launch (the console script) installs it before importing nr.cli: the classes of the modules
    nr.cli imports (the contract's RoleGroup among them) are kept too, not only those made later."""
    late = cached_sources(
        tmp_path / "late", "import sys; from nr.cli import main; sys.argv = ['nr', '--help']; main()"
    )
    early = cached_sources(
        tmp_path / "early", "import sys; from nr.launch import main; sys.argv = ['nr', '--help']; main()"
    )
    assert late < early
    assert any("role" in s and "default" in s and "__init__" in s for s in early - late)
