"""The k3s play against real sshd hosts running systemd, with the k3s stand-in as the binary.

tests/fakes/k3s is delivered the way an air-gapped operator delivers a real binary (data.k3s_binary)
and runs under the units nr writes. The module ends with a working 1-server/2-agent cluster on the
three lab hosts, for the tests that come after it (use :func:`k3s_inventory` to get an inventory
that points at the stand-in).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.lab.conftest import LabEnv, NrResult
from tests.lab.test_01_base import copy_inventory

pytestmark = pytest.mark.lab

STAND_IN = REPO / "tests" / "fakes" / "k3s"
TIMEOUT_ENV = {"NR_K3S_READY_TIMEOUT": "60"}


def k3s_inventory(env: LabEnv, dest: Path) -> Path:
    """A copy of the lab inventory whose k3s binary is the stand-in (what later lab tests should use)."""
    inv = copy_inventory(env, dest)
    defaults = yaml.safe_load((inv / "defaults.yaml").read_text())
    defaults["data"]["k3s_binary"] = str(STAND_IN)
    defaults["data"].pop("k3s_kubeconfig", None)  # as on a real site: merged into $KUBECONFIG
    (inv / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    return inv


@dataclass
class Site:
    env: LabEnv
    inv: Path
    kubeconfig: Path

    @property
    def hosts(self) -> list[str]:
        return self.env.hosts

    @property
    def cache(self) -> Path:
        """This module's own cache folder, empty at its start: every run here is on a machine that has
        never seen these k3s binaries (as on a fresh CI machine), whatever earlier runs left in ~/.cache."""
        return self.kubeconfig.parent.parent / "cache"

    def nr(self, *args: str, env: dict[str, str] | None = None) -> NrResult:
        extra = {
            "KUBECONFIG": str(self.kubeconfig),
            "XDG_CACHE_HOME": str(self.cache),
            **TIMEOUT_ENV,
            **(env or {}),
        }
        return self.env.nr(*args, inventory=self.inv, env=extra)

    def edit(self, name: str, change: Any) -> None:
        path = self.inv / name
        doc = yaml.safe_load(path.read_text())
        change(doc)
        path.write_text(yaml.safe_dump(doc))

    def nodes(self, via: int = 0) -> dict[str, dict[str, Any]]:
        out = self.env.exec(self.hosts[via], "/usr/local/bin/k3s kubectl get nodes -o json")
        return {i["metadata"]["name"]: i for i in json.loads(out)["items"]}

    def unit(self, host: str) -> dict[str, str]:
        out = self.env.exec(
            host,
            "u=k3s; [ -f /etc/systemd/system/k3s-agent.service ] && u=k3s-agent; "
            "systemctl show $u -p MainPID -p ActiveEnterTimestamp -p ActiveEnterTimestampMonotonic",
        )
        return dict(line.split("=", 1) for line in out.splitlines())

    def token(self) -> str:
        return (self.inv / "secrets" / "k3s_token").read_text().strip()


def ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def steps(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(task, host) of every row that is not the facts step, in the order they ran."""
    return [(r["task"], r["host"]) for r in doc["results"] if r["task"] != "k3s.facts"]


OTHER_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "work", "cluster": {"server": "https://work.example:6443"}}],
    "users": [{"name": "work-admin", "user": {"token": "not-ours"}}],
    "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work-admin"}}],
    "current-context": "work",
}


