"""The adapter's gRPC server (grpc.aio: every RPC and its REST call on one event loop, no thread
hand-offs): Vuelos, the standard health service and server reflection."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer as AioHealthServicer
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
    """The running server: an asyncio gRPC server on its own event-loop thread, stopped from any
    thread with :meth:`stop`."""

    server: grpc.aio.Server
    health: AioHealthServicer
    rest: AeroAlpesRest
    port: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    stopped: bool = False

    def stop(self, grace: float) -> None:
        """Graceful shutdown: report NOT_SERVING, refuse new RPCs, let in-flight ones finish."""
        if self.stopped:
            return
        self.stopped = True

        async def shutdown() -> None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace)
            await self.rest.close()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(grace + 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


async def _serve(settings: Settings) -> tuple[grpc.aio.Server, AioHealthServicer, AeroAlpesRest, int]:
    rest = AeroAlpesRest(settings.aeroalpes_url, pool_size=settings.workers)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    vuelos_pb2_grpc.add_VuelosServicer_to_server(VuelosServicer(rest, settings.rest_timeout), server)
    health_servicer = AioHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((VUELOS_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(settings.bind)
    except RuntimeError as exc:
        raise BindError(f"cannot listen on {settings.bind}: {exc}") from None
    if port == 0:
        raise BindError(f"cannot listen on {settings.bind}")
    await server.start()
    for service in ("", VUELOS_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, rest, port


def start(settings: Settings) -> AdapterServer:
    """Starts serving on a new event-loop thread; raises BindError when the port cannot be bound."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-aio", daemon=True)
    thread.start()
    try:
        server, health_servicer, rest, port = asyncio.run_coroutine_threadsafe(_serve(settings), loop).result(
            30
        )
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        raise
    log.info("listening", extra={"bind": settings.bind, "aeroalpes_url": settings.aeroalpes_url})
    return AdapterServer(server, health_servicer, rest, port, loop, thread)
