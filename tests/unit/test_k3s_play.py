"""The k3s component against scripted hosts (tests/fakes/remote.py): rollout and upgrade order, halts,
restarts that never happened, early give-up with cause and fix, role switches, check and drift sharing
their rules, kubectl's stderr kept apart. No Docker: every host is a ScriptedRemote answering from
facts fixtures, and one log records what happened on which host, in order."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nr.facts import Output
from tasks.k3s.contract import BINARY
from tasks.k3s.observe import REMOTE_KUBECONFIG, facts_request
from tasks.k3s.play import K3sComponent
from tasks.k3s.render import CONFIG, render_config, render_env, render_unit
from tasks.k3s.spec import HostInfo, Role, build_cluster
from tasks.k3s.wait import Clock
from tests.fakes.remote import (
    Reply,
    ScriptedRemote,
    asked_commands,
    asked_files,
    gather_output,
    scripted_context,
)
from tests.support.kube import snapshot
from tests.support.systemd import show

TOKEN = "0123456789abcdef0123456789abcdef"
OLD, NEW = b"#!/bin/sh\n# k3s v1.31.4+k3s1\n", b"#!/bin/sh\n# k3s v1.31.5+k3s1\n"
MEMCACHE = (
    'E0107 10:00:01.000000    1234 memcache.go:265] "Unhandled Error" err="couldn\'t get current server API group '
    'list: the server is currently unable to handle the request"\n'
)
KUBECONFIG = """apiVersion: v1
clusters:
- cluster: {certificate-authority-data: Q0E=, server: 'https://127.0.0.1:6443'}
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
kind: Config
users:
- name: default
  user: {client-certificate-data: Q0VSVA==}
