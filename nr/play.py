"""Components and the context they run in: how the engine runs host tasks without knowing their internals.

A *component* (one package of ``tasks/``, listed in a catalog) is an object with a ``name`` and four methods that
receive a :class:`PlayContext`:

* ``validate(ctx)`` problems with the inventory for this component (before any host is touched);
* ``apply(ctx)``    converge the hosts (under ``--dry-run`` only compute and show the changes);
* ``check(ctx)``    checks of the converged hosts (outcomes carrying :class:`~nr.outcome.CheckItem` rows);
* ``drift(ctx)``    read-only comparison with the desired state (outcomes carrying findings).

It may also have ``reads(ctx, mode)`` (what its turn reads first, started ahead: :mod:`nr.readahead`) and
``preflight(ctx)``: problems found by read-only checks against the running site (e.g. a secret its
services refuse), made once the reads ahead are on their way and before anything changes
(:func:`nr.runner.preflight`).

It declares its inventory keys and role groups in a :class:`~nr.contract.Contract` and is listed in
a catalog (:mod:`nr.registry`). The context runs a host function ``fn(run: HostRun) -> Outcome`` on
(a subset of) the hosts, in parallel or one at a time, and records every outcome in the run report.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from nornir.core import Nornir
from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, Result, Task
from nornir.plugins.runners import SerialRunner, ThreadedRunner

from nr import interrupt
from nr.changes import Change, apply_script
from nr.errors import NrError
from nr.outcome import CheckItem, Finding, Outcome
from nr.readahead import ReadAhead, ReadAheadRemote
from nr.runstate import RunState
from nr.secrets import Secret, SecretError, SecretRef
from nr.transport import Remote

T = TypeVar("T")
CONNECTION_NAME = "fabric"

__all__ = ["CheckItem", "Component", "HostRun", "Outcome", "PlayContext", "StepResult", "host_groups"]


@runtime_checkable
class Component(Protocol):
    name: str

    def validate(self, ctx: PlayContext) -> list[str]:
        """Problems with the inventory for this component (checked before any host is touched)."""
        ...

    def apply(self, ctx: PlayContext) -> None: ...

    def check(self, ctx: PlayContext) -> None: ...

    def drift(self, ctx: PlayContext) -> None: ...


class Recorder(Protocol):
    """Where the context reports what happened (implemented by :class:`nr.report.RunReport`)."""

    def step_started(self, component: str, step: str, hosts: Sequence[str]) -> None: ...

    def record(self, component: str, step: str, result: AggregatedResult) -> None: ...

    def note(self, component: str, message: str) -> None: ...


def host_groups(host: Host) -> set[str]:
    """Every group of ``host``, parent groups included."""
    out: set[str] = set()
    stack = list(host.groups)
    while stack:
        g = stack.pop()
        if g.name not in out:
            out.add(g.name)
            stack.extend(g.groups)
    return out


def roles(host: Host) -> list[str]:
    """The roles ``host`` has by its groups, as the components' contracts name them."""
    from nr.registry import registry

    groups = host_groups(host)
    return [r.role for r in registry().schema.roles if r.name in groups]


class OutcomeResult(Result):
    """The Nornir result of a host function: its :class:`Outcome`, typed (no extras)."""

    def __init__(self, host: Host, outcome: Outcome[Any]) -> None:
        super().__init__(
            host=host,
            result=outcome.error or outcome.summary or [c.what for c in outcome.changes],
            changed=outcome.changed,
            diff=outcome.diff,
            failed=outcome.error is not None,
        )
        self.outcome = outcome


@dataclass
class HostRun:
    """What a host function sees: its host, whether this is a dry run, and the host's :class:`Remote`."""

    host: Host
    dry_run: bool
    connect: Callable[[], Remote] = field(repr=False)
    _remote: Remote | None = field(default=None, init=False, repr=False)

    @property
    def remote(self) -> Remote:
        """The host's connection (opened on first use, then shared by every step of the run).

        (Not a ``functools.cached_property``: before Python 3.12 that holds one lock for every
        instance while it computes, which made the hosts open their connections one at a time.)
        """
        if self._remote is None:
            self._remote = self.connect()
        return self._remote

    @property
    def name(self) -> str:
        return self.host.name

    def get(self, key: str) -> Any:
        """A ``data`` value of the host (host, then its groups, then defaults)."""
        return self.host.get(key)

    def apply(
        self,
        changes: Sequence[Change],
        *,
        after: str = "",
        timeout: float | None = None,
        findings: Sequence[Finding] = (),
        value: T | None = None,
        summary: str = "",
    ) -> Outcome[T]:
        """Run every change's script (after SFTP uploads) in one round trip; nothing under dry-run."""
        if changes and not self.dry_run:
            for c in changes:
                if c.upload is not None:
                    self.remote.put(c.upload.local, c.upload.remote_tmp)
            self.remote.run(apply_script(changes, after), timeout=timeout)
        return Outcome(changes=tuple(changes), findings=tuple(findings), value=value, summary=summary)


