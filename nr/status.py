"""``nr status``: the site at a glance, as typed data the engine renders (text, JSON, HTML).

The engine knows no component. A component that has something to show implements two optional
methods (:class:`StatusSource`):

* ``status_reads(ctx) -> {host: Reads}``: the files and read-only commands it needs on each host.
  The engine merges every component's reads with its own (OS, load, memory, disk) into ONE
  :func:`nr.facts.gather` round trip per host, all hosts in parallel;
* ``status(ctx, facts) -> StatusSection``: its section, from those facts (``{host: Facts}``, only
  its own commands) and whatever it reads from the controller (e.g. a TCP protocol, a probe). A
  component that reads nothing on the hosts gets no facts, and its section is computed while the
  hosts are read. A command that several components declare on a host (the same text) runs once.

A section is typed data: tables of :class:`Cell` (a value and how good it is), lines shown with each
host (:class:`HostLine`), things placed inside a host's box in the picture (:class:`Box`), arrows
between them (:class:`Arrow`), and the problems with their fix commands (:class:`Problem`). The
sections are computed in parallel; one that fails shows its error and the others go on.
Nothing here changes a host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from nr import hostinfo
from nr.errors import NrError
from nr.facts import Facts, gather
from nr.outcome import Outcome
from nr.play import Component, HostRun, PlayContext
from nr.secrets import redact


class Level(StrEnum):
    """How good a value is: ``ok`` (as planned), ``warn``, ``fail`` (shown in red, with a fix) or
    ``info`` (no judgement)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True)
class Cell:
    """One value: its text, its level, and a note (e.g. what the plan says when it differs)."""

    text: str
    level: Level = Level.INFO
    note: str = ""


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class HostLine:
    """A line shown with a host (in the hosts table and in its box): ``label: value``."""

    host: str
    label: str
    value: Cell


@dataclass(frozen=True)
class Box:
    """Something that lives on a host (a server instance, a pod): drawn inside the host's box.
    ``group`` gathers boxes of one kind under a caption; ``id`` is what arrows point at."""

    id: str
    host: str
    group: str
    label: str
    level: Level = Level.OK
    detail: str = ""


@dataclass(frozen=True)
class Arrow:
    """An arrow from one box to another (e.g. a replica to its master)."""

    source: str
    target: str
    label: str = ""
    level: Level = Level.OK


@dataclass(frozen=True)
class Problem:
    """Something that is not as it should be, and the command that repairs it."""

    what: str
    host: str
    expected: str
    actual: str
    fix: str
    level: Level = Level.FAIL


@dataclass(frozen=True)
class StatusSection:
    component: str
    title: str
    summary: Cell
    tables: tuple[Table, ...] = ()
    host_lines: tuple[HostLine, ...] = ()
    boxes: tuple[Box, ...] = ()
    arrows: tuple[Arrow, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Reads:
    """What a component reads on one host for its status (added to the host's one round trip)."""

    files: tuple[str, ...] = ()
    commands: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class StatusSource(Protocol):
    """A component that has a part in ``nr status`` (both methods; the engine checks for them)."""

    name: str

    def status_reads(self, ctx: PlayContext) -> Mapping[str, Reads]: ...

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection: ...


@dataclass(frozen=True)
class HostState:
    """A host as the engine read it: reachable or why not, and its resources."""

    name: str
    address: str
    roles: tuple[str, ...]
    reachable: bool
    error: str = ""
    info: hostinfo.HostInfo | None = None


@dataclass(frozen=True)
class LastDrift:
    """The last result ``nr drift`` left (see :mod:`nr.drift`), or why it could not be read."""

    path: str
    finished: float | None = None
    exit_code: int | None = None
    items: tuple[Mapping[str, str], ...] = ()
    unchecked: Mapping[str, str] = field(default_factory=dict)
    scope: str = ""
    error: str = ""


@dataclass(frozen=True)
class SiteStatus:
    site: str
    taken: float  # when it was read (Unix time)
    seconds: float  # how long reading took
    hosts: tuple[HostState, ...]
    sections: tuple[StatusSection, ...]
    drift: LastDrift | None = None

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.sections for p in s.problems]

    @property
    def ok(self) -> bool:
        failing = [p for p in self.problems if p.level is Level.FAIL]
        return all(h.reachable for h in self.hosts) and not failing

    def lines_of(self, host: str) -> list[HostLine]:
        return [line for s in self.sections for line in s.host_lines if line.host == host]

    def boxes_of(self, host: str) -> list[Box]:
        return [b for s in self.sections for b in s.boxes if b.host == host]


