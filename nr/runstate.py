"""What every component's context of one run shares (:class:`nr.play.PlayContext` holds one).

* connections: each host's is opened once (one lock per host, so hosts open theirs in parallel and
  two steps asking for one host at once share one connection); a connection that an opener ahead of
  the steps (:mod:`nr.preconnect`, the read-ahead) could not open is not tried again at once: the
  openers ahead get the same error, and so does the first step that asks, after which the next one
  tries again (no second connect timeout in a row);
* ``ended``: set when the run is over, so that a connection still opening ahead is closed, not kept;
* the run's :class:`nr.readahead.ReadAhead`;
* values computed once per run (:meth:`RunState.once`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from nr.readahead import ReadAhead
from nr.transport import Remote

T = TypeVar("T")


class RunState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}
        self._open_failed: dict[str, BaseException] = {}
        self._once: dict[object, Any] = {}
        self._once_lock = threading.Lock()
        self.ahead: ReadAhead | None = None
        self.ended = False

    def open(self, host: str, connect: Callable[[], Remote], *, ahead: bool = False) -> Remote:
        with self._lock:
            lock = self._opening.setdefault(host, threading.Lock())
        with lock:
            failed = self._open_failed.get(host) if ahead else self._open_failed.pop(host, None)
            if failed is not None:
                raise failed
            try:
                return connect()
            except Exception as exc:
                if ahead:
                    self._open_failed[host] = exc
                raise

    def once(self, key: object, compute: Callable[[], T]) -> T:
        with self._once_lock:
            if key not in self._once:
                self._once[key] = compute()
            value: T = self._once[key]
        return value