@pytest.fixture(scope="module")
def site(lab: LabEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("k3s")
    kubeconfig = base / "kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text(yaml.safe_dump(OTHER_KUBECONFIG))
    yield Site(lab, k3s_inventory(lab, base), kubeconfig)


def test_dry_run_shows_the_plan_with_the_token_masked_and_changes_nothing(site: Site) -> None:
    res = site.nr("run", "k3s", "--dry-run", "--json")
    assert res.code == 0, res.stdout + res.stderr
    doc = res.json
    assert doc["changed"] == 3
    diffs = {r["host"]: r["diff"] for r in doc["results"] if r["changed"]}
    assert '+token: "********"' in diffs[site.hosts[0]]
    assert "+ install /usr/local/bin/k3s from local file" in diffs[site.hosts[1]]
    assert any("a cluster token would be generated" in n for n in doc["notes"])
    assert not (site.inv / "secrets" / "k3s_token").exists()
    for host in site.hosts:
        assert site.env.exec(host, "ls /usr/local/bin/k3s /etc/rancher 2>/dev/null || true").strip() == ""


def test_one_server_two_agents_form_in_order(site: Site) -> None:
    t0 = time.monotonic()
    res = site.nr("run", "k3s", "--json")
    elapsed = time.monotonic() - t0
    assert res.code == 0, res.stdout + res.stderr
    server, a1, a2 = site.hosts
    order = steps(res.json)
    assert order[0] == ("k3s.first-server", server)
    assert sorted(order[1:]) == [("k3s.agents", a1), ("k3s.agents", a2)]
    assert res.json["changed"] == 3
    token = site.token()
    assert (site.inv / "secrets" / "k3s_token").stat().st_mode & 0o777 == 0o600
    assert token not in res.stdout + res.stderr
    nodes = site.nodes()
    assert sorted(nodes) == sorted(site.hosts) and all(ready(n) for n in nodes.values())
    assert nodes[server]["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
    assert "node-role.kubernetes.io/control-plane" not in nodes[a1]["metadata"]["labels"]
    started = {h: int(site.unit(h)["ActiveEnterTimestampMonotonic"]) for h in site.hosts}
    assert started[server] < started[a1] and started[server] < started[a2]  # same kernel clock
    for host in site.hosts:  # the token is only in the 0600 config, never in a unit or command line
        out = site.env.exec(
            host,
            "stat -c %a /etc/rancher/k3s/config.yaml; cat /etc/systemd/system/k3s*.service; "
            "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done",
        )
        assert out.startswith("600\n") and token not in out
    kube = yaml.safe_load(site.kubeconfig.read_text())
    assert kube["current-context"] == "work"  # the operator's choice is kept
    assert [c["name"] for c in kube["contexts"]] == ["work", "lab"]
    assert kube["users"][0] == OTHER_KUBECONFIG["users"][0]
    lab_cluster = next(c for c in kube["clusters"] if c["name"] == "lab")
    address = yaml.safe_load((site.inv / "hosts.yaml").read_text())[server]["hostname"]
    assert lab_cluster["cluster"]["server"] == f"https://{address}:6443"
    assert site.kubeconfig.stat().st_mode & 0o777 == 0o600
    assert elapsed < 45


def test_second_run_changes_nothing_and_restarts_nothing(site: Site) -> None:
    before = {h: site.unit(h) for h in site.hosts}
    kube = site.kubeconfig.read_bytes()
    res = site.nr("run", "k3s", "--json")
    assert res.code == 0, res.stdout + res.stderr
    assert res.json["changed"] == 0
    assert {h: s["commands"] for h, s in res.json["ssh"].items()} == {h: 1 for h in site.hosts}
    assert {h: site.unit(h) for h in site.hosts} == before
    assert site.kubeconfig.read_bytes() == kube
    assert "already up to date" in " ".join(res.json["notes"])


def test_check_passes_and_names_a_stopped_agent(site: Site) -> None:
    ok = site.nr("check", "k3s", "--json")
    assert ok.code == 0, ok.stdout
    names = {c["name"] for c in ok.json["checks"]}
    assert {f"node {h} ({'server' if i == 0 else 'agent'})" for i, h in enumerate(site.hosts)} <= names
    assert {"kube-system deployment coredns", "kube-system deployment traefik", "k3s-agent service"} <= names
    victim = site.hosts[2]
    site.env.stop(victim)
    try:
        deadline = time.monotonic() + 30
        while True:  # the node turns NotReady once its heartbeat is ~10 s old
            res = site.nr("check", "k3s", "--json")
            failed = [c for c in res.json["checks"] if not c["ok"]]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        site.env.start(victim)
    assert res.code == 1
    assert [(c["host"], c["name"]) for c in failed] == [(site.hosts[0], f"node {victim} (agent)")]
    assert "NotReady" in failed[0]["detail"] and victim in failed[0]["hint"]
    assert victim in res.json["failed_hosts"]  # and its own checks could not run: it is named twice
    deadline = time.monotonic() + 40
    while site.nr("check", "k3s").code != 0:  # the agent comes back by itself (unit enabled)
        assert time.monotonic() < deadline, "the agent did not come back after its host restarted"
        time.sleep(2)


def test_wrong_token_on_one_agent_is_reported_not_a_hang(site: Site) -> None:
    victim = site.hosts[2]
    hosts_text = (site.inv / "hosts.yaml").read_text()
    site.edit("hosts.yaml", lambda d: d[victim].update(data={"k3s_token": "env:NR_TEST_BAD_TOKEN"}))
    t0 = time.monotonic()
    try:
        res = site.nr("run", "k3s", "--json", env={"NR_TEST_BAD_TOKEN": "not-the-cluster-token"})
    finally:
        (site.inv / "hosts.yaml").write_text(hosts_text)
    elapsed = time.monotonic() - t0
    assert res.code == 1, res.stdout
    assert res.json["failed_hosts"] == [victim]
    error = next(r["error"] for r in res.json["results"] if r["failed"])
    assert error.startswith(f"node {victim} is not Ready after")
    # like k3s, the agent keeps running and retrying; its journal names the cause (issue 8 item 4)
    assert (
        "the server refused its token (401 Unauthorized)" in error
        and f"set data.k3s_token for {victim}" in error
    )
    assert f"journalctl -u k3s-agent -n 20 --no-pager on {victim}" in error
    assert "Unauthorized" in error  # the agent's own journal says why
    assert "not-the-cluster-token" not in res.stdout + res.stderr
    assert elapsed < 45, f"took {elapsed:.0f} s"
    fixed = site.nr("run", "k3s", "--json")
    assert fixed.code == 0, fixed.stdout
    assert all(ready(n) for n in site.nodes().values())


def test_drift_shows_a_hand_edited_agent_config_with_the_fix(site: Site) -> None:
    host = site.hosts[1]
    site.env.exec(host, "echo 'node-label: [hand=edit]' >> /etc/rancher/k3s/config.yaml")
    res = site.nr("drift", "k3s", "--json")
    assert res.code == 1, res.stdout
    assert [(d["host"], d["what"]) for d in res.json["drift"]] == [
        (host, "file /etc/rancher/k3s/config.yaml")
    ]
    assert res.json["drift"][0]["fix"] == f"nr run k3s -i {site.inv} --limit {host}"
    fix = site.nr("run", "k3s", "--limit", host, "--json")
    assert fix.code == 0 and fix.json["changed"] == 1
    assert site.nr("drift", "k3s").code == 0


def test_an_agent_with_a_rejected_node_password_is_named_with_the_fix(site: Site) -> None:
    """issue 8 item 4: a reinstalled or cloned host gets a new node password; k3s keeps retrying, nr
    stops waiting at the journal line and names the secret to delete."""
    server, victim = site.hosts[0], site.hosts[2]
    site.env.exec(victim, "rm -f /etc/rancher/node/password && systemctl restart k3s-agent")
    time.sleep(12)  # the Node turns NotReady once its last heartbeat is 10 s old
    t0 = time.monotonic()
    res = site.nr("run", "k3s", "--json")
    assert res.code == 1 and res.json["failed_hosts"] == [victim], res.stdout
    error = next(r["error"] for r in res.json["results"] if r["failed"])
    assert "rejected its node password" in error and time.monotonic() - t0 < 45
    fix = f"/usr/local/bin/k3s kubectl -n kube-system delete secret {victim}.node-password.k3s"
    assert f"`{fix}` on {server}" in error
    assert site.env.exec(victim, "systemctl is-active k3s-agent").strip() == "active"  # retrying, like k3s
    site.env.exec(server, fix)
    again = site.nr("run", "k3s", "--json")
    assert again.code == 0, again.stdout
    assert all(ready(n) for n in site.nodes().values())


def test_a_restart_that_never_happened_is_drift_then_done(site: Site) -> None:
    """issue 11 item 1: config.yaml newer than the running k3s (a run cut short before its restart)."""
    host = site.hosts[1]
    time.sleep(1)
    site.env.exec(host, "touch /etc/rancher/k3s/config.yaml")
    drift = site.nr("drift", "k3s", "--json")
    assert drift.code == 1, drift.stdout
    assert [(d["host"], d["what"]) for d in drift.json["drift"]] == [(host, "service k3s-agent restart")]
    before = site.unit(host)["MainPID"]
    res = site.nr("run", "k3s", "--json")
    assert res.code == 0 and res.json["changed"] == 1, res.stdout
    assert site.unit(host)["MainPID"] != before
    assert site.nr("drift", "k3s").code == 0


def test_reset_then_three_servers_with_cluster_init_and_serial_joins(site: Site) -> None:
    # issue 8 item 5: a data dir that is its own mount point is emptied and kept; CNI state removed
    mounted = site.hosts[1]
    site.env.exec(mounted, "mkdir -p /var/lib/rancher/k3s /var/lib/cni/networks/cbr0 && touch /var/lib/cni/networks/cbr0/10.42.1.2 "
                  "&& ip netns add cni-nr-test && cp -a /var/lib/rancher/k3s /tmp/k3s-data "
                  "&& mount -t tmpfs tmpfs /var/lib/rancher/k3s && cp -a /tmp/k3s-data/. /var/lib/rancher/k3s/")  # fmt: skip
    reset = site.nr("run", "k3s-reset", "--json")
    assert reset.code == 0, reset.stdout
    assert [r["task"] for r in reset.json["results"]] == ["k3s-reset.agents"] * 2 + ["k3s-reset.servers"]
    left = site.env.exec(mounted, "mountpoint -q /var/lib/rancher/k3s && echo mounted; ls -A /var/lib/rancher/k3s; "
                         "ls /var/lib/cni 2>&1 | head -1; ip netns show | grep -c cni- || true")  # fmt: skip
    assert left.split("\n")[0] == "mounted" and "No such file" in left and left.strip().endswith("0"), left
    site.env.exec(mounted, "umount /var/lib/rancher/k3s && rm -rf /var/lib/rancher/k3s /tmp/k3s-data")
    for host in site.hosts:
        left = site.env.exec(
            host,
            "ls /usr/local/bin/k3s /etc/rancher/k3s /var/lib/rancher/k3s 2>/dev/null; "
            "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done | grep -c '[/]usr/local/bin/k3s' || true",
        )
        assert left.strip() == "0", left
    site.edit("hosts.yaml", lambda d: [h.update(groups=["k3s_servers", "redis"]) for h in d.values()])
    res = site.nr("run", "k3s", "--json")
    assert res.code == 0, res.stdout + res.stderr
    first, second, third = site.hosts
    assert steps(res.json) == [
        ("k3s.first-server", first),
        ("k3s.join-servers", second),
        ("k3s.join-servers", third),
    ]
    assert "cluster-init: true" in site.env.exec(first, "cat /etc/rancher/k3s/config.yaml")
    joined = site.env.exec(third, "cat /etc/rancher/k3s/config.yaml")
    address = yaml.safe_load((site.inv / "hosts.yaml").read_text())[first]["hostname"]
    assert "cluster-init" not in joined and f'server: "https://{address}:6443"' in joined
    started = [int(site.unit(h)["ActiveEnterTimestampMonotonic"]) for h in site.hosts]
    assert started[0] < started[1] < started[2]
    assert started[2] - started[1] > 5_000_000  # µs: the third joined after the second was up and stable
    nodes = site.nodes(via=2)  # any server answers
    assert all(
        ready(n) and n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
        for n in nodes.values()
    )
    assert len(nodes) == 3


def test_version_change_is_a_rolling_upgrade(site: Site, tmp_path: Path) -> None:
    new = tmp_path / "k3s-v1.32.0"
    new.write_text(STAND_IN.read_text().replace('VERSION = "v1.31.4+k3s1"', 'VERSION = "v1.32.0+k3s1"', 1))
    new.chmod(0o755)
    site.edit("defaults.yaml", lambda d: d["data"].update(k3s_binary=str(new), k3s_version="v1.32.0+k3s1"))
    res = site.nr("run", "k3s", "--json")
    assert res.code == 0, res.stdout + res.stderr
    assert steps(res.json) == [("k3s.upgrade-servers", h) for h in site.hosts]
    started = [int(site.unit(h)["ActiveEnterTimestampMonotonic"]) for h in site.hosts]
    assert (
        started[0] < started[1] < started[2]
        and min(started[1] - started[0], started[2] - started[1]) > 5_000_000
    )
    nodes = site.nodes()
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes.values()} == {"v1.32.0+k3s1"}
    check = site.nr("check", "k3s", "--json")
    assert check.code == 0, check.stdout


def test_servers_turned_into_agents_in_place_are_refused_and_nothing_changes(site: Site) -> None:
    # issue 8 item 3: k3s keeps a server's roles and etcd member when it comes back as an agent
    # (two of the three: one server left keeps the embedded etcd count odd)
    moved = site.hosts[1:]
    probe = "sha256sum /etc/rancher/k3s/config.yaml; ls /etc/systemd/system/k3s*.service"
    before = {h: site.env.exec(h, probe) for h in moved}
    site.edit("hosts.yaml", lambda d: [d[h].update(groups=["k3s_agents", "redis"]) for h in moved])
    try:
        res = site.nr("run", "k3s", "--json")
    finally:
        site.edit("hosts.yaml", lambda d: [d[h].update(groups=["k3s_servers", "redis"]) for h in moved])
    text = res.stdout + res.stderr
    assert res.code != 0, text
    for host in moved:
        assert f"{host} runs a k3s server and is now listed as an agent" in text, text
        assert f"delete node {host}" in text and "k3s-reset" in text
        assert site.env.exec(host, probe) == before[host]
        assert site.env.exec(host, "systemctl is-active k3s").strip() == "active"


def test_back_to_one_server_and_two_agents_for_later_tests(site: Site) -> None:
    assert site.nr("run", "k3s-reset").code == 0
    site.inv.joinpath("hosts.yaml").write_text(site.env.inventory.joinpath("hosts.yaml").read_text())
    site.edit(
        "defaults.yaml", lambda d: d["data"].update(k3s_binary=str(STAND_IN)) or d["data"].pop("k3s_version")
    )
    res = site.nr("run", "k3s", "--json")
    assert res.code == 0, res.stdout + res.stderr
    assert site.nr("check", "k3s").code == 0
    assert sorted(site.nodes()) == sorted(site.hosts)


def test_labels_follow_the_config_taints_added_later_are_drift_with_the_kubectl_fix(site: Site) -> None:
    """issue 8 item 7: k3s merges node-label into the Node at every start (PR #1171); node-taint counts
    only when the Node registers, so a taint added later is drift with the (quoted) kubectl fix."""
    server, a1, a2 = site.hosts
    site.edit(
        "groups.yaml",
        lambda d: (
            d["k3s_agents"]
            .setdefault("data", {})
            .update(k3s_node_labels=["nr.io/tier=edge"], k3s_node_taints=["nr.io/dedicated=edge:NoSchedule"])
        ),
    )
    assert site.nr("run", "k3s").code == 0  # config.yaml changes: k3s restarts and applies the label
    assert site.nodes()[a1]["metadata"]["labels"]["nr.io/tier"] == "edge"
    drift = site.nr("drift", "k3s", "--json")
    assert drift.code == 1, drift.stdout
    items = {(d["host"], d["what"]): d["fix"] for d in drift.json["drift"]}
    assert set(items) == {(server, f"node {a} taint nr.io/dedicated=edge:NoSchedule") for a in (a1, a2)}
    check = site.nr("check", "k3s", "--json")
    assert check.code == 1
    assert {c["name"] for c in check.json["checks"] if not c["ok"]} == {
        f"node {a} taint nr.io/dedicated=edge:NoSchedule" for a in (a1, a2)
    }
    for fix in items.values():  # the fix, as printed, run on the first server
        command, _, where = fix.partition("  # on ")
        assert where == server
        site.env.exec(server, command)
    assert site.nr("drift", "k3s").code == 0
    site.edit("groups.yaml", lambda d: d["k3s_agents"].pop("data"))
    assert site.nr("run", "k3s").code == 0
