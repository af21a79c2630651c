"""The controller's Redis client: RESP2 over TCP, raw replies, one connection per client.

What the Redis component needs from a client is small: a command, a pipeline of commands, and errors
it can tell apart. redis-py did it, for ~130 ms of imports (its asyncio half, its observability
metrics, importlib.metadata) on every run that reads the cluster, a tenth of a whole no-op's controller
CPU. This keeps what nr relied on in redis-py's behaviour (redis-py 8, ``protocol=2``, callbacks
cleared, ``Retry(NoBackoff(), 0)``):

* ``AUTH [username] password`` when the connection opens, and no ``HELLO`` (RESP2);
* connect and read timeouts; no retries; after a socket error or a timeout the connection is dropped
  and the next command opens a new one (redis-py's pool does the same);
* a pipeline is sent in one write, every reply is read, then the first error reply is raised;
* replies as the protocol gives them (redis.io/docs/latest/develop/reference/protocol-spec): simple and
  bulk strings as bytes, integers as int, arrays as lists, nil as None;
* ``TCP_NODELAY``, as redis-py sets it.

* a connection that sat idle is checked before it is reused: one the server closed meanwhile
  (``timeout`` in redis.conf, ``CLIENT KILL``, a restart) is dropped and a new one opened, as
  redis-py's ``Connection.check_health``/``can_read`` does, instead of failing the next command.

Error replies keep their code (``ERR``, ``WRONGPASS``, ...), as redis-cli prints them. The replies
redis-py raises as authentication errors (``redis/_parsers/base.py``, ``EXCEPTION_CLASSES``) are
:class:`AuthError` here; those it raises as connection errors (``LOADING``: the instance is loading its
data set; ``ERR max number of clients reached``) are :class:`NotServing`, an ``OSError`` like
:class:`Unreachable`: the instance is up but cannot serve yet, not a fault of the request.
No message ever carries a command's arguments (AUTH carries the password).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Sequence
from typing import Any, BinaryIO

from tasks.redis.plan import format_endpoint

# ERR replies that redis-py raises as authentication errors (lower case; the rest of the line after ERR)
_AUTH_ERR = (
    "invalid password",
    "wrong number of arguments for 'auth' command",
    "client sent auth, but no password is set",
    "auth <password> called without any password configured",
)
# ERR replies that redis-py raises as connection errors: the server cannot take this client now
_NOT_SERVING_ERR = ("max number of clients reached",)


class RedisError(Exception):
    """A Redis client error."""


class ReplyError(RedisError):
    """The server answered a command with an error reply (``-CODE message``)."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.code = line.split(" ", 1)[0]


class AuthError(ReplyError):
    """The server refused the credentials (WRONGPASS, NOAUTH, no password configured, ...)."""


class NotServing(ReplyError, OSError):
    """The server answered but cannot serve: still loading its data set, or out of client slots."""


class Unreachable(RedisError, OSError):
    """No answer from the server: refused, reset, closed, or no answer within the timeout."""


def error_reply(line: str) -> ReplyError:
    code, _, rest = line.partition(" ")
    lower = rest.lower()
    if code in ("WRONGPASS", "NOAUTH") or (code == "ERR" and lower.startswith(_AUTH_ERR)):
        return AuthError(line)
    if code == "LOADING" or (code == "ERR" and lower.startswith(_NOT_SERVING_ERR)):
        return NotServing(line)
    return ReplyError(line)


def encode(args: Sequence[Any]) -> bytes:
    """One command in the protocol: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis command argument cannot be a {type(arg).__name__}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_reply(stream: BinaryIO) -> Any:
    """One reply; an error reply is returned (the caller raises it), a closed stream raises."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise Unreachable("the connection was closed by the server")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return error_reply(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise Unreachable("the connection was closed by the server mid-reply")
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [read_reply(stream) for _ in range(count)]
    raise RedisError(f"not a RESP2 reply: {line[:40]!r}")


class Client:
    """One Redis instance; thread-safe (commands from several threads take turns on its connection)."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str | None = None,
        username: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._auth: tuple[str, ...] = ()
        if password:
            self._auth = ("AUTH", username, password) if username else ("AUTH", password)
        self._sock: socket.socket | None = None
        self._stream: BinaryIO | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.host, self.port)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if options:
            raise TypeError(f"unsupported options {sorted(options)}")
        (reply,) = self.call([args])
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def pipeline(self, transaction: bool = False) -> Pipeline:
        if transaction:
            raise ValueError("MULTI/EXEC pipelines are not supported")
        return Pipeline(self)

    def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Sends ``commands`` in one write and returns their replies (error replies included)."""
        payload = b"".join(encode(c) for c in commands)
        with self._lock:
            stream = self._connect()
            try:
                assert self._sock is not None
                self._sock.sendall(payload)
                return [read_reply(stream) for _ in commands]
            except (OSError, RedisError, ValueError) as exc:
                self._drop()
                raise self._unreachable(exc) from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _connect(self) -> BinaryIO:
        if self._stream is not None and not self._stale():
            return self._stream
        self._drop()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise self._unreachable(exc, connecting=True) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._stream = sock, sock.makefile("rb")
        if self._auth:
            try:
                sock.sendall(encode(self._auth))
                reply = read_reply(self._stream)
            except (OSError, RedisError, ValueError) as exc:
                self._drop()
                raise self._unreachable(exc) from None
            if isinstance(reply, ReplyError):
                self._drop()
                raise reply
        return self._stream

    def _stale(self) -> bool:
        """An idle connection with something to read (the server's close, or a stray reply) or an error
        pending cannot carry the next command: no request is in flight, so nothing should be readable."""
        assert self._sock is not None
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))

    def _drop(self) -> None:
        for closable in (self._stream, self._sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._sock = self._stream = None

    def _unreachable(self, exc: Exception, connecting: bool = False) -> Exception:
        if isinstance(exc, Unreachable):
            return Unreachable(f"{self.endpoint}: {exc}")
        if isinstance(exc, TimeoutError):
            what = "cannot connect to" if connecting else "no answer from"
            return Unreachable(f"{what} {self.endpoint} within {self.timeout:g} s")
        if isinstance(exc, OSError):
            what = f"cannot connect to {self.endpoint}" if connecting else self.endpoint
            return Unreachable(f"{what}: {exc.strerror or exc}")
        return RedisError(f"{self.endpoint}: {exc}")


class Pipeline:
    """Commands sent together (no MULTI/EXEC): :meth:`execute` returns every reply, or raises the first
    error reply once all are read."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any, **options: Any) -> Pipeline:
        if options:
            raise TypeError(f"unsupported options {sorted(options)}")
        self._commands.append(args)
        return self

    def execute(self) -> list[Any]:
        commands, self._commands = self._commands, []
        if not commands:
            return []
        replies = self._client.call(commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies
