"""``nr status`` (loaded when used) and the site page ``nr drift --html`` writes.

Read-only: one round trip per host (:func:`nr.status.collect`), no lock. Exit 0 when every host
answers and nothing fails, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from nornir.core import Nornir

from nr import preconnect
from nr.cli import EXIT_FAILED, EXIT_OK, _bad_input, _open, err, inventory_opt, json_opt, out, workers_opt
from nr.config import DEFAULT_INVENTORY
from nr.drift import RESULT_KEY, load_result, result_path
from nr.play import PlayContext
from nr.registry import registry
from nr.report import RunReport
from nr.runner import close_all, ssh_stats
from nr.status import LastDrift, SiteStatus, collect
from nr.text import show

HTML_HELP = "Also write the site as one self-contained HTML page (a picture, the tables, the fixes)."


def _setting(nr: Nornir, key: str) -> object:
    host = next(iter(nr.inventory.hosts.values()), None)
    return host.get(key) if host is not None else nr.inventory.defaults.data.get(key)


def read_site(
    nr: Nornir, inventory: str, drift: LastDrift | None = None, ssh: dict[str, Any] | None = None
) -> SiteStatus:
    """The site's status (every component of the default play that has one) and the last drift result:
    ``drift`` when given, else what the last ``nr drift`` left. ``ssh`` receives the SSH statistics."""
    report = RunReport("status", dry_run=True)
    inv_arg = None if inventory == DEFAULT_INVENTORY else inventory
    ctx = PlayContext(nr.with_processors([report]), component="nr", recorder=report, inventory_arg=inv_arg)
    preconnect.start(ctx)  # the handshakes go on while the components load
    reg = registry()
    site = str(_setting(nr, "site_name") or Path(inventory).resolve().name)
    try:
        components = [reg.component(name) for name in reg.default_play]
        status = collect(ctx, components, site)
    finally:
        if ssh is not None:
            ssh.update(ssh_stats(nr))
        ctx.end()
        close_all(nr)
    if drift is None:
        drift = load_result(result_path(ctx.inventory_dir, _setting(nr, RESULT_KEY)))
    return replace(status, drift=drift)


def write_html(path: Path, status: SiteStatus) -> None:
    from nr.html import write_page

    try:
        write_page(path, status)
    except OSError as exc:
        _bad_input([f"--html {path}: {exc.strerror or exc}"])


def keep_drift(nr: Nornir, report: RunReport, inventory: str, scope: str, html: Path | None) -> None:
    """After ``nr drift``: keep its result for ``nr status`` and, with ``--html``, write the page with it."""
    from nr.drift import result_doc, save_result

    first = next(iter(nr.inventory.hosts.values()), None)
    path = result_path(Path(inventory).expanduser().resolve(), first.get(RESULT_KEY) if first else None)
    problem = save_result(path, result_doc(report, scope))
    if problem:
        err.print(f"[yellow]warning:[/] {show(problem)}")
    if html is not None:
        write_html(html, read_site(nr, inventory, load_result(path) if not problem else None))


@click.command("status")
@inventory_opt
@json_opt
@click.option(
    "--html", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE", help=HTML_HELP
)
@workers_opt
def status(inventory: str, json_out: bool, html: Path | None, workers: int | None) -> None:
    """Read-only: the site at a glance, in one round trip per host.

    \b
    Hosts (reachable, OS, load, free memory and disk, and each component's line, e.g. a role and
    version); each component's section (e.g. a cluster's layout as a table, an app's routes with the
    latency of a read-only probe); the last drift result; what is not as it should be, with the fix.
    Exit 0 all well, 1 something is not, 2 bad input.
    """
    nr = _open(inventory, workers, True)
    ssh: dict[str, Any] = {}
    site = read_site(nr, inventory, ssh=ssh)
    if html is not None:
        write_html(html, site)
    if json_out:
        from nr.status_view import status_json

        click.echo(json.dumps({**status_json(site), "ssh": ssh}, indent=2))
    else:
        from nr.status_view import print_status

        print_status(site, out)
    sys.exit(EXIT_OK if site.ok else EXIT_FAILED)
