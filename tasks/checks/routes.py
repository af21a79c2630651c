"""The routes to the app from this machine, and the gRPC probe that tries one.

The adapter's NodePort on EVERY k3s node (kube-proxy must route from any node to the pods; the
Service's port is one for the cluster: the first server's setting, as deploy renders it), and the
Traefik ingress on port 80 of the first server.
"""

from __future__ import annotations

from dataclasses import dataclass

from nornir.core.inventory import Host

from tasks.deploy.manifests import DEFAULT_NODE_PORT

INGRESS_PORT = 80
RPC_TIMEOUT = 10.0


@dataclass(frozen=True)
class Route:
    name: str  # "NodePort 30051" / "ingress :80"
    target: str  # host:port


@dataclass(frozen=True)
class RouteResult:
    route: Route
    ok: bool
    message: str
    seconds: float | None = None  # how long the probe's calls took (None: no answer was timed)


def address(host: Host) -> str:
    return str(host.get("node_ip") or host.hostname)


def target(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def routes_for(host: Host, first_server: Host) -> list[Route]:
    """The routes to try through ``host``: its NodePort, and the ingress if it is the first server."""
    port = int(first_server.get("adapter_node_port") or DEFAULT_NODE_PORT)
    routes = [Route(f"NodePort {port}", target(address(host), port))]
    if host.name == first_server.name:
        routes.append(Route(f"ingress :{INGRESS_PORT}", target(address(host), INGRESS_PORT)))
    return routes


def probe(route: Route, read_only: bool, timeout: float = RPC_TIMEOUT, retries: int = 1) -> RouteResult:
    """The client's create-then-get round trip through ``route`` (real gRPC calls); ``read_only``
    (drift, status): a lookup of an id that cannot exist, which must come back NOT_FOUND from Redis."""
    if read_only:
        from services.client.probe import lookup_probe

        result = lookup_probe(route.target, timeout, retries)
    else:
        from services.client.roundtrip import roundtrip

        result = roundtrip(route.target, timeout, wait_for_ready=False)
    seconds = sum(result.seconds.values()) if result.seconds else None
    return RouteResult(route, result.ok, result.message, seconds)
