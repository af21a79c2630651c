"""The ``redis`` play: a Redis Cluster with two instances per host and rotated replicas.

Steps of ``nr run redis``:

1. validate (before any host is touched): the site plans (:func:`tasks.redis.site.load_site`: >= 3 hosts,
   distinct addresses, ports that clash with nothing, a password of >= 16 characters, the same settings on
   every host); then the preflight, while the hosts' reads start: every instance that already runs accepts
   the password — a wrong one is refused here, before anything changes;
2. install, on every host in parallel (one facts round trip, one apply round trip when something differs):
   packages, the stock service stopped, the firewall, folders, configs, units (:mod:`tasks.redis.install`);
3. restart, host by host, every instance that runs with other settings than its config file, each host's
   shards handed to their replicas first (:mod:`tasks.redis.restart`); a host that does not come back stops
   the restarts, and the cluster step;
4. cluster, from the controller over TCP (redis-py; the password never reaches a shell): observe, plan the
   exact actions (MEET, ADDSLOTSRANGE, REPLICATE, FAILOVER to restore planned roles, online slot moves for a
   new host), execute them and verify (:mod:`tasks.redis.reconcile`, :mod:`tasks.redis.execute`).

``nr check`` and ``nr drift`` evaluate the same rules (:mod:`tasks.redis.rules`) on the same observation.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.facts import Facts, gather
from nr.outcome import Outcome, Severity, evaluate
from nr.play import HostRun, PlayContext
from nr.readahead import Probe, Read
from nr.status import Cell, Reads, StatusSection
from tasks.redis import firewall as fw
from tasks.redis import status
from tasks.redis.contract import GROUP as REDIS
from tasks.redis.errors import AccessError, ClusterError, PlanError
from tasks.redis.execute import execute
from tasks.redis.findings import CLUSTER_CHECKS, findings, view
from tasks.redis.install import HostSpec, facts, plan_host
from tasks.redis.observe import Access, ClusterObservation, Connector, Password, observe, redis_connector
from tasks.redis.reconcile import plan_actions
from tasks.redis.restart import Restarter, pending_restarts
from tasks.redis.rules import HostView, rules
from tasks.redis.runtime import by_instance, settings_to_read
from tasks.redis.site import RedisSite, load_site

if TYPE_CHECKING:
    from nr.backup.api import Part, RestorePlan, Restoring

ConnectorFactory = Callable[[Password, float], Connector]
CLUSTER_TIMEOUT = 120.0
OBSERVATION = ("redis", "cluster")  # the probe read ahead: the cluster and its running settings
PREFLIGHT = ("redis", "preflight")  # what the preflight observed: a backup snapshots that cluster


def _install(run: HostRun, spec: HostSpec) -> Outcome[None]:
    files, commands = facts(spec)
    plan = plan_host(spec, gather(run.remote, files=files, commands=commands))
    return run.apply(plan.changes)


class RedisComponent:
    name = "redis"

    def __init__(
        self,
        connector: ConnectorFactory = redis_connector,
        local_address: fw.LocalAddress = fw.local_address,
        *,
        up_timeout: float = 30.0,  # freshly started instances to answer
        restart_timeout: float = 60.0,  # a handover failover, or restarted instances coming back
        poll: float = 0.5,
    ) -> None:
        self.connector = connector
        self.local_address = local_address
        self.up_timeout = up_timeout
        self.restart_timeout = restart_timeout
        self.poll = poll

    # -- what every mode reads --------------------------------------------------------------------
    def _connect(self, site: RedisSite, timeout: float = 3.0) -> Connector:
        return self.connector(site.password, timeout)

    def _observe(self, site: RedisSite, *, running: bool = False) -> ClusterObservation:
        configs = [c for cs in site.configs.values() for c in cs]
        settings = settings_to_read(configs) if running else ()
        return observe(site.layout, site.password, connect=self._connect(site), settings=settings)

    def _observed(self, ctx: PlayContext, site: RedisSite, *, keep: bool = False) -> ClusterObservation:
        """The cluster with its running settings: the observation made ahead of the run if it is still
        good (nothing changed since: nr.readahead), else a new one."""
        found = ctx.read_ahead().take_probe(OBSERVATION, keep=keep)
        return found if isinstance(found, ClusterObservation) else self._observe(site, running=True)

    def _specs(self, site: RedisSite, hosts: Sequence[Host]) -> dict[str, HostSpec]:
        spec = None
        if site.firewall:
            spec = fw.plan_spec(
                site.ports, site.addresses, site.clients, site.site_addresses, self.local_address
            )
        return {h.name: HostSpec(site, h.name, spec) for h in hosts}

    def reads(self, ctx: PlayContext, mode: str) -> list[Read | Probe]:
        """Each Redis host's install/inspect round trip, the same in every mode, and the cluster's
        observation over TCP that the preflight and then the turn use (read ahead: nr.readahead)."""
        hosts = ctx.hosts(REDIS)
        if not hosts:
            return []
        site = load_site(ctx)
        specs = self._specs(site, hosts)
        observation = Probe(OBSERVATION, functools.partial(self._observe, site, running=True))
        return [observation, *(Read.of(name, *facts(spec)) for name, spec in specs.items())]

    # -- validate (the inventory alone), then preflight (the running instances accept the password) --
    def validate(self, ctx: PlayContext) -> list[str]:
        if not ctx.all_hosts(REDIS):
            return []
        try:
            load_site(ctx)
        except NrError as exc:
            return [str(exc)]
        return []

    def preflight(self, ctx: PlayContext) -> list[str]:
        if not ctx.all_hosts(REDIS):
            return []
        site = load_site(ctx)
        obs = ctx.once(PREFLIGHT, lambda: self._observed(ctx, site, keep=True))
        wrong = [i for i in obs.instances if i.access in (Access.WRONG_PASSWORD, Access.NO_PASSWORD)]
        if wrong:
            labels = ", ".join(f"{i.label} ({i.access.value})" for i in wrong)
            return [
                f"redis: the password from {ctx.all_hosts(REDIS)[0].get('redis_password')} is refused by the "
                f"running instance(s) {labels}; nothing was changed. Fix the secret (or change the password "
                f"on the instances first: CONFIG SET requirepass/masterauth on each, then update the secret)"
            ]
        return []

    # -- apply ---------------------------------------------------------------------------------
    def apply(self, ctx: PlayContext) -> None:
        if not ctx.all_hosts(REDIS):
            ctx.note("no host in group 'redis': nothing to do")
            return
        site = load_site(ctx)
        hosts = ctx.hosts(REDIS)
        if not hosts:
            return
        specs = self._specs(site, hosts)
        installed = ctx.run("install", lambda run: _install(run, specs[run.name]), hosts=hosts)
        seen = self._observed(ctx, site)
        restarted = self._restart(ctx, site, hosts, seen)
        failed = [h.name for h in ctx.all_hosts(REDIS) if ctx.failed(h)]
        if failed:
            ctx.note(f"cluster step skipped: {', '.join(failed)} failed earlier")
            return
        current = (
            None if installed.changed or restarted else seen
        )  # nothing changed since: no need to look again
        ctx.run("cluster", lambda run: self._cluster(run, site, current), hosts=[ctx.all_hosts(REDIS)[0]])

    def _restart(
        self, ctx: PlayContext, site: RedisSite, hosts: Sequence[Host], seen: ClusterObservation
    ) -> bool:
        """Restart, one host at a time in inventory order, every instance running an outdated config."""
        todo = pending_restarts(site, by_instance(site.configs, seen))
        restarter = Restarter(site, self._connect(site), self.restart_timeout, self.poll)
        for host in hosts:
            job = todo.get(host.name)
            if job is None or ctx.failed(host):
                continue
            ctx.run("restart", functools.partial(restarter, restart=job), hosts=[host])
            if ctx.failed(host):
                later = [h.name for h in hosts[hosts.index(host) + 1 :] if h.name in todo]
                ctx.note(
                    f"restarts stopped at {host.name}: {', '.join(later) or 'no host'} after it keep(s) running "
                    "the old config (nr drift shows it; the next nr run redis restarts them)"
                )
                break
        return bool(todo)

    def _wait_reachable(self, site: RedisSite, timeout: float) -> ClusterObservation:
        """Observe until every instance answers (freshly started units need a moment) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            obs = self._observe(site)
            if all(i.access is Access.OK for i in obs.instances) or time.monotonic() > deadline:
                return obs
            if any(i.access is Access.WRONG_PASSWORD for i in obs.instances):
                return obs
            time.sleep(self.poll)

    def _cluster(
        self, run: HostRun, site: RedisSite, seen: ClusterObservation | None = None
    ) -> Outcome[None]:
        if seen is not None and all(i.access is Access.OK for i in seen.instances):
            obs = seen
        else:
            obs = self._wait_reachable(site, 2.0 if run.dry_run else self.up_timeout)
        down = [i for i in obs.instances if i.access is not Access.OK]
        if run.dry_run and down and all(i.access is Access.UNREACHABLE for i in down):
            labels = ", ".join(i.label for i in down)
            diff = f"(instances not running yet: {labels}; the cluster would be formed as planned)\n{site.layout.table()}\n"
            return Outcome(extra_diff=diff, changed_flag=True)
        try:
            actions = plan_actions(site.layout, obs)
        except (AccessError, PlanError) as exc:
            raise NrError(str(exc)) from None
        diff = "".join(f"~ {a.description}\n" for a in actions)
        if run.dry_run or not actions:
            return Outcome(extra_diff=diff, changed_flag=bool(actions), summary=site.layout.table())
        try:
            execute(
                actions,
                site.layout,
                site.password,
                timeout=CLUSTER_TIMEOUT,
                connect=self._connect(site, 30.0),
            )
        except (ClusterError, TimeoutError, PlanError) as exc:
            raise NrError(f"redis cluster: {exc}") from None
        errors = [f for f in findings(site.layout, self._observe(site)) if f.severity is Severity.ERROR]
        if errors:
            text = "; ".join(f.message for f in errors)
            return Outcome(error=f"redis cluster: {text}", extra_diff=diff, changed_flag=True)
        return Outcome(extra_diff=diff, changed_flag=True, summary=site.layout.table())

    # -- check and drift -------------------------------------------------------------------------
    def _inspect(self, ctx: PlayContext, step: str) -> None:
        if not ctx.all_hosts(REDIS) or not ctx.hosts(REDIS):
            return
        site = load_site(ctx)
        hosts = ctx.hosts(REDIS)
        specs = self._specs(site, hosts)
        obs = self._observed(ctx, site)
        cluster_view = view(site.layout, obs)
        cluster = {name: check(cluster_view) for name, check, _ in CLUSTER_CHECKS}
        running = by_instance(site.configs, obs)
        reachable = frozenset(i.label for i in obs.instances if i.reachable and i.config)

        def inspect(run: HostRun) -> Outcome[None]:
            spec = specs[run.name]
            files, commands = facts(spec)
            plan = plan_host(spec, gather(run.remote, files=files, commands=commands))
            host_view = HostView(
                run.name,
                run.name == hosts[0].name,
                spec.configs,
                tuple(plan.changes),
                tuple(plan.findings) if spec.firewall else None,
                running,
                reachable,
                cluster,
                ctx.fix_command("redis"),
            )
            verdict = evaluate(rules(host_view), host_view)
            passed = sum(c.ok for c in verdict.checks)
            return Outcome(
                checks=verdict.checks, findings=verdict.drift, summary=f"{passed}/{len(verdict.checks)}"
            )

        ctx.run(step, inspect, hosts=hosts)

    def check(self, ctx: PlayContext) -> None:
        self._inspect(ctx, "check")

    def drift(self, ctx: PlayContext) -> None:
        self._inspect(ctx, "drift")

    # -- nr backup / nr restore (tasks/redis/backup.py, tasks/redis/restore.py) ----------------------
    def backup(self, ctx: PlayContext, part: Part) -> Mapping[str, Any]:
        from tasks.redis import backup

        site = load_site(ctx)
        # the preflight's observation, made a moment ago (a backup changes nothing before its snapshots)
        obs = ctx.once(PREFLIGHT, lambda: self._observe(site))
        return backup.backup(ctx, part, site, obs, self._connect(site, 10.0))

    def restore_plan(self, ctx: PlayContext, backup: Restoring) -> RestorePlan:
        from tasks.redis import restore

        site = load_site(ctx)
        return restore.plan(ctx, backup, site, self._connect(site, 10.0))

    def restore(self, ctx: PlayContext, backup: Restoring, plan: RestorePlan) -> None:
        from tasks.redis import restore

        site = load_site(ctx)
        restore.Restorer(ctx, site, self._connect(site, 10.0), plan.data, backup, poll=self.poll).run()

    # -- status (nr status): the cluster over TCP from this machine, no host reads ----------------
    def status_reads(self, ctx: PlayContext) -> dict[str, Reads]:
        return {}

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        if not ctx.all_hosts(REDIS):
            return StatusSection(self.name, "Redis Cluster", Cell(f"no host in group '{REDIS}'"))
        site = load_site(ctx)
        obs = observe(site.layout, site.password, connect=self._connect(site), keys=True)
        return status.section(site.layout, obs, status.with_inventory(ctx.fix_command(self.name)))


component = RedisComponent()
