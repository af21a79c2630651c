"""RepositorioRedis against a fake cluster client: keys, NX, lazy (re)connection, corrupt data."""

from __future__ import annotations

from typing import Any

import pytest
from aeroalpes_testdata import two_itineraries, utc
from redis.exceptions import ConnectionError as RedisConnectionError

from services.aeroalpes.domain import Reserva
from services.aeroalpes.repository import DocumentoCorrupto, RepositorioNoDisponible, RepositorioRedis

RESERVA = Reserva("r-1", utc("2024-01-01T00:00:00Z"), utc("2024-01-01T00:00:00Z"), two_itineraries())


class FakeCluster:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.state = "ok"

    def set(self, key: str, value: str, nx: bool = False) -> bool | None:
        if nx and key in self.data:
            return None
        self.data[key] = value
        return True

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def cluster_info(self) -> dict[str, Any]:
        return {"cluster_state": self.state}

    def close(self) -> None:
        pass


def test_store_and_read_under_the_prefixed_key() -> None:
    fake = FakeCluster()
    repo = RepositorioRedis(lambda: fake, key_prefix="t:")  # type: ignore[arg-type,return-value]
    repo.guardar(RESERVA)
    assert list(fake.data) == ["t:r-1"]
    assert repo.obtener("r-1") == RESERVA
    assert repo.obtener("r-2") is None
    with pytest.raises(RepositorioNoDisponible, match="already exists"):
        repo.guardar(RESERVA)  # never overwrite


def test_connects_lazily_and_retries_after_a_failure() -> None:
    fake, calls = FakeCluster(), []

    def connect() -> FakeCluster:
        calls.append(1)
        if len(calls) == 1:
            raise RedisConnectionError("Error 111 connecting to 10.0.0.1:7000. Connection refused.")
        return fake

    repo = RepositorioRedis(connect)  # type: ignore[arg-type]
    assert calls == []
    assert repo.disponible() is False
    assert repo.disponible() is True
    fake.state = "fail"
    assert repo.disponible() is False
    assert len(calls) == 2


def test_corrupt_document_is_a_server_fault() -> None:
    fake = FakeCluster()
    fake.data["aeroalpes:reserva:bad"] = '{"id": "bad"}'
    fake.data["aeroalpes:reserva:junk"] = "not json"
    repo = RepositorioRedis(lambda: fake)  # type: ignore[arg-type,return-value]
    for key in ("bad", "junk"):
        with pytest.raises(DocumentoCorrupto):
            repo.obtener(key)
