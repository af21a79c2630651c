"""The components' sections of `nr status`, from their real parsers: the Redis layout as the seed's table
(from the fake cluster), k3s nodes (from kubectl JSON), the app's objects and pods, the routes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nr.facts import Facts, Output
from nr.status import Level, StatusSection
from tasks.checks.routes import Route, RouteResult
from tasks.checks.status import section as routes_section
from tasks.deploy.status import section as app_section
from tasks.k3s.contract import DEFAULT_VERSION
from tasks.k3s.overview import reads as k3s_reads
from tasks.k3s.overview import section as k3s_section
from tasks.k3s.spec import ClusterSpec, NodeSpec, Role
from tests.support.systemd import show
from tests.unit.redis_scripted import Site


def texts(section: StatusSection, table: int = 0) -> list[list[str]]:
    return [[c.text for c in row] for row in section.tables[table].rows]


def redis_status(site: Site) -> StatusSection:
    ctx, _ = site.context()
    return site.component().status(ctx, {})


def test_redis_layout_reads_like_the_seed_documents_table(monkeypatch: pytest.MonkeyPatch) -> None:
    site = Site(monkeypatch)
    site.cluster.by_label("vm3:7000").keys = 7
    section = redis_status(site)
    assert section.tables[0].columns == ("host", "port 7000", "port 7003")
    assert texts(section) == [
        ["vm1", "shard 1 master", "replica of shard 3"],
        ["vm2", "shard 2 master", "replica of shard 1"],
        ["vm3", "shard 3 master", "replica of shard 2"],
    ]
    shards = texts(section, 1)
    assert [row[:4] for row in shards] == [
        ["1", "vm1:7000", "vm2:7003", "5461 (0-5460)"],
        ["2", "vm2:7000", "vm3:7003", "5462 (5461-10922)"],
        ["3", "vm3:7000", "vm1:7003", "5461 (10923-16383)"],
    ]
    assert shards[2][4] == "7" and shards[0][5].startswith("link up")
    assert [(a.source, a.target, a.label) for a in section.arrows] == [
        ("redis:vm2:7003", "redis:vm1:7000", "shard 1"),
        ("redis:vm3:7003", "redis:vm2:7000", "shard 2"),
        ("redis:vm1:7003", "redis:vm3:7000", "shard 3"),
    ]
    assert len(section.boxes) == 6 and not section.problems and section.summary.level is Level.OK


def test_after_a_failover_the_cells_differ_from_the_plan_and_say_it(monkeypatch: pytest.MonkeyPatch) -> None:
    site = Site(monkeypatch)
    site.cluster.failover(site.cluster.by_label("vm2:7003"))  # vm2:7003 now masters shard 1
    section = redis_status(site)
    row1, row2 = section.tables[0].rows[0], section.tables[0].rows[1]
    assert (row1[1].text, row1[1].level, row1[1].note) == (
        "replica of shard 1",
        Level.FAIL,
        "plan: shard 1 master",
    )
    assert (row2[2].text, row2[2].level, row2[2].note) == (
        "shard 1 master",
        Level.FAIL,
        "plan: replica of shard 1",
    )
    assert (section.arrows[0].source, section.arrows[0].target) == ("redis:vm1:7000", "redis:vm2:7003")
    fixes = {p.what: p.fix for p in section.problems}
    assert fixes["shard 1: master"] == "nr run redis"


def test_a_stopped_instance_is_down_in_red_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    site = Site(monkeypatch)
    site.cluster.by_label("vm3:7003").alive = False
    section = redis_status(site)
    cell = section.tables[0].rows[2][2]
    assert cell.text == "down" and cell.level is Level.FAIL and "replica of shard 2" in cell.note
    box = next(b for b in section.boxes if b.id == "redis:vm3:7003")
    assert box.level is Level.FAIL
    arrow = next(a for a in section.arrows if a.source == "redis:vm3:7003")
    assert arrow.level is Level.FAIL  # its link is not up
    access = [p for p in section.problems if p.what == "vm3:7003: access"]
    assert access and "redis-server@7003" in access[0].fix and section.summary.level is Level.FAIL


def node(
    name: str, *, ready: str = "True", server: bool = False, version: str = DEFAULT_VERSION
) -> dict[str, Any]:
    labels = {"node-role.kubernetes.io/control-plane": "true"} if server else {}
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": ready}],
            "nodeInfo": {"kubeletVersion": version},
        },
    }


CLUSTER = ClusterSpec(
    (
        NodeSpec("vm1", "198.18.0.11", Role.SERVER, "198.18.0.11"),
        NodeSpec("vm2", "198.18.0.12", Role.AGENT, "198.18.0.12"),
    )
)


def k3s_facts(nodes: list[dict[str, Any]]) -> dict[str, Facts]:
    units = show(("k3s", "active", "enabled"), ("k3s-agent", "inactive", "disabled"))
    listing = Output(0, json.dumps({"items": nodes}), "memcache.go:265] couldn't get resource list")
    return {
        "vm1": Facts(
            outputs={
                "version": Output(0, f"k3s version {DEFAULT_VERSION} (abc)"),
                "services": Output(0, units),
                "nodes": listing,
            }
        ),
        "vm2": Facts(
            outputs={
                "version": Output(0, f"k3s version {DEFAULT_VERSION} (abc)"),
                "services": Output(
                    0, show(("k3s", "inactive", "disabled"), ("k3s-agent", "active", "enabled"))
                ),
            }
        ),
    }


def test_k3s_lines_say_role_version_and_ready_per_host() -> None:
    assert set(k3s_reads(CLUSTER)["vm1"].commands) == {"version", "services", "nodes"}
    assert "nodes" not in k3s_reads(CLUSTER)["vm2"].commands
    section = k3s_section(
        CLUSTER, k3s_facts([node("vm1", server=True), node("vm2", ready="False")]), lambda h: f"fix {h}"
    )
    lines = {line.host: (line.value.text, line.value.level) for line in section.host_lines}
    assert lines["vm1"] == (f"server {DEFAULT_VERSION} Ready", Level.OK)
    assert lines["vm2"][0] == f"agent {DEFAULT_VERSION} False" and lines["vm2"][1] is Level.FAIL
    (problem,) = section.problems
    assert problem.host == "vm2" and problem.fix == "fix vm2" and "NotReady" in problem.actual


def test_k3s_api_down_fails_every_node_with_the_reason() -> None:
    facts = k3s_facts([])
    facts["vm1"].outputs["nodes"] = Output(1, "", "The connection to the server 127.0.0.1:6443 was refused")
    section = k3s_section(CLUSTER, facts, lambda h: "fix")
    assert all("was refused" in p.actual for p in section.problems) and len(section.problems) == 2


def listed(*items: dict[str, Any]) -> Output:
    return Output(0, json.dumps({"kind": "List", "items": list(items)}))


def deployment(name: str, ready: int, want: int, namespace: str = "aeroalpes") -> dict[str, Any]:
    status = {"readyReplicas": ready, "availableReplicas": ready} if ready else {}
    meta = {"name": name, "namespace": namespace}
    return {"kind": "Deployment", "metadata": meta, "spec": {"replicas": want}, "status": status}


HPA = {
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "aeroalpes", "namespace": "aeroalpes"},
    "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "aeroalpes"},
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"averageUtilization": 70}}}],
    },
    "status": {
        "currentReplicas": 3,
        "desiredReplicas": 3,
        "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 41}}}
        ],
    },
}


def pod(name: str, app: str, node_name: str, ready: bool, namespace: str = "aeroalpes") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": app}},
        "spec": {"nodeName": node_name},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def test_app_deployments_hpa_and_pods_per_node() -> None:
    """From the status snapshot: every kind in one List, the app's namespace picked out."""
    facts = Facts(outputs={"cluster": listed(
        node("vm1", server=True),
        deployment("aeroalpes", 3, 3), deployment("aeroalpes-adapter", 0, 2), deployment("coredns", 0, 1, "kube-system"),
        HPA,
        pod("a-1", "aeroalpes", "vm1", True), pod("b-1", "aeroalpes-adapter", "vm2", False), pod("x", "other", "gone", True),
        pod("coredns-1", "coredns", "vm1", False, "kube-system"),
    )})  # fmt: skip
    section = app_section("vm1", facts, {"vm1": "vm1", "vm2": "vm2"}, lambda: "nr run deploy")
    assert texts(section) == [["aeroalpes", "3/3"], ["aeroalpes-adapter", "0/2"]]
    assert texts(section, 1) == [["aeroalpes", "aeroalpes", "3/3 (2-6)", "cpu: 41%/70%"]]
    assert [(b.host, b.label, b.level) for b in section.boxes] == [
        ("vm1", "aeroalpes", Level.OK),
        ("vm2", "aeroalpes-adapter (Running, not Ready)", Level.FAIL),
    ]
    (problem,) = section.problems
    assert problem.what == "deployment aeroalpes-adapter" and problem.fix == "nr run deploy"


def test_app_unreadable_says_why() -> None:
    facts = Facts(outputs={"cluster": Output(1, "", "error: the server doesn't have a resource type")})
    section = app_section("vm1", facts, {}, lambda: "fix")
    assert section.summary.level is Level.FAIL and "server doesn't have" in section.problems[0].actual


def test_routes_with_latency_and_a_dead_one_in_red() -> None:
    ok = RouteResult(Route("NodePort 30051", "198.18.0.11:30051"), True, "NOT_FOUND", 0.0123)
    dead = RouteResult(
        Route("NodePort 30051", "198.18.0.12:30051"), False, "UNAVAILABLE: connection refused", 0.002
    )
    section = routes_section([("vm1", ok), ("vm2", dead)], "nr run deploy && nr check checks")
    assert texts(section)[0][4] == "12 ms"
    lines = {line.host: line.value for line in section.host_lines}
    assert lines["vm1"].text == "ok 12 ms" and lines["vm2"].level is Level.FAIL
    (problem,) = section.problems
    assert problem.host == "vm2" and "connection refused" in problem.actual