"""


class FakeClock:
    """Time passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Cluster:
    """Scripted hosts of one cluster: what each host has, what the API lists, and a log of events."""

    servers: list[str]
    agents: list[str]
    tmp: Path
    version: str = "v1.31.4+k3s1"
    installed: set[str] = field(default_factory=set)  # hosts where k3s is installed and converged
    placed: set[str] = field(default_factory=set)  # hosts where an apply put the binary (running or not)
    binary: dict[str, bytes] = field(default_factory=dict)  # the binary on each host (default OLD)
    ready: set[str] = field(default_factory=set)  # nodes the API calls Ready
    node_versions: dict[str, str] = field(default_factory=dict)
    probe: dict[str, str] = field(default_factory=dict)  # host -> probe answer (default: running, up)
    journal: dict[str, str] = field(default_factory=dict)  # host -> journal lines since the wait began
    started: dict[str, str] = field(default_factory=dict)  # host -> `started` fact
    extra_files: dict[str, dict[str, bytes | None]] = field(default_factory=dict)
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    taints: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    nodes_err: str = ""
    nodes_rc: int = 0
    log: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hosts(self) -> dict[str, Any]:
        out = {
            s: {"hostname": f"10.0.0.{i + 1}", "groups": ["k3s_servers"]} for i, s in enumerate(self.servers)
        }
        out |= {
            a: {"hostname": f"10.0.1.{i + 1}", "groups": ["k3s_agents"]} for i, a in enumerate(self.agents)
        }
        return out

    def defaults(self, binary: Path, **data: Any) -> dict[str, Any]:
        kube = self.tmp / "kubeconfig"
        return {"data": {"k3s_binary": str(binary), "k3s_version": self.version, "k3s_token": "env:NR_TEST_K3S_TOKEN",
                         "k3s_kubeconfig": str(kube), **data}}  # fmt: skip

    def event(self, host: str, what: str) -> None:
        with self.lock:
            self.log.append((host, what))

    # -- the replies -------------------------------------------------------------------------------------
    def spec(self, data: dict[str, Any]) -> Any:
        infos = [HostInfo(n, h["hostname"], Role.SERVER if n in self.servers else Role.AGENT, data)
                 for n, h in self.hosts.items()]  # fmt: skip
        return build_cluster(infos)

    def files(self, host: str, data: dict[str, Any]) -> dict[str, bytes | None]:
        cluster = self.spec(data)
        node = cluster.node(host)
        files: dict[str, bytes | None] = {BINARY: self.binary.get(host, OLD)} if host in self.placed else {}
        if host in self.installed:
            files = {
                BINARY: self.binary.get(host, OLD),
                CONFIG: render_config(cluster, node, TOKEN).encode(),
                node.role.unit_path: render_unit(node.role).encode(),
                node.role.env_path: render_env(node).encode(),
            }
        if host == self.servers[0] and host in self.installed:
            files[REMOTE_KUBECONFIG] = KUBECONFIG.encode()
        return files | self.extra_files.get(host, {})

    def node_json(self, name: str) -> dict[str, Any]:
        labels = {"kubernetes.io/hostname": name} | self.node_labels.get(name, {})
        if name in self.servers:
            labels |= {
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/etcd": "true",
            }
        ready = "True" if name in self.ready else "Unknown"
        return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": self.taints.get(name, [])},
                "status": {"conditions": [{"type": "Ready", "status": ready}],
                           "nodeInfo": {"kubeletVersion": self.node_versions.get(name, self.version)}}}  # fmt: skip

    def outputs(self, host: str) -> dict[str, Any]:
        installed = host in self.installed
        version = f"k3s version {self.version} (abcdef12)" if installed or host in self.placed else ""
        unit = "k3s" if host in self.servers else "k3s-agent"
        nodes = [self.node_json(n) for n in self.servers + self.agents if n in self.installed]
        deploy = [{"metadata": {"name": d}, "spec": {"replicas": 1}, "status": {"availableReplicas": 1}}
                  for d in ("coredns", "traefik", "metrics-server", "local-path-provisioner")]  # fmt: skip
        api_up = self.servers[0] in self.installed
        return {
            "arch": "x86_64", "addrs": "", "routes": "", "version": version, "dropins": "",
            "services": show(*((u, "active", "enabled") if installed and u == unit else (u, "inactive", "")
                                 for u in ("k3s", "k3s-agent"))),
            "started": self.started.get(host, "started 2000000000\n" if installed else ""),
            "cluster": (self.nodes_rc, snapshot(nodes=nodes, deployments={"kube-system": deploy}),
                        MEMCACHE + self.nodes_err) if api_up else (3, "", "k3s is not installed"),
            # what the waits poll (k3s kubectl get nodes / get deployments -n kube-system)
            "nodes": (self.nodes_rc, json.dumps({"items": nodes}), MEMCACHE + self.nodes_err) if api_up
            else (3, "", "k3s is not installed"),
            "deploy": (0, json.dumps({"items": deploy}), MEMCACHE) if api_up else (3, "", "k3s is not installed"),
        }  # fmt: skip

    def gather_reply(self, host: str, data: dict[str, Any]) -> Reply:
        def answer(script: str) -> str:
            m = re.search(r"^M='?([^'\n]+)'?$", script, re.MULTILINE)
            assert m
            asked = asked_commands(script)
            kind = "facts" if "arch" in asked else "version" if asked == ["version"] else "poll"
            self.event(host, kind)
            outputs = self.outputs(host)
            wanted = asked_files(script)
            files = {path: None for path in wanted} | self.files(host, data)
            files = {path: files[path] for path in wanted}
            modes = {p: 0o600 for p in files if p.startswith(("/etc/rancher", "/etc/default"))}
            modes[BINARY] = 0o755
            return gather_output(m.group(1), files, {k: outputs[k] for k in asked}, modes)

        return Reply('printf "%s end\\n" "$M"', answer, times=None)

    def remote(self, host: str, data: dict[str, Any]) -> ScriptedRemote:
        def applied(script: str) -> str:
            self.event(host, "apply")
            if "k3s-installation" not in script:
                self.installed.add(host)
                self.ready.add(host)
            return ""

        def probe(script: str) -> str:
            self.event(host, "probe")
            text = self.probe.get(host, "NRestarts=0\nActiveState=active\nSubState=running\nNow=100\nUp=30\n")
            return text + ("@@journal\n" + self.journal.get(host, "") if "@@journal" in script else "")

        return ScriptedRemote(host, [
            self.gather_reply(host, data),
            Reply("set -e", applied, times=None),
            Reply("systemctl show -p NRestarts", probe, times=None),
            Reply("journalctl -u", lambda s: "the unit's journal\n", times=None),
        ])  # fmt: skip

    def run(self, mode: str, binary: bytes = OLD, *, dry_run: bool = False, clock: FakeClock | None = None,
            limit: list[str] | None = None, **data: Any) -> Any:  # fmt: skip
        path = self.tmp / "k3s-bin"
        path.write_bytes(binary)
        full = self.defaults(path, **data)
        remotes = {h: self.remote(h, full["data"]) for h in self.hosts}
        ctx, report = scripted_context(self.hosts, remotes, defaults=full, dry_run=dry_run, component="k3s",
                                       base_dir=self.tmp, limit=limit)  # fmt: skip
        fake = clock or FakeClock()
        comp = K3sComponent(clock=Clock(fake.now, fake.sleep))
        getattr(comp, mode)(ctx)
        return report


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NR_TEST_K3S_TOKEN", TOKEN)
    yield


