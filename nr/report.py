"""Run reporting: live progress while tasks run, then a summary (text or one JSON document).

:class:`RunReport` is both the Nornir processor that prints progress per host and the recorder the
play context writes results into. Everything it prints or serializes goes through the secret
redactor.
"""

from __future__ import annotations

import shlex
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from nornir.core.exceptions import NornirSubTaskError
from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Result, Task

from nr.errors import NrError
from nr.outcome import Finding, Outcome
from nr.plain import TextTable
from nr.play import OutcomeResult
from nr.secrets import redact
from nr.text import show

if TYPE_CHECKING:  # Rich is imported when something is printed on a terminal (nr.console)
    from rich.console import Console


@dataclass
class Row:
    host: str
    task: str
    changed: bool
    failed: bool
    diff: str
    error: str
    changes: list[str] = field(default_factory=list)  # one line per change: what changed (or would)


def change_lines(outcome: Outcome[Any]) -> list[str]:
    """What an outcome changed, one line each: its changes' ``what``; for a step that reports its
    actions in its diff only (e.g. cluster operations), those actions, counted when there are many."""
    whats = [c.what for c in outcome.changes]
    if whats or not outcome.changed:
        return whats
    lines = outcome.extra_diff.splitlines()
    actions = [line[2:].strip() for line in lines if line.startswith(("~ ", "+ ", "- "))]
    if actions and len(actions) <= MAX_ACTION_LINES:
        return actions
    if actions:
        counts = Counter(a.split()[0] for a in actions if a.split())
        return [", ".join(f"{n} x {word}" for word, n in counts.items())]
    first = next((line.strip() for line in lines if line.strip()), "changed")
    return [first]


MAX_ACTION_LINES = 4


@dataclass(frozen=True)
class DriftItem:
    """One difference found by ``nr drift`` and the command that repairs it."""

    component: str
    host: str
    what: str
    expected: str
    actual: str
    fix: str


@dataclass(frozen=True)
class CheckRow:
    component: str
    host: str
    name: str
    ok: bool
    detail: str
    hint: str
    warning: bool


def error_message(exc: BaseException | None, result: Result | None = None) -> str:
    """A one-line, redacted explanation of why a task failed."""
    if exc is None:
        text = str(result.result) if result is not None and result.result else "failed"
        return redact(text.strip().splitlines()[-1] if text.strip() else "failed")
    if isinstance(exc, NornirSubTaskError):
        inner = [r for r in exc.result if r.failed and r.exception is not None and r.exception is not exc]
        if inner:
            return error_message(inner[-1].exception, inner[-1])
    if isinstance(exc, NrError):
        return redact(str(exc))
    return redact(f"{type(exc).__name__}: {exc}")


