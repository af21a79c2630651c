"""Create a reservation through the adapter, read it back by the returned id, compare (the read-only
probe is :mod:`services.client.probe`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from services.adapter.proto_codec import nueva_reserva_a_proto
from services.aeroalpes.domain import Aeropuerto, Itinerario, Leg, Odo, Segmento
from services.client.probe import RoundTripResult, call, rpc_error
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc


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


def _as_dict(message: Any) -> dict[str, Any]:
    return dict(MessageToDict(message, preserving_proto_field_name=True))


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
            created = call(stub.CrearReserva, sent, timeout, retries, wait_for_ready=wait_for_ready)
        except grpc.RpcError as exc:
            return RoundTripResult(False, rpc_error("CrearReserva", exc))
        seconds["crear"] = round(time.perf_counter() - started, 6)
        created_dict = _as_dict(created)
        if not created.reserva.id:
            return RoundTripResult(
                False, "CrearReserva returned no reservation id", created_dict, None, seconds
            )
        started = time.perf_counter()
        try:
            fetched = call(
                stub.ConsultarReserva, vuelos_pb2.QueryReserva(id=created.reserva.id), timeout, retries
            )
        except grpc.RpcError as exc:
            return RoundTripResult(False, rpc_error("ConsultarReserva", exc), created_dict, None, seconds)
        seconds["consultar"] = round(time.perf_counter() - started, 6)
    problem = compare(sent, created, fetched)
    return RoundTripResult(
        ok=problem is None,
        message=problem or f"reservation {created.reserva.id} created and read back identical",
        created=created_dict,
        fetched=_as_dict(fetched),
        seconds=seconds,
    )
