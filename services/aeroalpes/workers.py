"""Worker processes: each runs one event loop (uvloop when installed) serving the shared socket.

With ``AEROALPES_WORKERS=1`` (the default; in Kubernetes scale with replicas) the server runs in the
main process. With more, the main process binds the socket, forks the workers, restarts one that
dies, and on SIGTERM/SIGINT passes the signal on and waits up to the grace period (plus 5 s) for
them to finish their requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine
from typing import Any

from services.aeroalpes.config import Settings
from services.aeroalpes.http import App
from services.aeroalpes.repository import RepositorioRedis, cluster_factory
from services.aeroalpes.server import HttpServer

log = logging.getLogger("aeroalpes")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
BACKLOG = 2048


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.create_server((settings.host, settings.port), family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # plain asyncio works too, only slower
        asyncio.run(main)
    else:
        uvloop.run(main)


async def serve(settings: Settings, sock: socket.socket) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        log.info("stopping", extra={"signal": sig.name, "pid": os.getpid()})
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    # A forked worker starts with them blocked (see _spawn): one sent meanwhile is taken now, gracefully.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    redis = settings.redis
    repo = RepositorioRedis(
        cluster_factory(redis),
        redis.key_prefix,
        probe_timeout=redis.timeout,
        max_in_flight=redis.max_connections,
    )
    server = HttpServer(App(repo, budget=settings.limits.request_budget), settings.limits)
    listener = await loop.create_server(server.protocol, sock=sock, backlog=BACKLOG)
    try:
        await stop.wait()
        await server.shutdown(listener, settings.grace)
    finally:
        await repo.close()


def run_worker(settings: Settings, sock: socket.socket) -> None:
    _run_loop(serve(settings, sock))


def _spawn(settings: Settings, sock: socket.socket, blocked: set[signal.Signals]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0  # the child: serve, then leave without running the parent's cleanup
    try:
        for sig in blocked:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked - set(STOP_SIGNALS))  # serve() unblocks those
        run_worker(settings, sock)
    except BaseException:
        log.exception("worker failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _reap(children: set[int]) -> list[tuple[int, int]]:
    ended = []
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        children.discard(pid)
        ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def supervise(settings: Settings, sock: socket.socket) -> None:
    """Fork ``settings.workers`` workers and keep them running until told to stop."""
    watched = {*STOP_SIGNALS, signal.SIGCHLD}
    signal.signal(signal.SIGCHLD, lambda *_: None)  # queued while blocked, taken by sigtimedwait
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    children = {_spawn(settings, sock, watched) for _ in range(settings.workers)}
    deadline: float | None = None
    while children:
        info = signal.sigtimedwait(watched, 1.0)
        if info is not None and info.si_signo in STOP_SIGNALS and deadline is None:
            log.info(
                "stopping", extra={"signal": signal.Signals(info.si_signo).name, "workers": len(children)}
            )
            deadline = time.monotonic() + settings.grace + 5
            for pid in children:
                os.kill(pid, signal.SIGTERM)
        for pid, code in _reap(children):
            if deadline is None:
                log.error("worker exited, starting another", extra={"pid": pid, "code": code})
                time.sleep(1)
                children.add(_spawn(settings, sock, watched))
        if deadline is not None and time.monotonic() > deadline:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
