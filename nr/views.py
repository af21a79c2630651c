"""What ``nr check`` and ``nr inventory`` print (text and JSON); every value is escaped for the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nr.plain import TextTable
from nr.registry import registry
from nr.text import show

if TYPE_CHECKING:  # Rich is imported only to print on a terminal (nr.console)
    from nornir.core import Nornir
    from rich.console import Console

    from nr.report import RunReport


def failed_checks(report: RunReport) -> list[Any]:
    return [c for c in report.checks if not c.ok and not c.warning]


def checks_ok(report: RunReport) -> bool:
    return not failed_checks(report) and report.ok


def checks_json(report: RunReport) -> dict[str, Any]:
    doc = {
        "ok": checks_ok(report),
        "checks": [c.__dict__ for c in report.checks],
        "failed_hosts": {h: report.failed_reasons[h] for h in report.failed_hosts},
        "errors": report.errors,
    }
    if report.interrupted:
        doc["interrupted"] = True
    return doc


def checks_verdict(report: RunReport) -> str:
    """The last line of ``nr check``: what passed, or everything that did not (failed checks, hosts
    that could not be checked at all, components that could not run)."""
    if checks_ok(report):
        return "[green]All checks passed[/]"
    failed, hosts = failed_checks(report), report.failed_hosts
    parts = []
    if failed:
        parts.append(f"{len(failed)} check(s) failed")
    if hosts:
        parts.append(f"{len(hosts)} host(s) could not be checked ({show(', '.join(hosts))})")
    if report.errors:
        parts.append(f"{len(report.errors)} component(s) could not be checked")
    if report.interrupted:
        parts.append("interrupted (Ctrl-C) before every check ran")
    return f"[red]Not all checks passed: {'; '.join(parts)}[/]"


def print_checks(report: RunReport, out: Console, verbose: bool) -> None:
    shown = [c for c in report.checks if verbose or not c.ok]
    if shown:
        table = TextTable(title="Checks" if verbose else "Checks that did not pass")
        for col in ("component", "host", "check", "result", "detail"):
            table.add_column(col, overflow="fold")
        for c in shown:
            mark = "[green]pass[/]" if c.ok else ("[yellow]warn[/]" if c.warning else "[red]FAIL[/]")
            detail = c.detail + (f" — look at: {c.hint}" if c.hint and not c.ok else "")
            table.add_row(show(c.component), show(c.host), show(c.name), mark, show(detail))
        out.print(table)
    summary: dict[tuple[str, str], list[int]] = {}
    for c in report.checks:
        counts = summary.setdefault((c.component, c.host), [0, 0])
        counts[0 if c.ok else 1] += 1
    for (component, host), (passed, failed) in summary.items():
        style = "green" if not failed else "red"
        out.print(f"[{style}]{show(component)} {show(host)}[/]: {passed} passed, {failed} not passed")
    for h in report.failed_hosts:
        out.print(f"[red]could not check {show(h)}[/]: {show(report.failed_reasons[h])}")
    for e in report.errors:
        out.print(f"[red]could not check {show(e)}[/]")
    out.print(checks_verdict(report))


def inventory_rows(nr: Nornir) -> list[dict[str, Any]]:
    """The rows of ``nr inventory`` from Nornir's inventory (another plugin than nr's own files:
    nr.config.inventory_rows; nr.inventory.resolve computes the same rows from the files)."""
    from nr.play import host_groups

    schema = registry().schema
    rows: list[dict[str, Any]] = []
    for name, h in nr.inventory.hosts.items():
        params = h.get_connection_parameters("fabric")
        rows.append(
            {
                "name": name,
                "address": h.hostname,
                "port": h.port or 22,
                "username": h.username,
                "groups": sorted(host_groups(h)),
                "roles": [r.role for r in schema.roles if r.name in host_groups(h)],
                "data": {k: h.get(k) for k in schema.data if h.get(k) is not None},
                "ssh": dict(params.extras or {}),
            }
        )
    return rows


def print_inventory(rows: list[dict[str, Any]], inventory: str, out: Console) -> None:
    table = TextTable(title=f"Inventory {show(inventory)}", show_lines=True)
    for col in ("host", "address", "user", "roles", "data"):
        table.add_column(col, overflow="fold")
    for r in rows:
        data: dict[str, Any] = r["data"]
        table.add_row(
            show(r["name"]),
            show(f"{r['address']}:{r['port']}"),
            show(r["username"] or ""),
            show("\n".join(r["roles"])),
            show("\n".join(f"{k}: {v}" for k, v in data.items())),
        )
    out.print(table)
