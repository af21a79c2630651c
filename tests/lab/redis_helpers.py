"""Helpers for the Redis lab tests: read the live layout, write and read keys through a cluster client."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.lab.conftest import LabEnv


def password(env: LabEnv) -> str:
    return (env.state_dir / "secrets" / "redis_password").read_text().strip()


def addresses(env: LabEnv) -> dict[str, str]:
    return {h.name: h.address for h in env.lab.status()}


def layout_table(
    env: LabEnv, hosts: list[str], ports: tuple[int, int] = (7000, 7003)
) -> dict[tuple[str, int], str]:
    """(host, port) -> "master of shard N" / "replica of shard N", read from CLUSTER NODES of the live cluster.

    Shards are numbered by the position (1-based) of their master's host in ``hosts``... as the plan
    numbers them, using the planned master (port ``ports[0]``) of each host.
    """
    addr = addresses(env)
    by_endpoint = {f"{addr[h]}:{p}": (h, p) for h in hosts for p in ports}
    first = redis.Redis(host=addr[hosts[0]], port=ports[0], password=password(env), decode_responses=True)
    text = first.execute_command("CLUSTER", "NODES")
    first.close()
    nodes = {}
    for line in (text if isinstance(text, str) else "").splitlines():
        parts = line.split()
        endpoint = parts[1].split("@")[0]
        nodes[parts[0]] = (endpoint, parts[2], parts[3])
    shard_of_master: dict[str, int] = {}
    for node_id, (endpoint, flags, _) in nodes.items():
        if "master" in flags and endpoint in by_endpoint:
            host, _port = by_endpoint[endpoint]
            shard_of_master[node_id] = hosts.index(host) + 1
    table = {}
    for node_id, (endpoint, flags, master_id) in nodes.items():
        key = by_endpoint.get(endpoint)
        if key is None:
            continue
        if "master" in flags:
            table[key] = f"master of shard {shard_of_master[node_id]}"
        else:
            table[key] = f"replica of shard {shard_of_master.get(master_id, '?')}"
    return table


def planned_table(hosts: list[str], ports: tuple[int, int] = (7000, 7003)) -> dict[tuple[str, int], str]:
    n = len(hosts)
    table = {}
    for i, h in enumerate(hosts, start=1):
        table[(h, ports[0])] = f"master of shard {i}"
        table[(h, ports[1])] = f"replica of shard {(i - 2) % n + 1}"
    return table


def cluster_client(env: LabEnv, host: str) -> RedisCluster:
    addr = addresses(env)
    return RedisCluster(
        startup_nodes=[ClusterNode(addr[host], 7000)], password=password(env), decode_responses=True,
        socket_timeout=5,
    )  # fmt: skip


def write_keys(env: LabEnv, host: str, count: int = 1000, prefix: str = "nr-test") -> None:
    """Write ``count`` keys, each acknowledged by one replica (WAIT 1)."""
    rc = cluster_client(env, host)
    try:
        for i in range(count):
            key = f"{prefix}:{{k{i}}}"
            rc.set(key, f"value-{i}")
            node = rc.get_node_from_key(key)
            acked = rc.execute_command("WAIT", 1, 2000, target_nodes=node)
            assert acked == 1, f"WAIT 1 for {key}: {acked} replica(s) acknowledged"
    finally:
        rc.close()


def read_keys(
    env: LabEnv, host: str, count: int = 1000, prefix: str = "nr-test", timeout: float = 60
) -> list[int]:
    """Indexes of keys that are missing or wrong (retries while the cluster settles)."""
    deadline = time.monotonic() + timeout
    while True:
        rc = cluster_client(env, host)
        try:
            values = [rc.get(f"{prefix}:{{k{i}}}") for i in range(count)]
            return [i for i, v in enumerate(values) if v != f"value-{i}"]
        except (
            redis.exceptions.ClusterDownError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        ):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
        finally:
            rc.close()


def file_digest(env: LabEnv, host: str, path: str) -> str:
    return env.exec(host, f"sha256sum {path} 2>/dev/null || echo missing").split()[0]


def secrets_dir(env: LabEnv) -> Path:
    return env.state_dir / "secrets"


def slot_counts(env: LabEnv, host: str) -> dict[str, int]:
    """Slots served by each master (endpoint -> count), from CLUSTER NODES."""
    addr = addresses(env)
    client = redis.Redis(host=addr[host], port=7000, password=password(env), decode_responses=True)
    text = client.execute_command("CLUSTER", "NODES")
    client.close()
    counts: dict[str, int] = {}
    for line in str(text).splitlines():
        parts = line.split()
        if "master" not in parts[2]:
            continue
        n = 0
        for token in parts[8:]:
            if token.startswith("["):
                continue
            lo, _, hi = token.partition("-")
            n += int(hi or lo) - int(lo) + 1
        counts[parts[1].split("@")[0]] = n
    return counts


class Writer:
    """Writes ``w:{i}`` keys through a cluster client until stopped, as an application would (redis-py's
    own redirects and retries, nothing more). A write that raises is a failed write; one that returns is
    acknowledged and must be readable afterwards."""

    def __init__(self, env: LabEnv, host: str, prefix: str = "w") -> None:
        self.env, self.host, self.prefix = env, host, prefix
        self.acked: dict[str, str] = {}
        self.acked_at: list[float] = []  # time.monotonic() of each acknowledgement (bench/faults: gaps)
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rc = cluster_client(self.env, self.host)
        i = 0
        try:
            while not self._stop.is_set():
                key, value = f"{self.prefix}:{{k{i}}}", f"v{i}"
                try:
                    rc.set(key, value)
                    self.acked[key] = value
                    self.acked_at.append(time.monotonic())
                except Exception as exc:
                    self.failed.append(f"{key}: {type(exc).__name__}: {exc}")
                i += 1
                time.sleep(0.005)
        finally:
            rc.close()

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def lost(self) -> list[str]:
        """Acknowledged keys that are missing or wrong now."""
        rc = cluster_client(self.env, self.host)
        try:
            return [k for k, v in self.acked.items() if rc.get(k) != v]
        finally:
            rc.close()


def run_and_kill(env: LabEnv, args: list[str], inventory: Path, marker: str, timeout: float = 300) -> str:
    """Start ``nr ARGS -i INVENTORY``, SIGKILL it as soon as ``marker`` appears in its progress output (an
    operator's kill, or a crashed controller); returns what it printed."""
    cmd = [sys.executable, "-m", "nr", *args, "-i", str(inventory)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            seen.append(line)
            if marker in line or time.monotonic() > deadline:
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    out = "".join(seen)
    assert marker in out, f"{marker!r} never appeared:\n{out}"
    return out


def connects(env: LabEnv, source_ip: str, target: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a fresh container at ``source_ip`` on the lab network opens a TCP connection to target:port."""
    image = os.environ.get("BASE_IMAGE") or env.lab.ensure_image()
    probe = f"import socket; socket.create_connection(('{target}', {port}), {timeout}).close()"
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", env.lab.network, "--ip", source_ip, image, "python3", "-c", probe],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc.returncode == 0
