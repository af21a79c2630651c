"""``vuelos.Vuelos`` implemented by calling the AeroAlpes REST API.

Errors are gRPC status codes: invalid input INVALID_ARGUMENT, unknown id NOT_FOUND, AeroAlpes (or
its store) unreachable UNAVAILABLE, no answer within the deadline DEADLINE_EXCEEDED. From AeroAlpes's
size limits: 413 (body too large) is RESOURCE_EXHAUSTED, as gRPC itself answers an oversized message;
414 (request target too long) is INVALID_ARGUMENT, since only an over-long id can cause it, and such
ids (over MAX_ID_LENGTH characters) are refused here before AeroAlpes is called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.adapter.proto_codec import itinerarios_desde_proto, reserva_a_proto
from services.adapter.rest import AeroAlpesRest, AeroAlpesTimeout, AeroAlpesUnreachable, RestResponse
from services.aeroalpes.codec import itinerarios_a_json, reserva_desde_json
from services.aeroalpes.domain import ReglaIncumplida
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc

log = logging.getLogger("aeroalpes.adapter")

OK = "OK"
MAX_ID_LENGTH = 128  # as AeroAlpes: no reservation has a longer id
# grpcio reports "no deadline" as a deadline in the infinite future: anything this far away is none.
NO_DEADLINE_BEYOND = 365 * 86400.0


class RpcFailure(Exception):
    """Ends an RPC with this status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def status_for_http(status: int) -> grpc.StatusCode:
    """The gRPC code for a non-2xx AeroAlpes answer."""
    if status in (400, 414, 422, 431):
        return grpc.StatusCode.INVALID_ARGUMENT
    if status == 404:
        return grpc.StatusCode.NOT_FOUND
    if status in (502, 503, 504):
        return grpc.StatusCode.UNAVAILABLE
    if status in (413, 429):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INTERNAL


def failure_for_response(response: RestResponse) -> RpcFailure:
    """An RpcFailure carrying AeroAlpes's own error text when it sent one."""
    body = response.body
    detail = body.get("error") if isinstance(body, dict) else None
    message = str(detail) if detail else f"AeroAlpes answered HTTP {response.status}"
    return RpcFailure(status_for_http(response.status), message)


def respuesta_desde_rest(response: RestResponse) -> vuelos_pb2.RespuestaReserva:
    """A 200 answer becomes ``mensaje="OK"`` plus the full reservation; anything else raises RpcFailure."""
    if response.status != 200:
        raise failure_for_response(response)
    try:
        reserva = reserva_desde_json(response.body)
    except ReglaIncumplida as exc:
        raise RpcFailure(grpc.StatusCode.INTERNAL, f"unexpected answer from AeroAlpes: {exc}") from None
    return vuelos_pb2.RespuestaReserva(mensaje=OK, reserva=reserva_a_proto(reserva))


class VuelosServicer(vuelos_pb2_grpc.VuelosServicer):  # type: ignore[misc]
    def __init__(self, rest: AeroAlpesRest, default_timeout: float = 20.0) -> None:
        self._rest = rest
        self._default_timeout = default_timeout

    def _timeout(self, context: Any) -> float:
        """The client's remaining deadline, or the default timeout when it set none."""
        remaining = context.time_remaining()
        if remaining is None or remaining > NO_DEADLINE_BEYOND:
            return self._default_timeout
        if remaining <= 0.001:
            raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already expired")
        return float(remaining)

    async def _call(
        self, context: Any, request: Callable[[float], Awaitable[RestResponse]]
    ) -> vuelos_pb2.RespuestaReserva:
        timeout = self._timeout(context)
        try:
            response = await request(timeout)
        except AeroAlpesUnreachable as exc:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        except AeroAlpesTimeout as exc:
            raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)) from None
        return respuesta_desde_rest(response)

    @staticmethod
    def _log(rpc: str, code: grpc.StatusCode, started: float) -> None:
        if log.isEnabledFor(logging.INFO):
            ms = round((time.perf_counter() - started) * 1000, 2)
            log.info("rpc", extra={"rpc": rpc, "code": code.name, "ms": ms})

    async def _run(
        self, rpc: str, context: Any, body: Callable[[], Awaitable[vuelos_pb2.RespuestaReserva]]
    ) -> Any:
        """Runs ``body``; logs the RPC before its answer leaves (so the log is in order with it)."""
        started = time.perf_counter()
        try:
            answer = await body()
        except RpcFailure as failure:
            self._log(rpc, failure.code, started)
            await context.abort(failure.code, failure.details)
        except asyncio.CancelledError:
            self._log(rpc, grpc.StatusCode.CANCELLED, started)
            raise
        except Exception:
            log.exception("rpc failed", extra={"rpc": rpc})
            self._log(rpc, grpc.StatusCode.INTERNAL, started)
            await context.abort(grpc.StatusCode.INTERNAL, "internal adapter error")
        self._log(rpc, grpc.StatusCode.OK, started)
        return answer

    async def CrearReserva(self, request: vuelos_pb2.Reserva, context: Any) -> Any:
        async def body() -> vuelos_pb2.RespuestaReserva:
            try:
                cuerpo = itinerarios_a_json(itinerarios_desde_proto(request))
            except ReglaIncumplida as exc:
                raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            return await self._call(context, lambda timeout: self._rest.crear_reserva(cuerpo, timeout))

        return await self._run("CrearReserva", context, body)

    async def ConsultarReserva(self, request: vuelos_pb2.QueryReserva, context: Any) -> Any:
        async def body() -> vuelos_pb2.RespuestaReserva:
            if not request.id.strip():
                raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, "QueryReserva.id is required")
            if len(request.id) > MAX_ID_LENGTH:
                raise RpcFailure(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"QueryReserva.id is longer than {MAX_ID_LENGTH} characters ({len(request.id)})",
                )
            return await self._call(
                context, lambda timeout: self._rest.consultar_reserva(request.id, timeout)
            )

        return await self._run("ConsultarReserva", context, body)
