"""The k3s checks: small rules, each serving ``nr check`` (a pass/fail item) and ``nr drift`` (its findings).

Host rules look at one host's plan (what ``nr run k3s`` would change there, so a check can never
disagree with the play) and its facts. Cluster rules look at the first server's API: every node in
scope Ready with its role and version, its taints, the packaged kube-system deployments, and Nodes
the inventory does not know. They are reported against the first server, which is where they are read.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from nr.changes import Change
from nr.facts import Facts, Output
from nr.ops import kubectl
from nr.outcome import Finding, Rule, Severity
from tasks.k3s.contract import BINARY, KUBECTL
from tasks.k3s.observe import binary_version, dropins
from tasks.k3s.plan import HostPlan
from tasks.k3s.spec import ClusterSpec, NodeSpec
from tasks.k3s.status import (
    NodeStatus,
    api_problem,
    deployment_problems,
    expected,
    missing_taints,
    node_problems,
    parse_nodes,
)


def on(host: str, *words: str) -> str:
    """A command to run on ``host``, shell-quoted."""
    return f"{shlex.join(words)}  # on {shlex.quote(host)}"


# -- one host ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostObs:
    node: NodeSpec
    facts: Facts
    plan: HostPlan


def _changes(match: Callable[[Change], bool]) -> Callable[[HostObs], Iterator[Finding]]:
    def find(o: HostObs) -> Iterator[Finding]:
        yield from (Finding.of_change(c) for c in o.plan.changes if match(c))

    return find


def _dropins(o: HostObs) -> Iterator[Finding]:
    for path in dropins(o.facts):
        yield Finding(f"file {path}", "absent (every k3s setting comes from the inventory)", "present",
                      on(o.node.name, "rm", "-f", path), Severity.DRIFT,
                      "k3s merges config.yaml.d/*.yaml over config.yaml: move what it sets into the inventory")  # fmt: skip


def host_rules(node: NodeSpec) -> list[Rule[HostObs]]:
    unit = node.role.unit
    return [
        Rule("k3s binary", _changes(lambda c: c.what == f"file {BINARY}"),
             lambda o: binary_version(o.facts) or "installed"),
        Rule("k3s files", _changes(lambda c: c.what.startswith("file ") and c.what != f"file {BINARY}"),
             lambda _: "config.yaml, unit and environment as desired"),
        Rule(f"{unit} service", _changes(lambda c: c.what.startswith("service ")),
             lambda _: "enabled, active, running its current files"),
        Rule("config drop-ins", _dropins, lambda _: "none"),
    ]  # fmt: skip


# -- the cluster, as the first server's API sees it --------------------------------------------------------
@dataclass(frozen=True)
class ClusterObs:
    cluster: ClusterSpec
    facts: Facts  # the first server's, with "nodes" and "deploy"
    nodes: Sequence[NodeSpec]  # in scope (--limit)
    fix: Callable[[str], str]  # host -> `nr run k3s --limit host`

    @property
    def first(self) -> str:
        return self.cluster.first.name

    def status(self) -> dict[str, NodeStatus]:
        return parse_nodes(self.facts.outputs["nodes"])


def _api(o: ClusterObs) -> Iterator[Finding]:
    out = o.facts.outputs["nodes"]
    if out.rc != 0:
        yield Finding(f"k3s API on {o.first}", "answers", api_problem(out), o.fix(o.first), Severity.ERROR,
                      f"journalctl -u k3s -n 50 --no-pager on {o.first}")  # fmt: skip
        return
    try:
        o.status()
    except kubectl.KubectlError as exc:
        yield Finding("node list", "readable", str(exc), o.fix(o.first), Severity.ERROR)


def _node_rule(node: NodeSpec) -> Rule[ClusterObs]:
    name = f"node {node.name} ({node.role.value})"

    def find(o: ClusterObs) -> Iterator[Finding]:
        problem = node_problems(o.status(), [expected(node)]).get(node.name)
        if problem:
            want = f"Ready, {node.version or 'any version'}, {node.role.value}"
            yield Finding(name, want, problem, o.fix(node.name), Severity.ERROR,
                          f"is {node.name} up? journalctl -u {node.role.unit} -n 50 --no-pager on {node.name}")  # fmt: skip
            return
        status = o.status()[node.name]
        for taint in missing_taints(status, node):
            yield Finding(f"node {node.name} taint {taint}", "present",
                          "absent (k3s applies node-taint only when a node registers)",
                          on(o.first, *KUBECTL.split(), "taint", "node", node.name, taint, "--overwrite"))  # fmt: skip

    def passed(o: ClusterObs) -> str:
        n = o.status()[node.name]
        return f"Ready, {n.version}, {'control-plane' if n.control_plane else 'agent'}"

    return Rule(name, find, passed)


def _deployment_rule(deployment: str) -> Rule[ClusterObs]:
    name = f"kube-system deployment {deployment}"

    def find(o: ClusterObs) -> Iterator[Finding]:
        out: Output = o.facts.outputs["deploy"]
        try:
            why = deployment_problems(out, [deployment]).get(deployment)
        except kubectl.KubectlError:
            why = api_problem(out)
        if why:
            yield Finding(name, "available", why, on(o.first, *KUBECTL.split(), "-n", "kube-system",
                                                     "describe", f"deploy/{deployment}"), Severity.ERROR)  # fmt: skip

    return Rule(name, find, lambda _: "available")


def _strangers(o: ClusterObs) -> Iterator[Finding]:
    known = {n.name for n in o.cluster.nodes}
    for name in sorted(set(o.status()) - known):
        yield Finding(f"node {name} (not in the inventory)", "absent", "registered",
                      on(o.first, *KUBECTL.split(), "delete", "node", name), Severity.WARNING,
                      "a host removed from the inventory (or reset by hand) leaves its Node behind")  # fmt: skip


def cluster_rules(o: ClusterObs) -> list[Rule[ClusterObs]]:
    """The API rule alone when the API gives no node list (the others would pass for lack of data)."""
    api = Rule(f"k3s API on {o.first}", _api, lambda _: "answers")
    if next(_api(o), None) is not None:
        return [api]
    rules = [api, *(_node_rule(n) for n in o.nodes)]
    rules += [_deployment_rule(d) for d in o.cluster.expected_deployments]
    return [*rules, Rule("nodes not in the inventory", _strangers, lambda _: "none")]
