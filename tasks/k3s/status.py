"""The cluster as the first server's API sees it (pure): nodes and kube-system deployments.

Parsed from ``k3s kubectl get ... -o json`` through :mod:`nr.ops.kubectl`: stdout only. Real kubectl
prints client-go discovery errors on stderr with exit 0 for as long as metrics-server is not ready
(``memcache.go:265] "Unhandled Error" err="couldn't get current server API group list ..."``; k3s
#7021, #7286, #7427) and, right after a binary upgrade, k3s's data-dir unpacking log; when kubectl
fails (exit 1) the reason is its last stderr line (``The connection to the server 127.0.0.1:6443 was
refused ...``, ``Error from server (InternalError): ... ("apiserver not ready")``).

Node JSON (upstream): ``metadata.labels`` (servers carry ``node-role.kubernetes.io/control-plane``,
``master`` and with embedded etcd ``etcd``), ``status.conditions[type=Ready]``,
``status.nodeInfo.kubeletVersion`` (= the k3s version), ``spec.taints`` (``value`` omitted when empty).
Deployment JSON: ``spec.replicas`` always present; ``status.availableReplicas`` omitted when 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nr.facts import Facts, Output
from nr.ops import kubectl
from tasks.k3s.spec import ClusterSpec, NodeSpec, Role

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
ETCD = "node-role.kubernetes.io/etcd"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ready: str  # "True", "False", "Unknown"
    reason: str
    version: str
    control_plane: bool
    labels: Mapping[str, str]
    taints: tuple[str, ...] = ()  # key=value:Effect (key:Effect without a value)


@dataclass(frozen=True)
class ExpectedNode:
    name: str
    role: Role
    version: str | None  # None: any version


def expected(node: NodeSpec) -> ExpectedNode:
    return ExpectedNode(node.name, node.role, node.version)


def _taint_text(t: Mapping[str, Any]) -> str:
    value = f"={t['value']}" if t.get("value") else ""
    return f"{t.get('key', '')}{value}:{t.get('effect', '')}"


def _node_status(item: Mapping[str, Any]) -> NodeStatus:
    meta = item.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = item.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return NodeStatus(
        name=meta.get("name", ""),
        ready=str(ready.get("status", "Unknown")),
        reason=str(ready.get("message") or ready.get("reason") or ""),
        version=str((status.get("nodeInfo") or {}).get("kubeletVersion", "")),
        control_plane=labels.get(CONTROL_PLANE) == "true",
        labels=labels,
        taints=tuple(_taint_text(t) for t in (item.get("spec") or {}).get("taints") or []),
    )


def parse_nodes(out: Output) -> dict[str, NodeStatus]:
    """``kubectl get nodes -o json`` -> status by node name (KubectlError if it failed or is not JSON)."""
    return {s.name: s for s in (_node_status(i) for i in kubectl.items(out, "nodes"))}


def node_problems(nodes: Mapping[str, NodeStatus], want: Sequence[ExpectedNode]) -> dict[str, str]:
    """Why each expected node is not what it should be (pure; missing from the dict = fine)."""
    out: dict[str, str] = {}
    for e in want:
        n = nodes.get(e.name)
        if n is None:
            out[e.name] = "not registered with the cluster"
        elif n.ready != "True":
            out[e.name] = f"NotReady (Ready={n.ready}{': ' + n.reason if n.reason else ''})"
        elif e.version and n.version != e.version:
            out[e.name] = f"runs {n.version or '?'}, expected {e.version}"
        elif e.role is Role.SERVER and not n.control_plane:
            out[e.name] = "registered without the control-plane role (is it an agent?)"
        elif e.role is Role.AGENT and n.control_plane:
            out[e.name] = "registered as a control-plane node, expected an agent"
    return out


def deployment_problems(out: Output, want: Sequence[str]) -> dict[str, str]:
    """``kubectl get deploy -n kube-system -o json`` -> why each expected deployment is not available."""
    found = {(i.get("metadata") or {}).get("name"): i for i in kubectl.items(out, "deployments")}
    problems: dict[str, str] = {}
    for name in want:
        d = found.get(name)
        if d is None:
            problems[name] = "not deployed (yet)"
            continue
        replicas = int((d.get("spec") or {}).get("replicas", 1))
        have = int((d.get("status") or {}).get("availableReplicas") or 0)
        if have < replicas:
            problems[name] = f"{have}/{replicas} replicas available"
    return problems


def missing_taints(status: NodeStatus, node: NodeSpec) -> list[str]:
    """Configured taints the Node lacks. k3s passes node-taint to the kubelet's register-with-taints,
    applied only when the Node is created (kubelet_node_status.go initialNode); node-label, unlike it,
    is merged into the Node at every k3s start (k3s PR #1171), so labels are never missing for long."""
    return [t for t in node.taints if t not in status.taints]


def api_problem(out: Output) -> str:
    """Why kubectl gave no node list, from its stderr's last line (stdout is empty then)."""
    lines = (out.err.strip() or out.text.strip()).splitlines()
    return lines[-1] if lines else f"exit {out.rc}, no message"


def cluster_status(
    facts: Facts, want: Sequence[ExpectedNode], cluster: ClusterSpec, deployments: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """(node problems, deployment problems) from a poll of the first server (pure)."""
    first = cluster.first.name
    nodes = facts.outputs["nodes"]
    if nodes.rc != 0:
        return {e.name: f"the API on {first} does not answer ({api_problem(nodes)})" for e in want}, {}
    try:
        problems = node_problems(parse_nodes(nodes), want)
    except kubectl.KubectlError as exc:
        return {e.name: f"unreadable node list from {first}: {exc}" for e in want}, {}
    dep: dict[str, str] = {}
    if deployments and not problems:
        out = facts.outputs["deploy"]
        try:
            dep = deployment_problems(out, cluster.expected_deployments)
        except kubectl.KubectlError:
            dep = {"kube-system": api_problem(out)}
    return problems, dep
