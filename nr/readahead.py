"""Read-ahead: the reads of every component of a run, started at once instead of one after another.

A component may declare the reads its ``apply``, ``check`` or ``drift`` starts with (``reads(ctx, mode)``:
:class:`Read` rows, each a host and the files and commands of one :func:`nr.facts.gather`). Before the
first component runs, the runner starts every selected component's reads on every host, in parallel
(at most :data:`PER_HOST` at a time on one host's connection). When a component's turn comes, its
:func:`~nr.facts.gather` of a declared read is answered with the result read ahead, instead of a new
round trip.

Why that is the same run as without read-ahead: a gather changes nothing, so reading early is safe;
and a result read ahead is used only while *nothing has changed*: as soon as a step of the run
changes something, uploads a file or fails on a host, every result not used yet is dropped and each
later component reads again in its turn. A read that failed or was not declared is simply read in
turn (the component then reports any failure itself). The components still run one after another in
their order, and a component that fails still stops the ones after it (their results are dropped).
``NR_READ_AHEAD=0`` turns it off.

A component may also declare :class:`Probe` rows: read-only checks this machine makes itself (e.g. a
request through a service's route, or an observation of a cluster over TCP), started ahead the same way
and used under the same rule. A component's ``preflight`` (:func:`nr.runner.preflight`) may take one too.

A command that several declared reads of one host contain (the same text, e.g. one ``kubectl get`` that
three components parse) runs once: the first read that declares it runs it, and the others take its
output from that read's result (a read whose every part is shared makes no round trip at all).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nr.facts import Facts, gather
from nr.transport import CommandResult, Remote

PER_HOST = 3  # reads at once on one host's connection (sshd's MaxSessions defaults to 10)
# reads and probes at once over all hosts; the pool starts a thread only when none is idle, so a small
# run starts few. (It was sized by the first component's reads: with `base` first, a site on 3 hosts
# made its 13 reads and its probes 4 at a time.)
WORKERS = 64
ENV = "NR_READ_AHEAD"

Key = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]


def request_key(files: Iterable[str], commands: Mapping[str, str]) -> Key:
    """What identifies one gather: its files and named commands (order does not matter)."""
    return tuple(sorted(set(files))), tuple(sorted(commands.items()))


@dataclass(frozen=True)
class Read:
    """One gather a component will make on ``host`` (the arguments of :func:`nr.facts.gather`)."""

    host: str
    files: tuple[str, ...] = ()
    commands: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, host: str, files: Iterable[str] = (), commands: Mapping[str, str] | None = None) -> Read:
        return cls(host, tuple(files), tuple((commands or {}).items()))

    @property
    def key(self) -> Key:
        return request_key(self.files, dict(self.commands))


@dataclass(frozen=True)
class Probe:
    """A read-only check made from this machine, identified by ``key`` (its component's own), that a
    component's turn would make: ``call()`` is started ahead and its result taken with
    :meth:`ReadAhead.take_probe` while nothing has changed."""

    key: tuple[str, ...]
    call: Callable[[], Any] = field(compare=False, repr=False)


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


class ReadAhead:
    """The reads of a run started ahead, and whether they may still be used."""

    def __init__(self, connect: Callable[[str], Remote]) -> None:
        self._connect = connect
        self._results: dict[tuple[str, Key], Future[Facts]] = {}
        self._probes: dict[tuple[str, ...], Future[Any]] = {}
        # (host, command text) -> the read that runs it, and its name there
        self._owners: dict[tuple[str, str], tuple[Future[Facts], str]] = {}
        self._lock = threading.Lock()
        self._valid = True
        self._slots: dict[str, threading.Semaphore] = {}
        self._pool: ThreadPoolExecutor | None = None

    @property
    def valid(self) -> bool:
        return self._valid

    def start(self, reads: Iterable[Read | Probe]) -> int:
        """Start ``reads`` (each host's in the order given); returns how many were started."""
        todo: list[Read] = []
        probes: list[Probe] = []
        with self._lock:
            for r in reads:
                if isinstance(r, Probe):
                    probes += [] if r.key in self._probes else [r]
                elif (r.host, r.key) not in self._results:
                    todo.append(r)
                    self._slots.setdefault(r.host, threading.Semaphore(PER_HOST))
            if not (todo or probes) or not self._valid:
                return 0
            if self._pool is None:  # made once, for every component's reads (threads start as needed)
                self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="nr-read")
            for p in probes:
                self._probes[p.key] = self._pool.submit(self._probe, p)
            for r in todo:
                shared = {n: self._owners[(r.host, c)] for n, c in r.commands if (r.host, c) in self._owners}
                own = Read(r.host, r.files, tuple((n, c) for n, c in r.commands if n not in shared))
                fut = self._pool.submit(self._read, own, shared)
                self._results[(r.host, r.key)] = fut
                for n, c in own.commands:
                    self._owners[(r.host, c)] = (fut, n)
        return len(todo) + len(probes)

    def _probe(self, p: Probe) -> Any:
        if not self._valid:
            raise LookupError("dropped: something changed before this probe started")
        return p.call()

    def take_probe(self, key: tuple[str, ...], *, keep: bool = False) -> Any | None:
        """The result of the :class:`Probe` ``key`` made ahead (waiting for it if it is on its way), once
        (``keep``: left for a later take too, e.g. a preflight's); None when none was started, it failed,
        or something changed since the run began."""
        with self._lock:
            fut = self._probes.get(key) if keep else self._probes.pop(key, None)
        if fut is None or not self._valid:
            return None
        try:
            found = fut.result()
        except Exception:  # the component makes it again in turn and reports what goes wrong
            return None
        return found if self._valid else None

    def _read(self, r: Read, shared: Mapping[str, tuple[Future[Facts], str]]) -> Facts:
        facts = Facts()
        if r.files or r.commands:
            with self._slots[r.host]:
                if not self._valid:
                    raise LookupError("dropped: something changed before this read started")
                facts = gather(self._connect(r.host), files=r.files, commands=dict(r.commands))
        for name, (owner, theirs) in shared.items():  # waited for outside the host's slots
            facts.outputs[name] = owner.result().outputs[theirs]
        return facts

    def take(self, host: str, files: Iterable[str], commands: Mapping[str, str]) -> Facts | None:
        """The result read ahead for this gather (waiting for it if it is still on its way), once;
        None when none was started, it failed, or something changed since the run began."""
        with self._lock:
            fut = self._results.pop((host, request_key(files, commands)), None)
        if fut is None or not self._valid:
            return None
        try:
            facts = fut.result()
        except Exception:  # the component reads again in turn and reports what goes wrong
            return None
        return facts if self._valid else None

    def invalidate(self) -> None:
        """Something changed (or failed): drop every result not used yet, start nothing more."""
        with self._lock:
            self._valid = False
            pending, self._results = self._results, {}
            probes, self._probes = self._probes, {}
            self._owners = {}
        for fut in [*pending.values(), *probes.values()]:
            fut.cancel()

    def close(self) -> None:
        self.invalidate()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class ReadAheadRemote:
    """A host's :class:`Remote` whose gathers are answered from a :class:`ReadAhead` while it is valid;
    everything else goes to the connection itself (an upload first invalidates the reads)."""

    def __init__(self, inner: Remote, ahead: ReadAhead, host: str) -> None:
        self.inner = inner
        self.ahead = ahead
        self.host = host
        self.name = inner.name

    def prefetched(self, files: Iterable[str], commands: Mapping[str, str]) -> Facts | None:
        return self.ahead.take(self.host, files, commands)

    def run(
        self, script: str, *, sudo: bool = True, timeout: float | None = None, check: bool = True
    ) -> CommandResult:
        return self.inner.run(script, sudo=sudo, timeout=timeout, check=check)

    def put(self, local: Path, remote_tmp: str) -> None:
        self.ahead.invalidate()
        self.inner.put(local, remote_tmp)

    def __getattr__(self, name: str) -> Any:  # stats, user, ... of the connection
        return getattr(self.inner, name)


def drop_reads(remote: object) -> None:
    """The hosts' state moves on without a change of nr's (e.g. while it waits for rollouts to finish):
    the reads made ahead of the run, if ``remote`` answers from them, are dropped (read again in turn)."""
    ahead = getattr(remote, "ahead", None)
    if isinstance(ahead, ReadAhead):
        ahead.invalidate()
