"""The HTTP/1.1 server of one worker: asyncio (uvloop when installed) with httptools' parser.

What it guarantees against slow, idle or hostile clients (limits in ``config.Limits``):

* a request's line and headers must arrive within ``header_timeout`` of the connection being opened
  (or of the first byte of a later request on a keep-alive connection), its body within
  ``body_timeout`` of the headers: both are absolute, so a trickle of bytes does not extend them;
  then 408 and the connection is closed;
* an idle keep-alive connection is closed after ``keepalive_timeout``;
* at most ``max_connections`` connections: one more closes the longest-idle keep-alive connection,
  else the oldest one still sending its request head; when every connection is busy with a request
  the newcomer gets an immediate 503. A health probe therefore always gets in;
* a client that stops reading its answers (the write buffer stays full) for ``body_timeout`` is
  disconnected;
* head over ``max_header_bytes``: 431; target over ``max_url_bytes``: 414; body (declared or chunked)
  over ``max_body_bytes``: 413, before reading it.

Requests of one connection are answered in order (pipelining works); on shutdown the listener closes,
idle connections are closed, and requests in progress are answered (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from email.utils import formatdate
from typing import cast

import httptools

from services.aeroalpes.config import Limits
from services.aeroalpes.http import (
    REASONS,
    App,
    Request,
    Response,
    bad_request,
    headers_too_large,
    overloaded,
    timed_out,
    too_large,
    uri_too_long,
)

log = logging.getLogger("aeroalpes.server")

MAX_PIPELINED = 8  # requests queued on one connection before it stops reading
LINGER = 2.0  # seconds an error answer waits for the client to stop sending before the socket closes


class _Date:
    """The Date header, formatted once a second."""

    second, value = 0, b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second, cls.value = now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return cls.value


def encode(response: Response, *, keep_alive: bool, head: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(response.body)}\r\n"
    ]
    lines += [f"{name}: {value}\r\n" for name, value in response.headers]
    if not keep_alive:
        lines.append("Connection: close\r\n")
    head_bytes = "".join(lines).encode("latin-1") + _Date.get() + b"\r\n"
    return head_bytes if head else head_bytes + response.body


class HttpServer:
    """The connections of one worker, their limits and the shutdown."""

    def __init__(self, app: App, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.connections: dict[HttpConnection, None] = {}  # insertion order: oldest first
        self.stopping = False
        self.refused = 0
        self.evicted = 0

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)

    def admit(self, conn: HttpConnection) -> bool:
        """Makes room for ``conn``; False when every connection is busy (``conn`` is refused)."""
        if len(self.connections) >= self.limits.max_connections:
            victim = next((c for c in self.connections if c.idle()), None) or next(
                (c for c in self.connections if c.in_head()), None
            )
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            self.forget(victim)  # now: its connection_lost comes on a later loop iteration
            victim.abort()
        self.connections[conn] = None
        return True

    def forget(self, conn: HttpConnection) -> None:
        self.connections.pop(conn, None)

    async def shutdown(self, listener: asyncio.AbstractServer, grace: float) -> None:
        """Stop accepting, close idle connections, let requests in progress finish within ``grace``."""
        self.stopping = True
        listener.close()
        for conn in list(self.connections):
            conn.close_when_idle()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()


class HttpConnection(asyncio.Protocol):
    """One client connection: parsing (httptools callbacks), timers, and answering in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.receiving: str | None = None  # None, "head" or "body"
        self.closing = False
        self.raw_head = 0  # bytes received since the current request head began
        self.writable = asyncio.Event()
        self.writable.set()
        self._reset_message()

    def _reset_message(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.head_size = 0
        self.body: list[bytes] = []
        self.body_size = 0

    # --- state ---------------------------------------------------------------------------------

    def idle(self) -> bool:
        return self.receiving is None and not self.queue and self.worker is None and not self.closing

    def in_head(self) -> bool:
        return self.receiving == "head" and not self.queue and self.worker is None and not self.closing

    def _arm(self, seconds: float, what: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self, what: str) -> None:
        self.timer = None
        if what == "linger" or (what == "keep-alive" and self.idle()):
            self.abort()
        elif what in ("head", "body") and self.receiving is not None:
            nothing_sent = what == "head" and self.raw_head == 0
            log.info("request timeout", extra={"phase": what})
            if nothing_sent:
                self.abort()
            else:
                self.fail(timed_out("request body" if what == "body" else "request head"))

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        if not self.server.admit(self):
            self.transport.write(encode(overloaded(), keep_alive=False))
            self.transport.close()
            return
        self.receiving = "head"  # a new connection has header_timeout to send its request
        self._arm(self.limits.header_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.closing = True
        self.writable.set()
        self.server.forget(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering after an error answer: discard
        if self.receiving is None:
            self.receiving = "head"
            self._arm(self.limits.header_timeout, "head")
        if self.receiving == "head":
            self.raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(bad_request("protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            self.fail(bad_request(f"malformed HTTP request ({exc})"))
        else:
            if self.receiving == "head" and self.raw_head > self.limits.max_header_bytes and not self.closing:
                self.fail(headers_too_large(self.limits.max_header_bytes))

    # --- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        if self.receiving is None:  # a pipelined request that began in the same read
            self.receiving = "head"
            self._arm(self.limits.header_timeout, "head")

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.url) > limits.max_url_bytes:
            return self.fail(uri_too_long(limits.max_url_bytes))
        if self.head_size > limits.max_header_bytes:
            return self.fail(headers_too_large(limits.max_header_bytes))
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            return self.fail(too_large(limits.max_body_bytes))
        self.receiving = "body"
        self.raw_head = 0
        self._arm(limits.body_timeout, "body")
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    def on_body(self, body: bytes) -> None:
        if self.closing:
            return
        self.body_size += len(body)
        if self.body_size > self.limits.max_body_bytes:
            self.fail(too_large(self.limits.max_body_bytes))
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        self._disarm()
        self.receiving = None
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        method = self.parser.get_method().decode("latin-1")
        request = Request(method, path, self.headers, b"".join(self.body))
        self.queue.append((request, self.parser.should_keep_alive()))
        if len(self.queue) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = self.loop.create_task(self._answer())

    # --- answering -----------------------------------------------------------------------------

    async def _answer(self) -> None:
        try:
            while self.queue and not self.closing:
                request, keep_alive = self.queue.popleft()
                if len(self.queue) == MAX_PIPELINED - 1 and self.transport is not None:
                    self.transport.resume_reading()
                response = await self.server.app.handle(request)
                keep_alive = keep_alive and not self.server.stopping
                self._send(encode(response, keep_alive=keep_alive, head=request.method == "HEAD"))
                if not keep_alive:
                    return self._close()
                if not self.writable.is_set() and not await self._drained():
                    return self.abort()
        finally:
            self.worker = None
        if self.server.stopping and self.receiving is None:
            return self._close()
        if self.receiving is None and not self.closing:
            self._arm(self.limits.keepalive_timeout, "keep-alive")
        return None

    async def _drained(self) -> bool:
        """Waits until the client reads what it was sent; False when it has not within the body
        timeout (a client that pipelines requests and never reads the answers holds no connection)."""
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                await self.writable.wait()
        except TimeoutError:
            log.info("client not reading its answers")
            return False
        return True

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        self.closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def fail(self, response: Response) -> None:
        """Answer an error the request itself caused, stop reading it, close after a short linger."""
        if self.closing:
            return
        self.closing = True
        self.receiving = None
        self.queue.clear()
        self._send(encode(response, keep_alive=False))
        if self.transport is not None and self.transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                self.transport.write_eof()
        self._arm(LINGER, "linger")  # read and drop what the client still sends, then close

    def close_when_idle(self) -> None:
        if self.idle() or (self.receiving == "head" and self.raw_head == 0 and self.worker is None):
            self.abort()

    def abort(self) -> None:
        self.closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()
