"""Reservation storage in a Redis Cluster (one JSON document per key). No local state.

One ``redis.asyncio`` cluster client per worker process, created on first use and shared by every
request (its per-node connection pools are reused). Every operation runs within the request's
:class:`~services.aeroalpes.retry.Deadline`: errors a failover produces (no connection, timeouts,
CLUSTERDOWN, TRYAGAIN, redirections that do not settle, a master turned read-only replica) are
retried with backoff until it expires; errors no retry can fix (a wrong password, a refused command)
are reported at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    ClusterError,
    NoPermissionError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from services.aeroalpes.codec import FECHA_RE, reserva_a_json, reserva_desde_json
from services.aeroalpes.config import RedisSettings
from services.aeroalpes.domain import Reserva
from services.aeroalpes.retry import Backoff, Deadline

log = logging.getLogger(__name__)

T = TypeVar("T")
_FATAL = (
    AuthenticationError,
    AuthorizationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
)
# ResponseErrors that a failover produces (ClusterDownError, MasterDownError and MovedError are
# ClusterError / ResponseError subclasses handled by the ClusterError branch or by redis-py itself).
_TRANSIENT_REPLIES = (TryAgainError, ReadOnlyError, ClusterError)


@dataclass(frozen=True, slots=True)
class Guardada:
    """A stored reservation's JSON document, answered as it is (no decoding into the domain and
    encoding again: the reader checks its shape, see ``obtener``); ``reserva`` decodes it fully."""

    documento: str

    @property
    def reserva(self) -> Reserva:
        return reserva_desde_json(json.loads(self.documento))


def documento_de(reserva: Reserva) -> str:
    """The compact JSON document a reservation is stored (and answered) as."""
    return json.dumps(reserva_a_json(reserva), separators=(",", ":"))


DEFAULT_BACKOFF = Backoff()


class RepositorioNoDisponible(RuntimeError):
    """The store cannot be reached (the message never contains credentials)."""


class DocumentoCorrupto(RuntimeError):
    """A stored document is not a valid reservation (a server-side fault, never the client's)."""


class RepositorioReservas(Protocol):
    async def guardar(self, reserva: Reserva, deadline: Deadline) -> str: ...

    async def obtener(self, reserva_id: str, deadline: Deadline) -> Guardada | None: ...

    async def disponible(self) -> bool: ...


def cluster_factory(settings: RedisSettings) -> Callable[[], RedisCluster]:
    """A function that makes the worker's cluster client (it connects on its first command)."""

    def connect() -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in settings.nodes],
            password=settings.password.reveal() if settings.password else None,
            decode_responses=True,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            max_connections=settings.max_connections,
            retry=Retry(NoBackoff(), 0),  # one try per call: the repository retries within the deadline
        )

    return connect


def _problema(documento: str, reserva_id: str) -> str | None:
    """Why a stored document is not one this service wrote for ``reserva_id`` (None: it is). Checks the
    envelope only; the documents are written whole by ``guardar`` from validated reservations."""
    try:
        datos = json.loads(documento)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(datos, dict) or datos.get("id") != reserva_id:
        return "not a reservation with this id"
    for campo in ("fecha_creacion", "fecha_actualizacion"):
        if not isinstance(datos.get(campo), str) or not FECHA_RE.fullmatch(datos[campo]):
            return f"{campo} is not a date"
    if not isinstance(datos.get("itinerarios"), list) or not datos["itinerarios"]:
        return "no itineraries"
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _fatal(exc: BaseException) -> bool:
    """A wrong password or a refused command: retrying cannot help (also when redis-py wraps it)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _FATAL):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transient(exc: BaseException) -> bool:
    if _fatal(exc):
        return False
    if isinstance(exc, ResponseError):
        return isinstance(exc, _TRANSIENT_REPLIES)
    return isinstance(exc, (RedisError, RedisClusterException, TimeoutError, OSError))


class RepositorioRedis:
    """``RepositorioReservas`` over ``redis.asyncio.cluster.RedisCluster``."""

    def __init__(
        self,
        connect: Callable[[], RedisCluster],
        key_prefix: str = "aeroalpes:reserva:",
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        probe_timeout: float = 2.0,
        max_in_flight: int = 64,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._connect = connect
        self._prefix = key_prefix
        self._client: RedisCluster | None = None
        self._backoff = backoff
        self._probe_timeout = probe_timeout
        self._sleep = sleep
        # Never more commands in flight than a node's pool holds (redis-py raises instead of waiting).
        self._slots = asyncio.Semaphore(max_in_flight)

    def _cluster(self) -> RedisCluster:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def key(self, reserva_id: str) -> str:
        return f"{self._prefix}{reserva_id}"

    async def _once(self, op: Callable[[RedisCluster], Awaitable[T]], timeout: float) -> T:
        async with asyncio.timeout(timeout):
            async with self._slots:
                return await op(self._cluster())

    async def _refresh(self, exc: BaseException) -> None:
        """After a reply that says the topology changed, the next call re-reads the slots."""
        if isinstance(exc, (ReadOnlyError, ClusterError)) and self._client is not None:
            await self._client.aclose()

    async def _retrying(self, what: str, op: Callable[[RedisCluster], Awaitable[T]], deadline: Deadline) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(op, deadline.remaining())
            except Exception as exc:
                if not _transient(exc):
                    raise RepositorioNoDisponible(f"{what} ({_describe(exc)})") from None
                last = exc
            delay = min(self._backoff.delay(attempt), deadline.remaining())
            if delay <= 0:
                raise RepositorioNoDisponible(
                    f"{what}: still failing after {attempt} attempts ({_describe(last)})"
                ) from None
            log.info("redis retry", extra={"op": what, "attempt": attempt, "error": _describe(last)})
            await self._refresh(last)
            await self._sleep(delay)

    async def guardar(self, reserva: Reserva, deadline: Deadline) -> str:
        """Stores a new reservation (never overwrites); returns its document."""
        documento = documento_de(reserva)
        key = self.key(reserva.id)
        attempts = 0

        async def store(client: RedisCluster) -> bool:
            nonlocal attempts
            attempts += 1
            if await client.set(key, documento, nx=True):
                return True
            # NX refused. After a failed attempt, the earlier SET may have been applied with its answer
            # lost: our own document under our id is a success, anything else a collision.
            return attempts > 1 and await client.get(key) == documento

        if not await self._retrying("cannot store reservation", store, deadline):
            raise RepositorioNoDisponible(f"reservation id {reserva.id} already exists")
        return documento

    async def obtener(self, reserva_id: str, deadline: Deadline) -> Guardada | None:
        key = self.key(reserva_id)

        async def read(client: RedisCluster) -> Any:
            return await client.get(key)

        documento = await self._retrying("cannot read reservation", read, deadline)
        if documento is None:
            return None
        problema = _problema(documento, reserva_id)
        if problema:
            raise DocumentoCorrupto(f"stored reservation {reserva_id!r} is invalid: {problema}")
        return Guardada(documento)

    async def disponible(self) -> bool:
        """True when a node answers ``cluster_state:ok`` within the probe timeout (no retries)."""
        try:
            info = await self._once(lambda client: client.cluster_info(), self._probe_timeout)
        except Exception as exc:
            log.warning("redis not ready", extra={"error": _describe(exc)})
            return False
        return str(info.get("cluster_state")) == "ok"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
