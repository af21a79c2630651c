"""The ``patch`` play: OS updates and reboots, one host at a time, with no failed request and no lost shard.

``nr run patch`` takes the hosts in order (:func:`tasks.patch.plan.order`: k3s agents, other hosts,
servers, the first server last) and patches one at a time (:mod:`tasks.patch.steps`: look, prepare,
upgrade, reboot); a host with nothing to upgrade, no reboot pending and its node not cordoned is left
alone, so a second run changes nothing. It never starts while the site could not lose a host (a Redis instance down, ``cluster_state``
not ``ok``, a shard without an in-sync replica on another host, a k3s node not Ready), and it stops at the
first host that does not come back healthy: the hosts after it are left untouched, and the error names
the site's state, read live, and the commands that continue (:mod:`tasks.patch.state`). After the last
host, the redis play restores the planned Redis roles and the site's checks run (the gRPC round trip
through every node), as at the end of ``nr run site``.

``--dry-run`` lists, host by host, the Redis masters that would move, the drain, the packages
``apt-get -s`` would upgrade (on package lists fetched into a temporary folder) and whether it would
reboot. ``--reboot always|needed`` (a run option of this component) overrides ``data.patch_reboot``.
``check`` warns about hosts that wait for a reboot; ``drift`` reports nothing (a patch level is no
desired state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.facts import gather
from nr.ops.kubectl import KubectlError
from nr.outcome import CheckItem, Outcome
from nr.play import HostRun, PlayContext
from tasks.k3s.wait import Clock
from tasks.patch import apt, kube
from tasks.patch.cluster import ConnectorFactory, RedisSide
from tasks.patch.plan import PatchSite, load
from tasks.patch.state import report
from tasks.patch.steps import Patcher
from tasks.redis.observe import redis_connector

Finish = Callable[[PlayContext], None]


def restore_and_check(ctx: PlayContext) -> None:
    """The redis play (its cluster step restores the planned roles) and the site's checks."""
    from tasks.checks.play import component as checks
    from tasks.redis.play import component as redis

    redis.apply(ctx.for_component("redis"))
    checks.apply(ctx.for_component("checks"))


class PatchComponent:
    name = "patch"

    def __init__(
        self,
        connector: ConnectorFactory = redis_connector,
        *,
        clock: Clock | None = None,
        finish: Finish = restore_and_check,
        redis_timeout: float = 60.0,
        poll: float = 0.5,
    ) -> None:
        self.connector, self.clock, self.finish = connector, clock or Clock(), finish
        self.redis_timeout, self.poll = redis_timeout, poll

    def _patcher(self, ctx: PlayContext, site: PatchSite) -> Patcher:
        side = None
        if site.redis is not None:
            connect = self.connector(site.redis.password, 10.0)
            side = RedisSide(site.redis, connect, self.redis_timeout, self.poll)
        return Patcher(ctx, site, side, self.clock)

    def validate(self, ctx: PlayContext) -> list[str]:
        try:
            load(ctx)
        except NrError as exc:
            return [str(exc)]
        return []

    # -- apply -----------------------------------------------------------------------------------
    def apply(self, ctx: PlayContext) -> None:
        site = load(ctx)
        patcher = self._patcher(ctx, site)
        if ctx.dry_run:
            self._dry_run(ctx, site, patcher)
            return
        for i, host in enumerate(site.order):
            if not self._patch(ctx, patcher, host):
                for later in site.order[i + 1 :]:
                    ctx.fail_host(
                        later, "skipped", f"not patched: the run stopped at {host.name} (see there)"
                    )
                return
            patcher.progress.finished.append(host.name)
        self.finish(ctx)

    def _patch(self, ctx: PlayContext, patcher: Patcher, host: Host) -> bool:
        """The three steps of one host; False (the host failed, with the site's state) at the first error."""
        fact: list[apt.RebootFact] = []

        def timed(step: str, fn: Callable[[HostRun], Outcome[Any]]) -> Callable[[HostRun], Outcome[Any]]:
            def run_it(run: HostRun) -> Outcome[Any]:
                start = self.clock.now()
                try:
                    return fn(run)
                finally:
                    patcher.progress.seconds.setdefault(run.name, {})[step] = self.clock.now() - start

            return run_it

        def upgrade(run: HostRun) -> Outcome[apt.RebootFact]:
            out = patcher.upgrade(run)
            fact.extend([out.value] if out.value is not None else [])
            return out

        looked = ctx.run("look", self._stopping(ctx, patcher, patcher.look), hosts=[host])
        if host.name in looked.failed or ctx.failed(host):
            return False
        if not looked.value(host.name):
            return True  # up to date: untouched
        steps: list[tuple[str, Callable[[HostRun], Outcome[Any]]]] = [
            ("prepare", timed("prepare", patcher.prepare)),
            ("upgrade", timed("upgrade", upgrade)),
            ("reboot", lambda run: patcher.reboot(run, fact[0] if fact else apt.RebootFact(False, ()))),
        ]
        for step, fn in steps:
            result = ctx.run(step, self._stopping(ctx, patcher, fn), hosts=[host])
            if host.name in result.failed or ctx.failed(host):
                return False
        return True

    def _stopping(
        self, ctx: PlayContext, patcher: Patcher, fn: Callable[[HostRun], Outcome[Any]]
    ) -> Callable[[HostRun], Outcome[Any]]:
        """``fn``, whose error carries the site's state and how to continue (read when it fails)."""

        def step(run: HostRun) -> Outcome[Any]:
            try:
                return fn(run)
            except NrError as exc:
                state = report(ctx, patcher.site, patcher.redis, patcher.progress, run.name)
                ctx.note(state.strip())
                raise NrError(f"{exc}\n{state}") from None

        return step

    # -- dry run ---------------------------------------------------------------------------------
    def _dry_run(self, ctx: PlayContext, site: PatchSite, patcher: Patcher) -> None:
        first = site.order[0]
        problems, warnings = patcher.preflight(first.name)
        for w in warnings:
            ctx.note(w)
        if problems:
            ctx.fail_host(
                first, "prepare", "would not start: the site cannot lose a host now: " + "; ".join(problems)
            )
            return
        nodes = {}
        if site.first is not None:
            try:
                nodes = kube.nodes(ctx.remote(site.first))
            except KubectlError as exc:
                raise NrError(f"patch: the k3s API on {site.first} does not answer: {exc}") from None
        moves = {h.name: patcher.dry_moves(h.name) for h in site.order}
        drains = {h.name: bool(kube.serving(nodes, h.name)) for h in site.order}
        ctx.note("order: " + ", ".join(site.names()) + " (one at a time)")
        ctx.run(
            "plan", lambda run: patcher.plan(run, moves[run.name], drains[run.name]), hosts=list(site.order)
        )

    # -- check and drift -------------------------------------------------------------------------
    def check(self, ctx: PlayContext) -> None:
        def fn(run: HostRun) -> Outcome[None]:
            facts = gather(run.remote, commands={"reboot": apt.REBOOT_FACT})
            fact = apt.reboot_fact(apt.sections(facts.out("reboot")).get("reboot", []))
            item = CheckItem("no reboot pending", not fact.required, fact.describe(),
                             ctx.fix_command("patch", run.name), warning=True)  # fmt: skip
            return Outcome(checks=[item], summary=fact.describe())

        ctx.run("check", fn)

    def drift(self, ctx: PlayContext) -> None:
        return None


component = PatchComponent()
