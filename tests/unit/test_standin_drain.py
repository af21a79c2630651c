"""The k3s stand-in's nodes under maintenance, in process: pods placed on nodes, dying and coming back
with them, and kubectl cordon/drain/uncordon with evictions that respect PodDisruptionBudgets.

The stand-in's Docker calls go to a small in-memory engine and its clock is virtual: every sleep lets
the controllers (the pod sync) run once, so a drain that waits for a replacement pod is deterministic.
What each behaviour follows upstream is listed in tests/fakes/K3S-STANDIN.md.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "k3s"
NET = "labnet"
NODES = {"s1": "198.18.0.11", "a1": "198.18.0.12", "a2": "198.18.0.13"}
IMAGE = "docker.io/library/app:1"


@dataclass
class Engine:
    """Just enough of the Docker Engine API: containers with labels, states and a PID namespace."""

    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # node container id -> state
    lock: threading.Lock = field(default_factory=threading.Lock)
    n: int = 0
    now: Any = None  # the clock: a container's start time, for readiness
    ready_after: float = 0.0  # seconds a started pod needs before its readiness probe passes

    def node_up(self, name: str, up: bool = True) -> None:
        """A node container stops (its pods die: they live in its PID namespace) or starts."""
        with self.lock:
            self.nodes[name] = "running" if up else "exited"
            if not up:
                for c in self.containers.values():
                    if c["HostConfig"].get("PidMode") == f"container:{name}":
                        c["State"] = "exited"

    def view(self, c: dict[str, Any]) -> dict[str, Any]:
        ip = c["ip"] if c["State"] == "running" else ""
        return {"Id": c["Id"], "Names": ["/" + c["name"]], "Labels": c["Labels"], "State": c["State"],
                "NetworkSettings": {"Networks": {NET: {"IPAddress": ip}}}}  # fmt: skip

    def __call__(self, method: str, path: str, body: Any = None, raw: Any = None) -> Any:
        with self.lock:
            if method == "GET" and path.startswith("/containers/json"):
                return [self.view(c) for c in self.containers.values()]
            if method == "GET" and path == f"/networks/{NET}":
                return {"Containers": {n: {"IPv4Address": NODES[n] + "/24"} for n, s in self.nodes.items()
                                       if s == "running"}}  # fmt: skip
            if method == "GET" and path.startswith("/containers/"):  # the first server's own container
                return {"NetworkSettings": {"Networks": {NET: {}}}}
            if method == "POST" and path.startswith("/containers/create"):
                self.n += 1
                cid = f"{self.n:064d}"
                name = path.split("name=")[1]
                self.containers[cid] = {"Id": cid, "name": name, "Labels": body["Labels"], "State": "created",
                                        "HostConfig": body["HostConfig"], "ip": f"10.0.0.{self.n}"}  # fmt: skip
                return {"Id": cid}
            cid = path.split("/")[2].split("?", maxsplit=1)[0]
            c = self.containers.get(cid)
            if c is None:
                raise OSError(f"docker {method} {path}: 404 no such container")
            if path.endswith("/start"):
                pid = c["HostConfig"].get("PidMode", "").removeprefix("container:")
                if pid and self.nodes.get(pid) != "running":
                    raise OSError(f"docker POST {path}: 500 cannot join PID of a non running container")
                c["State"], c["started"] = "running", self.now()
            elif "/stop" in path:
                c["State"] = "exited"
            elif method == "DELETE":
                del self.containers[cid]
            return None

    def ready(self, cid: str) -> bool:
        c = self.containers.get(cid)
        return c is not None and c["State"] == "running" and self.now() - c["started"] >= self.ready_after

    def pods(self, owner: str = "deployment/default/api") -> list[dict[str, Any]]:
        with self.lock:
            return [
                c for c in self.containers.values() if c["Labels"].get("io.k3s.stand-in.node.owner") == owner
            ]


class Clock:
    """Virtual time: ``sleep`` advances it and lets the controllers run once."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.ticks: list[Any] = []
        self.lock = threading.RLock()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds
            for tick in self.ticks:
                tick()


