"""The redis play's checks: small rules over one host's observation, serving ``nr check`` and ``nr drift``.

Each rule is one check of ``nr check`` and its findings are what ``nr drift`` reports (warnings only in
``check``), through :func:`nr.outcome.evaluate`: a check can never fail without drift seeing it. A host's
observation holds the changes the install plan would make there, the firewall's differences, what its
instances run with (``CONFIG GET``) and the cluster checks' findings (:mod:`tasks.redis.findings`);
cluster-wide checks are evaluated on the first host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from nr.changes import Change
from nr.outcome import Finding, Rule, Severity
from tasks.redis import firewall as fw
from tasks.redis.config import InstanceConfig
from tasks.redis.findings import CLUSTER_CHECKS, FIX_RUN, ClusterFinding, with_note
from tasks.redis.runtime import ACCESS, PERSISTENCE, Mismatch

RESTART_NOTE = (
    "the run restarts it with its config file, one host at a time, its shards on their replicas first"
)


@dataclass(frozen=True)
class HostView:
    """One redis host as the checks see it."""

    host: str
    first: bool  # cluster-wide checks are reported on the first host
    configs: tuple[InstanceConfig, ...]
    changes: tuple[Change, ...]  # what `nr run redis` would change on the host
    firewall: tuple[Finding, ...] | None  # the loaded table's differences; None: the firewall is off
    running: Mapping[str, Sequence[Mismatch]]  # instance label -> running config differences
    reachable: frozenset[str]  # instance labels whose running config could be read
    cluster: Mapping[str, Sequence[ClusterFinding]]  # cluster check name -> its findings (all hosts)
    fix: str = FIX_RUN  # the command that repairs (ctx.fix_command: with the run's -i INVENTORY)


def _changes(match: Callable[[Change], bool]) -> Callable[[HostView], Iterator[Finding]]:
    def find(v: HostView) -> Iterator[Finding]:
        yield from (Finding.of_change(c) for c in v.changes if match(c))

    return find


def _firewall(v: HostView) -> Iterator[Finding]:
    files = (f"file {fw.FILE}", f"file {fw.UNIT_FILE}")
    yield from (Finding.of_change(c) for c in v.changes if c.what in files)
    yield from v.firewall or ()


def _running_rule(label: str, name: str, settings: Callable[[str], bool], explain: str) -> Rule[HostView]:
    """The instance ``label`` runs with the settings its config file says (those ``settings`` selects)."""

    def find(v: HostView) -> Iterator[Finding]:
        for m in v.running.get(label, ()):
            if settings(m.setting):
                yield Finding(
                    f"{label} {name}",
                    m.file_text,
                    m.running_text,
                    with_note(v.fix, RESTART_NOTE),
                    Severity.DRIFT,
                    explain,
                )

    def passed(v: HostView) -> str:
        return "as in its config file" if label in v.reachable else "not read (see its access check)"

    return Rule(f"{label} {name}", find, passed)


def _instance_rules(c: InstanceConfig) -> list[Rule[HostView]]:
    label = f"{c.host}:{c.port}"
    why = "the process runs with other values than its config file (a restart that did not happen, or CONFIG SET)"
    return [
        _running_rule(label, "persistence", lambda s: s in PERSISTENCE, why),
        _running_rule(label, "bind and password", lambda s: s in ACCESS, why),
        _running_rule(label, "running config", lambda s: s not in (*PERSISTENCE, *ACCESS), why),
    ]


def _cluster_rule(name: str) -> Rule[HostView]:
    def find(v: HostView) -> Iterator[Finding]:
        for f in v.cluster.get(name, ()):
            if f.host == v.host or (not f.host and v.first):
                yield f.finding(v.fix)

    return Rule(name, find)


def rules(view: HostView) -> list[Rule[HostView]]:
    """The checks of one host, in the order ``nr check -v`` lists them."""
    out: list[Rule[HostView]] = [
        Rule("redis packages", _changes(lambda c: c.what.startswith("packages ")), lambda _: "installed"),
        Rule(
            "stock redis-server stopped",
            _changes(lambda c: c.what.startswith("service redis-server.service")),
            lambda _: "stopped, disabled",
        ),
        Rule("redis data folders", _changes(lambda c: c.what.startswith("folder ")), lambda _: "as desired"),
        Rule(
            "redis config files",
            _changes(lambda c: c.what.startswith("file /etc/redis/")),
            lambda _: "as desired",
        ),
        Rule(
            "redis instances enabled and running",
            _changes(lambda c: c.what.startswith("service redis-server@")),
            lambda _: "enabled, running",
        ),
    ]
    if view.firewall is not None:
        out.append(Rule("redis firewall", _firewall, lambda _: f"table inet {fw.TABLE} loaded as planned"))
    for c in view.configs:
        out += _instance_rules(c)
    out += [_cluster_rule(name) for name, _, per_host in CLUSTER_CHECKS if per_host or view.first]
    return out
