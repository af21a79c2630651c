"""The Flask HTTP layer: routes, status codes and JSON errors. Business logic lives in ``domain``."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from services.aeroalpes.codec import itinerarios_desde_json, leer_cuerpo, reserva_a_json
from services.aeroalpes.domain import ReglaIncumplida, crear_reserva
from services.aeroalpes.repository import RepositorioNoDisponible, RepositorioReservas

log = logging.getLogger("aeroalpes.http")

RESERVA_NO_ENCONTRADA = "ReservaNoEncontrada"
ALMACEN_NO_DISPONIBLE = "AlmacenamientoNoDisponible"
MAX_ID_LENGTH = 128
MAX_BODY_BYTES = 1024 * 1024
PROBES = frozenset({"/health", "/ready"})  # logged at DEBUG when they succeed


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


def error(status: int, regla: str, mensaje: str) -> tuple[Response, int]:
    return jsonify({"error": f"{regla} - {mensaje}"}), status


def create_app(
    repositorio: RepositorioReservas,
    *,
    reloj: Callable[[], datetime] = _utc_now,
    nuevo_id: Callable[[], str] = _new_id,
) -> Flask:
    app = Flask("aeroalpes")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _access_log(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        probe = request.path in PROBES and response.status_code == 200
        log.log(
            logging.DEBUG if probe else logging.INFO,
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round(elapsed * 1000, 2),
            },
        )
        return response

    @app.get("/health")
    def health() -> Any:
        return jsonify({"status": "up"})

    @app.get("/ready")
    def ready() -> Any:
        if repositorio.disponible():
            return jsonify({"status": "ready"})
        return jsonify({"status": "unavailable", "error": f"{ALMACEN_NO_DISPONIBLE} - Redis Cluster"}), 503

    @app.post("/vuelos/reserva")
    def reservar() -> Any:
        itinerarios = itinerarios_desde_json(leer_cuerpo(request.get_data()))
        reserva = crear_reserva(itinerarios, id=nuevo_id(), ahora=reloj())
        repositorio.guardar(reserva)
        log.info("reservation created", extra={"reserva_id": reserva.id})
        return jsonify(reserva_a_json(reserva))

    @app.get("/vuelos/reserva/<reserva_id>")
    def dar_reserva(reserva_id: str) -> Any:
        reserva = repositorio.obtener(reserva_id) if len(reserva_id) <= MAX_ID_LENGTH else None
        if reserva is None:
            return error(404, RESERVA_NO_ENCONTRADA, f"no reservation with id {reserva_id[:MAX_ID_LENGTH]!r}")
        return jsonify(reserva_a_json(reserva))

    @app.errorhandler(ReglaIncumplida)
    def _invalid(exc: ReglaIncumplida) -> Any:
        return error(400, exc.regla, exc.mensaje)

    @app.errorhandler(RepositorioNoDisponible)
    def _unavailable(exc: RepositorioNoDisponible) -> Any:
        log.error("storage unavailable", extra={"error": str(exc)})
        return error(503, ALMACEN_NO_DISPONIBLE, "the reservation store is unavailable, retry later")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        return error(exc.code or 500, type(exc).__name__, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return error(500, "ErrorInterno", "unexpected error")

    return app
