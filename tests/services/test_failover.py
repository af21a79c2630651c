"""A Redis master's host is lost (its process frozen with SIGSTOP) while clients keep creating
reservations through the adapter: no call may fail while the cluster fails over (cluster-node-timeout
5 s, as the redis play sets it, plus the election), and every acknowledged write is readable after.
Run with the default REDIS_TIMEOUT (2 s) and a short one (0.5 s): redis-py's own three retries happen
to cover the window with 2 s per try, not with 0.5 s; AeroAlpes's retries last its request budget
(15 s), so both pass. (Before, the 0.5 s variant failed writes to the lost master's slots.)"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from services.client.roundtrip import sample_reserva
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc
from tests.support.procs import ServiceProcess, start_adapter, start_aeroalpes
from tests.support.redis_cluster import LocalRedisCluster

NODE_TIMEOUT_MS = 5000
RPC_DEADLINE = 30.0  # over AeroAlpes's request budget (15 s), as a client of a failing-over site needs
WRITERS = 4


@dataclass
class Site:
    cluster: LocalRedisCluster
    target: str
    api: ServiceProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    work = tmp_path_factory.mktemp("failover-redis")
    cluster = LocalRedisCluster(masters=3, replicas=1, node_timeout_ms=NODE_TIMEOUT_MS, workdir=work)
    cluster.start(timeout=60)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["2", "0.5"], ids=["redis-timeout-2s", "redis-timeout-0.5s"])
def site(request: pytest.FixtureRequest, cluster: LocalRedisCluster, tmp_path: Path) -> Iterator[Site]:
    wait_until_replicated(cluster)
    password = cluster.write_password_file(tmp_path / "pw")
    api, url = start_aeroalpes(
        cluster.nodes_env, tmp_path / "aeroalpes.log", password_file=password, LOG_LEVEL="INFO",
        REDIS_TIMEOUT=request.param,
    )  # fmt: skip
    adapter, target = start_adapter(url, tmp_path / "adapter.log")
    yield Site(cluster, target, api)
    for proc in (adapter, api):
        proc.stop()


def replication(cluster: LocalRedisCluster, port: int) -> dict[str, object]:
    try:
        return dict(cluster.client(port).info("replication"))
    except Exception:
        return {}


def wait_until_replicated(cluster: LocalRedisCluster, timeout: float = 40) -> None:
    """Every master has a replica whose link is up (after an earlier failover, too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = [replication(cluster, port) for port in cluster.ports]
        masters = [i for i in infos if i.get("role") == "master"]
        links = [i for i in infos if i.get("role") == "slave" and i.get("master_link_status") == "up"]
        if len(masters) == cluster.masters and len(links) == len(cluster.ports) - cluster.masters:
            return
        time.sleep(0.2)
    raise AssertionError("the cluster did not settle with one replica per master")


def a_master_and_its_replica(cluster: LocalRedisCluster) -> tuple[int, int]:
    for port in cluster.ports:
        info = replication(cluster, port)
        replica = info.get("slave0")
        if info.get("role") == "master" and isinstance(replica, dict):
            return port, int(replica["port"])
    raise AssertionError("no master with a replica")


@dataclass
class Writes:
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def keep_writing(target: str, stop: threading.Event, writes: Writes) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = vuelos_pb2_grpc.VuelosStub(channel)
        for _ in range(100_000):  # bounded; ``stop`` ends it long before
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                answer = stub.CrearReserva(sample_reserva(), timeout=RPC_DEADLINE)
            except grpc.RpcError as exc:
                with writes.lock:
                    writes.failures.append(f"{exc.code().name}: {exc.details()}")
                continue
            with writes.lock:
                writes.acknowledged.append(answer.reserva.id)
                writes.slowest = max(writes.slowest, time.monotonic() - started)


def promoted(cluster: LocalRedisCluster, replica_port: int) -> bool:
    return replication(cluster, replica_port).get("role") == "master"


def test_no_call_fails_while_a_master_fails_over(site: Site) -> None:
    cluster, writes, stop = site.cluster, Writes(), threading.Event()
    threads = [
        threading.Thread(target=keep_writing, args=(site.target, stop, writes)) for _ in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        before = len(writes.acknowledged)
        lost, its_replica = a_master_and_its_replica(cluster)
        cluster.pause(lost)
        deadline = time.monotonic() + 40
        while not promoted(cluster, its_replica) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert promoted(cluster, its_replica), "the replica was never promoted"
        time.sleep(2.0)  # writes to the promoted replica's slots go on
    finally:
        stop.set()
        for thread in threads:
            thread.join(RPC_DEADLINE + 5)
    cluster.resume(lost)
    assert writes.failures == []
    assert before > 0 and len(writes.acknowledged) > before + WRITERS
    assert writes.slowest > NODE_TIMEOUT_MS / 1000  # some writes waited for the failover
    assert '"msg": "redis retry"' in site.api.log_text()
    with grpc.insecure_channel(site.target) as channel:
        stub = vuelos_pb2_grpc.VuelosStub(channel)
        for reserva_id in writes.acknowledged:
            fetched = stub.ConsultarReserva(vuelos_pb2.QueryReserva(id=reserva_id), timeout=RPC_DEADLINE)
            assert fetched.reserva.id == reserva_id
