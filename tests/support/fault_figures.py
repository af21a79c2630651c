"""The accounting of bench/faults, kept pure so that it is unit-tested (tests/unit/test_bench_faults.py):
gaps between acknowledged client calls, time until the cluster is whole again, and the summary lines.

Times are ``time.monotonic()`` seconds; a sample is ``(time, ok)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

ALL_SLOTS = 16384


def cluster_whole(info: str) -> bool:
    """Whether a CLUSTER INFO reply says cluster_state:ok with every slot served by a master nobody
    suspects (cluster_slots_ok = 16384: no slot unassigned, none on a PFAIL/FAIL node)."""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    state = fields.get("cluster_state", "").strip()
    slots = fields.get("cluster_slots_ok", "0").strip()
    return state == "ok" and slots.isdigit() and int(slots) == ALL_SLOTS


def not_whole(nodes: str) -> list[str]:
    """Endpoints of the nodes a CLUSTER NODES reply does not count as healthy members: flagged fail,
    fail? (PFAIL), noaddr or handshake, or with the cluster bus link down."""
    out = []
    for line in nodes.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        flags = set(parts[2].split(","))
        if flags & {"fail", "fail?", "noaddr", "handshake"} or parts[7] != "connected":
            out.append(parts[1].split("@")[0])
    return out


def longest_gap(acked_at: Sequence[float], start: float, end: float) -> float:
    """The longest time within [start, end] without an acknowledged call (the edges count: a client
    that never got an answer has a gap of end - start)."""
    if end <= start:
        return 0.0
    marks = [start, *sorted(t for t in acked_at if start < t < end), end]
    return max(b - a for a, b in pairwise(marks))


def time_to_whole(samples: Sequence[tuple[float, bool]], fault_at: float) -> float | None:
    """Seconds from the fault until the cluster was whole for good: the first ok sample after the last
    bad one. 0.0 if no sample after the fault was bad; None if the last sample is still bad (or there
    is none after the fault)."""
    after = [(t, ok) for t, ok in samples if t >= fault_at]
    if not after or not after[-1][1]:
        return None
    bad = [i for i, (_, ok) in enumerate(after) if not ok]
    if not bad:
        return 0.0
    return after[bad[-1] + 1][0] - fault_at


def time_to_report(lines: Sequence[tuple[float, str]], host: str) -> float | None:
    """Seconds from the start of the step in which nr reported ``host`` failed (the step's "▸" line of
    progress) to that report (the "✗ HOST ..." line); None if nr did not report it failed."""
    step_at = None
    for t, text in lines:
        words = text.split()
        if words[:1] == ["▸"]:
            step_at = t
        elif words[:2] == ["✗", host] and step_at is not None:
            return t - step_at
    return None


@dataclass(frozen=True)
class NrCall:
    """One nr command run during or after a fault: its exit code (None: killed at the bench's bound),
    time to report, the same command's time on the healthy lab (for calls during a fault) and its last
    line of output."""

    what: str
    code: int | None
    seconds: float
    healthy: float | None = None
    said: str = ""
    reported_after: float | None = None  # seconds from the step's start until nr reported the lost host

    @property
    def waited(self) -> float | None:
        """Seconds more than on the healthy lab: what nr spent on the lost host."""
        return None if self.healthy is None else self.seconds - self.healthy

    def within(self, window: float) -> bool:
        """It ended, and gave up on a lost host within the keepalive window."""
        return self.code is not None and (self.reported_after is None or self.reported_after <= window)

    def line(self, window: float) -> str:
        code = "killed at the bench's bound (hung)" if self.code is None else f"exit {self.code}"
        out = f"{self.what} -> {code} in {self.seconds:.1f} s"
        if self.healthy is not None:
            out += f" (healthy lab: {self.healthy:.1f} s)"
        if self.reported_after is not None:
            over = "" if self.reported_after <= window else ", OVER"
            out += f"; host reported lost {self.reported_after:.1f} s into its step (window {window:.0f} s{over})"
        return out + (f": {self.said}" if self.said else "")


@dataclass(frozen=True)
class Figures:
    """What one scenario measured."""

    name: str
    writes_acked: int
    writes_failed: int
    reads_ok: int
    reads_failed: int
    write_gap: float
    read_gap: float
    whole_after: float | None
    keys_lost: int
    keys: int
    acked_lost: int
    app_ok: int = 0  # gRPC round trips through the app (create, then read back)
    app_failed: int = 0
    app_gap: float = 0.0
    app_created: int = 0
    app_lost: int = 0  # created reservations not readable at the end
    nr_calls: tuple[NrCall, ...] = ()
    first_failures: tuple[str, ...] = ()
    own_change: bool = False  # the fault is nr's own rolling change: no call may fail either

    def target_met(self, window: float) -> bool:
        """0 lost always; nr never waited longer than the keepalive window on a lost host; 0 failed calls
        during nr's own change."""
        kept = self.keys_lost == 0 and self.acked_lost == 0 and self.app_lost == 0
        no_hang = all(c.within(window) for c in self.nr_calls)
        clean = not self.own_change or self.writes_failed + self.reads_failed + self.app_failed == 0
        return kept and no_hang and clean

    def lines(self, window: float) -> list[str]:
        whole = "never (still not ok at the end)" if self.whole_after is None else f"{self.whole_after:.1f} s"
        out = [
            self.name,
            f"  writes: {self.writes_acked} acked, {self.writes_failed} failed; longest gap {self.write_gap:.1f} s",
            f"  reads:  {self.reads_ok} ok, {self.reads_failed} failed; longest gap {self.read_gap:.1f} s",
            f"  app:    {self.app_ok} gRPC round trips ok, {self.app_failed} failed; longest gap {self.app_gap:.1f} s",
            f"  cluster_state ok with all {ALL_SLOTS} slots again: {whole} after the fault",
            f"  lost: {self.keys_lost} of {self.keys} loaded keys, {self.acked_lost} of "
            f"{self.writes_acked} acknowledged writes, {self.app_lost} of {self.app_created} reservations "
            "created through the app",
        ]
        out += [f"  first failed call: {f}" for f in self.first_failures]
        out += [f"  nr: {c.line(window)}" for c in self.nr_calls]
        return out
