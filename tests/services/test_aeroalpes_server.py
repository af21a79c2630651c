"""The HTTP server with real sockets on loopback (in-process, in-memory repository): keep-alive,
pipelining, size limits, timeouts, the connection cap and graceful shutdown.
(The real service process against hostile clients: test_hostile_clients.py.)"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aeroalpes_testdata import MemoryRepo, two_itineraries_json

from services.aeroalpes.config import Limits
from services.aeroalpes.domain import Reserva
from services.aeroalpes.http import App
from services.aeroalpes.retry import Deadline
from services.aeroalpes.server import HttpServer

LIMITS = Limits(max_connections=64, header_timeout=1.0, body_timeout=1.0, keepalive_timeout=1.0)
BODY = json.dumps({"itinerarios": two_itineraries_json()}).encode()


class BlockingRepo(MemoryRepo):
    """Holds every request until ``release`` is set (requests in progress)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = 0

    async def guardar(self, reserva: Reserva, deadline: Deadline) -> str:
        self.entered += 1
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return await super().guardar(reserva, deadline)


@dataclass
class Running:
    server: HttpServer
    port: int
    loop: asyncio.AbstractEventLoop
    listener: asyncio.AbstractServer

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def shutdown(self, grace: float) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(self.listener, grace), self.loop)


