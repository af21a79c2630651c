"""The ``checks`` step of the site: prove that the application is deployed and reachable.

* the app's Deployments are available (``k3s kubectl get deployments`` on the first server);
* routing: from this machine, the gRPC client creates a reservation and reads it back through the
  adapter's NodePort on EVERY k3s node, and through the Traefik ingress (port 80 of the first
  server) (:mod:`tasks.checks.routes`). ``nr drift`` is read-only: it looks up an id that cannot
  exist instead, and NOT_FOUND (from Redis, through the adapter and AeroAlpes) proves the same path;
* nodes (registered with the expected role and version, Ready) and the kube-system workloads are
  checked by the k3s component's ``check``, which ``nr check`` runs too.

``nr run site`` ends with these checks (a failure fails the host it names); ``nr check`` runs them
read-only; ``nr drift`` reports what fails as drift with the commands that repair it. All three
evaluate the same rules (:mod:`tasks.checks.rules`).
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from nornir.core.inventory import Host

from nr.facts import Facts, gather
from nr.ops import kubectl
from nr.outcome import Outcome, evaluate
from nr.play import HostRun, PlayContext
from nr.readahead import Probe, Read
from nr.status import Cell, Reads, StatusSection
from tasks.checks import status
from tasks.checks.routes import Route, RouteResult, probe, routes_for
from tasks.checks.rules import Fixes, Observed, rules
from tasks.deploy.manifests import NAMESPACE
from tasks.deploy.site import K3S_INSTALLED_CMD, first_server, k3s_hosts
from tasks.k3s.observe import CLUSTER_CMD


def deployments_commands() -> dict[str, str]:
    return {
        "k3s": K3S_INSTALLED_CMD,
        "cluster": CLUSTER_CMD,  # the app's Deployments (read once per run with k3s's facts and deploy's)
    }


def read_deployments(run: HostRun) -> tuple[dict[str, tuple[int, int]] | None, str]:
    """(name -> (ready, wanted), "") from the first server; (None, "") without k3s; ({}, why) when
    the API does not answer (a failed check, and the routes are still tried)."""
    facts = gather(run.remote, commands=deployments_commands())
    if facts.out("k3s").strip() != "yes":
        return None, ""
    try:
        return kubectl.deployments(kubectl.view(facts.outputs["cluster"], "Deployment", NAMESPACE)), ""
    except kubectl.KubectlError as exc:
        return {}, str(exc)


def fixes(ctx: PlayContext) -> Fixes:
    inventory = ["-i", ctx.inventory_arg] if ctx.inventory_arg else []
    check = shlex.join(["nr", "check", "checks", *inventory])
    return Fixes(
        deploy=f"{ctx.fix_command('deploy')} && {check}",
        k3s=f"{ctx.fix_command('k3s')} && {ctx.fix_command('deploy')}",
        k3s_check=shlex.join(["nr", "check", "k3s", *inventory]),
    )


def load_client() -> None:
    """Import the gRPC client of the routes' round trips (gRPC and protobuf: ~0.1 s of CPU) while the
    run waits on the hosts, not after the last component."""
    importlib.import_module("services.client.roundtrip")


def probe_key(route: Route) -> tuple[str, ...]:
    return ("checks", route.name, route.target)


def probe_routes(
    routes: list[Route], read_only: bool, early: Callable[[Route], RouteResult | None]
) -> tuple[RouteResult, ...]:
    """Each route's result, in order; a host's routes (the first server's NodePort and ingress) are
    probed at the same time: each is a few round trips through the service, none waits for another."""

    def one(route: Route) -> RouteResult:
        return (read_only and early(route)) or probe(route, read_only)

    if len(routes) < 2:
        return tuple(one(r) for r in routes)
    with ThreadPoolExecutor(max_workers=len(routes), thread_name_prefix="nr-route") as pool:
        return tuple(pool.map(one, routes))


def observe(
    run: HostRun, first: Host, fix: Fixes, *, read_only: bool, early: Callable[[Route], RouteResult | None]
) -> Observed:
    """``early``: a read-only probe's result made ahead of the run (nr.readahead), if there is one."""
    routes = probe_routes(routes_for(run.host, first), read_only, early)
    if run.name != first.name:
        return Observed(run.name, routes, fix)
    deployments, error = read_deployments(run)
    return Observed(run.name, routes, fix, True, deployments, error)


class ChecksComponent:
    name = "checks"

    def validate(self, ctx: PlayContext) -> list[str]:
        return []

    def reads(self, ctx: PlayContext, mode: str) -> list[Read | Probe]:
        """The first server's Deployments (read ahead: nr.readahead); in drift also every route's
        read-only probe (in a run and in check the routes are probed in turn: they create reservations)."""
        first = first_server(ctx)
        if first is None or (mode == "apply" and ctx.dry_run) or first not in ctx.hosts():
            return []
        reads: list[Read | Probe] = [Read.of(first.name, commands=deployments_commands())]
        if mode == "drift":  # read-only probes (a lookup that must come back NOT_FOUND): made ahead too
            hosts = [h for h in k3s_hosts(ctx) if h in ctx.hosts()]
            routes = [r for h in hosts for r in routes_for(h, first)]
            reads += [Probe(probe_key(r), partial(probe, r, True)) for r in routes]
        else:  # the routes are probed in turn (they create reservations); their gRPC client loads now
            reads.append(Probe(("checks", "client"), load_client))
        return reads

    def _run(self, ctx: PlayContext, step: str, mode: str) -> None:
        first = first_server(ctx)
        if first is None:
            return
        fix = fixes(ctx)

        def early(route: Route) -> RouteResult | None:
            found = ctx.read_ahead().take_probe(probe_key(route))
            return found if isinstance(found, RouteResult) else None

        def fn(run: HostRun) -> Outcome[None]:
            o = observe(run, first, fix, read_only=mode == "drift", early=early)
            verdict = evaluate(rules([r.route for r in o.routes], first=o.first), o)
            summary = f"{sum(c.ok for c in verdict.checks)}/{len(verdict.checks)} passed"
            if mode == "drift":
                return Outcome(findings=verdict.drift, summary=summary)
            failed = [c for c in verdict.checks if not c.ok and not c.warning]
            error = "; ".join(f"{c.name}: {c.detail}" for c in failed) if mode == "site" and failed else None
            return Outcome(checks=verdict.checks, summary=summary, error=error)

        ctx.run(step, fn, hosts=[h for h in k3s_hosts(ctx) if h in ctx.hosts()])

    def apply(self, ctx: PlayContext) -> None:
        if not ctx.dry_run:
            self._run(ctx, "verify", "site")

    def check(self, ctx: PlayContext) -> None:
        self._run(ctx, "app", "check")

    def drift(self, ctx: PlayContext) -> None:
        self._run(ctx, "app", "drift")

    # -- status (nr status): every route probed read-only from this machine, no host reads ----------
    def status_reads(self, ctx: PlayContext) -> dict[str, Reads]:
        return {}

    def status(self, ctx: PlayContext, facts: Mapping[str, Facts]) -> StatusSection:
        first = first_server(ctx)
        if first is None:
            return StatusSection(self.name, "Routes to the app", Cell("no host in group 'k3s_servers'"))
        return status.section(status.probe_all(k3s_hosts(ctx), first), fixes(ctx).deploy)


component = ChecksComponent()
