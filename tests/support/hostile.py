"""Hostile HTTP clients for tests and benchmarks (loopback only): connections that never finish their
request head, connections that say nothing, and a body sent one byte at a time."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass


def open_connections(
    port: int, count: int, *, slow_head: bool, host: str = "127.0.0.1"
) -> list[socket.socket]:
    """``count`` connections; with ``slow_head`` each sends the start of a request head and stops."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        if slow_head:
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
        socks.append(sock)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


def health_latency(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> float:
    """Seconds for ``GET /health`` on a new connection (raises on anything but a 200)."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"/health answered {data[:80]!r}")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Trickle:
    seconds: float  # from the end of the head to the server's answer or close
    sent: int  # body bytes sent by then
    answer: bytes  # the start of what the server answered (empty: it closed without answering)


def trickle_body(port: int, *, length: int = 100, interval: float = 1.0, host: str = "127.0.0.1") -> Trickle:
    """POSTs a ``length``-byte body one byte per ``interval`` until the server answers or closes
    (bounded by ``length`` x ``interval``)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        head = f"POST /vuelos/reserva HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        sock.sendall(head.encode())
        started, sent = time.monotonic(), 0
        while sent < length:
            try:
                sock.sendall(b" ")
            except OSError:
                break
            sent += 1
            sock.settimeout(interval)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                answer = b""
            return Trickle(time.monotonic() - started, sent, answer)
        return Trickle(time.monotonic() - started, sent, b"")
