"""Scale-out: a fourth host joins the Redis Cluster as a new shard while a client keeps working.

Runs last: it grows the shared lab to four hosts.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.lab.conftest import LabEnv
from tests.lab.redis_helpers import (
    cluster_client,
    layout_table,
    planned_table,
    read_keys,
    slot_counts,
    write_keys,
)

pytestmark = pytest.mark.lab


class BackgroundClient:
    """Reads and writes through a cluster client until stopped; counts operations and lasting failures."""

    def __init__(self, env: LabEnv, host: str) -> None:
        self.env, self.host = env, host
        self.ops = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rc = cluster_client(self.env, self.host)
        i = 0
        while not self._stop.is_set():
            key, value = f"bg:{{k{i % 500}}}", f"v{i}"
            for attempt in range(20):  # redirections during a slot move are normal; retry like a client would
                try:
                    rc.set(key, value)
                    if rc.get(key) != value:
                        self.failures.append(f"{key}: read back a different value")
                    break
                except (redis.exceptions.RedisError, AttributeError) as exc:  # AttributeError: redis-py#4015
                    if attempt == 19:
                        self.failures.append(f"{key}: {type(exc).__name__}: {exc}")
                    time.sleep(0.1)
            self.ops += 1
            i += 1
        rc.close()

    def __enter__(self) -> BackgroundClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_fourth_host_joins_as_a_new_shard(lab: LabEnv) -> None:
    old = lab.hosts
    assert len(old) == 3
    for play in ("base", "redis"):  # converged already when the earlier modules ran; cheap then
        assert lab.nr("run", play).code == 0
    write_keys(lab, old[0], 1000, prefix="scale")
    lab.lab.up(4)
    hosts = lab.hosts
    new = hosts[3]
    assert lab.nr("run", "base", "--limit", new).code == 0
    with BackgroundClient(lab, old[0]) as client:
        grow = lab.nr("run", "redis", "--json")
    assert grow.code == 0, grow.stdout + grow.stderr
    cluster = next(r for r in grow.json["results"] if r["task"] == "redis.cluster")
    assert f"MEET {lab.lab.status()[3].address}:7000" in cluster["diff"]
    assert "slots" in cluster["diff"].lower()
    assert client.ops > 50 and client.failures == [], client.failures[:5]
    # shard 4 mastered by the new host; replicas rotated over 4 hosts (host 1's replica now follows shard 4)
    assert layout_table(lab, hosts) == planned_table(hosts)
    assert read_keys(lab, old[0], 1000, prefix="scale") == []
    counts = slot_counts(lab, old[0])
    assert sum(counts.values()) == 16384 and len(counts) == 4
    assert all(abs(n - 4096) <= 1 for n in counts.values()), counts  # an even share for every shard
    again = lab.nr("run", "redis", "--json")
    assert again.code == 0 and again.json["changed"] == 0
    assert lab.nr("drift", "redis").code == 0
