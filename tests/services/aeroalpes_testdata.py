"""Shared test data of the AeroAlpes service tests (a uniquely named module, imported by the tests)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from services.aeroalpes.domain import Aeropuerto, Itinerario, Leg, Odo, Reserva, Segmento
from services.aeroalpes.repository import Guardada, RepositorioNoDisponible, documento_de
from services.aeroalpes.retry import Deadline

FIXTURES = Path(__file__).parent / "fixtures"


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


BOG = Aeropuerto("BOG", "El Dorado")
JFK = Aeropuerto("JFK", "John F. Kennedy")
MIA = Aeropuerto("MIA", "Miami International")
MAD = Aeropuerto("MAD", "Adolfo Suárez Madrid-Barajas")


def two_itineraries() -> tuple[Itinerario, ...]:
    """Outbound BOG-MIA-JFK (two legs, one segment) + a second odo JFK-MAD; return MAD-BOG."""
    ida = Itinerario(
        odos=(
            Odo(
                segmentos=(
                    Segmento(
                        legs=(
                            Leg(utc("2022-11-22T13:10:00Z"), utc("2022-11-22T17:45:00Z"), BOG, MIA),
                            Leg(utc("2022-11-22T19:05:00Z"), utc("2022-11-22T22:10:00Z"), MIA, JFK),
                        )
                    ),
                )
            ),
            Odo(
                segmentos=(
                    Segmento(legs=(Leg(utc("2022-11-25T08:00:00Z"), utc("2022-11-25T15:30:00Z"), JFK, MAD),)),
                )
            ),
        )
    )
    vuelta = Itinerario(
        odos=(
            Odo(
                segmentos=(
                    Segmento(legs=(Leg(utc("2022-12-01T10:00:00Z"), utc("2022-12-01T20:00:00Z"), MAD, BOG),)),
                )
            ),
        )
    )
    return (ida, vuelta)


def leg_json(salida: str, llegada: str, origen: Aeropuerto, destino: Aeropuerto) -> dict[str, Any]:
    return {
        "fecha_salida": salida,
        "fecha_llegada": llegada,
        "origen": {"codigo": origen.codigo, "nombre": origen.nombre},
        "destino": {"codigo": destino.codigo, "nombre": destino.nombre},
    }


def two_itineraries_json() -> list[dict[str, Any]]:
    """The same itineraries as ``two_itineraries()``, written out by hand as REST JSON."""
    return [
        {
            "odos": [
                {
                    "segmentos": [
                        {
                            "legs": [
                                leg_json("2022-11-22T13:10:00Z", "2022-11-22T17:45:00Z", BOG, MIA),
                                leg_json("2022-11-22T19:05:00Z", "2022-11-22T22:10:00Z", MIA, JFK),
                            ]
                        }
                    ]
                },
                {
                    "segmentos": [
                        {"legs": [leg_json("2022-11-25T08:00:00Z", "2022-11-25T15:30:00Z", JFK, MAD)]}
                    ]
                },
            ]
        },
        {
            "odos": [
                {
                    "segmentos": [
                        {"legs": [leg_json("2022-12-01T10:00:00Z", "2022-12-01T20:00:00Z", MAD, BOG)]}
                    ]
                }
            ]
        },
    ]


class MemoryRepo:
    """``RepositorioReservas`` in memory; ``up = False`` makes it unavailable. Records the budget
    (seconds left of the deadline) each call got."""

    def __init__(self) -> None:
        self.items: dict[str, Reserva] = {}
        self.up = True
        self.budgets: list[float] = []

    async def guardar(self, reserva: Reserva, deadline: Deadline) -> str:
        self.budgets.append(deadline.remaining())
        if not self.up:
            raise RepositorioNoDisponible("down")
        self.items[reserva.id] = reserva
        return documento_de(reserva)

    async def obtener(self, reserva_id: str, deadline: Deadline) -> Guardada | None:
        self.budgets.append(deadline.remaining())
        if not self.up:
            raise RepositorioNoDisponible("down")
        reserva = self.items.get(reserva_id)
        return None if reserva is None else Guardada(documento_de(reserva))

    async def disponible(self) -> bool:
        return self.up


# --- a stub of the REST API (for adapter tests that need precise failure behaviour) ---------------


@dataclass
class StubRest:
    """A loopback HTTP/1.1 server answering every request with ``status``/``body`` after ``delay``."""

    status: int = 200
    body: Any = field(default_factory=dict)
    delay: float = 0.0
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each request
    connections: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> StubRest:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                stub.connections += 1

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                stub.requests.append((self.command, self.path))
                stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                time.sleep(stub.delay)
                data = json.dumps(stub.body).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
