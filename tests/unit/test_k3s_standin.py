"""The k3s stand-in (tests/fakes/k3s) itself: its YAML reader and its server logic, in process.

The lab tests run it for real under systemd; these pin down the behaviour it imitates.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tasks.k3s.render import render_config
from tasks.k3s.spec import HostInfo, Role, build_cluster

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "k3s"


@pytest.fixture
def k3s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("k3s_standin", str(FAKE))
    spec = importlib.util.spec_from_loader("k3s_standin", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    monkeypatch.setattr(module, "STATE", str(tmp_path / "db" / "state.json"))
    monkeypatch.setattr(module, "IMAGES_DB", str(tmp_path / "images.json"))
    monkeypatch.setattr(module, "NODE_PASSWORD", str(tmp_path / "node" / "password"))
    monkeypatch.setattr(module, "MEMBER_FILE", str(tmp_path / "db" / "etcd" / "member"))
    monkeypatch.setattr(module, "API_STARTING", 0.0)
    monkeypatch.setattr(module, "METRICS_READY_AFTER", 0.0)
    return module


def test_version_output_and_unknown_commands() -> None:
    out = subprocess.run(
        [sys.executable, str(FAKE), "--version"], capture_output=True, text=True, check=True
    ).stdout
    first, second = out.splitlines()
    assert first.startswith("k3s version v1.31.4+k3s1 (") and second.startswith("go version go1.")
    bad = subprocess.run(
        [sys.executable, str(FAKE), "etcd-snapshot"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1 and "not imitated by the k3s stand-in" in bad.stderr


DOCS: list[dict[str, Any]] = [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "labels": {"app": "api"}},
     "spec": {"replicas": 2, "template": {"spec": {"containers": [
         {"name": "c", "image": "aeroalpes:0.1.0", "args": ["--x", "y: z", "w " * 50], "env": [{"name": "A", "value": "1"}],
          "ports": [{"containerPort": 8000}]}]}}}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"},
     "data": {"multi": "line1\nline2\n", "empty": "", "quote": "it's # no comment", "num": "1.5", "bool": "true"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}, "spec": {"finalizers": []}},
]  # fmt: skip


@pytest.mark.parametrize(
    "dump",
    [
        lambda d: yaml.safe_dump_all(d, sort_keys=False),
        lambda d: yaml.safe_dump_all(d, width=30, allow_unicode=True),
        lambda d: yaml.dump_all(d, indent=4),
        lambda d: "\n---\n".join(json.dumps(x) for x in d),
        lambda d: "".join("---\n" + yaml.safe_dump(x, sort_keys=True) for x in d),  # what deploy sends
    ],
)
def test_yaml_reader_reads_what_pyyaml_and_json_write(k3s: ModuleType, dump: Any) -> None:
    assert k3s.load_yaml(dump(DOCS)) == DOCS


def test_yaml_reader_reads_nr_config_and_hand_written_yaml(k3s: ModuleType) -> None:
    inv = [HostInfo("s1", "10.0.0.1", Role.SERVER, {"k3s_disable": ["traefik"], "k3s_node_labels": ["a=b"]}),
           HostInfo("s2", "10.0.0.2", Role.SERVER, {"k3s_disable": ["traefik"]}),
           HostInfo("s3", "10.0.0.3", Role.SERVER, {"k3s_disable": ["traefik"]})]  # fmt: skip
    cluster = build_cluster(inv)
    for node in cluster.nodes:
        text = render_config(cluster, node, 'tok"en\\x')
        assert k3s.load_yaml(text) == [yaml.safe_load(text)]
    text = "a:\n  - x: 1\n    y: [1, 'two']\n  -\n    z: ~\nb: |\n  hello\n    world\nc: {k: v, n: 3}  # c\nd: 'x # y'\n"
    assert k3s.load_yaml(text) == [yaml.safe_load(text)]


def cfg(token: str = "secret", **extra: Any) -> dict[str, Any]:
    return {"token": token, "node-name": "s1", "node-ip": "10.0.0.1", **extra}


def facts(k3s: ModuleType, role: str, name: str, token: str = "secret", **extra: Any) -> dict[str, Any]:
    me: dict[str, Any] = k3s.node_facts(
        {"token": token, "node-name": name, "node-ip": "10.0.0.9", **extra}, role
    )
    return me


def test_registration_checks_the_token_and_the_critical_values(k3s: ModuleType) -> None:
    primary = k3s.Primary(cfg(**{"cluster-init": True, "disable": ["traefik"]}))
    assert (
        primary.call(
            "register", facts(k3s, "server", "s1", **{"cluster-init": True, "disable": ["traefik"]}), None
        )[0]
        == 200
    )
    code, reply = primary.call("register", facts(k3s, "agent", "a1", token="wrong"), None)
    assert code == 401 and reply["message"] == "401 Unauthorized"
    code, reply = primary.call(
        "register",
        facts(k3s, "server", "s2", server="https://10.0.0.1:6443", disable=["traefik", "servicelb"]),
        None,
    )
    assert (  # of `disable`, only servicelb is a critical value (types.go CriticalControlArgs)
        code == 409
        and reply["message"] == "critical configuration value mismatch between servers: disable-service-lb"
    )
    other_addons = facts(k3s, "server", "s3", server="https://10.0.0.1:6443", disable=["metrics-server"])
    assert primary.call("register", other_addons, None)[0] == 200
    ok = facts(k3s, "server", "s2", server="https://10.0.0.1:6443", disable=["traefik"])
    code, reply = primary.call("register", ok, None)
    assert code == 200
    node_token = f"K10{k3s.ca_hash(reply['ca'])}::server:secret"
    assert primary.call("register", facts(k3s, "agent", "a1", token=node_token), None)[0] == 200
    assert (
        primary.call("register", facts(k3s, "agent", "a2", token="K10" + "0" * 64 + "::server:secret"), None)[
            0
        ]
        == 401
    )
    single = k3s.Primary.__new__(k3s.Primary)
    single.__dict__.update(primary.__dict__, cfg=cfg())
    assert single.op_register(ok)[0] == 409  # no cluster-init: no embedded etcd to join


def test_nodes_in_the_kubectl_shape_and_stale_heartbeats(
    k3s: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = k3s.Primary(cfg())
    primary.call("register", facts(k3s, "server", "s1"), None)
    primary.call(
        "register",
        facts(k3s, "agent", "a1", **{"node-label": ["zone=a"], "node-taint": ["gpu=yes:NoSchedule"]}),
        None,
    )
    code, doc = primary.call("get", {"kind": "node"}, "secret")
    assert code == 200 and doc["kind"] == "List"
    by = {i["metadata"]["name"]: i for i in doc["items"]}
    assert by["s1"]["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
    assert by["s1"]["metadata"]["labels"]["node-role.kubernetes.io/master"] == "true"
    assert "node-role.kubernetes.io/control-plane" not in by["a1"]["metadata"]["labels"]
    assert by["a1"]["metadata"]["labels"]["zone"] == "a"
    assert by["a1"]["spec"]["taints"] == [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]
    assert by["a1"]["status"]["nodeInfo"]["kubeletVersion"] == k3s.VERSION
    assert {a["type"] for a in by["a1"]["status"]["addresses"]} == {"InternalIP", "Hostname"}
    assert by["a1"]["status"]["conditions"][0]["status"] == "True"
    primary.seen["a1"] -= k3s.STALE + 1
    code, node = primary.call("get", {"kind": "node", "name": "a1"}, "secret")
    assert node["status"]["conditions"][0]["status"] == "Unknown"
    assert primary.call("heartbeat", {"name": "a1", "version": "v9.9.9+k3s1"}, "secret")[0] == 200
    code, node = primary.call("get", {"kind": "node", "name": "a1"}, "secret")
    assert (
        node["status"]["conditions"][0]["status"] == "True"
        and node["status"]["nodeInfo"]["kubeletVersion"] == "v9.9.9+k3s1"
    )
    assert primary.call("get", {"kind": "node"}, "wrong")[0] == 401


def test_a_server_refuses_to_start_with_another_token(k3s: ModuleType) -> None:
    k3s.Primary(cfg("first"))
    with pytest.raises(SystemExit):
        k3s.Primary(cfg("second"))


def test_apply_get_diff_like_kubectl(k3s: ModuleType) -> None:
    primary = k3s.Primary(cfg(disable=["traefik"]))
    docs = json.loads(json.dumps(DOCS))
    code, reply = primary.call("apply", {"docs": docs, "namespace": None}, "secret")
    # like kubectl apply: in stream order; the ConfigMap comes before its Namespace: it fails, the rest go on
    assert reply["lines"] == ["deployment.apps/api created", "namespace/ns created"]
    assert reply["errors"] == [
        'Error from server (NotFound): error when creating "STDIN": namespaces "ns" not found'
    ]
    assert (
        primary.call("apply", {"docs": json.loads(json.dumps(DOCS))}, "secret")[1]["lines"][1]
        == "configmap/cm created"
    )
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"}}
    assert primary.call("apply", {"docs": [ingress]}, "secret")[1]["lines"] == [
        "ingress.networking.k8s.io/web created"
    ]
    code, reply = primary.call("get", {"kind": "ingress", "namespace": "default", "name": "nope"}, "secret")
    assert reply["message"] == 'ingresses.networking.k8s.io "nope" not found'
    again = json.loads(json.dumps(DOCS))
    pairs = primary.call("apply", {"docs": again, "diff": True}, "secret")[1]["objects"]
    assert [p["live"] == p["merged"] for p in pairs] == [True, True, True]  # kubectl diff: nothing differs
    assert (
        primary.call("apply", {"docs": json.loads(json.dumps(DOCS))}, "secret")[1]["lines"][0]
        == "deployment.apps/api unchanged"
    )
    changed = json.loads(json.dumps(DOCS))
    changed[0]["spec"]["replicas"] = 3
    pairs = primary.call("apply", {"docs": json.loads(json.dumps(changed)), "diff": True}, "secret")[1][
        "objects"
    ]
    assert [
        (p["name"], p["live"]["spec"]["replicas"], p["merged"]["spec"]["replicas"]) for p in pairs[:1]
    ] == [("apps.v1.Deployment.default.api", 2, 3)]
    assert (
        primary.call("apply", {"docs": changed}, "secret")[1]["lines"][0] == "deployment.apps/api configured"
    )
    code, dep = primary.call("get", {"kind": "deployment", "namespace": "default", "name": "api"}, "secret")
    assert dep["metadata"]["generation"] == 2 and dep["status"]["replicas"] == 3
    assert "readyReplicas" not in dep["status"]  # no container engine here: nothing runs the pods
    code, listed = primary.call("get", {"kind": "deployment", "namespace": "kube-system"}, "secret")
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == [
        "coredns",
        "local-path-provisioner",
        "metrics-server",
    ]
    code, reply = primary.call(
        "get", {"kind": "deployment", "namespace": "default", "name": "nope"}, "secret"
    )
    assert code == 404 and reply["message"] == 'deployments.apps "nope" not found'


def test_image_refs_like_containerd(k3s: ModuleType) -> None:
    assert k3s.normalize("aeroalpes:0.1.0") == "docker.io/library/aeroalpes:0.1.0"
    assert k3s.normalize("me/app") == "docker.io/me/app:latest"
    assert k3s.normalize("registry.lan:5000/app:1") == "registry.lan:5000/app:1"


def test_labels_merge_at_every_start_taints_only_at_registration(k3s: ModuleType) -> None:
    """k3s PR #1171 (pkg/agent/run.go updateMutableLabels); kubelet register-with-taints at creation."""
    primary = k3s.Primary(cfg())
    primary.call(
        "register",
        facts(k3s, "agent", "a1", **{"node-label": ["a=1"], "node-taint": ["t=1:NoSchedule"]}),
        None,
    )
    primary.call(
        "register",
        facts(k3s, "agent", "a1", **{"node-label": ["b=2"], "node-taint": ["u=2:NoSchedule"]}),
        None,
    )
    node = primary.call("get", {"kind": "node", "name": "a1"}, "secret")[1]
    assert node["metadata"]["labels"]["a"] == "1" and node["metadata"]["labels"]["b"] == "2"  # never removed
    assert node["spec"]["taints"] == [{"key": "t", "value": "1", "effect": "NoSchedule"}]


