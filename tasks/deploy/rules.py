"""The deploy play's checks: small rules over one observation, serving ``check`` and ``drift``.

Each rule is one check of ``nr check deploy``; its findings are what ``nr drift deploy`` reports.
The rules look at the changes ``nr run deploy`` would make from the same observation, so a check
can never disagree with what a run would do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nr.changes import Change
from nr.outcome import Finding, Rule, Severity
from tasks.deploy.cluster import EXPECTED, WHAT, Cluster
from tasks.deploy.nodes import NodeImages


@dataclass(frozen=True)
class NodeObserved:
    """One k3s node: its images, the changes a run would make, and why it cannot run ours (if so)."""

    host: str
    node: NodeImages
    changes: tuple[Change, ...]
    build_arch: str
    arch_problem: str | None = None


@dataclass(frozen=True)
class ClusterObserved:
    """The first server: the app on the cluster and the changes a run would make."""

    host: str
    cluster: Cluster
    changes: tuple[Change, ...]
    fix: str  # the command that installs k3s and deploys


def _of_changes(match: Callable[[Change], bool]) -> Callable[[NodeObserved], Iterator[Finding]]:
    def find(o: NodeObserved) -> Iterator[Finding]:
        yield from (Finding.of_change(c) for c in o.changes if match(c))

    return find


def _arch(o: NodeObserved) -> Iterator[Finding]:
    if o.arch_problem:
        advice = f"run nr on a {o.node.arch} machine, or set data.image_registry to a registry with {o.node.arch} images"
        yield Finding("node architecture", o.build_arch, o.node.arch, advice, Severity.ERROR, o.arch_problem)


def node_rules() -> list[Rule[NodeObserved]]:
    return [
        Rule("node architecture", _arch, lambda o: o.node.arch),
        Rule("service images imported", _of_changes(lambda c: not c.what.endswith(" pinned")),
             lambda o: "every image, as built here"),
        Rule("service images pinned", _of_changes(lambda c: c.what.endswith(" pinned")),
             lambda o: "io.cri-containerd.pinned=pinned (kept by the kubelet's image GC)"),
    ]  # fmt: skip


def _installed(o: ClusterObserved) -> Iterator[Finding]:
    if not o.cluster.installed:
        yield Finding(WHAT, "deployed", f"k3s is not installed on {o.host}", o.fix, Severity.ERROR)


def _manifests(o: ClusterObserved) -> Iterator[Finding]:
    yield from (Finding.of_change(c) for c in o.changes)


def cluster_rules() -> list[Rule[ClusterObserved]]:
    return [
        Rule("k3s installed", _installed, lambda o: o.host),
        Rule("manifests applied", _manifests, lambda o: EXPECTED),
    ]
