"""Run the selected components over an inventory, record everything in a :class:`RunReport`, and
end cleanly on Ctrl-C: the workers are told to stop, every connection is closed (so nothing waits
for a remote command), what finished is recorded, and the caller prints the summary and exits 130."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from nr import interrupt, readahead
from nr.errors import NrError
from nr.play import Component, PlayContext
from nr.report import RunReport
from nr.secrets import redact
from nr.text import printable, show

if TYPE_CHECKING:
    from nornir.core import Nornir
    from rich.console import Console

Action = Callable[[Component, PlayContext], None]


def ssh_stats(nr: Nornir) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for name, host in nr.inventory.hosts.items():
        plugin = host.connections.get("fabric")
        remote = getattr(plugin, "connection", None)
        if remote is not None:
            stats[name] = remote.stats.as_dict()
    return stats


def close_all(nr: Nornir) -> None:
    for host in nr.inventory.hosts.values():  # directly: nr.close_connections() runs a task
        with contextlib.suppress(Exception):  # a connection that is already gone is closed enough
            host.close_connections()


def _run_components(
    ctx: PlayContext, report: RunReport, selected: Iterable[Component], action: Action
) -> None:
    for c in selected:
        try:
            action(c, ctx.for_component(c.name))
        except NrError as exc:  # a failure of the component as a whole (not of one host)
            report.errors.append(f"{c.name}: {redact(str(exc))}")
            if report.console is not None:
                report.console.print(f"  [red]✗ {show(c.name)}[/]: {show(redact(str(exc)))}")
            break  # later components build on this one


def _stop(nr: Nornir, report: RunReport) -> None:
    """Ctrl-C: stop the workers (closing every connection ends their commands), record what finished."""
    interrupt.interrupt()
    if report.console is not None:
        report.console.print("[red]Interrupted (Ctrl-C): stopping…[/]")
    close_all(nr)
    report.wait_idle(time.monotonic() + interrupt.GRACE)
    report.interrupted = True
    report.flush_pending()


def read_ahead(ctx: PlayContext, selected: Iterable[Component], mode: str) -> int:
    """Start the reads the components declare for ``mode`` (:mod:`nr.readahead`); how many started.
    A component whose declaration fails reads in its turn as usual (it reports the problem itself)."""
    if not readahead.enabled():
        return 0
    started = 0
    for c in selected:  # each component's reads start as soon as they are known, in order
        declare = getattr(c, "reads", None)
        if declare is None:
            continue
        try:
            reads = declare(ctx.for_component(c.name), mode)
        except Exception:  # its turn raises the same, and reports it there
            continue
        started += ctx.read_ahead().start(reads)
    return started


class Refused(NrError):
    """A preflight found problems: the run stops before anything changes (the command exits 2)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def preflight(ctx: PlayContext, selected: Iterable[Component]) -> list[str]:
    """The problems each component's optional ``preflight(ctx)`` finds: read-only checks against the
    running site (e.g. that its services accept a secret), made after validation, once the reads ahead
    are on their way (a preflight may take a probe read ahead), and before anything changes."""
    problems: list[str] = []
    for c in selected:
        check = getattr(c, "preflight", None)
        if check is not None:
            problems += check(ctx.for_component(c.name))
    return problems


@contextlib.contextmanager
def _cancel_on_sigint() -> Iterator[None]:
    """Ctrl-C tells the workers at once (then raises KeyboardInterrupt as usual): Nornir's runner may be
    inside its thread pool's ``with`` when the signal arrives, and would join workers that wait for it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        interrupt.interrupt()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def execute(
    nr: Nornir,
    ctx: PlayContext,
    report: RunReport,
    selected: list[Component],
    action: Action,
    err: Console,
    mode: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``action`` for each component (a component that fails stops the ones after it); with
    ``mode`` (apply, check or drift), the components' declared reads start ahead (:mod:`nr.readahead`)
    and their preflights run meanwhile: problems raise :class:`Refused` before anything changes."""
    try:
        if mode is not None:
            read_ahead(ctx, selected, mode)
            problems = preflight(ctx, selected)
            if problems:
                raise Refused(problems)
        with _cancel_on_sigint():
            _run_components(ctx, report, selected, action)
    except KeyboardInterrupt:
        _stop(nr, report)
    finally:
        ctx.read_ahead().close()
        if report.tracebacks and os.environ.get("NR_DEBUG") == "1":
            for tb in report.tracebacks:
                err.print(printable(tb), markup=False, highlight=False)
        stats = ssh_stats(nr)
        ctx.end()
        close_all(nr)
    return stats


def exit_interrupted(report: RunReport | None = None) -> NoReturn:
    """Exit 130 now: normally when every host task has ended, else without waiting for the stragglers
    (a worker still blocked in local work would otherwise hold the process at exit)."""
    sys.stdout.flush()
    sys.stderr.flush()
    busy = report.running() if report is not None else _workers_alive()
    if busy:
        os._exit(interrupt.EXIT_INTERRUPTED)
    sys.exit(interrupt.EXIT_INTERRUPTED)


def _workers_alive() -> bool:
    """Without a report (a second Ctrl-C): are worker threads still about?"""
    main = threading.main_thread()
    return any(t.is_alive() and not t.daemon and t is not main for t in threading.enumerate())
