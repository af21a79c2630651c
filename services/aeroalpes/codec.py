"""JSON mapping of the domain (the REST wire format). Pure functions.

Dates travel as ``%Y-%m-%dT%H:%M:%SZ`` (UTC, whole seconds). Input errors raise
:class:`~services.aeroalpes.domain.ReglaIncumplida` with a path to the offending field.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from services.aeroalpes.domain import (
    MINIMO_UN_ITINERARIO,
    Aeropuerto,
    Itinerario,
    Leg,
    Odo,
    ReglaIncumplida,
    Reserva,
    Segmento,
)

FORMATO_FECHA = "%Y-%m-%dT%H:%M:%SZ"
FECHA_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")

JSON_INVALIDO = "JSONInvalido"
FORMATO_INVALIDO = "FormatoInvalido"
FECHA_INVALIDA = "FechaInvalida"

JsonObject = dict[str, Any]


def formatear_fecha(valor: datetime) -> str:
    v = valor.astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"


def leer_fecha(valor: object, campo: str) -> datetime:
    """Parses ``YYYY-MM-DDTHH:MM:SSZ`` strictly (UTC)."""
    found = FECHA_RE.fullmatch(valor) if isinstance(valor, str) else None
    if found is None:
        raise ReglaIncumplida(
            FECHA_INVALIDA, f"{campo} must be a date like 2022-11-22T13:10:00Z, got {valor!r}"
        )
    try:
        y, mo, d, h, mi, sec = map(int, found.groups())
        return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
    except ValueError as exc:
        raise ReglaIncumplida(FECHA_INVALIDA, f"{campo}: {valor!r} is not a valid date ({exc})") from None


def leer_cuerpo(datos: bytes) -> object:
    """Decodes a request body; malformed (or absurdly deeply nested) JSON raises ``JSONInvalido``."""
    try:
        return json.loads(datos)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReglaIncumplida(JSON_INVALIDO, f"the body is not valid JSON ({exc})") from None
    except RecursionError:
        raise ReglaIncumplida(JSON_INVALIDO, "the body is nested too deeply") from None


# --- typed access with a readable path ---------------------------------------------------------


def _objeto(valor: object, campo: str) -> JsonObject:
    if not isinstance(valor, dict):
        raise ReglaIncumplida(FORMATO_INVALIDO, f"{campo} must be a JSON object")
    return valor


def _lista(objeto: JsonObject, clave: str, campo: str) -> list[Any]:
    valor = objeto.get(clave)
    if not isinstance(valor, list):
        raise ReglaIncumplida(FORMATO_INVALIDO, f"{campo}.{clave} must be a list")
    return valor


def _texto(objeto: JsonObject, clave: str, campo: str, *, requerido: bool) -> str:
    valor = objeto.get(clave, None if requerido else "")
    if not isinstance(valor, str) or (requerido and not valor.strip()):
        tipo = "a non-empty string" if requerido else "a string"
        raise ReglaIncumplida(FORMATO_INVALIDO, f"{campo}.{clave} must be {tipo}")
    return valor


# --- JSON -> domain ----------------------------------------------------------------------------


def aeropuerto_desde_json(valor: object, campo: str) -> Aeropuerto:
    obj = _objeto(valor, campo)
    return Aeropuerto(
        codigo=_texto(obj, "codigo", campo, requerido=True),
        nombre=_texto(obj, "nombre", campo, requerido=False),
    )


def leg_desde_json(valor: object, campo: str) -> Leg:
    obj = _objeto(valor, campo)
    return Leg(
        fecha_salida=leer_fecha(obj.get("fecha_salida"), f"{campo}.fecha_salida"),
        fecha_llegada=leer_fecha(obj.get("fecha_llegada"), f"{campo}.fecha_llegada"),
        origen=aeropuerto_desde_json(obj.get("origen"), f"{campo}.origen"),
        destino=aeropuerto_desde_json(obj.get("destino"), f"{campo}.destino"),
    )


def itinerario_desde_json(valor: object, campo: str) -> Itinerario:
    obj = _objeto(valor, campo)
    odos = []
    for i, odo in enumerate(_lista(obj, "odos", campo)):
        odo_campo = f"{campo}.odos[{i}]"
        segmentos = []
        for j, seg in enumerate(_lista(_objeto(odo, odo_campo), "segmentos", odo_campo)):
            seg_campo = f"{odo_campo}.segmentos[{j}]"
            legs = _lista(_objeto(seg, seg_campo), "legs", seg_campo)
            segmentos.append(
                Segmento(
                    legs=tuple(leg_desde_json(leg, f"{seg_campo}.legs[{k}]") for k, leg in enumerate(legs))
                )
            )
        odos.append(Odo(segmentos=tuple(segmentos)))
    return Itinerario(odos=tuple(odos))


def itinerarios_desde_json(cuerpo: object) -> tuple[Itinerario, ...]:
    """The itineraries of a ``POST /vuelos/reserva`` body (format checks only; rules are the domain's)."""
    obj = _objeto(cuerpo, "body")
    crudo = obj.get("itinerarios")
    if crudo is None or crudo == []:
        raise ReglaIncumplida(MINIMO_UN_ITINERARIO, "a reservation needs at least one itinerary")
    if not isinstance(crudo, list):
        raise ReglaIncumplida(FORMATO_INVALIDO, "body.itinerarios must be a list")
    return tuple(itinerario_desde_json(it, f"itinerarios[{i}]") for i, it in enumerate(crudo))


def reserva_desde_json(valor: object) -> Reserva:
    """A stored or returned reservation (strict: every field present)."""
    obj = _objeto(valor, "reserva")
    return Reserva(
        id=_texto(obj, "id", "reserva", requerido=True),
        fecha_creacion=leer_fecha(obj.get("fecha_creacion"), "reserva.fecha_creacion"),
        fecha_actualizacion=leer_fecha(obj.get("fecha_actualizacion"), "reserva.fecha_actualizacion"),
        itinerarios=tuple(
            itinerario_desde_json(it, f"itinerarios[{i}]")
            for i, it in enumerate(_lista(obj, "itinerarios", "reserva"))
        ),
    )


# --- domain -> JSON ----------------------------------------------------------------------------


def aeropuerto_a_json(aeropuerto: Aeropuerto) -> JsonObject:
    return {"codigo": aeropuerto.codigo, "nombre": aeropuerto.nombre}


def leg_a_json(leg: Leg) -> JsonObject:
    return {
        "fecha_salida": formatear_fecha(leg.fecha_salida),
        "fecha_llegada": formatear_fecha(leg.fecha_llegada),
        "origen": aeropuerto_a_json(leg.origen),
        "destino": aeropuerto_a_json(leg.destino),
    }


def itinerario_a_json(itinerario: Itinerario) -> JsonObject:
    return {
        "odos": [
            {"segmentos": [{"legs": [leg_a_json(leg) for leg in seg.legs]} for seg in odo.segmentos]}
            for odo in itinerario.odos
        ]
    }


def itinerarios_a_json(itinerarios: tuple[Itinerario, ...]) -> JsonObject:
    """The body of a ``POST /vuelos/reserva``."""
    return {"itinerarios": [itinerario_a_json(it) for it in itinerarios]}


def reserva_a_json(reserva: Reserva) -> JsonObject:
    return {
        "id": reserva.id,
        "fecha_creacion": formatear_fecha(reserva.fecha_creacion),
        "fecha_actualizacion": formatear_fecha(reserva.fecha_actualizacion),
        "itinerarios": [itinerario_a_json(it) for it in reserva.itinerarios],
    }
