"""The deploy component's part of ``nr status``: the app on the cluster, read on the first server.

The first server's status snapshot in the engine's one round trip (``k3s kubectl get
nodes,deployments,horizontalpodautoscalers,pods -A -o json``: :data:`tasks.k3s.observe.STATUS_CMD`,
which k3s's section declares too, so it runs once), of which the app's namespace is read (pure):

* Deployments: ready / desired replicas (``status.readyReplicas`` is omitted when 0, as the API does);
* HPAs (autoscaling/v2): current / desired replicas within min-max, and the CPU utilisation against
  its target, ``<unknown>`` as kubectl shows it while no metrics are available;
* Pods: one box per pod on the node ``spec.nodeName`` names, red when not Ready.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nr.facts import Facts
from nr.ops import kubectl
from nr.status import Box, Cell, Level, Problem, Reads, StatusSection, Table
from tasks.deploy.manifests import DEPLOYMENTS, NAMESPACE
from tasks.k3s.observe import STATUS_CMD

COMPONENT = "deploy"
KINDS = {"deployments": "Deployment", "hpa": "HorizontalPodAutoscaler", "pods": "Pod"}


def reads(first: str) -> dict[str, Reads]:
    return {first: Reads(commands={"cluster": STATUS_CMD})}


def _items(facts: Facts | None, name: str) -> list[dict[str, Any]] | str:
    """The app's objects of one kind (``name``: a key of :data:`KINDS`), or why they could not be read."""
    if facts is None or "cluster" not in facts.outputs:
        return "not read"
    try:
        return kubectl.items(kubectl.view(facts.outputs["cluster"], KINDS[name], NAMESPACE), name)
    except kubectl.KubectlError as exc:
        return str(exc)


def deployments_table(found: Mapping[str, tuple[int, int]]) -> Table:
    rows = []
    for name in DEPLOYMENTS:
        if name not in found:
            rows.append((Cell(name), Cell("missing", Level.FAIL)))
            continue
        ready, wanted = found[name]
        level = Level.OK if wanted and ready >= wanted else Level.FAIL
        rows.append((Cell(name), Cell(f"{ready}/{wanted}", level)))
    return Table("Deployments", ("deployment", "ready/desired"), tuple(rows))


def _cpu(item: Mapping[str, Any]) -> str:
    """``cpu: 12%/70%`` (``<unknown>`` without metrics), like kubectl's TARGETS column."""
    spec, status = item.get("spec") or {}, item.get("status") or {}
    target = next((m for m in spec.get("metrics") or [] if m.get("type") == "Resource"), None)
    if target is None:
        return "-"
    resource = target.get("resource") or {}
    want = (resource.get("target") or {}).get("averageUtilization")
    current = next(
        (
            (m.get("resource") or {}).get("current", {}).get("averageUtilization")
            for m in status.get("currentMetrics") or []
            if (m.get("resource") or {}).get("name") == resource.get("name")
        ),
        None,
    )
    now = f"{current}%" if current is not None else "<unknown>"
    return f"{resource.get('name', '?')}: {now}/{want}%"


def hpa_table(items: list[dict[str, Any]]) -> Table:
    rows = []
    for item in items:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        current, desired = status.get("currentReplicas"), status.get("desiredReplicas")
        bounds = f"{spec.get('minReplicas', 1)}-{spec.get('maxReplicas', '?')}"
        replicas = (
            f"{current if current is not None else '?'}/{desired if desired is not None else '?'} ({bounds})"
        )
        target = (spec.get("scaleTargetRef") or {}).get("name", "?")
        rows.append(
            (
                Cell(str((item.get("metadata") or {}).get("name"))),
                Cell(str(target)),
                Cell(replicas),
                Cell(_cpu(item)),
            )
        )
    return Table(
        "HorizontalPodAutoscalers",
        ("hpa", "scales", "replicas current/desired (min-max)", "target"),
        tuple(rows),
    )


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_boxes(items: list[dict[str, Any]], node_hosts: Mapping[str, str]) -> tuple[Box, ...]:
    """One box per pod, on the inventory host whose Node runs it (pods of unknown nodes are left out)."""
    out = []
    for pod in items:
        meta = pod.get("metadata") or {}
        host = node_hosts.get(str((pod.get("spec") or {}).get("nodeName", "")))
        if host is None:
            continue
        name = str(meta.get("name", "?"))
        app = (meta.get("labels") or {}).get("app.kubernetes.io/name", name)
        ready = _ready(pod)
        phase = (pod.get("status") or {}).get("phase", "?")
        label = f"{app}" + ("" if ready else f" ({phase}, not Ready)")
        out.append(
            Box(f"{COMPONENT}:pod:{name}", host, "pods", label, Level.OK if ready else Level.FAIL, name)
        )
    return tuple(sorted(out, key=lambda b: (b.host, b.label)))


def section(
    first: str, facts: Facts | None, node_hosts: Mapping[str, str], fix: Callable[[], str]
) -> StatusSection:
    """``node_hosts``: Kubernetes node name -> inventory host (k3s names each node after its host)."""
    deployments = _items(facts, "deployments")
    if isinstance(deployments, str):
        why = f"cannot read the app on {first}: {deployments}"
        problem = Problem("app deployments", first, "readable", why, fix())
        return StatusSection(COMPONENT, "App", Cell(why, Level.FAIL), problems=(problem,))
    found = {str((i.get("metadata") or {}).get("name")): kubectl.deployment_status(i) for i in deployments}
    table = deployments_table(found)
    problems = tuple(
        Problem(f"deployment {row[0].text}", first, "every replica ready", row[1].text, fix())
        for row in table.rows
        if row[1].level is Level.FAIL
    )
    hpas, pods = _items(facts, "hpa"), _items(facts, "pods")
    tables = (
        table,
        hpa_table(hpas) if not isinstance(hpas, str) else Table(f"HorizontalPodAutoscalers: {hpas}", (), ()),
    )
    boxes = pod_boxes(pods, node_hosts) if not isinstance(pods, str) else ()
    ready = sum(1 for row in table.rows if row[1].level is Level.OK)
    summary = Cell(
        f"{ready}/{len(table.rows)} deployments ready, {len(boxes)} pods",
        Level.FAIL if problems else Level.OK,
    )
    return StatusSection(COMPONENT, "App", summary, tables, boxes=boxes, problems=problems)
