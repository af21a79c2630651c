"""Create a reservation through the adapter, read it back by the returned id, compare."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from services.adapter.proto_codec import nueva_reserva_a_proto
from services.aeroalpes.domain import Aeropuerto, Itinerario, Leg, Odo, Segmento
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc


@dataclass(frozen=True, slots=True)
class RoundTripResult:
    """``ok`` only when both RPCs succeeded and the reservation read back equals the one created."""

    ok: bool
    message: str
    created: dict[str, Any] | None = None
    fetched: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "created": self.created,
            "fetched": self.fetched,
            "seconds": self.seconds,
        }


def sample_reserva(now: datetime | None = None) -> vuelos_pb2.Reserva:
    """A CrearReserva request: two itineraries (outbound with a connection, and a return), whole seconds."""
    base = (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(days=30)
    bog, jfk, mia = (
        Aeropuerto("BOG", "El Dorado"),
        Aeropuerto("JFK", "John F. Kennedy"),
        Aeropuerto("MIA", "Miami"),
    )

    def leg(origen: Aeropuerto, destino: Aeropuerto, start_h: int, hours: int) -> Leg:
        salida = base + timedelta(hours=start_h)
        return Leg(salida, salida + timedelta(hours=hours), origen, destino)

    ida = Itinerario(odos=(Odo(segmentos=(Segmento(legs=(leg(bog, mia, 0, 4), leg(mia, jfk, 6, 3))),)),))
    vuelta = Itinerario(odos=(Odo(segmentos=(Segmento(legs=(leg(jfk, bog, 24 * 7, 6),)),)),))
    return nueva_reserva_a_proto((ida, vuelta))


RETRY_PAUSE = 0.5  # seconds before the one retry of an UNAVAILABLE call


def _call(method: Any, request: Any, timeout: float, retries: int, **kwargs: Any) -> Any:
    """``method(request)``, again (``retries`` times) when it fails UNAVAILABLE: the adapter or
    AeroAlpes restarting, or a Redis failover that outlasted AeroAlpes's budget."""
    for attempt in range(retries + 1):
        try:
            return method(request, timeout=timeout, **kwargs)
        except grpc.RpcError as exc:
            if attempt == retries or not hasattr(exc, "code") or exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        time.sleep(RETRY_PAUSE)
    raise AssertionError("unreachable")


def _as_dict(message: Any) -> dict[str, Any]:
    return dict(MessageToDict(message, preserving_proto_field_name=True))


def _rpc_error(rpc: str, exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{rpc} failed: {code.name if code else 'ERROR'}: {details}"


def compare(
    sent: vuelos_pb2.Reserva, created: vuelos_pb2.RespuestaReserva, fetched: vuelos_pb2.RespuestaReserva
) -> str | None:
    """Why the round trip does not match, or None when it does."""
    if created.mensaje != "OK" or not created.HasField("reserva"):
        return f"CrearReserva answered mensaje={created.mensaje!r} without a reservation"
    reserva = created.reserva
    if not reserva.id or not reserva.HasField("fecha_creacion"):
        return "CrearReserva answered a reservation without id or fecha_creacion"
    if list(reserva.itinerarios) != list(sent.itinerarios):
        return "the created reservation's itineraries differ from the ones sent"
    if fetched.mensaje != "OK" or not fetched.HasField("reserva"):
        return f"ConsultarReserva answered mensaje={fetched.mensaje!r} without a reservation"
    if fetched.reserva != reserva:
        return f"ConsultarReserva({reserva.id}) returned a different reservation than CrearReserva"
    return None


def roundtrip(
    target: str,
    timeout: float = 10.0,
    *,
    reserva: vuelos_pb2.Reserva | None = None,
    wait_for_ready: bool = False,
    retries: int = 1,
) -> RoundTripResult:
    """CrearReserva then ConsultarReserva(id) against the adapter at ``target`` (host:port).

    ``timeout`` is each RPC's deadline; an RPC that fails UNAVAILABLE is tried ``retries`` more
    times. Never raises for RPC failures: they come back as ``ok=False``.
    """
    sent = reserva if reserva is not None else sample_reserva()
    seconds: dict[str, float] = {}
    with grpc.insecure_channel(target) as channel:
        stub = vuelos_pb2_grpc.VuelosStub(channel)
        started = time.perf_counter()
        try:
            created = _call(stub.CrearReserva, sent, timeout, retries, wait_for_ready=wait_for_ready)
        except grpc.RpcError as exc:
            return RoundTripResult(False, _rpc_error("CrearReserva", exc))
        seconds["crear"] = round(time.perf_counter() - started, 6)
        created_dict = _as_dict(created)
        if not created.reserva.id:
            return RoundTripResult(
                False, "CrearReserva returned no reservation id", created_dict, None, seconds
            )
        started = time.perf_counter()
        try:
            fetched = _call(
                stub.ConsultarReserva, vuelos_pb2.QueryReserva(id=created.reserva.id), timeout, retries
            )
        except grpc.RpcError as exc:
            return RoundTripResult(False, _rpc_error("ConsultarReserva", exc), created_dict, None, seconds)
        seconds["consultar"] = round(time.perf_counter() - started, 6)
    problem = compare(sent, created, fetched)
    return RoundTripResult(
        ok=problem is None,
        message=problem or f"reservation {created.reserva.id} created and read back identical",
        created=created_dict,
        fetched=_as_dict(fetched),
        seconds=seconds,
    )


def lookup_probe(target: str, timeout: float = 10.0, retries: int = 1) -> RoundTripResult:
    """Read-only: ConsultarReserva of an id no reservation can have (ids are UUIDs). NOT_FOUND proves
    the whole path (adapter -> AeroAlpes -> Redis Cluster) without writing anything."""
    probe_id = f"nr-probe-{uuid.uuid4().hex}"
    started = time.perf_counter()
    with grpc.insecure_channel(target) as channel:
        stub = vuelos_pb2_grpc.VuelosStub(channel)
        try:
            _call(stub.ConsultarReserva, vuelos_pb2.QueryReserva(id=probe_id), timeout, retries)
        except grpc.RpcError as exc:
            seconds = {"consultar": round(time.perf_counter() - started, 6)}
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return RoundTripResult(
                    True, f"unknown id {probe_id} answered NOT_FOUND (read-only)", seconds=seconds
                )
            return RoundTripResult(False, _rpc_error("ConsultarReserva", exc), seconds=seconds)
    return RoundTripResult(False, f"ConsultarReserva({probe_id}) found a reservation that cannot exist")
