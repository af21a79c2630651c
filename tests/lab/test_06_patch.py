"""`nr run patch` on the lab: the whole site (Redis Cluster, k3s stand-in running the app's pods on the
nodes, the services) patched and rebooted host by host while a client keeps creating and reading
reservations through the NodePorts, like a load balancer with health checks (tests/support/balancer.py).

The hosts track Debian's security archive, as installed VMs do, so the upgrade has real packages to
install. Lab hosts reboot for real: `systemctl reboot` ends the container's systemd, Docker's restart
policy starts it again (same address, same disk, so the same SSH host keys).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.lab.conftest import LabEnv
from tests.lab.redis_helpers import addresses, layout_table, password, planned_table
from tests.support.balancer import Balancer, run_load, unreadable

pytestmark = [pytest.mark.lab, pytest.mark.docker]

SECURITY = "deb http://deb.debian.org/debian-security bookworm-security main"
KUBECTL = "/usr/local/bin/k3s kubectl"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def restarts(host: str) -> int:
    return int(docker("inspect", "-f", "{{.RestartCount}}", host))


def address(host: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", host)


def rows(doc: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in doc["results"] if r["task"] == task}


DEPLOYED: dict[str, float] = {}  # when the site fixture deployed the app's images to the nodes


@pytest.fixture(scope="module")
def site(lab: LabEnv) -> LabEnv:
    DEPLOYED["at"] = time.time()
    res = lab.nr("run", "site", timeout=1200)
    assert res.code == 0, res.stdout[-4000:] + res.stderr[-2000:]
    for host in lab.hosts:
        lab.exec(host, f"echo '{SECURITY}' > /etc/apt/sources.list.d/security.list")
    return lab


def test_dry_run_lists_the_packages_and_the_reboot_of_each_host_and_changes_nothing(site: LabEnv) -> None:
    state = "ls -l --time-style=+%s /var/lib/apt/lists; dpkg-query -W; ls /run/nr-patch-boot 2>&1 || true"
    before = {h: (site.exec(h, state), restarts(h)) for h in site.hosts}
    res = site.nr("run", "patch", "--dry-run", "--json", "--reboot", "always")
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-2000:]
    plans = rows(res.json, "patch.plan")
    assert sorted(plans) == sorted(site.hosts)
    for host, row in plans.items():
        assert re.search(r"~ apt-get update && apt-get -y upgrade: \d+ packages\n", row["diff"]), row["diff"]
        assert (
            re.search(r"  ~ openssl \S+ -> \S+\n", row["diff"])
            and "~ reboot (--reboot always)" in row["diff"]
        )
        assert f"~ cordon and drain node {host}" in row["diff"]
    assert {h: (site.exec(h, state), restarts(h)) for h in site.hosts} == before
    assert layout_table(site, site.hosts) == planned_table(site.hosts)


def test_it_refuses_to_start_while_the_site_cannot_lose_a_host(site: LabEnv) -> None:
    """A Redis replica down: its master's shard would have no copy while that master's host reboots."""
    down = site.hosts[2]
    before = {h: restarts(h) for h in site.hosts}
    site.exec(down, "systemctl stop redis-server@7003")
    try:
        res = site.nr("run", "patch", "--reboot", "always", "--json")
    finally:
        site.exec(down, "systemctl start redis-server@7003")
    assert res.code == 1, res.stdout[-4000:] + res.stderr[-2000:]
    first = site.hosts[1]  # the first in the order: an agent
    reason = {r["host"]: r["error"] for r in res.json["results"] if r["failed"]}[first]
    assert f"not started: the site cannot lose {first} now: redis: " in reason, reason
    assert f"{addresses(site)[down]}:7003" in reason or f"{down}:7003" in reason, reason
    assert not [r for r in res.json["results"] if r["task"] in ("patch.upgrade", "patch.reboot")]
    assert {h: restarts(h) for h in site.hosts} == before
    nodes = json.loads(site.exec(site.hosts[0], f"{KUBECTL} get nodes -o json"))["items"]
    assert not [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")]
    wait_healthy(site, down)
    assert layout_table(site, site.hosts) == planned_table(site.hosts)


def test_a_rolling_patch_with_reboots_fails_no_call_of_a_client_under_load(site: LabEnv) -> None:
    hosts = site.hosts
    before = {h: restarts(h) for h in hosts}
    identity = {h: (site.exec(h, "cat /etc/ssh/ssh_host_ed25519_key.pub"), address(h)) for h in hosts}
    for host in hosts:
        site.exec(host, "touch /run/before-reboot")
    lb = Balancer([f"{h.address}:30051" for h in site.lab.status()])
    stop, result = threading.Event(), {}
    loop = threading.Thread(target=lambda: result.update(load=run_load(lb, stop, limit=1500)))
    loop.start()
    started = time.monotonic()
    try:
        res = site.nr("run", "patch", "--reboot", "always", "--json", timeout=1500)
    finally:
        stop.set()
        loop.join()
    seconds = time.monotonic() - started
    load = result["load"]
    lost = unreadable(lb, load)
    lb.close()
    figures = (
        f"rolling patch of {len(hosts)} hosts (upgrade + reboot each) under load: {seconds:.0f} s; "
        f"calls {load.calls}, failed {len(load.failures)}, retries {lb.retries}, longest {load.longest:.2f} s; "
        f"reservations {len(load.ids)}, unreadable after {len(lost)}"
    )
    print("\n" + figures + "\nretries: " + "; ".join(lb.retried))
    (site.state_dir / "patch-figures.txt").write_text(figures + "\n" + "\n".join(lb.retried) + "\n")
    assert res.code == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert load.failures == [] and load.calls > 200 and lost == []
    assert {h: restarts(h) for h in hosts} == {h: before[h] + 1 for h in hosts}
    # each came back by the lab's restart policy as a VM does: a new boot (/run is empty), same key and address
    assert {h: (site.exec(h, "cat /etc/ssh/ssh_host_ed25519_key.pub"), address(h)) for h in hosts} == identity
    assert [site.exec(h, "ls /run/before-reboot 2>/dev/null || echo gone").strip() for h in hosts] == [
        "gone"
    ] * 3
    upgrades = rows(res.json, "patch.upgrade")
    assert all(re.search(r"~ openssl \S+ -> \S+", upgrades[h]["diff"]) for h in hosts), upgrades
    assert [r["host"] for r in res.json["results"] if r["task"] == "patch.reboot"] == [*hosts[1:], hosts[0]]
    assert layout_table(site, hosts) == planned_table(hosts)
    assert_no_drift(site)


def wait_healthy(lab: LabEnv, host: str, timeout: float = 180) -> None:
    """Until both Redis instances of ``host`` are in the cluster (ok, replicas in sync) and its node is Ready:
    what a patch run requires before it starts."""
    deadline = time.monotonic() + timeout
    why = "not looked at yet"
    while time.monotonic() < deadline:
        try:
            for port in (7000, 7003):
                r = redis.Redis(
                    host=addresses(lab)[host], port=port, password=password(lab), decode_responses=True
                )
                info, repl = r.execute_command("CLUSTER", "INFO"), r.info("replication")
                r.close()
                if "cluster_state:ok" not in info or repl.get("master_link_status", "up") != "up":
                    raise RuntimeError(f"{host}:{port} not in sync yet")
            node = json.loads(lab.exec(lab.hosts[0], f"{KUBECTL} get node {host} -o json"))
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]):
                raise RuntimeError(f"node {host} not Ready yet")
            return
        except (redis.RedisError, RuntimeError, AssertionError, json.JSONDecodeError) as exc:
            why = str(exc)
        time.sleep(2)
    raise AssertionError(f"{host} did not come back healthy: {why}")


def assert_no_drift(lab: LabEnv) -> None:
    """`nr drift` is clean. The one exception: the app's images, when this machine's Docker rebuilt them
    under the same tag after the site fixture deployed them (several test sessions share one Docker
    engine; builds are not byte-reproducible), since the nodes keep the copy they were given."""
    since = DEPLOYED["at"]
    # at once: after each reboot nr run patch waits for kube-system's add-ons to be available again
    drift = lab.nr("drift", "--json")
    items = drift.json.get("drift", []) if drift.stdout.strip().startswith("{") else []

    def rebuilt(item: dict[str, Any]) -> bool:
        if not item["what"].startswith("image "):
            return False
        created = docker("image", "inspect", "-f", "{{.Created}}", item["what"].removeprefix("image "))
        epoch = subprocess.run(["date", "-d", created, "+%s"], capture_output=True, text=True, check=True)
        return float(epoch.stdout) > since

    rest = [i for i in items if not rebuilt(i)]
    assert drift.code in (0, 1) and not rest, drift.stdout[-4000:] + drift.stderr[-2000:]


def copy_inventory(lab: LabEnv, tmp_path: Path, **data: Any) -> Path:
    folder = tmp_path / "inventory"
    shutil.copytree(lab.inventory, folder)
    for name in ("secrets", "id_ed25519", "known_hosts"):  # the inventory refers to them as ../name
        (tmp_path / name).symlink_to(lab.inventory.parent / name)
    path = folder / "defaults.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["data"].update(data)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def test_a_host_that_does_not_come_back_stops_the_run_and_says_how_to_continue(
    site: LabEnv, tmp_path: Path
) -> None:
    first, victim, last = site.hosts[0], site.hosts[1], site.hosts[2]  # order: agents, then the server
    inventory = copy_inventory(site, tmp_path, patch_reboot_timeout=20)
    before = {h: restarts(h) for h in site.hosts}
    docker("update", "--restart", "no", victim)  # its reboot powers it off for good
    try:
        res = site.nr("run", "patch", "--reboot", "always", "--json", inventory=inventory, timeout=900)
    finally:
        docker("update", "--restart", "unless-stopped", victim)
    assert res.code == 1, res.stdout[-4000:]
    reasons = {r["host"]: r["error"] for r in res.json["results"] if r["failed"]}
    reason = reasons[victim]
    assert f"{victim} is not back 20 s after its reboot" in reason
    assert f"  {victim}: stopped after: " in reason and "reboot started" in reason
    assert f"  {last}: untouched" in reason and f"  {first}: untouched" in reason
    assert f"node {victim}: NOT Ready, cordoned" in reason
    assert reasons[last] == reasons[first] == f"not patched: the run stopped at {victim} (see there)"
    assert {h: restarts(h) for h in (first, last)} == {h: before[h] for h in (first, last)}
    assert not [r for r in res.json["results"] if r["task"] == "patch.upgrade" and r["host"] != victim]
    command = re.search(r"then `(nr run patch [^`]+)`", reason)
    assert command and f"--limit {victim},{last},{first}" in command.group(1)
    docker("start", victim)  # fixed
    site.lab.wait_ssh(60)
    wait_healthy(site, victim)
    again = site.nr(*command.group(1).split()[1:], "--json", timeout=900)
    assert again.code == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert layout_table(site, site.hosts) == planned_table(site.hosts)
    assert_no_drift(site)


def test_a_second_run_changes_nothing(site: LabEnv) -> None:
    """Every host is up to date with no reboot pending and no node cordoned: none is touched (no hand-over,
    no drain, no reboot), and the final role restore and checks find nothing to do."""
    before = {h: restarts(h) for h in site.hosts}
    res = site.nr("run", "patch", "--json", timeout=600)
    assert res.code == 0, res.stdout[-4000:] + res.stderr[-2000:]
    looks = rows(res.json, "patch.look")
    assert sorted(looks) == sorted(site.hosts)
    assert all("up to date: no package to upgrade" in r["diff"] for r in looks.values()), looks
    touched = [r for r in res.json["results"] if r["task"].startswith("patch.") and r["task"] != "patch.look"]
    assert touched == [] and res.json["changed"] == 0, [r for r in res.json["results"] if r["changed"]]
    assert {h: restarts(h) for h in site.hosts} == before
    assert layout_table(site, site.hosts) == planned_table(site.hosts)
