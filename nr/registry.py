"""Where the engine finds components and plays: catalogs.

A *catalog* is a :class:`Catalog` object registered under the entry-point group ``nr.catalog``
(ours is ``tasks.catalog:CATALOG``). It lists each component as an :class:`Entry` — its name, a line
of description, and the import paths of its contract and of its component object — and the plays,
each an ordered list of component names. Adding a component means adding its package and one entry
(and naming it in a play): nothing in the engine changes and nothing is reinstalled.

Contracts are imported for every command that reads an inventory (they are small modules); a
component's code only when it runs. The entry points of this distribution are read from its own
metadata, not by scanning every installed package (that costs every start); out-of-tree catalogs
are named in ``NR_CATALOGS`` (``module:attribute``, comma-separated).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nr import dist_info
from nr.contract import Contract, RunOption, Schema, compose
from nr.errors import NrError

if TYPE_CHECKING:
    from nr.play import Component

GROUP = "nr.catalog"
SITE = "site"  # the play that runs every component in order
DISTRIBUTION = "nr-orchestrator"


@dataclass(frozen=True)
class Entry:
    """One component: ``contract`` and ``component`` are ``module:attribute`` import paths."""

    name: str
    description: str
    contract: str
    component: str


@dataclass(frozen=True)
class Catalog:
    entries: Sequence[Entry]
    plays: Mapping[str, Sequence[str]] = field(default_factory=dict)


def load(path: str) -> Any:
    """The object a ``module:attribute`` path names (an :class:`NrError` when it cannot be loaded)."""
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise NrError(f"cannot load {path}: {exc}") from None


@functools.cache
def own_entry_points(group: str) -> dict[str, str]:
    """``{name: "module:attribute"}`` of this distribution's entry points in ``group``, read from its own
    metadata only (no scan of every installed package); empty when nr is not installed."""
    found = _entry_points_file()
    if found is not None:
        return _parse_entry_points(found.read_text(encoding="utf-8")).get(group, {})
    from importlib import metadata  # an unusual install (zip, egg): the standard lookup

    try:
        own = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return {}
    return {ep.name: ep.value for ep in own.entry_points if ep.group == group}


def _entry_points_file() -> Path | None:
    """This distribution's ``entry_points.txt`` (:mod:`nr.dist_info` finds its ``.dist-info`` as
    ``importlib.metadata`` does, without importing it)."""
    found = dist_info.find(DISTRIBUTION)
    if found is None:
        return None
    path = Path(found) / "entry_points.txt"
    return path if path.is_file() else None


def _parse_entry_points(text: str) -> dict[str, dict[str, str]]:
    """``[group]`` sections of ``name = value`` lines (the entry_points.txt format)."""
    groups: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1].strip(), {})
        elif current is not None and "=" in line:
            name, _, value = line.partition("=")
            current[name.strip()] = value.strip()
    return groups


def _catalog_paths() -> list[str]:
    paths = list(own_entry_points(GROUP).values())
    if not paths:  # not installed as a distribution (e.g. a source tree on sys.path)
        paths.append("tasks.catalog:CATALOG")
    extra = os.environ.get("NR_CATALOGS", "")
    return paths + [p.strip() for p in extra.split(",") if p.strip()]


@dataclass(frozen=True)
class Registry:
    """Every component and play of every catalog (components in catalog order)."""

    entries: Mapping[str, Entry]
    plays: Mapping[str, tuple[str, ...]]

    @functools.cached_property
    def contracts(self) -> dict[str, Contract]:
        out: dict[str, Contract] = {}
        for name, e in self.entries.items():
            c = load(e.contract)
            if not isinstance(c, Contract):
                raise NrError(f"{e.contract} (contract of {name}) is not a Contract")
            out[name] = c
        return out

    @functools.cached_property
    def schema(self) -> Schema:
        from nr.inventory.schema import COMMON_DATA

        return compose(self.contracts, COMMON_DATA)

    def run_options(self) -> dict[str, tuple[RunOption, tuple[str, ...]]]:
        """``nr run`` options by flag, each with the components that declare it (catalog order)."""
        out: dict[str, tuple[RunOption, tuple[str, ...]]] = {}
        for name, contract in self.contracts.items():
            for opt in contract.run_options:
                known = out.get(opt.flag)
                if known is not None and known[0] != opt:
                    raise NrError(
                        f"run option {opt.flag} is declared differently by {known[1][0]} and {name}"
                    )
                out[opt.flag] = (opt, (*known[1], name) if known else (name,))
        return out

    def component(self, name: str) -> Component:
        from nr.play import Component

        obj = load(self.entries[name].component)
        if not isinstance(obj, Component):
            raise NrError(f"{self.entries[name].component} is not a component")
        return obj

    def play(self, name: str) -> tuple[str, ...] | None:
        """The components of play ``name`` in order; a component's name is a play of itself."""
        if name in self.plays:
            return self.plays[name]
        if name in self.entries:
            return (name,)
        return None

    @property
    def default_play(self) -> tuple[str, ...]:
        """What ``check`` and ``drift`` cover when no component is named: the ``site`` play."""
        return self.plays.get(SITE, tuple(self.entries))

    @property
    def default_play_name(self) -> str:
        """The play an operator runs on a new inventory (``site``, else the first play or component)."""
        if SITE in self.plays:
            return SITE
        return next(iter([*self.plays, *self.entries]), SITE)


@functools.cache
def registry() -> Registry:
    entries: dict[str, Entry] = {}
    plays: dict[str, tuple[str, ...]] = {}
    for path in _catalog_paths():
        cat = load(path)
        if not isinstance(cat, Catalog):
            raise NrError(f"entry point {path} is not a Catalog")
        for e in cat.entries:
            entries.setdefault(e.name, e)
        for name, members in cat.plays.items():
            plays.setdefault(name, tuple(members))
    for name, members in plays.items():
        unknown = [m for m in members if m not in entries]
        if unknown:
            raise NrError(f"play {name} names unknown component(s): {', '.join(unknown)}")
    return Registry(entries, plays)
