"""An asyncio HTTP/1.1 client for the AeroAlpes REST API with a keep-alive connection pool (one per
adapter process, shared by all RPCs on its event loop).

A connection is reused while it is younger (idle) than ``idle_ttl``, kept below AeroAlpes's
keep-alive timeout (15 s) so the server never closes one under a request. Should a reused connection
still turn out closed before any byte of the answer arrived, the request is sent again on a new one:
AeroAlpes closes only connections with no request in progress, so the first never reached it. A
request on a new connection is never sent twice. Each request carries ``X-Request-Timeout``: the
seconds left of the caller's deadline, which bound AeroAlpes's retries of its store.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

DEADLINE_MARGIN = 0.05  # seconds left for the answer's way back
MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024


class AeroAlpesUnreachable(ConnectionError):
    """No connection to AeroAlpes (refused, unknown host, connect timeout, connection reset)."""


class AeroAlpesTimeout(TimeoutError):
    """AeroAlpes accepted the request but did not answer in time."""


class _StaleConnection(ConnectionError):
    """A pooled connection was closed before any byte of the answer came back."""


@dataclass(frozen=True, slots=True)
class RestResponse:
    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    text: str


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float
    reused: bool = False

    def usable(self, now: float, ttl: float) -> bool:
        return now - self.used < ttl and not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise ValueError(f"answer of {length} bytes")
        return status, headers, await reader.readexactly(length)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # no trailers expected
        return status, headers, b"".join(parts)
    headers["connection"] = "close"  # body until the end of the connection
    return status, headers, await reader.read(MAX_BODY)


class AeroAlpesRest:
    """``POST /vuelos/reserva`` and ``GET /vuelos/reserva/<id>``; every method is a coroutine."""

    def __init__(self, base_url: str, *, pool_size: int = 16, idle_ttl: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"only http(s):// URLs are supported, got {base_url!r}")
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._host, self._port = parts.hostname, parts.port or (443 if self._tls else 80)
        self._host_header = parts.netloc
        self._prefix = parts.path
        self._pool: list[_Conn] = []
        self._pool_size = pool_size
        self._idle_ttl = idle_ttl
        self.opened = 0  # connections opened so far

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(
                self._host, self._port, limit=MAX_HEAD, ssl=self._tls
            )
        except OSError as exc:
            raise AeroAlpesUnreachable(f"AeroAlpes at {self.base_url} is unreachable ({exc})") from None
        self.opened += 1
        return _Conn(reader, writer, time.monotonic())

    async def _acquire(self) -> _Conn:
        now = time.monotonic()
        while self._pool:
            conn = self._pool.pop()
            if conn.usable(now, self._idle_ttl):
                conn.reused = True
                return conn
            conn.close()
        return await self._connect()

    def _release(self, conn: _Conn, keep: bool) -> None:
        if keep and len(self._pool) < self._pool_size and not conn.writer.is_closing():
            conn.used, conn.reused = time.monotonic(), False
            self._pool.append(conn)
        else:
            conn.close()

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            conn.writer.write(request)
            return await _read_response(conn.reader)
        except asyncio.IncompleteReadError as exc:
            if conn.reused and not exc.partial:
                raise _StaleConnection() from None
            raise AeroAlpesUnreachable(
                f"AeroAlpes at {self.base_url} closed the connection mid-answer"
            ) from None
        except (ConnectionError, OSError) as exc:
            if conn.reused:
                raise _StaleConnection() from None
            raise AeroAlpesUnreachable(f"AeroAlpes at {self.base_url}: {type(exc).__name__}: {exc}") from None
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise AeroAlpesUnreachable(f"AeroAlpes at {self.base_url} answered garbage ({exc})") from None

    async def _request(
        self, method: str, path: str, timeout: float, body: bytes | None = None
    ) -> RestResponse:
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Accept: application/json\r\nUser-Agent: aeroalpes-adapter\r\n"
            f"X-Request-Timeout: {max(0.001, timeout - DEADLINE_MARGIN):.3f}\r\n"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = head.encode("latin-1") + b"\r\n" + (body or b"")
        try:
            async with asyncio.timeout(timeout):
                for _ in range(3):  # a stale pooled connection is replaced (bounded)
                    conn = await self._acquire()
                    try:
                        status, headers, data = await self._exchange(conn, request)
                    except _StaleConnection:
                        conn.close()
                        continue
                    except BaseException:
                        conn.close()
                        raise
                    self._release(conn, headers.get("connection", "").lower() != "close")
                    break
                else:
                    raise AeroAlpesUnreachable(f"AeroAlpes at {self.base_url} keeps closing connections")
        except TimeoutError:
            raise AeroAlpesTimeout(
                f"AeroAlpes at {self.base_url} did not answer within {timeout:.3g}s"
            ) from None
        text = data.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = None
        return RestResponse(status=status, body=parsed, text=text)

    async def crear_reserva(self, cuerpo: dict[str, Any], timeout: float) -> RestResponse:
        return await self._request("POST", "/vuelos/reserva", timeout, json.dumps(cuerpo).encode())

    async def consultar_reserva(self, reserva_id: str, timeout: float) -> RestResponse:
        return await self._request("GET", f"/vuelos/reserva/{quote(reserva_id, safe='')}", timeout)

    async def close(self) -> None:
        while self._pool:
            self._pool.pop().close()
