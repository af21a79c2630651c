"""The real AeroAlpes process (on the real Redis Cluster) against hostile clients: hundreds of slow and
idle connections must not stop it answering its health check and real requests, and a body sent at
one byte per second is cut off by the body timeout. (gunicorn's gthread workers stopped answering
/health with 64 such clients, and accepted a 1 byte/s body after 40 s.)"""

from __future__ import annotations

import json
import statistics
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aeroalpes_testdata import two_itineraries_json

from tests.support.hostile import close_all, health_latency, open_connections, trickle_body
from tests.support.procs import start_aeroalpes
from tests.support.redis_cluster import LocalRedisCluster

BODY_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def hardened(redis_cluster: LocalRedisCluster, password_file: Path, logs_dir: Path) -> Iterator[str]:
    proc, url = start_aeroalpes(
        redis_cluster.nodes_env, logs_dir / "aeroalpes-hostile.log", password_file=password_file,
        AEROALPES_MAX_CONNECTIONS="256", AEROALPES_HEADER_TIMEOUT="30", AEROALPES_BODY_TIMEOUT=str(BODY_TIMEOUT),
    )  # fmt: skip
    yield url
    proc.stop()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def create_and_get(url: str) -> None:
    data = json.dumps({"itinerarios": two_itineraries_json()}).encode()
    post = urllib.request.Request(
        f"{url}/vuelos/reserva", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(post, timeout=5) as answer:
        created = json.load(answer)
    with urllib.request.urlopen(f"{url}/vuelos/reserva/{created['id']}", timeout=5) as answer:
        assert json.load(answer) == created


def test_health_and_requests_answer_with_hundreds_of_slow_and_idle_connections(hardened: str) -> None:
    port = port_of(hardened)
    slow = open_connections(port, 300, slow_head=True)  # heads never finished (header timeout: 30 s)
    idle = open_connections(port, 100, slow_head=False)  # connected, silent
    try:
        latencies = [health_latency(port, timeout=5) for _ in range(20)]
        create_and_get(hardened)
    finally:
        close_all(slow + idle)
    assert max(latencies) < 1.0, latencies
    assert statistics.median(latencies) < 0.2, latencies


def test_a_body_at_one_byte_per_second_is_cut_off(hardened: str) -> None:
    result = trickle_body(port_of(hardened), length=100, interval=1.0)
    assert result.answer.startswith(b"HTTP/1.1 408"), result
    assert BODY_TIMEOUT - 0.5 < result.seconds < BODY_TIMEOUT + 2.0, result
    assert result.sent < 10
