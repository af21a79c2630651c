"""What a component implements to take part in ``nr backup`` and ``nr restore`` (all optional).

The engine looks for these methods on the components of the site play; a component without them is
simply not backed up. Adding a component with data to back up touches no engine file.

* ``backup(ctx, part) -> Mapping``: write the component's files into ``part`` (a
  :class:`nr.backup.folder.Part`: ``part.fetch(remote, path, name)`` copies a host's file over the run's
  SSH connection, ``part.write(name, data)`` writes one from here, ``part.secret(...)`` records a secret
  the restore will need) and return the component's part of the manifest (JSON values). A host that
  fails (``ctx.run``/``ctx.fail_host``) or an :class:`~nr.errors.NrError` makes the backup incomplete.
* ``restore_plan(ctx, backup: Restoring) -> RestorePlan``: read-only. Check the backup against the
  inventory and the hosts (shard count, host set, versions, tokens...) and say what the restore will do
  (``lines``) or why it cannot (``problems``: the restore stops there, exit 2, nothing changed).
* ``restore(ctx, backup: Restoring, plan: RestorePlan) -> None``: do it (after the operator confirmed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nr.backup.folder import Backup, BackupError, Part
from nr.play import PlayContext
from nr.secrets import Secret


@dataclass
class RestorePlan:
    lines: list[str] = field(default_factory=list)  # what will happen, one step a line
    problems: list[str] = field(default_factory=list)  # why it cannot happen (bad input: exit 2)
    data: Any = None  # whatever the component computed for restore() (mappings, observations)


@dataclass(frozen=True)
class Restoring:
    """One component's view of the backup being restored."""

    backup: Backup
    component: str
    values: Mapping[str, str] = field(default_factory=dict, repr=False)  # from secrets.enc, if opened

    @property
    def part(self) -> Mapping[str, Any]:
        part: Mapping[str, Any] = self.backup.components.get(self.component) or {}
        return part

    def file(self, name: str) -> Path:
        """A file the component wrote (``name`` as recorded in its part), checked against the manifest."""
        full = name if name.startswith(f"{self.component}/") else f"{self.component}/{name}"
        return self.backup.file(full)

    def secret_entry(self, key: str) -> Mapping[str, Any] | None:
        entry: Mapping[str, Any] | None = (self.backup.manifest.get("secrets") or {}).get(
            f"{self.component}.{key}"
        )
        return entry

    def secret(self, key: str) -> Secret | None:
        """The secret's value from the encrypted secrets file (None without ``--secrets-key``)."""
        value = self.values.get(f"{self.component}.{key}")
        return None if value is None else Secret(value, f"the backup's {key}")


@runtime_checkable
class BacksUp(Protocol):
    name: str

    def backup(self, ctx: PlayContext, part: Part) -> Mapping[str, Any]: ...


@runtime_checkable
class Restores(Protocol):
    name: str

    def restore_plan(self, ctx: PlayContext, backup: Restoring) -> RestorePlan: ...

    def restore(self, ctx: PlayContext, backup: Restoring, plan: RestorePlan) -> None: ...


__all__ = ["BacksUp", "BackupError", "Part", "RestorePlan", "Restores", "Restoring"]