def applies(c: Cluster) -> list[str]:
    return [h for h, what in c.log if what == "apply"]


def test_fresh_install_first_server_then_servers_one_at_a_time_each_ready_then_agents(tmp_path: Path) -> None:
    c = Cluster(["s1", "s2", "s3"], ["a1", "a2"], tmp_path)
    report = c.run("apply")
    assert report.ok, report.failed_reasons
    assert applies(c)[:3] == ["s1", "s2", "s3"] and sorted(applies(c)[3:]) == ["a1", "a2"]
    log = c.log
    for server, nxt in (("s1", "s2"), ("s2", "s3"), ("s3", "a1")):
        between = log[log.index((server, "apply")) : log.index((nxt, "apply"))]
        assert ("s1", "poll") in between and (server, "probe") in between, (server, between)  # Ready first
    agents_at = min(log.index(("a1", "apply")), log.index(("a2", "apply")))
    assert ("a1", "probe") not in log[:agents_at]
    assert [r.task for r in report.rows if r.changed] == ["k3s.first-server"] + ["k3s.join-servers"] * 2 + [
        "k3s.agents"] * 2  # fmt: skip
    assert any("merged into" in n for n in report.notes)


def test_a_second_run_changes_nothing_and_does_not_poll(tmp_path: Path) -> None:
    """The first run on this machine asks the binary its version (remembered by sha256:
    tasks.k3s.versions); the next is one round trip per host, no poll, no probe."""
    c = Cluster(["s1"], ["a1", "a2"], tmp_path, installed={"s1", "a1", "a2"}, ready={"s1", "a1", "a2"})
    report = c.run("apply")
    assert report.ok and report.changed == 0, report.failed_reasons
    seen = [w for _, w in c.log]  # the hosts share one binary: asked by 1 to 3 of them (in parallel)
    assert (
        seen.count("facts") == 3
        and 1 <= seen.count("version") <= 3
        and len(seen) == 3 + seen.count("version")
    )
    c.log.clear()
    report = c.run("apply")
    assert report.ok and report.changed == 0, report.failed_reasons
    assert [w for _, w in c.log] == ["facts"] * 3


def test_a_fresh_install_asks_each_new_binary_once_so_the_next_run_is_one_round_trip(tmp_path: Path) -> None:
    """On a machine that has never seen the binary (a fresh CI machine), the run that installs it asks
    it its version right after the apply; the second run then makes the facts round trip alone."""
    c = Cluster(["s1"], ["a1", "a2"], tmp_path)
    report = c.run("apply")
    assert report.ok, report.failed_reasons
    for host in ("s1", "a1", "a2"):
        events = [w for h, w in c.log if h == host]
        assert events[events.index("apply") + 1] == "version", (host, events)
    c.log.clear()
    report = c.run("apply")
    assert report.ok and report.changed == 0, report.failed_reasons
    assert [w for _, w in c.log] == ["facts"] * 3


def test_an_installed_binary_that_does_not_answer_as_k3s_fails_its_host_with_what_it_printed(
    tmp_path: Path,
) -> None:
    c = Cluster(["s1"], ["a1"], tmp_path)
    orig = c.outputs

    def outputs(host: str) -> dict[str, Any]:  # a1's binary is for another architecture
        out = orig(host)
        return (
            out | {"version": (0, "", "k3s: cannot execute binary file: Exec format error")}
            if host == "a1"
            else out
        )

    c.outputs = outputs  # type: ignore[method-assign]
    report = c.run("apply")
    assert report.failed_hosts == ["a1"], report.failed_reasons
    reason = report.failed_reasons["a1"]
    assert "does not answer as k3s does to --version" in reason and "Exec format error" in reason, reason


