"""What ``nr status`` prints: text (tables: nr.plain) and one JSON document, from a :class:`SiteStatus`.

Generic: every section is rendered the same way, whatever component made it. Every value passes the
secret redactor, and text output escapes control characters and markup (:func:`nr.text.show`); a
value that is not as planned is marked (``✗``, ``!``) as well as coloured, so the marks survive a
pipe or a log file.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from enum import Enum
from typing import TYPE_CHECKING, Any

from nr import hostinfo
from nr.plain import TextTable
from nr.secrets import redact
from nr.status import Cell, HostState, LastDrift, Level, SiteStatus, Table
from nr.text import show

if TYPE_CHECKING:  # Rich is imported only to print on a terminal (nr.console)
    from rich.console import Console

STYLE = {Level.OK: "green", Level.WARN: "yellow", Level.FAIL: "red", Level.INFO: ""}
MARK = {Level.FAIL: "✗ ", Level.WARN: "! "}


def cell_text(cell: Cell) -> str:
    """A cell as Rich markup: marked, coloured, the note in brackets; the text escaped."""
    text = MARK.get(cell.level, "") + redact(cell.text) + (f" ({redact(cell.note)})" if cell.note else "")
    style = STYLE[cell.level]
    return f"[{style}]{show(text)}[/]" if style else show(text)


def _pct(value: float | None) -> str:
    return f"{value:.0f}%" if value is not None else "?"


def host_cells(h: HostState) -> list[Cell]:
    """reachable, OS, load, memory free, disk free."""
    if not h.reachable:
        return [Cell("no", Level.FAIL, h.error), *(Cell("?") for _ in range(4))]
    i = h.info or hostinfo.HostInfo()
    load = f"{i.load1:.2f}" if i.load1 is not None else "?"
    busy = i.load1 is not None and i.cpus is not None and i.load1 > 2 * i.cpus
    mem = Cell(f"{hostinfo.size(i.mem_available_kib)} ({_pct(i.mem_free_pct)})", _low(i.mem_free_pct))
    disk = Cell(f"{hostinfo.size(i.disk_free_kib)} ({_pct(i.disk_free_pct)})", _low(i.disk_free_pct))
    return [
        Cell("yes", Level.OK),
        Cell(i.os or "?"),
        Cell(load + (f" ({i.cpus} CPU)" if i.cpus else ""), Level.WARN if busy else Level.INFO),
        mem,
        disk,
    ]


def _low(pct: float | None) -> Level:
    if pct is None:
        return Level.INFO
    return Level.FAIL if pct < 5 else Level.WARN if pct < 15 else Level.INFO


def host_columns(status: SiteStatus) -> list[str]:
    """The labels of the sections' host lines, in order of appearance (one column each)."""
    return list(dict.fromkeys(line.label for s in status.sections for line in s.host_lines))


def hosts_table(status: SiteStatus) -> Table:
    extra = host_columns(status)
    rows = []
    for h in status.hosts:
        lines = {line.label: line.value for line in status.lines_of(h.name)}
        cells = [Cell(h.name), Cell(h.address), Cell(", ".join(h.roles) or "-"), *host_cells(h)]
        rows.append(tuple(cells + [lines.get(label, Cell("-")) for label in extra]))
    columns = ("host", "address", "roles", "reachable", "OS", "load", "memory free", "disk free", *extra)
    return Table("Hosts", columns, tuple(rows))


def print_table(table: Table, out: Console) -> None:
    if not table.columns:
        out.print(show(redact(table.title)))
        return
    text = TextTable(title=show(redact(table.title)))
    for col in table.columns:
        text.add_column(show(col), overflow="fold")
    for row in table.rows:
        text.add_row(*(cell_text(c) for c in row))
    out.print(text)


def ago(finished: float, now: float) -> str:
    minutes = max(0, int(now - finished)) // 60
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


def drift_line(drift: LastDrift, now: float) -> Cell:
    if drift.error:
        return Cell(f"last drift check: {drift.error}", Level.WARN)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(drift.finished or 0))
    head = f"last drift check {when} ({ago(drift.finished or 0, now)}{', ' + drift.scope if drift.scope else ''})"
    if drift.exit_code == 0:
        return Cell(f"{head}: no drift", Level.OK)
    if drift.unchecked:
        return Cell(
            f"{head}: {len(drift.unchecked)} host(s) could not be checked, {len(drift.items)} difference(s)",
            Level.FAIL,
        )
    return Cell(f"{head}: {len(drift.items)} difference(s)", Level.FAIL)


def print_status(status: SiteStatus, out: Console) -> None:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.taken))
    out.print(f"[bold]Site {show(redact(status.site))}[/] [dim]read at {when} in {status.seconds:.1f} s[/]")
    print_table(hosts_table(status), out)
    for s in status.sections:
        out.print(f"[bold]{show(s.title)}[/]: {cell_text(s.summary)}")
        for table in s.tables:
            print_table(table, out)
    if status.drift is not None:
        out.print(cell_text(drift_line(status.drift, time.time())))
        for item in status.drift.items[:20]:
            out.print(
                f"  [red]✗ {show(redact(item.get('host', '')))} {show(redact(item.get('what', '')))}[/]: "
                f"{show(redact(item.get('actual', '')))} — fix: {show(redact(item.get('fix', '')))}"
            )
    print_problems(status, out)


def print_problems(status: SiteStatus, out: Console) -> None:
    unreachable = [h for h in status.hosts if not h.reachable]
    if status.problems or unreachable:
        out.print("[bold red]Not as it should be:[/]")
    for h in unreachable:
        out.print(f"  [red]✗ {show(redact(h.name))} unreachable[/]: {show(redact(h.error))}")
    for p in status.problems:
        style = STYLE[p.level] or "red"
        where = f" ({p.host})" if p.host else ""
        out.print(
            f"  [{style}]{MARK.get(p.level, '')}{show(redact(p.what))}{show(where)}[/]: {show(redact(p.actual))}"
            f" [dim](expected {show(redact(p.expected))})[/] — fix: {show(redact(p.fix))}"
        )
    verdict = "[green]OK[/]: every host answers, nothing failing" if status.ok else "[red]NOT OK[/]"
    out.print(verdict)


def _plain(value: Any) -> Any:
    """Enums as their values, strings redacted, recursively (for JSON)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def status_json(status: SiteStatus) -> dict[str, Any]:
    doc: dict[str, Any] = _plain(asdict(status))
    doc["ok"] = status.ok
    return doc