@dataclass
class RunReport:
    """Collects rows, changes, checks and drift of one ``nr`` invocation; prints progress live."""

    play: str
    dry_run: bool = False
    console: Console | None = None  # progress goes here (stderr); None: quiet
    rows: list[Row] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    drift: list[DriftItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed_reasons: dict[str, str] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    tracebacks: list[str] = field(default_factory=list)  # unexpected exceptions (printed with NR_DEBUG=1)
    errors: list[str] = field(default_factory=list)  # failures of a whole component, not of one host
    inventory_arg: str | None = None  # how the operator named the inventory (for fix commands)
    interrupted: bool = False  # Ctrl-C ended the run
    # results of hosts that finished a step whose other hosts still run (recorded with the step, or
    # by flush_pending when the run is interrupted before the step ends)
    _pending: dict[str, dict[str, MultiResult]] = field(default_factory=dict, repr=False)
    _running: set[tuple[str, str]] = field(default_factory=set, repr=False)  # (task, host) in flight
    _pending_lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def default_fix(self, component: str, host: str) -> str:
        words = ["nr", "run", component, *(["-i", self.inventory_arg] if self.inventory_arg else [])]
        return shlex.join([*words, "--limit", host])

    # -- Recorder ---------------------------------------------------------------------------
    def step_started(self, component: str, step: str, hosts: list[str] | Any) -> None:
        if self.console is not None and hosts:
            self.console.print(f"[bold]▸ {show(component)}.{show(step)}[/]  [dim]{show(' '.join(hosts))}[/]")

    def record(self, component: str, step: str, result: AggregatedResult) -> None:
        with self._pending_lock:
            self._pending.pop(f"{component}.{step}", None)
        for host, multi in result.items():
            self._record_host(component, host, multi)

    def running(self) -> list[str]:
        """Hosts whose task has started and not finished."""
        with self._pending_lock:
            return sorted({h for _, h in self._running})

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no host task runs or ``deadline`` (monotonic) passes; True when none runs."""
        with self._pending_lock:
            while self._running and time.monotonic() < deadline:
                self._pending_lock.wait(max(0.0, deadline - time.monotonic()))
            return not self._running

    def flush_pending(self) -> None:
        """Record what hosts finished in steps that never ended (the run was interrupted)."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for name, hosts in pending.items():
            component = name.partition(".")[0]
            for host, multi in hosts.items():
                self._record_host(component, host, multi)

    def note(self, component: str, message: str) -> None:
        self.notes.append(redact(f"{component}: {message}"))
        if self.console is not None:
            self.console.print(f"  [cyan]ℹ[/] {show(redact(message))}")

    def _record_host(self, component: str, host: str, multi: MultiResult) -> None:
        for r in multi:
            err = ""
            if r.failed and isinstance(r, OutcomeResult) and r.outcome.error is not None:
                err = redact(r.outcome.error)
                self.failed_reasons.setdefault(host, f"{r.name}: {err}")
            elif r.failed:
                err = error_message(r.exception, r)
                if r.exception is not None and not isinstance(r.exception, NrError | NornirSubTaskError):
                    tb = "".join(traceback.format_exception(r.exception))
                    self.tracebacks.append(redact(f"{host} {r.name}:\n{tb}"))
                self.failed_reasons.setdefault(host, f"{r.name}: {err}")
                if _is_connection_error(r.exception):
                    self.unreachable.add(host)
            lines = [redact(x) for x in change_lines(r.outcome)] if isinstance(r, OutcomeResult) else []
            self.rows.append(
                Row(host, str(r.name), bool(r.changed), bool(r.failed), redact(r.diff or ""), err, lines)
            )
            if isinstance(r, OutcomeResult):
                self._record_outcome(component, host, r)

    def _record_outcome(self, component: str, host: str, r: OutcomeResult) -> None:
        o = r.outcome
        for c in o.checks:
            self.checks.append(
                CheckRow(component, host, c.name, c.ok, redact(c.detail), redact(c.hint), c.warning)
            )
        rows = [Finding.of_change(c) for c in o.changes] + [f for f in o.findings if f.reported_by_drift]
        for f in rows:
            self.drift.append(
                DriftItem(
                    component,
                    host,
                    redact(f.what),
                    redact(f.expected),
                    redact(f.actual),
                    redact(f.fix or self.default_fix(component, host)),
                )
            )

    # -- Nornir processor (live progress) ---------------------------------------------------------
    def task_started(self, task: Task) -> None:
        pass

    def task_completed(self, task: Task, result: AggregatedResult) -> None:
        pass

    def task_instance_started(self, task: Task, host: Host) -> None:
        with self._pending_lock:
            self._running.add((str(task.name), host.name))

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        with self._pending_lock:
            self._pending.setdefault(str(task.name), {})[host.name] = result
            self._running.discard((str(task.name), host.name))
            self._pending_lock.notify_all()
        if self.console is None:
            return
        r = result[0]
        if r.failed and isinstance(r, OutcomeResult) and r.outcome.error is not None:
            first = redact(r.outcome.error).splitlines()[0] if r.outcome.error else "failed"
            self.console.print(f"  [red]✗ {host.name}[/] {show(first)}")
        elif r.failed:
            self.console.print(f"  [red]✗ {host.name}[/] {show(error_message(r.exception, r))}")
        elif result.changed:
            verb = "would change" if self.dry_run else "changed"
            n = len(r.outcome.changes) if isinstance(r, OutcomeResult) else 0
            self.console.print(f"  [yellow]~ {host.name}[/] {verb}{f' ({n})' if n else ''}")
        else:
            self.console.print(f"  [green]✓ {host.name}[/] ok")

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        pass

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        pass

    # -- summary --------------------------------------------------------------------------
    @property
    def failed_hosts(self) -> list[str]:
        return sorted(self.failed_reasons)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.rows if r.changed and not r.failed)

    @property
    def ok(self) -> bool:
        return not self.failed_reasons and not self.errors and not self.interrupted

    def hosts(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows:
            seen.setdefault(r.host, None)
        return list(seen)

    def to_json(self, ssh: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ok": self.ok,
            "play": self.play,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "failed_hosts": self.failed_hosts,
            "results": [asdict(r) for r in self.rows],
        }
        if self.errors:
            doc["errors"] = self.errors
        if self.interrupted:
            doc["interrupted"] = True
        if self.notes:
            doc["notes"] = self.notes
        if ssh is not None:
            doc["ssh"] = ssh
        return doc

    def print_summary(self, out: Console, diffs: bool | None = None) -> None:
        """The table of hosts, one line per change, then (with ``diffs``, by default under a dry run)
        every diff, what failed and the verdict."""
        hosts = self.hosts() + [h for h in self.failed_hosts if h not in self.hosts()]
        out.print(self._table(hosts))
        changed = [r for r in self.rows if r.changed and not r.failed]
        if changed:
            out.print("[bold]Would change:[/]" if self.dry_run else "[bold]Changed:[/]")
            self._print_changes(changed, out)
        show_diffs = self.dry_run if diffs is None else diffs
        with_diff = [r for r in changed if r.diff]
        if show_diffs and with_diff:
            out.print("[bold]Diffs:[/]")
            for r in with_diff:
                out.print(f"[yellow]{show(r.host)}[/] [dim]{show(r.task)}[/]")
                for line in r.diff.rstrip("\n").splitlines():
                    color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                    text = show(line)
                    out.print(f"    [{color}]{text}[/]" if color else f"    {text}", highlight=False)
        if self.failed_reasons or self.errors:
            out.print("[bold red]Failed:[/]")
            for h in self.failed_hosts:
                out.print(f"  [red]{h}[/]: {show(self.failed_reasons[h])}", highlight=False)
            for e in self.errors:
                out.print(f"  [red]{show(e)}[/]", highlight=False)
        out.print(self.verdict(len(hosts)))
        if with_diff and not show_diffs:
            out.print("[dim](--diff shows what each change changes)[/]")

    def _table(self, hosts: list[str]) -> TextTable:
        title = f"{self.play}" + (" (dry run: nothing was changed)" if self.dry_run else "")
        table = TextTable(title=title)
        table.add_column("host")
        table.add_column("ok", justify="right")
        table.add_column("would change" if self.dry_run else "changed", justify="right")
        table.add_column("failed", justify="right")
        for h in hosts:
            rows = [r for r in self.rows if r.host == h]
            ok = sum(1 for r in rows if not r.changed and not r.failed)
            ch = sum(1 for r in rows if r.changed and not r.failed)
            fl = sum(1 for r in rows if r.failed)
            style = "red" if fl else ("yellow" if ch else "green")
            table.add_row(f"[{style}]{show(h)}[/]", str(ok), str(ch), str(fl))
        return table

    @staticmethod
    def _print_changes(rows: list[Row], out: Console) -> None:
        """One line per change: where (host, step) and what."""
        wide_host = max(len(r.host) for r in rows)
        wide_task = max(len(r.task) for r in rows)
        for r in rows:
            for what in r.changes or ["changed"]:
                where = f"{r.host:<{wide_host}}  {r.task:<{wide_task}}"
                out.print(f"  [yellow]~[/] {show(redact(where))}  {show(redact(what))}", highlight=False)

    def verdict(self, hosts: int) -> str:
        what = "would change" if self.dry_run else "changed"
        if self.interrupted:
            busy = self.running()
            left = f"; still busy when nr stopped: {', '.join(busy)}" if busy else ""
            return (
                f"[red]INTERRUPTED[/] (Ctrl-C): {hosts} host(s), {self.changed} task(s) {what} before the "
                f"interrupt{left}; a host cut off mid-step may be half changed: run the play again to finish"
            )
        if self.changed == 0 and self.ok:
            return f"[green]OK[/]: {hosts} host(s), nothing {what} (already converged)"
        verdict = "[red]FAILED[/]" if not self.ok else "[green]OK[/]"
        return f"{verdict}: {hosts} host(s), {self.changed} task(s) {what}, {len(self.failed_hosts)} failed"


def _is_connection_error(exc: BaseException | None) -> bool:
    from nr.ssh_trust import ConnectionFailed

    if isinstance(exc, NornirSubTaskError):
        return any(_is_connection_error(r.exception) for r in exc.result if r.exception is not exc)
    return isinstance(exc, ConnectionFailed)
