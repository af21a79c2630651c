"""The drift report: text, JSON and a node_exporter textfile.

``nr drift`` is read-only: every component computes what it *would* change (its apply under
dry-run) plus its own findings, and each difference becomes a :class:`~nr.report.DriftItem` with
the command that repairs it. Exit codes: 0 no drift, 1 drift, 2 could not check (bad input or a
host that could not be read).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nr.plain import TextTable
from nr.report import DriftItem, RunReport
from nr.status import LastDrift
from nr.text import show

if TYPE_CHECKING:
    from rich.console import Console

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_UNCHECKED = 0, 1, 2


def drift_exit_code(report: RunReport) -> int:
    if report.failed_reasons or report.errors:
        return EXIT_UNCHECKED
    return EXIT_DRIFT if report.drift else EXIT_NO_DRIFT


def drift_json(report: RunReport) -> dict[str, Any]:
    code = drift_exit_code(report)
    return {
        "ok": code == EXIT_NO_DRIFT,
        "drift": [asdict(d) for d in report.drift],
        "unchecked_hosts": {h: report.failed_reasons[h] for h in report.failed_hosts},
        "errors": report.errors,
        "exit_code": code,
    }


def print_drift(report: RunReport, out: Console) -> None:
    if report.drift:
        table = TextTable(title="Drift")
        for col in ("component", "host", "what", "expected", "actual", "fix"):
            table.add_column(col, overflow="fold")
        for d in report.drift:
            table.add_row(*(show(x) for x in (d.component, d.host, d.what, d.expected, d.actual, d.fix)))
        out.print(table)
    for h in report.failed_hosts:
        out.print(f"[red]could not check {h}[/]: {show(report.failed_reasons[h])}", highlight=False)
    for e in report.errors:
        out.print(f"[red]could not check {show(e)}[/]", highlight=False)
    code = drift_exit_code(report)
    if code == EXIT_NO_DRIFT:
        out.print("[green]No drift[/]: every host matches the desired state")
    elif code == EXIT_DRIFT:
        out.print(f"[yellow]Drift[/]: {len(report.drift)} difference(s); run the fix commands above")
    else:
        out.print(
            f"[red]Could not check {len(report.failed_hosts)} host(s)[/]; drift found: {len(report.drift)}"
        )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prom_text(report: RunReport, now: float | None = None) -> str:
    """node_exporter textfile-collector format (pure)."""
    ts = time.time() if now is None else now
    lines = [
        "# HELP nr_drift_items Differences between a host and its desired state, by component.",
        "# TYPE nr_drift_items gauge",
    ]
    counts: dict[tuple[str, str], int] = {}
    for d in report.drift:
        counts[(d.component, d.host)] = counts.get((d.component, d.host), 0) + 1
    for (component, host), n in sorted(counts.items()):
        lines.append(f'nr_drift_items{{component="{_label(component)}",host="{_label(host)}"}} {n}')
    lines += [
        "# HELP nr_drift_items_total Differences found by the last drift check.",
        "# TYPE nr_drift_items_total gauge",
        f"nr_drift_items_total {len(report.drift)}",
        "# HELP nr_drift_hosts_unreachable Hosts that could not be checked in the last run.",
        "# TYPE nr_drift_hosts_unreachable gauge",
        f"nr_drift_hosts_unreachable {len(report.failed_hosts)}",
        "# HELP nr_drift_errors Components that could not be checked at all in the last run.",
        "# TYPE nr_drift_errors gauge",
        f"nr_drift_errors {len(report.errors)}",
        "# HELP nr_drift_last_run_timestamp_seconds When the last drift check finished (Unix time).",
        "# TYPE nr_drift_last_run_timestamp_seconds gauge",
        f"nr_drift_last_run_timestamp_seconds {ts:.3f}",
        "# HELP nr_drift_exit_code Exit code of the last drift check (0 none, 1 drift, 2 not checked).",
        "# TYPE nr_drift_exit_code gauge",
        f"nr_drift_exit_code {drift_exit_code(report)}",
    ]
    return "\n".join(lines) + "\n"


def write_prom(path: Path, text: str) -> None:
    """Write atomically (temp file + rename) so node_exporter never reads half a file."""
    if not re.search(r"\.prom$", path.name):
        raise ValueError(f"{path}: node_exporter's textfile collector only reads files ending in .prom")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def items_for_json(items: list[DriftItem]) -> list[dict[str, str]]:
    return [asdict(d) for d in items]


# -- the last result, for `nr status` -------------------------------------------------------------------
RESULT_NAME = ".nr-drift.json"
RESULT_KEY = "drift_result"


def result_path(inventory_dir: Path, setting: object = None) -> Path:
    """Where the last result is kept: ``data.drift_result`` (relative to the inventory folder), else
    ``<inventory>/.nr-drift.json``."""
    path = Path(str(setting)).expanduser() if setting else Path(RESULT_NAME)
    return path if path.is_absolute() else inventory_dir / path


def result_doc(report: RunReport, scope: str, now: float | None = None) -> dict[str, Any]:
    return {**drift_json(report), "finished": time.time() if now is None else now, "scope": scope}


def save_result(path: Path, doc: dict[str, Any]) -> str | None:
    """Write the result atomically (0600: it names hosts and what differs); the problem, or None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (json.dumps(doc, indent=1) + "\n").encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        return f"could not keep the result in {path}: {exc.strerror or exc}"
    return None


def load_result(path: Path) -> LastDrift | None:
    """The last result, None when no drift check left one, or a LastDrift naming why it is unreadable."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        items = tuple({k: str(v) for k, v in d.items()} for d in doc.get("drift") or [])
        unchecked = {str(k): str(v) for k, v in (doc.get("unchecked_hosts") or {}).items()}
        return LastDrift(
            str(path),
            float(doc["finished"]),
            int(doc["exit_code"]),
            items,
            unchecked,
            str(doc.get("scope", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return LastDrift(str(path), error=f"{path} is unreadable ({type(exc).__name__})")
