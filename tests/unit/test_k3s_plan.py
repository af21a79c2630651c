"""The k3s play's pure parts: config and units per role, refusals, secrets, plans, order, status, kubeconfig."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from nr.facts import Facts, FileState, Output
from nr.ops.files import FileSpec
from nr.ops.release import BinarySource
from tasks.k3s.contract import BINARY, DEFAULT_VERSION
from tasks.k3s.local import merge_kubeconfig, rewrite_kubeconfig
from tasks.k3s.observe import DEPLOY_CMD, NODES_CMD, UNITS, facts_request
from tasks.k3s.plan import Stage, plan_host, rollout
from tasks.k3s.render import CONFIG, config_spec, render_config, render_env, render_unit
from tasks.k3s.reset import RESET_SCRIPT
from tasks.k3s.spec import (
    HostInfo,
    K3sPlanError,
    NodeSpec,
    Role,
    build_cluster,
    cluster_problems,
    pinned_flannel_iface,
    version_change_problem,
)
from tasks.k3s.status import ExpectedNode, deployment_problems, missing_taints, node_problems, parse_nodes
from tasks.k3s.wait import PROBE_CMD, ServiceProbe
from tests.support.systemd import show

TOKEN = "s3cr3t-cluster-token-0123456789"


def hosts(servers: int, agents: int, **data: object) -> list[HostInfo]:
    out = [HostInfo(f"s{i + 1}", f"10.0.0.{i + 1}", Role.SERVER, dict(data)) for i in range(servers)]
    out += [HostInfo(f"a{i + 1}", f"10.0.1.{i + 1}", Role.AGENT, dict(data)) for i in range(agents)]
    return out


def config(cluster_hosts: list[HostInfo], name: str, token: str = TOKEN) -> dict[str, object]:
    cluster = build_cluster(cluster_hosts)
    text = render_config(cluster, cluster.node(name), token)
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


# -- config.yaml per role ------------------------------------------------------------------------------
def test_single_server_has_no_cluster_init() -> None:
    doc = config(hosts(1, 2), "s1")
    assert doc == {
        "token": TOKEN,
        "node-name": "s1",
        "node-ip": "10.0.0.1",
        "tls-san": ["10.0.0.1"],
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
        "secrets-encryption": True,  # issue 10 item 13: Secrets encrypted at rest by default
    }
    assert "secrets-encryption" not in config(hosts(1, 1, k3s_secrets_encryption=False), "s1")


def test_first_server_of_several_initialises_the_embedded_etcd() -> None:
    doc = config(hosts(3, 0), "s1")
    assert doc["cluster-init"] is True
    assert "server" not in doc


def test_joining_server_points_at_the_first_and_shares_the_critical_values() -> None:
    data = {
        "k3s_disable": ["traefik", "servicelb"],
        "k3s_cluster_cidr": "10.50.0.0/16",
        "k3s_tls_san": ["k3s.lan"],
    }
    first, second = config(hosts(3, 0, **data), "s1"), config(hosts(3, 0, **data), "s2")
    assert second["server"] == "https://10.0.0.1:6443"
    assert "cluster-init" not in second
    assert second["tls-san"] == [
        "10.0.0.1",
        "k3s.lan",
    ]  # the first server's address: the kubeconfig's endpoint
    for key in ("cluster-cidr", "service-cidr", "disable"):
        assert first[key] == second[key]
    assert second["disable"] == ["servicelb", "traefik"]  # sorted: identical text on every server


def test_agent_gets_server_and_token_and_no_server_settings() -> None:
    doc = config(hosts(1, 2, k3s_node_labels=["zone=a"], k3s_node_taints=["gpu=yes:NoSchedule"]), "a2")
    assert doc == {
        "token": TOKEN,
        "node-name": "a2",
        "node-ip": "10.0.1.2",
        "server": "https://10.0.0.1:6443",
        "node-label": ["zone=a"],
        "node-taint": ["gpu=yes:NoSchedule"],
    }


def test_node_ip_and_flannel_iface_for_multi_nic_hosts() -> None:
    inv = [
        HostInfo("s1", "192.168.64.11", Role.SERVER, {"node_ip": "10.9.0.1", "k3s_flannel_iface": "enp0s8"}),
        HostInfo("a1", "192.168.64.12", Role.AGENT, {"node_ip": "10.9.0.2", "k3s_flannel_iface": "enp0s8"}),
    ]
    server, agent = config(inv, "s1"), config(inv, "a1")
    assert server["node-ip"] == "10.9.0.1" and server["flannel-iface"] == "enp0s8"
    assert server["tls-san"] == ["192.168.64.11"]  # what the operator connects to
    assert agent["server"] == "https://10.9.0.1:6443"  # the first server's node-ip


def test_ipv6_server_url_is_bracketed() -> None:
    inv = [HostInfo("s1", "fd00::1", Role.SERVER), HostInfo("a1", "fd00::2", Role.AGENT)]
    assert config(inv, "a1")["server"] == "https://[fd00::1]:6443"


def test_token_with_quotes_survives_yaml() -> None:
    assert config(hosts(1, 0), "s1", token='a"b\\c: d')["token"] == 'a"b\\c: d'


# -- refusals ------------------------------------------------------------------------------------------
def test_refuses_cluster_critical_values_that_differ_between_servers() -> None:
    inv = hosts(3, 1)
    inv[1] = HostInfo("s2", "10.0.0.2", Role.SERVER, {"k3s_service_cidr": "10.99.0.0/16"})
    inv[2] = HostInfo("s3", "10.0.0.3", Role.SERVER, {"k3s_disable": ["traefik"]})
    with pytest.raises(K3sPlanError) as err:
        build_cluster(inv)
    problems = err.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(
        "host s2: k3s_service_cidr is '10.99.0.0/16' but the first server s1 has '10.43.0.0/16'"
    )
    assert "critical configuration value mismatch" in problems[0]
    # issue 8 item 8: `disable` is not a critical value k3s compares (only servicelb is)
    assert problems[1].startswith("host s3: k3s_disable is ['traefik'] but the first server s1 has []")
    assert "critical configuration value mismatch" not in problems[1]
    assert "k3s would accept the join (only servicelb is a critical value)" in problems[1]
    inv[2] = HostInfo("s3", "10.0.0.3", Role.SERVER, {"k3s_disable": ["servicelb"]})
    inv[1] = HostInfo("s2", "10.0.0.2", Role.SERVER, {"k3s_secrets_encryption": False})
    problems = cluster_problems(inv)
    assert [p.split(";")[0] for p in problems] == [
        "host s2: k3s_secrets_encryption is False but the first server s1 has True",
        "host s3: k3s_disable is ['servicelb'] but the first server s1 has []",
    ]
    assert all("critical configuration value mismatch" in p for p in problems)


def test_defaults_equal_explicit_defaults_and_disable_order_is_irrelevant() -> None:
    inv = hosts(3, 0)
    inv[1] = HostInfo("s2", "10.0.0.2", Role.SERVER, {"k3s_cluster_cidr": "10.42.0.0/16"})
    inv[0] = HostInfo("s1", "10.0.0.1", Role.SERVER, {"k3s_disable": ["traefik", "metrics-server"]})
    inv[1] = HostInfo("s2", "10.0.0.2", Role.SERVER, {"k3s_disable": ["metrics-server", "traefik"]})
    inv[2] = HostInfo(
        "s3", "10.0.0.3", Role.SERVER, {"k3s_disable": ["traefik", "metrics-server", "traefik"]}
    )
    assert cluster_problems(inv) == []


def test_refuses_servers_with_different_tokens_without_showing_them() -> None:
    inv = hosts(3, 1, k3s_token="env:A")
    inv[2] = HostInfo("s3", "10.0.0.3", Role.SERVER, {"k3s_token": "env:B"})
    problems = cluster_problems(inv)
    assert problems == [
        "host s3: k3s_token is (set) but the first server s1 has (set); it must be identical on every k3s "
        "server (k3s refuses the join: critical configuration value mismatch)"
    ]
    inv[3] = HostInfo(
        "a1", "10.0.1.1", Role.AGENT, {"k3s_token": "env:C"}
    )  # agents may differ (agent tokens)
    assert len(cluster_problems(inv)) == 1


def test_other_inventory_problems_are_named_by_host() -> None:
    inv = [
        HostInfo("s1", "k3s-1.lan", Role.SERVER, {"k3s_version": "v1.26.3+k3s1"}),
        HostInfo("a1", "10.0.1.1", Role.AGENT, {"k3s_version": "v1.31.4+k3s1"}),
        HostInfo("a2", "10.0.1.2", Role.AGENT, {"k3s_version": "v1.26.3+k3s1", "k3s_disable": ["runtimes"]}),
    ]
    text = "\n".join(cluster_problems(inv))
    assert "host s1: address 'k3s-1.lan' is not an IP address; set data.node_ip" in text
    assert "host a1: k3s_version is 'v1.31.4+k3s1' but s1 has 'v1.26.3+k3s1'" in text
    assert "host a2: k3s_disable: k3s v1.26.3+k3s1 does not know 'runtimes'" in text


def test_runtimes_may_be_disabled_where_the_pinned_version_knows_it() -> None:
    """issue 8 item 8: `runtimes` is a packaged manifest since the December 2023 releases."""
    assert cluster_problems(hosts(1, 1, k3s_disable=["runtimes", "traefik"])) == []  # the default version
    for version, ok in (("v1.28.5+k3s1", True), ("v1.28.4+k3s1", False), ("v1.29.0+k3s1", True),
                        ("v1.26.12+k3s1", True), ("v1.25.16+k3s4", False)):  # fmt: skip
        problems = cluster_problems(hosts(1, 0, k3s_disable=["runtimes"], k3s_version=version))
        assert (problems == []) is ok, version
    assert cluster_problems([HostInfo("a1", "10.0.1.1", Role.AGENT)]) == [
        "k3s_agents (a1) need at least one host in k3s_servers"
    ]


# -- units and secrets ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.SERVER, Role.AGENT])
def test_unit_runs_the_binary_with_nothing_but_the_subcommand(role: Role) -> None:
    unit = render_unit(role)
    exec_lines = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_lines == [f"ExecStart=/usr/local/bin/k3s {role.value}"]
    for setting in (
        "Type=exec",
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "Restart=always",
        "RestartSec=5s",
        "ExecStartPre=-/sbin/modprobe br_netfilter",
        "ExecStartPre=-/sbin/modprobe overlay",
        "WantedBy=multi-user.target",
    ):
        assert setting in unit.splitlines()
    # issue 8 item 6: install.sh's environment file (proxies), ours written 0600 from data.k3s_env
    assert "EnvironmentFile=-/etc/default/%N" in unit.splitlines()
    assert "Environment=" not in unit
    # systemd has no trailing comments: every comment is a line of its own
    assert all(line.startswith("#") or "#" not in line for line in unit.splitlines())


def empty_facts(*, arch: str = "x86_64") -> Facts:
    return Facts(
        outputs={
            "arch": Output(0, arch),
            "services": Output(0, ""),
            "version": Output(0, ""),
            "started": Output(0, ""),
        }
    )


def binary_source(tmp_path: Path, content: bytes = b"k3s binary") -> BinarySource:
    path = tmp_path / "k3s"
    path.write_bytes(content)
    return BinarySource(hashlib.sha256(content).hexdigest(), "test binary", path)


def test_token_travels_only_inside_config_yaml(tmp_path: Path) -> None:
    inv = hosts(3, 2)
    cluster = build_cluster(inv)
    encoded = base64.b64encode(render_config(cluster, cluster.node("a1"), TOKEN).encode()).decode()
    for node in cluster.nodes:
        plan = plan_host(cluster, node, TOKEN, empty_facts(), binary_source(tmp_path))
        texts = [plan.after] + [c.script for c in plan.changes] + [c.diff for c in plan.changes]
        texts += [c.expected + c.actual + c.what for c in plan.changes]
        assert all(TOKEN not in t for t in texts), node.name  # plain: nowhere, not even a script
        config_changes = [c for c in plan.changes if c.what == f"file {CONFIG}"]
        assert len(config_changes) == 1
        assert "********" in config_changes[0].diff  # the diff shows it masked
        others = [c.script for c in plan.changes if c is not config_changes[0]]
        assert all("base64 -d" not in s or CONFIG not in s for s in others)
        assert "<<'NR_EOF'" in config_changes[0].script  # content on the script's stdin, never argv
        assert TOKEN not in render_unit(node.role)
    assert encoded[:40] in "".join(
        c.script.replace("\n", "")
        for c in plan_host(cluster, cluster.node("a1"), TOKEN, empty_facts(), binary_source(tmp_path)).changes
    )
    for command in (NODES_CMD, DEPLOY_CMD, PROBE_CMD, UNITS.command, RESET_SCRIPT):
        assert "token" not in command.lower()
    _files, commands = facts_request(cluster.first, True)
    assert all("token" not in c for c in commands.values())


def test_config_mode_and_masking_of_an_old_token() -> None:
    cluster = build_cluster(hosts(1, 0))
    old = 'token: "the-old-cluster-token"\nnode-name: "s1"\n'
    spec = config_spec(cluster, cluster.first, TOKEN, old)
    assert isinstance(spec, FileSpec) and spec.mode == 0o600 and spec.owner == "root"
    assert "the-old-cluster-token" in spec.secrets and TOKEN in spec.secrets
    facts = empty_facts()
    facts.files[CONFIG] = FileState(CONFIG, True, 0o600, "root", "root", len(old), "0" * 64, old.encode())
    plan = plan_host(cluster, cluster.first, TOKEN, facts, BinarySource("0" * 64, "x", None))
    diff = next(c.diff for c in plan.changes if c.what == f"file {CONFIG}")
    assert "the-old-cluster-token" not in diff and TOKEN not in diff and "********" in diff


# -- plans: idempotency and restarts ------------------------------------------------------------------
def converged_facts(
    tmp_path: Path, role: Role = Role.AGENT, *, active: str = "active"
) -> tuple[Facts, BinarySource]:
    source = binary_source(tmp_path)
    cluster = build_cluster(hosts(1, 1))
    node = cluster.node("a1" if role is Role.AGENT else "s1")
    facts = empty_facts()
    for path, content, mode in (
        (CONFIG, render_config(cluster, node, TOKEN).encode(), 0o600),
        (role.unit_path, render_unit(role).encode(), 0o644),
        (role.env_path, render_env(node).encode(), 0o600),
        (BINARY, b"k3s binary", 0o755),
    ):
        facts.files[path] = FileState(
            path, True, mode, "root", "root", len(content), hashlib.sha256(content).hexdigest(), content
        )
    states = {role.unit: (role.unit, active, "enabled"), role.other.unit: (role.other.unit, "inactive", "")}
    facts.outputs["services"] = Output(0, show(states["k3s"], states["k3s-agent"]))  # servers' unit first
    return facts, source


def test_converged_host_has_no_changes_and_no_restart(tmp_path: Path) -> None:
    cluster = build_cluster(hosts(1, 1))
    facts, source = converged_facts(tmp_path)
    plan = plan_host(cluster, cluster.node("a1"), TOKEN, facts, source)
    assert plan.changes == () and not plan.restart and not plan.upgrade and plan.after == ""


def test_config_change_restarts_and_a_stopped_service_only_starts(tmp_path: Path) -> None:
    cluster = build_cluster(hosts(1, 1))
    facts, source = converged_facts(tmp_path)
    plan = plan_host(cluster, cluster.node("a1"), "another-token-value", facts, source)
    assert plan.restart and "systemctl restart k3s-agent" in plan.after
    assert "daemon-reload" not in plan.after  # the unit did not change
    facts, source = converged_facts(tmp_path, active="failed")
    plan = plan_host(cluster, cluster.node("a1"), TOKEN, facts, source)
    assert [c.what for c in plan.changes] == ["service k3s-agent"]
    assert plan.after == ""  # the change carries its own script
    assert plan.changes[0].script.splitlines() == [
        "systemctl reset-failed k3s-agent 2>/dev/null || true",
        "systemctl start k3s-agent",
    ]


def test_new_binary_is_an_upgrade_and_restarts(tmp_path: Path) -> None:
    cluster = build_cluster(hosts(1, 1))
    facts, _ = converged_facts(tmp_path)
    facts.outputs["version"] = Output(0, "k3s version v1.31.4+k3s1 (abc)")
    plan = plan_host(cluster, cluster.node("a1"), TOKEN, facts, binary_source(tmp_path, b"k3s v2"))
    assert plan.upgrade and plan.restart
    change = plan.changes[0]
    assert change.what == f"file {BINARY}" and change.upload is not None
    assert "from test binary" in change.diff and "(was: k3s version v1.31.4+k3s1 (abc))" in change.diff


def test_fresh_install_reloads_enables_and_restarts(tmp_path: Path) -> None:
    cluster = build_cluster(hosts(1, 1))
    plan = plan_host(cluster, cluster.first, TOKEN, empty_facts(), binary_source(tmp_path))
    assert not plan.upgrade
    assert plan.after.splitlines() == [
        "systemctl daemon-reload",
        "systemctl enable --quiet k3s",
        "systemctl reset-failed k3s 2>/dev/null || true",
        "systemctl restart k3s",
    ]


def test_role_switch_removes_the_other_unit(tmp_path: Path) -> None:
    cluster = build_cluster(hosts(1, 1))
    facts, source = converged_facts(tmp_path, Role.AGENT)
    facts.files[Role.SERVER.unit_path] = FileState(
        Role.SERVER.unit_path, True, 0o644, "root", "root", 1, "x", b"x"
    )
    plan = plan_host(cluster, cluster.node("a1"), TOKEN, facts, source)
    removal = [c for c in plan.changes if c.what == "service k3s"]
    assert removal and "systemctl disable --now k3s" in removal[0].script
    assert "systemctl daemon-reload" in plan.after


def test_not_downloaded_release_is_planned_from_its_hash_only() -> None:
    cluster = build_cluster(hosts(1, 0))
    plan = plan_host(
        cluster, cluster.first, TOKEN, empty_facts(), BinarySource("ab" * 32, "k3s v1 (release)", None)
    )
    change = plan.changes[0]
    assert (
        change.upload is None and "was not downloaded" in change.script and "k3s v1 (release)" in change.diff
    )


# -- order ----------------------------------------------------------------------------------------------
def test_order_one_server_two_agents() -> None:
    assert rollout(["s1"], ["a1", "a2"], upgrade=False) == [
        Stage("first-server", ("s1",), False, True),
        Stage("agents", ("a1", "a2"), False, False),
    ]


def test_order_three_servers_no_agents() -> None:
    assert rollout(["s1", "s2", "s3"], [], upgrade=False) == [
        Stage("first-server", ("s1",), False, True),
        Stage("join-servers", ("s2", "s3"), True, True),
    ]


def test_order_three_servers_two_agents() -> None:
    assert [
        (s.step, s.hosts, s.serial) for s in rollout(["s1", "s2", "s3"], ["a1", "a2"], upgrade=False)
    ] == [
        ("first-server", ("s1",), False),
        ("join-servers", ("s2", "s3"), True),
        ("agents", ("a1", "a2"), False),
    ]


def test_upgrade_order_servers_then_agents_one_at_a_time() -> None:
    assert rollout(["s1", "s2", "s3"], ["a1", "a2"], upgrade=True) == [
        Stage("upgrade-servers", ("s1", "s2", "s3"), True, True),
        Stage("upgrade-agents", ("a1", "a2"), True, True),
    ]


# -- cluster status -------------------------------------------------------------------------------------
def node(
    name: str, ready: str = "True", version: str = DEFAULT_VERSION, server: bool = False
) -> dict[str, object]:
    labels = {"kubernetes.io/hostname": name}
    if server:
        labels |= {"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": ready, "reason": "X", "message": "why"},
            ],
            "nodeInfo": {"kubeletVersion": version},
        },
    }


def nodes_json(*items: dict[str, object]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def ok(text: str) -> Output:
    return Output(0, text)


def test_node_problems() -> None:
    status = parse_nodes(
        ok(
            nodes_json(
                node("s1", server=True),
                node("a1", ready="Unknown"),
                node("a2", version="v1.30.0+k3s1"),
                node("a3", server=True),
            )
        )
    )
    want = [
        ExpectedNode("s1", Role.SERVER, DEFAULT_VERSION),
        ExpectedNode("a1", Role.AGENT, DEFAULT_VERSION),
        ExpectedNode("a2", Role.AGENT, DEFAULT_VERSION),
        ExpectedNode("a3", Role.AGENT, None),
        ExpectedNode("a4", Role.AGENT, None),
    ]
    assert node_problems(status, want) == {
        "a1": "NotReady (Ready=Unknown: why)",
        "a2": f"runs v1.30.0+k3s1, expected {DEFAULT_VERSION}",
        "a3": "registered as a control-plane node, expected an agent",
        "a4": "not registered with the cluster",
    }
    assert node_problems(parse_nodes(ok(nodes_json(node("s1")))), want[:1]) == {
        "s1": "registered without the control-plane role (is it an agent?)"
    }


def test_deployment_problems() -> None:
    doc = {
        "items": [
            {"metadata": {"name": "coredns"}, "spec": {"replicas": 1}, "status": {"availableReplicas": 1}},
            {"metadata": {"name": "traefik"}, "spec": {"replicas": 2}, "status": {"availableReplicas": 1}},
        ]
    }
    assert deployment_problems(ok(json.dumps(doc)), ["coredns", "traefik", "metrics-server"]) == {
        "traefik": "1/2 replicas available",
        "metrics-server": "not deployed (yet)",
    }


def test_service_probe_reads_systemd_and_the_journal() -> None:
    text = "NRestarts=3\nActiveState=activating\nSubState=auto-restart\nNow=1700000000\nUp=40\n"
    probe = ServiceProbe.parse("k3s-agent", text)
    assert probe.restarts == 3 and not probe.running and probe.now == 1700000000
    assert probe.verdict() == "k3s-agent keeps exiting (restarted 3 times by systemd)"
    ok_ = ServiceProbe.parse("k3s", "NRestarts=0\nActiveState=active\nSubState=running\nUp=7\n")
    assert ok_.running and ok_.up == 7 and ok_.verdict() is None
    assert (
        ServiceProbe.parse("k3s", "NRestarts=0\nActiveState=inactive\nSubState=dead\n").verdict()
        == "k3s is inactive"
    )
    assert ServiceProbe("k3s", error="timed out").verdict() == "its host cannot be reached: timed out"


PASSWORD_LINE = (
    'time="2025-01-07T10:00:05Z" level=info msg="Waiting to retrieve agent configuration; server is not ready: '
    "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match "
    'server node-passwd entry, try enabling a unique node name with the --with-node-id flag"'
)
TOKEN_LINE = (
    'time="2025-01-07T10:00:05Z" level=info msg="Waiting to retrieve agent configuration; server is not ready: '
    'failed to retrieve configuration from server: https://127.0.0.1:6444/v1-k3s/config: 401 Unauthorized"'
)


@pytest.mark.parametrize(
    ("line", "cause", "fix"),
    [
        (PASSWORD_LINE, "rejected its node password",
         "`/usr/local/bin/k3s kubectl -n kube-system delete secret a1.node-password.k3s` on s1"),
        (TOKEN_LINE, "refused its token (401 Unauthorized)", "set data.k3s_token for a1"),
    ],
)  # fmt: skip
def test_an_agent_that_retries_forever_is_given_up_on_with_cause_and_fix(
    line: str, cause: str, fix: str
) -> None:
    """issue 8 item 4: the unit stays active/running (k3s retries forever); the journal says why."""
    text = f"NRestarts=0\nActiveState=active\nSubState=running\nNow=1700000010\nUp=30\n@@journal\nother\n{line}\n"
    verdict = ServiceProbe.parse("k3s-agent", text).verdict("a1", "s1")
    assert verdict is not None and cause in verdict and fix in verdict


# -- kubeconfig -----------------------------------------------------------------------------------------
FETCHED = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
"""

