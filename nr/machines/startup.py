"""Why a lab host container died at start: its last log lines and the likely cause.

systemd as PID 1 in a container fails early on a few machine-wide limits (inotify instances above
all: every systemd, and every service it runs, takes some, and the limit is per user across all
containers); ``docker exec`` then only says the container is not running.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from nr.errors import NrError
from nr.machines.image import docker
from nr.text import command, printable

LOG_LINES = 15

# (pattern in the container's log, likely cause)
CAUSES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"inotify|Too many open files|directory watch", re.IGNORECASE),
        "this machine's inotify limits are used up ({inotify}); raise them, e.g. "
        + command(
            "sysctl", "-w", "fs.inotify.max_user_instances=1024", "fs.inotify.max_user_watches=1048576"
        ),
    ),
    (
        re.compile(r"cgroup", re.IGNORECASE),
        "systemd could not set up its cgroups: the Docker host must allow a writable /sys/fs/cgroup "
        "(see README, The local lab)",
    ),
    (re.compile(r"No space left on device", re.IGNORECASE), "the disk (or /var/lib/docker) is full"),
    (
        re.compile(r"exec format error|no such file or directory.*init", re.IGNORECASE),
        "the base image has no usable /sbin/init: rebuild it (docker rmi the image, then nr lab image)",
    ),
]


def inotify_limits() -> str:
    values = []
    for name in ("max_user_instances", "max_user_watches"):
        with contextlib.suppress(OSError):
            values.append(f"fs.inotify.{name}={Path(f'/proc/sys/fs/inotify/{name}').read_text().strip()}")
    return ", ".join(values) or "limits unknown"


def likely_cause(log: str) -> str | None:
    """The likely cause of a container's death from its log (pure but for reading the inotify limits)."""
    for pattern, cause in CAUSES:
        if pattern.search(log):
            return cause.replace("{inotify}", inotify_limits()) if "{inotify}" in cause else cause
    return None


def died_at_start(name: str) -> NrError | None:
    """An error naming why container ``name`` is not running (None if it runs)."""
    try:
        state = json.loads(docker("inspect", "-f", "{{json .State}}", name, timeout=30))
    except (NrError, ValueError):
        return None
    if state.get("Running") and not state.get("Restarting"):
        return None  # (a host that died is "Restarting" while its restart policy waits to start it again)
    proc = docker("logs", "--tail", str(LOG_LINES), name, check=False, timeout=30, stderr=True)
    log = printable(proc.strip()) or "(no output)"
    cause = likely_cause(proc)
    why = f"; likely cause: {cause}" if cause else ""
    return NrError(
        f"lab host {name} died at start (exit code {state.get('ExitCode')}){why}. Its last log lines:\n{log}"
    )
