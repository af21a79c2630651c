"""Ctrl-C: stop the run now, and say what was done.

Python delivers SIGINT to the main thread only, while the hosts' work runs in Nornir's worker
threads (blocked in SSH channels). :func:`interrupt` sets :data:`CANCELLED`; every connection
checks it before it opens or runs anything and while it waits for a command, so the workers
finish within a fraction of a second (a remote command already started is not waited for), and
hosts not started yet are never touched.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, Task
from nornir.plugins.runners import ThreadedRunner

from nr.errors import NrError

CANCELLED = threading.Event()
GRACE = 1.2  # seconds the workers get to wind down before the process exits regardless
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class Interrupted(NrError):
    """The run was interrupted (Ctrl-C) before or while this host's step ran."""


def check(what: str) -> None:
    """Raise :class:`Interrupted` if the run was interrupted (``what``: the host or step)."""
    if CANCELLED.is_set():
        raise Interrupted(f"{what}: interrupted (Ctrl-C)")


def interrupt() -> None:
    CANCELLED.set()


class SigintToMainRunner(ThreadedRunner):
    """Nornir's ThreadedRunner, made so that Ctrl-C reaches the main thread's handler at once.

    Python runs a signal's handler only in the main thread, between bytecodes. The kernel may hand a
    process-wide SIGINT to any thread that does not block it, so the pool starts its threads while
    the main thread blocks SIGINT: they inherit the block (as do the SSH threads they start), and a
    Ctrl-C meanwhile stays pending until the main thread unblocks it. And a SIGINT that lands just
    as the main thread goes to sleep in a join is noticed only when it wakes (CPython's lost wake-up),
    so the main thread waits in slices of :data:`POLL` seconds instead of one join: the handler
    (which sets :data:`CANCELLED`) runs within one slice, however the signal came.
    """

    POLL = 0.2

    def run(self, task: Task, hosts: list[Host]) -> AggregatedResult:
        result = AggregatedResult(task.name)
        pool = ThreadPoolExecutor(self.num_workers)
        try:
            before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                futures = [pool.submit(task.copy().start, host) for host in hosts]
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, before)
            while wait(futures, timeout=self.POLL).not_done:
                pass
        finally:
            pool.shutdown(wait=True)  # after Ctrl-C the workers see CANCELLED and end at once
        for future in futures:
            worker_result = future.result()
            result[worker_result.host.name] = worker_result
        return result
