"""The reservation domain: immutable dataclasses and the business rules. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


class ReglaIncumplida(ValueError):
    """A business (or input) rule was broken. ``str()`` is ``"<Regla> - <mensaje>"``."""

    def __init__(self, regla: str, mensaje: str) -> None:
        super().__init__(f"{regla} - {mensaje}")
        self.regla = regla
        self.mensaje = mensaje


@dataclass(frozen=True, slots=True)
class Aeropuerto:
    codigo: str
    nombre: str


@dataclass(frozen=True, slots=True)
class Leg:
    fecha_salida: datetime
    fecha_llegada: datetime
    origen: Aeropuerto
    destino: Aeropuerto


@dataclass(frozen=True, slots=True)
class Segmento:
    legs: tuple[Leg, ...]


@dataclass(frozen=True, slots=True)
class Odo:
    segmentos: tuple[Segmento, ...]


@dataclass(frozen=True, slots=True)
class Itinerario:
    odos: tuple[Odo, ...]

    def legs(self) -> tuple[Leg, ...]:
        return tuple(leg for odo in self.odos for segmento in odo.segmentos for leg in segmento.legs)


@dataclass(frozen=True, slots=True)
class Reserva:
    id: str
    fecha_creacion: datetime
    fecha_actualizacion: datetime
    itinerarios: tuple[Itinerario, ...]


# Rule names, as they appear in error messages ("<Regla> - <mensaje>").
MINIMO_UN_ITINERARIO = "MinimoUnItinerario"
RUTA_VALIDA = "RutaValida"
FECHAS_VALIDAS = "FechasValidas"
FECHA_UTC = "FechaUTC"


def _check_utc(valor: datetime, campo: str) -> None:
    if valor.tzinfo is None or valor.utcoffset() != timedelta(0):
        raise ReglaIncumplida(FECHA_UTC, f"{campo} must be a UTC instant, got {valor.isoformat()}")


def validar_leg(leg: Leg) -> None:
    """A leg goes somewhere else, and lands after it takes off."""
    _check_utc(leg.fecha_salida, "fecha_salida")
    _check_utc(leg.fecha_llegada, "fecha_llegada")
    if leg.origen.codigo == leg.destino.codigo:
        raise ReglaIncumplida(
            RUTA_VALIDA, f"origin and destination of a leg must differ (both are {leg.origen.codigo})"
        )
    if leg.fecha_llegada <= leg.fecha_salida:
        raise ReglaIncumplida(
            FECHAS_VALIDAS,
            f"arrival must be after departure on leg {leg.origen.codigo}->{leg.destino.codigo}",
        )


def validar_itinerarios(itinerarios: tuple[Itinerario, ...]) -> None:
    """All the rules a new reservation's itineraries must satisfy; raises :class:`ReglaIncumplida`."""
    if not itinerarios:
        raise ReglaIncumplida(MINIMO_UN_ITINERARIO, "a reservation needs at least one itinerary")
    for itinerario in itinerarios:
        for leg in itinerario.legs():
            validar_leg(leg)


def crear_reserva(itinerarios: tuple[Itinerario, ...], *, id: str, ahora: datetime) -> Reserva:
    """A new, valid reservation created at ``ahora`` (whole seconds: the wire format has no fraction)."""
    validar_itinerarios(itinerarios)
    _check_utc(ahora, "ahora")
    instante = ahora.replace(microsecond=0)
    return Reserva(id=id, fecha_creacion=instante, fecha_actualizacion=instante, itinerarios=itinerarios)
