"""The HTTP application with an in-memory repository: routes, status codes, JSON shapes and errors.
(The server that carries it, with real sockets: test_aeroalpes_server.py.)"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aeroalpes_testdata import MemoryRepo, two_itineraries_json

from services.aeroalpes.http import App, Request, Response


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def repo() -> MemoryRepo:
    return MemoryRepo()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Answer:
    def __init__(self, response: Response) -> None:
        self.status_code = response.status
        self.headers = dict(response.headers)
        self.mimetype = "application/json"  # every answer of the server is JSON
        self._body = response.body

    def get_json(self) -> Any:
        return json.loads(self._body)


class Client:
    """Calls the application the way the server does (one Request in, one Response out)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def open(self, method: str, path: str, data: bytes = b"", **headers: str) -> Answer:
        request = Request(method, path, {k.lower().replace("_", "-"): v for k, v in headers.items()}, data)
        return Answer(asyncio.run(self.app.handle(request)))

    def get(self, path: str) -> Answer:
        return self.open("GET", path)

    def post(self, path: str, data: bytes = b"", content_type: str = "application/json") -> Answer:
        return self.open("POST", path, data, content_type=content_type)

    def put(self, path: str) -> Answer:
        return self.open("PUT", path)

    def delete(self, path: str) -> Answer:
        return self.open("DELETE", path)


Client.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def client(repo: MemoryRepo, clock: Clock) -> Iterator[Client]:
    ids = (f"id-{n}" for n in itertools.count(1))
    yield Client(App(repo, reloj=clock, nuevo_id=lambda: next(ids)))


def post(client: Client, body: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/vuelos/reserva", data=data, content_type="application/json")


def test_health_and_ready(client: Client, repo: MemoryRepo) -> None:
    assert client.get("/health").get_json() == {"status": "up"}
    assert client.get("/ready").status_code == 200
    repo.up = False
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "unavailable"
    assert client.get("/health").status_code == 200  # liveness does not depend on Redis


def test_create_returns_the_full_reservation(client: Client, repo: MemoryRepo) -> None:
    created = post(client, {"itinerarios": two_itineraries_json()})
    assert created.status_code == 200
    assert created.mimetype == "application/json"
    assert created.get_json() == {
        "id": "id-1",
        "fecha_creacion": "2024-05-06T07:08:09Z",
        "fecha_actualizacion": "2024-05-06T07:08:09Z",
        "itinerarios": two_itineraries_json(),
    }
    assert list(repo.items) == ["id-1"]


def test_get_returns_the_stored_reservation(client: Client, clock: Clock) -> None:
    first = post(client, {"itinerarios": two_itineraries_json()}).get_json()
    clock.now += timedelta(minutes=5)
    second = post(client, {"itinerarios": two_itineraries_json()[:1]}).get_json()
    assert second["fecha_creacion"] == "2024-05-06T07:13:09Z"  # real creation times, not process start
    assert client.get("/vuelos/reserva/id-1").get_json() == first
    assert client.get("/vuelos/reserva/id-2").get_json() == second


def test_unknown_id_is_a_json_404(client: Client) -> None:
    answer = client.get("/vuelos/reserva/does-not-exist")
    assert answer.status_code == 404
    assert answer.get_json() == {"error": "ReservaNoEncontrada - no reservation with id 'does-not-exist'"}
    assert client.get("/vuelos/reserva/" + "x" * 500).status_code == 404


def _legs(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        leg for it in body["itinerarios"] for o in it["odos"] for s in o["segmentos"] for leg in s["legs"]
    ]


def _with_leg(change: dict[str, Any]) -> dict[str, Any]:
    body = {"itinerarios": two_itineraries_json()}
    _legs(body)[2].update(change)
    return body


@pytest.mark.parametrize(
    ("body", "regla"),
    [
        (b"{not json", "JSONInvalido"),
        (b"", "JSONInvalido"),
        ({}, "MinimoUnItinerario"),
        ({"itinerarios": []}, "MinimoUnItinerario"),
        (_with_leg({"fecha_salida": "22/11/2022 13:10"}), "FechaInvalida"),
        (_with_leg({"fecha_llegada": "2022-11-25T25:00:00Z"}), "FechaInvalida"),
        (_with_leg({"destino": {"codigo": "JFK", "nombre": "JFK"}}), "RutaValida"),
        (_with_leg({"fecha_llegada": "2022-11-25T07:00:00Z"}), "FechasValidas"),
        (_with_leg({"origen": "JFK"}), "FormatoInvalido"),
    ],
)
def test_invalid_input_is_a_json_400(client: Client, repo: MemoryRepo, body: Any, regla: str) -> None:
    answer = post(client, body)
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error.startswith(f"{regla} - ")
    assert len(error) > len(regla) + 3
    assert repo.items == {}


def test_store_down_is_a_json_503(client: Client, repo: MemoryRepo) -> None:
    repo.up = False
    created = post(client, {"itinerarios": two_itineraries_json()})
    assert created.status_code == 503
    assert created.get_json()["error"].startswith("AlmacenamientoNoDisponible - ")
    assert client.get("/vuelos/reserva/x").status_code == 503


def test_other_http_errors_are_json(client: Client) -> None:
    assert client.delete("/vuelos/reserva/x").status_code == 405
    assert client.get("/nope").get_json()["error"].startswith("NotFound - ")
    assert client.put("/vuelos/reserva").get_json()["error"].startswith("MethodNotAllowed - ")


def test_deeply_nested_json_is_a_400_without_traceback(
    client: Client, repo: MemoryRepo, caplog: pytest.LogCaptureFixture
) -> None:
    for body in (b"[" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        answer = post(client, body)
        assert answer.status_code == 400
        assert answer.get_json()["error"].startswith("JSONInvalido - ")
    assert not [r for r in caplog.records if r.exc_info]
    assert repo.items == {}


def test_head_and_allow(client: Client) -> None:
    answer = client.open("HEAD", "/health")
    assert answer.status_code == 200
    refused = client.delete("/vuelos/reserva/x")
    assert refused.headers["Allow"] == "GET, HEAD"


def test_caller_deadline_header_bounds_the_budget(client: Client, repo: MemoryRepo) -> None:
    post(client, {"itinerarios": two_itineraries_json()})
    client.open("GET", "/vuelos/reserva/id-1", x_request_timeout="0.25")
    client.open("GET", "/vuelos/reserva/id-1", x_request_timeout="junk")
    assert 0.2 < repo.budgets[-2] <= 0.25 and 14.9 < repo.budgets[-1] <= 15.0