@dataclass
class Cluster:
    k3s: ModuleType
    engine: Engine
    clock: Clock
    primary: Any

    def beat(self, *names: str) -> None:
        for n in names or tuple(NODES):
            assert self.primary.call("heartbeat", {"name": n, "version": "v1.31.4+k3s1"}, "secret")[0] == 200

    def sync(self, times: int = 1) -> None:
        for _ in range(times):
            self.primary.pods.sync()

    def kubectl(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            self.k3s.kubectl(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    def ready(self, owner: str = "deployment/default/api") -> int:
        return self.primary.status(owner)[0]

    def placed(self) -> dict[str, str]:
        return {c["Labels"]["io.k3s.stand-in.node.pod"]: c["Labels"]["io.k3s.stand-in.node.node"]
                for c in self.engine.pods()}  # fmt: skip


def deployment(replicas: int, budget: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    tpl = {"metadata": {"labels": {"app": "api"}},
           "spec": {"containers": [{"name": "c", "image": "app:1"}],
                    "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory"}}]}}  # fmt: skip
    docs = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "default"},
             "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}}, "template": tpl}}]  # fmt: skip
    if budget is not None:
        docs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": "api", "namespace": "default"},
                     "spec": {**budget, "selector": {"matchLabels": {"app": "api"}}}})  # fmt: skip
    return docs


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    loader = importlib.machinery.SourceFileLoader("k3s_standin_drain", str(FAKE))
    spec = importlib.util.spec_from_loader("k3s_standin_drain", loader)
    assert spec is not None
    k3s = importlib.util.module_from_spec(spec)
    loader.exec_module(k3s)
    for name, path in {"STATE": "db/state.json", "IMAGES_DB": "images.json", "IMAGES_DIR": "agent-images",
                       "NODE_PASSWORD": "node/password", "MEMBER_FILE": "db/member",
                       "KUBECONFIG": "k3s.yaml", "TOKEN_FILE": "token", "DATA_DIR": "data"}.items():  # fmt: skip
        monkeypatch.setattr(k3s, name, str(tmp_path / path))
    sock = tmp_path / "docker.sock"
    sock.touch()
    monkeypatch.setattr(k3s, "DOCKER_SOCK", str(sock))
    monkeypatch.setattr(k3s, "API_STARTING", 0.0)
    monkeypatch.setattr(k3s, "METRICS_READY_AFTER", 0.0)
    engine, clock = Engine(), Clock()
    monkeypatch.setattr(k3s, "docker", engine)
    fake_time = SimpleNamespace(time=clock.time, monotonic=clock.monotonic, sleep=clock.sleep,
                                strftime=time.strftime, gmtime=time.gmtime)  # fmt: skip
    monkeypatch.setattr(k3s, "time", fake_time)
    monkeypatch.setattr(k3s.socket, "gethostname", lambda: "s1")
    engine.now = clock.time
    monkeypatch.setattr(k3s.Pods, "probe", lambda self, c, tpl: engine.ready(c["Id"]))
    (tmp_path / "images.json").write_text(json.dumps({IMAGE: {}}))
    (tmp_path / "k3s.yaml").write_text("clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n")
    (tmp_path / "token").write_text("secret\n")
    for n in NODES:
        engine.node_up(n)
    primary = k3s.Primary({"token": "secret", "node-name": "s1", "cluster-init": True})
    for n, ip in NODES.items():
        facts = {"name": n, "role": "server" if n == "s1" else "agent", "version": "v1.31.4+k3s1",
                 "arch": "amd64", "token": "secret", "ip": ip, "labels": [], "taints": [],
                 "critical": k3s.critical({}), "etcd": False, "password": n, "member": None}  # fmt: skip
        assert primary.call("register", facts, None)[0] == 200
    monkeypatch.setattr(k3s, "_try", lambda url, op, body, auth: primary.call(op, body, auth))
    c = Cluster(k3s, engine, clock, primary)
    clock.ticks.append(lambda: (c.beat(*[n for n, s in engine.nodes.items() if s == "running"]), c.sync()))
    yield c
    # a deleted pod stops in a thread of its own (the stand-in's Pods.retire); it must end while the
    # in-memory engine is still patched in, not call the real Docker after the test
    deadline = time.monotonic() + 10
    while primary.pods.retiring and time.monotonic() < deadline:
        time.sleep(0.01)


