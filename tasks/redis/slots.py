"""Hash slots: ranges, their arithmetic, and the even split ``redis-cli --cluster create`` makes (pure)."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from tasks.redis.errors import PlanError

SLOT_COUNT = 16384


@dataclass(frozen=True, order=True)
class SlotRange:
    """An inclusive range of hash slots, ``start..end``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < SLOT_COUNT:
            raise PlanError(f"invalid slot range {self.start}-{self.end} (slots are 0-{SLOT_COUNT - 1})")

    @property
    def count(self) -> int:
        return self.end - self.start + 1

    def slots(self) -> range:
        return range(self.start, self.end + 1)

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def ranges_from_slots(slots: Iterable[int]) -> tuple[SlotRange, ...]:
    """Collapse slot numbers into sorted contiguous ranges."""
    ordered = sorted(set(slots))
    out: list[SlotRange] = []
    if not ordered:
        return ()
    start = prev = ordered[0]
    for slot in ordered[1:]:
        if slot != prev + 1:
            out.append(SlotRange(start, prev))
            start = slot
        prev = slot
    out.append(SlotRange(start, prev))
    return tuple(out)


def slots_of(ranges: Iterable[SlotRange]) -> frozenset[int]:
    return frozenset(slot for r in ranges for slot in r.slots())


def count_slots(ranges: Iterable[SlotRange]) -> int:
    return sum(r.count for r in ranges)


def format_ranges(ranges: Iterable[SlotRange], limit: int = 8) -> str:
    """``0-5460,5461`` (at most ``limit`` ranges, then ``… (+N more)``); ``none`` when empty."""
    items = [str(r) for r in ranges]
    if not items:
        return "none"
    if len(items) > limit:
        return ",".join(items[:limit]) + f",… (+{len(items) - limit} more ranges)"
    return ",".join(items)


def _f32(value: float) -> float:
    """Round to IEEE single precision, as C ``float`` arithmetic does."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _lround(value: float) -> int:
    """C ``lround``: half away from zero (Python's round() is half-to-even)."""
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def even_slot_ranges(shards: int) -> tuple[SlotRange, ...]:
    """Split the slots like ``redis-cli --cluster create`` (redis-cli.c, clusterManagerCommandCreate).

    redis-cli computes in C ``float``: ``slots_per_node = 16384 / (float) masters``, ``cursor += slots_per_node``
    and ``last = lround(cursor + slots_per_node - 1)``, the last master taking everything up to 16383. The
    single-precision rounding is reproduced so the ranges match redis-cli for every shard count.
    """
    if shards < 1:
        raise PlanError(f"cannot split slots over {shards} shards")
    per_node = _f32(SLOT_COUNT / shards)
    first = 0
    cursor = 0.0
    out: list[SlotRange] = []
    for i in range(shards):
        last = _lround(_f32(_f32(cursor + per_node) - 1))
        if last > SLOT_COUNT or i == shards - 1:
            last = SLOT_COUNT - 1
        last = max(last, first)
        out.append(SlotRange(first, last))
        first = last + 1
        cursor = _f32(cursor + per_node)
    return tuple(out)