def test_node_password_rejected_until_its_secret_or_node_is_deleted(k3s: ModuleType, tmp_path: Path) -> None:
    """pkg/nodepassword Ensure: a node name keeps the password it first registered with."""
    primary = k3s.Primary(cfg())
    assert primary.call("register", facts(k3s, "agent", "a1"), None)[0] == 200
    (tmp_path / "node" / "password").unlink()  # a reinstalled or cloned host: a new password
    code, reply = primary.call("register", facts(k3s, "agent", "a1"), None)
    assert code == 403 and reply["message"].startswith("Node password rejected, duplicate hostname")
    code, reply = primary.call(
        "delete", {"kind": "secret", "name": "a1.node-password.k3s", "namespace": "kube-system"}, "secret"
    )
    assert code == 200 and reply["line"] == 'secret "a1.node-password.k3s" deleted'
    assert primary.call("register", facts(k3s, "agent", "a1"), None)[0] == 200


def test_a_server_that_comes_back_as_an_agent_keeps_its_roles_until_its_node_is_deleted(
    k3s: ModuleType, tmp_path: Path
) -> None:
    """SERVER setNodeLabelsAndAnnotations / pkg/etcd: the labels and the etcd member stay; a new server
    under the same name with another member is refused (duplicate node name found)."""
    primary = k3s.Primary(cfg(**{"cluster-init": True}))
    join = {"server": "https://10.0.0.1:6443"}
    assert primary.call("register", facts(k3s, "server", "s2", **join), None)[0] == 200
    assert primary.call("register", facts(k3s, "agent", "s2", **join), None)[0] == 200
    labels = primary.call("get", {"kind": "node", "name": "s2"}, "secret")[1]["metadata"]["labels"]
    assert (
        labels["node-role.kubernetes.io/control-plane"] == "true"
        and labels["node-role.kubernetes.io/etcd"] == "true"
    )
    (tmp_path / "db" / "etcd" / "member").unlink()  # a reinstalled server: another etcd member
    code, reply = primary.call("register", facts(k3s, "server", "s2", **join), None)
    assert code == 409 and "duplicate node name found" in reply["message"]
    assert primary.call("delete", {"kind": "node", "name": "s2"}, "secret")[1]["line"] == 'node "s2" deleted'
    assert primary.call("register", facts(k3s, "agent", "s2", **join), None)[0] == 200
    labels = primary.call("get", {"kind": "node", "name": "s2"}, "secret")[1]["metadata"]["labels"]
    assert "node-role.kubernetes.io/control-plane" not in labels


