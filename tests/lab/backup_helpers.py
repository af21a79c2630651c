"""Helpers of the backup lab tests (tests/lab/test_06_backup.py, test_07_backup_rebuild.py): the data a
client and the app write, read back; a writer that times its SETs."""

from __future__ import annotations

import statistics
import threading
import time

import grpc
from redis.cluster import ClusterNode, RedisCluster

from services.client.roundtrip import roundtrip
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc
from tests.lab.conftest import LabEnv

KEYS = 10_000
RESERVATIONS = 5
KUBECTL = "/usr/local/bin/k3s kubectl"
KEY_ENV = "NR_TEST_BACKUP_KEY"
PASSPHRASE = "a passphrase for the lab's backups"


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


def write_data(env: LabEnv) -> list[str]:
    """10,000 keys through the cluster and reservations through the app (their ids)."""
    rc = client(env)
    try:
        pipe = rc.pipeline()
        for i in range(KEYS):
            pipe.set(f"bk:{i}", f"value-{i}")
        pipe.execute()
    finally:
        rc.close()
    ids: list[str] = []
    for _ in range(RESERVATIONS):
        result = roundtrip(adapter(env), timeout=10, retries=3)
        assert result.ok, result.message
        ids.append(result.created["reserva"]["id"] if result.created else "")
    return ids
