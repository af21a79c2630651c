"""Start-up: the methods ``@dataclass`` writes, compiled once per machine instead of once per process.

``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__`` (and ``__setattr__``,
``__hash__``... as asked) as Python source and compiles it with ``exec`` while the class's module is
imported: ~0.7 ms a class, and a whole-site run defines ~130 of them (``-X importtime`` shows it as
the self time of every module with dataclasses: about a quarter of importing nr and its components).
Python keeps the compiled code of modules in ``__pycache__``; this keeps that code the same way.

:func:`install` (called once by ``nr``'s entry point) gives the ``dataclasses`` module an ``exec`` of
its own (a module global comes before the builtin) that runs the code compiled earlier for the same
source, and compiles a source it has not seen exactly as ``exec`` would (no compiler flags inherited).
An entry is found by the whole source text, so a changed class, or another ``dataclasses``, can only
miss: it never runs other code than the text it was given would compile to.

The entries live in one file per bytecode version (``$XDG_CACHE_HOME/nr/dataclasses-<magic>.marshal``),
written 0600 in a 0700 folder and replaced at once, at exit, when the run compiled something new. A
file that is not this user's, or that others may write, is neither read nor replaced (what it holds is
code that would run). Any failure to read or write it is a miss, never an error.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import dataclasses
import importlib.util
import marshal
from pathlib import Path
from types import CodeType
from typing import Any

from nr.cache_dir import cache_root, read_private, replace_private

# Entries at most. The file is read whole at a run's first class (~5 us an entry): a run defines
# ~130-200 classes, so this keeps a few versions of nr (other checkouts, upgrades) and no more.
KEEP = 512


class CodeCache:
    """Code objects by source text: ``known`` read from the file (marshalled), ``fresh`` compiled now."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, bytes] = {}
        self.used: set[str] = set()
        self.fresh: dict[str, bytes] = {}
        self.loaded = False

    def load(self) -> None:
        self.loaded = True
        raw = read_private(self.path)
        with contextlib.suppress(ValueError, EOFError, TypeError):
            data = marshal.loads(raw) if raw is not None else None
            if type(data) is dict and all(type(k) is str and type(v) is bytes for k, v in data.items()):
                self.known = data

    def code(self, source: str) -> CodeType:
        if not self.loaded:  # at the first class (a command that makes none never reads the file)
            self.load()
        saved = self.known.get(source)
        if saved is not None:
            with contextlib.suppress(ValueError, EOFError, TypeError):
                code = marshal.loads(saved)
                if type(code) is CodeType:
                    self.used.add(source)
                    return code
        code = compile(source, "<string>", "exec", dont_inherit=True)  # as exec(source) compiles it
        self.fresh[source] = marshal.dumps(code)
        return code

    def save(self) -> None:
        if not self.fresh:
            return
        # Most recently used first (a dict keeps its order): this run's, then the others as they were.
        entries = {**self.fresh, **{s: self.known[s] for s in self.used}}
        for source, code in self.known.items():
            if len(entries) >= KEEP:
                break
            entries.setdefault(source, code)
        with contextlib.suppress(OSError, ValueError):
            replace_private(self.path, marshal.dumps(entries))


def path() -> Path:
    return cache_root() / f"dataclasses-{importlib.util.MAGIC_NUMBER.hex()}.marshal"


def install() -> CodeCache | None:
    """Give ``dataclasses`` the cached ``exec`` (once; None if it already has one)."""
    if "exec" in vars(dataclasses):
        return None
    cache = CodeCache(path())

    def cached_exec(source: Any, globals_: Any = None, locals_: Any = None, /) -> None:
        if type(source) is str:
            source = cache.code(source)
        builtins.exec(source, globals_, locals_)  # as dataclasses itself does

    dataclasses.exec = cached_exec  # type: ignore[attr-defined]
    atexit.register(cache.save)
    return cache