def test_agents_retry_forever_servers_exit(
    k3s: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    answers = iter([(401, {"message": "401 Unauthorized"}), (403, {"message": k3s.PASSWORD_REJECTED}),
                    (200, {"ca": "x"})])  # fmt: skip
    monkeypatch.setattr(k3s.time, "sleep", lambda s: None)
    me = facts(k3s, "agent", "a1")
    assert k3s.join(lambda op, body, auth: next(answers), me, {"server": "https://s1:6443"}, "agent") == {
        "ca": "x"
    }
    out = capsys.readouterr().out.splitlines()
    assert (
        'msg="Waiting to retrieve agent configuration; server is not ready: failed to retrieve configuration from '
        'server: https://127.0.0.1:6444/v1-k3s/config: 401 Unauthorized"'
    ) in out[0]
    assert "Node password rejected" in out[1] and "level=info" in out[1]
    with pytest.raises(SystemExit):
        k3s.join(
            lambda *a: (401, {"message": "401 Unauthorized"}), me, {"server": "https://s1:6443"}, "server"
        )
    assert "server-bootstrap: 401 Unauthorized" in capsys.readouterr().out


def test_kubectl_discovery_errors_go_to_stderr_and_the_command_goes_on(
    k3s: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """memcache.go: while metrics-server is not Ready, stderr lines, exit 0; with the API down, exit 1."""
    monkeypatch.setattr(k3s, "METRICS_READY_AFTER", 60.0)
    primary = k3s.Primary(cfg())
    api = lambda op, body: primary.call(op, body, "secret")  # noqa: E731
    k3s.discover(api, "https://127.0.0.1:6443", 1)
    err = capsys.readouterr().err
    assert (
        'memcache.go:265] "Unhandled Error" err="couldn\'t get resource list for metrics.k8s.io/v1beta1'
        in err
    )
    deploy = primary.call(
        "get", {"kind": "deployment", "namespace": "kube-system", "name": "metrics-server"}, "secret"
    )[1]
    assert "availableReplicas" not in deploy["status"]  # not Ready yet
    quiet = k3s.Primary(cfg(disable=["metrics-server"]))
    k3s.discover(lambda op, body: quiet.call(op, body, "secret"), "https://127.0.0.1:6443", 1)
    assert capsys.readouterr().err == ""  # disabled: no APIService, no noise
    with pytest.raises(SystemExit) as down:
        k3s.discover(lambda op, body: (503, {"message": "refused"}), "https://127.0.0.1:6443", 1)
    err = capsys.readouterr().err
    assert down.value.code == 1 and "couldn't get current server API group list" in err
    assert err.rstrip().endswith(
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
    )


def test_the_api_is_not_ready_right_after_a_start(k3s: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k3s, "API_STARTING", 60.0)
    primary = k3s.Primary(cfg())
    code, reply = primary.call("get", {"kind": "node"}, "secret")
    assert code == 500 and '("apiserver not ready")' in reply["message"]
