"""Reservation storage in a Redis Cluster (one JSON document per key). No local state."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from services.aeroalpes.codec import reserva_a_json, reserva_desde_json
from services.aeroalpes.config import RedisSettings
from services.aeroalpes.domain import ReglaIncumplida, Reserva

log = logging.getLogger(__name__)


class RepositorioNoDisponible(RuntimeError):
    """The store cannot be reached (the message never contains credentials)."""


class DocumentoCorrupto(RuntimeError):
    """A stored document is not a valid reservation (a server-side fault, never the client's)."""


class RepositorioReservas(Protocol):
    def guardar(self, reserva: Reserva) -> None: ...

    def obtener(self, reserva_id: str) -> Reserva | None: ...

    def disponible(self) -> bool: ...


def cluster_factory(settings: RedisSettings) -> Callable[[], RedisCluster]:
    """A function that opens a cluster client (called lazily, once per process)."""

    def connect() -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in settings.nodes],  # type: ignore[no-untyped-call]
            password=settings.password.reveal() if settings.password else None,
            decode_responses=True,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
        )

    return connect


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RepositorioRedis:
    """``RepositorioReservas`` over ``redis.cluster.RedisCluster``.

    The client is created on first use (after gunicorn forks, and so that the service starts and
    answers /health while Redis is still down); a failed connection is retried on the next call.
    """

    def __init__(self, connect: Callable[[], RedisCluster], key_prefix: str = "aeroalpes:reserva:") -> None:
        self._connect = connect
        self._prefix = key_prefix
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def _cluster(self) -> RedisCluster:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._connect()
                except (RedisError, RedisClusterException) as exc:
                    raise RepositorioNoDisponible(f"Redis Cluster unreachable ({_describe(exc)})") from None
            return self._client

    def key(self, reserva_id: str) -> str:
        return f"{self._prefix}{reserva_id}"

    def guardar(self, reserva: Reserva) -> None:
        documento = json.dumps(reserva_a_json(reserva), separators=(",", ":"))
        try:
            created = self._cluster().set(self.key(reserva.id), documento, nx=True)
        except (RedisError, RedisClusterException) as exc:
            raise RepositorioNoDisponible(f"cannot store reservation ({_describe(exc)})") from None
        if not created:
            raise RepositorioNoDisponible(f"reservation id {reserva.id} already exists")

    def obtener(self, reserva_id: str) -> Reserva | None:
        try:
            documento = self._cluster().get(self.key(reserva_id))
        except (RedisError, RedisClusterException) as exc:
            raise RepositorioNoDisponible(f"cannot read reservation ({_describe(exc)})") from None
        if documento is None:
            return None
        try:
            return reserva_desde_json(json.loads(documento))
        except (ValueError, ReglaIncumplida) as exc:  # ReglaIncumplida is a ValueError; explicit
            raise DocumentoCorrupto(f"stored reservation {reserva_id!r} is invalid: {exc}") from None

    def disponible(self) -> bool:
        """True when a node answers and reports ``cluster_state:ok``."""
        try:
            info = self._cluster().cluster_info()
        except (RepositorioNoDisponible, RedisError, RedisClusterException) as exc:
            log.warning("redis not ready", extra={"error": _describe(exc)})
            return False
        return str(info.get("cluster_state")) == "ok"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
