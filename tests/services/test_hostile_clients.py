"""The real AeroAlpes process (on the real Redis Cluster) against hostile clients: hundreds of slow and
idle connections must not stop it answering its health check and real requests, and a body sent at
one byte per second is cut off by the body timeout. (gunicorn's gthread workers stopped answering
/health with 64 such clients, and accepted a 1 byte/s body after 40 s.)"""

from __future__ import annotations

import contextlib
import json
import socket
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
        # Every probe gets its 200 while the 400 connections stay open (each raises otherwise, e.g. on a
        # connection the server never reads): the old server answered none. How fast is bench/slow_clients'.
        for _ in range(20):
            health_latency(port, timeout=10)
        create_and_get(hardened)
    finally:
        close_all(slow + idle)


def test_a_body_at_one_byte_per_second_is_cut_off(hardened: str) -> None:
    result = trickle_body(port_of(hardened), length=100, interval=1.0)
    assert result.answer.startswith(b"HTTP/1.1 408"), result
    assert BODY_TIMEOUT - 0.5 < result.seconds < BODY_TIMEOUT + 2.0, result
    assert result.sent < 10


def raw_exchange(port: int, data: bytes) -> bytes:
    """Sends ``data`` (ignoring a reset once the server has answered) and returns the answer's start."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
            answer += sock.recv(65536)
    return answer


def test_deeply_nested_json_is_a_400_and_no_traceback(hardened: str, logs_dir: Path) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    head = f"POST /vuelos/reserva HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    answer = raw_exchange(port_of(hardened), head.encode() + body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"JSONInvalido - " in answer
    log = (logs_dir / "aeroalpes-hostile.log").read_text()
    assert "Traceback" not in log and "RecursionError" not in log


def test_a_chunked_body_over_the_limit_is_413(hardened: str) -> None:
    chunk = b"x" * 65536
    head = b"POST /vuelos/reserva HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 20 + b"0\r\n\r\n"  # 1.25 MiB
    answer = raw_exchange(port_of(hardened), head + body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
