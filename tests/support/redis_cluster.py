"""A throwaway Redis Cluster of ``redis-server`` processes on loopback (tests and benchmarks).

Masters only by default (3 is the minimum for a cluster); ``replicas=1`` gives each master a replica
(for failover tests: :meth:`pause` freezes a node like a lost host). Each node has its own directory,
a config file (mode 0600) holding requirepass/masterauth, so the password is never on a command line.
The cluster is formed with CLUSTER ADDSLOTSRANGE + CLUSTER MEET (+ CLUSTER REPLICATE) through redis-py.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from tests.support.procs import LOOPBACK, port_is_free

SLOTS = 16384


class ClusterStartError(RuntimeError):
    pass


def pick_node_port(taken: set[int]) -> int:
    """A port whose cluster-bus companion (port + 10000) is free as well."""
    for _ in range(500):
        port = random.randint(20000, 39999)
        if port not in taken and port_is_free(port) and port_is_free(port + 10000):
            return port
    raise ClusterStartError("no free port pair found")


def _command(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    size = SLOTS // masters
    return [(i * size, SLOTS - 1 if i == masters - 1 else (i + 1) * size - 1) for i in range(masters)]


@dataclass
class LocalRedisCluster:
    masters: int = 3
    replicas: int = 0  # per master
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    redis_server: str = "redis-server"
    node_timeout_ms: int = 2000
    ports: list[int] = field(default_factory=list)
    workdir: Path | None = None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _own_workdir: bool = False

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [(LOOPBACK, port) for port in self.ports]

    @property
    def nodes_env(self) -> str:
        """The value for REDIS_NODES."""
        return ",".join(f"{host}:{port}" for host, port in self.nodes)

    def write_password_file(self, path: Path) -> Path:
        path.write_text(self.password + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=port, password=self.password, socket_timeout=2)

    def start(self, timeout: float = 20.0) -> LocalRedisCluster:
        binary = shutil.which(self.redis_server)
        if binary is None:
            raise ClusterStartError(f"{self.redis_server} not found on PATH")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
            self._own_workdir = True
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                port = pick_node_port(set(self.ports))
                self.ports.append(port)
                self._procs.append(self._start_node(binary, port))
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        assert self.workdir is not None
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True)
        conf = node_dir / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    f"bind {LOOPBACK}",
                    f"dir {node_dir}",
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {self.node_timeout_ms}",
                    "appendonly no",
                    'save ""',
                    "daemonize no",
                    f"requirepass {self.password}",
                    f"masterauth {self.password}",
                    "logfile redis.log",
                ]
            )
            + "\n",
            encoding="utf-8",
        )
        return subprocess.Popen(
            [binary, str(conf)], cwd=node_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _wait(self, what: str, timeout: float, check: object) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if callable(check) and check():
                    return
            except redis.RedisError as exc:
                last = exc
            for proc in self._procs:
                if proc.poll() is not None:
                    raise ClusterStartError(f"redis-server exited with {proc.returncode} ({self.workdir})")
            time.sleep(0.05)
        raise ClusterStartError(f"timeout waiting for {what} (last error: {last})")

    def _form(self, timeout: float) -> None:
        clients = [self.client(port) for port in self.ports]
        self._wait("redis-server to answer", timeout, lambda: all(c.ping() for c in clients))
        for client, (first, last) in zip(clients[: self.masters], slot_ranges(self.masters), strict=True):
            _command(client, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in self.ports[1:]:
            _command(clients[0], "CLUSTER", "MEET", LOOPBACK, port)
        total = len(self.ports)

        def ok() -> bool:
            for client in clients:
                info = _command(client, "CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{total}" not in info:
                    return False
            return True

        self._wait("cluster_state:ok", timeout, ok)
        if self.replicas:
            self._replicate(clients, timeout)
        for client in clients:
            client.close()

    def _replicate(self, clients: list[redis.Redis], timeout: float) -> None:
        """Node ``masters + i`` replicates master ``i % masters``; waits until every link is up."""
        ids = [_command(c, "CLUSTER", "MYID").decode() for c in clients[: self.masters]]
        for i, client in enumerate(clients[self.masters :]):
            _command(client, "CLUSTER", "REPLICATE", ids[i % self.masters])

        def synced() -> bool:
            return all(
                c.info("replication").get("master_link_status") == "up" for c in clients[self.masters :]
            )

        self._wait("replicas in sync", timeout, synced)

    @property
    def master_ports(self) -> list[int]:
        return self.ports[: self.masters]

    def pause(self, port: int) -> None:
        """SIGSTOP the node: it answers nothing, as if its host were lost (``resume`` undoes it)."""
        os.kill(self._procs[self.ports.index(port)].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self._procs[self.ports.index(port)].pid, signal.SIGCONT)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a paused node would not act on SIGTERM
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._procs.clear()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
