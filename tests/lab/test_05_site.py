"""The whole site on the lab, as the README's first command runs it: base, redis, k3s (the stand-in,
which runs the app's pods on the lab's Docker engine), deploy (images built here, pushed to every
node, imported and pinned; manifests applied) and checks (a real gRPC round trip through every
node's NodePort and through the ingress). First, on a cluster where the app was never deployed,
`--dry-run` and `nr drift` show everything as new (kubectl diff cannot run there). Then: a second
run changes nothing, `nr check` passes, the images survive the kubelet's image GC, a hand edit in
the cluster (a Deployment, the Secret) is drift with its fix and no secret value in any output, and
`nr run deploy` repairs it.
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
import subprocess
import time
from typing import Any

import pytest
from redis.cluster import RedisCluster

from services.client.roundtrip import roundtrip
from tests.lab.conftest import LabEnv

pytestmark = [pytest.mark.lab, pytest.mark.docker]

KUBECTL = "/usr/local/bin/k3s kubectl"


def rows(doc: dict[str, Any], task: str) -> list[dict[str, Any]]:
    return [r for r in doc["results"] if r["task"] == task]


@pytest.fixture(scope="module")
def fresh(lab: LabEnv, images: list[str]) -> dict[str, Any]:
    """A cluster where the app was never deployed: what `nr run deploy --dry-run` and `nr drift` say."""
    reset = lab.nr("run", "k3s-reset")  # earlier modules leave a cluster made with another token
    assert reset.code == 0, reset.stdout + reset.stderr
    k3s = lab.nr("run", "k3s")
    assert k3s.code == 0, k3s.stdout[-4000:] + k3s.stderr[-2000:]
    return {
        "dry": lab.nr("run", "deploy", "--dry-run", "--json"),
        "drift": lab.nr("drift", "deploy", "--json"),
    }


@pytest.fixture(scope="module")
def site(lab: LabEnv, fresh: dict[str, Any]) -> LabEnv:
    res = lab.nr("run", "site", "--json", timeout=1200)
    assert res.code == 0, res.stdout[-6000:] + res.stderr[-3000:]
    doc = res.json
    assert [r["host"] for r in rows(doc, "deploy.apply") if r["changed"]] == [lab.hosts[0]]
    assert sorted(r["host"] for r in rows(doc, "deploy.images") if r["changed"]) == lab.hosts
    verified = rows(doc, "checks.verify")
    assert sorted(r["host"] for r in verified) == lab.hosts and not any(r["failed"] for r in verified)
    return lab


def test_on_a_cluster_without_the_app_dry_run_and_drift_show_everything_new(
    lab: LabEnv, fresh: dict[str, Any]
) -> None:
    """kubectl diff fails there (namespaces "aeroalpes" not found, exit 2: kubernetes#114141)."""
    dry = fresh["dry"]
    assert dry.code == 0, dry.stdout[-3000:] + dry.stderr[-2000:]
    (apply,) = rows(dry.json, "deploy.apply")
    assert apply["changed"] and not apply["failed"]
    assert "+++ MERGED/v1.Namespace..aeroalpes" in apply["diff"] and "+kind: Deployment" in apply["diff"]
    assert "+  password: '***'" in apply["diff"]
    drift = fresh["drift"]
    assert drift.code == 1, drift.stdout[-3000:]
    items = [(d["host"], d["what"], d["actual"]) for d in drift.json["drift"] if "manifests" in d["what"]]
    assert items == [
        (lab.hosts[0], "manifests (namespace aeroalpes)", "namespace aeroalpes does not exist yet")
    ]


def test_second_site_run_changes_nothing(site: LabEnv) -> None:
    res = site.nr("run", "site", "--json", timeout=1200)
    assert res.code == 0, res.stdout[-4000:]
    changed = [(r["task"], r["host"]) for r in res.json["results"] if r["changed"]]
    assert changed == [] and res.json["changed"] == 0


def test_a_host_whose_sshd_allows_one_session_is_still_read_and_changed(site: LabEnv) -> None:
    """The first server's five reads go over its connection side by side; a hardened sshd refuses
    sessions past its MaxSessions ("open failed"): they wait for one of ours to end. A copy (SFTP) waits
    for a slot the same way, and Fabric's SFTP session, kept open after the copy, is closed for the
    commands that follow it (before, the upload of a changed k3s binary failed with 'Connect failed')."""
    first, conf = site.hosts[0], "/etc/ssh/sshd_config.d/99-nr-test-max-sessions.conf"
    site.exec(first, f"echo 'MaxSessions 1' > {conf} && systemctl reload ssh")
    try:
        res = site.nr("drift", "--json")
        site.exec(first, "echo >> /usr/local/bin/k3s")  # the binary differs: uploaded again, then restarted
        run = site.nr("run", "k3s", "--json", timeout=600)
    finally:
        site.exec(first, f"rm -f {conf} && systemctl reload ssh")
    assert res.code == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert res.json["drift"] == []
    assert run.code == 0, run.stdout[-4000:] + run.stderr[-2000:]
    changed = [(r["task"], r["host"]) for r in run.json["results"] if r["changed"]]
    assert changed == [("k3s.upgrade-servers", first)]


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
    fix = shlex.join(["nr", "run", "deploy", "-i", str(site.inventory)])
    assert [(d["host"], d["what"], d["fix"]) for d in items] == [
        (first, "manifests (namespace aeroalpes)", fix)
    ]
    dry = site.nr("run", "deploy", "--dry-run", "--json")
    assert dry.code == 0 and "-  replicas: 1" in "".join(r["diff"] or "" for r in dry.json["results"])
    assert (
        json.loads(site.exec(first, f"{KUBECTL} get deployment aeroalpes-adapter -n aeroalpes -o json"))[
            "spec"
        ]["replicas"]
        == 1
    )  # the dry run changed nothing
    fix_run = site.nr("run", "deploy", "--json")
    assert fix_run.code == 0 and fix_run.json["changed"] == 1, fix_run.stdout[-3000:]
    assert site.nr("drift", "deploy", "checks").code == 0


def test_a_hand_set_secret_is_drift_but_no_value_of_it_is_ever_printed(site: LabEnv) -> None:
    """kubectl masks a Secret's data in diffs but not its last-applied annotation, which holds it all."""
    first = site.hosts[0]
    value = "hand-set-" + secrets.token_hex(8)
    encoded = base64.b64encode(value.encode()).decode()
    edited = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"password": encoded},
              "metadata": {"name": "aeroalpes-redis", "namespace": "aeroalpes"}}  # fmt: skip
    site.exec(first, f"{KUBECTL} apply -f - <<'EOF'\n{json.dumps(edited)}\nEOF\n")
    password = (site.state_dir / "secrets" / "redis_password").read_text().strip()
    outputs = [site.nr("drift", "deploy", "--json"), site.nr("drift", "deploy"),
               site.nr("run", "deploy", "--dry-run"), site.nr("run", "deploy", "--dry-run", "--json")]  # fmt: skip
    assert outputs[0].code == 1 and outputs[2].code == 0
    shown = "".join(o.stdout + o.stderr for o in outputs)
    assert "aeroalpes-redis" in shown and "*** (before)" in shown
    for secret in (value, encoded, password, base64.b64encode(password.encode()).decode()):
        assert secret not in shown
    assert site.nr("run", "deploy").code == 0
    assert site.nr("drift", "deploy").code == 0


