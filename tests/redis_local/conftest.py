"""Real redis-server processes on loopback aliases, standing in for the hosts of the redis group.

Each "host" is a loopback address (127.0.0.1, 127.0.0.2, ...) running two redis-server processes (the layout's
two ports) in cluster mode with requirepass/masterauth and a short cluster-node-timeout, in a tmp dir, started
directly (no systemd). The config files are rendered by tasks.redis.plan.render_redis_conf, so the renderer is
exercised for real (only the paths and `supervised no` differ from production).

Every process started here is killed when the fixture ends, even on failure; the processes also get
PR_SET_PDEATHSIG so they die if pytest itself is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tasks.redis.config import InstanceConfig, RedisConfigOptions, render_redis_conf
from tasks.redis.plan import BUS_PORT_OFFSET, RedisHost

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
HOST_ADDRESSES = {"lab1": "127.0.0.1", "lab2": "127.0.0.2", "lab3": "127.0.0.3", "lab4": "127.0.0.4"}
NODE_TIMEOUT_MS = 2000
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def pick_ports(addresses: list[str], gap: int = 3) -> tuple[int, int]:
    """A (first, first+gap) pair whose client and bus ports are free on every address."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(12000, 19000)  # bus ports (+10000) stay below the NodePort range
        ports = [base, base + gap, base + BUS_PORT_OFFSET, base + gap + BUS_PORT_OFFSET]
        if all(_port_free(a, p) for a in addresses for p in ports):
            return base, base + gap
    raise RuntimeError("no free port pair found on the loopback aliases")


@dataclass
class LocalInstance:
    host: str
    address: str
    port: int
    config: InstanceConfig
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass
class LocalRedisHosts:
    """Start/kill/restart the two instances of simulated hosts."""

    root: Path
    password: str
    ports: tuple[int, int]
    node_timeout_ms: int = NODE_TIMEOUT_MS
    instances: dict[str, LocalInstance] = field(default_factory=dict)

    def options(self, host: str) -> RedisConfigOptions:
        base = self.root / host
        return RedisConfigOptions(
            cluster_node_timeout_ms=self.node_timeout_ms,
            supervised="no",
            conf_dir=str(base / "etc"),
            data_root=str(base / "data"),
            log_dir=str(base / "log"),
            run_dir_template=str(base / "run-{port}"),
            appendfsync="no",
            # Redis 7 waits 5 s before a diskless full sync to batch replicas; no point here.
            extra=(("repl-diskless-sync-delay", "0"),),
        )

    def redis_hosts(self, *names: str) -> list[RedisHost]:
        return [RedisHost(n, HOST_ADDRESSES[n]) for n in names]

    def add_host(self, name: str) -> None:
        address = HOST_ADDRESSES[name]
        opts = self.options(name)
        for port in self.ports:
            cfg = InstanceConfig(host=name, address=address, port=port, options=opts)
            for d in (opts.conf_dir, cfg.dir, opts.log_dir, cfg.run_dir):
                Path(d).mkdir(parents=True, exist_ok=True)
            Path(cfg.conf_path).write_text(render_redis_conf(cfg, self.password))
            os.chmod(cfg.conf_path, 0o600)
            self.instances[f"{name}:{port}"] = LocalInstance(name, address, port, cfg)
        self.start_host(name)

    def host_instances(self, name: str) -> list[LocalInstance]:
        return [i for i in self.instances.values() if i.host == name]

    def start_host(self, name: str) -> None:
        for inst in self.host_instances(name):
            self._start(inst)
        for inst in self.host_instances(name):
            self._wait_ready(inst)

    def _start(self, inst: LocalInstance) -> None:
        if inst.process is not None and inst.process.poll() is None:
            return
        inst.process = subprocess.Popen(
            [REDIS_SERVER, inst.config.conf_path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets PDEATHSIG
        )

    def _wait_ready(self, inst: LocalInstance, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(host=inst.address, port=inst.port, password=self.password, socket_timeout=1)
        try:
            while True:
                assert inst.process is not None
                if inst.process.poll() is not None:
                    log = Path(inst.config.logfile)
                    tail = log.read_text()[-2000:] if log.exists() else "(no log)"
                    raise RuntimeError(f"redis-server {inst.endpoint} exited early:\n{tail}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server {inst.endpoint} not ready after {timeout} s")
                time.sleep(0.05)
        finally:
            client.close()

    def kill_host(self, name: str) -> None:
        """SIGKILL both instances of a host (a host crash)."""
        for inst in self.host_instances(name):
            self._kill(inst)

    def _kill(self, inst: LocalInstance) -> None:
        if inst.process is not None and inst.process.poll() is None:
            inst.process.kill()
            inst.process.wait(timeout=10)

    def stop_all(self) -> None:
        for inst in self.instances.values():
            with contextlib.suppress(Exception):
                self._kill(inst)

    def client(self, label: str, password: str | None = None) -> redis.Redis:
        inst = self.instances[label]
        return redis.Redis(
            host=inst.address, port=inst.port, password=password or self.password, socket_timeout=5
        )


@contextlib.contextmanager
def local_redis_hosts(root: Path, *names: str) -> Iterator[LocalRedisHosts]:
    """Start the named hosts (two instances each); kill everything on exit."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    ports = pick_ports(list(HOST_ADDRESSES.values()))
    hosts = LocalRedisHosts(root=root, password="nr-test-" + secrets.token_hex(12), ports=ports)
    try:
        for name in names:
            hosts.add_host(name)
        yield hosts
    finally:
        hosts.stop_all()


@pytest.fixture(scope="module")
def redis_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisHosts]:
    """Three simulated hosts (lab1-3, 127.0.0.1-3) with two fresh cluster-mode instances each."""
    with local_redis_hosts(tmp_path_factory.mktemp("redis"), "lab1", "lab2", "lab3") as hosts:
        yield hosts