def test_upgrade_goes_one_node_at_a_time_and_halts_at_the_first_that_does_not_come_back(
    tmp_path: Path,
) -> None:
    """Servers one at a time, then agents one at a time; s2 does not come back: s3 and the agents with
    changes are named as not started, a converged agent is left alone."""
    hosts = {"s1", "s2", "s3", "a1", "a2"}
    c = Cluster(["s1", "s2", "s3"], ["a1", "a2"], tmp_path, installed=set(hosts), ready=set(hosts),
                binary={"a2": NEW})  # fmt: skip
    c.probe["s2"] = "NRestarts=0\nActiveState=failed\nSubState=failed\nNow=100\n"
    c.ready.discard("s2")
    orig = c.remote

    def remote(host: str, data: dict[str, Any]) -> ScriptedRemote:
        r = orig(host, data)
        if host == "s2":  # its apply does not make it Ready
            r.replies[1] = Reply("set -e", lambda s: c.event("s2", "apply") or "", times=None)
        return r

    c.remote = remote  # type: ignore[method-assign]
    report = c.run("apply", NEW)
    assert applies(c) == ["s1", "s2"]
    assert [r.task for r in report.rows if r.changed] == ["k3s.upgrade-servers"] * 2
    assert "k3s is failed" in report.failed_reasons["s2"]
    assert set(report.failed_hosts) == {"s2", "s3", "a1"}  # a2 already runs the new binary: left alone
    assert "not started" in report.failed_reasons["s3"] and "s2" in report.failed_reasons["s3"]
    assert "upgrade halted" in report.failed_reasons["a1"]


def test_a_restart_that_never_happened_is_drift_and_a_restart_to_do(tmp_path: Path) -> None:
    """issue 11 item 1: config.yaml is newer than the running k3s (the run that wrote it was cut short)."""
    c = Cluster(["s1"], ["a1"], tmp_path, installed={"s1", "a1"}, ready={"s1", "a1"})
    c.started["a1"] = f"started 2000000000\n{CONFIG} 2000000100\n{BINARY} 1999999000\n"
    drift = c.run("drift", dry_run=True)
    assert [(d.host, d.what) for d in drift.drift] == [("a1", "service k3s-agent restart")]
    assert f"started before {CONFIG} changed" in drift.drift[0].actual
    assert any(
        not ch.ok and ch.name == "service k3s-agent restart" for ch in c.run("check", dry_run=True).checks
    )
    c.log.clear()
    report = c.run("apply")
    assert report.ok and applies(c) == ["a1"], report.failed_reasons
    assert [r.task for r in report.rows if r.changed] == ["k3s.agents"]


def test_check_and_drift_share_rules_taints_only(tmp_path: Path) -> None:
    """issue 8 item 7: a configured taint missing on the Node is drift (kubectl taint fix, quoted);
    a configured label is applied by k3s at every start, so a missing one is not reported."""
    c = Cluster(["s1"], ["a1"], tmp_path, installed={"s1", "a1"}, ready={"s1", "a1"})
    data = {"k3s_node_taints": ["gpu=yes:NoSchedule"], "k3s_node_labels": ["tier=edge"]}
    c.taints["s1"] = [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]
    drift = c.run("drift", dry_run=True, **data)
    assert [(d.host, d.what) for d in drift.drift] == [("s1", "node a1 taint gpu=yes:NoSchedule")]
    assert (
        drift.drift[0].fix
        == "/usr/local/bin/k3s kubectl taint node a1 gpu=yes:NoSchedule --overwrite  # on s1"
    )
    check = c.run("check", dry_run=True, **data)
    assert [(x.host, x.name) for x in check.checks if not x.ok] == [
        ("s1", "node a1 taint gpu=yes:NoSchedule")
    ]
    assert {"node s1 (server)", "kube-system deployment coredns", "k3s-agent service"} <= {
        x.name for x in check.checks
    }


