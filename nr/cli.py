"""The ``nr`` command line.

Exit codes: 0 all ok; 1 some host failed (``drift``: drift found); 2 bad input (inventory, config,
arguments) or, for ``drift``, a host that could not be checked.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import click
from nornir.core import Nornir
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nr import __version__
from nr.config import DEFAULT_INVENTORY, Settings, init_nornir
from nr.errors import NrError
from nr.inventory.validate import InventoryError
from nr.play import Component, PlayContext, host_groups
from nr.registry import registry
from nr.report import RunReport
from nr.secrets import redact

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _bad_input(messages: Iterable[str]) -> NoReturn:
    for m in messages:
        err.print(f"[red]error:[/] {escape(redact(m))}")
    sys.exit(EXIT_BAD_INPUT)


def _open(inventory: str, workers: int | None, dry_run: bool) -> Nornir:
    try:
        return init_nornir(Settings(Path(inventory), workers, dry_run))
    except InventoryError as exc:
        _bad_input(exc.issues)


def _limit(nr: Nornir, values: tuple[str, ...]) -> set[str] | None:
    """Host names selected by ``--limit`` (host or group names, repeatable, comma-separated)."""
    if not values:
        return None
    names: set[str] = set()
    bad = []
    for value in (v.strip() for raw in values for v in raw.split(",") if v.strip()):
        if value in nr.inventory.hosts:
            names.add(value)
        elif value in nr.inventory.groups:
            names |= {h.name for h in nr.inventory.hosts.values() if value in host_groups(h)}
        else:
            bad.append(f"--limit {value}: no host or group of that name in the inventory")
    if bad:
        _bad_input(bad)
    return names


def _components(names: tuple[str, ...]) -> list[Component]:
    reg = registry()
    try:
        return [reg.component(n) for n in names]
    except NrError as exc:
        _bad_input([str(exc)])


def _select(play: str) -> list[Component]:
    """The components of PLAY (a play of the catalog, or one component's name), in order."""
    reg = registry()
    names = reg.play(play)
    if names is None:
        known = ", ".join(dict.fromkeys([*reg.plays, *reg.entries]))
        _bad_input([f"unknown play '{play}' (known: {known})"])
    return _components(names)


def _ssh_stats(nr: Nornir) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for name, host in nr.inventory.hosts.items():
        plugin = host.connections.get("fabric")
        remote = getattr(plugin, "connection", None)
        if remote is not None:
            stats[name] = remote.stats.as_dict()
    return stats


def _execute(
    nr: Nornir,
    report: RunReport,
    selected: list[Component],
    limit: set[str] | None,
    inventory: str,
    action: Callable[[Component, PlayContext], None],
) -> dict[str, dict[str, Any]]:
    inv_arg = None if inventory == DEFAULT_INVENTORY else inventory
    nr = nr.with_processors([report])
    ctx = PlayContext(nr, component="nr", recorder=report, limit=limit, inventory_arg=inv_arg)
    problems = [p for c in selected for p in c.validate(ctx.for_component(c.name))]
    if problems:
        _bad_input(problems)
    try:
        for c in selected:
            try:
                action(c, ctx.for_component(c.name))
            except NrError as exc:  # a failure of the component as a whole (not of one host)
                report.errors.append(f"{c.name}: {redact(str(exc))}")
                if report.console is not None:
                    report.console.print(f"  [red]✗ {c.name}[/]: {escape(redact(str(exc)))}")
                break  # later components build on this one
    finally:
        if report.tracebacks and os.environ.get("NR_DEBUG") == "1":
            for tb in report.tracebacks:
                err.print(tb, markup=False, highlight=False)
        stats = _ssh_stats(nr)
        for host in nr.inventory.hosts.values():  # directly: nr.close_connections() runs a task
            host.close_connections()
    return stats


def _progress(json_out: bool) -> Console | None:
    return None if json_out else err


class _NrGroup(click.Group):
    """The ``nr`` group: ``lab`` and ``vms`` live outside the engine core and load when used."""

    LAZY = {"lab": "nr.machines.cli:lab", "vms": "nr.machines.cli:vms"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            import importlib

            module, _, attr = self.LAZY[cmd_name].partition(":")
            cmd: click.Command = getattr(importlib.import_module(module), attr)
            return cmd
        return super().get_command(ctx, cmd_name)


@click.group(cls=_NrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nr")
def cli() -> None:
    """nr: turn a few Linux VMs into a k3s cluster, a Redis Cluster and the AeroAlpes services.

    \b
    Plays (nr run PLAY): site runs every component in order (base, redis, k3s,
    deploy, checks); or run one component by name (also k3s-reset, which
    uninstalls k3s). `nr check` proves the result, `nr drift` compares hosts
    with the desired state (read-only).
    \b
    Exit codes: 0 ok; 1 a host failed (drift: drift found);
    2 bad input (inventory, config, arguments; drift: could not check).
    Inventory: -i FOLDER with Nornir SimpleInventory files (default: inventory/).
    """


inventory_opt = click.option(
    "-i",
    "--inventory",
    default=DEFAULT_INVENTORY,
    show_default=True,
    metavar="FOLDER",
    help="Inventory folder: hosts.yaml, groups.yaml, defaults.yaml (and optional config.yaml).",
)
json_opt = click.option("--json", "json_out", is_flag=True, help="Print one JSON document instead of text.")
limit_opt = click.option(
    "--limit",
    multiple=True,
    metavar="HOST|GROUP",
    help="Only change these hosts or groups (repeatable, comma-separated). Planning still sees all hosts.",
)
workers_opt = click.option(
    "--workers",
    type=click.IntRange(1, 500),
    default=None,
    help="Hosts handled in parallel (default 20, or NR_WORKERS, or config.yaml runner.options.num_workers).",
)


@cli.command()
@click.argument("play")
@inventory_opt
@limit_opt
@click.option("--dry-run", is_flag=True, help="Change nothing; show what would change, with diffs.")
@json_opt
@workers_opt
def run(
    play: str, inventory: str, limit: tuple[str, ...], dry_run: bool, json_out: bool, workers: int | None
) -> None:
    """Converge the hosts: PLAY is 'site' (everything, in order) or one component (e.g. base).

    Prints progress per host, then a summary of what was ok, changed or failed, with diffs.
    """
    selected = _select(play)
    nr = _open(inventory, workers, dry_run)
    report = RunReport(
        play,
        dry_run=dry_run,
        console=_progress(json_out),
        inventory_arg=None if inventory == DEFAULT_INVENTORY else inventory,
    )
    stats = _execute(nr, report, selected, _limit(nr, limit), inventory, lambda c, ctx: c.apply(ctx))
    if json_out:
        click.echo(json.dumps(report.to_json(ssh=stats), indent=2))
    else:
        report.print_summary(out)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def _select_read_only(names: tuple[str, ...]) -> list[Component]:
    """The named components, or those of the site play when none is named."""
    reg = registry()
    if not names:
        return _components(reg.default_play)
    unknown = [n for n in names if n not in reg.entries]
    if unknown:
        _bad_input([f"unknown component '{n}' (known: {', '.join(reg.entries)})" for n in unknown])
    return _components(names)


def _print_checks(report: RunReport, verbose: bool) -> None:
    shown = [c for c in report.checks if verbose or not c.ok]
    if shown:
        table = Table(title="Checks" if verbose else "Checks that did not pass", title_justify="left")
        for col in ("component", "host", "check", "result", "detail"):
            table.add_column(col, overflow="fold")
        for c in shown:
            mark = "[green]pass[/]" if c.ok else ("[yellow]warn[/]" if c.warning else "[red]FAIL[/]")
            detail = c.detail + (f" — look at: {c.hint}" if c.hint and not c.ok else "")
            table.add_row(c.component, c.host, c.name, mark, escape(detail))
        out.print(table)
    summary: dict[tuple[str, str], list[int]] = {}
    for c in report.checks:
        counts = summary.setdefault((c.component, c.host), [0, 0])
        counts[0 if c.ok else 1] += 1
    for (component, host), (passed, failed) in summary.items():
        style = "green" if not failed else "red"
        out.print(f"[{style}]{component} {host}[/]: {passed} passed, {failed} not passed")


@cli.command()
@click.argument("components", nargs=-1, metavar="[COMPONENT]...")
@inventory_opt
@limit_opt
@json_opt
@click.option("-v", "--verbose", is_flag=True, help="List every check, not only those that did not pass.")
@workers_opt
def check(
    components: tuple[str, ...],
    inventory: str,
    limit: tuple[str, ...],
    json_out: bool,
    verbose: bool,
    workers: int | None,
) -> None:
    """Run the post-deploy checks of every component, or of the ones named.

    They change nothing on the hosts; the app's routing check creates one test reservation
    per route (create, then read back).
    Exit 0 all passed (warnings allowed), 1 a check failed or a host could not be checked.
    """
    selected = _select_read_only(components)
    nr = _open(inventory, workers, True)
    report = RunReport("check", dry_run=True, console=_progress(json_out))
    _execute(nr, report, selected, _limit(nr, limit), inventory, lambda c, ctx: c.check(ctx))
    failed = [c for c in report.checks if not c.ok and not c.warning]
    ok = not failed and report.ok
    if json_out:
        doc = {
            "ok": ok,
            "checks": [c.__dict__ for c in report.checks],
            "failed_hosts": {h: report.failed_reasons[h] for h in report.failed_hosts},
            "errors": report.errors,
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_checks(report, verbose)
        for h in report.failed_hosts:
            out.print(f"[red]{h}[/]: {escape(report.failed_reasons[h])}")
        for e in report.errors:
            out.print(f"[red]{escape(e)}[/]")
        out.print("[green]All checks passed[/]" if ok else f"[red]{len(failed)} check(s) failed[/]")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@cli.command()
@click.argument("components", nargs=-1, metavar="[COMPONENT]...")
@inventory_opt
@limit_opt
@json_opt
@click.option(
    "--prom",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write a node_exporter textfile (FILE must end in .prom).",
)
@workers_opt
def drift(
    components: tuple[str, ...],
    inventory: str,
    limit: tuple[str, ...],
    json_out: bool,
    prom: Path | None,
    workers: int | None,
) -> None:
    """Read-only: list every difference between the hosts and the desired state, with the fix.

    All components, or the ones named. Exit 0 no drift, 1 drift, 2 could not check.
    Schedule it with contrib/nr-drift.timer or cron.
    """
    from nr.drift import drift_exit_code, drift_json, print_drift, prom_text, write_prom

    if prom is not None and not prom.name.endswith(".prom"):
        _bad_input([f"--prom {prom}: node_exporter's textfile collector only reads files ending in .prom"])
    selected = _select_read_only(components)
    try:
        nr = init_nornir(Settings(Path(inventory), workers, True))
    except InventoryError as exc:
        if prom is not None:
            write_prom(prom, prom_text(RunReport("drift", errors=["the inventory is invalid"])))
        _bad_input(exc.issues)
    report = RunReport(
        "drift",
        dry_run=True,
        console=_progress(json_out),
        inventory_arg=None if inventory == DEFAULT_INVENTORY else inventory,
    )
    _execute(nr, report, selected, _limit(nr, limit), inventory, lambda c, ctx: c.drift(ctx))
    if prom is not None:
        write_prom(prom, prom_text(report))
    if json_out:
        click.echo(json.dumps(drift_json(report), indent=2))
    else:
        print_drift(report, out)
    sys.exit(drift_exit_code(report))


@cli.command("inventory")
@inventory_opt
@json_opt
def inventory_cmd(inventory: str, json_out: bool) -> None:
    """Show the resolved hosts, groups, roles and addresses (secrets shown as references only)."""
    schema = registry().schema
    nr = _open(inventory, None, True)
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
    if json_out:
        click.echo(json.dumps({"hosts": rows}, indent=2, default=str))
        return
    table = Table(title=f"Inventory {inventory}", title_justify="left", show_lines=True)
    for col in ("host", "address", "user", "roles", "data"):
        table.add_column(col, overflow="fold")
    for r in rows:
        data: dict[str, Any] = r["data"]
        table.add_row(
            str(r["name"]),
            f"{r['address']}:{r['port']}",
            str(r["username"] or ""),
            "\n".join(r["roles"]),
            escape("\n".join(f"{k}: {v}" for k, v in data.items())),
        )
    out.print(table)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except NrError as exc:
        err.print(f"[red]error:[/] {escape(redact(str(exc)))}")
        sys.exit(EXIT_FAILED)
