"""The ``deploy`` play: ship the AeroAlpes images to the k3s nodes and apply ``k3s/``.

1. images (every k3s node, in parallel; skipped with ``data.image_registry``): one round trip reads
   the node's architecture and what its containerd has (:mod:`tasks.deploy.nodes`); a node of
   another architecture than the images is refused; a node that lacks an image gets it over SFTP,
   imported and pinned; the images are built here only when a node needs them and Docker lacks
   them (:mod:`tasks.deploy.local`);
2. apply (first server): one round trip reads the app on the cluster and ``kubectl diff``s the
   rendered manifests (:mod:`tasks.deploy.cluster`); when they differ (or the namespace does not
   exist yet) they are applied and the rollouts awaited with a bounded timeout.

``check`` and ``drift`` evaluate the same rules (:mod:`tasks.deploy.rules`) on the same
observations, and build nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.facts import Facts, gather
from nr.outcome import Outcome, Rule, evaluate
from nr.play import HostRun, PlayContext
from nr.readahead import Read
from nr.status import Cell, Reads, StatusSection
from tasks.deploy import cluster, nodes, status
from tasks.deploy.local import Builder
from tasks.deploy.manifests import IMAGES, manifests_yaml, site_objects
from tasks.deploy.rules import ClusterObserved, NodeObserved, cluster_rules, node_rules
from tasks.deploy.site import DeploySite, first_server, k3s_hosts, load_site, problems

IMPORT_TIMEOUT = 600


def _verdict(rules: list[Rule[Any]], observed: Any, *, checking: bool) -> Outcome[None]:
    verdict = evaluate(rules, observed)
    passed = sum(c.ok for c in verdict.checks)
    return Outcome(
        checks=verdict.checks if checking else (),
        findings=verdict.drift,
        summary=f"{passed}/{len(verdict.checks)} passed",
    )


class _Play:
    """One run of the play (apply, check or drift): the site, and the host functions on it."""

    def __init__(self, ctx: PlayContext, mode: str) -> None:
        self.ctx, self.mode = ctx, mode
        self.site: DeploySite = load_site(ctx)
        self.builder = Builder(self.site.app, self.site.base_image, dry_run=ctx.dry_run or mode != "apply")
        # rendered once per run: the declared reads (read ahead) and the turn need the same manifests
        self.objects, self.manifests = ctx.once(("deploy", "manifests"), self._render)

    def _render(self) -> tuple[list[dict[str, Any]], str]:
        objects = site_objects(self.site.app, self.site.password)
        return objects, manifests_yaml(objects)

    def fix(self, host: str | None = None) -> str:
        return self.ctx.fix_command("deploy", host)

    def node(self, run: HostRun) -> Outcome[None]:
        facts = gather(run.remote, commands=nodes.facts_commands(IMAGES))
        node = nodes.observe(facts.outputs, IMAGES)
        build_arch = self.builder.arch()
        problem = nodes.arch_problem(run.name, node, build_arch)
        if self.mode == "apply" and problem:
            raise NrError(problem)  # before anything is built or sent
        changes = nodes.plan_images(self.builder.images(), node, self.fix(run.name))
        if self.mode == "apply":
            return run.apply(changes, timeout=IMPORT_TIMEOUT)
        observed = NodeObserved(run.name, node, tuple(changes), build_arch, problem)
        return _verdict(node_rules(), observed, checking=self.mode == "check")

    def first(self, run: HostRun) -> Outcome[None]:
        state = cluster.observe(run, self.manifests)
        changes = cluster.plan(state, self.objects, self.manifests, self.fix()) if state.installed else []
        if self.mode != "apply":
            observed = ClusterObserved(run.name, state, tuple(changes), self.k3s_fix())
            return _verdict(cluster_rules(), observed, checking=self.mode == "check")
        if not state.installed:
            return self.without_k3s(run)
        outcome: Outcome[None] = run.apply(changes)
        if not run.dry_run and (changes or state.unavailable):
            cluster.wait_rollouts(run, applied=bool(changes))
        return outcome

    def k3s_fix(self) -> str:
        return f"{self.ctx.fix_command('k3s')} && {self.fix()}"

    def without_k3s(self, run: HostRun) -> Outcome[None]:
        if not run.dry_run:
            raise NrError(f"k3s is not installed on {run.name}: run `{self.ctx.fix_command('k3s')}` first")
        observed = ClusterObserved(run.name, cluster.Cluster(installed=False), (), self.k3s_fix())
        return Outcome(
            findings=evaluate(cluster_rules(), observed).drift,
            extra_diff=f"k3s is not installed on {run.name}: the app is deployed after {self.k3s_fix()}\n",
            changed_flag=True,
        )

    def image_hosts(self) -> list[Host]:
        """The nodes the images step reads and feeds (none when they pull from a registry)."""
        if self.site.app.registry:
            return []
        return [h for h in k3s_hosts(self.ctx) if h in self.ctx.hosts()]

    def reads(self) -> list[Read]:
        """The round trips :meth:`run` starts with: each node's images, the app on the first server."""
        nodes_read = [Read.of(h.name, commands=nodes.facts_commands(IMAGES)) for h in self.image_hosts()]
        return [*nodes_read, Read.of(self.site.first.name, commands=cluster.facts_commands(self.manifests))]

    def run(self) -> None:
        if not self.site.app.registry:  # else the nodes pull the images from the registry
            self.ctx.run("images", self.node, hosts=self.image_hosts())
        self.ctx.run("apply", self.first, hosts=[self.site.first])


class DeployComponent:
    name = "deploy"

    def validate(self, ctx: PlayContext) -> list[str]:
        return problems(ctx)

    def reads(self, ctx: PlayContext, mode: str) -> list[Read]:
        """What every mode reads first (read ahead: nr.readahead)."""
        return [] if first_server(ctx) is None else _Play(ctx, mode).reads()

    def _play(self, ctx: PlayContext, mode: str) -> None:
        if first_server(ctx) is None:
            if mode == "apply":
                ctx.note("no host in group 'k3s_servers': nothing to deploy")
            return
        _Play(ctx, mode).run()

    def apply(self, ctx: PlayContext) -> None:
        self._play(ctx, "apply")

    def check(self, ctx: PlayContext) -> None:
        self._play(ctx, "check")

    def drift(self, ctx: PlayContext) -> None:
        self._play(ctx, "drift")

    # -- status (nr status): the app's objects, read on the first server in the engine's round trip --
    def status_reads(self, ctx: PlayContext) -> dict[str, Reads]:
        first = first_server(ctx)
        return status.reads(first.name) if first is not None else {}

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        first = first_server(ctx)
        if first is None:
            return StatusSection(self.name, "App", Cell("no host in group 'k3s_servers'"))
        nodes = {h.name: h.name for h in k3s_hosts(ctx)}  # k3s names each node after its host (node-name)
        return status.section(first.name, facts.get(first.name), nodes, lambda: ctx.fix_command(self.name))


component = DeployComponent()
