"""The ``nr`` command line.

Exit codes: 0 all ok; 1 some host failed (``drift``: drift found); 2 bad input (inventory, config,
arguments) or, for ``drift``, a host that could not be checked.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from nr import __version__, dataclass_code, import_hooks
from nr.cli_group import NrGroup
from nr.config import DEFAULT_INVENTORY, Settings, init_nornir
from nr.console import lazy_console
from nr.errors import InventoryError, NrError
from nr.registry import registry
from nr.runoptions import RunCommand, set_run_options
from nr.secrets import redact
from nr.text import show

# What a command does not use is not imported at start (see nr.console and tests/unit/test_startup.py):
# Nornir, the report and Rich when a command needs them, the SSH stack on the first connection.
if TYPE_CHECKING:
    from nornir.core import Nornir
    from rich.console import Console

    from nr.play import Component
    from nr.report import RunReport
    from nr.runner import Action

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

out = lazy_console(highlight=False, soft_wrap=True)
err = lazy_console(stderr=True, highlight=False, soft_wrap=True)


def _bad_input(messages: Iterable[str]) -> NoReturn:
    for m in messages:
        err.print(f"[red]error:[/] {show(redact(m))}")
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
    from nr.play import host_groups

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


def _play_names(play: str) -> tuple[str, ...]:
    """The component names of PLAY (a play of the catalog, or one component's name), in order."""
    reg = registry()
    names = reg.play(play)
    if names is None:
        known = ", ".join(dict.fromkeys([*reg.plays, *reg.entries]))
        _bad_input([f"unknown play '{play}' (known: {known})"])
    return tuple(names)


def _run_selected(
    nr: Nornir,
    report: RunReport,
    names: tuple[str, ...],
    limit: set[str] | None,
    inventory: str,
    action: Action,
    mode: str,
) -> dict[str, dict[str, object]]:
    """Validate the components against the inventory (exit 2 before anything runs on a host), then run
    (``mode``: apply, check or drift, for the reads the components declare: nr.readahead); a preflight's
    problems (nr.runner.preflight) exit 2 too, before anything changes. The hosts' connections open
    meanwhile (nr.preconnect: a handshake runs nothing on the host)."""
    from nr import preconnect
    from nr.play import PlayContext
    from nr.runner import Refused, close_all, execute

    inv_arg = None if inventory == DEFAULT_INVENTORY else inventory
    nr = nr.with_processors([report])
    ctx = PlayContext(nr, component="nr", recorder=report, limit=limit, inventory_arg=inv_arg)
    preconnect.start(ctx)
    selected = _components(names)
    problems = [p for c in selected for p in c.validate(ctx.for_component(c.name))]
    if problems:
        ctx.end()
        close_all(nr)
        _bad_input(problems)
    try:
        return execute(nr, ctx, report, selected, action, err, mode)
    except Refused as exc:
        _bad_input(exc.problems)


def _progress(json_out: bool) -> Console | None:
    return None if json_out else err


@click.group(cls=NrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nr")
def cli() -> None:
    """nr: converge a few Linux VMs to a site described by an inventory, then check it and watch for drift.

    \b
    nr run PLAY changes the hosts (a play of the catalog, or one component by name);
    nr check proves the result; nr drift compares the hosts with the desired state (read-only);
    nr status shows the site at a glance (--html FILE: a page with a picture of it).
    Shell completion: eval "$(_NR_COMPLETE=bash_source nr)" (zsh_source, fish_source).
    \b
    Exit codes: 0 ok; 1 a host failed (drift: drift found);
    2 bad input, or another run holds the inventory (drift: could not check); 130 Ctrl-C.
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
    help="Hosts handled in parallel (default: every host, 20 to 200; or NR_WORKERS, or config.yaml runner.options.num_workers).",
)


def _complete_plays(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of PLAY and COMPONENT: the catalog's names."""
    reg = registry()
    names = [*reg.plays, *reg.entries] if param.name == "play" else list(reg.entries)
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete)]


