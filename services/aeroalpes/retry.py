"""Deadlines and backoff for the Redis calls of one request. Pure (the clock and the sleep are passed in).

A request has a budget (``AEROALPES_REQUEST_BUDGET``, or less when the caller says so). While a Redis
master fails over, its slots answer nothing, CLUSTERDOWN, TRYAGAIN or a MOVED to the promoted
replica for a few seconds (cluster-node-timeout plus the election); the repository retries such
errors with exponential backoff and jitter until the deadline, and only then reports the store
unavailable.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.05
    factor: float = 2.0
    cap: float = 1.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): full jitter in [d/2, d]."""
        base = min(self.cap, self.first * self.factor ** max(0, attempt - 1))
        return base * (0.5 + rand() / 2)


class Deadline:
    """A point in time on the monotonic clock."""

    __slots__ = ("_clock", "at")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


def parse_timeout_header(value: str | None, budget: float) -> float:
    """The caller's remaining time (``X-Request-Timeout: <seconds>``, as the adapter sends its gRPC
    deadline) capped by the service's budget; a missing or malformed header leaves the budget."""
    if not value:
        return budget
    try:
        seconds = float(value)
    except ValueError:
        return budget
    if math.isnan(seconds) or seconds <= 0:
        return budget
    return min(budget, seconds)