def test_kubectl_stderr_is_never_parsed_and_explains_a_failure(tmp_path: Path) -> None:
    """issue 8 item 1: memcache discovery errors on stderr with exit 0 leave the node list readable;
    when kubectl fails, its stderr says why."""
    c = Cluster(["s1"], ["a1"], tmp_path, installed={"s1", "a1"}, ready={"s1", "a1"})
    assert c.run("check", dry_run=True).checks and all(x.ok for x in c.run("check", dry_run=True).checks)
    c.nodes_rc, c.nodes_err = (
        1,
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?\n",
    )
    check = c.run("check", dry_run=True)
    failed = [(x.host, x.name, x.detail) for x in check.checks if not x.ok]
    assert failed == [("s1", "k3s API on s1", "The connection to the server 127.0.0.1:6443 was refused - did you "
                       "specify the right host or port? (expected answers)")]  # fmt: skip


def test_an_agent_with_a_rejected_node_password_fails_early_with_the_fix(tmp_path: Path) -> None:
    """issue 8 item 4: the agent keeps running and retrying; its journal says why, nr stops waiting."""
    c = Cluster(["s1"], ["a1"], tmp_path, installed={"s1"}, ready={"s1"})
    orig = c.remote

    def remote(host: str, data: dict[str, Any]) -> ScriptedRemote:
        r = orig(host, data)
        if host == "a1":
            r.replies[1] = Reply(
                "set -e", lambda s: c.event("a1", "apply") or c.placed.add("a1") or "", times=None
            )
        return r

    c.remote = remote  # type: ignore[method-assign]
    c.journal["a1"] = ('level=info msg="Waiting to retrieve agent configuration; server is not ready: Node password '
                       "rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server "
                       'node-passwd entry, try enabling a unique node name with the --with-node-id flag"\n')  # fmt: skip
    clock = FakeClock()
    report = c.run("apply", clock=clock)
    assert report.failed_hosts == ["a1"]
    why = report.failed_reasons["a1"]
    assert "rejected its node password" in why
    assert "`/usr/local/bin/k3s kubectl -n kube-system delete secret a1.node-password.k3s` on s1" in why
    assert clock.t < 30  # not the 300 s timeout


def test_a_server_turned_into_an_agent_in_place_is_refused_while_its_node_exists(tmp_path: Path) -> None:
    """issue 8 item 3: its control-plane/etcd labels and etcd member stay; the fix is named, quoted."""
    c = Cluster(["s1"], ["a1", "a2"], tmp_path, installed={"s1", "a1", "a2"}, ready={"s1", "a1", "a2"})
    c.node_labels["a1"] = {
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/etcd": "true",
    }
    unit = render_unit(Role.SERVER).encode()
    c.extra_files["a1"] = {Role.SERVER.unit_path: unit, Role.AGENT.unit_path: None}
    report = c.run("apply")
    assert report.failed_hosts == ["a1"]
    why = report.failed_reasons["a1"]
    assert "`/usr/local/bin/k3s kubectl delete node a1` on s1" in why
    assert "nr run k3s-reset --limit a1" in why and "nr run k3s --limit a1" in why
    assert "a1" not in applies(c)
    c.node_labels.pop("a1")  # the Node was deleted: the agent may take over the host
    c.log.clear()
    report = c.run("apply")
    assert report.ok and applies(c) == ["a1"], report.failed_reasons


