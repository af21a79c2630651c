"""The k3s node of a patched host: readiness, and cordon/drain/uncordon with ``k3s kubectl`` on the first
server (the k3s component's ``KUBECTL``; its :class:`~tasks.k3s.wait.Waiter` for Ready after a reboot).

kubectl drain (kubectl ``cmd/drain``, ``pkg/drain``) cordons the node, then evicts its pods through the
eviction API, which refuses (429, "Cannot evict pod as it would violate the pod's disruption budget.")
while a PodDisruptionBudget allows no disruption; kubectl retries every 5 s until ``--timeout``, then
names the pods still pending and exits 1. DaemonSet pods stay (``--ignore-daemonsets``); emptyDir
contents are lost with their pod (``--delete-emptydir-data``): a drain never keeps data there anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from shlex import quote
from typing import Any

from nr.errors import NrError
from nr.facts import Output, gather
from nr.ops import kubectl
from nr.transport import Remote
from tasks.k3s.contract import KUBECTL
from tasks.k3s.observe import NODES_CMD

PODS_CMD = kubectl.get_command(KUBECTL, "pods", namespace=None) + " --all-namespaces"
DEPLOY_CMD = kubectl.get_command(KUBECTL, "deployments") + " --all-namespaces"
PDB_CMD = kubectl.get_command(KUBECTL, "poddisruptionbudgets") + " --all-namespaces"
SYSTEM = "kube-system"  # k3s's packaged add-ons: one replica each, no budget (upstream's choice)


@dataclass(frozen=True)
class Node:
    name: str
    ready: bool
    cordoned: bool


def _node(item: Mapping[str, Any]) -> Node:
    conditions = (item.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    spec = item.get("spec") or {}
    return Node(str((item.get("metadata") or {}).get("name", "")), ready, bool(spec.get("unschedulable")))


def nodes(remote: Remote) -> dict[str, Node]:
    """Every node as the API sees it (KubectlError when it does not answer)."""
    out = gather(remote, commands={"nodes": NODES_CMD}).outputs["nodes"]
    return {n.name: n for n in (_node(i) for i in kubectl.items(out, "nodes"))}


def health_problems(found: Mapping[str, Node], expected: Sequence[str]) -> list[str]:
    """Every node of the inventory must be Ready before one of them is taken out of service."""
    problems = []
    for name in expected:
        node = found.get(name)
        if node is None:
            problems.append(f"k3s node {name} is not registered")
        elif not node.ready:
            problems.append(f"k3s node {name} is not Ready")
    return problems


def serving(found: Mapping[str, Node], host: str) -> list[str]:
    """The other nodes pods can move to: Ready and not cordoned."""
    return [n.name for n in found.values() if n.name != host and n.ready and not n.cordoned]


def _owner(pod: Mapping[str, Any]) -> tuple[str, str]:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    ref: Mapping[str, Any] = next((o for o in refs if o.get("controller")), {})
    return str(ref.get("kind", "")), str(ref.get("name", ""))


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def unprotected(host: str, pods: Output, deployments: Output, budgets: Output) -> dict[str, str]:
    """Deployments whose every ready pod is on ``host`` and that no PodDisruptionBudget protects:
    draining would leave them with no ready pod until their replacements start elsewhere.
    ``namespace/name`` -> why (pure)."""
    on_node: dict[tuple[str, str], int] = {}
    labels: dict[tuple[str, str], Mapping[str, str]] = {}
    for pod in kubectl.items(pods, "pods"):
        meta = pod.get("metadata") or {}
        kind, rs = _owner(pod)
        if (pod.get("spec") or {}).get("nodeName") != host or kind != "ReplicaSet":
            continue
        hash_ = (meta.get("labels") or {}).get("pod-template-hash", "")
        key = (str(meta.get("namespace")), rs.removesuffix(f"-{hash_}") if hash_ else rs.rpartition("-")[0])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])  # fmt: skip
        on_node[key] = on_node.get(key, 0) + int(ready)
        labels[key] = meta.get("labels") or {}
    found = {}
    pdbs = kubectl.items(budgets, "poddisruptionbudgets")
    for d in kubectl.items(deployments, "deployments"):
        meta = d.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if key not in on_node:
            continue
        total = int((d.get("status") or {}).get("readyReplicas") or 0)
        guarded = any((p.get("metadata") or {}).get("namespace") == key[0]
                      and _selects((p.get("spec") or {}).get("selector") or {}, labels[key]) for p in pdbs)  # fmt: skip
        if total - on_node[key] <= 0 and not guarded:
            found[f"{key[0]}/{key[1]}"] = (
                f"its {on_node[key]} ready pod(s) are all on {host} and no PodDisruptionBudget guards it"
            )
    return found


def pdb_problems(remote: Remote, host: str) -> tuple[list[str], list[str]]:
    """(refusals, warnings) before draining ``host``: an unguarded Deployment of the site whose ready pods
    are all there is refused; one of k3s's packaged add-ons (kube-system) is a warning."""
    facts = gather(remote, commands={"pods": PODS_CMD, "deploy": DEPLOY_CMD, "pdb": PDB_CMD})
    found = unprotected(host, facts.outputs["pods"], facts.outputs["deploy"], facts.outputs["pdb"])
    refused = [f"{k}: {v}" for k, v in found.items() if not k.startswith(SYSTEM + "/")]
    warned = [f"{k}: {v}" for k, v in found.items() if k.startswith(SYSTEM + "/")]
    return refused, warned