def serve(repo: MemoryRepo, limits: Limits) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    server = HttpServer(App(repo), limits)
    listener = loop.run_until_complete(loop.create_server(server.protocol, "127.0.0.1", 0))
    port = listener.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield Running(server, port, loop, listener)
    loop.call_soon_threadsafe(listener.close)
    for conn in list(server.connections):
        loop.call_soon_threadsafe(conn.abort)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def running() -> Iterator[Running]:
    yield from serve(MemoryRepo(), LIMITS)


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: test"]
    if (body or method == "POST") and "Content_Length" not in headers:
        head.append(f"Content-Length: {len(body)}")
    head += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """One response (status, headers, parsed JSON body) read off the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(rest[:length]) if length else None


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_keep_alive_and_pipelining(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(request("POST", "/vuelos/reserva", BODY))
        status, _, created = read_response(sock)
        assert status == 200
        # two requests in one write: answered in order on the same connection
        sock.sendall(request("GET", f"/vuelos/reserva/{created['id']}") + request("GET", "/health"))
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            data += sock.recv(65536)
        assert data.index(created["id"].encode()) < data.index(b'{"status":"up"}')
    assert len(running.server.connections) <= 1


@pytest.mark.parametrize(
    ("raw", "status", "rule"),
    [
        (request("POST", "/vuelos/reserva", Content_Length=str(2 << 20)), 413, "RequestEntityTooLarge"),
        (request("GET", "/" + "x" * 5000), 414, "RequestURITooLarge"),
        (request("GET", "/health", X_Big="y" * 40_000), 431, "RequestHeaderFieldsTooLarge"),
        (b"NONSENSE\r\n\r\n", 400, "BadRequest"),
        (request("POST", "/vuelos/reserva", b"[" * 300_000), 400, "JSONInvalido"),
    ],
)
def test_limits(running: Running, raw: bytes, status: int, rule: str) -> None:
    with running.connect() as sock:
        sock.sendall(raw)
        answer, headers, body = read_response(sock)
        assert (answer, body["error"].split(" - ")[0]) == (status, rule)
        if status != 400 or rule == "BadRequest":
            assert headers["connection"] == "close"


def test_chunked_body_over_the_limit_is_413(running: Running) -> None:
    chunk = b"x" * 65536
    with running.connect() as sock:
        sock.sendall(b"POST /vuelos/reserva HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):  # 1.25 MiB, over the 1 MiB limit
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and stopped reading
        status, _, body = read_response(sock)
    assert status == 413 and body["error"].startswith("RequestEntityTooLarge - ")


def test_chunked_body_within_the_limit_is_accepted(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"POST /vuelos/reserva HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(BODY), 100):
            part = BODY[i : i + 100]
            sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_a_trickled_body_is_cut_off_by_the_body_timeout(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(request("GET", "/", Content_Length="500").replace(b"GET /", b"POST /vuelos/reserva"))
        started = time.monotonic()
        status = None
        for _ in range(40):  # one byte every 0.1 s would take 50 s
            try:
                sock.sendall(b"[")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    sock.settimeout(5)
                    status = read_response(sock)[0]
                    break
            except TimeoutError:
                continue
        assert status == 408
        assert 0.9 < time.monotonic() - started < 2.5


def test_head_timeout_and_idle_keep_alive(running: Running) -> None:
    with running.connect() as silent, running.connect() as partial, running.connect() as used:
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # never finished
        used.sendall(request("GET", "/health"))
        assert read_response(used)[0] == 200
        started = time.monotonic()
        assert closed_by_server(silent, 3) and closed_by_server(used, 3)
        assert read_response(partial)[0] == 408
        assert time.monotonic() - started < 2.5
    deadline = time.monotonic() + 2
    while running.server.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running.server.connections


def test_the_connection_cap_evicts_idle_and_slow_connections_first() -> None:
    for running in serve(MemoryRepo(), replace(LIMITS, max_connections=20, header_timeout=30)):
        hogs = [running.connect() for _ in range(60)]
        for i, hog in enumerate(hogs):
            if i % 2:
                hog.sendall(b"GET /health HTTP/1.1\r\n")  # slow head
        with running.connect() as probe:
            started = time.monotonic()
            probe.sendall(request("GET", "/health"))
            assert read_response(probe)[0] == 200
            assert time.monotonic() - started < 1.0
        assert running.server.evicted >= 40
        assert len(running.server.connections) <= 20
        for hog in hogs:
            hog.close()


def test_when_every_connection_is_busy_a_newcomer_gets_503_at_once() -> None:
    repo = BlockingRepo()
    for running in serve(repo, replace(LIMITS, max_connections=3, body_timeout=30)):
        busy = [running.connect() for _ in range(3)]
        for sock in busy:
            sock.sendall(request("POST", "/vuelos/reserva", BODY))
        while repo.entered < 3:
            time.sleep(0.01)
        with running.connect() as extra:
            status, _, body = read_response(extra)
        assert status == 503 and body["error"].startswith("ServiceUnavailable - ")
        repo.release.set()
        assert [read_response(s)[0] for s in busy] == [200, 200, 200]
        for sock in busy:
            sock.close()


def test_graceful_shutdown_answers_requests_in_progress() -> None:
    repo = BlockingRepo()
    for running in serve(repo, LIMITS):
        idle = running.connect()
        idle.sendall(request("GET", "/health"))
        read_response(idle)
        with running.connect() as busy:
            busy.sendall(request("POST", "/vuelos/reserva", BODY))
            while repo.entered < 1:
                time.sleep(0.01)
            running.shutdown(grace=5)
            assert closed_by_server(idle, 2)  # idle keep-alive connections go at once
            with pytest.raises(OSError):
                running.connect().close()  # no new connections
            repo.release.set()
            status, headers, _ = read_response(busy)
            assert (status, headers["connection"]) == (200, "close")
        idle.close()


def test_a_client_that_never_reads_its_answers_is_disconnected(running: Running) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast: the server must stop writing
    sock.connect(("127.0.0.1", running.port))
    sock.settimeout(5)
    sock.sendall(request("GET", "/health"))
    assert read_response(sock)[0] == 200  # admitted
    sock.settimeout(0.5)
    batch = request("GET", "/health") * 500
    sent, ended = 0, threading.Event()

    def flood() -> None:
        nonlocal sent
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not ended.is_set():
            try:
                sock.sendall(batch)
                sent += 500
            except TimeoutError:
                continue  # the server stopped reading (its queue is full): keep pushing
            except OSError:
                return  # disconnected

    flooder = threading.Thread(target=flood)
    flooder.start()
    started = time.monotonic()
    while running.server.connections and time.monotonic() - started < 12:
        time.sleep(0.1)
    ended.set()
    flooder.join(5)
    sock.close()
    assert sent > 500
    assert not running.server.connections  # LIMITS.body_timeout (1 s) after its answers stopped draining
