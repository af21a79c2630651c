"""Real processes: AeroAlpes on a real Redis Cluster, the adapter, the client."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from aeroalpes_testdata import two_itineraries, two_itineraries_json
from redis.cluster import ClusterNode, RedisCluster

from services.adapter.proto_codec import nueva_reserva_a_proto, reserva_desde_proto
from services.client.probe import lookup_probe
from services.client.roundtrip import roundtrip, sample_reserva
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc
from tests.support.procs import base_env, json_lines, start_adapter, start_aeroalpes
from tests.support.redis_cluster import LocalRedisCluster


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def vuelos(target: str) -> Any:
    return vuelos_pb2_grpc.VuelosStub(grpc.insecure_channel(target))


# --- REST ------------------------------------------------------------------------------------------


def test_rest_create_then_get_from_redis(aeroalpes: str, redis_cluster: LocalRedisCluster) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    status, created = http("POST", f"{aeroalpes}/vuelos/reserva", {"itinerarios": two_itineraries_json()})
    assert status == 200
    assert created["itinerarios"] == two_itineraries_json()
    creado = datetime.strptime(created["fecha_creacion"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= creado <= datetime.now(UTC)
    assert http("GET", f"{aeroalpes}/vuelos/reserva/{created['id']}") == (200, created)
    # Stored in the cluster, under its id, as the same document.
    nodes = [ClusterNode(h, p) for h, p in redis_cluster.nodes]  # type: ignore[no-untyped-call]
    client = RedisCluster(startup_nodes=nodes, password=redis_cluster.password, decode_responses=True)
    try:
        assert json.loads(client.get(f"aeroalpes:reserva:{created['id']}")) == created
    finally:
        client.close()


def test_rest_errors(aeroalpes: str) -> None:
    assert http("GET", f"{aeroalpes}/vuelos/reserva/0000")[0] == 404
    status, body = http("POST", f"{aeroalpes}/vuelos/reserva", b"{oops")
    assert (status, body["error"].split(" - ")[0]) == (400, "JSONInvalido")
    assert http("GET", f"{aeroalpes}/ready") == (200, {"status": "ready"})


def test_stateless_two_processes_share_the_cluster(aeroalpes: str, aeroalpes_b: str) -> None:
    assert aeroalpes != aeroalpes_b
    _, on_a = http("POST", f"{aeroalpes}/vuelos/reserva", {"itinerarios": two_itineraries_json()})
    _, on_b = http("POST", f"{aeroalpes_b}/vuelos/reserva", {"itinerarios": two_itineraries_json()[1:]})
    assert http("GET", f"{aeroalpes_b}/vuelos/reserva/{on_a['id']}") == (200, on_a)
    assert http("GET", f"{aeroalpes}/vuelos/reserva/{on_b['id']}") == (200, on_b)


# --- adapter -> REST -> Redis ----------------------------------------------------------------------


def test_adapter_round_trip(adapter: str) -> None:
    result = roundtrip(adapter, timeout=10)
    assert result.ok, result.message
    assert result.created is not None and result.fetched == result.created
    assert result.created["mensaje"] == "OK"


def test_adapter_answers_the_full_reservation(adapter: str, aeroalpes: str) -> None:
    answer = vuelos(adapter).CrearReserva(nueva_reserva_a_proto(two_itineraries()), timeout=10)
    assert answer.mensaje == "OK"
    reserva = reserva_desde_proto(answer.reserva)
    assert reserva.itinerarios == two_itineraries()
    # Timestamps are the ones AeroAlpes stored.
    _, stored = http("GET", f"{aeroalpes}/vuelos/reserva/{reserva.id}")
    assert answer.reserva.fecha_creacion.ToJsonString() == stored["fecha_creacion"]
    assert answer.reserva.fecha_actualizacion.ToJsonString() == stored["fecha_actualizacion"]
    again = vuelos(adapter).ConsultarReserva(vuelos_pb2.QueryReserva(id=reserva.id), timeout=10)
    assert again == answer


def test_adapter_not_found(adapter: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        vuelos(adapter).ConsultarReserva(vuelos_pb2.QueryReserva(id="no-such-reservation"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details().startswith("ReservaNoEncontrada - ")


def test_lookup_probe_is_read_only_and_proves_the_path(
    adapter: str, redis_cluster: LocalRedisCluster
) -> None:
    def keys() -> int:
        return sum(int(redis_cluster.client(port).dbsize()) for _, port in redis_cluster.nodes)

    before = keys()
    result = lookup_probe(adapter, timeout=10)
    assert result.ok and "NOT_FOUND" in result.message, result.message
    assert keys() == before  # nothing written


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda r: r.ClearField("itinerarios"), "MinimoUnItinerario"),
        (lambda r: r.itinerarios[0].odos[0].segmentos[0].legs[0].destino.CopyFrom(
            r.itinerarios[0].odos[0].segmentos[0].legs[0].origen), "RutaValida"),
        (lambda r: r.itinerarios[1].odos[0].segmentos[0].legs[0].fecha_llegada.FromSeconds(0), "FechasValidas"),
        (lambda r: r.itinerarios[0].odos[0].segmentos[0].legs[0].ClearField("origen"), "FormatoInvalido"),
    ],
)  # fmt: skip
def test_adapter_invalid_argument(adapter: str, mutate: Any, rule: str) -> None:
    request = sample_reserva()
    mutate(request)
    with pytest.raises(grpc.RpcError) as err:
        vuelos(adapter).CrearReserva(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{rule} - ")


def test_adapter_unavailable_when_aeroalpes_is_down(dead_url: str, logs_dir: Path) -> None:
    proc, target = start_adapter(dead_url, logs_dir / "adapter-dead.log", LOG_LEVEL="INFO")
    try:
        with pytest.raises(grpc.RpcError) as err:
            vuelos(target).ConsultarReserva(vuelos_pb2.QueryReserva(id="x"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unreachable" in err.value.details()
        result = roundtrip(target, timeout=5)
        assert not result.ok
        assert result.message.startswith("CrearReserva failed: UNAVAILABLE")
        probe = lookup_probe(target, timeout=5)
        assert not probe.ok and probe.message.startswith("ConsultarReserva failed: UNAVAILABLE")
    finally:
        assert proc.stop() == 0  # graceful exit on SIGTERM
    messages = [e.get("msg") for e in json_lines(proc.log_text())]
    assert messages[-2:] == ["stopping", "stopped"]


def test_redis_down_means_not_ready_and_unavailable(
    redis_cluster: LocalRedisCluster, logs_dir: Path, dead_url: str
) -> None:
    """Wrong password (so the store is unusable): liveness up, readiness 503, requests 503 ->
    UNAVAILABLE through the adapter; and neither password ever reaches the log."""
    wrong = "wr0ng-Redis-Passw0rd"
    proc, url = start_aeroalpes(
        redis_cluster.nodes_env, logs_dir / "aeroalpes-badauth.log", REDIS_PASSWORD=wrong, LOG_LEVEL="DEBUG"
    )
    adapter_proc, target = start_adapter(url, logs_dir / "adapter-badauth.log")
    try:
        assert http("GET", f"{url}/health") == (200, {"status": "up"})
        assert http("GET", f"{url}/ready")[0] == 503
        status, body = http("POST", f"{url}/vuelos/reserva", {"itinerarios": two_itineraries_json()})
        assert status == 503 and body["error"].startswith("AlmacenamientoNoDisponible - ")
        with pytest.raises(grpc.RpcError) as err:
            vuelos(target).CrearReserva(sample_reserva(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        adapter_proc.stop()
        proc.stop()
    log = proc.log_text()
    assert "storage unavailable" in log  # the failure is logged...
    assert wrong not in log and redis_cluster.password not in log  # ...without the password
    assert all(line.startswith("{") for line in log.splitlines())  # one JSON object per line


def test_passwords_never_logged(aeroalpes_service_logs: list[str], redis_cluster: LocalRedisCluster) -> None:
    for text in aeroalpes_service_logs:
        assert redis_cluster.password not in text


@pytest.fixture
def aeroalpes_service_logs(aeroalpes: str, aeroalpes_b: str, logs_dir: Path) -> list[str]:
    return [p.read_text() for p in logs_dir.glob("aeroalpes-*.log")]


# --- client CLI ------------------------------------------------------------------------------------


def test_client_cli_success(adapter: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "services.client", "--target", adapter, "--timeout", "10"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["created"] == printed["fetched"]
    assert printed["created"]["reserva"]["id"]
    assert "OK: reservation" in run.stderr


def test_client_cli_failure(dead_url: str) -> None:
    target = dead_url.removeprefix("http://")
    run = subprocess.run(
        [sys.executable, "-m", "services.client", "--target", target, "--timeout", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert "FAILED: CrearReserva failed: UNAVAILABLE" in run.stderr


@pytest.mark.parametrize(
    ("module", "env", "message"),
    [
        ("services.aeroalpes", {}, "REDIS_NODES is required"),
        ("services.adapter", {"AEROALPES_URL": "ftp://x"}, "AEROALPES_URL must be an http(s) URL"),
    ],
)
def test_bad_configuration_exits_2_with_a_json_log(module: str, env: dict[str, str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", module],
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2
    (entry,) = json_lines(run.stderr)
    assert entry["msg"] == "invalid configuration" and message in str(entry["error"])


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_gracefully_with_exit_0(
    redis_cluster: LocalRedisCluster, logs_dir: Path, workers: int
) -> None:
    proc, url = start_aeroalpes(
        redis_cluster.nodes_env, logs_dir / f"aeroalpes-sigterm-{workers}.log", workers=workers,
        REDIS_PASSWORD=redis_cluster.password, LOG_LEVEL="INFO",
    )  # fmt: skip
    assert http("GET", f"{url}/health") == (200, {"status": "up"})
    assert proc.stop() == 0
    messages = [e.get("msg") for e in json_lines(proc.log_text())]
    assert messages.count("stopping") == (
        1 if workers == 1 else 1 + workers
    )  # the supervisor and each worker
    assert messages[-1] == "stopped"