def test_the_images_are_pinned_and_survive_the_kubelets_image_gc(site: LabEnv) -> None:
    pinned = shlex.quote('labels."io.cri-containerd.pinned"==pinned')
    for host in site.hosts:
        refs = site.exec(host, f"/usr/local/bin/k3s ctr images ls -q {pinned}").split()
        assert sum(r.startswith("docker.io/library/aeroalpes") for r in refs) == 2, (host, refs)
        site.exec(host, "/usr/local/bin/k3s stand-in image-gc")  # what disk pressure would do
        refs = site.exec(host, "/usr/local/bin/k3s ctr images ls -q").split()
        assert sum(r.startswith("docker.io/library/aeroalpes") for r in refs) == 2, (host, refs)
    last = site.hosts[-1]  # an image unpinned by hand: drift, and the fix pins it without a new push
    ref = next(
        r for r in site.exec(last, "/usr/local/bin/k3s ctr images ls -q").split() if "aeroalpes-adapter" in r
    )
    site.exec(last, f"/usr/local/bin/k3s ctr images label {ref} io.cri-containerd.pinned=")
    drift = site.nr("drift", "deploy", "--json")
    assert [(d["host"], d["what"]) for d in drift.json["drift"]] == [
        (last, f"image {ref.rsplit('/', 1)[1]} pinned")
    ]
    fix = site.nr("run", "deploy", "--json", "--limit", last)
    assert fix.code == 0 and "pin image" in "".join(r["diff"] or "" for r in fix.json["results"])
    assert site.nr("drift", "deploy").code == 0


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
