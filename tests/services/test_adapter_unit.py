"""The adapter in-process against a stub REST server: status codes, deadlines, pooling, health,
reflection and graceful shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from aeroalpes_testdata import StubRest, two_itineraries, two_itineraries_json
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.adapter.config import Settings
from services.adapter.proto_codec import nueva_reserva_a_proto
from services.adapter.rest import RestResponse
from services.adapter.server import AdapterServer, start
from services.adapter.servicer import RpcFailure, respuesta_desde_rest, status_for_http
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc

STORED = {
    "id": "abc",
    "fecha_creacion": "2024-01-01T00:00:00Z",
    "fecha_actualizacion": "2024-01-01T00:00:01Z",
    "itinerarios": two_itineraries_json(),
}


@pytest.mark.parametrize(
    ("http", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (404, grpc.StatusCode.NOT_FOUND),
        (503, grpc.StatusCode.UNAVAILABLE),
        (502, grpc.StatusCode.UNAVAILABLE),
        (500, grpc.StatusCode.INTERNAL),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (414, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_http_status_to_grpc_code(http: int, code: grpc.StatusCode) -> None:
    assert status_for_http(http) == code


def test_rest_answers_become_responses_or_failures() -> None:
    ok = respuesta_desde_rest(RestResponse(200, STORED, ""))
    assert ok.mensaje == "OK"
    assert ok.reserva.id == "abc"
    assert ok.reserva.fecha_actualizacion.seconds == 1704067201
    assert len(ok.reserva.itinerarios) == 2
    with pytest.raises(RpcFailure) as bad:
        respuesta_desde_rest(RestResponse(400, {"error": "RutaValida - same airport"}, ""))
    assert (bad.value.code, bad.value.details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "RutaValida - same airport",
    )
    with pytest.raises(RpcFailure) as html:
        respuesta_desde_rest(RestResponse(500, None, "<html>"))
    assert html.value.details == "AeroAlpes answered HTTP 500"
    with pytest.raises(RpcFailure) as garbage:
        respuesta_desde_rest(RestResponse(200, {"id": "x"}, ""))
    assert garbage.value.code == grpc.StatusCode.INTERNAL


@pytest.fixture
def running(stub_rest: StubRest) -> Iterator[AdapterServer]:
    server = start(
        Settings(aeroalpes_url=stub_rest.url, host="127.0.0.1", port=0, rest_timeout=0.5, workers=4)
    )
    yield server
    server.stop(0)


@pytest.fixture
def channel(running: AdapterServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        yield ch


def crear(channel: grpc.Channel, **kwargs: Any) -> Any:
    return vuelos_pb2_grpc.VuelosStub(channel).CrearReserva(
        nueva_reserva_a_proto(two_itineraries()), **kwargs
    )


def test_create_and_query_go_through_rest(stub_rest: StubRest, channel: grpc.Channel) -> None:
    stub_rest.body = STORED
    answer = crear(channel, timeout=5)
    assert answer.mensaje == "OK" and answer.reserva.id == "abc"
    stub = vuelos_pb2_grpc.VuelosStub(channel)
    assert stub.ConsultarReserva(vuelos_pb2.QueryReserva(id="a/b c"), timeout=5).reserva.id == "abc"
    assert stub_rest.requests == [("POST", "/vuelos/reserva"), ("GET", "/vuelos/reserva/a%2Fb%20c")]


def test_connections_are_pooled(stub_rest: StubRest, channel: grpc.Channel) -> None:
    stub_rest.body = STORED
    for _ in range(6):
        crear(channel, timeout=5)
    assert len(stub_rest.requests) == 6
    assert stub_rest.connections == 1


def test_client_deadline_is_honoured(stub_rest: StubRest, channel: grpc.Channel) -> None:
    stub_rest.body, stub_rest.delay = STORED, 3.0
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        crear(channel, timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5
    assert stub_rest.requests == [("POST", "/vuelos/reserva")]


def test_the_client_deadline_is_passed_to_aeroalpes(stub_rest: StubRest, channel: grpc.Channel) -> None:
    stub_rest.body = STORED
    crear(channel, timeout=3)
    sent = float(stub_rest.headers[0]["x-request-timeout"])
    assert 2.5 < sent < 3.0  # what is left of the deadline, less a margin for the answer's way back
    crear(channel)  # no deadline: the adapter's own timeout (0.5 s in this fixture)
    assert 0.3 < float(stub_rest.headers[1]["x-request-timeout"]) <= 0.45


def test_an_overlong_id_is_refused_before_calling_rest(stub_rest: StubRest, channel: grpc.Channel) -> None:
    stub = vuelos_pb2_grpc.VuelosStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ConsultarReserva(vuelos_pb2.QueryReserva(id="x" * 129), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "longer than 128" in err.value.details()
    assert stub_rest.requests == []


def test_default_timeout_without_client_deadline(stub_rest: StubRest, channel: grpc.Channel) -> None:
    stub_rest.body, stub_rest.delay = STORED, 3.0
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        crear(channel)  # no deadline: the adapter's 0.5 s default applies
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not answer within 0.5s" in err.value.details()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("status", "body", "code", "details"),
    [
        (
            400,
            {"error": "MinimoUnItinerario - none"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "MinimoUnItinerario - none",
        ),
        (404, {"error": "ReservaNoEncontrada - x"}, grpc.StatusCode.NOT_FOUND, "ReservaNoEncontrada - x"),
        (
            503,
            {"error": "AlmacenamientoNoDisponible - r"},
            grpc.StatusCode.UNAVAILABLE,
            "AlmacenamientoNoDisponible",
        ),
    ],
)
def test_rest_errors_become_status_codes(
    stub_rest: StubRest, channel: grpc.Channel, status: int, body: Any, code: grpc.StatusCode, details: str
) -> None:
    stub_rest.status, stub_rest.body = status, body
    with pytest.raises(grpc.RpcError) as err:
        vuelos_pb2_grpc.VuelosStub(channel).ConsultarReserva(vuelos_pb2.QueryReserva(id="x"), timeout=5)
    assert err.value.code() == code
    assert details in err.value.details()


def test_input_checked_before_calling_rest(stub_rest: StubRest, channel: grpc.Channel) -> None:
    stub = vuelos_pb2_grpc.VuelosStub(channel)
    with pytest.raises(grpc.RpcError) as empty_id:
        stub.ConsultarReserva(vuelos_pb2.QueryReserva(id=" "), timeout=5)
    assert empty_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = nueva_reserva_a_proto(two_itineraries())
    request.itinerarios[0].odos[0].segmentos[0].legs[0].ClearField("fecha_llegada")
    with pytest.raises(grpc.RpcError) as no_date:
        stub.CrearReserva(request, timeout=5)
    assert no_date.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert no_date.value.details().startswith("FechaInvalida - itinerarios[0]")
    assert stub_rest.requests == []


def test_health_reflection_and_graceful_shutdown(running: AdapterServer, channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "vuelos.Vuelos"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert {"vuelos.Vuelos", "grpc.health.v1.Health"} <= set(services)
    running.stop(0.5)
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_client_tries_an_unavailable_call_once_more(stub_rest: StubRest, running: AdapterServer) -> None:
    from services.client.probe import lookup_probe
    from services.client.roundtrip import roundtrip

    target = f"127.0.0.1:{running.port}"
    stub_rest.status, stub_rest.body = 503, {"error": "AlmacenamientoNoDisponible - failing over"}
    assert not roundtrip(target, timeout=5, retries=0).ok
    threading.Timer(0.2, lambda: setattr(stub_rest, "status", 404)).start()  # back before the retry
    started = time.monotonic()
    probe = lookup_probe(target, timeout=5)  # 503 -> UNAVAILABLE, then NOT_FOUND on the second try
    assert probe.ok, probe.message
    assert time.monotonic() - started >= 0.5
    stub_rest.status = 400  # INVALID_ARGUMENT is never retried
    stub_rest.requests.clear()
    assert not lookup_probe(target, timeout=5).ok
    assert len(stub_rest.requests) == 1