@cli.command(cls=RunCommand)
@click.argument("play", shell_complete=_complete_plays)
@inventory_opt
@limit_opt
@click.option("--dry-run", is_flag=True, help="Change nothing; show what would change, with diffs.")
@click.option("--diff", "diffs", is_flag=True, help="Also show each change's diff (as Ansible's --diff).")
@json_opt
@workers_opt
def run(
    play: str,
    inventory: str,
    limit: tuple[str, ...],
    dry_run: bool,
    diffs: bool,
    json_out: bool,
    workers: int | None,
    **run_options: str | None,
) -> None:
    """Converge the hosts: PLAY is a play of the catalog (e.g. site) or one component.

    Prints progress per host (on a terminal also of long steps: builds, uploads, waits), then a
    summary: per host what was ok, changed or failed, and one line per change; the diffs with
    --diff or --dry-run. One run at a time changes an inventory (a lock in its folder); a dry run
    takes no lock. Options a component declares set one of its data keys for this run, on every host.
    """
    from nr.lock import Locked, RunLock
    from nr.report import RunReport
    from nr.runner import exit_interrupted

    names = _play_names(play)
    nr = _open(inventory, workers, dry_run)
    problems = set_run_options(nr, play, names, {k: v for k, v in run_options.items() if v is not None})
    if problems:
        _bad_input(problems)
    report = RunReport(
        play,
        dry_run=dry_run,
        console=_progress(json_out),
        inventory_arg=None if inventory == DEFAULT_INVENTORY else inventory,
    )
    hosts = _limit(nr, limit)
    if not json_out and sys.stdout.isatty() and err.is_terminal:
        from nr import progress

        progress.enable(err)
    lock = RunLock(Path(inventory).expanduser())
    try:
        if not dry_run:
            lock.acquire()
        stats = _run_selected(nr, report, names, hosts, inventory, lambda c, ctx: c.apply(ctx), "apply")
    except Locked as exc:
        _bad_input([str(exc)])
    finally:
        lock.release()
    if json_out:
        click.echo(json.dumps(report.to_json(ssh=stats), indent=2))
    else:
        report.print_summary(out, diffs=diffs or dry_run)
    if report.interrupted:
        exit_interrupted(report)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def _read_only_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The named components, or those of the site play when none is named."""
    reg = registry()
    if not names:
        return tuple(reg.default_play)
    unknown = [n for n in names if n not in reg.entries]
    if unknown:
        _bad_input([f"unknown component '{n}' (known: {', '.join(reg.entries)})" for n in unknown])
    return names


@cli.command()
@click.argument("components", nargs=-1, metavar="[COMPONENT]...", shell_complete=_complete_plays)
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
    """Run the checks of every component, or of the ones named.

    They change nothing on the hosts; a component's check may write test data through the
    service it checks (see the README).
    Exit 0 all passed (warnings allowed), 1 a check failed or a host could not be checked.
    """
    from nr import views
    from nr.report import RunReport
    from nr.runner import exit_interrupted

    selected = _read_only_names(components)
    nr = _open(inventory, workers, True)
    report = RunReport("check", dry_run=True, console=_progress(json_out))
    _run_selected(nr, report, selected, _limit(nr, limit), inventory, lambda c, ctx: c.check(ctx), "check")
    if json_out:
        click.echo(json.dumps(views.checks_json(report), indent=2))
    else:
        views.print_checks(report, out, verbose)
    if report.interrupted:
        exit_interrupted(report)
    sys.exit(EXIT_OK if views.checks_ok(report) else EXIT_FAILED)


@cli.command()
@click.argument("components", nargs=-1, metavar="[COMPONENT]...", shell_complete=_complete_plays)
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
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the site page of `nr status --html` with this result (for a scheduled check).",
)
@workers_opt
def drift(
    components: tuple[str, ...],
    inventory: str,
    limit: tuple[str, ...],
    json_out: bool,
    prom: Path | None,
    html: Path | None,
    workers: int | None,
) -> None:
    """Read-only: list every difference between the hosts and the desired state, with the fix.

    All components, or the ones named. Exit 0 no drift, 1 drift, 2 could not check.
    The result is kept for `nr status` (data.drift_result, default <inventory>/.nr-drift.json).
    Schedule it with contrib/nr-drift.timer or cron.
    """
    from nr.drift import drift_exit_code, drift_json, print_drift, prom_text, write_prom
    from nr.report import RunReport
    from nr.runner import exit_interrupted

    if prom is not None and not prom.name.endswith(".prom"):
        _bad_input([f"--prom {prom}: node_exporter's textfile collector only reads files ending in .prom"])
    selected = _read_only_names(components)
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
    _run_selected(nr, report, selected, _limit(nr, limit), inventory, lambda c, ctx: c.drift(ctx), "drift")
    if report.interrupted:
        print_drift(report, out)
        exit_interrupted(report)
    if prom is not None:
        write_prom(prom, prom_text(report))
    from nr.status_cli import keep_drift

    keep_drift(nr, report, inventory, ", ".join([*components, *(f"--limit {v}" for v in limit)]), html)
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
    from nr import views
    from nr.config import inventory_rows

    try:
        rows = inventory_rows(Settings(Path(inventory)))
    except InventoryError as exc:
        _bad_input(exc.issues)
    if json_out:
        click.echo(json.dumps({"hosts": rows}, indent=2, default=str))
        return
    views.print_inventory(rows, inventory, out)


def main() -> None:
    # At exit, what is left is frozen for the garbage collector, so the interpreter's final collection
    # skips it (~85 ms after a whole site, bench/README.md): nothing of nr's needs a finalizer then.
    atexit.register(gc.freeze)
    dataclass_code.install()  # dataclasses' methods compiled once per machine (nr.dataclass_code)
    import_hooks.install()  # Invoke's test helper loads only if used (nr.import_hooks)
    # standalone_mode=False: click would turn Ctrl-C into "Aborted!" and exit 1; nr exits 130
    try:
        rv = cli(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):  # Ctrl-C before any host was touched
        from nr.runner import exit_interrupted

        err.print("[red]Interrupted (Ctrl-C)[/]")
        exit_interrupted()
    except NrError as exc:
        err.print(f"[red]error:[/] {show(redact(str(exc)))}")
        sys.exit(EXIT_FAILED)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
