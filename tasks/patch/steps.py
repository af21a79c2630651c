"""One host's patch, in three steps the run report shows (each a host function for ``ctx.run``):

0. ``look``: ``apt-get update``, then whether the host has anything to do: packages to upgrade, a reboot
   pending (or ``--reboot always``), its k3s node cordoned (by a run that stopped there). A host with
   none of these is left alone: no hand-over, no drain, so a second run changes nothing;
1. ``prepare``: check that the site can lose the host now (every Redis instance answers, the cluster is
   ``ok``, every shard has an in-sync replica on another host, every k3s node is Ready, no Deployment of
   the site would be left without a ready pod), or stop before touching anything; then hand every Redis
   master on the host to its replica elsewhere, and cordon and drain its k3s node (unless it is the last
   Ready one), bounded by ``patch_drain_timeout``;
2. ``upgrade``: ``apt-get update`` and ``upgrade``/``full-upgrade`` (:mod:`tasks.patch.apt`), recording the
   packages that changed and whether the host asks for a reboot;
3. ``reboot``: reboot when asked (``--reboot always``, or ``/var/run/reboot-required``), wait for SSH with
   the same host key and a finished boot (:mod:`tasks.patch.reboot`), for the k3s node to be Ready again
   (the k3s component's :class:`~tasks.k3s.wait.Waiter`), for both Redis instances to answer as in-sync
   replicas, then uncordon and wait for kube-system's Deployments to be available again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nr.changes import Change, apply_script
from nr.errors import NrError
from nr.ops.kubectl import KubectlError
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from tasks.k3s.status import ExpectedNode
from tasks.k3s.wait import Clock, Waiter, WaitOutcome
from tasks.patch import apt, kube
from tasks.patch.cluster import RedisSide, health_problems, masters_on
from tasks.patch.plan import PatchSite, Settings
from tasks.patch.reboot import new_token, reboot_script, wait_back
from tasks.patch.state import UP_TO_DATE, Progress


@dataclass
class Patcher:
    ctx: PlayContext
    site: PatchSite
    redis: RedisSide | None
    clock: Clock = field(default_factory=Clock)
    progress: Progress = field(default_factory=Progress)

    # -- look ------------------------------------------------------------------------------------
    def look(self, run: HostRun) -> Outcome[bool]:
        """Whether ``run``'s host has anything to do (the value); nothing but its package lists changes."""
        settings = Settings.of(run.host)
        res = run.remote.run(apt.look_script(settings.upgrade), timeout=settings.apt_timeout)
        parts = apt.sections(res.stdout)
        sim = apt.parse_simulation(parts.get("simulate", []))
        fact = apt.reboot_fact(parts.get("reboot", []))
        why = [apt.summary(sim.changes) + " to upgrade"] if sim.changes else []
        why += ["--reboot always"] if settings.reboot == "always" else []
        why += [fact.describe()] if fact.required else []
        if self.site.k3s_node(run.name) and self.site.first is not None:
            node = kube.nodes(self.ctx.remote(self.site.first)).get(run.name)
            why += [f"k3s node {run.name} cordoned"] if node is not None and node.cordoned else []
        if not why:
            self.progress.add(run.name, UP_TO_DATE)
            said = f"up to date: no package to upgrade, {fact.describe()}"
            return Outcome(value=False, summary=said, extra_diff=f"  {said}\n")
        said = "to patch: " + ", ".join(why)
        return Outcome(value=True, summary=said, extra_diff=f"  {said}\n")

    # -- prepare ---------------------------------------------------------------------------------
    def preflight(self, host: str) -> tuple[list[str], list[str]]:
        """(why the site cannot lose ``host`` now, warnings); nothing is changed."""
        problems: list[str] = []
        warnings: list[str] = []
        if self.redis is not None:
            problems += [f"redis: {p}" for p in health_problems(self.redis.site, self.redis.observe())]
        if self.site.k3s is None or self.site.first is None:
            return problems, warnings
        first = self.ctx.remote(self.site.first)
        try:
            found = kube.nodes(first)
        except KubectlError as exc:
            return [*problems, f"k3s: the API on {self.site.first} does not answer: {exc}"], warnings
        problems += [f"k3s: {p}" for p in kube.health_problems(found, [n.name for n in self.site.k3s.nodes])]
        if self.site.k3s_node(host) and kube.serving(found, host):
            refused, warned = kube.pdb_problems(first, host)
            problems += [f"k3s: draining {host} would leave {r}" for r in refused]
            warnings += [f"draining {host} leaves {w} until it starts elsewhere" for w in warned]
        return problems, warnings

    def prepare(self, run: HostRun) -> Outcome[None]:
        host, settings = run.name, Settings.of(run.host)
        problems, warnings = self.preflight(host)
        if problems:
            raise NrError(f"not started: the site cannot lose {host} now: " + "; ".join(problems))
        for w in warnings:
            self.ctx.note(w)
        lines: list[str] = []
        if self.redis is not None and host in self.site.redis_hosts:
            actions = self.redis.hand_over(host)
            lines += [f"~ {a.description}" for a in actions]
            self.progress.add(
                host, f"{len(actions)} Redis master(s) handed over" if actions else "no Redis master on it"
            )
        if self.site.k3s_node(host) and self.site.first is not None:
            lines.append(self._drain(host, settings))
        return Outcome(
            extra_diff="".join(x + "\n" for x in lines), changed_flag=True, summary=lines[-1] if lines else ""
        )

    def _drain(self, host: str, settings: Settings) -> str:
        assert self.site.first is not None
        first = self.ctx.remote(self.site.first)
        if not kube.serving(kube.nodes(first), host):
            self.ctx.note(f"{host} is the last Ready k3s node: not drained, its pods stop while it reboots")
            return f"  not drained: {host} is the last Ready k3s node"
        result = kube.drain(first, host, settings.drain_timeout)
        self.progress.cordoned.add(host)  # kubectl drain cordons first, whatever happens next
        self.progress.add(host, "cordoned" + (" and drained" if result.ok else ""))
        if not result.ok:
            raise NrError(result.describe(host, settings.drain_timeout) + f"; {host} stays cordoned")
        return f"~ {result.describe(host, settings.drain_timeout)}"

    # -- upgrade ---------------------------------------------------------------------------------
    def upgrade(self, run: HostRun) -> Outcome[apt.RebootFact]:
        mode = Settings.of(run.host).upgrade
        change = Change(
            f"packages (apt-get {mode})",
            "the newest versions of the host's apt sources",
            "not upgraded in this run",
            apt.upgrade_script(mode),
            diff=f"~ apt-get update && apt-get -y {mode} (config files changed on the host are kept)\n",
        )
        res = run.remote.run(apply_script([change]), timeout=Settings.of(run.host).apt_timeout)
        parts = apt.sections(res.stdout)
        changed = apt.changed(apt.versions(parts.get("before", [])), apt.versions(parts.get("after", [])))
        fact = apt.reboot_fact(parts.get("reboot", []))
        self.progress.add(run.name, f"upgraded ({apt.summary(changed)})")
        return Outcome(changes=[change], extra_diff=apt.listing(changed), value=fact,
                       summary=f"{apt.summary(changed)}; {fact.describe()}")  # fmt: skip

    # -- reboot and back to service --------------------------------------------------------------
    def reboot(self, run: HostRun, fact: apt.RebootFact) -> Outcome[None]:
        host, settings, started = run.name, Settings.of(run.host), self.clock.now()
        changes: list[Change] = []
        said: list[str] = []
        rebooting = settings.reboot == "always" or fact.required
        if rebooting:
            token = new_token()
            why = "--reboot always" if settings.reboot == "always" else fact.describe()
            changes.append(
                Change(
                    "reboot", "rebooted", f"asked: {why}", reboot_script(token), diff=f"~ reboot ({why})\n"
                )
            )
            run.apply(changes)
            self.progress.add(host, "reboot started")
            back = wait_back(
                lambda: self.ctx.reconnect(host), host, token, settings.reboot_timeout, self.clock
            )
            failed = f" (failed units: {', '.join(back.failed_units)})" if back.failed_units else ""
            self.progress.add(host, f"back after {back.seconds:.0f} s{failed}")
            said.append(f"back {back.seconds:.0f} s after the reboot{failed}")
        else:
            said.append(f"no reboot ({fact.describe()})")
        said += self._back_in_service(host, rebooted=rebooting)
        self.progress.seconds.setdefault(host, {})["reboot and back"] = self.clock.now() - started
        said.append(self.progress.timing(host))
        return Outcome(changes=changes, extra_diff="".join(f"  {x}\n" for x in said), summary="; ".join(said))

    def _back_in_service(self, host: str, *, rebooted: bool) -> list[str]:
        """k3s Ready (after a reboot), both Redis instances in sync, then the node uncordoned."""
        said = []
        k3s_rebooted = rebooted and self.site.k3s_node(host)
        if k3s_rebooted:
            found = self._wait_for(host, deployments=False, restarted=[host])
            if found.problems:
                raise NrError(found.problems.get(host) or "; ".join(found.problems.values()))
            self.progress.add(host, "k3s node Ready")
            said.append("k3s node Ready")
        if self.redis is not None and host in self.site.redis_hosts:
            self.redis.wait_back(host)
            self.progress.add(host, "Redis instances back in sync")
            said.append("Redis instances in sync")
        if host in self.progress.cordoned and self.site.first is not None:
            kube.uncordon(self.ctx.remote(self.site.first), host)
            self.progress.cordoned.discard(host)
            self.progress.add(host, "uncordoned")
            said.append("uncordoned")
        if k3s_rebooted:
            said.append(self._add_ons_back(host))
        return said

    def _wait_for(self, host: str, *, deployments: bool, restarted: Sequence[str] = ()) -> WaitOutcome:
        """The k3s component's wait: ``host``'s node Ready after its reboot (and, with ``deployments``,
        kube-system's Deployments available), bounded by ``k3s_ready_timeout``."""
        k3s = self.site.k3s
        assert k3s is not None
        waiter = Waiter(self.ctx, k3s, self.site.k3s_ready_timeout, self.clock)
        return waiter.wait([ExpectedNode(host, k3s.node(host).role, None)], deployments=deployments,
                           restarted=restarted)  # fmt: skip

    def _add_ons_back(self, host: str) -> str:
        """After a reboot, kube-system's Deployments (coredns, metrics-server, ...) available again before
        the next host goes down: a server's reboot takes the API away, and metrics-server stays unready a
        while after the API is back (waited for once the node is uncordoned: its pods may need it)."""
        found = self._wait_for(host, deployments=True)
        if found.problems or found.deployments:
            why = {**found.problems, **found.deployments}
            raise NrError(
                f"kube-system not available again {found.elapsed:.0f} s after {host} rebooted: "
                + "; ".join(f"{k}: {v}" for k, v in why.items())
            )
        self.progress.add(host, "kube-system available")
        return "kube-system available"

    # -- dry run ---------------------------------------------------------------------------------
    def plan(self, run: HostRun, moves: list[str], drains: bool) -> Outcome[None]:
        """What patching ``run``'s host would do (changes nothing, not even the package lists)."""
        settings = Settings.of(run.host)
        res = run.remote.run(apt.plan_script(settings.upgrade), timeout=settings.apt_timeout)
        parts = apt.sections(res.stdout)
        sim = apt.parse_simulation(parts.get("simulate", []))
        fact = apt.reboot_fact(parts.get("reboot", []))
        lines = [f"~ hand over Redis master {m} to its replica" for m in moves]
        if self.site.k3s_node(run.name):
            lines.append(
                f"~ cordon and drain node {run.name}" if drains else "  not drained (last Ready node)"
            )
        lines.append(f"~ apt-get update && apt-get -y {settings.upgrade}: {apt.summary(sim.changes)}")
        lines += ["  " + c.describe() for c in sim.changes]
        if sim.kept_back:
            lines.append(f"  kept back (full-upgrade would take them): {', '.join(sim.kept_back)}")
        if settings.reboot == "always":
            lines.append("~ reboot (--reboot always)")
        elif fact.required:
            lines.append(f"~ reboot ({fact.describe()})")
        else:
            kernel = [c.name for c in sim.changes if c.name.startswith("linux-image")]
            lines.append(
                "  reboot only if the upgrade asks for one"
                + (f" (likely: {', '.join(kernel)})" if kernel else "")
            )
        return Outcome(extra_diff="".join(x + "\n" for x in lines), changed_flag=True,
                       summary=f"{apt.summary(sim.changes)} to upgrade")  # fmt: skip

    def dry_moves(self, host: str) -> list[str]:
        if self.redis is None or host not in self.site.redis_hosts:
            return []
        return masters_on(self.redis.site, self.redis.observe(), host)