EXISTING = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "work", "cluster": {"server": "https://work:6443"}}],
    "users": [{"name": "work-admin", "user": {"token": "abc"}}],
    "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work-admin"}}],
    "current-context": "work",
}


def test_rewrite_kubeconfig_names_and_server() -> None:
    doc = rewrite_kubeconfig(yaml.safe_load(FETCHED), "https://10.0.0.1:6443", "homelab")
    assert doc["clusters"] == [
        {
            "cluster": {"certificate-authority-data": "Q0E=", "server": "https://10.0.0.1:6443"},
            "name": "homelab",
        }
    ]
    assert doc["contexts"] == [{"context": {"cluster": "homelab", "user": "homelab"}, "name": "homelab"}]
    assert doc["users"][0]["name"] == "homelab" and doc["users"][0]["user"]["client-key-data"] == "S0VZ"
    assert doc["current-context"] == "homelab"


def test_merge_keeps_other_entries_and_current_context_and_is_idempotent() -> None:
    new = rewrite_kubeconfig(yaml.safe_load(FETCHED), "https://10.0.0.1:6443", "homelab")
    merged = merge_kubeconfig(EXISTING, new, "homelab")
    assert merged["current-context"] == "work"
    assert [c["name"] for c in merged["clusters"]] == ["work", "homelab"]
    assert [u["name"] for u in merged["users"]] == ["work-admin", "homelab"]
    assert [c["name"] for c in merged["contexts"]] == ["work", "homelab"]
    assert merged["users"][0] == EXISTING["users"][0]
    assert merge_kubeconfig(merged, new, "homelab") == merged
    moved = rewrite_kubeconfig(yaml.safe_load(FETCHED), "https://10.0.0.9:6443", "homelab")
    again = merge_kubeconfig(merged, moved, "homelab")
    assert [c["cluster"]["server"] for c in again["clusters"]] == [
        "https://work:6443",
        "https://10.0.0.9:6443",
    ]
    other = copy.deepcopy(moved)  # another site also named homelab: another server and another CA
    other["clusters"][0]["cluster"]["certificate-authority-data"] = "T1RIRVI="
    with pytest.raises(ValueError, match="already has a cluster named 'homelab' for another cluster"):
        merge_kubeconfig(merged, other, "homelab")
    fresh = merge_kubeconfig(None, new, "homelab")
    assert fresh["current-context"] == "homelab" and fresh["kind"] == "Config"


