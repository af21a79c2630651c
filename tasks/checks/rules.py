"""The app's checks: one small rule per check, serving ``check``, ``drift`` and the site's last step.

A rule's findings fail its check in ``nr check`` and are the drift items of ``nr drift``: a route
that does not answer is both, with the same name and the same fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nr.outcome import Finding, Rule, Severity
from tasks.checks.routes import Route, RouteResult
from tasks.deploy.manifests import DEPLOYMENTS, NAMESPACE

DEPLOYMENTS_CHECK = "app deployments available"
ROUTE_HINT = (
    f"look at: the adapter pods (k3s kubectl get pods -n {NAMESPACE}), the Service's endpoints, "
    "kube-proxy on this node, and a firewall in front of the port"
)


@dataclass(frozen=True)
class Fixes:
    """The commands printed as fixes (shell-quoted: the inventory path may hold anything)."""

    deploy: str  # redeploy, then check again
    k3s: str  # install k3s, then deploy
    k3s_check: str  # the k3s component's checks


@dataclass(frozen=True)
class Observed:
    """One k3s node: the routes tried through it and, on the first server, the app's Deployments."""

    host: str
    routes: tuple[RouteResult, ...]
    fixes: Fixes
    first: bool = False
    deployments: dict[str, tuple[int, int]] | None = None  # name -> (ready, wanted); None: no k3s
    api_error: str = ""  # the API did not answer


def _status(o: Observed) -> str:
    found = sorted((d, s) for d, s in (o.deployments or {}).items() if d in DEPLOYMENTS)
    return ", ".join(f"{d} {r}/{w} ready" for d, (r, w) in found) or "none"


def _deployments(o: Observed) -> Iterator[Finding]:
    if o.api_error:
        yield Finding(DEPLOYMENTS_CHECK, "readable", f"cannot read them: {o.api_error}", o.fixes.k3s_check,
                      Severity.ERROR)  # fmt: skip
        return
    if o.deployments is None:
        yield Finding(
            DEPLOYMENTS_CHECK, "deployed", f"k3s is not installed on {o.host}", o.fixes.k3s, Severity.ERROR
        )
        return
    missing = [d for d in DEPLOYMENTS if d not in o.deployments]
    bad = [d for d, (r, w) in o.deployments.items() if d in DEPLOYMENTS and (w == 0 or r < w)]
    if missing or bad:
        actual = _status(o) + (f"; missing: {', '.join(missing)}" if missing else "")
        detail = f"k3s kubectl describe deployment -n {NAMESPACE} (events, image pulls, probes)"
        yield Finding(
            DEPLOYMENTS_CHECK, "every replica ready", actual, o.fixes.deploy, Severity.ERROR, detail
        )


def _route_rule(route: Route) -> Rule[Observed]:
    name = f"routing via {route.name}"

    def result(o: Observed) -> RouteResult | None:
        return next((r for r in o.routes if r.route == route), None)

    def find(o: Observed) -> Iterator[Finding]:
        r = result(o)
        if r is not None and not r.ok:
            yield Finding(
                name, "answers", f"{route.target}: {r.message}", o.fixes.deploy, Severity.DRIFT, ROUTE_HINT
            )

    def passed(o: Observed) -> str:
        r = result(o)
        return f"{route.target}: {r.message}" if r else route.target

    return Rule(name, find, passed)


def rules(routes: list[Route], *, first: bool) -> list[Rule[Observed]]:
    """The checks of one node, in the order ``nr check -v`` lists them."""
    out: list[Rule[Observed]] = [Rule(DEPLOYMENTS_CHECK, _deployments, _status)] if first else []
    return out + [_route_rule(r) for r in routes]
