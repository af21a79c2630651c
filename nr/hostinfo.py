"""What ``nr status`` reads of every host itself: OS, load, memory and the root filesystem's free space.

Read-only commands, stdout parsed (pure). A value that cannot be read is ``None`` and shown as
unknown: a host with an odd ``/etc/os-release`` still gets its other values.
"""

from __future__ import annotations

from dataclasses import dataclass

from nr.facts import Facts

NAME = "host"  # the prefix of these commands in the shared round trip

COMMANDS = {
    "os": "sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | head -n1",
    "load": "cat /proc/loadavg",
    "cpus": "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN",
    "memory": "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo",
    "disk": "df -Pk / | tail -n1",
    "uptime": "cat /proc/uptime",
}


@dataclass(frozen=True)
class HostInfo:
    os: str | None = None
    load1: float | None = None
    cpus: int | None = None
    mem_total_kib: int | None = None
    mem_available_kib: int | None = None
    disk_total_kib: int | None = None
    disk_free_kib: int | None = None
    uptime_s: float | None = None

    @property
    def mem_free_pct(self) -> float | None:
        if not self.mem_total_kib or self.mem_available_kib is None:
            return None
        return 100.0 * self.mem_available_kib / self.mem_total_kib

    @property
    def disk_free_pct(self) -> float | None:
        if not self.disk_total_kib or self.disk_free_kib is None:
            return None
        return 100.0 * self.disk_free_kib / self.disk_total_kib


def _out(facts: Facts, name: str) -> str:
    o = facts.outputs.get(name)
    return o.text.strip() if o is not None and o.ok else ""


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _os(text: str) -> str | None:
    value = text.strip().strip("\"'")
    return value[:80] or None


def _memory(text: str) -> tuple[int | None, int | None]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[key.strip()] = int(words[0])
    return values.get("MemTotal"), values.get("MemAvailable")


def _disk(text: str) -> tuple[int | None, int | None]:
    """``df -Pk /``'s last line: ``fs 1024-blocks used available capacity mount``."""
    words = text.split()
    if len(words) >= 6 and words[1].isdigit() and words[3].isdigit():
        return int(words[1]), int(words[3])
    return None, None


def parse(facts: Facts) -> HostInfo:
    total, available = _memory(_out(facts, "memory"))
    disk_total, disk_free = _disk(_out(facts, "disk"))
    load = _out(facts, "load").split()
    uptime = _out(facts, "uptime").split()
    return HostInfo(
        os=_os(_out(facts, "os")),
        load1=_float(load[0]) if load else None,
        cpus=_int(_out(facts, "cpus")),
        mem_total_kib=total,
        mem_available_kib=available,
        disk_total_kib=disk_total,
        disk_free_kib=disk_free,
        uptime_s=_float(uptime[0]) if uptime else None,
    )


def size(kib: int | None) -> str:
    """``1536`` -> ``1.5 MiB`` (``?`` when unknown)."""
    if kib is None:
        return "?"
    value = float(kib)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
        value /= 1024
    return "?"
