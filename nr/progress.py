"""Live progress of long steps (a build, an upload, a wait): transient lines on the terminal.

Components and the engine call :func:`track` around a long step; the CLI turns the display on with
:func:`enable` only for ``nr run`` on a terminal without ``--json``. Otherwise (a pipe, a log, a
scheduled job, ``--json``, the tests) :func:`track` costs nothing and prints nothing. The lines are
transient: they disappear when the step ends, so the run's output stays the summary.

    with progress.track("building images web, worker") as p:
        build()                           # elapsed time ticks on its own
    with progress.track(f"upload {name} to {host}", total=size) as p:
        p.advance(len(chunk))             # bytes done, rate and elapsed
    with progress.track("waiting for nodes Ready") as p:
        p.say("waiting for nodes Ready: lab2, lab3")   # what is awaited now
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from nr.secrets import redact
from nr.text import show

if TYPE_CHECKING:  # rich.progress loads only when a display is enabled (start-up time)
    from rich.console import Console
    from rich.progress import Progress, TaskID

_lock = threading.Lock()
_display: Progress | None = None
_users = 0


class Tracker:
    """One step's line: ``advance`` bytes (with a total: done, total and rate), ``say`` what is awaited now."""

    def __init__(
        self, display: Progress | None = None, task: TaskID | None = None, total: int | None = None
    ) -> None:
        self._display, self._task, self._total = display, task, total
        self._done, self._started = 0, time.monotonic()

    def advance(self, amount: int) -> None:
        if self._display is None or self._task is None:
            return
        self._done += amount
        rate = self._done / max(time.monotonic() - self._started, 1e-3)
        size = f"{_mb(self._done)}/{_mb(self._total or 0)} MB, {_mb(int(rate))} MB/s"
        self._display.update(self._task, amount=size)

    def say(self, what: str) -> None:
        if self._display is not None and self._task is not None:
            self._display.update(self._task, description=show(redact(what)))


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f}"


NULL = Tracker()


def enable(console: Console) -> None:
    """Show progress on ``console`` from now on (the CLI calls it for an interactive run)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    global _display
    with _lock:
        if _display is None:
            _display = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.fields[amount]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                refresh_per_second=4,
            )


def disable() -> None:
    global _display, _users
    with _lock:
        if _display is not None and _users:
            _display.stop()
        _display, _users = None, 0


def enabled() -> bool:
    return _display is not None


@contextlib.contextmanager
def track(what: str, total: int | None = None) -> Iterator[Tracker]:
    """A live line for the duration of the block (nothing at all when progress is not enabled)."""
    global _users
    display = _display
    if display is None:
        yield NULL
        return
    with _lock:
        if _users == 0:
            display.start()
        _users += 1
        task = display.add_task(show(redact(what)), total=total, amount="")
    try:
        yield Tracker(display, task, total)
    finally:
        with _lock:
            display.remove_task(task)
            _users -= 1
            if _users == 0:
                display.stop()


class CountingReader:
    """A file opened for reading that reports every chunk read to a :class:`Tracker` (uploads).

    Fabric's ``put`` takes a file-like object (it must look writable too, ``write`` is delegated)."""

    def __init__(self, fh: IO[bytes], tracker: Tracker) -> None:
        self._fh, self._tracker = fh, tracker

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._tracker.advance(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)
