"""`nr backup` and `nr restore` of the whole site on the lab (the site of test_05: base, redis, k3s with the
stand-in running the app's pods on the Docker socket, deploy, checks), end to end:

1. 10,000 keys written through the cluster and reservations created through the app; a backup taken
   while a client keeps writing (no write fails; its latency with and without the backup is printed);
2. the data destroyed (FLUSHALL on every master, the app's Deployments deleted), the backup restored,
   every key and reservation read back, nothing left as drift;
3. a damaged backup refused before anything changes;
4. the embedded-etcd path: the cluster rebuilt with three servers, backed up, an object deleted,
   restored by `--cluster-reset-restore-path`, the peers rejoined;
5. the site restored onto a freshly created lab (new containers, same inventory) after `nr run site`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml
from redis.cluster import ClusterNode, RedisCluster

from services.client import roundtrip
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc
from tests.lab.conftest import LabEnv

pytestmark = [pytest.mark.lab, pytest.mark.docker]

KEYS = 10_000
RESERVATIONS = 5
KUBECTL = "/usr/local/bin/k3s kubectl"
KEY_ENV = "NR_TEST_BACKUP_KEY"


@dataclass
class State:
    reservations: list[str] = field(default_factory=list)
    backup: Path | None = None


STATE = State()


def password(env: LabEnv) -> str:
    return (env.state_dir / "secrets" / "redis_password").read_text().strip()


def client(env: LabEnv) -> RedisCluster:
    first = env.lab.status()[0].address
    return RedisCluster(startup_nodes=[ClusterNode(first, 7000)], password=password(env), decode_responses=True, socket_timeout=10)  # fmt: skip


def adapter(env: LabEnv) -> str:
    return f"{env.lab.status()[1].address}:30051"


def lookup(target: str, rid: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            vuelos_pb2_grpc.VuelosStub(channel).ConsultarReserva(vuelos_pb2.QueryReserva(id=rid), timeout=10)
            return True
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise


def missing_keys(env: LabEnv) -> list[int]:
    rc = client(env)
    try:
        pipe = rc.pipeline()
        for i in range(KEYS):
            pipe.get(f"bk:{i}")
        values = pipe.execute()
    finally:
        rc.close()
    return [i for i, v in enumerate(values) if v != f"value-{i}"]


class LatencyWriter:
    """SETs through a cluster client as an application does, timing each; failures are recorded."""

    def __init__(self, env: LabEnv) -> None:
        self.env, self.latencies, self.errors = env, [], []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rc = client(self.env)
        i = 0
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                rc.set(f"lat:{i % 1000}", str(i))
                self.latencies.append(time.perf_counter() - t0)
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            i += 1
            time.sleep(0.002)
        rc.close()

    def __enter__(self) -> LatencyWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def figures(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[int(len(ms) * 0.99) - 1] if ms else float("nan")
        return f"{len(ms)} writes, p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms"


@pytest.fixture(scope="module")
def site(lab: LabEnv, images: list[str]) -> LabEnv:
    res = lab.nr("run", "site", "--json", timeout=1800)
    assert res.code == 0, res.stdout[-6000:] + res.stderr[-3000:]
    os.environ[KEY_ENV] = "a passphrase for the lab's backups"
    return lab


def write_data(env: LabEnv) -> None:
    rc = client(env)
    try:
        pipe = rc.pipeline()
        for i in range(KEYS):
            pipe.set(f"bk:{i}", f"value-{i}")
        pipe.execute()
    finally:
        rc.close()
    for _ in range(RESERVATIONS):
        result = roundtrip(adapter(env), timeout=10, retries=3)
        assert result.ok, result.message
        STATE.reservations.append(result.created["reserva"]["id"] if result.created else "")


def test_a_backup_under_load_fails_no_write_and_holds_no_secret(
    site: LabEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    write_data(site)
    dest = tmp_path_factory.mktemp("backups")
    with LatencyWriter(site) as idle:
        time.sleep(8)
    with LatencyWriter(site) as busy:
        res = site.nr(
            "backup",
            "--dest",
            str(dest),
            "--secrets-key",
            f"env:{KEY_ENV}",
            "--json",
            "-i",
            str(site.inventory),
        )
    print(
        f"\nclient writes without a backup: {idle.figures()}\nclient writes during nr backup: {busy.figures()}"
    )
    assert res.code == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert busy.errors == [] and idle.errors == [], busy.errors[:3]
    doc = res.json["backup"]
    assert doc["complete"]
    folder = STATE.backup = Path(doc["path"])
    manifest = json.loads((folder / "manifest.json").read_text())
    shards = manifest["components"]["redis"]["shards"]
    assert len(shards) == 3 and all(s["saved_on"]["role"] == "replica" for s in shards)
    assert sum(s["keys"] for s in shards) >= KEYS + RESERVATIONS
    assert manifest["components"]["k3s"]["datastore"] == "sqlite"
    assert {oct(p.stat().st_mode & 0o777) for p in folder.rglob("*")} <= {"0o600", "0o700"}
    token = (site.inventory / "secrets" / "k3s_token").read_text().strip()
    blob = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for secret in (password(site), token):
        for form in (secret.encode(), base64.b64encode(secret.encode())):
            assert form not in blob


def test_destroyed_data_comes_back_from_the_backup(site: LabEnv) -> None:
    assert STATE.backup is not None
    rc = client(site)
    try:
        rc.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        rc.close()
    first = site.hosts[0]
    for name in ("aeroalpes", "aeroalpes-adapter"):
        site.exec(first, f"{KUBECTL} -n aeroalpes delete deployment {name}")
    assert len(missing_keys(site)) == KEYS
    dry = site.nr("restore", str(STATE.backup), "--dry-run", "-i", str(site.inventory))
    assert dry.code == 0 and "shard 1:" in dry.stdout and "DRY RUN" in dry.stdout, dry.stdout + dry.stderr
    t0 = time.monotonic()
    res = site.nr("restore", str(STATE.backup), "--yes", "--json", "-i", str(site.inventory), timeout=1200)
    print(f"\nnr restore (Redis and k3s): {time.monotonic() - t0:.1f} s")
    assert res.code == 0, res.stdout[-5000:] + res.stderr[-2000:]
    assert missing_keys(site) == []
    assert all(lookup(adapter(site), rid) for rid in STATE.reservations)
    drift = site.nr("drift", "--json")
    assert drift.code == 0, drift.stdout[-3000:]


def test_a_damaged_backup_is_refused_before_anything_changes(site: LabEnv, tmp_path: Path) -> None:
    assert STATE.backup is not None
    copy = tmp_path / STATE.backup.name
    shutil.copytree(STATE.backup, copy)
    shard = copy / "redis" / "shard-2.rdb"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    res = site.nr("restore", str(copy), "--yes", "-i", str(site.inventory))
    assert res.code == 2 and "redis/shard-2.rdb: sha256 differs from the manifest" in res.stderr
    assert missing_keys(site) == []


def test_embedded_etcd_is_restored_by_cluster_reset_and_the_peers_rejoin(
    site: LabEnv, tmp_path: Path
) -> None:
    ha = site.state_dir / "inventory-ha"
    shutil.rmtree(ha, ignore_errors=True)
    shutil.copytree(site.inventory, ha, ignore=shutil.ignore_patterns(".nr.lock"))
    hosts = yaml.safe_load((ha / "hosts.yaml").read_text())
    for h in hosts.values():
        h["groups"] = ["k3s_servers" if g == "k3s_agents" else g for g in h["groups"]]
    (ha / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    assert site.nr("run", "k3s-reset").code == 0
    made = site.nr("run", "k3s", "-i", str(ha), timeout=1200)
    assert made.code == 0, made.stdout[-3000:]
    first = site.hosts[0]
    site.exec(first, f"{KUBECTL} apply -f - <<'EOF'\n" + json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept", "namespace": "default"}, "data": {"a": "1"}}) + "\nEOF\n")  # fmt: skip
    res = site.nr("backup", "--only", "k3s", "--dest", str(tmp_path), "--json", "-i", str(ha))
    assert res.code == 0, res.stdout[-3000:]
    part = json.loads((Path(res.json["backup"]["path"]) / "manifest.json").read_text())["components"]["k3s"]
    assert part["datastore"] == "etcd" and part["snapshot"].startswith(f"nr-lab-{first}-")
    site.exec(first, f"{KUBECTL} delete configmap kept")
    restored = site.nr("restore", res.json["backup"]["path"], "--yes", "--json", "-i", str(ha), timeout=1200)
    assert restored.code == 0, restored.stdout[-4000:]
    steps = [(r["task"], r["host"]) for r in restored.json["results"]]
    assert (
        steps.index(("k3s.reset", first))
        < steps.index(("k3s.start", first))
        < steps.index(("k3s.rejoin", site.hosts[1]))
    )
    assert json.loads(site.exec(first, f"{KUBECTL} get configmap kept -o json"))["data"] == {"a": "1"}
    assert "etcd-old-" in site.exec(first, "ls /var/lib/rancher/k3s/server/db")
    assert site.nr("drift", "k3s", "-i", str(ha)).code == 0


def test_the_site_is_restored_onto_a_fresh_lab(site: LabEnv, tmp_path: Path) -> None:
    """New containers (new host keys, node passwords, empty disks), the same inventory (its folder kept
    aside, as an operator keeps it in git with its secrets in a vault)."""
    assert STATE.backup is not None
    kept = tmp_path / "inventory"
    shutil.copytree(site.inventory, kept, ignore=shutil.ignore_patterns(".nr.lock"))
    site.lab.down()
    site.lab.up(3)
    shutil.copytree(kept, site.inventory, dirs_exist_ok=True)
    built = site.nr("run", "site", "--json", timeout=2400)
    assert built.code == 0, built.stdout[-5000:] + built.stderr[-2000:]
    assert len(missing_keys(site)) == KEYS
    res = site.nr("restore", str(STATE.backup), "--yes", "--json", "-i", str(site.inventory), timeout=1200)
    assert res.code == 0, res.stdout[-5000:] + res.stderr[-2000:]
    plan = res.json["restore"]["plan"]["k3s"]
    assert any("re-created hosts" in line for line in plan), plan
    assert missing_keys(site) == []
    assert all(lookup(adapter(site), rid) for rid in STATE.reservations)
    assert site.nr("check").code == 0
    assert site.nr("drift").code == 0
