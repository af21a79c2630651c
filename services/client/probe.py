"""The read-only probe of the adapter (a lookup that must come back NOT_FOUND), and what the round
trip shares with it: the result, the retried call, the error text. It needs gRPC and the stubs only
(``nr drift`` and ``nr status`` load it, not the reservation model of :mod:`services.client.roundtrip`)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc


@dataclass(frozen=True, slots=True)
class RoundTripResult:
    """``ok`` only when both RPCs succeeded and the reservation read back equals the one created."""

    ok: bool
    message: str
    created: dict[str, Any] | None = None
    fetched: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "created": self.created,
            "fetched": self.fetched,
            "seconds": self.seconds,
        }


RETRY_PAUSE = 0.5  # seconds before the one retry of an UNAVAILABLE call


def call(method: Any, request: Any, timeout: float, retries: int, **kwargs: Any) -> Any:
    """``method(request)``, again (``retries`` times) when it fails UNAVAILABLE: the adapter or
    AeroAlpes restarting, or a Redis failover that outlasted AeroAlpes's budget."""
    for attempt in range(retries + 1):
        try:
            return method(request, timeout=timeout, **kwargs)
        except grpc.RpcError as exc:
            if attempt == retries or not hasattr(exc, "code") or exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        time.sleep(RETRY_PAUSE)
    raise AssertionError("unreachable")


def rpc_error(rpc: str, exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{rpc} failed: {code.name if code else 'ERROR'}: {details}"


def lookup_probe(target: str, timeout: float = 10.0, retries: int = 1) -> RoundTripResult:
    """Read-only: ConsultarReserva of an id no reservation can have (ids are UUIDs). NOT_FOUND proves
    the whole path (adapter -> AeroAlpes -> Redis Cluster) without writing anything."""
    probe_id = f"nr-probe-{uuid.uuid4().hex}"
    started = time.perf_counter()
    with grpc.insecure_channel(target) as channel:
        stub = vuelos_pb2_grpc.VuelosStub(channel)
        try:
            call(stub.ConsultarReserva, vuelos_pb2.QueryReserva(id=probe_id), timeout, retries)
        except grpc.RpcError as exc:
            seconds = {"consultar": round(time.perf_counter() - started, 6)}
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return RoundTripResult(
                    True, f"unknown id {probe_id} answered NOT_FOUND (read-only)", seconds=seconds
                )
            return RoundTripResult(False, rpc_error("ConsultarReserva", exc), seconds=seconds)
    return RoundTripResult(False, f"ConsultarReserva({probe_id}) found a reservation that cannot exist")
