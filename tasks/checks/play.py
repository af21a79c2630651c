"""The ``checks`` step of the site: prove that the application is deployed and reachable.

* the app's Deployments are available (``k3s kubectl get deployments`` on the first server);
* routing: from this machine, the gRPC client creates a reservation and reads it back through the
  adapter's NodePort on EVERY k3s node (kube-proxy must route from any node to the pods), and
  through the Traefik ingress (port 80 of the first server). ``nr drift`` is read-only: it looks up
  an id that cannot exist instead, and NOT_FOUND (from Redis, through the adapter and AeroAlpes)
  proves the same path;
* nodes (registered with the expected role and version, Ready) and the kube-system workloads are
  checked by the k3s component's ``check``, which ``nr check`` runs too.

``nr run site`` ends with these checks (a failure fails the host it names); ``nr check`` runs them
read-only; ``nr drift`` reports a failing route as drift with the command that repairs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nornir.core.inventory import Host
from nornir.core.task import Result, Task

from nr.changes import Change
from nr.errors import NrError
from nr.play import CheckItem, PlayContext
from tasks.deploy.plan import DEFAULT_NODE_PORT, DEPLOYMENTS
from tasks.deploy.play import deployments_status
from tasks.k3s.contract import AGENTS as K3S_AGENTS
from tasks.k3s.contract import SERVERS as K3S_SERVERS

INGRESS_PORT = 80
RPC_TIMEOUT = 10.0


@dataclass(frozen=True)
class Route:
    name: str  # "NodePort 30051" / "ingress :80"
    target: str  # host:port


def address(host: Host) -> str:
    return str(host.get("node_ip") or host.hostname)


def target(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def routes_for(host: Host, first_server: Host) -> list[Route]:
    """The routes to try from this machine: the NodePort on every node (the Service's port, one for
    the cluster: the first server's setting, as deploy renders it), the ingress on the first server."""
    port = int(first_server.get("adapter_node_port") or DEFAULT_NODE_PORT)
    routes = [Route(f"NodePort {port}", target(address(host), port))]
    if host is first_server:
        routes.append(Route(f"ingress :{INGRESS_PORT}", target(address(host), INGRESS_PORT)))
    return routes


def route_item(route: Route, read_only: bool = False) -> CheckItem:
    """The client's create-then-get round trip through ``route`` (real gRPC calls); ``read_only``
    (drift): a lookup of an id that cannot exist, which must come back NOT_FOUND from Redis."""
    from services.client import lookup_probe, roundtrip

    if read_only:
        result = lookup_probe(route.target, RPC_TIMEOUT)
    else:
        result = roundtrip(route.target, RPC_TIMEOUT, wait_for_ready=False)
    hint = (
        "look at: the adapter pods (k3s kubectl get pods -n aeroalpes), the Service's endpoints, "
        "kube-proxy on this node, and a firewall in front of the port"
    )
    return CheckItem(f"routing via {route.name}", result.ok, f"{route.target}: {result.message}", hint)


def _deployments_item(task: Task) -> CheckItem:
    try:
        status = deployments_status(task)
    except NrError as exc:  # the API does not answer: a failed check, and the routes are still tried
        return CheckItem("app deployments available", False, f"cannot read them: {exc}",
                         f"systemctl status k3s on {task.host.name}; nr check k3s")  # fmt: skip
    if status is None:
        return CheckItem("app deployments available", False, f"k3s is not installed on {task.host.name}",
                         "nr run k3s && nr run deploy")  # fmt: skip
    missing = [d for d in DEPLOYMENTS if d not in status]
    bad = {d: s for d, s in status.items() if d in DEPLOYMENTS and (s[1] == 0 or s[0] < s[1])}
    ok = not missing and not bad
    detail = ", ".join(f"{d} {r}/{w} ready" for d, (r, w) in sorted(status.items()) if d in DEPLOYMENTS)
    if missing:
        detail += f"; missing: {', '.join(missing)}"
    hint = "nr run deploy; then k3s kubectl describe deployment -n aeroalpes (events, image pulls, probes)"
    return CheckItem("app deployments available", ok, detail or "none", hint)


def _check(task: Task, first_server: Host, read_only: bool = False) -> Result:
    items: list[CheckItem] = []
    if task.host is first_server:
        items.append(_deployments_item(task))
    items += [route_item(r, read_only) for r in routes_for(task.host, first_server)]
    return Result(host=task.host, result=f"{sum(i.ok for i in items)}/{len(items)} passed", checks=items)


def _as_site_step(task: Task, first_server: Host) -> Result:
    result = _check(task, first_server)
    failed = [i for i in result.checks if not i.ok]  # type: ignore[attr-defined]
    if failed:
        text = "; ".join(f"{i.name}: {i.detail}" for i in failed)
        return Result(host=task.host, failed=True, result=text, checks=result.checks)  # type: ignore[attr-defined]
    return result


def _as_drift(task: Task, first_server: Host) -> Result:
    result = _check(task, first_server, read_only=True)  # drift writes nothing, not even a reservation
    changes = [
        Change(i.name, "passes", i.detail, "", f"{i.name}: {i.detail}", fix="nr run deploy && nr check")
        for i in result.checks  # type: ignore[attr-defined]
        if not i.ok
    ]
    return Result(host=task.host, changed=bool(changes), changes=changes)


class ChecksComponent:
    name = "checks"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def _hosts(self, ctx: PlayContext) -> list[Host]:
        servers, agents = ctx.all_hosts(K3S_SERVERS), ctx.all_hosts(K3S_AGENTS)
        return [h for h in ctx.hosts() if h in servers or h in agents]

    def apply(self, ctx: PlayContext) -> None:
        if ctx.all_hosts(K3S_SERVERS) and not ctx.dry_run:
            first = ctx.all_hosts(K3S_SERVERS)[0]
            ctx.run_nornir("verify", lambda task: _as_site_step(task, first), hosts=self._hosts(ctx))

    def check(self, ctx: PlayContext) -> None:
        if ctx.all_hosts(K3S_SERVERS):
            first = ctx.all_hosts(K3S_SERVERS)[0]
            ctx.run_nornir("app", lambda task: _check(task, first), hosts=self._hosts(ctx))

    def drift(self, ctx: PlayContext) -> None:
        if ctx.all_hosts(K3S_SERVERS):
            first = ctx.all_hosts(K3S_SERVERS)[0]
            ctx.run_nornir("app", lambda task: _as_drift(task, first), hosts=self._hosts(ctx))


component = ChecksComponent()
