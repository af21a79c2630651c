"""Components and plays: how the engine runs the host tasks without knowing their internals.

A *component* (base, redis, k3s, deploy, ...) is an object registered under the entry-point group
``nr.components`` with a name, an order in the site play and three methods that receive a
:class:`PlayContext`:

* ``apply(ctx)``  converge the hosts (under ``--dry-run`` only compute and show the changes);
* ``check(ctx)``  post-deploy checks, each result carrying :class:`CheckItem` rows;
* ``drift(ctx)``  read-only comparison with the desired state, results carrying :class:`Change` rows.

The context runs Nornir tasks over (a subset of) the hosts and records every result in the run
report. Results may carry ``changes=[Change, ...]`` and ``checks=[CheckItem, ...]`` extras.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nornir.core import Nornir
from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, Result, Task
from nornir.plugins.runners import SerialRunner

from nr.errors import NrError
from nr.inventory.schema import K3S_AGENTS, K3S_SERVERS, REDIS

COMPONENTS_GROUP = "nr.components"
PLAYS_GROUP = "nr.plays"  # a play: an ordered tuple of component names (e.g. "site")
COMMANDS_GROUP = "nr.commands"


@dataclass(frozen=True)
class CheckItem:
    """One post-deploy check: ``ok`` or not, with what to look at when it is not."""

    name: str
    ok: bool
    detail: str = ""
    hint: str = ""
    warning: bool = False  # a failed warning is reported but does not fail the check run


@runtime_checkable
class Component(Protocol):
    name: str
    order: int  # position in the site play
    in_site: bool  # part of `nr run site` (k3s-reset is not)
    description: str

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


def load_components() -> dict[str, Component]:
    """Every registered component, by name, in site order."""
    found: list[Component] = []
    for ep in entry_points(group=COMPONENTS_GROUP):
        obj = ep.load()
        if not isinstance(obj, Component):
            raise NrError(f"entry point {ep.name} = {ep.value} is not a component")
        found.append(obj)
    return {c.name: c for c in sorted(found, key=lambda c: c.order)}


def load_plays() -> dict[str, tuple[str, ...]]:
    """Registered plays (name -> component names in order)."""
    plays: dict[str, tuple[str, ...]] = {}
    for ep in entry_points(group=PLAYS_GROUP):
        value = ep.load()
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise NrError(f"entry point {ep.name} = {ep.value} is not a tuple of component names")
        plays[ep.name] = value
    return plays


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
    groups = host_groups(host)
    out = []
    if K3S_SERVERS in groups:
        out.append("k3s-server")
    if K3S_AGENTS in groups:
        out.append("k3s-agent")
    if REDIS in groups:
        out.append("redis")
    return out


class PlayContext:
    """What a component sees while it runs: the hosts, the dry-run flag and a way to run tasks."""

    def __init__(
        self,
        nr: Nornir,
        *,
        component: str,
        recorder: Recorder,
        limit: Iterable[str] | None = None,
        inventory_arg: str | None = None,
    ) -> None:
        self._nr = nr
        self.component = component
        self.recorder = recorder
        self.limit = set(limit) if limit is not None else None
        self.inventory_arg = inventory_arg  # how the operator named the inventory, for "fix" commands

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
        cmd = f"nr run {component or self.component}"
        if self.inventory_arg:
            cmd += f" -i {self.inventory_arg}"
        if host:
            cmd += f" --limit {host}"
        return cmd

    # -- running ------------------------------------------------------------------------------
    def run(
        self,
        step: str,
        task: Callable[..., Result],
        *,
        hosts: Sequence[Host] | None = None,
        group: str | None = None,
        serial: bool = False,
        **kwargs: Any,
    ) -> AggregatedResult:
        """Run ``task`` on ``hosts`` (default: ``self.hosts(group)``); hosts that failed earlier are skipped."""
        chosen = list(hosts) if hosts is not None else self.hosts(group)
        names = {h.name for h in chosen}
        nr = self._nr.filter(filter_func=lambda h: h.name in names)
        if serial:
            nr = nr.with_runner(SerialRunner())
        live = [h.name for h in chosen if not self.failed(h)]
        self.recorder.step_started(self.component, step, live)
        result = nr.run(task=task, name=f"{self.component}.{step}", **kwargs)
        self.recorder.record(self.component, step, result)
        return result

    def note(self, message: str) -> None:
        self.recorder.note(self.component, message)

    def fail_host(self, host: Host, step: str, message: str) -> None:
        """Record a failure decided by the controller (e.g. a cluster-wide step) against ``host``."""

        def _fail(task: Task) -> Result:
            raise NrError(message)

        self.run(step, _fail, hosts=[host])
