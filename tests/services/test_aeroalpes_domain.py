"""Business rules of the reservation domain (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aeroalpes_testdata import BOG, JFK, two_itineraries, utc

from services.aeroalpes.domain import (
    Itinerario,
    Leg,
    Odo,
    ReglaIncumplida,
    Segmento,
    crear_reserva,
    validar_itinerarios,
)


def one_leg_itinerary(leg: Leg) -> Itinerario:
    return Itinerario(odos=(Odo(segmentos=(Segmento(legs=(leg,)),)),))


def test_crear_reserva_keeps_id_itineraries_and_whole_second_times() -> None:
    ahora = datetime(2024, 3, 1, 12, 30, 15, 987654, tzinfo=UTC)
    reserva = crear_reserva(two_itineraries(), id="r-1", ahora=ahora)
    assert reserva.id == "r-1"
    assert reserva.itinerarios == two_itineraries()
    assert (
        reserva.fecha_creacion == reserva.fecha_actualizacion == datetime(2024, 3, 1, 12, 30, 15, tzinfo=UTC)
    )


def test_at_least_one_itinerary() -> None:
    with pytest.raises(ReglaIncumplida) as err:
        crear_reserva((), id="r", ahora=datetime.now(UTC))
    assert err.value.regla == "MinimoUnItinerario"
    assert str(err.value).startswith("MinimoUnItinerario - ")


def test_origin_must_differ_from_destination_in_any_leg() -> None:
    ida, vuelta = two_itineraries()
    leg = vuelta.legs()[0]
    bad = one_leg_itinerary(replace(leg, destino=leg.origen))
    with pytest.raises(ReglaIncumplida) as err:
        validar_itinerarios((ida, bad))
    assert err.value.regla == "RutaValida"
    assert "MAD" in err.value.mensaje


@pytest.mark.parametrize("hours", [0, -2])
def test_arrival_must_follow_departure(hours: int) -> None:
    salida = utc("2022-11-22T13:10:00Z")
    leg = Leg(salida, salida + timedelta(hours=hours), BOG, JFK)
    with pytest.raises(ReglaIncumplida) as err:
        validar_itinerarios((one_leg_itinerary(leg),))
    assert err.value.regla == "FechasValidas"


def test_dates_must_be_utc_instants() -> None:
    naive = Leg(datetime(2022, 1, 1, 10), datetime(2022, 1, 1, 12), BOG, JFK)
    with pytest.raises(ReglaIncumplida) as err:
        validar_itinerarios((one_leg_itinerary(naive),))
    assert err.value.regla == "FechaUTC"
    bogota = timezone(timedelta(hours=-5))
    shifted = Leg(datetime(2022, 1, 1, 10, tzinfo=bogota), datetime(2022, 1, 1, 12, tzinfo=bogota), BOG, JFK)
    with pytest.raises(ReglaIncumplida):
        validar_itinerarios((one_leg_itinerary(shifted),))


def test_valid_itineraries_pass() -> None:
    validar_itinerarios(two_itineraries())
    assert len(two_itineraries()[0].legs()) == 3
