"""Mapping between the ``vuelos`` protobuf messages and the domain. Pure functions.

Timestamps: the REST contract has whole seconds, so sub-second ``nanos`` are dropped (truncated)
on the way in. ``Itinerario.id`` has no REST counterpart and is ignored; so are the id and
timestamps of a ``Reserva`` sent to CrearReserva (the service assigns them).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.aeroalpes.codec import FECHA_INVALIDA
from services.aeroalpes.domain import Aeropuerto, Itinerario, Leg, Odo, ReglaIncumplida, Reserva, Segmento
from services.vuelos_pb import vuelos_pb2


def timestamp_a_fecha(ts: Timestamp, ruta: str = "timestamp") -> datetime:
    try:
        return datetime.fromtimestamp(ts.seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ReglaIncumplida(FECHA_INVALIDA, f"{ruta} is out of range ({ts.seconds} s)") from None


def fecha_a_timestamp(fecha: datetime) -> Timestamp:
    return Timestamp(seconds=int(fecha.timestamp()))


def _fecha_requerida(leg: vuelos_pb2.Leg, campo: str, ruta: str) -> datetime:
    if not leg.HasField(campo):
        raise ReglaIncumplida(FECHA_INVALIDA, f"{ruta}.{campo} is missing")
    return timestamp_a_fecha(getattr(leg, campo), f"{ruta}.{campo}")


def _locacion(loc: vuelos_pb2.Locacion) -> Aeropuerto:
    return Aeropuerto(codigo=loc.codigo, nombre=loc.nombre)


def leg_desde_proto(leg: vuelos_pb2.Leg, ruta: str) -> Leg:
    return Leg(
        fecha_salida=_fecha_requerida(leg, "fecha_salida", ruta),
        fecha_llegada=_fecha_requerida(leg, "fecha_llegada", ruta),
        origen=_locacion(leg.origen),
        destino=_locacion(leg.destino),
    )


def itinerario_desde_proto(it: vuelos_pb2.Itinerario, ruta: str) -> Itinerario:
    return Itinerario(
        odos=tuple(
            Odo(
                segmentos=tuple(
                    Segmento(
                        legs=tuple(
                            leg_desde_proto(leg, f"{ruta}.odos[{i}].segmentos[{j}].legs[{k}]")
                            for k, leg in enumerate(seg.legs)
                        )
                    )
                    for j, seg in enumerate(odo.segmentos)
                )
            )
            for i, odo in enumerate(it.odos)
        )
    )


def itinerarios_desde_proto(reserva: vuelos_pb2.Reserva) -> tuple[Itinerario, ...]:
    """The itineraries of a CrearReserva request; a missing leg timestamp raises ``FechaInvalida``."""
    return tuple(itinerario_desde_proto(it, f"itinerarios[{i}]") for i, it in enumerate(reserva.itinerarios))


def reserva_desde_proto(reserva: vuelos_pb2.Reserva) -> Reserva:
    """A complete reservation (as answered by the adapter)."""
    faltan = [c for c in ("id", "fecha_creacion", "fecha_actualizacion") if not reserva.HasField(c)]
    if faltan:
        raise ReglaIncumplida("ReservaIncompleta", f"missing {', '.join(faltan)}")
    return Reserva(
        id=reserva.id,
        fecha_creacion=timestamp_a_fecha(reserva.fecha_creacion),
        fecha_actualizacion=timestamp_a_fecha(reserva.fecha_actualizacion),
        itinerarios=itinerarios_desde_proto(reserva),
    )


def leg_a_proto(leg: Leg) -> vuelos_pb2.Leg:
    return vuelos_pb2.Leg(
        fecha_salida=fecha_a_timestamp(leg.fecha_salida),
        fecha_llegada=fecha_a_timestamp(leg.fecha_llegada),
        origen=vuelos_pb2.Locacion(codigo=leg.origen.codigo, nombre=leg.origen.nombre),
        destino=vuelos_pb2.Locacion(codigo=leg.destino.codigo, nombre=leg.destino.nombre),
    )


def itinerario_a_proto(it: Itinerario) -> vuelos_pb2.Itinerario:
    return vuelos_pb2.Itinerario(
        odos=[
            vuelos_pb2.Odo(
                segmentos=[
                    vuelos_pb2.Segmento(legs=[leg_a_proto(leg) for leg in seg.legs]) for seg in odo.segmentos
                ]
            )
            for odo in it.odos
        ]
    )


def reserva_a_proto(reserva: Reserva) -> vuelos_pb2.Reserva:
    return vuelos_pb2.Reserva(
        id=reserva.id,
        fecha_creacion=fecha_a_timestamp(reserva.fecha_creacion),
        fecha_actualizacion=fecha_a_timestamp(reserva.fecha_actualizacion),
        itinerarios=[itinerario_a_proto(it) for it in reserva.itinerarios],
    )


def nueva_reserva_a_proto(itinerarios: tuple[Itinerario, ...]) -> vuelos_pb2.Reserva:
    """A CrearReserva request for these itineraries."""
    return vuelos_pb2.Reserva(itinerarios=[itinerario_a_proto(it) for it in itinerarios])
