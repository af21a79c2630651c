"""The checks component against scripted hosts and a scripted gRPC probe: one set of rules serves
``check``, ``drift`` and the site's last step; fix commands are shell-quoted."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest
from nornir.core.inventory import Host

from nr.report import RunReport
from tasks.checks import play
from tasks.checks.routes import Route, RouteResult, routes_for
from tests.fakes.remote import ScriptedRemote, facts_reply, scripted_context
from tests.support.kube import snapshot

HOSTS = {
    "vm1": {"hostname": "198.18.0.11", "groups": ["k3s_servers", "redis"]},
    "vm2": {"hostname": "198.18.0.12", "groups": ["k3s_agents", "redis"]},
    "vm3": {"hostname": "198.18.0.13", "groups": ["k3s_agents", "redis"]},
}
DEFAULTS = {"data": {"redis_password": "env:NR_UNIT_REDIS_PASSWORD"}}
REFUSED = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"


def deployments(ready: int = 2) -> str:
    """The snapshot the first server's kubectl prints: the app's namespace and Deployments, kube-system's."""
    app = [
        {
            "metadata": {"name": n},
            "spec": {"replicas": 2},
            "status": {"readyReplicas": ready} if ready else {},
        }
        for n in ("aeroalpes", "aeroalpes-adapter")
    ]
    system = [{"metadata": {"name": "coredns"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}]
    return snapshot(
        namespaces=["aeroalpes", "kube-system"], deployments={"aeroalpes": app, "kube-system": system}
    )


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Scripted gRPC probes: every route answers unless listed in ``down``; calls are recorded."""
    state: dict[str, Any] = {"down": set(), "calls": []}

    def probe(route: Route, read_only: bool) -> RouteResult:
        state["calls"].append((route.target, read_only))
        if route.target in state["down"]:
            return RouteResult(route, False, "UNAVAILABLE: failed to connect to all addresses")
        return RouteResult(route, True, "NOT_FOUND as expected" if read_only else "created and read back")

    monkeypatch.setattr(play, "probe", probe)
    return state


def run(
    mode: str, outputs: dict[str, Any], *, dry_run: bool = False, inventory_arg: str | None = None
) -> RunReport:
    remotes = {"vm1": ScriptedRemote("vm1", [facts_reply(outputs=outputs)])}
    remotes |= {h: ScriptedRemote(h) for h in ("vm2", "vm3")}  # only the first server is asked anything
    ctx, report = scripted_context(HOSTS, remotes, defaults=DEFAULTS, dry_run=dry_run, component="checks")
    ctx.inventory_arg = report.inventory_arg = inventory_arg
    getattr(play.component, mode)(ctx)
    return report


def test_every_route_passes_and_drift_stays_read_only(probes: dict[str, Any]) -> None:
    report = run("check", {"k3s": "yes", "cluster": deployments()})
    assert report.ok and all(c.ok for c in report.checks)
    names = {(c.host, c.name) for c in report.checks}
    assert {("vm1", "app deployments available"), ("vm1", "routing via ingress :80")} <= names
    assert {(h, "routing via NodePort 30051") for h in HOSTS} <= names
    assert not any(read_only for _, read_only in probes["calls"])
    probes["calls"].clear()
    assert run("drift", {"k3s": "yes", "cluster": deployments()}, dry_run=True).drift == []
    assert probes["calls"] and all(read_only for _, read_only in probes["calls"])


def test_a_route_down_fails_its_check_is_drift_and_fails_the_site_step(probes: dict[str, Any]) -> None:
    probes["down"] = {"198.18.0.12:30051"}
    outputs = {"k3s": "yes", "cluster": deployments()}
    check = run("check", outputs, inventory_arg="my inv")
    assert [(c.host, c.name) for c in check.checks if not c.ok] == [("vm2", "routing via NodePort 30051")]
    drift = run("drift", outputs, dry_run=True, inventory_arg="my inv")
    (item,) = drift.drift
    assert (item.host, item.what) == ("vm2", "routing via NodePort 30051")
    assert item.fix == "nr run deploy -i 'my inv' && nr check checks -i 'my inv'"
    site = run("apply", outputs)
    assert (
        site.failed_hosts == ["vm2"]
        and "routing via NodePort 30051: 198.18.0.12:30051" in site.failed_reasons["vm2"]
    )
    assert run("apply", outputs, dry_run=True).rows == []  # a dry run proves nothing


def test_unavailable_deployments_are_a_failed_check_and_drift(probes: dict[str, Any]) -> None:
    for mode in ("check", "drift"):
        report = run(mode, {"k3s": "yes", "cluster": deployments(ready=0)}, dry_run=mode == "drift")
        failed = [(c.host, c.name, c.detail) for c in report.checks if not c.ok]
        drift = [(d.host, d.what, d.actual) for d in report.drift]
        want = ("vm1", "app deployments available", "aeroalpes 0/2 ready, aeroalpes-adapter 0/2 ready")
        assert (drift if mode == "drift" else [(*f[:2], f[2].split(" (expected")[0]) for f in failed]) == [
            want
        ]


def test_an_api_that_does_not_answer_is_a_failed_check_and_the_routes_are_still_tried(
    probes: dict[str, Any],
) -> None:
    report = run("check", {"k3s": "yes", "cluster": (1, "", REFUSED)})
    (failed,) = [c for c in report.checks if not c.ok]
    assert failed.name == "app deployments available" and "was refused" in failed.detail
    assert failed.hint == "nr check k3s"
    assert len(probes["calls"]) == 4  # 3 NodePorts and the ingress


def test_without_k3s_the_fix_installs_it_first(probes: dict[str, Any]) -> None:
    report = run("drift", {"k3s": "no", "cluster": (127, "", "sh: 1: /usr/local/bin/k3s: not found")},
                 dry_run=True, inventory_arg="/srv/inv")  # fmt: skip
    (item,) = report.drift
    assert item.fix == "nr run k3s -i /srv/inv && nr run deploy -i /srv/inv"


def test_routes_use_the_cluster_node_port_and_bracket_ipv6() -> None:
    first = Host("s1", hostname="10.0.0.1", data={"adapter_node_port": 30999})
    agent = Host("a1", hostname="fd00::5", data={"adapter_node_port": 31111})
    assert [(r.name, r.target) for r in routes_for(first, first)] == [
        ("NodePort 30999", "10.0.0.1:30999"),
        ("ingress :80", "10.0.0.1:80"),
    ]
    assert [(r.name, r.target) for r in routes_for(agent, first)] == [("NodePort 30999", "[fd00::5]:30999")]


def test_drift_probes_every_route_ahead_once_and_a_check_never_does(probes: dict[str, Any]) -> None:
    """Drift's probes are read-only, so they start with the run's other reads (nr.readahead) and the
    turn takes their results; check's create reservations, so they are made in turn only."""
    remotes = {"vm1": ScriptedRemote("vm1", [facts_reply(outputs={"k3s": "yes", "cluster": deployments()})])}
    remotes |= {h: ScriptedRemote(h) for h in ("vm2", "vm3")}
    ctx, report = scripted_context(HOSTS, remotes, defaults=DEFAULTS, dry_run=True, component="checks")
    read, load = play.component.reads(ctx, "check")  # no route is probed ahead: only the client loads
    assert (
        type(read).__name__ == "Read" and type(load).__name__ == "Probe" and load.key == ("checks", "client")
    )
    declared = play.component.reads(ctx, "drift")
    assert ctx.read_ahead().start(declared) == 5  # the Deployments and 4 routes (3 NodePorts, the ingress)
    play.component.drift(ctx)
    assert report.drift == [] and len(probes["calls"]) == 4  # each route probed once, ahead
    assert all(read_only for _, read_only in probes["calls"])


def test_a_probe_made_ahead_is_made_again_in_turn_after_a_change(probes: dict[str, Any]) -> None:
    remotes = {"vm1": ScriptedRemote("vm1", [facts_reply(outputs={"k3s": "yes", "cluster": deployments()},
                                                          times=None)])}  # fmt: skip
    remotes |= {h: ScriptedRemote(h) for h in ("vm2", "vm3")}
    ctx, report = scripted_context(HOSTS, remotes, defaults=DEFAULTS, dry_run=True, component="checks")
    ctx.read_ahead().start(play.component.reads(ctx, "drift"))
    deadline = time.monotonic() + 10
    while len(probes["calls"]) < 4 and time.monotonic() < deadline:  # the 4 probes made ahead
        time.sleep(0.01)
    ctx.read_ahead().invalidate()  # what a change on a host does
    play.component.drift(ctx)
    assert report.drift == [] and len(probes["calls"]) == 8  # each route probed again in turn
    assert sorted(t for t, _ in probes["calls"][4:]) == sorted(
        ["198.18.0.11:30051", "198.18.0.12:30051", "198.18.0.13:30051", "198.18.0.11:80"]
    )


def test_a_check_loads_its_grpc_client_ahead_and_probes_the_routes_in_turn(
    probes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its round trips create reservations, so they wait for their turn; the client they use (gRPC,
    protobuf) is imported meanwhile, with the reads."""
    monkeypatch.delitem(sys.modules, "services.client.roundtrip", raising=False)
    remotes = {"vm1": ScriptedRemote("vm1", [facts_reply(outputs={"k3s": "yes", "cluster": deployments()})])}
    remotes |= {h: ScriptedRemote(h) for h in ("vm2", "vm3")}
    ctx, report = scripted_context(HOSTS, remotes, defaults=DEFAULTS, component="checks")
    assert ctx.read_ahead().start(play.component.reads(ctx, "check")) == 2  # the Deployments, the client
    deadline = time.monotonic() + 30
    while "services.client.roundtrip" not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "services.client.roundtrip" in sys.modules and probes["calls"] == []
    play.component.check(ctx)
    assert len(probes["calls"]) == 4 and not any(read_only for _, read_only in probes["calls"])
    assert report.ok


def test_the_first_servers_routes_are_probed_at_the_same_time(
    probes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its NodePort and its ingress: both probes must be on their way at once (a barrier of two), and
    the results keep the routes' order."""
    barrier = threading.Barrier(2, timeout=5)
    scripted = play.probe

    def probe(route: Route, read_only: bool) -> RouteResult:
        if route.target.startswith("198.18.0.11:"):
            barrier.wait()
        return scripted(route, read_only)

    monkeypatch.setattr(play, "probe", probe)
    report = run("check", {"k3s": "yes", "cluster": deployments()})
    assert report.ok and all(c.ok for c in report.checks)
    server = Host("s1", hostname="198.18.0.11")
    barrier.reset()
    results = play.probe_routes(routes_for(server, server), False, lambda r: None)
    assert [r.route.name for r in results] == ["NodePort 30051", "ingress :80"]