IP_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: enp0s3    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic enp0s3\\       valid_lft 86000sec
3: enp0s8    inet 192.168.56.11/24 brd 192.168.56.255 scope global enp0s8\\       valid_lft forever
3: enp0s8    inet6 fe80::a00:27ff:fe4e:66a1/64 scope link \\       valid_lft forever preferred_lft forever
"""
DEFAULT_ROUTE = "default via 10.0.2.2 dev enp0s3 proto dhcp src 10.0.2.15 metric 100\n"


def test_flannel_is_pinned_to_the_node_ip_interface_on_multi_nic_hosts() -> None:
    # Vagrant/VirtualBox: NAT NIC with the default route, the inventory address on the host-only NIC
    assert pinned_flannel_iface("192.168.56.11", IP_ADDR, DEFAULT_ROUTE) == "enp0s8"
    assert pinned_flannel_iface("10.0.2.15", IP_ADDR, DEFAULT_ROUTE) is None  # the default: nothing to pin
    assert pinned_flannel_iface("10.0.2.15", "", DEFAULT_ROUTE) is None  # no `ip` output: cannot tell


def test_a_node_ip_the_host_does_not_have_is_refused_naming_what_it_has() -> None:
    with pytest.raises(ValueError, match=r"node-ip 203\.0\.113\.7 is not an address of this host") as err:
        pinned_flannel_iface("203.0.113.7", IP_ADDR, DEFAULT_ROUTE)  # a floating / NAT address
    assert "10.0.2.15 (enp0s3), 192.168.56.11 (enp0s8)" in str(err.value)
    assert "127.0.0.1" not in str(err.value)


def test_version_changes_go_one_minor_at_a_time_and_never_down() -> None:
    assert version_change_problem("v1.31.4+k3s1", "v1.31.6+k3s1") is None  # a patch release
    assert version_change_problem("v1.31.4+k3s1", "v1.32.0+k3s1") is None  # the next minor
    assert version_change_problem("", "v1.33.0+k3s1") is None  # not installed yet
    assert version_change_problem("v1.31.4+k3s1", None) is None  # whatever the given binary is
    skip = version_change_problem("v1.30.2+k3s1", "v1.32.0+k3s1")
    assert skip is not None and "upgrade to a v1.31.x release first" in skip
    down = version_change_problem("v1.32.0+k3s1", "v1.31.4+k3s1")
    assert down is not None and "downgrade" in down


def test_only_taints_can_be_missing_labels_are_applied_by_k3s_at_every_start() -> None:
    """issue 8 item 7: node-label is merged into the Node at each k3s start (k3s PR #1171)."""
    nodes = parse_nodes(ok(json.dumps({"items": [{
        "metadata": {"name": "vm2", "labels": {"nr.io/role": "agent", "kubernetes.io/os": "linux"}},
        "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                            {"key": "spot", "effect": "PreferNoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }]})))  # fmt: skip
    assert nodes["vm2"].taints == ("dedicated=db:NoSchedule", "spot:PreferNoSchedule")
    node = NodeSpec(
        "vm2", "10.0.0.2", Role.AGENT, "10.0.0.2",
        labels=("nr.io/role=agent", "nr.io/tier=edge"), taints=("dedicated=db:NoSchedule", "gpu=yes:NoExecute"),
    )  # fmt: skip
    assert missing_taints(nodes["vm2"], node) == ["gpu=yes:NoExecute"]
    same = NodeSpec("vm2", "10.0.0.2", Role.AGENT, "10.0.0.2", labels=("nr.io/other=x",))
    assert missing_taints(nodes["vm2"], same) == []


def test_old_and_hand_set_credentials_in_the_env_file_and_registries_never_print() -> None:
    from nr.ops.files import plan_files
    from tasks.k3s.render import REGISTRIES, host_files

    cluster = build_cluster(hosts(1, 0, k3s_env={"HTTPS_PROXY": "http://alice:new-proxy-pw@proxy:3128"}))
    node = cluster.first
    registries = (
        b'configs:\n  "reg.example:5000":\n    auth:\n      username: bob\n      password: new-reg-pw\n'
    )
    old = {
        node.role.env_path: b'K3S_TOKEN="K10hand-set-token::server:abc"\nHTTPS_PROXY="http://alice:old-proxy-pw@proxy:3128"\n',
        REGISTRIES: b'configs:\n  "reg.example:5000":\n    auth:\n      username: bob\n      password: old-reg-pw\n'
        b"      identity_token: old-id-token\n",
    }
    states = {
        path: FileState(path, True, 0o600, "root", "root", len(c), hashlib.sha256(c).hexdigest(), c)
        for path, c in old.items()
    }
    for current in (states, {}):  # a changed file, and a file created (as under --dry-run on a new host)
        changes = plan_files(host_files(cluster, node, TOKEN, None, registries), current)
        text = "\n".join(c.diff for c in changes)
        for secret in (
            "new-proxy-pw",
            "old-proxy-pw",
            "K10hand-set-token",
            "new-reg-pw",
            "old-reg-pw",
            "old-id-token",
        ):
            assert secret not in text
        assert "bob" in text  # what changed stays readable: a user name, the hosts
    assert "proxy:3128" in text and "reg.example:5000" in text
