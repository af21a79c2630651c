"""Changes: what a task found different, how to show it, and the script that fixes it.

A task reads state (:mod:`nr.facts`), computes a list of :class:`Change` with pure functions (the
reusable ones live in :mod:`nr.ops`), and hands it to :meth:`nr.play.HostRun.apply`, which runs
every change's script in one round trip (or nothing under ``--dry-run``). The same list, turned
into findings, is what ``nr drift`` reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nr.lock import host_lock_script
from nr.secrets import MASK, redact


@dataclass(frozen=True)
class Upload:
    """A local file sent over SFTP (as the login user) to ``remote_tmp`` before the scripts run."""

    local: Path
    remote_tmp: str


@dataclass(frozen=True)
class Change:
    """One difference between a host and its desired state."""

    what: str  # "file /etc/sysctl.d/90-nr.conf", "package curl", "sysctl vm.overcommit_memory"
    expected: str
    actual: str
    script: str  # shell that makes it so (runs as root, inside `set -e`)
    diff: str = ""  # unified diff or one-line summary shown to the operator
    fix: str = ""  # command that repairs it (default: "nr run <component> --limit <host>")
    upload: Upload | None = None  # a local file copied over SFTP before ``script`` runs

    def __post_init__(self) -> None:
        if not self.script.strip():  # a row to report without a script is a nr.outcome.Finding
            raise ValueError(f"change {self.what!r} has no script: report it as a Finding instead")

    def summary(self) -> str:
        return self.diff or f"{self.what}: {self.actual} -> {self.expected}"


def mask(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every value of ``secrets`` and every secret resolved so far masked."""
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
    return redact(text)


def mask_keys(text: str, keys: Sequence[str]) -> str:
    """``text`` with the value of every line that sets one of ``keys`` masked, whatever the value.

    A line sets a key when its first word is the key (``requirepass "x"``, ``token: x``, ``token=x``),
    in any case (some programs read their directives case-insensitively); comments are left alone.
    """
    if not keys:
        return text
    names = "|".join(re.escape(k) for k in keys)
    pattern = re.compile(rf"^([ \t]*(?:{names}))([ \t]*[:=][ \t]*|[ \t]+)(?=\S)(.*?)(\r?)$", re.I | re.M)
    return pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(4)}", text)


_URL_USERINFO = re.compile(r"(?<=://)([^/@\s:]*)(:[^/@\s]*)?@")


def mask_url_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` masked (the whole user part
    when it has no password: ``https://TOKEN@host``), whatever the value: an old proxy password or a
    datastore endpoint's credentials never print."""

    def hide(m: re.Match[str]) -> str:
        return f"{m.group(1)}:{MASK}@" if m.group(2) is not None else f"{MASK}@"

    return _URL_USERINFO.sub(hide, text)


def apply_script(changes: Sequence[Change], after: str = "") -> str:
    """One script for all changes (stops at the first failing line), plus ``after`` (e.g. restarts),
    under the host's lock (:func:`nr.lock.host_lock_script`)."""
    parts = ["set -e", host_lock_script()]
    for c in changes:
        parts.append(f"# {c.what}")
        parts.append(c.script)
    if after:
        parts.append(after)
    return "\n".join(parts)


def changes_diff(changes: Sequence[Change]) -> str:
    return "".join(c.summary() if c.summary().endswith("\n") else c.summary() + "\n" for c in changes)
