"""``nr backup`` and ``nr restore`` (loaded by the ``nr`` group only when one of them is used).

Exit codes as ``nr run``: 0 ok; 1 a host or component failed (the backup is then not complete); 2 bad
input (inventory, arguments, a backup that is incomplete, modified or does not fit the inventory), or
another run holds the inventory; 130 Ctrl-C.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import click
from nornir.core import Nornir

from nr.backup import run as backup_run
from nr.backup.api import BacksUp
from nr.backup.folder import Backup, open_backup
from nr.backup.run import (
    SECRETS_STEP,
    BackupRequest,
    BackupResult,
    RestoreSelection,
    describe,
    human_size,
    open_values,
    plan_restore,
    run_backup,
    run_restore,
    select_restore,
    site_name,
)
from nr.cli import err, inventory_opt, json_opt, out, workers_opt
from nr.config import DEFAULT_INVENTORY, Settings, init_nornir
from nr.errors import NrError
from nr.inventory.validate import InventoryError
from nr.lock import Locked, RunLock
from nr.play import Component, PlayContext
from nr.report import RunReport
from nr.runner import exit_interrupted, preflight
from nr.secrets import Secret, SecretError, SecretRef, redact
from nr.text import show

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

secrets_key_opt = click.option(
    "--secrets-key",
    metavar="env:NAME|file:PATH",
    default=None,
    help="Passphrase (at least 16 characters) for the encrypted secrets file (secrets.enc). Without it a "
    "backup records only where each secret is kept and a fingerprint of it, never its value.",
)


def bad_input(messages: Iterable[str]) -> NoReturn:
    for m in messages:
        err.print(f"[red]error:[/] {show(redact(m))}")
    sys.exit(EXIT_BAD_INPUT)


def _key(value: str | None) -> Secret | None:
    if value is None:
        return None
    try:
        return SecretRef.parse(value, Path.cwd()).resolve()
    except SecretError as exc:
        bad_input([f"--secrets-key {value}: {exc}"])


def _context(inventory: str, workers: int | None, report: RunReport) -> tuple[Nornir, PlayContext]:
    try:
        nr = init_nornir(Settings(Path(inventory), workers, report.dry_run))
    except InventoryError as exc:
        bad_input(exc.issues)
    nr = nr.with_processors([report])
    inv_arg = None if inventory == DEFAULT_INVENTORY else inventory
    return nr, PlayContext(nr, component="nr", recorder=report, inventory_arg=inv_arg)


def _validate(ctx: PlayContext, comps: list[Component]) -> None:
    problems = [p for c in comps for p in c.validate(ctx.for_component(c.name))]
    if problems:
        bad_input(problems)
    if problems := preflight(ctx, comps):
        bad_input(problems)


def _backup_summary(report: RunReport) -> None:
    """What each host did for the backup (the steps, and why one failed)."""
    for host in report.hosts():
        rows = [r for r in report.rows if r.host == host]
        steps = ", ".join(f"[red]{show(r.task)} failed[/]" if r.failed else show(r.task) for r in rows)
        out.print(f"  {show(host)}: {steps}", highlight=False)
    for host in report.failed_hosts:
        out.print(f"  [red]{show(host)}[/]: {show(report.failed_reasons[host])}", highlight=False)
    for e in report.errors:
        out.print(f"  [red]{show(e)}[/]", highlight=False)


def _finish(report: RunReport, json_doc: dict[str, object] | None, json_out: bool, verdict: str) -> NoReturn:
    if json_out:
        click.echo(json.dumps(json_doc, indent=2))
    else:
        if report.play == "backup":
            _backup_summary(report)
        else:
            report.print_summary(out)
        out.print(verdict)
    if report.interrupted:
        exit_interrupted(report)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@click.command()
@inventory_opt
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("backups"),
    show_default=True,
    help="Folder the backup folder <site>-<UTC time> is made in (0700).",
)
@click.option(
    "--keep",
    type=click.IntRange(1, None),
    default=None,
    metavar="N",
    help="After a complete backup, keep only the N newest complete backups of the site in --dest.",
)
@click.option(
    "--only", "only", multiple=True, metavar="COMPONENT", help="Only these components (repeatable)."
)
@secrets_key_opt
@json_opt
@workers_opt
def backup(
    inventory: str,
    dest: Path,
    keep: int | None,
    only: tuple[str, ...],
    secrets_key: str | None,
    json_out: bool,
    workers: int | None,
) -> None:
    """Back up the site's data: every component that keeps data (in the site play's order), the inventory's
    files and where each secret is kept, into DEST/<site>-<UTC time>/ with a manifest and the sha256 of
    every file. A backup with a failed host is left as <name>.partial and is never restorable."""
    comps = backup_run.participants(BacksUp)
    unknown = [n for n in only if n not in {c.name for c in comps}]
    if unknown:
        known = ", ".join(c.name for c in comps)
        bad_input(
            [f"--only {n}: no component of that name backs anything up (known: {known})" for n in unknown]
        )
    comps = [c for c in comps if not only or c.name in only]
    key = _key(secrets_key)
    report = RunReport("backup", console=None if json_out else err)
    nr, ctx = _context(inventory, workers, report)
    _validate(ctx, comps)
    try:
        result, stats = run_backup(nr, ctx, report, comps, BackupRequest(dest, keep, key), err)
    except OSError as exc:
        bad_input([f"--dest {dest}: {exc}"])
    _finish(report, {**report.to_json(ssh=stats), "backup": result.to_json()}, json_out, _verdict(result))


def _verdict(result: BackupResult) -> str:
    size = human_size(result.size)
    if not result.complete:
        return (
            f"[red]BACKUP INCOMPLETE[/]: {show(str(result.path))} ({result.files} files, {size}); it cannot "
            "be restored: fix the failure above and back up again"
        )
    gone = f"; removed {len(result.removed)} older backup(s)" if result.removed else ""
    return (
        f"[green]BACKUP COMPLETE[/]: {show(str(result.path))} ({result.files} files, {size}, "
        f"{result.seconds:.1f} s){gone}"
    )


def _show_plan(sel: RestoreSelection, header: str) -> None:
    out.print(f"[bold]{show(header)}[/]")
    for name, lines in sel.lines().items():
        out.print(f"[bold]{show(name)}[/]")
        for line in lines:
            out.print(f"  {show(line.strip())}", highlight=False)


def _confirm(site: str) -> None:
    if not sys.stdin.isatty():
        bad_input(["nr restore replaces the site's data: pass --yes (stdin is not a terminal to ask on)"])
    answer = click.prompt(f"This replaces the data of site {site}. Type the site name to go on", default="")
    if answer.strip() != site:
        bad_input(["not confirmed: nothing was changed"])


@click.command()
@click.argument("backup_dir", metavar="BACKUP", type=click.Path(path_type=Path))
@inventory_opt
@click.option(
    "--only",
    metavar="COMPONENT",
    default=None,
    help=f"Restore only this component's data (or '{SECRETS_STEP}': only write the backup's secrets back "
    "into the inventory, to rebuild a site from scratch before `nr run`).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check the backup against the inventory and show the plan; change nothing.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@secrets_key_opt
@json_opt
@workers_opt
def restore(
    backup_dir: Path,
    inventory: str,
    only: str | None,
    dry_run: bool,
    yes: bool,
    secrets_key: str | None,
    json_out: bool,
    workers: int | None,
) -> None:
    """Restore the site's data from BACKUP (a folder nr backup made): checks every file's sha256 and that
    the backup fits the inventory, shows the plan, asks (or --yes), then restores each component."""
    backup, values, comps = _open_restore(backup_dir, secrets_key, only)
    report = RunReport("restore", dry_run=dry_run, console=None if json_out else err)
    nr, ctx = _context(inventory, workers, report)
    _validate(ctx, comps)
    try:
        sel = plan_restore(ctx, backup, comps, values)
    except NrError as exc:
        bad_input([f"cannot plan the restore (nothing was changed): {exc}"])
    if sel.problems():
        bad_input(sel.problems())
    site = site_name(ctx)
    doc: dict[str, object] = {"backup": str(backup.root), "site": site, "plan": sel.lines()}
    _present(sel, doc, f"Restore {describe(backup)} onto site {site}:", json_out, dry_run)
    if not yes:
        _confirm(site)
    lock = RunLock(Path(inventory).expanduser())
    try:
        lock.acquire()
        stats = run_restore(nr, ctx, report, sel, err)
    except Locked as exc:
        bad_input([str(exc)])
    finally:
        lock.release()
    verdict = "[green]RESTORED[/]" if report.ok else "[red]RESTORE FAILED[/]: the site may be half restored"
    _finish(
        report,
        {**report.to_json(ssh=stats), "restore": doc},
        json_out,
        f"{verdict} from {show(str(backup.root))}",
    )


def _open_restore(
    folder: Path, secrets_key: str | None, only: str | None
) -> tuple[Backup, dict[str, str], list[Component]]:
    if only == SECRETS_STEP and secrets_key is None:
        bad_input([f"--only {SECRETS_STEP} writes the backup's secrets back: it needs --secrets-key"])
    try:
        backup = open_backup(folder.expanduser())
        values = open_values(backup, _key(secrets_key))
    except NrError as exc:
        bad_input([str(exc)])
    comps, problems = select_restore(backup, only)
    if problems:
        bad_input(problems)
    return backup, values, comps


def _present(
    sel: RestoreSelection, doc: dict[str, object], header: str, json_out: bool, dry_run: bool
) -> None:
    """Show the plan (text); on a dry run, exit 0 after it (with --json: the plan as one document)."""
    if not json_out:
        _show_plan(sel, header)
    if not dry_run:
        return
    if json_out:
        click.echo(json.dumps({"ok": True, "dry_run": True, "restore": doc}, indent=2))
    else:
        out.print("[green]DRY RUN[/]: the backup fits the inventory; nothing was changed")
    sys.exit(EXIT_OK)
