"""The checks component's part of ``nr status``: every route to the app, probed read-only, timed.

The adapter's NodePort on every k3s node and the ingress on the first server (:mod:`tasks.checks.routes`),
each tried once with the read-only lookup ``nr drift`` uses (an id that cannot exist must come back
NOT_FOUND from Redis, through the adapter and AeroAlpes), in parallel, with a short timeout: the
status stays quick when a route is dead. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from nornir.core.inventory import Host

from nr.status import Cell, HostLine, Level, Problem, StatusSection, Table
from tasks.checks.routes import Route, RouteResult, probe, routes_for

COMPONENT = "checks"
PROBE_TIMEOUT = 3.0


def probe_all(hosts: Sequence[Host], first: Host) -> list[tuple[str, RouteResult]]:
    routes: list[tuple[str, Route]] = [(h.name, r) for h in hosts for r in routes_for(h, first)]
    if not routes:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(routes))) as pool:
        results = pool.map(lambda hr: (hr[0], probe(hr[1], True, PROBE_TIMEOUT)), routes)
        return list(results)


def latency(result: RouteResult) -> str:
    return f"{result.seconds * 1000:.0f} ms" if result.seconds is not None else "-"


def section(results: Sequence[tuple[str, RouteResult]], fix: str) -> StatusSection:
    rows, lines, problems = [], [], []
    for host, r in results:
        level = Level.OK if r.ok else Level.FAIL
        answer = "answers (NOT_FOUND for an unknown id)" if r.ok else r.message
        rows.append(
            (Cell(r.route.name), Cell(host), Cell(r.route.target), Cell(answer, level), Cell(latency(r)))
        )
        lines.append(HostLine(host, r.route.name, Cell(f"{'ok' if r.ok else 'FAILS'} {latency(r)}", level)))
        if not r.ok:
            problems.append(
                Problem(
                    f"route {r.route.name} via {host}", host, "answers", f"{r.route.target}: {r.message}", fix
                )
            )
    table = Table("Routes (read-only probe)", ("route", "via", "target", "result", "latency"), tuple(rows))
    good = sum(1 for _, r in results if r.ok)
    summary = Cell(f"{good}/{len(results)} routes answer", Level.FAIL if problems else Level.OK)
    return StatusSection(
        COMPONENT, "Routes to the app", summary, (table,), tuple(lines), problems=tuple(problems)
    )
