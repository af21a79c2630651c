"""The HTTP application: routes, status codes and JSON errors, independent of the server that carries
it (``server``). Business logic lives in ``domain``; storage in ``repository``.

Routes: ``GET /health``, ``GET /ready``, ``POST /vuelos/reserva``, ``GET /vuelos/reserva/<id>``
(``HEAD`` wherever ``GET`` is allowed). Every answer is a JSON document; errors are
``{"error": "<Rule> - <message>"}``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from services.aeroalpes.codec import itinerarios_desde_json, leer_cuerpo
from services.aeroalpes.domain import ReglaIncumplida, crear_reserva
from services.aeroalpes.repository import DocumentoCorrupto, RepositorioNoDisponible, RepositorioReservas
from services.aeroalpes.retry import Deadline, parse_timeout_header

log = logging.getLogger("aeroalpes.http")

RESERVA_NO_ENCONTRADA = "ReservaNoEncontrada"
ALMACEN_NO_DISPONIBLE = "AlmacenamientoNoDisponible"
MAX_ID_LENGTH = 128
MAX_BODY_BYTES = 1024 * 1024
PROBES = frozenset({"/health", "/ready"})  # logged at DEBUG when they succeed
TIMEOUT_HEADER = "x-request-timeout"  # the caller's remaining seconds (the adapter's gRPC deadline)
RESERVAS = "/vuelos/reserva"

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # the target without its query string, still percent-encoded
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def json(self) -> Any:
        return json.loads(self.body)


def json_response(status: int, document: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, json.dumps(document, separators=(",", ":")).encode(), headers)


def error(status: int, regla: str, mensaje: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return json_response(status, {"error": f"{regla} - {mensaje}"}, headers)


# Errors the server itself answers (before a request reaches the application).
def bad_request(detail: str) -> Response:
    return error(400, "BadRequest", detail)


def too_large(limit: int) -> Response:
    return error(413, "RequestEntityTooLarge", f"the body exceeds {limit} bytes")


def uri_too_long(limit: int) -> Response:
    return error(414, "RequestURITooLarge", f"the request target exceeds {limit} bytes")


def headers_too_large(limit: int) -> Response:
    return error(431, "RequestHeaderFieldsTooLarge", f"the request line and headers exceed {limit} bytes")


def timed_out(what: str) -> Response:
    return error(408, "RequestTimeout", f"the {what} did not arrive in time")


def overloaded() -> Response:
    return error(503, "ServiceUnavailable", "too many connections, retry later")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


GET = ("GET", "HEAD")


class App:
    """``await app.handle(request) -> Response``; never raises."""

    def __init__(
        self,
        repositorio: RepositorioReservas,
        *,
        budget: float = 15.0,
        reloj: Callable[[], datetime] = _utc_now,
        nuevo_id: Callable[[], str] = _new_id,
    ) -> None:
        self.repositorio = repositorio
        self.budget = budget
        self._reloj = reloj
        self._nuevo_id = nuevo_id

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self._route(request)
        except ReglaIncumplida as exc:
            response = error(400, exc.regla, exc.mensaje)
        except RepositorioNoDisponible as exc:
            log.error("storage unavailable", extra={"error": str(exc)})
            response = error(503, ALMACEN_NO_DISPONIBLE, "the reservation store is unavailable, retry later")
        except DocumentoCorrupto as exc:
            log.error("corrupt document", extra={"error": str(exc)})
            response = error(500, "ErrorInterno", "unexpected error")
        except Exception:
            log.exception("unhandled error")
            response = error(500, "ErrorInterno", "unexpected error")
        level = logging.DEBUG if request.path in PROBES and response.status == 200 else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "request", extra={
                "method": request.method, "path": request.path[:256], "status": response.status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            })  # fmt: skip
        return response

    def _deadline(self, request: Request) -> Deadline:
        return Deadline(parse_timeout_header(request.headers.get(TIMEOUT_HEADER), self.budget))

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == RESERVAS:
            return await self.reservar(request) if method == "POST" else _not_allowed(("POST",))
        reserva_id = path[len(RESERVAS) + 1 :] if path.startswith(RESERVAS + "/") else ""
        if reserva_id and "/" not in reserva_id:
            return (
                await self.dar_reserva(unquote(reserva_id), request) if method in GET else _not_allowed(GET)
            )
        if path == "/health":
            return json_response(200, {"status": "up"}) if method in GET else _not_allowed(GET)
        if path == "/ready":
            return await self.ready() if method in GET else _not_allowed(GET)
        return error(404, "NotFound", "the requested URL was not found on the server")

    async def ready(self) -> Response:
        if await self.repositorio.disponible():
            return json_response(200, {"status": "ready"})
        return json_response(
            503, {"status": "unavailable", "error": f"{ALMACEN_NO_DISPONIBLE} - Redis Cluster"}
        )

    async def reservar(self, request: Request) -> Response:
        itinerarios = itinerarios_desde_json(leer_cuerpo(request.body))
        reserva = crear_reserva(itinerarios, id=self._nuevo_id(), ahora=self._reloj())
        documento = await self.repositorio.guardar(reserva, self._deadline(request))
        log.info("reservation created", extra={"reserva_id": reserva.id})
        return Response(200, documento.encode())

    async def dar_reserva(self, reserva_id: str, request: Request) -> Response:
        guardada = None
        if len(reserva_id) <= MAX_ID_LENGTH:
            guardada = await self.repositorio.obtener(reserva_id, self._deadline(request))
        if guardada is None:
            return error(404, RESERVA_NO_ENCONTRADA, f"no reservation with id {reserva_id[:MAX_ID_LENGTH]!r}")
        return Response(200, guardada.documento.encode())


def _not_allowed(allowed: tuple[str, ...]) -> Response:
    return error(
        405, "MethodNotAllowed", "the method is not allowed for the requested URL",
        (("Allow", ", ".join(allowed)),),
    )  # fmt: skip
