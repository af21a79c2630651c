"""RepositorioRedis against a fake cluster client: keys, NX, one shared client, corrupt data, and
retries within the request's deadline (the real failover: test_failover.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aeroalpes_testdata import two_itineraries, utc
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.aeroalpes.domain import Reserva
from services.aeroalpes.repository import DocumentoCorrupto, RepositorioNoDisponible, RepositorioRedis
from services.aeroalpes.retry import Backoff, Deadline, parse_timeout_header

RESERVA = Reserva("r-1", utc("2024-01-01T00:00:00Z"), utc("2024-01-01T00:00:00Z"), two_itineraries())
FAST = Backoff(first=0.001, cap=0.01)


class FakeCluster:
    """Answers like redis.asyncio's RedisCluster; ``failures`` are raised, one per call, first."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.data: dict[str, str] = {}
        self.state = "ok"
        self.failures = list(failures or [])
        self.calls: list[str] = []
        self.closed = 0
        self.lose_answer_of_first_set = False

    def _maybe_fail(self, name: str) -> None:
        self.calls.append(name)
        if self.failures:
            raise self.failures.pop(0)

    async def set(self, key: str, value: str, nx: bool = False) -> bool | None:
        self._maybe_fail("set")
        if nx and key in self.data:
            return None
        self.data[key] = value
        if self.lose_answer_of_first_set:  # applied, but the answer never came back
            self.lose_answer_of_first_set = False
            raise RedisConnectionError("Connection closed by server.")
        return True

    async def get(self, key: str) -> str | None:
        self._maybe_fail("get")
        return self.data.get(key)

    async def cluster_info(self) -> dict[str, Any]:
        self._maybe_fail("cluster_info")
        return {"cluster_state": self.state}

    async def aclose(self) -> None:
        self.closed += 1


def repo_over(fake: FakeCluster, **kwargs: Any) -> tuple[RepositorioRedis, list[int]]:
    made: list[int] = []

    def connect() -> FakeCluster:
        made.append(1)
        return fake

    return RepositorioRedis(connect, backoff=FAST, **kwargs), made  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_store_and_read_under_the_prefixed_key_with_one_client() -> None:
    fake = FakeCluster()
    repo, made = repo_over(fake, key_prefix="t:")
    documento = run(repo.guardar(RESERVA, Deadline(5)))
    assert list(fake.data) == ["t:r-1"] and fake.data["t:r-1"] == documento
    guardada = run(repo.obtener("r-1", Deadline(5)))
    assert guardada is not None and guardada.reserva == RESERVA and guardada.documento == documento
    assert run(repo.obtener("r-2", Deadline(5))) is None
    with pytest.raises(RepositorioNoDisponible, match="already exists"):
        run(repo.guardar(RESERVA, Deadline(5)))  # never overwrite
    assert made == [1]  # one cluster client, reused by every call


def test_readiness_is_one_quick_probe() -> None:
    fake = FakeCluster([RedisConnectionError("Error 111 connecting to 10.0.0.1:7000. Connection refused.")])
    repo, _ = repo_over(fake)
    assert run(repo.disponible()) is False  # no retry for a probe
    assert run(repo.disponible()) is True
    fake.state = "fail"
    assert run(repo.disponible()) is False


def test_corrupt_document_is_a_server_fault() -> None:
    fake = FakeCluster()
    fake.data["aeroalpes:reserva:bad"] = '{"id": "bad"}'
    fake.data["aeroalpes:reserva:junk"] = "not json"
    repo, _ = repo_over(fake)
    for key in ("bad", "junk"):
        with pytest.raises(DocumentoCorrupto):
            run(repo.obtener(key, Deadline(5)))


FAILOVER_ERRORS: list[Callable[[], BaseException]] = [
    lambda: RedisConnectionError("Error 111 connecting to 127.0.0.1:7000. Connection refused."),
    lambda: RedisTimeoutError("Timeout reading from 127.0.0.1:7000"),
    lambda: ClusterDownError("The cluster is down"),
    lambda: TryAgainError("Multiple keys request during rehashing of slot"),
    lambda: RedisClusterException(
        "Redis Cluster cannot be connected. Please provide at least one reachable node"
    ),
    lambda: ReadOnlyError("You can't write against a read only replica."),
]


@pytest.mark.parametrize("make", FAILOVER_ERRORS)
def test_failover_errors_are_retried_until_they_stop(make: Callable[[], BaseException]) -> None:
    fake = FakeCluster([make(), make(), make()])
    repo, _ = repo_over(fake)
    run(repo.guardar(RESERVA, Deadline(5)))
    assert fake.calls == ["set"] * 4
    assert fake.data


def test_gives_up_at_the_deadline() -> None:
    fake = FakeCluster([ClusterDownError("The cluster is down")] * 10_000)
    repo, _ = repo_over(fake)
    loop_started = asyncio.run(_timed(repo.guardar(RESERVA, Deadline(0.3))))
    assert isinstance(loop_started[1], RepositorioNoDisponible)
    assert "still failing after" in str(loop_started[1]) and "ClusterDownError" in str(loop_started[1])
    assert 0.25 < loop_started[0] < 1.0
    assert len(fake.calls) > 5


def test_a_wrong_password_is_not_retried() -> None:
    wrapped = RedisClusterException("Redis Cluster cannot be connected")
    wrapped.__cause__ = AuthenticationError("invalid username-password pair or user is disabled.")
    for error in (AuthenticationError("invalid password"), wrapped):
        fake = FakeCluster([error] * 100)
        repo, _ = repo_over(fake)
        with pytest.raises(RepositorioNoDisponible, match="cannot store reservation"):
            run(repo.guardar(RESERVA, Deadline(5)))
        assert fake.calls == ["set"]


def test_a_write_applied_but_unanswered_is_not_reported_as_a_collision() -> None:
    fake = FakeCluster()
    fake.lose_answer_of_first_set = True
    repo, _ = repo_over(fake)
    documento = run(repo.guardar(RESERVA, Deadline(5)))
    assert fake.calls == ["set", "set", "get"]  # retried, refused by NX, found our own document
    assert fake.data["aeroalpes:reserva:r-1"] == documento


def test_timeout_header_bounds_the_budget() -> None:
    assert parse_timeout_header(None, 15) == 15
    assert parse_timeout_header("2.5", 15) == 2.5
    assert parse_timeout_header("60", 15) == 15
    for junk in ("", "soon", "-1", "0", "nan"):
        assert parse_timeout_header(junk, 15) == 15
    assert 0.025 <= Backoff().delay(1) <= 0.05 and Backoff().delay(1, lambda: 0.0) == 0.025
    assert Backoff().delay(30, lambda: 1.0) == 1.0


async def _timed(coro: Any) -> tuple[float, BaseException | None]:
    started = asyncio.get_running_loop().time()
    try:
        await coro
    except Exception as exc:
        return asyncio.get_running_loop().time() - started, exc
    return asyncio.get_running_loop().time() - started, None
