"""The Flask layer with an in-memory repository: routes, status codes, JSON shapes and errors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aeroalpes_testdata import two_itineraries_json
from flask.testing import FlaskClient

from services.aeroalpes.domain import Reserva
from services.aeroalpes.http import create_app
from services.aeroalpes.repository import RepositorioNoDisponible


class MemoryRepo:
    def __init__(self) -> None:
        self.items: dict[str, Reserva] = {}
        self.up = True

    def guardar(self, reserva: Reserva) -> None:
        if not self.up:
            raise RepositorioNoDisponible("down")
        self.items[reserva.id] = reserva

    def obtener(self, reserva_id: str) -> Reserva | None:
        if not self.up:
            raise RepositorioNoDisponible("down")
        return self.items.get(reserva_id)

    def disponible(self) -> bool:
        return self.up


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


@pytest.fixture
def client(repo: MemoryRepo, clock: Clock) -> Iterator[FlaskClient]:
    ids = (f"id-{n}" for n in itertools.count(1))
    app = create_app(repo, reloj=clock, nuevo_id=lambda: next(ids))
    with app.test_client() as c:
        yield c


def post(client: FlaskClient, body: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/vuelos/reserva", data=data, content_type="application/json")


def test_health_and_ready(client: FlaskClient, repo: MemoryRepo) -> None:
    assert client.get("/health").get_json() == {"status": "up"}
    assert client.get("/ready").status_code == 200
    repo.up = False
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "unavailable"
    assert client.get("/health").status_code == 200  # liveness does not depend on Redis


def test_create_returns_the_full_reservation(client: FlaskClient, repo: MemoryRepo) -> None:
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


def test_get_returns_the_stored_reservation(client: FlaskClient, clock: Clock) -> None:
    first = post(client, {"itinerarios": two_itineraries_json()}).get_json()
    clock.now += timedelta(minutes=5)
    second = post(client, {"itinerarios": two_itineraries_json()[:1]}).get_json()
    assert second["fecha_creacion"] == "2024-05-06T07:13:09Z"  # real creation times, not process start
    assert client.get("/vuelos/reserva/id-1").get_json() == first
    assert client.get("/vuelos/reserva/id-2").get_json() == second


def test_unknown_id_is_a_json_404(client: FlaskClient) -> None:
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
def test_invalid_input_is_a_json_400(client: FlaskClient, repo: MemoryRepo, body: Any, regla: str) -> None:
    answer = post(client, body)
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error.startswith(f"{regla} - ")
    assert len(error) > len(regla) + 3
    assert repo.items == {}


def test_store_down_is_a_json_503(client: FlaskClient, repo: MemoryRepo) -> None:
    repo.up = False
    created = post(client, {"itinerarios": two_itineraries_json()})
    assert created.status_code == 503
    assert created.get_json()["error"].startswith("AlmacenamientoNoDisponible - ")
    assert client.get("/vuelos/reserva/x").status_code == 503


def test_other_http_errors_are_json(client: FlaskClient) -> None:
    assert client.delete("/vuelos/reserva/x").status_code == 405
    assert client.get("/nope").get_json()["error"].startswith("NotFound - ")
    assert client.put("/vuelos/reserva").get_json()["error"].startswith("MethodNotAllowed - ")


def test_oversized_body_is_rejected(client: FlaskClient) -> None:
    answer = post(client, b"[" + b" " * (1024 * 1024) + b"]")
    assert answer.status_code == 413
    assert answer.get_json()["error"].startswith("RequestEntityTooLarge - ")
