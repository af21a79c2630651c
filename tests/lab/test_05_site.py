"""The whole site on the lab, as the README's first command runs it: base, redis, k3s (the stand-in,
which runs the app's pods on the lab's Docker engine), deploy (images built here, pushed to every
node, imported; manifests applied) and checks (a real gRPC round trip through every node's NodePort
and through the ingress). Then: a second run changes nothing, `nr check` passes, a hand edit in the
cluster is drift with its fix, and `nr run deploy` repairs it.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from redis.cluster import RedisCluster

from services.client import roundtrip
from tests.lab.conftest import LabEnv

pytestmark = [pytest.mark.lab, pytest.mark.docker]

KUBECTL = "/usr/local/bin/k3s kubectl"


def rows(doc: dict[str, Any], task: str) -> list[dict[str, Any]]:
    return [r for r in doc["results"] if r["task"] == task]


@pytest.fixture(scope="module")
def site(lab: LabEnv, images: list[str]) -> LabEnv:
    reset = lab.nr("run", "k3s-reset")  # earlier modules leave a cluster made with another token
    assert reset.code == 0, reset.stdout + reset.stderr
    res = lab.nr("run", "site", "--json", timeout=1200)
    assert res.code == 0, res.stdout[-6000:] + res.stderr[-3000:]
    doc = res.json
    assert [r["host"] for r in rows(doc, "deploy.apply") if r["changed"]] == [lab.hosts[0]]
    assert sorted(r["host"] for r in rows(doc, "deploy.images") if r["changed"]) == lab.hosts
    verified = rows(doc, "checks.verify")
    assert sorted(r["host"] for r in verified) == lab.hosts and not any(r["failed"] for r in verified)
    return lab


def test_second_site_run_changes_nothing(site: LabEnv) -> None:
    res = site.nr("run", "site", "--json", timeout=1200)
    assert res.code == 0, res.stdout[-4000:]
    changed = [(r["task"], r["host"]) for r in res.json["results"] if r["changed"]]
    assert changed == [] and res.json["changed"] == 0


def test_images_are_on_every_node_and_pods_use_them(site: LabEnv) -> None:
    for host in site.hosts:
        refs = site.exec(host, "/usr/local/bin/k3s ctr images ls -q").split()
        assert any(r.startswith("docker.io/library/aeroalpes:") for r in refs), (host, refs)
        assert any(r.startswith("docker.io/library/aeroalpes-adapter:") for r in refs), (host, refs)
    out = site.exec(site.hosts[0], f"{KUBECTL} get deployments -n aeroalpes -o json")
    status = {d["metadata"]["name"]: d["status"] for d in json.loads(out)["items"]}
    assert status["aeroalpes"]["readyReplicas"] == 2 and status["aeroalpes-adapter"]["readyReplicas"] == 2


def test_check_routes_through_every_node_and_the_ingress(site: LabEnv) -> None:
    res = site.nr("check", "deploy", "checks", "--json")
    assert res.code == 0, res.stdout[-4000:]
    passed = {(c["host"], c["name"]) for c in res.json["checks"] if c["ok"]}
    for host in site.hosts:
        assert (host, "routing via NodePort 30051") in passed
    assert (site.hosts[0], "routing via ingress :80") in passed
    assert (site.hosts[0], "app deployments available") in passed


def test_reservations_live_in_the_redis_cluster(site: LabEnv) -> None:
    address = site.lab.status()[1].address
    result = roundtrip(f"{address}:30051", timeout=10)
    assert result.ok, result.message
    rid = result.created["reserva"]["id"] if result.created else ""
    assert rid
    password = (site.state_dir / "secrets" / "redis_password").read_text().strip()
    client = RedisCluster(host=site.lab.status()[2].address, port=7000, password=password)
    try:
        stored = client.get(f"aeroalpes:reserva:{rid}")
    finally:
        client.close()
    assert stored is not None and rid.encode() in stored


def test_a_hand_edit_is_drift_with_its_fix_and_deploy_repairs_it(site: LabEnv) -> None:
    first = site.hosts[0]
    doc = json.loads(site.exec(first, f"{KUBECTL} get deployment aeroalpes-adapter -n aeroalpes -o json"))
    edited = {k: doc[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    edited["metadata"] = {"name": "aeroalpes-adapter", "namespace": "aeroalpes"}
    edited["spec"]["replicas"] = 1
    site.exec(first, f"{KUBECTL} apply -f - <<'EOF'\n{json.dumps(edited)}\nEOF\n")
    drift = site.nr("drift", "deploy", "--json")
    assert drift.code == 1, drift.stdout
    items = [d for d in drift.json["drift"] if d["component"] == "deploy"]
    assert [(d["host"], d["what"], d["fix"]) for d in items] == [
        (first, "manifests (namespace aeroalpes)", "nr run deploy")
    ]
    dry = site.nr("run", "deploy", "--dry-run", "--json")
    assert dry.code == 0 and '-    "replicas": 1' in "".join(r["diff"] or "" for r in dry.json["results"])
    assert (
        json.loads(site.exec(first, f"{KUBECTL} get deployment aeroalpes-adapter -n aeroalpes -o json"))[
            "spec"
        ]["replicas"]
        == 1
    )  # the dry run changed nothing
    fix = site.nr("run", "deploy", "--json")
    assert fix.code == 0 and fix.json["changed"] == 1, fix.stdout[-3000:]
    assert site.nr("drift", "deploy", "checks").code == 0


def test_an_outage_is_seen_and_the_pods_come_back(site: LabEnv) -> None:
    first = site.hosts[0]
    pods = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.k3s.stand-in.node={first}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(pods) == 4
    site.exec(first, "systemctl stop k3s")  # the control plane down, and every pod removed
    subprocess.run(["docker", "rm", "-f", *pods], capture_output=True, check=True)
    try:
        down = site.nr("check", "checks", "--json")
        assert down.code == 1 and not down.json["ok"]
        failed = {(c["host"], c["name"]) for c in down.json["checks"] if not c["ok"]}
        assert {(h, "routing via NodePort 30051") for h in site.hosts} <= failed
    finally:
        site.exec(first, "systemctl start k3s")
    deadline = time.monotonic() + 90
    while site.nr("check", "checks").code != 0:
        assert time.monotonic() < deadline, "the app did not come back within 90 s"
        time.sleep(2)
