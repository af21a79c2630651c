"""JSON mapping of the domain: exact date format, airport names, errors with a path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aeroalpes_testdata import two_itineraries, two_itineraries_json, utc

from services.aeroalpes import codec
from services.aeroalpes.domain import ReglaIncumplida, Reserva


def reserva() -> Reserva:
    return Reserva(
        id="0f8fad5b-d9cb-469f-a165-70867728950e",
        fecha_creacion=utc("2024-01-02T03:04:05Z"),
        fecha_actualizacion=utc("2024-01-02T03:04:06Z"),
        itinerarios=two_itineraries(),
    )


def test_dates_are_iso8601_utc_whole_seconds() -> None:
    assert codec.formatear_fecha(utc("2022-11-22T13:10:00Z")) == "2022-11-22T13:10:00Z"
    bogota = timezone(timedelta(hours=-5))
    assert codec.formatear_fecha(datetime(2022, 11, 22, 8, 10, tzinfo=bogota)) == "2022-11-22T13:10:00Z"
    assert codec.leer_fecha("2022-11-22T13:10:00Z", "f") == datetime(2022, 11, 22, 13, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2022-11-22 13:10:00",
        "2022-11-22T13:10:00",
        "2022-11-22T13:10:00+00:00",
        "2022-11-22T13:10:00.5Z",
        "Tue, 22 Nov 2022 13:10:00 GMT",
        "2022-13-01T00:00:00Z",
        "2022-02-30T00:00:00Z",
        "",
        None,
        1669122600,
    ],
)
def test_bad_dates_are_rejected(value: object) -> None:
    with pytest.raises(ReglaIncumplida) as err:
        codec.leer_fecha(value, "itinerarios[0].odos[0].segmentos[0].legs[0].fecha_salida")
    assert err.value.regla == "FechaInvalida"
    assert "legs[0].fecha_salida" in err.value.mensaje


def test_reservation_json_shape_is_exact() -> None:
    assert codec.reserva_a_json(reserva()) == {
        "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "fecha_creacion": "2024-01-02T03:04:05Z",
        "fecha_actualizacion": "2024-01-02T03:04:06Z",
        "itinerarios": two_itineraries_json(),
    }


def test_reservation_json_round_trip() -> None:
    text = json.dumps(codec.reserva_a_json(reserva()))
    assert codec.reserva_desde_json(json.loads(text)) == reserva()


def test_post_body_parses_to_domain_with_names() -> None:
    itinerarios = codec.itinerarios_desde_json({"itinerarios": two_itineraries_json()})
    assert itinerarios == two_itineraries()
    assert itinerarios[1].legs()[0].origen.nombre == "Adolfo Suárez Madrid-Barajas"
    assert codec.itinerarios_a_json(itinerarios) == {"itinerarios": two_itineraries_json()}


def test_missing_airport_name_becomes_empty_but_code_is_required() -> None:
    body: dict[str, Any] = {"itinerarios": two_itineraries_json()}
    del body["itinerarios"][0]["odos"][0]["segmentos"][0]["legs"][1]["destino"]["nombre"]
    assert codec.itinerarios_desde_json(body)[0].legs()[1].destino.nombre == ""
    body["itinerarios"][0]["odos"][0]["segmentos"][0]["legs"][1]["destino"]["codigo"] = " "
    with pytest.raises(ReglaIncumplida) as err:
        codec.itinerarios_desde_json(body)
    assert err.value.regla == "FormatoInvalido"
    assert "itinerarios[0].odos[0].segmentos[0].legs[1].destino.codigo" in err.value.mensaje


@pytest.mark.parametrize(
    ("body", "regla"),
    [
        ({}, "MinimoUnItinerario"),
        ({"itinerarios": []}, "MinimoUnItinerario"),
        ({"itinerarios": None}, "MinimoUnItinerario"),
        ([], "FormatoInvalido"),
        ("texto", "FormatoInvalido"),
        ({"itinerarios": {"odos": []}}, "FormatoInvalido"),
        ({"itinerarios": [{"odos": [{"segmentos": [{"legs": [{}]}]}]}]}, "FechaInvalida"),
        ({"itinerarios": [{"odos": [{"segmentos": "x"}]}]}, "FormatoInvalido"),
        ({"itinerarios": [{}]}, "FormatoInvalido"),
    ],
)
def test_malformed_bodies(body: object, regla: str) -> None:
    with pytest.raises(ReglaIncumplida) as err:
        codec.itinerarios_desde_json(body)
    assert err.value.regla == regla


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b"\xff\xfe"])
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(ReglaIncumplida) as err:
        codec.leer_cuerpo(raw)
    assert err.value.regla == "JSONInvalido"
