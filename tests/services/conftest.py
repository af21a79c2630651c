"""Fixtures of the AeroAlpes service tests: sample data, a stub REST server, a real Redis Cluster on
loopback and the real services started as subprocesses (all stopped at the end of the session)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aeroalpes_testdata import StubRest

from tests.support.procs import ServiceProcess, free_port, start_adapter, start_aeroalpes
from tests.support.redis_cluster import LocalRedisCluster


@pytest.fixture
def stub_rest() -> Iterator[StubRest]:
    stub = StubRest().start()
    yield stub
    stub.stop()


# --- real processes -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    cluster = LocalRedisCluster(masters=3, workdir=tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def password_file(redis_cluster: LocalRedisCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return redis_cluster.write_password_file(tmp_path_factory.mktemp("secrets") / "redis-password")


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def aeroalpes(redis_cluster: LocalRedisCluster, password_file: Path, logs_dir: Path) -> Iterator[str]:
    """Base URL of AeroAlpes process A (2 worker processes), Redis password from a file."""
    proc, url = start_aeroalpes(
        redis_cluster.nodes_env,
        logs_dir / "aeroalpes-a.log",
        password_file=password_file,
        workers=2,
        LOG_LEVEL="DEBUG",
    )
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def aeroalpes_b(redis_cluster: LocalRedisCluster, logs_dir: Path) -> Iterator[str]:
    """Base URL of AeroAlpes process B (one worker, password from REDIS_PASSWORD)."""
    proc, url = start_aeroalpes(
        redis_cluster.nodes_env,
        logs_dir / "aeroalpes-b.log",
        REDIS_PASSWORD=redis_cluster.password,
        LOG_LEVEL="INFO",
    )
    yield url
    proc.stop()


@dataclass
class Running:
    proc: ServiceProcess
    address: str  # base URL or host:port


@pytest.fixture(scope="session")
def adapter_service(aeroalpes: str, logs_dir: Path) -> Iterator[Running]:
    proc, target = start_adapter(aeroalpes, logs_dir / "adapter.log", LOG_LEVEL="INFO")
    yield Running(proc, target)
    proc.stop()


@pytest.fixture(scope="session")
def adapter(adapter_service: Running) -> str:
    """host:port of the adapter in front of AeroAlpes A."""
    return adapter_service.address


@pytest.fixture(scope="session")
def dead_url() -> str:
    """An http URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"