def apply(c: Cluster, docs: list[dict[str, Any]]) -> None:
    code, reply = c.primary.call("apply", {"docs": json.loads(json.dumps(docs))}, "secret")
    assert code == 200 and not reply["errors"], reply


def test_pods_spread_over_ready_schedulable_nodes_and_share_their_pid_namespace(cluster: Cluster) -> None:
    apply(cluster, deployment(3))
    cluster.sync(3)
    assert sorted(cluster.placed().values()) == ["a1", "a2", "s1"]
    for pod in cluster.engine.pods():
        assert pod["HostConfig"]["PidMode"] == f"container:{pod['Labels']['io.k3s.stand-in.node.node']}"
        assert pod["HostConfig"]["RestartPolicy"] == {"Name": "no"}  # the node's kubelet restarts it
    cluster.sync()
    assert cluster.ready() == 3


def test_cordon_uncordon_like_kubectl_and_the_node_shows_it(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.kubectl(capsys, "cordon", "a1") == (0, "node/a1 cordoned\n", "")
    assert cluster.kubectl(capsys, "cordon", "a1") == (0, "node/a1 already cordoned\n", "")
    node = cluster.primary.call("get", {"kind": "node", "name": "a1"}, "secret")[1]
    assert node["spec"] == {
        "unschedulable": True,
        "taints": [{"key": "node.kubernetes.io/unschedulable", "value": "", "effect": "NoSchedule"}],
    }
    facts = {**cluster.primary.state["nodes"]["a1"], "token": "secret", "password": "a1", "member": None}
    assert cluster.primary.call("register", facts, None)[0] == 200  # a kubelet restart keeps it
    apply(cluster, deployment(2))
    cluster.sync(2)
    assert "a1" not in cluster.placed().values()
    assert cluster.kubectl(capsys, "uncordon", "a1") == (0, "node/a1 uncordoned\n", "")
    assert cluster.kubectl(capsys, "uncordon", "a1") == (0, "node/a1 already uncordoned\n", "")
    assert cluster.primary.call("get", {"kind": "node", "name": "a1"}, "secret")[1]["spec"] == {}
    code, _, err = cluster.kubectl(capsys, "cordon", "nope")
    assert (code, err) == (1, 'Error from server (NotFound): nodes "nope" not found\n')


def test_drain_refuses_daemonset_and_emptydir_pods_without_their_flags(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    apply(cluster, deployment(3))
    cluster.sync(4)
    pod = next(p for p, n in cluster.placed().items() if n == "a1")
    code, out, err = cluster.kubectl(capsys, "drain", "a1")
    assert code == 1 and out == "node/a1 cordoned\n"
    assert (
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/svclb-traefik-"
        in err
    )
    assert (
        f"cannot delete Pods with local storage (use --delete-emptydir-data to override): default/{pod}"
        in err
    )
    assert 'error: unable to drain node "a1" due to error: [cannot delete' in err
    assert err.endswith("There are pending nodes to be drained:\n a1\nerror: [" + err.split("error: [", 2)[2])
    assert cluster.ready() == 3  # nothing was evicted


def test_drain_evicts_within_the_budget_and_never_leaves_zero_ready_pods(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both replicas on the node: the first goes at once, the second only once its replacement is
    ready elsewhere (429 and a retry after 5 s meanwhile), as kubectl drain does with a real API."""
    cluster.engine.ready_after = 10.0  # a pod is ready 10 s after it starts
    for n in ("s1", "a2"):
        cluster.kubectl(capsys, "cordon", n)
    apply(cluster, deployment(2, {"minAvailable": 1}))
    cluster.sync(2)
    cluster.clock.sleep(11)
    assert set(cluster.placed().values()) == {"a1"} and cluster.ready() == 2
    for n in ("s1", "a2"):
        cluster.kubectl(capsys, "uncordon", n)
    lowest: list[int] = []
    cluster.clock.ticks.append(lambda: lowest.append(cluster.ready()))
    code, out, err = cluster.kubectl(capsys, "drain", "a1", "--ignore-daemonsets", "--delete-emptydir-data",
                                     "--timeout=120s")  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "node/a1 cordoned" and lines[-1] == "node/a1 drained"
    assert sorted(line for line in lines if line.endswith(" evicted")) == sorted(
        f"pod/{p} evicted" for p in {line.split("/")[-1] for line in lines if line.startswith("evicting pod")}
    )
    assert err.startswith("Warning: ignoring DaemonSet-managed Pods: kube-system/svclb-traefik-")
    assert (
        ' -n "default" (will retry after 5s): Cannot evict pod as it would violate the pod\'s disruption budget.'
        in err
    )
    assert min(lowest) >= 1
    cluster.clock.sleep(11)
    assert "a1" not in cluster.placed().values() and cluster.ready() == 2


def test_a_budget_that_never_allows_it_ends_the_drain_at_its_timeout_naming_the_pod(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    apply(cluster, deployment(1, {"minAvailable": 1}))
    cluster.sync(2)
    ((pod, node),) = cluster.placed().items()
    code, out, err = cluster.kubectl(capsys, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                                     "--timeout=20s")  # fmt: skip
    assert code == 1 and f"evicting pod default/{pod}" in out and "drained" not in out
    reason = f'error when evicting pods/"{pod}" -n "default": global timeout reached: 20s'
    assert f'There are pending pods in node "{node}" when an error occurred: {reason}\npod/{pod}\n' in err
    assert err.endswith(f"There are pending nodes to be drained:\n {node}\nerror: {reason}\n")
    assert cluster.ready() == 1


def test_the_eviction_api_follows_the_budget(cluster: Cluster) -> None:
    apply(cluster, deployment(2))
    cluster.sync(3)
    first, second = cluster.placed()
    assert (
        cluster.primary.call("evict", {"namespace": "default", "name": first}, "secret")[0] == 201
    )  # no PDB
    assert cluster.primary.call("evict", {"namespace": "default", "name": "nope"}, "secret") == (
        404,
        {"message": 'pods "nope" not found'},
    )
    apply(cluster, deployment(2, {"maxUnavailable": 0}))
    _, reply = cluster.primary.call("get", {"kind": "poddisruptionbudget", "namespace": "default"}, "secret")
    assert reply["items"][0]["status"] == {"currentHealthy": 1, "desiredHealthy": 2, "disruptionsAllowed": 0,
                                           "expectedPods": 2, "observedGeneration": 1}  # fmt: skip
    assert cluster.primary.call("evict", {"namespace": "default", "name": second}, "secret") == (
        429,
        {"message": "Cannot evict pod as it would violate the pod's disruption budget."},
    )
    other = {**deployment(2, {"minAvailable": 1})[1], "metadata": {"name": "other", "namespace": "default"}}
    apply(cluster, [other])
    assert cluster.primary.call("evict", {"namespace": "default", "name": second}, "secret")[0] == 500


def test_pods_die_with_their_node_leave_the_endpoints_and_come_back_with_it(cluster: Cluster) -> None:
    docs = deployment(3)
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "default"},
                 "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}})  # fmt: skip
    apply(cluster, docs)
    cluster.sync(4)
    assert len(cluster.primary.pods.endpoints["default/api"]) == 3
    cluster.engine.node_up("a1", False)  # a reboot: its pods die with it at once
    cluster.clock.now += 11  # the first server no longer hears from it
    cluster.beat("s1", "a2")
    cluster.sync()
    assert len(cluster.primary.pods.endpoints["default/api"]) == 2 and cluster.ready() == 2
    assert len(cluster.engine.pods()) == 3  # not replaced: its node may come back
    cluster.engine.node_up("a1")
    cluster.beat()
    cluster.sync(2)
    assert [c["State"] for c in cluster.engine.pods()] == ["running"] * 3 and cluster.ready() == 3
