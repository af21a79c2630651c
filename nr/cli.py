"""The ``nr`` command line.

Exit codes: 0 all ok; 1 some host failed (``drift``: drift found); 2 bad input (inventory, config,
arguments) or, for ``drift``, a host that could not be checked.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
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
from nr.play import COMMANDS_GROUP, Component, PlayContext, host_groups, load_components, load_plays, roles
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


def _select(play: str, components: dict[str, Component]) -> list[Component]:
    plays = load_plays()
    if play in plays:
        missing = [n for n in plays[play] if n not in components]
        if missing:
            _bad_input([f"play '{play}' names unknown component(s): {', '.join(missing)}"])
        return [components[n] for n in plays[play]]
    if play == "site":
        return [c for c in components.values() if getattr(c, "in_site", True)]
    if play not in components:
        known = ", ".join(dict.fromkeys([*plays, "site", *components]))
        _bad_input([f"unknown play '{play}' (known: {known})"])
    return [components[play]]


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    components = load_components()
    selected = _select(play, components)
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


def _select_read_only(names: tuple[str, ...], components: dict[str, Component]) -> list[Component]:
    if not names:
        return [c for c in components.values() if getattr(c, "in_site", True)]
    unknown = [n for n in names if n not in components]
    if unknown:
        _bad_input([f"unknown component '{n}' (known: {', '.join(components)})" for n in unknown])
    return [components[n] for n in names]


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
    selected = _select_read_only(components, load_components())
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
    selected = _select_read_only(components, load_components())
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
    from nr.inventory.schema import DATA_KEYS

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
                "roles": roles(h),
                "data": {k: h.get(k) for k in DATA_KEYS if h.get(k) is not None},
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


LAB_NAME = click.option(
    "--name", default="nr-lab", show_default=True, help="Prefix of containers, network and image."
)
LAB_DIR = click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".nr-lab"),
    show_default=True,
    help="Where the key, known_hosts and inventory are written (git-ignored).",
)


@cli.group()
def lab() -> None:
    """The local lab: Docker containers that behave like small VMs (systemd, sshd)."""


@lab.command("up")
@click.option("--hosts", "count", type=click.IntRange(1, 50), default=3, show_default=True)
@LAB_NAME
@click.option(
    "--subnet", default="198.18.0.0/24", show_default=True, help="Lab network (198.18.0.0/15 range)."
)
@LAB_DIR
@click.option(
    "--k3s-binary",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A local k3s binary the k3s play pushes to the hosts (data.k3s_binary), as for air-gapped hosts.",
)
@click.option(
    "--docker-socket/--no-docker-socket",
    default=None,
    help="Mount this machine's Docker socket into the hosts (new hosts only; remembered).",
)
def lab_up(
    count: int, name: str, subnet: str, state_dir: Path, k3s_binary: Path | None, docker_socket: bool | None
) -> None:
    """Start N lab hosts and write an inventory for them (in --dir)."""
    from nr.lab import Lab

    try:
        lab = Lab(
            name=name,
            subnet=subnet,
            state_dir=state_dir,
            log=err,
            k3s_binary=k3s_binary,
            docker_socket=docker_socket,
        )
        info = lab.up(count)
    except NrError as exc:
        _bad_input([str(exc)])
    out.print(f"Lab '{name}' is up: {', '.join(info.hosts)}")
    out.print(f"Inventory: {info.inventory}")
    out.print(f"Try:  nr inventory -i {info.inventory}\n      nr run site -i {info.inventory}")


@lab.command("image")
def lab_image() -> None:
    """Build the lab's base image if missing (debootstrap, cached) and print its name.

    It also serves as an offline base for the service images (Debian bookworm, python3, venv).
    """
    from nr.lab import Lab

    try:
        click.echo(Lab(log=err).ensure_image())
    except NrError as exc:
        _bad_input([str(exc)])


@lab.command("down")
@LAB_NAME
@LAB_DIR
def lab_down(name: str, state_dir: Path) -> None:
    """Remove the lab's containers and network (the cached base image is kept)."""
    from nr.lab import Lab

    removed = Lab(name=name, state_dir=state_dir, log=err).down()
    out.print(f"Removed {removed} lab host(s)")


@lab.command("status")
@LAB_NAME
@LAB_DIR
def lab_status(name: str, state_dir: Path) -> None:
    """List the lab's hosts, their addresses and state."""
    from nr.lab import Lab

    table = Table(title=f"Lab {name}", title_justify="left")
    for col in ("host", "address", "state"):
        table.add_column(col)
    hosts = Lab(name=name, state_dir=state_dir, log=err).status()
    for h in hosts:
        table.add_row(h.name, h.address, h.state)
    out.print(table if hosts else f"Lab '{name}' has no hosts (nr lab up)")


@cli.group()
def vms() -> None:
    """Multipass VMs for a real site (like the seed's mp-up.sh)."""


@vms.command("up")
@click.option("--count", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--prefix", default="vm", show_default=True, help="VM names: PREFIX1..PREFIXN.")
@click.option("--cpus", default=2, show_default=True)
@click.option("--memory", default="2G", show_default=True)
@click.option("--disk", default="10G", show_default=True)
@click.option("--image", default="22.04", show_default=True, help="Ubuntu release for multipass launch.")
@click.option(
    "--ssh-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("~/.ssh/id_ed25519.pub"),
    show_default=True,
    help="Public key installed on the VMs by cloud-init.",
)
@click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".nr-vms"),
    show_default=True,
    help="Where cloud-init, known_hosts and the inventory are written.",
)
def vms_up(
    count: int, prefix: str, cpus: int, memory: str, disk: str, image: str, ssh_key: Path, state_dir: Path
) -> None:
    """Create (or reuse) Multipass VMs and write an inventory for them."""
    from nr.vms import VmSpec
    from nr.vms import vms_up as up

    try:
        inv = up(VmSpec(count, prefix, cpus, memory, disk, image, ssh_key.expanduser()), state_dir, log=err)
    except NrError as exc:
        _bad_input([str(exc)])
    out.print(f"Inventory: {inv}\nTry:  nr inventory -i {inv}\n      nr run site -i {inv}")


@vms.command("down")
@click.option("--prefix", default="vm", show_default=True)
@click.option("--count", type=click.IntRange(1, 20), default=3, show_default=True)
def vms_down(prefix: str, count: int) -> None:
    """Delete and purge the VMs PREFIX1..PREFIXN."""
    from nr.vms import vms_down as down

    try:
        down(prefix, count, log=err)
    except NrError as exc:
        _bad_input([str(exc)])


def _register_plugin_commands() -> None:
    """Commands contributed by components (entry-point group ``nr.commands``)."""
    for ep in entry_points(group=COMMANDS_GROUP):
        cmd = ep.load()
        if isinstance(cmd, click.Command) and cmd.name not in cli.commands:
            cli.add_command(cmd)


def main() -> None:
    _register_plugin_commands()
    try:
        cli(standalone_mode=True)
    except NrError as exc:
        err.print(f"[red]error:[/] {escape(redact(str(exc)))}")
        sys.exit(EXIT_FAILED)