@dataclass
class StepResult(Generic[T]):
    """The outcomes of one step, by host; hosts that failed (or were skipped) are in ``failed``."""

    outcomes: dict[str, Outcome[T]]
    failed: dict[str, str]

    def value(self, host: str) -> T | None:
        o = self.outcomes.get(host)
        return None if o is None else o.value

    @property
    def values(self) -> dict[str, T]:
        return {h: o.value for h, o in self.outcomes.items() if o.value is not None}

    @property
    def changed(self) -> bool:
        return any(o.changed for o in self.outcomes.values())


def _step_result(result: AggregatedResult) -> StepResult[Any]:
    outcomes: dict[str, Outcome[Any]] = {}
    failed: dict[str, str] = {}
    for host, multi in result.items():
        r = multi[0]
        if r.failed:
            failed[host] = str(r.exception or r.result or "failed")
        elif isinstance(r, OutcomeResult):
            outcomes[host] = r.outcome
    return StepResult(outcomes, failed)


class PlayContext:
    """What a component sees while it runs: the hosts, the dry-run flag and a way to run host functions."""

    def __init__(
        self,
        nr: Nornir,
        *,
        component: str,
        recorder: Recorder,
        limit: Iterable[str] | None = None,
        inventory_arg: str | None = None,
        connect: Callable[[Host], Remote] | None = None,
        shared: RunState | None = None,
    ) -> None:
        self._nr = nr
        self.component = component
        self.recorder = recorder
        self.limit = set(limit) if limit is not None else None
        self.inventory_arg = inventory_arg  # how the operator named the inventory, for "fix" commands
        self._connect = connect or self._open_fabric
        self._shared = shared or RunState()

    @property
    def nornir(self) -> Nornir:
        return self._nr

    @property
    def inventory_dir(self) -> Path:
        """The inventory folder (where hosts.yaml or config.yaml is): secrets plays generate are kept there."""
        options = self._nr.config.inventory.options or {}
        raw = options.get("path") or options.get("base_dir") or "inventory"
        return Path(str(raw)).expanduser().resolve()

    @property
    def dry_run(self) -> bool:
        return bool(self._nr.data.dry_run)

    def for_component(self, component: str) -> PlayContext:
        return PlayContext(
            self._nr,
            component=component,
            recorder=self.recorder,
            limit=self.limit,
            inventory_arg=self.inventory_arg,
            connect=self._connect,
            shared=self._shared,
        )

    # -- hosts ------------------------------------------------------------------------------
    def all_hosts(self, group: str | None = None) -> list[Host]:
        """Hosts of the whole inventory (``--limit`` ignored), in inventory order: for planning."""
        hosts = list(self._nr.inventory.hosts.values())
        return [h for h in hosts if group is None or group in host_groups(h)]

    def hosts(self, group: str | None = None) -> list[Host]:
        """Hosts this run may change: ``all_hosts(group)`` within ``--limit``."""
        return [h for h in self.all_hosts(group) if self.limit is None or h.name in self.limit]

    def failed(self, host: Host | str) -> bool:
        name = host if isinstance(host, str) else host.name
        return name in self._nr.data.failed_hosts

    def fix_command(self, component: str | None = None, host: str | None = None) -> str:
        """The command that repairs something (``nr run COMPONENT [-i INV] [--limit HOST]``), shell-quoted."""
        words = ["nr", "run", component or self.component]
        if self.inventory_arg:
            words += ["-i", self.inventory_arg]
        if host:
            words += ["--limit", host]
        return shlex.join(words)

    # -- secrets -------------------------------------------------------------------------------
    def secret(self, host: Host, key: str) -> Secret:
        """The secret ``data.<key>`` of ``host`` refers to, resolved (one error format for all)."""
        value = host.get(key)
        if value is None:
            raise NrError(
                f"host {host.name}: data.{key} is not set (a secret reference env:NAME or file:PATH)"
            )
        try:
            ref = value if isinstance(value, SecretRef) else SecretRef.parse(value)
            return ref.resolve()
        except SecretError as exc:
            raise NrError(f"host {host.name}: data.{key} ({value}): {exc}") from None

    # -- connections ---------------------------------------------------------------------------
    def _open_fabric(self, host: Host) -> Remote:
        """The host's connection (the SSH stack is imported on the first, not at start; :mod:`nr.runstate`)."""
        import nr.connection  # noqa: F401  (registers the connection plugin)

        conn: Remote = host.get_connection(CONNECTION_NAME, self._nr.config)
        return conn

    def _open(self, host: Host, *, ahead: bool = False) -> Remote:
        return self._shared.open(host.name, lambda: self._connect(host), ahead=ahead)

    def remote(self, host: Host | str) -> Remote:
        """The open connection of any inventory host, for steps the controller drives (e.g. waits)."""
        h = self._nr.inventory.hosts[host] if isinstance(host, str) else host
        conn = self._open(h)
        ahead = self._shared.ahead
        return conn if ahead is None or not ahead.valid else ReadAheadRemote(conn, ahead, h.name)

    def open_ahead(self, host: Host) -> Remote:
        """``host``'s connection, opened ahead of the steps (a failure is kept for the first that asks)."""
        return self._open(host, ahead=True)

    def end(self) -> None:
        """The run is over: a connection still opening ahead (:mod:`nr.preconnect`) is closed once open."""
        self._shared.ended = True

    @property
    def ended(self) -> bool:
        return self._shared.ended

    def once(self, key: object, compute: Callable[[], T]) -> T:
        """``compute()`` at most once per run, shared by every context of the run (e.g. what a
        component's declared reads and its turn both need)."""
        return self._shared.once(key, compute)

    # -- read-ahead (nr.readahead) ----------------------------------------------------------------
    def read_ahead(self) -> ReadAhead:
        """The run's read-ahead (started by the runner before the first component)."""
        if self._shared.ahead is None:
            hosts = self._nr.inventory.hosts
            self._shared.ahead = ReadAhead(lambda name: self.open_ahead(hosts[name]))
        return self._shared.ahead

    def _changed(self, result: AggregatedResult) -> None:
        """A step changed something or failed on a host: reads made ahead may be stale now."""
        ahead = self._shared.ahead
        if ahead is not None and (result.failed or any(m.changed for m in result.values())):
            ahead.invalidate()

    def reconnect(self, host: Host | str) -> Remote:
        """A new connection to ``host`` in place of its current one (e.g. after the host rebooted), which
        every later step of the run uses. Host keys are checked as strictly as for the first; what
        opening a connection raises (``ConnectionFailed``, ``HostKeyRejected``) is raised."""
        h = self._nr.inventory.hosts[host] if isinstance(host, str) else host
        if CONNECTION_NAME in h.connections:
            with contextlib.suppress(Exception):  # the old connection may be long gone
                h.close_connection(CONNECTION_NAME)
        return self._connect(h)

    # -- running ------------------------------------------------------------------------------
    def run(
        self,
        step: str,
        fn: Callable[[HostRun], Outcome[T]],
        *,
        hosts: Sequence[Host] | None = None,
        group: str | None = None,
        serial: bool = False,
    ) -> StepResult[T]:
        """Run ``fn`` on ``hosts`` (default: ``self.hosts(group)``); hosts that failed earlier are skipped.

        An :class:`NrError` raised by ``fn`` fails that host with its message; other hosts go on.
        """

        def task(t: Task) -> Result:
            run = HostRun(t.host, t.is_dry_run(), lambda: self.remote(t.host))
            return OutcomeResult(t.host, fn(run))

        result = self._run_nornir(step, task, hosts=hosts, group=group, serial=serial)
        return _step_result(result)

    def _run_nornir(
        self,
        step: str,
        task: Callable[..., Result],
        *,
        hosts: Sequence[Host] | None = None,
        group: str | None = None,
        serial: bool = False,
        **kwargs: Any,
    ) -> AggregatedResult:
        chosen = list(hosts) if hosts is not None else self.hosts(group)
        names = {h.name for h in chosen}
        nr = self._nr.filter(filter_func=lambda h: h.name in names)
        if serial:
            nr = nr.with_runner(SerialRunner())
        elif type(nr.runner) is ThreadedRunner:  # Ctrl-C must land on the main thread
            nr = nr.with_runner(interrupt.SigintToMainRunner(nr.runner.num_workers))
        live = [h.name for h in chosen if not self.failed(h)]
        interrupt.check(f"{self.component}.{step}")
        self.recorder.step_started(self.component, step, live)

        def unless_interrupted(t: Task, **kw: Any) -> Result:
            interrupt.check(t.host.name)  # a host not started before Ctrl-C is never touched
            return task(t, **kw)

        result = nr.run(task=unless_interrupted, name=f"{self.component}.{step}", **kwargs)
        self._changed(result)
        self.recorder.record(self.component, step, result)
        return result

    def note(self, message: str) -> None:
        self.recorder.note(self.component, message)

    def fail_host(self, host: Host, step: str, message: str) -> None:
        """Record a failure decided by the controller (e.g. a cluster-wide step) against ``host``."""

        def _fail(run: HostRun) -> Outcome[None]:
            return Outcome(error=message)

        self.run(step, _fail, hosts=[host])

    def report(self, step: str, rows: dict[str, Outcome[None]]) -> None:
        """Record outcomes the controller computed (findings, checks) against their hosts, without SSH."""
        known = {h.name: h for h in self.all_hosts()}
        chosen = [known[n] for n in rows if n in known]
        if chosen:
            self.run(step, lambda run: rows[run.name], hosts=chosen)