def _prefix(component: str, name: str) -> str:
    return f"{component}/{name}"


def _host_reads(
    hosts: Sequence[str], sources: Mapping[str, Mapping[str, Reads]]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every host's files and commands: the engine's own, then each component's (names prefixed)."""
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for host in hosts:
        files: list[str] = []
        commands = {_prefix(hostinfo.NAME, k): v for k, v in hostinfo.COMMANDS.items()}
        for component, by_host in sources.items():
            reads = by_host.get(host)
            if reads is None:
                continue
            files += [f for f in reads.files if f not in files]
            commands.update({_prefix(component, k): v for k, v in reads.commands.items()})
        out[host] = (files, commands)
    return out


def gather_once(remote: Any, files: Sequence[str], commands: Mapping[str, str]) -> Facts:
    """:func:`nr.facts.gather`, a command that several names declare (the same text, e.g. one kubectl
    snapshot that two components parse) run once, its output given to each of those names."""
    first: dict[str, str] = {}  # command text -> the name it runs under
    for name, text in commands.items():
        first.setdefault(text, name)
    facts = gather(remote, files=files, commands={n: t for t, n in first.items()})
    for name, text in commands.items():
        if first[text] != name and first[text] in facts.outputs:
            facts.outputs[name] = facts.outputs[first[text]]
    return facts


def split_facts(facts: Facts, component: str, files: Sequence[str]) -> Facts:
    """The part of one host's facts a component asked for (its command names without the prefix)."""
    head = _prefix(component, "")
    return Facts(
        files={p: s for p, s in facts.files.items() if p in files},
        outputs={k[len(head) :]: v for k, v in facts.outputs.items() if k.startswith(head)},
    )


def _section(component: StatusSource, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
    try:
        return component.status(ctx, facts)
    except NrError as exc:
        message = redact(str(exc))
    except Exception as exc:  # a bug in one section must not hide the others
        message = redact(f"{type(exc).__name__}: {exc}")
    return StatusSection(
        component.name,
        component.name,
        Cell("could not be read", Level.FAIL),
        problems=(Problem("status", "", "readable", message, ctx.fix_command(component.name)),),
    )


def _reads_of(components: Sequence[StatusSource], ctx: PlayContext) -> dict[str, Mapping[str, Reads]]:
    out: dict[str, Mapping[str, Reads]] = {}
    for c in components:
        try:
            out[c.name] = c.status_reads(ctx.for_component(c.name))
        except NrError:  # its status() says why (it sees the same inventory)
            out[c.name] = {}
    return out


def collect(ctx: PlayContext, components: Sequence[Component], site: str) -> SiteStatus:
    """Read the site: one round trip per host (all in parallel), and every section in parallel: those
    that read nothing on the hosts (their facts are empty) while the hosts are read, the others after."""
    started = time.monotonic()
    sources: list[StatusSource] = [c for c in components if isinstance(c, StatusSource)]
    reads = _reads_of(sources, ctx)
    hosts = ctx.all_hosts()
    wanted = _host_reads([h.name for h in hosts], reads)

    def read(run: HostRun) -> Outcome[Facts]:
        files, commands = wanted[run.name]
        return Outcome(value=gather_once(run.remote, files, commands))

    with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
        early = {
            c.name: pool.submit(_section, c, ctx.for_component(c.name), {})
            for c in sources
            if not reads.get(c.name)
        }
        gathered = ctx.for_component("status").run("read", read, hosts=hosts)
        facts = gathered.values

        def one(c: StatusSource) -> StatusSection:
            files = {f for r in reads.get(c.name, {}).values() for f in r.files}
            mine = {h: split_facts(f, c.name, tuple(files)) for h, f in facts.items()}
            return _section(c, ctx.for_component(c.name), mine)

        late = {c.name: pool.submit(one, c) for c in sources if c.name not in early}
        sections = tuple((early.get(c.name) or late[c.name]).result() for c in sources)
    states = tuple(
        HostState(
            h.name,
            str(h.hostname),
            tuple(_roles(h)),
            h.name in facts,
            redact(gathered.failed.get(h.name, "")),
            hostinfo.parse(split_facts(facts[h.name], hostinfo.NAME, ())) if h.name in facts else None,
        )
        for h in hosts
    )
    return SiteStatus(site, time.time(), time.monotonic() - started, states, sections)


def _roles(host: Any) -> list[str]:
    from nr.play import roles

    return roles(host)
