"""The ``k3s`` component: a k3s cluster on the inventory's k3s_servers and k3s_agents.

A run:

1. ``facts``: one round trip per host (:mod:`tasks.k3s.observe`): the binary's hash and version, the
   files k3s runs from and when they changed, the units, the architecture; on the first server also
   the nodes the cluster knows, its kube-system deployments and its kubeconfig.
2. The token (:mod:`tasks.k3s.tokens`) and the binary: ``data.k3s_binary``, else the release for the
   host's architecture from the local cache (:mod:`tasks.k3s.release`: a sha256 nr knows, else the
   release's listing).
3. The pure plan per host (:mod:`tasks.k3s.plan`), applied in one more round trip per host in the
   rollout order (:mod:`tasks.k3s.rollout`). k3s restarts only when its binary, unit, environment or
   configuration changed, or when an earlier change was never followed by the restart.
4. Waiting, bounded (:mod:`tasks.k3s.wait`; 300 s, ``data.k3s_ready_timeout``/``NR_K3S_READY_TIMEOUT``)
   until every node is Ready with the expected version, then the packaged kube-system deployments.
   A node that cannot join (a rejected token or node password, a service that keeps exiting) fails
   early with the cause and the fix.
5. The kubeconfig of the first server, rewritten and merged into the operator's kubeconfig.

``check`` and ``drift`` evaluate the same rules (:mod:`tasks.k3s.rules`) on the same observation.
Under ``--dry-run`` steps 1-3 run and show the diffs (token masked); nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nr.errors import NrError
from nr.facts import Facts
from nr.ops.release import ReleaseCache
from nr.outcome import CheckItem, Finding, Outcome, Verdict, evaluate
from nr.play import PlayContext
from nr.readahead import Read
from nr.status import Cell, Reads, StatusSection
from tasks.k3s import overview, prepare
from tasks.k3s.contract import KUBECTL
from tasks.k3s.local import kubeconfig_target, load_token, rewrite_kubeconfig, update_kubeconfig, use_hint
from tasks.k3s.observe import REMOTE_KUBECONFIG
from tasks.k3s.prepare import Planner, Prepared, cluster_of, host_info, k3s_hosts, ready_timeout
from tasks.k3s.reset import K3sResetComponent, reset_component
from tasks.k3s.rollout import Rollout
from tasks.k3s.rules import ClusterObs, HostObs, cluster_rules, host_rules
from tasks.k3s.spec import api_url, cluster_problems
from tasks.k3s.status import cluster_status, expected
from tasks.k3s.wait import Clock, Waiter, WaitOutcome

if TYPE_CHECKING:
    from nr.backup.api import Part, RestorePlan, Restoring


class K3sComponent:
    name = "k3s"

    def __init__(self, cache: ReleaseCache | None = None, clock: Clock | None = None) -> None:
        self.cache = cache or ReleaseCache()
        self.clock = clock or Clock()

    def reads(self, ctx: PlayContext, mode: str) -> list[Read]:
        """The facts round trip of every k3s host, the same in every mode (read ahead: nr.readahead)."""
        return prepare.reads(ctx)

    # -- validation ---------------------------------------------------------------------------------
    def validate(self, ctx: PlayContext) -> list[str]:
        hosts = k3s_hosts(ctx)
        if not hosts:
            return []
        problems = cluster_problems([host_info(h) for h in hosts])
        for h in hosts:
            for key in ("k3s_binary", "k3s_airgap_images", "k3s_registries"):
                value = h.get(key)
                if value and not Path(value).expanduser().is_file():
                    problems.append(f"host {h.name}: {key}: {value} is not a file")
            if h.get("k3s_token"):
                try:
                    ctx.secret(h, "k3s_token")
                except NrError as exc:
                    problems.append(str(exc))
        if any(not h.get("k3s_token") for h in hosts):
            try:
                load_token(ctx.inventory_dir)
            except ValueError as exc:
                problems.append(f"k3s token: {exc}")
        try:
            ready_timeout(hosts[0])
        except NrError as exc:
            problems.append(str(exc))
        if "metrics-server" in (hosts[0].get("k3s_disable") or ()):
            ctx.note(
                "warning: k3s_disable removes metrics-server: HorizontalPodAutoscalers (such as the app's) "
                "get no CPU metrics and never scale above their minReplicas"
            )
        return sorted(dict.fromkeys(problems), key=problems.index)

    # -- apply --------------------------------------------------------------------------------------
    def apply(self, ctx: PlayContext) -> None:
        prep = Planner(self.cache).prepare(ctx)
        if prep is None:
            return
        cluster, first = prep.cluster, prep.cluster.first.name
        waiter = Waiter(ctx, cluster, ready_timeout(prep.hosts[first]), self.clock)
        Rollout(ctx, prep, waiter).run()
        if ctx.dry_run:
            path = kubeconfig_target(prep.hosts[first].get("k3s_kubeconfig"))
            ctx.note(f"kubeconfig: context '{cluster.site_name}' would be merged into {path} (if it differs)")
            return
        waiting = [expected(n) for n in prep.targets if not ctx.failed(n.name)]
        if ctx.failed(first) or not waiting:
            return
        found = self._settled(prep) or waiter.wait(waiting, deployments=True, restarted=prep.restarted)
        for name, message in found.problems.items():
            ctx.fail_host(prep.hosts[name], "ready", message)
        if found.deployments and first in {n.name for n in prep.targets}:
            ctx.fail_host(
                prep.hosts[first],
                "ready",
                f"kube-system deployments not available after {found.elapsed:.0f} s: "
                + "; ".join(f"{d}: {why}" for d, why in found.deployments.items())
                + f" (look at: {KUBECTL} -n kube-system get pods on {first})",
            )
        if found.kubeconfig:
            self._merge_kubeconfig(ctx, prep, found.kubeconfig)

    def _settled(self, prep: Prepared) -> WaitOutcome | None:
        """The cluster as read before the run, when nothing changed and it was already Ready (no poll)."""
        facts = prep.first_facts
        if facts is None or any(p.changed for p in prep.plans.values()):
            return None
        waiting = [expected(n) for n in prep.targets]
        problems, deployments = cluster_status(facts, waiting, prep.cluster, True)
        if problems or deployments:
            return None
        return WaitOutcome({}, {}, facts.files[REMOTE_KUBECONFIG].text, 0.0)

    def _merge_kubeconfig(self, ctx: PlayContext, prep: Prepared, fetched: str) -> None:
        cluster = prep.cluster
        path = kubeconfig_target(prep.hosts[cluster.first.name].get("k3s_kubeconfig"))
        try:
            doc = yaml.safe_load(fetched)
            new = rewrite_kubeconfig(doc, api_url(cluster.first.address), cluster.site_name)
            changed = update_kubeconfig(path, new, cluster.site_name)
        except (yaml.YAMLError, AttributeError, TypeError) as exc:
            raise NrError(f"{REMOTE_KUBECONFIG} on {cluster.first.name} is not a kubeconfig: {exc}") from None
        what = "merged into" if changed else "already up to date in"
        ctx.note(
            f"kubeconfig: context '{cluster.site_name}' {what} {path}{use_hint(path, cluster.site_name)}"
        )

    # -- check and drift: the same rules on the same observation ------------------------------------------
    def _inspect(self, ctx: PlayContext, step: str) -> None:
        prep = Planner(self.cache).prepare(ctx)
        if prep is None:
            return
        rows: dict[str, Outcome[None]] = {}
        for node in prep.targets:
            plan = prep.plans.get(node.name)
            if plan is not None and not ctx.failed(node.name):
                rows[node.name] = _outcome(
                    evaluate(host_rules(node), HostObs(node, prep.facts[node.name], plan))
                )
        first, facts = prep.cluster.first.name, prep.first_facts
        if facts is not None and not ctx.failed(first):
            obs = ClusterObs(prep.cluster, facts, prep.targets, lambda host: ctx.fix_command("k3s", host))
            cluster = _outcome(evaluate(cluster_rules(obs), obs))
            mine: Outcome[None] = rows.get(first, Outcome())
            rows[first] = _outcome_of([*mine.checks, *cluster.checks], [*mine.findings, *cluster.findings])
        ctx.report(step, rows)

    def check(self, ctx: PlayContext) -> None:
        self._inspect(ctx, "check")

    def drift(self, ctx: PlayContext) -> None:
        self._inspect(ctx, "drift")

    # -- nr backup / nr restore (tasks/k3s/backup.py, tasks/k3s/restore.py) --------------------------
    def backup(self, ctx: PlayContext, part: Part) -> Mapping[str, Any]:
        from tasks.k3s import backup

        return backup.backup(ctx, part)

    def restore_plan(self, ctx: PlayContext, backup: Restoring) -> RestorePlan:
        from tasks.k3s import restore

        return restore.plan(ctx, backup)

    def restore(self, ctx: PlayContext, backup: Restoring, plan: RestorePlan) -> None:
        from tasks.k3s import restore

        restore.restore(ctx, backup, plan, self.clock)

    # -- status (nr status): versions and units in the engine's round trip, Nodes from the first server --
    def status_reads(self, ctx: PlayContext) -> dict[str, Reads]:
        found = cluster_of(ctx)
        return overview.reads(found[0]) if found else {}

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        found = cluster_of(ctx)
        if found is None:
            return StatusSection(self.name, "k3s", Cell("no host in k3s_servers or k3s_agents"))
        return overview.section(found[0], facts, lambda host: ctx.fix_command(self.name, host))


def _outcome_of(checks: Sequence[CheckItem], findings: Sequence[Finding]) -> Outcome[None]:
    passed = sum(c.ok for c in checks)
    return Outcome(checks=tuple(checks), findings=tuple(findings), summary=f"{passed}/{len(checks)} passed")


def _outcome(verdict: Verdict) -> Outcome[None]:
    return _outcome_of(verdict.checks, verdict.drift)


component = K3sComponent()

__all__ = ["K3sComponent", "K3sResetComponent", "component", "reset_component"]
