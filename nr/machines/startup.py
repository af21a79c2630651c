"""Why a lab host container died at start: its last log lines and the likely cause.

systemd as PID 1 in a container fails early on a few machine-wide limits (inotify instances above
all: every systemd, and every service it runs, takes some, and the limit is per user across all
containers); ``docker exec`` then only says the container is not running.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nr.errors import NrError
from nr.machines.image import docker
from nr.text import command, printable

LOG_LINES = 15

RAISE_INOTIFY = command(
    "sysctl", "-w", "fs.inotify.max_user_instances=1024", "fs.inotify.max_user_watches=1048576"
)
# When systemd dies before it logs anything, or never gets a host ready, with many lab hosts running
SILENT = (
    "nothing logged: with many lab hosts running, most often this machine's inotify limits are used up "
    "({inotify}); raise them, e.g. " + RAISE_INOTIFY
)

# (pattern in the container's log, likely cause)
CAUSES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"inotify|Too many open files|directory watch", re.IGNORECASE),
        "this machine's inotify limits are used up ({inotify}); raise them, e.g. " + RAISE_INOTIFY,
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


# inotify instances of root's one lab host takes once it is up: systemd 5, systemd-logind 1 (counted
# from /proc/*/fd of running lab hosts; dbus-daemon's one counts against its own user). The limit is
# per user for the whole machine: lab hosts run as the machine's root.
INOTIFY_PER_HOST = 6
INOTIFY_LINK = "anon_inode:inotify"


def inotify_in_use(proc: Path = Path("/proc"), uid: int = 0) -> int | None:
    """How many inotify instances processes of ``uid`` hold (None if their fds cannot be read)."""
    used = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not _real_uid_is(entry / "status", uid):
                continue
            fds = list((entry / "fd").iterdir())
        except PermissionError:
            return None
        except OSError:  # the process ended meanwhile
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                used += fd.readlink().as_posix() == INOTIFY_LINK
    return used


def _real_uid_is(status: Path, uid: int) -> bool:
    for line in status.read_bytes().splitlines():  # bytes: a process name need not be UTF-8
        if line.startswith(b"Uid:"):
            return int(line.split()[1]) == uid
    return False


def check_inotify(new_hosts: int, proc: Path = Path("/proc")) -> None:
    """Refuse to start ``new_hosts`` lab hosts that root's inotify limit cannot hold.

    Past the limit, a host's systemd dies or hangs before it logs why (seen at 19-20 hosts with the
    default ``fs.inotify.max_user_instances=128``): better said before any host is started."""
    if new_hosts <= 0:
        return
    try:
        limit = int((proc / "sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return
    used = inotify_in_use(proc)
    need = new_hosts * INOTIFY_PER_HOST
    if (used or 0) + need <= limit:
        return
    held = f"root holds {used} now, " if used is not None else ""
    raise NrError(
        f"{new_hosts} new lab host(s) need about {need} inotify instances ({INOTIFY_PER_HOST} each, for "
        f"systemd and logind); {held}of fs.inotify.max_user_instances={limit}. Raise the limit first, e.g. "
        f"{RAISE_INOTIFY}; no host was started"
    )


def likely_cause(log: str) -> str | None:
    """The likely cause of a container's death from its log (pure but for reading the inotify limits)."""
    if not log.strip():
        return SILENT.replace("{inotify}", inotify_limits())
    for pattern, cause in CAUSES:
        if pattern.search(log):
            return cause.replace("{inotify}", inotify_limits()) if "{inotify}" in cause else cause
    return None


def _state(name: str) -> tuple[dict[str, Any], int] | None:
    """The container's ``.State`` and how often its restart policy restarted it since it was started."""
    fmt = '{"State": {{json .State}}, "RestartCount": {{.RestartCount}}}'
    try:
        found = json.loads(docker("inspect", "-f", fmt, name, timeout=30))
        return dict(found["State"]), int(found["RestartCount"])
    except (NrError, ValueError, KeyError, TypeError):
        return None


def died_at_start(
    name: str, settle: float = 5.0, sleep: Callable[[float], None] = time.sleep
) -> NrError | None:
    """An error naming why container ``name`` is not running (None if it runs).

    A host that dies at once is restarted by its policy: most of the time Docker then reports it
    "Restarting" (exit code kept), but just after a restart it is Running again for a moment. A running
    host that has been restarted is watched for up to ``settle`` seconds until it is seen down."""
    waited = 0.0
    while True:
        found = _state(name)
        if found is None:
            return None
        state, restarts = found
        if not state.get("Running") or state.get("Restarting"):
            break
        if restarts == 0 or waited >= settle:
            return None
        sleep(0.1)
        waited += 0.1
    proc = docker("logs", "--tail", str(LOG_LINES), name, check=False, timeout=30, stderr=True)
    log = printable(proc.strip()) or "(no output)"
    cause = likely_cause(proc)
    why = f"; likely cause: {cause}" if cause else ""
    return NrError(
        f"lab host {name} died at start (exit code {state.get('ExitCode')}){why}. Its last log lines:\n{log}"
    )
