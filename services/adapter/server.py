"""The adapter's gRPC server: Vuelos, the standard health service and server reflection."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.adapter.config import Settings
from services.adapter.rest import AeroAlpesRest
from services.adapter.servicer import VuelosServicer
from services.vuelos_pb import vuelos_pb2, vuelos_pb2_grpc

log = logging.getLogger("aeroalpes.adapter")

VUELOS_SERVICE = vuelos_pb2.DESCRIPTOR.services_by_name["Vuelos"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class BindError(RuntimeError):
    """The gRPC port could not be bound."""


@dataclass
class AdapterServer:
    server: grpc.Server
    health: health.HealthServicer
    rest: AeroAlpesRest
    port: int

    def stop(self, grace: float) -> None:
        """Graceful shutdown: report NOT_SERVING, refuse new RPCs, let in-flight ones finish."""
        self.health.enter_graceful_shutdown()
        done: threading.Event = self.server.stop(grace)
        done.wait(grace + 5)
        self.rest.close()


def start(settings: Settings) -> AdapterServer:
    rest = AeroAlpesRest(settings.aeroalpes_url, pool_size=settings.workers)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="rpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    vuelos_pb2_grpc.add_VuelosServicer_to_server(VuelosServicer(rest, settings.rest_timeout), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((VUELOS_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(settings.bind)
    except RuntimeError as exc:
        raise BindError(f"cannot listen on {settings.bind}: {exc}") from None
    if port == 0:
        raise BindError(f"cannot listen on {settings.bind}")
    server.start()
    for service in ("", VUELOS_SERVICE):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("listening", extra={"bind": settings.bind, "aeroalpes_url": settings.aeroalpes_url})
    return AdapterServer(server=server, health=health_servicer, rest=rest, port=port)
