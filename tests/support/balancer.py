"""A client that behaves like a load balancer with health checks in front of the site's NodePorts, and a
bounded load loop of create+get through it (the lab's rolling-patch test and ``bench/patch``).

* Health checks: every ``interval`` seconds each node's NodePort gets a TCP connect (``connect_timeout``);
  calls go only to nodes whose port answered last time (round robin), as an L4 balancer's pool.
* A call that fails with a connection error marks its node down until its next good check and is sent
  once more to another node: that is a *retry*, counted (with its reason in ``retried``). Connection
  errors are gRPC ``UNAVAILABLE`` (no connection, or it broke) and ``CANCELLED`` sent by a server that
  is shutting down: grpcio's ``Server.stop(grace)`` cancels the calls that reach it while it stops,
  before any handler saw them (measured with the adapter's grpc.aio server), which is why load balancers
  such as Envoy retry on ``cancelled`` too. Any other error, or a second failure, is a *failed call*.
* Each node's channel is made anew when the node comes back (a gRPC channel keeps backing off a peer
  that went away); a replaced channel stays open for calls still on it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from services.client.roundtrip import sample_reserva
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc

T = TypeVar("T")


CONNECTION_ERRORS = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class NoNode(Exception):
    """No node passed its last health check."""


@dataclass
class Balancer:
    targets: Sequence[str]  # host:port of every node's NodePort
    interval: float = 0.5
    connect_timeout: float = 1.0
    healthy: dict[str, bool] = field(default_factory=dict)
    retries: int = 0
    retried: list[str] = field(default_factory=list)  # why each retry happened
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)
    _old: list[grpc.Channel] = field(default_factory=list)  # replaced: closed at the end (calls may use them)
    _turn: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._checks, daemon=True)
        self._thread.start()

    def check(self) -> None:
        for t in self.targets:
            host, port = t.rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=self.connect_timeout).close()
                up = True
            except OSError:
                up = False
            with self._lock:
                if up and not self.healthy.get(t, False):
                    self._drop(t)  # back: a new channel, not one still backing off
                self.healthy[t] = up

    def _checks(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def _drop(self, target: str) -> None:
        channel = self._channels.pop(target, None)
        if channel is not None:
            self._old.append(channel)  # a call in flight on it goes on; closed at the end

    def _stub(self, target: str) -> Any:
        with self._lock:
            if target not in self._channels:
                self._channels[target] = grpc.insecure_channel(target)
            return vuelos_pb2_grpc.VuelosStub(self._channels[target])

    def _pick(self, avoid: str | None = None) -> str:
        with self._lock:
            up = [t for t in self.targets if self.healthy.get(t) and t != avoid]
            if not up:
                raise NoNode(f"no node passed its last health check (avoiding {avoid})")
            self._turn += 1
            return up[self._turn % len(up)]

    def call(self, fn: Callable[[Any], T]) -> T:
        """``fn(stub)`` on a healthy node; once more on another node after a connection error."""
        target = self._pick()
        try:
            return fn(self._stub(target))
        except grpc.RpcError as exc:
            if exc.code() not in CONNECTION_ERRORS:
                raise
            with self._lock:
                self.healthy[target] = False
                self.retries += 1
                self.retried.append(
                    f"{time.strftime('%H:%M:%S')} {target}: {exc.code().name}: {exc.details()}"
                )
        return fn(self._stub(self._pick(avoid=target)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            for t in list(self._channels):
                self._drop(t)
            for channel in self._old:
                channel.close()


@dataclass
class Load:
    """Counts of a load loop: calls (each RPC), failures, retries, latencies, reservations made."""

    calls: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    ids: list[tuple[str, Any]] = field(default_factory=list)  # (id, the reservation as created)

    @property
    def longest(self) -> float:
        return max(self.latencies, default=0.0)

    def timed(self, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.calls += 1
            self.latencies.append(time.perf_counter() - start)


def create_and_get(lb: Balancer, load: Load, timeout: float = 10.0) -> None:
    """One CrearReserva and one ConsultarReserva of the id it returned (each a call)."""
    try:
        created = load.timed(lambda: lb.call(lambda s: s.CrearReserva(sample_reserva(), timeout=timeout)))
    except (grpc.RpcError, NoNode) as exc:
        load.failures.append(f"{time.strftime('%H:%M:%S')} CrearReserva: {_why(exc)}")
        return
    rid = created.reserva.id
    load.ids.append((rid, created.reserva))
    try:
        got = load.timed(
            lambda: lb.call(lambda s: s.ConsultarReserva(vuelos_pb2.QueryReserva(id=rid), timeout=timeout))
        )
    except (grpc.RpcError, NoNode) as exc:
        load.failures.append(f"{time.strftime('%H:%M:%S')} ConsultarReserva({rid}): {_why(exc)}")
        return
    if got.reserva != created.reserva:
        load.failures.append(f"ConsultarReserva({rid}) returned another reservation")


def _why(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)


def run_load(lb: Balancer, stop: threading.Event, limit: float, pause: float = 0.05) -> Load:
    """create+get until ``stop`` is set or ``limit`` seconds have passed (bounded)."""
    load = Load()
    deadline = time.monotonic() + limit
    while not stop.is_set() and time.monotonic() < deadline:
        create_and_get(lb, load)
        time.sleep(pause)
    return load


def unreadable(lb: Balancer, load: Load) -> list[str]:
    """The reservations made under load that cannot be read back identical now."""
    bad = []
    for rid, created in load.ids:

        def get(stub: Any, rid: str = rid) -> Any:
            return stub.ConsultarReserva(vuelos_pb2.QueryReserva(id=rid), timeout=10)

        with contextlib.suppress(grpc.RpcError, NoNode):
            if lb.call(get).reserva == created:
                continue
        bad.append(rid)
    return bad
