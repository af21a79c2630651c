"""Helpers for the Redis lab tests: read the live layout, write and read keys through a cluster client."""

from __future__ import annotations

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
