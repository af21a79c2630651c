"""Mapping between proto, domain and JSON: a 2-itinerary reservation with several legs, exact times."""

from __future__ import annotations

import pytest
from aeroalpes_testdata import two_itineraries, two_itineraries_json, utc
from google.protobuf.timestamp_pb2 import Timestamp

from services.adapter import proto_codec
from services.aeroalpes import codec
from services.aeroalpes.domain import ReglaIncumplida, Reserva
from services.vuelos_pb import vuelos_pb2

RESERVA = Reserva(
    id="3b241101-e2bb-4255-8caf-4136c566a962",
    fecha_creacion=utc("2024-02-29T23:59:59Z"),
    fecha_actualizacion=utc("2024-03-01T00:00:01Z"),
    itinerarios=two_itineraries(),
)


def test_domain_to_proto_has_exact_timestamps_and_names() -> None:
    pb = proto_codec.reserva_a_proto(RESERVA)
    assert pb.id == RESERVA.id
    assert pb.fecha_creacion == Timestamp(seconds=1709251199)
    assert pb.fecha_actualizacion.ToJsonString() == "2024-03-01T00:00:01Z"
    assert len(pb.itinerarios) == 2
    assert [len(it.odos) for it in pb.itinerarios] == [2, 1]
    first, second = pb.itinerarios[0].odos[0].segmentos[0].legs
    assert first.fecha_salida == Timestamp(seconds=1669122600)  # 2022-11-22T13:10:00Z
    assert (first.origen.codigo, first.origen.nombre) == ("BOG", "El Dorado")
    assert (second.destino.codigo, second.destino.nombre) == ("JFK", "John F. Kennedy")
    assert not pb.itinerarios[0].HasField("id")


def test_proto_domain_json_round_trip() -> None:
    pb = proto_codec.reserva_a_proto(RESERVA)
    wire = vuelos_pb2.Reserva.FromString(pb.SerializeToString())
    dominio = proto_codec.reserva_desde_proto(wire)
    assert dominio == RESERVA
    as_json = codec.reserva_a_json(dominio)
    assert as_json["itinerarios"] == two_itineraries_json()
    assert as_json["fecha_creacion"] == "2024-02-29T23:59:59Z"
    back = proto_codec.reserva_a_proto(codec.reserva_desde_json(as_json))
    assert back == pb
    assert back.SerializeToString(deterministic=True) == pb.SerializeToString(deterministic=True)


def test_create_request_maps_to_the_rest_body() -> None:
    request = proto_codec.nueva_reserva_a_proto(two_itineraries())
    assert not request.HasField("id") and not request.HasField("fecha_creacion")
    body = codec.itinerarios_a_json(proto_codec.itinerarios_desde_proto(request))
    assert body == {"itinerarios": two_itineraries_json()}


def test_sub_second_nanos_are_truncated() -> None:
    request = proto_codec.nueva_reserva_a_proto(two_itineraries())
    request.itinerarios[0].odos[0].segmentos[0].legs[0].fecha_salida.nanos = 999_999_999
    itinerarios = proto_codec.itinerarios_desde_proto(request)
    assert itinerarios[0].legs()[0].fecha_salida == utc("2022-11-22T13:10:00Z")


@pytest.mark.parametrize("campo", ["fecha_salida", "fecha_llegada"])
def test_missing_leg_timestamp_is_invalid(campo: str) -> None:
    request = proto_codec.nueva_reserva_a_proto(two_itineraries())
    request.itinerarios[1].odos[0].segmentos[0].legs[0].ClearField(campo)
    with pytest.raises(ReglaIncumplida) as err:
        proto_codec.itinerarios_desde_proto(request)
    assert err.value.regla == "FechaInvalida"
    assert f"itinerarios[1].odos[0].segmentos[0].legs[0].{campo} is missing" in err.value.mensaje


def test_out_of_range_timestamp_is_invalid() -> None:
    request = proto_codec.nueva_reserva_a_proto(two_itineraries())
    request.itinerarios[0].odos[0].segmentos[0].legs[0].fecha_salida.seconds = 10**15
    with pytest.raises(ReglaIncumplida) as err:
        proto_codec.itinerarios_desde_proto(request)
    assert err.value.regla == "FechaInvalida"


def test_incomplete_reservation_is_reported() -> None:
    with pytest.raises(ReglaIncumplida, match="missing id, fecha_creacion, fecha_actualizacion"):
        proto_codec.reserva_desde_proto(vuelos_pb2.Reserva())