def test_environment_file_gets_the_proxies_0600_with_credentials_masked(tmp_path: Path) -> None:
    """issue 8 item 6: data.k3s_env -> /etc/default/k3s(-agent), 0600, read by the unit."""
    c = Cluster(["s1"], [], tmp_path, installed={"s1"}, ready={"s1"})
    c.extra_files["s1"] = {"/etc/default/k3s": b"# no proxy yet\n"}
    env = {
        "HTTPS_PROXY": "http://user:s3cret@proxy.lan:3128",
        "NO_PROXY": "10.0.0.0/8,.svc",
        "CONTAINERD_HTTP_PROXY": "http://p:1",
    }
    report = c.run("apply", dry_run=True, k3s_env=env)
    diff = next(r.diff for r in report.rows if r.changed)
    assert "/etc/default/k3s" in diff and 'NO_PROXY="10.0.0.0/8,.svc"' in diff
    assert "s3cret" not in diff and "user:s3cret" not in diff
    assert "~ update /etc/default/k3s" in diff


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"k3s_cluster_cidr": "10.42.0.0/33"}, "k3s_cluster_cidr"),
        ({"k3s_flannel_iface": "eth0; reboot"}, "k3s_flannel_iface"),
        ({"k3s_tls_san": ["$(id)"]}, "k3s_tls_san"),
        ({"k3s_node_labels": ["node-role.kubernetes.io/worker=true"]}, "NodeRestriction"),
        ({"k3s_node_taints": ["gpu=yes:Sometimes"]}, "k3s_node_taints"),
        ({"k3s_disable": ["nginx"]}, "must be one of"),
        ({"k3s_env": {"K3S_TOKEN": "x"}}, "cannot be overridden"),
        ({"k3s_env": {"LD_PRELOAD": "/x.so"}}, "only K3S_*"),
        ({"k3s_env": {"HTTP_PROXY": "http://x\nK3S_URL=y"}}, "control characters"),
        ({"k3s_version": "latest"}, "k3s release name"),
    ],
)
def test_formats_are_refused_before_any_host_is_touched(data: dict[str, Any], fragment: str) -> None:
    """issue 10 item 4: a value that reaches a config file or a program is refused up front (exit 2)."""
    from nr.inventory.validate import InventoryError

    hosts = {"s1": {"hostname": "10.0.0.1", "groups": ["k3s_servers"], "data": data}}
    with pytest.raises(InventoryError, match=re.escape(fragment)):
        scripted_context(hosts, {})


def test_labels_the_kubelet_may_set_and_runtimes_are_accepted() -> None:
    hosts = {"s1": {"hostname": "10.0.0.1", "groups": ["k3s_servers"], "data": {
        "k3s_node_labels": ["node.kubernetes.io/pool=a", "topology.kubernetes.io/zone=z1", "nr.io/tier=edge"],
        "k3s_disable": ["runtimes", "traefik"], "k3s_tls_san": ["k3s.example.org", "192.0.2.7"]}}}  # fmt: skip
    scripted_context(hosts, {})


def test_validation_warns_when_metrics_server_is_disabled(tmp_path: Path) -> None:
    """issue 8 item 10: HorizontalPodAutoscalers need metrics-server."""
    c = Cluster(["s1"], [], tmp_path)
    path = tmp_path / "k3s-bin"
    path.write_bytes(OLD)
    ctx, report = scripted_context(c.hosts, {}, defaults=c.defaults(path, k3s_disable=["metrics-server"]),
                                   component="k3s", base_dir=tmp_path)  # fmt: skip
    assert K3sComponent().validate(ctx) == []
    assert any("metrics-server" in n and "HorizontalPodAutoscalers" in n for n in report.notes)


def test_facts_parse_stdout_only() -> None:
    node = build_cluster([HostInfo("s1", "10.0.0.1", Role.SERVER)]).first
    _files, commands = facts_request(node, True)
    assert "2>&1" not in "".join(commands.values())
    from tasks.k3s.status import parse_nodes

    assert parse_nodes(Output(0, '{"items": []}', MEMCACHE)) == {}


def test_secrets_encryption_is_on_for_new_clusters_only(tmp_path: Path) -> None:
    """issue 10 item 13, and k3s docs security/secrets-encryption: it cannot be enabled on a cluster
    that was started without it."""
    c = Cluster(["s1"], [], tmp_path, installed={"s1"}, ready={"s1"})
    old = c.spec({"k3s_secrets_encryption": False})
    c.extra_files["s1"] = {CONFIG: render_config(old, old.first, TOKEN).encode()}
    drift = c.run("drift", dry_run=True)
    assert drift.drift == [] and any("created without secrets-encryption" in n for n in drift.notes)
    from nr.errors import NrError

    with pytest.raises(NrError, match="does not support enabling it later"):
        c.run("drift", dry_run=True, k3s_secrets_encryption=True)
    fresh = Cluster(["s1"], [], tmp_path / "new")
    fresh.tmp.mkdir()
    assert "secrets-encryption: true" in next(
        r.diff for r in fresh.run("apply", dry_run=True).rows if r.changed
    )
