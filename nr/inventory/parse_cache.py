"""Parsed inventory files, kept by their content: a later run reads JSON instead of parsing YAML.

Importing PyYAML (its regular expressions are compiled at import) and parsing with the checking loader
cost a run ~30-40 ms before it does anything, for files that rarely change. An entry is named by the
sha256 of the file's bytes, of this format's version and of the parser's files (size and mtime of
``yaml_parse.py`` and of PyYAML, :func:`parser_stamp`), so an edited file is simply a miss, and so is
every file once nr or PyYAML is upgraded (a parser that now refuses what it took must see it again): it
is parsed and checked as always, and errors are never kept. Only what JSON gives back unchanged is kept
(mappings with text keys, lists, text, integers, finite floats, booleans, null); a file with anything
else (dates, binary, sets, numeric keys) is parsed every time.

Entries live in ``$XDG_CACHE_HOME/nr/inventory`` (``~/.cache/nr``), written 0600 in a 0700 folder
(an inventory may hold values its owner alone should read), at most :data:`KEEP` of them. Any failure
to read or write the cache is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

from nr.cache_dir import cache_root

VERSION = b"nr-inventory-parse-1\n"
KEEP = 64
MISS = object()  # what lookup() returns when it has nothing


def folder() -> Path:
    return cache_root() / "inventory"


@functools.cache
def parser_stamp() -> bytes:
    """Which parser a cached entry came from: path, size and mtime of nr's YAML parsing module and of
    PyYAML's (found without importing it, which is what the cache spares)."""
    spec = importlib.util.find_spec("yaml")
    paths = [str(Path(__file__).with_name("yaml_parse.py")), (spec and spec.origin) or "no-yaml"]
    stamp = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamp.append(f"{path}:missing")
        else:
            stamp.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return ("\n".join(stamp) + "\n").encode()


def _entry(raw: bytes) -> Path:
    return folder() / f"{hashlib.sha256(VERSION + parser_stamp() + raw).hexdigest()}.json"


def lookup(raw: bytes) -> Any:
    """The parsed document of a file with these bytes, or :data:`MISS`."""
    try:
        return json.loads(_entry(raw).read_bytes())
    except (OSError, ValueError):
        return MISS


def plain(data: Any, depth: int = 0) -> bool:
    """Whether ``data`` comes back from JSON exactly as it is (types included)."""
    if depth > 100:
        return False
    kind = type(data)
    if kind is dict:
        return all(type(k) is str and plain(v, depth + 1) for k, v in data.items())
    if kind is list:
        return all(plain(v, depth + 1) for v in data)
    if kind is float:
        return math.isfinite(data)
    return kind in (str, int, bool) or data is None


def store(raw: bytes, data: Any) -> None:
    """Keep ``data`` as the parse of ``raw`` (if JSON keeps it exactly); failures are ignored."""
    if not plain(data):
        return
    path = _entry(raw)
    with contextlib.suppress(OSError, ValueError):  # ValueError: text JSON cannot write (a lone surrogate)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = path.with_suffix(f".{os.getpid()}.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, ensure_ascii=False, separators=(",", ":"))
            os.replace(part, path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        _prune(path.parent)


def _prune(where: Path) -> None:
    entries = sorted(where.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()