def drain_command(node: str, timeout: float) -> str:
    return (f"{KUBECTL} drain {quote(node)} --ignore-daemonsets --delete-emptydir-data "
            f"--timeout={int(timeout)}s")  # fmt: skip


@dataclass(frozen=True)
class DrainResult:
    ok: bool
    evicted: tuple[str, ...]
    refusals: dict[str, int]  # pod -> evictions a budget refused
    pending: tuple[str, ...]  # pods still on the node when it gave up
    error: str

    def describe(self, node: str, timeout: float) -> str:
        if self.ok:
            text = f"drained {node}: {len(self.evicted)} pod(s) evicted"
            waits = sum(self.refusals.values())
            return text + (f" ({waits} eviction(s) refused by a PodDisruptionBudget first)" if waits else "")
        blocked = ", ".join(self.pending) or "none named"
        why = (" (refused by their PodDisruptionBudget: `k3s kubectl get pdb -A` shows what they wait for)"
               if any(p in self.refusals for p in self.pending) else "")  # fmt: skip
        return (
            f"drain of {node} stopped after {timeout:.0f} s; pods still there: {blocked}{why}: {self.error}"
        )


_RETRY = re.compile(r'^error when evicting pods/"([^"]+)" -n "[^"]+" \(will retry after')


def parse_drain(rc: int, stdout: str, stderr: str) -> DrainResult:
    """kubectl drain's output: ``pod/X evicted`` lines, 429 retries, and the pending pods on failure."""
    evicted = tuple(m[1] for m in re.finditer(r"^pod/(\S+) evicted$", stdout, re.M))
    refusals: dict[str, int] = {}
    for line in stderr.splitlines():
        if m := _RETRY.match(line):
            refusals[m[1]] = refusals.get(m[1], 0) + 1
    pending: list[str] = []
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("There are pending pods in node"):
            pending = [x[4:] for x in lines[i + 1 :] if x.startswith("pod/")]
    errors = [x for x in lines if x.startswith("error: ") and "continuing command" not in x]
    error = errors[-1][7:] if errors else (lines[-1] if lines else f"exit {rc}")
    return DrainResult(rc == 0, evicted, refusals, tuple(pending), "" if rc == 0 else error)


def drain(remote: Remote, node: str, timeout: float) -> DrainResult:
    res = remote.run(drain_command(node, timeout), check=False, timeout=timeout + 60)
    return parse_drain(res.exited, res.stdout, res.stderr)


def uncordon(remote: Remote, node: str) -> None:
    res = remote.run(f"{KUBECTL} uncordon {quote(node)}", check=False, timeout=60)
    if res.exited != 0:
        raise NrError(
            f"k3s kubectl uncordon {node} failed: {(res.stderr.strip() or res.stdout.strip())[-300:]}"
        )
